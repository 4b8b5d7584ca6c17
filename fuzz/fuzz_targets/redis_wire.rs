//! What another replica, a Node `@socket.io/redis-adapter` peer or the
//! `@socket.io/redis-emitter` publishes: broadcasts, requests and responses,
//! and the sharded adapter's cluster messages (`hubbub_redis::wire`).
//!
//! Properties: decoding never panics; an accepted broadcast or request
//! re-encodes (as hubbub would publish it) to bytes that decode to the same
//! sender, namespace, targets and attachments, and one more round gives the
//! same bytes (a fixed point); an accepted broadcast is deliverable to the official client: its
//! data is `[event, ...args]` with an event name the client accepts, and every
//! binary placeholder references one of its attachments; a response parses
//! and interprets for every request type without panicking.
#![no_main]

use hubbub_redis::wire::{self, RequestBody, RequestType, ResponseFrame};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fn placeholders(v: &Value, f: &mut impl FnMut(Option<&Value>)) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| placeholders(i, f)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                f(map.get("num"));
            } else {
                map.values().for_each(|i| placeholders(i, f));
            }
        }
        _ => {}
    }
}

fn assert_deliverable(data: &wire::Payload) {
    let Value::Array(items) = &data.value else {
        panic!("accepted event data is not an array: {:?}", data.value);
    };
    match items.first() {
        Some(Value::String(name)) => {
            assert!(!hubbub_socketio::packet::RESERVED_EVENTS.contains(&name.as_str()))
        }
        Some(Value::Number(_)) => {}
        other => panic!("accepted event name {other:?}"),
    }
    placeholders(&data.value, &mut |num| {
        let n = num.and_then(Value::as_u64);
        assert!(
            n.is_some_and(|n| (n as usize) < data.attachments.len()),
            "placeholder {num:?} with {} attachments accepted",
            data.attachments.len()
        );
    });
}

const ASKED: [RequestType; 8] = [
    RequestType::Sockets,
    RequestType::AllRooms,
    RequestType::RemoteJoin,
    RequestType::RemoteLeave,
    RequestType::RemoteDisconnect,
    RequestType::RemoteFetch,
    RequestType::ServerSideEmit,
    RequestType::Broadcast,
];

fuzz_target!(|data: &[u8]| {
    // Decoding normalises (JavaScript has one number type, so an integral float
    // becomes an integer as notepack.io writes it; a missing namespace becomes
    // `/`; non-string ids become strings): what is asserted is that one
    // decode/encode round reaches a fixed point that decodes to itself.
    if let Ok(msg) = wire::decode_broadcast(data) {
        assert_deliverable(&msg.packet.data);
        let bytes = wire::encode_broadcast(&msg);
        let again = wire::decode_broadcast(&bytes).expect("re-encoded broadcast decodes");
        assert_deliverable(&again.packet.data);
        assert_eq!(again.uid, msg.uid);
        assert_eq!(again.packet.nsp, msg.packet.nsp);
        assert_eq!(again.opts, msg.opts);
        // Attachments no placeholder references (a duplicate map key overwrote
        // one) are dropped by the round; the referenced ones stay.
        assert!(again.packet.data.attachments.len() <= msg.packet.data.attachments.len());
        let bytes_again = wire::encode_broadcast(&again);
        assert_eq!(bytes_again, bytes, "not a fixed point");
        assert_eq!(wire::decode_broadcast(&bytes_again).as_ref(), Ok(&again));
    }
    if let Ok(req) = wire::decode_request(data) {
        let bytes = wire::encode_request(&req);
        let again = wire::decode_request(&bytes).expect("re-encoded request decodes");
        assert_eq!(again.uid, req.uid);
        assert_eq!(again.request_id, req.request_id);
        assert_eq!(again.body.request_type(), req.body.request_type());
        if let RequestBody::Broadcast { packet, .. } = &req.body {
            assert_deliverable(&packet.data);
        }
        let bytes_again = wire::encode_request(&again);
        assert_eq!(bytes_again, bytes, "not a fixed point");
    }
    // The sharded adapter's messages (`createShardedAdapter`).
    if let Ok(msg) = wire::sharded::decode_cluster_message(data) {
        if let wire::sharded::ClusterBody::Broadcast { packet, .. } = &msg.body {
            assert_deliverable(&packet.data);
        }
        let bytes = wire::sharded::encode_cluster_message(&msg);
        let again = wire::sharded::decode_cluster_message(&bytes)
            .expect("re-encoded cluster message decodes");
        assert_eq!(again.uid, msg.uid);
        assert_eq!(again.nsp, msg.nsp);
    }
    if let Ok(frame) = ResponseFrame::parse(data) {
        for asked in ASKED {
            let _ = frame.clone().interpret(asked);
        }
    }
});
