//! The server's metrics: one [`Metrics`] value owning its own
//! `prometheus::Registry` (never the process-global default), shared as
//! `Arc<Metrics>` by every layer that counts something.
//!
//! Names follow `hubbub_<thing>_<unit>` / `_total`. Label values come from
//! small fixed sets only (transport, close reason, known event names, rejection
//! reasons) — never a user, room, session or message.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric of the server, registered in [`Metrics::registry`].
pub struct Metrics {
    /// The registry `/metrics` renders; other components (the Redis cluster
    /// layer) register their own metrics into it.
    pub registry: Registry,
    /// Engine.IO sessions open now, by transport (`polling`, `websocket`).
    pub connections_open: IntGaugeVec,
    /// Engine.IO sessions opened since start.
    pub connections_total: IntCounter,
    /// Sessions closed, by reason (see `engineio::CloseReason::label`).
    pub disconnects_total: IntCounterVec,
    /// Engine.IO packets received from clients.
    pub packets_received_total: IntCounter,
    /// Engine.IO packets written to clients.
    pub packets_sent_total: IntCounter,
    /// Bytes of packets received from clients.
    pub bytes_received_total: IntCounter,
    /// Bytes of packets written to clients.
    pub bytes_sent_total: IntCounter,
    /// Application events received, by event name (known names, else `other`).
    pub events_received_total: IntCounterVec,
    /// Application events rejected, by reason.
    pub events_rejected_total: IntCounterVec,
    /// Local recipients of one broadcast.
    pub broadcast_recipients: Histogram,
    /// Time to hand one broadcast to every local recipient's queue.
    pub broadcast_duration_seconds: Histogram,
    /// Clients disconnected because their outbound queue was full.
    pub outbound_queue_overflows_total: IntCounter,
    /// Handshakes refused because `--max-connections` sessions were open.
    pub sessions_refused_total: IntCounter,
    /// Socket.IO sockets connected now (all namespaces).
    pub sockets_connected: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric, plus process metrics (CPU, RSS, fds).
    pub fn new() -> Self {
        let registry = Registry::new();
        // unwrap (all below): names are static, valid and registered once in a fresh registry.
        let connections_open = IntGaugeVec::new(
            Opts::new(
                "hubbub_connections_open",
                "Engine.IO sessions open now, by transport",
            ),
            &["transport"],
        )
        .expect("valid metric");
        let connections_total = IntCounter::new(
            "hubbub_connections_total",
            "Engine.IO sessions opened since start",
        )
        .expect("valid metric");
        let disconnects_total = IntCounterVec::new(
            Opts::new(
                "hubbub_disconnects_total",
                "Engine.IO sessions closed, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let packets_received_total = IntCounter::new(
            "hubbub_packets_received_total",
            "Engine.IO packets received from clients",
        )
        .expect("valid metric");
        let packets_sent_total = IntCounter::new(
            "hubbub_packets_sent_total",
            "Engine.IO packets written to clients",
        )
        .expect("valid metric");
        let bytes_received_total = IntCounter::new(
            "hubbub_bytes_received_total",
            "Bytes of Engine.IO packets received from clients",
        )
        .expect("valid metric");
        let bytes_sent_total = IntCounter::new(
            "hubbub_bytes_sent_total",
            "Bytes of Engine.IO packets written to clients",
        )
        .expect("valid metric");
        let events_received_total = IntCounterVec::new(
            Opts::new(
                "hubbub_events_received_total",
                "Application events received, by event name (known names, else other)",
            ),
            &["event"],
        )
        .expect("valid metric");
        let events_rejected_total = IntCounterVec::new(
            Opts::new(
                "hubbub_events_rejected_total",
                "Application events rejected, by reason",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let broadcast_recipients = Histogram::with_opts(
            HistogramOpts::new(
                "hubbub_broadcast_recipients",
                "Local recipients of one broadcast",
            )
            .buckets(vec![0.0, 1.0, 10.0, 100.0, 1000.0, 10_000.0, 100_000.0]),
        )
        .expect("valid metric");
        let broadcast_duration_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "hubbub_broadcast_duration_seconds",
                "Time to queue one broadcast for every local recipient",
            )
            .buckets(vec![
                0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1,
            ]),
        )
        .expect("valid metric");
        let outbound_queue_overflows_total = IntCounter::new(
            "hubbub_outbound_queue_overflows_total",
            "Clients disconnected because their outbound queue was full",
        )
        .expect("valid metric");
        let sessions_refused_total = IntCounter::new(
            "hubbub_sessions_refused_total",
            "Handshakes refused because the server held --max-connections sessions",
        )
        .expect("valid metric");
        let sockets_connected = IntGauge::new(
            "hubbub_sockets_connected",
            "Socket.IO sockets connected now, all namespaces",
        )
        .expect("valid metric");

        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(connections_open.clone()),
            Box::new(connections_total.clone()),
            Box::new(disconnects_total.clone()),
            Box::new(packets_received_total.clone()),
            Box::new(packets_sent_total.clone()),
            Box::new(bytes_received_total.clone()),
            Box::new(bytes_sent_total.clone()),
            Box::new(events_received_total.clone()),
            Box::new(events_rejected_total.clone()),
            Box::new(broadcast_recipients.clone()),
            Box::new(broadcast_duration_seconds.clone()),
            Box::new(outbound_queue_overflows_total.clone()),
            Box::new(sessions_refused_total.clone()),
            Box::new(sockets_connected.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("metric registered once");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registered once");
        // Both transports are always present in the output, even at zero.
        for t in ["polling", "websocket"] {
            connections_open.with_label_values(&[t]);
        }

        Metrics {
            registry,
            connections_open,
            connections_total,
            disconnects_total,
            packets_received_total,
            packets_sent_total,
            bytes_received_total,
            bytes_sent_total,
            events_received_total,
            events_rejected_total,
            broadcast_recipients,
            broadcast_duration_seconds,
            outbound_queue_overflows_total,
            sessions_refused_total,
            sockets_connected,
        }
    }

    /// Renders the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // unwrap: the text encoder only fails on invalid metric families, which registration prevents.
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding");
        // unwrap: the text format is UTF-8 by construction.
        String::from_utf8(buf).expect("utf-8 metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_own_registry_with_process_metrics() {
        let m = Metrics::new();
        m.connections_total.inc();
        m.events_rejected_total
            .with_label_values(&["not_joined"])
            .inc();
        let text = m.render();
        assert!(text.contains("hubbub_connections_total 1"), "{text}");
        assert!(text.contains("hubbub_events_rejected_total{reason=\"not_joined\"} 1"));
        assert!(text.contains("hubbub_connections_open{transport=\"websocket\"} 0"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
