//! `hubbub-bench polling`: the cost of HTTP long-polling, and of serving it through a
//! replica other than the session's owner (docs/forwarding.md).
//!
//! Each client opens its session with a handshake at `--url` (so that replica owns it),
//! then sends all its other requests to `--via` (the same URL to measure direct polling,
//! another replica to measure forwarding). Its loop is one round trip: a POST carrying an
//! event the server acknowledges at once, then GETs until the ack arrives (a server ping
//! met on the way is answered with a pong). The event is a chat `messages` sent before
//! `join`, which hubbub refuses with an error ack without touching Redis, so what is
//! measured is HTTP, Engine.IO and Socket.IO on the servers, and the forwarding hop.
//!
//! HTTP/1.1 is spoken by hand over one keep-alive connection per client for the POSTs
//! and one for the GETs (like a browser's two connections), Content-Length bodies only.

use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::Target;
use crate::{BenchError, Latency, cpu_secs, latency_histogram};

/// What to run.
#[derive(Debug, Clone)]
pub struct PollingOptions {
    /// Where each session is opened (its owner).
    pub url: Target,
    /// Where the session's POSTs and GETs go.
    pub via: Target,
    /// Clients looping at once.
    pub clients: usize,
    /// How long the clients loop.
    pub duration: Duration,
    /// Server processes whose CPU time over the run is reported.
    pub pids: Vec<u32>,
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct PollingReport {
    /// Clients.
    pub clients: usize,
    /// Seconds of looping.
    pub seconds: f64,
    /// Round trips completed (POST + GET(s) until the ack).
    pub round_trips: u64,
    /// HTTP requests sent during the loop (POSTs and GETs).
    pub requests: u64,
    /// Requests per second.
    pub requests_per_sec: f64,
    /// Round-trip time (POST sent to ack received).
    pub round_trip: Latency,
    /// CPU seconds the `--pids` used during the loop, together.
    pub server_cpu_secs: f64,
    /// Server CPU microseconds per HTTP request.
    pub server_cpu_us_per_request: f64,
}

impl PollingReport {
    /// The human-readable summary.
    pub fn table(&self) -> String {
        format!(
            "polling: {} clients, {:.1} s, {} round trips, {} requests ({:.0}/s)\n\
             round trip (POST + GET until the ack): {}\n\
             server CPU: {:.3} s, {:.1} µs per request",
            self.clients,
            self.seconds,
            self.round_trips,
            self.requests,
            self.requests_per_sec,
            self.round_trip.row(),
            self.server_cpu_secs,
            self.server_cpu_us_per_request
        )
    }
}

/// The endpoint path of a target (`/socket.io/`), from its WebSocket URL.
fn path_of(target: &Target) -> String {
    let rest = target
        .ws_url
        .strip_prefix("ws://")
        .unwrap_or(&target.ws_url);
    let path = rest.find('/').map_or("/socket.io/", |i| &rest[i..]);
    path.split('?').next().unwrap_or("/socket.io/").to_owned()
}

/// One keep-alive HTTP/1.1 connection.
struct Http {
    stream: TcpStream,
    buf: Vec<u8>,
    host: String,
}

impl Http {
    async fn connect(target: &Target) -> Result<Http, BenchError> {
        let stream = TcpStream::connect(target.addr).await?;
        stream.set_nodelay(true)?;
        Ok(Http {
            stream,
            buf: Vec::with_capacity(4096),
            host: target.addr.to_string(),
        })
    }

    /// Sends one request and returns (status, body).
    async fn request(
        &mut self,
        method: &str,
        target: &str,
        body: &[u8],
    ) -> Result<(u16, String), BenchError> {
        let head = format!(
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n",
            self.host,
            body.len()
        );
        self.stream.write_all(head.as_bytes()).await?;
        self.stream.write_all(body).await?;
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| BenchError::Protocol(format!("bad status line: {head:.80}")))?;
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .ok_or_else(|| BenchError::Protocol("response without Content-Length".into()))?;
        while self.buf.len() < end + 4 + length {
            self.fill().await?;
        }
        let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + length]).into_owned();
        self.buf.drain(..end + 4 + length);
        Ok((status, body))
    }

    async fn fill(&mut self) -> Result<(), BenchError> {
        let mut chunk = [0u8; 8192];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(BenchError::Closed);
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// One polling client: its session id and its two connections.
struct Poller {
    query: String,
    post: Http,
    get: Http,
    requests: u64,
}

impl Poller {
    async fn open(options: &PollingOptions) -> Result<Poller, BenchError> {
        let path = path_of(&options.url);
        let mut owner = Http::connect(&options.url).await?;
        let (status, body) = owner
            .request("GET", &format!("{path}?EIO=4&transport=polling"), b"")
            .await?;
        let open = body
            .strip_prefix('0')
            .filter(|_| status == 200)
            .ok_or_else(|| BenchError::Protocol(format!("handshake: {status} {body:.80}")))?;
        let sid = serde_json::from_str::<serde_json::Value>(open)
            .ok()
            .and_then(|v| v["sid"].as_str().map(str::to_owned))
            .ok_or_else(|| BenchError::Protocol(format!("no sid in {open:.80}")))?;
        let query = format!(
            "{}?EIO=4&transport=polling&sid={sid}",
            path_of(&options.via)
        );
        let mut poller = Poller {
            query,
            post: Http::connect(&options.via).await?,
            get: Http::connect(&options.via).await?,
            requests: 0,
        };
        poller.post("40").await?;
        poller.until(|p| p.starts_with("40")).await?;
        Ok(poller)
    }

    async fn post(&mut self, payload: &str) -> Result<(), BenchError> {
        self.requests += 1;
        let (status, body) = self
            .post
            .request("POST", &self.query, payload.as_bytes())
            .await?;
        if status != 200 || body != "ok" {
            return Err(BenchError::Protocol(format!("POST: {status} {body:.80}")));
        }
        Ok(())
    }

    /// GETs until a packet satisfying `done` arrives; answers pings.
    async fn until(&mut self, done: impl Fn(&str) -> bool) -> Result<(), BenchError> {
        loop {
            self.requests += 1;
            let (status, body) = self.get.request("GET", &self.query, b"").await?;
            if status != 200 {
                return Err(BenchError::Protocol(format!("GET: {status} {body:.80}")));
            }
            let mut found = false;
            for packet in body.split('\u{1e}') {
                if packet == "2" {
                    self.post("3").await?;
                } else if packet == "1" {
                    return Err(BenchError::Closed);
                } else if done(packet) {
                    found = true;
                }
            }
            if found {
                return Ok(());
            }
        }
    }
}

/// Runs the clients for `options.duration` and reports.
pub async fn run(options: PollingOptions) -> Result<PollingReport, BenchError> {
    if options.clients == 0 {
        return Err(BenchError::Setting("--clients must be at least 1".into()));
    }
    let mut pollers = Vec::with_capacity(options.clients);
    for _ in 0..options.clients {
        pollers.push(Poller::open(&options).await?);
    }
    let cpu_before: f64 = options.pids.iter().filter_map(|p| cpu_secs(*p)).sum();
    let started = Instant::now();
    let deadline = started + options.duration;
    let mut tasks = Vec::new();
    for mut poller in pollers {
        tasks.push(tokio::spawn(async move {
            let mut histogram = latency_histogram();
            poller.requests = 0;
            let mut id: u64 = 0;
            while Instant::now() < deadline {
                id += 1;
                let sent = Instant::now();
                poller.post(&format!("42{id}[\"messages\",\"x\"]")).await?;
                let ack = format!("43{id}[");
                poller.until(|p| p.starts_with(&ack)).await?;
                let _ = histogram.record(sent.elapsed().as_micros().max(1) as u64);
            }
            Ok::<_, BenchError>((histogram, poller.requests))
        }));
    }
    let mut histogram = latency_histogram();
    let mut requests = 0;
    for task in tasks {
        let (h, r) = task
            .await
            .map_err(|e| BenchError::Protocol(format!("client task: {e}")))??;
        let _ = histogram.add(&h);
        requests += r;
    }
    let seconds = started.elapsed().as_secs_f64();
    let cpu_after: f64 = options.pids.iter().filter_map(|p| cpu_secs(*p)).sum();
    let server_cpu_secs = cpu_after - cpu_before;
    Ok(PollingReport {
        clients: options.clients,
        seconds,
        round_trips: histogram.len(),
        requests,
        requests_per_sec: requests as f64 / seconds,
        round_trip: Latency::from_micros(&histogram),
        server_cpu_secs,
        server_cpu_us_per_request: if requests > 0 {
            server_cpu_secs * 1e6 / requests as f64
        } else {
            0.0
        },
    })
}
