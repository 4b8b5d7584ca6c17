//! What replicas do when RabbitMQ goes away, when one of them dies, and when the settings
//! are unusable.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::broker::{self, BROKER_PATIENCE, RabbitNode};
use crate::harness::{Driver, Hubbub};
use crate::replicas::{clients, converse, metric, replica, wait_tags};
use crate::support::{RedisServer, eventually, free_port};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_stopped_and_restarted_mid_conversation() {
    // A node of its own: this test stops it.
    let mut rabbit = RabbitNode::start();
    let url = rabbit.url("%2f");
    let redis = RedisServer::start();
    let mut replicas: Vec<Hubbub> = (0..2).map(|_| replica(&redis, &url)).collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    let driver = Driver::start().await;
    // Clients 0 and 2 on replica 0, 1 and 3 on replica 1.
    let mut cs = clients(&driver, &replicas, 4, "r").await;
    converse(&mut cs, "before").await;

    rabbit.stop();
    for r in &replicas {
        assert!(
            eventually(BROKER_PATIENCE, || async { r.readyz() == 503 }).await,
            "replica {} stayed ready without RabbitMQ",
            r.port
        );
        let why = r.readyz_text();
        assert!(why.contains("amqp ("), "{why}");
        assert_eq!(
            metric(&r.metrics(), "hubbub_amqp_connected"),
            0.0,
            "{}",
            r.metrics()
        );
    }
    // Clients stay connected and local delivery goes on: client 2 hears client 0.
    cs[0].emit("sendToAll", json!(["local", 0])).await;
    cs[2]
        .wait_event("messages", |a| a == [json!("local"), json!(0)])
        .await;
    let ack = cs[1].ask("messages", json!(["during the outage"])).await;
    assert_eq!(ack[0]["ok"], json!(true), "{ack}");

    rabbit.restart();
    for r in replicas.iter_mut() {
        r.wait_ready().await;
        assert!(r.running(), "replica {} exited", r.port);
        let m = r.metrics();
        assert!(metric(&m, "hubbub_amqp_reconnects_total") >= 1.0, "{m}");
        assert_eq!(metric(&m, "hubbub_amqp_connected"), 1.0, "{m}");
    }
    // Cross-replica delivery resumes, exactly once and in order.
    converse(&mut cs, "after").await;
    // The local message of the outage reached no client twice.
    for (i, c) in cs.iter_mut().enumerate() {
        let n = c
            .events("messages")
            .iter()
            .filter(|a| a.as_slice() == [json!("local"), json!(0)])
            .count();
        assert_eq!(n, usize::from(i == 2), "client {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_replica_leaves_no_queue_and_the_others_go_on() {
    let rabbit = broker::shared();
    rabbit.add_vhost("kill");
    let url = rabbit.url("kill");
    let redis = RedisServer::start();
    let mut replicas: Vec<Hubbub> = (0..3).map(|_| replica(&redis, &url)).collect();
    for r in &replicas {
        r.wait_ready().await;
    }
    let before = rabbit.queues("kill");
    assert_eq!(before.len(), 3, "{before:?}");
    let driver = Driver::start().await;
    let mut cs = clients(&driver, &replicas, 3, "k").await;

    replicas[2].kill();
    // The broker deletes the dead replica's exclusive queue with its connection.
    assert!(
        eventually(BROKER_PATIENCE, || async {
            rabbit.queues("kill").len() == 2
        })
        .await,
        "queues left: {:?}",
        rabbit.queues("kill")
    );
    let after = rabbit.queues("kill");
    assert!(
        after.iter().all(|q| before.contains(q)),
        "{before:?} {after:?}"
    );

    // The two survivors keep delivering to each other.
    let mut survivors: Vec<_> = cs.drain(..2).collect();
    for (i, c) in survivors.iter().enumerate() {
        c.emit("sendToAll", json!(["alive", i])).await;
    }
    for (i, c) in survivors.iter_mut().enumerate() {
        wait_tags(c, "alive", i, 2).await;
    }
    for r in replicas.iter_mut().take(2) {
        assert!(r.running());
        assert_eq!(r.readyz(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_at_start_then_up() {
    let port = free_port();
    let redis = RedisServer::start();
    let mut r = replica(&redis, &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"));
    // The server runs, but is not ready, and says why.
    assert!(
        eventually(BROKER_PATIENCE, || async {
            r.readyz() == 503 && r.readyz_text().contains("amqp (")
        })
        .await,
        "{}",
        r.readyz_text()
    );
    assert!(r.running());
    let rabbit = RabbitNode::start_on(port);
    r.wait_ready().await;
    assert_eq!(rabbit.queues("/").len(), 1);
}

/// Runs the server with `args` (no Redis) and returns its exit status and output, or
/// panics when it keeps running past the timeout.
pub fn run_until_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hubbub-server"))
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            return (out.status, text);
        }
        if std::time::Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("hubbub-server {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn unusable_settings_stop_start_up_naming_the_setting() {
    let rabbit = broker::shared();
    let port = rabbit.port;
    for (url, says) in [
        ("http://127.0.0.1:5672/".to_owned(), "amqp:// or amqps://"),
        ("amqp://127.0.0.1:notaport/".to_owned(), "port"),
        (
            format!("amqp://guest:wrong@127.0.0.1:{port}/%2f"),
            "access refused",
        ),
        (
            format!("amqp://guest:guest@127.0.0.1:{port}/no-such-vhost"),
            "vhost",
        ),
    ] {
        let (status, out) = run_until_exit(&["--amqp-url", &url]);
        assert!(!status.success(), "{url}: {out}");
        assert!(out.contains("--amqp-url"), "{url}: {out}");
        assert!(out.contains("HUBBUB_AMQP_URL"), "{url}: {out}");
        assert!(out.contains(says), "{url}: {out}");
        assert!(!out.contains("panicked"), "{url}: {out}");
        assert!(!out.contains("wrong@"), "the password is not logged: {out}");
    }
}
