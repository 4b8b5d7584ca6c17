//! The operator's own Prometheus metrics (in their own [`prometheus::Registry`], never
//! the global default) and the small HTTP listener that serves `/metrics`, `/healthz`
//! and `/readyz` on `--metrics-bind`.
//!
//! Label values come from small fixed sets: `result` is `success`/`failure` and `reason`
//! is [`crate::Error::metric_label`]; never a room name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::Error;

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
        for collector in [
            Box::new(reconciliations.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(failures.clone()),
            Box::new(duration.clone()),
            Box::new(leader.clone()),
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

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
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
