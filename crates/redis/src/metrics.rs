//! The `hubbub_redis_*` metrics, registered into the registry the binary passes to
//! [`crate::link::RedisLink::start`].

use crate::link::{Connection, MessageKind};
use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

/// The `hubbub_redis_*` metrics.
#[derive(Clone)]
pub struct RedisMetrics {
    /// `hubbub_redis_connected{connection}`: 1 while that connection is usable.
    pub connected: IntGaugeVec,
    /// `hubbub_redis_commands_total{op}`: commands (or transactions, scripts) sent.
    pub commands: IntCounterVec,
    /// `hubbub_redis_command_errors_total{op}`: of those, how many failed or timed out.
    pub command_errors: IntCounterVec,
    /// `hubbub_redis_published_total{kind}`: messages PUBLISHed (broadcast, request, response).
    pub published: IntCounterVec,
    /// `hubbub_redis_publish_dropped_total`: messages not published (link down, queue full, error).
    pub publish_dropped: IntCounter,
    /// `hubbub_redis_received_total{kind}`: pub/sub messages received.
    pub received: IntCounterVec,
    /// `hubbub_redis_receive_lost_total`: messages lost because the dispatcher fell behind.
    pub receive_lost: IntCounter,
    /// `hubbub_redis_pubsub_lag_seconds`: publish-to-receive time of broadcasts between hubbub nodes.
    pub pubsub_lag: Histogram,
    /// `hubbub_redis_reconnects_total{connection}`: successful reconnections after a loss.
    pub reconnects: IntCounterVec,
    /// `hubbub_redis_master_changes_total`: the command connection came back on another
    /// server than before (a Sentinel failover followed).
    pub master_changes: IntCounter,
    /// `hubbub_redis_shard_up{shard}`: on a cluster, 1 while the primary of shard `shard`
    /// (numbered 0.. in slot order) has a live connection.
    pub shard_up: IntGaugeVec,
}

impl RedisMetrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            connected: IntGaugeVec::new(
                Opts::new(
                    "hubbub_redis_connected",
                    "Whether the Redis connection is usable (1) or not (0)",
                ),
                &["connection"],
            )?,
            commands: IntCounterVec::new(
                Opts::new(
                    "hubbub_redis_commands_total",
                    "Redis commands, transactions and scripts sent",
                ),
                &["op"],
            )?,
            command_errors: IntCounterVec::new(
                Opts::new(
                    "hubbub_redis_command_errors_total",
                    "Redis commands that failed or timed out",
                ),
                &["op"],
            )?,
            published: IntCounterVec::new(
                Opts::new("hubbub_redis_published_total", "Pub/sub messages published"),
                &["kind"],
            )?,
            publish_dropped: IntCounter::new(
                "hubbub_redis_publish_dropped_total",
                "Pub/sub messages that could not be published (Redis down, queue full or error)",
            )?,
            received: IntCounterVec::new(
                Opts::new("hubbub_redis_received_total", "Pub/sub messages received"),
                &["kind"],
            )?,
            receive_lost: IntCounter::new(
                "hubbub_redis_receive_lost_total",
                "Pub/sub messages lost because the receiving task fell behind",
            )?,
            pubsub_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "hubbub_redis_pubsub_lag_seconds",
                    "Time from PUBLISH to receipt of broadcasts between hubbub nodes",
                )
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5,
                ]),
            )?,
            reconnects: IntCounterVec::new(
                Opts::new(
                    "hubbub_redis_reconnects_total",
                    "Redis reconnections after a lost connection",
                ),
                &["connection"],
            )?,
            master_changes: IntCounter::new(
                "hubbub_redis_master_changes_total",
                "Reconnections of the command connection to another server than before (failovers followed)",
            )?,
            shard_up: IntGaugeVec::new(
                Opts::new(
                    "hubbub_redis_shard_up",
                    "Redis Cluster only: whether the primary of each shard (numbered in slot order) is connected",
                ),
                &["shard"],
            )?,
        };
        registry.register(Box::new(m.connected.clone()))?;
        registry.register(Box::new(m.commands.clone()))?;
        registry.register(Box::new(m.command_errors.clone()))?;
        registry.register(Box::new(m.published.clone()))?;
        registry.register(Box::new(m.publish_dropped.clone()))?;
        registry.register(Box::new(m.received.clone()))?;
        registry.register(Box::new(m.receive_lost.clone()))?;
        registry.register(Box::new(m.pubsub_lag.clone()))?;
        registry.register(Box::new(m.reconnects.clone()))?;
        registry.register(Box::new(m.master_changes.clone()))?;
        registry.register(Box::new(m.shard_up.clone()))?;
        for c in [Connection::Commands, Connection::Subscriber] {
            m.connected.with_label_values(&[c.as_str()]).set(0);
            m.reconnects.with_label_values(&[c.as_str()]);
        }
        for k in [
            MessageKind::Broadcast,
            MessageKind::Request,
            MessageKind::Response,
        ] {
            m.published.with_label_values(&[k.as_str()]);
            m.received.with_label_values(&[k.as_str()]);
        }
        Ok(m)
    }
}
