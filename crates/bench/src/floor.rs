//! The floor scenario: what this machine's kernel needs to deliver one broadcast,
//! with no Socket.IO server at all. A writer thread sends one WebSocket text frame
//! of the benchmark's size to each of `connections` loopback TCP connections (one
//! `write` each, as a server without coalescing does), `rate` broadcasts per
//! second; a reader thread on another CPU waits in `epoll_wait` and reads them, as
//! a load tool does. Reports the time one broadcast's writes take (the least any
//! server on this machine needs before its last recipient has the frame) and the
//! writer's CPU time per write, which on loopback includes the receiving side's
//! TCP processing. Bounded: `broadcasts` rounds, then the reader drains.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{BenchError, Latency, latency_histogram};

/// A floor run.
#[derive(Debug, Clone)]
pub struct FloorConfig {
    /// Receiving connections (one frame each per broadcast).
    pub connections: usize,
    /// WebSocket payload bytes per frame.
    pub size: usize,
    /// Broadcasts in all.
    pub broadcasts: usize,
    /// Broadcasts per second.
    pub rate: f64,
    /// CPU the writer thread is pinned to, if any.
    pub writer_cpu: Option<usize>,
    /// CPU the reader thread is pinned to, if any.
    pub reader_cpu: Option<usize>,
}

/// The outcome of a floor run.
#[derive(Debug, Clone, Serialize)]
pub struct FloorReport {
    /// Receiving connections.
    pub connections: usize,
    /// Bytes per frame on the wire (header included).
    pub frame_bytes: usize,
    /// Broadcasts written.
    pub broadcasts: usize,
    /// Time to write one broadcast's frames, in milliseconds.
    pub broadcast_ms: Latency,
    /// Writer thread CPU time per frame written, in microseconds.
    pub writer_cpu_us_per_write: f64,
    /// Reader thread CPU time per frame read, in microseconds.
    pub reader_cpu_us_per_frame: f64,
    /// Bytes the reader received (all of them, or the run failed).
    pub bytes_received: u64,
}

impl FloorReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        format!(
            "floor     {} connections, {} B frames, {} broadcasts\n\
             write one broadcast: p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms\n\
             writer CPU per write {:.2} µs, reader CPU per frame {:.2} µs\n",
            self.connections,
            self.frame_bytes,
            self.broadcasts,
            self.broadcast_ms.p50,
            self.broadcast_ms.p99,
            self.broadcast_ms.max,
            self.writer_cpu_us_per_write,
            self.reader_cpu_us_per_frame,
        )
    }
}

/// Runs the floor scenario (blocking: threads of its own).
pub fn run(config: FloorConfig) -> Result<FloorReport, BenchError> {
    if config.connections == 0
        || config.connections > 20_000
        || config.broadcasts == 0
        || config.broadcasts > 1_000_000
        || config.size > 60_000
        || !(config.rate > 0.0 && config.rate <= 100_000.0)
    {
        return Err(BenchError::Setting(
            "--connections 1..=20000, --broadcasts 1..=1000000, --size <= 60000, --rate (0, 100000]".into(),
        ));
    }
    let frame = ws_text_frame(config.size);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut readers = Vec::with_capacity(config.connections);
    let mut writers = Vec::with_capacity(config.connections);
    for _ in 0..config.connections {
        let r = TcpStream::connect(addr)?;
        let (w, _) = listener.accept()?;
        w.set_nodelay(true)?;
        r.set_nonblocking(true)?;
        readers.push(r);
        writers.push(w);
    }
    let expected = (config.broadcasts * config.connections * frame.len()) as u64;
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (received, stop) = (received.clone(), stop.clone());
        let cpu = config.reader_cpu;
        std::thread::spawn(move || -> std::io::Result<f64> {
            pin(cpu);
            read_all(&mut readers, expected, &received, &stop)?;
            Ok(thread_cpu_secs())
        })
    };
    let writer = {
        let cpu = config.writer_cpu;
        let (broadcasts, rate) = (config.broadcasts, config.rate);
        std::thread::spawn(move || -> std::io::Result<(Vec<u64>, f64)> {
            pin(cpu);
            let period = Duration::from_secs_f64(1.0 / rate);
            let start = Instant::now();
            let mut times = Vec::with_capacity(broadcasts);
            for i in 0..broadcasts {
                let due = start + period * i as u32;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let t0 = Instant::now();
                for w in &mut writers {
                    w.write_all(&frame)?;
                }
                times.push(t0.elapsed().as_micros() as u64);
            }
            Ok((times, thread_cpu_secs()))
        })
    };
    let written = writer.join();
    let (times, writer_cpu) = match written {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            stop.store(true, Ordering::Release);
            return Err(e.into());
        }
        Err(_) => {
            stop.store(true, Ordering::Release);
            return Err(BenchError::Setting("the writer thread panicked".into()));
        }
    };
    // The reader stops by itself once everything arrived; bounded in case not.
    let deadline = Instant::now() + Duration::from_secs(30);
    while received.load(Ordering::Acquire) < expected && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Release);
    let reader_cpu = match reader.join() {
        Ok(r) => r?,
        Err(_) => return Err(BenchError::Setting("the reader thread panicked".into())),
    };
    let bytes_received = received.load(Ordering::Acquire);
    if bytes_received != expected {
        return Err(BenchError::Protocol(format!(
            "the reader got {bytes_received} of {expected} bytes"
        )));
    }
    let mut h = latency_histogram();
    for t in &times {
        h.saturating_record((*t).max(1));
    }
    let writes = (config.broadcasts * config.connections) as f64;
    Ok(FloorReport {
        connections: config.connections,
        frame_bytes: ws_text_frame(config.size).len(),
        broadcasts: config.broadcasts,
        broadcast_ms: Latency::from_micros(&h),
        writer_cpu_us_per_write: writer_cpu * 1e6 / writes,
        reader_cpu_us_per_frame: reader_cpu * 1e6 / writes,
        bytes_received,
    })
}

/// A server-to-client WebSocket text frame carrying `size` bytes.
fn ws_text_frame(size: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(size + 4);
    f.push(0x81);
    if size < 126 {
        f.push(size as u8);
    } else {
        f.push(126);
        f.extend_from_slice(&(size as u16).to_be_bytes());
    }
    f.resize(f.len() + size, b'x');
    f
}

/// Reads every connection through one epoll set until `expected` bytes arrived or `stop`.
fn read_all(
    streams: &mut [TcpStream],
    expected: u64,
    received: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    // SAFETY: plain epoll system calls on descriptors this function's streams own;
    // the event buffer outlives every call that writes into it.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if ep < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let result = (|| {
        for (i, s) in streams.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: see above.
            if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, s.as_raw_fd(), &mut ev) } < 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        while total < expected && !stop.load(Ordering::Acquire) {
            // SAFETY: see above.
            let n = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, 100) };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            for ev in &events[..n as usize] {
                let s = &mut streams[ev.u64 as usize];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => total += k as u64,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
            }
            received.store(total, Ordering::Release);
        }
        Ok(())
    })();
    // SAFETY: `ep` is this function's own descriptor, closed once.
    unsafe { libc::close(ep) };
    result
}

/// Pins the calling thread to `cpu` (best effort: an unavailable CPU leaves it unpinned).
fn pin(cpu: Option<usize>) {
    let Some(cpu) = cpu else { return };
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// CPU time (user + system) of the calling thread, in seconds.
fn thread_cpu_secs() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage only writes into the struct it is given, which outlives the call.
    if unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut u) } != 0 {
        return 0.0;
    }
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(u.ru_utime) + tv(u.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_websocket_text_frames() {
        assert_eq!(ws_text_frame(3), vec![0x81, 3, b'x', b'x', b'x']);
        let f = ws_text_frame(200);
        assert_eq!(&f[..4], &[0x81, 126, 0, 200]);
        assert_eq!(f.len(), 204);
    }

    #[test]
    fn a_small_run_delivers_every_byte() {
        let r = run(FloorConfig {
            connections: 20,
            size: 130,
            broadcasts: 5,
            rate: 1000.0,
            writer_cpu: None,
            reader_cpu: None,
        })
        .unwrap();
        assert_eq!(
            r.bytes_received,
            20 * 5 * 134,
            "130 bytes after a 4-byte header"
        );
        assert_eq!(r.broadcasts, 5);
    }
}
