use crate::support::*;
use std::cell::Cell;

/// A client that stops reading while others flood the room is closed once
/// its bounded queue is full; the flooder and the other readers go on.
#[actix_web::test]
async fn a_client_that_does_not_read_is_closed_and_others_continue() {
    // About 1,350 (13 MB) were enough on the development machine, where the
    // socket buffers of a reader that never reads stay small; the bound only
    // keeps a broken server from hanging the test.
    const MAX_MESSAGES: usize = 20_000;
    let srv = Server::start(EngineConfig {
        outbound_queue: 64,
        ..settings()
    });
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;
    let mut slow = srv.ws_open().await;
    slow.connect_ns().await;
    slow.send_text(r#"421["join","slow"]"#).await;
    while !slow.recv_text().await.starts_with(r#"431[{"ok":true"#) {}
    let mut flooder = srv.ws_open().await;
    flooder.connect_ns().await;

    // Each event is broadcast to the canary (which reads) and to the slow
    // client (which does not): once the socket buffers between it and the
    // server are full, its queue fills and it is closed, which the room
    // learns from `left`.
    let packet = format!(r#"42["sendToAll","{}"]"#, "z".repeat(MAX_PAYLOAD - 100));
    let left = Cell::new(false);
    let flood = async {
        let mut sent = 0;
        while !left.get() && sent < MAX_MESSAGES {
            flooder.send_text(&packet).await;
            sent += 1;
            // Let the canary read as fast as the flood goes.
            tokio::task::yield_now().await;
        }
        sent
    };
    let watch = async {
        loop {
            let text = canary.recv_text().await;
            if text.starts_with(r#"42["left",{"name":"slow""#) {
                left.set(true);
                return;
            }
        }
    };
    let (sent, ()) = futures_util::join!(flood, watch);
    assert!(
        sent < MAX_MESSAGES,
        "the slow client was not closed after {sent} messages"
    );

    // The canary reads what is still in flight, up to a marker the flooder
    // sends last (the server handles one client's events in order).
    flooder.send_text(r#"42["sendToAll","end of flood"]"#).await;
    while canary.recv_text().await != r#"42["messages","end of flood"]"# {}
    let metrics = srv.metrics().await;
    assert!(
        metrics.contains("hubbub_outbound_queue_overflows_total 1\n")
            && metrics.contains(r#"hubbub_disconnects_total{reason="slow_consumer"} 1"#),
        "{metrics}"
    );

    slow.expect_closed().await;
    flooder.assert_healthy().await;
    canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}
