//! One Socket.IO socket: a client's membership in one namespace. Handlers get
//! an `Arc<Socket>` to emit, wait for acks, join and leave rooms, broadcast to
//! others, keep per-socket data and disconnect.
//!
//! With connection state recovery on, a socket also has a private session id (`pid`), its
//! session is saved to the recovery store whenever its rooms or [`Socket::data`] change, and
//! its direct emits end with the namespace's log position (see `recovery.rs`).

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::Value;
use smallvec::SmallVec;

use super::ack::{AckError, AckResponse, PendingAcks};
use super::broadcast::{BroadcastOperator, BroadcastOptions, event_frames};
use super::namespace::Namespace;
use super::packet::{self, PacketType};
use super::recovery::{Offset, SessionRecord, SessionSource};
use super::rooms::Room;
use super::{Client, Sid};
use hubbub_engineio::{CloseReason, Frame, Handshake, SendError, Session, Transport};

/// Why a socket left its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent a DISCONNECT for the namespace.
    ClientNamespaceDisconnect,
    /// The server disconnected the socket.
    ServerNamespaceDisconnect,
    /// The underlying connection ended.
    Transport(CloseReason),
}

/// An event received from a client.
#[derive(Debug)]
pub struct Event {
    /// The event name.
    pub name: String,
    /// The arguments after the name (binary values as placeholders).
    pub args: Vec<Value>,
    /// Binary attachments, in placeholder order.
    pub binary: Vec<Bytes>,
    /// Present when the client asked for an ack.
    pub ack: Option<super::ack::AckSender>,
}

/// Why an emit failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The socket is no longer connected.
    #[error("socket disconnected")]
    Disconnected,
    /// The client's queue was full; it has been disconnected.
    #[error("client too slow; disconnected")]
    Overflow,
}

impl DisconnectReason {
    /// Whether the session may be restored afterwards: socket.io's recoverable reasons
    /// (`transport close`, `transport error`, `ping timeout`, `forced close`, `server shutting
    /// down`, `forced server close`). A namespace DISCONNECT either way, or a connection closed
    /// for breaking the protocol, ends the session for good.
    pub fn is_recoverable(self) -> bool {
        match self {
            DisconnectReason::ClientNamespaceDisconnect
            | DisconnectReason::ServerNamespaceDisconnect => false,
            DisconnectReason::Transport(reason) => matches!(
                reason,
                CloseReason::ClientClose
                    | CloseReason::TransportClose
                    | CloseReason::TransportError
                    | CloseReason::PingTimeout
                    | CloseReason::SlowConsumer
                    | CloseReason::ServerClose
                    | CloseReason::Shutdown
            ),
        }
    }
}

impl From<SendError> for EmitError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Overflow => EmitError::Overflow,
        }
    }
}

/// Typed per-socket data for handlers (`socket.extensions().insert(Nick(..))`).
#[derive(Default)]
pub struct Extensions {
    map: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl Extensions {
    /// Stores a value, replacing one of the same type.
    pub fn insert<T: Any + Send + Sync>(&self, value: T) {
        self.map.lock().insert(TypeId::of::<T>(), Arc::new(value));
    }

    /// The value of type `T`, if any.
    pub fn get<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let v = self.map.lock().get(&TypeId::of::<T>()).cloned()?;
        v.downcast::<T>().ok()
    }

    /// Removes the value of type `T`.
    pub fn remove<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let v = self.map.lock().remove(&TypeId::of::<T>())?;
        v.downcast::<T>().ok()
    }
}

/// Header values never shown outside the server (the admin UI, other nodes' `fetchSockets()`):
/// the connection's credentials.
const REDACTED_HEADERS: [&str; 2] = ["cookie", "authorization"];

/// socket.io's `socket.handshake` without `auth`, as a `fetchSockets()` answer carries it:
/// `{headers, time, address, xdomain, secure, issued, url, query}` from the Engine.IO
/// handshake request (`time` as JSON encodes a `Date`; `address` the peer's; the credential
/// headers `[redacted]`). Without a handshake (the engine keeps them only for the admin UI,
/// [`hubbub_engineio::Engine::keep_handshakes`]) the same keys with empty values of the
/// same types, so that a Node peer's code reading them does not break.
pub fn handshake_json(h: Option<&Handshake>) -> Value {
    let Some(h) = h else {
        return serde_json::json!({
            "headers": {},
            "time": crate::admin::protocol::iso_timestamp(std::time::UNIX_EPOCH),
            "address": "",
            "xdomain": false,
            "secure": false,
            "issued": 0,
            "url": "",
            "query": {},
        });
    };
    let headers: serde_json::Map<String, Value> = h
        .headers
        .iter()
        .map(|(name, value)| {
            let shown = if REDACTED_HEADERS.contains(&name.as_str()) {
                "[redacted]"
            } else {
                value.as_str()
            };
            (name.clone(), Value::String(shown.to_owned()))
        })
        .collect();
    let query: serde_json::Map<String, Value> = h
        .query
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    serde_json::json!({
        "headers": headers,
        "time": crate::admin::protocol::iso_timestamp(
            std::time::UNIX_EPOCH + Duration::from_millis(h.issued_ms)
        ),
        "address": h.address,
        "xdomain": h.origin.is_some(),
        "secure": h.secure,
        "issued": h.issued_ms,
        "url": h.url,
        "query": query,
    })
}

/// A client's socket in one namespace.
pub struct Socket {
    id: Sid,
    ns: Arc<Namespace>,
    session: Arc<Session>,
    client: Weak<Client>,
    auth: Value,
    connected: AtomicBool,
    rooms: Mutex<SmallVec<[Room; 2]>>,
    acks: Mutex<PendingAcks>,
    extensions: Extensions,
    /// The private session id, with recovery on (and the log position known at CONNECT).
    pid: Option<Sid>,
    /// Whether this socket restored an earlier session.
    recovered: bool,
    /// The log position when its session started (kept across recoveries).
    since: Mutex<Option<Offset>>,
    /// Per-socket data that survives a recovery (socket.io's `socket.data`): a JSON object.
    data: Mutex<serde_json::Map<String, Value>>,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("ns", &self.ns.name())
            .finish()
    }
}

impl Socket {
    pub(crate) fn new(
        ns: Arc<Namespace>,
        session: Arc<Session>,
        client: Weak<Client>,
        auth: Value,
    ) -> Arc<Socket> {
        Self::with_session(ns, session, client, auth, None, None)
    }

    /// A socket for a new session (`restored: None`; a `pid` when recovery is offered) or for a
    /// restored one (its id, pid, data and start position; its rooms are joined on admission).
    pub(crate) fn with_session(
        ns: Arc<Namespace>,
        session: Arc<Session>,
        client: Weak<Client>,
        auth: Value,
        pid: Option<Sid>,
        restored: Option<&SessionRecord>,
    ) -> Arc<Socket> {
        let (id, pid, data, since) = match restored {
            Some(r) => (
                Sid::from(r.sid.as_str()),
                Some(Sid::from(r.pid.as_str())),
                r.data.as_object().cloned().unwrap_or_default(),
                Some(r.since),
            ),
            None => (
                hubbub_engineio::session::random_id(),
                pid,
                Default::default(),
                None,
            ),
        };
        Arc::new(Socket {
            id,
            ns,
            session,
            client,
            auth,
            connected: AtomicBool::new(false),
            rooms: Mutex::new(SmallVec::new()),
            acks: Mutex::new(PendingAcks::default()),
            extensions: Extensions::default(),
            pid,
            recovered: restored.is_some(),
            since: Mutex::new(since),
            data: Mutex::new(data),
        })
    }

    /// The socket id (different from the Engine.IO session id).
    pub fn id(&self) -> &Sid {
        &self.id
    }

    /// The namespace.
    pub fn ns(&self) -> &Arc<Namespace> {
        &self.ns
    }

    /// The CONNECT payload the client sent (`{}` when none).
    pub fn auth(&self) -> &Value {
        &self.auth
    }

    /// The Engine.IO session id of the underlying connection.
    pub fn session_id(&self) -> &Sid {
        self.session.sid()
    }

    /// What the client's Engine.IO handshake request carried.
    pub fn handshake(&self) -> Option<&Handshake> {
        self.session.handshake()
    }

    /// The transport the client uses now.
    pub fn transport(&self) -> Transport {
        self.session.transport()
    }

    /// Whether the socket is still connected.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    pub(crate) fn set_connected(&self) {
        self.connected.store(true, Ordering::Release);
    }

    /// Per-socket typed data (not kept by a recovery; see [`Socket::data`]).
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The private session id, when connection state recovery is on.
    pub fn pid(&self) -> Option<&Sid> {
        self.pid.as_ref()
    }

    /// Whether this socket restored an earlier session (socket.io's `socket.recovered`).
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    /// The per-socket data value under `key` (restored with the session after a recovery).
    pub fn data(&self, key: &str) -> Option<Value> {
        self.data.lock().get(key).cloned()
    }

    /// Sets per-socket data that survives a recovery; saved to the recovery store at once.
    /// It is what the admin UI shows as the socket's data (a `socket_updated` in development
    /// mode) and what other nodes' `fetchSockets()` see as `data`.
    pub fn set_data(&self, key: &str, value: Value) {
        self.data.lock().insert(key.to_owned(), value);
        self.save_session();
        if let Some(o) = self.ns.observer() {
            o.data_changed(self);
        }
    }

    /// Every per-socket data value as one JSON object (socket.io's `socket.data`).
    pub fn data_object(&self) -> Value {
        Value::Object(self.data.lock().clone())
    }

    /// `socket.data` as other nodes' `fetchSockets()` see it: with the admin UI's
    /// `_admin: {clientId, transport}` in development mode, as the Node package keeps it,
    /// so that a dashboard on any node (Node ones too) shows this socket's transport.
    pub(crate) fn peer_data(&self) -> Value {
        let mut data = self.data.lock().clone();
        if self.ns.observer().is_some() {
            data.insert(
                crate::admin::observer::ADMIN_DATA_KEY.to_owned(),
                crate::admin::observer::admin_data(self),
            );
        }
        Value::Object(data)
    }

    pub(crate) fn session(&self) -> &Arc<Session> {
        &self.session
    }

    pub(crate) fn set_since(&self, since: Option<Offset>) {
        *self.since.lock() = since;
    }

    /// Hands this socket's session to the recovery store as it connects (sockets with a pid
    /// and a log position only).
    pub(crate) fn register_session(self: &Arc<Self>) {
        let (Some(recovery), Some(pid)) = (self.ns.recovery(), &self.pid) else {
            return;
        };
        if self.connected() && self.since.lock().is_some() {
            let source: Weak<Socket> = Arc::downgrade(self);
            recovery.store.connected(pid, source);
        }
    }

    /// Tells the recovery store that this socket's rooms or data changed.
    pub(crate) fn save_session(&self) {
        let (Some(recovery), Some(pid)) = (self.ns.recovery(), &self.pid) else {
            return;
        };
        if self.connected() {
            recovery.store.changed(pid, self);
        }
    }

    /// This socket's session record with `rooms` as its rooms (`None` without a pid or a
    /// log position).
    fn session_record(&self, rooms: &[Room]) -> Option<SessionRecord> {
        let pid = self.pid.as_ref()?;
        let since = (*self.since.lock())?;
        Some(SessionRecord {
            pid: pid.to_string(),
            sid: self.id.to_string(),
            nsp: self.ns.name().to_owned(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            data: Value::Object(self.data.lock().clone()),
            since,
        })
    }

    /// Queues one frame for this client (a packet without attachments).
    pub(crate) fn send_frame(&self, frame: Frame) -> Result<(), EmitError> {
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        Ok(self.session.send(frame)?)
    }

    /// Queues a packet's frames for this client, all or none.
    pub(crate) fn send_frames(&self, frames: SmallVec<[Frame; 1]>) -> Result<(), EmitError> {
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        if frames.len() == 1 {
            // unwrap-free fast path for the common, attachment-less packet.
            let Some(frame) = frames.into_iter().next() else {
                return Ok(());
            };
            return Ok(self.session.send(frame)?);
        }
        Ok(self.session.send_all(frames.into_iter())?)
    }

    /// Emits an event to this client.
    pub fn emit(&self, event: &str, args: &[Value]) -> Result<(), EmitError> {
        self.emit_binary(event, args, &[])
    }

    /// Emits an event whose arguments reference binary attachments.
    pub fn emit_binary(
        &self,
        event: &str,
        args: &[Value],
        binary: &[Bytes],
    ) -> Result<(), EmitError> {
        if let Some(o) = self.ns.observer() {
            o.event_sent(self, event, args);
        }
        if self.pid.is_none() {
            return self.send_frames(event_frames(self.ns.name(), event, args, binary, None));
        }
        // With recovery, the event ends with the log position: the client keeps it as its
        // offset, and every logged broadcast up to it has been queued before this event.
        self.ns.with_head(|head| {
            let mut with_offset = Vec::with_capacity(args.len() + 1);
            with_offset.extend_from_slice(args);
            if let Some(head) = head {
                with_offset.push(Value::String(head.to_string()));
            }
            self.send_frames(event_frames(
                self.ns.name(),
                event,
                &with_offset,
                binary,
                None,
            ))
        })
    }

    /// Emits an event and waits up to `timeout` for the client's ack.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        args: &[Value],
        timeout: Duration,
    ) -> Result<AckResponse, AckError> {
        if let Some(o) = self.ns.observer() {
            o.event_sent(self, event, args);
        }
        let (id, rx) = self.acks.lock().register();
        if self
            .send_frames(event_frames(self.ns.name(), event, args, &[], Some(id)))
            .is_err()
        {
            self.acks.lock().forget(id);
            return Err(AckError::NotSent);
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.acks.lock().forget(id);
                Err(AckError::Timeout)
            }
        }
    }

    pub(crate) fn on_ack(&self, id: u64, response: AckResponse) {
        if !self.acks.lock().resolve(id, response) {
            tracing::debug!(socket = %self.id, id, "ack for an unknown id ignored");
        }
    }

    /// Joins `room`.
    pub fn join(&self, room: impl Into<Room>) {
        let room = room.into();
        let mut rooms = self.rooms.lock();
        if !rooms.contains(&room) {
            self.ns.index_join(&room, &self.id);
            if let Some(o) = self.ns.observer() {
                o.joined(self, &room);
            }
            rooms.push(room);
            drop(rooms);
            self.save_session();
        }
    }

    /// Leaves `room`.
    pub fn leave(&self, room: &str) {
        let mut rooms = self.rooms.lock();
        if let Some(pos) = rooms.iter().position(|r| &**r == room) {
            rooms.swap_remove(pos);
            self.ns.index_leave(room, &self.id);
            if let Some(o) = self.ns.observer() {
                o.left(self, room);
            }
            drop(rooms);
            self.save_session();
        }
    }

    /// The rooms this socket is in, its own id first.
    pub fn rooms(&self) -> Vec<Room> {
        let mut all = vec![self.id.clone()];
        all.extend(self.rooms.lock().iter().cloned());
        all
    }

    /// Whether the socket is in `room` (its own id included).
    pub fn in_room(&self, room: &str) -> bool {
        &*self.id == room || self.rooms.lock().iter().any(|r| &**r == room)
    }

    /// A broadcast to everyone in the namespace but this socket.
    pub fn broadcast(&self) -> BroadcastOperator {
        BroadcastOperator::new(self.ns.clone(), BroadcastOptions::default()).except(self.id.clone())
    }

    /// A broadcast to `room`, without this socket.
    pub fn to(&self, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// Disconnects this socket from its namespace (the client gets a DISCONNECT packet).
    pub fn disconnect(&self) {
        if !self.connected() {
            return;
        }
        let text =
            packet::encode_message::<Value>(PacketType::Disconnect, 0, self.ns.name(), None, None);
        let _ = self.session.send(Frame::Text(text.into()));
        if let Some(client) = self.client.upgrade() {
            client.forget_socket(self.ns.name());
        }
        self.on_disconnect(DisconnectReason::ServerNamespaceDisconnect);
    }

    /// Closes the whole underlying connection (every namespace of this client).
    pub fn close_connection(&self) {
        self.session.close(CloseReason::ServerClose);
    }

    /// Cleans up after the socket left; runs the namespace's disconnect handler once.
    pub(crate) fn on_disconnect(&self, reason: DisconnectReason) {
        if !self.connected.swap(false, Ordering::AcqRel) {
            return;
        }
        self.acks.lock().clear();
        let rooms = std::mem::take(&mut *self.rooms.lock());
        self.ns.remove_socket(self, &rooms, reason);
    }
}

impl SessionSource for Socket {
    fn owner(&self) -> &str {
        self.session.sid()
    }

    fn record(&self) -> Option<SessionRecord> {
        self.session_record(&self.rooms.lock())
    }
}

/// A socket that is leaving, with the rooms it was in (already taken out of it).
pub(crate) struct Leaving<'a> {
    pub(crate) socket: &'a Socket,
    pub(crate) rooms: &'a [Room],
}

impl SessionSource for Leaving<'_> {
    fn owner(&self) -> &str {
        self.socket.session.sid()
    }

    fn record(&self) -> Option<SessionRecord> {
        self.socket.session_record(self.rooms)
    }
}
