//! Test support: real `redis-server` processes on free loopback ports, and polling helpers.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The files of a TLS listener: the CA that clients trust, and the server's certificate
/// and key (signed by that CA).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM CA certificate.
    pub ca: std::path::PathBuf,
    /// PEM server certificate for 127.0.0.1.
    pub cert: std::path::PathBuf,
    /// Its PEM private key.
    pub key: std::path::PathBuf,
}

/// How a Redis process of a test is secured, and so how it is reached: its password
/// (`requirepass`, and `masterauth` for a replica) and TLS (the only listener then).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The password, if any.
    pub password: Option<String>,
    /// TLS files, if TLS.
    pub tls: Option<TlsFiles>,
}

impl Access {
    /// `redis-server` arguments listening on `port` with this security.
    pub fn server_args(&self, port: u16) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        if let Some(tls) = &self.tls {
            let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
            args.extend([
                "--port".into(),
                "0".into(),
                "--tls-port".into(),
                port.to_string(),
            ]);
            args.extend(["--tls-cert-file".into(), path(&tls.cert)]);
            args.extend(["--tls-key-file".into(), path(&tls.key)]);
            args.extend(["--tls-ca-cert-file".into(), path(&tls.ca)]);
            // Clients are not asked for certificates; replicas talk TLS to their master.
            args.extend(["--tls-auth-clients", "no", "--tls-replication", "yes"].map(String::from));
        } else {
            args.extend(["--port".into(), port.to_string()]);
        }
        if let Some(password) = &self.password {
            args.extend(["--requirepass".into(), password.clone()]);
            args.extend(["--masterauth".into(), password.clone()]);
        }
        args
    }

    /// `redis-cli` arguments that reach a process secured like this.
    pub fn cli_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(tls) = &self.tls {
            args.extend([
                "--tls".into(),
                "--cacert".into(),
                tls.ca.to_str().unwrap().into(),
            ]);
        }
        if let Some(password) = &self.password {
            args.extend(["-a".into(), password.clone(), "--no-auth-warning".into()]);
        }
        args
    }
}

/// A `redis-server` child process (no persistence), killed on drop.
pub struct RedisServer {
    /// The loopback port it listens on (kept across restarts).
    pub port: u16,
    /// Where `SAVE` writes and start-up loads `dump.rdb`, for tests that keep data across a restart.
    dir: Option<std::path::PathBuf>,
    /// Further `redis-server` arguments (e.g. `--replicaof`).
    extra: Vec<String>,
    /// Its password and TLS.
    pub access: Access,
    child: Option<Child>,
    /// The private working directory of a server started without `dir`: a replica writes
    /// the RDB of its full sync there even with `--save ''`, never into the test's cwd.
    scratch: tempfile::TempDir,
}

fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("hubbub-redis-test")
        .tempdir()
        .expect("a temporary directory for redis-server")
}

/// A free loopback port (the listener is dropped; the port is reused right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisServer {
    /// Starts a server on a free port and waits until it accepts connections.
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server on `port` and waits until it accepts connections.
    pub fn start_on(port: u16) -> Self {
        let mut server = Self {
            port,
            dir: None,
            extra: Vec::new(),
            access: Access::default(),
            child: None,
            scratch: scratch_dir(),
        };
        server.spawn();
        server
    }

    /// A server on a free port started with further arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_secured(Access::default(), extra)
    }

    /// A server on a free port secured by `access` (password, TLS), with further arguments.
    pub fn start_secured(access: Access, extra: &[&str]) -> Self {
        let mut server = Self {
            port: free_port(),
            dir: None,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            access,
            child: None,
            scratch: scratch_dir(),
        };
        server.spawn();
        server
    }

    /// Like [`RedisServer::start_on`], keeping `SAVE`d data in `dir` across restarts.
    pub fn start_persistent(port: u16, dir: &std::path::Path) -> Self {
        let mut server = Self {
            port,
            dir: Some(dir.to_owned()),
            extra: Vec::new(),
            access: Access::default(),
            child: None,
            scratch: scratch_dir(),
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.arg("--dir")
            .arg(self.dir.as_deref().unwrap_or(self.scratch.path()));
        cmd.args(&self.extra);
        let mut child = cmd
            .args(self.access.server_args(self.port))
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--loglevel",
                "notice",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it: apt-get install redis-server (scripts/test does)")
            });
        // Wait for the line Redis prints once it listens: an event, not a sleep.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut seen = Vec::new();
        loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if line.contains("Ready to accept connections") {
                        break;
                    }
                    seen.push(line);
                }
                _ => panic!(
                    "redis-server on port {} exited before it was ready: {seen:#?}",
                    self.port
                ),
            }
        }
        // Keep draining its output so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        self.child = Some(child);
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` with TLS; never with the password).
    pub fn url(&self) -> String {
        let scheme = if self.access.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit; data is lost (no persistence).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Runs `redis-cli` against this server and returns its trimmed output.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(self.access.cli_args())
            .args(args)
            .output()
            .expect("redis-cli (apt-get install redis-tools)");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
/// For conditions that have no event to await (expiry, readiness flags).
pub async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
