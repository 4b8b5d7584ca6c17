//! Real Redis deployments for the HA tests, on free loopback ports with private data
//! directories: a master with one replica watched by three Sentinels ([`SentinelSet`]),
//! and a Redis Cluster of three masters with one replica each ([`RedisClusterSet`]).
//! Every process is killed when its owner is dropped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::{Access, RedisServer, eventually, free_port};

/// The master name the Sentinels monitor.
pub const MASTER_NAME: &str = "hubbubmaster";

/// Runs `redis-cli -p port args..` and returns its trimmed output.
pub fn cli(port: u16, args: &[&str]) -> String {
    cli_as(&Access::default(), port, args)
}

/// Like [`cli`], for a process secured by `access` (password, TLS).
pub fn cli_as(access: &Access, port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(access.cli_args())
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
/// `failover-timeout` 3000), all on 127.0.0.1; open, or secured with passwords and TLS.
pub struct SentinelSet {
    /// The master at start (killed by the failover tests).
    pub master: RedisServer,
    /// Its replica (promoted by the failover).
    pub replica: RedisServer,
    sentinels: Vec<Sentinel>,
    /// How the Sentinels are reached (their own password; TLS as the data nodes).
    sentinel_access: Access,
    _dir: tempfile::TempDir,
}

impl SentinelSet {
    /// Starts the five processes, without passwords or TLS (see [`SentinelSet::start_secured`]).
    pub async fn start() -> Self {
        Self::start_secured(Access::default(), None).await
    }

    /// Starts the five processes and waits until every Sentinel knows the replica and the
    /// two other Sentinels (without which no failover can be agreed), and the replica is
    /// in sync. `data` secures the master and the replica (`requirepass` and `masterauth`,
    /// TLS-only listeners, TLS replication); the Sentinels get `sentinel auth-pass` for
    /// it, `requirepass sentinel_password` of their own (which they also use with each
    /// other), and the same TLS files, talking TLS to every instance (`tls-replication`).
    pub async fn start_secured(data: Access, sentinel_password: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Private data directories: a full resynchronisation writes an RDB file.
        let data_dir = |name: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir(&d).unwrap();
            d.to_str().unwrap().to_owned()
        };
        let master = RedisServer::start_secured(data.clone(), &["--dir", &data_dir("master")]);
        let replica = RedisServer::start_secured(
            data.clone(),
            &[
                "--dir",
                &data_dir("replica"),
                "--replicaof",
                "127.0.0.1",
                &master.port.to_string(),
            ],
        );
        let mut sentinels = Vec::new();
        for i in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{i}.conf"));
            let mut text = match &data.tls {
                None => format!("port {port}\n"),
                Some(tls) => format!(
                    "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\n\
                     tls-ca-cert-file {}\ntls-auth-clients no\ntls-replication yes\n",
                    tls.cert.display(),
                    tls.key.display(),
                    tls.ca.display()
                ),
            };
            text.push_str(&format!(
                "bind 127.0.0.1\ndir {}\nsentinel monitor {MASTER_NAME} 127.0.0.1 {} 2\n\
                 sentinel down-after-milliseconds {MASTER_NAME} 1000\n\
                 sentinel failover-timeout {MASTER_NAME} 3000\n\
                 sentinel parallel-syncs {MASTER_NAME} 1\n",
                dir.path().display(),
                master.port
            ));
            if let Some(password) = &data.password {
                text.push_str(&format!("sentinel auth-pass {MASTER_NAME} {password}\n"));
            }
            if let Some(password) = sentinel_password {
                text.push_str(&format!("requirepass {password}\n"));
            }
            std::fs::write(&conf, text).unwrap();
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
            sentinel_access: Access {
                password: sentinel_password.map(str::to_owned),
                tls: data.tls.clone(),
            },
            _dir: dir,
        };
        let ready = eventually(Duration::from_secs(20), || async {
            set.sentinels.iter().all(|s| {
                let replicas = set.sentinel_cli(s.port, &["sentinel", "replicas", MASTER_NAME]);
                let others = set.sentinel_cli(s.port, &["sentinel", "sentinels", MASTER_NAME]);
                replicas.contains(&set.replica.port.to_string())
                    && others.matches("runid").count() == 2
            }) && set
                .replica
                .cli(&["info", "replication"])
                .contains("master_link_status:up")
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

    /// `redis-cli` against the Sentinel on `port`.
    fn sentinel_cli(&self, port: u16, args: &[&str]) -> String {
        cli_as(&self.sentinel_access, port, args)
    }

    /// The master's port according to the first Sentinel that answers.
    pub fn master_port(&self) -> Option<u16> {
        self.sentinels.iter().find_map(|s| {
            self.sentinel_cli(
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
        let offset = |node: &RedisServer, field: &str| -> Option<i64> {
            node.cli(&["info", "replication"])
                .lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().parse().ok())
        };
        let synced = eventually(Duration::from_secs(10), || async {
            let m = offset(&self.master, "master_repl_offset:");
            let r = offset(&self.replica, "slave_repl_offset:");
            m.is_some() && m == r
        })
        .await;
        assert!(synced, "the replica never caught up with the master");
    }
}

/// A Redis Cluster: three masters (slots split evenly by `redis-cli --cluster create`),
/// one replica each, `cluster-node-timeout` 1000 ms.
pub struct RedisClusterSet {
    /// The six nodes; the first three were created as masters.
    pub nodes: Vec<RedisServer>,
    /// How every node is secured (password, TLS).
    access: Access,
    _dir: tempfile::TempDir,
}

impl RedisClusterSet {
    /// Starts six open nodes (see [`RedisClusterSet::start_secured`]).
    pub async fn start() -> Self {
        Self::start_secured(Access::default()).await
    }

    /// Starts six nodes secured by `access` (with TLS: TLS-only listeners, the cluster
    /// bus and replication over TLS too), creates the cluster and waits until every node
    /// reports `cluster_state:ok` and three replicas are attached.
    pub async fn start_secured(access: Access) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let nodes: Vec<RedisServer> = (0..6)
            .map(|i| {
                // A private data directory per node (replicas write RDB files there) and
                // its cluster configuration file.
                let data = dir.path().join(format!("node-{i}"));
                std::fs::create_dir(&data).unwrap();
                let conf = data.join("nodes.conf");
                let tls_bus = if access.tls.is_some() { "yes" } else { "no" };
                RedisServer::start_secured(
                    access.clone(),
                    &[
                        "--tls-cluster",
                        tls_bus,
                        "--dir",
                        data.to_str().unwrap(),
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        conf.to_str().unwrap(),
                        "--cluster-node-timeout",
                        "1000",
                        // A replica may take over however long its link was down (the test
                        // kills masters; the default would refuse after 10 node timeouts).
                        "--cluster-replica-validity-factor",
                        "0",
                        "--cluster-port",
                        &free_port().to_string(),
                    ],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        // `redis-cli --cluster create` waits for the nodes to meet without a limit (it
        // never returns when they cannot): bounded here, killed after 60 s.
        let create = tokio::process::Command::new("redis-cli")
            .args(access.cli_args())
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(Duration::from_secs(60), create)
            .await
            .expect("redis-cli --cluster create did not finish within 60 s")
            .expect("redis-cli (apt-get install redis-tools)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let set = Self {
            nodes,
            access,
            _dir: dir,
        };
        let ok = eventually(Duration::from_secs(30), || async {
            let replicas_in_sync = set
                .nodes
                .iter()
                .filter(|n| {
                    set.cli(n.port, &["info", "replication"])
                        .contains("master_link_status:up")
                })
                .count();
            set.nodes.iter().all(|n| {
                set.cli(n.port, &["cluster", "info"])
                    .contains("cluster_state:ok")
            }) && replicas_in_sync == 3
        })
        .await;
        assert!(
            ok,
            "the cluster never became ok with three replicas in sync"
        );
        set
    }

    /// `redis-cli` against the node on `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli_as(&self.access, port, args)
    }

    /// `--redis-cluster-nodes`: two seeds.
    pub fn seeds_arg(&self) -> String {
        format!(
            "127.0.0.1:{},127.0.0.1:{}",
            self.nodes[0].port, self.nodes[1].port
        )
    }

    /// `CLUSTER NODES` as seen by node `asking`.
    fn cluster_nodes(&self, asking: u16) -> String {
        self.cli(asking, &["cluster", "nodes"])
    }

    /// The masters with slots: (port, first slot, last slot) per range, in slot order,
    /// as seen by node `asking`.
    pub fn masters(&self, asking: u16) -> Vec<(u16, u16, u16)> {
        let mut out = Vec::new();
        for line in self.cluster_nodes(asking).lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                continue;
            }
            let port: u16 = fields[1]
                .split('@')
                .next()
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            for range in &fields[8..] {
                if let Some((a, b)) = range.split_once('-')
                    && let (Ok(a), Ok(b)) = (a.parse(), b.parse())
                {
                    out.push((port, a, b));
                } else if let Ok(a) = range.parse() {
                    out.push((port, a, a));
                }
            }
        }
        out.sort_by_key(|(_, a, _)| *a);
        out
    }

    /// The port of the master serving `slot`, as seen by node `asking`.
    pub fn master_of_slot(&self, asking: u16, slot: u16) -> Option<u16> {
        self.masters(asking)
            .into_iter()
            .find(|(_, a, b)| (*a..=*b).contains(&slot))
            .map(|(p, _, _)| p)
    }

    /// The hash slot of `key` (`CLUSTER KEYSLOT`, asked of node `asking`).
    pub fn slot_of(&self, asking: u16, key: &str) -> u16 {
        self.cli(asking, &["cluster", "keyslot", key])
            .parse()
            .unwrap()
    }

    /// Subscribers of shard channel `channel` (`PUBSUB SHARDNUMSUB` on the master of its
    /// slot, as seen by node `asking`).
    pub fn shard_numsub(&self, asking: u16, channel: &str) -> usize {
        let Some(master) = self.master_of_slot(asking, self.slot_of(asking, channel)) else {
            return 0;
        };
        self.cli(master, &["pubsub", "shardnumsub", channel])
            .lines()
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Waits until the replica on `replica` is a master serving slots (after its master died).
    pub async fn wait_promoted(&self, asking: u16, replica: u16) -> bool {
        eventually(Duration::from_secs(30), || async {
            self.masters(asking).iter().any(|(p, _, _)| *p == replica)
                && self
                    .cli(asking, &["cluster", "info"])
                    .contains("cluster_state:ok")
        })
        .await
    }

    /// The replica of the master on `master`, as seen by node `asking`.
    pub fn replica_of(&self, asking: u16, master: u16) -> Option<u16> {
        let nodes = self.cluster_nodes(asking);
        let id = nodes.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && f[1].starts_with(&format!("127.0.0.1:{master}@")))
                .then(|| f[0].to_owned())
        })?;
        nodes.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 3 && f[2].contains("slave") && f[3] == id)
                .then(|| f[1].split('@').next()?.rsplit(':').next()?.parse().ok())
                .flatten()
        })
    }

    /// Kills (SIGKILL) the node on `port`.
    pub fn kill(&mut self, port: u16) {
        if let Some(n) = self.nodes.iter_mut().find(|n| n.port == port) {
            n.stop();
        }
    }
}
