//! A namespace: its handlers, its connected sockets on this node and their
//! rooms, and local delivery of broadcasts.
//!
//! Locking: `sockets` and `rooms` are separate short-lived locks; a writer
//! only ever holds one of them, readers may hold both (sockets first). No lock
//! is held across an `.await`.
//!
//! With connection state recovery on, `delivery` is taken before either of them by every
//! logged broadcast, direct emit and admission of a socket, so that offsets reach every
//! socket in log order and a restored socket gets each missed event exactly once: either in
//! its replay (events up to the head delivered here) or live (everything after).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures_util::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use smallvec::SmallVec;

use super::Sid;
use super::adapter::{Adapter, SocketInfo};
use super::broadcast::{BroadcastOperator, BroadcastOptions, BroadcastPacket};
use super::packet::{self, PacketType};
use super::recovery::{Failure, LoggedEvent, MemoryLog, Offset, Recovery};
use super::rooms::{Room, RoomIndex};
use super::socket::handshake_json;
use super::socket::{DisconnectReason, Event, Socket};
use crate::admin::observer::SocketObserver;
use crate::metrics::SocketMetrics;
use hubbub_engineio::Frame;

type BoxFut = BoxFuture<'static, ()>;
/// Decides whether a CONNECT is accepted; `Err(message)` refuses it with a CONNECT_ERROR.
pub type AuthHandler = Arc<dyn Fn(&Arc<Socket>, &Value) -> Result<(), String> + Send + Sync>;
/// Like [`AuthHandler`], asynchronous: the client's later packets wait for its verdict.
pub type AsyncAuthHandler =
    Arc<dyn Fn(Arc<Socket>, Value) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;
/// Runs after a socket connected (and its CONNECT was acknowledged).
pub type ConnectionHandler = Arc<dyn Fn(Arc<Socket>) -> Option<BoxFut> + Send + Sync>;
/// Handles one event; a returned future completes before the client's next packet is handled.
pub type EventHandler = Arc<dyn Fn(Arc<Socket>, Event) -> Option<BoxFut> + Send + Sync>;
/// Runs once when a socket leaves the namespace.
pub type DisconnectHandler = Arc<dyn Fn(Arc<Socket>, DisconnectReason) + Send + Sync>;

#[derive(Default)]
struct Handlers {
    auth: Option<AuthHandler>,
    async_auth: Option<AsyncAuthHandler>,
    connection: Option<ConnectionHandler>,
    events: HashMap<String, EventHandler>,
    fallback: Option<EventHandler>,
    disconnect: Option<DisconnectHandler>,
}

/// One namespace on this node.
pub struct Namespace {
    name: Arc<str>,
    sockets: RwLock<HashMap<Sid, Arc<Socket>>>,
    rooms: RwLock<RoomIndex>,
    handlers: RwLock<Handlers>,
    adapter: Arc<dyn Adapter>,
    metrics: Arc<SocketMetrics>,
    /// The admin UI's development-mode hook; unset (and free) otherwise.
    observer: OnceLock<Arc<dyn SocketObserver>>,
    /// Connection state recovery, when on.
    recovery: Option<Arc<Recovery>>,
    /// With recovery on: the log head delivered here and the in-memory log (see the module doc).
    delivery: Mutex<Delivery>,
}

/// The delivery state of a namespace with recovery on.
#[derive(Debug, Default)]
struct Delivery {
    /// Offset of the newest logged broadcast queued to this node's sockets; `None` until known
    /// (a Redis-backed node learns it from the stream). Sockets get a `pid` only once it is known.
    head: Option<Offset>,
    /// The log itself when it is kept in this process.
    log: Option<MemoryLog>,
}

/// What a socket being admitted gets before its CONNECT reply.
pub(crate) enum Replay<'a> {
    /// A new session: nothing.
    Nothing,
    /// A restored session: every logged event after `after` meant for its rooms, read from the
    /// in-memory log, or from `fetched` (a store's events up to `fetched_to`).
    Missed {
        rooms: &'a [String],
        after: Offset,
        fetched: &'a [LoggedEvent],
        fetched_to: Offset,
    },
}

/// Why an admission did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AdmitError {
    /// The session cannot be restored.
    Failed(Failure),
    /// This node has delivered events beyond what was fetched: fetch after this offset and retry.
    Behind(Offset),
}

impl Namespace {
    pub(crate) fn new(
        name: &str,
        adapter: Arc<dyn Adapter>,
        metrics: Arc<SocketMetrics>,
        recovery: Option<Arc<Recovery>>,
    ) -> Arc<Self> {
        let mut delivery = Delivery::default();
        if let Some(r) = &recovery
            && r.store.logs_in_memory()
        {
            let log = MemoryLog::new(r.settings.max_events);
            delivery.head = Some(log.head());
            delivery.log = Some(log);
        }
        Arc::new(Namespace {
            name: Arc::from(name),
            sockets: RwLock::new(HashMap::new()),
            rooms: RwLock::new(RoomIndex::default()),
            handlers: RwLock::new(Handlers::default()),
            adapter,
            metrics,
            observer: OnceLock::new(),
            recovery,
            delivery: Mutex::new(delivery),
        })
    }

    /// Connection state recovery, when on.
    pub fn recovery(&self) -> Option<&Arc<Recovery>> {
        self.recovery.as_ref()
    }

    /// Whether new sockets get a `pid` now: recovery is on and the log head is known.
    pub(crate) fn offers_recovery(&self) -> bool {
        self.recovery.is_some() && self.delivery.lock().head.is_some()
    }

    /// Ready as far as recovery goes: off, or the log head is known (a Redis-backed node
    /// learns it once Redis answers; until then new sockets get no `pid`).
    pub fn recovery_ready(&self) -> bool {
        self.recovery.is_none() || self.delivery.lock().head.is_some()
    }

    /// Sets the log head when it is not known yet (a Redis-backed node, once it has read the
    /// stream's newest id at start-up). Used by adapters that log broadcasts themselves.
    pub fn init_log_head(&self, head: Offset) {
        let mut d = self.delivery.lock();
        if d.head.is_none() {
            d.head = Some(head);
        }
    }

    /// Runs `f` with the log head under the delivery lock: a direct emit encoded and queued in
    /// `f` carries a position that every logged broadcast queued before it has reached.
    pub(crate) fn with_head<R>(&self, f: impl FnOnce(Option<Offset>) -> R) -> R {
        let d = self.delivery.lock();
        f(d.head)
    }

    /// The namespace name, e.g. `/`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The adapter broadcasts go through.
    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// Sets the CONNECT check (auth). Without one every CONNECT is accepted.
    pub fn on_connect(
        &self,
        f: impl Fn(&Arc<Socket>, &Value) -> Result<(), String> + Send + Sync + 'static,
    ) {
        self.handlers.write().auth = Some(Arc::new(f));
    }

    /// Like [`Namespace::on_connect`], with an async check (e.g. one that asks a
    /// store). It replaces a synchronous check set before.
    pub fn on_connect_async<F, Fut>(&self, f: F)
    where
        F: Fn(Arc<Socket>, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let mut h = self.handlers.write();
        h.auth = None;
        h.async_auth = Some(Arc::new(move |s, v| Box::pin(f(s, v))));
    }

    /// Sets the handler run after each accepted connection.
    pub fn on_connection(&self, f: impl Fn(Arc<Socket>) + Send + Sync + 'static) {
        self.handlers.write().connection = Some(Arc::new(move |s| {
            f(s);
            None
        }));
    }

    /// Like [`Namespace::on_connection`], with an async handler.
    pub fn on_connection_async<F, Fut>(&self, f: F)
    where
        F: Fn(Arc<Socket>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handlers.write().connection = Some(Arc::new(move |s| Some(Box::pin(f(s)))));
    }

    /// Sets the handler of event `name` for every socket of the namespace.
    pub fn on(&self, name: &str, f: impl Fn(Arc<Socket>, Event) + Send + Sync + 'static) {
        self.handlers.write().events.insert(
            name.to_owned(),
            Arc::new(move |s, e| {
                f(s, e);
                None
            }),
        );
    }

    /// Like [`Namespace::on`], with an async handler. Events of one client are
    /// handled one at a time, in order.
    pub fn on_async<F, Fut>(&self, name: &str, f: F)
    where
        F: Fn(Arc<Socket>, Event) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.handlers.write().events.insert(
            name.to_owned(),
            Arc::new(move |s, e| Some(Box::pin(f(s, e)))),
        );
    }

    /// Sets the handler for events that have no handler of their own.
    pub fn on_fallback(&self, f: impl Fn(Arc<Socket>, Event) + Send + Sync + 'static) {
        self.handlers.write().fallback = Some(Arc::new(move |s, e| {
            f(s, e);
            None
        }));
    }

    /// Sets the handler run once when a socket leaves.
    pub fn on_disconnect(&self, f: impl Fn(Arc<Socket>, DisconnectReason) + Send + Sync + 'static) {
        self.handlers.write().disconnect = Some(Arc::new(f));
    }

    pub(crate) fn check_auth(&self, socket: &Arc<Socket>, auth: &Value) -> Result<(), String> {
        let handler = self.handlers.read().auth.clone();
        match handler {
            Some(h) => h(socket, auth),
            None => Ok(()),
        }
    }

    pub(crate) fn async_auth(&self) -> Option<AsyncAuthHandler> {
        self.handlers.read().async_auth.clone()
    }

    /// Sets the development-mode observer (once; later calls are ignored).
    pub(crate) fn set_observer(&self, observer: Arc<dyn SocketObserver>) {
        let _ = self.observer.set(observer);
    }

    /// The observer, when the admin UI runs in development mode.
    pub(crate) fn observer(&self) -> Option<&Arc<dyn SocketObserver>> {
        self.observer.get()
    }

    pub(crate) fn connection_handler(&self) -> Option<ConnectionHandler> {
        self.handlers.read().connection.clone()
    }

    pub(crate) fn event_handler(&self, name: &str) -> Option<EventHandler> {
        let h = self.handlers.read();
        h.events.get(name).or(h.fallback.as_ref()).cloned()
    }

    /// A broadcast to every socket of the namespace.
    pub fn broadcast(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone(), BroadcastOptions::default())
    }

    /// A broadcast to `room`.
    pub fn to(self: &Arc<Self>, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// Emits to every socket of the namespace, on every node.
    pub fn emit(self: &Arc<Self>, event: &str, args: &[Value]) {
        self.broadcast().emit(event, args)
    }

    /// Sockets connected on this node.
    pub fn local_socket_count(&self) -> usize {
        self.sockets.read().len()
    }

    /// A socket of this node by id.
    pub fn get_socket(&self, id: &str) -> Option<Arc<Socket>> {
        self.sockets.read().get(id).cloned()
    }

    pub(crate) fn add_socket(&self, socket: Arc<Socket>) {
        socket.set_connected();
        self.metrics.sockets_connected.inc();
        let id = socket.id().clone();
        self.sockets.write().insert(id.clone(), socket);
        self.adapter.room_created(self, &id, true);
    }

    pub(crate) fn remove_socket(&self, socket: &Socket, rooms: &[Room], reason: DisconnectReason) {
        let removed = {
            let mut sockets = self.sockets.write();
            // Only this very socket (a restored one may have taken its id over).
            if sockets
                .get(socket.id())
                .is_some_and(|s| std::ptr::eq(&**s, socket))
            {
                sockets.remove(socket.id())
            } else {
                None
            }
        };
        if let (Some(recovery), Some(pid)) = (&self.recovery, socket.pid()) {
            let leaving = crate::socket::Leaving { socket, rooms };
            recovery.store.end(pid, reason.is_recoverable(), &leaving);
        }
        let mut emptied: Vec<&Room> = Vec::new();
        if !rooms.is_empty() {
            let mut index = self.rooms.write();
            for r in rooms {
                if index.leave(r, socket.id()) {
                    emptied.push(r);
                }
            }
        }
        for r in emptied {
            self.adapter.room_deleted(self, r, false);
        }
        let Some(socket) = removed else { return };
        self.adapter.room_deleted(self, socket.id(), true);
        self.metrics.sockets_connected.dec();
        if let Some(o) = self.observer() {
            o.disconnected(&socket, reason);
        }
        let handler = self.handlers.read().disconnect.clone();
        if let Some(h) = handler {
            h(socket, reason);
        }
    }

    pub(crate) fn index_join(&self, room: &Room, sid: &Sid) {
        let created = self.rooms.write().join(room, sid);
        if created {
            self.adapter.room_created(self, room, false);
        }
    }

    pub(crate) fn index_leave(&self, room: &str, sid: &str) {
        let deleted = self.rooms.write().leave(room, sid);
        if deleted {
            self.adapter.room_deleted(self, room, false);
        }
    }

    /// Whether `room` has a member on this node (a socket's own id counts while the
    /// socket is connected).
    pub fn has_local_room(&self, room: &str) -> bool {
        self.rooms.read().members(room).is_some() || self.sockets.read().contains_key(room)
    }

    /// Calls `f` for every local socket matching `opts`, each once, under the
    /// namespace's read locks (so `f` must not block or touch this namespace's
    /// rooms for writing). Returns how many matched.
    fn for_each_matching(&self, opts: &BroadcastOptions, mut f: impl FnMut(&Arc<Socket>)) -> usize {
        /// Up to this many excluded ids are compared one by one; more go in a set.
        const EXCEPT_LINEAR: usize = 8;
        let sockets = self.sockets.read();
        let rooms = self.rooms.read();
        // The excluded ids, resolved once per broadcast rather than per recipient: each
        // `except` name is a socket's own room, and its members if it is a stored room.
        let mut except: SmallVec<[&str; 4]> = SmallVec::new();
        for r in &opts.except {
            except.push(r);
            if let Some(members) = rooms.members(r) {
                except.extend(members.iter().map(|m| &**m));
            }
        }
        let except_set: Option<HashSet<&str>> =
            (except.len() > EXCEPT_LINEAR).then(|| except.iter().copied().collect());
        let excluded = |id: &Sid| match &except_set {
            Some(set) => set.contains(&**id),
            None => except.iter().any(|e| *e == &**id),
        };
        let mut count = 0;
        let mut visit = |s: &Arc<Socket>| {
            if !excluded(s.id()) {
                f(s);
                count += 1;
            }
        };
        match opts.rooms.as_slice() {
            [] => sockets.values().for_each(&mut visit),
            [room] => match rooms.members(room) {
                Some(members) => members
                    .iter()
                    .filter_map(|id| sockets.get(id))
                    .for_each(&mut visit),
                None => sockets.get(room).into_iter().for_each(&mut visit),
            },
            many => {
                let mut seen: HashSet<&Sid> = HashSet::new();
                for room in many {
                    match rooms.members(room) {
                        Some(members) => {
                            for id in members {
                                if seen.insert(id)
                                    && let Some(s) = sockets.get(id)
                                {
                                    visit(s);
                                }
                            }
                        }
                        None => {
                            if let Some((id, s)) = sockets.get_key_value(&**room)
                                && seen.insert(id)
                            {
                                visit(s);
                            }
                        }
                    }
                }
            }
        }
        count
    }

    fn matching(&self, opts: &BroadcastOptions) -> Vec<Arc<Socket>> {
        let mut out = Vec::new();
        self.for_each_matching(opts, |s| out.push(s.clone()));
        out
    }

    /// Delivers a broadcast to the matching sockets of this node: encoded once,
    /// the same bytes queued for every recipient. Used by adapters for broadcasts that are
    /// not logged (recovery off, or a peer that sent no offset).
    ///
    /// With recovery on, such an event still ends with an offset: the log head, as a direct
    /// emit does, so that a client never takes the event's own last string for an offset.
    pub fn deliver_local(&self, packet: &BroadcastPacket, opts: &BroadcastOptions) -> usize {
        if self.recovery.is_none() {
            return self.deliver_frames(&packet.frames(&self.name), opts);
        }
        let d = self.delivery.lock();
        let frames = match (d.head, &packet.data) {
            (Some(head), Value::Array(items)) => {
                let mut data = items.clone();
                data.push(Value::String(head.to_string()));
                BroadcastPacket {
                    data: Value::Array(data),
                    binary: packet.binary.clone(),
                }
                .frames(&self.name)
            }
            _ => packet.frames(&self.name),
        };
        self.deliver_frames(&frames, opts)
    }

    /// Delivers a broadcast that a cluster log gave `offset` (its last argument already), in
    /// log order: the adapter calls this in the order of the log.
    pub fn deliver_logged(
        &self,
        packet: &BroadcastPacket,
        opts: &BroadcastOptions,
        offset: Offset,
    ) -> usize {
        let frames = packet.frames(&self.name);
        let mut d = self.delivery.lock();
        if d.head.is_none_or(|h| h < offset) {
            d.head = Some(offset);
        }
        self.deliver_frames(&frames, opts)
    }

    /// Logs a broadcast in this process's log (when recovery keeps it here) and delivers it
    /// to the matching local sockets: the offset is appended to its arguments once, before
    /// the one encoding every recipient shares. Without an in-memory log, as `deliver_local`.
    pub fn log_and_deliver(&self, mut packet: BroadcastPacket, opts: &BroadcastOptions) -> usize {
        if self.recovery.is_none() {
            return self.deliver_local(&packet, opts);
        }
        let mut d = self.delivery.lock();
        let Some(log) = d.log.as_mut() else {
            drop(d);
            return self.deliver_local(&packet, opts);
        };
        let offset = log.next_offset();
        if let Value::Array(items) = &mut packet.data {
            items.push(Value::String(offset.to_string()));
        }
        let frames = packet.frames(&self.name);
        log.append(LoggedEvent {
            offset,
            frames: frames.clone(),
            rooms: opts.rooms.clone(),
            except: opts.except.clone(),
        });
        d.head = Some(offset);
        self.deliver_frames(&frames, opts)
    }

    fn deliver_frames(&self, frames: &SmallVec<[Frame; 1]>, opts: &BroadcastOptions) -> usize {
        let start = Instant::now();
        // A full queue closes that client; the others are unaffected.
        let count = match frames.as_slice() {
            // The common packet without attachments: one shared frame, no list per recipient.
            [frame] => self.for_each_matching(opts, |s| {
                let _ = s.send_frame(frame.clone());
            }),
            _ => self.for_each_matching(opts, |s| {
                let _ = s.send_frames(frames.clone());
            }),
        };
        self.metrics.broadcast_recipients.observe(count as f64);
        self.metrics
            .broadcast_duration_seconds
            .observe(start.elapsed().as_secs_f64());
        count
    }

    /// Admits a socket that passed its CONNECT checks: queues what it missed (a restored
    /// session), then its CONNECT reply (`{"sid"}`, plus `"pid"` with recovery), then makes
    /// it a member so that it gets every later broadcast — all under the delivery lock, so
    /// nothing falls between the replay and live delivery. Returns how many events were
    /// replayed.
    pub(crate) fn admit(
        &self,
        socket: &Arc<Socket>,
        replay: Replay<'_>,
    ) -> Result<usize, AdmitError> {
        let connect_reply = |socket: &Socket| {
            let mut data = serde_json::Map::new();
            data.insert("sid".into(), Value::String(socket.id().to_string()));
            if let Some(pid) = socket.pid() {
                data.insert("pid".into(), Value::String(pid.to_string()));
            }
            packet::encode_message(PacketType::Connect, 0, &self.name, None, Some(&data))
        };
        let Some(recovery) = &self.recovery else {
            let _ = socket
                .session()
                .send(Frame::Text(connect_reply(socket).into()));
            self.add_socket(socket.clone());
            return Ok(0);
        };
        let d = self.delivery.lock();
        let mut replayed = 0;
        if let Replay::Missed {
            rooms: restored_rooms,
            after,
            fetched,
            fetched_to,
        } = replay
        {
            let head = d.head.ok_or(AdmitError::Failed(Failure::Unavailable))?;
            let mut rooms: Vec<&str> = vec![&**socket.id()];
            rooms.extend(restored_rooms.iter().map(String::as_str));
            let max = recovery.settings.max_replay;
            let mut missed: Vec<&LoggedEvent> = Vec::new();
            match &d.log {
                Some(log) => {
                    for e in log.after(after).map_err(AdmitError::Failed)? {
                        if e.is_for(&rooms) {
                            missed.push(e);
                        }
                    }
                }
                None => {
                    if head > fetched_to {
                        return Err(AdmitError::Behind(fetched_to));
                    }
                    // Events after this node's head arrive live once the socket is a member.
                    missed.extend(
                        fetched
                            .iter()
                            .filter(|e| e.offset <= head && e.is_for(&rooms)),
                    );
                }
            }
            if missed.len() > max {
                return Err(AdmitError::Failed(Failure::TooMany));
            }
            let frames: Vec<Frame> = missed
                .iter()
                .flat_map(|e| e.frames.iter().cloned())
                .collect();
            if !frames.is_empty() && socket.session().send_all(frames.into_iter()).is_err() {
                return Err(AdmitError::Failed(Failure::TooMany));
            }
            replayed = missed.len();
            for room in restored_rooms {
                socket.join(room.as_str());
            }
        } else {
            socket.set_since(d.head);
        }
        let _ = socket
            .session()
            .send(Frame::Text(connect_reply(socket).into()));
        self.add_socket(socket.clone());
        socket.register_session();
        drop(d);
        Ok(replayed)
    }

    /// Information on the matching local sockets (for `fetchSockets`).
    pub fn local_socket_infos(&self, opts: &BroadcastOptions) -> Vec<SocketInfo> {
        self.matching(opts)
            .into_iter()
            .map(|s| SocketInfo {
                id: s.id().clone(),
                rooms: s.rooms(),
                auth: s.auth().clone(),
                handshake: handshake_json(s.handshake()),
                data: s.peer_data(),
            })
            .collect()
    }

    /// Makes the matching local sockets join `rooms`.
    pub fn local_add_rooms(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        for s in self.matching(opts) {
            for r in rooms {
                s.join(r.clone());
            }
        }
    }

    /// Makes the matching local sockets leave `rooms`.
    pub fn local_del_rooms(&self, opts: &BroadcastOptions, rooms: &[Room]) {
        for s in self.matching(opts) {
            for r in rooms {
                s.leave(r);
            }
        }
    }

    /// Disconnects the matching local sockets (closing their connection when `close`).
    pub fn local_disconnect(&self, opts: &BroadcastOptions, close: bool) {
        for s in self.matching(opts) {
            if close {
                s.close_connection();
            } else {
                s.disconnect();
            }
        }
    }

    /// Rooms with a local member, sockets' own rooms included.
    pub fn local_rooms(&self) -> HashSet<Room> {
        let mut out: HashSet<Room> = self.rooms.read().names().cloned().collect();
        out.extend(self.sockets.read().keys().cloned());
        out
    }
}
