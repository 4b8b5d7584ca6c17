//! Cross-replica delivery: implements `socketio::Adapter` over Redis (fred), speaking the
//! wire format of the Node.js `@socket.io/redis-adapter` so that hubbub and Node.js
//! socket.io replicas can share one Redis.
//!
//! - [`wire`]: the adapter's MessagePack/JSON messages, pure encode/decode.
//! - [`settings`]: how to reach Redis, and the crate's error type.
//! - [`topology`]: standalone, Sentinel or Cluster: the `fred` configuration and the
//!   start-up probe of Sentinels and seed nodes.
//! - [`tls`]: the roots TLS connections trust (the system's and `--redis-ca-file`).
//! - [`link`]: the Redis connections, publishing, subscriptions, readiness.
//! - [`metrics`]: the `hubbub_redis_*` metrics.
//! - [`adapter`]: [`adapter::RedisAdapter`], the `socketio::Adapter` built on both.
//! - [`forward`]: [`forward::RedisOwnerDirectory`], where each replica can be reached, for
//!   `hubbub_engineio::forward` (serving another replica's sessions without sticky sessions).
//! - [`recovery`]: connection state recovery across replicas: sessions and the stream log of
//!   broadcasts ([`recovery::RedisRecovery`], a `socketio::RecoveryStore`).
//!
//! Crate rules: builds on `hubbub-socketio` (the `Adapter` seam) and knows nothing of the chat
//! application; the chat's Redis store (`hubbub_server::chat::store_redis`) uses the
//! [`link::RedisLink`] from here, so every Redis connection of a replica lives in this crate.
//! `link.rs` is the largest file (about 770 lines): the connection, publisher, dispatcher
//! and watcher tasks share one `Inner` state and are kept together on purpose.

pub mod adapter;
pub mod admin_sessions;
pub mod forward;
pub mod link;
pub mod metrics;
pub mod recovery;
pub mod settings;
pub mod sharded;
pub mod tls;
pub mod topology;
pub mod wire;
