//! Smoke tests of the `hubbub-bench` binary against a `hubbub-server` started
//! here on a free loopback port: each scenario runs briefly and its JSON
//! report must show every connection made and every delivery received. They
//! assert behaviour and the report's shape, never timing.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// The `hubbub-server` binary of the same build: hubbub-bench depends on no other hubbub
/// crate, so the server is not a dependency; `cargo test --workspace` (the README's test
/// command) builds it beside this test's own binaries.
fn server_binary() -> std::path::PathBuf {
    // unwrap: a test binary always has a path, in target/<profile>/deps/.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>/deps");
    let bin = dir.join(format!("hubbub-server{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p hubbub-server), or run the whole suite with cargo test --workspace",
        bin.display()
    );
    bin
}

/// A running `hubbub-server`, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Server {
    /// Starts the server on 127.0.0.1:0 and reads its address from the JSON log.
    fn start() -> Server {
        let mut child = Command::new(server_binary())
            .args([
                "--bind",
                "127.0.0.1:0",
                "--log",
                "info",
                "--log-format",
                "json",
            ])
            // The publishers send faster than the chat's default per-connection limit.
            .args(["--rate-limit", "1000", "--rate-burst", "1000"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("hubbub-server starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let mut lines = BufReader::new(stderr).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("hubbub-server exited before listening")
                .expect("readable log");
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["message"] == "hubbub-server listening"
            {
                break v["addr"].as_str().expect("addr field").to_owned();
            }
        };
        // Keep draining the log so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        Server {
            child,
            url: format!("http://{addr}"),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `hubbub-bench --json ARGS` and parses its report.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hubbub-bench"))
        .arg("--json")
        .args(args)
        .output()
        .expect("hubbub-bench runs");
    assert!(
        out.status.success(),
        "hubbub-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "report is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn fanout_reports_every_delivery_without_loss() {
    let server = Server::start();
    let pid = server.child.id().to_string();
    let r = bench(&[
        "fanout",
        "--pids",
        &pid,
        "--url",
        &server.url,
        "--subscribers",
        "20",
        "--publishers",
        "2",
        "--rate",
        "50",
        "--duration",
        "2",
        // An upper bound only: the run ends as soon as every delivery is in.
        "--drain",
        "30",
    ]);
    assert_eq!(r["servers"], serde_json::json!([server.url]));
    assert_eq!(r["subscribers"], 20);
    assert_eq!(r["publishers"], 2);
    // 50 messages per second for 2 seconds, shared by the two publishers.
    assert_eq!(r["sent"], 100);
    // Publishers are not receivers; the welcome message is not counted.
    assert_eq!(r["expected"], 2000);
    assert_eq!(r["received"], 2000);
    assert_eq!(r["loss"], 0);
    assert_eq!(r["loss_ratio"], 0.0);
    assert_eq!(r["disconnects"], 0);
    assert!(r["deliveries_per_sec"].as_f64().unwrap() > 0.0);
    let latency = &r["latency_ms"];
    assert_eq!(latency["count"], 2000);
    let p = |k: &str| {
        latency[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {latency}"))
    };
    assert!(p("p50") > 0.0);
    assert!(p("p50") <= p("p90") && p("p90") <= p("p99") && p("p99") <= p("p999"));
    assert!(p("p999") <= p("max"));
    // Given the server's PID, the report carries its CPU time and the tool's own.
    assert!(r["server_cpu_secs"].as_f64().unwrap() >= 0.0);
    assert!(r["server_cpu_us_per_delivery"].is_number());
    assert!(r["client_cpu_secs"].as_f64().unwrap() >= 0.0);
}

#[test]
fn connect_storm_and_idle_count_their_connections() {
    let server = Server::start();
    let storm = bench(&[
        "connect-storm",
        "--url",
        &server.url,
        "--connections",
        "50",
        "--concurrency",
        "5",
    ]);
    assert_eq!(storm["succeeded"], 50);
    assert_eq!(storm["failed"], 0);
    assert_eq!(storm["latency_ms"]["count"], 50);

    let pid = server.child.id().to_string();
    let idle = bench(&[
        "idle",
        "--url",
        &server.url,
        "--connections",
        "50",
        "--hold",
        "0",
        "--pids",
        &pid,
    ]);
    assert_eq!(idle["established"], 50);
    assert_eq!(idle["still_open"], 50);
    assert_eq!(idle["failed"], 0);
    let memory = &idle["servers_memory"][0];
    assert_eq!(memory["pid"].to_string(), pid);
    assert!(memory["rss_after_kib"].as_u64().unwrap() > 0);
    assert!(idle["bytes_per_connection"].is_number());
}
