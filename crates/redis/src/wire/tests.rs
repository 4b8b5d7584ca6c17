//! Tests of the wire format against bytes captured from the real Node.js adapter and
//! emitter (tests/fixtures/redis-adapter, see its README for how they were made).

use super::*;
use serde_json::json;

struct Fixture {
    channel: String,
    bytes: Vec<u8>,
}

fn fixture(scenario: &str, index: usize) -> Fixture {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/redis-adapter"
    );
    let manifest: Json =
        serde_json::from_slice(&std::fs::read(format!("{dir}/manifest.json")).unwrap()).unwrap();
    let entry = manifest
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["scenario"] == scenario)
        .nth(index)
        .unwrap_or_else(|| panic!("no fixture {scenario}#{index}"));
    Fixture {
        channel: entry["channel"].as_str().unwrap().to_owned(),
        bytes: std::fs::read(format!("{dir}/{}", entry["file"].as_str().unwrap())).unwrap(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Decodes a captured broadcast, checks it, and checks that hubbub's encoder writes the very
/// same bytes for the same content.
fn roundtrip_broadcast(scenario: &str) -> BroadcastMessage {
    let f = fixture(scenario, 0);
    let msg = decode_broadcast(&f.bytes).unwrap();
    assert_eq!(msg.sent_at_us, None, "node sends no publish time");
    assert_eq!(
        encode_broadcast(&msg),
        f.bytes,
        "{scenario}: re-encoding differs from the node bytes"
    );
    let channels = Channels::new("socket.io", &msg.packet.nsp, "me");
    assert_eq!(
        channels.broadcast_channel(&msg.opts.selector.rooms),
        f.channel
    );
    msg
}

#[test]
fn channels_follow_the_adapter_naming() {
    let c = Channels::new("socket.io", "/", "abc123");
    assert_eq!(c.broadcast, "socket.io#/#");
    assert_eq!(c.broadcast_pattern(), "socket.io#/#*");
    assert_eq!(c.request, "socket.io-request#/#");
    assert_eq!(c.response, "socket.io-response#/#");
    assert_eq!(c.private_response, "socket.io-response#/#abc123#");
    assert_eq!(c.private_response_of("xyz"), "socket.io-response#/#xyz#");
    assert_eq!(c.broadcast_channel(&[]), "socket.io#/#");
    assert_eq!(c.broadcast_channel(&strings(&["r1"])), "socket.io#/#r1#");
    assert_eq!(c.broadcast_channel(&strings(&["r1", "r2"])), "socket.io#/#");
    assert_eq!(c.room_of("socket.io#/#"), Some(None));
    assert_eq!(c.room_of("socket.io#/#room1#"), Some(Some("room1")));
    assert_eq!(c.room_of("socket.io#/admin#"), None);
    assert_eq!(c.room_of("other#/#"), None);
    let admin = Channels::new("chat", "/admin", "u");
    assert_eq!(admin.broadcast, "chat#/admin#");
    assert_eq!(admin.request, "chat-request#/admin#");
}

#[test]
fn broadcast_to_everyone() {
    let msg = roundtrip_broadcast("broadcast-all");
    assert_eq!(msg.uid.len(), 6, "node uids are uid2(6)");
    assert_eq!(msg.packet.packet_type, PACKET_TYPE_EVENT);
    assert_eq!(msg.packet.nsp, "/");
    assert_eq!(
        msg.packet.data,
        Payload::json(json!(["messages", {"hello": "world"}]))
    );
    assert_eq!(msg.opts, BroadcastOpts::default());
}

#[test]
fn broadcast_to_one_room_uses_the_room_channel_and_keeps_scalar_types() {
    let msg = roundtrip_broadcast("broadcast-room");
    assert_eq!(fixture("broadcast-room", 0).channel, "socket.io#/#room1#");
    assert_eq!(msg.opts.selector.rooms, strings(&["room1"]));
    assert_eq!(
        msg.packet.data.value,
        json!(["chat", "text", 42, -7, 3.5, true, false, null])
    );
}

#[test]
fn broadcast_to_rooms_except_a_room() {
    let msg = roundtrip_broadcast("broadcast-rooms-except");
    assert_eq!(msg.opts.selector.rooms, strings(&["r1", "r2"]));
    assert_eq!(msg.opts.selector.except, strings(&["r3"]));
    assert_eq!(msg.packet.data.value, json!(["multi", [1, 2, 3]]));
}

#[test]
fn binary_arguments_become_attachments_and_back() {
    let msg = roundtrip_broadcast("broadcast-binary");
    assert_eq!(
        msg.packet.packet_type, PACKET_TYPE_EVENT,
        "binary still travels as EVENT"
    );
    assert_eq!(
        msg.packet.data.value,
        json!(["bin", {"_placeholder": true, "num": 0}, {"nested": {"_placeholder": true, "num": 1}, "n": 1}])
    );
    assert_eq!(
        msg.packet.data.attachments,
        vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(b"hi")]
    );
}

#[test]
fn volatile_and_compress_flags() {
    let msg = roundtrip_broadcast("broadcast-flags");
    assert_eq!(msg.opts.flags.volatile, Some(true));
    assert_eq!(msg.opts.flags.compress, Some(false));
    assert_eq!(msg.opts.flags.timeout, None);
}

#[test]
fn socket_broadcasts_exclude_the_sender() {
    let all = roundtrip_broadcast("socket-broadcast");
    assert_eq!(all.opts.selector.except.len(), 1);
    assert_eq!(
        all.opts.selector.except[0].len(),
        20,
        "a socket.io socket id"
    );
    let room = roundtrip_broadcast("socket-to-room");
    assert_eq!(room.opts.selector.rooms, strings(&["room1"]));
    assert_eq!(room.opts.selector.except, all.opts.selector.except);
}

#[test]
fn other_namespace() {
    let msg = roundtrip_broadcast("namespace");
    assert_eq!(msg.packet.nsp, "/admin");
    assert_eq!(fixture("namespace", 0).channel, "socket.io#/admin#");
}

#[test]
fn wide_values_use_the_same_encodings_as_notepack() {
    let msg = roundtrip_broadcast("wide-values");
    let data = msg.packet.data.value.as_array().unwrap();
    assert_eq!(data[1].as_str().unwrap().len(), 300);
    assert_eq!(data[2], json!("h\u{e9}llo \u{1F600}"));
    assert_eq!(data[3], json!(1u64 << 40));
    assert_eq!(data[4], json!(-(1i64 << 40)));
    assert_eq!(&data[5..8], &[json!(255), json!(65535), json!(-129)]);
    assert_eq!(data[8], json!(-0.25));
    assert_eq!(data[9], json!(1e-7));
    assert_eq!(data[10], json!({"deep": {"list": [null, {"k": "v"}]}}));
}

#[test]
fn integral_floats_are_written_as_integers_like_javascript() {
    let payload = Payload::json(json!([3.0, -2.0, 0.5]));
    let bytes = write_mp(&payload.to_msgpack());
    assert_eq!(
        bytes,
        vec![0x93, 0x03, 0xfe, 0xcb, 0x3f, 0xe0, 0, 0, 0, 0, 0, 0]
    );
}

/// Found by `fuzz/redis_wire`: a server-side-emit request in MessagePack whose data held an
/// integral float was written as JSON `-6645093.0`, which the next round read back as the
/// integer `-6645093`: encoding was not a fixed point. Integral floats now decode as integers.
#[test]
fn integral_floats_from_msgpack_decode_as_integers() {
    let mut data = Vec::new();
    rmpv::encode::write_value(
        &mut data,
        &Mp::Map(vec![
            (Mp::from("uid"), Mp::from("peer")),
            (Mp::from("type"), Mp::from(6)),
            (
                Mp::from("data"),
                Mp::Array(vec![
                    Mp::from("ev"),
                    Mp::F64(-6_645_093.0),
                    Mp::F32(2.0),
                    Mp::F64(0.5),
                ]),
            ),
        ]),
    )
    .unwrap();
    let req = decode_request(&data).unwrap();
    let bytes = encode_request(&req);
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.contains(r#"["ev",-6645093,2,0.5]"#), "{text}");
    let again = decode_request(&bytes).unwrap();
    assert_eq!(encode_request(&again), bytes, "a fixed point");
}

#[test]
fn emitter_broadcasts_decode() {
    let all = decode_broadcast(&fixture("emitter-broadcast", 0).bytes).unwrap();
    assert_eq!(all.uid, EMITTER_UID);
    assert_eq!(all.packet.data.value, json!(["from-emitter", "e", 1]));
    assert_eq!(all.opts, BroadcastOpts::default());

    let f = fixture("emitter-room", 0);
    assert_eq!(f.channel, "socket.io#/#room1#");
    let room = decode_broadcast(&f.bytes).unwrap();
    assert_eq!(room.opts.selector.rooms, strings(&["room1"]));
    assert_eq!(room.opts.selector.except, strings(&["r3"]));
    assert_eq!(room.packet.data.value, json!(["emitter-room", {"x": true}]));

    let f = fixture("emitter-namespace-volatile", 0);
    assert_eq!(f.channel, "socket.io#/admin#");
    let adm = decode_broadcast(&f.bytes).unwrap();
    assert_eq!(adm.packet.nsp, "/admin");
    assert_eq!(adm.opts.flags.volatile, Some(true));
    assert_eq!(
        adm.packet.data.attachments,
        vec![Bytes::from_static(&[0xff])]
    );
}

#[test]
fn borrowed_event_encoding_matches_the_owned_one() {
    let msg = decode_broadcast(&fixture("broadcast-binary", 0).bytes).unwrap();
    let bytes = encode_event_broadcast(
        &msg.uid,
        &msg.packet.nsp,
        &msg.packet.data.value,
        &msg.packet.data.attachments,
        &msg.opts,
        None,
    );
    assert_eq!(bytes, fixture("broadcast-binary", 0).bytes);
}

#[test]
fn hubbub_publish_time_is_a_fourth_element() {
    let mut msg = decode_broadcast(&fixture("broadcast-all", 0).bytes).unwrap();
    msg.sent_at_us = Some(1_796_398_811_339_123);
    let bytes = encode_broadcast(&msg);
    assert_eq!(bytes[0], 0x94, "a four-element array");
    assert_eq!(decode_broadcast(&bytes).unwrap(), msg);
}

#[test]
fn broadcast_with_ack_request_and_its_responses() {
    let f = fixture("broadcast-with-ack", 0);
    assert_eq!(f.channel, "socket.io-request#/#");
    assert_ne!(f.bytes[0], b'{', "the BROADCAST request is MessagePack");
    let req = decode_request(&f.bytes).unwrap();
    let request_id = req.request_id.clone().unwrap();
    let RequestBody::Broadcast { packet, opts } = &req.body else {
        panic!("{req:?}")
    };
    assert_eq!(packet.data.value, json!(["ack-me", "ping"]));
    assert_eq!(opts.flags.timeout, Some(5000));
    assert_eq!(encode_request(&req), f.bytes);

    let f = fixture("broadcast-with-ack", 1);
    assert_eq!(f.channel, "socket.io-response#/#");
    let frame = ResponseFrame::parse(&f.bytes).unwrap();
    assert_eq!(frame.request_id, request_id);
    let count = frame.interpret(RequestType::Broadcast).unwrap();
    assert_eq!(
        count,
        Response::BroadcastClientCount {
            request_id: request_id.clone(),
            client_count: 1
        }
    );
    assert_eq!(encode_response(&count), f.bytes);

    let f = fixture("broadcast-with-ack", 2);
    assert_ne!(
        f.bytes[0], b'{',
        "the BROADCAST_ACK response is MessagePack"
    );
    let ack = ResponseFrame::parse(&f.bytes)
        .unwrap()
        .interpret(RequestType::Broadcast)
        .unwrap();
    assert_eq!(
        ack,
        Response::BroadcastAck {
            request_id,
            packet: Payload::json(json!({"from": "B", "got": "ping"}))
        }
    );
    assert_eq!(encode_response(&ack), f.bytes);
}

#[test]
fn fetch_sockets_request_and_response() {
    let f = fixture("fetch-sockets", 0);
    let req = decode_request(&f.bytes).unwrap();
    assert_eq!(
        req.body,
        RequestBody::RemoteFetch {
            selector: Selector::default()
        }
    );
    assert!(req.uid.is_some() && req.request_id.is_some());
    assert_eq!(encode_request(&req), f.bytes);

    let f = fixture("fetch-sockets", 1);
    let resp = ResponseFrame::parse(&f.bytes)
        .unwrap()
        .interpret(RequestType::RemoteFetch)
        .unwrap();
    let Response::FetchSockets {
        request_id,
        sockets,
    } = &resp
    else {
        panic!("{resp:?}")
    };
    assert_eq!(Some(request_id), req.request_id.as_ref());
    assert_eq!(sockets.len(), 1, "server B has one socket");
    let s = &sockets[0];
    assert!(s.rooms.contains(&s.id) && s.rooms.contains(&"room1".to_string()));
    assert_eq!(s.data, json!({"server": "B", "nick": "nick-B"}));
    assert_eq!(s.handshake["auth"], json!({"token": "token-B"}));
    assert_eq!(s.handshake["query"]["who"], json!("B"));
    assert_eq!(s.handshake["address"], json!("127.0.0.1"));
    // Byte-exact, as JSON.stringify wrote it.
    assert_eq!(encode_response(&resp), f.bytes);

    let req = decode_request(&fixture("fetch-sockets-room", 0).bytes).unwrap();
    assert_eq!(
        req.body,
        RequestBody::RemoteFetch {
            selector: Selector {
                rooms: strings(&["room1"]),
                except: strings(&["r3"])
            }
        }
    );
}

#[test]
fn all_rooms_request_and_response() {
    let f = fixture("all-rooms", 0);
    let req = decode_request(&f.bytes).unwrap();
    assert_eq!(req.body, RequestBody::AllRooms);
    assert_eq!(encode_request(&req), f.bytes);
    let f = fixture("all-rooms", 1);
    let resp = ResponseFrame::parse(&f.bytes)
        .unwrap()
        .interpret(RequestType::AllRooms)
        .unwrap();
    let Response::AllRooms { rooms, .. } = &resp else {
        panic!("{resp:?}")
    };
    assert!(rooms.contains(&"room1".to_string()));
    assert_eq!(encode_response(&resp), f.bytes);
}

#[test]
fn join_leave_disconnect_requests() {
    let f = fixture("sockets-join", 0);
    let req = decode_request(&f.bytes).unwrap();
    assert_eq!(req.request_id, None, "no response is expected");
    assert_eq!(
        req.body,
        RequestBody::RemoteJoin {
            target: Target::Selector(Selector {
                rooms: strings(&["room1"]),
                except: vec![]
            }),
            rooms: strings(&["r4", "r5"])
        }
    );
    assert_eq!(encode_request(&req), f.bytes);

    let f = fixture("sockets-leave", 0);
    let req = decode_request(&f.bytes).unwrap();
    assert_eq!(
        req.body,
        RequestBody::RemoteLeave {
            target: Target::Selector(Selector::default()),
            rooms: strings(&["r4"])
        }
    );
    assert_eq!(encode_request(&req), f.bytes);

    let f = fixture("disconnect-sockets", 0);
    let req = decode_request(&f.bytes).unwrap();
    assert_eq!(
        req.body,
        RequestBody::RemoteDisconnect {
            target: Target::Selector(Selector {
                rooms: strings(&["ghost"]),
                except: vec![]
            }),
            close: true
        }
    );
    assert_eq!(encode_request(&req), f.bytes);
}

#[test]
fn legacy_single_socket_requests_decode() {
    let req = decode_request(br#"{"uid":"abc","requestId":"r1","type":2,"sid":"s1","room":"x"}"#)
        .unwrap();
    assert_eq!(
        req.body,
        RequestBody::RemoteJoin {
            target: Target::Socket("s1".into()),
            rooms: strings(&["x"])
        }
    );
    let req = decode_request(br#"{"uid":"abc","requestId":"r2","type":4,"sid":"s1","close":true}"#)
        .unwrap();
    assert_eq!(
        req.body,
        RequestBody::RemoteDisconnect {
            target: Target::Socket("s1".into()),
            close: true
        }
    );
    let req = decode_request(br#"{"uid":"abc","requestId":"r3","type":0,"rooms":["a"]}"#).unwrap();
    assert_eq!(
        req.body,
        RequestBody::Sockets {
            rooms: strings(&["a"])
        }
    );
    let done = ResponseFrame::parse(br#"{"requestId":"r1"}"#)
        .unwrap()
        .interpret(RequestType::RemoteJoin)
        .unwrap();
    assert_eq!(encode_response(&done), br#"{"requestId":"r1"}"#);
}

#[test]
fn server_side_emit_with_and_without_ack() {
    let f = fixture("server-side-emit", 0);
    let req = decode_request(&f.bytes).unwrap();
    assert_eq!(req.request_id, None);
    assert_eq!(
        req.body,
        RequestBody::ServerSideEmit {
            data: Payload::json(json!(["hello", "world", 1]))
        }
    );
    assert_eq!(encode_request(&req), f.bytes);

    let f = fixture("server-side-emit-ack", 0);
    let req = decode_request(&f.bytes).unwrap();
    let request_id = req.request_id.clone().unwrap();
    assert_eq!(encode_request(&req), f.bytes);
    let f = fixture("server-side-emit-ack", 1);
    assert_eq!(f.channel, "socket.io-response#/#");
    let resp = ResponseFrame::parse(&f.bytes)
        .unwrap()
        .interpret(RequestType::ServerSideEmit)
        .unwrap();
    assert_eq!(
        resp,
        Response::ServerSideEmit {
            request_id,
            data: json!("pong-1")
        }
    );
    assert_eq!(encode_response(&resp), f.bytes);
}

#[test]
fn emitter_requests_decode() {
    let req = decode_request(&fixture("emitter-server-side-emit", 0).bytes).unwrap();
    assert_eq!(req.uid.as_deref(), Some(EMITTER_UID));
    assert_eq!(
        req.body,
        RequestBody::ServerSideEmit {
            data: Payload::json(json!(["srv", 1]))
        }
    );
    let req = decode_request(&fixture("emitter-sockets-join", 0).bytes).unwrap();
    assert_eq!(req.uid, None, "the emitter's join carries no uid");
    assert_eq!(
        req.body,
        RequestBody::RemoteJoin {
            target: Target::Selector(Selector {
                rooms: strings(&["room1"]),
                except: vec![]
            }),
            rooms: strings(&["r9"])
        }
    );
    let req = decode_request(&fixture("emitter-disconnect", 0).bytes).unwrap();
    assert_eq!(
        req.body,
        RequestBody::RemoteDisconnect {
            target: Target::Selector(Selector {
                rooms: strings(&["ghost"]),
                except: vec![]
            }),
            close: false
        }
    );
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    assert!(matches!(
        decode_broadcast(b"\x93\xa5ab"),
        Err(WireError::MessagePack(_))
    ));
    assert!(decode_broadcast(b"\xc1").is_err());
    assert!(matches!(
        decode_broadcast(b"\x93\xa1a\x01\x80"),
        Err(WireError::Shape(_))
    ));
    assert!(matches!(
        decode_request(b"{not json"),
        Err(WireError::Json(_))
    ));
    assert!(matches!(
        decode_request(br#"{"type":42}"#),
        Err(WireError::Shape(_))
    ));
    assert!(matches!(
        decode_request(br#"{"type":9,"requestId":"x"}"#),
        Err(WireError::Shape(_))
    ));
    assert!(matches!(
        ResponseFrame::parse(br#"{"rooms":[]}"#),
        Err(WireError::Shape(_))
    ));
    assert!(decode_broadcast(&[]).is_err());
}

#[test]
fn server_side_emit_binary_is_written_like_json_stringify_of_a_buffer() {
    let req = Request {
        uid: Some("u".into()),
        request_id: None,
        body: RequestBody::ServerSideEmit {
            data: Payload {
                value: json!(["ev", {"_placeholder": true, "num": 0}]),
                attachments: vec![Bytes::from_static(&[7, 8])],
            },
        },
    };
    assert_eq!(
        String::from_utf8(encode_request(&req)).unwrap(),
        r#"{"uid":"u","type":6,"data":["ev",{"type":"Buffer","data":[7,8]}]}"#
    );
}

/// Found by `fuzz/redis_wire`: a peer's broadcast that the official client
/// cannot decode (not `[event, ...]`, a reserved name, a placeholder without
/// its attachment) was accepted and would have been relayed to every local
/// client, each of which then closes its connection.
#[test]
fn broadcasts_clients_cannot_decode_are_refused() {
    let publish = |data: Mp| {
        write_mp(&Mp::Array(vec![
            Mp::from("node"),
            Mp::Map(vec![
                (Mp::from("type"), Mp::from(2)),
                (Mp::from("data"), data),
                (Mp::from("nsp"), Mp::from("/")),
            ]),
            Mp::Map(vec![]),
        ]))
    };
    let placeholder = |num: Mp| {
        Mp::Map(vec![
            (Mp::from("_placeholder"), Mp::Boolean(true)),
            (Mp::from("num"), num),
        ])
    };
    let refused = [
        Mp::from("not an array"),
        Mp::Array(vec![]),
        Mp::Array(vec![Mp::Nil]),
        Mp::Array(vec![Mp::from("disconnect")]),
        Mp::Array(vec![Mp::from("ev"), placeholder(Mp::from(0))]),
        Mp::Array(vec![
            Mp::from("ev"),
            Mp::Binary(vec![1]),
            placeholder(Mp::from(1)),
        ]),
        Mp::Array(vec![Mp::from("ev"), placeholder(Mp::from("0"))]),
    ];
    for data in refused {
        let bytes = publish(data.clone());
        assert!(
            matches!(decode_broadcast(&bytes), Err(WireError::Shape(_))),
            "{data}"
        );
        let request = write_mp(&Mp::Map(vec![
            (Mp::from("uid"), Mp::from("node")),
            (Mp::from("requestId"), Mp::from("r")),
            (Mp::from("type"), Mp::from(7)),
            (
                Mp::from("packet"),
                Mp::Map(vec![
                    (Mp::from("type"), Mp::from(2)),
                    (Mp::from("data"), data.clone()),
                ]),
            ),
        ]));
        assert!(
            matches!(decode_request(&request), Err(WireError::Shape(_))),
            "{data}"
        );
    }
    // A real binary, and a literal placeholder that names it, are fine; so is
    // a numeric event name.
    let ok = publish(Mp::Array(vec![
        Mp::from("ev"),
        Mp::Binary(vec![1]),
        placeholder(Mp::from(0)),
    ]));
    assert_eq!(
        decode_broadcast(&ok).unwrap().packet.data.attachments.len(),
        1
    );
    assert!(decode_broadcast(&publish(Mp::Array(vec![Mp::from(42)]))).is_ok());
}

/// Found by a long `fuzz/redis_wire` campaign: a MessagePack request whose data nested about
/// 200 arrays deep was accepted, and its JSON re-encoding was then refused by every JSON
/// decoder (serde_json stops at 127 levels). MessagePack now stops at `MAX_NESTING`.
#[test]
fn messagepack_nested_deeper_than_json_allows_is_refused() {
    fn nested(levels: usize) -> Mp {
        (0..levels).fold(Mp::from("x"), |v, _| Mp::Array(vec![v]))
    }
    let request = |levels| {
        write_mp(&Mp::Map(vec![
            (Mp::from("uid"), Mp::from("peer")),
            (Mp::from("requestId"), Mp::from("r1")),
            (Mp::from("type"), Mp::from(6)),
            (
                Mp::from("data"),
                Mp::Array(vec![Mp::from("ev"), nested(levels)]),
            ),
        ]))
    };
    // The request's map and its data array are two of the levels.
    let deepest = MAX_NESTING - 2;
    let req = decode_request(&request(deepest)).expect("as deep as allowed");
    let again = decode_request(&encode_request(&req)).expect("its JSON re-encoding decodes");
    assert_eq!(again.body, req.body);
    match decode_request(&request(deepest + 1)) {
        Err(WireError::MessagePack(m)) => assert!(m.contains("nested deeper than 100"), "{m}"),
        other => panic!("one level deeper: {other:?}"),
    }
    // A binary value counts as a level (it becomes a placeholder object).
    let bin = write_mp(&Mp::Array(vec![
        Mp::from("uid"),
        Mp::Map(vec![
            (Mp::from("type"), Mp::from(2)),
            (
                Mp::from("data"),
                Mp::Array(vec![
                    Mp::from("ev"),
                    (0..MAX_NESTING - 3).fold(Mp::Binary(vec![1]), |v, _| Mp::Array(vec![v])),
                ]),
            ),
            (Mp::from("nsp"), Mp::from("/")),
        ]),
        Mp::Map(vec![]),
    ]));
    assert!(matches!(
        decode_broadcast(&bin),
        Err(WireError::MessagePack(_))
    ));
    // Ten thousand levels: refused without overflowing the stack.
    let mut deep = write_mp(&Mp::Map(vec![
        (Mp::from("uid"), Mp::from("peer")),
        (Mp::from("type"), Mp::from(6)),
    ]));
    deep[0] += 1; // one more entry: "data" and an array nested 10,000 deep
    deep.extend_from_slice(b"\xa4data");
    deep.extend(std::iter::repeat_n(0x91, 10_000));
    deep.extend_from_slice(b"\xa1x");
    assert!(matches!(
        decode_request(&deep),
        Err(WireError::MessagePack(_))
    ));
}
