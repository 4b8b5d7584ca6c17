//! Settings that cannot work stop `hubbub-server` at start-up with an error naming the
//! setting: conflicting Redis modes, Sentinels that answer nothing, a master name the
//! Sentinels do not know, a cluster seed that is not in cluster mode.

use std::time::Duration;

use crate::harness::Hubbub;
use crate::support::{RedisServer, free_port};
use crate::topology::SentinelSet;

/// Starts hubbub with `redis` flags, expects it to exit with a failure within `within`,
/// and returns its output.
pub async fn refused(redis: &[&str], within: Duration) -> String {
    let mut hub = Hubbub::start_with_redis(redis, &[]);
    let status = hub.wait_exit(within).await;
    let log = hub.log_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "hubbub-server should have refused {redis:?}; status {status:?}, log:\n{log}"
    );
    log
}

#[tokio::test]
async fn two_redis_modes_at_once_are_refused_naming_both() {
    let log = refused(
        &[
            "--redis-url",
            "redis://127.0.0.1:1",
            "--redis-cluster-nodes",
            "127.0.0.1:2",
        ],
        Duration::from_secs(5),
    )
    .await;
    assert!(
        log.contains("--redis-url and --redis-cluster-nodes"),
        "{log}"
    );
}

#[tokio::test]
async fn sentinels_that_answer_nothing_are_refused_naming_the_setting() {
    let (a, b) = (free_port(), free_port());
    let list = format!("127.0.0.1:{a},127.0.0.1:{b}");
    let log = refused(
        &["--redis-sentinels", &list, "--redis-sentinel-master", "m"],
        Duration::from_secs(20),
    )
    .await;
    assert!(
        log.contains("--redis-sentinels: no Sentinel answered"),
        "{log}"
    );
    assert!(log.contains(&format!("127.0.0.1:{a}")), "{log}");
}

#[tokio::test]
async fn a_data_node_given_as_a_sentinel_is_refused() {
    let redis = RedisServer::start();
    let list = format!("127.0.0.1:{}", redis.port);
    let log = refused(
        &["--redis-sentinels", &list, "--redis-sentinel-master", "m"],
        Duration::from_secs(10),
    )
    .await;
    assert!(log.contains("--redis-sentinels"), "{log}");
    assert!(log.contains("is not a Sentinel"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_master_name_is_refused_naming_the_setting() {
    let set = SentinelSet::start().await;
    let list = set.sentinels_arg();
    let log = refused(
        &[
            "--redis-sentinels",
            &list,
            "--redis-sentinel-master",
            "no-such-master",
        ],
        Duration::from_secs(10),
    )
    .await;
    assert!(
        log.contains("--redis-sentinel-master") && log.contains("no-such-master"),
        "{log}"
    );
}

#[tokio::test]
async fn a_seed_outside_cluster_mode_is_refused_naming_the_setting() {
    let redis = RedisServer::start();
    let seeds = format!("127.0.0.1:{}", redis.port);
    let log = refused(&["--redis-cluster-nodes", &seeds], Duration::from_secs(10)).await;
    assert!(
        log.contains("--redis-cluster-nodes") && log.contains("is not in cluster mode"),
        "{log}"
    );
}
