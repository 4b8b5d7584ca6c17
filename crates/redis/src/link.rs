//! The Redis connections of one hubbub replica ([`RedisLink`]): a command connection
//! (store commands and PUBLISH) and a subscriber connection (SUBSCRIBE/PSUBSCRIBE), both
//! `fred` clients that reconnect by themselves with capped exponential back-off.
//!
//! What this module owns, and `fred` does not do for us:
//! - **Readiness.** [`RedisLink::is_ready`] is true only while the command connection is up
//!   *and* the subscriber is up with every registered subscription restored.
//! - **Resubscription.** A plain `fred` client forgets nothing and restores nothing: after
//!   each (re)connection of the subscriber, the watcher task re-issues SUBSCRIBE and
//!   PSUBSCRIBE for everything registered, and retries until that succeeds.
//! - **Failing fast.** While a connection is down, commands fail at once with
//!   [`ClusterError::Unavailable`] instead of queueing behind the reconnection; in-flight
//!   commands are not replayed after a reconnection (`max_command_attempts = 1`), so a write
//!   reported as failed is not applied later behind the caller's back.
//! - **Ordered publishing.** PUBLISHes go through one queue and one task that writes them
//!   as pipelines, so the order of [`RedisLink::publish`] calls is the order on the wire.
//! - **Ordered receiving.** One dispatcher task hands every message, in arrival order, to
//!   the registered [`InboundHandler`].
//! - **Metrics** (`hubbub_redis_*`), registered into the registry passed in.
//!
//! It knows the channel prefix only to label metrics; message formats are in `wire.rs`.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fred::prelude::{
    ClientLike, ClusterInterface, ConnectionConfig, EventInterface, PerformanceConfig,
    PubsubInterface, ReconnectPolicy, TcpConfig,
};
use fred::types::Value as RedisValue;
use fred::types::config::UnresponsiveConfig;
use parking_lot::{Mutex, RwLock};
use prometheus::Registry;
use tokio::sync::{broadcast::error::RecvError, mpsc, watch};
use tokio::task::JoinHandle;

pub use fred::clients::Client;

pub use crate::metrics::RedisMetrics;
pub use crate::settings::{ClusterError, RedisSettings, SubscriptionMode};

use crate::topology::RedisTopology;

/// What a published message is, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// A broadcast on `<key>#<nsp>#...`.
    Broadcast,
    /// A request on `<key>-request#<nsp>#`.
    Request,
    /// A response on `<key>-response#<nsp>#...`.
    Response,
}

impl MessageKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Broadcast => "broadcast",
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Connection {
    Commands,
    Subscriber,
}

impl Connection {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Commands => "commands",
            Self::Subscriber => "subscriber",
        }
    }
}

/// Receives every pub/sub message of the link, in arrival order, on the dispatcher task.
/// Implementations must not block: deliver to bounded queues, or spawn for slow work.
pub trait InboundHandler: Send + Sync + 'static {
    /// One message: the channel it was published on and its payload.
    fn on_message(&self, channel: &str, payload: Bytes);
}

#[derive(Default)]
struct Subscriptions {
    channels: BTreeSet<String>,
    patterns: BTreeSet<String>,
    /// Shard channels (SSUBSCRIBE), on a cluster only.
    shard_channels: BTreeSet<String>,
}

/// Where the connections are, for logs, `/readyz` and the failover metric.
#[derive(Default)]
struct Whereabouts {
    /// The server the command connection last (re)connected to.
    commands_server: Option<String>,
    /// On a cluster: shards whose primary has no live connection, described.
    shards_down: Vec<String>,
    /// On a cluster: the node whose connection failed last, until a reconnection.
    failed_node: Option<String>,
}

struct Outgoing {
    channel: String,
    payload: Bytes,
    kind: MessageKind,
}

struct Inner {
    settings: RedisSettings,
    node_id: String,
    commands: Client,
    subscriber: Client,
    metrics: RedisMetrics,
    commands_up: AtomicBool,
    subscriber_up: AtomicBool,
    /// Set when a subscription could not be issued; the watcher retries.
    resubscribe_needed: AtomicBool,
    subscriptions: Mutex<Subscriptions>,
    whereabouts: Mutex<Whereabouts>,
    handler: RwLock<Option<Arc<dyn InboundHandler>>>,
    publish_tx: mpsc::Sender<Outgoing>,
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The Redis connections of this replica; cheap to clone.
#[derive(Clone)]
pub struct RedisLink {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("node_id", &self.inner.node_id)
            .field("ready", &self.is_ready())
            .finish()
    }
}

/// Microseconds since the Unix epoch, the clock carried in hubbub broadcasts.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// A random node id: 12 URL-safe characters (the Node adapter uses 6).
fn random_node_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits: u128 = rand::random();
    (0..12)
        .map(|i| ALPHABET[((bits >> (i * 6)) & 63) as usize] as char)
        .collect()
}

impl RedisLink {
    /// Creates both clients and starts connecting in the background; returns at once,
    /// not ready until both connections are up. Must be called inside a Tokio runtime.
    pub fn start(settings: RedisSettings, registry: &Registry) -> Result<Self, ClusterError> {
        let metrics =
            RedisMetrics::register(registry).map_err(|e| ClusterError::Config(e.to_string()))?;
        Self::start_with_metrics(settings, metrics)
    }

    /// Like [`RedisLink::start`], with metrics that are already registered.
    pub fn start_with_metrics(
        settings: RedisSettings,
        metrics: RedisMetrics,
    ) -> Result<Self, ClusterError> {
        let config = settings.fred_config()?;
        let perf = PerformanceConfig {
            default_command_timeout: settings.command_timeout,
            broadcast_channel_capacity: settings.receive_buffer,
            ..PerformanceConfig::default()
        };
        let connection = ConnectionConfig {
            connection_timeout: settings.connect_timeout,
            internal_command_timeout: settings.command_timeout,
            // A command in flight when the connection drops fails instead of being replayed
            // later: the caller has been told it failed and must not see it applied anyway.
            max_command_attempts: 1,
            tcp: TcpConfig {
                nodelay: Some(true),
                // A peer that vanished without closing (node failure, partition) is noticed
                // by TCP keepalive (10 s idle, then probes every 5 s) even on an idle subscriber.
                keepalive: Some(
                    fred::socket2::TcpKeepalive::new()
                        .with_time(Duration::from_secs(10))
                        .with_interval(Duration::from_secs(5)),
                ),
                ..TcpConfig::default()
            },
            // A connection whose replies stop coming is closed and reconnected.
            unresponsive: UnresponsiveConfig {
                max_timeout: Some(settings.command_timeout * 2),
                interval: Duration::from_secs(1),
            },
            ..ConnectionConfig::default()
        };
        let policy = || {
            ReconnectPolicy::new_exponential(
                0, // retry forever
                settings.reconnect_min.as_millis() as u32,
                settings.reconnect_max.as_millis() as u32,
                2,
            )
        };
        let commands = Client::new(
            config.clone(),
            Some(perf.clone()),
            Some(connection.clone()),
            Some(policy()),
        );
        let subscriber = Client::new(config, Some(perf), Some(connection), Some(policy()));
        let (publish_tx, publish_rx) = mpsc::channel(settings.publish_queue.max(1));
        let (shutdown, _) = watch::channel(false);
        let inner = Arc::new(Inner {
            node_id: random_node_id(),
            settings,
            commands,
            subscriber,
            metrics,
            commands_up: AtomicBool::new(false),
            subscriber_up: AtomicBool::new(false),
            resubscribe_needed: AtomicBool::new(false),
            subscriptions: Mutex::new(Subscriptions::default()),
            whereabouts: Mutex::new(Whereabouts::default()),
            handler: RwLock::new(None),
            publish_tx,
            shutdown,
            tasks: Mutex::new(Vec::new()),
        });
        // Listeners first, so that the first connection event is not missed.
        let watchers = [
            tokio::spawn(watch_connection(
                Arc::downgrade(&inner),
                Connection::Commands,
            )),
            tokio::spawn(watch_connection(
                Arc::downgrade(&inner),
                Connection::Subscriber,
            )),
            tokio::spawn(dispatch(Arc::downgrade(&inner))),
            tokio::spawn(publisher(Arc::downgrade(&inner), publish_rx)),
        ];
        inner.tasks.lock().extend(watchers);
        if inner.settings.topology.is_cluster() {
            let task = tokio::spawn(watch_shards(Arc::downgrade(&inner)));
            inner.tasks.lock().push(task);
        }
        // The connection tasks run until `quit`; their handles are not needed.
        drop(inner.commands.connect());
        drop(inner.subscriber.connect());
        tracing::info!(
            node_id = %inner.node_id,
            topology = inner.settings.topology.kind(),
            redis = %inner.settings.topology.describe(),
            subscription_mode = inner.settings.subscription_mode.as_str(),
            "connecting to redis"
        );
        Ok(Self { inner })
    }

    /// This replica's random id: its adapter `uid` and its presence key.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The settings in use.
    pub fn settings(&self) -> &RedisSettings {
        &self.inner.settings
    }

    /// The metric handles.
    pub fn metrics(&self) -> &RedisMetrics {
        &self.inner.metrics
    }

    /// True while both connections are up and every subscription is in place (on a
    /// cluster: and the primary of every shard is connected).
    pub fn is_ready(&self) -> bool {
        self.commands_ready()
            && self.inner.subscriber_up.load(Ordering::Acquire)
            && self.inner.whereabouts.lock().shards_down.is_empty()
    }

    /// Why the link is not ready, naming the connection, server or shard; `None` when it is.
    pub fn unready_detail(&self) -> Option<String> {
        let mut parts = Vec::new();
        let w = self.inner.whereabouts.lock();
        if !self.commands_ready() {
            let last = w.commands_server.as_deref().unwrap_or("none yet");
            parts.push(match &self.inner.settings.topology {
                RedisTopology::Sentinel { master, .. } => format!(
                    "commands connection down (master {master:?}; last connected to {last})"
                ),
                RedisTopology::Cluster { .. } => "commands connection down".to_owned(),
                _ => format!("commands connection down (last connected to {last})"),
            });
        }
        if !self.inner.subscriber_up.load(Ordering::Acquire) {
            parts.push("subscriber down or subscriptions not restored".to_owned());
        }
        parts.extend(w.shards_down.iter().cloned());
        (!parts.is_empty()).then(|| parts.join("; "))
    }

    /// The topology in use.
    pub fn topology(&self) -> &RedisTopology {
        &self.inner.settings.topology
    }

    /// True while the command connection is up.
    pub fn commands_ready(&self) -> bool {
        self.inner.commands_up.load(Ordering::Acquire) && self.inner.commands.is_connected()
    }

    /// Waits until [`RedisLink::is_ready`] or the deadline; returns whether it is ready.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_ready() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Sets the receiver of every pub/sub message (replacing an earlier one).
    pub fn set_handler(&self, handler: Arc<dyn InboundHandler>) {
        *self.inner.handler.write() = Some(handler);
    }

    /// Registers channels and patterns; they are subscribed now if the subscriber is up,
    /// and again after every reconnection.
    pub async fn subscribe(&self, channels: &[String], patterns: &[String]) {
        self.subscribe_all(channels, patterns, &[]).await;
    }

    /// Registers shard channels (SSUBSCRIBE, cluster only); subscribed now if the
    /// subscriber is up, and again after every reconnection.
    pub async fn subscribe_sharded(&self, channels: &[String]) {
        self.subscribe_all(&[], &[], channels).await;
    }

    /// Forgets shard channels and unsubscribes them (SUNSUBSCRIBE). A failure is logged
    /// only: the channel is no longer restored, and an unwanted message is filtered out
    /// by the receiver anyway.
    pub async fn unsubscribe_sharded(&self, channels: &[String]) {
        {
            let mut subs = self.inner.subscriptions.lock();
            for c in channels {
                subs.shard_channels.remove(c);
            }
        }
        if !self.inner.subscriber.is_connected() {
            return;
        }
        for channel in channels {
            let work = self.inner.subscriber.sunsubscribe(channel.as_str());
            match tokio::time::timeout(self.inner.settings.command_timeout, work).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::debug!(%error, "redis sunsubscribe failed"),
                Err(_) => tracing::debug!("redis sunsubscribe timed out"),
            }
        }
    }

    async fn subscribe_all(&self, channels: &[String], patterns: &[String], sharded: &[String]) {
        {
            let mut subs = self.inner.subscriptions.lock();
            subs.channels.extend(channels.iter().cloned());
            subs.patterns.extend(patterns.iter().cloned());
            subs.shard_channels.extend(sharded.iter().cloned());
        }
        if !self.inner.subscriber.is_connected() {
            // The watcher subscribes everything once the subscriber connects.
            self.inner.resubscribe_needed.store(true, Ordering::Release);
            self.inner.subscriber_up.store(false, Ordering::Release);
            return;
        }
        let result = issue_subscriptions(
            &self.inner.subscriber,
            channels.to_vec(),
            patterns.to_vec(),
            sharded.to_vec(),
            self.inner.settings.command_timeout,
        )
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, "redis subscribe failed; retrying");
            self.inner.resubscribe_needed.store(true, Ordering::Release);
            self.inner.subscriber_up.store(false, Ordering::Release);
        }
    }

    /// Queues a PUBLISH. Messages are published in the order of these calls. Fails at once
    /// (and counts a drop) when the command connection is down or the queue is full:
    /// cross-replica delivery is best effort while Redis is away.
    pub fn publish(
        &self,
        channel: String,
        payload: Bytes,
        kind: MessageKind,
    ) -> Result<(), ClusterError> {
        if !self.commands_ready() {
            self.inner.metrics.publish_dropped.inc();
            return Err(ClusterError::Unavailable(
                "command connection is down".into(),
            ));
        }
        self.inner
            .publish_tx
            .try_send(Outgoing {
                channel,
                payload,
                kind,
            })
            .map_err(|_| {
                self.inner.metrics.publish_dropped.inc();
                ClusterError::Unavailable("publish queue is full".into())
            })
    }

    /// Number of subscribers of `channel` (`PUBSUB NUMSUB`; on a cluster `PUBSUB
    /// SHARDNUMSUB` of the shard channel): the Node adapters' server count.
    pub async fn numsub(&self, channel: &str) -> Result<usize, ClusterError> {
        let channel = channel.to_owned();
        let reply: Vec<RedisValue> = if self.inner.settings.topology.is_cluster() {
            self.call("pubsub_shardnumsub", |c| async move {
                c.pubsub_shardnumsub(channel).await
            })
            .await?
        } else {
            self.call("pubsub_numsub", |c| async move {
                c.pubsub_numsub(channel).await
            })
            .await?
        };
        reply
            .get(1)
            .and_then(RedisValue::as_i64)
            .map(|n| n.max(0) as usize)
            .ok_or_else(|| ClusterError::Reply {
                op: "pubsub_numsub",
                message: format!("{reply:?}"),
            })
    }

    /// Runs one command (or transaction, or script) on the command connection: fails fast
    /// when the connection is down, applies the timeout, counts it and its failure under
    /// `op` (a fixed name).
    pub async fn call<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, ClusterError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = Result<T, fred::error::Error>>,
    {
        let m = &self.inner.metrics;
        m.commands.with_label_values(&[op]).inc();
        if !self.commands_ready() {
            m.command_errors.with_label_values(&[op]).inc();
            return Err(ClusterError::Unavailable(
                "command connection is down".into(),
            ));
        }
        let timeout = self.inner.settings.command_timeout;
        match tokio::time::timeout(timeout, f(self.inner.commands.clone())).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                m.command_errors.with_label_values(&[op]).inc();
                if e.is_canceled()
                    || matches!(e.kind(), fred::error::ErrorKind::IO)
                    || !self.commands_ready()
                {
                    Err(ClusterError::Unavailable(e.to_string()))
                } else {
                    Err(ClusterError::Command {
                        op,
                        message: e.to_string(),
                    })
                }
            }
            Err(_) => {
                m.command_errors.with_label_values(&[op]).inc();
                Err(ClusterError::Timeout { op, timeout })
            }
        }
    }

    /// Records the lag of a broadcast that carried its publish time.
    pub fn observe_lag(&self, sent_at_us: u64) {
        let lag = now_micros().saturating_sub(sent_at_us);
        self.inner.metrics.pubsub_lag.observe(lag as f64 / 1e6);
    }

    /// Stops the background tasks and closes both connections.
    pub async fn shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.commands.quit()).await;
        let _ = tokio::time::timeout(Duration::from_secs(1), self.inner.subscriber.quit()).await;
        for task in self.inner.tasks.lock().drain(..) {
            task.abort();
        }
        self.inner.commands_up.store(false, Ordering::Release);
        self.inner.subscriber_up.store(false, Ordering::Release);
    }

    fn kind_of(&self, channel: &str) -> MessageKind {
        let prefix = &self.inner.settings.channel_prefix;
        if self.inner.settings.topology.is_cluster() {
            // Sharded channels: `<key>#<nsp>#` carries requests too (counted as broadcasts);
            // this node's `<key>#<nsp>#<uid>#` carries only responses.
            let own = channel
                .strip_suffix('#')
                .and_then(|c| c.strip_suffix(self.inner.node_id.as_str()))
                .is_some_and(|c| c.ends_with('#'));
            return if own {
                MessageKind::Response
            } else {
                MessageKind::Broadcast
            };
        }
        match channel.strip_prefix(prefix.as_str()) {
            Some(rest) if rest.starts_with("-request#") => MessageKind::Request,
            Some(rest) if rest.starts_with("-response#") => MessageKind::Response,
            _ => MessageKind::Broadcast,
        }
    }
}

async fn issue_subscriptions(
    subscriber: &Client,
    channels: Vec<String>,
    patterns: Vec<String>,
    sharded: Vec<String>,
    timeout: Duration,
) -> Result<(), String> {
    // One SSUBSCRIBE per channel: channels of different slots live on different shards,
    // and the client routes each command to the shard of its first channel.
    let sharded_count = sharded.len() as u32;
    let work = async {
        for channel in sharded {
            subscriber
                .ssubscribe(channel)
                .await
                .map_err(|e| e.to_string())?;
        }
        if !channels.is_empty() {
            subscriber
                .subscribe(channels)
                .await
                .map_err(|e| e.to_string())?;
        }
        if !patterns.is_empty() {
            subscriber
                .psubscribe(patterns)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    };
    tokio::time::timeout(timeout + timeout / 100 * sharded_count.min(1000), work)
        .await
        .map_err(|_| "subscribe timed out".to_owned())?
}

/// Follows one connection. A connection error marks it lost until the next
/// (re)connection event — `fred` keeps reporting the client as connected while it waits
/// out the first back-off delay, so its state alone would flap back to "up" too early.
/// On each (re)connection the subscriber restores every registered subscription before
/// it counts as up. A short tick keeps the metric and the flags current, retries failed
/// subscriptions, and, should a reconnection event ever be missed, probes the connection
/// itself before declaring it up again.
async fn watch_connection(weak: Weak<Inner>, which: Connection) {
    let Some(inner) = weak.upgrade() else { return };
    let client = match which {
        Connection::Commands => inner.commands.clone(),
        Connection::Subscriber => inner.subscriber.clone(),
    };
    let mut errors = client.error_rx();
    let mut reconnects = client.reconnect_rx();
    let mut shutdown = inner.shutdown.subscribe();
    let probe_after = inner.settings.reconnect_max * 2 + inner.settings.connect_timeout;
    let timeout = inner.settings.command_timeout;
    drop(inner);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ever_connected = false;
    // Not connected yet counts as lost.
    let mut lost = true;
    let mut lost_at = tokio::time::Instant::now();
    let mut failures: u64 = 0;
    let label = which.as_str();
    loop {
        // Set when the subscriber must (re)subscribe before it counts as up.
        let mut restore = false;
        // `biased`: errors first. The client emits an error before it reconnects, so when
        // both are waiting they are handled in the order they happened.
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            event = errors.recv() => {
                let (error, server) = match event {
                    Ok((error, server)) => (error.to_string(), server.map(|s| s.to_string())),
                    Err(RecvError::Lagged(_)) => ("errors lagged".to_owned(), None),
                    Err(RecvError::Closed) => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                if inner.settings.topology.is_cluster() && server.is_some() {
                    inner.whereabouts.lock().failed_node = server.clone();
                }
                let was_up = flag(&inner, which).swap(false, Ordering::AcqRel);
                if !lost {
                    lost_at = tokio::time::Instant::now();
                }
                lost = true;
                failures += 1;
                if was_up {
                    tracing::warn!(connection = label, %error, "redis connection lost; reconnecting");
                } else if failures == 1 || failures % 30 == 0 {
                    tracing::warn!(connection = label, %error, attempts = failures, "redis unreachable; retrying with back-off");
                } else {
                    tracing::debug!(connection = label, %error, attempts = failures, "redis still unreachable");
                }
                if which == Connection::Subscriber {
                    inner.resubscribe_needed.store(true, Ordering::Release);
                }
            }
            event = reconnects.recv() => {
                let server = match event {
                    Ok(server) => server.to_string(),
                    Err(RecvError::Lagged(_)) => "?".to_owned(),
                    Err(RecvError::Closed) => return,
                };
                let Some(inner) = weak.upgrade() else { return };
                let topology = inner.settings.topology.kind();
                if inner.settings.topology.is_cluster() {
                    inner.whereabouts.lock().failed_node = None;
                }
                if which == Connection::Commands && !inner.settings.topology.is_cluster() {
                    let mut w = inner.whereabouts.lock();
                    if let Some(before) = w.commands_server.as_deref()
                        && before != server
                    {
                        inner.metrics.master_changes.inc();
                        tracing::warn!(from = %before, to = %server, topology, "redis master changed; following it");
                    }
                    w.commands_server = Some(server.clone());
                }
                if ever_connected {
                    inner.metrics.reconnects.with_label_values(&[label]).inc();
                    tracing::info!(connection = label, %server, topology, "redis reconnected");
                } else {
                    tracing::info!(connection = label, %server, topology, "redis connected");
                }
                ever_connected = true;
                lost = false;
                failures = 0;
                if which == Connection::Subscriber {
                    inner.resubscribe_needed.store(true, Ordering::Release);
                    restore = true;
                }
            }
            _ = tick.tick() => {}
        }
        let Some(inner) = weak.upgrade() else { return };
        let connected = client.is_connected();
        if lost && connected && ever_connected && lost_at.elapsed() >= probe_after {
            // Safety net: connected for a while without a reconnection event.
            let alive = match which {
                Connection::Commands => {
                    tokio::time::timeout(timeout, client.ping::<RedisValue>(None))
                        .await
                        .is_ok_and(|r| r.is_ok())
                }
                Connection::Subscriber => true, // the resubscription below is the probe
            };
            if alive {
                lost = false;
                restore = which == Connection::Subscriber;
            } else {
                lost_at = tokio::time::Instant::now();
            }
        }
        if which == Connection::Subscriber
            && connected
            && !lost
            && (restore || inner.resubscribe_needed.load(Ordering::Acquire))
        {
            let (channels, patterns, sharded) = {
                let subs = inner.subscriptions.lock();
                (
                    subs.channels.iter().cloned().collect::<Vec<_>>(),
                    subs.patterns.iter().cloned().collect::<Vec<_>>(),
                    subs.shard_channels.iter().cloned().collect::<Vec<_>>(),
                )
            };
            let counts = (channels.len(), patterns.len(), sharded.len());
            match issue_subscriptions(&client, channels, patterns, sharded, timeout).await {
                Ok(()) => {
                    inner.resubscribe_needed.store(false, Ordering::Release);
                    tracing::info!(
                        channels = counts.0,
                        patterns = counts.1,
                        shard_channels = counts.2,
                        "redis subscriptions restored"
                    );
                }
                Err(error) => tracing::warn!(%error, "redis resubscribe failed; retrying"),
            }
        }
        let up = connected
            && !lost
            && (which == Connection::Commands || !inner.resubscribe_needed.load(Ordering::Acquire));
        flag(&inner, which).store(up, Ordering::Release);
        inner
            .metrics
            .connected
            .with_label_values(&[label])
            .set(i64::from(up));
    }
}

/// On a cluster: every 500 ms, compares the shards of the client's slot map with its
/// live connections, so that `/readyz` and `hubbub_redis_shard_up` name the shard whose
/// primary is unreachable (during a failover, until its replica is promoted and the
/// client has followed).
async fn watch_shards(weak: Weak<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut known_shards = 0usize;
    // The last slot map seen: while the client re-reads the map after losing a node it
    // has none, and the shards are judged by the last one.
    let mut shards: Vec<(u16, u16, String)> = Vec::new();
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let routing = inner.commands.cached_cluster_state();
        let live: BTreeSet<String> = inner
            .commands
            .active_connections()
            .iter()
            .map(ToString::to_string)
            .collect();
        if let Some(routing) = &routing {
            // Shards in slot order; a primary may own several ranges.
            shards = routing
                .slots()
                .iter()
                .map(|r| (r.start, r.end, r.primary.to_string()))
                .collect();
            shards.sort();
        }
        if shards.is_empty() {
            continue;
        }
        let failed = inner.whereabouts.lock().failed_node.clone();
        let mut primaries: Vec<String> = Vec::new();
        for (_, _, p) in &shards {
            if !primaries.contains(p) {
                primaries.push(p.clone());
            }
        }
        let mut down = Vec::new();
        for (i, primary) in primaries.iter().enumerate() {
            // Down: the node whose connection failed last (until the client reconnects),
            // or, with a current slot map, a primary without a live connection.
            let up = failed.as_deref() != Some(primary.as_str())
                && (routing.is_none() || live.contains(primary));
            inner
                .metrics
                .shard_up
                .with_label_values(&[&i.to_string()])
                .set(i64::from(up));
            if !up {
                let ranges: Vec<String> = shards
                    .iter()
                    .filter(|(_, _, p)| p == primary)
                    .map(|(a, b, _)| format!("{a}-{b}"))
                    .collect();
                down.push(format!(
                    "shard {i} (slots {}, primary {primary}) unreachable",
                    ranges.join(",")
                ));
            }
        }
        for i in primaries.len()..known_shards {
            let _ = inner
                .metrics
                .shard_up
                .remove_label_values(&[&i.to_string()]);
        }
        if primaries.len() != known_shards {
            tracing::info!(shards = primaries.len(), primaries = %primaries.join(","), "redis cluster shards");
            known_shards = primaries.len();
        }
        let mut w = inner.whereabouts.lock();
        if w.shards_down != down {
            for d in &down {
                tracing::warn!(shard = %d, "redis cluster shard down");
            }
            if down.is_empty() && !w.shards_down.is_empty() {
                tracing::info!("redis cluster: every shard reachable again");
            }
            w.shards_down = down;
        }
    }
}

fn flag(inner: &Inner, which: Connection) -> &AtomicBool {
    match which {
        Connection::Commands => &inner.commands_up,
        Connection::Subscriber => &inner.subscriber_up,
    }
}

/// Hands every received message, in order, to the handler.
async fn dispatch(weak: Weak<Inner>) {
    let Some(inner) = weak.upgrade() else { return };
    let mut messages = inner.subscriber.message_rx();
    let mut shutdown = inner.shutdown.subscribe();
    drop(inner);
    loop {
        let message = tokio::select! {
            _ = shutdown.changed() => return,
            m = messages.recv() => m,
        };
        let Some(inner) = weak.upgrade() else { return };
        match message {
            Ok(message) => {
                let payload = match message.value {
                    RedisValue::Bytes(b) => b,
                    RedisValue::String(s) => s.into_inner(),
                    other => match other.as_bytes() {
                        Some(b) => Bytes::copy_from_slice(b),
                        None => continue,
                    },
                };
                let link = RedisLink { inner };
                link.inner
                    .metrics
                    .received
                    .with_label_values(&[link.kind_of(&message.channel).as_str()])
                    .inc();
                let handler = link.inner.handler.read().clone();
                if let Some(handler) = handler {
                    handler.on_message(&message.channel, payload);
                }
            }
            Err(RecvError::Lagged(n)) => {
                inner.metrics.receive_lost.inc_by(n);
                tracing::warn!(
                    lost = n,
                    "redis pub/sub receiver fell behind; messages lost"
                );
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Publishes queued messages in order, as pipelines of whatever is waiting.
async fn publisher(weak: Weak<Inner>, mut rx: mpsc::Receiver<Outgoing>) {
    const BATCH: usize = 256;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let count = batch.len();
        // On a cluster: SPUBLISH, which the client sends to the shard of the channel.
        let sharded = inner.settings.topology.is_cluster();
        let result = if count == 1 {
            let m = &batch[0];
            let payload = RedisValue::Bytes(m.payload.clone());
            let channel = m.channel.as_str();
            let work = async {
                if sharded {
                    inner
                        .commands
                        .spublish::<RedisValue, _, _>(channel, payload)
                        .await
                } else {
                    inner
                        .commands
                        .publish::<RedisValue, _, _>(channel, payload)
                        .await
                }
            };
            tokio::time::timeout(inner.settings.command_timeout, work)
                .await
                .map(|r| r.map(|_| ()))
        } else {
            let pipeline = inner.commands.pipeline();
            for m in &batch {
                // Queuing into a pipeline only buffers the command locally.
                let payload = RedisValue::Bytes(m.payload.clone());
                let _: Result<(), _> = if sharded {
                    pipeline.spublish(m.channel.as_str(), payload).await
                } else {
                    pipeline.publish(m.channel.as_str(), payload).await
                };
            }
            tokio::time::timeout(inner.settings.command_timeout, pipeline.all::<RedisValue>())
                .await
                .map(|r| r.map(|_| ()))
        };
        match result {
            Ok(Ok(())) => {
                for m in &batch {
                    inner
                        .metrics
                        .published
                        .with_label_values(&[m.kind.as_str()])
                        .inc();
                }
            }
            Ok(Err(error)) => {
                inner.metrics.publish_dropped.inc_by(count as u64);
                tracing::warn!(%error, messages = count, "redis publish failed");
            }
            Err(_) => {
                inner.metrics.publish_dropped.inc_by(count as u64);
                tracing::warn!(messages = count, "redis publish timed out");
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_become_a_fred_config() {
        let mut s = RedisSettings::new("redis://127.0.0.1:6390/2");
        s.password = Some("s3cret".into());
        let fred = s.fred_config().unwrap();
        assert_eq!(fred.password.as_deref(), Some("s3cret"));
        assert_eq!(fred.database, Some(2));
        assert!(!fred.fail_fast, "the first connection is retried too");
    }

    #[test]
    fn a_password_in_the_url_wins() {
        let mut s = RedisSettings::new("redis://:inurl@127.0.0.1:6379");
        s.password = Some("flag".into());
        assert_eq!(s.fred_config().unwrap().password.as_deref(), Some("inurl"));
    }

    #[test]
    fn tls_urls_are_accepted() {
        let fred = RedisSettings::new("rediss://redis.example:6380")
            .fred_config()
            .unwrap();
        assert!(fred.tls.is_some());
    }

    #[test]
    fn node_ids_are_random_and_url_safe() {
        let a = random_node_id();
        let b = random_node_id();
        assert_eq!(a.len(), 12);
        assert_ne!(a, b);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[test]
    fn metrics_register_into_the_given_registry() {
        let registry = Registry::new();
        RedisMetrics::register(&registry).unwrap();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        for name in [
            "hubbub_redis_connected",
            "hubbub_redis_published_total",
            "hubbub_redis_pubsub_lag_seconds",
            "hubbub_redis_reconnects_total",
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
        assert!(
            prometheus::default_registry()
                .gather()
                .iter()
                .all(|f| !f.name().starts_with("hubbub_redis"))
        );
    }
}
