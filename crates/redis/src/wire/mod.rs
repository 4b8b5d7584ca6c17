//! The wire format of the Node.js `@socket.io/redis-adapter` (classic pub/sub variant, 8.x)
//! and `@socket.io/redis-emitter`, as pure encode/decode functions: no Redis, no sockets.
//!
//! What travels, per namespace `nsp` and channel prefix `key` (default `socket.io`):
//!
//! | channel | payload |
//! |---|---|
//! | `<key>#<nsp>#` | broadcast, MessagePack `[uid, packet, opts]` |
//! | `<key>#<nsp>#<room>#` | the same, when `opts.rooms` is exactly one room |
//! | `<key>-request#<nsp>#` | requests: JSON object, except `BROADCAST` (MessagePack) |
//! | `<key>-response#<nsp>#` | responses: JSON object, except `BROADCAST_ACK` (MessagePack) |
//! | `<key>-response#<nsp>#<uid>#` | the same, when the requester asked for a private channel |
//!
//! `packet` is `{type, data, nsp}` (type 2 = EVENT even when `data` holds binary, which is
//! MessagePack `bin`); `opts` is `{rooms, except, flags}`. A receiver tells JSON from
//! MessagePack by the first byte (`{` is JSON). Each node has a random `uid` and ignores its
//! own broadcasts; the emitter's uid is `"emitter"`. The server count used to know how many
//! responses to await is `PUBSUB NUMSUB <key>-request#<nsp>#`. Details and every request and
//! response shape: `docs/redis.md`.
//!
//! hubbub appends one element to its own broadcasts, `[uid, packet, opts, sent_at_us]`: the
//! publish time in microseconds since the Unix epoch, for the pub/sub lag histogram. The Node
//! adapter destructures only the first three elements, so this stays compatible.
//!
//! Packet data is represented the way Socket.IO itself does before it writes binary frames:
//! a JSON value in which every binary blob is replaced by `{"_placeholder":true,"num":N}` and
//! the blobs are kept in order in `attachments` ([`Payload`]).

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{Map, Number, Value as Json};

/// The uid that `@socket.io/redis-emitter` puts into its broadcasts and requests.
pub const EMITTER_UID: &str = "emitter";

/// Socket.IO packet type EVENT (what the adapter sends, with or without binary).
pub const PACKET_TYPE_EVENT: u8 = 2;
/// Socket.IO packet type BINARY_EVENT (accepted on receipt and treated as EVENT).
pub const PACKET_TYPE_BINARY_EVENT: u8 = 5;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Not valid MessagePack.
    #[error("invalid messagepack: {0}")]
    MessagePack(String),
    /// Not valid JSON.
    #[error("invalid json: {0}")]
    Json(String),
    /// Valid encoding, but not the shape the adapter protocol defines.
    #[error("unexpected message shape: {0}")]
    Shape(String),
}

fn shape(what: impl Into<String>) -> WireError {
    WireError::Shape(what.into())
}

mod broadcast;
mod channels;
mod request;
mod response;
mod value;

pub mod sharded;

pub use broadcast::*;
pub use channels::*;
pub use request::*;
pub use response::*;
pub use value::*;

// ---- helpers ---------------------------------------------------------------------------

/// JavaScript strings survive any bytes; replace invalid UTF-8 rather than drop the message.
fn utf8_lossy(s: rmpv::Utf8String) -> String {
    match String::from_utf8(s.into_bytes()) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn write_mp(value: &Mp) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    // unwrap: writing MessagePack into a Vec<u8> cannot fail (the writer is infallible).
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

/// Deepest nesting of arrays and maps accepted in a MessagePack message (a binary value
/// counts one level: it becomes a `{"_placeholder":true,"num":n}` object). A message is
/// re-encoded as JSON (requests, client packets), and JSON decoders, hubbub's included
/// (`serde_json`: 127 levels), refuse deeper values; 100 leaves room for the envelopes.
pub const MAX_NESTING: usize = 100;

fn read_mp(bytes: &[u8]) -> Result<Mp, WireError> {
    let mut rd = bytes;
    // rmpv counts about two steps per level; its bound keeps its recursion short whatever
    // the input (its default, 1024, lets a message overflow a worker's stack in debug builds).
    let value = rmpv::decode::read_value_with_max_depth(&mut rd, 4 * MAX_NESTING)
        .map_err(|e| WireError::MessagePack(e.to_string()))?;
    if nesting_exceeds(&value, MAX_NESTING) {
        return Err(WireError::MessagePack(format!(
            "nested deeper than {MAX_NESTING} levels"
        )));
    }
    Ok(value)
}

/// Whether arrays, maps and binary values in `value` nest deeper than `max` (iterative: the
/// input decides the depth).
fn nesting_exceeds(value: &Mp, max: usize) -> bool {
    let mut stack = vec![(value, 0usize)];
    while let Some((v, depth)) = stack.pop() {
        let depth = match v {
            Mp::Array(_) | Mp::Map(_) | Mp::Binary(_) => depth + 1,
            _ => continue,
        };
        if depth > max {
            return true;
        }
        match v {
            Mp::Array(items) => stack.extend(items.iter().map(|i| (i, depth))),
            Mp::Map(pairs) => {
                for (k, v) in pairs {
                    stack.push((k, depth));
                    stack.push((v, depth));
                }
            }
            _ => {}
        }
    }
    false
}

fn json_bytes(value: &Json) -> Vec<u8> {
    // unwrap: serializing a serde_json::Value (string keys only) cannot fail.
    serde_json::to_vec(value).expect("a json value always serializes")
}

/// JSON when the payload starts with `{` (what the Node adapter checks), else MessagePack.
fn read_any(bytes: &[u8]) -> Result<Mp, WireError> {
    if bytes.first() == Some(&b'{') {
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| WireError::Json(e.to_string()))?;
        Ok(json_to_mp(&json, &[]))
    } else {
        read_mp(bytes)
    }
}

fn field<'a>(map: &'a Mp, key: &str) -> Option<&'a Mp> {
    match map {
        Mp::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Room names and ids are strings, but JavaScript lets numbers through (`io.to(42)`).
fn id_string(v: &Mp) -> Option<String> {
    match v {
        Mp::String(s) => s.as_str().map(str::to_owned),
        Mp::Integer(i) => Some(i.to_string()),
        Mp::F64(f) => Some(f.to_string()),
        Mp::F32(f) => Some(f.to_string()),
        _ => None,
    }
}

fn string_list(v: Option<&Mp>, what: &str) -> Result<Vec<String>, WireError> {
    match v {
        None | Some(Mp::Nil) => Ok(Vec::new()),
        Some(Mp::Array(items)) => items
            .iter()
            .map(|i| id_string(i).ok_or_else(|| shape(format!("{what} holds a non-string"))))
            .collect(),
        Some(_) => Err(shape(format!("{what} is not an array"))),
    }
}

#[cfg(test)]
mod tests;
