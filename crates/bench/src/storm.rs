//! The connect-storm scenario: `connections` clients, `concurrency` at a
//! time, each timed from the TCP connect to the Socket.IO CONNECT
//! acknowledgement and then closed; reports connects per second and the
//! handshake latency.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::client::{self, Target};
use super::{BenchError, Latency, latency_histogram};

/// Most connections one storm may open.
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// A connect-storm run.
#[derive(Debug, Clone)]
pub struct StormConfig {
    /// The servers, used round-robin.
    pub targets: Vec<Target>,
    /// Connections to open in total.
    pub connections: usize,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Time allowed for each handshake.
    pub connect_timeout: Duration,
}

/// The outcome of a connect-storm.
#[derive(Debug, Clone, Serialize)]
pub struct StormReport {
    /// The server URLs.
    pub servers: Vec<String>,
    /// Connections attempted.
    pub connections: usize,
    /// Handshakes in flight at once.
    pub concurrency: usize,
    /// Connections acknowledged.
    pub succeeded: usize,
    /// Connections that failed or timed out.
    pub failed: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Wall time of the storm.
    pub elapsed_secs: f64,
    /// `succeeded / elapsed_secs`.
    pub connects_per_sec: f64,
    /// Time from TCP connect to CONNECT acknowledgement.
    pub latency_ms: Latency,
}

impl StormReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        format!(
            "connect-storm  servers {}\n\
             attempted {}  concurrency {}  ok {}  failed {}{}\n\
             elapsed   {:.2} s\n\
             rate      {:.0} connects/s\n\
             latency   {}\n",
            self.servers.join(","),
            self.connections,
            self.concurrency,
            self.succeeded,
            self.failed,
            self.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
            self.elapsed_secs,
            self.connects_per_sec,
            self.latency_ms.row(),
        )
    }
}

/// Runs one connect-storm and reports.
pub async fn run(config: StormConfig) -> Result<StormReport, BenchError> {
    if config.connections == 0 || config.connections > MAX_CONNECTIONS {
        return Err(BenchError::Setting(format!(
            "--connections must be 1..={MAX_CONNECTIONS}"
        )));
    }
    let concurrency = config.concurrency.clamp(1, config.connections);
    super::raise_nofile(concurrency as u64 * 2 + 1024);
    let spread = if config.targets.iter().all(Target::is_loopback_v4) {
        // Closed connections linger in TIME_WAIT: spread over enough sources for all of them.
        client::spread_for(config.connections)
    } else {
        1
    };
    let next = Arc::new(AtomicUsize::new(0));
    let config = Arc::new(config);
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let next = next.clone();
            let config = config.clone();
            tokio::spawn(async move {
                let mut histogram = latency_histogram();
                let mut failures = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= config.connections {
                        break;
                    }
                    let target = &config.targets[i % config.targets.len()];
                    let t0 = Instant::now();
                    match client::connect(
                        target,
                        client::source_for(i, spread),
                        config.connect_timeout,
                    )
                    .await
                    {
                        Ok(mut conn) => {
                            histogram.saturating_record((t0.elapsed().as_micros() as u64).max(1));
                            let _ = conn.close(None).await;
                        }
                        Err(e) => failures.push(e.to_string()),
                    }
                }
                (histogram, failures)
            })
        })
        .collect();
    let mut histogram = latency_histogram();
    let mut failures = Vec::new();
    for w in workers {
        let (h, f) = w
            .await
            .map_err(|e| BenchError::Protocol(format!("storm worker failed: {e}")))?;
        // Same bounds on both sides: adding cannot fail.
        let _ = histogram.add(&h);
        failures.extend(f);
    }
    let elapsed_secs = started.elapsed().as_secs_f64();
    let succeeded = histogram.len() as usize;
    Ok(StormReport {
        servers: config.targets.iter().map(|t| t.url.clone()).collect(),
        connections: config.connections,
        concurrency,
        succeeded,
        failed: failures.len(),
        first_error: failures.into_iter().next(),
        elapsed_secs,
        connects_per_sec: succeeded as f64 / elapsed_secs.max(1e-9),
        latency_ms: Latency::from_micros(&histogram),
    })
}
