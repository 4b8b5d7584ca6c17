//! Three hubbub-server replicas on RabbitMQ alone (`--amqp-url`, no Redis at all): live
//! traffic crosses replicas through the broker, while history, questions and presence stay
//! in each replica's memory (what `docs/amqp.md` and the README say, asserted here).

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::broker::{self, BROKER_PATIENCE};
use crate::harness::{Client, Driver, Hubbub};
use crate::replicas::{PER_SENDER, clients, converse, metric, wait_tags};
use crate::support::eventually;

/// History kept per replica: more than one replica's clients send in a round, so a
/// newcomer's replay shows everything its replica stored and nothing else.
const HISTORY: &str = "100";

/// Starts a replica with RabbitMQ only: no `--redis-url`, so its state is in memory.
fn replica_alone(amqp_url: &str) -> Hubbub {
    Hubbub::start_with_redis(&[], &["--amqp-url", amqp_url, "--history-size", HISTORY])
}

/// The sorted `names` of a `who` answer.
async fn who(c: &Client) -> (u64, BTreeSet<String>) {
    let ack = c.ask("who", json!([])).await;
    let names = ack[0]["names"]
        .as_array()
        .unwrap_or_else(|| panic!("{ack}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    (ack[0]["online"].as_u64().unwrap(), names)
}

/// The senders of the history a newcomer was replayed on join (`messages` events with a
/// stored message object), as `(name, text)`.
fn replayed(c: &mut Client) -> Vec<(String, String)> {
    c.events("messages")
        .iter()
        .filter_map(|args| match args.first() {
            Some(Value::Object(m)) if m.contains_key("text") => Some((
                m["name"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_rabbitmq_alone() {
    let rabbit = broker::shared();
    rabbit.add_vhost("alone");
    let url = rabbit.url("alone");
    let mut replicas: Vec<Hubbub> = (0..3).map(|_| replica_alone(&url)).collect();
    for r in &replicas {
        r.wait_ready().await;
        let m = r.metrics();
        assert!(
            !m.contains("hubbub_redis_connected"),
            "a replica without --redis-url has no Redis link: {m}"
        );
    }
    let queues = rabbit.queues("alone");
    assert_eq!(queues.len(), 3, "{queues:?}");
    let driver = Driver::start().await;
    // Clients i and i+3 on replica i.
    let mut cs = clients(&driver, &replicas, 6, "a").await;

    // Presence is per replica: `who` on replica i names only its own two users.
    for (i, c) in cs.iter().enumerate().take(3) {
        let (online, names) = who(c).await;
        let own: BTreeSet<String> = [format!("user{i}"), format!("user{}", i + 3)].into();
        assert_eq!((online, names), (2, own), "who on replica {i}");
    }
    // Peers are known through the broker's heartbeats even without Redis.
    for r in &replicas {
        assert!(
            eventually(BROKER_PATIENCE, || async {
                metric(&r.metrics(), "hubbub_amqp_peers") == 2.0
            })
            .await,
            "{}",
            r.metrics()
        );
    }

    // Live traffic crosses replicas: every chat message and sendToAll reaches every other
    // client exactly once, in order per sender, never back to its sender.
    converse(&mut cs, "m").await;

    // A question and an answer given on other replicas reach everyone else exactly once.
    let qa = cs[0].ask("question", json!(["Is anyone there?"])).await;
    assert_eq!(qa[0]["ok"], json!(true), "{qa}");
    // The answer is given on replica 1, which never stored the question (asked on 0).
    let aa = cs[4]
        .ask("answer", json!(["Is anyone there?", "Yes"]))
        .await;
    assert_eq!(aa[0], json!({"ok": true, "stored": false}), "{aa}");
    // Asked and answered on replica 0 itself: stored with its question there.
    let own = cs[3]
        .ask("answer", json!(["Is anyone there?", "Me too"]))
        .await;
    assert_eq!(own[0], json!({"ok": true, "stored": true}), "{own}");
    for (i, c) in cs.iter().enumerate() {
        c.emit("sendToAll", json!(["qa-marker", i])).await;
    }
    for (i, c) in cs.iter_mut().enumerate() {
        wait_tags(c, "qa-marker", i, 6).await;
    }
    for (me, c) in cs.iter_mut().enumerate() {
        let questions = c.events("question");
        // Two senders on two replicas: order is kept per sender only, so compare sorted.
        let mut answers = c.events("answer");
        answers.sort_by_key(|a| a[1].to_string());
        let expected_q = if me == 0 {
            vec![]
        } else {
            vec![vec![json!("Is anyone there?")]]
        };
        assert_eq!(questions, expected_q, "client {me}");
        let mut expected_a = vec![];
        if me != 3 {
            expected_a.push(vec![json!("Is anyone there?"), json!("Me too")]);
        }
        if me != 4 {
            expected_a.push(vec![json!("Is anyone there?"), json!("Yes")]);
        }
        assert_eq!(answers, expected_a, "client {me}");
    }

    // History and questions are per replica: a newcomer on replica 1 is replayed exactly
    // the chat messages of replica 1's clients (users 1 and 4) and no question; one on
    // replica 0 is replayed the question with the answer given there only.
    let mut fresh = Vec::new();
    for (r, replica) in replicas.iter().enumerate().take(2) {
        let c = driver
            .connect(&format!("newcomer{r}"), &replica.url(), json!({}))
            .await;
        let ack = c.ask("join", json!([format!("newcomer{r}")])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
        // Its own replica's users plus itself: 3.
        assert_eq!(ack[0]["online"], json!(3), "{ack}");
        fresh.push(c);
    }
    let on_1 = replayed(&mut fresh[1]);
    let mut expected = Vec::new();
    for k in 0..PER_SENDER {
        for i in [1, 4] {
            expected.push((format!("user{i}"), format!("m-{i}-{k}")));
        }
    }
    assert_eq!(on_1, expected, "history replayed on replica 1");
    assert!(fresh[1].events("question").is_empty());
    let on_0 = replayed(&mut fresh[0]);
    assert!(
        on_0.iter()
            .all(|(name, _)| name == "user0" || name == "user3"),
        "{on_0:?}"
    );
    assert_eq!(on_0.len(), 2 * PER_SENDER, "{on_0:?}");
    assert_eq!(
        fresh[0].events("question"),
        vec![vec![json!("Is anyone there?")]]
    );
    assert_eq!(
        fresh[0].events("answer"),
        vec![vec![json!("Is anyone there?"), json!("Me too")]]
    );
    for c in &fresh {
        c.close().await;
    }

    // SIGKILL replica 2: its queue goes with its connection, the others go on.
    replicas[2].kill();
    assert!(
        eventually(BROKER_PATIENCE, || async {
            rabbit.queues("alone").len() == 2
        })
        .await,
        "queues left: {:?}",
        rabbit.queues("alone")
    );
    for r in replicas.iter_mut().take(2) {
        assert!(r.running());
        assert_eq!(r.readyz(), 200);
        assert!(
            eventually(BROKER_PATIENCE, || async {
                metric(&r.metrics(), "hubbub_amqp_peers") == 1.0
            })
            .await,
            "the dead replica still counts as a peer: {}",
            r.metrics()
        );
    }
    // The clients of replicas 0 and 1 still reach each other exactly once and in order.
    let mut survivors: Vec<Client> = cs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 2)
        .map(|(_, c)| c)
        .collect();
    converse(&mut survivors, "after-kill").await;
    for r in replicas.iter().take(2) {
        let m = r.metrics();
        assert_eq!(metric(&m, "hubbub_amqp_receive_lost_total"), 0.0, "{m}");
        assert_eq!(metric(&m, "hubbub_amqp_publish_dropped_total"), 0.0, "{m}");
    }
    // Presence stays per replica: replica 0 still counts its own two users.
    let (online, _) = who(&survivors[0]).await;
    assert_eq!(online, 2);
}
