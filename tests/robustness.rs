//! Robustness: bad input against a real in-process server.
//!
//! Every test starts the crate's own route table (`http::routes`) wired like
//! `server::run` does — metrics, in-memory store and adapter, `Io` with the
//! chat application, `Engine` — served by `engineio::serve` as in production
//! (a few WebSocket tests also in a plain actix-web server) on a loopback
//! port, and talks to it with awc and raw TCP over HTTP long-polling and
//! WebSocket. Each abuse is checked for its exact
//! answer (status, `{"code":N,"message":"..."}` body, or the connection being
//! closed) and for not disturbing the others: a session opened before the
//! abuse must still answer afterwards and `/healthz` must still say `ok`.
//!
//! A process-wide panic hook counts panics, so a panic in a server task (which
//! would otherwise only be logged) fails the test that caused it.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::App;
use awc::error::{WsClientError, WsProtocolError};
use awc::http::header::HeaderMap;
use awc::http::{Method, StatusCode};
use awc::ws;
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use hubbub::chat::store::{MemoryStore, StoreLimits};
use hubbub::chat::{Chat, ChatSettings};
use hubbub::engineio::serve::{self, Mounts, ServeOptions};
use hubbub::engineio::{Engine, EngineConfig};
use hubbub::http::{self, AppState, Health};
use hubbub::metrics::Metrics;
use hubbub::socketio::{Io, IoConfig, IoHandler, MemoryAdapter};
use serde_json::Value;
use tokio::time::{Instant, timeout, timeout_at};

/// The Socket.IO endpoint path.
const PATH: &str = "/socket.io/";
/// maxPayload of the test servers: small, so that oversize input is cheap to send.
const MAX_PAYLOAD: usize = 10_000;
/// Longest wait for anything the server should answer promptly.
const WAIT: Duration = Duration::from_secs(10);
/// The chat application's welcome, sent on every CONNECT to `/`.
const WELCOME: &str = r#"42["messages",{"hello":"Hello World"}]"#;

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Test threads are named after their test (`module::name`); a failing
            // assertion there is reported by the harness already. Anything else
            // is a server thread.
            let on_test_thread = std::thread::current()
                .name()
                .is_some_and(|n| n.contains("::"));
            if !on_test_thread {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
    });
}

fn assert_no_panics() {
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a server thread panicked; see stderr"
    );
}

/// The error body the Engine.IO reference server sends.
fn error_body(code: u8, message: &str) -> String {
    format!(r#"{{"code":{code},"message":"{message}"}}"#)
}

/// A response, body read as (lossy) text.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an Engine.IO error answer, uncacheable.
    #[track_caller]
    fn assert_error(&self, status: u16, code: u8, message: &str) {
        assert_eq!(self.status.as_u16(), status, "{self:?}");
        assert_eq!(self.body, error_body(code, message), "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        assert_eq!(self.header("cache-control"), Some("no-store"), "{self:?}");
    }

    /// Asserts a 200 with exactly this body, uncacheable.
    #[track_caller]
    fn assert_ok(&self, body: &str) {
        assert_eq!(
            (self.status.as_u16(), self.body.as_str()),
            (200, body),
            "{self:?}"
        );
        assert_eq!(self.header("cache-control"), Some("no-store"), "{self:?}");
    }

    /// The records of a polling response.
    fn records(&self) -> Vec<String> {
        self.body.split('\u{1e}').map(str::to_owned).collect()
    }
}

/// Engine settings for the tests: the defaults with a small maxPayload.
fn settings() -> EngineConfig {
    EngineConfig {
        max_payload: MAX_PAYLOAD,
        ..EngineConfig::default()
    }
}

/// How a test server is built.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Serving {
    /// As `server::run` builds it: `engineio::serve`, WebSockets taken off the dispatcher.
    Own,
    /// The route table in a plain actix-web server (`actix_test`): WebSockets
    /// served as streaming responses.
    InApp,
}

/// The running server behind a test.
enum Running {
    Own {
        addr: std::net::SocketAddr,
        handle: actix_server::ServerHandle,
    },
    InApp(actix_test::TestServer),
}

/// A running server and an HTTP client for it.
struct Server {
    running: Running,
    http: awc::Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Running::Own { handle, .. } = &self.running {
            let stop = handle.stop(false);
            actix_web::rt::spawn(stop);
        }
    }
}

impl Server {
    /// Starts the real route table with the chat application, as `server::run` wires it.
    fn start(config: EngineConfig) -> Server {
        Server::start_with(config, Serving::Own)
    }

    fn start_with(config: EngineConfig, serving: Serving) -> Server {
        count_panics();
        let metrics = Arc::new(Metrics::new());
        let store = Arc::new(MemoryStore::new(StoreLimits {
            history_size: 10,
            question_history: 20,
        }));
        let io = Io::new(
            IoConfig {
                connect_timeout: Duration::from_secs(45),
                max_attachment_bytes: MAX_PAYLOAD,
            },
            Arc::new(MemoryAdapter),
            metrics.clone(),
        );
        let chat = ChatSettings {
            welcome: "Hello World".into(),
            max_message_bytes: 4096,
            // High enough that no test here is rate limited (the flood test
            // sends thousands of events as fast as it can).
            rate_limit: 1_000_000,
            rate_burst: 1_000_000,
        };
        Chat::new(store, chat, metrics.clone()).register(&io);
        let engine = Engine::new(config, Arc::new(IoHandler(io)), metrics.clone());
        let state = AppState {
            engine,
            metrics,
            health: Health::new(),
            path: PATH.into(),
        };
        let running = match serving {
            Serving::Own => {
                let listener = serve::listener(([127, 0, 0, 1], 0).into()).expect("listen");
                let addr = listener.local_addr().expect("local address");
                let options = ServeOptions {
                    workers: Some(1),
                    shutdown_timeout_secs: 1,
                };
                let mounts = Mounts::new(PATH, state.engine.clone());
                let server = serve::server(vec![listener], mounts, &options, move || {
                    App::new().configure(http::routes(state.clone()))
                })
                .expect("server");
                let handle = server.handle();
                actix_web::rt::spawn(server);
                Running::Own { addr, handle }
            }
            Serving::InApp => Running::InApp(actix_test::start_with(
                actix_test::config().h1(),
                move || App::new().configure(http::routes(state.clone())),
            )),
        };
        let http = awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish();
        Server { running, http }
    }

    fn addr(&self) -> std::net::SocketAddr {
        match &self.running {
            Running::Own { addr, .. } => *addr,
            Running::InApp(srv) => srv.addr(),
        }
    }

    /// The URL of `path` (with its query) on this server.
    fn path_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    fn url(&self, query: &str) -> String {
        self.path_url(&format!("{PATH}?{query}"))
    }

    /// The origin of the server itself (same-origin for the default policy).
    fn own_origin(&self) -> String {
        format!("http://{}", self.addr())
    }

    async fn request(
        &self,
        method: Method,
        query: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Reply {
        let mut req = self.http.request(method, self.url(query));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        let sent = match body {
            Some(b) => req.send_body(b),
            None => req.send(),
        };
        let mut resp = timeout(WAIT, sent)
            .await
            .unwrap_or_else(|_| panic!("no answer to {query}"))
            .unwrap_or_else(|e| panic!("request {query} failed: {e}"));
        let bytes = resp
            .body()
            .limit(4 * MAX_PAYLOAD)
            .await
            .expect("response body");
        Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, query: &str) -> Reply {
        self.request(Method::GET, query, &[], None).await
    }

    async fn post(&self, query: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.request(Method::POST, query, &[], Some(body.into()))
            .await
    }

    /// A polling GET that runs on its own (to be left pending), answered later.
    fn spawn_get(&self, query: &str) -> actix_web::rt::task::JoinHandle<(StatusCode, String)> {
        let client = self.http.clone();
        let url = self.url(query);
        actix_web::rt::spawn(async move {
            let mut resp = client.get(url).send().await.expect("pending GET answered");
            let body = resp.body().await.expect("pending GET body");
            (resp.status(), String::from_utf8_lossy(&body).into_owned())
        })
    }

    /// Opens a polling session (no Socket.IO CONNECT) and returns its sid.
    async fn handshake(&self) -> String {
        let reply = self.get("EIO=4&transport=polling").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let open = reply.body.strip_prefix('0').expect("open packet");
        let open: Value = serde_json::from_str(open).expect("open packet JSON");
        assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
        assert_eq!(open["maxPayload"], MAX_PAYLOAD);
        open["sid"].as_str().expect("sid").to_owned()
    }

    async fn assert_healthz(&self) {
        let resp = timeout(WAIT, self.http.get(self.path_url("/healthz")).send())
            .await
            .expect("healthz in time");
        let mut resp = resp.expect("healthz answered");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.body().await.expect("healthz body"), "ok");
    }

    /// The Prometheus text of `/metrics`.
    async fn metrics(&self) -> String {
        let resp = timeout(WAIT, self.http.get(self.path_url("/metrics")).send())
            .await
            .expect("metrics in time");
        let mut resp = resp.expect("metrics answered");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.body().limit(1 << 20).await.expect("metrics body");
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Opens a WebSocket to the endpoint with this query.
    async fn ws(&self, query: &str, origin: Option<&str>) -> Result<WsClient, WsClientError> {
        let mut req = self
            .http
            .ws(self.url(query))
            .max_frame_size(4 * MAX_PAYLOAD);
        if let Some(o) = origin {
            req = req.origin(o);
        }
        let (_resp, framed) = timeout(WAIT, req.connect())
            .await
            .expect("websocket handshake in time")?;
        let (tx, rx) = framed.split();
        Ok(WsClient {
            tx: Box::pin(tx),
            rx: Box::pin(rx),
            next_ack: 1,
        })
    }

    /// A new session directly over WebSocket; checks the open packet.
    async fn ws_open(&self) -> WsClient {
        let mut ws = self
            .ws("EIO=4&transport=websocket", None)
            .await
            .expect("websocket accepted");
        let open = ws.recv_text().await;
        let open: Value =
            serde_json::from_str(open.strip_prefix('0').expect("open packet")).expect("JSON");
        assert_eq!(open["upgrades"], serde_json::json!([]));
        ws
    }

    /// A polling session joined to `/`.
    async fn polling_client(&self) -> PollingClient<'_> {
        let sid = self.handshake().await;
        let mut client = PollingClient {
            srv: self,
            sid,
            next_ack: 1,
        };
        client.send("40").await;
        client.poll_until(|r| r.starts_with(r#"40{"sid":"#)).await;
        client
    }
}

/// A polling Socket.IO client (joined to `/`) used as a canary.
struct PollingClient<'a> {
    srv: &'a Server,
    sid: String,
    next_ack: u64,
}

impl PollingClient<'_> {
    fn query(&self) -> String {
        format!("EIO=4&transport=polling&sid={}", self.sid)
    }

    async fn send(&self, body: &str) {
        self.srv.post(&self.query(), body).await.assert_ok("ok");
    }

    /// Polls until a record matches, answering pings on the way.
    async fn poll_until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let reply = timeout_at(deadline, self.srv.get(&self.query()))
                .await
                .expect("expected record in time");
            assert_eq!(reply.status, StatusCode::OK, "canary poll: {reply:?}");
            assert_eq!(reply.header("cache-control"), Some("no-store"));
            for record in reply.records() {
                if record == "2" {
                    self.send("3").await;
                } else if wanted(&record) {
                    return record;
                }
            }
        }
    }

    /// Polls and answers pings until `duration` has passed (a poll is never
    /// abandoned half-way, so no ping gets lost); returns how many were answered.
    async fn keep_alive(&mut self, duration: Duration) -> usize {
        let deadline = Instant::now() + duration;
        let mut pings = 0;
        while Instant::now() < deadline {
            let reply = self.srv.get(&self.query()).await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "polling keep-alive: {reply:?}"
            );
            for record in reply.records() {
                if record == "2" {
                    pings += 1;
                    self.send("3").await;
                }
            }
        }
        pings
    }

    /// An acked `who` round trip: the session is alive end to end.
    async fn assert_healthy(&mut self) {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(&format!(r#"42{id}["who"]"#)).await;
        let prefix = format!(r#"43{id}[{{"online":"#);
        self.poll_until(|r| r.starts_with(&prefix)).await;
    }
}

/// A WebSocket client on a bare TCP stream, for frames that client libraries
/// refuse to send. Client frames are masked with a zero key (payload as is).
struct RawWs {
    tcp: tokio::net::TcpStream,
    read: Vec<u8>,
}

impl RawWs {
    async fn open(addr: std::net::SocketAddr) -> RawWs {
        let (status, ws) = RawWs::request(addr, PATH, b"").await;
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        ws
    }

    /// Sends a WebSocket handshake for `path` (query included), followed at
    /// once by `pipelined` bytes; returns the answer's head and the connection.
    async fn request(addr: std::net::SocketAddr, path: &str, pipelined: &[u8]) -> (String, RawWs) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let path = if path == PATH {
            format!("{PATH}?EIO=4&transport=websocket")
        } else {
            path.to_owned()
        };
        let mut head = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        head.extend_from_slice(pipelined);
        tcp.write_all(&head).await.expect("write handshake");
        let mut read = Vec::new();
        let end = loop {
            if let Some(i) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut buf = [0u8; 1024];
            let n = timeout(WAIT, tcp.read(&mut buf))
                .await
                .expect("handshake answer in time")
                .expect("read");
            assert!(n > 0, "connection closed during the handshake");
            read.extend_from_slice(&buf[..n]);
        };
        let status = String::from_utf8_lossy(&read[..end]).into_owned();
        read.drain(..end);
        (status, RawWs { tcp, read })
    }

    /// A masked frame (as clients send them): `head` is the first byte.
    fn frame(head: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut frame = vec![head, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(payload);
        frame
    }

    /// The rest of the stream, until the server closes it.
    async fn rest(&mut self) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut rest = std::mem::take(&mut self.read);
        timeout(WAIT, self.tcp.read_to_end(&mut rest))
            .await
            .expect("server closes in time")
            .expect("read");
        rest
    }

    /// Sends one frame: `head` is the first byte (FIN and opcode).
    async fn send(&mut self, head: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        // The server may already have closed the connection.
        let _ = self.tcp.write_all(&RawWs::frame(head, payload)).await;
    }

    /// The next frame from the server as (opcode, payload), or `None` once the
    /// connection has ended.
    async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        use tokio::io::AsyncReadExt;
        loop {
            // Server frames are unmasked; their length fits in 7 or 16 bits here.
            if self.read.len() >= 4 || (self.read.len() >= 2 && self.read[1] & 0x7f < 126) {
                let (len, at) = match self.read[1] & 0x7f {
                    126 => (u16::from_be_bytes([self.read[2], self.read[3]]) as usize, 4),
                    n => (n as usize, 2),
                };
                if self.read.len() >= at + len {
                    let opcode = self.read[0] & 0x0f;
                    let payload = self.read[at..at + len].to_vec();
                    self.read.drain(..at + len);
                    return Some((opcode, payload));
                }
            }
            let mut buf = [0u8; 4096];
            match timeout(WAIT, self.tcp.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(n)) => self.read.extend_from_slice(&buf[..n]),
                Err(_) => panic!("no frame and no close from the server in time"),
            }
        }
    }

    /// Skips frames until a text frame starting with `prefix`.
    async fn expect_text(&mut self, prefix: &str) {
        loop {
            match self.next_frame().await {
                Some((1, t)) if t.starts_with(prefix.as_bytes()) => return,
                Some(_) => continue,
                None => panic!("closed before a text frame starting with {prefix}"),
            }
        }
    }

    /// Reads the server's frames until a close frame or the end of the stream.
    async fn expect_closed(&mut self) {
        while let Some((opcode, _)) = self.next_frame().await {
            if opcode == 0x8 {
                return;
            }
        }
    }
}

type WsSink = Pin<Box<dyn Sink<ws::Message, Error = WsProtocolError>>>;
type WsStream = Pin<Box<dyn Stream<Item = Result<ws::Frame, WsProtocolError>>>>;

/// What a WebSocket client saw next.
#[derive(Debug, PartialEq)]
enum WsEvent {
    Text(String),
    Binary(Bytes),
    /// A close frame, the end of the stream, or a protocol error.
    Closed,
}

/// A raw WebSocket client speaking Engine.IO text.
struct WsClient {
    tx: WsSink,
    rx: WsStream,
    next_ack: u64,
}

impl WsClient {
    async fn next_event_until(&mut self, deadline: Instant) -> Option<WsEvent> {
        loop {
            let frame = timeout_at(deadline, self.rx.next()).await.ok()?;
            return Some(match frame {
                Some(Ok(ws::Frame::Text(t))) => {
                    WsEvent::Text(String::from_utf8_lossy(&t).into_owned())
                }
                Some(Ok(ws::Frame::Binary(b))) => WsEvent::Binary(b),
                Some(Ok(ws::Frame::Ping(p))) => {
                    let _ = self.tx.send(ws::Message::Pong(p)).await;
                    continue;
                }
                Some(Ok(ws::Frame::Pong(_) | ws::Frame::Continuation(_))) => continue,
                Some(Ok(ws::Frame::Close(_)) | Err(_)) | None => WsEvent::Closed,
            });
        }
    }

    async fn next_event(&mut self) -> WsEvent {
        self.next_event_until(Instant::now() + WAIT)
            .await
            .expect("a websocket frame in time")
    }

    /// The next text packet other than a ping (pings are answered).
    async fn recv_text(&mut self) -> String {
        loop {
            match self.next_event().await {
                WsEvent::Text(t) if t == "2" => self.send_text("3").await,
                WsEvent::Text(t) => return t,
                other => panic!("expected a text packet, got {other:?}"),
            }
        }
    }

    async fn send_text(&mut self, text: &str) {
        let _ = self
            .tx
            .send(ws::Message::Text(text.to_owned().into()))
            .await;
    }

    /// Sends `text` as one message split over several frames (continuations).
    async fn send_fragmented(&mut self, text: &str, fragments: usize) {
        use actix_http::ws::Item;
        let bytes = Bytes::copy_from_slice(text.as_bytes());
        let step = bytes.len().div_ceil(fragments).max(1);
        let mut at = 0;
        while at < bytes.len() {
            let end = (at + step).min(bytes.len());
            let chunk = bytes.slice(at..end);
            let item = match (at == 0, end == bytes.len()) {
                (true, _) => Item::FirstText(chunk),
                (false, false) => Item::Continue(chunk),
                (false, true) => Item::Last(chunk),
            };
            let _ = self.tx.send(ws::Message::Continuation(item)).await;
            at = end;
        }
        if step >= bytes.len() {
            let _ = self
                .tx
                .send(ws::Message::Continuation(Item::Last(Bytes::new())))
                .await;
        }
    }

    async fn send_binary(&mut self, bytes: Vec<u8>) {
        let _ = self.tx.send(ws::Message::Binary(bytes.into())).await;
    }

    /// Joins `/` and consumes the CONNECT answer and the welcome.
    async fn connect_ns(&mut self) {
        self.send_text("40").await;
        let connected = self.recv_text().await;
        assert!(connected.starts_with(r#"40{"sid":"#), "{connected}");
        assert_eq!(self.recv_text().await, WELCOME);
    }

    /// The server closes this connection (whatever it still sends first is skipped).
    async fn expect_closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.next_event_until(deadline).await {
                Some(WsEvent::Closed) => return,
                Some(_) => continue,
                None => panic!("the server did not close the connection"),
            }
        }
    }

    /// An acked `who` round trip.
    async fn assert_healthy(&mut self) {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send_text(&format!(r#"42{id}["who"]"#)).await;
        let prefix = format!(r#"43{id}[{{"online":"#);
        loop {
            let text = self.recv_text().await;
            if text.starts_with(&prefix) {
                return;
            }
        }
    }

    /// Answers pings for `duration`; returns how many were answered.
    async fn keep_alive(&mut self, duration: Duration) -> usize {
        let deadline = Instant::now() + duration;
        let mut pings = 0;
        while let Some(event) = self.next_event_until(deadline).await {
            match event {
                WsEvent::Text(t) if t == "2" => {
                    pings += 1;
                    self.send_text("3").await;
                }
                WsEvent::Closed => panic!("a client answering pings was closed"),
                _ => {}
            }
        }
        pings
    }
}

mod handshake {
    use super::*;

    /// With `max_sessions`, handshakes beyond it get 503 on both transports;
    /// the sessions already open are untouched.
    #[actix_web::test]
    async fn handshakes_beyond_the_connection_limit_get_503() {
        let srv = Server::start(EngineConfig {
            max_sessions: 2,
            ..settings()
        });
        let mut polling = srv.polling_client().await;
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;

        srv.get("EIO=4&transport=polling")
            .await
            .assert_error(503, 3, "Too many connections");
        let (status, mut raw) = RawWs::request(srv.addr(), PATH, b"").await;
        assert!(status.starts_with("HTTP/1.1 503"), "{status}");
        assert_eq!(
            raw.rest().await,
            error_body(3, "Too many connections").as_bytes()
        );
        let metrics = srv.metrics().await;
        assert!(
            metrics.contains("hubbub_sessions_refused_total 2\n"),
            "{metrics}"
        );

        polling.assert_healthy().await;
        ws.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn errors_have_the_reference_codes_and_bodies() {
        let srv = Server::start(settings());
        let mut canary = srv.polling_client().await;

        let cases: &[(Method, &str, u16, u8, &str)] = &[
            (
                Method::GET,
                "transport=polling",
                400,
                5,
                "Unsupported protocol version",
            ),
            (
                Method::GET,
                "EIO=3&transport=polling",
                400,
                5,
                "Unsupported protocol version",
            ),
            (
                Method::GET,
                "EIO=abc&transport=polling",
                400,
                5,
                "Unsupported protocol version",
            ),
            (
                Method::GET,
                "EIO=5&transport=websocket",
                400,
                5,
                "Unsupported protocol version",
            ),
            (Method::GET, "EIO=4", 400, 0, "Transport unknown"),
            (
                Method::GET,
                "EIO=4&transport=flashsocket",
                400,
                0,
                "Transport unknown",
            ),
            (Method::GET, "EIO=4&transport=", 400, 0, "Transport unknown"),
            (
                Method::POST,
                "EIO=4&transport=polling",
                400,
                2,
                "Bad handshake method",
            ),
            (
                Method::PUT,
                "EIO=4&transport=polling",
                400,
                2,
                "Bad handshake method",
            ),
            (
                Method::GET,
                "EIO=4&transport=polling&sid=nope",
                400,
                1,
                "Session ID unknown",
            ),
            (
                Method::POST,
                "EIO=4&transport=polling&sid=nope",
                400,
                1,
                "Session ID unknown",
            ),
            (
                Method::PUT,
                "EIO=4&transport=polling&sid=nope",
                400,
                1,
                "Session ID unknown",
            ),
            // A plain GET (no Upgrade header) on the websocket transport.
            (
                Method::GET,
                "EIO=4&transport=websocket",
                400,
                3,
                "Bad request",
            ),
        ];
        for (method, query, status, code, message) in cases {
            let body = (*method == Method::POST).then(|| b"4hello".to_vec());
            let reply = srv.request(method.clone(), query, &[], body).await;
            assert_eq!(
                reply.status.as_u16(),
                *status,
                "{method} {query}: {reply:?}"
            );
            reply.assert_error(*status, *code, message);
        }

        // Bad WebSocket upgrades are refused with 400, not left hanging.
        for query in [
            "EIO=4&transport=websocket&sid=nope",
            "transport=websocket",
            "EIO=abc&transport=websocket",
            "EIO=4",
            "EIO=4&transport=abc",
        ] {
            match srv.ws(query, None).await {
                Err(WsClientError::InvalidResponseStatus(s)) => {
                    assert_eq!(s, StatusCode::BAD_REQUEST, "{query}")
                }
                Err(e) => panic!("{query}: unexpected websocket error {e}"),
                Ok(_) => panic!("{query}: websocket accepted"),
            }
        }

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn origin_policy_and_cors() {
        let srv = Server::start(settings());
        let mut canary = srv.polling_client().await;
        let evil = [("origin", "https://evil.example")];

        // Default policy: same origin only.
        let reply = srv
            .request(Method::GET, "EIO=4&transport=polling", &evil, None)
            .await;
        reply.assert_error(403, 4, "Forbidden");
        assert_eq!(reply.header("access-control-allow-origin"), None);
        let reply = srv
            .request(Method::OPTIONS, "EIO=4&transport=polling", &evil, None)
            .await;
        reply.assert_error(403, 4, "Forbidden");
        let q = canary.query();
        let reply = srv
            .request(Method::POST, &q, &evil, Some(b"1".to_vec()))
            .await;
        reply.assert_error(403, 4, "Forbidden");
        match srv
            .ws("EIO=4&transport=websocket", Some("https://evil.example"))
            .await
        {
            Err(WsClientError::InvalidResponseStatus(s)) => assert_eq!(s, StatusCode::FORBIDDEN),
            Err(e) => panic!("unexpected websocket error {e}"),
            Ok(_) => panic!("websocket from a foreign origin accepted"),
        }

        // The server's own origin gets CORS headers.
        let own = srv.own_origin();
        let allowed = [("origin", own.as_str())];
        let reply = srv
            .request(Method::GET, "EIO=4&transport=polling", &allowed, None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert!(reply.body.starts_with(r#"0{"sid":"#), "{reply:?}");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(own.as_str())
        );
        assert_eq!(
            reply.header("access-control-allow-credentials"),
            Some("true")
        );
        assert_eq!(reply.header("vary"), Some("Origin"));
        // Errors for an allowed origin carry them too, so the browser can read them.
        let reply = srv
            .request(
                Method::GET,
                "EIO=4&transport=polling&sid=nope",
                &allowed,
                None,
            )
            .await;
        reply.assert_error(400, 1, "Session ID unknown");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(own.as_str())
        );

        // Preflight.
        let preflight = [
            ("origin", own.as_str()),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "content-type, x-custom"),
        ];
        let reply = srv
            .request(Method::OPTIONS, "EIO=4&transport=polling", &preflight, None)
            .await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
        assert_eq!(reply.body, "");
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some(own.as_str())
        );
        assert_eq!(
            reply.header("access-control-allow-methods"),
            Some("GET, POST, OPTIONS")
        );
        assert_eq!(
            reply.header("access-control-allow-headers"),
            Some("content-type, x-custom")
        );
        assert_eq!(reply.header("access-control-max-age"), Some("86400"));
        // The own-origin WebSocket is accepted.
        let mut ws = srv
            .ws("EIO=4&transport=websocket", Some(&own))
            .await
            .expect("same-origin websocket");
        assert!(ws.recv_text().await.starts_with(r#"0{"sid":"#));

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }
}

mod polling {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    #[actix_web::test]
    async fn oversize_post_closes_only_that_session() {
        let srv = Server::start(settings());
        let mut canary = srv.polling_client().await;
        let victim = srv.polling_client().await;
        let q = victim.query();

        // Exactly maxPayload is fine (an event nobody handles).
        let at_limit = format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 10));
        assert_eq!(at_limit.len(), MAX_PAYLOAD);
        srv.post(&q, at_limit).await.assert_ok("ok");
        // One byte more is not, and ends the session.
        let over = format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 9));
        srv.post(&q, over)
            .await
            .assert_error(413, 3, "Payload too large");
        srv.get(&q).await.assert_error(400, 1, "Session ID unknown");
        srv.post(&q, "6")
            .await
            .assert_error(400, 1, "Session ID unknown");

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn invalid_payloads_close_only_that_session() {
        let srv = Server::start(settings());
        let mut canary = srv.polling_client().await;
        for body in [
            &b"abc"[..],
            b"",
            b"4ok\x1e",
            b"b!!!",
            b"4a\x1e9",
            b"0",
            b"5",
            b"4abc",
            b"42{}",
            b"\xff\xfe4",
        ] {
            let sid = srv.handshake().await;
            let q = format!("EIO=4&transport=polling&sid={sid}");
            let reply = srv.post(&q, body).await;
            reply.assert_error(400, 3, "Bad request");
            srv.get(&q).await.assert_error(400, 1, "Session ID unknown");
        }
        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    /// Messages of one session are handled one at a time, in order; a second
    /// POST while one is still being read would break that, so (as in the
    /// reference, "data request overlap from client") it is refused and the
    /// session closed.
    #[actix_web::test]
    async fn overlapping_posts_close_the_session() {
        let srv = Server::start(settings());
        let mut canary = srv.polling_client().await;
        let mut overlapped = false;
        for _attempt in 0..10 {
            let victim = srv.polling_client().await;
            let q = victim.query();
            // The first POST (on a raw connection) sends its head and part of
            // its body, then waits.
            let (release, released) = tokio::sync::oneshot::channel::<()>();
            let addr = srv.addr();
            let head = format!(
                "POST {PATH}?{q} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\n6"
            );
            let first = actix_web::rt::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
                tcp.write_all(head.as_bytes()).await.expect("write head");
                let _ = released.await;
                tcp.write_all(b"\x1e6").await.expect("write rest");
                let mut answer = Vec::new();
                tcp.read_to_end(&mut answer).await.expect("read answer");
                let answer = String::from_utf8_lossy(&answer).into_owned();
                let status = answer
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("status line");
                let body = answer
                    .split("\r\n\r\n")
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned();
                (StatusCode::from_u16(status).expect("status"), body)
            });
            for _ in 0..3 {
                srv.assert_healthz().await;
            }
            let second = srv.post(&q, "6").await;
            let _ = release.send(());
            let first = first.await.expect("first POST");
            if second.status == StatusCode::OK {
                // The second POST was handled before the first one started.
                assert_eq!(first, (StatusCode::OK, "ok".to_owned()));
                continue;
            }
            second.assert_error(400, 3, "Bad request");
            // The first one finishes reading its body; its packets are noops.
            assert_eq!(first, (StatusCode::OK, "ok".to_owned()));
            srv.get(&q).await.assert_error(400, 1, "Session ID unknown");
            overlapped = true;
            break;
        }
        assert!(overlapped, "the POSTs never overlapped");
        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn second_concurrent_get_closes_the_session() {
        let srv = Server::start(settings());
        let mut canary = srv.polling_client().await;
        let sid = srv.handshake().await;
        let q = format!("EIO=4&transport=polling&sid={sid}");

        // Nothing is queued, so both GETs would wait; whichever the server takes
        // second is refused and the one held open is released with a close.
        let a = srv.spawn_get(&q);
        let b = srv.spawn_get(&q);
        let (a, b) = (a.await.expect("first GET"), b.await.expect("second GET"));
        let refused = (StatusCode::BAD_REQUEST, error_body(3, "Bad request"));
        let released = (StatusCode::OK, "1".to_owned());
        assert!(
            (a == refused && b == released) || (a == released && b == refused),
            "{a:?} / {b:?}"
        );
        srv.get(&q).await.assert_error(400, 1, "Session ID unknown");

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn client_close_releases_the_pending_get_with_a_noop() {
        let srv = Server::start(settings());
        let mut canary = srv.polling_client().await;
        // The GET must be pending when the close arrives. There is no event to
        // await for that, so the server gets a head start (a few requests on
        // other connections); when the close still wins, that outcome is checked
        // too and the scenario retried.
        let mut released = false;
        for _attempt in 0..10 {
            let sid = srv.handshake().await;
            let q = format!("EIO=4&transport=polling&sid={sid}");
            let pending = srv.spawn_get(&q);
            for _ in 0..3 {
                srv.assert_healthz().await;
            }
            srv.post(&q, "1").await.assert_ok("ok");
            let got = pending.await.expect("pending GET");
            srv.get(&q).await.assert_error(400, 1, "Session ID unknown");
            if got == (StatusCode::OK, "6".to_owned()) {
                released = true;
                break;
            }
            // The close was handled before the GET arrived.
            assert_eq!(
                got,
                (StatusCode::BAD_REQUEST, error_body(1, "Session ID unknown"))
            );
        }
        assert!(released, "the GET was never pending when the close arrived");

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    /// One generated POST body.
    fn random_body(rng: &mut StdRng) -> Vec<u8> {
        const ALPHABET: &[u8] = b"0123456789b\x1e[]{}\",/-:_placeholdertruenum +=ABCxyz\\\n";
        const JSON: &[&str] = &[
            "",
            "[]",
            r#"["who"]"#,
            r#"["x",1,"2",{"3":[true]}]"#,
            "{}",
            r#"{"token":1}"#,
            "[",
            r#"{"a":"#,
            r#""s""#,
            "null",
            "1e999",
            r#"[{"_placeholder":true,"num":0}]"#,
            r#"["x",{"_placeholder":true,"num":7}]"#,
            r#"["disconnect"]"#,
            r#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"#,
        ];
        match rng.random_range(0..100u32) {
            // Raw bytes, usually not UTF-8.
            0..15 => {
                let len = rng.random_range(0..64usize);
                (0..len).map(|_| rng.random::<u8>()).collect()
            }
            // Any Unicode.
            15..25 => {
                let len = rng.random_range(0..32usize);
                (0..len)
                    .map(|_| rng.random::<char>())
                    .collect::<String>()
                    .into_bytes()
            }
            // Characters that matter to the parsers.
            25..50 => {
                let len = rng.random_range(0..80usize);
                (0..len)
                    .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                    .collect()
            }
            // A CONNECT and valid packets, sometimes with one broken record.
            53..70 => {
                const VALID: &[&str] = &[
                    "2",
                    "3",
                    "6",
                    "2probe",
                    "40",
                    "40/x,",
                    r#"42["x"]"#,
                    r#"421["who"]"#,
                    r#"42["x",1,"2",{"3":[true]}]"#,
                    "451-[\"x\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID",
                    r#"437["late ack"]"#,
                    "1",
                ];
                let mut records = vec!["40".to_owned()];
                for _ in 0..rng.random_range(0..5usize) {
                    records.push(VALID[rng.random_range(0..VALID.len())].to_owned());
                }
                if rng.random_bool(0.2) {
                    let i = rng.random_range(0..records.len());
                    let cut = rng.random_range(0..=records[i].len());
                    records[i] = records[i][..cut].to_owned() + "}";
                }
                records.join("\u{1e}").into_bytes()
            }
            // Over maxPayload.
            50..53 => {
                let mut body = b"4".to_vec();
                body.resize(MAX_PAYLOAD + rng.random_range(1..500usize), b'x');
                body
            }
            // Plausible records, joined, with mistakes.
            _ => {
                let records = rng.random_range(1..6usize);
                let mut out = Vec::new();
                for i in 0..records {
                    if i > 0 {
                        out.push(0x1e);
                    }
                    match rng.random_range(0..10u32) {
                        0 => out.push(b"0123456789"[rng.random_range(0..10usize)]),
                        1 => out.extend_from_slice(b"2probe"),
                        2 => {
                            out.push(b'b');
                            let n = rng.random_range(0..12usize);
                            let raw: Vec<u8> = (0..n).map(|_| rng.random::<u8>()).collect();
                            use base64::Engine as _;
                            let mut b64 = base64::engine::general_purpose::STANDARD.encode(raw);
                            if rng.random_bool(0.3) {
                                b64.push('!');
                            }
                            out.extend_from_slice(b64.as_bytes());
                        }
                        _ => {
                            // An Engine.IO message carrying something Socket.IO-like.
                            out.push(b'4');
                            out.push(b"0123456789"[rng.random_range(0..10usize)]);
                            if rng.random_bool(0.3) {
                                let n = rng.random_range(0..4u32);
                                out.extend_from_slice(format!("{n}-").as_bytes());
                            }
                            if rng.random_bool(0.3) {
                                out.extend_from_slice(if rng.random_bool(0.5) {
                                    b"/x,"
                                } else {
                                    b"/"
                                });
                            }
                            if rng.random_bool(0.3) {
                                let id = rng.random_range(0..1_000_000u64);
                                out.extend_from_slice(id.to_string().as_bytes());
                            }
                            out.extend_from_slice(JSON[rng.random_range(0..JSON.len())].as_bytes());
                        }
                    }
                }
                out
            }
        }
    }

    /// Thousands of generated bodies, each on a fresh session: never a panic,
    /// never anything but `ok`, 400 or 413; the canary keeps working.
    #[actix_web::test]
    async fn generated_post_bodies() {
        const BODIES: usize = 3000;
        const SEED: u64 = 0x6875_6262_7562;
        let srv = Server::start(settings());
        let mut canary = srv.polling_client().await;
        let mut rng = StdRng::seed_from_u64(SEED);
        let bodies: Vec<Vec<u8>> = (0..BODIES).map(|_| random_body(&mut rng)).collect();

        let srv_ref = &srv;
        let outcomes: Vec<(u16, usize)> =
            futures_util::stream::iter(bodies.into_iter().enumerate())
                .map(|(i, body)| async move {
                    let sid = srv_ref.handshake().await;
                    let q = format!("EIO=4&transport=polling&sid={sid}");
                    let len = body.len();
                    let shown = String::from_utf8_lossy(&body[..len.min(200)]).into_owned();
                    let reply = srv_ref.post(&q, body).await;
                    let ctx = format!("body #{i} (seed {SEED:#x}) {shown:?}: {reply:?}");
                    match reply.status.as_u16() {
                        _ if len > MAX_PAYLOAD => {
                            assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{ctx}");
                            reply.assert_error(413, 3, "Payload too large");
                        }
                        200 => reply.assert_ok("ok"),
                        400 => reply.assert_error(400, 3, "Bad request"),
                        _ => panic!("unexpected answer to {ctx}"),
                    }
                    if reply.status != StatusCode::OK {
                        // A refused body ends its session.
                        srv_ref
                            .get(&q)
                            .await
                            .assert_error(400, 1, "Session ID unknown");
                    }
                    (reply.status.as_u16(), i)
                })
                .buffer_unordered(16)
                .collect()
                .await;

        let count = |s: u16| outcomes.iter().filter(|(st, _)| *st == s).count();
        let (ok, bad, large) = (count(200), count(400), count(413));
        eprintln!("generated bodies: ok {ok}, 400 {bad}, 413 {large}");
        assert_eq!(ok + bad + large, BODIES);
        // The generator must exercise every outcome, or it tests too little.
        assert!(
            ok > 100 && bad > 100 && large > 10,
            "ok {ok}, 400 {bad}, 413 {large}"
        );

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }
}

mod websocket {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};

    /// The server hands every `Upgrade: websocket` request over with its
    /// connection: off the Engine.IO path it is refused (and closed), on it
    /// it is checked like any request, and frames the client sends right
    /// behind its request are not lost in the handover.
    #[actix_web::test]
    async fn upgrades_are_routed_and_pipelined_frames_kept() {
        let srv = Server::start(settings());
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;

        for path in [
            "/",
            "/healthz",
            "/socket.io",
            "/nope/?EIO=4&transport=websocket",
        ] {
            let (status, mut raw) = RawWs::request(srv.addr(), path, b"").await;
            assert!(status.starts_with("HTTP/1.1 404"), "{path}: {status}");
            assert!(
                status.to_ascii_lowercase().contains("connection: close"),
                "{status}"
            );
            assert_eq!(raw.rest().await, b"not found", "{path}");
        }
        let checked = [
            (
                "/socket.io/?EIO=3&transport=websocket",
                400,
                5,
                "Unsupported protocol version",
            ),
            ("/socket.io/?EIO=4&transport=polling", 400, 3, "Bad request"),
            (
                "/socket.io/?EIO=4&transport=websocket&sid=nope",
                400,
                1,
                "Session ID unknown",
            ),
        ];
        for (path, status_code, code, message) in checked {
            let (status, mut raw) = RawWs::request(srv.addr(), path, b"").await;
            assert!(
                status.starts_with(&format!("HTTP/1.1 {status_code}")),
                "{path}: {status}"
            );
            assert_eq!(
                raw.rest().await,
                error_body(code, message).as_bytes(),
                "{path}"
            );
        }

        // The Socket.IO CONNECT and an acknowledged event, sent in the same
        // write as the handshake, are answered.
        let mut pipelined = RawWs::frame(0x81, b"40");
        pipelined.extend(RawWs::frame(0x81, br#"421["who"]"#));
        let (status, mut raw) = RawWs::request(srv.addr(), PATH, &pipelined).await;
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        raw.expect_text("0{").await;
        raw.expect_text(r#"40{"sid":"#).await;
        raw.expect_text(r#"431[{"online":"#).await;

        // A request pipelined ahead of the handshake gets its answer first.
        let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", srv.addr());
        let mut tcp = tokio::net::TcpStream::connect(srv.addr())
            .await
            .expect("connect");
        let handshake = format!(
            "GET {PATH}?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            srv.addr()
        );
        {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            tcp.write_all(format!("{healthz}{handshake}").as_bytes())
                .await
                .expect("write");
            let mut seen = Vec::new();
            let answers = loop {
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some(at) = text.find("HTTP/1.1 101")
                    && text[at..].contains("\r\n\r\n")
                {
                    break text;
                }
                let mut buf = [0u8; 1024];
                let n = timeout(WAIT, tcp.read(&mut buf))
                    .await
                    .expect("answers in time")
                    .expect("read");
                assert!(n > 0, "closed early: {text}");
                seen.extend_from_slice(&buf[..n]);
            };
            assert!(answers.starts_with("HTTP/1.1 200"), "{answers}");
            let ok_at = answers.find("\r\n\r\nok").expect("the healthz body");
            assert!(ok_at < answers.find("HTTP/1.1 101").unwrap(), "{answers}");
        }

        // Plain HTTP is untouched.
        srv.assert_healthz().await;
        canary.assert_healthy().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn random_binary_frames_close_the_connection() {
        let srv = Server::start(settings());
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;
        let mut polling = srv.polling_client().await;
        let mut rng = StdRng::seed_from_u64(1);
        for i in 0..60 {
            let mut ws = srv.ws_open().await;
            // Half before CONNECT, half after: binary data without a pending
            // attachment-carrying packet breaks the protocol either way.
            if i % 2 == 1 {
                ws.connect_ns().await;
            }
            let len = rng.random_range(0..300usize);
            ws.send_binary((0..len).map(|_| rng.random::<u8>()).collect())
                .await;
            ws.expect_closed().await;
        }
        canary.assert_healthy().await;
        polling.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn random_text_frames_close_the_connection() {
        let srv = Server::start(settings());
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;
        let mut rng = StdRng::seed_from_u64(2);
        for i in 0..60 {
            let mut ws = srv.ws_open().await;
            if i % 2 == 1 {
                ws.connect_ns().await;
            }
            // Any first character that is not an Engine.IO packet type.
            let first = loop {
                let c: char = rng.random();
                if !('0'..='6').contains(&c) {
                    break c;
                }
            };
            let len = rng.random_range(0..40usize);
            let mut text = String::from(first);
            text.extend((0..len).map(|_| rng.random::<char>()));
            ws.send_text(&text).await;
            ws.expect_closed().await;
        }
        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn invalid_packets_close_the_connection() {
        let srv = Server::start(settings());
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;
        for packet in [
            "abc",
            "4abc",
            "42{}",
            "42",
            "4",
            "",
            "7",
            "9hello",
            "0",
            "5",
            r#"42["disconnect"]"#,
            "41/nowhere,",
            r#"44{"message":"x"}"#,
            r#"43["no id"]"#,
        ] {
            let mut ws = srv.ws_open().await;
            ws.connect_ns().await;
            ws.send_text(packet).await;
            ws.expect_closed().await;
        }
        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    /// WebSocket-level framing handled by the transport itself: pings are
    /// answered, a close frame is answered, and broken fragmentation or
    /// non-UTF-8 text closes only that connection.
    #[actix_web::test]
    async fn control_frames_and_broken_framing() {
        control_frames_and_broken_framing_on(Serving::Own).await;
    }

    /// The same, with the route table in a plain actix-web server.
    #[actix_web::test]
    async fn control_frames_and_broken_framing_in_app() {
        control_frames_and_broken_framing_on(Serving::InApp).await;
    }

    async fn control_frames_and_broken_framing_on(serving: Serving) {
        use actix_http::ws::Item;
        let srv = Server::start_with(settings(), serving);
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;

        // A WebSocket ping gets a pong with the same payload; the session goes on.
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        let _ = ws
            .tx
            .send(ws::Message::Ping(Bytes::from_static(b"hi")))
            .await;
        let pong = loop {
            match timeout(WAIT, ws.rx.next()).await.expect("a frame in time") {
                Some(Ok(ws::Frame::Pong(p))) => break p,
                Some(Ok(ws::Frame::Text(t))) if &t[..] == b"2" => ws.send_text("3").await,
                other => panic!("expected a pong, got {other:?}"),
            }
        };
        assert_eq!(&pong[..], b"hi");
        ws.assert_healthy().await;

        // A close frame is answered with a close frame.
        let _ = ws.tx.send(ws::Message::Close(None)).await;
        ws.expect_closed().await;

        // A text message whose fragments are not UTF-8.
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        for item in [
            Item::FirstText(Bytes::from_static(b"42[\"x\",\"")),
            Item::Last(Bytes::from_static(b"\xff\xfe\"]")),
        ] {
            let _ = ws.tx.send(ws::Message::Continuation(item)).await;
        }
        ws.expect_closed().await;

        // Framing that a well-behaved client library refuses to produce, sent
        // as raw frames: a continuation that continues nothing, a new first
        // fragment while one is open, and a single text frame that is not UTF-8.
        let frames: [&[(u8, &[u8])]; 3] = [
            &[(0x80, b"42")],
            &[(0x01, b"42"), (0x01, b"42")],
            &[(0x81, b"42[\"\xff\"]")],
        ];
        for frames in frames {
            let mut raw = RawWs::open(srv.addr()).await;
            raw.send(0x81, b"40").await;
            raw.expect_text(r#"40{"sid":"#).await;
            // Well-formed fragments are joined: an acked `who` in two frames.
            raw.send(0x01, b"421[").await;
            raw.send(0x80, b"\"who\"]").await;
            raw.expect_text(r#"431[{"online":"#).await;
            for (head, payload) in frames {
                raw.send(*head, payload).await;
            }
            raw.expect_closed().await;
        }

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn oversize_frames_close_the_connection() {
        oversize_frames_close_the_connection_on(Serving::Own).await;
    }

    /// The same, with the route table in a plain actix-web server.
    #[actix_web::test]
    async fn oversize_frames_close_the_connection_in_app() {
        oversize_frames_close_the_connection_on(Serving::InApp).await;
    }

    async fn oversize_frames_close_the_connection_on(serving: Serving) {
        let srv = Server::start_with(settings(), serving);
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;

        // A frame of exactly maxPayload is accepted (an unknown event, ignored).
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        let at_limit = format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 10));
        assert_eq!(at_limit.len(), MAX_PAYLOAD);
        ws.send_text(&at_limit).await;
        ws.assert_healthy().await;

        // A message in fragments is reassembled; its total counts against maxPayload.
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        ws.send_fragmented(r#"421["who"]"#, 4).await;
        let ack = ws.recv_text().await;
        assert!(ack.starts_with(r#"431[{"online":"#), "{ack}");
        ws.send_fragmented(&at_limit, 7).await;
        ws.assert_healthy().await;
        let over = format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 9));
        ws.send_fragmented(&over, 20).await;
        ws.expect_closed().await;

        for binary in [false, true] {
            let mut ws = srv.ws_open().await;
            ws.connect_ns().await;
            if binary {
                ws.send_binary(vec![7; MAX_PAYLOAD + 1]).await;
            } else {
                ws.send_text(&format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 9)))
                    .await;
            }
            ws.expect_closed().await;
        }
        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn upgrade_edge_cases() {
        upgrade_edge_cases_on(Serving::Own).await;
    }

    /// The same, with the route table in a plain actix-web server.
    #[actix_web::test]
    async fn upgrade_edge_cases_in_app() {
        upgrade_edge_cases_on(Serving::InApp).await;
    }

    async fn upgrade_edge_cases_on(serving: Serving) {
        let srv = Server::start_with(settings(), serving);
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;

        let polling = srv.polling_client().await;
        let q = polling.query();
        let pending = srv.spawn_get(&q);
        let ws_query = format!("EIO=4&transport=websocket&sid={}", polling.sid);
        let mut ws = srv.ws(&ws_query, None).await.expect("upgrade accepted");
        ws.send_text("2probe").await;
        assert_eq!(ws.recv_text().await, "3probe");
        // The pending GET is released with a noop.
        assert_eq!(
            pending.await.expect("pending GET"),
            (StatusCode::OK, "6".to_owned())
        );
        ws.send_text("5").await;
        ws.assert_healthy().await;

        // Polling on an upgraded session is refused; the session lives on.
        srv.get(&q).await.assert_error(400, 3, "Bad request");
        srv.post(&q, r#"42["who"]"#)
            .await
            .assert_error(400, 3, "Bad request");
        ws.assert_healthy().await;

        // A second WebSocket for the upgraded sid is accepted, then closed.
        let mut second = srv
            .ws(&ws_query, None)
            .await
            .expect("second websocket accepted");
        second.expect_closed().await;
        ws.assert_healthy().await;

        // A probe that is not a probe fails the upgrade only; polling goes on.
        let mut other = srv.polling_client().await;
        let other_ws = format!("EIO=4&transport=websocket&sid={}", other.sid);
        let mut bad = srv
            .ws(&other_ws, None)
            .await
            .expect("probe socket accepted");
        bad.send_text("2notprobe").await;
        bad.expect_closed().await;
        other.assert_healthy().await;

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    /// The reference server also accepts an upgrade packet without a probe; a
    /// GET still pending on the polling transport must not hold the upgrade up.
    #[actix_web::test]
    async fn upgrade_without_probe_releases_the_pending_get() {
        let srv = Server::start(settings());
        let mut canary = srv.polling_client().await;
        // As in the polling close test, the GET gets a head start; if the upgrade
        // still wins, that GET is refused (400) and the scenario is retried.
        let mut released = false;
        for _attempt in 0..10 {
            let polling = srv.polling_client().await;
            let pending = srv.spawn_get(&polling.query());
            let ws_query = format!("EIO=4&transport=websocket&sid={}", polling.sid);
            for _ in 0..3 {
                srv.assert_healthz().await;
            }
            let mut ws = srv.ws(&ws_query, None).await.expect("upgrade accepted");
            ws.send_text("5").await;
            let started = Instant::now();
            ws.assert_healthy().await;
            let took = started.elapsed();
            assert!(took < Duration::from_secs(1), "upgrade took {took:?}");
            let got = pending.await.expect("pending GET");
            if got == (StatusCode::OK, "6".to_owned()) {
                released = true;
                break;
            }
            assert_eq!(got, (StatusCode::BAD_REQUEST, error_body(3, "Bad request")));
        }
        assert!(
            released,
            "the GET was never pending when the upgrade arrived"
        );
        canary.assert_healthy().await;
        assert_no_panics();
    }
}

mod slow_consumer {
    use super::*;
    use std::cell::Cell;

    /// A client that stops reading while others flood the room is closed once
    /// its bounded queue is full; the flooder and the other readers go on.
    #[actix_web::test]
    async fn a_client_that_does_not_read_is_closed_and_others_continue() {
        // About 1,350 (13 MB) were enough on the development machine, where the
        // socket buffers of a reader that never reads stay small; the bound only
        // keeps a broken server from hanging the test.
        const MAX_MESSAGES: usize = 20_000;
        let srv = Server::start(EngineConfig {
            outbound_queue: 64,
            ..settings()
        });
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;
        let mut slow = srv.ws_open().await;
        slow.connect_ns().await;
        slow.send_text(r#"421["join","slow"]"#).await;
        while !slow.recv_text().await.starts_with(r#"431[{"ok":true"#) {}
        let mut flooder = srv.ws_open().await;
        flooder.connect_ns().await;

        // Each event is broadcast to the canary (which reads) and to the slow
        // client (which does not): once the socket buffers between it and the
        // server are full, its queue fills and it is closed, which the room
        // learns from `left`.
        let packet = format!(r#"42["sendToAll","{}"]"#, "z".repeat(MAX_PAYLOAD - 100));
        let left = Cell::new(false);
        let flood = async {
            let mut sent = 0;
            while !left.get() && sent < MAX_MESSAGES {
                flooder.send_text(&packet).await;
                sent += 1;
                // Let the canary read as fast as the flood goes.
                tokio::task::yield_now().await;
            }
            sent
        };
        let watch = async {
            loop {
                let text = canary.recv_text().await;
                if text.starts_with(r#"42["left",{"name":"slow""#) {
                    left.set(true);
                    return;
                }
            }
        };
        let (sent, ()) = futures_util::join!(flood, watch);
        assert!(
            sent < MAX_MESSAGES,
            "the slow client was not closed after {sent} messages"
        );

        // The canary reads what is still in flight, up to a marker the flooder
        // sends last (the server handles one client's events in order).
        flooder.send_text(r#"42["sendToAll","end of flood"]"#).await;
        while canary.recv_text().await != r#"42["messages","end of flood"]"# {}
        let metrics = srv.metrics().await;
        assert!(
            metrics.contains("hubbub_outbound_queue_overflows_total 1\n")
                && metrics.contains(r#"hubbub_disconnects_total{reason="slow_consumer"} 1"#),
            "{metrics}"
        );

        slow.expect_closed().await;
        flooder.assert_healthy().await;
        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }
}

mod heartbeat {
    use super::*;

    #[actix_web::test]
    async fn silent_clients_are_closed_after_ping_interval_plus_timeout() {
        // Small, but with a pingTimeout that leaves the canary room to answer
        // on a loaded machine.
        let interval = Duration::from_millis(250);
        let ping_timeout = Duration::from_millis(500);
        let srv = Server::start(EngineConfig {
            ping_interval: interval,
            ping_timeout,
            ..settings()
        });
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;
        let mut polling_canary = srv.polling_client().await;

        let started = Instant::now();
        let mut silent_ws = srv.ws_open().await;
        silent_ws.connect_ns().await;
        let silent_poll = srv.handshake().await;

        let watch_silent = async {
            let mut pinged = false;
            loop {
                match silent_ws.next_event().await {
                    WsEvent::Text(t) if t == "2" => pinged = true,
                    WsEvent::Closed => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
            (pinged, started.elapsed())
        };
        // The canaries answer pings the whole time (well past the silent clients' deadline).
        let keep = canary.keep_alive(3 * (interval + ping_timeout));
        let keep_polling = polling_canary.keep_alive(3 * (interval + ping_timeout));
        let ((pinged, closed_after), pings, polling_pings) =
            futures_util::join!(watch_silent, keep, keep_polling);
        assert!(pinged, "the silent client was never pinged");
        assert!(
            closed_after >= interval + ping_timeout - Duration::from_millis(20)
                && closed_after < WAIT,
            "closed after {closed_after:?}"
        );
        assert!(pings >= 2, "canary answered {pings} pings");
        assert!(
            polling_pings >= 2,
            "polling canary answered {polling_pings} pings"
        );

        // The polling session that never polled is gone by now.
        let q = format!("EIO=4&transport=polling&sid={silent_poll}");
        srv.get(&q).await.assert_error(400, 1, "Session ID unknown");

        canary.assert_healthy().await;
        polling_canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }
}

mod socketio {
    use super::*;

    #[actix_web::test]
    async fn unknown_namespace_is_refused_and_the_connection_stays() {
        let srv = Server::start(settings());
        let mut ws = srv.ws_open().await;
        ws.send_text("40/x,").await;
        assert_eq!(
            ws.recv_text().await,
            r#"44/x,{"message":"Invalid namespace"}"#
        );
        ws.send_text(r#"40/nope,{"token":"t"}"#).await;
        assert_eq!(
            ws.recv_text().await,
            r#"44/nope,{"message":"Invalid namespace"}"#
        );
        ws.connect_ns().await;
        ws.assert_healthy().await;

        let mut polling = srv.polling_client().await;
        polling.send("40/x,").await;
        polling
            .poll_until(|r| r == r#"44/x,{"message":"Invalid namespace"}"#)
            .await;
        polling.assert_healthy().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn an_event_before_connect_closes_the_connection() {
        let srv = Server::start(settings());
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;

        let mut ws = srv.ws_open().await;
        ws.send_text(r#"42["who"]"#).await;
        ws.expect_closed().await;
        // An event for a namespace other than the joined one, likewise.
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        ws.send_text(r#"42/x,["who"]"#).await;
        ws.expect_closed().await;

        let sid = srv.handshake().await;
        let q = format!("EIO=4&transport=polling&sid={sid}");
        srv.post(&q, r#"42["who"]"#)
            .await
            .assert_error(400, 3, "Bad request");
        srv.get(&q).await.assert_error(400, 1, "Session ID unknown");

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn missing_binary_attachments_close_the_connection() {
        let srv = Server::start(settings());
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;

        let announce = r#"451-["sendToAll",{"_placeholder":true,"num":0}]"#;
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        ws.send_text(announce).await;
        ws.send_text(r#"42["who"]"#).await;
        ws.expect_closed().await;

        // Over polling, in one body.
        let polling = srv.polling_client().await;
        let q = polling.query();
        let body = format!("{announce}\u{1e}42[\"who\"]");
        srv.post(&q, body).await.assert_error(400, 3, "Bad request");
        srv.get(&q).await.assert_error(400, 1, "Session ID unknown");

        // The attachment that completes the packet is accepted (and broadcast).
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        ws.send_text(announce).await;
        ws.send_binary(vec![1, 2, 3]).await;
        ws.assert_healthy().await;
        let got = canary.recv_text().await;
        assert_eq!(got, r#"451-["messages",{"_placeholder":true,"num":0}]"#);
        assert_eq!(
            canary.next_event().await,
            WsEvent::Binary(Bytes::from_static(&[1, 2, 3]))
        );

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }

    #[actix_web::test]
    async fn attachments_over_the_size_limit_close_the_connection() {
        let srv = Server::start(settings());
        let mut canary = srv.ws_open().await;
        canary.connect_ns().await;

        // Each frame fits maxPayload, but together they exceed the per-packet limit.
        let placeholders: Vec<String> = (0..4)
            .map(|i| format!(r#"{{"_placeholder":true,"num":{i}}}"#))
            .collect();
        let announce = format!(r#"454-["sendToAll",{}]"#, placeholders.join(","));
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        ws.send_text(&announce).await;
        for _ in 0..3 {
            ws.send_binary(vec![7u8; MAX_PAYLOAD / 2]).await;
        }
        ws.expect_closed().await;

        canary.assert_healthy().await;
        srv.assert_healthz().await;
        assert_no_panics();
    }
}
