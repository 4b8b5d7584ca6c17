//! Test harness for multi-process scenarios: hubbub-server replicas as child processes,
//! and the Node.js driver (tests/interop/driver.js) that runs official socket.io clients,
//! a Node socket.io server with @socket.io/redis-adapter, and @socket.io/redis-emitter.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use crate::support::{eventually, free_port};

/// A hubbub-server child process, killed on drop.
pub struct Hubbub {
    /// Its HTTP port on 127.0.0.1.
    pub port: u16,
    /// Where its log goes (printed when a test fails).
    pub log: std::path::PathBuf,
    child: Child,
    /// The private directory of the log: removed on drop, kept (and named on stderr) when
    /// the test is failing.
    dir: Option<tempfile::TempDir>,
}

impl Hubbub {
    /// Starts `hubbub-server` on a free port with Redis at `redis_url`, fast presence
    /// settings and `extra` flags. Does not wait for readiness.
    pub fn start(redis_url: &str, extra: &[&str]) -> Self {
        Self::start_with_redis(&["--redis-url", redis_url], extra)
    }

    /// Like [`Hubbub::start`], with Redis given by `redis` flags (a URL, Sentinels or
    /// cluster nodes).
    pub fn start_with_redis(redis: &[&str], extra: &[&str]) -> Self {
        let port = free_port();
        let dir = tempfile::Builder::new()
            .prefix("hubbub-redis-test-log")
            .tempdir()
            .expect("a temporary directory for the hubbub-server log");
        let log = dir.path().join(format!("hubbub-{port}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hubbub-server"))
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(redis)
            .args(["--presence-heartbeat-secs", "1", "--presence-ttl-secs", "2"])
            .args([
                "--shutdown-grace-secs",
                "1",
                "--rate-limit",
                "1000",
                "--rate-burst",
                "2000",
            ])
            .args(extra)
            .env("HUBBUB_LOG", "info,hubbub=debug")
            .stdout(Stdio::from(file.try_clone().unwrap()))
            .stderr(Stdio::from(file))
            .spawn()
            .expect("hubbub-server binary");
        Self {
            port,
            log,
            child,
            dir: Some(dir),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The status code of `GET /readyz` (0 when nothing answers).
    pub fn readyz(&self) -> u16 {
        http_status(self.port, "/readyz")
    }

    /// The body of `GET /readyz` (the reasons when not ready).
    pub fn readyz_text(&self) -> String {
        http_get(self.port, "/readyz").1
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        let ok = eventually(Duration::from_secs(10), || async { self.readyz() == 200 }).await;
        assert!(
            ok,
            "replica {} never became ready; log: {}",
            self.port,
            self.log.display()
        );
    }

    /// SIGKILL, no clean-up of any kind.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for the process to exit by itself; its status, if it did.
    #[allow(dead_code)] // used by the redis_ha suite
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Everything it logged so far.
    #[allow(dead_code)] // used by the redis_ha suite
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(self.port, "/metrics").1
    }
}

impl Drop for Hubbub {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            let kept = dir.keep();
            eprintln!(
                "hubbub-server on port {}: log kept at {}",
                self.port,
                kept.join(self.log.file_name().unwrap_or_default())
                    .display()
            );
        }
    }
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

fn http_status(port: u16, path: &str) -> u16 {
    http_get(port, path).0
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;
type Routes = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Value>>>>;

/// The Node.js driver process.
pub struct Driver {
    stdin: tokio::sync::Mutex<tokio::process::ChildStdin>,
    seq: AtomicU64,
    pending: Pending,
    routes: Routes,
    _child: tokio::process::Child,
}

impl Driver {
    /// Starts `node tests/interop/driver.js`.
    pub async fn start() -> Arc<Self> {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/interop");
        assert!(
            std::path::Path::new(dir)
                .join("node_modules/socket.io-client")
                .exists(),
            "tests/interop/node_modules is missing: run `npm ci` in tests/interop (scripts/test does)"
        );
        let mut child = tokio::process::Command::new("node")
            .arg("driver.js")
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node (apt-get install nodejs)");
        let stdout = child.stdout.take().unwrap();
        let stdin = child.stdin.take().unwrap();
        let pending: Pending = Arc::default();
        let routes: Routes = Arc::default();
        let (p, r) = (pending.clone(), routes.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if let Some(seq) = v.get("re").and_then(Value::as_u64) {
                    if let Some(tx) = p.lock().remove(&seq) {
                        let _ = tx.send(v);
                    }
                } else if let Some(id) = v.get("id").and_then(Value::as_str)
                    && let Some(tx) = r.lock().get(id)
                {
                    let _ = tx.send(v);
                }
            }
        });
        Arc::new(Self {
            stdin: tokio::sync::Mutex::new(stdin),
            seq: AtomicU64::new(1),
            pending,
            routes,
            _child: child,
        })
    }

    /// Sends a command and waits for its reply.
    pub async fn call(&self, mut cmd: Value) -> Value {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        cmd["seq"] = json!(seq);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(seq, tx);
        let mut line = serde_json::to_vec(&cmd).unwrap();
        line.push(b'\n');
        {
            let mut stdin = self.stdin.lock().await;
            stdin.write_all(&line).await.unwrap();
            stdin.flush().await.unwrap();
        }
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .unwrap_or_else(|_| panic!("driver did not answer {cmd}"))
            .unwrap()
    }

    /// Connects an official socket.io client `id` to `url` (`extra` adds options such as
    /// `failover` URLs and the name to `rejoin` with).
    pub async fn connect(self: &Arc<Self>, id: &str, url: &str, extra: Value) -> Client {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes.lock().insert(id.to_owned(), tx);
        let mut cmd = json!({"op": "connect", "id": id, "url": url});
        if let Value::Object(m) = extra {
            for (k, v) in m {
                cmd[k] = v;
            }
        }
        let reply = self.call(cmd).await;
        assert_eq!(reply["ok"], json!(true), "connect {id} to {url}: {reply}");
        Client {
            id: id.to_owned(),
            sid: reply["sid"].as_str().unwrap().to_owned(),
            rx,
            seen: Vec::new(),
            driver: self.clone(),
        }
    }
}

/// One socket.io client run by the driver, with everything it received.
pub struct Client {
    /// The driver's name for it.
    pub id: String,
    /// Its Socket.IO socket id (of the first connection).
    pub sid: String,
    rx: mpsc::UnboundedReceiver<Value>,
    /// Every notice received so far, in order (events, disconnects, failovers).
    pub seen: Vec<Value>,
    driver: Arc<Driver>,
}

impl Client {
    /// Emits an event without ack.
    pub async fn emit(&self, event: &str, args: Value) {
        let r = self
            .driver
            .call(json!({"op": "emit", "id": self.id, "event": event, "args": args}))
            .await;
        assert_eq!(r["ok"], json!(true), "{r}");
    }

    /// Emits an event and returns the ack's arguments as an array (`emitWithAck` resolves
    /// with the first one, which is all hubbub sends). Panics on ack timeout.
    pub async fn ask(&self, event: &str, args: Value) -> Value {
        let r = self
            .driver
            .call(json!({"op": "emit", "id": self.id, "event": event, "args": args, "ack": true}))
            .await;
        assert_eq!(r["ok"], json!(true), "{} {event}: {r}", self.id);
        json!([r["ack"]])
    }

    /// Closes the connection.
    pub async fn close(&self) {
        self.driver
            .call(json!({"op": "close", "id": self.id}))
            .await;
    }

    /// Waits for a notice matching `pred` (all notices are kept in `seen`).
    pub async fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(v) = self.seen.iter().find(|v| pred(v)) {
            return v.clone();
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(v)) => {
                    self.seen.push(v.clone());
                    if pred(&v) {
                        return v;
                    }
                }
                _ => panic!(
                    "{}: no {what} within {timeout:?}; seen: {:#?}",
                    self.id, self.seen
                ),
            }
        }
    }

    /// Waits for event `name` whose arguments satisfy `pred`.
    pub async fn wait_event(&mut self, name: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let v = self
            .wait_for(&format!("event {name}"), Duration::from_secs(10), |v| {
                v["ev"] == "event"
                    && v["name"] == name
                    && pred(v["args"].as_array().map_or(&[], |a| a.as_slice()))
            })
            .await;
        v["args"].as_array().cloned().unwrap_or_default()
    }

    /// Arguments of every event `name` received so far, in order (including what the
    /// driver reported before the reply to the last command).
    pub fn events(&mut self, name: &str) -> Vec<Vec<Value>> {
        while let Ok(v) = self.rx.try_recv() {
            self.seen.push(v);
        }
        self.seen
            .iter()
            .filter(|v| v["ev"] == "event" && v["name"] == name)
            .map(|v| v["args"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}
