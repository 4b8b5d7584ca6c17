//! The fan-out scenario: subscribers spread round-robin over the server URLs
//! (replicas), publishers emitting `sendToAll` with a send-time stamp at a
//! fixed total rate, and every subscriber recording the delivery latency of
//! each `messages` event it receives.
//!
//! Publishers are connections of their own and do not count as receivers:
//! the server's broadcast excludes the sender, and what the other publishers
//! receive is read and discarded. So `expected = sent × subscribers`.

use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::time::sleep_until;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use super::client::{self, Conn, Frame, Target};
use super::{BenchError, Latency, latency_histogram, now_micros};

/// Most connections one run may open.
pub const MAX_CONNECTIONS: usize = 200_000;
/// Longest send phase of one run.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// A fan-out run.
#[derive(Debug, Clone)]
pub struct FanoutConfig {
    /// The servers; subscriber `i` connects to `targets[i % len]`, publisher `j` to `targets[j % len]`.
    pub targets: Vec<Target>,
    /// Receiving connections.
    pub subscribers: usize,
    /// Sending connections.
    pub publishers: usize,
    /// Messages per second, all publishers together.
    pub rate: f64,
    /// Bytes of JSON in each message's argument.
    pub size: usize,
    /// How long the publishers send.
    pub duration: Duration,
    /// How long to wait after the last send for deliveries still in flight.
    pub drain: Duration,
    /// Connection handshakes in flight at once while setting up.
    pub connect_concurrency: usize,
    /// Time allowed for each connection's handshake.
    pub connect_timeout: Duration,
    /// Server processes whose CPU time over the run is reported.
    pub pids: Vec<u32>,
}

impl FanoutConfig {
    /// Checks the bounds that keep a run finite and meaningful.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |m: String| Err(BenchError::Setting(m));
        if self.subscribers == 0 || self.publishers == 0 {
            return bad("--subscribers and --publishers must be at least 1".into());
        }
        if self.subscribers + self.publishers > MAX_CONNECTIONS {
            return bad(format!("at most {MAX_CONNECTIONS} connections per run"));
        }
        if self.rate.is_nan() || self.rate <= 0.0 || self.rate > 1_000_000.0 {
            return bad("--rate must be in (0, 1000000] messages per second".into());
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return bad(format!(
                "--duration must be 1..={} s",
                MAX_DURATION.as_secs()
            ));
        }
        if self.size > 1_000_000 {
            return bad("--size must be at most 1000000 bytes".into());
        }
        Ok(())
    }
}

/// The outcome of a fan-out run.
#[derive(Debug, Clone, Serialize)]
pub struct FanoutReport {
    /// The server URLs.
    pub servers: Vec<String>,
    /// Receiving connections.
    pub subscribers: usize,
    /// Sending connections.
    pub publishers: usize,
    /// Requested messages per second.
    pub rate: f64,
    /// Bytes per message argument.
    pub size: usize,
    /// Seconds the publishers actually sent for.
    pub duration_secs: f64,
    /// Messages sent.
    pub sent: u64,
    /// `sent × subscribers`.
    pub expected: u64,
    /// Stamped `messages` events received by subscribers.
    pub received: u64,
    /// `expected − received` (0 when everything arrived).
    pub loss: u64,
    /// `loss / expected`.
    pub loss_ratio: f64,
    /// `received / duration_secs`.
    pub deliveries_per_sec: f64,
    /// Subscribers whose connection closed during the run.
    pub disconnects: usize,
    /// Seconds to set up all connections.
    pub connect_secs: f64,
    /// Delivery latency (receive time − send stamp).
    pub latency_ms: Latency,
    /// CPU seconds the given server processes used from the first send to the
    /// end of the drain (absent without `--pids`).
    pub server_cpu_secs: Option<f64>,
    /// `server_cpu_secs / received`, in microseconds.
    pub server_cpu_us_per_delivery: Option<f64>,
    /// CPU seconds this load tool used over the same window.
    pub client_cpu_secs: f64,
}

impl FanoutReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        format!(
            "fanout  servers {}\n\
             setup   {} subscribers + {} publishers connected in {:.2} s\n\
             load    {} msg/s x {} B for {:.2} s\n\
             sent    {}\n\
             expect  {}\n\
             recv    {}\n\
             loss    {} ({:.4} %)  disconnects {}\n\
             rate    {:.0} deliveries/s\n\
             latency {}\n\
             cpu     server {} | load tool {:.2} s\n",
            self.servers.join(","),
            self.subscribers,
            self.publishers,
            self.connect_secs,
            self.rate,
            self.size,
            self.duration_secs,
            self.sent,
            self.expected,
            self.received,
            self.loss,
            self.loss_ratio * 100.0,
            self.disconnects,
            self.deliveries_per_sec,
            self.latency_ms.row(),
            match (self.server_cpu_secs, self.server_cpu_us_per_delivery) {
                (Some(s), Some(us)) => format!("{s:.2} s ({us:.2} µs per delivery)"),
                _ => "not measured (no --pids)".to_owned(),
            },
            self.client_cpu_secs,
        )
    }
}

/// Total CPU seconds of the given processes, if all are readable.
fn servers_cpu(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| super::cpu_secs(*p)).sum()
}

/// Latencies a subscriber has measured but not yet added to the run's
/// histogram.
const RECORD_BATCH: usize = 256;

/// Collects one subscriber's latencies into the histogram that all
/// subscribers share, a batch at a time. One histogram per subscriber (172 KB
/// each: 1 µs to 10 min at 3 significant digits) put every sample in a
/// different cache line of a working set of 1000 × 172 KB, and the cache
/// misses cost the load tool a sixth of its CPU at a million deliveries a
/// second; one shared histogram stays in cache, and the lock is taken once per
/// batch.
struct Recorder {
    batch: Vec<u64>,
    shared: Arc<Mutex<Histogram<u64>>>,
}

impl Recorder {
    fn new(shared: Arc<Mutex<Histogram<u64>>>) -> Recorder {
        Recorder {
            batch: Vec::with_capacity(RECORD_BATCH),
            shared,
        }
    }

    fn record(&mut self, micros: u64) {
        self.batch.push(micros);
        if self.batch.len() == RECORD_BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        // A poisoned lock only means another subscriber panicked mid-batch;
        // the counts it added are still counts.
        let mut h = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        for &us in &self.batch {
            h.saturating_record(us);
        }
        self.batch.clear();
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Runs one fan-out and reports.
pub async fn run(config: FanoutConfig) -> Result<FanoutReport, BenchError> {
    config.validate()?;
    let total = config.subscribers + config.publishers;
    super::raise_nofile(total as u64 + 1024);
    let spread = if config.targets.iter().all(Target::is_loopback_v4) {
        client::spread_for(total)
    } else {
        1
    };

    let setup = Instant::now();
    let (subs, failures) = client::connect_many(
        &config.targets,
        config.subscribers,
        config.connect_concurrency,
        spread,
        config.connect_timeout,
    )
    .await;
    fail_on(failures, config.subscribers)?;
    let (pubs, failures) = client::connect_many(
        &config.targets,
        config.publishers,
        config.connect_concurrency,
        1,
        config.connect_timeout,
    )
    .await;
    fail_on(failures, config.publishers)?;
    let connect_secs = setup.elapsed().as_secs_f64();

    let stop = CancellationToken::new();
    let received = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Mutex::new(latency_histogram()));
    let run_start = now_micros();
    let subscribers: Vec<_> = subs
        .into_iter()
        .map(|(conn, _)| {
            let recorder = Recorder::new(shared.clone());
            tokio::spawn(subscribe(
                conn,
                stop.clone(),
                received.clone(),
                recorder,
                run_start,
            ))
        })
        .collect();

    let server_cpu_before = servers_cpu(&config.pids);
    let client_cpu_before = super::own_cpu_secs();
    let padding: Arc<str> = client::padding_for(config.size).into();
    let per_publisher = config.rate / config.publishers as f64;
    let started = Instant::now() + Duration::from_millis(20);
    let publishers: Vec<_> = pubs
        .into_iter()
        .enumerate()
        .map(|(j, (conn, _))| {
            // Stagger the publishers so that their messages interleave evenly.
            let offset = Duration::from_secs_f64(j as f64 / config.rate);
            let count = (per_publisher * config.duration.as_secs_f64()).round() as u64;
            tokio::spawn(publish(
                conn,
                started + offset,
                per_publisher,
                count,
                padding.clone(),
            ))
        })
        .collect();
    let mut sent = 0u64;
    // Publishers stay connected until the end, so that none leaves mid-drain.
    let mut publisher_conns = Vec::with_capacity(config.publishers);
    for p in publishers {
        let (n, conn) = p
            .await
            .map_err(|e| BenchError::Protocol(format!("publisher task failed: {e}")))??;
        sent += n;
        publisher_conns.push(conn);
    }
    let duration_secs = started.elapsed().as_secs_f64();
    let expected = sent * config.subscribers as u64;

    let drain_until = Instant::now() + config.drain;
    while received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let server_cpu_secs = servers_cpu(&config.pids)
        .zip(server_cpu_before)
        .map(|(after, before)| after - before);
    let client_cpu_secs = super::own_cpu_secs() - client_cpu_before;
    stop.cancel();
    drop(publisher_conns);

    let mut disconnects = 0;
    for s in subscribers {
        let disconnected = s
            .await
            .map_err(|e| BenchError::Protocol(format!("subscriber task failed: {e}")))?;
        disconnects += usize::from(disconnected);
    }
    // Every subscriber has ended, and its recorder has flushed.
    let histogram = std::mem::replace(
        &mut *shared.lock().unwrap_or_else(PoisonError::into_inner),
        latency_histogram(),
    );
    let received = histogram.len();
    let loss = expected.saturating_sub(received);
    Ok(FanoutReport {
        servers: config.targets.iter().map(|t| t.url.clone()).collect(),
        subscribers: config.subscribers,
        publishers: config.publishers,
        rate: config.rate,
        size: config.size,
        duration_secs,
        sent,
        expected,
        received,
        loss,
        loss_ratio: if expected == 0 {
            0.0
        } else {
            loss as f64 / expected as f64
        },
        deliveries_per_sec: received as f64 / duration_secs.max(1e-9),
        disconnects,
        connect_secs,
        latency_ms: Latency::from_micros(&histogram),
        server_cpu_secs,
        server_cpu_us_per_delivery: server_cpu_secs
            .filter(|_| received > 0)
            .map(|s| s * 1e6 / received as f64),
        client_cpu_secs,
    })
}

fn fail_on(failures: Vec<BenchError>, total: usize) -> Result<(), BenchError> {
    match failures.first() {
        None => Ok(()),
        Some(first) => Err(BenchError::Connections {
            failed: failures.len(),
            total,
            first: first.to_string(),
        }),
    }
}

/// Reads until stopped, recording each stamped `messages` event sent after
/// `run_start`, and answering pings. Returns whether the server disconnected.
async fn subscribe(
    mut conn: Conn,
    stop: CancellationToken,
    received: Arc<AtomicU64>,
    mut recorder: Recorder,
    run_start: u64,
) -> bool {
    let mut disconnected = false;
    // One wait for the stop for the whole run, not a new one per frame.
    let mut stopped = pin!(stop.cancelled());
    loop {
        let next = tokio::select! {
            biased;
            _ = &mut stopped => break,
            m = conn.next() => m,
        };
        match next {
            Some(Ok(Message::Text(text))) => match Frame::classify(&text) {
                Frame::Event => {
                    if let Some(t) = client::stamped_time(&text).filter(|t| *t >= run_start) {
                        recorder.record(now_micros().saturating_sub(t).max(1));
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Frame::Ping if conn.send(Message::text("3")).await.is_err() => {
                    disconnected = true;
                    break;
                }
                Frame::Close => {
                    disconnected = true;
                    break;
                }
                _ => {}
            },
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                disconnected = true;
                break;
            }
            Some(Ok(_)) => {}
        }
    }
    disconnected
}

/// Sends `count` stamped `sendToAll` events at `rate` per second from
/// `start`, catching up in a burst when behind; meanwhile reads (and drops)
/// what the server sends and answers pings. Returns how many were sent, and
/// the connection.
async fn publish(
    mut conn: Conn,
    start: Instant,
    rate: f64,
    count: u64,
    padding: Arc<str>,
) -> Result<(u64, Conn), BenchError> {
    let interval = 1.0 / rate;
    let due = |n: u64| start + Duration::from_secs_f64(interval * n as f64);
    let mut sent = 0u64;
    while sent < count {
        let next = tokio::select! {
            _ = sleep_until(due(sent).into()) => None,
            m = conn.next() => Some(m),
        };
        match next {
            None => {
                let now = Instant::now();
                while sent < count && due(sent) <= now {
                    conn.feed(Message::text(client::publish_frame(now_micros(), &padding)))
                        .await?;
                    sent += 1;
                }
                conn.flush().await?;
            }
            Some(Some(Ok(Message::Text(text)))) => match Frame::classify(&text) {
                Frame::Ping => conn.send(Message::text("3")).await?,
                Frame::Close => return Err(BenchError::Closed),
                _ => {}
            },
            Some(Some(Ok(Message::Close(_)))) | Some(None) => return Err(BenchError::Closed),
            Some(Some(Err(e))) => return Err(e.into()),
            Some(Some(Ok(_))) => {}
        }
    }
    Ok((sent, conn))
}
