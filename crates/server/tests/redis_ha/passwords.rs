//! Passwords: a master and replica with `requirepass`/`masterauth`, three Sentinels with
//! `requirepass` of their own and `sentinel auth-pass`; hubbub replicas given both
//! passwords (`--redis-password`, `--redis-sentinel-password`) chat across a failover,
//! and never write either password into their logs. A missing or wrong password of the
//! Sentinels, of the data nodes or of a single Redis stops start-up at once, with an error
//! naming the setting to fix.

use std::time::{Duration, Instant};

use crate::bad_settings::refused;
use crate::harness::Hubbub;
use crate::sentinel::chat_through_a_failover;
use crate::support::{Access, RedisServer};
use crate::topology::{MASTER_NAME, SentinelSet};

/// The data nodes' password.
const DATA_PASSWORD: &str = "data-pw-5f2c9e";
/// The Sentinels' own password.
const SENTINEL_PASSWORD: &str = "sentinel-pw-a81d07";

/// The log must not contain any of `secrets`.
fn assert_no_secret(log: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !log.contains(secret),
            "the log shows a password ({secret}):\n{log}"
        );
    }
}

fn secured() -> Access {
    Access {
        password: Some(DATA_PASSWORD.into()),
        tls: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_with_passwords_follows_a_failover_and_logs_no_password() {
    let mut set = SentinelSet::start_secured(secured(), Some(SENTINEL_PASSWORD)).await;
    let replicas = chat_through_a_failover(
        &mut set,
        &[
            "--redis-password",
            DATA_PASSWORD,
            "--redis-sentinel-password",
            SENTINEL_PASSWORD,
        ],
    )
    .await;
    for r in &replicas {
        let log = r.log_text();
        // The log is not empty: it names the topology and the master found.
        assert!(log.contains("redis topology"), "{log}");
        assert!(log.contains(MASTER_NAME), "{log}");
        assert_no_secret(&log, &[DATA_PASSWORD, SENTINEL_PASSWORD]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_passwords_stop_start_up_naming_the_setting() {
    let set = SentinelSet::start_secured(secured(), Some(SENTINEL_PASSWORD)).await;
    let sentinels = set.sentinels_arg();
    let base = [
        "--redis-sentinels",
        sentinels.as_str(),
        "--redis-sentinel-master",
        MASTER_NAME,
    ];
    let master = format!("127.0.0.1:{}", set.master.port);
    let wrong = "wrong-pw-77e3";
    // (extra flags, what the error must say)
    let cases: [(&[&str], &[&str]); 4] = [
        (
            &["--redis-password", DATA_PASSWORD],
            &[
                "--redis-sentinel-password: sentinel 127.0.0.1:",
                "requires a password",
                "HUBBUB_REDIS_SENTINEL_PASSWORD",
            ],
        ),
        (
            &[
                "--redis-password",
                DATA_PASSWORD,
                "--redis-sentinel-password",
                wrong,
            ],
            &[
                "--redis-sentinel-password: sentinel 127.0.0.1:",
                "refused the password",
                "WRONGPASS",
            ],
        ),
        (
            &["--redis-sentinel-password", SENTINEL_PASSWORD],
            &[
                "--redis-password: master",
                &master,
                "requires a password",
                "HUBBUB_REDIS_PASSWORD",
            ],
        ),
        (
            &[
                "--redis-sentinel-password",
                SENTINEL_PASSWORD,
                "--redis-password",
                wrong,
            ],
            &["--redis-password: master", &master, "refused the password"],
        ),
    ];
    for (extra, says) in cases {
        let flags = [&base[..], extra].concat();
        let started = Instant::now();
        // A refused password is a definite answer: no waiting for the probe window.
        let log = refused(&flags, Duration::from_secs(8)).await;
        let took = started.elapsed();
        for s in says {
            assert!(log.contains(s), "{extra:?}: {s:?} missing from:\n{log}");
        }
        assert_no_secret(&log, &[DATA_PASSWORD, SENTINEL_PASSWORD, wrong]);
        eprintln!("refused {:?} in {took:.2?}", says[0]);
    }
}

#[tokio::test]
async fn a_single_redis_refusing_the_password_stops_start_up() {
    let redis = RedisServer::start_secured(secured(), &[]);
    let url = redis.url();
    let wrong = "wrong-pw-0b4e";
    let log = refused(
        &["--redis-url", &url, "--redis-password", wrong],
        Duration::from_secs(8),
    )
    .await;
    assert!(
        log.contains(&format!(
            "--redis-password: Redis at redis://127.0.0.1:{} refused the password",
            redis.port
        )),
        "{log}"
    );
    assert_no_secret(&log, &[DATA_PASSWORD, wrong]);
    // In the URL, the URL is to blame, and the password is not repeated.
    let in_url = format!("redis://:{wrong}@127.0.0.1:{}", redis.port);
    let log = refused(&["--redis-url", &in_url], Duration::from_secs(8)).await;
    assert!(
        log.contains(&format!(
            "--redis-url: Redis at redis://***@127.0.0.1:{} refused the password",
            redis.port
        )),
        "{log}"
    );
    assert_no_secret(&log, &[DATA_PASSWORD, wrong]);
    // And with the right one, it serves.
    let hub = Hubbub::start(&url, &["--redis-password", DATA_PASSWORD]);
    hub.wait_ready().await;
    assert_no_secret(&hub.log_text(), &[DATA_PASSWORD]);
}
