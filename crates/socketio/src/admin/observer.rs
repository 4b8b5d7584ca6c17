//! Development mode: what the core reports about sockets, and how it reaches the UI.
//!
//! [`SocketObserver`] is the one hook the Socket.IO core calls (from
//! `Namespace::add_socket`/`remove_socket`, `Socket::join`/`leave`/`emit` and the
//! client's event dispatch), and only when one is set: production mode sets none,
//! so those call sites cost one empty `OnceLock` check. [`AdminObserver`] turns
//! each call into the admin namespace's `socket_connected`, `socket_disconnected`,
//! `room_joined`, `room_left`, `event_received` and `event_sent`, and into
//! `socket_updated` when a socket's transport upgrades or the application sets its data,
//! broadcast through the adapter so that every node's dashboards see every node's sockets.

use std::sync::{Arc, Weak};
use std::time::SystemTime;

use serde_json::{Value, json};

use super::protocol::{self, SerializedSocket};
use crate::socket::{DisconnectReason, Socket, handshake_json};
use crate::{Namespace, SocketInfo};

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
    /// The socket's Engine.IO session moved to another transport (an upgrade to WebSocket).
    fn transport_changed(&self, socket: &Socket);
    /// The application set a value of the socket's data ([`Socket::set_data`]).
    fn data_changed(&self, socket: &Socket);
}

/// The key under which the Node package keeps its own fields in `socket.data`; hubbub adds
/// it only to what other nodes' `fetchSockets()` see, and the UI never shows it as data.
pub const ADMIN_DATA_KEY: &str = "_admin";

/// `{clientId, transport}`: what the Node package keeps in `socket.data._admin`, so that a
/// dashboard on another node shows a remote socket's client id and transport.
pub fn admin_data(socket: &Socket) -> Value {
    json!({
        "clientId": protocol::client_id(socket.session_id()),
        "transport": socket.transport().as_str(),
    })
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

    fn transport_changed(&self, socket: &Socket) {
        // The Node package's `conn.on("upgrade")`: `{id, nsp, transport}`.
        self.emit(
            "socket_updated",
            &[json!({
                "id": &**socket.id(),
                "nsp": socket.ns().name(),
                "transport": socket.transport().as_str(),
            })],
        );
    }

    fn data_changed(&self, socket: &Socket) {
        // The Node package's `socket.data` proxy: `{id, nsp, data}`, the whole object.
        self.emit(
            "socket_updated",
            &[json!({
                "id": &**socket.id(),
                "nsp": socket.ns().name(),
                "data": socket.data_object(),
            })],
        );
    }
}

/// A local socket as the UI shows it.
pub fn serialize(socket: &Socket) -> SerializedSocket {
    SerializedSocket {
        id: socket.id().to_string(),
        client_id: Some(protocol::client_id(socket.session_id())),
        transport: Some(socket.transport().as_str().to_owned()),
        nsp: socket.ns().name().to_owned(),
        data: socket.data_object(),
        handshake: protocol::serialized_handshake(&handshake_json(socket.handshake())),
        rooms: socket.rooms().iter().map(|r| r.to_string()).collect(),
    }
}

/// A socket of another node, from what its `fetchSockets()` answer carries (hubbub and
/// Node nodes alike): handshake, rooms, and data, whose `_admin` gives the client id and
/// transport when that node runs the admin UI in development mode.
pub fn serialize_remote(info: &SocketInfo, nsp: &str) -> SerializedSocket {
    let mut data = match &info.data {
        Value::Object(map) => map.clone(),
        _ => serde_json::Map::new(),
    };
    let admin = data.remove(ADMIN_DATA_KEY);
    let field = |key: &str| {
        admin
            .as_ref()
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    SerializedSocket {
        id: info.id.to_string(),
        client_id: field("clientId"),
        transport: field("transport"),
        nsp: nsp.to_owned(),
        data: Value::Object(data),
        handshake: protocol::serialized_handshake(&info.handshake),
        rooms: info.rooms.iter().map(|r| r.to_string()).collect(),
    }
}
