//! hubbub: a real-time chat service for Kubernetes that speaks the Socket.IO
//! protocol (Engine.IO v4 + Socket.IO v5), scales out through Redis in the wire
//! format of `@socket.io/redis-adapter`, and ships with an operator.
//!
//! # Layout
//!
//! Layers only look down:
//!
//! | module | owns | must not touch |
//! |---|---|---|
//! | [`config`] | server settings, defaults, validation | I/O |
//! | [`telemetry`] | tracing set-up (the only process-wide globals) | |
//! | [`metrics`] | the server's Prometheus registry and metric handles | the global registry |
//! | [`engineio`] | Engine.IO v4: packets, sessions, polling and WebSocket transports, the HTTP server that takes WebSockets off actix-http's dispatcher | Socket.IO, chat, Redis |
//! | [`socketio`] | Socket.IO v5: packets, namespaces, sockets, acks, rooms, broadcast, the `Adapter` trait | chat, Redis |
//! | [`cluster`] | cross-replica delivery: `socketio::Adapter` over Redis | chat |
//! | [`chat`] | the chat + Q&A application and its `Store` | engineio internals |
//! | [`http`] | the one route table | |
//! | [`server`] | wiring and graceful shutdown | |
//! | [`bench`] | the `hubbub-bench` load tool: a hand-made Socket.IO client and its scenarios | every server module |
//! | [`operator`] | the Kubernetes operator for `ChatRoom` | engineio, socketio, cluster, chat |
//!
//! The binaries in `src/bin/` only parse arguments, set up telemetry and call
//! into this library.

pub mod bench;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod engineio;
pub mod http;
pub mod metrics;
pub mod operator;
pub mod server;
pub mod socketio;
pub mod telemetry;
