//! Pure functions from a [`ChatRoom`] to the child objects the operator applies: the Redis
//! StatefulSet and its headless Service (none with an external Redis, `external.rs`; with
//! Sentinels beside them, `sentinel.rs`), the chat server Deployment and Service, and the
//! optional PodDisruptionBudget, Ingress and HorizontalPodAutoscaler.
//!
//! Nothing here talks to the API server: the reconciler applies what [`build`] returns,
//! `hubbub-operator render` prints it, and the unit tests below check it field by field.
//! A spec that the schema accepts but that cannot become valid objects (an Ingress with
//! no host, a room name that is not a DNS label, ...) is a [`BuildError`] whose
//! [`BuildError::reason`] ends up in the `Ready` condition.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Affinity, PodAffinityTerm, PodAntiAffinity, WeightedPodAffinityTerm,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    HTTPGetAction, Lifecycle, LifecycleHandler, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Service, ServicePort,
    ServiceSpec, SleepAction, TopologySpreadConstraint, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::crd::{ChatRoom, SessionAffinity};

mod external;
mod extras;
mod redis;
mod sentinel;
mod server;

use external::*;
pub use external::{ExternalRedisError, describe as describe_external_redis};
use extras::*;
pub use extras::{cookie_affinity_annotations, default_ingress_annotations};
use redis::*;
use sentinel::*;
pub use sentinel::{
    SENTINEL_MASTER_NAME, SENTINEL_PORT, data_script, quorum, sentinel_addresses, sentinel_name,
    sentinel_script,
};
use server::*;
pub use server::{config_hash, server_env};

/// The field manager of every server-side apply, and the `managed-by` label value.
pub const MANAGER: &str = "hubbub-operator";
/// Port the chat server listens on (HTTP, Socket.IO, probes and `/metrics`).
pub const SERVER_PORT: i32 = 8080;
/// Port of the chat Service.
pub const SERVICE_PORT: i32 = 80;
/// Port Redis listens on.
pub const REDIS_PORT: i32 = 6379;
/// User id of the distroless chat server image (`nonroot`).
pub const SERVER_UID: i64 = 65532;
/// User id of the `redis` user in the official Redis image.
pub const REDIS_UID: i64 = 999;
/// Seconds a terminating server pod keeps serving before SIGTERM, so that the endpoint
/// controllers and ingress controllers stop sending it traffic first.
pub const PRE_STOP_SLEEP_SECS: i64 = 5;
/// Slack between the server's drain time and the kubelet's SIGKILL.
pub const TERMINATION_SLACK_SECS: i64 = 5;
/// Pod-template annotation holding the configuration hash.
pub const CONFIG_HASH_ANNOTATION: &str = "hubbub.dev/config-hash";
/// Longest room name: `<room>-redis` plus the StatefulSet's `controller-revision-hash`
/// label (`<room>-redis-<10 chars>`) must fit in 63 characters.
pub const MAX_ROOM_NAME: usize = 46;
/// Longest room name with `spec.redis.sentinel`: `<room>-sentinel` plus the StatefulSet's
/// `controller-revision-hash` suffix must fit in 63 characters.
pub const MAX_SENTINEL_ROOM_NAME: usize = 43;

/// Server environment variables the operator sets from spec fields; `spec.env` may not
/// set them (the CRD says the same in a CEL rule).
pub const MANAGED_ENV: &[&str] = &[
    "HUBBUB_BIND",
    "HUBBUB_REDIS_URL",
    "HUBBUB_REDIS_PASSWORD",
    "HUBBUB_REDIS_SENTINELS",
    "HUBBUB_REDIS_SENTINEL_MASTER",
    "HUBBUB_REDIS_SENTINEL_PASSWORD",
    "HUBBUB_REDIS_CLUSTER_NODES",
    "HUBBUB_REDIS_TLS",
    "HUBBUB_ADVERTISE_IP",
    "HUBBUB_AMQP_URL",
    "HUBBUB_AMQP_PREFIX",
    "HUBBUB_HISTORY_SIZE",
    "HUBBUB_QUESTION_HISTORY",
    "HUBBUB_WELCOME",
    "HUBBUB_MAX_MESSAGE_BYTES",
    "HUBBUB_RATE_LIMIT",
    "HUBBUB_RATE_BURST",
    "HUBBUB_CORS_ORIGINS",
    "HUBBUB_SHUTDOWN_GRACE_SECS",
    "HUBBUB_LOG",
    "HUBBUB_LOG_FORMAT",
    "HUBBUB_ADMIN_UI",
    "HUBBUB_ADMIN_USERNAME",
    "HUBBUB_ADMIN_PASSWORD_HASH",
    "HUBBUB_ADMIN_NO_AUTH",
    "HUBBUB_ADMIN_READONLY",
    "HUBBUB_ADMIN_MODE",
];

/// Images used when the ChatRoom names none (the operator's `--server-image` and
/// `--redis-image`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Images {
    /// The chat server image.
    pub server: String,
    /// The Redis image.
    pub redis: String,
}

impl Default for Images {
    fn default() -> Self {
        Self {
            server: default_server_image(),
            redis: DEFAULT_REDIS_IMAGE.to_string(),
        }
    }
}

/// Default Redis image.
pub const DEFAULT_REDIS_IMAGE: &str = "redis:7.2";

/// Default chat server image: this crate's version on GitHub's registry.
pub fn default_server_image() -> String {
    format!("ghcr.io/hubbub-chat/hubbub:{}", env!("CARGO_PKG_VERSION"))
}

/// A ChatRoom that passes the schema but cannot be turned into objects.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The name is not a DNS-1035 label short enough for every child's name.
    #[error(
        "name {0:?} must be a DNS label of at most {MAX_ROOM_NAME} characters (lowercase letters, digits, '-', starting with a letter)"
    )]
    InvalidName(String),
    /// `spec.ingress` without `host`.
    #[error("spec.ingress needs a host")]
    IngressHostMissing,
    /// `spec.autoscaling` while the server resources request no CPU.
    #[error(
        "spec.autoscaling needs spec.resources.requests.cpu (CPU utilisation is relative to it)"
    )]
    AutoscalingNeedsCpuRequest,
    /// `spec.env` sets a variable the operator manages.
    #[error("spec.env sets {0}, which the operator manages from another field")]
    ManagedEnvSetting(String),
    /// The ChatRoom has no namespace (never true for objects read from the API server).
    #[error("the chatroom has no namespace")]
    NoNamespace,
    /// With `spec.redis.sentinel` the name must leave room for `-sentinel` in child names.
    #[error(
        "name {0:?} is too long for spec.redis.sentinel: at most {MAX_SENTINEL_ROOM_NAME} characters (the Sentinels' StatefulSet is <name>-sentinel)"
    )]
    NameTooLongForSentinel(String),
    /// `spec.redis.external` is incomplete, mixes modes or sits beside the bundled Redis.
    #[error("spec.redis.external: {0}")]
    ExternalRedis(#[from] ExternalRedisError),
}

impl BuildError {
    /// The `Ready=False` reason (PascalCase) and Event reason.
    pub fn reason(&self) -> &'static str {
        match self {
            BuildError::InvalidName(_) => "InvalidName",
            BuildError::IngressHostMissing => "IngressHostMissing",
            BuildError::AutoscalingNeedsCpuRequest => "AutoscalingNeedsCpuRequest",
            BuildError::ManagedEnvSetting(_) => "ManagedEnvSetting",
            BuildError::NoNamespace => "NoNamespace",
            BuildError::ExternalRedis(e) => e.reason(),
            BuildError::NameTooLongForSentinel(_) => "InvalidName",
        }
    }
}

/// Every object one ChatRoom becomes, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// Headless Service `<room>-redis`; none with `spec.redis.external`.
    pub redis_service: Option<Service>,
    /// StatefulSet `<room>-redis`; none with `spec.redis.external`.
    pub redis: Option<StatefulSet>,
    /// PodDisruptionBudget `<room>-redis`, with `spec.redis.sentinel`.
    pub redis_pdb: Option<PodDisruptionBudget>,
    /// Headless Service `<room>-sentinel`, with `spec.redis.sentinel`.
    pub sentinel_service: Option<Service>,
    /// StatefulSet `<room>-sentinel`, with `spec.redis.sentinel`.
    pub sentinel: Option<StatefulSet>,
    /// PodDisruptionBudget `<room>-sentinel`, with `spec.redis.sentinel`.
    pub sentinel_pdb: Option<PodDisruptionBudget>,
    /// Service `<room>`.
    pub service: Service,
    /// Deployment `<room>`.
    pub deployment: Deployment,
    /// PodDisruptionBudget `<room>`, when more than one server pod is wanted.
    pub pdb: Option<PodDisruptionBudget>,
    /// Ingress `<room>`, when `spec.ingress` is set.
    pub ingress: Option<Ingress>,
    /// HorizontalPodAutoscaler `<room>`, when `spec.autoscaling` is set.
    pub hpa: Option<HorizontalPodAutoscaler>,
}

/// Which part of a room an object belongs to (the `app.kubernetes.io/component` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The chat server pods and what fronts them.
    Server,
    /// The Redis pod(s) and their Service.
    Redis,
    /// The Sentinels of a Sentinel-managed Redis.
    Sentinel,
}

impl Component {
    fn as_str(self) -> &'static str {
        match self {
            Component::Server => "server",
            Component::Redis => "redis",
            Component::Sentinel => "sentinel",
        }
    }
}

/// Labels that select a component's pods (stable: they never change after creation).
pub fn selector_labels(room: &str, component: Component) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "hubbub".to_string()),
        ("app.kubernetes.io/instance".to_string(), room.to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            component.as_str().to_string(),
        ),
    ])
}

/// Every label of a child object: the selector labels plus `managed-by` and `part-of`.
pub fn labels(room: &str, component: Component) -> BTreeMap<String, String> {
    let mut labels = selector_labels(room, component);
    labels.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
    labels.insert("app.kubernetes.io/part-of".into(), "hubbub".into());
    labels
}

/// The chat server pods' label selector as a string, for `status.selector` (HPA on the
/// ChatRoom's scale subresource).
pub fn server_selector_string(room: &str) -> String {
    selector_labels(room, Component::Server)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Name of the Redis StatefulSet and its headless Service.
pub fn redis_name(room: &str) -> String {
    format!("{room}-redis")
}

/// Where clients connect: the Service's cluster DNS URL and, with an Ingress, its URL.
pub fn endpoint(room: &ChatRoom) -> String {
    let name = room.name_any();
    let ns = room.namespace().unwrap_or_else(|| "default".into());
    let mut endpoint = format!("http://{name}.{ns}.svc.cluster.local");
    if let Some(ingress) = &room.spec.ingress
        && let Some(host) = &ingress.host
    {
        let scheme = if ingress.tls.is_some() {
            "https"
        } else {
            "http"
        };
        endpoint.push_str(&format!(" {scheme}://{host}/"));
    }
    endpoint
}

/// Server pods wanted at the least: `autoscaling.minReplicas` or `replicas`.
pub fn min_server_replicas(room: &ChatRoom) -> i32 {
    room.spec
        .autoscaling
        .as_ref()
        .map_or(room.spec.replicas, |a| a.min_replicas)
}

/// Builds every child object of `room`. Pure: the same ChatRoom always gives the same
/// objects. Owner references are set when the ChatRoom has a uid (always, for objects
/// from the API server; `render` of a local file has none).
pub fn build(room: &ChatRoom, images: &Images) -> Result<Children, BuildError> {
    let name = room.name_any();
    if !is_room_name(&name) {
        return Err(BuildError::InvalidName(name));
    }
    if room.namespace().is_none() {
        return Err(BuildError::NoNamespace);
    }
    if let Some(ingress) = &room.spec.ingress
        && ingress.host.as_deref().is_none_or(str::is_empty)
    {
        return Err(BuildError::IngressHostMissing);
    }
    if let Some(env) = room
        .spec
        .env
        .iter()
        .find(|e| MANAGED_ENV.contains(&e.name.as_str()))
    {
        return Err(BuildError::ManagedEnvSetting(env.name.clone()));
    }
    external::validate(&room.spec.redis)?;
    let sentinel = room.spec.redis.sentinel.as_ref();
    if sentinel.is_some() && name.len() > MAX_SENTINEL_ROOM_NAME {
        return Err(BuildError::NameTooLongForSentinel(name));
    }
    let server_resources = room
        .spec
        .resources
        .clone()
        .unwrap_or_else(default_server_resources);
    if room.spec.autoscaling.is_some()
        && !server_resources
            .requests
            .as_ref()
            .is_some_and(|r| r.contains_key("cpu"))
    {
        return Err(BuildError::AutoscalingNeedsCpuRequest);
    }

    let bundled = room.spec.redis.external.is_none();
    Ok(Children {
        redis_service: bundled.then(|| redis_service(room)),
        redis: bundled.then(|| redis_statefulset(room, images)),
        redis_pdb: sentinel
            .map(|_| one_at_a_time(room, redis_name(&room.name_any()), Component::Redis)),
        sentinel_service: sentinel.map(|_| sentinel_service(room)),
        sentinel: sentinel.map(|s| sentinel_statefulset(room, images, s)),
        sentinel_pdb: sentinel
            .map(|_| one_at_a_time(room, sentinel_name(&room.name_any()), Component::Sentinel)),
        service: server_service(room),
        deployment: server_deployment(room, images, server_resources),
        pdb: (min_server_replicas(room) > 1).then(|| pdb(room)),
        ingress: room.spec.ingress.as_ref().map(|_| ingress(room)),
        hpa: room.spec.autoscaling.as_ref().map(|a| hpa(room, a)),
    })
}

/// A DNS-1035 label short enough for every derived name.
fn is_room_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_ROOM_NAME
        && bytes[0].is_ascii_lowercase()
        && bytes[bytes.len() - 1] != b'-'
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

fn meta(room: &ChatRoom, name: String, component: Component) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: room.namespace(),
        labels: Some(labels(&room.name_any(), component)),
        owner_references: room.controller_owner_ref(&()).map(|o| vec![o]),
        ..ObjectMeta::default()
    }
}

fn quantities(pairs: &[(&str, &str)]) -> BTreeMap<String, Quantity> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
        .collect()
}

fn restricted_container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn secret_env(name: &str, room: &ChatRoom) -> Option<EnvVar> {
    let secret = room.spec.redis.existing_secret.as_ref()?;
    Some(secret_key_env(name, &secret.name, &secret.key))
}

/// `name` from key `key` of Secret `secret` (which must exist: the pod waits for it).
fn secret_key_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// True for objects this operator manages for `room` (by the controller owner reference).
pub fn is_owned_by(meta: &ObjectMeta, room: &ChatRoom) -> bool {
    let uid = room.meta().uid.as_deref();
    meta.owner_references.as_ref().is_some_and(|refs| {
        refs.iter()
            .any(|r| r.controller == Some(true) && Some(r.uid.as_str()) == uid)
    })
}

#[cfg(test)]
mod tests;
