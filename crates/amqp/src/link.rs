//! The RabbitMQ connection of one hubbub replica ([`AmqpLink`]): one `lapin` connection,
//! owned by one supervisor task that connects, declares the topology, consumes, publishes,
//! sends peer heartbeats, and reconnects with capped exponential back-off when the
//! broker goes away.
//!
//! Topology (see `docs/amqp.md`): a fanout exchange `<prefix>.fanout` carries broadcasts
//! and requests (one publish reaches every replica whatever the fan-out), a direct
//! exchange `<prefix>.direct` carries answers and heartbeat replies routed by replica id,
//! and every replica consumes one exclusive, auto-delete queue
//! `<prefix>.replica.<node id>.<connection number>` bound to both. The queue belongs to
//! the connection: RabbitMQ deletes it when the connection ends, cleanly or not (a
//! SIGKILLed replica's socket closes; a vanished host misses heartbeats), so no queue is
//! left to fill up. It is bounded (`x-max-length`, dropping the oldest) and the replica
//! counts what was lost from the gaps in each sender's sequence numbers.
//!
//! What this module owns:
//! - **Readiness.** [`AmqpLink::is_ready`] is true only while connected with the topology
//!   declared and the consumer running; [`AmqpLink::status`] says why not.
//! - **Envelope.** Each message carries its kind (`type`), its sender (`app_id`), and in
//!   its headers the sender's sequence number on the fanout and its publish time.
//! - **Ordered publishing.** One bounded queue and the one task publish in call order on
//!   one channel, so every receiver sees a sender's messages in the sender's order.
//!   While the broker is away publishing fails at once and is counted, never queued up.
//! - **Peers.** Every replica publishes a heartbeat each `heartbeat`; a replica silent for
//!   `peer_timeout` is forgotten. [`AmqpLink::peers`] counts the live ones (RabbitMQ has
//!   no `PUBSUB NUMSUB`). A replica announces itself with `hello` (answered by each peer's
//!   heartbeat) and leaves with `goodbye`.
//! - **Metrics** (`hubbub_amqp_*`), registered into the registry passed in.
//!
//! Message bodies are `wire`'s business; this module hands them to the [`InboundHandler`].

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPHardError, AMQPSoftError};
use lapin::tcp::OwnedTLSConfig;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};
use parking_lot::{Mutex, RwLock};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Why the link could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    /// The URL cannot be used (scheme, port, encoding).
    #[error("invalid --amqp-url (HUBBUB_AMQP_URL): {0}")]
    Url(String),
    /// The broker refused this user, password or vhost: retrying will not help.
    #[error("rabbitmq refused the connection for --amqp-url (HUBBUB_AMQP_URL): {0}")]
    Refused(String),
    /// Metrics could not be registered.
    #[error("amqp metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// `--amqp-ca-file` cannot be used (unreadable, no PEM certificate, not with amqps).
    #[error("invalid --amqp-ca-file (HUBBUB_AMQP_CA_FILE): {0}")]
    CaFile(String),
    /// The broker's TLS certificate is not trusted (or does not name the URL's host):
    /// retrying with the same certificates will not help.
    #[error(
        "rabbitmq's tls certificate is not trusted for --amqp-url (HUBBUB_AMQP_URL); give the CA that signed it with --amqp-ca-file (HUBBUB_AMQP_CA_FILE): {0}"
    )]
    Untrusted(String),
    /// Not connected, or the publish queue is full; nothing was sent.
    #[error("rabbitmq unavailable: {0}")]
    Unavailable(&'static str),
}

/// How to reach RabbitMQ and how patient to be. The binary builds it from its own command
/// line (`hubbub-server`: `ServerConfig::amqp_settings`); this crate reads no flags.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// `amqp://user:pass@host:5672/vhost` or `amqps://...` (`--amqp-url`).
    pub url: String,
    /// Prefix of the exchange and queue names (`--amqp-prefix`, default `hubbub`).
    pub prefix: String,
    /// Between this replica's peer heartbeats (default 2 s).
    pub heartbeat: Duration,
    /// A peer silent this long no longer counts (default 6 s, three heartbeats).
    pub peer_timeout: Duration,
    /// Longest a TCP connect + TLS + AMQP handshake + topology may take (default 5 s).
    pub connect_timeout: Duration,
    /// First reconnection delay, doubled on each failed attempt (default 100 ms).
    pub reconnect_min: Duration,
    /// Cap of the reconnection delay (default 2 s).
    pub reconnect_max: Duration,
    /// Longest one publish may wait for the connection to take it (default 3 s); past it
    /// the connection counts as broken and is replaced.
    pub publish_timeout: Duration,
    /// Messages queued for the publisher before new ones are dropped (default 65536).
    pub publish_queue: usize,
    /// Messages the broker keeps in this replica's queue before it drops the oldest
    /// (`x-max-length`, default 100000); each loss is counted by the receiver.
    pub queue_max_length: u32,
    /// Unacknowledged deliveries the broker sends ahead (`basic.qos`, default 512).
    pub prefetch: u16,
    /// AMQP heartbeat asked for when the URL does not say (`?heartbeat=`, default 10 s):
    /// how a broker that vanished without closing the socket is noticed.
    pub amqp_heartbeat_secs: u16,
    /// PEM certificates trusted for `amqps://` besides the system's roots
    /// (`--amqp-ca-file`, default none): the CA of a broker with a private certificate.
    pub ca_pem: Option<String>,
}

impl AmqpSettings {
    /// The settings for `url` with every other value at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "hubbub".into(),
            heartbeat: Duration::from_secs(2),
            peer_timeout: Duration::from_secs(6),
            connect_timeout: Duration::from_secs(5),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            publish_timeout: Duration::from_secs(3),
            publish_queue: 65_536,
            queue_max_length: 100_000,
            prefetch: 512,
            amqp_heartbeat_secs: 10,
            ca_pem: None,
        }
    }

    /// The TLS settings of the connection: the extra trusted CA certificates, checked to
    /// hold at least one PEM certificate and to go with an `amqps://` URL.
    pub fn tls_config(&self) -> Result<OwnedTLSConfig, AmqpError> {
        let Some(pem) = &self.ca_pem else {
            return Ok(OwnedTLSConfig::default());
        };
        if !self.url.starts_with("amqps://") {
            return Err(AmqpError::CaFile(
                "only used with an amqps:// --amqp-url".into(),
            ));
        }
        let certificates = count_pem_certificates(pem).map_err(AmqpError::CaFile)?;
        if certificates == 0 {
            return Err(AmqpError::CaFile(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        Ok(OwnedTLSConfig {
            identity: None,
            cert_chain: Some(pem.clone()),
        })
    }

    /// The parsed URL, or an error naming the setting.
    pub fn uri(&self) -> Result<AMQPUri, AmqpError> {
        if !(self.url.starts_with("amqp://") || self.url.starts_with("amqps://")) {
            return Err(AmqpError::Url("must start with amqp:// or amqps://".into()));
        }
        let mut uri = AMQPUri::from_str(&self.url).map_err(AmqpError::Url)?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(self.amqp_heartbeat_secs);
        }
        Ok(uri)
    }

    /// The fanout exchange: broadcasts, requests, heartbeats.
    pub fn fanout_exchange(&self) -> String {
        format!("{}.fanout", self.prefix)
    }

    /// The direct exchange: answers and heartbeat replies, routed by replica id.
    pub fn direct_exchange(&self) -> String {
        format!("{}.direct", self.prefix)
    }

    /// The queue of replica `node_id` on its `connection`-th connection.
    pub fn queue_name(&self, node_id: &str, connection: u64) -> String {
        format!("{}.replica.{node_id}.{connection}", self.prefix)
    }
}

/// What a message is: its AMQP `type`, and the `kind` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A broadcast to sockets (fanout).
    Broadcast,
    /// A request to every other replica (fanout).
    Request,
    /// An answer to one replica (direct).
    Response,
    /// Peer liveness: heartbeat, hello, goodbye.
    Heartbeat,
}

impl MessageKind {
    const ALL: [MessageKind; 4] = [
        MessageKind::Broadcast,
        MessageKind::Request,
        MessageKind::Response,
        MessageKind::Heartbeat,
    ];

    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Request => "request",
            Self::Response => "response",
            Self::Heartbeat => "heartbeat",
        }
    }
}

/// The AMQP `type` of each message.
mod types {
    pub const BROADCAST: &str = "broadcast";
    pub const REQUEST: &str = "request";
    pub const RESPONSE: &str = "response";
    pub const HEARTBEAT: &str = "heartbeat";
    pub const HELLO: &str = "hello";
    pub const GOODBYE: &str = "goodbye";
}

/// The `hubbub_amqp_*` metrics.
#[derive(Clone)]
pub struct AmqpMetrics {
    /// `hubbub_amqp_connected`: 1 while connected with the topology in place.
    pub connected: IntGauge,
    /// `hubbub_amqp_reconnects_total`: successful connections after a loss.
    pub reconnects: IntCounter,
    /// `hubbub_amqp_published_total{kind}`: messages handed to the broker.
    pub published: IntCounterVec,
    /// `hubbub_amqp_received_total{kind}`: messages delivered by the broker (own ones included).
    pub received: IntCounterVec,
    /// `hubbub_amqp_publish_failures_total`: publishes the connection rejected or timed out.
    pub publish_failures: IntCounter,
    /// `hubbub_amqp_publish_dropped_total`: messages not published: broker down or queue full.
    pub publish_dropped: IntCounter,
    /// `hubbub_amqp_receive_lost_total`: other replicas' messages that never arrived
    /// (gaps in their sequence numbers: queue overflow, broker restart, our reconnection).
    pub receive_lost: IntCounter,
    /// `hubbub_amqp_lag_seconds`: publish-to-receipt time of broadcasts between replicas.
    pub lag: Histogram,
    /// `hubbub_amqp_peers`: other replicas heard from within the peer timeout.
    pub peers: IntGauge,
}

impl AmqpMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            connected: IntGauge::new(
                "hubbub_amqp_connected",
                "Whether the RabbitMQ connection is up with its topology declared (1) or not (0)",
            )?,
            reconnects: IntCounter::new(
                "hubbub_amqp_reconnects_total",
                "RabbitMQ reconnections after a lost connection",
            )?,
            published: IntCounterVec::new(
                Opts::new(
                    "hubbub_amqp_published_total",
                    "Messages published to RabbitMQ",
                ),
                &["kind"],
            )?,
            received: IntCounterVec::new(
                Opts::new(
                    "hubbub_amqp_received_total",
                    "Messages received from RabbitMQ",
                ),
                &["kind"],
            )?,
            publish_failures: IntCounter::new(
                "hubbub_amqp_publish_failures_total",
                "Publishes to RabbitMQ that failed or timed out",
            )?,
            publish_dropped: IntCounter::new(
                "hubbub_amqp_publish_dropped_total",
                "Messages not published because RabbitMQ was unavailable or the publish queue was full",
            )?,
            receive_lost: IntCounter::new(
                "hubbub_amqp_receive_lost_total",
                "Messages of other replicas that never arrived (sequence gaps)",
            )?,
            lag: Histogram::with_opts(
                HistogramOpts::new(
                    "hubbub_amqp_lag_seconds",
                    "Time from publish to receipt of broadcasts between hubbub replicas",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ]),
            )?,
            peers: IntGauge::new(
                "hubbub_amqp_peers",
                "Other hubbub replicas heard from through RabbitMQ within the peer timeout",
            )?,
        };
        registry.register(Box::new(m.connected.clone()))?;
        registry.register(Box::new(m.reconnects.clone()))?;
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.received.clone()))?;
        registry.register(Box::new(m.publish_failures.clone()))?;
        registry.register(Box::new(m.publish_dropped.clone()))?;
        registry.register(Box::new(m.receive_lost.clone()))?;
        registry.register(Box::new(m.lag.clone()))?;
        registry.register(Box::new(m.peers.clone()))?;
        for k in MessageKind::ALL {
            m.published.with_label_values(&[k.as_str()]);
            m.received.with_label_values(&[k.as_str()]);
        }
        Ok(m)
    }
}

/// Receives every message of another replica, in arrival order, on the link's task.
/// Implementations must not block: deliver to bounded queues, or spawn for slow work.
pub trait InboundHandler: Send + Sync + 'static {
    /// One message: its sender's node id, its kind (never `Heartbeat`) and its body.
    fn on_message(&self, from: &str, kind: MessageKind, body: Bytes);
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// Every replica (the fanout exchange).
    All,
    /// One replica, by node id (the direct exchange).
    To(String),
}

struct Outgoing {
    route: Route,
    kind: &'static str,
    body: Bytes,
}

struct Peer {
    last_seen: Instant,
    /// The fanout sequence number expected next from it.
    next_seq: u64,
}

struct Inner {
    settings: AmqpSettings,
    uri: AMQPUri,
    /// Extra trusted CA certificates for `amqps://` (from `AmqpSettings::tls_config`).
    tls: OwnedTLSConfig,
    node_id: String,
    metrics: AmqpMetrics,
    ready: AtomicBool,
    /// Why the link is not ready (the last connection error), for `/readyz` and logs.
    last_error: Mutex<Option<String>>,
    handler: RwLock<Option<Arc<dyn InboundHandler>>>,
    publish_tx: mpsc::Sender<Outgoing>,
    peers: Mutex<HashMap<String, Peer>>,
    shutdown: watch::Sender<bool>,
    task: Mutex<Option<JoinHandle<()>>>,
}

/// The RabbitMQ connection of this replica; cheap to clone.
#[derive(Clone)]
pub struct AmqpLink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AmqpLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpLink")
            .field("node_id", &self.inner.node_id)
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// Microseconds since the Unix epoch, the clock carried in broadcasts.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A random node id: 12 characters safe in queue names and routing keys.
fn random_node_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits: u128 = rand::random();
    (0..12)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

/// How many certificates a PEM text holds, or why it cannot be read.
pub fn count_pem_certificates(pem: &str) -> Result<usize, String> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .try_fold(0, |n, cert| cert.map(|_| n + 1))
        .map_err(|e| format!("not PEM: {e}"))
}

/// The broker's certificate was refused by the TLS handshake. lapin hands the handshake's
/// error over as an I/O error whose text is rustls's; `invalid peer certificate` is how
/// rustls words every certificate verification failure (unknown issuer, wrong name,
/// expired).
fn untrusted(error: &lapin::Error) -> Option<String> {
    let text = error.to_string();
    text.contains("invalid peer certificate").then_some(text)
}

/// A refusal that retrying with the same URL cannot fix (credentials, vhost, permissions).
fn refusal(error: &lapin::Error) -> Option<String> {
    let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
        return None;
    };
    let what = match amqp.kind() {
        AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED) => {
            "access refused (user name, password or permissions)"
        }
        AMQPErrorKind::Hard(AMQPHardError::NOTALLOWED) => "not allowed (does the vhost exist?)",
        _ => return None,
    };
    Some(format!("{what}: {}", amqp.get_message()))
}

fn describe(error: &lapin::Error) -> String {
    refusal(error).unwrap_or_else(|| error.to_string())
}

impl AmqpLink {
    /// Checks the URL, makes one connection attempt, and starts the supervisor task.
    /// Returns an error only when the URL is unusable or the broker refused the user or
    /// vhost; an unreachable broker is retried in the background (not ready until then).
    /// Must be called inside a Tokio runtime.
    pub async fn start(settings: AmqpSettings, registry: &Registry) -> Result<Self, AmqpError> {
        let metrics = AmqpMetrics::register(registry)?;
        Self::start_with_metrics(settings, metrics).await
    }

    /// Like [`AmqpLink::start`], with metrics that are already registered.
    pub async fn start_with_metrics(
        settings: AmqpSettings,
        metrics: AmqpMetrics,
    ) -> Result<Self, AmqpError> {
        let uri = settings.uri()?;
        let tls = settings.tls_config()?;
        let (publish_tx, publish_rx) = mpsc::channel(settings.publish_queue.max(1));
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            node_id: random_node_id(),
            uri,
            tls,
            settings,
            metrics,
            ready: AtomicBool::new(false),
            last_error: Mutex::new(Some("connecting".into())),
            handler: RwLock::new(None),
            publish_tx,
            peers: Mutex::new(HashMap::new()),
            shutdown,
            task: Mutex::new(None),
        });
        tracing::info!(node_id = %inner.node_id, host = %inner.uri.authority.host, vhost = %inner.uri.vhost, "connecting to rabbitmq");
        let first = match tokio::time::timeout(inner.settings.connect_timeout, open(&inner, 1))
            .await
        {
            Ok(Ok(session)) => Some(session),
            Ok(Err(error)) => {
                if let Some(why) = refusal(&error) {
                    return Err(AmqpError::Refused(why));
                }
                if let Some(why) = untrusted(&error) {
                    return Err(AmqpError::Untrusted(why));
                }
                tracing::warn!(error = %describe(&error), "rabbitmq unreachable; retrying with back-off");
                *inner.last_error.lock() = Some(describe(&error));
                None
            }
            Err(_) => {
                tracing::warn!("rabbitmq connection timed out; retrying with back-off");
                *inner.last_error.lock() = Some("connection timed out".into());
                None
            }
        };
        let task = tokio::spawn(supervise(Arc::downgrade(&inner), publish_rx, first));
        *inner.task.lock() = Some(task);
        Ok(Self { inner })
    }

    /// This replica's random id: the sender of its messages, the routing key of its answers.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The settings in use.
    pub fn settings(&self) -> &AmqpSettings {
        &self.inner.settings
    }

    /// The metric handles.
    pub fn metrics(&self) -> &AmqpMetrics {
        &self.inner.metrics
    }

    /// True while connected with the topology declared and the consumer running.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::Acquire)
    }

    /// `Ok` when ready, else why not (the last connection error).
    pub fn status(&self) -> Result<(), String> {
        if self.is_ready() {
            return Ok(());
        }
        Err(self
            .inner
            .last_error
            .lock()
            .clone()
            .unwrap_or_else(|| "not connected".into()))
    }

    /// Waits until [`AmqpLink::is_ready`] or the timeout; returns whether it is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while !self.is_ready() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Sets the receiver of every message from other replicas (replacing an earlier one).
    pub fn set_handler(&self, handler: Arc<dyn InboundHandler>) {
        *self.inner.handler.write() = Some(handler);
    }

    /// Other replicas heard from within the peer timeout.
    pub fn peers(&self) -> usize {
        let timeout = self.inner.settings.peer_timeout;
        self.inner
            .peers
            .lock()
            .values()
            .filter(|p| p.last_seen.elapsed() < timeout)
            .count()
    }

    /// Queues a message. Messages are published in the order of these calls. Fails at once
    /// (and counts a drop) when the broker is away or the queue is full: cross-replica
    /// delivery is best effort while RabbitMQ is down.
    pub fn publish(&self, route: Route, kind: MessageKind, body: Bytes) -> Result<(), AmqpError> {
        if !self.is_ready() {
            self.inner.metrics.publish_dropped.inc();
            return Err(AmqpError::Unavailable("not connected"));
        }
        let kind = match kind {
            MessageKind::Broadcast => types::BROADCAST,
            MessageKind::Request => types::REQUEST,
            MessageKind::Response => types::RESPONSE,
            MessageKind::Heartbeat => types::HEARTBEAT,
        };
        self.inner
            .publish_tx
            .try_send(Outgoing { route, kind, body })
            .map_err(|_| {
                self.inner.metrics.publish_dropped.inc();
                AmqpError::Unavailable("publish queue is full")
            })
    }

    /// Records the lag of a broadcast published at `sent_at_us`.
    fn observe_lag(inner: &Inner, sent_at_us: u64) {
        let lag = now_micros().saturating_sub(sent_at_us);
        inner.metrics.lag.observe(lag as f64 / 1e6);
    }

    /// Says goodbye to the peers, closes the connection (RabbitMQ deletes the queue at
    /// once) and stops the task; waits at most about a second.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let task = self.inner.task.lock().take();
        if let Some(mut task) = task
            && tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
        {
            task.abort();
        }
        self.inner.ready.store(false, Ordering::Release);
        self.inner.metrics.connected.set(0);
    }
}

/// One connection with its topology in place.
struct Session {
    connection: Connection,
    publisher: Channel,
    consumer: Consumer,
}

/// Connects and declares the topology: both exchanges (durable, kept), this replica's
/// queue (exclusive, auto-delete, bounded) bound to both, and the consumer.
async fn open(inner: &Inner, number: u64) -> Result<Session, lapin::Error> {
    let s = &inner.settings;
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("hubbub {}", inner.node_id).into());
    let runtime = lapin::runtime::default_runtime()?;
    let connection = Connection::connect_uri_with_config(
        inner.uri.clone(),
        properties,
        inner.tls.clone(),
        runtime,
    )
    .await?;
    let channel = connection.create_channel().await?;
    let exchange = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            s.fanout_exchange().into(),
            ExchangeKind::Fanout,
            exchange,
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            s.direct_exchange().into(),
            ExchangeKind::Direct,
            exchange,
            FieldTable::default(),
        )
        .await?;
    let queue = s.queue_name(&inner.node_id, number);
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongInt(s.queue_max_length.min(i32::MAX as u32) as i32),
    );
    args.insert(
        "x-overflow".into(),
        AMQPValue::LongString("drop-head".into()),
    );
    channel
        .queue_declare(
            queue.clone().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                durable: false,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await?;
    channel
        .queue_bind(
            queue.clone().into(),
            s.fanout_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.clone().into(),
            s.direct_exchange().into(),
            inner.node_id.clone().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .basic_qos(s.prefetch, BasicQosOptions::default())
        .await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            "hubbub".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    // Publishing on its own channel: a publish that waits (flow control) never holds up
    // the consumer's acknowledgements.
    let publisher = connection.create_channel().await?;
    Ok(Session {
        connection,
        publisher,
        consumer,
    })
}

/// Connects, runs sessions, and reconnects with capped exponential back-off, forever
/// (until shutdown). Messages queued while no session runs are dropped and counted.
async fn supervise(weak: Weak<Inner>, mut rx: mpsc::Receiver<Outgoing>, first: Option<Session>) {
    let Some(inner) = weak.upgrade() else { return };
    let mut shutdown = inner.shutdown.subscribe();
    let (min, max, connect_timeout) = (
        inner.settings.reconnect_min,
        inner.settings.reconnect_max,
        inner.settings.connect_timeout,
    );
    drop(inner);
    let mut delay = min;
    let mut connections: u64 = 1;
    let mut ever_connected = false;
    let mut failures: u64 = 0;
    // The fanout sequence: one counter for the life of the process, so that receivers
    // see gaps only where messages were really lost.
    let mut seq: u64 = 0;
    let mut pending = first;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let session = match pending.take() {
            Some(s) => Ok(s),
            None => {
                let Some(inner) = weak.upgrade() else { return };
                connections += 1;
                tokio::select! {
                    _ = shutdown.changed() => return,
                    r = tokio::time::timeout(connect_timeout, open(&inner, connections)) => match r {
                        Ok(Ok(s)) => Ok(s),
                        Ok(Err(e)) => Err(describe(&e)),
                        Err(_) => Err("connection timed out".to_owned()),
                    },
                }
            }
        };
        match session {
            Ok(session) => {
                let Some(inner) = weak.upgrade() else { return };
                if ever_connected {
                    inner.metrics.reconnects.inc();
                    tracing::info!("rabbitmq reconnected; topology declared");
                } else {
                    tracing::info!("rabbitmq connected; topology declared");
                }
                ever_connected = true;
                failures = 0;
                delay = min;
                *inner.last_error.lock() = None;
                drop(inner);
                let why = run_session(&weak, session, &mut rx, &mut seq, &mut shutdown).await;
                let Some(inner) = weak.upgrade() else { return };
                inner.ready.store(false, Ordering::Release);
                inner.metrics.connected.set(0);
                match why {
                    None => return, // shutdown
                    Some(why) => {
                        tracing::warn!(error = %why, "rabbitmq connection lost; reconnecting");
                        *inner.last_error.lock() = Some(why);
                    }
                }
            }
            Err(why) => {
                failures += 1;
                if failures == 1 || failures % 30 == 0 {
                    tracing::warn!(error = %why, attempts = failures, "rabbitmq unreachable; retrying with back-off");
                } else {
                    tracing::debug!(error = %why, attempts = failures, "rabbitmq still unreachable");
                }
                let Some(inner) = weak.upgrade() else { return };
                *inner.last_error.lock() = Some(why);
            }
        }
        // Back-off; whatever was queued before the loss is dropped, not sent late.
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep_until(until) => break,
                m = rx.recv() => {
                    let Some(_) = m else { return };
                    let Some(inner) = weak.upgrade() else { return };
                    inner.metrics.publish_dropped.inc();
                }
            }
        }
        delay = (delay * 2).min(max);
    }
}

/// Runs one connection until it breaks (returns why) or shutdown (returns `None`).
async fn run_session(
    weak: &Weak<Inner>,
    mut session: Session,
    rx: &mut mpsc::Receiver<Outgoing>,
    seq: &mut u64,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<String> {
    let inner = weak.upgrade()?;
    let (fanout, direct) = (
        ShortString::from(inner.settings.fanout_exchange()),
        ShortString::from(inner.settings.direct_exchange()),
    );
    let node_id = ShortString::from(inner.node_id.clone());
    let publish_timeout = inner.settings.publish_timeout;
    let mut heartbeat = tokio::time::interval(inner.settings.heartbeat);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    inner.ready.store(true, Ordering::Release);
    inner.metrics.connected.set(1);
    drop(inner);
    let publisher = Publisher {
        channel: &session.publisher,
        fanout: &fanout,
        direct: &direct,
        node_id: &node_id,
        timeout: publish_timeout,
    };
    // Announce ourselves; every peer answers with a heartbeat addressed to us.
    if let Err(e) = publisher
        .send(weak, seq, Route::All, types::HELLO, Bytes::new())
        .await
    {
        return Some(e);
    }
    let mut unacked: u32 = 0;
    loop {
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                let _ = publisher.send(weak, seq, Route::All, types::GOODBYE, Bytes::new()).await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    session.connection.close(200, "replica shutting down".into()),
                ).await;
                return None;
            }
            delivery = session.consumer.next() => {
                let delivery = match delivery {
                    Some(Ok(d)) => d,
                    Some(Err(e)) => return Some(describe(&e)),
                    None => return Some("the broker cancelled the consumer".to_owned()),
                };
                // Acknowledge in batches; the queue is exclusive, so unacknowledged
                // messages are never redelivered elsewhere.
                unacked += 1;
                if unacked >= 64 {
                    unacked = 0;
                    if let Err(e) = delivery.acker.ack(BasicAckOptions { multiple: true }).await {
                        return Some(describe(&e));
                    }
                }
                let inner = weak.upgrade()?;
                if let Some(reply_to) = receive(&inner, delivery.properties, delivery.data) {
                    // A hello: answer with our heartbeat, addressed to the newcomer.
                    drop(inner);
                    if let Err(e) = publisher
                        .send(weak, seq, Route::To(reply_to), types::HEARTBEAT, Bytes::new())
                        .await
                    {
                        return Some(e);
                    }
                }
            }
            m = rx.recv() => {
                let m = m?;
                if let Err(e) = publisher.send(weak, seq, m.route, m.kind, m.body).await {
                    return Some(e);
                }
            }
            _ = heartbeat.tick() => {
                if let Err(e) = publisher.send(weak, seq, Route::All, types::HEARTBEAT, Bytes::new()).await {
                    return Some(e);
                }
                let inner = weak.upgrade()?;
                let timeout = inner.settings.peer_timeout;
                let mut peers = inner.peers.lock();
                peers.retain(|id, p| {
                    let alive = p.last_seen.elapsed() < timeout;
                    if !alive {
                        tracing::info!(peer = %id, "replica silent; no longer counted");
                    }
                    alive
                });
                inner.metrics.peers.set(peers.len() as i64);
            }
        }
    }
}

struct Publisher<'a> {
    channel: &'a Channel,
    fanout: &'a ShortString,
    direct: &'a ShortString,
    node_id: &'a ShortString,
    timeout: Duration,
}

impl Publisher<'_> {
    /// Publishes one message; an error means the connection is unusable.
    async fn send(
        &self,
        weak: &Weak<Inner>,
        seq: &mut u64,
        route: Route,
        kind: &'static str,
        body: Bytes,
    ) -> Result<(), String> {
        let mut headers = FieldTable::default();
        headers.insert(
            "sent_us".into(),
            AMQPValue::LongLongInt(now_micros() as i64),
        );
        let (exchange, key) = match route {
            Route::All => {
                *seq += 1;
                headers.insert("seq".into(), AMQPValue::LongLongInt(*seq as i64));
                (self.fanout.clone(), ShortString::from(""))
            }
            Route::To(node) => (self.direct.clone(), ShortString::from(node)),
        };
        let properties = BasicProperties::default()
            .with_type(kind.into())
            .with_app_id(self.node_id.clone())
            .with_headers(headers);
        let result = tokio::time::timeout(
            self.timeout,
            self.channel.basic_publish(
                exchange,
                key,
                BasicPublishOptions::default(),
                &body,
                properties,
            ),
        )
        .await;
        let Some(inner) = weak.upgrade() else {
            return Ok(());
        };
        match result {
            Ok(Ok(_confirm)) => {
                inner
                    .metrics
                    .published
                    .with_label_values(&[kind_label(kind).as_str()])
                    .inc();
                Ok(())
            }
            Ok(Err(e)) => {
                inner.metrics.publish_failures.inc();
                Err(describe(&e))
            }
            Err(_) => {
                inner.metrics.publish_failures.inc();
                Err(format!("publish timed out after {:?}", self.timeout))
            }
        }
    }
}

fn kind_label(kind: &str) -> MessageKind {
    match kind {
        types::BROADCAST => MessageKind::Broadcast,
        types::REQUEST => MessageKind::Request,
        types::RESPONSE => MessageKind::Response,
        _ => MessageKind::Heartbeat,
    }
}

fn header_u64(headers: Option<&FieldTable>, name: &str) -> Option<u64> {
    match headers?.inner().get(name)? {
        AMQPValue::LongLongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::LongInt(v) => u64::try_from(*v).ok(),
        AMQPValue::Timestamp(v) => Some(*v),
        _ => None,
    }
}

/// Handles one delivery: metrics, own messages, peers, sequence gaps, then the handler.
/// Returns the sender's id when it said hello and must be answered.
fn receive(inner: &Inner, properties: BasicProperties, data: Vec<u8>) -> Option<String> {
    let kind_str = properties.kind().as_ref().map_or("", |k| k.as_str());
    let kind = kind_label(kind_str);
    inner
        .metrics
        .received
        .with_label_values(&[kind.as_str()])
        .inc();
    let from = properties.app_id().as_ref()?.as_str();
    if from == inner.node_id {
        return None; // our own, already delivered locally
    }
    let headers = properties.headers().as_ref();
    {
        let mut peers = inner.peers.lock();
        if kind_str == types::GOODBYE {
            peers.remove(from);
            tracing::info!(peer = %from, "replica left");
            inner.metrics.peers.set(peers.len() as i64);
            return None;
        }
        let now = Instant::now();
        let known = peers.len();
        let peer = peers.entry(from.to_owned()).or_insert_with(|| Peer {
            last_seen: now,
            next_seq: 0,
        });
        peer.last_seen = now;
        if let Some(seq) = header_u64(headers, "seq") {
            if peer.next_seq != 0 && seq > peer.next_seq {
                inner.metrics.receive_lost.inc_by(seq - peer.next_seq);
                tracing::warn!(peer = %from, lost = seq - peer.next_seq, "messages from a replica lost");
            }
            peer.next_seq = seq + 1;
        }
        if peers.len() != known {
            tracing::info!(peer = %from, "replica joined");
            inner.metrics.peers.set(peers.len() as i64);
        }
    }
    match kind_str {
        types::HELLO => return Some(from.to_owned()),
        types::HEARTBEAT => return None,
        _ => {}
    }
    if kind == MessageKind::Broadcast
        && let Some(sent) = header_u64(headers, "sent_us")
    {
        AmqpLink::observe_lag(inner, sent);
    }
    let handler = inner.handler.read().clone();
    if let Some(handler) = handler {
        handler.on_message(from, kind, Bytes::from(data));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_get_a_heartbeat() {
        let s = AmqpSettings::new("amqp://u:p@127.0.0.1:5673/chat");
        let uri = s.uri().unwrap();
        assert_eq!(uri.vhost, "chat");
        assert_eq!(uri.authority.port, 5673);
        assert_eq!(uri.query.heartbeat, Some(10));
        let uri = AmqpSettings::new("amqp://127.0.0.1/%2f?heartbeat=30")
            .uri()
            .unwrap();
        assert_eq!(uri.vhost, "/");
        assert_eq!(uri.query.heartbeat, Some(30));
        assert!(AmqpSettings::new("amqps://rabbit.example/").uri().is_ok());
        for bad in ["redis://x", "amqp://h:notaport/", "http://x"] {
            let e = AmqpSettings::new(bad).uri().unwrap_err().to_string();
            assert!(e.contains("--amqp-url"), "{e}");
            assert!(e.contains("HUBBUB_AMQP_URL"), "{e}");
        }
    }

    #[test]
    fn names_derive_from_the_prefix() {
        let mut s = AmqpSettings::new("amqp://x");
        s.prefix = "chat".into();
        assert_eq!(s.fanout_exchange(), "chat.fanout");
        assert_eq!(s.direct_exchange(), "chat.direct");
        assert_eq!(s.queue_name("abc", 3), "chat.replica.abc.3");
    }

    #[test]
    fn node_ids_are_random_and_safe_in_names() {
        let a = random_node_id();
        assert_eq!(a.len(), 12);
        assert_ne!(a, random_node_id());
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn metrics_register_into_the_given_registry() {
        let registry = Registry::new();
        AmqpMetrics::register(&registry).unwrap();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for name in [
            "hubbub_amqp_connected",
            "hubbub_amqp_reconnects_total",
            "hubbub_amqp_published_total",
            "hubbub_amqp_received_total",
            "hubbub_amqp_publish_failures_total",
            "hubbub_amqp_publish_dropped_total",
            "hubbub_amqp_receive_lost_total",
            "hubbub_amqp_lag_seconds",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
    }

    struct Recorder(Mutex<Vec<(String, MessageKind, Bytes)>>);

    impl InboundHandler for Recorder {
        fn on_message(&self, from: &str, kind: MessageKind, body: Bytes) {
            self.0.lock().push((from.to_owned(), kind, body));
        }
    }

    #[test]
    fn ca_certificates_go_with_amqps_and_must_be_pem_certificates() {
        let pem = "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n";
        assert_eq!(count_pem_certificates(pem), Ok(1));
        assert_eq!(count_pem_certificates(&pem.repeat(2)), Ok(2));
        assert_eq!(count_pem_certificates("no pem here"), Ok(0));
        let mut s = AmqpSettings::new("amqps://rabbit.example/");
        assert_eq!(s.tls_config().unwrap(), OwnedTLSConfig::default());
        s.ca_pem = Some(pem.into());
        assert_eq!(s.tls_config().unwrap().cert_chain.as_deref(), Some(pem));
        s.ca_pem = Some(
            "-----BEGIN CERTIFICATE REQUEST-----\nAA==\n-----END CERTIFICATE REQUEST-----\n".into(),
        );
        let e = s.tls_config().unwrap_err().to_string();
        assert!(
            e.contains("--amqp-ca-file (HUBBUB_AMQP_CA_FILE)") && e.contains("no PEM certificate"),
            "{e}"
        );
        let mut plain = AmqpSettings::new("amqp://rabbit.example/");
        plain.ca_pem = Some(pem.into());
        let e = plain.tls_config().unwrap_err().to_string();
        assert!(e.contains("only used with an amqps://"), "{e}");
    }

    fn test_inner() -> (Arc<Inner>, Arc<Recorder>) {
        let settings = AmqpSettings::new("amqp://127.0.0.1:1/");
        let (publish_tx, _rx) = mpsc::channel(1);
        let inner = Arc::new(Inner {
            uri: settings.uri().unwrap(),
            tls: OwnedTLSConfig::default(),
            settings,
            node_id: "me".into(),
            metrics: AmqpMetrics::register(&Registry::new()).unwrap(),
            ready: AtomicBool::new(false),
            last_error: Mutex::new(None),
            handler: RwLock::new(None),
            publish_tx,
            peers: Mutex::new(HashMap::new()),
            shutdown: watch::channel(false).0,
            task: Mutex::new(None),
        });
        let recorder = Arc::new(Recorder(Mutex::new(Vec::new())));
        *inner.handler.write() = Some(recorder.clone());
        (inner, recorder)
    }

    fn props(from: &str, kind: &str, seq: Option<u64>) -> BasicProperties {
        let mut headers = FieldTable::default();
        if let Some(seq) = seq {
            headers.insert("seq".into(), AMQPValue::LongLongInt(seq as i64));
        }
        BasicProperties::default()
            .with_type(kind.into())
            .with_app_id(from.into())
            .with_headers(headers)
    }

    #[test]
    fn own_messages_are_ignored_and_peers_tracked() {
        let (inner, recorder) = test_inner();
        assert_eq!(
            receive(&inner, props("me", "broadcast", Some(1)), vec![1]),
            None
        );
        assert!(recorder.0.lock().is_empty());
        assert_eq!(
            receive(&inner, props("b", "hello", Some(1)), vec![]),
            Some("b".into())
        );
        assert_eq!(
            receive(&inner, props("b", "broadcast", Some(2)), vec![7]),
            None
        );
        assert_eq!(receive(&inner, props("c", "heartbeat", None), vec![]), None);
        assert_eq!(inner.peers.lock().len(), 2);
        assert_eq!(
            *recorder.0.lock(),
            vec![("b".into(), MessageKind::Broadcast, Bytes::from_static(&[7]))]
        );
        receive(&inner, props("c", "goodbye", None), vec![]);
        assert_eq!(inner.peers.lock().len(), 1);
        assert_eq!(
            inner
                .metrics
                .received
                .with_label_values(&["heartbeat"])
                .get(),
            3
        );
    }

    #[test]
    fn sequence_gaps_count_as_lost() {
        let (inner, _) = test_inner();
        receive(&inner, props("b", "broadcast", Some(5)), vec![]);
        receive(&inner, props("b", "broadcast", Some(6)), vec![]);
        assert_eq!(
            inner.metrics.receive_lost.get(),
            0,
            "first contact is no gap"
        );
        receive(&inner, props("b", "broadcast", Some(9)), vec![]);
        assert_eq!(inner.metrics.receive_lost.get(), 2);
        receive(&inner, props("b", "response", None), vec![]);
        receive(&inner, props("b", "request", Some(10)), vec![]);
        assert_eq!(
            inner.metrics.receive_lost.get(),
            2,
            "direct messages carry no seq"
        );
    }
}
