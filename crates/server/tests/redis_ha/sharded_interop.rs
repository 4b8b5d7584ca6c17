//! Interoperability on a Redis Cluster between hubbub and a Node.js socket.io 4.x server
//! using `createShardedAdapter` (`@socket.io/redis-adapter` 8.3, node-redis's cluster
//! client, `subscriptionMode: "dynamic"`): a hubbub-server process, an in-process hubbub
//! node, and official socket.io clients on both.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cluster::cluster_node;
use crate::harness::{Driver, Hubbub};
use crate::support::eventually;
use crate::topology::RedisClusterSet;

fn ids(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubbub_and_a_node_sharded_adapter_share_a_cluster() {
    let set = RedisClusterSet::start().await;
    let asking = set.nodes[0].port;
    let hub = Hubbub::start_with_redis(&["--redis-cluster-nodes", &set.seeds_arg()], &[]);
    let (link, adapter, io) = cluster_node(&set);
    adapter.on_server_side_emit(std::sync::Arc::new(
        |nsp, args| json!({"nsp": nsp, "echo": args}),
    ));
    let ns = io.of("/");
    assert!(link.wait_ready(Duration::from_secs(10)).await);
    hub.wait_ready().await;
    let driver = Driver::start().await;
    let seeds: Vec<String> = set
        .nodes
        .iter()
        .take(3)
        .map(|n| format!("redis://127.0.0.1:{}", n.port))
        .collect();
    let node = driver
        .call(json!({"op": "nodeServer", "clusterNodes": seeds}))
        .await;
    assert_eq!(node["ok"], json!(true), "{node}");
    let node_url = format!("http://127.0.0.1:{}", node["port"]);
    // Three servers on the namespace's shard channel: Node, hubbub-server, in-process.
    assert!(
        eventually(Duration::from_secs(5), || async {
            set.shard_numsub(asking, "socket.io#/#") == 3
        })
        .await
    );
    assert_eq!(
        driver.call(json!({"op": "nodeServerCount"})).await["count"],
        json!(3)
    );
    assert_eq!(io.adapter().server_count(&ns).await, 3);

    let mut hc1 = driver
        .connect("hc1", &hub.url(), json!({"auth": {"token": "t1"}}))
        .await;
    let mut hc2 = driver.connect("hc2", &hub.url(), json!({})).await;
    let mut nc = driver.connect("nc", &node_url, json!({})).await;
    assert_eq!(hc1.ask("join", json!(["hana"])).await[0]["ok"], json!(true));

    // hubbub -> Node: a raw broadcast, a stored chat message, binary.
    hc1.emit("sendToAll", json!(["from-hubbub", 1, {"b": [true]}]))
        .await;
    nc.wait_event("messages", |a| {
        a == [json!("from-hubbub"), json!(1), json!({"b": [true]})]
    })
    .await;
    let ack = hc1.ask("messages", json!(["hello node"])).await;
    let m = nc
        .wait_event("messages", |a| {
            a.first().and_then(|m| m.get("text")) == Some(&json!("hello node"))
        })
        .await;
    assert_eq!(m[0]["id"], ack[0]["id"]);
    hc1.emit(
        "sendToAll",
        json!(["bin-from-hubbub", {"$bin": [1, 2, 255]}]),
    )
    .await;
    nc.wait_event("messages", |a| {
        a == [json!("bin-from-hubbub"), json!({"$bin": [1, 2, 255]})]
    })
    .await;

    // Node -> hubbub: from a Node socket and from the Node server, binary too.
    nc.emit("sendToAll", json!(["from-node", 2])).await;
    hc1.wait_event("messages", |a| a == [json!("from-node"), json!(2)])
        .await;
    hc2.wait_event("messages", |a| a == [json!("from-node"), json!(2)])
        .await;
    driver
        .call(json!({"op": "nodeEmit", "event": "bin-news", "args": [{"$bin": [9, 8]}, "t"]}))
        .await;
    hc2.wait_event("bin-news", |a| a == [json!({"$bin": [9, 8]}), json!("t")])
        .await;

    // Node -> hubbub room broadcast: Node makes hc1 join "vip" (SOCKETS_JOIN on the
    // namespace channel); hubbub-server then subscribes the room's own channel, where
    // Node publishes broadcasts to "vip".
    driver
        .call(json!({"op": "nodeSocketsJoin", "room": hc1.sid, "rooms": ["vip"]}))
        .await;
    assert!(
        eventually(Duration::from_secs(5), || async {
            set.shard_numsub(asking, "socket.io#/#vip#") == 1
        })
        .await,
        "hubbub-server subscribed the vip channel"
    );
    driver
        .call(json!({"op": "nodeEmit", "room": "vip", "event": "vip-news", "args": [3]}))
        .await;
    driver
        .call(json!({"op": "nodeEmit", "event": "after-vip", "args": []}))
        .await;
    hc1.wait_event("vip-news", |a| a == [json!(3)]).await;
    hc2.wait_event("after-vip", |_| true).await;
    assert!(hc2.events("vip-news").is_empty() && nc.events("vip-news").is_empty());
    // Node to one hubbub socket: its 22-character id is not taken for a socket id, so Node
    // publishes on that socket's channel, which hubbub-server subscribed.
    driver
        .call(json!({"op": "nodeEmit", "room": hc2.sid, "event": "to-your-id", "args": [4]}))
        .await;
    hc2.wait_event("to-your-id", |a| a == [json!(4)]).await;

    // hubbub -> Node room broadcast (from the in-process node): only Node's "node-room".
    ns.to("node-room").emit("hub-room", &[json!("r")]);
    ns.emit("after-room", &[]);
    nc.wait_event("hub-room", |a| a == [json!("r")]).await;
    hc1.wait_event("after-room", |_| true).await;
    assert!(hc1.events("hub-room").is_empty() && hc2.events("hub-room").is_empty());

    // A Node broadcast with acks collects the acks of hubbub's clients too.
    let acked = driver
        .call(json!({"op": "nodeEmitWithAck", "event": "ack-me", "args": ["q?"]}))
        .await;
    assert_eq!(acked["ok"], json!(true), "{acked}");
    let mut from: Vec<String> = acked["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["from"].as_str().unwrap().to_owned())
        .collect();
    from.sort();
    assert_eq!(from, ["hc1", "hc2", "nc"]);

    // Node's fetchSockets and serverSideEmitWithAck include and reach hubbub.
    let fetched = driver.call(json!({"op": "nodeFetchSockets"})).await;
    assert_eq!(fetched["ok"], json!(true), "{fetched}");
    let mut expected = vec![hc1.sid.clone(), hc2.sid.clone(), nc.sid.clone()];
    expected.sort();
    assert_eq!(ids(&fetched["sockets"]), expected);
    let vip = driver
        .call(json!({"op": "nodeFetchSockets", "room": "vip"}))
        .await;
    assert_eq!(ids(&vip["sockets"]), vec![hc1.sid.clone()], "{vip}");
    let emitted = driver
        .call(json!({"op": "nodeServerSideEmitWithAck", "event": "ping-servers", "args": [7]}))
        .await;
    assert_eq!(emitted["ok"], json!(true), "{emitted}");
    let responses = emitted["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 2, "one per other server: {emitted}");
    assert!(
        responses.contains(&json!({"nsp": "/", "echo": ["ping-servers", 7]})),
        "{emitted}"
    );

    // hubbub's fetch_sockets is answered by Node and by hubbub-server.
    let sockets = ns.broadcast().fetch_sockets().await.unwrap();
    let mut seen: Vec<String> = sockets.iter().map(|s| s.id.to_string()).collect();
    seen.sort();
    assert_eq!(seen, expected);
    link.shutdown().await;
}
