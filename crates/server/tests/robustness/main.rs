//! Robustness: bad input against a real in-process server.
//!
//! Every test starts the crate's own route table (`http::routes`) wired like
//! `server::run` does — metrics, in-memory store and adapter, `Io` with the
//! chat application, `Engine` — served by `engineio::serve` as in production
//! (a few WebSocket tests also in a plain actix-web server) on a loopback
//! port, and talks to it with awc and raw TCP over HTTP long-polling and
//! WebSocket. Each abuse is checked for its exact
//! answer (status, `{"code":N,"message":"..."}` body, or the connection being
//! closed) and for not disturbing the others: a session opened before the
//! abuse must still answer afterwards and `/healthz` must still say `ok`.
//!
//! A process-wide panic hook counts panics, so a panic in a server task (which
//! would otherwise only be logged) fails the test that caused it.
//!
//! One module per concern: `handshake`, `polling`, `websocket`, `slow_consumer`, `heartbeat`, `socketio`, `hostile_http` (slow and hostile HTTP clients), `churn` (connections leaving in every way); the harness is `support`.

mod churn;
mod handshake;
mod heartbeat;
mod hostile_http;
mod polling;
mod slow_consumer;
mod socketio;
mod support;
mod websocket;
