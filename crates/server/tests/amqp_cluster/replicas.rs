//! Three hubbub-server replicas sharing one RabbitMQ (cross-replica traffic) and one Redis
//! (stored state only), driven with the official socket.io-client.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::broker;
use crate::harness::{Client, Driver, Hubbub};
use crate::support::{RedisServer, eventually};

/// Chat messages (and as many `sendToAll`s) each client sends in a round.
pub const PER_SENDER: usize = 10;

/// Starts a replica on Redis (stored state) and RabbitMQ (traffic).
pub fn replica(redis: &RedisServer, amqp_url: &str) -> Hubbub {
    Hubbub::start(&redis.url(), &["--amqp-url", amqp_url])
}

/// Waits for every other client's `sendToAll(tag, i)` (i ≠ me).
pub async fn wait_tags(c: &mut Client, tag: &str, me: usize, n: usize) {
    for i in (0..n).filter(|i| *i != me) {
        c.wait_event("messages", |a| {
            a.first() == Some(&json!(tag)) && a.get(1) == Some(&json!(i))
        })
        .await;
    }
}

/// One round: every client sends `PER_SENDER` chat messages and `sendToAll`s tagged
/// `round`, then a marker every other client must receive; then checks that each client got
/// every other client's messages of this round exactly once and in order, and none of its own.
pub async fn converse(clients: &mut [Client], round: &str) {
    let n = clients.len();
    for k in 0..PER_SENDER {
        for (i, c) in clients.iter().enumerate() {
            let ack = c.ask("messages", json!([format!("{round}-{i}-{k}")])).await;
            assert_eq!(ack[0]["ok"], json!(true), "{ack}");
            c.emit("sendToAll", json!([round, i, k, {"nested": [k]}]))
                .await;
        }
    }
    let marker = format!("{round}-marker");
    for (i, c) in clients.iter().enumerate() {
        c.emit("sendToAll", json!([marker, i])).await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        wait_tags(c, &marker, i, n).await;
    }
    // A second marker: anything duplicated would have arrived before it.
    let sync = format!("{round}-sync");
    for (i, c) in clients.iter().enumerate() {
        c.emit("sendToAll", json!([sync, i])).await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        wait_tags(c, &sync, i, n).await;
    }
    let prefix = format!("{round}-");
    for (me, c) in clients.iter_mut().enumerate() {
        let mut chat: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut raw: HashMap<usize, Vec<usize>> = HashMap::new();
        for args in c.events("messages") {
            match args.as_slice() {
                [Value::Object(m)] if m.contains_key("text") => {
                    let Some(rest) = m["text"].as_str().unwrap().strip_prefix(&prefix) else {
                        continue;
                    };
                    let (i, k) = rest.split_once('-').unwrap();
                    chat.entry(i.parse().unwrap())
                        .or_default()
                        .push(k.parse().unwrap());
                }
                [tag, i, k, nested] if tag == round => {
                    let (i, k) = (i.as_u64().unwrap() as usize, k.as_u64().unwrap() as usize);
                    assert_eq!(nested, &json!({"nested": [k]}));
                    raw.entry(i).or_default().push(k);
                }
                _ => {}
            }
        }
        let expected: Vec<usize> = (0..PER_SENDER).collect();
        for other in (0..n).filter(|o| *o != me) {
            assert_eq!(
                chat.get(&other),
                Some(&expected),
                "round {round}, client {me}: chat from {other}"
            );
            assert_eq!(
                raw.get(&other),
                Some(&expected),
                "round {round}, client {me}: sendToAll from {other}"
            );
        }
        assert!(
            !chat.contains_key(&me),
            "client {me} got its own message back"
        );
        assert!(
            !raw.contains_key(&me),
            "client {me} got its own sendToAll back"
        );
    }
}

/// Connects `n` clients spread over `replicas` and joins them as `user<i>`.
pub async fn clients(
    driver: &std::sync::Arc<Driver>,
    replicas: &[Hubbub],
    n: usize,
    tag: &str,
) -> Vec<Client> {
    let mut clients = Vec::new();
    for i in 0..n {
        let c = driver
            .connect(
                &format!("{tag}{i}"),
                &replicas[i % replicas.len()].url(),
                json!({}),
            )
            .await;
        let ack = c.ask("join", json!([format!("user{i}")])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
        clients.push(c);
    }
    clients
}

/// A counter or gauge value from `/metrics` text (0 when absent).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_share_rabbitmq_and_redis_carries_no_pubsub() {
    let rabbit = broker::shared();
    rabbit.add_vhost("three");
    let url = rabbit.url("three");
    let redis = RedisServer::start();
    let replicas: Vec<Hubbub> = (0..3).map(|_| replica(&redis, &url)).collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    // One exclusive queue per replica, bound to the shared exchanges.
    let queues = rabbit.queues("three");
    assert_eq!(queues.len(), 3, "{queues:?}");
    assert!(
        queues.iter().all(|q| q.starts_with("hubbub.replica.")),
        "{queues:?}"
    );
    let driver = Driver::start().await;
    let mut clients = clients(&driver, &replicas, 6, "c").await;
    // `who` counts the users of every replica (presence lives in Redis).
    assert!(
        eventually(Duration::from_secs(5), || async {
            let mut all = true;
            for c in clients.iter().take(3) {
                all &= c.ask("who", json!([])).await[0]["online"] == json!(6);
            }
            all
        })
        .await,
        "who does not count all replicas"
    );

    converse(&mut clients, "m").await;

    // A question and its answer reach every other client exactly once.
    let qa = clients[0].ask("question", json!(["Who is there?"])).await;
    assert_eq!(qa[0]["ok"], json!(true), "{qa}");
    let aa = clients[4]
        .ask("answer", json!(["Who is there?", "Nobody"]))
        .await;
    assert_eq!(aa[0]["ok"], json!(true), "{aa}");
    for (i, c) in clients.iter().enumerate() {
        c.emit("sendToAll", json!(["qa-marker", i])).await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        wait_tags(c, "qa-marker", i, 6).await;
    }
    for (me, c) in clients.iter_mut().enumerate() {
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
    let who = clients[1].ask("who", json!([])).await;
    assert_eq!(who[0]["online"], json!(6), "{who}");

    // Everything crossed replicas through RabbitMQ, and nothing through Redis pub/sub.
    let stats = redis.cli(&["INFO", "commandstats"]);
    assert!(
        !stats.contains("cmdstat_publish:"),
        "Redis saw PUBLISH: {stats}"
    );
    assert!(!stats.contains("cmdstat_subscribe:"), "{stats}");
    assert!(!stats.contains("cmdstat_psubscribe:"), "{stats}");
    assert!(stats.contains("cmdstat_"), "Redis kept the state: {stats}");
    for r in &replicas {
        let m = r.metrics();
        assert_eq!(metric(&m, "hubbub_amqp_connected"), 1.0, "{m}");
        assert!(
            metric(&m, "hubbub_amqp_published_total{kind=\"broadcast\"}")
                >= (2 * PER_SENDER) as f64,
            "{m}"
        );
        assert!(
            metric(&m, "hubbub_amqp_received_total{kind=\"broadcast\"}") > 0.0,
            "{m}"
        );
        assert!(metric(&m, "hubbub_amqp_lag_seconds_count") > 0.0, "{m}");
        assert_eq!(metric(&m, "hubbub_amqp_receive_lost_total"), 0.0, "{m}");
        assert_eq!(metric(&m, "hubbub_amqp_publish_dropped_total"), 0.0, "{m}");
        assert_eq!(metric(&m, "hubbub_amqp_peers"), 2.0, "{m}");
        assert_eq!(
            metric(&m, "hubbub_redis_published_total{kind=\"broadcast\"}"),
            0.0
        );
    }
}
