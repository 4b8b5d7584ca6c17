//! The harness of the robustness suite: an in-process server wired as production wires
//! it, raw HTTP/WebSocket clients, and the panic counter.

pub(crate) use std::pin::Pin;
pub(crate) use std::sync::Arc;
pub(crate) use std::sync::Once;
pub(crate) use std::sync::atomic::{AtomicUsize, Ordering};
pub(crate) use std::time::Duration;

pub(crate) use actix_web::App;
pub(crate) use awc::error::{WsClientError, WsProtocolError};
pub(crate) use awc::http::header::HeaderMap;
pub(crate) use awc::http::{Method, StatusCode};
pub(crate) use awc::ws;
pub(crate) use bytes::Bytes;
pub(crate) use futures_util::{Sink, SinkExt, Stream, StreamExt};
pub(crate) use hubbub_engineio::serve::{self, Mounts, ServeOptions};
pub(crate) use hubbub_engineio::{Engine, EngineConfig};
pub(crate) use hubbub_server::chat::store::{MemoryStore, StoreLimits};
pub(crate) use hubbub_server::chat::{Chat, ChatSettings};
pub(crate) use hubbub_server::http::{self, AppState, Health};
pub(crate) use hubbub_server::metrics::Metrics;
pub(crate) use hubbub_socketio::{Io, IoConfig, IoHandler, MemoryAdapter};
pub(crate) use serde_json::Value;
pub(crate) use tokio::time::{Instant, timeout, timeout_at};

/// The Socket.IO endpoint path.
pub(crate) const PATH: &str = "/socket.io/";
/// maxPayload of the test servers: small, so that oversize input is cheap to send.
pub(crate) const MAX_PAYLOAD: usize = 10_000;
/// Longest wait for anything the server should answer promptly.
pub(crate) const WAIT: Duration = Duration::from_secs(10);
/// The chat application's welcome, sent on every CONNECT to `/`.
pub(crate) const WELCOME: &str = r#"42["messages",{"hello":"Hello World"}]"#;

pub(crate) static PANICS: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn count_panics() {
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

pub(crate) fn assert_no_panics() {
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a server thread panicked; see stderr"
    );
}

/// The error body the Engine.IO reference server sends.
pub(crate) fn error_body(code: u8, message: &str) -> String {
    format!(r#"{{"code":{code},"message":"{message}"}}"#)
}

/// A response, body read as (lossy) text.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts an Engine.IO error answer, uncacheable.
    #[track_caller]
    pub(crate) fn assert_error(&self, status: u16, code: u8, message: &str) {
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
    pub(crate) fn assert_ok(&self, body: &str) {
        assert_eq!(
            (self.status.as_u16(), self.body.as_str()),
            (200, body),
            "{self:?}"
        );
        assert_eq!(self.header("cache-control"), Some("no-store"), "{self:?}");
    }

    /// The records of a polling response.
    pub(crate) fn records(&self) -> Vec<String> {
        self.body.split('\u{1e}').map(str::to_owned).collect()
    }
}

/// Engine settings for the tests: the defaults with a small maxPayload.
pub(crate) fn settings() -> EngineConfig {
    EngineConfig {
        max_payload: MAX_PAYLOAD,
        ..EngineConfig::default()
    }
}

/// How a test server is built.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serving {
    /// As `server::run` builds it: `engineio::serve`, WebSockets taken off the dispatcher.
    Own,
    /// The route table in a plain actix-web server (`actix_test`): WebSockets
    /// served as streaming responses.
    InApp,
}

/// The running server behind a test.
pub(crate) enum Running {
    Own {
        addr: std::net::SocketAddr,
        handle: actix_server::ServerHandle,
    },
    InApp(actix_test::TestServer),
}

/// A running server and an HTTP client for it.
pub(crate) struct Server {
    pub(crate) running: Running,
    pub(crate) http: awc::Client,
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
    pub(crate) fn start(config: EngineConfig) -> Server {
        Server::start_with(config, Serving::Own)
    }

    pub(crate) fn start_with(config: EngineConfig, serving: Serving) -> Server {
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
            Arc::new(metrics.socket.clone()),
        );
        let chat = ChatSettings {
            welcome: "Hello World".into(),
            max_message_bytes: 4096,
            // High enough that no test here is rate limited (the flood test
            // sends thousands of events as fast as it can).
            rate_limit: 1_000_000,
            rate_burst: 1_000_000,
        };
        Chat::new(store, chat, metrics.chat.clone()).register(&io);
        let engine = Engine::new(
            config,
            Arc::new(IoHandler(io)),
            Arc::new(metrics.engine.clone()),
        );
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

    pub(crate) fn addr(&self) -> std::net::SocketAddr {
        match &self.running {
            Running::Own { addr, .. } => *addr,
            Running::InApp(srv) => srv.addr(),
        }
    }

    /// The URL of `path` (with its query) on this server.
    pub(crate) fn path_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    pub(crate) fn url(&self, query: &str) -> String {
        self.path_url(&format!("{PATH}?{query}"))
    }

    /// The origin of the server itself (same-origin for the default policy).
    pub(crate) fn own_origin(&self) -> String {
        format!("http://{}", self.addr())
    }

    pub(crate) async fn request(
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

    pub(crate) async fn get(&self, query: &str) -> Reply {
        self.request(Method::GET, query, &[], None).await
    }

    pub(crate) async fn post(&self, query: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.request(Method::POST, query, &[], Some(body.into()))
            .await
    }

    /// A polling GET that runs on its own (to be left pending), answered later.
    pub(crate) fn spawn_get(
        &self,
        query: &str,
    ) -> actix_web::rt::task::JoinHandle<(StatusCode, String)> {
        let client = self.http.clone();
        let url = self.url(query);
        actix_web::rt::spawn(async move {
            let mut resp = client.get(url).send().await.expect("pending GET answered");
            let body = resp.body().await.expect("pending GET body");
            (resp.status(), String::from_utf8_lossy(&body).into_owned())
        })
    }

    /// Opens a polling session (no Socket.IO CONNECT) and returns its sid.
    pub(crate) async fn handshake(&self) -> String {
        let reply = self.get("EIO=4&transport=polling").await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        assert_eq!(reply.header("cache-control"), Some("no-store"));
        let open = reply.body.strip_prefix('0').expect("open packet");
        let open: Value = serde_json::from_str(open).expect("open packet JSON");
        assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
        assert_eq!(open["maxPayload"], MAX_PAYLOAD);
        open["sid"].as_str().expect("sid").to_owned()
    }

    pub(crate) async fn assert_healthz(&self) {
        let resp = timeout(WAIT, self.http.get(self.path_url("/healthz")).send())
            .await
            .expect("healthz in time");
        let mut resp = resp.expect("healthz answered");
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.body().await.expect("healthz body"), "ok");
    }

    /// The Prometheus text of `/metrics`.
    pub(crate) async fn metrics(&self) -> String {
        let resp = timeout(WAIT, self.http.get(self.path_url("/metrics")).send())
            .await
            .expect("metrics in time");
        let mut resp = resp.expect("metrics answered");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.body().limit(1 << 20).await.expect("metrics body");
        String::from_utf8_lossy(&body).into_owned()
    }

    /// Opens a WebSocket to the endpoint with this query.
    pub(crate) async fn ws(
        &self,
        query: &str,
        origin: Option<&str>,
    ) -> Result<WsClient, WsClientError> {
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
    pub(crate) async fn ws_open(&self) -> WsClient {
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
    pub(crate) async fn polling_client(&self) -> PollingClient<'_> {
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
pub(crate) struct PollingClient<'a> {
    pub(crate) srv: &'a Server,
    pub(crate) sid: String,
    pub(crate) next_ack: u64,
}

impl PollingClient<'_> {
    pub(crate) fn query(&self) -> String {
        format!("EIO=4&transport=polling&sid={}", self.sid)
    }

    pub(crate) async fn send(&self, body: &str) {
        self.srv.post(&self.query(), body).await.assert_ok("ok");
    }

    /// Polls until a record matches, answering pings on the way.
    pub(crate) async fn poll_until(&mut self, wanted: impl Fn(&str) -> bool) -> String {
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
    pub(crate) async fn keep_alive(&mut self, duration: Duration) -> usize {
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
    pub(crate) async fn assert_healthy(&mut self) {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send(&format!(r#"42{id}["who"]"#)).await;
        let prefix = format!(r#"43{id}[{{"online":"#);
        self.poll_until(|r| r.starts_with(&prefix)).await;
    }
}

/// A WebSocket client on a bare TCP stream, for frames that client libraries
/// refuse to send. Client frames are masked with a zero key (payload as is).
pub(crate) struct RawWs {
    pub(crate) tcp: tokio::net::TcpStream,
    pub(crate) read: Vec<u8>,
}

impl RawWs {
    pub(crate) async fn open(addr: std::net::SocketAddr) -> RawWs {
        let (status, ws) = RawWs::request(addr, PATH, b"").await;
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        ws
    }

    /// Sends a WebSocket handshake for `path` (query included), followed at
    /// once by `pipelined` bytes; returns the answer's head and the connection.
    pub(crate) async fn request(
        addr: std::net::SocketAddr,
        path: &str,
        pipelined: &[u8],
    ) -> (String, RawWs) {
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
    pub(crate) fn frame(head: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 126);
        let mut frame = vec![head, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        frame.extend_from_slice(payload);
        frame
    }

    /// The rest of the stream, until the server closes it.
    pub(crate) async fn rest(&mut self) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut rest = std::mem::take(&mut self.read);
        timeout(WAIT, self.tcp.read_to_end(&mut rest))
            .await
            .expect("server closes in time")
            .expect("read");
        rest
    }

    /// Sends one frame: `head` is the first byte (FIN and opcode).
    pub(crate) async fn send(&mut self, head: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        // The server may already have closed the connection.
        let _ = self.tcp.write_all(&RawWs::frame(head, payload)).await;
    }

    /// The next frame from the server as (opcode, payload), or `None` once the
    /// connection has ended.
    pub(crate) async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
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
    pub(crate) async fn expect_text(&mut self, prefix: &str) {
        loop {
            match self.next_frame().await {
                Some((1, t)) if t.starts_with(prefix.as_bytes()) => return,
                Some(_) => continue,
                None => panic!("closed before a text frame starting with {prefix}"),
            }
        }
    }

    /// Reads the server's frames until a close frame or the end of the stream.
    pub(crate) async fn expect_closed(&mut self) {
        while let Some((opcode, _)) = self.next_frame().await {
            if opcode == 0x8 {
                return;
            }
        }
    }
}

pub(crate) type WsSink = Pin<Box<dyn Sink<ws::Message, Error = WsProtocolError>>>;
pub(crate) type WsStream = Pin<Box<dyn Stream<Item = Result<ws::Frame, WsProtocolError>>>>;

/// What a WebSocket client saw next.
#[derive(Debug, PartialEq)]
pub(crate) enum WsEvent {
    Text(String),
    Binary(Bytes),
    /// A close frame, the end of the stream, or a protocol error.
    Closed,
}

/// A raw WebSocket client speaking Engine.IO text.
pub(crate) struct WsClient {
    pub(crate) tx: WsSink,
    pub(crate) rx: WsStream,
    pub(crate) next_ack: u64,
}

impl WsClient {
    pub(crate) async fn next_event_until(&mut self, deadline: Instant) -> Option<WsEvent> {
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

    pub(crate) async fn next_event(&mut self) -> WsEvent {
        self.next_event_until(Instant::now() + WAIT)
            .await
            .expect("a websocket frame in time")
    }

    /// The next text packet other than a ping (pings are answered).
    pub(crate) async fn recv_text(&mut self) -> String {
        loop {
            match self.next_event().await {
                WsEvent::Text(t) if t == "2" => self.send_text("3").await,
                WsEvent::Text(t) => return t,
                other => panic!("expected a text packet, got {other:?}"),
            }
        }
    }

    pub(crate) async fn send_text(&mut self, text: &str) {
        let _ = self
            .tx
            .send(ws::Message::Text(text.to_owned().into()))
            .await;
    }

    /// Sends `text` as one message split over several frames (continuations).
    pub(crate) async fn send_fragmented(&mut self, text: &str, fragments: usize) {
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

    pub(crate) async fn send_binary(&mut self, bytes: Vec<u8>) {
        let _ = self.tx.send(ws::Message::Binary(bytes.into())).await;
    }

    /// Joins `/` and consumes the CONNECT answer and the welcome.
    pub(crate) async fn connect_ns(&mut self) {
        self.send_text("40").await;
        let connected = self.recv_text().await;
        assert!(connected.starts_with(r#"40{"sid":"#), "{connected}");
        assert_eq!(self.recv_text().await, WELCOME);
    }

    /// The server closes this connection (whatever it still sends first is skipped).
    pub(crate) async fn expect_closed(&mut self) {
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
    pub(crate) async fn assert_healthy(&mut self) {
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
    pub(crate) async fn keep_alive(&mut self, duration: Duration) -> usize {
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
