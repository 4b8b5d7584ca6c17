//! The messages of `@socket.io/redis-adapter`'s sharded adapter (`createShardedAdapter`,
//! 8.x), which are those of `socket.io-adapter`'s `ClusterAdapter` (2.5): one object
//! `{type, data, uid, nsp}` per message, requests and responses alike, JSON unless `data`
//! holds binary (then MessagePack, as `notepack.io` writes it). A receiver tells them apart
//! by the first byte (`{` is JSON).
//!
//! | channel (sharded pub/sub: SPUBLISH/SSUBSCRIBE) | what |
//! |---|---|
//! | `<key>#<nsp>#` | every message of the namespace that has no channel of its own: broadcasts, requests |
//! | `<key>#<nsp>#<room>#` | a broadcast to exactly one room, without ack, when the subscription mode gives that room a channel ([`ShardedChannels::for_broadcast`]) |
//! | `<key>#<nsp>#<uid>#` | responses to the node `uid` |
//!
//! The server count is `PUBSUB SHARDNUMSUB <key>#<nsp>#`. Each channel name hashes to its
//! own slot, so room channels spread over the shards of a cluster.

use super::*;
use crate::settings::SubscriptionMode;

/// The message types of the cluster protocol (the numbers are on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterMessageType {
    /// Heartbeats and close notices (`ClusterAdapterWithHeartbeat` only; ignored here).
    InitialHeartbeat = 1,
    /// See [`ClusterMessageType::InitialHeartbeat`].
    Heartbeat = 2,
    /// A broadcast; with a `requestId` its recipients' acks are wanted.
    Broadcast = 3,
    /// Make sockets join rooms.
    SocketsJoin = 4,
    /// Make sockets leave rooms.
    SocketsLeave = 5,
    /// Disconnect sockets.
    DisconnectSockets = 6,
    /// Describe sockets (`fetchSockets()`).
    FetchSockets = 7,
    /// Response to [`ClusterMessageType::FetchSockets`].
    FetchSocketsResponse = 8,
    /// An event for the servers themselves (`serverSideEmit`).
    ServerSideEmit = 9,
    /// Response to an acknowledged [`ClusterMessageType::ServerSideEmit`].
    ServerSideEmitResponse = 10,
    /// Response: how many clients a node sent an acknowledged broadcast to.
    BroadcastClientCount = 11,
    /// Response: one client's ack of an acknowledged broadcast.
    BroadcastAck = 12,
    /// See [`ClusterMessageType::InitialHeartbeat`].
    AdapterClose = 13,
}

/// What a cluster message carries.
#[derive(Debug, Clone, PartialEq)]
pub enum ClusterBody {
    /// Deliver `packet` to the sockets `opts` selects; with `request_id`, report the count
    /// and relay each client's ack to the sender.
    Broadcast {
        /// The Socket.IO packet (`{type, data, nsp}`).
        packet: WirePacket,
        /// Rooms, exceptions, flags.
        opts: BroadcastOpts,
        /// Set when the sender wants the acks.
        request_id: Option<String>,
    },
    /// Make the selected sockets join `rooms`.
    SocketsJoin {
        /// Which sockets.
        opts: BroadcastOpts,
        /// Rooms to join.
        rooms: Vec<String>,
    },
    /// Make the selected sockets leave `rooms`.
    SocketsLeave {
        /// Which sockets.
        opts: BroadcastOpts,
        /// Rooms to leave.
        rooms: Vec<String>,
    },
    /// Disconnect the selected sockets (closing the connection when `close`).
    DisconnectSockets {
        /// Which sockets.
        opts: BroadcastOpts,
        /// Close the underlying connection too.
        close: bool,
    },
    /// Describe the selected sockets to the requester.
    FetchSockets {
        /// Which sockets.
        opts: BroadcastOpts,
        /// Correlates the responses.
        request_id: String,
    },
    /// The sockets of one node.
    FetchSocketsResponse {
        /// The request answered.
        request_id: String,
        /// Its matching sockets.
        sockets: Vec<RemoteSocket>,
    },
    /// `[event, ...args]` for the servers; with `request_id`, each answers once.
    ServerSideEmit {
        /// The event and its arguments.
        packet: Payload,
        /// Set when the sender wants the answers.
        request_id: Option<String>,
    },
    /// One server's answer to a server-side emit.
    ServerSideEmitResponse {
        /// The request answered.
        request_id: String,
        /// The answer.
        packet: Payload,
    },
    /// How many clients got an acknowledged broadcast on one node.
    BroadcastClientCount {
        /// The request answered.
        request_id: String,
        /// Number of clients.
        client_count: u64,
    },
    /// One client's ack.
    BroadcastAck {
        /// The request answered.
        request_id: String,
        /// The ack's (first) argument.
        packet: Payload,
    },
    /// Heartbeats, close notices, unknown types: nothing to do.
    Ignored(u64),
}

/// One message of the cluster protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterMessage {
    /// The sending node's uid.
    pub uid: String,
    /// The namespace, e.g. `/`.
    pub nsp: String,
    /// What it says.
    pub body: ClusterBody,
}

impl ClusterMessage {
    /// The type number on the wire.
    pub fn message_type(&self) -> u64 {
        use ClusterMessageType as T;
        (match &self.body {
            ClusterBody::Broadcast { .. } => T::Broadcast,
            ClusterBody::SocketsJoin { .. } => T::SocketsJoin,
            ClusterBody::SocketsLeave { .. } => T::SocketsLeave,
            ClusterBody::DisconnectSockets { .. } => T::DisconnectSockets,
            ClusterBody::FetchSockets { .. } => T::FetchSockets,
            ClusterBody::FetchSocketsResponse { .. } => T::FetchSocketsResponse,
            ClusterBody::ServerSideEmit { .. } => T::ServerSideEmit,
            ClusterBody::ServerSideEmitResponse { .. } => T::ServerSideEmitResponse,
            ClusterBody::BroadcastClientCount { .. } => T::BroadcastClientCount,
            ClusterBody::BroadcastAck { .. } => T::BroadcastAck,
            ClusterBody::Ignored(n) => return *n,
        }) as u64
    }

    /// Whether this is a response (travels on the requester's own channel).
    pub fn is_response(&self) -> bool {
        matches!(
            self.body,
            ClusterBody::FetchSocketsResponse { .. }
                | ClusterBody::ServerSideEmitResponse { .. }
                | ClusterBody::BroadcastClientCount { .. }
                | ClusterBody::BroadcastAck { .. }
        )
    }
}

fn opts_entry(opts: &BroadcastOpts) -> (Mp, Mp) {
    (Mp::from("opts"), opts.to_mp())
}

fn request_id_entry(id: &str) -> (Mp, Mp) {
    (Mp::from("requestId"), Mp::from(id))
}

/// Encodes as the Node adapter does: the keys in its order (`type`, `data`, `uid`, `nsp`),
/// JSON unless the data holds binary, then MessagePack.
pub fn encode_cluster_message(msg: &ClusterMessage) -> Vec<u8> {
    let data = match &msg.body {
        ClusterBody::Broadcast {
            packet,
            opts,
            request_id,
        } => {
            let mut m = vec![(Mp::from("packet"), packet.to_mp())];
            if let Some(id) = request_id {
                m.push(request_id_entry(id));
            }
            m.push(opts_entry(opts));
            Mp::Map(m)
        }
        ClusterBody::SocketsJoin { opts, rooms } | ClusterBody::SocketsLeave { opts, rooms } => {
            Mp::Map(vec![
                opts_entry(opts),
                (Mp::from("rooms"), mp_strings(rooms)),
            ])
        }
        ClusterBody::DisconnectSockets { opts, close } => Mp::Map(vec![
            opts_entry(opts),
            (Mp::from("close"), Mp::Boolean(*close)),
        ]),
        ClusterBody::FetchSockets { opts, request_id } => {
            Mp::Map(vec![opts_entry(opts), request_id_entry(request_id)])
        }
        ClusterBody::FetchSocketsResponse {
            request_id,
            sockets,
        } => Mp::Map(vec![
            request_id_entry(request_id),
            (
                Mp::from("sockets"),
                Mp::Array(
                    sockets
                        .iter()
                        .map(|s| json_to_mp(&s.to_json(), &[]))
                        .collect(),
                ),
            ),
        ]),
        ClusterBody::ServerSideEmit { packet, request_id } => {
            let mut m = Vec::with_capacity(2);
            if let Some(id) = request_id {
                m.push(request_id_entry(id));
            }
            m.push((Mp::from("packet"), packet.to_msgpack()));
            Mp::Map(m)
        }
        ClusterBody::ServerSideEmitResponse { request_id, packet }
        | ClusterBody::BroadcastAck { request_id, packet } => Mp::Map(vec![
            request_id_entry(request_id),
            (Mp::from("packet"), packet.to_msgpack()),
        ]),
        ClusterBody::BroadcastClientCount {
            request_id,
            client_count,
        } => Mp::Map(vec![
            request_id_entry(request_id),
            (Mp::from("clientCount"), Mp::from(*client_count)),
        ]),
        ClusterBody::Ignored(_) => Mp::Map(Vec::new()),
    };
    let whole = Mp::Map(vec![
        (Mp::from("type"), Mp::from(msg.message_type())),
        (Mp::from("data"), data),
        (Mp::from("uid"), Mp::from(msg.uid.as_str())),
        (Mp::from("nsp"), Mp::from(msg.nsp.as_str())),
    ]);
    // The Node adapter checks the binary-capable types for binary and writes MessagePack
    // only then; any other message is JSON.
    let plain = Payload::from_msgpack(whole.clone());
    if plain.attachments.is_empty() {
        json_bytes(&plain.value)
    } else {
        write_mp(&whole)
    }
}

fn required_id(data: &Mp) -> Result<String, WireError> {
    field(data, "requestId")
        .and_then(id_string)
        .ok_or_else(|| shape("message without requestId"))
}

fn opts_of(data: &Mp) -> Result<BroadcastOpts, WireError> {
    match field(data, "opts") {
        Some(v) => BroadcastOpts::from_mp(v),
        None => Ok(BroadcastOpts::default()),
    }
}

/// Decodes a message from a Node sharded adapter or a hubbub node.
pub fn decode_cluster_message(bytes: &[u8]) -> Result<ClusterMessage, WireError> {
    let whole = read_any(bytes)?;
    if !matches!(whole, Mp::Map(_)) {
        return Err(shape("cluster message is not an object"));
    }
    let kind = field(&whole, "type")
        .and_then(Mp::as_u64)
        .ok_or_else(|| shape("cluster message without type"))?;
    let uid = field(&whole, "uid").and_then(id_string).unwrap_or_default();
    let nsp = field(&whole, "nsp")
        .and_then(|v| v.as_str())
        .unwrap_or("/")
        .to_owned();
    let empty = Mp::Map(Vec::new());
    let data = field(&whole, "data").unwrap_or(&empty);
    let request_id = field(data, "requestId").and_then(id_string);
    let body = match kind {
        3 => ClusterBody::Broadcast {
            packet: {
                let packet = WirePacket::from_mp(
                    field(data, "packet")
                        .cloned()
                        .ok_or_else(|| shape("broadcast without packet"))?,
                )?;
                // As for the classic adapter: never relay what clients cannot decode.
                check_deliverable(&packet.data)?;
                packet
            },
            opts: opts_of(data)?,
            request_id,
        },
        4 => ClusterBody::SocketsJoin {
            opts: opts_of(data)?,
            rooms: string_list(field(data, "rooms"), "rooms")?,
        },
        5 => ClusterBody::SocketsLeave {
            opts: opts_of(data)?,
            rooms: string_list(field(data, "rooms"), "rooms")?,
        },
        6 => ClusterBody::DisconnectSockets {
            opts: opts_of(data)?,
            close: field(data, "close").and_then(Mp::as_bool).unwrap_or(false),
        },
        7 => ClusterBody::FetchSockets {
            opts: opts_of(data)?,
            request_id: required_id(data)?,
        },
        8 => ClusterBody::FetchSocketsResponse {
            request_id: required_id(data)?,
            sockets: match field(data, "sockets") {
                Some(Mp::Array(items)) => items
                    .iter()
                    .map(RemoteSocket::from_mp)
                    .collect::<Result<_, _>>()?,
                _ => Vec::new(),
            },
        },
        9 => ClusterBody::ServerSideEmit {
            packet: Payload::from_msgpack(field(data, "packet").cloned().unwrap_or(Mp::Nil)),
            request_id,
        },
        10 => ClusterBody::ServerSideEmitResponse {
            request_id: required_id(data)?,
            packet: Payload::from_msgpack(field(data, "packet").cloned().unwrap_or(Mp::Nil)),
        },
        11 => ClusterBody::BroadcastClientCount {
            request_id: required_id(data)?,
            client_count: field(data, "clientCount")
                .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64)))
                .unwrap_or(0),
        },
        12 => ClusterBody::BroadcastAck {
            request_id: required_id(data)?,
            packet: Payload::from_msgpack(field(data, "packet").cloned().unwrap_or(Mp::Nil)),
        },
        other => ClusterBody::Ignored(other),
    };
    Ok(ClusterMessage { uid, nsp, body })
}

/// The channels of one namespace on the sharded adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardedChannels {
    /// `<key>#<nsp>#`: broadcasts and requests; its shard subscriber count is the server count.
    pub main: String,
    /// `<key>#<nsp>#<uid>#`: responses to this node.
    pub own_responses: String,
    mode: SubscriptionMode,
}

/// What the Node adapter takes for a socket id, so that it gives it no channel in the
/// `dynamic` mode: a string of exactly 20 (UTF-16) characters.
pub fn looks_like_a_socket_id(room: &str) -> bool {
    room.encode_utf16().count() == 20
}

impl ShardedChannels {
    /// The channels of namespace `nsp` for node `uid`.
    pub fn new(key: &str, nsp: &str, uid: &str, mode: SubscriptionMode) -> Self {
        let main = format!("{key}#{nsp}#");
        Self {
            own_responses: format!("{main}{uid}#"),
            main,
            mode,
        }
    }

    /// The channel of room `room` (`<key>#<nsp>#<room>#`).
    pub fn room(&self, room: &str) -> String {
        format!("{}{room}#", self.main)
    }

    /// The channel responses to node `uid` go to.
    pub fn responses_to(&self, uid: &str) -> String {
        format!("{}{uid}#", self.main)
    }

    /// Where a broadcast goes, as the Node adapter computes it: the room's channel when it
    /// targets exactly one room, wants no acks, and the mode gives that room a channel
    /// (`dynamic`: unless it looks like a socket id; `dynamic-private`: always); else the
    /// namespace channel.
    pub fn for_broadcast(&self, rooms: &[String], with_ack: bool) -> String {
        match rooms {
            [room] if !with_ack && self.room_has_channel(room) => self.room(room),
            _ => self.main.clone(),
        }
    }

    /// Whether a broadcast to `room` alone travels on the room's own channel.
    pub fn room_has_channel(&self, room: &str) -> bool {
        match self.mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => !looks_like_a_socket_id(room),
            SubscriptionMode::DynamicPrivate => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broadcast(rooms: &[&str], data: Payload) -> ClusterMessage {
        ClusterMessage {
            uid: "a1b2c3".into(),
            nsp: "/".into(),
            body: ClusterBody::Broadcast {
                packet: WirePacket::event("/", data),
                opts: BroadcastOpts {
                    selector: Selector {
                        rooms: rooms.iter().map(|r| r.to_string()).collect(),
                        except: vec!["x".into()],
                    },
                    flags: BroadcastFlags::default(),
                },
                request_id: None,
            },
        }
    }

    #[test]
    fn a_broadcast_is_the_json_the_node_adapter_writes() {
        let msg = broadcast(&["room1"], Payload::json(serde_json::json!(["hello", 1])));
        let bytes = encode_cluster_message(&msg);
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"type":3,"data":{"packet":{"type":2,"data":["hello",1],"nsp":"/"},"opts":{"rooms":["room1"],"except":["x"],"flags":{}}},"uid":"a1b2c3","nsp":"/"}"#
        );
        assert_eq!(decode_cluster_message(&bytes).unwrap(), msg);
    }

    #[test]
    fn binary_makes_it_messagepack_and_survives_the_round_trip() {
        let data = Payload {
            value: serde_json::json!(["bin", {"_placeholder": true, "num": 0}]),
            attachments: vec![Bytes::from_static(&[1, 2, 3])],
        };
        let msg = broadcast(&[], data);
        let bytes = encode_cluster_message(&msg);
        assert_ne!(bytes[0], b'{', "binary data is MessagePack");
        assert_eq!(decode_cluster_message(&bytes).unwrap(), msg);
    }

    #[test]
    fn node_requests_and_responses_decode() {
        let fetch = br#"{"type":7,"data":{"opts":{"rooms":["vip"],"except":[],"flags":{}},"requestId":"0f0e"},"uid":"n1","nsp":"/"}"#;
        let msg = decode_cluster_message(fetch).unwrap();
        assert_eq!(msg.uid, "n1");
        let ClusterBody::FetchSockets { opts, request_id } = &msg.body else {
            panic!("{msg:?}")
        };
        assert_eq!(
            (opts.selector.rooms.as_slice(), request_id.as_str()),
            (&["vip".to_string()][..], "0f0e")
        );
        let emit =
            br#"{"type":9,"data":{"requestId":"77","packet":["ping",3]},"uid":"n1","nsp":"/"}"#;
        let msg = decode_cluster_message(emit).unwrap();
        assert!(matches!(
            &msg.body,
            ClusterBody::ServerSideEmit { packet, request_id: Some(id) } if packet.value == serde_json::json!(["ping", 3]) && id == "77"
        ));
        let join = br#"{"type":4,"data":{"opts":{"rooms":["abc"],"except":[],"flags":{}},"rooms":["vip"]},"uid":"n1","nsp":"/"}"#;
        assert!(matches!(
            decode_cluster_message(join).unwrap().body,
            ClusterBody::SocketsJoin { rooms, .. } if rooms == ["vip"]
        ));
        let heartbeat = br#"{"type":2,"uid":"n1","nsp":"/"}"#;
        assert_eq!(
            decode_cluster_message(heartbeat).unwrap().body,
            ClusterBody::Ignored(2)
        );
        assert!(decode_cluster_message(b"[1,2]").is_err());
        assert!(decode_cluster_message(b"{\"data\":{}}").is_err());
    }

    #[test]
    fn responses_round_trip() {
        for body in [
            ClusterBody::FetchSocketsResponse {
                request_id: "r".into(),
                sockets: vec![RemoteSocket {
                    id: "s".into(),
                    handshake: serde_json::json!({"auth": {}}),
                    rooms: vec!["s".into(), "vip".into()],
                    data: serde_json::json!({}),
                }],
            },
            ClusterBody::ServerSideEmitResponse {
                request_id: "r".into(),
                packet: Payload::json(serde_json::json!("pong")),
            },
            ClusterBody::BroadcastClientCount {
                request_id: "r".into(),
                client_count: 2,
            },
            ClusterBody::SocketsLeave {
                opts: BroadcastOpts::default(),
                rooms: vec!["a".into()],
            },
            ClusterBody::DisconnectSockets {
                opts: BroadcastOpts::default(),
                close: true,
            },
        ] {
            let msg = ClusterMessage {
                uid: "u".into(),
                nsp: "/chat".into(),
                body,
            };
            assert_eq!(
                decode_cluster_message(&encode_cluster_message(&msg)).unwrap(),
                msg
            );
        }
    }

    #[test]
    fn channels_follow_the_subscription_mode() {
        let sid20 = "abcdefghijklmnopqrst";
        let hub_sid = "abcdefghijklmnopqrstuv";
        let d = ShardedChannels::new("socket.io", "/", "me", SubscriptionMode::Dynamic);
        assert_eq!(d.main, "socket.io#/#");
        assert_eq!(d.own_responses, "socket.io#/#me#");
        assert_eq!(d.responses_to("n1"), "socket.io#/#n1#");
        assert_eq!(d.for_broadcast(&["vip".into()], false), "socket.io#/#vip#");
        assert_eq!(d.for_broadcast(&["vip".into()], true), "socket.io#/#");
        assert_eq!(
            d.for_broadcast(&["a".into(), "b".into()], false),
            "socket.io#/#"
        );
        assert_eq!(d.for_broadcast(&[], false), "socket.io#/#");
        assert_eq!(d.for_broadcast(&[sid20.into()], false), "socket.io#/#");
        assert_eq!(
            d.for_broadcast(&[hub_sid.into()], false),
            format!("socket.io#/#{hub_sid}#"),
            "hubbub's 22-character socket ids are not taken for socket ids"
        );
        let s = ShardedChannels::new("socket.io", "/", "me", SubscriptionMode::Static);
        assert_eq!(s.for_broadcast(&["vip".into()], false), "socket.io#/#");
        let p = ShardedChannels::new("socket.io", "/", "me", SubscriptionMode::DynamicPrivate);
        assert_eq!(
            p.for_broadcast(&[sid20.into()], false),
            format!("socket.io#/#{sid20}#")
        );
    }

    /// As `broadcasts_clients_cannot_decode_are_refused` for the classic adapter: a
    /// sharded peer's broadcast that the official client cannot decode is refused
    /// rather than relayed to every local client.
    #[test]
    fn broadcasts_clients_cannot_decode_are_refused() {
        for data in [
            serde_json::json!("not an array"),
            serde_json::json!([]),
            serde_json::json!(["disconnect"]),
            serde_json::json!(["ev", {"_placeholder": true, "num": 0}]),
        ] {
            let bytes = encode_cluster_message(&broadcast(&[], Payload::json(data.clone())));
            assert!(
                matches!(decode_cluster_message(&bytes), Err(WireError::Shape(_))),
                "{data}"
            );
        }
    }
}
