//! Slow and hostile HTTP clients against the server as `engineio::serve` builds
//! it: each kind is cut off within its documented bound (docs/reliability.md)
//! and normal clients keep being served meanwhile.
//!
//! | attack | bound | what enforces it |
//! |---|---|---|
//! | a connection that never sends | 408, closed after 5 s | actix-http `client_request_timeout` |
//! | request head trickled (slowloris) | 408, closed 5 s after the first byte | `client_request_timeout` |
//! | a later head trickled on a keep-alive connection | closed 5 s after its first byte | `serve::heads` (actix-http times the first head only) |
//! | POST body trickled | 408 `{"code":3,"message":"Request timeout"}` 10 s after the head, session closed | `polling::POST_BODY_TIMEOUT` |
//! | idle keep-alive connection | closed 5 s after its last response | actix-http keep-alive |
//! | oversized request head | 431, closed, at most 128 KiB read | actix-http's head limit (128 KiB, 96 headers) |
//! | pipelined garbage | the earlier requests answered, then 400, closed | actix-http's parser |

use crate::support::*;
use hubbub_engineio::transport::polling::POST_BODY_TIMEOUT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// actix-http's `client_request_timeout`, as `engineio::serve` sets it.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// actix-http's keep-alive, as `engineio::serve` sets it.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Slack over a bound for timers and a loaded machine.
const SLACK: Duration = Duration::from_secs(3);

/// Reads until the server closes the connection (or `limit` passes); returns
/// what was read and when the connection ended.
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> (String, Option<Instant>) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    loop {
        match timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return (
                    String::from_utf8_lossy(&all).into_owned(),
                    Some(Instant::now()),
                );
            }
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&all).into_owned(), None),
        }
    }
}

async fn connect(server: &Server) -> TcpStream {
    TcpStream::connect(server.addr()).await.expect("connect")
}

#[actix_web::test]
async fn connections_that_never_send_get_408_and_are_closed() {
    let server = Server::start(settings());
    let start = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..50 {
        silent.push(connect(&server).await);
    }
    for mut s in silent {
        let (text, closed) = read_to_close(&mut s, HEAD_TIMEOUT + SLACK * 2).await;
        let closed = closed.expect("a silent connection is closed");
        assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
        let after = closed - start;
        assert!(
            after >= HEAD_TIMEOUT - Duration::from_millis(200),
            "{after:?}"
        );
        assert!(after <= HEAD_TIMEOUT + SLACK, "{after:?}");
    }
    server.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn slow_request_heads_are_cut_off() {
    let server = Server::start(settings());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let mut s = connect(&server).await;
        tasks.push(actix_web::rt::spawn(async move {
            let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let mut sent = 0;
            // One byte every 250 ms (the whole head would take 20 s), until
            // the server answers or closes.
            for b in head.iter() {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                sent += 1;
                let mut probe = [0u8; 1];
                if timeout(Duration::from_millis(250), s.peek(&mut probe)).await.is_ok() {
                    break;
                }
            }
            let (text, closed) = read_to_close(&mut s, HEAD_TIMEOUT + SLACK * 2).await;
            (sent, text, closed)
        }));
    }
    for t in tasks {
        let (sent, text, closed) = t.await.expect("slowloris task");
        let closed = closed.expect("a slow head is cut off");
        assert!(
            text.starts_with("HTTP/1.1 408"),
            "{text:?} after {sent} bytes"
        );
        assert!(
            closed - start <= HEAD_TIMEOUT + SLACK,
            "{:?}",
            closed - start
        );
    }
    server.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn slow_post_bodies_are_cut_off_and_close_the_session() {
    let server = Server::start(settings());
    let sid = server.handshake().await;
    let (mut rd, mut wr) = connect(&server).await.into_split();
    let head = format!(
        "POST {PATH}?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n40"
    );
    wr.write_all(head.as_bytes()).await.expect("write head");
    let start = Instant::now();
    // A byte every 200 ms: the 1000-byte body would take over three minutes.
    let trickle = actix_web::rt::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"x").await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0u8; 4096];
    let n = timeout(POST_BODY_TIMEOUT + SLACK, rd.read(&mut buf))
        .await
        .expect("a trickled body is cut off")
        .expect("read the answer");
    let after = start.elapsed();
    trickle.abort();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(
        text.ends_with(&error_body(3, "Request timeout")),
        "{text:?}"
    );
    assert!(
        after >= POST_BODY_TIMEOUT - Duration::from_millis(300),
        "{after:?}"
    );
    // The session is closed: a GET collects its close packet or finds it gone;
    // a new session opens.
    let reply = server
        .get(&format!("EIO=4&transport=polling&sid={sid}"))
        .await;
    assert!(
        reply.body == "1" || reply.status == StatusCode::BAD_REQUEST,
        "{reply:?}"
    );
    server.handshake().await;
    assert_no_panics();
}

#[actix_web::test]
async fn idle_keep_alive_connections_are_closed() {
    let server = Server::start(settings());
    let mut idle = Vec::new();
    for _ in 0..100 {
        let mut s = connect(&server).await;
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("request");
        idle.push(s);
    }
    let answered = Instant::now();
    for mut s in idle {
        let (text, closed) = read_to_close(&mut s, KEEP_ALIVE + SLACK * 2).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text:?}");
        assert!(!text.contains("connection: close"), "{text:?}");
        let closed = closed.expect("an idle keep-alive connection is closed");
        assert!(
            closed - answered <= KEEP_ALIVE + SLACK,
            "{:?}",
            closed - answered
        );
    }
    server.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn oversized_heads_get_431_and_are_closed() {
    let server = Server::start(settings());
    for (name, head) in [
        (
            "one 160 KiB header",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(160 * 1024)
            ),
        ),
        (
            "a 160 KiB request line",
            format!(
                "GET /healthz?{} HTTP/1.1\r\nHost: x\r\n\r\n",
                "a".repeat(160 * 1024)
            ),
        ),
        (
            "200 headers",
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..200)
                    .map(|i| format!("X-H{i}: v\r\n"))
                    .collect::<String>()
            ),
        ),
    ] {
        let mut s = connect(&server).await;
        // The server may close before it has read everything: a failed write is fine.
        let _ = s.write_all(head.as_bytes()).await;
        let (text, closed) = read_to_close(&mut s, WAIT).await;
        assert!(closed.is_some(), "{name}: connection left open");
        assert!(text.starts_with("HTTP/1.1 431"), "{name}: {text:?}");
    }
    server.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn pipelined_garbage_is_refused_after_the_valid_requests() {
    let server = Server::start(settings());
    let mut s = connect(&server).await;
    let mut bytes =
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
            .to_vec();
    bytes.extend_from_slice(b"\x00\xff\xfeGARBAGE \x01\x02 HTTP/9\r\n\r\n");
    s.write_all(&bytes).await.expect("write");
    let (text, closed) = read_to_close(&mut s, WAIT).await;
    assert!(closed.is_some(), "connection left open: {text:?}");
    let statuses: Vec<&str> = text.split("HTTP/1.1 ").skip(1).map(|r| &r[..3]).collect();
    assert_eq!(statuses, ["200", "200", "400"], "{text:?}");
    server.assert_healthz().await;
    assert_no_panics();
}

/// Percentile of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// 400 hostile connections of every kind above, renewed as they are cut off,
/// while a normal client opens sessions and exchanges packets: every one of its
/// requests is answered, with p99 under 2 s even on a loaded machine.
#[actix_web::test]
async fn normal_clients_are_served_during_an_attack() {
    let server = Server::start(settings());
    let addr = server.addr();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut attackers = Vec::new();
    for i in 0..400usize {
        let mut stopped = stopped.clone();
        attackers.push(actix_web::rt::spawn(async move {
            let mut cut_off = 0usize;
            while !*stopped.borrow() {
                let Ok(mut s) = TcpStream::connect(addr).await else {
                    continue;
                };
                let attack = async {
                    match i % 4 {
                        // Silent.
                        0 => {}
                        // Slow head.
                        1 => {
                            for b in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "
                                .iter()
                                .cycle()
                            {
                                if s.write_all(&[*b]).await.is_err() {
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(500)).await;
                            }
                        }
                        // Idle keep-alive.
                        2 => {
                            let _ = s
                                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                                .await;
                        }
                        // Oversized head, then garbage.
                        _ => {
                            let _ = s.write_all(&vec![b'a'; 140 * 1024]).await;
                            let _ = s.write_all(b"\r\n\x00\xff\r\n\r\n").await;
                        }
                    }
                    let mut sink = [0u8; 1024];
                    while let Ok(n) = s.read(&mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                };
                tokio::select! {
                    _ = attack => cut_off += 1,
                    _ = stopped.changed() => {}
                }
                // Renewed, but not in a busy loop: this is a slow attack, not a flood.
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            cut_off
        }));
    }
    // Let the attack build up, then measure a normal client for 12 s (more
    // than two rounds of every bound).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_bytes();
    let mut latencies = Vec::new();
    let until = Instant::now() + Duration::from_secs(12);
    while Instant::now() < until {
        let t = Instant::now();
        let sid = server.handshake().await;
        latencies.push(t.elapsed());
        let t = Instant::now();
        server
            .post(&format!("EIO=4&transport=polling&sid={sid}"), "40")
            .await
            .assert_ok("ok");
        latencies.push(t.elapsed());
        let t = Instant::now();
        let reply = server
            .get(&format!("EIO=4&transport=polling&sid={sid}"))
            .await;
        assert!(reply.body.starts_with("40{\"sid\""), "{reply:?}");
        latencies.push(t.elapsed());
        server
            .post(&format!("EIO=4&transport=polling&sid={sid}"), "1")
            .await
            .assert_ok("ok");
    }
    let rss_during = rss_bytes();
    let _ = stop.send(true);
    let mut cut_off = 0;
    for a in attackers {
        cut_off += a.await.expect("attacker");
    }
    latencies.sort();
    let (p50, p99, max) = (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
    );
    eprintln!(
        "attack: 400 connections, {cut_off} cut off and renewed; normal client: {} requests, p50 {p50:.1} ms, p99 {p99:.1} ms, max {max:.1} ms; process RSS {:.1} -> {:.1} MiB",
        latencies.len(),
        rss_before as f64 / 1048576.0,
        rss_during as f64 / 1048576.0,
    );
    assert!(
        cut_off >= 200,
        "only {cut_off} hostile connections were cut off"
    );
    // Generous for a shared, loaded machine (the attackers run on the same
    // single thread as the client here); the figures measured are in
    // docs/reliability.md.
    assert!(p99 < 2000.0, "p99 {p99:.1} ms during the attack");
    // Every hostile connection holds at most a head's worth of buffer.
    assert!(
        rss_during.saturating_sub(rss_before) < 64 * 1024 * 1024,
        "RSS grew {} bytes",
        rss_during - rss_before
    );
    server.assert_healthz().await;
    assert_no_panics();
}

/// This process's resident memory (server and test client together).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Reads one response with a `content-length` body off a keep-alive connection.
async fn read_response(stream: &mut TcpStream) -> String {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + WAIT;
    loop {
        let text = String::from_utf8_lossy(&all).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .expect("a content-length");
            if all.len() >= end + 4 + length {
                return text;
            }
        }
        match timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => panic!("closed before a whole response: {text:?}"),
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no whole response in {WAIT:?}: {text:?}"),
        }
    }
}

const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";

/// Writes `bytes` one at a time, `gap` apart.
async fn trickle(stream: &mut TcpStream, bytes: &[u8], gap: Duration) {
    for b in bytes {
        stream.write_all(&[*b]).await.expect("write");
        tokio::time::sleep(gap).await;
    }
}

#[actix_web::test]
async fn slow_later_request_heads_on_keep_alive_connections_are_cut_off() {
    let server = Server::start(settings());
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let mut s = connect(&server).await;
        tasks.push(actix_web::rt::spawn(async move {
            s.write_all(HEALTHZ).await.expect("first request");
            let first = read_response(&mut s).await;
            // Idle for a while within keep-alive, so that the cut-off below is
            // measured from the head's first byte, not from the response.
            tokio::time::sleep(Duration::from_secs(1)).await;
            let head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
            let start = Instant::now();
            let mut sent = 0;
            // One byte every 250 ms (the whole head would take 20 s), until
            // the server answers or closes.
            for b in head.iter() {
                if s.write_all(&[*b]).await.is_err() {
                    break;
                }
                sent += 1;
                let mut probe = [0u8; 1];
                if timeout(Duration::from_millis(250), s.peek(&mut probe)).await.is_ok() {
                    break;
                }
            }
            let (text, closed) = read_to_close(&mut s, HEAD_TIMEOUT + SLACK * 2).await;
            (first, start, sent, head.len(), text, closed)
        }));
    }
    // Meanwhile a client whose later heads arrive slowly but each within the
    // bound is served on one connection: 3 heads of 2 s each (the clock is per
    // head, not per connection).
    let mut patient = connect(&server).await;
    patient.write_all(HEALTHZ).await.expect("write");
    assert!(
        read_response(&mut patient)
            .await
            .starts_with("HTTP/1.1 200")
    );
    for _ in 0..3 {
        trickle(
            &mut patient,
            HEALTHZ,
            Duration::from_millis(2000 / HEALTHZ.len() as u64),
        )
        .await;
        let reply = read_response(&mut patient).await;
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply:?}");
    }
    for t in tasks {
        let (first, start, sent, len, text, closed) = t.await.expect("slow head task");
        assert!(first.starts_with("HTTP/1.1 200"), "{first:?}");
        let closed = closed.expect("a slow later head is cut off");
        // Closed without an answer (actix-http may still be writing the last
        // response when the clock runs out, so no 408).
        assert_eq!(text, "", "after {sent} bytes");
        assert!(sent < len, "the whole head went through");
        let after = closed - start;
        assert!(
            after >= HEAD_TIMEOUT - Duration::from_millis(300),
            "{after:?}"
        );
        assert!(after <= HEAD_TIMEOUT + SLACK, "{after:?}");
    }
    server.assert_healthz().await;
    assert_no_panics();
}
