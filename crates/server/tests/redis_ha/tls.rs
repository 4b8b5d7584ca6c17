//! TLS with a private CA: every `redis-server` here listens for TLS only (`--port 0
//! --tls-port`), with a certificate for 127.0.0.1 signed by a CA made for the test
//! ([`TestPki`]); hubbub trusts that CA only through `--redis-ca-file`. So anything that
//! works here went over TLS, and the certificate was checked.
//!
//! - One Redis by `rediss://` URL: chat across two hubbub replicas.
//! - Sentinels and data nodes all on TLS (replication and the Sentinels' own links too),
//!   with passwords: the failover scenario of `sentinel.rs`, logs free of passwords.
//! - A Redis Cluster on TLS (client port, bus and replication), with a password: chat,
//!   `who` and a room broadcast across two hubbub replicas.
//! - Without the CA, or with an unrelated one, start-up stops at once naming
//!   `--redis-ca-file` (for the URL, a Sentinel and a cluster seed); a CA file that is
//!   missing or not PEM is refused before anything is asked; `rediss://` to a plain-TCP
//!   Redis (which never answers the handshake) leaves hubbub serving but not ready, its
//!   log asking whether that port speaks TLS.

use std::time::Duration;

use serde_json::json;

use crate::bad_settings::refused;
use crate::harness::{Driver, Hubbub};
use crate::pki::TestPki;
use crate::sentinel::{chat_round, chat_through_a_failover, wait_delivered};
use crate::support::{Access, RedisServer, eventually};
use crate::topology::{MASTER_NAME, RedisClusterSet, SentinelSet};

/// The data nodes' password in the Sentinel and cluster tests.
const DATA_PASSWORD: &str = "tls-data-pw-31c8";
/// The Sentinels' own password.
const SENTINEL_PASSWORD: &str = "tls-sentinel-pw-9d02";

fn tls_only(pki: &TestPki, password: Option<&str>) -> Access {
    Access {
        password: password.map(str::to_owned),
        tls: Some(pki.server_files()),
    }
}

/// Two clients on two replicas: each one's message reaches the other.
async fn chat_across(a: &Hubbub, b: &Hubbub, tag: &str) {
    let driver = Driver::start().await;
    let mut clients = Vec::new();
    for (i, r) in [a, b].into_iter().enumerate() {
        let c = driver
            .connect(&format!("{tag}{i}"), &r.url(), json!({}))
            .await;
        let ack = c.ask("join", json!([format!("{tag}-user{i}")])).await;
        assert_eq!(ack[0]["ok"], json!(true), "{ack}");
        clients.push(c);
    }
    let texts = chat_round(&clients, tag).await;
    wait_delivered(&mut clients, &texts).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_redis_over_tls_with_a_private_ca() {
    let pki = TestPki::make();
    let redis = RedisServer::start_secured(tls_only(&pki, None), &[]);
    let url = redis.url();
    assert!(url.starts_with("rediss://"), "{url}");
    let ca = pki.ca();
    let replicas: Vec<Hubbub> = (0..2)
        .map(|_| Hubbub::start(&url, &["--redis-ca-file", &ca]))
        .collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    chat_across(&replicas[0], &replicas[1], "tls").await;
    // Both replicas' connections are TLS connections of this server (it has no other port).
    let clients = redis.cli(&["client", "list"]);
    assert!(clients.lines().count() >= 4, "{clients}");

    // Without the CA: the system's roots do not know it; start-up stops at once.
    let log = refused(&["--redis-url", &url], Duration::from_secs(8)).await;
    let expected = format!(
        "--redis-ca-file: the TLS certificate of Redis at rediss://127.0.0.1:{} is not accepted",
        redis.port
    );
    assert!(log.contains(&expected), "{log}");
    assert!(log.contains("UnknownIssuer"), "{log}");
    assert!(log.contains("the system's roots do not trust it"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // An unrelated CA is no better.
    let other = pki.other_ca();
    let log = refused(
        &["--redis-url", &url, "--redis-ca-file", &other],
        Duration::from_secs(8),
    )
    .await;
    assert!(log.contains(&expected), "{log}");
    assert!(
        log.contains("neither the system's roots nor --redis-ca-file trust it"),
        "{log}"
    );
    // A CA file that cannot be one is refused before Redis is asked.
    for (file, says) in [
        (
            "/nonexistent/ca.pem".to_owned(),
            "cannot read /nonexistent/ca.pem",
        ),
        (
            pki.path("server.key").to_str().unwrap().to_owned(),
            "no PEM certificate",
        ),
    ] {
        let log = refused(
            &["--redis-url", &url, "--redis-ca-file", &file],
            Duration::from_secs(5),
        )
        .await;
        assert!(
            log.contains("invalid setting --redis-ca-file (HUBBUB_REDIS_CA_FILE)")
                && log.contains(says),
            "{file}: {log}"
        );
    }
    // rediss:// to a Redis without TLS: it never answers the handshake, so this is not
    // a definite refusal; hubbub serves, not ready, and its log asks the question.
    let plain = RedisServer::start();
    let wrong = format!("rediss://127.0.0.1:{}", plain.port);
    let mut hub = Hubbub::start(&wrong, &["--redis-ca-file", &ca]);
    let said = eventually(Duration::from_secs(10), || async {
        hub.log_text().contains(
            "does not answer yet (no answer within 3s; does it listen for TLS on that port?)",
        )
    })
    .await;
    assert!(said, "{}", hub.log_text());
    assert!(hub.running());
    assert!(
        eventually(Duration::from_secs(5), || async { hub.readyz() == 503 }).await,
        "{}",
        hub.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls_with_passwords_follows_a_failover() {
    let pki = TestPki::make();
    let mut set =
        SentinelSet::start_secured(tls_only(&pki, Some(DATA_PASSWORD)), Some(SENTINEL_PASSWORD))
            .await;
    let sentinels = set.sentinels_arg();
    let passwords = [
        "--redis-password",
        DATA_PASSWORD,
        "--redis-sentinel-password",
        SENTINEL_PASSWORD,
    ];
    // Without the CA, the first Sentinel's certificate stops start-up.
    let no_ca = [
        &[
            "--redis-sentinels",
            sentinels.as_str(),
            "--redis-sentinel-master",
            MASTER_NAME,
            "--redis-tls",
        ][..],
        &passwords[..],
    ]
    .concat();
    let log = refused(&no_ca, Duration::from_secs(8)).await;
    assert!(
        log.contains("--redis-ca-file: the TLS certificate of sentinel 127.0.0.1:")
            && log.contains("UnknownIssuer"),
        "{log}"
    );

    let ca = pki.ca();
    let security = [
        &["--redis-tls", "--redis-ca-file", ca.as_str()][..],
        &passwords[..],
    ]
    .concat();
    let replicas = chat_through_a_failover(&mut set, &security).await;
    for r in &replicas {
        let log = r.log_text();
        for secret in [DATA_PASSWORD, SENTINEL_PASSWORD] {
            assert!(!log.contains(secret), "the log shows a password:\n{log}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_over_tls_with_a_password() {
    let pki = TestPki::make();
    let set = RedisClusterSet::start_secured(tls_only(&pki, Some(DATA_PASSWORD))).await;
    let seeds = set.seeds_arg();
    let ca = pki.ca();
    let flags = [
        "--redis-cluster-nodes",
        seeds.as_str(),
        "--redis-tls",
        "--redis-password",
        DATA_PASSWORD,
    ];
    let log = refused(&flags, Duration::from_secs(8)).await;
    assert!(
        log.contains("--redis-ca-file: the TLS certificate of cluster seed 127.0.0.1:"),
        "{log}"
    );
    let with_ca = [&flags[..], &["--redis-ca-file", ca.as_str()]].concat();
    let replicas: Vec<Hubbub> = (0..2)
        .map(|_| Hubbub::start_with_redis(&with_ca, &[]))
        .collect();
    for r in &replicas {
        r.wait_ready().await;
        assert!(!r.log_text().contains(DATA_PASSWORD), "{}", r.log_text());
    }
    chat_across(&replicas[0], &replicas[1], "shard").await;
    // The namespace channel is a shard channel with both replicas on it, over TLS.
    let asking = set.nodes[0].port;
    assert_eq!(set.shard_numsub(asking, "socket.io#/#"), 2);
}
