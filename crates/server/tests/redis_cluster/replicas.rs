//! Several hubbub-server processes on one Redis, driven with the official socket.io-client:
//! delivery exactly once and in order, shared state, a replica SIGKILLed, Redis restarted.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Client, Driver, Hubbub};
use crate::support::{RedisServer, eventually};

const PER_SENDER: usize = 10;

fn name_of(i: usize) -> String {
    format!("user{i}")
}

/// Waits for event `name` from every other client's `sendToAll(tag, i)` (i ≠ me).
async fn wait_tags(c: &mut Client, tag: &str, me: usize, n: usize) {
    for i in (0..n).filter(|i| *i != me) {
        c.wait_event("messages", |a| {
            a.first() == Some(&json!(tag)) && a.get(1) == Some(&json!(i))
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_deliver_exactly_once_in_order_and_share_state() {
    let redis = RedisServer::start();
    let replicas: Vec<Hubbub> = (0..3).map(|_| Hubbub::start(&redis.url(), &[])).collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    let driver = Driver::start().await;
    // Two clients per replica.
    let mut clients = Vec::new();
    for i in 0..6 {
        let c = driver
            .connect(&format!("c{i}"), &replicas[i % 3].url(), json!({}))
            .await;
        clients.push(c);
    }
    for (i, c) in clients.iter().enumerate() {
        let ack = c.ask("join", json!([name_of(i)])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    }
    // Everyone has every other client's join notice before the conversation starts.
    // (`joined` is emitted after the store write, so wait for presence to be complete.)
    assert!(
        eventually(Duration::from_secs(5), || async {
            clients[0].ask("who", json!([])).await[0]["online"] == json!(6)
        })
        .await
    );

    // Every client sends chat messages (acked as stored), raw sendToAll, then a marker.
    let mut acked_ids = Vec::new();
    for k in 0..PER_SENDER {
        for (i, c) in clients.iter().enumerate() {
            let ack = c.ask("messages", json!([format!("m-{i}-{k}")])).await;
            assert_eq!(ack[0]["ok"], json!(true), "{ack}");
            acked_ids.push(ack[0]["id"].as_u64().unwrap());
            c.emit("sendToAll", json!(["raw", i, k, {"nested": [k]}]))
                .await;
        }
    }
    let qa = clients[0].ask("question", json!(["Who is there?"])).await;
    assert_eq!(qa[0]["ok"], json!(true), "{qa}");
    let aa = clients[4]
        .ask("answer", json!(["Who is there?", "Nobody"]))
        .await;
    assert_eq!(aa[0]["ok"], json!(true), "{aa}");
    for (i, c) in clients.iter().enumerate() {
        c.emit("sendToAll", json!(["marker", i])).await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        wait_tags(c, "marker", i, 6).await;
    }
    // A second round through Redis: anything duplicated would have arrived before these.
    for (i, c) in clients.iter().enumerate() {
        c.emit("sendToAll", json!(["sync", i])).await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        wait_tags(c, "sync", i, 6).await;
    }

    for (me, c) in clients.iter_mut().enumerate() {
        let mut chat: HashMap<String, Vec<usize>> = HashMap::new();
        let mut raw: HashMap<usize, Vec<usize>> = HashMap::new();
        for args in c.events("messages") {
            match args.as_slice() {
                [Value::Object(m)] if m.contains_key("text") => {
                    let text = m["text"].as_str().unwrap();
                    let parts: Vec<&str> = text.split('-').collect();
                    chat.entry(parts[1].to_owned())
                        .or_default()
                        .push(parts[2].parse().unwrap());
                    assert_eq!(m["name"], json!(name_of(parts[1].parse().unwrap())));
                }
                [tag, i, k, nested] if tag == "raw" => {
                    let (i, k) = (i.as_u64().unwrap() as usize, k.as_u64().unwrap() as usize);
                    assert_eq!(
                        nested,
                        &json!({"nested": [k]}),
                        "sendToAll arguments arrive untouched"
                    );
                    raw.entry(i).or_default().push(k);
                }
                _ => {}
            }
        }
        let expected: Vec<usize> = (0..PER_SENDER).collect();
        for other in (0..6).filter(|o| *o != me) {
            assert_eq!(
                chat.get(&other.to_string()),
                Some(&expected),
                "client {me}: chat from {other}"
            );
            assert_eq!(
                raw.get(&other),
                Some(&expected),
                "client {me}: sendToAll from {other}"
            );
        }
        assert!(
            !chat.contains_key(&me.to_string()),
            "client {me} got its own chat message back"
        );
        assert!(
            !raw.contains_key(&me),
            "client {me} got its own sendToAll back"
        );
        let questions = c.events("question");
        let answers = c.events("answer");
        if me == 0 {
            assert!(questions.is_empty());
        } else {
            assert_eq!(questions, vec![vec![json!("Who is there?")]], "client {me}");
        }
        if me == 4 {
            assert!(answers.is_empty());
        } else {
            assert_eq!(
                answers,
                vec![vec![json!("Who is there?"), json!("Nobody")]],
                "client {me}"
            );
        }
    }

    // Shared history: a newcomer on any replica gets the same last 10 messages.
    acked_ids.sort();
    let last10: Vec<Value> = acked_ids[acked_ids.len() - 10..]
        .iter()
        .map(|i| json!(i))
        .collect();
    for (r, replica) in replicas.iter().enumerate() {
        let mut late = driver
            .connect(&format!("late{r}"), &replica.url(), json!({}))
            .await;
        // Questions and their answers are replayed on connection.
        late.wait_event("answer", |a| a == [json!("Who is there?"), json!("Nobody")])
            .await;
        assert_eq!(late.events("question"), vec![vec![json!("Who is there?")]]);
        let ack = late.ask("join", json!([format!("late{r}")])).await;
        assert_eq!(ack[0]["ok"], json!(true));
        let history: Vec<Value> = late
            .events("messages")
            .into_iter()
            .filter_map(|a| a.first().and_then(|m| m.get("id")).cloned())
            .collect();
        assert_eq!(history, last10, "history replayed by replica {r}");
        late.close().await;
    }

    // online and who agree on every replica.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let mut answers = Vec::new();
            for c in clients.iter().take(3) {
                answers.push(c.ask("who", json!([])).await[0].clone());
            }
            answers.iter().all(|a| a == &answers[0]) && answers[0]["online"] == json!(6)
        })
        .await,
        "who differs between replicas"
    );
    let who = clients[1].ask("who", json!([])).await;
    let expected: Vec<String> = (0..6).map(name_of).collect();
    assert_eq!(who[0]["names"], json!(expected));

    // Cross-replica traffic went through Redis, and lag was measured between hubbub nodes.
    let metrics = replicas[0].metrics();
    assert!(
        metrics.contains("hubbub_redis_pubsub_lag_seconds_count"),
        "{metrics}"
    );
    let lag_count: f64 = metrics
        .lines()
        .find(|l| l.starts_with("hubbub_redis_pubsub_lag_seconds_count"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(lag_count > 0.0, "no lag samples");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_replicas_users_vanish_and_its_clients_carry_on_elsewhere() {
    let redis = RedisServer::start();
    let mut replicas: Vec<Hubbub> = (0..3).map(|_| Hubbub::start(&redis.url(), &[])).collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    let driver = Driver::start().await;
    let mut a = driver.connect("a", &replicas[0].url(), json!({})).await;
    let b = driver.connect("b", &replicas[1].url(), json!({})).await;
    // Clients of replica 2 fail over to replica 1, as a Service would send them.
    let mut x = driver
        .connect(
            "x",
            &replicas[2].url(),
            json!({"failover": [replicas[1].url()], "rejoin": "xavier"}),
        )
        .await;
    let mut y = driver
        .connect(
            "y",
            &replicas[2].url(),
            json!({"failover": [replicas[0].url()], "rejoin": "yvonne"}),
        )
        .await;
    for (c, n) in [(&a, "ann"), (&b, "bob"), (&x, "xavier"), (&y, "yvonne")] {
        assert_eq!(c.ask("join", json!([n])).await[0]["ok"], json!(true));
    }
    assert_eq!(a.ask("who", json!([])).await[0]["online"], json!(4));

    replicas[2].kill();
    let killed = tokio::time::Instant::now();
    x.wait_for("failover", Duration::from_secs(10), |v| {
        v["ev"] == "failover"
    })
    .await;
    y.wait_for("failover", Duration::from_secs(10), |v| {
        v["ev"] == "failover"
    })
    .await;
    // The old entries of x and y vanish with the dead replica; their new ones remain:
    // 4 users, each name once (no ghosts), within the TTL (2 s) plus a heartbeat.
    assert!(
        eventually(Duration::from_secs(5), || async {
            let who = a.ask("who", json!([])).await;
            who[0]["online"] == json!(4)
                && who[0]["names"] == json!(["ann", "bob", "xavier", "yvonne"])
        })
        .await,
        "ghosts remain: {}",
        a.ask("who", json!([])).await
    );
    let settled = killed.elapsed();
    assert!(
        settled < Duration::from_secs(4),
        "presence settled after {settled:?}"
    );
    // The survivors keep working, and the moved clients carry on.
    let ack = x.ask("messages", json!(["back again"])).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    a.wait_event("messages", |m| {
        m.first().and_then(|m| m.get("text")) == Some(&json!("back again"))
    })
    .await;
    y.wait_event("messages", |m| {
        m.first().and_then(|m| m.get("text")) == Some(&json!("back again"))
    })
    .await;
    assert!(replicas[0].running() && replicas[1].running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_conversation_loses_no_acknowledged_message() {
    let dir = tempfile::tempdir().unwrap();
    let mut redis = RedisServer::start_persistent(crate::support::free_port(), dir.path());
    let mut replicas: Vec<Hubbub> = (0..2)
        .map(|_| Hubbub::start(&redis.url(), &["--history-size", "1000"]))
        .collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    let driver = Driver::start().await;
    let a = driver.connect("a", &replicas[0].url(), json!({})).await;
    let mut b = driver.connect("b", &replicas[1].url(), json!({})).await;
    a.ask("join", json!(["ann"])).await;
    b.ask("join", json!(["bob"])).await;

    let mut stored = Vec::new();
    let mut refused = 0;
    for k in 0..5 {
        let ack = a.ask("messages", json!([format!("before-{k}")])).await;
        stored.push(ack[0]["id"].as_u64().unwrap());
    }
    b.wait_event("messages", |m| {
        m.first().and_then(|m| m.get("text")) == Some(&json!("before-4"))
    })
    .await;

    // Redis goes away (saving its data, as a restart of a persistent Redis would).
    redis.cli(&["SHUTDOWN", "SAVE"]);
    redis.stop();
    for r in &replicas {
        assert!(
            eventually(Duration::from_secs(5), || async { r.readyz() == 503 }).await,
            "replica {} still ready without Redis",
            r.port
        );
        let why = r.readyz_text();
        assert!(why.contains("store") && why.contains("redis"), "{why}");
    }
    // Messages during the outage are refused with an error ack, never silently dropped.
    for k in 0..3 {
        let ack = a.ask("messages", json!([format!("during-{k}")])).await;
        match ack[0].get("ok") {
            Some(_) => stored.push(ack[0]["id"].as_u64().unwrap()),
            None => {
                assert!(ack[0]["error"].is_string(), "{ack}");
                refused += 1;
            }
        }
    }
    assert_eq!(refused, 3, "Redis is down: nothing can be stored");
    // Local delivery goes on: sendToAll does not need the store.
    let c = driver.connect("c", &replicas[0].url(), json!({})).await;
    a.emit("sendToAll", json!(["local-during-outage"])).await;
    let mut c = c;
    c.wait_event("messages", |m| m == [json!("local-during-outage")])
        .await;

    redis.restart();
    for r in &replicas {
        assert!(
            eventually(Duration::from_secs(10), || async { r.readyz() == 200 }).await,
            "replica {} not ready after Redis came back",
            r.port
        );
    }
    for k in 0..5 {
        let ack = a.ask("messages", json!([format!("after-{k}")])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
        stored.push(ack[0]["id"].as_u64().unwrap());
    }
    // Cross-replica delivery resumed (the subscriber was restored).
    b.wait_event("messages", |m| {
        m.first().and_then(|m| m.get("text")) == Some(&json!("after-4"))
    })
    .await;
    // Every acknowledged message is in the history.
    let mut late = driver.connect("late", &replicas[1].url(), json!({})).await;
    late.ask("join", json!(["late"])).await;
    let history: Vec<u64> = late
        .events("messages")
        .into_iter()
        .filter_map(|a| a.first().and_then(|m| m.get("id")).and_then(Value::as_u64))
        .collect();
    assert_eq!(history, stored, "history after the outage");
    for r in replicas.iter_mut() {
        assert!(r.running(), "a replica exited");
    }
    assert!(
        replicas[0]
            .metrics()
            .contains("hubbub_redis_reconnects_total{connection=\"subscriber\"} 1")
    );
}
