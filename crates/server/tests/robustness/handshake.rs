use crate::support::*;

/// With `max_sessions`, handshakes beyond it get 503 on both transports;
/// the sessions already open are untouched.
#[actix_web::test]
async fn handshakes_beyond_the_connection_limit_get_503() {
    let srv = Server::start(EngineConfig {
        max_sessions: 2,
        ..settings()
    });
    let mut polling = srv.polling_client().await;
    let mut ws = srv.ws_open().await;
    ws.connect_ns().await;

    srv.get("EIO=4&transport=polling")
        .await
        .assert_error(503, 3, "Too many connections");
    let (status, mut raw) = RawWs::request(srv.addr(), PATH, b"").await;
    assert!(status.starts_with("HTTP/1.1 503"), "{status}");
    assert_eq!(
        raw.rest().await,
        error_body(3, "Too many connections").as_bytes()
    );
    let metrics = srv.metrics().await;
    assert!(
        metrics.contains("hubbub_sessions_refused_total 2\n"),
        "{metrics}"
    );

    polling.assert_healthy().await;
    ws.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn errors_have_the_reference_codes_and_bodies() {
    let srv = Server::start(settings());
    let mut canary = srv.polling_client().await;

    let cases: &[(Method, &str, u16, u8, &str)] = &[
        (
            Method::GET,
            "transport=polling",
            400,
            5,
            "Unsupported protocol version",
        ),
        (
            Method::GET,
            "EIO=3&transport=polling",
            400,
            5,
            "Unsupported protocol version",
        ),
        (
            Method::GET,
            "EIO=abc&transport=polling",
            400,
            5,
            "Unsupported protocol version",
        ),
        (
            Method::GET,
            "EIO=5&transport=websocket",
            400,
            5,
            "Unsupported protocol version",
        ),
        (Method::GET, "EIO=4", 400, 0, "Transport unknown"),
        (
            Method::GET,
            "EIO=4&transport=flashsocket",
            400,
            0,
            "Transport unknown",
        ),
        (Method::GET, "EIO=4&transport=", 400, 0, "Transport unknown"),
        (
            Method::POST,
            "EIO=4&transport=polling",
            400,
            2,
            "Bad handshake method",
        ),
        (
            Method::PUT,
            "EIO=4&transport=polling",
            400,
            2,
            "Bad handshake method",
        ),
        (
            Method::GET,
            "EIO=4&transport=polling&sid=nope",
            400,
            1,
            "Session ID unknown",
        ),
        (
            Method::POST,
            "EIO=4&transport=polling&sid=nope",
            400,
            1,
            "Session ID unknown",
        ),
        (
            Method::PUT,
            "EIO=4&transport=polling&sid=nope",
            400,
            1,
            "Session ID unknown",
        ),
        // A plain GET (no Upgrade header) on the websocket transport.
        (
            Method::GET,
            "EIO=4&transport=websocket",
            400,
            3,
            "Bad request",
        ),
    ];
    for (method, query, status, code, message) in cases {
        let body = (*method == Method::POST).then(|| b"4hello".to_vec());
        let reply = srv.request(method.clone(), query, &[], body).await;
        assert_eq!(
            reply.status.as_u16(),
            *status,
            "{method} {query}: {reply:?}"
        );
        reply.assert_error(*status, *code, message);
    }

    // Bad WebSocket upgrades are refused with 400, not left hanging.
    for query in [
        "EIO=4&transport=websocket&sid=nope",
        "transport=websocket",
        "EIO=abc&transport=websocket",
        "EIO=4",
        "EIO=4&transport=abc",
    ] {
        match srv.ws(query, None).await {
            Err(WsClientError::InvalidResponseStatus(s)) => {
                assert_eq!(s, StatusCode::BAD_REQUEST, "{query}")
            }
            Err(e) => panic!("{query}: unexpected websocket error {e}"),
            Ok(_) => panic!("{query}: websocket accepted"),
        }
    }

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn origin_policy_and_cors() {
    let srv = Server::start(settings());
    let mut canary = srv.polling_client().await;
    let evil = [("origin", "https://evil.example")];

    // Default policy: same origin only.
    let reply = srv
        .request(Method::GET, "EIO=4&transport=polling", &evil, None)
        .await;
    reply.assert_error(403, 4, "Forbidden");
    assert_eq!(reply.header("access-control-allow-origin"), None);
    let reply = srv
        .request(Method::OPTIONS, "EIO=4&transport=polling", &evil, None)
        .await;
    reply.assert_error(403, 4, "Forbidden");
    let q = canary.query();
    let reply = srv
        .request(Method::POST, &q, &evil, Some(b"1".to_vec()))
        .await;
    reply.assert_error(403, 4, "Forbidden");
    match srv
        .ws("EIO=4&transport=websocket", Some("https://evil.example"))
        .await
    {
        Err(WsClientError::InvalidResponseStatus(s)) => assert_eq!(s, StatusCode::FORBIDDEN),
        Err(e) => panic!("unexpected websocket error {e}"),
        Ok(_) => panic!("websocket from a foreign origin accepted"),
    }

    // The server's own origin gets CORS headers.
    let own = srv.own_origin();
    let allowed = [("origin", own.as_str())];
    let reply = srv
        .request(Method::GET, "EIO=4&transport=polling", &allowed, None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reply.body.starts_with(r#"0{"sid":"#), "{reply:?}");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(own.as_str())
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(reply.header("vary"), Some("Origin"));
    // Errors for an allowed origin carry them too, so the browser can read them.
    let reply = srv
        .request(
            Method::GET,
            "EIO=4&transport=polling&sid=nope",
            &allowed,
            None,
        )
        .await;
    reply.assert_error(400, 1, "Session ID unknown");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(own.as_str())
    );

    // Preflight.
    let preflight = [
        ("origin", own.as_str()),
        ("access-control-request-method", "POST"),
        ("access-control-request-headers", "content-type, x-custom"),
    ];
    let reply = srv
        .request(Method::OPTIONS, "EIO=4&transport=polling", &preflight, None)
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{reply:?}");
    assert_eq!(reply.body, "");
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(own.as_str())
    );
    assert_eq!(
        reply.header("access-control-allow-methods"),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("content-type, x-custom")
    );
    assert_eq!(reply.header("access-control-max-age"), Some("86400"));
    // The own-origin WebSocket is accepted.
    let mut ws = srv
        .ws("EIO=4&transport=websocket", Some(&own))
        .await
        .expect("same-origin websocket");
    assert!(ws.recv_text().await.starts_with(r#"0{"sid":"#));

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}
