//! Socket.IO v5 on top of [`hubbub_engineio`]: packets with binary
//! attachments, namespaces, sockets, acks both ways, rooms and broadcasts
//! through an [`adapter::Adapter`]. Knows nothing of chat, Redis or Kubernetes.
//!
//! [`Io`] is the server: it registers namespaces and is the Engine.IO
//! handler. Each Engine.IO session gets a [`Client`], which parses packets,
//! collects attachments, and routes them to the client's sockets (one per
//! namespace joined).
//!
//! | module | owns |
//! |---|---|
//! | [`packet`] | the Socket.IO packet format with attachments, sans-IO |
//! | [`namespace`], [`socket`], [`ack`], [`rooms`] | namespaces, sockets, acks both ways, room membership |
//! | [`broadcast`] | broadcasts encoded once and queued as shared bytes for every recipient |
//! | [`adapter`] | the [`Adapter`] seam to other replicas, and the in-memory [`MemoryAdapter`] |
//! | [`recovery`] | connection state recovery: pid and offsets, the [`RecoveryStore`] seam, the in-memory store and log |
//! | [`metrics`] | [`SocketMetrics`], registered into a registry the binary gives |
//!
//! Crate rules: depends on `hubbub-engineio` only among hubbub's crates, and on no Redis
//! client (`hubbub-redis` implements [`Adapter`] on top of this crate; a test checks it
//! with `cargo tree`); reads no command line ([`IoConfig`] is built by the binary).

pub mod ack;
pub mod adapter;
pub mod admin;
pub mod broadcast;
pub mod metrics;
pub mod namespace;
pub mod packet;
pub mod recovery;
pub mod rooms;
pub mod socket;
#[doc(hidden)]
pub mod testing;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use smallvec::SmallVec;

pub use ack::{AckError, AckResponse, AckSender};
pub use adapter::{Adapter, MemoryAdapter, SocketInfo};
pub use broadcast::{BroadcastOperator, BroadcastOptions, BroadcastPacket};
pub use metrics::SocketMetrics;
pub use namespace::Namespace;
pub use recovery::{MemoryRecoveryStore, Recovery, RecoverySettings, RecoveryStore};
pub use socket::{DisconnectReason, EmitError, Event, Socket};

use admin::observer::SocketObserver;
use hubbub_engineio::{
    CloseReason, Connection, EngineHandler, Frame, Message, ProtocolViolation, Session, Transport,
};
use namespace::{AdmitError, Replay};
use packet::{Packet, PacketType};
use recovery::{Claim, Failure, Offset};

/// A socket or session id.
pub type Sid = Arc<str>;

/// Socket.IO settings.
#[derive(Debug, Clone)]
pub struct IoConfig {
    /// Time a new connection has to join a namespace before it is closed.
    pub connect_timeout: Duration,
    /// Most bytes of binary attachments one packet may carry in total; a
    /// client that announces more is closed (default 1,000,000, the server
    /// uses its maxPayload).
    pub max_attachment_bytes: usize,
}

impl Default for IoConfig {
    fn default() -> Self {
        IoConfig {
            connect_timeout: Duration::from_secs(45),
            max_attachment_bytes: 1_000_000,
        }
    }
}

/// The Socket.IO server: namespaces and their adapter.
pub struct Io {
    config: IoConfig,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    adapter: Arc<dyn Adapter>,
    metrics: Arc<SocketMetrics>,
    /// The admin UI's development-mode observer, given to every namespace.
    observer: OnceLock<Arc<dyn SocketObserver>>,
    recovery: Option<Arc<Recovery>>,
}

impl Io {
    /// Creates a server whose broadcasts go through `adapter`.
    pub fn new(
        config: IoConfig,
        adapter: Arc<dyn Adapter>,
        metrics: Arc<SocketMetrics>,
    ) -> Arc<Io> {
        Self::with_recovery(config, adapter, metrics, None)
    }

    /// Like [`Io::new`], with connection state recovery when `recovery` is given.
    pub fn with_recovery(
        config: IoConfig,
        adapter: Arc<dyn Adapter>,
        metrics: Arc<SocketMetrics>,
        recovery: Option<Arc<Recovery>>,
    ) -> Arc<Io> {
        Arc::new(Io {
            config,
            namespaces: RwLock::new(HashMap::new()),
            adapter,
            metrics,
            observer: OnceLock::new(),
            recovery,
        })
    }

    /// The namespace `name`, created on first use. Clients can only join
    /// namespaces created this way; others are refused.
    pub fn of(&self, name: &str) -> Arc<Namespace> {
        self.of_with(name, true)
    }

    /// Like [`Io::of`], but a namespace created here never offers connection state
    /// recovery (the admin UI's: it re-reads everything on reconnection).
    pub fn of_without_recovery(&self, name: &str) -> Arc<Namespace> {
        self.of_with(name, false)
    }

    fn of_with(&self, name: &str, recovery: bool) -> Arc<Namespace> {
        if let Some(ns) = self.namespaces.read().get(name) {
            return ns.clone();
        }
        let ns = {
            let mut map = self.namespaces.write();
            if let Some(ns) = map.get(name) {
                return ns.clone();
            }
            let ns = Namespace::new(
                name,
                self.adapter.clone(),
                self.metrics.clone(),
                self.recovery.clone().filter(|_| recovery),
            );
            if let Some(o) = self.observer.get() {
                ns.set_observer(o.clone());
            }
            map.insert(name.to_owned(), ns.clone());
            ns
        };
        self.adapter.init_namespace(&ns);
        ns
    }

    /// An existing namespace.
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.read().get(name).cloned()
    }

    /// Every namespace.
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        self.namespaces.read().values().cloned().collect()
    }

    /// The adapter.
    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// Sets the admin UI's development-mode observer on every namespace, present
    /// and future (once; later calls are ignored).
    pub(crate) fn set_observer(&self, observer: Arc<dyn SocketObserver>) {
        if self.observer.set(observer.clone()).is_err() {
            return;
        }
        for ns in self.namespaces.read().values() {
            ns.set_observer(observer.clone());
        }
    }
}

/// The Engine.IO handler side of [`Io`].
pub struct IoHandler(pub Arc<Io>);

impl EngineHandler for IoHandler {
    fn on_open(&self, session: &Arc<Session>) -> Arc<dyn Connection> {
        let client = Arc::new_cyclic(|me| Client {
            io: self.0.clone(),
            session: session.clone(),
            sockets: Mutex::new(SmallVec::new()),
            partial: Mutex::new(None),
            inbox: Mutex::new(Inbox::default()),
            me: me.clone(),
        });
        // Close the connection if it joins no namespace within the connect timeout.
        let weak = Arc::downgrade(&client);
        let closed = session.closed().clone();
        let timeout = self.0.config.connect_timeout;
        tokio::spawn(async move {
            tokio::select! {
                _ = closed.cancelled() => {}
                _ = tokio::time::sleep(timeout) => {
                    if let Some(c) = weak.upgrade()
                        && c.sockets.lock().is_empty()
                    {
                        tracing::debug!(sid = %c.session.sid(), "no CONNECT within the connect timeout");
                        c.session.close(CloseReason::ConnectTimeout);
                    }
                }
            }
        });
        client
    }
}

/// A packet waiting for its binary attachments.
struct PartialPacket {
    packet: Packet,
    binary: Vec<Bytes>,
    /// Bytes received so far, bounded by `IoConfig::max_attachment_bytes`.
    bytes: usize,
}

/// A client's socket in one namespace, keyed by the namespace name.
type NamespaceSocket = (Arc<str>, Arc<Socket>);

/// Packets that wait while an async handler of the same client runs.
#[derive(Default)]
struct Inbox {
    busy: bool,
    queue: VecDeque<(Packet, Vec<Bytes>)>,
}

/// Most packets one client may have waiting behind a running async handler.
pub const MAX_DEFERRED_PACKETS: usize = 256;

/// The Socket.IO side of one Engine.IO session.
///
/// Ordering: packets are dispatched in arrival order. When a handler returns
/// a future, it runs on its own task and later packets of this client wait in
/// the inbox until it completes — except acks, which are always delivered at
/// once (a handler may be waiting for one).
pub struct Client {
    io: Arc<Io>,
    session: Arc<Session>,
    sockets: Mutex<SmallVec<[NamespaceSocket; 1]>>,
    partial: Mutex<Option<PartialPacket>>,
    inbox: Mutex<Inbox>,
    me: Weak<Client>,
}

type Handled = Result<Option<BoxFuture<'static, ()>>, ProtocolViolation>;

fn violation(msg: impl Into<String>) -> ProtocolViolation {
    ProtocolViolation(msg.into())
}

impl Client {
    fn socket(&self, nsp: &str) -> Option<Arc<Socket>> {
        self.sockets
            .lock()
            .iter()
            .find(|(n, _)| &**n == nsp)
            .map(|(_, s)| s.clone())
    }

    pub(crate) fn forget_socket(&self, nsp: &str) {
        self.sockets.lock().retain(|(n, _)| &**n != nsp);
    }

    fn send_packet(&self, kind: PacketType, nsp: &str, data: &Value) {
        let text = packet::encode_message(kind, 0, nsp, None, Some(data));
        let _ = self.session.send(Frame::Text(text.into()));
    }

    fn dispatch(&self, packet: Packet, binary: Vec<Bytes>) -> Handled {
        match packet.kind {
            PacketType::Connect => Ok(self.connect(&packet.nsp, packet.data)),
            PacketType::Disconnect => {
                let socket = self
                    .socket(&packet.nsp)
                    .ok_or_else(|| violation("disconnect from a namespace not joined"))?;
                self.forget_socket(&packet.nsp);
                socket.on_disconnect(DisconnectReason::ClientNamespaceDisconnect);
                Ok(None)
            }
            PacketType::Event | PacketType::BinaryEvent => {
                let socket = self
                    .socket(&packet.nsp)
                    .ok_or_else(|| violation("event for a namespace not joined"))?;
                let Some(Value::Array(mut items)) = packet.data else {
                    return Err(violation("event payload is not an array"));
                };
                let Value::String(name) = items.remove(0) else {
                    return Err(violation("event name is not a string"));
                };
                let ack = packet.id.map(|id| {
                    AckSender::new(self.session.clone(), Arc::from(packet.nsp.as_str()), id)
                });
                if let Some(o) = socket.ns().observer() {
                    o.event_received(&socket, &name, &items);
                }
                let handler = socket.ns().event_handler(&name);
                let event = Event {
                    name,
                    args: items,
                    binary,
                    ack,
                };
                match handler {
                    Some(h) => Ok(h(socket, event)),
                    None => {
                        tracing::debug!(event = %event.name, "no handler for event");
                        Ok(None)
                    }
                }
            }
            PacketType::Ack | PacketType::BinaryAck => {
                let socket = self
                    .socket(&packet.nsp)
                    .ok_or_else(|| violation("ack for a namespace not joined"))?;
                let Some(Value::Array(args)) = packet.data else {
                    return Err(violation("ack payload is not an array"));
                };
                let id = packet.id.ok_or_else(|| violation("ack without an id"))?;
                socket.on_ack(id, AckResponse { args, binary });
                Ok(None)
            }
            PacketType::ConnectError => Err(violation("CONNECT_ERROR from a client")),
        }
    }

    fn connect(&self, nsp: &str, auth: Option<Value>) -> Option<BoxFuture<'static, ()>> {
        let Some(ns) = self.io.namespace(nsp) else {
            self.send_packet(
                PacketType::ConnectError,
                nsp,
                &serde_json::json!({"message": "Invalid namespace"}),
            );
            return None;
        };
        if self.socket(nsp).is_some() {
            tracing::debug!(nsp, "CONNECT for a namespace already joined ignored");
            return None;
        }
        let auth = auth.unwrap_or_else(|| Value::Object(Default::default()));
        if let Some(claim) = Claim::from_auth(&auth) {
            self.io.metrics.recovery_attempts.inc();
            if ns.recovery().is_some() {
                // Restoring may read a networked store: later packets of this client wait.
                let me = self.me.upgrade()?;
                return Some(Box::pin(async move {
                    if let Some(next) = me.recover(ns, auth, claim).await {
                        next.await;
                    }
                }));
            }
            self.io.metrics.recovery_result("disabled");
        }
        self.connect_new(ns, auth)
    }

    /// Runs the CONNECT check; refuses with a CONNECT_ERROR when it fails.
    fn accept(&self, ns: &Namespace, socket: &Arc<Socket>) -> bool {
        match ns.check_auth(socket, socket.auth()) {
            Ok(()) => true,
            Err(message) => {
                self.send_packet(
                    PacketType::ConnectError,
                    ns.name(),
                    &serde_json::json!({ "message": message }),
                );
                false
            }
        }
    }

    /// A new session in `ns` (with a `pid` when recovery is offered).
    fn connect_new(&self, ns: Arc<Namespace>, auth: Value) -> Option<BoxFuture<'static, ()>> {
        let pid = ns
            .offers_recovery()
            .then(hubbub_engineio::session::random_id);
        let socket = Socket::with_session(
            ns.clone(),
            self.session.clone(),
            self.me.clone(),
            auth,
            pid,
            None,
        );
        if let Some(check) = ns.async_auth() {
            // An async CONNECT check (the admin UI's): later packets of this client wait.
            let me = self.me.upgrade()?;
            return Some(Box::pin(async move {
                let verdict = check(socket.clone(), socket.auth().clone()).await;
                if me.session.is_closed() {
                    return;
                }
                match verdict {
                    Ok(()) => {
                        if let Some(work) = me.admit_new(ns, socket) {
                            work.await;
                        }
                    }
                    Err(message) => me.send_packet(
                        PacketType::ConnectError,
                        ns.name(),
                        &serde_json::json!({ "message": message }),
                    ),
                }
            }));
        }
        if !self.accept(&ns, &socket) {
            return None;
        }
        self.admit_new(ns, socket)
    }

    /// Admits an accepted new socket (its CONNECT reply), then runs the connection handler.
    fn admit_new(&self, ns: Arc<Namespace>, socket: Arc<Socket>) -> Option<BoxFuture<'static, ()>> {
        self.sockets
            .lock()
            .push((Arc::from(ns.name()), socket.clone()));
        // A new session has nothing to replay: admission cannot fail.
        let _ = ns.admit(&socket, Replay::Nothing);
        self.closed_meanwhile(&socket);
        if let Some(o) = ns.observer() {
            o.connected(&socket);
        }
        ns.connection_handler().and_then(|h| h(socket))
    }

    /// A socket admitted while its connection was closing is taken out again.
    fn closed_meanwhile(&self, socket: &Arc<Socket>) {
        if let Some(reason) = self.session.close_reason() {
            self.forget_socket(socket.ns().name());
            socket.on_disconnect(DisconnectReason::Transport(reason));
        }
    }

    /// Restores the session `claim` names, or starts a new one when it cannot be restored.
    async fn recover(
        self: Arc<Self>,
        ns: Arc<Namespace>,
        auth: Value,
        claim: Claim,
    ) -> Option<BoxFuture<'static, ()>> {
        match self.restore(&ns, &auth, &claim).await {
            Ok(Some((socket, replayed))) => {
                self.io.metrics.recovery_result("recovered");
                self.io.metrics.recovery_replayed.inc_by(replayed as u64);
                tracing::debug!(socket = %socket.id(), replayed, "session recovered");
                self.closed_meanwhile(&socket);
                if let Some(o) = ns.observer() {
                    o.connected(&socket);
                }
                ns.connection_handler().and_then(|h| h(socket))
            }
            Ok(None) => None, // refused by the CONNECT check
            Err(failure) => {
                self.io.metrics.recovery_result(failure.label());
                tracing::debug!(reason = failure.label(), "session not recovered");
                if self.session.is_closed() {
                    return None;
                }
                self.connect_new(ns, auth)
            }
        }
    }

    /// Takes the session from the store, re-creates its socket and admits it with its missed
    /// events. `Ok(None)`: the CONNECT check refused it.
    async fn restore(
        &self,
        ns: &Arc<Namespace>,
        auth: &Value,
        claim: &Claim,
    ) -> Result<Option<(Arc<Socket>, usize)>, Failure> {
        let Some(recovery) = ns.recovery().cloned() else {
            return Err(Failure::Unavailable);
        };
        let record = recovery.store.take(&claim.pid).await?;
        if record.nsp != ns.name() {
            return Err(Failure::UnknownSession);
        }
        // A client that received no event yet has no offset: it missed everything since its
        // session started. An offset never goes back before that start.
        let after = match &claim.offset {
            Some(offset) => offset
                .parse::<Offset>()
                .map_err(|_| Failure::BadOffset)?
                .max(record.since),
            None => record.since,
        };
        let mut fetched = Vec::new();
        let mut fetched_to = after;
        let in_memory = recovery.store.logs_in_memory();
        if !in_memory {
            fetched = self.fetch(&recovery, ns.name(), after).await?;
            fetched_to = fetched.last().map_or(after, |e| e.offset);
        }
        if self.session.is_closed() {
            return Err(Failure::Unavailable);
        }
        // The same client may come back before its old connection was noticed as gone.
        if let Some(old) = ns.get_socket(&record.sid) {
            tracing::debug!(socket = %old.id(), "session taken over by a recovering connection");
            old.on_disconnect(DisconnectReason::Transport(CloseReason::ServerClose));
            old.close_connection();
        }
        let socket = Socket::with_session(
            ns.clone(),
            self.session.clone(),
            self.me.clone(),
            auth.clone(),
            None,
            Some(&record),
        );
        if !self.accept(ns, &socket) {
            return Ok(None);
        }
        self.sockets
            .lock()
            .push((Arc::from(ns.name()), socket.clone()));
        // A few rounds at most: each round fetches what this node delivered meanwhile.
        for _ in 0..4 {
            let replay = Replay::Missed {
                rooms: &record.rooms,
                after,
                fetched: &fetched,
                fetched_to,
            };
            match ns.admit(&socket, replay) {
                Ok(replayed) => return Ok(Some((socket, replayed))),
                Err(AdmitError::Behind(from)) => {
                    let more = self.fetch(&recovery, ns.name(), from).await?;
                    fetched_to = more.last().map_or(from, |e| e.offset);
                    fetched.extend(more);
                }
                Err(AdmitError::Failed(failure)) => {
                    self.forget_socket(ns.name());
                    return Err(failure);
                }
            }
        }
        self.forget_socket(ns.name());
        Err(Failure::Unavailable)
    }

    /// Reads the store's logged events after `after`, at most the log bound.
    async fn fetch(
        &self,
        recovery: &Recovery,
        nsp: &str,
        after: Offset,
    ) -> Result<Vec<recovery::LoggedEvent>, Failure> {
        let limit = recovery.settings.max_events;
        let events = recovery.store.missed(nsp, after, limit + 1).await?;
        if events.len() > limit {
            return Err(Failure::Trimmed);
        }
        Ok(events)
    }
}

impl Client {
    /// Dispatches a complete packet now, or queues it behind a running handler.
    fn route(&self, packet: Packet, binary: Vec<Bytes>) -> Result<(), ProtocolViolation> {
        if matches!(packet.kind, PacketType::Ack | PacketType::BinaryAck) {
            return self.dispatch(packet, binary).map(|_| ());
        }
        let mut inbox = self.inbox.lock();
        if inbox.busy {
            if inbox.queue.len() >= MAX_DEFERRED_PACKETS {
                return Err(violation("too many packets while a handler is running"));
            }
            inbox.queue.push_back((packet, binary));
            return Ok(());
        }
        // Dispatch under the inbox lock so that no later packet overtakes this one.
        if let Some(work) = self.dispatch(packet, binary)? {
            inbox.busy = true;
            drop(inbox);
            if let Some(me) = self.me.upgrade() {
                tokio::spawn(me.drain(work));
            }
        }
        Ok(())
    }

    /// Runs a handler's future, then the packets that queued up meanwhile.
    async fn drain(self: Arc<Self>, first: BoxFuture<'static, ()>) {
        first.await;
        loop {
            let next = {
                let mut inbox = self.inbox.lock();
                match inbox.queue.pop_front() {
                    Some(next) if !self.session.is_closed() => next,
                    _ => {
                        inbox.queue.clear();
                        inbox.busy = false;
                        return;
                    }
                }
            };
            match self.dispatch(next.0, next.1) {
                Ok(Some(work)) => work.await,
                Ok(None) => {}
                Err(v) => {
                    tracing::debug!(sid = %self.session.sid(), error = %v, "closing session");
                    self.session.close(CloseReason::ParseError);
                }
            }
        }
    }
}

impl Connection for Client {
    fn on_message(&self, msg: Message) -> Result<(), ProtocolViolation> {
        match msg {
            Message::Text(text) => {
                if self.partial.lock().is_some() {
                    return Err(violation(
                        "text packet while binary attachments are pending",
                    ));
                }
                let packet = packet::parse(&text).map_err(|e| violation(e.to_string()))?;
                if packet.attachments > 0 {
                    *self.partial.lock() = Some(PartialPacket {
                        binary: Vec::with_capacity(packet.attachments.min(16)),
                        packet,
                        bytes: 0,
                    });
                    return Ok(());
                }
                self.route(packet, Vec::new())
            }
            Message::Binary(bytes) => {
                let complete = {
                    let mut partial = self.partial.lock();
                    let p = partial
                        .as_mut()
                        .ok_or_else(|| violation("binary data without a pending packet"))?;
                    p.bytes += bytes.len();
                    if p.bytes > self.io.config.max_attachment_bytes {
                        return Err(violation("binary attachments over the size limit"));
                    }
                    p.binary.push(bytes);
                    if p.binary.len() == p.packet.attachments {
                        partial.take()
                    } else {
                        None
                    }
                };
                match complete {
                    Some(p) => self.route(p.packet, p.binary),
                    None => Ok(()),
                }
            }
        }
    }

    fn on_close(&self, reason: CloseReason) {
        let sockets = std::mem::take(&mut *self.sockets.lock());
        for (_, socket) in sockets {
            socket.on_disconnect(DisconnectReason::Transport(reason));
        }
        *self.partial.lock() = None;
    }

    fn on_upgrade(&self, _transport: Transport) {
        // Once per session at most; only the admin UI's development mode listens.
        let sockets: SmallVec<[Arc<Socket>; 1]> =
            self.sockets.lock().iter().map(|(_, s)| s.clone()).collect();
        for socket in sockets {
            if let Some(o) = socket.ns().observer() {
                o.transport_changed(&socket);
            }
        }
    }
}
