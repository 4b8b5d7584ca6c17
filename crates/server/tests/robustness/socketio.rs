use crate::support::*;

#[actix_web::test]
async fn unknown_namespace_is_refused_and_the_connection_stays() {
    let srv = Server::start(settings());
    let mut ws = srv.ws_open().await;
    ws.send_text("40/x,").await;
    assert_eq!(
        ws.recv_text().await,
        r#"44/x,{"message":"Invalid namespace"}"#
    );
    ws.send_text(r#"40/nope,{"token":"t"}"#).await;
    assert_eq!(
        ws.recv_text().await,
        r#"44/nope,{"message":"Invalid namespace"}"#
    );
    ws.connect_ns().await;
    ws.assert_healthy().await;

    let mut polling = srv.polling_client().await;
    polling.send("40/x,").await;
    polling
        .poll_until(|r| r == r#"44/x,{"message":"Invalid namespace"}"#)
        .await;
    polling.assert_healthy().await;
    assert_no_panics();
}

#[actix_web::test]
async fn an_event_before_connect_closes_the_connection() {
    let srv = Server::start(settings());
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;

    let mut ws = srv.ws_open().await;
    ws.send_text(r#"42["who"]"#).await;
    ws.expect_closed().await;
    // An event for a namespace other than the joined one, likewise.
    let mut ws = srv.ws_open().await;
    ws.connect_ns().await;
    ws.send_text(r#"42/x,["who"]"#).await;
    ws.expect_closed().await;

    let sid = srv.handshake().await;
    let q = format!("EIO=4&transport=polling&sid={sid}");
    srv.post(&q, r#"42["who"]"#)
        .await
        .assert_error(400, 3, "Bad request");
    srv.get(&q).await.assert_error(400, 1, "Session ID unknown");

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn missing_binary_attachments_close_the_connection() {
    let srv = Server::start(settings());
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;

    let announce = r#"451-["sendToAll",{"_placeholder":true,"num":0}]"#;
    let mut ws = srv.ws_open().await;
    ws.connect_ns().await;
    ws.send_text(announce).await;
    ws.send_text(r#"42["who"]"#).await;
    ws.expect_closed().await;

    // Over polling, in one body.
    let polling = srv.polling_client().await;
    let q = polling.query();
    let body = format!("{announce}\u{1e}42[\"who\"]");
    srv.post(&q, body).await.assert_error(400, 3, "Bad request");
    srv.get(&q).await.assert_error(400, 1, "Session ID unknown");

    // The attachment that completes the packet is accepted (and broadcast).
    let mut ws = srv.ws_open().await;
    ws.connect_ns().await;
    ws.send_text(announce).await;
    ws.send_binary(vec![1, 2, 3]).await;
    ws.assert_healthy().await;
    let got = canary.recv_text().await;
    assert_eq!(got, r#"451-["messages",{"_placeholder":true,"num":0}]"#);
    assert_eq!(
        canary.next_event().await,
        WsEvent::Binary(Bytes::from_static(&[1, 2, 3]))
    );

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}

#[actix_web::test]
async fn attachments_over_the_size_limit_close_the_connection() {
    let srv = Server::start(settings());
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;

    // Each frame fits maxPayload, but together they exceed the per-packet limit.
    let placeholders: Vec<String> = (0..4)
        .map(|i| format!(r#"{{"_placeholder":true,"num":{i}}}"#))
        .collect();
    let announce = format!(r#"454-["sendToAll",{}]"#, placeholders.join(","));
    let mut ws = srv.ws_open().await;
    ws.connect_ns().await;
    ws.send_text(&announce).await;
    for _ in 0..3 {
        ws.send_binary(vec![7u8; MAX_PAYLOAD / 2]).await;
    }
    ws.expect_closed().await;

    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}
