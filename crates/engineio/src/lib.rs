//! Engine.IO v4, server side: the handshake, sessions with heartbeats, and the
//! HTTP long-polling and WebSocket transports with the upgrade between them.
//!
//! This layer knows nothing of Socket.IO, chat, Redis or Kubernetes. An
//! application plugs in through [`EngineHandler`] (called when a session
//! opens) and the [`Connection`] it returns (messages in order, then one
//! close). It sends through [`Session::send`], which never blocks: every
//! session has a bounded queue and a client too slow to drain it is closed.
//!
//! | module | owns |
//! |---|---|
//! | [`packet`], [`payload`] | the wire format, sans-IO: parse and encode, tested on literal strings |
//! | [`session`], [`queue`] | one session: state, heartbeat, the bounded outbound queue |
//! | [`transport`] | long-polling (`polling`) and WebSocket (`ws`: the probe/upgrade logic; `ws::io`: the hand-written connection I/O) |
//! | [`serve`] | the HTTP server (actix-http) that hands WebSockets off its dispatcher after the handshake |
//! | [`metrics`] | [`EngineMetrics`], registered into a registry the binary gives |
//! | [`error`] | the reference server's error codes and bodies, mapped to HTTP in one place |
//!
//! Crate rules: depends on no other hubbub crate (`hubbub-socketio` and everything above
//! build on it); reads no command line: [`EngineConfig`] is built by the binary.

pub mod error;
pub mod forward;
pub mod handshake;
pub mod metrics;
pub mod packet;
pub mod payload;
pub mod queue;
pub mod serve;
pub mod session;
pub mod tasks;
pub mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use bytes::Bytes;
use bytestring::ByteString;
use parking_lot::RwLock;
use serde::Deserialize;

pub use error::EngineError;
pub use handshake::Handshake;
pub use metrics::EngineMetrics;
pub use packet::Frame;
pub use session::{CloseReason, SendError, Session, Sid, Transport};

/// A message for the application: the payload of a `4` packet, or binary data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Text (the Engine.IO `4` packet without its type digit).
    Text(ByteString),
    /// Binary data.
    Binary(Bytes),
}

/// The application's side of one session.
pub trait Connection: Send + Sync + 'static {
    /// A message from the client, in order. It must not block: work that
    /// waits (storage, acks) is spawned by the application, which keeps its
    /// own ordering. An error closes the session as a parse error.
    fn on_message(&self, msg: Message) -> Result<(), ProtocolViolation>;
    /// The session has closed; called exactly once.
    fn on_close(&self, reason: CloseReason);
    /// The session moved to another transport (polling to WebSocket, once at most),
    /// after the client's upgrade packet. Never called on the per-packet path; the
    /// default does nothing.
    fn on_upgrade(&self, _transport: Transport) {}
}

/// The application found a message that breaks its protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("protocol violation: {0}")]
pub struct ProtocolViolation(pub String);

/// Creates the application side of each new session.
pub trait EngineHandler: Send + Sync + 'static {
    /// A session has opened (its handshake is being written).
    fn on_open(&self, session: &Arc<Session>) -> Arc<dyn Connection>;
}

/// Which browser origins may connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPolicy {
    /// Any origin (`--cors-origins '*'`).
    Any,
    /// Same origin as the request's `Host`, plus these exact origins.
    Allow(Vec<String>),
}

impl OriginPolicy {
    /// From the `--cors-origins` list: empty means same origin only.
    pub fn from_list(list: &[String]) -> Self {
        if list.iter().any(|o| o == "*") {
            OriginPolicy::Any
        } else {
            OriginPolicy::Allow(list.to_vec())
        }
    }

    /// Whether a request with this `Origin` (and `Host`) may use the endpoint.
    /// Requests without an `Origin` come from non-browser clients and are allowed.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        match self {
            OriginPolicy::Any => true,
            OriginPolicy::Allow(list) => {
                if list.iter().any(|o| o == origin) {
                    return true;
                }
                let authority = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"));
                matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
            }
        }
    }
}

/// Engine.IO settings (from the server configuration).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Milliseconds between pings.
    pub ping_interval: Duration,
    /// Time to answer a ping.
    pub ping_timeout: Duration,
    /// Largest POST body / WebSocket message.
    pub max_payload: usize,
    /// Time a WebSocket probe has to complete the upgrade.
    pub upgrade_timeout: Duration,
    /// Frames queued per session before it is closed as too slow.
    pub outbound_queue: usize,
    /// Allowed browser origins.
    pub origins: OriginPolicy,
    /// Most sessions open at once; 0 for no limit. Handshakes beyond it get 503.
    /// Sessions still closing (a polling client has up to 2 s to collect its
    /// close packet) count.
    pub max_sessions: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            max_payload: 1_000_000,
            upgrade_timeout: Duration::from_millis(10_000),
            outbound_queue: 1024,
            origins: OriginPolicy::Allow(Vec::new()),
            max_sessions: 0,
        }
    }
}

/// The Engine.IO server: settings, the session table and the application.
pub struct Engine {
    /// Settings.
    pub config: EngineConfig,
    sessions: RwLock<HashMap<Sid, Arc<Session>>>,
    handler: Arc<dyn EngineHandler>,
    metrics: Arc<EngineMetrics>,
    accepting: AtomicBool,
    /// Whether sessions keep their handshake request ([`Engine::keep_handshakes`]).
    keep_handshakes: AtomicBool,
    /// Woken when the last session is removed (drain at shutdown).
    emptied: tokio::sync::Notify,
    /// The WebSocket connections served off actix-http's dispatcher
    /// ([`serve`]), which the HTTP server's graceful stop does not wait for.
    connections: tokio_util::task::TaskTracker,
    /// Sends requests for other replicas' sessions to their owners; set once, before
    /// serving, when the server runs with Redis ([`Engine::set_forwarder`]).
    forwarder: std::sync::OnceLock<Arc<forward::Forwarder>>,
}

impl Engine {
    /// Creates an engine that hands new sessions to `handler`.
    pub fn new(
        config: EngineConfig,
        handler: Arc<dyn EngineHandler>,
        metrics: Arc<EngineMetrics>,
    ) -> Arc<Engine> {
        let connections = tokio_util::task::TaskTracker::new();
        metrics.tasks.watch_tracker(connections.clone());
        Arc::new(Engine {
            config,
            sessions: RwLock::new(HashMap::new()),
            handler,
            metrics,
            accepting: AtomicBool::new(true),
            keep_handshakes: AtomicBool::new(false),
            emptied: tokio::sync::Notify::new(),
            connections,
            forwarder: std::sync::OnceLock::new(),
        })
    }

    /// Serves requests for sessions of other replicas through `forwarder`, and puts its
    /// owner tag in front of the ids of sessions made from now on. Call it before the
    /// server takes requests; a second call is ignored.
    pub fn set_forwarder(&self, forwarder: Arc<forward::Forwarder>) {
        if self.forwarder.set(forwarder).is_err() {
            tracing::warn!("forwarder already set; ignoring the second one");
        }
    }

    /// The forwarder and the owner tag of `sid`, when a request for it that is not
    /// served here should go to another replica.
    pub(crate) fn forward_target<'s>(
        &self,
        sid: &'s str,
        head: &actix_http::RequestHead,
    ) -> Option<(&Arc<forward::Forwarder>, &'s str)> {
        let forwarder = self.forwarder.get()?;
        Some((forwarder, forwarder.target(sid, head)?))
    }

    /// Sessions open now.
    pub fn session_count(&self) -> usize {
        self.sessions.read().len()
    }

    /// Stops accepting new sessions (graceful shutdown).
    pub fn stop_accepting(&self) {
        self.accepting.store(false, Ordering::Release);
    }

    /// Closes every session with `reason`; returns how many there were.
    pub fn close_all(&self, reason: CloseReason) -> usize {
        let sessions: Vec<Arc<Session>> = self.sessions.read().values().cloned().collect();
        for s in &sessions {
            s.close(reason);
        }
        sessions.len()
    }

    /// Looks up an open session.
    pub(crate) fn get(&self, sid: &str) -> Option<Arc<Session>> {
        let s = self.sessions.read().get(sid).cloned()?;
        if s.ping_expired(tokio::time::Instant::now()) {
            s.close(CloseReason::PingTimeout);
        }
        (!s.is_closed()).then_some(s)
    }

    /// A closed polling session whose client has yet to collect the close packet.
    pub(crate) fn get_flushing(&self, sid: &str) -> Option<Arc<Session>> {
        let s = self.sessions.read().get(sid).cloned()?;
        s.awaiting_flush().then_some(s)
    }

    pub(crate) fn remove(&self, sid: &str) {
        let mut sessions = self.sessions.write();
        sessions.remove(sid);
        if sessions.is_empty() {
            self.emptied.notify_waiters();
        }
    }

    /// A connection served off actix-http's dispatcher, counted until it ends.
    pub(crate) fn track_connection<F: std::future::Future>(
        &self,
        connection: F,
    ) -> tokio_util::task::task_tracker::TrackedFuture<F> {
        self.connections.track_future(connection)
    }

    /// WebSocket connections served off actix-http's dispatcher now.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Resolves once every WebSocket connection served off actix-http's
    /// dispatcher has ended (written its last frames and closed). Meant for
    /// shutdown, after [`Engine::close_all`].
    pub async fn wait_connections(&self) {
        self.connections.close();
        self.connections.wait().await;
    }

    /// Resolves once no session is open.
    pub async fn wait_empty(&self) {
        loop {
            let notified = self.emptied.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.session_count() == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Keeps each new session's handshake request ([`Session::handshake`]) from now on,
    /// for an application that shows it (the Socket.IO Admin UI). Off by default: a
    /// session then stores no copy of its request's headers.
    pub fn keep_handshakes(&self) {
        self.keep_handshakes.store(true, Ordering::Relaxed);
    }

    /// Creates a session, starts its heartbeat and tells the application.
    pub(crate) fn open_session(
        self: &Arc<Self>,
        transport: Transport,
        head: &actix_http::RequestHead,
    ) -> Result<Arc<Session>, EngineError> {
        let created = tokio::time::Instant::now();
        let sid = match self.forwarder.get() {
            // The owner tag first: any replica can tell where the session lives.
            Some(f) => Arc::from(format!("{}{}", f.local_tag(), session::random_id())),
            None => session::random_id(),
        };
        let session = Session::with_sid(
            sid,
            transport,
            self.config.outbound_queue,
            self.metrics.clone(),
        );
        if self.keep_handshakes.load(Ordering::Relaxed) {
            session.set_handshake(Handshake::from_head(head));
        }
        {
            let mut sessions = self.sessions.write();
            // Checked under the lock: a shutdown's `close_all` sees every
            // session inserted before it stopped accepting.
            if !self.accepting.load(Ordering::Acquire) {
                return Err(EngineError::ShuttingDown);
            }
            let max = self.config.max_sessions;
            if max > 0 && sessions.len() >= max {
                drop(sessions);
                self.metrics.sessions_refused_total.inc();
                return Err(EngineError::TooManySessions);
            }
            sessions.insert(session.sid().clone(), session.clone());
        }
        self.metrics.connections_total.inc();
        self.metrics
            .connections_open
            .with_label_values(&[transport.as_str()])
            .inc();
        tokio::spawn(session::drive(self.clone(), session.clone(), created));
        let conn = self.handler.on_open(&session);
        session.set_connection(conn);
        Ok(session)
    }

    /// The open packet for a new session on `transport`.
    pub(crate) fn open_frame(&self, session: &Session, transport: Transport) -> Frame {
        let upgrades: &[&str] = match transport {
            Transport::Polling => &["websocket"],
            Transport::WebSocket => &[],
        };
        packet::OpenPacket {
            sid: session.sid(),
            upgrades,
            ping_interval: self.config.ping_interval.as_millis() as u64,
            ping_timeout: self.config.ping_timeout.as_millis() as u64,
            max_payload: self.config.max_payload,
        }
        .encode()
    }

    /// Handles one received packet for `session` (both transports). An error
    /// means the session has been closed.
    pub(crate) fn on_packet(&self, session: &Session, packet: packet::Packet) -> Result<(), ()> {
        use packet::Packet;
        self.metrics.packets_received_total.inc();
        let msg = match packet {
            Packet::Message(text) => Message::Text(text),
            Packet::Binary(bytes) => Message::Binary(bytes),
            Packet::Pong(_) => {
                session.on_pong();
                return Ok(());
            }
            Packet::Close => {
                session.close(CloseReason::ClientClose);
                return Err(());
            }
            Packet::Noop | Packet::Ping(_) => return Ok(()),
            Packet::Open | Packet::Upgrade => {
                tracing::debug!(sid = %session.sid(), "unexpected packet from client");
                session.close(CloseReason::ParseError);
                return Err(());
            }
        };
        let Some(conn) = session.connection() else {
            return Err(());
        };
        match conn.on_message(msg) {
            Ok(()) => Ok(()),
            Err(violation) => {
                tracing::debug!(sid = %session.sid(), error = %violation, "closing session");
                session.close(CloseReason::ParseError);
                Err(())
            }
        }
    }

    pub(crate) fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }
}

/// The Engine.IO query string.
#[derive(Debug, Deserialize)]
pub(crate) struct EngineQuery {
    #[serde(rename = "EIO")]
    pub eio: Option<String>,
    pub transport: Option<String>,
    pub sid: Option<String>,
}

/// The actix-web handler for the Engine.IO endpoint (all methods).
pub async fn endpoint(
    req: HttpRequest,
    body: web::Payload,
    engine: web::Data<Arc<Engine>>,
) -> HttpResponse {
    let engine = engine.get_ref().clone();
    match transport::dispatch(&engine, &req, body).await {
        Ok(resp) => resp,
        Err(e) => {
            let mut resp = actix_web::ResponseError::error_response(&e);
            transport::add_cors(&engine, req.headers(), resp.headers_mut());
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_policy() {
        let same = OriginPolicy::from_list(&[]);
        assert!(same.allows(None, Some("chat.example")));
        assert!(same.allows(Some("https://chat.example"), Some("chat.example")));
        assert!(same.allows(Some("http://localhost:8080"), Some("localhost:8080")));
        assert!(!same.allows(Some("https://evil.example"), Some("chat.example")));
        assert!(!same.allows(Some("null"), Some("chat.example")));
        let list = OriginPolicy::from_list(&["https://app.example".into()]);
        assert!(list.allows(Some("https://app.example"), Some("chat.example")));
        assert!(!list.allows(Some("https://app.example.evil"), Some("chat.example")));
        assert!(OriginPolicy::from_list(&["*".into()]).allows(Some("null"), None));
    }
}
