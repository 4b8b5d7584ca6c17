//! Cross-replica delivery over RabbitMQ: implements `hubbub_socketio::Adapter` with AMQP
//! 0-9-1 (the `lapin` client), for teams that run RabbitMQ rather than Redis pub/sub.
//!
//! - [`wire`]: the messages replicas exchange, pure encode/decode (no I/O).
//! - [`link`]: the connection to the broker, the topology, publishing, consuming,
//!   readiness, peer tracking and the `hubbub_amqp_*` metrics.
//! - [`adapter`]: [`adapter::AmqpAdapter`], the `Adapter` built on both.
//!
//! Crate rules: builds on `hubbub-socketio` (the `Adapter` seam) and `lapin`; knows nothing
//! of the chat application and depends on no Redis code (`hubbub-redis`, `fred`), which
//! `crates/server/tests/layering.rs` checks. Hubbub replicas sharing a RabbitMQ speak only
//! to each other (the format is hubbub's own, not the Node adapter's). The topology and the
//! reasons for it are in `docs/amqp.md`. `link.rs` is the largest file: the supervisor task
//! owns the connection, publishing and consuming together so that order needs no locks.

pub mod adapter;
pub mod link;
pub mod wire;
