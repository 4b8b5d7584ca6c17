//! The adapter boundary: how a broadcast reaches matching sockets on every
//! node. The Socket.IO layer only calls [`Adapter`]; [`MemoryAdapter`] serves
//! a single process, and `crate::cluster` implements the trait over Redis in
//! the wire format of `@socket.io/redis-adapter`.
//!
//! Every operation is described by [`BroadcastOptions`] (rooms, exceptions,
//! flags) exactly like the reference adapter's options, so a cluster
//! implementation can publish them as they are.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::broadcast::{BroadcastOptions, BroadcastPacket};
use super::namespace::Namespace;
use super::rooms::Room;

/// What is known about a socket, possibly on another node (`fetchSockets`).
#[derive(Debug, Clone, PartialEq)]
pub struct SocketInfo {
    /// The Socket.IO socket id.
    pub id: Arc<str>,
    /// The rooms it is in, its own id included.
    pub rooms: Vec<Room>,
    /// The CONNECT payload it sent.
    pub auth: Value,
    /// socket.io's `socket.handshake` without `auth` (see [`crate::socket::handshake_json`]);
    /// `null` when the node that holds the socket does not send it.
    pub handshake: Value,
    /// socket.io's `socket.data`: the application's per-socket JSON object (`{}` when unset),
    /// with the admin UI's `_admin` field when that node runs it in development mode.
    pub data: Value,
}

/// Why an adapter operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AdapterError {
    /// Other nodes did not answer in time.
    #[error("adapter request timed out")]
    Timeout,
    /// The cluster transport is unavailable.
    #[error("adapter unavailable: {0}")]
    Unavailable(String),
}

/// Cross-node delivery for one or more namespaces.
#[async_trait]
pub trait Adapter: Send + Sync + 'static {
    /// Called once for every namespace created on this node (a cluster adapter subscribes here).
    fn init_namespace(&self, _ns: &Arc<Namespace>) {}

    /// Delivers `packet` to every matching socket of `ns` on every node, this
    /// one included (unless `opts.flags.local`). Never blocks.
    fn broadcast(&self, ns: &Arc<Namespace>, packet: BroadcastPacket, opts: BroadcastOptions);

    /// Number of nodes serving this namespace.
    async fn server_count(&self, ns: &Arc<Namespace>) -> usize;

    /// Sockets matching `opts` on every node.
    async fn fetch_sockets(
        &self,
        ns: &Arc<Namespace>,
        opts: BroadcastOptions,
    ) -> Result<Vec<SocketInfo>, AdapterError>;

    /// Makes the sockets matching `opts` join `rooms`, on every node.
    async fn add_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, rooms: Vec<Room>);

    /// Makes the sockets matching `opts` leave `rooms`, on every node.
    async fn del_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, rooms: Vec<Room>);

    /// Disconnects the sockets matching `opts` (and their whole connection when `close`), on every node.
    async fn disconnect_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, close: bool);

    /// Every room that has a member on any node.
    async fn all_rooms(&self, ns: &Arc<Namespace>) -> Result<HashSet<Room>, AdapterError>;

    /// Sends an event to the other nodes' `server_side_emit` handlers (not to clients).
    fn server_side_emit(&self, _ns: &Arc<Namespace>, _args: Vec<Value>) {}

    /// A room of `ns` got its first member on this node; `private` when the room is a
    /// socket's own id (the socket joined the namespace). Called after the room index is
    /// updated, with no lock held; a sharded adapter subscribes the room's channel here.
    /// Calls for one room may race: check the namespace for the current state.
    fn room_created(&self, _ns: &Namespace, _room: &str, _private: bool) {}

    /// The last member of a room of `ns` on this node left (`private`: the socket left the
    /// namespace). Same rules as [`Adapter::room_created`].
    fn room_deleted(&self, _ns: &Namespace, _room: &str, _private: bool) {}
}

/// The single-process adapter: every operation is local.
#[derive(Debug, Default)]
pub struct MemoryAdapter;

#[async_trait]
impl Adapter for MemoryAdapter {
    fn broadcast(&self, ns: &Arc<Namespace>, packet: BroadcastPacket, opts: BroadcastOptions) {
        // With connection state recovery the packet is logged (offset appended) on the way.
        ns.log_and_deliver(packet, &opts);
    }

    async fn server_count(&self, _ns: &Arc<Namespace>) -> usize {
        1
    }

    async fn fetch_sockets(
        &self,
        ns: &Arc<Namespace>,
        opts: BroadcastOptions,
    ) -> Result<Vec<SocketInfo>, AdapterError> {
        Ok(ns.local_socket_infos(&opts))
    }

    async fn add_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, rooms: Vec<Room>) {
        ns.local_add_rooms(&opts, &rooms);
    }

    async fn del_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, rooms: Vec<Room>) {
        ns.local_del_rooms(&opts, &rooms);
    }

    async fn disconnect_sockets(&self, ns: &Arc<Namespace>, opts: BroadcastOptions, close: bool) {
        ns.local_disconnect(&opts, close);
    }

    async fn all_rooms(&self, ns: &Arc<Namespace>) -> Result<HashSet<Room>, AdapterError> {
        Ok(ns.local_rooms())
    }
}
