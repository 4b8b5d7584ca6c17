//! The Engine.IO layer's metrics: sessions, packets and bytes on the wire, slow
//! consumers and refused handshakes. [`EngineMetrics::register`] creates them in a
//! `prometheus::Registry` the binary owns (never the process-global default); the layer
//! keeps the handles and reads no other layer's metrics.
//!
//! Names follow `hubbub_<thing>_<unit>` / `_total`; label values come from small fixed
//! sets only (transport, close reason) — never a user, session or message.

use prometheus::{IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use super::tasks::RuntimeTasks;

/// The metric handles of the Engine.IO layer.
#[derive(Clone)]
pub struct EngineMetrics {
    /// `hubbub_connections_open{transport}`: sessions open now (`polling`, `websocket`).
    pub connections_open: IntGaugeVec,
    /// `hubbub_connections_total`: sessions opened since start.
    pub connections_total: IntCounter,
    /// `hubbub_disconnects_total{reason}`: sessions closed, by `CloseReason::label`.
    pub disconnects_total: IntCounterVec,
    /// `hubbub_packets_received_total`: packets received from clients.
    pub packets_received_total: IntCounter,
    /// `hubbub_packets_sent_total`: packets written to clients.
    pub packets_sent_total: IntCounter,
    /// `hubbub_bytes_received_total`: bytes of packets received from clients.
    pub bytes_received_total: IntCounter,
    /// `hubbub_bytes_sent_total`: bytes of packets written to clients.
    pub bytes_sent_total: IntCounter,
    /// `hubbub_outbound_queue_overflows_total`: clients closed because their queue was full.
    pub outbound_queue_overflows_total: IntCounter,
    /// `hubbub_sessions_refused_total`: handshakes refused at the session limit.
    pub sessions_refused_total: IntCounter,
    /// `hubbub_tasks_alive`: tasks alive on the runtimes serving the engine.
    pub tasks: RuntimeTasks,
}

impl EngineMetrics {
    /// Creates the metrics and registers them in `registry`. Fails only when a metric of
    /// the same name is already registered there.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = EngineMetrics {
            connections_open: IntGaugeVec::new(
                Opts::new(
                    "hubbub_connections_open",
                    "Engine.IO sessions open now, by transport",
                ),
                &["transport"],
            )?,
            connections_total: IntCounter::new(
                "hubbub_connections_total",
                "Engine.IO sessions opened since start",
            )?,
            disconnects_total: IntCounterVec::new(
                Opts::new(
                    "hubbub_disconnects_total",
                    "Engine.IO sessions closed, by reason",
                ),
                &["reason"],
            )?,
            packets_received_total: IntCounter::new(
                "hubbub_packets_received_total",
                "Engine.IO packets received from clients",
            )?,
            packets_sent_total: IntCounter::new(
                "hubbub_packets_sent_total",
                "Engine.IO packets written to clients",
            )?,
            bytes_received_total: IntCounter::new(
                "hubbub_bytes_received_total",
                "Bytes of Engine.IO packets received from clients",
            )?,
            bytes_sent_total: IntCounter::new(
                "hubbub_bytes_sent_total",
                "Bytes of Engine.IO packets written to clients",
            )?,
            outbound_queue_overflows_total: IntCounter::new(
                "hubbub_outbound_queue_overflows_total",
                "Clients disconnected because their outbound queue was full",
            )?,
            sessions_refused_total: IntCounter::new(
                "hubbub_sessions_refused_total",
                "Handshakes refused because the server held --max-connections sessions",
            )?,
            tasks: RuntimeTasks::new()?,
        };
        registry.register(Box::new(m.connections_open.clone()))?;
        registry.register(Box::new(m.connections_total.clone()))?;
        registry.register(Box::new(m.disconnects_total.clone()))?;
        registry.register(Box::new(m.packets_received_total.clone()))?;
        registry.register(Box::new(m.packets_sent_total.clone()))?;
        registry.register(Box::new(m.bytes_received_total.clone()))?;
        registry.register(Box::new(m.bytes_sent_total.clone()))?;
        registry.register(Box::new(m.outbound_queue_overflows_total.clone()))?;
        registry.register(Box::new(m.sessions_refused_total.clone()))?;
        registry.register(Box::new(m.tasks.clone()))?;
        // Both transports are always present in the output, even at zero.
        for t in ["polling", "websocket"] {
            m.connections_open.with_label_values(&[t]);
        }
        Ok(m)
    }

    /// Metrics in a registry of their own, for tests and examples that do not render them.
    pub fn detached() -> Self {
        // unwrap: a fresh registry holds no metric of these names.
        Self::register(&Registry::new()).expect("fresh registry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_metric_once() {
        let registry = Registry::new();
        let m = EngineMetrics::register(&registry).unwrap();
        m.connections_total.inc();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        assert!(names.contains(&"hubbub_connections_total".to_owned()));
        assert!(names.contains(&"hubbub_connections_open".to_owned()));
        assert!(
            EngineMetrics::register(&registry).is_err(),
            "second registration refused"
        );
    }
}
