//! No sticky sessions: three hubbub-server replicas on one Redis behind a strict
//! per-request round-robin proxy ([`crate::proxy`]), so that consecutive requests of one
//! Engine.IO session land on different replicas. The replicas that do not own a session
//! forward its polling requests and pipe its WebSocket upgrade to the owner. The clients
//! are the official socket.io-client (tests/interop/driver.js).

use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::{Driver, Hubbub};
use crate::proxy::{Kind, RoundRobinProxy};
use crate::support::RedisServer;

/// Three replicas on `redis` with `extra` flags, ready, and the proxy in front of them.
async fn cluster(redis: &RedisServer, extra: &[&str]) -> (Vec<Hubbub>, RoundRobinProxy) {
    let replicas: Vec<Hubbub> = (0..3).map(|_| Hubbub::start(&redis.url(), extra)).collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    let proxy = RoundRobinProxy::start(replicas.iter().map(|r| r.port).collect()).await;
    (replicas, proxy)
}

/// The Engine.IO session id and transport of a driver client.
async fn engine_of(driver: &Driver, id: &str) -> (String, String) {
    let r = driver.call(json!({"op": "engine", "id": id})).await;
    assert_eq!(r["ok"], json!(true), "{r}");
    (
        r["engineId"].as_str().unwrap().to_owned(),
        r["transport"].as_str().unwrap().to_owned(),
    )
}

/// Sum of a counter over every replica (`name{labels}` as rendered, or a bare name).
fn metric_sum(replicas: &[Hubbub], series: &str) -> f64 {
    replicas
        .iter()
        .map(|r| {
            r.metrics()
                .lines()
                .filter(|l| l.starts_with(series) && !l.starts_with('#'))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum()
}

fn is_welcome(args: &[Value]) -> bool {
    args.first().is_some_and(|m| m.get("hello").is_some())
}

/// The chat of the tutorial, as tests/node/chat.test.mjs runs it against one server:
/// welcome, join, messages to the others only (in order, acked with increasing ids),
/// history on join, Q&A with replay, binary through sendToAll, who. `opts` are the
/// clients' connect options.
async fn whole_chat(driver: &std::sync::Arc<Driver>, url: &str, opts: Value) -> Vec<String> {
    let mut a = driver.connect("a", url, opts.clone()).await;
    let mut b = driver.connect("b", url, opts.clone()).await;
    for c in [&mut a, &mut b] {
        c.wait_event("messages", is_welcome).await;
    }
    let ack = a.ask("join", json!(["alice"])).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    assert_eq!(ack[0]["name"], json!("alice"));
    let ack = b.ask("join", json!(["bob"])).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    a.wait_event("joined", |x| x[0]["name"] == json!("bob"))
        .await;

    // Twelve messages from alice: acked in order with increasing ids, delivered to bob
    // in order, never echoed to alice.
    let mut ids = Vec::new();
    for i in 0..12 {
        let ack = a.ask("messages", json!([format!("hello {i}")])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
        ids.push(ack[0]["id"].as_u64().unwrap());
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");
    b.wait_event("messages", |x| x[0]["text"] == json!("hello 11"))
        .await;
    let got: Vec<String> = b
        .events("messages")
        .iter()
        .filter_map(|x| x[0]["text"].as_str().map(str::to_owned))
        .collect();
    let want: Vec<String> = (0..12).map(|i| format!("hello {i}")).collect();
    assert_eq!(got, want, "bob gets alice's messages once, in order");
    assert!(
        a.events("messages")
            .iter()
            .all(|x| x[0].get("text").is_none()),
        "alice gets no echo of her own messages"
    );

    // Q&A: one question per connection; the answer goes to the others with both arguments.
    let q = a.ask("question", json!(["Is anyone there?"])).await;
    assert_eq!(q[0]["ok"], json!(true), "{q}");
    b.wait_event("question", |x| x[0] == json!("Is anyone there?"))
        .await;
    let again = a.ask("question", json!(["Another?"])).await;
    assert_eq!(again[0]["error"], json!("one question per connection"));
    let ans = b.ask("answer", json!(["Is anyone there?", "Yes"])).await;
    assert_eq!(ans[0]["ok"], json!(true), "{ans}");
    a.wait_event("answer", |x| x == [json!("Is anyone there?"), json!("Yes")])
        .await;

    // Binary arguments through sendToAll arrive byte for byte.
    let bytes: Vec<u8> = vec![0, 1, 2, 127, 128, 255];
    a.emit(
        "sendToAll",
        json!(["bin", {"$bin": bytes}, {"nested": {"$bin": [9, 8]}}]),
    )
    .await;
    let got = b.wait_event("messages", |x| x[0] == json!("bin")).await;
    assert_eq!(got[1], json!({"$bin": bytes}));
    assert_eq!(got[2], json!({"nested": {"$bin": [9, 8]}}));

    // A newcomer gets the stored question with its answer, then the last 10 messages on join.
    let mut c = driver.connect("c", url, opts.clone()).await;
    c.wait_event("answer", |x| x[1] == json!("Yes")).await;
    let ack = c.ask("join", json!(["carol"])).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    assert_eq!(ack[0]["online"], json!(3), "{ack}");
    c.wait_event("messages", |x| x[0]["text"] == json!("hello 11"))
        .await;
    let history: Vec<String> = c
        .events("messages")
        .iter()
        .filter_map(|x| x[0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        history,
        want[2..].to_vec(),
        "history: the last 10, oldest first"
    );
    let who = c.ask("who", json!([])).await;
    assert_eq!(who[0]["online"], json!(3), "{who}");
    let mut engines = Vec::new();
    for id in ["a", "b", "c"] {
        engines.push(engine_of(driver, id).await.0);
    }
    for c in [&a, &b, &c] {
        c.close().await;
    }
    engines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_only_clients_chat_through_a_round_robin_proxy() {
    let redis = RedisServer::start();
    let (replicas, proxy) = cluster(&redis, &[]).await;
    let driver = Driver::start().await;
    let engines = whole_chat(&driver, &proxy.url(), json!({"transports": ["polling"]})).await;
    for sid in &engines {
        let spread = proxy.backends_of(sid);
        assert!(
            spread.len() >= 2,
            "session {sid}'s requests all went to one replica: {:?}",
            proxy.requests_of(sid)
        );
        assert!(
            proxy
                .requests_of(sid)
                .iter()
                .all(|(_, kind)| *kind != Kind::Upgrade),
            "polling only"
        );
    }
    assert!(
        metric_sum(
            &replicas,
            "hubbub_forwarded_requests_total{kind=\"poll_get\"}"
        ) > 0.0
    );
    assert!(
        metric_sum(
            &replicas,
            "hubbub_forwarded_requests_total{kind=\"poll_post\"}"
        ) > 0.0
    );
    assert_eq!(
        metric_sum(&replicas, "hubbub_forward_failures_total"),
        0.0,
        "nothing failed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrading_clients_chat_through_a_round_robin_proxy() {
    let redis = RedisServer::start();
    let (replicas, proxy) = cluster(&redis, &[]).await;
    let driver = Driver::start().await;
    // Default transports: polling first, then the upgrade to WebSocket.
    let engines = whole_chat(
        &driver,
        &proxy.url(),
        json!({"transports": ["polling", "websocket"], "reportUpgrade": true}),
    )
    .await;
    for sid in &engines {
        assert!(
            proxy.backends_of(sid).len() >= 2,
            "{:?}",
            proxy.requests_of(sid)
        );
    }

    // Upgrades that land on a replica other than the owner are piped to the owner and
    // succeed: connect clients until one's upgrade has landed elsewhere (each does with
    // probability 2/3; bounded).
    let mut piped = None;
    for i in 0..12 {
        let id = format!("u{i}");
        let mut c = driver
            .connect(
                &id,
                &proxy.url(),
                json!({"transports": ["polling", "websocket"], "reportUpgrade": true}),
            )
            .await;
        c.wait_for("upgrade", Duration::from_secs(10), |v| v["ev"] == "upgrade")
            .await;
        let (sid, transport) = engine_of(&driver, &id).await;
        assert_eq!(transport, "websocket");
        let owner = proxy.owner_of(&sid).expect("handshake seen by the proxy");
        let upgrade = proxy
            .requests_of(&sid)
            .into_iter()
            .find(|(_, k)| *k == Kind::Upgrade)
            .expect("upgrade seen by the proxy");
        if upgrade.0 != owner {
            piped = Some((c, sid));
            break;
        }
        c.close().await;
    }
    let (mut c, sid) = piped.expect("no upgrade landed on a non-owner in 12 tries");
    assert!(
        metric_sum(
            &replicas,
            "hubbub_forwarded_requests_total{kind=\"upgrade\"}"
        ) >= 1.0
    );
    // The piped WebSocket carries the chat both ways.
    let ack = c.ask("join", json!(["piper"])).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    let mut d = driver
        .connect(
            "d",
            &replicas[0].url(),
            json!({"transports": ["websocket"]}),
        )
        .await;
    d.ask("join", json!(["dora"])).await;
    d.emit("messages", json!(["through the pipe"])).await;
    c.wait_event("messages", |x| x[0]["text"] == json!("through the pipe"))
        .await;
    let ack = c.ask("messages", json!(["back"])).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    d.wait_event("messages", |x| x[0]["text"] == json!("back"))
        .await;
    assert_eq!(
        engine_of(&driver, &c.id).await,
        (sid, "websocket".to_owned())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_lived_polling_client_gets_every_broadcast_once_in_order() {
    let redis = RedisServer::start();
    let (replicas, proxy) = cluster(
        &redis,
        &["--ping-interval-ms", "300", "--ping-timeout-ms", "600"],
    )
    .await;
    let driver = Driver::start().await;
    let mut p = driver
        .connect("p", &proxy.url(), json!({"transports": ["polling"]}))
        .await;
    let (sid, _) = engine_of(&driver, "p").await;
    let s = driver
        .connect(
            "s",
            &replicas[1].url(),
            json!({"transports": ["websocket"]}),
        )
        .await;
    // 20 broadcasts spread over about 3 s, ten ping intervals.
    let started = tokio::time::Instant::now();
    let mut pace = tokio::time::interval(Duration::from_millis(150));
    for i in 0..20 {
        pace.tick().await;
        s.emit("sendToAll", json!(["tick", i])).await;
    }
    p.wait_event("messages", |x| x == [json!("tick"), json!(19)])
        .await;
    assert!(started.elapsed() >= Duration::from_millis(2_500));
    let ticks: Vec<Value> = p
        .events("messages")
        .into_iter()
        .filter(|x| x[0] == json!("tick"))
        .map(|x| x[1].clone())
        .collect();
    assert_eq!(ticks, (0..20).map(|i| json!(i)).collect::<Vec<_>>());
    assert!(
        !p.seen.iter().any(|v| v["ev"] == "disconnect"),
        "stayed connected: {:?}",
        p.seen
    );
    assert_eq!(
        engine_of(&driver, "p").await.0,
        sid,
        "same session throughout"
    );
    let requests = proxy.requests_of(&sid);
    let gets = requests.iter().filter(|(_, k)| *k == Kind::Get).count();
    assert!(
        gets >= 10,
        "long-polls answered by pings and data: {requests:?}"
    );
    assert_eq!(proxy.backends_of(&sid).len(), 3, "{requests:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_clients_of_a_killed_owner_reconnect_through_the_proxy() {
    let redis = RedisServer::start();
    let (mut replicas, proxy) = cluster(&redis, &[]).await;
    let driver = Driver::start().await;
    let mut clients = Vec::new();
    for i in 0..3 {
        let id = format!("k{i}");
        let c = driver
            .connect(
                &id,
                &proxy.url(),
                json!({"transports": ["polling"], "reconnection": true}),
            )
            .await;
        let (sid, _) = engine_of(&driver, &id).await;
        clients.push((c, sid));
    }
    // Kill the owner of the first client's session.
    let owner = proxy.owner_of(&clients[0].1).expect("handshake seen");
    let owned: Vec<usize> = (0..clients.len())
        .filter(|i| proxy.owner_of(&clients[*i].1) == Some(owner))
        .collect();
    replicas[owner].kill();
    let killed = tokio::time::Instant::now();
    for &i in &owned {
        let (c, old) = &mut clients[i];
        let v = c
            .wait_for("reconnect", Duration::from_secs(10), |v| {
                v["ev"] == "reconnect"
            })
            .await;
        let took = killed.elapsed();
        assert!(took < Duration::from_secs(5), "reconnected after {took:?}");
        let (sid, _) = engine_of(&driver, &c.id).await;
        assert_ne!(&sid, old, "a new session: {v}");
        assert_ne!(proxy.owner_of(&sid), Some(owner));
        let ack = c.ask("join", json!([format!("again{i}")])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    }
    // The clients of the surviving replicas carry on: in their session, unless one of
    // their requests was passing through the killed replica at that moment (it was
    // forwarding it), which the client sees as a transport error and reconnects too.
    for (i, (c, sid)) in clients.iter_mut().enumerate() {
        if owned.contains(&i) {
            continue;
        }
        c.events("");
        if c.seen.iter().any(|v| v["ev"] == "disconnect") {
            c.wait_for("reconnect", Duration::from_secs(10), |v| {
                v["ev"] == "reconnect"
            })
            .await;
        } else {
            assert_eq!(&engine_of(&driver, &c.id).await.0, sid, "{:?}", c.seen);
        }
        let ack = c.ask("join", json!([format!("still{i}")])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    }
}

/// One raw HTTP/1.1 request to 127.0.0.1:`port`: (status, body, time taken).
async fn raw(
    port: u16,
    method: &str,
    target: &str,
    extra: &str,
    body: &[u8],
) -> (u16, String, Duration) {
    let started = tokio::time::Instant::now();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // `extra` may bring its own Connection header (an upgrade).
    let connection = if extra.contains("Connection:") {
        ""
    } else {
        "Connection: close\r\n"
    };
    let length = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{length}{connection}{extra}\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body, started.elapsed())
}

const UNKNOWN: &str = r#"{"code":1,"message":"Session ID unknown"}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_sessions_get_400_at_once_on_every_replica_and_limits_hold_across_replicas() {
    let redis = RedisServer::start();
    let (replicas, _proxy) = cluster(&redis, &["--max-payload", "2000"]).await;
    // A real session on replica 0, to borrow its owner tag.
    let (status, open, _) = raw(
        replicas[0].port,
        "GET",
        "/socket.io/?EIO=4&transport=polling",
        "",
        b"",
    )
    .await;
    assert_eq!(status, 200, "{open}");
    let open: Value = serde_json::from_str(&open[1..]).unwrap();
    let sid = open["sid"].as_str().unwrap().to_owned();
    let tag = &sid[..8];
    let unknown = [
        "nosuchsessionanywhere00000000".to_owned(), // a tag nobody holds
        format!("{tag}AAAAAAAAAAAAAAAAAAAAAA"),     // a live owner that lacks it
        "short".to_owned(),                         // no tag at all
    ];
    for r in &replicas {
        for s in &unknown {
            let q = format!("/socket.io/?EIO=4&transport=polling&sid={s}");
            for (method, body) in [("GET", &b""[..]), ("POST", &b"4hi"[..])] {
                let (status, text, took) = raw(r.port, method, &q, "", body).await;
                assert_eq!(
                    (status, text.as_str()),
                    (400, UNKNOWN),
                    "{method} {s} on {}",
                    r.port
                );
                assert!(took < Duration::from_secs(1), "{method} {s} took {took:?}");
            }
            // A WebSocket upgrade for it is refused the same way.
            let q = format!("/socket.io/?EIO=4&transport=websocket&sid={s}");
            let ws = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
            let (status, text, took) = raw(r.port, "GET", &q, ws, b"").await;
            assert_eq!(
                (status, text.as_str()),
                (400, UNKNOWN),
                "upgrade {s} on {}",
                r.port
            );
            assert!(took < Duration::from_secs(1));
        }
    }
    // The real session, reached through replica 1: a POST in two parts keeps its order,
    // and a body over maxPayload gets 413 from the owner, which closes the session.
    let q = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (status, text, _) = raw(replicas[1].port, "POST", &q, "", b"40").await;
    assert_eq!((status, text.as_str()), (200, "ok"));
    let (status, text, _) = raw(replicas[2].port, "GET", &q, "", b"").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.starts_with("40{\"sid\":"),
        "the CONNECT answer through replica 2: {text}"
    );
    let big = vec![b'x'; 3000];
    let (status, _, _) = raw(replicas[2].port, "POST", &q, "", &big).await;
    assert_eq!(status, 413);
    let (status, text, _) = raw(replicas[1].port, "GET", &q, "", b"").await;
    assert!(
        status == 400 || text.ends_with('1'),
        "the session is closed after the oversize POST: {status} {text}"
    );
    assert!(
        metric_sum(
            &replicas,
            "hubbub_forward_failures_total{reason=\"owner_unknown\"}"
        ) >= 3.0
    );
}

#[tokio::test]
async fn the_owner_directory_registers_resolves_expires_and_withdraws() {
    use hubbub_engineio::forward::OwnerDirectory;
    use hubbub_redis::forward::RedisOwnerDirectory;
    use hubbub_redis::link::{RedisLink, RedisSettings};

    let redis = RedisServer::start();
    let link = |_: u8| {
        RedisLink::start(
            RedisSettings::new(redis.url()),
            &prometheus::Registry::new(),
        )
        .unwrap()
    };
    let (la, lb) = (link(0), link(1));
    assert!(la.wait_ready(Duration::from_secs(5)).await);
    assert!(lb.wait_ready(Duration::from_secs(5)).await);
    let heartbeat = Duration::from_millis(300);
    let a = RedisOwnerDirectory::new(la, heartbeat, Duration::from_millis(900));
    let b = RedisOwnerDirectory::new(lb, heartbeat, Duration::from_millis(900));
    assert_ne!(a.local_tag(), b.local_tag());
    let addr: std::net::SocketAddr = "10.0.0.7:8080".parse().unwrap();
    assert!(!a.is_registered());
    let beating = a.start(addr);
    let found = crate::support::eventually(Duration::from_secs(3), || async {
        b.resolve(a.local_tag()).await == Some(addr)
    })
    .await;
    assert!(found, "b finds a's address");
    assert!(
        a.is_registered(),
        "registered: a replica is ready only then"
    );
    assert_eq!(b.resolve("nobodyxx").await, None, "an unknown tag");
    // Kept alive past its TTL by the heartbeat (the time passing is what is tested).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.forget(a.local_tag());
    assert_eq!(b.resolve(a.local_tag()).await, Some(addr));
    // A replica that stops beating (crashed) disappears within the TTL.
    beating.abort();
    let gone = crate::support::eventually(Duration::from_secs(3), || async {
        b.forget(a.local_tag());
        b.resolve(a.local_tag()).await.is_none()
    })
    .await;
    assert!(gone, "a's registration expired");
    // A clean shutdown withdraws at once.
    a.register_at(addr).await.unwrap();
    b.forget(a.local_tag());
    assert_eq!(b.resolve(a.local_tag()).await, Some(addr));
    a.withdraw().await.unwrap();
    b.forget(a.local_tag());
    assert_eq!(b.resolve(a.local_tag()).await, None);
}
