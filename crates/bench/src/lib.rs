//! The load tool behind `hubbub-bench`: a Socket.IO v5 client over WebSocket
//! spoken by hand (Engine.IO v4 open packet, `40` CONNECT, `2`/`3` heartbeat),
//! and the scenarios built on it: [`fanout`], [`saturate`], [`storm`]
//! (connect-storm), [`idle`], [`churn`] (a leak soak, raw HTTP and WebSocket),
//! [`polling`] (HTTP long-polling, direct or forwarded through another replica) and
//! [`floor`] (the kernel's cost of a broadcast, no server at all). It works
//! against any Socket.IO server, hubbub or not.
//!
//! Every run is bounded in count and time and stops by itself; it only talks
//! to the URLs it is given. It depends on no other hubbub crate (checked by
//! `crates/server/tests/layering.rs`): what it measures is the wire, so it works the
//! same against hubbub, socketioxide or Node's socket.io.

pub mod churn;
pub mod client;
pub mod fanout;
pub mod floor;
pub mod idle;
pub mod polling;
pub mod saturate;
pub mod storm;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Why a benchmark run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The URL is not `ws://` or `http://` with a host and port.
    #[error("bad url {url:?}: {reason}")]
    Url {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A socket operation failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The WebSocket layer failed.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server said something the Socket.IO v5 handshake does not allow.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server closed the connection during the handshake.
    #[error("connection closed during the handshake")]
    Closed,
    /// The handshake did not finish in time.
    #[error("handshake timed out after {0:?}")]
    Timeout(Duration),
    /// Too many connections failed for the figures to mean anything.
    #[error("{failed} of {total} connections failed; first error: {first}")]
    Connections {
        /// How many failed.
        failed: usize,
        /// How many were attempted.
        total: usize,
        /// The first failure.
        first: String,
    },
    /// A setting is outside what the tool accepts.
    #[error("invalid setting: {0}")]
    Setting(String),
}

/// Microseconds since the Unix epoch: the shared clock of publishers (which
/// stamp it into each message) and subscribers (which subtract it).
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A latency histogram in microseconds, 1 µs ..= 10 min, 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // unwrap: the bounds are constants that hdrhistogram accepts (low >= 1, high >= 2 * low, sigfig <= 5).
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl Latency {
    /// Summarises a histogram recorded in microseconds.
    pub fn from_micros(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Latency {
                count: 0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        Latency {
            count: h.len(),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }

    /// One table row: `p50 p90 p99 p99.9 max` in ms.
    pub fn row(&self) -> String {
        format!(
            "p50 {:.3} ms | p90 {:.3} ms | p99 {:.3} ms | p99.9 {:.3} ms | max {:.3} ms",
            self.p50, self.p90, self.p99, self.p999, self.max
        )
    }
}

/// Raises the soft open-file limit to at least `want` (and the hard limit too
/// when the process may), returning the soft limit now in force (Linux,
/// where `rlim_t` is `u64`).
pub fn raise_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own; RLIMIT_NOFILE is a valid resource.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return 0;
    }
    if lim.rlim_cur >= want {
        return lim.rlim_cur;
    }
    if lim.rlim_max < want {
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: want,
        };
        // SAFETY: setrlimit reads the struct; failure (no privilege) is handled below.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            return want;
        }
    }
    lim.rlim_cur = want.min(lim.rlim_max);
    // SAFETY: as above; the soft limit does not exceed the hard one.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        lim.rlim_cur
    } else {
        0
    }
}

/// Resident memory of a process in KiB, from `/proc/PID/status` (`VmRSS`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// CPU time (user + system) a process has used, in seconds, from
/// `/proc/PID/stat`.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name in parentheses: state is the first, utime the 12th, stime the 13th.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks as f64 / hz as f64)
}

/// CPU time (user + system) this process has used, in seconds.
pub fn own_cpu_secs() -> f64 {
    cpu_secs(std::process::id()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_summary_in_milliseconds() {
        let mut h = latency_histogram();
        for us in 1..=1000u64 {
            h.record(us * 10).unwrap();
        }
        let l = Latency::from_micros(&h);
        assert_eq!(l.count, 1000);
        assert!((l.p50 - 5.0).abs() < 0.01, "{l:?}");
        assert!((l.max - 10.0).abs() < 0.01, "{l:?}");
    }

    #[test]
    fn empty_histogram_summarises_to_zero() {
        assert_eq!(Latency::from_micros(&latency_histogram()).count, 0);
    }

    #[test]
    fn own_cpu_time_is_readable() {
        // Spin until the kernel has charged this process a clock tick: on a loaded machine
        // 30 ms of wall time may not be one tick of CPU time. Bounded by 10 s of wall time.
        let spin = std::time::Instant::now();
        while cpu_secs(std::process::id()).unwrap() == 0.0
            && spin.elapsed() < Duration::from_secs(10)
        {}
        assert!(cpu_secs(std::process::id()).unwrap() > 0.0);
    }

    #[test]
    fn own_rss_is_readable() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
