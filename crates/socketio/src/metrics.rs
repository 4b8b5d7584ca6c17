//! The Socket.IO layer's metrics: sockets connected and the cost of broadcasts.
//! [`SocketMetrics::register`] creates them in a registry the binary owns; label values
//! come from small fixed sets only.

use prometheus::{Histogram, HistogramOpts, IntGauge, Registry};

/// The metric handles of the Socket.IO layer.
#[derive(Clone)]
pub struct SocketMetrics {
    /// `hubbub_sockets_connected`: Socket.IO sockets connected now, all namespaces.
    pub sockets_connected: IntGauge,
    /// `hubbub_broadcast_recipients`: local recipients of one broadcast.
    pub broadcast_recipients: Histogram,
    /// `hubbub_broadcast_duration_seconds`: time to queue one broadcast for every local recipient.
    pub broadcast_duration_seconds: Histogram,
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
        };
        registry.register(Box::new(m.sockets_connected.clone()))?;
        registry.register(Box::new(m.broadcast_recipients.clone()))?;
        registry.register(Box::new(m.broadcast_duration_seconds.clone()))?;
        Ok(m)
    }

    /// Metrics in a registry of their own, for tests and examples that do not render them.
    pub fn detached() -> Self {
        // unwrap: a fresh registry holds no metric of these names.
        Self::register(&Registry::new()).expect("fresh registry")
    }
}
