//! Serving a session that another replica owns, so that no load balancer needs
//! session affinity.
//!
//! A replica that forwards puts its *owner tag* (a short random string, fixed
//! for the life of the process, [`TAG_LEN`] characters) in front of every session
//! id it makes. A polling request or a WebSocket upgrade whose session is not
//! held here and whose tag is another replica's is sent on to that replica:
//!
//! - polling GET and POST: as a new HTTP request to the owner's registered
//!   address over a pool of keep-alive connections ([`Forwarder::forward_poll`]);
//!   the owner's answer is relayed. The request carries [`FORWARDED_HEADER`], and
//!   a request carrying it is never forwarded again (no loops).
//! - WebSocket upgrade: the upgrade request and then the raw connection are
//!   piped byte for byte to the owner ([`Forwarder::proxy_upgrade`]), which
//!   answers the probe and serves the WebSocket as if the client were its own.
//!
//! Where a tag lives is asked of an [`OwnerDirectory`]: this layer knows
//! nothing of Redis (hubbub-redis registers the replicas). A tag no live
//! replica holds, or an owner that cannot be reached, gets the standard
//! `400 {"code":1,"message":"Session ID unknown"}` at once: the client
//! reconnects. Nothing waits longer than `pingInterval + pingTimeout`.
//!
//! Requests for local sessions never come here: the session table is looked up
//! first, so WebSocket-only clients and clients that reach their owner directly
//! pay nothing. docs/forwarding.md has the design and its measured cost.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use actix_http::RequestHead;
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prometheus::{Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::EngineError;

/// Length of the owner tag at the front of a forwarding replica's session ids.
pub const TAG_LEN: usize = 8;

/// Marks a request one replica sent to another; such a request is never forwarded.
pub const FORWARDED_HEADER: &str = "x-hubbub-forwarded";

/// Longest a connection to an owner may take to open. Replicas sit on one
/// network: a longer wait means the owner is gone.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Idle keep-alive connections kept per owner.
const POOL_IDLE_PER_OWNER: usize = 256;

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A boxed future, as the directory returns.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where replicas live: this replica's tag, and the address of a live replica by its tag.
pub trait OwnerDirectory: Send + Sync + 'static {
    /// This replica's owner tag ([`TAG_LEN`] URL-safe characters).
    fn local_tag(&self) -> &str;
    /// The address of the live replica holding `tag`; `None` when no live replica does
    /// (or the directory cannot tell now). Answers within a second.
    fn resolve<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Option<SocketAddr>>;
    /// Forgets what is known of `tag` (its owner could not be reached).
    fn forget(&self, tag: &str);
}

/// A new owner tag: [`TAG_LEN`] random URL-safe characters (48 bits).
pub fn random_tag() -> String {
    use base64::Engine as _;
    let mut bytes = [0u8; TAG_LEN * 3 / 4];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What a forwarded request was; the `kind` label of the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardKind {
    /// A long-polling GET.
    PollGet,
    /// A polling POST.
    PollPost,
    /// A WebSocket upgrade, piped to the owner.
    Upgrade,
}

impl ForwardKind {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ForwardKind::PollGet => "poll_get",
            ForwardKind::PollPost => "poll_post",
            ForwardKind::Upgrade => "upgrade",
        }
    }
}

/// Why a request could not be forwarded; the `reason` label of the failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForwardFailure {
    /// No live replica holds the session id's tag.
    OwnerUnknown,
    /// The owner did not accept a connection.
    Unreachable,
    /// The owner did not answer within `pingInterval + pingTimeout`.
    Timeout,
    /// The connection to the owner broke before its answer was complete.
    Broken,
}

impl ForwardFailure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            ForwardFailure::OwnerUnknown => "owner_unknown",
            ForwardFailure::Unreachable => "unreachable",
            ForwardFailure::Timeout => "timeout",
            ForwardFailure::Broken => "broken",
        }
    }
}

/// The forwarding metrics.
#[derive(Clone)]
pub struct ForwardMetrics {
    /// `hubbub_forwarded_requests_total{kind}`: requests sent on to their session's owner.
    pub forwarded_requests_total: IntCounterVec,
    /// `hubbub_forward_failures_total{reason}`: forwarded requests answered `Session ID unknown`
    /// because the owner is unknown, unreachable or too slow.
    pub forward_failures_total: IntCounterVec,
    /// `hubbub_forward_duration_seconds`: time from receiving a forwarded polling request to
    /// having the owner's complete answer (a long-poll GET includes its wait for data).
    pub forward_duration_seconds: Histogram,
}

impl ForwardMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = ForwardMetrics {
            forwarded_requests_total: IntCounterVec::new(
                Opts::new(
                    "hubbub_forwarded_requests_total",
                    "Requests for sessions of other replicas sent on to their owner, by kind",
                ),
                &["kind"],
            )?,
            forward_failures_total: IntCounterVec::new(
                Opts::new(
                    "hubbub_forward_failures_total",
                    "Requests for sessions of other replicas that could not be forwarded, by reason",
                ),
                &["reason"],
            )?,
            forward_duration_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "hubbub_forward_duration_seconds",
                    "Time to forward a polling request to its session's owner and get the answer",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 30.0,
                ]),
            )?,
        };
        registry.register(Box::new(m.forwarded_requests_total.clone()))?;
        registry.register(Box::new(m.forward_failures_total.clone()))?;
        registry.register(Box::new(m.forward_duration_seconds.clone()))?;
        for kind in [
            ForwardKind::PollGet,
            ForwardKind::PollPost,
            ForwardKind::Upgrade,
        ] {
            m.forwarded_requests_total
                .with_label_values(&[kind.label()]);
        }
        for reason in [
            ForwardFailure::OwnerUnknown,
            ForwardFailure::Unreachable,
            ForwardFailure::Timeout,
            ForwardFailure::Broken,
        ] {
            m.forward_failures_total
                .with_label_values(&[reason.label()]);
        }
        Ok(m)
    }
}

/// Sends requests for other replicas' sessions to their owners.
pub struct Forwarder {
    directory: Arc<dyn OwnerDirectory>,
    client: Client<HttpConnector, Full<Bytes>>,
    metrics: ForwardMetrics,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("tag", &self.directory.local_tag())
            .finish_non_exhaustive()
    }
}

/// Request headers that belong to one hop and are not passed on.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "content-length"
            | FORWARDED_HEADER
    )
}

impl Forwarder {
    /// A forwarder asking `directory` where owners live.
    pub fn new(directory: Arc<dyn OwnerDirectory>, metrics: ForwardMetrics) -> Arc<Forwarder> {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .pool_max_idle_per_host(POOL_IDLE_PER_OWNER)
            .build(connector);
        Arc::new(Forwarder {
            directory,
            client,
            metrics,
        })
    }

    /// This replica's owner tag, the prefix of its session ids.
    pub fn local_tag(&self) -> &str {
        self.directory.local_tag()
    }

    /// The owner tag of `sid` when the request for it should be forwarded: the sid has
    /// another replica's tag and the request did not come from a replica.
    pub(crate) fn target<'s>(&self, sid: &'s str, head: &RequestHead) -> Option<&'s str> {
        if head.headers.contains_key(FORWARDED_HEADER) {
            return None;
        }
        let tag = sid.get(..TAG_LEN)?;
        (tag != self.local_tag()).then_some(tag)
    }

    fn fail(&self, reason: ForwardFailure) -> EngineError {
        self.metrics
            .forward_failures_total
            .with_label_values(&[reason.label()])
            .inc();
        EngineError::SessionUnknown
    }

    /// Sends a polling GET or POST to the owner of `tag` and relays its answer. The
    /// POST body is read here first, at most `max_payload + 1` bytes of it: the owner
    /// enforces the limit (413, and closes the session) as for its own clients.
    pub(crate) async fn forward_poll(
        &self,
        tag: &str,
        req: &HttpRequest,
        mut body: web::Payload,
        max_payload: usize,
        deadline: Duration,
    ) -> Result<HttpResponse, EngineError> {
        let kind = match *req.method() {
            Method::GET => ForwardKind::PollGet,
            Method::POST => ForwardKind::PollPost,
            _ => return Err(EngineError::BadHandshakeMethod),
        };
        let started = std::time::Instant::now();
        self.metrics
            .forwarded_requests_total
            .with_label_values(&[kind.label()])
            .inc();
        let mut buf = BytesMut::new();
        if kind == ForwardKind::PollPost {
            while let Some(chunk) = body.next().await {
                let Ok(chunk) = chunk else {
                    return Err(EngineError::BadRequest);
                };
                buf.extend_from_slice(&chunk);
                if buf.len() > max_payload {
                    buf.truncate(max_payload + 1);
                    break;
                }
            }
        }
        let Some(owner) = self.directory.resolve(tag).await else {
            tracing::debug!(tag, "no live replica holds this session id's tag");
            return Err(self.fail(ForwardFailure::OwnerUnknown));
        };
        let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut builder = hyper::Request::builder()
            .method(req.method().as_str())
            .uri(format!("http://{owner}{path}"));
        for (name, value) in req.headers() {
            if !hop_by_hop(name.as_str()) {
                builder = builder.header(name.as_str(), value.as_bytes());
            }
        }
        let Ok(request) = builder
            .header(FORWARDED_HEADER, "1")
            .body(Full::new(buf.freeze()))
        else {
            return Err(EngineError::BadRequest);
        };
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                if e.is_connect() {
                    ForwardFailure::Unreachable
                } else {
                    ForwardFailure::Broken
                }
            })?;
            let (parts, body) = response.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|_| ForwardFailure::Broken)?
                .to_bytes();
            Ok::<_, ForwardFailure>((parts, body))
        };
        let (parts, body) = match tokio::time::timeout(deadline, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(reason)) => {
                tracing::debug!(tag, %owner, reason = reason.label(), "forwarding failed");
                self.directory.forget(tag);
                return Err(self.fail(reason));
            }
            Err(_) => {
                tracing::debug!(tag, %owner, "owner did not answer in time");
                self.directory.forget(tag);
                return Err(self.fail(ForwardFailure::Timeout));
            }
        };
        self.metrics
            .forward_duration_seconds
            .observe(started.elapsed().as_secs_f64());
        let status = actix_web::http::StatusCode::from_u16(parts.status.as_u16())
            .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
        let mut resp = HttpResponse::build(status);
        for (name, value) in &parts.headers {
            // CORS headers are the receiving replica's to add, like for its own sessions.
            let name = name.as_str();
            if !hop_by_hop(name) && !name.starts_with("access-control-") && name != "vary" {
                resp.insert_header((name, value.as_bytes()));
            }
        }
        Ok(resp.body(body))
    }

    /// The upgrade request `head` as the owner gets it (marked as forwarded), followed
    /// by `early`, the bytes the client sent after it.
    pub(crate) fn upgrade_bytes(head: &RequestHead, early: &[u8]) -> BytesMut {
        let mut request = BytesMut::with_capacity(512 + early.len());
        let target = head.uri.path_and_query().map_or("/", |p| p.as_str());
        request.extend_from_slice(format!("{} {target} HTTP/1.1\r\n", head.method).as_bytes());
        for (name, value) in head.headers.iter() {
            if name.as_str() == FORWARDED_HEADER {
                continue;
            }
            request.extend_from_slice(name.as_str().as_bytes());
            request.extend_from_slice(b": ");
            request.extend_from_slice(value.as_bytes());
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(FORWARDED_HEADER.as_bytes());
        request.extend_from_slice(b": 1\r\n\r\n");
        request.extend_from_slice(early);
        request
    }

    /// Pipes a WebSocket upgrade for another replica's session to the owner of `tag`:
    /// sends it `request` ([`Forwarder::upgrade_bytes`]), writes `pending` (answers owed
    /// to the client's earlier pipelined requests) to the client, then copies bytes both
    /// ways until either side closes. The owner answers the upgrade (101, or its refusal)
    /// and serves the WebSocket. When the owner is unknown or unreachable, the client's
    /// connection and `pending` come back with the error, to be refused.
    pub(crate) async fn proxy_upgrade(
        &self,
        tag: &str,
        request: BytesMut,
        pending: BytesMut,
        mut io: TcpStream,
    ) -> Result<(), (TcpStream, BytesMut, EngineError)> {
        self.metrics
            .forwarded_requests_total
            .with_label_values(&[ForwardKind::Upgrade.label()])
            .inc();
        let Some(owner) = self.directory.resolve(tag).await else {
            return Err((io, pending, self.fail(ForwardFailure::OwnerUnknown)));
        };
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(owner)).await;
        let Ok(Ok(mut upstream)) = connect else {
            self.directory.forget(tag);
            return Err((io, pending, self.fail(ForwardFailure::Unreachable)));
        };
        let _ = upstream.set_nodelay(true);
        if upstream.write_all(&request).await.is_err() {
            self.directory.forget(tag);
            return Err((io, pending, self.fail(ForwardFailure::Broken)));
        }
        if !pending.is_empty() && io.write_all(&pending).await.is_err() {
            return Ok(());
        }
        tracing::debug!(tag, %owner, "WebSocket upgrade piped to the session's owner");
        let _ = tokio::io::copy_bidirectional(&mut io, &mut upstream).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(&'static str);

    impl OwnerDirectory for Fixed {
        fn local_tag(&self) -> &str {
            self.0
        }
        fn resolve<'a>(&'a self, _tag: &'a str) -> BoxFuture<'a, Option<SocketAddr>> {
            Box::pin(async { None })
        }
        fn forget(&self, _tag: &str) {}
    }

    fn head(headers: &[(&'static str, &'static str)]) -> RequestHead {
        let mut head = RequestHead::default();
        for (name, value) in headers {
            head.headers.insert(
                actix_http::header::HeaderName::from_static(name),
                actix_http::header::HeaderValue::from_static(value),
            );
        }
        head
    }

    #[test]
    fn tags_are_url_safe_and_of_fixed_length() {
        let (a, b) = (random_tag(), random_tag());
        assert_eq!(a.len(), TAG_LEN);
        assert_ne!(a, b);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
    }

    #[tokio::test]
    async fn only_other_replicas_sessions_are_forwarded_and_only_once() {
        let f = Forwarder::new(
            Arc::new(Fixed("localtag")),
            ForwardMetrics::register(&Registry::new()).unwrap(),
        );
        let plain = head(&[]);
        assert_eq!(f.target("othertagRANDOMRANDOM", &plain), Some("othertag"));
        assert_eq!(f.target("localtagRANDOMRANDOM", &plain), None, "ours");
        assert_eq!(f.target("short", &plain), None, "no tag");
        let forwarded = head(&[(FORWARDED_HEADER, "1")]);
        assert_eq!(
            f.target("othertagRANDOMRANDOM", &forwarded),
            None,
            "a replica's request is never forwarded again"
        );
    }

    #[test]
    fn the_upgrade_request_is_passed_on_whole_and_marked() {
        let mut h = head(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            (FORWARDED_HEADER, "spoofed"),
        ]);
        h.method = Method::GET;
        h.uri = "/socket.io/?EIO=4&transport=websocket&sid=x"
            .parse()
            .unwrap();
        let bytes = Forwarder::upgrade_bytes(&h, b"early");
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(
            text.starts_with("GET /socket.io/?EIO=4&transport=websocket&sid=x HTTP/1.1\r\n"),
            "{text}"
        );
        assert!(text.contains("upgrade: websocket\r\n"), "{text}");
        assert!(text.contains("connection: Upgrade\r\n"), "{text}");
        assert!(!text.contains("spoofed"), "{text}");
        assert!(
            text.ends_with("x-hubbub-forwarded: 1\r\n\r\nearly"),
            "{text}"
        );
    }

    #[test]
    fn hop_by_hop_headers_stay_behind() {
        for name in [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "content-length",
            FORWARDED_HEADER,
        ] {
            assert!(hop_by_hop(name), "{name}");
        }
        for name in ["origin", "host", "content-type", "cookie", "user-agent"] {
            assert!(!hop_by_hop(name), "{name}");
        }
    }
}
