//! hubbub-server: the chat + Q&A application on hubbub's Socket.IO layers, and the
//! process that serves it.
//!
//! | module | owns | must not touch |
//! |---|---|---|
//! | [`config`] | the server's settings (flags and `HUBBUB_*`), defaults, validation, and the translation into each layer's own settings | I/O |
//! | [`metrics`] | the server's Prometheus registry, into which every layer registers its own metrics; the chat metrics | the global registry |
//! | [`chat`] | the chat + Q&A application and its `Store` (in memory or in Redis) | engineio internals |
//! | [`http`] | the one route table: page, client, health, readiness, metrics, the Engine.IO endpoint | |
//! | [`admin`] | the `--admin-*` settings and the wiring of `hubbub_socketio::admin` (engine counters, session store) | the admin protocol |
//! | [`server`] | wiring the layers together, graceful shutdown | |
//!
//! Depends on `hubbub-engineio`, `hubbub-socketio` and `hubbub-redis`; nothing depends on
//! it. `src/main.rs` parses the configuration, sets up logging and calls [`server::run`].
//!
//! A chat message's path: a WebSocket frame is read by `hubbub_engineio::transport::ws`,
//! decoded as an Engine.IO packet, then as a Socket.IO EVENT by `hubbub_socketio`, handed
//! to [`chat::events`] (validated, appended to the `Store`), and broadcast through the
//! `Adapter` (in memory, or one Redis PUBLISH through `hubbub_redis::adapter`); every
//! replica encodes it once and queues the same bytes for each local recipient.

pub mod admin;
pub mod chat;
pub mod config;
pub mod http;
pub mod metrics;
pub mod server;
