use crate::support::*;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// The server hands every `Upgrade: websocket` request over with its
/// connection: off the Engine.IO path it is refused (and closed), on it
/// it is checked like any request, and frames the client sends right
/// behind its request are not lost in the handover.
#[actix_web::test]
async fn upgrades_are_routed_and_pipelined_frames_kept() {
    let srv = Server::start(settings());
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;

    for path in [
        "/",
        "/healthz",
        "/socket.io",
        "/nope/?EIO=4&transport=websocket",
    ] {
        let (status, mut raw) = RawWs::request(srv.addr(), path, b"").await;
        assert!(status.starts_with("HTTP/1.1 404"), "{path}: {status}");
        assert!(
            status.to_ascii_lowercase().contains("connection: close"),
            "{status}"
        );
        assert_eq!(raw.rest().await, b"not found", "{path}");
    }
    let checked = [
        (
            "/socket.io/?EIO=3&transport=websocket",
            400,
            5,
            "Unsupported protocol version",
        ),
        ("/socket.io/?EIO=4&transport=polling", 400, 3, "Bad request"),
        (
            "/socket.io/?EIO=4&transport=websocket&sid=nope",
            400,
            1,
            "Session ID unknown",
        ),
    ];
    for (path, status_code, code, message) in checked {
        let (status, mut raw) = RawWs::request(srv.addr(), path, b"").await;
        assert!(
            status.starts_with(&format!("HTTP/1.1 {status_code}")),
            "{path}: {status}"
        );
        assert_eq!(
            raw.rest().await,
            error_body(code, message).as_bytes(),
            "{path}"
        );
    }

    // The Socket.IO CONNECT and an acknowledged event, sent in the same
    // write as the handshake, are answered.
    let mut pipelined = RawWs::frame(0x81, b"40");
    pipelined.extend(RawWs::frame(0x81, br#"421["who"]"#));
    let (status, mut raw) = RawWs::request(srv.addr(), PATH, &pipelined).await;
    assert!(status.starts_with("HTTP/1.1 101"), "{status}");
    raw.expect_text("0{").await;
    raw.expect_text(r#"40{"sid":"#).await;
    raw.expect_text(r#"431[{"online":"#).await;

    // A request pipelined ahead of the handshake gets its answer first.
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: {}\r\n\r\n", srv.addr());
    let mut tcp = tokio::net::TcpStream::connect(srv.addr())
        .await
        .expect("connect");
    let handshake = format!(
        "GET {PATH}?EIO=4&transport=websocket HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        srv.addr()
    );
    {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tcp.write_all(format!("{healthz}{handshake}").as_bytes())
            .await
            .expect("write");
        let mut seen = Vec::new();
        let answers = loop {
            let text = String::from_utf8_lossy(&seen).into_owned();
            if let Some(at) = text.find("HTTP/1.1 101")
                && text[at..].contains("\r\n\r\n")
            {
                break text;
            }
            let mut buf = [0u8; 1024];
            let n = timeout(WAIT, tcp.read(&mut buf))
                .await
                .expect("answers in time")
                .expect("read");
            assert!(n > 0, "closed early: {text}");
            seen.extend_from_slice(&buf[..n]);
        };
        assert!(answers.starts_with("HTTP/1.1 200"), "{answers}");
        let ok_at = answers.find("\r\n\r\nok").expect("the healthz body");
        assert!(ok_at < answers.find("HTTP/1.1 101").unwrap(), "{answers}");
    }

    // Plain HTTP is untouched.
    srv.assert_healthz().await;
    canary.assert_healthy().await;
    assert_no_panics();
}

#[actix_web::test]
async fn random_binary_frames_close_the_connection() {
    let srv = Server::start(settings());
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;
    let mut polling = srv.polling_client().await;
    let mut rng = StdRng::seed_from_u64(1);
    for i in 0..60 {
        let mut ws = srv.ws_open().await;
        // Half before CONNECT, half after: binary data without a pending
        // attachment-carrying packet breaks the protocol either way.
        if i % 2 == 1 {
            ws.connect_ns().await;
        }
        let len = rng.random_range(0..300usize);
        ws.send_binary((0..len).map(|_| rng.random::<u8>()).collect())
            .await;
        ws.expect_closed().await;
    }
    canary.assert_healthy().await;
    polling.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn random_text_frames_close_the_connection() {
    let srv = Server::start(settings());
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;
    let mut rng = StdRng::seed_from_u64(2);
    for i in 0..60 {
        let mut ws = srv.ws_open().await;
        if i % 2 == 1 {
            ws.connect_ns().await;
        }
        // Any first character that is not an Engine.IO packet type.
        let first = loop {
            let c: char = rng.random();
            if !('0'..='6').contains(&c) {
                break c;
            }
        };
        let len = rng.random_range(0..40usize);
        let mut text = String::from(first);
        text.extend((0..len).map(|_| rng.random::<char>()));
        ws.send_text(&text).await;
        ws.expect_closed().await;
    }
    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn invalid_packets_close_the_connection() {
    let srv = Server::start(settings());
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;
    for packet in [
        "abc",
        "4abc",
        "42{}",
        "42",
        "4",
        "",
        "7",
        "9hello",
        "0",
        "5",
        r#"42["disconnect"]"#,
        "41/nowhere,",
        r#"44{"message":"x"}"#,
        r#"43["no id"]"#,
    ] {
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        ws.send_text(packet).await;
        ws.expect_closed().await;
    }
    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

/// WebSocket-level framing handled by the transport itself: pings are
/// answered, a close frame is answered, and broken fragmentation or
/// non-UTF-8 text closes only that connection.
#[actix_web::test]
async fn control_frames_and_broken_framing() {
    control_frames_and_broken_framing_on(Serving::Own).await;
}

/// The same, with the route table in a plain actix-web server.
#[actix_web::test]
async fn control_frames_and_broken_framing_in_app() {
    control_frames_and_broken_framing_on(Serving::InApp).await;
}

async fn control_frames_and_broken_framing_on(serving: Serving) {
    use actix_http::ws::Item;
    let srv = Server::start_with(settings(), serving);
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;

    // A WebSocket ping gets a pong with the same payload; the session goes on.
    let mut ws = srv.ws_open().await;
    ws.connect_ns().await;
    let _ = ws
        .tx
        .send(ws::Message::Ping(Bytes::from_static(b"hi")))
        .await;
    let pong = loop {
        match timeout(WAIT, ws.rx.next()).await.expect("a frame in time") {
            Some(Ok(ws::Frame::Pong(p))) => break p,
            Some(Ok(ws::Frame::Text(t))) if &t[..] == b"2" => ws.send_text("3").await,
            other => panic!("expected a pong, got {other:?}"),
        }
    };
    assert_eq!(&pong[..], b"hi");
    ws.assert_healthy().await;

    // A close frame is answered with a close frame.
    let _ = ws.tx.send(ws::Message::Close(None)).await;
    ws.expect_closed().await;

    // A text message whose fragments are not UTF-8.
    let mut ws = srv.ws_open().await;
    ws.connect_ns().await;
    for item in [
        Item::FirstText(Bytes::from_static(b"42[\"x\",\"")),
        Item::Last(Bytes::from_static(b"\xff\xfe\"]")),
    ] {
        let _ = ws.tx.send(ws::Message::Continuation(item)).await;
    }
    ws.expect_closed().await;

    // Framing that a well-behaved client library refuses to produce, sent
    // as raw frames: a continuation that continues nothing, a new first
    // fragment while one is open, and a single text frame that is not UTF-8.
    let frames: [&[(u8, &[u8])]; 3] = [
        &[(0x80, b"42")],
        &[(0x01, b"42"), (0x01, b"42")],
        &[(0x81, b"42[\"\xff\"]")],
    ];
    for frames in frames {
        let mut raw = RawWs::open(srv.addr()).await;
        raw.send(0x81, b"40").await;
        raw.expect_text(r#"40{"sid":"#).await;
        // Well-formed fragments are joined: an acked `who` in two frames.
        raw.send(0x01, b"421[").await;
        raw.send(0x80, b"\"who\"]").await;
        raw.expect_text(r#"431[{"online":"#).await;
        for (head, payload) in frames {
            raw.send(*head, payload).await;
        }
        raw.expect_closed().await;
    }

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn oversize_frames_close_the_connection() {
    oversize_frames_close_the_connection_on(Serving::Own).await;
}

/// The same, with the route table in a plain actix-web server.
#[actix_web::test]
async fn oversize_frames_close_the_connection_in_app() {
    oversize_frames_close_the_connection_on(Serving::InApp).await;
}

async fn oversize_frames_close_the_connection_on(serving: Serving) {
    let srv = Server::start_with(settings(), serving);
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;

    // A frame of exactly maxPayload is accepted (an unknown event, ignored).
    let mut ws = srv.ws_open().await;
    ws.connect_ns().await;
    let at_limit = format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 10));
    assert_eq!(at_limit.len(), MAX_PAYLOAD);
    ws.send_text(&at_limit).await;
    ws.assert_healthy().await;

    // A message in fragments is reassembled; its total counts against maxPayload.
    let mut ws = srv.ws_open().await;
    ws.connect_ns().await;
    ws.send_fragmented(r#"421["who"]"#, 4).await;
    let ack = ws.recv_text().await;
    assert!(ack.starts_with(r#"431[{"online":"#), "{ack}");
    ws.send_fragmented(&at_limit, 7).await;
    ws.assert_healthy().await;
    let over = format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 9));
    ws.send_fragmented(&over, 20).await;
    ws.expect_closed().await;

    for binary in [false, true] {
        let mut ws = srv.ws_open().await;
        ws.connect_ns().await;
        if binary {
            ws.send_binary(vec![7; MAX_PAYLOAD + 1]).await;
        } else {
            ws.send_text(&format!(r#"42["x","{}"]"#, "y".repeat(MAX_PAYLOAD - 9)))
                .await;
        }
        ws.expect_closed().await;
    }
    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn upgrade_edge_cases() {
    upgrade_edge_cases_on(Serving::Own).await;
}

/// The same, with the route table in a plain actix-web server.
#[actix_web::test]
async fn upgrade_edge_cases_in_app() {
    upgrade_edge_cases_on(Serving::InApp).await;
}

async fn upgrade_edge_cases_on(serving: Serving) {
    let srv = Server::start_with(settings(), serving);
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;

    let polling = srv.polling_client().await;
    let q = polling.query();
    let pending = srv.spawn_get(&q);
    let ws_query = format!("EIO=4&transport=websocket&sid={}", polling.sid);
    let mut ws = srv.ws(&ws_query, None).await.expect("upgrade accepted");
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    // The pending GET is released with a noop.
    assert_eq!(
        pending.await.expect("pending GET"),
        (StatusCode::OK, "6".to_owned())
    );
    ws.send_text("5").await;
    ws.assert_healthy().await;

    // Polling on an upgraded session is refused; the session lives on.
    srv.get(&q).await.assert_error(400, 3, "Bad request");
    srv.post(&q, r#"42["who"]"#)
        .await
        .assert_error(400, 3, "Bad request");
    ws.assert_healthy().await;

    // A second WebSocket for the upgraded sid is accepted, then closed.
    let mut second = srv
        .ws(&ws_query, None)
        .await
        .expect("second websocket accepted");
    second.expect_closed().await;
    ws.assert_healthy().await;

    // A probe that is not a probe fails the upgrade only; polling goes on.
    let mut other = srv.polling_client().await;
    let other_ws = format!("EIO=4&transport=websocket&sid={}", other.sid);
    let mut bad = srv
        .ws(&other_ws, None)
        .await
        .expect("probe socket accepted");
    bad.send_text("2notprobe").await;
    bad.expect_closed().await;
    other.assert_healthy().await;

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

/// The reference server also accepts an upgrade packet without a probe; a
/// GET still pending on the polling transport must not hold the upgrade up.
#[actix_web::test]
async fn upgrade_without_probe_releases_the_pending_get() {
    let srv = Server::start(settings());
    let mut canary = srv.polling_client().await;
    // As in the polling close test, the GET gets a head start; if the upgrade
    // still wins, that GET is refused (400) and the scenario is retried.
    let mut released = false;
    for _attempt in 0..10 {
        let polling = srv.polling_client().await;
        let pending = srv.spawn_get(&polling.query());
        let ws_query = format!("EIO=4&transport=websocket&sid={}", polling.sid);
        for _ in 0..3 {
            srv.assert_healthz().await;
        }
        let mut ws = srv.ws(&ws_query, None).await.expect("upgrade accepted");
        ws.send_text("5").await;
        let started = Instant::now();
        ws.assert_healthy().await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1), "upgrade took {took:?}");
        let got = pending.await.expect("pending GET");
        if got == (StatusCode::OK, "6".to_owned()) {
            released = true;
            break;
        }
        assert_eq!(got, (StatusCode::BAD_REQUEST, error_body(3, "Bad request")));
    }
    assert!(
        released,
        "the GET was never pending when the upgrade arrived"
    );
    canary.assert_healthy().await;
    assert_no_panics();
}
