//! The idle scenario: open `connections` Socket.IO connections (from source
//! addresses spread over 127.0.0.x past 25,000, with the open-file limit
//! raised), hold them while answering pings, and report the connect rate and
//! the resident memory the given server processes gained per connection.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::client::{self, Conn, Frame, Target};
use super::{BenchError, Latency, latency_histogram, rss_kib};

/// Most connections one idle run may hold.
pub const MAX_CONNECTIONS: usize = 1_000_000;
/// Longest hold.
pub const MAX_HOLD: Duration = Duration::from_secs(3600);

/// An idle run.
#[derive(Debug, Clone)]
pub struct IdleConfig {
    /// The servers, used round-robin.
    pub targets: Vec<Target>,
    /// Connections to open and hold.
    pub connections: usize,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// How long to hold all connections before measuring and closing.
    pub hold: Duration,
    /// Time allowed for each handshake.
    pub connect_timeout: Duration,
    /// Server processes whose resident memory is measured.
    pub pids: Vec<u32>,
}

/// Memory of one server process.
#[derive(Debug, Clone, Serialize)]
pub struct ServerMemory {
    /// The process.
    pub pid: u32,
    /// VmRSS before connecting, KiB.
    pub rss_before_kib: u64,
    /// VmRSS after the hold with all connections open, KiB.
    pub rss_after_kib: u64,
}

/// The outcome of an idle run.
#[derive(Debug, Clone, Serialize)]
pub struct IdleReport {
    /// The server URLs.
    pub servers: Vec<String>,
    /// Connections attempted.
    pub connections: usize,
    /// Connections established and held.
    pub established: usize,
    /// Connections that failed.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Seconds to open them.
    pub connect_secs: f64,
    /// `established / connect_secs`.
    pub connects_per_sec: f64,
    /// Handshake latency.
    pub latency_ms: Latency,
    /// Connections still open at the end of the hold.
    pub still_open: usize,
    /// Per-process memory.
    pub servers_memory: Vec<ServerMemory>,
    /// Growth of all given processes together, bytes per established connection.
    pub bytes_per_connection: Option<f64>,
}

impl IdleReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "idle  servers {}\n\
             attempted {}  established {}  failed {}{}\n\
             connect   {:.2} s, {:.0} connects/s\n\
             latency   {}\n\
             held      {} still open after the hold\n",
            self.servers.join(","),
            self.connections,
            self.established,
            self.failed,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            self.connect_secs,
            self.connects_per_sec,
            self.latency_ms.row(),
            self.still_open,
        );
        for m in &self.servers_memory {
            s.push_str(&format!(
                "pid {}  rss {} KiB -> {} KiB\n",
                m.pid, m.rss_before_kib, m.rss_after_kib
            ));
        }
        if let Some(b) = self.bytes_per_connection {
            s.push_str(&format!(
                "memory    {:.0} bytes ({:.2} KiB) per connection\n",
                b,
                b / 1024.0
            ));
        }
        s
    }
}

/// Runs one idle hold and reports.
pub async fn run(config: IdleConfig) -> Result<IdleReport, BenchError> {
    if config.connections == 0 || config.connections > MAX_CONNECTIONS {
        return Err(BenchError::Setting(format!(
            "--connections must be 1..={MAX_CONNECTIONS}"
        )));
    }
    if config.hold > MAX_HOLD {
        return Err(BenchError::Setting(format!(
            "--hold must be at most {} s",
            MAX_HOLD.as_secs()
        )));
    }
    let limit = super::raise_nofile(config.connections as u64 + 1024);
    if limit < config.connections as u64 + 16 {
        return Err(BenchError::Setting(format!(
            "the open-file limit is {limit}, too low for {} connections (run as root or raise `ulimit -n`)",
            config.connections
        )));
    }
    let before: Vec<(u32, Option<u64>)> = config.pids.iter().map(|p| (*p, rss_kib(*p))).collect();
    let spread = if config.targets.iter().all(Target::is_loopback_v4) {
        client::spread_for(config.connections)
    } else {
        1
    };
    let started = Instant::now();
    let (conns, failures) = client::connect_many(
        &config.targets,
        config.connections,
        config.concurrency,
        spread,
        config.connect_timeout,
    )
    .await;
    let connect_secs = started.elapsed().as_secs_f64();
    let mut histogram = latency_histogram();
    let stop = CancellationToken::new();
    let holders: Vec<_> = conns
        .into_iter()
        .map(|(conn, took)| {
            histogram.saturating_record((took.as_micros() as u64).max(1));
            tokio::spawn(hold(conn, stop.clone()))
        })
        .collect();
    let established = holders.len();
    tokio::time::sleep(config.hold).await;
    let servers_memory: Vec<ServerMemory> = before
        .iter()
        .map(|(pid, b)| ServerMemory {
            pid: *pid,
            rss_before_kib: b.unwrap_or(0),
            rss_after_kib: rss_kib(*pid).unwrap_or(0),
        })
        .collect();
    stop.cancel();
    let mut still_open = 0;
    for h in holders {
        still_open += usize::from(h.await.unwrap_or(false));
    }
    let growth_kib: i64 = servers_memory
        .iter()
        .map(|m| m.rss_after_kib as i64 - m.rss_before_kib as i64)
        .sum();
    Ok(IdleReport {
        servers: config.targets.iter().map(|t| t.url.clone()).collect(),
        connections: config.connections,
        established,
        failed: failures.len(),
        first_error: failures.first().map(ToString::to_string),
        connect_secs,
        connects_per_sec: established as f64 / connect_secs.max(1e-9),
        latency_ms: Latency::from_micros(&histogram),
        still_open,
        bytes_per_connection: (!servers_memory.is_empty() && established > 0)
            .then(|| growth_kib as f64 * 1024.0 / established as f64),
        servers_memory,
    })
}

/// Holds a connection, answering pings, until stopped; returns whether it
/// was still open then.
async fn hold(mut conn: Conn, stop: CancellationToken) -> bool {
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => return true,
            m = conn.next() => m,
        };
        match next {
            Some(Ok(Message::Text(text))) => match Frame::classify(&text) {
                Frame::Ping if conn.send(Message::text("3")).await.is_err() => return false,
                Frame::Close => return false,
                _ => {}
            },
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return false,
            Some(Ok(_)) => {}
        }
    }
}
