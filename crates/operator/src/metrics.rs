//! The operator's own Prometheus metrics (in their own [`prometheus::Registry`], never
//! the global default) and the small HTTP listener that serves `/metrics`, `/healthz`
//! and `/readyz` on `--metrics-bind`.
//!
//! Label values come from small fixed sets: `result` is `success`/`failure`, `reason`
//! is [`crate::Error::metric_label`] and `condition` is `ready`/`not_ready`;
//! never a room name. Every label value is exported from the start (at 0), so that an
//! alert on `increase()` sees the first failure.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::runtime::reflector::Store;
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use crate::Error;
use crate::crd::ChatRoom;
use crate::reconciler::READY;

/// The `reason`s a reconciliation can fail with ([`Error::metric_label`] of the errors
/// `reconcile` returns), exported at 0 from the start.
const RECONCILE_FAILURE_REASONS: [&str; 4] =
    ["invalid_spec", "kube_api", "missing_metadata", "serialise"];

/// Handles to every operator metric.
pub struct Metrics {
    registry: Registry,
    /// `hubbub_operator_reconciliations_total{result}`: finished reconciliations.
    pub reconciliations: IntCounterVec,
    /// `hubbub_operator_reconcile_failures_total{reason}`: failed reconciliations by cause.
    pub failures: IntCounterVec,
    /// `hubbub_operator_reconcile_duration_seconds`: time of one reconciliation.
    pub duration: Histogram,
    /// `hubbub_operator_leader`: 1 while this replica holds the Lease (or runs without
    /// leader election), else 0.
    pub leader: IntGauge,
    /// `hubbub_operator_chatrooms{condition}`: ChatRooms in the controller's cache by
    /// their `Ready` condition (`ready`, `not_ready`), counted when scraped; 0 on a standby.
    pub chatrooms: IntGaugeVec,
    /// The controller's cache of ChatRooms, set once the controller runs.
    rooms: OnceLock<Store<ChatRoom>>,
    /// Whether `/readyz` answers 200: set once the controller runs or stands by.
    ready: AtomicBool,
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let registry = Registry::new();
        // expect: the names, help texts and labels below are static and valid, and each
        // metric is registered exactly once in a fresh registry, so none of these can fail.
        let reconciliations = IntCounterVec::new(
            Opts::new(
                "hubbub_operator_reconciliations_total",
                "ChatRoom reconciliations by result (success, failure)",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let failures = IntCounterVec::new(
            Opts::new(
                "hubbub_operator_reconcile_failures_total",
                "Failed ChatRoom reconciliations by reason",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "hubbub_operator_reconcile_duration_seconds",
                "Duration of one ChatRoom reconciliation",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )
        .expect("static metric definition");
        let leader = IntGauge::new(
            "hubbub_operator_leader",
            "1 while this operator replica is the leader and reconciles",
        )
        .expect("static metric definition");
        let chatrooms = IntGaugeVec::new(
            Opts::new(
                "hubbub_operator_chatrooms",
                "ChatRooms by their Ready condition (ready, not_ready)",
            ),
            &["condition"],
        )
        .expect("static metric definition");
        for result in ["success", "failure"] {
            reconciliations.with_label_values(&[result]);
        }
        for reason in RECONCILE_FAILURE_REASONS {
            failures.with_label_values(&[reason]);
        }
        for condition in ["ready", "not_ready"] {
            chatrooms.with_label_values(&[condition]);
        }
        for collector in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(leader.clone()),
            Box::new(chatrooms.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric is registered once in a fresh registry");
        }
        Self {
            registry,
            reconciliations,
            failures,
            duration,
            leader,
            chatrooms,
            rooms: OnceLock::new(),
            ready: AtomicBool::new(false),
        }
    }

    /// Counts one successful reconciliation that took `seconds`.
    pub fn record_success(&self, seconds: f64) {
        self.reconciliations.with_label_values(&["success"]).inc();
        self.duration.observe(seconds);
    }

    /// Counts one failed reconciliation that took `seconds`.
    pub fn record_failure(&self, err: &Error, seconds: f64) {
        self.reconciliations.with_label_values(&["failure"]).inc();
        self.failures.with_label_values(&[err.metric_label()]).inc();
        self.duration.observe(seconds);
    }

    /// Marks the operator ready (`/readyz` answers 200).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Counts the ChatRooms of `store` (the controller's cache) in `hubbub_operator_chatrooms`
    /// from now on; a second call is ignored.
    pub fn watch_rooms(&self, store: Store<ChatRoom>) {
        let _ = self.rooms.set(store);
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        if let Some(store) = self.rooms.get() {
            let rooms = store.state();
            let ready = rooms
                .iter()
                .filter(|room| {
                    room.status.as_ref().is_some_and(|status| {
                        status
                            .conditions
                            .iter()
                            .any(|c| c.type_ == READY && c.status == "True")
                    })
                })
                .count();
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            self.chatrooms
                .with_label_values(&["ready"])
                .set(count(ready));
            self.chatrooms
                .with_label_values(&["not_ready"])
                .set(count(rooms.len() - ready));
        }
        let mut buf = Vec::new();
        // encoding gathered families into a Vec cannot fail
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The running metrics server (`/metrics`, `/healthz`, `/readyz`); stopped when
/// [`MetricsServer::stop`] is called or the value is dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// The bound address (useful with port 0 in tests).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections.
    pub fn stop(self) {
        self.task.abort();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `bind` and serves the metrics on it from a task of its own (HTTP/1.1 with
/// hyper, which the Kubernetes client already links: the operator needs no web framework
/// for three read-only routes). Must be called inside a Tokio runtime.
pub fn serve(bind: SocketAddr, metrics: Arc<Metrics>) -> Result<MetricsServer, Error> {
    let bind_error = |source| Error::MetricsBind {
        bind: bind.to_string(),
        source,
    };
    let std_listener = std::net::TcpListener::bind(bind).map_err(bind_error)?;
    std_listener.set_nonblocking(true).map_err(bind_error)?;
    let addr = std_listener.local_addr().map_err(bind_error)?;
    let listener = tokio::net::TcpListener::from_std(std_listener).map_err(bind_error)?;
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    continue;
                }
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let response = respond(&metrics, req.method(), req.uri().path());
                    async move { Ok::<_, std::convert::Infallible>(response) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10))
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "metrics connection ended with an error");
                }
            });
        }
    });
    Ok(MetricsServer { addr, task })
}

type Response = hyper::Response<http_body_util::Full<bytes::Bytes>>;

/// The answer to one request: the three routes, 405 for other methods, 404 elsewhere.
fn respond(metrics: &Metrics, method: &hyper::Method, path: &str) -> Response {
    let (status, content_type, body) = match (method, path) {
        (&hyper::Method::GET, "/metrics") => (
            200,
            "text/plain; version=0.0.4",
            bytes::Bytes::from(metrics.encode()),
        ),
        (&hyper::Method::GET, "/healthz") => (200, "text/plain", bytes::Bytes::from_static(b"ok")),
        (&hyper::Method::GET, "/readyz") if metrics.is_ready() => {
            (200, "text/plain", bytes::Bytes::from_static(b"ok"))
        }
        (&hyper::Method::GET, "/readyz") => {
            (503, "text/plain", bytes::Bytes::from_static(b"starting"))
        }
        (_, "/metrics" | "/healthz" | "/readyz") => (
            405,
            "text/plain",
            bytes::Bytes::from_static(b"method not allowed"),
        ),
        _ => (404, "text/plain", bytes::Bytes::from_static(b"not found")),
    };
    let mut response = hyper::Response::new(http_body_util::Full::new(body));
    // unwrap: every status above is a valid code.
    *response.status_mut() = hyper::StatusCode::from_u16(status).expect("valid status");
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

#[cfg(test)]
mod tests {
    use kube::runtime::{reflector, watcher};

    use super::*;

    fn room(name: &str, ready: Option<&str>) -> ChatRoom {
        let mut room = serde_json::json!({
            "apiVersion": "hubbub.dev/v1alpha1",
            "kind": "ChatRoom",
            "metadata": {"name": name, "namespace": "chat", "uid": name},
            "spec": {},
        });
        if let Some(status) = ready {
            room["status"] = serde_json::json!({"conditions": [{
                "type": "Ready", "status": status, "reason": "Test", "message": "",
                "lastTransitionTime": "2025-01-01T00:00:00Z",
            }]});
        }
        serde_json::from_value(room).expect("a valid ChatRoom")
    }

    #[test]
    fn every_label_value_is_exported_at_zero_from_the_start() {
        let text = Metrics::new().encode();
        for line in [
            "hubbub_operator_reconciliations_total{result=\"success\"} 0",
            "hubbub_operator_reconciliations_total{result=\"failure\"} 0",
            "hubbub_operator_reconcile_failures_total{reason=\"kube_api\"} 0",
            "hubbub_operator_reconcile_failures_total{reason=\"invalid_spec\"} 0",
            "hubbub_operator_chatrooms{condition=\"ready\"} 0",
            "hubbub_operator_chatrooms{condition=\"not_ready\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn chatrooms_are_counted_by_their_ready_condition_when_scraped() {
        let metrics = Metrics::new();
        let (store, mut writer) = reflector::store::<ChatRoom>();
        metrics.watch_rooms(store);
        for r in [
            room("a", Some("True")),
            room("b", Some("False")),
            room("c", None),
        ] {
            writer.apply_watcher_event(&watcher::Event::Apply(r));
        }
        let text = metrics.encode();
        assert!(
            text.contains("hubbub_operator_chatrooms{condition=\"ready\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hubbub_operator_chatrooms{condition=\"not_ready\"} 2"),
            "{text}"
        );
        // a deleted room is no longer counted
        writer.apply_watcher_event(&watcher::Event::Delete(room("b", Some("False"))));
        let text = metrics.encode();
        assert!(
            text.contains("hubbub_operator_chatrooms{condition=\"not_ready\"} 1"),
            "{text}"
        );
    }
}
