//! [`AmqpAdapter`]: the `socketio::Adapter` over RabbitMQ, with the guarantees of the
//! Redis adapter.
//!
//! - A broadcast is one publish to the fanout exchange, then local delivery, encoded once
//!   for every local recipient. The broker hands it to every replica's queue, the
//!   sender's too; the sender drops its own by node id, so nobody receives it twice.
//! - Received broadcasts are delivered to the matching local sockets in arrival order,
//!   which RabbitMQ keeps per publishing channel, so order per sender holds.
//! - Room changes, disconnections and server-side events are fanout requests applied by
//!   every other replica; `fetch_sockets` and `all_rooms` are fanout requests whose
//!   answers come back on the direct exchange, routed by the asker's node id, and are
//!   awaited from every live peer (the link's heartbeats say which) for at most five
//!   seconds.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use smallvec::SmallVec;
use tokio::sync::oneshot;

use crate::link::{AmqpLink, InboundHandler, MessageKind, Route};
use crate::wire::{self, Body, RemoteSocket, Selector};
use hubbub_socketio::adapter::AdapterError;
use hubbub_socketio::broadcast::BroadcastFlags;
use hubbub_socketio::rooms::Room;
use hubbub_socketio::{Adapter, BroadcastOptions, BroadcastPacket, Namespace, SocketInfo};

/// How long requests made by this replica wait for the others' answers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a server-side event from another replica: gets the namespace and `[event, ...args]`.
pub type ServerSideHandler = Arc<dyn Fn(&str, &[Value]) + Send + Sync>;

struct Pending {
    expected: usize,
    answers: Vec<Body>,
    done: Option<oneshot::Sender<Vec<Body>>>,
}

/// Cross-replica delivery through RabbitMQ.
pub struct AmqpAdapter {
    link: AmqpLink,
    namespaces: RwLock<HashMap<String, Weak<Namespace>>>,
    pending: Mutex<HashMap<String, Pending>>,
    server_side: RwLock<Option<ServerSideHandler>>,
}

fn to_selector(opts: &BroadcastOptions) -> Selector {
    Selector {
        rooms: opts.rooms.iter().map(|r| r.to_string()).collect(),
        except: opts.except.iter().map(|r| r.to_string()).collect(),
    }
}

fn from_selector(selector: &Selector) -> BroadcastOptions {
    BroadcastOptions {
        rooms: selector
            .rooms
            .iter()
            .map(|r| Arc::from(r.as_str()))
            .collect::<SmallVec<_>>(),
        except: selector
            .except
            .iter()
            .map(|r| Arc::from(r.as_str()))
            .collect::<SmallVec<_>>(),
        flags: BroadcastFlags::default(),
    }
}

fn rooms_of(names: &[String]) -> Vec<Room> {
    names.iter().map(|r| Arc::from(r.as_str())).collect()
}

fn random_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl AmqpAdapter {
    /// An adapter on `link`; it becomes the link's message handler.
    pub fn new(link: AmqpLink) -> Arc<Self> {
        let adapter = Arc::new(AmqpAdapter {
            link: link.clone(),
            namespaces: RwLock::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            server_side: RwLock::new(None),
        });
        link.set_handler(adapter.clone());
        adapter
    }

    /// Sets the handler of server-side events from other replicas (`serverSideEmit`).
    pub fn on_server_side_emit(&self, handler: ServerSideHandler) {
        *self.server_side.write() = Some(handler);
    }

    fn send(&self, route: Route, kind: MessageKind, body: &Body) {
        self.publish(route, kind, wire::encode(body));
    }

    fn publish(&self, route: Route, kind: MessageKind, bytes: Vec<u8>) {
        let bytes = Bytes::from(bytes);
        if let Err(error) = self.link.publish(route, kind, bytes) {
            tracing::debug!(%error, "cross-replica message not published");
        }
    }

    /// Publishes a request and waits for one answer from each live peer (or the timeout).
    async fn ask(&self, make: impl FnOnce(String) -> Body) -> Result<Vec<Body>, AdapterError> {
        let expected = self.link.peers();
        if expected == 0 {
            return Ok(Vec::new());
        }
        if !self.link.is_ready() {
            return Err(AdapterError::Unavailable(
                "rabbitmq is not connected".into(),
            ));
        }
        let id = random_request_id();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(
            id.clone(),
            Pending {
                expected,
                answers: Vec::with_capacity(expected),
                done: Some(tx),
            },
        );
        self.send(Route::All, MessageKind::Request, &make(id.clone()));
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(answers)) => Ok(answers),
            _ => {
                self.pending.lock().remove(&id);
                Err(AdapterError::Timeout)
            }
        }
    }

    fn namespace(&self, nsp: &str) -> Option<Arc<Namespace>> {
        self.namespaces.read().get(nsp).and_then(Weak::upgrade)
    }

    fn on_answer(&self, id: &str, body: Body) {
        let mut pending = self.pending.lock();
        let Some(entry) = pending.get_mut(id) else {
            return; // timed out already
        };
        entry.answers.push(body);
        if entry.answers.len() >= entry.expected
            && let Some(mut entry) = pending.remove(id)
            && let Some(done) = entry.done.take()
        {
            let _ = done.send(std::mem::take(&mut entry.answers));
        }
    }

    fn on_request(&self, from: &str, ns: &Namespace, body: Body) {
        match body {
            Body::FetchSockets { id, sel, .. } => {
                let sockets = ns
                    .local_socket_infos(&from_selector(&sel))
                    .into_iter()
                    .map(|s| RemoteSocket {
                        id: s.id.to_string(),
                        rooms: s.rooms.iter().map(|r| r.to_string()).collect(),
                        auth: s.auth,
                        handshake: s.handshake,
                        data: s.data,
                    })
                    .collect();
                self.send(
                    Route::To(from.to_owned()),
                    MessageKind::Response,
                    &Body::Sockets { id, sockets },
                );
            }
            Body::AllRooms { id, .. } => {
                let rooms = ns.local_rooms().iter().map(|r| r.to_string()).collect();
                self.send(
                    Route::To(from.to_owned()),
                    MessageKind::Response,
                    &Body::Rooms { id, rooms },
                );
            }
            Body::AddRooms { sel, join, .. } => {
                ns.local_add_rooms(&from_selector(&sel), &rooms_of(&join));
            }
            Body::DelRooms { sel, leave, .. } => {
                ns.local_del_rooms(&from_selector(&sel), &rooms_of(&leave));
            }
            Body::Disconnect { sel, close, .. } => ns.local_disconnect(&from_selector(&sel), close),
            Body::ServerSideEmit { args, .. } => {
                let handler = self.server_side.read().clone();
                if let Some(h) = handler {
                    h(ns.name(), &args);
                }
            }
            Body::Broadcast { .. } | Body::Sockets { .. } | Body::Rooms { .. } => {}
        }
    }
}

impl InboundHandler for AmqpAdapter {
    fn on_message(&self, from: &str, kind: MessageKind, payload: Bytes) {
        let (body, binary) = match wire::decode(&payload) {
            Ok(decoded) => decoded,
            Err(error) => {
                tracing::debug!(%error, "undecodable message from another replica ignored");
                return;
            }
        };
        match body {
            Body::Sockets { ref id, .. } | Body::Rooms { ref id, .. } => {
                let id = id.clone();
                self.on_answer(&id, body);
            }
            Body::Broadcast { nsp, sel, data, .. } => {
                if let Some(ns) = self.namespace(&nsp) {
                    let packet = BroadcastPacket { data, binary };
                    ns.deliver_local(&packet, &from_selector(&sel));
                }
            }
            body => {
                let Some(ns) = body.nsp().and_then(|n| self.namespace(n)) else {
                    return;
                };
                tracing::debug!(kind = kind.as_str(), "request from another replica");
                self.on_request(from, &ns, body);
            }
        }
    }
}

#[async_trait]
impl Adapter for AmqpAdapter {
    fn init_namespace(&self, ns: &Arc<Namespace>) {
        self.namespaces
            .write()
            .insert(ns.name().to_owned(), Arc::downgrade(ns));
    }

    fn broadcast(&self, ns: &Arc<Namespace>, packet: BroadcastPacket, opts: BroadcastOptions) {
        if !opts.flags.local {
            let bytes = wire::encode_broadcast(
                ns.name(),
                &to_selector(&opts),
                &packet.data,
                &packet.binary,
            );
            self.publish(Route::All, MessageKind::Broadcast, bytes);
        }
        ns.deliver_local(&packet, &opts);
    }

    async fn server_count(&self, _ns: &Arc<Namespace>) -> usize {
        self.link.peers() + 1
    }

    async fn fetch_sockets(
        &self,
        ns: &Arc<Namespace>,
        opts: BroadcastOptions,
    ) -> Result<Vec<SocketInfo>, AdapterError> {
        let mut sockets = ns.local_socket_infos(&opts);
        if opts.flags.local {
            return Ok(sockets);
        }
        let nsp = ns.name().to_owned();
        let sel = to_selector(&opts);
        for answer in self.ask(|id| Body::FetchSockets { nsp, id, sel }).await? {
            if let Body::Sockets {
                sockets: remote, ..
            } = answer
            {
                sockets.extend(remote.into_iter().map(|s| SocketInfo {
                    id: Arc::from(s.id.as_str()),
                    rooms: rooms_of(&s.rooms),
                    auth: s.auth,
                    handshake: s.handshake,
                    data: s.data,
                }));
            }
        }
        Ok(sockets)
    }

    async fn add_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, rooms: Vec<Room>) {
        ns.local_add_rooms(&opts, &rooms);
        if !opts.flags.local {
            let body = Body::AddRooms {
                nsp: ns.name().to_owned(),
                sel: to_selector(&opts),
                join: rooms.iter().map(|r| r.to_string()).collect(),
            };
            self.send(Route::All, MessageKind::Request, &body);
        }
    }

    async fn del_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, rooms: Vec<Room>) {
        ns.local_del_rooms(&opts, &rooms);
        if !opts.flags.local {
            let body = Body::DelRooms {
                nsp: ns.name().to_owned(),
                sel: to_selector(&opts),
                leave: rooms.iter().map(|r| r.to_string()).collect(),
            };
            self.send(Route::All, MessageKind::Request, &body);
        }
    }

    async fn disconnect_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, close: bool) {
        ns.local_disconnect(&opts, close);
        if !opts.flags.local {
            let body = Body::Disconnect {
                nsp: ns.name().to_owned(),
                sel: to_selector(&opts),
                close,
            };
            self.send(Route::All, MessageKind::Request, &body);
        }
    }

    async fn all_rooms(&self, ns: &Arc<Namespace>) -> Result<HashSet<Room>, AdapterError> {
        let mut rooms = ns.local_rooms();
        let nsp = ns.name().to_owned();
        for answer in self.ask(|id| Body::AllRooms { nsp, id }).await? {
            if let Body::Rooms { rooms: remote, .. } = answer {
                rooms.extend(rooms_of(&remote));
            }
        }
        Ok(rooms)
    }

    fn server_side_emit(&self, ns: &Arc<Namespace>, args: Vec<Value>) {
        let body = Body::ServerSideEmit {
            nsp: ns.name().to_owned(),
            args,
        };
        self.send(Route::All, MessageKind::Request, &body);
    }
}
