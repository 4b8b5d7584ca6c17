//! Broadcasting: the options that select recipients (rooms, exceptions,
//! flags), the packet as handed to the adapter, and [`BroadcastOperator`], the
//! builder handlers use (`ns.to("room").except(id).emit(...)`).
//!
//! A broadcast is encoded once per node ([`BroadcastPacket::frames`]) and the
//! same bytes go to every local recipient.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use smallvec::SmallVec;

use super::adapter::{AdapterError, SocketInfo};
use super::namespace::Namespace;
use super::packet::{self, EventPayload};
use super::rooms::Room;
use hubbub_engineio::Frame;

/// Flags of a broadcast, as in the reference adapter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// Deliver on this node only.
    pub local: bool,
}

/// Which sockets a broadcast or adapter operation targets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Only sockets in at least one of these rooms; empty means every socket.
    pub rooms: SmallVec<[Room; 1]>,
    /// Sockets in any of these rooms are skipped (a socket's own id is a room).
    pub except: SmallVec<[Room; 1]>,
    /// Flags.
    pub flags: BroadcastFlags,
}

/// An event to broadcast: the JSON array `["name", ...args]` (with binary
/// placeholders) and its attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastPacket {
    /// `["name", ...args]`.
    pub data: Value,
    /// Binary attachments referenced by placeholders in `data`.
    pub binary: Vec<Bytes>,
}

impl BroadcastPacket {
    /// An event packet from its name and arguments.
    pub fn event(name: &str, args: &[Value], binary: Vec<Bytes>) -> Self {
        let mut data = Vec::with_capacity(args.len() + 1);
        data.push(Value::String(name.to_owned()));
        data.extend_from_slice(args);
        BroadcastPacket {
            data: Value::Array(data),
            binary,
        }
    }

    /// Encodes the packet for namespace `nsp`: one text frame and the attachments.
    pub fn frames(&self, nsp: &str) -> SmallVec<[Frame; 1]> {
        let kind = packet::event_type(&self.binary);
        let text = packet::encode_message(kind, self.binary.len(), nsp, None, Some(&self.data));
        let mut frames = SmallVec::with_capacity(1 + self.binary.len());
        frames.push(Frame::Text(text.into()));
        frames.extend(self.binary.iter().cloned().map(Frame::Binary));
        frames
    }
}

/// Encodes an event for one socket (not a broadcast).
pub(crate) fn event_frames(
    nsp: &str,
    name: &str,
    args: &[Value],
    binary: &[Bytes],
    id: Option<u64>,
) -> SmallVec<[Frame; 1]> {
    let payload = EventPayload { name, args };
    let kind = packet::event_type(binary);
    let text = packet::encode_message(kind, binary.len(), nsp, id, Some(&payload));
    let mut frames = SmallVec::with_capacity(1 + binary.len());
    frames.push(Frame::Text(text.into()));
    frames.extend(binary.iter().cloned().map(Frame::Binary));
    frames
}

/// A broadcast being built: `ns.to(room).except(other).emit(...)`.
#[derive(Clone)]
pub struct BroadcastOperator {
    ns: Arc<Namespace>,
    opts: BroadcastOptions,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Arc<Namespace>, opts: BroadcastOptions) -> Self {
        BroadcastOperator { ns, opts }
    }

    /// Also targets `room` (sockets in any listed room receive it once).
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.rooms.contains(&room) {
            self.opts.rooms.push(room);
        }
        self
    }

    /// Skips sockets in `room` (or the socket whose id it is).
    pub fn except(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.except.contains(&room) {
            self.opts.except.push(room);
        }
        self
    }

    /// Only this node's sockets.
    pub fn local(mut self) -> Self {
        self.opts.flags.local = true;
        self
    }

    /// The options built so far.
    pub fn options(&self) -> &BroadcastOptions {
        &self.opts
    }

    /// Emits an event with JSON arguments.
    pub fn emit(&self, event: &str, args: &[Value]) {
        self.emit_binary(event, args, Vec::new());
    }

    /// Emits an event whose arguments reference binary attachments by placeholder.
    pub fn emit_binary(&self, event: &str, args: &[Value], binary: Vec<Bytes>) {
        let packet = BroadcastPacket::event(event, args, binary);
        self.ns
            .adapter()
            .broadcast(&self.ns, packet, self.opts.clone());
    }

    /// The matching sockets on every node.
    pub async fn fetch_sockets(&self) -> Result<Vec<SocketInfo>, AdapterError> {
        self.ns
            .adapter()
            .fetch_sockets(&self.ns, self.opts.clone())
            .await
    }

    /// Makes the matching sockets join `rooms`, on every node.
    pub async fn join(&self, rooms: Vec<Room>) {
        self.ns
            .adapter()
            .add_sockets(&self.ns, self.opts.clone(), rooms)
            .await
    }

    /// Makes the matching sockets leave `rooms`, on every node.
    pub async fn leave(&self, rooms: Vec<Room>) {
        self.ns
            .adapter()
            .del_sockets(&self.ns, self.opts.clone(), rooms)
            .await
    }

    /// Disconnects the matching sockets, on every node.
    pub async fn disconnect(&self, close: bool) {
        self.ns
            .adapter()
            .disconnect_sockets(&self.ns, self.opts.clone(), close)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn broadcast_frames_are_encoded_once_with_attachments() {
        let p = BroadcastPacket::event(
            "messages",
            &[json!({"a":1}), packet::placeholder(0)],
            vec![Bytes::from_static(&[1, 2])],
        );
        let frames = p.frames("/");
        assert_eq!(
            frames[0],
            Frame::Text(r#"451-["messages",{"a":1},{"_placeholder":true,"num":0}]"#.into())
        );
        assert_eq!(frames[1], Frame::Binary(Bytes::from_static(&[1, 2])));
        let plain = BroadcastPacket::event("x", &[], vec![]).frames("/chat");
        assert_eq!(plain.as_slice(), &[Frame::Text(r#"42/chat,["x"]"#.into())]);
    }
}
