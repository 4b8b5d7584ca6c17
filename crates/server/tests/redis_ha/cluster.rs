//! Redis Cluster: three masters with one replica each. Three hubbub replicas and an
//! in-process hubbub node on sharded pub/sub: the whole chat (stored through Lua scripts
//! and MULTIs on hash-tagged keys), `who`, room broadcasts on room channels; the master of
//! the namespace channel's shard SIGKILLed, its replica promoted, the chat going on
//! exactly once. Room channels spread evenly over the three shards.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hubbub_redis::link::{RedisLink, RedisSettings};
use hubbub_redis::sharded::ShardedAdapter;
use hubbub_redis::topology::{NodeAddr, RedisTopology};
use hubbub_socketio::SocketMetrics;
use hubbub_socketio::{Io, IoConfig};
use prometheus::Registry;
use serde_json::{Value, json};

use crate::harness::{Client, Driver, Hubbub};
use crate::support::eventually;
use crate::topology::{RedisClusterSet, cli};

/// An in-process hubbub node on the cluster (no clients; it broadcasts and asks).
pub fn cluster_node(set: &RedisClusterSet) -> (RedisLink, Arc<ShardedAdapter>, Arc<Io>) {
    let topology = RedisTopology::Cluster {
        nodes: NodeAddr::parse_list(&set.seeds_arg()).unwrap(),
        tls: false,
    };
    let link = RedisLink::start(RedisSettings::with_topology(topology), &Registry::new()).unwrap();
    let adapter = ShardedAdapter::new(link.clone());
    let io = Io::new(
        IoConfig::default(),
        adapter.clone(),
        Arc::new(SocketMetrics::detached()),
    );
    (link, adapter, io)
}

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

async fn chat_round(clients: &[Client], round: &str) -> Vec<String> {
    let mut texts = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let text = format!("{round}-{i}");
        let ack = c.ask("messages", json!([text])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{round} from c{i}: {ack}");
        texts.push(text);
    }
    texts
}

async fn wait_delivered(clients: &mut [Client], texts: &[String]) {
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
async fn three_replicas_chat_over_a_cluster_and_follow_a_master_failover() {
    let mut set = RedisClusterSet::start().await;
    let seeds = set.seeds_arg();
    let replicas: Vec<Hubbub> = (0..3)
        .map(|_| {
            Hubbub::start_with_redis(
                &["--redis-cluster-nodes", seeds.as_str()],
                &["--history-size", "50"],
            )
        })
        .collect();
    let (link, _adapter, io) = cluster_node(&set);
    let ns = io.of("/");
    assert!(link.wait_ready(Duration::from_secs(10)).await);
    for r in &replicas {
        r.wait_ready().await;
    }
    assert!(
        replicas[0].log_text().contains("topology=\"cluster\""),
        "{}",
        replicas[0].log_text()
    );
    let asking = set.nodes[0].port;
    // Four servers on the namespace channel (three replicas and the in-process node).
    assert!(
        eventually(Duration::from_secs(5), || async {
            set.shard_numsub(asking, "socket.io#/#") == 4
        })
        .await
    );
    let driver = Driver::start().await;
    let mut clients = Vec::new();
    for i in 0..6 {
        let c = driver
            .connect(&format!("k{i}"), &replicas[i % 3].url(), json!({}))
            .await;
        let ack = c.ask("join", json!([format!("user{i}")])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
        clients.push(c);
    }
    let who = clients[5].ask("who", json!([])).await;
    assert_eq!(who[0]["online"], json!(6), "{who}");

    // The whole chat: stored messages (a Lua script on hash-tagged keys), raw broadcasts,
    // a question (script) and its answer (script), presence (MULTI).
    let before = chat_round(&clients, "before").await;
    wait_delivered(&mut clients, &before).await;
    clients[0].emit("sendToAll", json!(["raw", 0])).await;
    for c in clients.iter_mut().skip(1) {
        c.wait_event("messages", |a| a == [json!("raw"), json!(0)])
            .await;
    }
    let q = clients[1].ask("question", json!(["Which shard?"])).await;
    assert_eq!(q[0]["ok"], json!(true), "{q}");
    let a = clients[2]
        .ask("answer", json!(["Which shard?", "All of them"]))
        .await;
    assert_eq!(a[0]["ok"], json!(true), "{a}");
    clients[4]
        .wait_event("answer", |a| {
            a == [json!("Which shard?"), json!("All of them")]
        })
        .await;

    // Room broadcasts: the in-process node makes k0 (replica 0) and k4 (replica 1) join
    // "vip" across the nodes; both replicas subscribe the room's shard channel.
    ns.to(clients[0].sid.as_str())
        .join(vec!["vip".into()])
        .await;
    ns.to(clients[4].sid.as_str())
        .join(vec!["vip".into()])
        .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            set.shard_numsub(asking, "socket.io#/#vip#") == 2
        })
        .await,
        "both replicas with a member subscribe the room channel"
    );
    ns.to("vip").emit("vip-news", &[json!("v1")]);
    clients[0]
        .wait_event("vip-news", |a| a == [json!("v1")])
        .await;
    clients[4]
        .wait_event("vip-news", |a| a == [json!("v1")])
        .await;
    ns.emit("after-vip", &[]);
    for c in clients.iter_mut() {
        c.wait_event("after-vip", |_| true).await;
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let got = c.events("vip-news").len();
        assert_eq!(
            got,
            usize::from(i == 0 || i == 4),
            "k{i} got vip-news {got} times"
        );
    }
    // A broadcast to one socket travels on that socket's channel (hubbub's ids have 22
    // characters, which the Node dynamic mode does not take for socket ids).
    ns.to(clients[3].sid.as_str()).emit("just-you", &[json!(3)]);
    clients[3].wait_event("just-you", |a| a == [json!(3)]).await;

    // Kill the master of the namespace channel's shard; its replica takes over.
    let slot = set.slot_of(asking, "socket.io#/#");
    let master = set.master_of_slot(asking, slot).unwrap();
    let replica = set
        .replica_of(asking, master)
        .expect("the master has a replica");
    let asking = set
        .nodes
        .iter()
        .map(|n| n.port)
        .find(|p| *p != master && *p != replica)
        .unwrap();
    set.kill(master);
    let killed = Instant::now();
    let noticed = eventually(Duration::from_secs(10), || async {
        replicas.iter().all(|r| r.readyz() == 503)
    })
    .await;
    // `/readyz` names the shard whose primary is gone, until the replica takes over.
    let shard_named = eventually(Duration::from_secs(5), || async {
        replicas[0]
            .readyz_text()
            .contains(&format!("primary 127.0.0.1:{master}) unreachable"))
    })
    .await;
    let detail = replicas[0].readyz_text();
    assert!(
        set.wait_promoted(asking, replica).await,
        "the replica was never promoted"
    );
    let promoted = killed.elapsed();
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
    eprintln!(
        "cluster failover: master SIGKILLed -> replica promoted in {:.2} s, all three hubbub replicas ready in {:.2} s (503 seen: {noticed}; {detail})",
        promoted.as_secs_f64(),
        recovered.as_secs_f64()
    );
    assert!(
        noticed,
        "the replicas stayed ready while a shard had no master"
    );
    assert!(shard_named, "/readyz did not name the shard: {detail}");
    assert!(link.wait_ready(Duration::from_secs(30)).await);
    assert!(
        eventually(Duration::from_secs(10), || async {
            set.shard_numsub(asking, "socket.io#/#") == 4
        })
        .await,
        "every node subscribed the namespace channel on the promoted replica"
    );

    // The chat goes on, exactly once, and the history survived.
    let after = chat_round(&clients, "after").await;
    wait_delivered(&mut clients, &after).await;
    let sync = chat_round(&clients, "sync").await;
    wait_delivered(&mut clients, &sync).await;
    for (me, c) in clients.iter_mut().enumerate() {
        let seen = chat_texts(c);
        for (from, text) in before.iter().chain(&after).chain(&sync).enumerate() {
            let expected = usize::from(from % 6 != me);
            assert_eq!(
                seen.get(text).copied().unwrap_or(0),
                expected,
                "client k{me}: {text:?}"
            );
        }
    }
    ns.to("vip").emit("vip-news", &[json!("v2")]);
    clients[4]
        .wait_event("vip-news", |a| a == [json!("v2")])
        .await;
    let mut late = driver.connect("late", &replicas[2].url(), json!({})).await;
    assert_eq!(
        late.ask("join", json!(["late"])).await[0]["ok"],
        json!(true)
    );
    late.wait_event("messages", |a| a[0]["text"] == json!("sync-5"))
        .await;
    let history: Vec<String> = late
        .events("messages")
        .iter()
        .filter_map(|a| a[0]["text"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = before.iter().chain(&after).chain(&sync).cloned().collect();
    assert_eq!(history, expected);
    late.wait_event("question", |a| a == [json!("Which shard?")])
        .await;
    let who = late.ask("who", json!([])).await;
    assert_eq!(who[0]["online"], json!(7), "{who}");
    // The chat's keys all live in the slot of the hash tag {hubbub}.
    let tag_slot = set.slot_of(asking, "{hubbub}");
    let owner = set.master_of_slot(asking, tag_slot).unwrap();
    assert_eq!(cli(owner, &["llen", "{hubbub}:history"]), "18");
    link.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_channels_spread_evenly_over_three_shards() {
    let set = RedisClusterSet::start().await;
    let asking = set.nodes[0].port;
    let masters = set.masters(asking);
    let (link, _adapter, _io) = cluster_node(&set);
    assert!(link.wait_ready(Duration::from_secs(10)).await);
    // What the adapter subscribes for 300 rooms: one shard channel each.
    let channels: Vec<String> = (0..300).map(|i| format!("socket.io#/#room-{i}#")).collect();
    link.subscribe_sharded(&channels).await;
    // Count on each master what it really holds (PUBSUB SHARDCHANNELS is per node).
    let mut per_master: HashMap<u16, usize> = HashMap::new();
    for (port, _, _) in &masters {
        let held = cli(*port, &["pubsub", "shardchannels", "socket.io#/#room-*"]);
        per_master.insert(*port, held.lines().filter(|l| !l.is_empty()).count());
    }
    eprintln!("300 room channels over the shards: {per_master:?}");
    assert_eq!(per_master.len(), 3, "{per_master:?}");
    assert_eq!(per_master.values().sum::<usize>(), 300, "{per_master:?}");
    for (port, n) in &per_master {
        assert!(
            (70..=130).contains(n),
            "shard {port} holds {n} of 300 room channels: {per_master:?}"
        );
    }
    link.shutdown().await;
}
