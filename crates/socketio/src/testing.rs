//! Hooks for benchmarks and tests, not part of the API: sockets joined to a
//! namespace without any network, so that broadcast delivery can be measured
//! on its own. Owns nothing the server uses; hidden from the docs.

use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;

use super::Socket;
use super::namespace::Namespace;
use hubbub_engineio::EngineMetrics;
use hubbub_engineio::queue::Receiver;
use hubbub_engineio::{Session, Transport};

/// A socket joined without a connection, and the receiving end of its
/// session's outbound queue (what a transport would drain).
pub struct DetachedSocket {
    /// The socket, connected to its namespace.
    pub socket: Arc<Socket>,
    /// The session's outbound queue; every frame queued for the socket lands here.
    pub rx: OwnedMutexGuard<Receiver>,
}

/// Joins `n` sockets to `ns`, each on its own session with an outbound queue
/// of `queue` frames, and returns them. The sessions have no heartbeat and no
/// transport: frames stay queued until the caller drains `rx`.
#[doc(hidden)]
pub fn attach_detached_sockets(ns: &Arc<Namespace>, n: usize, queue: usize) -> Vec<DetachedSocket> {
    let metrics = Arc::new(EngineMetrics::detached());
    (0..n)
        .filter_map(|_| {
            let session = Session::new(Transport::WebSocket, queue, metrics.clone());
            // A fresh session's receiver is never locked; skip it if it somehow were.
            let rx = session.receiver().try_lock_owned().ok()?;
            let socket = Socket::new(
                ns.clone(),
                session,
                std::sync::Weak::new(),
                serde_json::Value::Null,
            );
            ns.add_socket(socket.clone());
            Some(DetachedSocket { socket, rx })
        })
        .collect()
}
