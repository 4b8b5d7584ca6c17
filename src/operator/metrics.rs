//! The operator's own Prometheus metrics (in their own [`prometheus::Registry`], never
//! the global default) and the small HTTP listener that serves `/metrics`, `/healthz`
//! and `/readyz` on `--metrics-bind`.
//!
//! Label values come from small fixed sets: `result` is `success`/`failure` and `reason`
//! is [`crate::operator::Error::metric_label`]; never a room name.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{App, HttpResponse, HttpServer, web};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

use crate::operator::Error;

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

/// Binds `bind` and returns the running server (serve it by awaiting it; stop it with
/// its handle) and the bound address (useful with port 0 in tests).
pub fn serve(
    bind: SocketAddr,
    metrics: Arc<Metrics>,
) -> Result<(actix_web::dev::Server, SocketAddr), Error> {
    let data = web::Data::from(metrics);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/metrics", web::get().to(metrics_handler))
            .route(
                "/healthz",
                web::get().to(|| async { HttpResponse::Ok().body("ok") }),
            )
            .route("/readyz", web::get().to(readyz_handler))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(bind)
    .map_err(|source| Error::MetricsBind {
        bind: bind.to_string(),
        source,
    })?;
    let addr = server.addrs().first().copied().unwrap_or(bind);
    Ok((server.run(), addr))
}

async fn metrics_handler(metrics: web::Data<Metrics>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(metrics.encode())
}

async fn readyz_handler(metrics: web::Data<Metrics>) -> HttpResponse {
    if metrics.is_ready() {
        HttpResponse::Ok().body("ok")
    } else {
        HttpResponse::ServiceUnavailable().body("starting")
    }
}
