use crate::support::*;

#[actix_web::test]
async fn silent_clients_are_closed_after_ping_interval_plus_timeout() {
    // Small, but with a pingTimeout that leaves the canary room to answer
    // on a loaded machine.
    let interval = Duration::from_millis(250);
    let ping_timeout = Duration::from_millis(500);
    let srv = Server::start(EngineConfig {
        ping_interval: interval,
        ping_timeout,
        ..settings()
    });
    let mut canary = srv.ws_open().await;
    canary.connect_ns().await;
    let mut polling_canary = srv.polling_client().await;

    let started = Instant::now();
    let mut silent_ws = srv.ws_open().await;
    silent_ws.connect_ns().await;
    let silent_poll = srv.handshake().await;

    let watch_silent = async {
        let mut pinged = false;
        loop {
            match silent_ws.next_event().await {
                WsEvent::Text(t) if t == "2" => pinged = true,
                WsEvent::Closed => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        (pinged, started.elapsed())
    };
    // The canaries answer pings the whole time (well past the silent clients' deadline).
    let keep = canary.keep_alive(3 * (interval + ping_timeout));
    let keep_polling = polling_canary.keep_alive(3 * (interval + ping_timeout));
    let ((pinged, closed_after), pings, polling_pings) =
        futures_util::join!(watch_silent, keep, keep_polling);
    assert!(pinged, "the silent client was never pinged");
    assert!(
        closed_after >= interval + ping_timeout - Duration::from_millis(20) && closed_after < WAIT,
        "closed after {closed_after:?}"
    );
    assert!(pings >= 2, "canary answered {pings} pings");
    assert!(
        polling_pings >= 2,
        "polling canary answered {polling_pings} pings"
    );

    // The polling session that never polled is gone by now.
    let q = format!("EIO=4&transport=polling&sid={silent_poll}");
    srv.get(&q).await.assert_error(400, 1, "Session ID unknown");

    canary.assert_healthy().await;
    polling_canary.assert_healthy().await;
    srv.assert_healthz().await;
    assert_no_panics();
}
