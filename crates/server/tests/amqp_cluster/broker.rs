//! Real `rabbitmq-server` nodes for the tests: private nodes on free loopback ports, each
//! with its own data directory, Erlang cookie (via `HOME`) and `epmd`, never the system
//! service. A node is run by a small `sh` wrapper in its own process group: the wrapper
//! starts `epmd` and the broker, then waits on its standard input; when the test closes
//! that pipe (on stop, on drop, or because the test process exited, even abnormally) the
//! wrapper kills its own process group, so no broker outlives its test binary.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::support::free_port;

const WRAPPER: &str = r#"
epmd -port "$ERL_EPMD_PORT" &
{ "$RABBITMQ_SERVER"; echo "$EXITED $?"; } &
read -r _closed
if [ -n "$HUBBUB_RM_DIR" ]; then rm -rf "$HUBBUB_RM_DIR"; fi
kill -KILL 0
"#;

/// What the wrapper prints, with the exit status, when the broker process ends: the broker
/// may die at start-up while `epmd` keeps the output pipe open.
const EXITED: &str = "hubbub-test-wrapper: rabbitmq-server exited with status";

/// How long a node may take to start (about 5 s on an idle machine, 20 s under load).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The Debian package installs the scripts that run as the invoking user here (the ones
/// on PATH switch to the `rabbitmq` user when run as root).
fn tool(name: &str) -> String {
    let private = format!("/usr/lib/rabbitmq/bin/{name}");
    if std::path::Path::new(&private).exists() {
        private
    } else {
        name.to_owned()
    }
}

/// One private RabbitMQ node.
pub struct RabbitNode {
    /// Its AMQP port on 127.0.0.1 (kept across restarts).
    pub port: u16,
    /// The Erlang node name, `hubbub-test-<port>@localhost`.
    pub node: String,
    dist_port: u16,
    epmd_port: u16,
    dir: PathBuf,
    /// Remove `dir` when the wrapper ends (a node that is never restarted).
    remove_dir: bool,
    child: Option<Child>,
}

impl RabbitNode {
    /// Starts a node on free ports and waits until it accepts AMQP connections.
    pub fn start() -> Self {
        Self::start_inner(false)
    }

    /// Starts a node on `port` (e.g. one a replica already tries to reach).
    pub fn start_on(port: u16) -> Self {
        Self::start_inner_on(port, false, "")
    }

    /// Starts a node that also listens for AMQP over TLS on `tls_port` with the server
    /// certificate `cert`/`key` (PEM files), signed by the CA in `ca`.
    pub fn start_tls(tls_port: u16, ca: &Path, cert: &Path, key: &Path) -> Self {
        let conf = format!(
            "listeners.ssl.default = 127.0.0.1:{tls_port}\n\
             ssl_options.cacertfile = {}\n\
             ssl_options.certfile = {}\n\
             ssl_options.keyfile = {}\n\
             ssl_options.verify = verify_none\n\
             ssl_options.fail_if_no_peer_cert = false\n",
            ca.display(),
            cert.display(),
            key.display()
        );
        Self::start_inner_on(free_port(), false, &conf)
    }

    fn start_inner(remove_dir: bool) -> Self {
        Self::start_inner_on(free_port(), remove_dir, "")
    }

    fn start_inner_on(port: u16, remove_dir: bool, extra_conf: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("hubbub-rabbitmq-test-{port}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("home")).unwrap();
        std::fs::write(
            dir.join("rabbitmq.conf"),
            format!(
                "listeners.tcp.default = 127.0.0.1:{port}\nloopback_users = none\n{extra_conf}"
            ),
        )
        .unwrap();
        std::fs::write(dir.join("enabled_plugins"), "[].\n").unwrap();
        let mut node = Self {
            port,
            node: format!("hubbub-test-{port}@localhost"),
            dist_port: free_port(),
            epmd_port: free_port(),
            dir,
            remove_dir,
            child: None,
        };
        node.spawn();
        node
    }

    fn env(&self, cmd: &mut Command) {
        let d = &self.dir;
        cmd.env("HOME", d.join("home"))
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d.join("advanced.config"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", d.join("plugins-expand"));
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", WRAPPER]);
        self.env(&mut cmd);
        cmd.env("RABBITMQ_SERVER", tool("rabbitmq-server"))
            .env("EXITED", EXITED)
            // Where a broker that fails writes its erl_crash.dump.
            .current_dir(&self.dir)
            .env(
                "HUBBUB_RM_DIR",
                if self.remove_dir {
                    self.dir.as_os_str()
                } else {
                    "".as_ref()
                },
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Its own process group, which the wrapper kills as a whole.
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sh for rabbitmq-server ({e})"));
        // Wait for the line the broker prints once it listens: an event, not a sleep, but
        // bounded: a broker that cannot start (its distribution port taken by another node,
        // say) may keep retrying without ever exiting.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // After start-up nobody listens; the lines are only drained.
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with(EXITED) => {
                    drop(child.stdin.take());
                    let _ = child.wait();
                    panic!(
                        "rabbitmq-server (AMQP port {}, distribution port {}, epmd port {}) exited before it was ready, {} (is it installed? apt-get install rabbitmq-server; scripts/test does): {seen:#?}",
                        self.port,
                        self.dist_port,
                        self.epmd_port,
                        line.trim_start_matches(EXITED).trim()
                    );
                }
                Ok(line) => {
                    let done = line.contains("Starting broker") && line.contains("completed");
                    seen.push(line);
                    if done {
                        break;
                    }
                }
                Err(e) => {
                    drop(child.stdin.take()); // the wrapper kills its group on EOF
                    let _ = child.wait();
                    let why = match e {
                        std::sync::mpsc::RecvTimeoutError::Timeout => format!(
                            "was not ready within {START_TIMEOUT:?} (AMQP port {}, distribution port {}, epmd port {}: another process on one of them?)",
                            self.port, self.dist_port, self.epmd_port
                        ),
                        std::sync::mpsc::RecvTimeoutError::Disconnected => format!(
                            "on port {} exited before it was ready (is it installed? apt-get install rabbitmq-server; scripts/test does)",
                            self.port
                        ),
                    };
                    panic!("rabbitmq-server {why}: {seen:#?}");
                }
            }
        }
        self.child = Some(child);
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/<vhost>` (`vhost` URL-encoded by the caller).
    pub fn url(&self, vhost: &str) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/{vhost}", self.port)
    }

    /// Kills the node (SIGKILL to the whole group) and waits for the wrapper to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take()); // the wrapper kills its group on EOF
            let _ = child.wait();
        }
    }

    /// Starts it again on the same ports with the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs `rabbitmqctl -n <node> args...` and returns its standard output; panics on failure.
    pub fn ctl(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(tool("rabbitmqctl"));
        self.env(&mut cmd);
        let out = cmd
            .args(["-n", &self.node, "-q"])
            .args(args)
            .output()
            .expect("rabbitmqctl (apt-get install rabbitmq-server)");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Creates vhost `name` with every permission for `guest`.
    pub fn add_vhost(&self, name: &str) {
        self.ctl(&["add_vhost", name]);
        self.ctl(&["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]);
    }

    /// Names of the queues in `vhost`.
    pub fn queues(&self, vhost: &str) -> Vec<String> {
        self.ctl(&["list_queues", "-p", vhost, "--no-table-headers", "name"])
            .lines()
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The node shared by the tests of this binary that do not stop it (booting one takes
/// seconds); each test uses a vhost of its own. It is never dropped: it ends when the test
/// process exits and the wrapper's standard input closes (the wrapper removes its directory).
pub fn shared() -> &'static RabbitNode {
    static NODE: OnceLock<RabbitNode> = OnceLock::new();
    NODE.get_or_init(|| RabbitNode::start_inner(true))
}

/// Longest a replica may take to notice a change of the broker.
pub const BROKER_PATIENCE: Duration = Duration::from_secs(20);
