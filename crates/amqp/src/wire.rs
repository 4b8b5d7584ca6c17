//! The bodies of the AMQP messages hubbub replicas exchange, encoded and decoded without
//! I/O. Who sent a message, its sequence number and its kind travel in the AMQP
//! properties (`link` owns those); this module owns only the body.
//!
//! A body is a 4-byte big-endian length, that many bytes of JSON (a [`Body`], tagged by
//! `"t"`), then each binary attachment as a 4-byte big-endian length and its bytes. The
//! JSON says how many attachments follow (`"bins"`), so a truncated message is an error
//! rather than a packet with a missing attachment. The format is hubbub's own: only
//! hubbub replicas share an exchange (Node's adapters speak Redis or their own AMQP
//! layouts), so nothing here needs to match another implementation.

use bytes::{BufMut, Bytes};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Fewer bytes than a length prefix announced.
    #[error("message truncated: {0}")]
    Truncated(&'static str),
    /// The JSON part is not a known body.
    #[error("invalid message json: {0}")]
    Json(#[from] serde_json::Error),
    /// Bytes left over after the announced attachments.
    #[error("{0} unexpected trailing bytes")]
    Trailing(usize),
}

/// Which sockets an operation targets: in any of `rooms` (all when empty), in none of `except`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selector {
    /// Rooms whose members are selected; empty selects every socket.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rooms: Vec<String>,
    /// Rooms whose members are skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub except: Vec<String>,
}

/// A socket on another replica, as `fetch_sockets` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemoteSocket {
    /// Its Socket.IO id.
    pub id: String,
    /// Its rooms, its own id included.
    pub rooms: Vec<String>,
    /// Its CONNECT payload.
    pub auth: Value,
    /// socket.io's `socket.handshake` without `auth` (absent from older replicas: `null`).
    #[serde(default)]
    pub handshake: Value,
    /// socket.io's `socket.data` (absent from older replicas: `null`).
    #[serde(default)]
    pub data: Value,
}

/// One message between replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Body {
    /// An event for the matching sockets of namespace `nsp` (`data` is `["name", ...args]`).
    Broadcast {
        /// The namespace.
        nsp: String,
        /// Who receives it.
        sel: Selector,
        /// `["name", ...args]` with binary placeholders.
        data: Value,
        /// How many binary attachments follow the JSON.
        #[serde(default)]
        bins: usize,
    },
    /// Asks every other replica for its sockets matching `sel` (answered by [`Body::Sockets`]).
    FetchSockets {
        /// The namespace.
        nsp: String,
        /// The request id the answers carry.
        id: String,
        /// Which sockets.
        sel: Selector,
    },
    /// Asks every other replica for its rooms (answered by [`Body::Rooms`]).
    AllRooms {
        /// The namespace.
        nsp: String,
        /// The request id the answers carry.
        id: String,
    },
    /// Makes the matching sockets join `join`.
    AddRooms {
        /// The namespace.
        nsp: String,
        /// Which sockets.
        sel: Selector,
        /// The rooms to join.
        join: Vec<String>,
    },
    /// Makes the matching sockets leave `leave`.
    DelRooms {
        /// The namespace.
        nsp: String,
        /// Which sockets.
        sel: Selector,
        /// The rooms to leave.
        leave: Vec<String>,
    },
    /// Disconnects the matching sockets (and their connection when `close`).
    Disconnect {
        /// The namespace.
        nsp: String,
        /// Which sockets.
        sel: Selector,
        /// Close the whole Engine.IO connection too.
        close: bool,
    },
    /// An event for the other replicas' server-side handlers (`serverSideEmit`).
    ServerSideEmit {
        /// The namespace.
        nsp: String,
        /// `[event, ...args]`.
        args: Vec<Value>,
    },
    /// One replica's answer to [`Body::FetchSockets`].
    Sockets {
        /// The request id.
        id: String,
        /// Its matching sockets.
        sockets: Vec<RemoteSocket>,
    },
    /// One replica's answer to [`Body::AllRooms`].
    Rooms {
        /// The request id.
        id: String,
        /// Its rooms.
        rooms: Vec<String>,
    },
}

impl Body {
    /// The namespace a broadcast or request is about (`None` for answers).
    pub fn nsp(&self) -> Option<&str> {
        match self {
            Body::Broadcast { nsp, .. }
            | Body::FetchSockets { nsp, .. }
            | Body::AllRooms { nsp, .. }
            | Body::AddRooms { nsp, .. }
            | Body::DelRooms { nsp, .. }
            | Body::Disconnect { nsp, .. }
            | Body::ServerSideEmit { nsp, .. } => Some(nsp),
            Body::Sockets { .. } | Body::Rooms { .. } => None,
        }
    }
}

/// The JSON of a broadcast, borrowed from the packet (same JSON as [`Body::Broadcast`]).
#[derive(Serialize)]
#[serde(tag = "t", rename = "broadcast")]
struct BroadcastRef<'a> {
    nsp: &'a str,
    sel: &'a Selector,
    data: &'a Value,
    bins: usize,
}

fn frame(json: Vec<u8>, binary: &[Bytes]) -> Vec<u8> {
    let extra: usize = binary.iter().map(|b| 4 + b.len()).sum();
    let mut out = Vec::with_capacity(4 + json.len() + extra);
    out.put_u32(json.len() as u32);
    out.extend_from_slice(&json);
    for b in binary {
        out.put_u32(b.len() as u32);
        out.extend_from_slice(b);
    }
    out
}

/// Encodes a broadcast of `data` with its attachments, without copying the packet.
pub fn encode_broadcast(nsp: &str, sel: &Selector, data: &Value, binary: &[Bytes]) -> Vec<u8> {
    let json = serde_json::to_vec(&BroadcastRef {
        nsp,
        sel,
        data,
        bins: binary.len(),
    })
    // unwrap: strings and a serde_json value always serialize.
    .expect("broadcasts serialize");
    frame(json, binary)
}

/// Encodes a body without attachments (a broadcast's `bins` must then be 0).
pub fn encode(body: &Body) -> Vec<u8> {
    // unwrap: bodies are made of strings, numbers and serde_json values, which always serialize.
    frame(
        serde_json::to_vec(body).expect("wire bodies serialize"),
        &[],
    )
}

fn take_prefixed(buf: &Bytes, at: &mut usize, what: &'static str) -> Result<Bytes, WireError> {
    let rest = &buf[*at..];
    if rest.len() < 4 {
        return Err(WireError::Truncated(what));
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    if rest.len() - 4 < len {
        return Err(WireError::Truncated(what));
    }
    let start = *at + 4;
    *at = start + len;
    Ok(buf.slice(start..start + len))
}

/// Decodes a body and its attachments; attachments share `buf`'s memory.
pub fn decode(buf: &Bytes) -> Result<(Body, Vec<Bytes>), WireError> {
    let mut at = 0;
    let json = take_prefixed(buf, &mut at, "json")?;
    let body: Body = serde_json::from_slice(&json)?;
    let count = match &body {
        Body::Broadcast { bins, .. } => *bins,
        _ => 0,
    };
    let mut binary = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        binary.push(take_prefixed(buf, &mut at, "attachment")?);
    }
    if at != buf.len() {
        return Err(WireError::Trailing(buf.len() - at));
    }
    Ok((body, binary))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sel(rooms: &[&str], except: &[&str]) -> Selector {
        Selector {
            rooms: rooms.iter().map(|s| s.to_string()).collect(),
            except: except.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_broadcast_is_length_prefixed_json() {
        let body = Body::Broadcast {
            nsp: "/".into(),
            sel: sel(&[], &["abc"]),
            data: json!(["messages", {"text": "hi"}]),
            bins: 0,
        };
        let bytes = encode(&body);
        let json = br#"{"t":"broadcast","nsp":"/","sel":{"except":["abc"]},"data":["messages",{"text":"hi"}],"bins":0}"#;
        assert_eq!(&bytes[..4], &(json.len() as u32).to_be_bytes());
        assert_eq!(&bytes[4..], json);
        let (back, binary) = decode(&Bytes::from(bytes)).unwrap();
        assert_eq!(back, body);
        assert!(binary.is_empty());
    }

    #[test]
    fn attachments_follow_the_json_and_are_counted() {
        let bytes = Bytes::from(encode_broadcast(
            "/chat",
            &sel(&["room"], &[]),
            &json!(["file", {"_placeholder": true, "num": 0}]),
            &[Bytes::from_static(b"\x00\x01\x02")],
        ));
        assert_eq!(&bytes[bytes.len() - 7..], b"\x00\x00\x00\x03\x00\x01\x02");
        let (back, binary) = decode(&bytes).unwrap();
        assert!(matches!(back, Body::Broadcast { bins: 1, .. }));
        assert_eq!(binary, vec![Bytes::from_static(b"\x00\x01\x02")]);
    }

    #[test]
    fn requests_and_answers_round_trip() {
        let bodies = [
            Body::FetchSockets {
                nsp: "/".into(),
                id: "r1".into(),
                sel: sel(&["a"], &[]),
            },
            Body::AllRooms {
                nsp: "/".into(),
                id: "r2".into(),
            },
            Body::AddRooms {
                nsp: "/".into(),
                sel: sel(&[], &[]),
                join: vec!["x".into()],
            },
            Body::DelRooms {
                nsp: "/".into(),
                sel: sel(&["s1"], &[]),
                leave: vec!["x".into()],
            },
            Body::Disconnect {
                nsp: "/".into(),
                sel: sel(&["s1"], &[]),
                close: true,
            },
            Body::ServerSideEmit {
                nsp: "/".into(),
                args: vec![json!("ping"), json!(1)],
            },
            Body::Sockets {
                id: "r1".into(),
                sockets: vec![RemoteSocket {
                    id: "s1".into(),
                    rooms: vec!["s1".into(), "a".into()],
                    auth: json!({"token": "t"}),
                    handshake: json!({"headers": {}, "issued": 1}),
                    data: json!({"name": "ann"}),
                }],
            },
            Body::Rooms {
                id: "r2".into(),
                rooms: vec!["a".into()],
            },
        ];
        for body in bodies {
            let (back, binary) = decode(&Bytes::from(encode(&body))).unwrap();
            assert_eq!(back, body);
            assert!(binary.is_empty());
        }
    }

    #[test]
    fn damaged_messages_are_errors() {
        assert!(matches!(
            decode(&Bytes::from_static(b"\x00\x00")),
            Err(WireError::Truncated("json"))
        ));
        assert!(matches!(
            decode(&Bytes::from_static(b"\x00\x00\x00\x09{\"t\":1}")),
            Err(WireError::Truncated("json"))
        ));
        assert!(matches!(
            decode(&Bytes::from_static(b"\x00\x00\x00\x09{\"t\":\"x\"}")),
            Err(WireError::Json(_))
        ));
        let good = encode_broadcast(
            "/",
            &Selector::default(),
            &json!(["e"]),
            &[Bytes::from_static(b"abc")],
        );
        let cut = Bytes::copy_from_slice(&good[..good.len() - 1]);
        assert!(matches!(
            decode(&cut),
            Err(WireError::Truncated("attachment"))
        ));
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(
            decode(&Bytes::from(long)),
            Err(WireError::Trailing(1))
        ));
    }
}
