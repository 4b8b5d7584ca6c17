//! One Engine.IO session: its id, bounded outbound queue, heartbeat and close
//! state. Knows nothing of HTTP or WebSocket framing; the transports drain the
//! queue and feed received packets in.
//!
//! Ownership: the session's *driver* task (spawned at creation, before the
//! handshake is written) owns the heartbeat and the teardown. Whoever closes a
//! session only records a reason and cancels a token; the driver then removes
//! the session from the engine and tells the application, exactly once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use std::sync::OnceLock;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::packet::Frame;
use super::queue;
use super::{Connection, Engine, Handshake};
use crate::metrics::EngineMetrics;

/// A URL-safe, unguessable session id (128 random bits).
pub type Sid = Arc<str>;

/// Makes a new random id: 16 bytes from the thread CSPRNG, base64url without padding.
pub fn random_id() -> Sid {
    use base64::Engine as _;
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    Arc::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The transport a session currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// HTTP long-polling.
    Polling = 0,
    /// WebSocket.
    WebSocket = 1,
}

impl Transport {
    /// The metric label and query-string name.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::WebSocket => "websocket",
        }
    }
}

/// Why a session ended. The label set is fixed (metrics use it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent a close packet.
    ClientClose,
    /// The WebSocket closed or the HTTP peer went away.
    TransportClose,
    /// A transport-level error (bad WebSocket frame, oversize frame).
    TransportError,
    /// No pong within pingTimeout.
    PingTimeout,
    /// A packet that does not parse (Engine.IO or Socket.IO level).
    ParseError,
    /// A second GET while one was pending.
    DuplicatePoll,
    /// A POST body over maxPayload.
    PayloadTooLarge,
    /// The outbound queue was full: the client reads too slowly.
    SlowConsumer,
    /// No Socket.IO CONNECT within the connect timeout.
    ConnectTimeout,
    /// The application closed it (e.g. a flooding client).
    ServerClose,
    /// The server is shutting down.
    Shutdown,
}

impl CloseReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            CloseReason::ClientClose => "client_close",
            CloseReason::TransportClose => "transport_close",
            CloseReason::TransportError => "transport_error",
            CloseReason::PingTimeout => "ping_timeout",
            CloseReason::ParseError => "parse_error",
            CloseReason::DuplicatePoll => "duplicate_poll",
            CloseReason::PayloadTooLarge => "payload_too_large",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::ConnectTimeout => "connect_timeout",
            CloseReason::ServerClose => "server_close",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// Whether the client should be sent a close packet before the transport ends.
    pub(crate) fn sends_close_packet(self) -> bool {
        matches!(
            self,
            CloseReason::ServerClose | CloseReason::Shutdown | CloseReason::ConnectTimeout
        )
    }
}

/// Why a frame could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The queue was full; the session has been closed as a slow consumer.
    #[error("outbound queue full")]
    Overflow,
}

/// One Engine.IO session. Cheap handles are `Arc<Session>`.
pub struct Session {
    sid: Sid,
    tx: queue::Sender,
    /// The receiving end of the outbound queue; held by the one transport
    /// reading it (a pending GET or the WebSocket loop). `try_lock` failing
    /// means a GET is already pending.
    pub(crate) rx: Arc<tokio::sync::Mutex<queue::Receiver>>,
    transport: AtomicU8,
    /// Set while a WebSocket probe for this polling session is in progress.
    pub(crate) upgrading: AtomicBool,
    /// Woken when an upgrade finishes or is abandoned.
    pub(crate) upgrade_done: Notify,
    /// Set while a polling POST is being handled (at most one at a time).
    pub(crate) posting: AtomicBool,
    pong: Notify,
    /// When the unanswered ping expires, while one is outstanding. The driver's
    /// timer enforces it; lookups check it too so a request arriving at the
    /// deadline never races the timer's millisecond rounding.
    pong_deadline: Mutex<Option<Instant>>,
    /// Set once a closed polling session's last frames (ending in the close
    /// packet) have been handed to a GET.
    flushed: AtomicBool,
    flushed_notify: Notify,
    closed: CancellationToken,
    reason: OnceLock<CloseReason>,
    conn: Mutex<Option<Arc<dyn Connection>>>,
    /// The handshake request, set once when the engine opens the session.
    handshake: OnceLock<Arc<Handshake>>,
    metrics: Arc<EngineMetrics>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("sid", &self.sid)
            .field("transport", &self.transport())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The receiving end of the outbound queue, for transports and for benchmarks that
    /// drain a session without a network (`hubbub_socketio::testing`).
    #[doc(hidden)]
    pub fn receiver(&self) -> Arc<tokio::sync::Mutex<queue::Receiver>> {
        self.rx.clone()
    }

    /// A new session with an outbound queue of `queue` frames. The engine creates
    /// sessions at the handshake; this is public for benchmarks and tests.
    pub fn new(transport: Transport, queue: usize, metrics: Arc<EngineMetrics>) -> Arc<Session> {
        Self::with_sid(random_id(), transport, queue, metrics)
    }

    /// A new session with the id `sid` (a random id, behind an owner tag when forwarding).
    pub(crate) fn with_sid(
        sid: Sid,
        transport: Transport,
        queue: usize,
        metrics: Arc<EngineMetrics>,
    ) -> Arc<Session> {
        let (tx, rx) = queue::channel(queue);
        Arc::new(Session {
            sid,
            tx,
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            transport: AtomicU8::new(transport as u8),
            upgrading: AtomicBool::new(false),
            upgrade_done: Notify::new(),
            posting: AtomicBool::new(false),
            pong: Notify::new(),
            pong_deadline: Mutex::new(None),
            flushed: AtomicBool::new(false),
            flushed_notify: Notify::new(),
            closed: CancellationToken::new(),
            reason: OnceLock::new(),
            conn: Mutex::new(None),
            handshake: OnceLock::new(),
            metrics,
        })
    }

    /// What the handshake request carried, when the engine keeps it
    /// ([`crate::Engine::keep_handshakes`]; absent otherwise, and in benchmarks).
    pub fn handshake(&self) -> Option<&Handshake> {
        self.handshake.get().map(|h| &**h)
    }

    pub(crate) fn set_handshake(&self, handshake: Handshake) {
        let _ = self.handshake.set(Arc::new(handshake));
    }

    /// The session id.
    pub fn sid(&self) -> &Sid {
        &self.sid
    }

    /// The transport in use now.
    pub fn transport(&self) -> Transport {
        if self.transport.load(Ordering::Acquire) == Transport::WebSocket as u8 {
            Transport::WebSocket
        } else {
            Transport::Polling
        }
    }

    /// The engine's metrics, which this session counts in.
    pub(crate) fn metrics(&self) -> &EngineMetrics {
        &self.metrics
    }

    pub(crate) fn set_transport(&self, t: Transport) {
        let old = self.transport();
        if old != t {
            self.transport.store(t as u8, Ordering::Release);
            self.metrics
                .connections_open
                .with_label_values(&[old.as_str()])
                .dec();
            self.metrics
                .connections_open
                .with_label_values(&[t.as_str()])
                .inc();
        }
    }

    /// Queues one frame. A full queue closes the session as a slow consumer.
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.tx.try_send(frame).map_err(|queue::Full| {
            self.overflow();
            SendError::Overflow
        })
    }

    /// Queues several frames atomically (all or none), e.g. a packet with its
    /// binary attachments.
    pub fn send_all(&self, frames: impl ExactSizeIterator<Item = Frame>) -> Result<(), SendError> {
        if frames.len() == 0 {
            return Ok(());
        }
        self.tx.try_send_all(frames).map_err(|queue::Full| {
            self.overflow();
            SendError::Overflow
        })
    }

    fn overflow(&self) {
        if !self.is_closed() {
            self.metrics.outbound_queue_overflows_total.inc();
            tracing::warn!(sid = %self.sid, "outbound queue full; closing slow client");
        }
        self.close(CloseReason::SlowConsumer);
    }

    /// Closes the session. The first reason wins; later calls do nothing. For
    /// server-side reasons a close packet is queued first so the client knows.
    pub fn close(&self, reason: CloseReason) {
        if self.reason.set(reason).is_ok() {
            if reason.sends_close_packet() {
                let _ = self.tx.try_send(Frame::close());
            }
            self.closed.cancel();
        }
    }

    /// Whether the session has been closed.
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Why the session was closed, once it is.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.reason.get().copied()
    }

    /// A token cancelled when the session closes.
    pub fn closed(&self) -> &CancellationToken {
        &self.closed
    }

    /// Whether this closed polling session still owes its client the close
    /// packet, which the next GET collects.
    pub(crate) fn awaiting_flush(&self) -> bool {
        self.is_closed()
            && self.transport() == Transport::Polling
            && self
                .close_reason()
                .is_some_and(CloseReason::sends_close_packet)
            && !self.flushed.load(Ordering::Acquire)
    }

    /// Records that a GET took the final frames of a closed session.
    pub(crate) fn mark_flushed(&self) {
        self.flushed.store(true, Ordering::Release);
        self.flushed_notify.notify_one();
    }

    pub(crate) fn on_pong(&self) {
        *self.pong_deadline.lock() = None;
        self.pong.notify_one();
    }

    /// Whether an unanswered ping has passed its deadline (the session is
    /// then as good as closed).
    pub(crate) fn ping_expired(&self, now: Instant) -> bool {
        self.pong_deadline.lock().is_some_and(|d| now >= d)
    }

    pub(crate) fn set_connection(&self, conn: Arc<dyn Connection>) {
        *self.conn.lock() = Some(conn);
    }

    /// The application side of this session, while it is open.
    pub(crate) fn connection(&self) -> Option<Arc<dyn Connection>> {
        self.conn.lock().clone()
    }
}

/// Runs a session's heartbeat until it closes, then tears it down: removes it
/// from the engine and tells the application. Ping deadlines are computed from
/// the creation instant so that timing does not drift.
pub(crate) async fn drive(engine: Arc<Engine>, session: Arc<Session>, created: Instant) {
    let interval = engine.config.ping_interval;
    let timeout = engine.config.ping_timeout;
    let mut next_ping = created + interval;
    loop {
        tokio::select! {
            _ = session.closed.cancelled() => break,
            _ = tokio::time::sleep_until(next_ping) => {}
        }
        let deadline = next_ping + timeout;
        *session.pong_deadline.lock() = Some(deadline);
        if session.send(Frame::ping()).is_err() {
            break;
        }
        tokio::select! {
            _ = session.closed.cancelled() => break,
            _ = session.pong.notified() => {
                next_ping = Instant::now() + interval;
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!(sid = %session.sid, "ping timeout");
                session.close(CloseReason::PingTimeout);
                break;
            }
        }
    }
    // A polling client is told about a server-side close by its next GET, which
    // normally follows at once; wait for it a little before forgetting the session.
    if session.awaiting_flush() {
        let wait = engine.config.ping_interval.min(FLUSH_WAIT);
        let _ = tokio::time::timeout(wait, session.flushed_notify.notified()).await;
    }
    teardown(&engine, &session);
}

/// Longest wait for a polling client to collect the close packet.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

fn teardown(engine: &Engine, session: &Arc<Session>) {
    let reason = session
        .close_reason()
        .unwrap_or(CloseReason::TransportClose);
    engine.remove(session.sid());
    let m = &session.metrics;
    m.connections_open
        .with_label_values(&[session.transport().as_str()])
        .dec();
    m.disconnects_total
        .with_label_values(&[reason.label()])
        .inc();
    let conn = session.conn.lock().take();
    if let Some(conn) = conn {
        conn.on_close(reason);
    }
    tracing::debug!(sid = %session.sid, reason = reason.label(), "session closed");
}

/// How long a transport waits for a pending GET to give up the queue after an
/// upgrade, at most.
pub(crate) const RX_HANDOVER: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_url_safe_and_unique() {
        let a = random_id();
        let b = random_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[tokio::test]
    async fn full_queue_closes_as_slow_consumer_and_first_reason_wins() {
        let m = Arc::new(EngineMetrics::detached());
        let s = Session::new(Transport::WebSocket, 2, m.clone());
        s.send(Frame::ping()).unwrap();
        s.send(Frame::ping()).unwrap();
        assert_eq!(s.send(Frame::ping()), Err(SendError::Overflow));
        assert!(s.is_closed());
        s.close(CloseReason::ClientClose);
        assert_eq!(s.close_reason(), Some(CloseReason::SlowConsumer));
        assert_eq!(m.outbound_queue_overflows_total.get(), 1);
    }

    #[tokio::test]
    async fn send_all_is_all_or_nothing() {
        let m = Arc::new(EngineMetrics::detached());
        let s = Session::new(Transport::WebSocket, 3, m);
        s.send(Frame::ping()).unwrap();
        let frames = vec![Frame::noop(), Frame::noop(), Frame::noop()];
        assert_eq!(s.send_all(frames.into_iter()), Err(SendError::Overflow));
        let mut rx = s.rx.try_lock().unwrap();
        assert_eq!(rx.try_recv(), Some(Frame::ping()));
        assert_eq!(rx.try_recv(), None);
    }
}
