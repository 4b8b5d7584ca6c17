//! How to reach Redis ([`RedisSettings`]) and why a Redis operation failed
//! ([`ClusterError`], the crate's one error type).

use std::time::Duration;

use fred::prelude::Config;

use crate::topology::RedisTopology;

/// Why a Redis operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The connection is down (or never came up); nothing was sent.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error, or the connection broke while waiting.
    #[error("redis command {op} failed: {message}")]
    Command {
        /// Which operation (a fixed name).
        op: &'static str,
        /// What Redis or the client said.
        message: String,
    },
    /// No answer within the command timeout.
    #[error("redis command {op} timed out after {timeout:?}")]
    Timeout {
        /// Which operation (a fixed name).
        op: &'static str,
        /// The timeout that passed.
        timeout: Duration,
    },
    /// The URL or another setting is unusable.
    #[error("invalid redis settings: {0}")]
    Config(String),
    /// Redis returned a value of an unexpected shape.
    #[error("unexpected redis reply to {op}: {message}")]
    Reply {
        /// Which operation (a fixed name).
        op: &'static str,
        /// What was wrong.
        message: String,
    },
}

/// How to reach Redis and how patient to be. The binary builds it from its own command
/// line (`hubbub-server`: `ServerConfig::redis_settings`); this crate reads no flags.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// Where Redis is: one URL (`--redis-url`), a Sentinel-managed master
    /// (`--redis-sentinels`) or a Redis Cluster (`--redis-cluster-nodes`).
    pub topology: RedisTopology,
    /// Password of the data nodes when the URL carries none (`--redis-password`).
    pub password: Option<String>,
    /// PEM text of CA certificates trusted besides the system's roots when TLS is on
    /// (`--redis-ca-file`, default none): the CA of a Redis with a private certificate.
    pub ca_pem: Option<String>,
    /// Channel prefix, the Node adapter's `key` (`--redis-channel-prefix`, default `socket.io`).
    pub channel_prefix: String,
    /// Key prefix for shared state (`--redis-key-prefix`, default `hubbub`).
    pub key_prefix: String,
    /// Longest wait for one command before it counts as failed (default 3 s).
    pub command_timeout: Duration,
    /// First reconnection delay; doubled on each failed attempt (default 100 ms).
    pub reconnect_min: Duration,
    /// Cap of the reconnection delay (default 2 s).
    pub reconnect_max: Duration,
    /// Longest a TCP connect + TLS handshake may take (default 3 s).
    pub connect_timeout: Duration,
    /// PUBLISHes queued for the publisher task before new ones are dropped (default 65536).
    pub publish_queue: usize,
    /// Pub/sub messages buffered between the client and the dispatcher (default 4096).
    /// The buffer is allocated whole at start-up (fred's broadcast channel, about
    /// 1.5 KB a slot); messages beyond it are counted in
    /// `hubbub_redis_receive_lost_total`.
    pub receive_buffer: usize,
    /// Which room channels a replica subscribes to on a cluster
    /// (`--redis-subscription-mode`, default `dynamic`, as the Node sharded adapter).
    pub subscription_mode: SubscriptionMode,
}

/// The sharded adapter's `subscriptionMode`: which rooms get a channel of their own
/// (`<key>#<nsp>#<room>#`, spread over the shards by its hash slot). Every replica of one
/// deployment, Node ones included, must use the same mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// Two channels per namespace; every broadcast on the namespace channel.
    Static,
    /// Plus one channel per public room (not a socket's own room) with local members.
    #[default]
    Dynamic,
    /// Plus one channel per socket's own room too.
    DynamicPrivate,
}

impl SubscriptionMode {
    /// Parses `static`, `dynamic` or `dynamic-private`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "static" => Some(Self::Static),
            "dynamic" => Some(Self::Dynamic),
            "dynamic-private" => Some(Self::DynamicPrivate),
            _ => None,
        }
    }

    /// The Node adapter's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Static => "static",
            Self::Dynamic => "dynamic",
            Self::DynamicPrivate => "dynamic-private",
        }
    }
}

impl RedisSettings {
    /// The settings for `url` with every other value at its default.
    pub fn new(url: impl Into<String>) -> Self {
        Self::with_topology(RedisTopology::Standalone { url: url.into() })
    }

    /// The settings for `topology` with every other value at its default.
    pub fn with_topology(topology: RedisTopology) -> Self {
        Self {
            topology,
            password: None,
            ca_pem: None,
            channel_prefix: "socket.io".into(),
            key_prefix: "hubbub".into(),
            command_timeout: Duration::from_secs(3),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(3),
            publish_queue: 65_536,
            // 10 s of backlog at 400 messages/s; 65,536 slots cost about 96 MB.
            receive_buffer: 4_096,
            subscription_mode: SubscriptionMode::Dynamic,
        }
    }

    pub(crate) fn fred_config(&self) -> Result<Config, ClusterError> {
        self.topology
            .fred_config(self.password.as_deref(), self.ca_pem.as_deref())
    }
}
