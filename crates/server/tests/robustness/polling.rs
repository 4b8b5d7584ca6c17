use crate::support::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

#[actix_web::test]
async fn oversize_post_closes_only_that_session() {
    let srv = Server::start(settings());
    let mut canary = srv.polling_client().await;
    let victim = srv.polling_client().await;
    let q = victim.query();

    // Exactly maxPayload is fine (an event nobody handles).
    let at_limit = format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 10));
    assert_eq!(at_limit.len(), MAX_PAYLOAD);
    srv.post(&q, at_limit).await.assert_ok("ok");
    // One byte more is not, and ends the session.
    let over = format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 9));
    srv.post(&q, over)
        .await
        .assert_error(413, 3, "Payload too large");
    srv.get(&q).await.assert_error(400, 1, "Session ID unknown");
    srv.post(&q, "6")
        .await
        .assert_error(400, 1, "Session ID unknown");

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn invalid_payloads_close_only_that_session() {
    let srv = Server::start(settings());
    let mut canary = srv.polling_client().await;
    for body in [
        &b"abc"[..],
        b"",
        b"4ok\x1e",
        b"b!!!",
        b"4a\x1e9",
        b"0",
        b"5",
        b"4abc",
        b"42{}",
        b"\xff\xfe4",
    ] {
        let sid = srv.handshake().await;
        let q = format!("EIO=4&transport=polling&sid={sid}");
        let reply = srv.post(&q, body).await;
        reply.assert_error(400, 3, "Bad request");
        srv.get(&q).await.assert_error(400, 1, "Session ID unknown");
    }
    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

/// Messages of one session are handled one at a time, in order; a second
/// POST while one is still being read would break that, so (as in the
/// reference, "data request overlap from client") it is refused and the
/// session closed.
#[actix_web::test]
async fn overlapping_posts_close_the_session() {
    let srv = Server::start(settings());
    let mut canary = srv.polling_client().await;
    let mut overlapped = false;
    for _attempt in 0..10 {
        let victim = srv.polling_client().await;
        let q = victim.query();
        // The first POST (on a raw connection) sends its head and part of
        // its body, then waits.
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let addr = srv.addr();
        let head = format!(
            "POST {PATH}?{q} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 3\r\nConnection: close\r\n\r\n6"
        );
        let first = actix_web::rt::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
            tcp.write_all(head.as_bytes()).await.expect("write head");
            let _ = released.await;
            tcp.write_all(b"\x1e6").await.expect("write rest");
            let mut answer = Vec::new();
            tcp.read_to_end(&mut answer).await.expect("read answer");
            let answer = String::from_utf8_lossy(&answer).into_owned();
            let status = answer
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("status line");
            let body = answer
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or_default()
                .to_owned();
            (StatusCode::from_u16(status).expect("status"), body)
        });
        for _ in 0..3 {
            srv.assert_healthz().await;
        }
        let second = srv.post(&q, "6").await;
        let _ = release.send(());
        let first = first.await.expect("first POST");
        if second.status == StatusCode::OK {
            // The second POST was handled before the first one started.
            assert_eq!(first, (StatusCode::OK, "ok".to_owned()));
            continue;
        }
        second.assert_error(400, 3, "Bad request");
        // The first one finishes reading its body; its packets are noops.
        assert_eq!(first, (StatusCode::OK, "ok".to_owned()));
        srv.get(&q).await.assert_error(400, 1, "Session ID unknown");
        overlapped = true;
        break;
    }
    assert!(overlapped, "the POSTs never overlapped");
    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn second_concurrent_get_closes_the_session() {
    let srv = Server::start(settings());
    let mut canary = srv.polling_client().await;
    let sid = srv.handshake().await;
    let q = format!("EIO=4&transport=polling&sid={sid}");

    // Nothing is queued, so both GETs would wait; whichever the server takes
    // second is refused and the one held open is released with a close.
    let a = srv.spawn_get(&q);
    let b = srv.spawn_get(&q);
    let (a, b) = (a.await.expect("first GET"), b.await.expect("second GET"));
    let refused = (StatusCode::BAD_REQUEST, error_body(3, "Bad request"));
    let released = (StatusCode::OK, "1".to_owned());
    assert!(
        (a == refused && b == released) || (a == released && b == refused),
        "{a:?} / {b:?}"
    );
    srv.get(&q).await.assert_error(400, 1, "Session ID unknown");

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn client_close_releases_the_pending_get_with_a_noop() {
    let srv = Server::start(settings());
    let mut canary = srv.polling_client().await;
    // The GET must be pending when the close arrives. There is no event to
    // await for that, so the server gets a head start (a few requests on
    // other connections); when the close still wins, that outcome is checked
    // too and the scenario retried.
    let mut released = false;
    for _attempt in 0..10 {
        let sid = srv.handshake().await;
        let q = format!("EIO=4&transport=polling&sid={sid}");
        let pending = srv.spawn_get(&q);
        for _ in 0..3 {
            srv.assert_healthz().await;
        }
        srv.post(&q, "1").await.assert_ok("ok");
        let got = pending.await.expect("pending GET");
        srv.get(&q).await.assert_error(400, 1, "Session ID unknown");
        if got == (StatusCode::OK, "6".to_owned()) {
            released = true;
            break;
        }
        // The close was handled before the GET arrived.
        assert_eq!(
            got,
            (StatusCode::BAD_REQUEST, error_body(1, "Session ID unknown"))
        );
    }
    assert!(released, "the GET was never pending when the close arrived");

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

/// One generated POST body.
fn random_body(rng: &mut StdRng) -> Vec<u8> {
    const ALPHABET: &[u8] = b"0123456789b\x1e[]{}\",/-:_placeholdertruenum +=ABCxyz\\\n";
    const JSON: &[&str] = &[
        "",
        "[]",
        r#"["who"]"#,
        r#"["x",1,"2",{"3":[true]}]"#,
        "{}",
        r#"{"token":1}"#,
        "[",
        r#"{"a":"#,
        r#""s""#,
        "null",
        "1e999",
        r#"[{"_placeholder":true,"num":0}]"#,
        r#"["x",{"_placeholder":true,"num":7}]"#,
        r#"["disconnect"]"#,
        r#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"#,
    ];
    match rng.random_range(0..100u32) {
        // Raw bytes, usually not UTF-8.
        0..15 => {
            let len = rng.random_range(0..64usize);
            (0..len).map(|_| rng.random::<u8>()).collect()
        }
        // Any Unicode.
        15..25 => {
            let len = rng.random_range(0..32usize);
            (0..len)
                .map(|_| rng.random::<char>())
                .collect::<String>()
                .into_bytes()
        }
        // Characters that matter to the parsers.
        25..50 => {
            let len = rng.random_range(0..80usize);
            (0..len)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())])
                .collect()
        }
        // A CONNECT and valid packets, sometimes with one broken record.
        53..70 => {
            const VALID: &[&str] = &[
                "2",
                "3",
                "6",
                "2probe",
                "40",
                "40/x,",
                r#"42["x"]"#,
                r#"421["who"]"#,
                r#"42["x",1,"2",{"3":[true]}]"#,
                "451-[\"x\",{\"_placeholder\":true,\"num\":0}]\u{1e}bAQID",
                r#"437["late ack"]"#,
                "1",
            ];
            let mut records = vec!["40".to_owned()];
            for _ in 0..rng.random_range(0..5usize) {
                records.push(VALID[rng.random_range(0..VALID.len())].to_owned());
            }
            if rng.random_bool(0.2) {
                let i = rng.random_range(0..records.len());
                let cut = rng.random_range(0..=records[i].len());
                records[i] = records[i][..cut].to_owned() + "}";
            }
            records.join("\u{1e}").into_bytes()
        }
        // Over maxPayload.
        50..53 => {
            let mut body = b"4".to_vec();
            body.resize(MAX_PAYLOAD + rng.random_range(1..500usize), b'x');
            body
        }
        // Plausible records, joined, with mistakes.
        _ => {
            let records = rng.random_range(1..6usize);
            let mut out = Vec::new();
            for i in 0..records {
                if i > 0 {
                    out.push(0x1e);
                }
                match rng.random_range(0..10u32) {
                    0 => out.push(b"0123456789"[rng.random_range(0..10usize)]),
                    1 => out.extend_from_slice(b"2probe"),
                    2 => {
                        out.push(b'b');
                        let n = rng.random_range(0..12usize);
                        let raw: Vec<u8> = (0..n).map(|_| rng.random::<u8>()).collect();
                        use base64::Engine as _;
                        let mut b64 = base64::engine::general_purpose::STANDARD.encode(raw);
                        if rng.random_bool(0.3) {
                            b64.push('!');
                        }
                        out.extend_from_slice(b64.as_bytes());
                    }
                    _ => {
                        // An Engine.IO message carrying something Socket.IO-like.
                        out.push(b'4');
                        out.push(b"0123456789"[rng.random_range(0..10usize)]);
                        if rng.random_bool(0.3) {
                            let n = rng.random_range(0..4u32);
                            out.extend_from_slice(format!("{n}-").as_bytes());
                        }
                        if rng.random_bool(0.3) {
                            out.extend_from_slice(if rng.random_bool(0.5) { b"/x," } else { b"/" });
                        }
                        if rng.random_bool(0.3) {
                            let id = rng.random_range(0..1_000_000u64);
                            out.extend_from_slice(id.to_string().as_bytes());
                        }
                        out.extend_from_slice(JSON[rng.random_range(0..JSON.len())].as_bytes());
                    }
                }
            }
            out
        }
    }
}

/// Thousands of generated bodies, each on a fresh session: never a panic,
/// never anything but `ok`, 400 or 413; the canary keeps working.
#[actix_web::test]
async fn generated_post_bodies() {
    const BODIES: usize = 3000;
    const SEED: u64 = 0x6875_6262_7562;
    let srv = Server::start(settings());
    let mut canary = srv.polling_client().await;
    let mut rng = StdRng::seed_from_u64(SEED);
    let bodies: Vec<Vec<u8>> = (0..BODIES).map(|_| random_body(&mut rng)).collect();

    let srv_ref = &srv;
    let outcomes: Vec<(u16, usize)> = futures_util::stream::iter(bodies.into_iter().enumerate())
        .map(|(i, body)| async move {
            let sid = srv_ref.handshake().await;
            let q = format!("EIO=4&transport=polling&sid={sid}");
            let len = body.len();
            let shown = String::from_utf8_lossy(&body[..len.min(200)]).into_owned();
            let reply = srv_ref.post(&q, body).await;
            let ctx = format!("body #{i} (seed {SEED:#x}) {shown:?}: {reply:?}");
            match reply.status.as_u16() {
                _ if len > MAX_PAYLOAD => {
                    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{ctx}");
                    reply.assert_error(413, 3, "Payload too large");
                }
                200 => reply.assert_ok("ok"),
                400 => reply.assert_error(400, 3, "Bad request"),
                _ => panic!("unexpected answer to {ctx}"),
            }
            if reply.status != StatusCode::OK {
                // A refused body ends its session.
                srv_ref
                    .get(&q)
                    .await
                    .assert_error(400, 1, "Session ID unknown");
            }
            (reply.status.as_u16(), i)
        })
        .buffer_unordered(16)
        .collect()
        .await;

    let count = |s: u16| outcomes.iter().filter(|(st, _)| *st == s).count();
    let (ok, bad, large) = (count(200), count(400), count(413));
    eprintln!("generated bodies: ok {ok}, 400 {bad}, 413 {large}");
    assert_eq!(ok + bad + large, BODIES);
    // The generator must exercise every outcome, or it tests too little.
    assert!(
        ok > 100 && bad > 100 && large > 10,
        "ok {ok}, 400 {bad}, 413 {large}"
    );

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}
