//! A namespace: its handlers, its connected sockets on this node and their
//! rooms, and local delivery of broadcasts.
//!
//! Locking: `sockets` and `rooms` are separate short-lived locks; a writer
//! only ever holds one of them, readers may hold both (sockets first). No lock
//! is held across an `.await`.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures_util::future::BoxFuture;
use parking_lot::RwLock;
use serde_json::Value;

use super::Sid;
use super::adapter::{Adapter, SocketInfo};
use super::broadcast::{BroadcastOperator, BroadcastOptions, BroadcastPacket};
use super::rooms::{Room, RoomIndex};
use super::socket::{DisconnectReason, Event, Socket};
use crate::admin::observer::SocketObserver;
use crate::metrics::SocketMetrics;

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
}

impl Namespace {
    pub(crate) fn new(
        name: &str,
        adapter: Arc<dyn Adapter>,
        metrics: Arc<SocketMetrics>,
    ) -> Arc<Self> {
        Arc::new(Namespace {
            name: Arc::from(name),
            sockets: RwLock::new(HashMap::new()),
            rooms: RwLock::new(RoomIndex::default()),
            handlers: RwLock::new(Handlers::default()),
            adapter,
            metrics,
            observer: OnceLock::new(),
        })
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
        let removed = self.sockets.write().remove(socket.id());
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
        let sockets = self.sockets.read();
        let rooms = self.rooms.read();
        let excluded = |id: &Sid| {
            opts.except
                .iter()
                .any(|r| **r == **id || rooms.contains(r, id))
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
    /// the same bytes queued for every recipient. Used by adapters.
    pub fn deliver_local(&self, packet: &BroadcastPacket, opts: &BroadcastOptions) -> usize {
        let start = Instant::now();
        let frames = packet.frames(&self.name);
        let count = self.for_each_matching(opts, |s| {
            // A full queue closes that client; the others are unaffected.
            let _ = s.send_frames(frames.clone());
        });
        self.metrics.broadcast_recipients.observe(count as f64);
        self.metrics
            .broadcast_duration_seconds
            .observe(start.elapsed().as_secs_f64());
        count
    }

    /// Information on the matching local sockets (for `fetchSockets`).
    pub fn local_socket_infos(&self, opts: &BroadcastOptions) -> Vec<SocketInfo> {
        self.matching(opts)
            .into_iter()
            .map(|s| SocketInfo {
                id: s.id().clone(),
                rooms: s.rooms(),
                auth: s.auth().clone(),
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
