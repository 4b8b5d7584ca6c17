//! The `ChatRoom` custom resource (`hubbub.dev/v1alpha1`): its spec, its status and the
//! CustomResourceDefinition generated from them.
//!
//! Every field carries a description (it becomes `kubectl explain chatroom.spec...`) and
//! the schema holds the validation the API server can do on its own: bounds, enums and
//! CEL rules (`x-kubernetes-validations`) where a rule spans fields. What the schema
//! cannot say (for example "an Ingress needs a host") is checked by
//! [`crate::resources`] and reported as `Ready=False`.
//!
//! This module owns only types and their defaults; it does no I/O.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, ResourceRequirements, Toleration};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the ChatRoom resource.
pub const GROUP: &str = "hubbub.dev";
/// API version of the ChatRoom resource.
pub const VERSION: &str = "v1alpha1";

/// A chat service: a horizontally scaled hubbub server Deployment with its own Redis.
///
/// The operator turns each ChatRoom into a Deployment, a Service, a Redis StatefulSet with
/// a headless Service, and optionally a PodDisruptionBudget, an Ingress and a
/// HorizontalPodAutoscaler, all owned by the ChatRoom.
// the repeated `type_ = ...` of the printer columns are separate columns, not duplicates
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[kube(
    group = "hubbub.dev",
    version = "v1alpha1",
    kind = "ChatRoom",
    plural = "chatrooms",
    singular = "chatroom",
    shortname = "room",
    category = "hubbub",
    namespaced,
    status = "ChatRoomStatus",
    derive = "PartialEq",
    doc = "A hubbub chat service: a horizontally scaled Socket.IO chat server with its own Redis, reconciled by hubbub-operator.",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Chat server replicas that exist"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the chat server and its Redis are available"
    ),
    printcolumn(
        name = "Endpoint",
        type_ = "string",
        json_path = ".status.endpoint",
        description = "Where clients connect"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ChatRoomSpec {
    /// Number of chat server pods (1..=100, default 2). Ignored while `autoscaling` is set;
    /// `kubectl scale chatroom/NAME --replicas=N` changes it.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,

    /// Chat server container image. Default: the operator's `--server-image`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// Pull policy of the chat server and Redis images. Default: the Kubernetes default
    /// (`Always` for `:latest`, `IfNotPresent` otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Compute resources of each chat server container. Default: requests 100m CPU and
    /// 64Mi memory, limit 256Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Extra annotations on the chat server pods (they win over the operator's Prometheus
    /// scrape annotations).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Node selector of the chat server pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the chat server pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity of the chat server pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// How much history new users are shown.
    #[serde(default)]
    pub history: HistorySpec,

    /// Welcome text sent to every new connection; empty disables it. Default: the server's
    /// default ("Hello World").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub welcome: Option<String>,

    /// Largest chat message, question or answer in bytes (1..=65536). Default: the server's
    /// default (4096).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65536))]
    pub max_message_bytes: Option<i32>,

    /// Per-connection rate limit of chat events. Default: the server's (20/s, burst 40).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,

    /// Origins allowed to connect from a browser on another origin, e.g.
    /// `https://chat.example.com`, or `*` for any. Empty: same origin only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub cors_origins: Vec<String>,

    /// Seconds the server drains connections on shutdown (0..=3600, default 10). The pods'
    /// termination grace period is set above it.
    #[serde(default = "default_shutdown_grace")]
    #[schemars(range(min = 0, max = 3600))]
    pub shutdown_grace_seconds: i32,

    /// Logging of the chat server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogSpec>,

    /// Other server settings as environment variables (`HUBBUB_*`, e.g.
    /// `HUBBUB_PING_INTERVAL_MS`). Settings the operator manages from other fields are
    /// rejected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": "self.all(e, !(e.name in ['HUBBUB_BIND', 'HUBBUB_REDIS_URL', 'HUBBUB_REDIS_PASSWORD', 'HUBBUB_REDIS_SENTINELS', 'HUBBUB_REDIS_SENTINEL_MASTER', 'HUBBUB_REDIS_SENTINEL_PASSWORD', 'HUBBUB_REDIS_CLUSTER_NODES', 'HUBBUB_REDIS_TLS', 'HUBBUB_ADVERTISE_IP', 'HUBBUB_AMQP_URL', 'HUBBUB_AMQP_PREFIX', 'HUBBUB_HISTORY_SIZE', 'HUBBUB_QUESTION_HISTORY', 'HUBBUB_WELCOME', 'HUBBUB_MAX_MESSAGE_BYTES', 'HUBBUB_RATE_LIMIT', 'HUBBUB_RATE_BURST', 'HUBBUB_CORS_ORIGINS', 'HUBBUB_SHUTDOWN_GRACE_SECS', 'HUBBUB_LOG', 'HUBBUB_LOG_FORMAT', 'HUBBUB_ADMIN_UI', 'HUBBUB_ADMIN_USERNAME', 'HUBBUB_ADMIN_PASSWORD_HASH', 'HUBBUB_ADMIN_NO_AUTH', 'HUBBUB_ADMIN_READONLY', 'HUBBUB_ADMIN_MODE']))",
        "message": "this setting is managed by the operator: use the matching ChatRoom field instead of env"
    }]))]
    pub env: Vec<EnvSetting>,

    /// The Redis that holds history, questions and presence and carries broadcasts between
    /// the chat server replicas.
    #[serde(default)]
    pub redis: RedisSpec,

    /// An existing RabbitMQ that carries the traffic between the chat server replicas
    /// instead of Redis pub/sub (Redis then keeps only history, questions and presence).
    /// The operator does not deploy RabbitMQ. Absent: Redis carries everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amqp: Option<AmqpSpec>,

    /// The Service in front of the chat server pods.
    #[serde(default)]
    pub service: ServiceSpec,

    /// The official Socket.IO Admin UI (admin.socket.io or self-hosted) on the `/admin`
    /// namespace, with credentials from a Secret. Absent: off. Add the dashboard's origin
    /// (e.g. `https://admin.socket.io`) to `corsOrigins`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin_ui: Option<AdminUiSpec>,

    /// An Ingress for the chat service. Absent: no Ingress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSpec>,

    /// A HorizontalPodAutoscaler (CPU based) for the chat server. Absent: fixed `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
}

fn default_replicas() -> i32 {
    2
}

fn default_shutdown_grace() -> i32 {
    10
}

/// Pull policy of the chat server and Redis images: `Always`, `IfNotPresent` or `Never`.
/// Absent: the Kubernetes default (`Always` for `:latest`, `IfNotPresent` otherwise).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull on every pod start.
    Always,
    /// Pull only when the image is not on the node.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl ImagePullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// History replayed to newcomers.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistorySpec {
    /// Chat messages kept and replayed on join (1..=1000, default 10).
    #[serde(default = "default_history_messages")]
    #[schemars(range(min = 1, max = 1000))]
    pub messages: i32,

    /// Questions kept and replayed to newcomers (1..=1000, default 20).
    #[serde(default = "default_history_questions")]
    #[schemars(range(min = 1, max = 1000))]
    pub questions: i32,
}

fn default_history_messages() -> i32 {
    10
}

fn default_history_questions() -> i32 {
    20
}

impl Default for HistorySpec {
    fn default() -> Self {
        Self {
            messages: default_history_messages(),
            questions: default_history_questions(),
        }
    }
}

/// A token bucket per connection.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.burst >= self.perSecond",
    "message": "burst must be at least perSecond"
}]))]
pub struct RateLimitSpec {
    /// Sustained events per second allowed per connection (1..=100000).
    #[schemars(range(min = 1, max = 100000))]
    pub per_second: i32,

    /// Events a connection may send in a burst (>= perSecond, <= 1000000).
    #[schemars(range(min = 1, max = 1000000))]
    pub burst: i32,
}

/// Log settings of the chat server.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogSpec {
    /// Log filter in tracing syntax, e.g. `info` or `hubbub=debug,info` (default `info`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub level: Option<String>,

    /// Log format (default `text`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<LogFormat>,
}

/// Log line format of the chat server: `text` (default) or `json`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The Socket.IO Admin UI of a ChatRoom.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AdminUiSpec {
    /// Name of a Secret in the ChatRoom's namespace with the keys `username` and
    /// `passwordHash` (a bcrypt hash of the password, e.g. from `htpasswd -nbBC 10 '' PW`).
    #[schemars(length(min = 1, max = 253))]
    pub credentials_secret: String,

    /// Offer only the aggregated views; the dashboard's commands are ignored (default false).
    #[serde(default)]
    pub readonly: bool,

    /// `production` (default: aggregated figures only) or `development` (also every
    /// socket, room change and event, with their arguments).
    #[serde(default)]
    pub mode: AdminUiMode,
}

/// What the Admin UI is sent.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AdminUiMode {
    /// Aggregated figures only.
    #[default]
    Production,
    /// Every socket and event too.
    Development,
}

/// One extra server setting.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct EnvSetting {
    /// Name of the setting, `HUBBUB_` followed by capitals, digits and underscores.
    #[schemars(regex(pattern = r"^HUBBUB_[A-Z0-9_]+$"), length(max = 128))]
    pub name: String,

    /// Its value.
    #[schemars(length(max = 4096))]
    pub value: String,
}

/// The Redis of the room: the bundled StatefulSet (default) or an `external` one.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.external) || !(has(self.image) || has(self.resources) || has(self.storage) || has(self.existingSecret) || has(self.sentinel))",
    "message": "external cannot be combined with image, resources, storage, existingSecret or sentinel, which configure the bundled Redis"
}]))]
pub struct RedisSpec {
    /// Redis container image. Default: the operator's `--redis-image` (`redis:7.2`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// Compute resources of the Redis container. Default: requests 50m CPU and 64Mi
    /// memory, limit 256Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Persistent storage. Absent: an `emptyDir` (data is lost when the pod goes);
    /// present: a PersistentVolumeClaim and append-only persistence. Cannot be changed
    /// after creation (StatefulSet volume claim templates are immutable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,

    /// A Secret holding the Redis password. Absent: no password (only the chat server pods
    /// should be able to reach Redis; use a NetworkPolicy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub existing_secret: Option<SecretKeyRef>,

    /// An existing Redis (standalone, Sentinel or Cluster) instead of the bundled one: the
    /// operator then deploys no Redis for this room (and removes the bundled one it made
    /// before) and points the chat server at this one. Cannot be combined with `image`,
    /// `resources`, `storage` or `existingSecret`, which configure the bundled Redis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalRedisSpec>,

    /// A Sentinel-managed Redis instead of the single pod: `replicas` data pods (one master,
    /// the others its replicas) and `sentinels` Sentinels that promote a replica when the
    /// master fails; the chat server follows them. `image`, `resources`, `storage` and
    /// `existingSecret` apply to the data pods. Absent: one Redis pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<RedisSentinelSpec>,
}

/// The Sentinel-managed Redis the operator deploys.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSentinelSpec {
    /// Redis data pods, one master and the rest replicas (2..=7, default 3).
    #[serde(default = "default_three")]
    #[schemars(range(min = 2, max = 7))]
    pub replicas: i32,

    /// Sentinels (3..=7, default 3); a majority of them must agree before a failover.
    #[serde(default = "default_three")]
    #[schemars(range(min = 3, max = 7))]
    pub sentinels: i32,

    /// Milliseconds a master may stay silent before the Sentinels consider it down
    /// (1000..=60000, default 5000); the failover timeout is six times this.
    #[serde(default = "default_down_after")]
    #[schemars(range(min = 1000, max = 60000))]
    pub down_after_milliseconds: i32,

    /// Compute resources of each Sentinel container. Default: requests 20m CPU and 32Mi
    /// memory, limit 64Mi memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

fn default_three() -> i32 {
    3
}

fn default_down_after() -> i32 {
    5000
}

/// How the chat server reaches an existing Redis: `standalone` (one URL), `sentinel` (the
/// Sentinels and the master's name; the server follows failovers) or `cluster` (seed nodes
/// of a Redis Cluster; cross-replica traffic uses sharded pub/sub).
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExternalRedisMode {
    /// One Redis at `url` (`HUBBUB_REDIS_URL`).
    Standalone,
    /// A master found through `sentinels` by `masterName` (`HUBBUB_REDIS_SENTINELS`,
    /// `HUBBUB_REDIS_SENTINEL_MASTER`).
    Sentinel,
    /// A Redis Cluster reached through the seed `nodes` (`HUBBUB_REDIS_CLUSTER_NODES`).
    Cluster,
}

impl ExternalRedisMode {
    /// The spelling in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Sentinel => "sentinel",
            Self::Cluster => "cluster",
        }
    }
}

/// An existing Redis the chat server uses instead of the bundled one. Passwords come only
/// from Secrets (as `secretKeyRef` environment variables of the pods), never from the spec.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.mode != 'standalone' || (has(self.url) && !has(self.sentinels) && !has(self.masterName) && !has(self.nodes))",
        "message": "mode standalone needs url and takes no sentinels, masterName or nodes"
    },
    {
        "rule": "self.mode != 'sentinel' || (has(self.sentinels) && has(self.masterName) && !has(self.url) && !has(self.nodes))",
        "message": "mode sentinel needs sentinels and masterName and takes no url or nodes"
    },
    {
        "rule": "self.mode != 'cluster' || (has(self.nodes) && !has(self.url) && !has(self.sentinels) && !has(self.masterName))",
        "message": "mode cluster needs nodes and takes no url, sentinels or masterName"
    },
    {
        "rule": "self.mode == 'sentinel' || !has(self.sentinelPasswordSecretRef)",
        "message": "sentinelPasswordSecretRef applies to mode sentinel only"
    },
    {
        "rule": "self.mode != 'standalone' || !has(self.tls) || !self.tls",
        "message": "tls applies to modes sentinel and cluster; in mode standalone use a rediss:// url"
    }
]))]
pub struct ExternalRedisSpec {
    /// `standalone`, `sentinel` or `cluster`.
    pub mode: ExternalRedisMode,

    /// Mode `standalone`: the Redis URL, `redis://host:port/db` or `rediss://...` for TLS,
    /// without credentials (the password comes from `passwordSecretRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^rediss?://[^@/\s]+(/[0-9]+)?$"), length(max = 512))]
    pub url: Option<String>,

    /// Mode `sentinel`: the Sentinels, each `host:port` (e.g. `redis-sentinel:26379`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 16),
        inner(regex(pattern = r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$"))
    )]
    pub sentinels: Option<Vec<String>>,

    /// Mode `sentinel`: the master's name in the Sentinels' configuration
    /// (`sentinel monitor <name> ...`), e.g. `mymaster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,128}$"))]
    pub master_name: Option<String>,

    /// Mode `cluster`: seed nodes of the Redis Cluster, each `host:port`; the server learns
    /// the other nodes from them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 16),
        inner(regex(pattern = r"^[A-Za-z0-9.\-\[\]:]+:[0-9]{1,5}$"))
    )]
    pub nodes: Option<Vec<String>>,

    /// The Secret key holding the password of the Redis data nodes (`HUBBUB_REDIS_PASSWORD`).
    /// Absent: no password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<SecretKeyRef>,

    /// Mode `sentinel`: the Secret key holding the Sentinels' own password
    /// (`HUBBUB_REDIS_SENTINEL_PASSWORD`), when they require one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel_password_secret_ref: Option<SecretKeyRef>,

    /// Modes `sentinel` and `cluster`: TLS to the Sentinels and nodes (`HUBBUB_REDIS_TLS`,
    /// default false). In mode `standalone` the URL's scheme decides (`rediss://`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<bool>,
}

/// An existing RabbitMQ (`HUBBUB_AMQP_URL`, `HUBBUB_AMQP_PREFIX` of the chat server).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AmqpSpec {
    /// The Secret key holding the URL, `amqp://user:pass@host:5672/vhost` or `amqps://...`.
    pub url_secret: AmqpUrlSecret,

    /// Prefix of the exchange and queue names. Default: `hubbub.<namespace>.<room>`, so
    /// that rooms sharing one vhost never see each other's messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9._-]{1,200}$"))]
    pub prefix: Option<String>,
}

/// A key in a Secret in the ChatRoom's namespace that holds a RabbitMQ URL.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct AmqpUrlSecret {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key in the Secret (default `url`).
    #[serde(default = "default_url_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_url_key() -> String {
    "url".into()
}

/// A PersistentVolumeClaim for Redis.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Requested size, e.g. `1Gi`.
    pub size: Quantity,

    /// StorageClass of the claim. Absent: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub storage_class_name: Option<String>,
}

/// A key in a Secret in the ChatRoom's namespace.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,

    /// Key in the Secret (default `password`).
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1))]
    pub key: String,
}

fn default_secret_key() -> String {
    "password".into()
}

/// The chat Service.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// Service type (default `ClusterIP`).
    #[serde(default, rename = "type")]
    pub type_: ServiceType,

    /// Annotations on the Service (e.g. for a cloud load balancer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,

    /// Session affinity: `None` (default) lets any replica serve any request of any
    /// session (the replicas forward requests to the one holding the session);
    /// `ClientIP` keeps a client on one pod anyway (Service `sessionAffinity: ClientIP`,
    /// and ingress-nginx cookie affinity on the Ingress).
    #[serde(default)]
    pub session_affinity: SessionAffinity,
}

/// Session affinity of the chat Service: `None` (default) or `ClientIP`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum SessionAffinity {
    /// No affinity: requests are spread over the pods and forwarded to a session's owner.
    #[default]
    None,
    /// A client stays on one pod (by client IP; cookie at the Ingress).
    ClientIP,
}

/// Type of the chat Service: `ClusterIP` (default), `NodePort` or `LoadBalancer`.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The Ingress.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressSpec {
    /// Host name clients use, e.g. `chat.example.com`. Required for an Ingress to be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub host: Option<String>,

    /// IngressClass name (e.g. `nginx`). Absent: the cluster's default class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub class_name: Option<String>,

    /// TLS for the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,

    /// Annotations on the Ingress; they win over the operator's ingress-nginx annotations
    /// for WebSocket timeouts (and cookie affinity with `service.sessionAffinity: ClientIP`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// TLS of the Ingress.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressTls {
    /// Secret with the certificate and key (`kubernetes.io/tls`).
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
}

/// The HorizontalPodAutoscaler.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "self.minReplicas <= self.maxReplicas",
    "message": "minReplicas must not exceed maxReplicas"
}]))]
pub struct AutoscalingSpec {
    /// Fewest chat server pods (1..=100, default 2).
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 1, max = 100))]
    pub min_replicas: i32,

    /// Most chat server pods (1..=100).
    #[schemars(range(min = 1, max = 100))]
    pub max_replicas: i32,

    /// Average CPU utilisation (percent of the CPU request) to aim for (1..=100, default 70).
    #[serde(
        default = "default_cpu_target",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
}

fn default_cpu_target() -> i32 {
    70
}

/// What the operator last observed. Written only by the operator (status subresource).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ChatRoomStatus {
    /// The `metadata.generation` this status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Chat server pods that exist (from the Deployment).
    #[serde(default)]
    pub replicas: i32,

    /// Chat server pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,

    /// Label selector of the chat server pods, for the scale subresource (HPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// Where clients connect: the Service's cluster DNS name and, when there is an
    /// Ingress, its URL (`http://ROOM.NS.svc.cluster.local https://HOST/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// `Ready` (everything available), `ServerAvailable` (the Deployment) and
    /// `RedisAvailable` (the StatefulSet, with Sentinels also a quorum of them; `Unknown`
    /// with an external Redis, which the operator does not watch).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// The CustomResourceDefinition of ChatRoom.
pub fn crd() -> CustomResourceDefinition {
    ChatRoom::crd()
}

/// The CustomResourceDefinition as YAML, exactly as committed in `k8s/crd.yaml`.
pub fn crd_yaml() -> Result<String, serde_yaml_ng::Error> {
    let yaml = serde_yaml_ng::to_string(&crd())?;
    Ok(format!(
        "# Generated by `hubbub-operator crd`; do not edit (a test fails when it drifts).\n---\n{yaml}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_names_and_subresources_match_the_interface() {
        let crd = crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("chatrooms.hubbub.dev"));
        assert_eq!(crd.spec.group, "hubbub.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "ChatRoom");
        assert_eq!(crd.spec.names.plural, "chatrooms");
        assert_eq!(crd.spec.names.short_names, Some(vec!["room".to_string()]));
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        let sub = v.subresources.as_ref().expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
        let cols: Vec<&str> = v
            .additional_printer_columns
            .as_ref()
            .expect("columns")
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cols, ["Replicas", "Ready", "Endpoint", "Age"]);
    }

    #[test]
    fn schema_has_descriptions_bounds_and_cel_rules() {
        let crd = serde_json::to_value(crd()).expect("serialise");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let replicas = &spec["properties"]["replicas"];
        assert_eq!(replicas["minimum"].as_f64(), Some(1.0));
        assert_eq!(replicas["maximum"].as_f64(), Some(100.0));
        assert_eq!(replicas["default"], json!(2));
        assert!(
            replicas["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        let auto = &spec["properties"]["autoscaling"];
        assert_eq!(
            auto["x-kubernetes-validations"][0]["rule"],
            json!("self.minReplicas <= self.maxReplicas")
        );
        assert_eq!(
            spec["properties"]["service"]["properties"]["type"]["enum"],
            json!(["ClusterIP", "NodePort", "LoadBalancer"])
        );
        // every property of the spec explains itself
        for (name, prop) in spec["properties"].as_object().expect("properties") {
            assert!(
                prop["description"].as_str().is_some_and(|d| !d.is_empty()),
                "spec.{name} has no description"
            );
        }
    }

    #[test]
    fn spec_defaults_apply_when_fields_are_absent() {
        let room: ChatRoom = serde_yaml_ng::from_str(
            "apiVersion: hubbub.dev/v1alpha1\nkind: ChatRoom\nmetadata: {name: lobby}\nspec: {}\n",
        )
        .expect("parse");
        assert_eq!(room.spec.replicas, 2);
        assert_eq!(room.spec.history, HistorySpec::default());
        assert_eq!(room.spec.shutdown_grace_seconds, 10);
        assert_eq!(room.spec.service.type_, ServiceType::ClusterIP);
        assert!(room.spec.ingress.is_none() && room.spec.autoscaling.is_none());
    }

    #[test]
    fn crd_yaml_round_trips() {
        let yaml = crd_yaml().expect("yaml");
        let back: CustomResourceDefinition = serde_yaml_ng::from_str(&yaml).expect("parse back");
        assert_eq!(back, crd());
    }
}
