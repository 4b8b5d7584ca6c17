//! The server's metrics: one `prometheus::Registry` (never the process-global default)
//! into which every layer registers its own metrics — [`EngineMetrics`] (Engine.IO),
//! [`SocketMetrics`] (Socket.IO), the Redis link's `hubbub_redis_*` family — plus the chat
//! application's [`ChatMetrics`] and the process collector. `/metrics` renders it.
//!
//! Names follow `hubbub_<thing>_<unit>` / `_total`. Label values come from small fixed
//! sets only (transport, close reason, known event names, rejection reasons) — never a
//! user, room, session or message.

use hubbub_engineio::EngineMetrics;
use hubbub_socketio::SocketMetrics;
use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};

/// The chat application's metrics.
#[derive(Clone)]
pub struct ChatMetrics {
    /// `hubbub_events_received_total{event}`: events received, by known name, else `other`.
    pub events_received_total: IntCounterVec,
    /// `hubbub_events_rejected_total{reason}`: events refused, by reason.
    pub events_rejected_total: IntCounterVec,
}

impl ChatMetrics {
    /// Creates the chat metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = ChatMetrics {
            events_received_total: IntCounterVec::new(
                Opts::new(
                    "hubbub_events_received_total",
                    "Application events received, by event name (known names, else other)",
                ),
                &["event"],
            )?,
            events_rejected_total: IntCounterVec::new(
                Opts::new(
                    "hubbub_events_rejected_total",
                    "Application events rejected, by reason",
                ),
                &["reason"],
            )?,
        };
        registry.register(Box::new(m.events_received_total.clone()))?;
        registry.register(Box::new(m.events_rejected_total.clone()))?;
        Ok(m)
    }
}

/// The server's registry and the handles of the layers it wires together.
pub struct Metrics {
    /// The registry `/metrics` renders; the Redis link registers its own metrics into it.
    pub registry: Registry,
    /// The Engine.IO layer's metrics.
    pub engine: EngineMetrics,
    /// The Socket.IO layer's metrics.
    pub socket: SocketMetrics,
    /// The chat application's metrics.
    pub chat: ChatMetrics,
}

impl Metrics {
    /// A fresh registry with every layer's metrics and the process metrics (CPU, RSS, fds).
    pub fn new() -> Self {
        let registry = Registry::new();
        // unwrap (all below): names are static, valid and registered once in a fresh registry.
        let engine = EngineMetrics::register(&registry).expect("engine metrics registered once");
        let socket = SocketMetrics::register(&registry).expect("socket metrics registered once");
        let chat = ChatMetrics::register(&registry).expect("chat metrics registered once");
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("process collector registered once");
        Metrics {
            registry,
            engine,
            socket,
            chat,
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
        m.engine.connections_total.inc();
        m.chat
            .events_rejected_total
            .with_label_values(&["not_joined"])
            .inc();
        let text = m.render();
        assert!(text.contains("hubbub_connections_total 1"), "{text}");
        assert!(text.contains("hubbub_events_rejected_total{reason=\"not_joined\"} 1"));
        assert!(text.contains("hubbub_connections_open{transport=\"websocket\"} 0"));
        assert!(text.contains("hubbub_sockets_connected 0"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
