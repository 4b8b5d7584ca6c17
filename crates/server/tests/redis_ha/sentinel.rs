//! Sentinel: three hubbub replicas find the master through three Sentinels; the master is
//! SIGKILLed mid-conversation; while it is gone `/readyz` is 503 naming the connection and
//! chat messages are refused with the error ack; after the promotion every replica is
//! back within seconds (the time is printed), the chat goes on exactly once, and the
//! history from before the failover is replayed to a newcomer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Client, Driver, Hubbub};
use crate::support::eventually;
use crate::topology::{MASTER_NAME, SentinelSet};

/// Chat texts received by `c` so far, with how often each arrived.
fn chat_texts(c: &mut Client) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for args in c.events("messages") {
        if let [Value::Object(m)] = args.as_slice()
            && let Some(t) = m.get("text").and_then(Value::as_str)
        {
            *seen.entry(t.to_owned()).or_insert(0) += 1;
        }
    }
    seen
}

/// Every client sends one chat message tagged `round`; each must be acked as stored.
pub async fn chat_round(clients: &[Client], round: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let text = format!("{round}-{i}");
        let ack = c.ask("messages", json!([text])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{round} from c{i}: {ack}");
        texts.push(text);
    }
    texts
}

/// Waits until every client got every other client's `texts` (its own are not echoed).
pub async fn wait_delivered(clients: &mut [Client], texts: &[String]) {
    for (me, c) in clients.iter_mut().enumerate() {
        for (from, text) in texts.iter().enumerate() {
            if from != me {
                c.wait_event("messages", |a| a[0]["text"] == json!(text))
                    .await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_mid_conversation_keeps_the_chat_exactly_once() {
    let mut set = SentinelSet::start().await;
    chat_through_a_failover(&mut set, &[]).await;
}

/// The scenario of this file on `set`: three hubbub replicas started with
/// `--redis-sentinels`, `--redis-sentinel-master` and `security` (passwords, TLS flags),
/// six clients chatting across them, the master SIGKILLed mid-conversation, the outage
/// refused with the error ack, every replica back after the promotion (the time is
/// printed), the chat going on exactly once, the earlier history replayed to a newcomer.
/// Returns the replicas, for their logs.
pub async fn chat_through_a_failover(set: &mut SentinelSet, security: &[&str]) -> Vec<Hubbub> {
    let sentinels = set.sentinels_arg();
    let mut redis = vec![
        "--redis-sentinels",
        sentinels.as_str(),
        "--redis-sentinel-master",
        MASTER_NAME,
    ];
    redis.extend_from_slice(security);
    let replicas: Vec<Hubbub> = (0..3)
        .map(|_| Hubbub::start_with_redis(&redis, &["--history-size", "50"]))
        .collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    let log = replicas[0].log_text();
    assert!(
        log.contains("topology=\"sentinel\"") || log.contains("topology=sentinel"),
        "the start-up log names the topology: {log}"
    );
    let driver = Driver::start().await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let c = driver
            .connect(&format!("s{i}"), &replicas[i % 3].url(), json!({}))
            .await;
        let ack = c.ask("join", json!([format!("user{i}")])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
        clients.push(c);
    }
    let before = chat_round(&clients, "before").await;
    wait_delivered(&mut clients, &before).await;
    // What the master acknowledged is on the replica before it dies (asynchronous
    // replication: without this, the last writes could be lost, see docs/redis.md).
    set.wait_replicated().await;

    // Mid-conversation: SIGKILL the master.
    let old_master = set.master.port;
    set.master.stop();
    let killed = Instant::now();

    // While it is gone: every replica says why it is not ready, and a chat message is
    // refused with the error ack, not dropped silently.
    for r in &replicas {
        let noticed = eventually(Duration::from_secs(10), || async { r.readyz() == 503 }).await;
        assert!(noticed, "replica {} stayed ready without a master", r.port);
    }
    let text = replicas[1].readyz_text();
    assert!(
        text.contains("redis (") && text.contains("commands connection down"),
        "{text}"
    );
    let refused = clients[2].ask("messages", json!(["during-outage"])).await;
    let promoted_already = set.master_port() != Some(old_master);
    if !promoted_already {
        assert!(
            refused[0]["error"].is_string(),
            "a message during the outage is refused: {refused}"
        );
    }

    // After the promotion: every replica is back (connected to the new master and
    // subscribed again).
    for r in &replicas {
        let back = eventually(Duration::from_secs(30), || async { r.readyz() == 200 }).await;
        assert!(
            back,
            "replica {} never came back: {}",
            r.port,
            r.readyz_text()
        );
    }
    let recovered = killed.elapsed();
    assert_eq!(
        set.master_port(),
        Some(set.replica.port),
        "the replica was promoted"
    );
    // The flags only, never their values (passwords).
    let flags: Vec<&str> = security
        .iter()
        .copied()
        .filter(|a| a.starts_with("--"))
        .collect();
    eprintln!(
        "sentinel failover ({}): master SIGKILLed -> all three hubbub replicas ready again in {:.2} s",
        if flags.is_empty() {
            "no password, no TLS".to_owned()
        } else {
            flags.join(" ")
        },
        recovered.as_secs_f64()
    );
    assert!(recovered < Duration::from_secs(20), "{recovered:?}");
    for r in &replicas {
        let m = r.metrics();
        assert!(
            m.lines()
                .any(|l| l.starts_with("hubbub_redis_master_changes_total ") && !l.ends_with(" 0")),
            "replica {} counted the master change: {}",
            r.port,
            m.lines()
                .filter(|l| l.contains("master_changes"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    // The chat goes on across the replicas, exactly once.
    let after = chat_round(&clients, "after").await;
    wait_delivered(&mut clients, &after).await;
    // One more round through Redis: a duplicate of anything above would be here by now.
    let sync = chat_round(&clients, "sync").await;
    wait_delivered(&mut clients, &sync).await;
    for (me, c) in clients.iter_mut().enumerate() {
        let seen = chat_texts(c);
        for (from, text) in before.iter().chain(&after).chain(&sync).enumerate() {
            let expected = usize::from(from % 6 != me);
            assert_eq!(
                seen.get(text).copied().unwrap_or(0),
                expected,
                "client s{me}: {text:?}"
            );
        }
        if !promoted_already {
            assert!(
                !seen.contains_key("during-outage"),
                "client s{me} got the refused message"
            );
        }
    }

    // A newcomer gets the history from before and after the failover, in order.
    let mut late = driver.connect("late", &replicas[2].url(), json!({})).await;
    let ack = late.ask("join", json!(["late"])).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");
    late.wait_event("messages", |a| a[0]["text"] == json!("sync-5"))
        .await;
    let history: Vec<String> = late
        .events("messages")
        .iter()
        .filter_map(|a| a[0]["text"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = before
        .iter()
        .chain(&after)
        .chain(&sync)
        .cloned()
        .collect::<Vec<_>>();
    // Everything written before the failover survived it (it had been replicated).
    assert_eq!(history, expected);
    // Presence is refreshed by every replica each --presence-heartbeat-secs (1 s here):
    // keys written to the old master after its last replication are back within a beat
    // or two of the promotion, so `who` is asked until it counts everyone (bounded).
    let deadline = Instant::now() + Duration::from_secs(10);
    let ids = loop {
        let ids = late.ask("who", json!([])).await;
        if ids[0]["online"] == json!(7) || Instant::now() >= deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ids[0]["online"], json!(7), "{ids}");
    replicas
}
