//! The `hubbub-operator` binary and its library entry points: the committed CRD is the
//! `crd` output (drift check), `render` prints the children of the example ChatRooms and
//! refuses unreconcilable ones, and the operator's /metrics, /healthz and /readyz answer.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use hubbub_operator::crd;
use hubbub_operator::metrics::{self, Metrics};
use hubbub_operator::resources::Images;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo(path: &str) -> String {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join(path)
        .display()
        .to_string()
}

fn operator(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hubbub-operator"))
        .args(args)
        .env_remove("HUBBUB_OPERATOR_SERVER_IMAGE")
        .env_remove("HUBBUB_OPERATOR_REDIS_IMAGE")
        .output()
        .expect("run hubbub-operator")
}

fn kinds_and_names(yaml: &str) -> Vec<String> {
    serde_yaml_ng::Deserializer::from_str(yaml)
        .map(|doc| serde::Deserialize::deserialize(doc).expect("yaml document"))
        .filter(|v: &Value| !v.is_null())
        .map(|v| {
            format!(
                "{}/{}",
                v["kind"].as_str().expect("kind"),
                v["metadata"]["name"].as_str().expect("name")
            )
        })
        .collect()
}

#[test]
fn committed_crd_is_the_crd_command_output() {
    let committed = std::fs::read_to_string(repo("k8s/crd.yaml")).expect("k8s/crd.yaml");
    let generated = crd::crd_yaml().expect("crd yaml");
    assert!(
        committed == generated,
        "k8s/crd.yaml is stale; regenerate it with: cargo run -p hubbub-operator -- crd > k8s/crd.yaml"
    );
    let out = operator(&["crd"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8(out.stdout).expect("utf8"), committed);
}

#[test]
fn render_minimal_example() {
    let out = operator(&["render", "-f", &repo("k8s/examples/minimal.yaml")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(
        kinds_and_names(&yaml),
        [
            "Service/lobby-redis",
            "StatefulSet/lobby-redis",
            "Service/lobby",
            "Deployment/lobby",
            "PodDisruptionBudget/lobby"
        ]
    );
    assert!(yaml.contains(&format!(
        "image: ghcr.io/hubbub-chat/hubbub:{}",
        env!("CARGO_PKG_VERSION")
    )));
    assert!(yaml.contains("image: redis:7.2"));
    assert!(yaml.contains("namespace: default"));
}

#[test]
fn render_full_example_with_image_flags() {
    let out = operator(&[
        "render",
        "-f",
        &repo("k8s/examples/full.yaml"),
        "--redis-image",
        "mirror.example/redis:7.2",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let yaml = String::from_utf8(out.stdout).expect("utf8");
    assert_eq!(
        kinds_and_names(&yaml),
        [
            "Service/town-hall-redis",
            "StatefulSet/town-hall-redis",
            "Service/town-hall",
            "Deployment/town-hall",
            "PodDisruptionBudget/town-hall",
            "Ingress/town-hall",
            "HorizontalPodAutoscaler/town-hall"
        ]
    );
    // the example names its own redis image, which wins over the flag
    assert!(yaml.contains("image: redis:7.2") && !yaml.contains("mirror.example"));
}

#[test]
fn render_uses_the_default_image_flags_when_the_room_names_none() {
    let text = "apiVersion: hubbub.dev/v1alpha1\nkind: ChatRoom\nmetadata: {name: a, namespace: ns}\nspec: {}\n";
    let images = Images {
        server: "s:1".into(),
        redis: "r:1".into(),
    };
    let yaml = hubbub_operator::render::render(text, &images, "inline").expect("render");
    assert!(yaml.contains("image: s:1") && yaml.contains("image: r:1"));
    assert!(yaml.contains("namespace: ns"));
}

#[test]
fn render_refuses_an_unreconcilable_room() {
    let out = operator(&[
        "render",
        "-f",
        &repo("tests/k8s/valid/ingress-without-host.yaml"),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("spec.ingress needs a host"), "{err}");
}

#[test]
fn render_reports_a_bad_file() {
    let out = operator(&["render", "-f", "/nonexistent/room.yaml"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("could not read chatroom from /nonexistent/room.yaml")
    );
    let err = hubbub_operator::render::render("apiVersion: hubbub.dev/v1alpha1\nkind: ChatRoom\nmetadata: {name: a}\nspec: {replicas: many}\n", &Images::default(), "x.yaml")
        .expect_err("bad spec");
    assert!(err.to_string().contains("x.yaml"), "{err}");
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let code = response[9..12].parse().expect("status code");
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string();
    (code, body)
}

#[tokio::test]
async fn metrics_health_and_readiness_endpoints() {
    let metrics = Arc::new(Metrics::new());
    let server =
        metrics::serve("127.0.0.1:0".parse().expect("addr"), metrics.clone()).expect("bind");
    let addr = server.addr();

    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 503);
    metrics.set_ready(true);
    assert_eq!(get(addr, "/readyz").await.0, 200);

    metrics.record_success(0.02);
    metrics.leader.set(1);
    let (code, body) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    assert!(
        body.contains("hubbub_operator_reconciliations_total{result=\"success\"} 1"),
        "{body}"
    );
    assert!(
        body.contains("hubbub_operator_reconcile_duration_seconds_count 1"),
        "{body}"
    );
    assert!(body.contains("hubbub_operator_leader 1"), "{body}");
    assert_eq!(get(addr, "/nope").await.0, 404);
    server.stop();
}

/// Starts `hubbub-operator run` against an API server address where nothing listens,
/// returns the child and the metrics address it logged.
/// Returns after the operator logged a line containing `ready_line`.
async fn start_operator(
    extra: &[&str],
    ready_line: &str,
) -> (
    tokio::process::Child,
    std::net::SocketAddr,
    tempfile::TempDir,
) {
    use tokio::io::AsyncBufReadExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\n\
             users: [{{name: u, user: {{token: t}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u, namespace: default}}}}]\n\
             current-context: x\n"
        ),
    )
    .expect("kubeconfig");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hubbub-operator"))
        .arg("run")
        .args([
            "--metrics-bind",
            "127.0.0.1:0",
            "--log",
            "info",
            "--log-format",
            "text",
        ])
        .args(extra)
        .env("KUBECONFIG", &kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("operator exited before serving metrics");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest
                .split_whitespace()
                .next()
                .expect("addr")
                .parse()
                .expect("socket addr");
        }
    };
    loop {
        let line = lines
            .next_line()
            .await
            .expect("read")
            .expect("operator exited early");
        if line.contains(ready_line) {
            break;
        }
    }
    // keep draining stderr so the child never blocks on a full pipe
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr, dir)
}

async fn terminate(child: &mut tokio::process::Child) -> std::process::ExitStatus {
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    tokio::time::timeout(std::time::Duration::from_secs(20), child.wait())
        .await
        .expect("operator stops within 20 s of SIGTERM")
        .expect("wait")
}

#[tokio::test]
async fn a_standby_operator_is_healthy_and_stops_cleanly_on_sigterm() {
    // leader election on: the Lease cannot be reached, so it waits as a candidate
    let (mut child, addr, _dir) = start_operator(&[], "waiting to become leader").await;
    assert_eq!(get(addr, "/healthz").await.0, 200);
    assert_eq!(get(addr, "/readyz").await.0, 200);
    let (_, body) = get(addr, "/metrics").await;
    assert!(body.contains("hubbub_operator_leader 0"), "{body}");
    assert!(terminate(&mut child).await.success());
}

#[tokio::test]
async fn the_controller_stops_cleanly_on_sigterm() {
    let (mut child, addr, _dir) =
        start_operator(&["--leader-election=false"], "controller started").await;
    // without leader election this replica reconciles at once
    let (_, body) = get(addr, "/metrics").await;
    assert!(body.contains("hubbub_operator_leader 1"), "{body}");
    assert_eq!(get(addr, "/readyz").await.0, 200);
    assert!(terminate(&mut child).await.success());
}
