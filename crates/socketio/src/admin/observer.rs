//! Development mode: what the core reports about sockets, and how it reaches the UI.
//!
//! [`SocketObserver`] is the one hook the Socket.IO core calls (from
//! `Namespace::add_socket`/`remove_socket`, `Socket::join`/`leave`/`emit` and the
//! client's event dispatch), and only when one is set: production mode sets none,
//! so those call sites cost one empty `OnceLock` check. [`AdminObserver`] turns
//! each call into the admin namespace's `socket_connected`, `socket_disconnected`,
//! `room_joined`, `room_left`, `event_received` and `event_sent`, broadcast through
//! the adapter so that every node's dashboards see every node's sockets.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::protocol::{self, SerializedSocket};
use crate::Namespace;
use crate::socket::{DisconnectReason, Socket};

/// What the core reports when an observer is set (development mode).
pub trait SocketObserver: Send + Sync + 'static {
    /// A socket joined its namespace (after its CONNECT was accepted).
    fn connected(&self, socket: &Arc<Socket>);
    /// A socket left its namespace.
    fn disconnected(&self, socket: &Socket, reason: DisconnectReason);
    /// A socket joined a room (not its own id's).
    fn joined(&self, socket: &Socket, room: &str);
    /// A socket left a room.
    fn left(&self, socket: &Socket, room: &str);
    /// A client sent an event (`name`, then its arguments).
    fn event_received(&self, socket: &Socket, name: &str, args: &[Value]);
    /// The server emitted an event to this one socket (broadcasts are not reported,
    /// as with the Node package's `onAnyOutgoing`).
    fn event_sent(&self, socket: &Socket, name: &str, args: &[Value]);
}

/// Reports to the admin namespace.
pub struct AdminObserver {
    admin: Weak<Namespace>,
}

impl AdminObserver {
    /// An observer reporting to `admin`.
    pub fn new(admin: &Arc<Namespace>) -> Self {
        AdminObserver {
            admin: Arc::downgrade(admin),
        }
    }

    fn emit(&self, event: &str, args: &[Value]) {
        if let Some(admin) = self.admin.upgrade() {
            admin.emit(event, args);
        }
    }

    /// Whether `socket` belongs to the admin namespace itself: its events are not
    /// reported (as in the Node package), or every report would report itself.
    fn is_admin(&self, socket: &Socket) -> bool {
        self.admin
            .upgrade()
            .is_some_and(|a| Arc::ptr_eq(&a, socket.ns()))
    }
}

fn now() -> Value {
    Value::String(protocol::iso_timestamp(SystemTime::now()))
}

fn event_array(name: &str, args: &[Value]) -> Value {
    let mut all = Vec::with_capacity(args.len() + 1);
    all.push(Value::String(name.to_owned()));
    all.extend_from_slice(args);
    Value::Array(all)
}

impl SocketObserver for AdminObserver {
    fn connected(&self, socket: &Arc<Socket>) {
        self.emit("socket_connected", &[json!(serialize(socket)), now()]);
    }

    fn disconnected(&self, socket: &Socket, reason: DisconnectReason) {
        self.emit(
            "socket_disconnected",
            &[
                json!(socket.ns().name()),
                json!(&**socket.id()),
                json!(protocol::socket_disconnect_reason(reason)),
                now(),
            ],
        );
    }

    fn joined(&self, socket: &Socket, room: &str) {
        self.emit(
            "room_joined",
            &[
                json!(socket.ns().name()),
                json!(room),
                json!(&**socket.id()),
                now(),
            ],
        );
    }

    fn left(&self, socket: &Socket, room: &str) {
        self.emit(
            "room_left",
            &[
                json!(socket.ns().name()),
                json!(room),
                json!(&**socket.id()),
                now(),
            ],
        );
    }

    fn event_received(&self, socket: &Socket, name: &str, args: &[Value]) {
        if self.is_admin(socket) {
            return;
        }
        self.emit(
            "event_received",
            &[
                json!(socket.ns().name()),
                json!(&**socket.id()),
                event_array(name, args),
                now(),
            ],
        );
    }

    fn event_sent(&self, socket: &Socket, name: &str, args: &[Value]) {
        if self.is_admin(socket) {
            return;
        }
        self.emit(
            "event_sent",
            &[
                json!(socket.ns().name()),
                json!(&**socket.id()),
                event_array(name, args),
                now(),
            ],
        );
    }
}

/// A local socket as the UI shows it.
pub fn serialize(socket: &Socket) -> SerializedSocket {
    let handshake = socket.handshake();
    SerializedSocket {
        id: socket.id().to_string(),
        client_id: Some(protocol::client_id(socket.session_id())),
        transport: Some(socket.transport().as_str()),
        nsp: socket.ns().name().to_owned(),
        data: json!({}),
        handshake: protocol::handshake_json(handshake, 0),
        rooms: socket.rooms().iter().map(|r| r.to_string()).collect(),
    }
}
