//! The Socket.IO layer's metrics: sockets connected, the cost of broadcasts, and connection
//! state recovery.
//! [`SocketMetrics::register`] creates them in a registry the binary owns; label values
//! come from small fixed sets only.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::recovery::RESULT_LABELS;

/// The metric handles of the Socket.IO layer.
#[derive(Clone)]
pub struct SocketMetrics {
    /// `hubbub_sockets_connected`: Socket.IO sockets connected now, all namespaces.
    pub sockets_connected: IntGauge,
    /// `hubbub_broadcast_recipients`: local recipients of one broadcast.
    pub broadcast_recipients: Histogram,
    /// `hubbub_broadcast_duration_seconds`: time to queue one broadcast for every local recipient.
    pub broadcast_duration_seconds: Histogram,
    /// `hubbub_recovery_attempts_total`: CONNECTs that asked to restore a session (carried a `pid`).
    pub recovery_attempts: IntCounter,
    /// `hubbub_recovery_total{result}`: how those attempts ended (`recovery::RESULT_LABELS`).
    pub recovery_results: IntCounterVec,
    /// `hubbub_recovery_replayed_events_total`: missed events sent to recovered sockets.
    pub recovery_replayed: IntCounter,
}

impl SocketMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = SocketMetrics {
            sockets_connected: IntGauge::new(
                "hubbub_sockets_connected",
                "Socket.IO sockets connected now, all namespaces",
            )?,
            broadcast_recipients: Histogram::with_opts(
                HistogramOpts::new(
                    "hubbub_broadcast_recipients",
                    "Local recipients of one broadcast",
                )
                .buckets(vec![0.0, 1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0]),
            )?,
            broadcast_duration_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hubbub_broadcast_duration_seconds",
                    "Time to queue one broadcast for every local recipient",
                )
                .buckets(vec![
                    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1,
                ]),
            )?,
            recovery_attempts: IntCounter::new(
                "hubbub_recovery_attempts_total",
                "CONNECTs that asked to restore a session (carried a pid)",
            )?,
            recovery_results: IntCounterVec::new(
                Opts::new(
                    "hubbub_recovery_total",
                    "Session restore attempts by result",
                ),
                &["result"],
            )?,
            recovery_replayed: IntCounter::new(
                "hubbub_recovery_replayed_events_total",
                "Missed events sent to recovered sockets",
            )?,
        };
        for result in RESULT_LABELS {
            m.recovery_results.with_label_values(&[result]);
        }
        registry.register(Box::new(m.sockets_connected.clone()))?;
        registry.register(Box::new(m.broadcast_recipients.clone()))?;
        registry.register(Box::new(m.broadcast_duration_seconds.clone()))?;
        registry.register(Box::new(m.recovery_attempts.clone()))?;
        registry.register(Box::new(m.recovery_results.clone()))?;
        registry.register(Box::new(m.recovery_replayed.clone()))?;
        Ok(m)
    }

    /// Counts one restore attempt's result.
    pub(crate) fn recovery_result(&self, result: &str) {
        self.recovery_results.with_label_values(&[result]).inc();
    }

    /// Metrics in a registry of their own, for tests and examples that do not render them.
    pub fn detached() -> Self {
        // unwrap: a fresh registry holds no metric of these names.
        Self::register(&Registry::new()).expect("fresh registry")
    }
}
