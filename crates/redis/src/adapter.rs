//! [`RedisAdapter`]: the `socketio::Adapter` over Redis, interoperable with Node.js
//! socket.io servers running `@socket.io/redis-adapter` and with `@socket.io/redis-emitter`.
//!
//! - A broadcast is one PUBLISH (the room channel when aimed at exactly one room), then
//!   local delivery, encoded once for every local recipient. Messages come back to their
//!   sender through Redis and are dropped by uid, so nobody receives a broadcast twice.
//! - Received broadcasts (from hubbub, Node or the emitter) are delivered to the matching
//!   local sockets in arrival order, which Redis keeps per publisher.
//! - Every request type of the Node protocol is answered so that Node peers never wait for
//!   a timeout because of a hubbub node: socket lists, rooms, remote join/leave/disconnect,
//!   fetch sockets, server-side emit (acked with the registered handler's value, `null`
//!   by default), and broadcasts with acks (client count, then each client's ack).
//! - Requests made here (fetch sockets, all rooms) wait for `PUBSUB NUMSUB - 1` responses
//!   for at most five seconds, like the Node adapter.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::{Map, Value};
use smallvec::SmallVec;
use tokio::sync::oneshot;

use super::wire::{
    self, BroadcastOpts, Channels, Payload, Request, RequestBody, RequestType, Response,
    ResponseFrame, Selector, Target,
};
use crate::link::{InboundHandler, MessageKind, RedisLink, now_micros};
use crate::recovery::RedisRecovery;
use hubbub_socketio::adapter::AdapterError;
use hubbub_socketio::broadcast::BroadcastFlags;
use hubbub_socketio::{Adapter, BroadcastOptions, BroadcastPacket, Namespace, SocketInfo};

/// How long requests made by this node wait for the other nodes (the Node default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a server-side event from another node: gets the namespace and `[event, ...args]`,
/// returns the value acknowledged to the sender.
pub type ServerSideHandler = Arc<dyn Fn(&str, &[Value]) -> Value + Send + Sync>;

struct NamespaceEntry {
    ns: Weak<Namespace>,
    channels: Channels,
}

struct Pending {
    kind: RequestType,
    expected: usize,
    responses: Vec<Response>,
    done: Option<oneshot::Sender<Vec<Response>>>,
}

/// Cross-replica delivery through Redis in the `@socket.io/redis-adapter` format.
pub struct RedisAdapter {
    link: RedisLink,
    uid: String,
    key: String,
    namespaces: RwLock<HashMap<String, NamespaceEntry>>,
    pending: Mutex<HashMap<String, Pending>>,
    server_side: RwLock<Option<ServerSideHandler>>,
    /// Connection state recovery: broadcasts go through its stream log (see `recovery.rs`).
    recovery: RwLock<Option<Arc<RedisRecovery>>>,
    me: Weak<RedisAdapter>,
}

fn to_selector(opts: &BroadcastOptions) -> Selector {
    Selector {
        rooms: opts.rooms.iter().map(|r| r.to_string()).collect(),
        except: opts.except.iter().map(|r| r.to_string()).collect(),
    }
}

/// The Socket.IO options of a wire selector.
pub(crate) fn from_selector(selector: &Selector) -> BroadcastOptions {
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

fn random_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// What `fetchSockets()` on a peer (hubbub or Node) gets for a hubbub socket, as
/// `@socket.io/redis-adapter` sends it: id, rooms, `socket.data`, and `socket.handshake`
/// (`{headers, time, address, xdomain, secure, issued, url, query}`, credential headers
/// redacted) with `auth`, the CONNECT payload.
pub(crate) fn remote_socket(info: &SocketInfo) -> wire::RemoteSocket {
    let mut handshake = match &info.handshake {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    handshake.insert("auth".into(), info.auth.clone());
    wire::RemoteSocket {
        id: info.id.to_string(),
        handshake: Value::Object(handshake),
        rooms: info.rooms.iter().map(|r| r.to_string()).collect(),
        data: info.data.clone(),
    }
}

/// A socket described by a peer's `fetchSockets()` answer.
pub(crate) fn socket_info(s: wire::RemoteSocket) -> SocketInfo {
    let mut handshake = s.handshake;
    let auth = handshake
        .as_object_mut()
        .and_then(|h| h.remove("auth"))
        .unwrap_or(Value::Null);
    SocketInfo {
        id: Arc::from(s.id.as_str()),
        rooms: s.rooms.iter().map(|r| Arc::from(r.as_str())).collect(),
        auth,
        handshake,
        data: s.data,
    }
}

impl RedisAdapter {
    /// An adapter on `link`; it becomes the link's message handler.
    pub fn new(link: RedisLink) -> Arc<Self> {
        let adapter = Arc::new_cyclic(|me| RedisAdapter {
            uid: link.node_id().to_owned(),
            key: link.settings().channel_prefix.clone(),
            link: link.clone(),
            namespaces: RwLock::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            server_side: RwLock::new(None),
            recovery: RwLock::new(None),
            me: me.clone(),
        });
        link.set_handler(adapter.clone());
        adapter
    }

    /// This node's uid on the wire.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Logs every broadcast in `recovery`'s stream (connection state recovery). Call before
    /// the first namespace is created.
    pub fn set_recovery(&self, recovery: Arc<RedisRecovery>) {
        *self.recovery.write() = Some(recovery);
    }

    /// Sets the handler of server-side events from other nodes (`serverSideEmit`).
    pub fn on_server_side_emit(&self, handler: ServerSideHandler) {
        *self.server_side.write() = Some(handler);
    }

    fn channels(&self, nsp: &str) -> Channels {
        match self.namespaces.read().get(nsp) {
            Some(e) => e.channels.clone(),
            None => Channels::new(&self.key, nsp, &self.uid),
        }
    }

    fn publish(&self, channel: String, payload: Vec<u8>, kind: MessageKind) {
        if let Err(error) = self.link.publish(channel, Bytes::from(payload), kind) {
            tracing::debug!(%error, "cross-replica message not published");
        }
    }

    fn respond(&self, channels: &Channels, response: &Response) {
        self.publish(
            channels.response.clone(),
            wire::encode_response(response),
            MessageKind::Response,
        );
    }

    /// Publishes a request that expects no response (join, leave, disconnect, server-side emit).
    fn notify(&self, ns: &Namespace, body: RequestBody) {
        self.request(
            ns,
            &Request {
                uid: Some(self.uid.clone()),
                request_id: None,
                body,
            },
        );
    }

    fn request(&self, ns: &Namespace, request: &Request) {
        self.publish(
            self.channels(ns.name()).request,
            wire::encode_request(request),
            MessageKind::Request,
        );
    }

    /// Publishes a request and waits for `expected` responses (or the timeout).
    async fn ask(
        &self,
        ns: &Namespace,
        body: RequestBody,
        expected: usize,
    ) -> Result<Vec<Response>, AdapterError> {
        let request_id = random_request_id();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(
            request_id.clone(),
            Pending {
                kind: body.request_type(),
                expected,
                responses: Vec::with_capacity(expected),
                done: Some(tx),
            },
        );
        self.request(
            ns,
            &Request {
                uid: Some(self.uid.clone()),
                request_id: Some(request_id.clone()),
                body,
            },
        );
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(responses)) => Ok(responses),
            _ => {
                self.pending.lock().remove(&request_id);
                Err(AdapterError::Timeout)
            }
        }
    }

    /// Other nodes serving `ns`, from `PUBSUB NUMSUB`; 0 when Redis cannot say.
    async fn peers(&self, ns: &Namespace) -> usize {
        match self.link.numsub(&self.channels(ns.name()).request).await {
            Ok(n) => n.saturating_sub(1),
            Err(_) => 0,
        }
    }

    fn on_broadcast(&self, ns: &Namespace, payload: &[u8]) {
        let msg = match wire::decode_broadcast(payload) {
            Ok(m) => m,
            Err(error) => {
                tracing::debug!(%error, "undecodable broadcast ignored");
                return;
            }
        };
        if msg.packet.nsp != ns.name() {
            return;
        }
        let recovery = self.recovery.read().clone();
        if let Some(offset) = recovery.and_then(|r| r.offset_of(payload)) {
            // A logged broadcast, ours included: every replica delivers it now, in log order,
            // with its offset appended once before the one encoding its recipients share.
            if let Some(t) = msg.sent_at_us {
                self.link.observe_lag(t);
            }
            let mut data = msg.packet.data.value;
            if let Value::Array(items) = &mut data {
                items.push(Value::String(crate::recovery::wire_offset(offset)));
            }
            let packet = BroadcastPacket {
                data,
                binary: msg.packet.data.attachments,
            };
            ns.deliver_logged(&packet, &from_selector(&msg.opts.selector), offset);
            return;
        }
        if msg.uid == self.uid {
            return; // our own, already delivered locally
        }
        if let Some(t) = msg.sent_at_us {
            self.link.observe_lag(t);
        }
        let packet = BroadcastPacket {
            data: msg.packet.data.value,
            binary: msg.packet.data.attachments,
        };
        ns.deliver_local(&packet, &from_selector(&msg.opts.selector));
    }

    fn on_request(&self, ns: Arc<Namespace>, channels: &Channels, payload: &[u8]) {
        let request = match wire::decode_request(payload) {
            Ok(r) => r,
            Err(error) => {
                tracing::debug!(%error, "undecodable request ignored");
                return;
            }
        };
        if request.uid.as_deref() == Some(self.uid.as_str()) {
            return; // our own request, applied locally when it was made
        }
        tracing::debug!(
            kind = request.body.request_type().as_str(),
            "request from another node"
        );
        let request_id = request.request_id.clone();
        match request.body {
            RequestBody::Sockets { rooms } => {
                let Some(request_id) = request_id else { return };
                let opts = from_selector(&Selector {
                    rooms,
                    except: vec![],
                });
                let sockets = ns
                    .local_socket_infos(&opts)
                    .iter()
                    .map(|s| s.id.to_string())
                    .collect();
                self.respond(
                    channels,
                    &Response::Sockets {
                        request_id,
                        sockets,
                    },
                );
            }
            RequestBody::AllRooms => {
                let Some(request_id) = request_id else { return };
                let rooms = ns.local_rooms().iter().map(|r| r.to_string()).collect();
                self.respond(channels, &Response::AllRooms { request_id, rooms });
            }
            RequestBody::RemoteJoin { target, rooms } => match target {
                Target::Selector(selector) => {
                    let rooms: Vec<_> = rooms.iter().map(|r| Arc::from(r.as_str())).collect();
                    ns.local_add_rooms(&from_selector(&selector), &rooms);
                }
                Target::Socket(sid) => {
                    let Some(socket) = ns.get_socket(&sid) else {
                        return;
                    };
                    for room in &rooms {
                        socket.join(room.as_str());
                    }
                    if let Some(request_id) = request_id {
                        self.respond(channels, &Response::Done { request_id });
                    }
                }
            },
            RequestBody::RemoteLeave { target, rooms } => match target {
                Target::Selector(selector) => {
                    let rooms: Vec<_> = rooms.iter().map(|r| Arc::from(r.as_str())).collect();
                    ns.local_del_rooms(&from_selector(&selector), &rooms);
                }
                Target::Socket(sid) => {
                    let Some(socket) = ns.get_socket(&sid) else {
                        return;
                    };
                    for room in &rooms {
                        socket.leave(room);
                    }
                    if let Some(request_id) = request_id {
                        self.respond(channels, &Response::Done { request_id });
                    }
                }
            },
            RequestBody::RemoteDisconnect { target, close } => match target {
                Target::Selector(selector) => ns.local_disconnect(&from_selector(&selector), close),
                Target::Socket(sid) => {
                    let Some(socket) = ns.get_socket(&sid) else {
                        return;
                    };
                    if close {
                        socket.close_connection();
                    } else {
                        socket.disconnect();
                    }
                    if let Some(request_id) = request_id {
                        self.respond(channels, &Response::Done { request_id });
                    }
                }
            },
            RequestBody::RemoteFetch { selector } => {
                let Some(request_id) = request_id else { return };
                let sockets = ns
                    .local_socket_infos(&from_selector(&selector))
                    .iter()
                    .map(remote_socket)
                    .collect();
                self.respond(
                    channels,
                    &Response::FetchSockets {
                        request_id,
                        sockets,
                    },
                );
            }
            RequestBody::ServerSideEmit { data } => {
                let args = match &data.value {
                    Value::Array(items) => items.as_slice(),
                    _ => &[],
                };
                let handler = self.server_side.read().clone();
                let value = handler.map_or(Value::Null, |h| h(ns.name(), args));
                if let Some(request_id) = request_id {
                    self.respond(
                        channels,
                        &Response::ServerSideEmit {
                            request_id,
                            data: value,
                        },
                    );
                }
            }
            RequestBody::Broadcast { packet, opts } => {
                let Some(request_id) = request_id else { return };
                self.broadcast_with_acks(ns, channels.clone(), request_id, packet, opts);
            }
        }
    }

    /// Answers a Node `timeout(..).emit(.., ack)`: sends the event to the matching local
    /// sockets with an ack id, reports how many, then relays each client's ack.
    fn broadcast_with_acks(
        &self,
        ns: Arc<Namespace>,
        channels: Channels,
        request_id: String,
        packet: wire::WirePacket,
        opts: BroadcastOpts,
    ) {
        let targets = ns.local_socket_infos(&from_selector(&opts.selector));
        self.respond(
            &channels,
            &Response::BroadcastClientCount {
                request_id: request_id.clone(),
                client_count: targets.len() as u64,
            },
        );
        let mut items = match packet.data.value {
            Value::Array(items) => items,
            _ => return,
        };
        if items.is_empty() {
            return;
        }
        let event = match items.remove(0) {
            Value::String(s) => s,
            other => other.to_string(),
        };
        if !packet.data.attachments.is_empty() {
            tracing::debug!("binary arguments of an acked broadcast are not relayed");
        }
        let timeout = Duration::from_millis(
            opts.flags
                .timeout
                .unwrap_or(REQUEST_TIMEOUT.as_millis() as u64),
        );
        let Some(me) = self.me.upgrade() else { return };
        let args = Arc::new(items);
        for info in targets {
            let Some(socket) = ns.get_socket(&info.id) else {
                continue;
            };
            let (me, channels, request_id, event, args) = (
                me.clone(),
                channels.clone(),
                request_id.clone(),
                event.clone(),
                args.clone(),
            );
            tokio::spawn(async move {
                if let Ok(ack) = socket.emit_with_ack(&event, &args, timeout).await {
                    let first = ack.args.into_iter().next().unwrap_or(Value::Null);
                    me.respond(
                        &channels,
                        &Response::BroadcastAck {
                            request_id,
                            packet: Payload {
                                value: first,
                                attachments: ack.binary,
                            },
                        },
                    );
                }
            });
        }
    }

    fn on_response(&self, payload: &[u8]) {
        let Ok(frame) = ResponseFrame::parse(payload) else {
            return;
        };
        let request_id = frame.request_id.clone();
        let mut pending = self.pending.lock();
        let Some(entry) = pending.get_mut(&request_id) else {
            return; // another node's request
        };
        match frame.interpret(entry.kind) {
            Ok(response) => entry.responses.push(response),
            Err(error) => {
                tracing::debug!(%error, "malformed response ignored");
                return;
            }
        }
        if entry.responses.len() >= entry.expected
            && let Some(mut entry) = pending.remove(&request_id)
            && let Some(done) = entry.done.take()
        {
            let _ = done.send(std::mem::take(&mut entry.responses));
        }
    }
}

impl InboundHandler for RedisAdapter {
    fn on_message(&self, channel: &str, payload: Bytes) {
        enum Route {
            Broadcast(Arc<Namespace>),
            Request(Arc<Namespace>, Channels),
            Response,
        }
        let route = {
            let namespaces = self.namespaces.read();
            namespaces.values().find_map(|e| {
                let c = &e.channels;
                // The room in a room channel is also in the message's options, which decide.
                if c.room_of(channel).is_some() {
                    return e.ns.upgrade().map(Route::Broadcast);
                }
                if channel == c.request {
                    return e.ns.upgrade().map(|ns| Route::Request(ns, c.clone()));
                }
                if channel == c.response || channel == c.private_response {
                    return Some(Route::Response);
                }
                None
            })
        };
        match route {
            Some(Route::Broadcast(ns)) => self.on_broadcast(&ns, &payload),
            Some(Route::Request(ns, channels)) => self.on_request(ns, &channels, &payload),
            Some(Route::Response) => self.on_response(&payload),
            None => {}
        }
    }
}

#[async_trait]
impl Adapter for RedisAdapter {
    fn init_namespace(&self, ns: &Arc<Namespace>) {
        if let Some(recovery) = self.recovery.read().as_ref() {
            recovery.init_namespace(ns);
        }
        let channels = Channels::new(&self.key, ns.name(), &self.uid);
        let subscribe = (
            vec![
                channels.request.clone(),
                channels.response.clone(),
                channels.private_response.clone(),
            ],
            vec![channels.broadcast_pattern()],
        );
        self.namespaces.write().insert(
            ns.name().to_owned(),
            NamespaceEntry {
                ns: Arc::downgrade(ns),
                channels,
            },
        );
        let link = self.link.clone();
        tokio::spawn(async move { link.subscribe(&subscribe.0, &subscribe.1).await });
    }

    fn broadcast(&self, ns: &Arc<Namespace>, packet: BroadcastPacket, opts: BroadcastOptions) {
        if !opts.flags.local {
            let wire_opts = BroadcastOpts {
                selector: to_selector(&opts),
                flags: wire::BroadcastFlags::default(),
            };
            let bytes = wire::encode_event_broadcast(
                &self.uid,
                ns.name(),
                &packet.data,
                &packet.binary,
                &wire_opts,
                Some(now_micros()),
            );
            let channel = self
                .channels(ns.name())
                .broadcast_channel(&wire_opts.selector.rooms);
            let recovery = self.recovery.read().clone();
            if let Some(recovery) = recovery {
                // Logged: one script call appends it to the stream and publishes it with its
                // offset; this replica delivers it when it comes back, like the others.
                recovery.log(ns, channel, bytes, packet, opts);
                return;
            }
            self.publish(channel, bytes, MessageKind::Broadcast);
        }
        ns.deliver_local(&packet, &opts);
    }

    async fn server_count(&self, ns: &Arc<Namespace>) -> usize {
        self.peers(ns).await + 1
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
        let peers = self.peers(ns).await;
        if peers == 0 {
            return Ok(sockets);
        }
        let body = RequestBody::RemoteFetch {
            selector: to_selector(&opts),
        };
        for response in self.ask(ns, body, peers).await? {
            if let Response::FetchSockets {
                sockets: remote, ..
            } = response
            {
                sockets.extend(remote.into_iter().map(socket_info));
            }
        }
        Ok(sockets)
    }

    async fn add_sockets(
        &self,
        ns: &Arc<Namespace>,
        opts: BroadcastOptions,
        rooms: Vec<hubbub_socketio::rooms::Room>,
    ) {
        ns.local_add_rooms(&opts, &rooms);
        if !opts.flags.local {
            self.notify(
                ns,
                RequestBody::RemoteJoin {
                    target: Target::Selector(to_selector(&opts)),
                    rooms: rooms.iter().map(|r| r.to_string()).collect(),
                },
            );
        }
    }

    async fn del_sockets(
        &self,
        ns: &Arc<Namespace>,
        opts: BroadcastOptions,
        rooms: Vec<hubbub_socketio::rooms::Room>,
    ) {
        ns.local_del_rooms(&opts, &rooms);
        if !opts.flags.local {
            self.notify(
                ns,
                RequestBody::RemoteLeave {
                    target: Target::Selector(to_selector(&opts)),
                    rooms: rooms.iter().map(|r| r.to_string()).collect(),
                },
            );
        }
    }

    async fn disconnect_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, close: bool) {
        ns.local_disconnect(&opts, close);
        if !opts.flags.local {
            self.notify(
                ns,
                RequestBody::RemoteDisconnect {
                    target: Target::Selector(to_selector(&opts)),
                    close,
                },
            );
        }
    }

    async fn all_rooms(
        &self,
        ns: &Arc<Namespace>,
    ) -> Result<HashSet<hubbub_socketio::rooms::Room>, AdapterError> {
        let mut rooms = ns.local_rooms();
        let peers = self.peers(ns).await;
        if peers == 0 {
            return Ok(rooms);
        }
        for response in self.ask(ns, RequestBody::AllRooms, peers).await? {
            if let Response::AllRooms { rooms: remote, .. } = response {
                rooms.extend(remote.iter().map(|r| Arc::from(r.as_str())));
            }
        }
        Ok(rooms)
    }

    fn server_side_emit(&self, ns: &Arc<Namespace>, args: Vec<Value>) {
        self.notify(
            ns,
            RequestBody::ServerSideEmit {
                data: Payload::json(Value::Array(args)),
            },
        );
    }
}
