//! `RedisStore` against a real Redis: the same behaviour as `MemoryStore`, shared between
//! replicas, bounded, with presence that expires with its replica and survives outages.

use std::sync::Arc;
use std::time::Duration;

use hubbub_redis::link::{RedisLink, RedisSettings};
use hubbub_server::chat::store::{ANSWERS_PER_QUESTION, Store, StoreError, StoreLimits};
use hubbub_server::chat::store_redis::{PresenceSettings, RedisStore};
use prometheus::Registry;

use crate::support::{RedisServer, eventually};

const LIMITS: StoreLimits = StoreLimits {
    history_size: 10,
    question_history: 20,
};

fn fast_presence() -> PresenceSettings {
    PresenceSettings {
        heartbeat: Duration::from_millis(300),
        ttl: Duration::from_secs(2),
    }
}

fn settings(redis: &RedisServer, prefix: &str) -> RedisSettings {
    let mut s = RedisSettings::new(redis.url());
    s.key_prefix = prefix.to_owned();
    s.command_timeout = Duration::from_secs(1);
    s.reconnect_max = Duration::from_millis(300);
    s
}

/// One replica's store: its own link (connections, node id) on the shared Redis.
async fn replica(
    redis: &RedisServer,
    prefix: &str,
    limits: StoreLimits,
) -> (RedisLink, Arc<RedisStore>) {
    let link = RedisLink::start(settings(redis, prefix), &Registry::new()).unwrap();
    assert!(
        link.wait_ready(Duration::from_secs(5)).await,
        "link never became ready"
    );
    let store = RedisStore::new(link.clone(), limits, fast_presence());
    store.start_heartbeat();
    (link, store)
}

#[tokio::test]
async fn history_is_shared_bounded_and_ordered_by_id() {
    let redis = RedisServer::start();
    let (_la, a) = replica(&redis, "t1", LIMITS).await;
    let (_lb, b) = replica(&redis, "t1", LIMITS).await;
    // Two replicas appending concurrently.
    let (ra, rb) = tokio::join!(
        async {
            let mut ids = Vec::new();
            for i in 0..8 {
                ids.push(
                    a.append_message("ann", &format!("a{i}"), 1000 + i)
                        .await
                        .unwrap()
                        .id,
                );
            }
            ids
        },
        async {
            let mut ids = Vec::new();
            for i in 0..8 {
                ids.push(
                    b.append_message("bob", &format!("b{i}"), 2000 + i)
                        .await
                        .unwrap()
                        .id,
                );
            }
            ids
        }
    );
    assert!(ra.windows(2).all(|w| w[0] < w[1]) && rb.windows(2).all(|w| w[0] < w[1]));
    let mut all: Vec<u64> = ra.iter().chain(rb.iter()).copied().collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 16, "ids are unique across replicas");

    let from_a = a.recent_messages().await.unwrap();
    let from_b = b.recent_messages().await.unwrap();
    assert_eq!(from_a, from_b, "both replicas read the same history");
    assert_eq!(from_a.len(), 10, "trimmed to --history-size");
    assert!(
        from_a.windows(2).all(|w| w[0].id < w[1].id),
        "oldest first, history order is id order"
    );
    assert_eq!(from_a.last().unwrap().id, 16);
    // The last 10 of 16 accepted messages.
    assert_eq!(from_a.first().unwrap().id, 7);
    let a7 = from_a.iter().find(|m| m.text == "a7").unwrap();
    assert_eq!((a7.name.as_str(), a7.ts), ("ann", 1007));
    assert_eq!(redis.cli(&["LLEN", "t1:history"]), "10");
}

#[tokio::test]
async fn texts_with_quotes_and_unicode_round_trip() {
    let redis = RedisServer::start();
    let (_l, s) = replica(&redis, "t2", LIMITS).await;
    let text = "say \"hi\" \\ \u{1F600} ünïcode\nnewline: {\"id\":99}";
    let stored = s.append_message("n\"ame", text, 42).await.unwrap();
    let recent = s.recent_messages().await.unwrap();
    assert_eq!(recent, vec![stored]);
    assert_eq!(recent[0].text, text);
    s.add_question("q:with:colons \"quoted\"").await.unwrap();
    assert!(
        s.add_answer("q:with:colons \"quoted\"", "a:1")
            .await
            .unwrap()
    );
    let qs = s.questions().await.unwrap();
    assert_eq!(qs[0].text, "q:with:colons \"quoted\"");
    assert_eq!(qs[0].answers, vec!["a:1"]);
}

#[tokio::test]
async fn questions_are_bounded_and_answers_attach_to_stored_questions() {
    let redis = RedisServer::start();
    let limits = StoreLimits {
        history_size: 10,
        question_history: 2,
    };
    let (_la, a) = replica(&redis, "t3", limits).await;
    let (_lb, b) = replica(&redis, "t3", limits).await;
    a.add_question("q1").await.unwrap();
    assert!(b.add_answer("q1", "early").await.unwrap());
    b.add_question("q2").await.unwrap();
    a.add_question("q3").await.unwrap();
    assert!(!a.add_answer("q1", "gone").await.unwrap(), "q1 was trimmed");
    assert_eq!(
        redis.cli(&["EXISTS", "t3:answers:1"]),
        "0",
        "a trimmed question's answers are deleted"
    );
    assert!(b.add_answer("q3", "a").await.unwrap());
    let qs = a.questions().await.unwrap();
    assert_eq!(qs, b.questions().await.unwrap());
    assert_eq!(
        qs.iter().map(|q| q.text.as_str()).collect::<Vec<_>>(),
        ["q2", "q3"]
    );
    assert_eq!(qs[1].answers, vec!["a".to_string()]);
    for i in 0..60 {
        a.add_answer("q2", &i.to_string()).await.unwrap();
    }
    let qs = b.questions().await.unwrap();
    assert_eq!(qs[0].answers.len(), ANSWERS_PER_QUESTION);
    assert_eq!(
        qs[0].answers[0], "10",
        "the newest answers are kept, oldest first"
    );
    assert_eq!(qs[0].answers[49], "59");
    // The newest question with a text gets the answer.
    a.add_question("q2").await.unwrap();
    assert!(a.add_answer("q2", "to-newest").await.unwrap());
    let qs = a.questions().await.unwrap();
    assert_eq!(
        qs.iter().map(|q| q.text.as_str()).collect::<Vec<_>>(),
        ["q3", "q2"]
    );
    assert_eq!(qs[1].answers, vec!["to-newest".to_string()]);
}

#[tokio::test]
async fn presence_spans_replicas_and_renames() {
    let redis = RedisServer::start();
    let (_la, a) = replica(&redis, "t4", LIMITS).await;
    let (_lb, b) = replica(&redis, "t4", LIMITS).await;
    a.set_present("s1", "ann").await.unwrap();
    b.set_present("s2", "bob").await.unwrap();
    a.set_present("s3", "cy").await.unwrap();
    a.set_present("s1", "anna").await.unwrap();
    for s in [&a, &b] {
        assert_eq!(s.online().await.unwrap(), 3);
        assert_eq!(s.names(10).await.unwrap(), vec!["anna", "bob", "cy"]);
        assert_eq!(s.names(2).await.unwrap().len(), 2);
    }
    assert_eq!(
        a.remove_present("s1").await.unwrap().as_deref(),
        Some("anna")
    );
    assert_eq!(a.remove_present("s1").await.unwrap(), None);
    assert_eq!(
        b.remove_present("s2").await.unwrap().as_deref(),
        Some("bob")
    );
    assert_eq!(b.online().await.unwrap(), 1);
    assert_eq!(a.names(10).await.unwrap(), vec!["cy"]);
}

#[tokio::test]
async fn a_crashed_replicas_users_vanish_within_the_ttl() {
    let redis = RedisServer::start();
    let (_la, a) = replica(&redis, "t5", LIMITS).await;
    let (lb, b) = replica(&redis, "t5", LIMITS).await;
    a.set_present("a1", "ann").await.unwrap();
    b.set_present("b1", "bob").await.unwrap();
    b.set_present("b2", "bea").await.unwrap();
    assert_eq!(a.online().await.unwrap(), 3);
    // Replica B "crashes": its heartbeat stops and its connections close, no clean-up.
    let crashed_at = tokio::time::Instant::now();
    drop(b);
    lb.shutdown().await;
    // Heartbeats keep A's own users present well past the TTL.
    assert!(
        eventually(Duration::from_secs(5), || async {
            a.online().await.unwrap() == 1
        })
        .await,
        "B's users are still counted"
    );
    let gone_after = crashed_at.elapsed();
    assert!(
        gone_after <= Duration::from_secs(3),
        "vanished after {gone_after:?}, TTL is 2s"
    );
    assert_eq!(a.names(10).await.unwrap(), vec!["ann"]);
    // A's hash outlives several TTLs thanks to its heartbeat.
    tokio::time::sleep(Duration::from_secs(3)).await; // deliberately longer than the TTL
    assert_eq!(a.online().await.unwrap(), 1);
}

#[tokio::test]
async fn a_graceful_withdraw_removes_presence_at_once() {
    let redis = RedisServer::start();
    let (_la, a) = replica(&redis, "t6", LIMITS).await;
    let (_lb, b) = replica(&redis, "t6", LIMITS).await;
    a.set_present("a1", "ann").await.unwrap();
    b.set_present("b1", "bob").await.unwrap();
    b.withdraw().await.unwrap();
    assert_eq!(a.online().await.unwrap(), 1);
}

#[tokio::test]
async fn outage_fails_fast_then_recovers_and_repairs_presence() {
    let mut redis = RedisServer::start();
    let (link, s) = replica(&redis, "t7", LIMITS).await;
    s.set_present("a1", "ann").await.unwrap();
    s.append_message("ann", "before", 1).await.unwrap();
    assert!(s.is_ready());

    redis.stop();
    assert!(
        eventually(Duration::from_secs(3), || async { !s.is_ready() }).await,
        "readiness did not drop"
    );
    let started = tokio::time::Instant::now();
    let err = s.append_message("ann", "during", 2).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(200),
        "failed slowly: {:?}",
        started.elapsed()
    );
    assert!(matches!(s.online().await, Err(StoreError::Unavailable(_))));
    assert!(
        s.set_present("a2", "late").await.is_err(),
        "a join is refused too"
    );

    redis.restart(); // empty: no persistence
    assert!(
        link.wait_ready(Duration::from_secs(5)).await,
        "did not reconnect"
    );
    assert!(s.is_ready());
    // The heartbeat notices the missing hash and rewrites this replica's users.
    assert!(
        eventually(Duration::from_secs(3), || async {
            s.online().await.ok() == Some(1)
        })
        .await,
        "presence was not repaired"
    );
    assert_eq!(s.names(10).await.unwrap(), vec!["ann"]);
    let m = s.append_message("ann", "after", 3).await.unwrap();
    assert_eq!(s.recent_messages().await.unwrap(), vec![m]);
    assert!(
        link.metrics()
            .reconnects
            .with_label_values(&["commands"])
            .get()
            >= 1
    );
}

#[tokio::test]
async fn a_removal_that_failed_during_an_outage_is_applied_after_it() {
    let dir = tempfile::tempdir().unwrap();
    // Keep data across the restart for this test: the hash must survive it.
    let mut redis = RedisServer::start_persistent(crate::support::free_port(), dir.path());
    let (link, s) = replica(&redis, "t8", LIMITS).await;
    s.set_present("a1", "ann").await.unwrap();
    s.set_present("a2", "al").await.unwrap();
    redis.cli(&["SAVE"]);
    redis.stop();
    assert!(eventually(Duration::from_secs(3), || async { !s.is_ready() }).await);
    assert!(s.remove_present("a2").await.is_err());
    redis.restart();
    assert!(link.wait_ready(Duration::from_secs(5)).await);
    assert!(
        eventually(Duration::from_secs(3), || async {
            s.names(10).await.ok() == Some(vec!["ann".to_string()])
        })
        .await,
        "the failed removal was not retried: {:?}",
        s.names(10).await
    );
}

/// A failover may promote a replica that had not received this replica's presence hash,
/// and a user may join before the next heartbeat: the join recreates the hash with the
/// newcomer only. The heartbeat sees that the hash holds fewer users than this replica has
/// and rewrites it (it used to rewrite only a hash that was gone).
#[tokio::test]
async fn a_hash_recreated_by_a_join_after_its_loss_is_repaired() {
    let redis = RedisServer::start();
    let (_link, s) = replica(&redis, "t9", LIMITS).await;
    s.set_present("a1", "ann").await.unwrap();
    s.set_present("a2", "al").await.unwrap();
    // What the promoted replica lacks: this replica's hash.
    redis.cli(&[
        "EVAL",
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end",
        "0",
        "t9:presence:*",
    ]);
    s.set_present("a3", "cy").await.unwrap();
    assert!(
        eventually(Duration::from_secs(3), || async {
            s.names(10).await.ok() == Some(vec!["al".to_string(), "ann".into(), "cy".into()])
        })
        .await,
        "presence was not repaired: {:?}",
        s.names(10).await
    );
    assert_eq!(s.online().await.unwrap(), 3);
}

#[tokio::test]
async fn unreachable_at_start_then_ready_when_redis_appears() {
    let port = crate::support::free_port();
    let mut s = RedisSettings::new(format!("redis://127.0.0.1:{port}"));
    s.reconnect_max = Duration::from_millis(200);
    let registry = Registry::new();
    let link = RedisLink::start(s, &registry).unwrap();
    let store = RedisStore::new(link.clone(), LIMITS, fast_presence());
    store.start_heartbeat();
    assert!(!store.is_ready());
    assert!(matches!(
        store.recent_messages().await,
        Err(StoreError::Unavailable(_))
    ));
    let _redis = RedisServer::start_on(port);
    assert!(
        link.wait_ready(Duration::from_secs(5)).await,
        "never became ready"
    );
    store.append_message("x", "y", 1).await.unwrap();
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("hubbub_redis_connected{connection=\"commands\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("hubbub_redis_commands_total{op=\"append_message\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn a_password_from_the_settings_or_the_url_authenticates() {
    let redis = RedisServer::start_with(&["--requirepass", "s3cret"]);
    // Password given separately (--redis-password).
    let mut s = settings(&redis, "t9");
    s.password = Some("s3cret".into());
    let link = RedisLink::start(s, &Registry::new()).unwrap();
    assert!(
        link.wait_ready(Duration::from_secs(5)).await,
        "not ready with --redis-password"
    );
    let store = RedisStore::new(link.clone(), LIMITS, fast_presence());
    store.append_message("a", "b", 1).await.unwrap();
    // Password in the URL.
    let url = format!("redis://:s3cret@127.0.0.1:{}", redis.port);
    let link2 = RedisLink::start(RedisSettings::new(url), &Registry::new()).unwrap();
    assert!(
        link2.wait_ready(Duration::from_secs(5)).await,
        "not ready with the password in the URL"
    );
    // A wrong password never becomes ready, and commands are refused at once.
    let mut wrong = settings(&redis, "t9");
    wrong.password = Some("nope".into());
    let link3 = RedisLink::start(wrong, &Registry::new()).unwrap();
    assert!(!link3.wait_ready(Duration::from_millis(800)).await);
    let s3 = RedisStore::new(link3, LIMITS, fast_presence());
    assert!(matches!(
        s3.recent_messages().await,
        Err(StoreError::Unavailable(_))
    ));
}
