//! Server settings: every field is a command-line flag and an environment
//! variable `HUBBUB_<NAME>`, documented here with its default, and checked by
//! [`ServerConfig::validate`] so that a bad value stops the program at start-up
//! with a message naming the setting and the accepted range.
//!
//! This module does no I/O; `src/main.rs` parses, validates and
//! hands the result to `server::run`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use hubbub_redis::link::SubscriptionMode;
use hubbub_redis::topology::{NodeAddr, RedisTopology};
pub use hubbub_telemetry::LogFormat;

/// A setting whose value is outside what hubbub accepts.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid setting {setting} (HUBBUB_{env}): {reason}")]
pub struct ConfigError {
    /// The flag name, e.g. `--history-size`.
    pub setting: &'static str,
    /// The environment variable suffix, e.g. `HISTORY_SIZE`.
    pub env: &'static str,
    /// What is accepted.
    pub reason: String,
}

/// Every setting of `hubbub-server`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "hubbub-server",
    version,
    about = "hubbub: real-time chat over Socket.IO"
)]
pub struct ServerConfig {
    /// Address and port to listen on.
    #[arg(long, env = "HUBBUB_BIND", default_value = "0.0.0.0:8080")]
    pub bind: SocketAddr,

    /// Path of the Socket.IO endpoint (must start and end with `/`).
    #[arg(long, env = "HUBBUB_PATH", default_value = "/socket.io/")]
    pub path: String,

    /// Milliseconds between server pings (Engine.IO pingInterval), 100..=600000.
    #[arg(long, env = "HUBBUB_PING_INTERVAL_MS", default_value_t = 25_000)]
    pub ping_interval_ms: u64,

    /// Milliseconds a client has to answer a ping before it is disconnected (pingTimeout), 100..=600000.
    #[arg(long, env = "HUBBUB_PING_TIMEOUT_MS", default_value_t = 20_000)]
    pub ping_timeout_ms: u64,

    /// Largest accepted HTTP body or WebSocket message in bytes (maxPayload), 1024..=100000000.
    #[arg(long, env = "HUBBUB_MAX_PAYLOAD", default_value_t = 1_000_000)]
    pub max_payload: usize,

    /// Milliseconds a polling-to-WebSocket upgrade may take before the probe socket is dropped, 100..=600000.
    #[arg(long, env = "HUBBUB_UPGRADE_TIMEOUT_MS", default_value_t = 10_000)]
    pub upgrade_timeout_ms: u64,

    /// Milliseconds a new connection has to send its Socket.IO CONNECT, 100..=600000.
    #[arg(long, env = "HUBBUB_CONNECT_TIMEOUT_MS", default_value_t = 45_000)]
    pub connect_timeout_ms: u64,

    /// Packets queued for one client before it is disconnected as too slow, 16..=1000000.
    #[arg(long, env = "HUBBUB_OUTBOUND_QUEUE", default_value_t = 1024)]
    pub outbound_queue: usize,

    /// Most client connections (Engine.IO sessions) open at once; new ones beyond it get 503. 0: no limit.
    #[arg(long, env = "HUBBUB_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Origins allowed to connect (comma-separated exact origins such as
    /// `https://chat.example.com`, or `*` for any). Empty: same origin only.
    #[arg(long, env = "HUBBUB_CORS_ORIGINS", value_delimiter = ',', num_args = 0..)]
    pub cors_origins: Vec<String>,

    /// Welcome text sent to every new connection as `messages {"hello": ...}`; empty disables it.
    #[arg(long, env = "HUBBUB_WELCOME", default_value = "Hello World")]
    pub welcome: String,

    /// Chat messages kept and replayed on join, 1..=1000.
    #[arg(long, env = "HUBBUB_HISTORY_SIZE", default_value_t = 10)]
    pub history_size: usize,

    /// Questions kept and replayed to newcomers, 1..=1000.
    #[arg(long, env = "HUBBUB_QUESTION_HISTORY", default_value_t = 20)]
    pub question_history: usize,

    /// Largest chat message, question, answer in bytes (UTF-8), 1..=65536.
    #[arg(long, env = "HUBBUB_MAX_MESSAGE_BYTES", default_value_t = 4096)]
    pub max_message_bytes: usize,

    /// Sustained events per second allowed per connection (token bucket rate), 1..=100000.
    #[arg(long, env = "HUBBUB_RATE_LIMIT", default_value_t = 20)]
    pub rate_limit: u32,

    /// Events a connection may send in a burst (token bucket size), >= rate-limit, <= 1000000.
    #[arg(long, env = "HUBBUB_RATE_BURST", default_value_t = 40)]
    pub rate_burst: u32,

    /// Seconds to drain connections on SIGTERM/SIGINT before exiting, 0..=3600.
    #[arg(long, env = "HUBBUB_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Milliseconds to keep serving after SIGTERM/SIGINT, with `/readyz` at 503 and new
    /// sessions refused, before clients are disconnected (lets load balancers notice), 0..=60000.
    #[arg(long, env = "HUBBUB_SHUTDOWN_DELAY_MS", default_value_t = 0)]
    pub shutdown_delay_ms: u64,

    /// Seconds a disconnected client can come back and recover its session (same socket id,
    /// nickname, every missed event), 0..=86400; 0 disables connection state recovery.
    #[arg(long, env = "HUBBUB_RECOVERY_WINDOW_SECS", default_value_t = 120)]
    pub recovery_window_secs: u64,

    /// Broadcasts kept per namespace for recovery (in memory, or the Redis stream's length),
    /// 1..=1000000; a client that missed more gets a fresh session.
    #[arg(long, env = "HUBBUB_RECOVERY_MAX_EVENTS", default_value_t = 10_000)]
    pub recovery_max_events: usize,

    /// Redis URL (`redis://[:password@]host:port/db` or `rediss://...`). Unset (and no
    /// Sentinels or cluster nodes either): one node, in-memory state.
    #[arg(long, env = "HUBBUB_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis password, when it is not in the URL.
    #[arg(long, env = "HUBBUB_REDIS_PASSWORD", hide_env_values = true)]
    pub redis_password: Option<String>,

    /// Channel prefix for cross-replica broadcast (the Node `@socket.io/redis-adapter` `key`).
    #[arg(long, env = "HUBBUB_REDIS_CHANNEL_PREFIX", default_value = "socket.io")]
    pub redis_channel_prefix: String,

    /// Prefix of the keys that hold history, questions and presence.
    #[arg(long, env = "HUBBUB_REDIS_KEY_PREFIX", default_value = "hubbub")]
    pub redis_key_prefix: String,

    /// Sentinels watching the Redis master, comma-separated `host:port`; with
    /// `--redis-sentinel-master`, instead of `--redis-url`.
    #[arg(long, env = "HUBBUB_REDIS_SENTINELS")]
    pub redis_sentinels: Option<String>,

    /// The master's name in the Sentinels' configuration (`sentinel monitor <name> ...`).
    #[arg(long, env = "HUBBUB_REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,

    /// Password of the Sentinels themselves, when they require one (the data nodes use
    /// `--redis-password`).
    #[arg(long, env = "HUBBUB_REDIS_SENTINEL_PASSWORD", hide_env_values = true)]
    pub redis_sentinel_password: Option<String>,

    /// PEM file of CA certificates trusted for TLS to Redis (`rediss://` or `--redis-tls`),
    /// besides the system's roots: the CA of a Redis with a private certificate.
    #[arg(long, env = "HUBBUB_REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,

    /// Seed nodes of a Redis Cluster, comma-separated `host:port`, instead of
    /// `--redis-url`; cross-replica traffic then uses sharded pub/sub.
    #[arg(long, env = "HUBBUB_REDIS_CLUSTER_NODES")]
    pub redis_cluster_nodes: Option<String>,

    /// TLS to the Sentinels or cluster nodes (with `--redis-url`, `rediss://` decides).
    #[arg(long, env = "HUBBUB_REDIS_TLS", default_value_t = false)]
    pub redis_tls: bool,

    /// Cluster only: which rooms get a shard channel of their own, as the Node sharded
    /// adapter's `subscriptionMode`: `static`, `dynamic` or `dynamic-private`.
    #[arg(
        long,
        env = "HUBBUB_REDIS_SUBSCRIPTION_MODE",
        default_value = "dynamic"
    )]
    pub redis_subscription_mode: String,

    /// Seconds between presence heartbeats of this replica, 1..=300.
    #[arg(long, env = "HUBBUB_PRESENCE_HEARTBEAT_SECS", default_value_t = 5)]
    pub presence_heartbeat_secs: u64,

    /// Seconds after which a silent replica's users vanish from presence, > heartbeat, <= 3600.
    #[arg(long, env = "HUBBUB_PRESENCE_TTL_SECS", default_value_t = 15)]
    pub presence_ttl_secs: u64,

    /// IP address at which the other replicas reach this one, to forward requests of its
    /// sessions (with `--redis-url`; the operator sets the pod IP). Unset: the bound
    /// address when it names one interface, else the local address of the route to Redis.
    #[arg(long, env = "HUBBUB_ADVERTISE_IP")]
    pub advertise_ip: Option<std::net::IpAddr>,

    /// RabbitMQ URL (`amqp://user:pass@host:5672/vhost` or `amqps://...`): cross-replica
    /// traffic goes through RabbitMQ; Redis, when also set, keeps only the stored state.
    #[arg(long, env = "HUBBUB_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,

    /// PEM file of CA certificates trusted for an `amqps://` `--amqp-url`, besides the
    /// system's roots: the CA of a broker with a private certificate.
    #[arg(long, env = "HUBBUB_AMQP_CA_FILE")]
    pub amqp_ca_file: Option<std::path::PathBuf>,

    /// Prefix of the RabbitMQ exchange and queue names (`<prefix>.fanout`, `<prefix>.direct`, `<prefix>.replica.*`).
    #[arg(long, env = "HUBBUB_AMQP_PREFIX", default_value = "hubbub")]
    pub amqp_prefix: String,

    /// Log filter in tracing syntax, e.g. `info` or `hubbub=debug,actix_web=info`.
    #[arg(long = "log", env = "HUBBUB_LOG", default_value = "info")]
    pub log: String,

    /// Log format.
    #[arg(long, env = "HUBBUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The Socket.IO Admin UI (`--admin-*`, see `crate::admin`).
    #[command(flatten)]
    pub admin: crate::admin::AdminConfig,
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    value: T,
    lo: T,
    hi: T,
    setting: &'static str,
    env: &'static str,
) -> Result<(), ConfigError> {
    if value < lo || value > hi {
        return Err(ConfigError {
            setting,
            env,
            reason: format!("{value} is outside {lo}..={hi}"),
        });
    }
    Ok(())
}

impl Default for ServerConfig {
    fn default() -> Self {
        // unwrap: parsing no arguments only uses the defaults above, which are valid.
        ServerConfig::try_parse_from(["hubbub-server"]).expect("defaults parse")
    }
}

impl ServerConfig {
    /// The Redis link's settings, or `None` when no Redis is configured (in-memory mode).
    /// Settings that [`ServerConfig::validate`] refuses give `None` too.
    pub fn redis_settings(&self) -> Option<hubbub_redis::link::RedisSettings> {
        let topology = self.redis_topology().ok()??;
        let mut s = hubbub_redis::link::RedisSettings::with_topology(topology);
        s.password = self.redis_password.clone().filter(|p| !p.is_empty());
        // An unreadable file gives an empty text here, which `validate` refuses first with
        // an error naming the setting.
        s.ca_pem = self
            .redis_ca_file
            .as_ref()
            .map(|path| std::fs::read_to_string(path).unwrap_or_default());
        s.channel_prefix = self.redis_channel_prefix.clone();
        s.key_prefix = self.redis_key_prefix.clone();
        s.subscription_mode =
            SubscriptionMode::parse(&self.redis_subscription_mode).unwrap_or_default();
        Some(s)
    }

    /// The RabbitMQ link's settings, or `None` when `--amqp-url` is unset.
    pub fn amqp_settings(&self) -> Option<hubbub_amqp::link::AmqpSettings> {
        let url = self.amqp_url.as_ref()?;
        let mut s = hubbub_amqp::link::AmqpSettings::new(url.clone());
        s.prefix = self.amqp_prefix.clone();
        // An unreadable file gives an empty text here, which `validate` and
        // `AmqpLink::start` refuse with an error naming the setting.
        s.ca_pem = self
            .amqp_ca_file
            .as_ref()
            .map(|path| std::fs::read_to_string(path).unwrap_or_default());
        Some(s)
    }

    /// Connection state recovery settings; `None` when disabled (`--recovery-window-secs 0`).
    pub fn recovery_settings(&self) -> Option<hubbub_socketio::RecoverySettings> {
        (self.recovery_window_secs > 0).then(|| hubbub_socketio::RecoverySettings {
            window: Duration::from_secs(self.recovery_window_secs),
            max_events: self.recovery_max_events,
            // The replay is queued at once: it must fit in the client's outbound queue.
            max_replay: self.outbound_queue,
        })
    }

    /// Where Redis is: exactly one of `--redis-url`, `--redis-sentinels` (with
    /// `--redis-sentinel-master`) and `--redis-cluster-nodes`, or none (in-memory mode).
    pub fn redis_topology(&self) -> Result<Option<RedisTopology>, ConfigError> {
        let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.trim().is_empty());
        let chosen: Vec<&str> = [
            (set(&self.redis_url), "--redis-url"),
            (set(&self.redis_sentinels), "--redis-sentinels"),
            (set(&self.redis_cluster_nodes), "--redis-cluster-nodes"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| *name)
        .collect();
        if chosen.len() > 1 {
            return Err(ConfigError {
                setting: "--redis-url/--redis-sentinels/--redis-cluster-nodes",
                env: "REDIS_URL/REDIS_SENTINELS/REDIS_CLUSTER_NODES",
                reason: format!("set exactly one of them, not {}", chosen.join(" and ")),
            });
        }
        if set(&self.redis_sentinel_master) != set(&self.redis_sentinels) {
            return Err(ConfigError {
                setting: "--redis-sentinel-master",
                env: "REDIS_SENTINEL_MASTER",
                reason: "goes together with --redis-sentinels: set both or neither".into(),
            });
        }
        if SubscriptionMode::parse(&self.redis_subscription_mode).is_none() {
            return Err(ConfigError {
                setting: "--redis-subscription-mode",
                env: "REDIS_SUBSCRIPTION_MODE",
                reason: format!(
                    "{:?} is not one of static, dynamic, dynamic-private",
                    self.redis_subscription_mode
                ),
            });
        }
        if let Some(url) = self.redis_url.as_ref().filter(|u| !u.trim().is_empty()) {
            if self.redis_tls {
                return Err(ConfigError {
                    setting: "--redis-tls",
                    env: "REDIS_TLS",
                    reason:
                        "applies to Sentinels and cluster nodes; with --redis-url use rediss://"
                            .into(),
                });
            }
            return Ok(Some(RedisTopology::Standalone { url: url.clone() }));
        }
        if let Some(list) = self
            .redis_sentinels
            .as_ref()
            .filter(|s| !s.trim().is_empty())
        {
            let sentinels = NodeAddr::parse_list(list).map_err(|reason| ConfigError {
                setting: "--redis-sentinels",
                env: "REDIS_SENTINELS",
                reason,
            })?;
            return Ok(Some(RedisTopology::Sentinel {
                sentinels,
                // unwrap-free: checked above that the master is set with the Sentinels.
                master: self.redis_sentinel_master.clone().unwrap_or_default(),
                sentinel_password: self
                    .redis_sentinel_password
                    .clone()
                    .filter(|p| !p.is_empty()),
                tls: self.redis_tls,
            }));
        }
        if let Some(list) = self
            .redis_cluster_nodes
            .as_ref()
            .filter(|s| !s.trim().is_empty())
        {
            let nodes = NodeAddr::parse_list(list).map_err(|reason| ConfigError {
                setting: "--redis-cluster-nodes",
                env: "REDIS_CLUSTER_NODES",
                reason,
            })?;
            return Ok(Some(RedisTopology::Cluster {
                nodes,
                tls: self.redis_tls,
            }));
        }
        Ok(None)
    }

    /// Checks every setting against its documented range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') || !self.path.ends_with('/') || self.path.len() < 2 {
            return Err(ConfigError {
                setting: "--path",
                env: "PATH",
                reason: format!(
                    "{:?} must start and end with '/', e.g. /socket.io/",
                    self.path
                ),
            });
        }
        range(
            self.ping_interval_ms,
            100,
            600_000,
            "--ping-interval-ms",
            "PING_INTERVAL_MS",
        )?;
        range(
            self.ping_timeout_ms,
            100,
            600_000,
            "--ping-timeout-ms",
            "PING_TIMEOUT_MS",
        )?;
        range(
            self.max_payload,
            1024,
            100_000_000,
            "--max-payload",
            "MAX_PAYLOAD",
        )?;
        range(
            self.upgrade_timeout_ms,
            100,
            600_000,
            "--upgrade-timeout-ms",
            "UPGRADE_TIMEOUT_MS",
        )?;
        range(
            self.connect_timeout_ms,
            100,
            600_000,
            "--connect-timeout-ms",
            "CONNECT_TIMEOUT_MS",
        )?;
        range(
            self.outbound_queue,
            16,
            1_000_000,
            "--outbound-queue",
            "OUTBOUND_QUEUE",
        )?;
        range(self.history_size, 1, 1000, "--history-size", "HISTORY_SIZE")?;
        range(
            self.question_history,
            1,
            1000,
            "--question-history",
            "QUESTION_HISTORY",
        )?;
        range(
            self.max_message_bytes,
            1,
            65_536,
            "--max-message-bytes",
            "MAX_MESSAGE_BYTES",
        )?;
        range(self.rate_limit, 1, 100_000, "--rate-limit", "RATE_LIMIT")?;
        range(
            self.rate_burst,
            self.rate_limit,
            1_000_000,
            "--rate-burst",
            "RATE_BURST",
        )?;
        range(
            self.shutdown_grace_secs,
            0,
            3600,
            "--shutdown-grace-secs",
            "SHUTDOWN_GRACE_SECS",
        )?;
        range(
            self.presence_heartbeat_secs,
            1,
            300,
            "--presence-heartbeat-secs",
            "PRESENCE_HEARTBEAT_SECS",
        )?;
        range(
            self.presence_ttl_secs,
            self.presence_heartbeat_secs + 1,
            3600,
            "--presence-ttl-secs",
            "PRESENCE_TTL_SECS",
        )?;
        if let Some(ip) = self.advertise_ip
            && (ip.is_unspecified() || ip.is_multicast())
        {
            return Err(ConfigError {
                setting: "--advertise-ip",
                env: "ADVERTISE_IP",
                reason: format!("{ip} is not an address other replicas can connect to"),
            });
        }
        range(
            self.recovery_window_secs,
            0,
            86_400,
            "--recovery-window-secs",
            "RECOVERY_WINDOW_SECS",
        )?;
        range(
            self.recovery_max_events,
            1,
            1_000_000,
            "--recovery-max-events",
            "RECOVERY_MAX_EVENTS",
        )?;
        for origin in &self.cors_origins {
            let ok = origin == "*"
                || ((origin.starts_with("http://") || origin.starts_with("https://"))
                    && !origin.ends_with('/'));
            if !ok {
                return Err(ConfigError {
                    setting: "--cors-origins",
                    env: "CORS_ORIGINS",
                    reason: format!(
                        "{origin:?} is not an origin: use scheme://host[:port] without a path, or *"
                    ),
                });
            }
        }
        if let Some(url) = &self.redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(ConfigError {
                setting: "--redis-url",
                env: "REDIS_URL",
                reason: "must start with redis:// or rediss://".into(),
            });
        }
        if let Some(settings) = self.amqp_settings()
            && let Err(e) = settings.uri()
        {
            return Err(ConfigError {
                setting: "--amqp-url",
                env: "AMQP_URL",
                reason: match e {
                    hubbub_amqp::link::AmqpError::Url(why) => why,
                    other => other.to_string(),
                },
            });
        }
        if let Some(path) = &self.amqp_ca_file {
            let ca_error = |reason: String| ConfigError {
                setting: "--amqp-ca-file",
                env: "AMQP_CA_FILE",
                reason,
            };
            let Some(settings) = self.amqp_settings() else {
                return Err(ca_error("needs an amqps:// --amqp-url".into()));
            };
            if let Err(e) = std::fs::read_to_string(path) {
                return Err(ca_error(format!("cannot read {}: {e}", path.display())));
            }
            if let Err(e) = settings.tls_config() {
                return Err(ca_error(match e {
                    hubbub_amqp::link::AmqpError::CaFile(why) => {
                        format!("{}: {why}", path.display())
                    }
                    other => other.to_string(),
                }));
            }
        }
        let prefix_ok = !self.amqp_prefix.is_empty()
            && self.amqp_prefix.len() <= 200
            && self
                .amqp_prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !prefix_ok {
            return Err(ConfigError {
                setting: "--amqp-prefix",
                env: "AMQP_PREFIX",
                reason: "1 to 200 characters among a-z A-Z 0-9 - _ .".into(),
            });
        }
        let topology = self.redis_topology()?;
        if let Some(path) = &self.redis_ca_file {
            let ca_error = |reason: String| ConfigError {
                setting: "--redis-ca-file",
                env: "REDIS_CA_FILE",
                reason,
            };
            if !topology.as_ref().is_some_and(RedisTopology::uses_tls) {
                return Err(ca_error(
                    "only used with TLS: a rediss:// --redis-url, or --redis-tls".into(),
                ));
            }
            let pem = std::fs::read_to_string(path)
                .map_err(|e| ca_error(format!("cannot read {}: {e}", path.display())))?;
            hubbub_redis::tls::check_ca_pem(&pem)
                .map_err(|why| ca_error(format!("{}: {why}", path.display())))?;
        }
        if self.redis_channel_prefix.is_empty() || self.redis_key_prefix.is_empty() {
            return Err(ConfigError {
                setting: "--redis-channel-prefix/--redis-key-prefix",
                env: "REDIS_CHANNEL_PREFIX/REDIS_KEY_PREFIX",
                reason: "must not be empty".into(),
            });
        }
        self.admin.validate()
    }

    /// The Engine.IO ping interval.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_millis(self.ping_interval_ms)
    }

    /// The Engine.IO ping timeout.
    pub fn ping_timeout(&self) -> Duration {
        Duration::from_millis(self.ping_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> ServerConfig {
        let mut all = vec!["hubbub-server"];
        all.extend_from_slice(args);
        ServerConfig::try_parse_from(all).unwrap()
    }

    #[test]
    fn defaults_are_valid_and_documented_values() {
        let c = ServerConfig::default();
        c.validate().unwrap();
        assert_eq!(c.bind.to_string(), "0.0.0.0:8080");
        assert_eq!(c.ping_interval_ms, 25_000);
        assert_eq!(c.ping_timeout_ms, 20_000);
        assert_eq!(c.max_payload, 1_000_000);
        assert_eq!(c.history_size, 10);
        assert_eq!(c.question_history, 20);
        assert!(c.cors_origins.is_empty());
        let r = c.recovery_settings().unwrap();
        assert_eq!(r.window, Duration::from_secs(120));
        assert_eq!(r.max_events, 10_000);
        assert_eq!(r.max_replay, c.outbound_queue);
        assert!(
            parse(&["--recovery-window-secs", "0"])
                .recovery_settings()
                .is_none()
        );
    }

    #[test]
    fn out_of_range_values_name_the_setting() {
        let e = parse(&["--history-size", "0"]).validate().unwrap_err();
        assert_eq!(e.setting, "--history-size");
        assert!(e.to_string().contains("HUBBUB_HISTORY_SIZE"), "{e}");
        assert!(e.to_string().contains("1..=1000"), "{e}");
        let e = parse(&["--rate-limit", "50", "--rate-burst", "10"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--rate-burst");
        let e = parse(&["--cors-origins", "example.com"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--cors-origins");
        let e = parse(&["--path", "socket"]).validate().unwrap_err();
        assert_eq!(e.setting, "--path");
        let e = parse(&["--redis-url", "http://x"]).validate().unwrap_err();
        assert_eq!(e.setting, "--redis-url");
        let e = parse(&["--advertise-ip", "0.0.0.0"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--advertise-ip");
        assert!(e.to_string().contains("HUBBUB_ADVERTISE_IP"), "{e}");
        parse(&["--advertise-ip", "10.1.2.3"]).validate().unwrap();
        assert!(
            ServerConfig::try_parse_from(["hubbub-server", "--advertise-ip", "pod"]).is_err(),
            "not an IP address"
        );
        let e = parse(&["--recovery-window-secs", "86401"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--recovery-window-secs");
        assert!(e.to_string().contains("HUBBUB_RECOVERY_WINDOW_SECS"), "{e}");
        let e = parse(&["--recovery-max-events", "0"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--recovery-max-events");
    }

    #[test]
    fn cors_origins_split_on_commas() {
        let c = parse(&["--cors-origins", "https://a.example,http://localhost:3000"]);
        c.validate().unwrap();
        assert_eq!(
            c.cors_origins,
            vec!["https://a.example", "http://localhost:3000"]
        );
    }

    #[test]
    fn amqp_settings_come_from_the_flags_and_are_checked() {
        let c = parse(&[
            "--amqp-url",
            "amqp://u:p@127.0.0.1:5673/chat",
            "--amqp-prefix",
            "room1",
        ]);
        c.validate().unwrap();
        let s = c.amqp_settings().unwrap();
        assert_eq!(s.url, "amqp://u:p@127.0.0.1:5673/chat");
        assert_eq!(s.prefix, "room1");
        assert!(ServerConfig::default().amqp_settings().is_none());
        parse(&["--amqp-url", "amqps://rabbit.example/"])
            .validate()
            .unwrap();
        for bad in ["redis://x", "amqp://h:port/", "rabbit.example"] {
            let e = parse(&["--amqp-url", bad]).validate().unwrap_err();
            assert_eq!(e.setting, "--amqp-url", "{bad}");
            assert!(e.to_string().contains("HUBBUB_AMQP_URL"), "{e}");
        }
        let e = parse(&["--amqp-prefix", "a b"]).validate().unwrap_err();
        assert_eq!(e.setting, "--amqp-prefix");
    }

    #[test]
    fn amqp_ca_file_is_read_and_checked_at_start_up() {
        let dir = std::env::temp_dir().join(format!("hubbub-ca-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pem = dir.join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nAAECAw==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let pem_arg = pem.to_str().unwrap();
        let tls = ["--amqp-url", "amqps://u:p@127.0.0.1:5671/chat"];
        let c = parse(&[tls[0], tls[1], "--amqp-ca-file", pem_arg]);
        c.validate().unwrap();
        let s = c.amqp_settings().unwrap();
        assert!(s.ca_pem.unwrap().contains("BEGIN CERTIFICATE"));
        let cases: [(&[&str], &str); 4] = [
            (&["--amqp-ca-file", pem_arg], "needs an amqps://"),
            (
                &["--amqp-url", "amqp://127.0.0.1/", "--amqp-ca-file", pem_arg],
                "only used with an amqps://",
            ),
            (
                &[tls[0], tls[1], "--amqp-ca-file", empty.to_str().unwrap()],
                "no PEM certificate",
            ),
            (
                &[tls[0], tls[1], "--amqp-ca-file", "/nonexistent/ca.pem"],
                "cannot read /nonexistent/ca.pem",
            ),
        ];
        for (args, says) in cases {
            let e = parse(args).validate().unwrap_err();
            assert_eq!(e.setting, "--amqp-ca-file", "{args:?}");
            let text = e.to_string();
            assert!(text.contains("HUBBUB_AMQP_CA_FILE"), "{text}");
            assert!(text.contains(says), "{args:?}: {text}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn redis_settings_come_from_the_flags() {
        let c = parse(&[
            "--redis-url",
            "redis://127.0.0.1:6390/2",
            "--redis-password",
            "s3cret",
            "--redis-channel-prefix",
            "chat",
        ]);
        let s = c.redis_settings().unwrap();
        assert!(
            matches!(&s.topology, RedisTopology::Standalone { url } if url == "redis://127.0.0.1:6390/2")
        );
        assert_eq!(s.password.as_deref(), Some("s3cret"));
        assert_eq!(s.channel_prefix, "chat");
        assert_eq!(s.key_prefix, "hubbub");
        assert!(ServerConfig::default().redis_settings().is_none());
        assert!(
            parse(&["--redis-url", "redis://x:1", "--redis-password", ""])
                .redis_settings()
                .unwrap()
                .password
                .is_none()
        );
    }

    #[test]
    fn sentinel_and_cluster_settings() {
        let c = parse(&[
            "--redis-sentinels",
            "127.0.0.1:26379,127.0.0.1:26380",
            "--redis-sentinel-master",
            "mymaster",
            "--redis-password",
            "data",
        ]);
        c.validate().unwrap();
        let s = c.redis_settings().unwrap();
        let RedisTopology::Sentinel {
            sentinels, master, ..
        } = &s.topology
        else {
            panic!("{:?}", s.topology)
        };
        assert_eq!((sentinels.len(), master.as_str()), (2, "mymaster"));
        assert_eq!(s.password.as_deref(), Some("data"));
        let c = parse(&[
            "--redis-cluster-nodes",
            "127.0.0.1:7000",
            "--redis-tls",
            "--redis-subscription-mode",
            "static",
        ]);
        c.validate().unwrap();
        let s = c.redis_settings().unwrap();
        assert!(matches!(
            s.topology,
            RedisTopology::Cluster { tls: true, .. }
        ));
        assert_eq!(s.subscription_mode, SubscriptionMode::Static);
    }

    #[test]
    fn redis_ca_file_is_read_and_checked_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TEST_CA).unwrap();
        let text = dir.path().join("text.pem");
        std::fs::write(&text, "not a certificate\n").unwrap();
        let (ca, text) = (ca.to_str().unwrap(), text.to_str().unwrap());
        let sentinels = [
            "--redis-sentinels",
            "127.0.0.1:26379",
            "--redis-sentinel-master",
            "m",
        ];
        for ok in [
            vec![
                "--redis-url",
                "rediss://127.0.0.1:6380",
                "--redis-ca-file",
                ca,
            ],
            [&sentinels[..], &["--redis-tls", "--redis-ca-file", ca]].concat(),
            vec![
                "--redis-cluster-nodes",
                "127.0.0.1:7000",
                "--redis-tls",
                "--redis-ca-file",
                ca,
            ],
        ] {
            let c = parse(&ok);
            c.validate().unwrap();
            let pem = c.redis_settings().unwrap().ca_pem.unwrap();
            assert!(pem.contains("BEGIN CERTIFICATE"), "{ok:?}");
        }
        let cases: [(Vec<&str>, &str); 4] = [
            (
                vec![
                    "--redis-url",
                    "redis://127.0.0.1:6379",
                    "--redis-ca-file",
                    ca,
                ],
                "only used with TLS",
            ),
            (
                [&sentinels[..], &["--redis-ca-file", ca]].concat(),
                "only used with TLS",
            ),
            (
                vec![
                    "--redis-url",
                    "rediss://127.0.0.1:6380",
                    "--redis-ca-file",
                    text,
                ],
                "no PEM certificate",
            ),
            (
                vec![
                    "--redis-url",
                    "rediss://h:1",
                    "--redis-ca-file",
                    "/nonexistent/ca.pem",
                ],
                "cannot read /nonexistent/ca.pem",
            ),
        ];
        for (args, says) in cases {
            let e = parse(&args).validate().unwrap_err();
            assert_eq!(e.setting, "--redis-ca-file", "{args:?}");
            let text = e.to_string();
            assert!(text.contains("HUBBUB_REDIS_CA_FILE"), "{text}");
            assert!(text.contains(says), "{args:?}: {text}");
        }
    }

    /// A self-signed CA certificate (P-256), shared with `hubbub-redis`'s TLS tests.
    const TEST_CA: &str = include_str!("../../redis/testdata/unit-test-ca.pem");

    #[test]
    fn conflicting_redis_settings_are_refused_by_name() {
        let e = parse(&["--redis-url", "redis://x:1", "--redis-cluster-nodes", "y:2"])
            .validate()
            .unwrap_err();
        assert!(
            e.reason.contains("--redis-url and --redis-cluster-nodes"),
            "{e}"
        );
        let e = parse(&["--redis-sentinels", "a:1"]).validate().unwrap_err();
        assert_eq!(e.setting, "--redis-sentinel-master");
        let e = parse(&["--redis-sentinel-master", "m"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--redis-sentinel-master");
        let e = parse(&["--redis-sentinels", "a:1,b", "--redis-sentinel-master", "m"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--redis-sentinels");
        assert!(e.reason.contains("\"b\""), "{e}");
        let e = parse(&["--redis-cluster-nodes", "x"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--redis-cluster-nodes");
        let e = parse(&["--redis-url", "redis://x:1", "--redis-tls"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--redis-tls");
        let e = parse(&["--redis-subscription-mode", "sometimes"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--redis-subscription-mode");
    }
}
