//! The churn soak: clients that keep connecting and leaving in every way a
//! network does, against one server, for a bounded time; then a check that the
//! server is back where it started. The kinds ([`Kind`]): clean closes, TCP
//! resets (SO_LINGER 0), half-open connections that never send, WebSocket
//! upgrades started and abandoned, polling sessions abandoned, probes that
//! never finish, clients that stop reading.
//!
//! Before, during and after, the server's own `/metrics` is read over plain
//! HTTP: `hubbub_connections_open`, `hubbub_sockets_connected`,
//! `hubbub_tasks_alive`, `process_resident_memory_bytes`, `process_open_fds`.
//! The run fails unless, once the clients are gone, sessions and sockets are
//! at zero, tasks and file descriptors at their baseline, and resident memory
//! within `rss_slack` of it. Meant for a server started with short timeouts
//! (`bench/churn.sh` does it), so that abandoned sessions end within seconds.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BenchError;
use super::client::Target;

/// How a client arrives and leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// WebSocket, CONNECT, then an Engine.IO close and a WebSocket close frame.
    CleanClose,
    /// WebSocket, CONNECT, then a TCP reset (SO_LINGER 0).
    Reset,
    /// TCP connect, then nothing at all until the server gives up.
    HalfOpen,
    /// Half a WebSocket upgrade request, then gone.
    UpgradeAbandoned,
    /// A polling handshake, then never polled again.
    PollingAbandoned,
    /// A polling session's WebSocket probe answered, never completed.
    ProbeUnfinished,
    /// WebSocket, CONNECT, then never reads (nor answers a ping) again.
    StopsReading,
}

/// Every kind, in the order they are started.
pub const KINDS: [Kind; 7] = [
    Kind::CleanClose,
    Kind::Reset,
    Kind::HalfOpen,
    Kind::UpgradeAbandoned,
    Kind::PollingAbandoned,
    Kind::ProbeUnfinished,
    Kind::StopsReading,
];

/// How long a [`Kind::StopsReading`] client reads nothing.
const STOP_READING: Duration = Duration::from_secs(3);

/// A churn run.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// The server.
    pub target: Target,
    /// Clients in flight at once.
    pub concurrency: usize,
    /// How long new clients keep arriving.
    pub duration: Duration,
    /// How long the server may take to end everything once they stop.
    pub settle: Duration,
    /// How far above its baseline resident memory may stay, in bytes.
    pub rss_slack: u64,
    /// Most time one client may take before it is counted as stuck.
    pub client_timeout: Duration,
}

/// The server's figures at one moment.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct ServerLoad {
    /// `hubbub_connections_open`, both transports.
    pub sessions: f64,
    /// `hubbub_sockets_connected`.
    pub sockets: f64,
    /// `hubbub_tasks_alive`.
    pub tasks: f64,
    /// `process_resident_memory_bytes`.
    pub rss_bytes: f64,
    /// `process_open_fds`.
    pub open_fds: f64,
}

/// The outcome of a churn run.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnReport {
    /// The server URL.
    pub server: String,
    /// Clients that ran, by kind.
    pub clients: BTreeMap<Kind, usize>,
    /// Clients that failed (a refused handshake, a stuck connection), and the first error.
    pub failed: usize,
    /// The first failure.
    pub first_error: Option<String>,
    /// Seconds of churn.
    pub churn_secs: f64,
    /// Before the churn (after a warm-up round).
    pub baseline: ServerLoad,
    /// The highest sample during the churn (each figure on its own).
    pub peak: ServerLoad,
    /// Once settled.
    pub after: ServerLoad,
    /// Seconds from the last client to a settled server.
    pub settle_secs: f64,
    /// Whether every figure returned (sessions and sockets 0, tasks and fds at
    /// baseline, RSS within the slack).
    pub settled: bool,
}

impl ChurnReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let row = |name: &str, l: &ServerLoad| {
            format!(
                "{name:<9} sessions {:>6}  sockets {:>6}  tasks {:>6}  fds {:>6}  rss {:>8.1} MiB\n",
                l.sessions,
                l.sockets,
                l.tasks,
                l.open_fds,
                l.rss_bytes / 1_048_576.0
            )
        };
        let clients: usize = self.clients.values().sum();
        format!(
            "churn  server {}\n\
             clients {} in {:.0} s ({}), failed {}{}\n\
             {}{}{}\
             settled {} after {:.1} s\n",
            self.server,
            clients,
            self.churn_secs,
            self.clients
                .iter()
                .map(|(k, n)| format!("{k:?} {n}"))
                .collect::<Vec<_>>()
                .join(", "),
            self.failed,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            row("baseline", &self.baseline),
            row("peak", &self.peak),
            row("after", &self.after),
            if self.settled { "yes" } else { "NO" },
            self.settle_secs,
        )
    }
}

/// The server's `/metrics`, over a plain HTTP/1.1 request.
async fn server_load(addr: SocketAddr) -> Result<ServerLoad, BenchError> {
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .await?;
    let mut body = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut body))
        .await
        .map_err(|_| BenchError::Timeout(Duration::from_secs(10)))??;
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (metric, v) = l.rsplit_once(' ')?;
                (metric == name || metric.starts_with(&format!("{name}{{")))
                    .then(|| v.parse::<f64>().ok())?
            })
            .sum()
    };
    if !text.contains("hubbub_tasks_alive") {
        return Err(BenchError::Protocol(
            "the server's /metrics has no hubbub_tasks_alive".into(),
        ));
    }
    Ok(ServerLoad {
        sessions: value("hubbub_connections_open"),
        sockets: value("hubbub_sockets_connected"),
        tasks: value("hubbub_tasks_alive"),
        rss_bytes: value("process_resident_memory_bytes"),
        open_fds: value("process_open_fds"),
    })
}

/// A masked client frame.
fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    // A zero mask: the payload goes as is.
    f.extend_from_slice(&[0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

/// Reads until `needle` has arrived; fails on close.
async fn read_until(
    s: &mut TcpStream,
    seen: &mut Vec<u8>,
    needle: &[u8],
) -> Result<(), BenchError> {
    let mut buf = [0u8; 4096];
    while !seen.windows(needle.len()).any(|w| w == needle) {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(BenchError::Closed);
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// Reads and drops everything until the server closes the connection.
async fn until_closed(s: &mut TcpStream) {
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

fn upgrade_head(target: &Target, sid: Option<&str>) -> String {
    let path = target
        .ws_url
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
        .unwrap_or("/socket.io/?EIO=4&transport=websocket");
    let sid = sid.map(|s| format!("&sid={s}")).unwrap_or_default();
    format!(
        "GET {path}{sid} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.addr
    )
}

/// A WebSocket that has joined namespace `/`.
async fn joined(target: &Target) -> Result<TcpStream, BenchError> {
    let mut s = TcpStream::connect(target.addr).await?;
    s.write_all(upgrade_head(target, None).as_bytes()).await?;
    let mut seen = Vec::new();
    read_until(&mut s, &mut seen, b"0{\"sid\"").await?;
    s.write_all(&frame(1, b"40")).await?;
    read_until(&mut s, &mut seen, b"40{").await?;
    Ok(s)
}

/// A polling handshake; returns the session id.
async fn polling_handshake(target: &Target) -> Result<String, BenchError> {
    let path = upgrade_head(target, None);
    let path = path
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .replace("transport=websocket", "transport=polling");
    let mut s = TcpStream::connect(target.addr).await?;
    s.write_all(
        format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            target.addr
        )
        .as_bytes(),
    )
    .await?;
    let mut body = Vec::new();
    s.read_to_end(&mut body).await?;
    let text = String::from_utf8_lossy(&body);
    let sid = text
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .ok_or_else(|| BenchError::Protocol(format!("no open packet in {text:?}")))?;
    Ok(sid.to_owned())
}

/// Runs one client of `kind` to its end.
async fn client(target: &Target, kind: Kind) -> Result<(), BenchError> {
    match kind {
        Kind::CleanClose => {
            let mut s = joined(target).await?;
            s.write_all(&frame(1, b"1")).await?;
            s.write_all(&frame(8, &[0x03, 0xe8])).await?;
            until_closed(&mut s).await;
        }
        Kind::Reset => {
            let s = joined(target).await?;
            s.set_zero_linger()?;
            drop(s);
        }
        Kind::HalfOpen => {
            let mut s = TcpStream::connect(target.addr).await?;
            until_closed(&mut s).await;
        }
        Kind::UpgradeAbandoned => {
            let mut s = TcpStream::connect(target.addr).await?;
            let head = upgrade_head(target, None);
            s.write_all(&head.as_bytes()[..head.len() / 2]).await?;
        }
        Kind::PollingAbandoned => {
            polling_handshake(target).await?;
        }
        Kind::ProbeUnfinished => {
            let sid = polling_handshake(target).await?;
            let mut s = TcpStream::connect(target.addr).await?;
            s.write_all(upgrade_head(target, Some(&sid)).as_bytes())
                .await?;
            s.write_all(&frame(1, b"2probe")).await?;
            let mut seen = Vec::new();
            read_until(&mut s, &mut seen, b"3probe").await?;
            until_closed(&mut s).await;
        }
        Kind::StopsReading => {
            let mut s = joined(target).await?;
            // Reads nothing (and so answers no ping) for a while: the server
            // must give up on it by itself; then the close is collected.
            tokio::time::sleep(STOP_READING).await;
            until_closed(&mut s).await;
        }
    }
    Ok(())
}

/// Runs the soak and reports.
pub async fn run(config: ChurnConfig) -> Result<ChurnReport, BenchError> {
    if config.concurrency == 0 || config.concurrency > 20_000 {
        return Err(BenchError::Setting("concurrency must be 1..=20000".into()));
    }
    let target = Arc::new(config.target.clone());
    let addr = target.addr;
    let run_clients = |until: Instant| {
        let counts: Arc<Vec<AtomicUsize>> =
            Arc::new(KINDS.iter().map(|_| AtomicUsize::new(0)).collect());
        let failed = Arc::new(AtomicUsize::new(0));
        let first: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let mut tasks = Vec::new();
        for w in 0..config.concurrency {
            let (target, counts, failed, first) = (
                target.clone(),
                counts.clone(),
                failed.clone(),
                first.clone(),
            );
            let limit = config.client_timeout;
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < until {
                    let k = i % KINDS.len();
                    i += 1;
                    let outcome = tokio::time::timeout(limit, client(&target, KINDS[k])).await;
                    match outcome {
                        Ok(Ok(())) => {
                            counts[k].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(e)) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            note(&first, || format!("{:?}: {e}", KINDS[k]));
                        }
                        Err(_) => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            note(&first, || {
                                format!("{:?}: not ended by the server within {limit:?}", KINDS[k])
                            });
                        }
                    }
                }
            }));
        }
        (tasks, counts, failed, first)
    };
    let settle = |deadline: Instant, baseline: ServerLoad| async move {
        loop {
            let now = server_load(addr).await?;
            let done = now.sessions == 0.0
                && now.sockets == 0.0
                && now.tasks <= baseline.tasks
                && now.open_fds <= baseline.open_fds
                && now.rss_bytes <= baseline.rss_bytes + config.rss_slack as f64;
            if done || Instant::now() >= deadline {
                return Ok::<_, BenchError>((now, done));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    };

    // Warm-up: one short round, so that the baseline includes what the first
    // connections allocate once (buffers, pools, lazily built state).
    let (tasks, ..) = run_clients(Instant::now() + Duration::from_secs(2));
    for t in tasks {
        let _ = t.await;
    }
    let anything = ServerLoad {
        sessions: 0.0,
        sockets: 0.0,
        tasks: f64::MAX,
        rss_bytes: f64::MAX,
        open_fds: f64::MAX,
    };
    settle(Instant::now() + config.settle, anything).await?;
    let baseline = server_load(addr).await?;

    let start = Instant::now();
    let (tasks, counts, failed, first) = run_clients(start + config.duration);
    let mut peak = baseline;
    let sampling = async {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            if let Ok(now) = server_load(addr).await {
                peak.sessions = peak.sessions.max(now.sessions);
                peak.sockets = peak.sockets.max(now.sockets);
                peak.tasks = peak.tasks.max(now.tasks);
                peak.rss_bytes = peak.rss_bytes.max(now.rss_bytes);
                peak.open_fds = peak.open_fds.max(now.open_fds);
            }
        }
    };
    let all = futures_util::future::join_all(tasks);
    tokio::select! {
        _ = all => {}
        _ = sampling => {}
    }
    let churn_secs = start.elapsed().as_secs_f64();
    let settling = Instant::now();
    let (after, settled) = settle(settling + config.settle, baseline).await?;
    let clients = KINDS
        .iter()
        .zip(counts.iter())
        .map(|(k, n)| (*k, n.load(Ordering::Relaxed)))
        .collect();
    let first_error = first.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Ok(ChurnReport {
        server: config.target.url.clone(),
        clients,
        failed: failed.load(Ordering::Relaxed),
        first_error,
        churn_secs,
        baseline,
        peak,
        after,
        settle_secs: settling.elapsed().as_secs_f64(),
        settled,
    })
}

/// Keeps the first failure's description.
fn note(first: &Mutex<Option<String>>, what: impl FnOnce() -> String) {
    first
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_or_insert_with(what);
}
