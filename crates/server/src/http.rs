//! The one route table of the server: the Socket.IO endpoint, the page and
//! its assets (embedded at build time from `web/`), `/healthz`, `/readyz` and
//! `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{HttpResponse, web};
use parking_lot::RwLock;

use crate::metrics::Metrics;
use hubbub_engineio::{self, Engine};

/// The Content-Security-Policy of the page: no inline script or style, no
/// third-party origins.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' ws: wss:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

type Check = Arc<dyn Fn() -> bool + Send + Sync>;
/// A check that says why it fails (`Some(detail)`), e.g. which Redis shard is down.
type DetailedCheck = Arc<dyn Fn() -> Option<String> + Send + Sync>;

/// Readiness: draining flag plus named checks (the store, the cluster link).
#[derive(Default)]
pub struct Health {
    draining: AtomicBool,
    checks: RwLock<Vec<(&'static str, Check)>>,
    detailed: RwLock<Vec<(&'static str, DetailedCheck)>>,
}

impl Health {
    /// A healthy, ready state with no checks.
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Adds a check that must pass for `/readyz` to answer 200.
    pub fn add_check(&self, name: &'static str, check: impl Fn() -> bool + Send + Sync + 'static) {
        self.checks.write().push((name, Arc::new(check)));
    }

    /// Adds a check that must return `None` for `/readyz` to answer 200; what it returns
    /// otherwise follows its name in the `/readyz` body.
    pub fn add_detailed_check(
        &self,
        name: &'static str,
        check: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) {
        self.detailed.write().push((name, Arc::new(check)));
    }

    /// Marks the server as draining: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Why the server is not ready; empty when it is.
    pub fn unready_reasons(&self) -> Vec<&'static str> {
        let mut reasons = Vec::new();
        if self.draining.load(Ordering::Acquire) {
            reasons.push("draining");
        }
        for (name, check) in self.checks.read().iter() {
            if !check() {
                reasons.push(*name);
            }
        }
        for (name, check) in self.detailed.read().iter() {
            if check().is_some() {
                reasons.push(*name);
            }
        }
        reasons
    }

    /// Like [`Health::unready_reasons`], each detailed check followed by its detail.
    pub fn unready_report(&self) -> Vec<String> {
        let mut report: Vec<String> = Vec::new();
        if self.draining.load(Ordering::Acquire) {
            report.push("draining".into());
        }
        for (name, check) in self.checks.read().iter() {
            if !check() {
                report.push((*name).into());
            }
        }
        for (name, check) in self.detailed.read().iter() {
            if let Some(detail) = check() {
                report.push(format!("{name} ({detail})"));
            }
        }
        report
    }
}

/// What the routes need.
#[derive(Clone)]
pub struct AppState {
    /// The Engine.IO server.
    pub engine: Arc<Engine>,
    /// The metrics registry.
    pub metrics: Arc<Metrics>,
    /// Readiness.
    pub health: Arc<Health>,
    /// The Socket.IO endpoint path, e.g. `/socket.io/`.
    pub path: String,
}

fn asset(content_type: &'static str, cache: &'static str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Cache-Control", cache))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(body)
}

async fn index() -> HttpResponse {
    let mut resp = asset(
        "text/html; charset=utf-8",
        "no-cache",
        include_str!("../web/index.html"),
    );
    let h = resp.headers_mut();
    use actix_web::http::header::{HeaderName, HeaderValue};
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
    ] {
        h.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    resp
}

async fn app_js() -> HttpResponse {
    // The page and its own script/style revalidate, so an upgrade never mixes versions.
    asset(
        "application/javascript; charset=utf-8",
        "no-cache",
        include_str!("../web/app.js"),
    )
}

async fn style_css() -> HttpResponse {
    asset(
        "text/css; charset=utf-8",
        "public, max-age=3600",
        include_str!("../web/style.css"),
    )
}

async fn client_js() -> HttpResponse {
    asset(
        "application/javascript; charset=utf-8",
        "public, max-age=3600",
        include_str!("../web/socket.io.js"),
    )
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .body("ok")
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let reasons = state.health.unready_report();
    let mut resp = if reasons.is_empty() {
        HttpResponse::Ok()
    } else {
        HttpResponse::ServiceUnavailable()
    };
    resp.insert_header(("Cache-Control", "no-store"));
    if reasons.is_empty() {
        resp.body("ready")
    } else {
        resp.body(format!("not ready: {}", reasons.join(", ")))
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(state.metrics.render())
}

/// Registers every route.
pub fn routes(state: AppState) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        let client_path = format!("{}socket.io.js", state.path);
        let path = state.path.clone();
        cfg.app_data(web::Data::new(state.engine.clone()))
            .app_data(web::Data::new(state))
            .route("/", web::get().to(index))
            .route("/app.js", web::get().to(app_js))
            .route("/style.css", web::get().to(style_css))
            .route(&client_path, web::get().to(client_js))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            .route(&path, web::route().to(hubbub_engineio::endpoint));
    }
}
