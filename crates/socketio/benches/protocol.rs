//! Protocol micro-benchmarks (criterion): the Engine.IO polling payload codec,
//! the Socket.IO packet codec for typical chat events (small and 4 KiB), and
//! an in-process broadcast to 10,000 sockets through the `MemoryAdapter`.
//!
//! ```sh
//! cargo bench --bench protocol -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The broadcast sockets have no network: `socketio::testing::attach_detached_sockets`
//! joins them to the namespace on sessions without a transport and hands back
//! each one's outbound queue. The measured part is `ns.broadcast().emit(..)`
//! (encode once, queue the shared frame for every socket); draining the queues
//! happens between measurements, outside the timing.
//! The `admin` group measures what the admin UI adds to a server-side emit to one
//! socket: off, on in production mode (no hook is set: the same path), and on in
//! development mode (every emit is also reported to the admin namespace).
//! Results and the machine they were taken on: `docs/performance.md`,
//! `docs/admin-ui.md`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use bytestring::ByteString;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hubbub_engineio::{Frame, payload};
use hubbub_socketio::packet::{self, EventPayload, PacketType};
use hubbub_socketio::testing::{DetachedSocket, attach_detached_sockets};
use hubbub_socketio::{Io, IoConfig, MemoryAdapter};
use serde_json::{Value, json};

/// Sockets in the broadcast benchmark.
const RECIPIENTS: usize = 10_000;

/// A chat message as the application broadcasts it, with `text_len` bytes of text.
fn chat_message(text_len: usize) -> Value {
    json!({
        "id": 1_234_567,
        "name": "alice",
        "text": "x".repeat(text_len),
        "ts": 1_764_800_000_000u64,
    })
}

/// The wire form (without the Engine.IO `4`) of a `messages` event.
fn chat_event_wire(text_len: usize) -> String {
    let args = [chat_message(text_len)];
    let payload = EventPayload {
        name: "messages",
        args: &args,
    };
    let text = packet::encode_message(PacketType::Event, 0, "/", None, Some(&payload));
    text[1..].to_owned()
}

fn engineio_payload(c: &mut Criterion) {
    let mut g = c.benchmark_group("engineio_payload");
    // A typical POST: three messages and a pong.
    let post = ByteString::from(format!(
        "4{}\u{1e}4{}\u{1e}4{}\u{1e}3",
        chat_event_wire(20),
        chat_event_wire(40),
        chat_event_wire(80)
    ));
    g.throughput(Throughput::Bytes(post.len() as u64));
    g.bench_function("decode_4_packets", |b| {
        b.iter(|| payload::decode(black_box(post.clone())).map(|p| p.len()))
    });
    let binary = ByteString::from(format!(
        "4{}\u{1e}bAQIDBAUGBwgJCgsMDQ4PEA==",
        chat_event_wire(20)
    ));
    g.throughput(Throughput::Bytes(binary.len() as u64));
    g.bench_function("decode_text_and_binary", |b| {
        b.iter(|| payload::decode(black_box(binary.clone())).map(|p| p.len()))
    });
    // A typical GET answer: ten broadcast messages and a ping.
    let mut frames: Vec<Frame> = (0..10)
        .map(|i| Frame::message(&chat_event_wire(20 + 10 * i)))
        .collect();
    frames.push(Frame::ping());
    let encoded_len = payload::encode(&frames).len();
    g.throughput(Throughput::Bytes(encoded_len as u64));
    g.bench_function("encode_11_frames", |b| {
        b.iter(|| payload::encode(black_box(&frames)))
    });
    let with_binary = [
        Frame::message(&chat_event_wire(20)),
        Frame::Binary(Bytes::from(vec![7u8; 1024])),
    ];
    g.throughput(Throughput::Bytes(payload::encode(&with_binary).len() as u64));
    g.bench_function("encode_text_and_1k_binary", |b| {
        b.iter(|| payload::encode(black_box(&with_binary)))
    });
    g.finish();
}

fn socketio_packet(c: &mut Criterion) {
    let mut g = c.benchmark_group("socketio_packet");
    for (label, text_len) in [("small", 20), ("4k", 4096)] {
        let wire = chat_event_wire(text_len);
        g.throughput(Throughput::Bytes(wire.len() as u64));
        g.bench_function(format!("parse_event_{label}"), |b| {
            b.iter(|| packet::parse(black_box(&wire)).map(|p| p.attachments))
        });
        let with_ack = format!("2{}{}", 17, &wire[1..]);
        g.bench_function(format!("parse_event_with_ack_{label}"), |b| {
            b.iter(|| packet::parse(black_box(&with_ack)).map(|p| p.id))
        });
        let args = [chat_message(text_len)];
        g.bench_function(format!("encode_event_{label}"), |b| {
            b.iter(|| {
                let payload = EventPayload {
                    name: "messages",
                    args: black_box(&args),
                };
                packet::encode_message(PacketType::Event, 0, "/", None, Some(&payload))
            })
        });
    }
    g.finish();
}

/// Empties every queue; returns how many frames there were.
fn drain(sockets: &mut [DetachedSocket]) -> usize {
    let mut n = 0;
    for s in sockets.iter_mut() {
        while s.rx.try_recv().is_some() {
            n += 1;
        }
    }
    n
}

fn broadcast(c: &mut Criterion) {
    let io = Io::new(
        IoConfig::default(),
        Arc::new(MemoryAdapter),
        Arc::new(hubbub_socketio::SocketMetrics::detached()),
    );
    let ns = io.of("/");
    let mut sockets = attach_detached_sockets(&ns, RECIPIENTS, 16);
    assert_eq!(ns.local_socket_count(), RECIPIENTS);

    let mut g = c.benchmark_group("broadcast");
    g.throughput(Throughput::Elements(RECIPIENTS as u64));
    for (label, text_len) in [("small", 20), ("4k", 4096)] {
        let args = [chat_message(text_len)];
        // Every socket gets exactly one frame per emit, and stays connected.
        ns.broadcast().emit("messages", &args);
        assert_eq!(drain(&mut sockets), RECIPIENTS);
        g.bench_function(format!("emit_to_10k_sockets_{label}"), |b| {
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    ns.broadcast().emit("messages", black_box(&args));
                    measured += start.elapsed();
                    drain(&mut sockets);
                }
                measured
            })
        });
        // A room of 100 among the 10,000.
        let room_args = args.clone();
        for s in sockets.iter().take(100) {
            s.socket.join("lobby");
        }
        g.throughput(Throughput::Elements(100));
        g.bench_function(format!("emit_to_room_of_100_among_10k_{label}"), |b| {
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    ns.to("lobby").emit("messages", black_box(&room_args));
                    measured += start.elapsed();
                    drain(&mut sockets);
                }
                measured
            })
        });
        g.throughput(Throughput::Elements(RECIPIENTS as u64));
    }
    g.bench_function("drain_10k_queues_one_frame_each", |b| {
        let args = [chat_message(20)];
        b.iter_custom(|iters| {
            let mut measured = Duration::ZERO;
            for _ in 0..iters {
                ns.broadcast().emit("messages", &args);
                let start = Instant::now();
                black_box(drain(&mut sockets));
                measured += start.elapsed();
            }
            measured
        })
    });
    g.finish();
    assert!(
        sockets.iter().all(|s| s.socket.connected()),
        "a socket was closed as slow"
    );
}

/// `server_stats` reads nothing here: the benchmark has no engine.
struct NoEngine;

impl hubbub_socketio::admin::EngineCounters for NoEngine {
    fn read(&self) -> hubbub_socketio::admin::protocol::EngineReading {
        Default::default()
    }
}

fn admin(c: &mut Criterion) {
    use hubbub_socketio::admin::{self, AdminAuth, AdminMode, AdminSettings, MemorySessionStore};
    // The admin namespace's stats ticker needs a runtime; it never fires during a run.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = rt.enter();
    let mut g = c.benchmark_group("admin");
    let args = [chat_message(20)];
    for mode in ["off", "production", "development"] {
        let io = Io::new(
            IoConfig::default(),
            Arc::new(MemoryAdapter),
            Arc::new(hubbub_socketio::SocketMetrics::detached()),
        );
        let ns = io.of("/");
        let _handle = (mode != "off").then(|| {
            admin::install(
                &io,
                AdminSettings {
                    namespace: "/admin".into(),
                    auth: AdminAuth::Disabled,
                    readonly: false,
                    mode: if mode == "development" {
                        AdminMode::Development
                    } else {
                        AdminMode::Production
                    },
                    hostname: "bench".into(),
                    allowed_origins: vec![],
                },
                Arc::new(MemorySessionStore::default()),
                Arc::new(NoEngine),
            )
            .expect("admin installs")
        });
        // One dashboard listening, when the admin namespace exists.
        let mut dashboards = match io.namespace("/admin") {
            Some(admin_ns) => attach_detached_sockets(&admin_ns, 1, 1024),
            None => Vec::new(),
        };
        let mut sockets = attach_detached_sockets(&ns, 1, 1024);
        g.bench_function(format!("emit_to_one_socket_{mode}"), |b| {
            b.iter_custom(|iters| {
                let mut measured = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let _ = sockets[0].socket.emit("messages", black_box(&args));
                    measured += start.elapsed();
                    drain(&mut sockets);
                    drain(&mut dashboards);
                }
                measured
            })
        });
    }
    g.finish();
}

criterion_group!(benches, engineio_payload, socketio_packet, broadcast, admin);
criterion_main!(benches);
