//! The workspace's layering, checked with `cargo tree`: dependencies only point down
//! (engineio <- socketio <- redis | amqp <- server), the server links no Kubernetes client or load
//! tool, the operator links no web framework, Redis client or Engine.IO, the Socket.IO
//! layer links no Redis client, and the load tool depends on no other hubbub crate. A
//! stray dependency added to a manifest fails this test (and so CI).

use std::collections::BTreeSet;
use std::process::Command;

/// The normal (non-dev, non-build) dependency tree of `package`, as a set of crate names.
fn normal_dependencies(package: &str) -> BTreeSet<String> {
    let out = Command::new(env!("CARGO"))
        .args([
            "tree", "--locked", "-e", "normal", "--prefix", "none", "--format", "{p}", "-p",
            package,
        ])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn assert_free_of(package: &str, forbidden: &[&str]) -> BTreeSet<String> {
    let deps = normal_dependencies(package);
    let found: Vec<&&str> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(
        found.is_empty(),
        "{package} must not depend on {found:?} (run `cargo tree -p {package} -i <crate>` to see why)"
    );
    deps
}

#[test]
fn the_server_links_no_kubernetes_client_and_no_load_tool() {
    let deps = assert_free_of(
        "hubbub-server",
        &[
            "kube",
            "k8s-openapi",
            "schemars",
            "tokio-tungstenite",
            "hdrhistogram",
            "hubbub-operator",
            "hubbub-bench",
        ],
    );
    for layer in [
        "hubbub-engineio",
        "hubbub-socketio",
        "hubbub-redis",
        "hubbub-amqp",
    ] {
        assert!(deps.contains(layer), "hubbub-server is built on {layer}");
    }
}

#[test]
fn the_operator_links_no_web_framework_redis_or_engineio() {
    let deps = normal_dependencies("hubbub-operator");
    let found: Vec<&String> = deps
        .iter()
        .filter(|d| d.starts_with("actix") || d.as_str() == "fred" || d.starts_with("hubbub-"))
        .filter(|d| d.as_str() != "hubbub-operator" && d.as_str() != "hubbub-telemetry")
        .collect();
    assert!(
        found.is_empty(),
        "hubbub-operator must not depend on {found:?}"
    );
}

#[test]
fn dependencies_only_point_down() {
    assert_free_of(
        "hubbub-engineio",
        &["hubbub-socketio", "hubbub-redis", "hubbub-server", "fred"],
    );
    assert_free_of(
        "hubbub-socketio",
        &["hubbub-redis", "hubbub-server", "fred"],
    );
    assert_free_of("hubbub-redis", &["hubbub-server", "kube"]);
    // The RabbitMQ back end stands beside the Redis one: neither links the other.
    let amqp = assert_free_of(
        "hubbub-amqp",
        &["hubbub-redis", "hubbub-server", "fred", "kube"],
    );
    assert!(amqp.contains("hubbub-socketio") && amqp.contains("lapin"));
    assert_free_of("hubbub-redis", &["hubbub-amqp", "lapin"]);
}

#[test]
fn the_load_tool_depends_on_no_other_hubbub_crate() {
    let deps = normal_dependencies("hubbub-bench");
    let hubbub: Vec<&String> = deps
        .iter()
        .filter(|d| d.starts_with("hubbub-") && d.as_str() != "hubbub-bench")
        .collect();
    assert!(
        hubbub.is_empty(),
        "hubbub-bench must not depend on {hubbub:?}"
    );
}
