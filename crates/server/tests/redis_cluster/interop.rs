//! Interoperability on one Redis between hubbub and the official Node.js stack: a Node
//! socket.io 4.x server with @socket.io/redis-adapter, @socket.io/redis-emitter, a
//! hubbub-server process, and an in-process hubbub node (to broadcast to rooms and make
//! requests from the hubbub side).

use std::sync::Arc;
use std::time::Duration;

use hubbub_redis::adapter::RedisAdapter;
use hubbub_redis::link::{RedisLink, RedisSettings};
use hubbub_socketio::SocketMetrics;
use hubbub_socketio::{Io, IoConfig};
use prometheus::Registry;
use serde_json::{Value, json};

use crate::harness::{Driver, Hubbub};
use crate::support::{RedisServer, eventually};

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hubbub_and_node_socket_io_share_one_redis() {
    let redis = RedisServer::start();
    let hub = Hubbub::start(&redis.url(), &[]);
    // An in-process hubbub node without clients.
    let link = RedisLink::start(RedisSettings::new(redis.url()), &Registry::new()).unwrap();
    let adapter = RedisAdapter::new(link.clone());
    adapter.on_server_side_emit(Arc::new(|nsp, args| json!({"nsp": nsp, "echo": args})));
    let io = Io::new(
        IoConfig::default(),
        adapter,
        Arc::new(SocketMetrics::detached()),
    );
    let ns = io.of("/");
    assert!(link.wait_ready(Duration::from_secs(5)).await);
    hub.wait_ready().await;
    let driver = Driver::start().await;
    let node = driver
        .call(json!({"op": "nodeServer", "redisUrl": redis.url()}))
        .await;
    assert_eq!(node["ok"], json!(true), "{node}");
    let node_url = format!("http://127.0.0.1:{}", node["port"]);
    // Three servers subscribed to the request channel: Node, hubbub-server, in-process.
    assert!(
        eventually(Duration::from_secs(5), || async {
            redis.cli(&["PUBSUB", "NUMSUB", "socket.io-request#/#"]) == "socket.io-request#/#\n3"
        })
        .await
    );
    assert_eq!(
        driver.call(json!({"op": "nodeServerCount"})).await["count"],
        json!(3)
    );

    let mut hc1 = driver
        .connect("hc1", &hub.url(), json!({"auth": {"token": "t1"}}))
        .await;
    let mut hc2 = driver.connect("hc2", &hub.url(), json!({})).await;
    let mut nc = driver.connect("nc", &node_url, json!({})).await;
    assert_eq!(hc1.ask("join", json!(["hana"])).await[0]["ok"], json!(true));

    // hubbub -> Node: a raw broadcast and a stored chat message.
    hc1.emit("sendToAll", json!(["from-hubbub", 1, {"b": [true]}]))
        .await;
    nc.wait_event("messages", |a| {
        a == [json!("from-hubbub"), json!(1), json!({"b": [true]})]
    })
    .await;
    hc2.wait_event("messages", |a| a.first() == Some(&json!("from-hubbub")))
        .await;
    let ack = hc1.ask("messages", json!(["hello node"])).await;
    let id = ack[0]["id"].clone();
    let m = nc
        .wait_event("messages", |a| {
            a.first().and_then(|m| m.get("text")) == Some(&json!("hello node"))
        })
        .await;
    assert_eq!(m[0]["id"], id);
    assert_eq!(m[0]["name"], json!("hana"));

    // Binary arguments cross in both directions (MessagePack bin <-> Socket.IO attachments).
    hc1.emit(
        "sendToAll",
        json!(["bin-from-hubbub", {"$bin": [1, 2, 255]}, {"n": {"$bin": [7]}}]),
    )
    .await;
    nc.wait_event("messages", |a| {
        a == [
            json!("bin-from-hubbub"),
            json!({"$bin": [1, 2, 255]}),
            json!({"n": {"$bin": [7]}}),
        ]
    })
    .await;
    driver
        .call(json!({"op": "nodeEmit", "event": "bin-news", "args": [{"$bin": [9, 8]}, "t"]}))
        .await;
    hc2.wait_event("bin-news", |a| a == [json!({"$bin": [9, 8]}), json!("t")])
        .await;

    // Node -> hubbub: a broadcast from a Node socket, and from the Node server.
    nc.emit("sendToAll", json!(["from-node", 2])).await;
    hc1.wait_event("messages", |a| a == [json!("from-node"), json!(2)])
        .await;
    hc2.wait_event("messages", |a| a == [json!("from-node"), json!(2)])
        .await;
    driver
        .call(json!({"op": "nodeEmit", "event": "news", "args": ["n1", {"deep": [1, 2.5]}]}))
        .await;
    hc1.wait_event("news", |a| a == [json!("n1"), json!({"deep": [1, 2.5]})])
        .await;

    // Node -> hubbub room broadcast: Node makes hc1 (only) join "vip" across nodes.
    driver
        .call(json!({"op": "nodeSocketsJoin", "room": hc1.sid, "rooms": ["vip"]}))
        .await;
    let fetched = driver
        .call(json!({"op": "nodeFetchSockets", "room": "vip"}))
        .await;
    assert_eq!(fetched["ok"], json!(true), "{fetched}");
    assert_eq!(ids(&fetched["sockets"]), vec![hc1.sid.clone()], "{fetched}");
    driver
        .call(json!({"op": "nodeEmit", "room": "vip", "event": "vip-news", "args": [3]}))
        .await;
    driver
        .call(json!({"op": "emitterEmit", "room": "vip", "event": "vip-emitted", "args": [4]}))
        .await;
    driver
        .call(json!({"op": "nodeEmit", "event": "after-vip", "args": []}))
        .await;
    hc1.wait_event("vip-news", |a| a == [json!(3)]).await;
    hc1.wait_event("vip-emitted", |a| a == [json!(4)]).await;
    hc2.wait_event("after-vip", |_| true).await;
    assert!(hc2.events("vip-news").is_empty() && hc2.events("vip-emitted").is_empty());
    assert!(nc.events("vip-news").is_empty());

    // hubbub -> Node room broadcast (from the in-process node): only Node's "node-room".
    ns.to("node-room").emit("hub-room", &[json!("r")]);
    ns.to(nc.sid.as_str()).emit("to-your-id", &[json!(5)]);
    ns.emit("after-room", &[]);
    nc.wait_event("hub-room", |a| a == [json!("r")]).await;
    nc.wait_event("to-your-id", |a| a == [json!(5)]).await;
    hc1.wait_event("after-room", |_| true).await;
    assert!(hc1.events("hub-room").is_empty() && hc1.events("to-your-id").is_empty());

    // The emitter reaches hubbub's clients.
    driver
        .call(json!({"op": "emitterEmit", "event": "emitted", "args": ["e", 6]}))
        .await;
    hc1.wait_event("emitted", |a| a == [json!("e"), json!(6)])
        .await;
    hc2.wait_event("emitted", |a| a == [json!("e"), json!(6)])
        .await;

    // A Node broadcast with acks collects the acks of hubbub's clients too.
    let acked = driver
        .call(json!({"op": "nodeEmitWithAck", "event": "ack-me", "args": ["q?"]}))
        .await;
    assert_eq!(acked["ok"], json!(true), "{acked}");
    assert!(acked["ms"].as_u64().unwrap() < 2000, "{acked}");
    let mut from: Vec<String> = acked["responses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert_eq!(r["got"], json!("q?"));
            r["from"].as_str().unwrap().to_owned()
        })
        .collect();
    from.sort();
    assert_eq!(from, ["hc1", "hc2", "nc"]);

    // Node's requests complete without a timeout and include hubbub's sockets.
    let fetched = driver.call(json!({"op": "nodeFetchSockets"})).await;
    assert_eq!(fetched["ok"], json!(true), "{fetched}");
    assert!(fetched["ms"].as_u64().unwrap() < 2000, "{fetched}");
    let mut all = ids(&fetched["sockets"]);
    all.sort();
    let mut expected = vec![hc1.sid.clone(), hc2.sid.clone(), nc.sid.clone()];
    expected.sort();
    assert_eq!(all, expected);
    let hc1_info = fetched["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == json!(hc1.sid))
        .unwrap();
    assert_eq!(hc1_info["auth"], json!({"token": "t1"}));
    // socket.data (the chat's nickname) and socket.handshake with every key a Node socket's
    // answer has (their values are empty here: the engine keeps handshakes for the admin UI
    // only; tests/node/admin.test.mjs checks them filled in across two replicas).
    assert_eq!(hc1_info["data"], json!({"name": "hana"}), "{hc1_info}");
    let mut keys: Vec<&str> = hc1_info["handshake"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "address", "auth", "headers", "issued", "query", "secure", "time", "url", "xdomain"
        ],
        "{hc1_info}"
    );
    assert_eq!(hc1_info["handshake"]["address"], json!(""), "{hc1_info}");
    assert!(
        hc1_info["rooms"]
            .as_array()
            .unwrap()
            .contains(&json!("vip"))
    );

    let rooms = driver.call(json!({"op": "nodeAllRooms"})).await;
    assert_eq!(rooms["ok"], json!(true), "{rooms}");
    let rooms: Vec<String> = serde_json::from_value(rooms["rooms"].clone()).unwrap();
    assert!(
        rooms.contains(&"vip".to_string()) && rooms.contains(&hc2.sid),
        "{rooms:?}"
    );

    let emitted = driver
        .call(json!({"op": "nodeServerSideEmitWithAck", "event": "ping-servers", "args": [7]}))
        .await;
    assert_eq!(emitted["ok"], json!(true), "{emitted}");
    assert!(emitted["ms"].as_u64().unwrap() < 2000, "{emitted}");
    let responses = emitted["responses"].as_array().unwrap();
    assert_eq!(responses.len(), 2, "one per other server: {emitted}");
    assert!(
        responses.contains(&Value::Null),
        "hubbub-server acks with null: {emitted}"
    );
    assert!(
        responses.contains(&json!({"nsp": "/", "echo": ["ping-servers", 7]})),
        "the in-process node's handler answered: {emitted}"
    );

    // Requests from the hubbub side are answered by Node and by hubbub-server.
    let sockets = ns.broadcast().fetch_sockets().await.unwrap();
    let mut seen: Vec<String> = sockets.iter().map(|s| s.id.to_string()).collect();
    seen.sort();
    assert_eq!(seen, expected);
    assert_eq!(io.adapter().server_count(&ns).await, 3);
    let all_rooms = io.adapter().all_rooms(&ns).await.unwrap();
    assert!(all_rooms.contains("node-room") && all_rooms.contains("vip"));
    link.shutdown().await;
}
