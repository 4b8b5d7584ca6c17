//! Cross-replica delivery: implements `socketio::Adapter` over Redis (fred), speaking the
//! wire format of the Node.js `@socket.io/redis-adapter` so that hubbub and Node.js
//! socket.io replicas can share one Redis.
//!
//! - [`wire`]: the adapter's MessagePack/JSON messages, pure encode/decode.
//! - [`settings`]: how to reach Redis, and the crate's error type.
//! - [`link`]: the Redis connections, publishing, subscriptions, readiness.
//! - [`metrics`]: the `hubbub_redis_*` metrics.
//! - [`adapter`]: [`adapter::RedisAdapter`], the `socketio::Adapter` built on both.
//!
//! This module knows nothing of the chat application.

pub mod adapter;
pub mod admin_sessions;
pub mod link;
pub mod metrics;
pub mod settings;
pub mod wire;
