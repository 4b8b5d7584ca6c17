//! Real Redis deployments for the HA tests, on free loopback ports with private data
//! directories: a master with one replica watched by three Sentinels ([`SentinelSet`]).
//! Every process is killed when its owner is dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{RedisServer, eventually, free_port};

/// The master name the Sentinels monitor.
pub const MASTER_NAME: &str = "hubbubmaster";

/// Runs `redis-cli -p port args..` and returns its trimmed output.
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A `redis-server --sentinel` process.
struct Sentinel {
    port: u16,
    child: Child,
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One master, one replica, three Sentinels (quorum 2, `down-after-milliseconds` 1000,
/// `failover-timeout` 3000), all on 127.0.0.1.
pub struct SentinelSet {
    /// The master at start (killed by the failover tests).
    pub master: RedisServer,
    /// Its replica (promoted by the failover).
    pub replica: RedisServer,
    sentinels: Vec<Sentinel>,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    /// Starts the five processes and waits until every Sentinel knows the replica and the
    /// two other Sentinels (without which no failover can be agreed), and the replica is
    /// in sync.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let master = RedisServer::start();
        let replica =
            RedisServer::start_with(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
                     sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                     sentinel failover-timeout {MASTER_NAME} 3000\n\
                     sentinel parallel-syncs {MASTER_NAME} 1\n",
                    dir.path().display(),
                    master.port
                ),
            )
            .unwrap();
            let mut child = Command::new("redis-server")
                .arg(&conf)
                .arg("--sentinel")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server (apt-get install redis-server) for redis-server --sentinel");
            // Wait for the line a Sentinel prints once it monitors the master.
            let stdout = child.stdout.take().unwrap();
            let mut lines = BufReader::new(stdout).lines();
            let mut seen = Vec::new();
            loop {
                match lines.next() {
                    Some(Ok(line)) if line.contains("+monitor master") => break,
                    Some(Ok(line)) => seen.push(line),
                    _ => panic!("sentinel on port {port} exited before it monitored: {seen:#?}"),
                }
            }
            std::thread::spawn(move || for _ in lines {});
            sentinels.push(Sentinel { port, child });
        }
        let set = Self {
            master,
            replica,
            sentinels,
            _dir: dir,
        };
        let ready = eventually(Duration::from_secs(20), || async {
            set.sentinels.iter().all(|s| {
                let replicas = cli(s.port, &["sentinel", "replicas", MASTER_NAME]);
                let others = cli(s.port, &["sentinel", "sentinels", MASTER_NAME]);
                replicas.contains(&set.replica.port.to_string())
                    && others.matches("runid").count() == 2
            }) && cli(set.replica.port, &["info", "replication"]).contains("master_link_status:up")
        })
        .await;
        assert!(ready, "the sentinels never saw each other and the replica");
        set
    }

    /// `--redis-sentinels` for these Sentinels.
    pub fn sentinels_arg(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The master's port according to the first Sentinel that answers.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            cli(
                s.port,
                &["sentinel", "get-master-addr-by-name", MASTER_NAME],
            )
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
        })
    }

    /// Waits until the replica has every write the master acknowledged.
    pub async fn wait_replicated(&self) {
        let offset = |port: u16, field: &str| -> Option<i64> {
            cli(port, &["info", "replication"])
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().parse().ok())
        };
        let synced = eventually(Duration::from_secs(10), || async {
            let m = offset(self.master.port, "master_repl_offset:");
            let r = offset(self.replica.port, "slave_repl_offset:");
            m.is_some() && m == r
        })
        .await;
        assert!(synced, "the replica never caught up with the master");
    }
}
