//! Connection churn without growth: rounds of clients that connect and leave
//! in every way a network does, then the server must be back where it
//! started: no session, no socket, no WebSocket connection task, the same
//! number of tasks, no socket held, no panic. The
//! short version of `hubbub-bench churn` (docs/reliability.md has a long
//! run's figures).

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Clients of each kind per round.
const PER_KIND: usize = 15;
/// Rounds of churn.
const ROUNDS: usize = 3;

/// One metric's value in Prometheus text (`name` with its labels, if any).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from /metrics"))
}

/// What must return to its baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Load {
    polling: f64,
    websocket: f64,
    sockets: f64,
    tasks: f64,
}

/// `/metrics` over a connection of its own (`Connection: close`): a pooled
/// keep-alive connection could be closed by the server's keep-alive timer
/// (5 s) just as it is reused, while this test waits about that long.
async fn metrics_text(server: &Server) -> String {
    let mut s = TcpStream::connect(server.addr()).await.expect("connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut all = Vec::new();
    timeout(WAIT, s.read_to_end(&mut all))
        .await
        .expect("metrics in time")
        .expect("metrics read");
    let text = String::from_utf8_lossy(&all).into_owned();
    assert!(text.starts_with("HTTP/1.1 200"), "{text:.200}");
    text
}

async fn load(server: &Server) -> Load {
    let text = metrics_text(server).await;
    Load {
        polling: metric(&text, "hubbub_connections_open{transport=\"polling\"}"),
        websocket: metric(&text, "hubbub_connections_open{transport=\"websocket\"}"),
        sockets: metric(&text, "hubbub_sockets_connected"),
        tasks: metric(&text, "hubbub_tasks_alive"),
    }
}

/// The server's side of its TCP connections to `port` that still hold a file
/// descriptor (the process runs other tests at the same time, so its own fd
/// count would not do): entries of /proc/net/tcp with that local port, not
/// listening, with an inode (a socket without one is in TIME_WAIT or orphaned,
/// owned by the kernel alone).
fn server_sockets(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let local_port = cols
                .get(1)
                .and_then(|a| a.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && cols.get(3) != Some(&"0A") && cols.get(9) != Some(&"0")
        })
        .count()
}

/// A WebSocket session that has joined namespace `/`.
async fn joined(server: &Server) -> RawWs {
    let mut ws = RawWs::open(server.addr()).await;
    ws.expect_text("0{").await;
    ws.send(0x81, b"40").await;
    ws.expect_text("40{").await;
    ws
}

/// One round: every kind of arrival and departure at once. Returns the
/// connections that must be held until the server ends them.
async fn round(server: &Server) -> Vec<TcpStream> {
    let addr = server.addr();
    let mut held = Vec::new();
    for _ in 0..PER_KIND {
        // Clean close: Engine.IO close, then a WebSocket close frame.
        let mut ws = joined(server).await;
        ws.send(0x81, b"1").await;
        ws.send(0x88, &[0x03, 0xe8]).await;
        let _ = ws.rest().await;

        // TCP reset (SO_LINGER 0) in the middle of a session.
        let ws = joined(server).await;
        ws.tcp.set_zero_linger().expect("SO_LINGER 0");
        drop(ws);

        // Half-open: connects and never sends (cut off by the request timeout).
        held.push(TcpStream::connect(addr).await.expect("connect"));

        // A WebSocket upgrade started and abandoned: half a request head, then gone.
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {PATH}?EIO=4&transport=websocket HTTP/1.1\r\nUpgrade: websocket\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
        drop(s);

        // An upgrade answered with 101 and then abandoned without a word.
        let ws = RawWs::open(addr).await;
        drop(ws);

        // A polling session abandoned after its handshake (ping timeout ends it).
        server.handshake().await;

        // A probe that never finishes: `2probe` answered, `5` never sent.
        let sid = server.handshake().await;
        let (status, mut ws) = RawWs::request(
            addr,
            &format!("{PATH}?EIO=4&transport=websocket&sid={sid}"),
            b"",
        )
        .await;
        assert!(status.starts_with("HTTP/1.1 101"), "{status}");
        ws.send(0x81, b"2probe").await;
        ws.expect_text("3probe").await;
        held.push(ws.tcp);

        // A client that stops reading (and so never answers a ping).
        let ws = joined(server).await;
        held.push(ws.tcp);
    }
    held
}

#[actix_web::test]
async fn churn_leaves_nothing_behind() {
    let config = EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(300),
        upgrade_timeout: Duration::from_millis(500),
        ..settings()
    };
    let server = Server::start(config);
    server.assert_healthz().await;
    let baseline = load(&server).await;
    let port = server.addr().port();
    assert_eq!(
        (baseline.polling, baseline.websocket, baseline.sockets),
        (0.0, 0.0, 0.0)
    );
    let mut rounds = Vec::new();
    for r in 0..ROUNDS {
        let start = Instant::now();
        let mut held = round(&server).await;
        let peak = load(&server).await;
        // Wait for the server to end every held connection (bounded).
        let deadline = Instant::now() + Duration::from_secs(15);
        for s in &mut held {
            let mut sink = [0u8; 4096];
            loop {
                match timeout_at(deadline, s.read(&mut sink)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => break,
                    Ok(Ok(_)) => {}
                    Err(_) => panic!("round {r}: a connection was never ended by the server"),
                }
            }
        }
        drop(held);
        // Then everything returns to its baseline (bounded).
        let settled = loop {
            let now = load(&server).await;
            if now == baseline {
                break now;
            }
            assert!(
                Instant::now() < deadline,
                "round {r}: {now:?}, baseline {baseline:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Held clients were still connected when `peak` was taken: their
        // sessions' tasks were counted.
        assert!(
            peak.tasks > baseline.tasks,
            "round {r}: tasks not counted: {peak:?}"
        );
        rounds.push((peak, settled, start.elapsed()));
    }
    // File descriptors: the server holds no socket but its listener (the
    // test's HTTP client's keep-alive connections, if any, are closed by 5 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    while server_sockets(port) > 0 {
        assert!(
            Instant::now() < deadline,
            "the server still holds {} sockets",
            server_sockets(port)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (i, (peak, settled, took)) in rounds.iter().enumerate() {
        eprintln!("churn round {i}: peak {peak:?}, settled {settled:?} after {took:?}");
    }
    assert_no_panics();
}
