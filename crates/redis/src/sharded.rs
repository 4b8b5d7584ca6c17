//! [`ShardedAdapter`]: the `socketio::Adapter` over Redis Cluster sharded pub/sub
//! (SPUBLISH/SSUBSCRIBE), interoperable with Node.js socket.io servers using
//! `createShardedAdapter` from `@socket.io/redis-adapter` 8.x (messages in
//! [`crate::wire::sharded`]).
//!
//! - A broadcast is one SPUBLISH, then local delivery. It goes to the namespace channel
//!   `<key>#<nsp>#`, or, when it targets exactly one room that the subscription mode gives
//!   a channel, to `<key>#<nsp>#<room>#`. Channel names hash to slots, slots to shards: the
//!   room channels spread over the cluster's shards, while everything without a channel of
//!   its own (broadcasts to everyone, requests) lands on the shard of the namespace channel.
//! - Each node subscribes the namespace channel, its own response channel, and (modes
//!   `dynamic`, `dynamic-private`) the channel of every room with a local member for which
//!   the mode gives one, including sockets' own rooms when they have one: hubbub's socket
//!   ids are 22 characters, not the 20 the Node adapter takes for a socket id, so in the
//!   `dynamic` mode a `to(<hubbub socket id>)` travels on that socket's channel. The
//!   namespace tells the adapter when a room gets its first or loses its last local
//!   member ([`Adapter::room_created`]); the adapter then brings the subscription in line
//!   with the namespace, one room at a time under one lock, so racing joins and leaves
//!   end in the right state.
//! - Requests (`fetchSockets`, `serverSideEmit`, acknowledged broadcasts) and their
//!   responses work as in the Node `ClusterAdapter`; the server count is
//!   `PUBSUB SHARDNUMSUB <key>#<nsp>#`. The cluster protocol has no "all rooms" request:
//!   `all_rooms` returns this node's rooms, as the Node sharded adapter's `allRooms()` does.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use smallvec::SmallVec;
use tokio::sync::oneshot;

use crate::adapter::{remote_socket, socket_info};
use crate::link::{InboundHandler, MessageKind, RedisLink};
use crate::wire::sharded::{
    ClusterBody, ClusterMessage, ShardedChannels, decode_cluster_message, encode_cluster_message,
};
use crate::wire::{self, BroadcastOpts, Payload, Selector, WirePacket};
use hubbub_socketio::adapter::AdapterError;
use hubbub_socketio::broadcast::BroadcastFlags;
use hubbub_socketio::{Adapter, BroadcastOptions, BroadcastPacket, Namespace, SocketInfo};

/// How long requests made by this node wait for the other nodes (the Node default).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Answers a server-side event from another node (see [`crate::adapter::ServerSideHandler`]).
pub use crate::adapter::ServerSideHandler;

struct NamespaceEntry {
    ns: Weak<Namespace>,
    channels: ShardedChannels,
}

enum Pending {
    Fetch {
        expected: usize,
        sockets: Vec<SocketInfo>,
        received: usize,
        done: Option<oneshot::Sender<Vec<SocketInfo>>>,
    },
}

/// Cross-replica delivery over sharded pub/sub, in the Node sharded adapter's format.
pub struct ShardedAdapter {
    link: RedisLink,
    uid: String,
    key: String,
    namespaces: RwLock<HashMap<String, NamespaceEntry>>,
    pending: Mutex<HashMap<String, Pending>>,
    server_side: RwLock<Option<ServerSideHandler>>,
    /// Room channels subscribed now; the async lock serialises bringing them in line.
    room_channels: tokio::sync::Mutex<HashSet<String>>,
    me: Weak<ShardedAdapter>,
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

fn wire_opts(opts: &BroadcastOptions) -> BroadcastOpts {
    BroadcastOpts {
        selector: to_selector(opts),
        flags: wire::BroadcastFlags::default(),
    }
}

fn random_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl ShardedAdapter {
    /// An adapter on `link` (which must be a cluster link); it becomes the link's handler.
    pub fn new(link: RedisLink) -> Arc<Self> {
        let adapter = Arc::new_cyclic(|me| ShardedAdapter {
            uid: link.node_id().to_owned(),
            key: link.settings().channel_prefix.clone(),
            link: link.clone(),
            namespaces: RwLock::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            server_side: RwLock::new(None),
            room_channels: tokio::sync::Mutex::new(HashSet::new()),
            me: me.clone(),
        });
        link.set_handler(adapter.clone());
        adapter
    }

    /// This node's uid on the wire.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// Sets the handler of server-side events from other nodes (`serverSideEmit`).
    pub fn on_server_side_emit(&self, handler: ServerSideHandler) {
        *self.server_side.write() = Some(handler);
    }

    fn channels(&self, nsp: &str) -> ShardedChannels {
        match self.namespaces.read().get(nsp) {
            Some(e) => e.channels.clone(),
            None => ShardedChannels::new(
                &self.key,
                nsp,
                &self.uid,
                self.link.settings().subscription_mode,
            ),
        }
    }

    fn send(&self, channel: String, msg: &ClusterMessage, kind: MessageKind) {
        let bytes = encode_cluster_message(msg);
        if let Err(error) = self.link.publish(channel, Bytes::from(bytes), kind) {
            tracing::debug!(%error, "cross-replica message not published");
        }
    }

    fn message(&self, nsp: &str, body: ClusterBody) -> ClusterMessage {
        ClusterMessage {
            uid: self.uid.clone(),
            nsp: nsp.to_owned(),
            body,
        }
    }

    /// Publishes a request or notice on the namespace channel.
    fn notify(&self, ns: &Namespace, body: ClusterBody) {
        let channels = self.channels(ns.name());
        self.send(
            channels.main,
            &self.message(ns.name(), body),
            MessageKind::Request,
        );
    }

    fn respond(&self, ns: &Namespace, requester: &str, body: ClusterBody) {
        let channel = self.channels(ns.name()).responses_to(requester);
        self.send(
            channel,
            &self.message(ns.name(), body),
            MessageKind::Response,
        );
    }

    /// Other nodes serving `ns`, from `PUBSUB SHARDNUMSUB`; 0 when Redis cannot say.
    async fn peers(&self, ns: &Namespace) -> usize {
        match self.link.numsub(&self.channels(ns.name()).main).await {
            Ok(n) => n.saturating_sub(1),
            Err(_) => 0,
        }
    }

    /// Brings the subscription of `room`'s channel in line with the namespace: subscribed
    /// while the room has a local member and the mode gives it a channel.
    async fn sync_room(&self, nsp: String, room: String) {
        let (ns, channels) = {
            let namespaces = self.namespaces.read();
            let Some(entry) = namespaces.get(&nsp) else {
                return;
            };
            (entry.ns.upgrade(), entry.channels.clone())
        };
        if !channels.room_has_channel(&room) {
            return;
        }
        let channel = channels.room(&room);
        let mut subscribed = self.room_channels.lock().await;
        let wanted = ns.is_some_and(|ns| ns.has_local_room(&room));
        let have = subscribed.contains(&channel);
        if wanted && !have {
            self.link
                .subscribe_sharded(std::slice::from_ref(&channel))
                .await;
            subscribed.insert(channel);
        } else if !wanted && have {
            self.link
                .unsubscribe_sharded(std::slice::from_ref(&channel))
                .await;
            subscribed.remove(&channel);
        }
    }

    fn schedule_sync(&self, ns: &Namespace, room: &str) {
        let Some(me) = self.me.upgrade() else { return };
        if !self.channels(ns.name()).room_has_channel(room) {
            return;
        }
        let (nsp, room) = (ns.name().to_owned(), room.to_owned());
        tokio::spawn(async move { me.sync_room(nsp, room).await });
    }

    fn on_cluster_message(&self, ns: Arc<Namespace>, msg: ClusterMessage) {
        if msg.uid == self.uid || msg.nsp != ns.name() {
            return; // our own (already applied locally), or another namespace's
        }
        let requester = msg.uid;
        match msg.body {
            ClusterBody::Broadcast {
                packet,
                opts,
                request_id: None,
            } => {
                let packet = BroadcastPacket {
                    data: packet.data.value,
                    binary: packet.data.attachments,
                };
                ns.deliver_local(&packet, &from_selector(&opts.selector));
            }
            ClusterBody::Broadcast {
                packet,
                opts,
                request_id: Some(request_id),
            } => self.broadcast_with_acks(ns, requester, request_id, packet, opts),
            ClusterBody::SocketsJoin { opts, rooms } => {
                let rooms: Vec<_> = rooms.iter().map(|r| Arc::from(r.as_str())).collect();
                ns.local_add_rooms(&from_selector(&opts.selector), &rooms);
            }
            ClusterBody::SocketsLeave { opts, rooms } => {
                let rooms: Vec<_> = rooms.iter().map(|r| Arc::from(r.as_str())).collect();
                ns.local_del_rooms(&from_selector(&opts.selector), &rooms);
            }
            ClusterBody::DisconnectSockets { opts, close } => {
                ns.local_disconnect(&from_selector(&opts.selector), close);
            }
            ClusterBody::FetchSockets { opts, request_id } => {
                let sockets = ns
                    .local_socket_infos(&from_selector(&opts.selector))
                    .iter()
                    .map(remote_socket)
                    .collect();
                self.respond(
                    &ns,
                    &requester,
                    ClusterBody::FetchSocketsResponse {
                        request_id,
                        sockets,
                    },
                );
            }
            ClusterBody::ServerSideEmit { packet, request_id } => {
                let args = match &packet.value {
                    Value::Array(items) => items.as_slice(),
                    _ => &[],
                };
                let handler = self.server_side.read().clone();
                let value = handler.map_or(Value::Null, |h| h(ns.name(), args));
                if let Some(request_id) = request_id {
                    self.respond(
                        &ns,
                        &requester,
                        ClusterBody::ServerSideEmitResponse {
                            request_id,
                            packet: Payload::json(value),
                        },
                    );
                }
            }
            ClusterBody::FetchSocketsResponse {
                request_id,
                sockets,
            } => self.on_fetch_response(&request_id, sockets),
            // hubbub makes no acknowledged broadcasts or acknowledged server-side emits
            // across nodes; responses to other nodes' requests are not ours.
            ClusterBody::ServerSideEmitResponse { .. }
            | ClusterBody::BroadcastClientCount { .. }
            | ClusterBody::BroadcastAck { .. }
            | ClusterBody::Ignored(_) => {}
        }
    }

    fn on_fetch_response(&self, request_id: &str, remote: Vec<wire::RemoteSocket>) {
        let mut pending = self.pending.lock();
        let Some(Pending::Fetch {
            expected,
            sockets,
            received,
            done,
        }) = pending.get_mut(request_id)
        else {
            return;
        };
        sockets.extend(remote.into_iter().map(socket_info));
        *received += 1;
        if *received >= *expected {
            if let Some(done) = done.take() {
                let _ = done.send(std::mem::take(sockets));
            }
            pending.remove(request_id);
        }
    }

    /// Answers a Node `timeout(..).emit(.., ack)`: sends the event to the matching local
    /// sockets with an ack id, reports how many, then relays each client's ack.
    fn broadcast_with_acks(
        &self,
        ns: Arc<Namespace>,
        requester: String,
        request_id: String,
        packet: WirePacket,
        opts: BroadcastOpts,
    ) {
        let targets = ns.local_socket_infos(&from_selector(&opts.selector));
        self.respond(
            &ns,
            &requester,
            ClusterBody::BroadcastClientCount {
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
            let (me, ns, requester, request_id, event, args) = (
                me.clone(),
                ns.clone(),
                requester.clone(),
                request_id.clone(),
                event.clone(),
                args.clone(),
            );
            tokio::spawn(async move {
                if let Ok(ack) = socket.emit_with_ack(&event, &args, timeout).await {
                    let first = ack.args.into_iter().next().unwrap_or(Value::Null);
                    me.respond(
                        &ns,
                        &requester,
                        ClusterBody::BroadcastAck {
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
}

impl InboundHandler for ShardedAdapter {
    fn on_message(&self, channel: &str, payload: Bytes) {
        let ns = {
            let namespaces = self.namespaces.read();
            namespaces
                .values()
                .find(|e| channel.starts_with(e.channels.main.as_str()))
                .and_then(|e| e.ns.upgrade())
        };
        let Some(ns) = ns else { return };
        match decode_cluster_message(&payload) {
            Ok(msg) => self.on_cluster_message(ns, msg),
            Err(error) => tracing::debug!(%error, "undecodable cluster message ignored"),
        }
    }
}

#[async_trait]
impl Adapter for ShardedAdapter {
    fn init_namespace(&self, ns: &Arc<Namespace>) {
        let channels = ShardedChannels::new(
            &self.key,
            ns.name(),
            &self.uid,
            self.link.settings().subscription_mode,
        );
        let subscribe = vec![channels.main.clone(), channels.own_responses.clone()];
        self.namespaces.write().insert(
            ns.name().to_owned(),
            NamespaceEntry {
                ns: Arc::downgrade(ns),
                channels,
            },
        );
        let link = self.link.clone();
        tokio::spawn(async move { link.subscribe_sharded(&subscribe).await });
    }

    fn broadcast(&self, ns: &Arc<Namespace>, packet: BroadcastPacket, opts: BroadcastOptions) {
        if !opts.flags.local {
            let wire_opts = wire_opts(&opts);
            let channel = self
                .channels(ns.name())
                .for_broadcast(&wire_opts.selector.rooms, false);
            let msg = self.message(
                ns.name(),
                ClusterBody::Broadcast {
                    packet: WirePacket::event(
                        ns.name(),
                        Payload {
                            value: packet.data.clone(),
                            attachments: packet.binary.clone(),
                        },
                    ),
                    opts: wire_opts,
                    request_id: None,
                },
            );
            self.send(channel, &msg, MessageKind::Broadcast);
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
        let local = ns.local_socket_infos(&opts);
        if opts.flags.local {
            return Ok(local);
        }
        let peers = self.peers(ns).await;
        if peers == 0 {
            return Ok(local);
        }
        let request_id = random_request_id();
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(
            request_id.clone(),
            Pending::Fetch {
                expected: peers,
                sockets: local,
                received: 0,
                done: Some(tx),
            },
        );
        self.notify(
            ns,
            ClusterBody::FetchSockets {
                opts: wire_opts(&opts),
                request_id: request_id.clone(),
            },
        );
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(sockets)) => Ok(sockets),
            _ => {
                self.pending.lock().remove(&request_id);
                Err(AdapterError::Timeout)
            }
        }
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
                ClusterBody::SocketsJoin {
                    opts: wire_opts(&opts),
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
                ClusterBody::SocketsLeave {
                    opts: wire_opts(&opts),
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
                ClusterBody::DisconnectSockets {
                    opts: wire_opts(&opts),
                    close,
                },
            );
        }
    }

    async fn all_rooms(
        &self,
        ns: &Arc<Namespace>,
    ) -> Result<HashSet<hubbub_socketio::rooms::Room>, AdapterError> {
        Ok(ns.local_rooms())
    }

    fn server_side_emit(&self, ns: &Arc<Namespace>, args: Vec<Value>) {
        self.notify(
            ns,
            ClusterBody::ServerSideEmit {
                packet: Payload::json(Value::Array(args)),
                request_id: None,
            },
        );
    }

    fn room_created(&self, ns: &Namespace, room: &str, _private: bool) {
        self.schedule_sync(ns, room);
    }

    fn room_deleted(&self, ns: &Namespace, room: &str, _private: bool) {
        self.schedule_sync(ns, room);
    }
}
