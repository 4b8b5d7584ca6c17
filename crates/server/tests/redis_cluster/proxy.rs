//! A strict per-request round-robin HTTP proxy for the forwarding tests: every HTTP
//! request (not connection) goes to the next backend, with no affinity of any kind; a
//! WebSocket upgrade goes to the next backend too and is then piped both ways. Backends
//! that refuse connections are skipped (like a load balancer's passive health check), so
//! a SIGKILLed replica drops out of the rotation. It records which backend got each
//! request of each Engine.IO session (`sid=` in the query).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a request was, as the proxy saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A GET with a `sid` (long-poll).
    Get,
    /// A POST with a `sid`.
    Post,
    /// A WebSocket upgrade.
    Upgrade,
    /// The polling handshake that opened the session (its replica owns the session).
    Handshake,
    /// Anything else (handshakes, pages).
    Other,
}

#[derive(Default)]
struct Log {
    next: usize,
    /// Per sid: (backend index, kind) of each request, in order.
    by_sid: HashMap<String, Vec<(usize, Kind)>>,
}

/// The proxy; stops when dropped.
pub struct RoundRobinProxy {
    /// Its port on 127.0.0.1.
    pub port: u16,
    log: Arc<Mutex<Log>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RoundRobinProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RoundRobinProxy {
    /// A proxy on a free loopback port in front of the backends on these loopback ports.
    pub async fn start(backends: Vec<u16>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let log: Arc<Mutex<Log>> = Arc::default();
        let backends = Arc::new(backends);
        let l = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let _ = client.set_nodelay(true);
                tokio::spawn(serve(client, backends.clone(), l.clone()));
            }
        });
        Self { port, log, task }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The backend that answered the handshake of session `sid`: its owner.
    pub fn owner_of(&self, sid: &str) -> Option<usize> {
        self.log
            .lock()
            .by_sid
            .get(sid)?
            .iter()
            .find(|(_, k)| *k == Kind::Handshake)
            .map(|(b, _)| *b)
    }

    /// The distinct backends that received requests of session `sid`.
    pub fn backends_of(&self, sid: &str) -> BTreeSet<usize> {
        self.log
            .lock()
            .by_sid
            .get(sid)
            .map(|v| v.iter().map(|(b, _)| *b).collect())
            .unwrap_or_default()
    }

    /// The requests of session `sid` as (backend, kind), in order.
    pub fn requests_of(&self, sid: &str) -> Vec<(usize, Kind)> {
        self.log.lock().by_sid.get(sid).cloned().unwrap_or_default()
    }
}

/// One parsed request head.
struct Head {
    raw: Vec<u8>,
    lines: Vec<String>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.lines.iter().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn target(&self) -> &str {
        self.lines[0].split(' ').nth(1).unwrap_or("/")
    }

    fn method(&self) -> &str {
        self.lines[0].split(' ').next().unwrap_or("")
    }

    fn sid(&self) -> Option<String> {
        let query = self.target().split_once('?')?.1;
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix("sid="))
            .map(str::to_owned)
    }

    /// The head with the `Connection` header replaced.
    fn with_connection(&self, value: &str) -> Vec<u8> {
        let mut out = String::new();
        for line in &self.lines {
            if let Some((n, _)) = line.split_once(':')
                && (n.trim().eq_ignore_ascii_case("connection")
                    || n.trim().eq_ignore_ascii_case("keep-alive"))
            {
                continue;
            }
            out.push_str(line);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Connection: {value}\r\n\r\n"));
        out.into_bytes()
    }
}

/// Reads one head (through the blank line) from `io`, keeping extra bytes in `buf`.
async fn read_head(io: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Head> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let raw: Vec<u8> = buf.drain(..end + 4).collect();
            let text = String::from_utf8_lossy(&raw[..end]).into_owned();
            let lines = text.split("\r\n").map(str::to_owned).collect();
            return Some(Head { raw, lines });
        }
        let mut chunk = [0u8; 8192];
        let n = io.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Connects to the next backend that accepts, in strict rotation.
async fn next_backend(backends: &[u16], log: &Mutex<Log>) -> Option<(usize, TcpStream)> {
    for _ in 0..backends.len() {
        let index = {
            let mut l = log.lock();
            let i = l.next % backends.len();
            l.next += 1;
            i
        };
        if let Ok(s) = TcpStream::connect(("127.0.0.1", backends[index])).await {
            let _ = s.set_nodelay(true);
            return Some((index, s));
        }
    }
    None
}

async fn serve(mut client: TcpStream, backends: Arc<Vec<u16>>, log: Arc<Mutex<Log>>) {
    let mut buf = Vec::new();
    while let Some(head) = read_head(&mut client, &mut buf).await {
        let upgrade = head
            .header("upgrade")
            .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
        let kind = match (upgrade, head.method(), head.sid().is_some()) {
            (true, _, _) => Kind::Upgrade,
            (false, "GET", true) => Kind::Get,
            (false, "POST", true) => Kind::Post,
            _ => Kind::Other,
        };
        let Some((index, mut backend)) = next_backend(&backends, &log).await else {
            let _ = client
                .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        {
            let mut l = log.lock();
            if let Some(sid) = head.sid() {
                l.by_sid.entry(sid).or_default().push((index, kind));
            }
        }
        if upgrade {
            // The upgrade request as received, then both ways until either side closes.
            if backend.write_all(&head.raw).await.is_err() || backend.write_all(&buf).await.is_err()
            {
                return;
            }
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
            return;
        }
        assert!(
            head.header("transfer-encoding").is_none(),
            "the test proxy handles Content-Length bodies only"
        );
        let length: usize = head
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < length {
            let mut chunk = [0u8; 8192];
            match client.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        // One backend connection per request, closed by the backend after its answer.
        if backend
            .write_all(&head.with_connection("close"))
            .await
            .is_err()
            || backend.write_all(&body).await.is_err()
        {
            return;
        }
        let mut response = Vec::new();
        if backend.read_to_end(&mut response).await.is_err() {
            return;
        }
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            return;
        };
        let text = String::from_utf8_lossy(&response[..end]).into_owned();
        let lines: Vec<String> = text.split("\r\n").map(str::to_owned).collect();
        let resp_head = Head {
            raw: Vec::new(),
            lines,
        };
        // A polling handshake's answer names the session: `0{"sid":...}`.
        let body_text = String::from_utf8_lossy(&response[end + 4..]).into_owned();
        if kind == Kind::Other
            && head.method() == "GET"
            && let Some(open) = body_text.strip_prefix('0')
            && let Ok(open) = serde_json::from_str::<serde_json::Value>(open)
            && let Some(sid) = open["sid"].as_str()
        {
            log.lock()
                .by_sid
                .entry(sid.to_owned())
                .or_default()
                .push((index, Kind::Handshake));
        }
        let sized = resp_head.header("content-length").is_some();
        let keep = if sized { "keep-alive" } else { "close" };
        if client
            .write_all(&resp_head.with_connection(keep))
            .await
            .is_err()
            || client.write_all(&response[end + 4..]).await.is_err()
        {
            return;
        }
        if !sized {
            return;
        }
    }
}
