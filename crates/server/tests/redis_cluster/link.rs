//! `RedisLink` against a real Redis: ordered publishing, delivery to the handler, and
//! subscriptions restored after Redis restarts (checked, not assumed).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hubbub_redis::link::{InboundHandler, MessageKind, RedisLink, RedisSettings};
use prometheus::Registry;
use tokio::sync::mpsc;

use crate::support::{RedisServer, eventually};

struct Collect(mpsc::UnboundedSender<(String, Bytes)>);

impl InboundHandler for Collect {
    fn on_message(&self, channel: &str, payload: Bytes) {
        let _ = self.0.send((channel.to_owned(), payload));
    }
}

fn settings(redis: &RedisServer) -> RedisSettings {
    let mut s = RedisSettings::new(redis.url());
    s.command_timeout = Duration::from_secs(1);
    s.reconnect_max = Duration::from_millis(300);
    s
}

async fn link(redis: &RedisServer) -> RedisLink {
    let link = RedisLink::start(settings(redis), &Registry::new()).unwrap();
    assert!(link.wait_ready(Duration::from_secs(5)).await);
    link
}

async fn recv(rx: &mut mpsc::UnboundedReceiver<(String, Bytes)>) -> (String, Bytes) {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("no message within 5s")
        .expect("handler dropped")
}

#[tokio::test]
async fn publishes_arrive_in_order_on_channels_and_patterns() {
    let redis = RedisServer::start();
    let receiver = link(&redis).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    receiver.set_handler(Arc::new(Collect(tx)));
    receiver
        .subscribe(
            &["socket.io-request#/#".to_string()],
            &["socket.io#/#*".to_string()],
        )
        .await;
    assert!(receiver.is_ready());
    let sender = link(&redis).await;
    assert_eq!(sender.numsub("socket.io-request#/#").await.unwrap(), 1);
    for i in 0..2000u32 {
        let channel = if i % 3 == 0 {
            "socket.io#/#room#"
        } else {
            "socket.io#/#"
        };
        sender
            .publish(
                channel.to_string(),
                Bytes::from(i.to_be_bytes().to_vec()),
                MessageKind::Broadcast,
            )
            .unwrap();
    }
    sender
        .publish(
            "socket.io-request#/#".into(),
            Bytes::from_static(b"{}"),
            MessageKind::Request,
        )
        .unwrap();
    for i in 0..2000u32 {
        let (channel, payload) = recv(&mut rx).await;
        assert_eq!(payload.as_ref(), i.to_be_bytes(), "out of order at {i}");
        assert_eq!(channel.ends_with("room#"), i % 3 == 0);
    }
    let (channel, _) = recv(&mut rx).await;
    assert_eq!(channel, "socket.io-request#/#");
    assert_eq!(
        sender
            .metrics()
            .published
            .with_label_values(&["broadcast"])
            .get(),
        2000
    );
    assert_eq!(
        receiver
            .metrics()
            .received
            .with_label_values(&["broadcast"])
            .get(),
        2000
    );
    assert_eq!(
        receiver
            .metrics()
            .received
            .with_label_values(&["request"])
            .get(),
        1
    );
}

#[tokio::test]
async fn subscriptions_are_restored_after_redis_restarts() {
    let mut redis = RedisServer::start();
    let receiver = link(&redis).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    receiver.set_handler(Arc::new(Collect(tx)));
    receiver
        .subscribe(
            &["socket.io-request#/#".to_string()],
            &["socket.io#/#*".to_string()],
        )
        .await;
    redis.cli(&["PUBLISH", "socket.io#/#", "one"]);
    assert_eq!(recv(&mut rx).await.1.as_ref(), b"one");

    redis.restart();
    assert!(
        eventually(Duration::from_secs(3), || async { !receiver.is_ready() }).await
            || receiver
                .metrics()
                .reconnects
                .with_label_values(&["subscriber"])
                .get()
                > 0,
        "the loss was not noticed"
    );
    assert!(
        receiver.wait_ready(Duration::from_secs(5)).await,
        "not ready again"
    );
    // Redis itself says the subscriber is back on both the channel and the pattern.
    assert_eq!(
        redis.cli(&["PUBSUB", "NUMSUB", "socket.io-request#/#"]),
        "socket.io-request#/#\n1"
    );
    assert_eq!(redis.cli(&["PUBSUB", "NUMPAT"]), "1");
    redis.cli(&["PUBLISH", "socket.io#/#r#", "two"]);
    let (channel, payload) = recv(&mut rx).await;
    assert_eq!(
        (channel.as_str(), payload.as_ref()),
        ("socket.io#/#r#", b"two".as_ref())
    );
    redis.cli(&["PUBLISH", "socket.io-request#/#", "three"]);
    assert_eq!(recv(&mut rx).await.1.as_ref(), b"three");
    assert_eq!(
        receiver
            .metrics()
            .reconnects
            .with_label_values(&["subscriber"])
            .get(),
        1
    );
}

#[tokio::test]
async fn publishing_while_down_fails_at_once_and_is_counted() {
    let mut redis = RedisServer::start();
    let l = link(&redis).await;
    redis.stop();
    assert!(eventually(Duration::from_secs(3), || async { !l.commands_ready() }).await);
    assert!(!l.is_ready());
    assert!(
        l.publish(
            "socket.io#/#".into(),
            Bytes::from_static(b"x"),
            MessageKind::Broadcast
        )
        .is_err()
    );
    assert!(l.metrics().publish_dropped.get() >= 1);
    assert!(l.numsub("socket.io-request#/#").await.is_err());
    assert_eq!(
        l.metrics().connected.with_label_values(&["commands"]).get(),
        0
    );
}
