//! Pure functions from a [`ChatRoom`] to the child objects the operator applies: the Redis
//! StatefulSet and its headless Service, the chat server Deployment and Service, and the
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
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    HTTPGetAction, Lifecycle, LifecycleHandler, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile,
    SecretKeySelector, SecurityContext, Service, ServicePort, ServiceSpec, SleepAction,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeResourceRequirements,
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

use crate::operator::crd::ChatRoom;

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

/// Server environment variables the operator sets from spec fields; `spec.env` may not
/// set them (the CRD says the same in a CEL rule).
pub const MANAGED_ENV: &[&str] = &[
    "HUBBUB_BIND",
    "HUBBUB_REDIS_URL",
    "HUBBUB_REDIS_PASSWORD",
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
        }
    }
}

/// Every object one ChatRoom becomes, in the order they are applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Children {
    /// Headless Service `<room>-redis`.
    pub redis_service: Service,
    /// StatefulSet `<room>-redis`.
    pub redis: StatefulSet,
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

impl Children {
    /// The objects as YAML documents (`---` separated), as `render` prints them.
    pub fn to_yaml(&self) -> Result<String, serde_yaml_ng::Error> {
        let mut out = String::new();
        let mut push = |doc: String| {
            out.push_str("---\n");
            out.push_str(&doc);
        };
        push(serde_yaml_ng::to_string(&self.redis_service)?);
        push(serde_yaml_ng::to_string(&self.redis)?);
        push(serde_yaml_ng::to_string(&self.service)?);
        push(serde_yaml_ng::to_string(&self.deployment)?);
        if let Some(pdb) = &self.pdb {
            push(serde_yaml_ng::to_string(pdb)?);
        }
        if let Some(ingress) = &self.ingress {
            push(serde_yaml_ng::to_string(ingress)?);
        }
        if let Some(hpa) = &self.hpa {
            push(serde_yaml_ng::to_string(hpa)?);
        }
        Ok(quote_yaml11_booleans(&out))
    }
}

/// Quotes plain scalars that YAML 1.1 readers (kubectl's sigs.k8s.io/yaml, PyYAML) would
/// take for booleans, e.g. the `no` in `--appendonly no`. serde_yaml_ng writes YAML 1.2,
/// where only `true`/`false` are booleans, so it leaves them bare. Lines inside block
/// scalars (`|`, `>`) are left alone.
pub fn quote_yaml11_booleans(yaml: &str) -> String {
    const WORDS: &[&str] = &[
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF",
    ];
    let mut out = String::with_capacity(yaml.len() + 16);
    let mut block_indent: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(block) = block_indent {
            if line.trim().is_empty() || indent > block {
                out.push_str(line);
                out.push('\n');
                continue;
            }
            block_indent = None;
        }
        let trimmed = line.trim_end();
        let (prefix, value) = match trimmed.rfind(": ") {
            Some(i)
                if !trimmed.trim_start().starts_with("- ")
                    || trimmed.trim_start()[2..].contains(": ") =>
            {
                (&trimmed[..i + 2], &trimmed[i + 2..])
            }
            _ => match trimmed.trim_start().strip_prefix("- ") {
                Some(v) => (&trimmed[..trimmed.len() - v.len()], v),
                None => (trimmed, ""),
            },
        };
        if WORDS.contains(&value) {
            out.push_str(prefix);
            out.push('\'');
            out.push_str(value);
            out.push('\'');
        } else {
            out.push_str(trimmed);
        }
        out.push('\n');
        if ["|", "|-", "|+", ">", ">-", ">+"].contains(&value) {
            block_indent = Some(indent);
        }
    }
    out
}

/// Which part of a room an object belongs to (the `app.kubernetes.io/component` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Component {
    /// The chat server pods and what fronts them.
    Server,
    /// The Redis pod and its Service.
    Redis,
}

impl Component {
    fn as_str(self) -> &'static str {
        match self {
            Component::Server => "server",
            Component::Redis => "redis",
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

    Ok(Children {
        redis_service: redis_service(room),
        redis: redis_statefulset(room, images),
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

fn default_server_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "100m"), ("memory", "64Mi")])),
        limits: Some(quantities(&[("memory", "256Mi")])),
        ..ResourceRequirements::default()
    }
}

fn default_redis_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
        limits: Some(quantities(&[("memory", "256Mi")])),
        ..ResourceRequirements::default()
    }
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
    Some(EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.name.clone(),
                key: secret.key.clone(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    })
}

/// The chat server's environment: every `HUBBUB_*` setting the spec maps to.
pub fn server_env(room: &ChatRoom) -> Vec<EnvVar> {
    let spec = &room.spec;
    let mut vars = vec![
        env("HUBBUB_BIND", format!("0.0.0.0:{SERVER_PORT}")),
        env(
            "HUBBUB_REDIS_URL",
            format!("redis://{}:{REDIS_PORT}/0", redis_name(&room.name_any())),
        ),
    ];
    vars.extend(secret_env("HUBBUB_REDIS_PASSWORD", room));
    vars.push(env(
        "HUBBUB_HISTORY_SIZE",
        spec.history.messages.to_string(),
    ));
    vars.push(env(
        "HUBBUB_QUESTION_HISTORY",
        spec.history.questions.to_string(),
    ));
    if let Some(welcome) = &spec.welcome {
        vars.push(env("HUBBUB_WELCOME", welcome.clone()));
    }
    if let Some(max) = spec.max_message_bytes {
        vars.push(env("HUBBUB_MAX_MESSAGE_BYTES", max.to_string()));
    }
    if let Some(rate) = &spec.rate_limit {
        vars.push(env("HUBBUB_RATE_LIMIT", rate.per_second.to_string()));
        vars.push(env("HUBBUB_RATE_BURST", rate.burst.to_string()));
    }
    if !spec.cors_origins.is_empty() {
        vars.push(env("HUBBUB_CORS_ORIGINS", spec.cors_origins.join(",")));
    }
    vars.push(env(
        "HUBBUB_SHUTDOWN_GRACE_SECS",
        spec.shutdown_grace_seconds.to_string(),
    ));
    if let Some(log) = &spec.log {
        if let Some(level) = &log.level {
            vars.push(env("HUBBUB_LOG", level.clone()));
        }
        if let Some(format) = log.format {
            let format = match format {
                crate::operator::crd::LogFormat::Text => "text",
                crate::operator::crd::LogFormat::Json => "json",
            };
            vars.push(env("HUBBUB_LOG_FORMAT", format));
        }
    }
    vars.extend(spec.env.iter().map(|e| env(&e.name, e.value.clone())));
    vars
}

/// A short hash of everything that configures the server pods but might not change the
/// pod template by itself; stored as a pod-template annotation so that a change rolls
/// the pods.
pub fn config_hash(room: &ChatRoom, image: &str) -> String {
    #[derive(Serialize)]
    struct Hashed<'a> {
        image: &'a str,
        env: Vec<EnvVar>,
        secret: Option<&'a crate::operator::crd::SecretKeyRef>,
    }
    let hashed = Hashed {
        image,
        env: server_env(room),
        secret: room.spec.redis.existing_secret.as_ref(),
    };
    // serialising plain strings and k8s-openapi structs to JSON cannot fail
    let bytes = serde_json::to_vec(&hashed).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

fn server_deployment(
    room: &ChatRoom,
    images: &Images,
    resources: ResourceRequirements,
) -> Deployment {
    let name = room.name_any();
    let spec = &room.spec;
    let image = spec.image.clone().unwrap_or_else(|| images.server.clone());
    let selector = selector_labels(&name, Component::Server);

    let mut annotations = BTreeMap::from([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), SERVER_PORT.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
    ]);
    annotations.extend(spec.pod_annotations.clone());
    annotations.insert(
        CONFIG_HASH_ANNOTATION.to_string(),
        config_hash(room, &image),
    );

    let http_probe = |path: &str, period: i32, failures: i32| Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(2),
        failure_threshold: Some(failures),
        ..Probe::default()
    };

    let container = Container {
        name: "hubbub".into(),
        image: Some(image),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_string()),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: SERVER_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(server_env(room)),
        resources: Some(resources),
        readiness_probe: Some(http_probe("/readyz", 5, 2)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(5),
            ..http_probe("/healthz", 10, 3)
        }),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: PRE_STOP_SLEEP_SECS,
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".into(),
            mount_path: "/tmp".into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };

    let pod = PodSpec {
        containers: vec![container],
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        security_context: Some(pod_security(SERVER_UID)),
        termination_grace_period_seconds: Some(
            i64::from(spec.shutdown_grace_seconds) + PRE_STOP_SLEEP_SECS + TERMINATION_SLACK_SECS,
        ),
        topology_spread_constraints: Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "ScheduleAnyway".into(),
            label_selector: Some(LabelSelector {
                match_labels: Some(selector.clone()),
                ..LabelSelector::default()
            }),
            ..TopologySpreadConstraint::default()
        }]),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
        affinity: spec.affinity.clone(),
        volumes: Some(vec![Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".into())),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        }]),
        ..PodSpec::default()
    };

    Deployment {
        metadata: meta(room, name.clone(), Component::Server),
        spec: Some(DeploymentSpec {
            // with autoscaling the HPA owns the replica count
            replicas: spec.autoscaling.is_none().then_some(spec.replicas),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&name, Component::Server)),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

fn server_service(room: &ChatRoom) -> Service {
    let name = room.name_any();
    let spec = &room.spec.service;
    let mut metadata = meta(room, name.clone(), Component::Server);
    metadata.annotations = (!spec.annotations.is_empty()).then(|| spec.annotations.clone());
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(spec.type_.as_str().into()),
            selector: Some(selector_labels(&name, Component::Server)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            // HTTP long-polling sessions live in one pod: keep a client on it
            session_affinity: Some("ClientIP".into()),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn redis_service(room: &ChatRoom) -> Service {
    let name = room.name_any();
    Service {
        metadata: meta(room, redis_name(&name), Component::Redis),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(selector_labels(&name, Component::Redis)),
            ports: Some(vec![ServicePort {
                name: Some("redis".into()),
                port: REDIS_PORT,
                target_port: Some(IntOrString::String("redis".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

fn redis_statefulset(room: &ChatRoom, images: &Images) -> StatefulSet {
    let name = room.name_any();
    let redis = &room.spec.redis;
    let selector = selector_labels(&name, Component::Redis);
    let persistent = redis.storage.is_some();

    let mut args: Vec<String> = vec![
        "--port".into(),
        REDIS_PORT.to_string(),
        "--dir".into(),
        "/data".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        if persistent { "yes" } else { "no" }.into(),
    ];
    if redis.existing_secret.is_some() {
        // the kubelet expands $(VAR) from the container's environment
        args.extend(["--requirepass".into(), "$(REDIS_PASSWORD)".into()]);
    }
    let mut env = Vec::new();
    env.extend(secret_env("REDIS_PASSWORD", room));
    // redis-cli reads the password from REDISCLI_AUTH, for the probes
    env.extend(secret_env("REDISCLI_AUTH", room));

    let ping = |period: i32, delay: i32| Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                format!("redis-cli -p {REDIS_PORT} ping | grep -q PONG"),
            ]),
        }),
        initial_delay_seconds: Some(delay),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Probe::default()
    };

    let container = Container {
        name: "redis".into(),
        image: Some(redis.image.clone().unwrap_or_else(|| images.redis.clone())),
        image_pull_policy: room.spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(args),
        env: (!env.is_empty()).then_some(env),
        ports: Some(vec![ContainerPort {
            name: Some("redis".into()),
            container_port: REDIS_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(
            redis
                .resources
                .clone()
                .unwrap_or_else(default_redis_resources),
        ),
        readiness_probe: Some(ping(5, 2)),
        liveness_probe: Some(ping(10, 10)),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![VolumeMount {
            name: "data".into(),
            mount_path: "/data".into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };

    let (volumes, claims) = match &redis.storage {
        None => (
            Some(vec![Volume {
                name: "data".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Volume::default()
            }]),
            None,
        ),
        Some(storage) => (
            None,
            Some(vec![PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some("data".into()),
                    labels: Some(labels(&name, Component::Redis)),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteOnce".into()]),
                    storage_class_name: storage.storage_class_name.clone(),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_string(),
                            storage.size.clone(),
                        )])),
                        ..VolumeResourceRequirements::default()
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                status: None,
            }]),
        ),
    };

    StatefulSet {
        metadata: meta(room, redis_name(&name), Component::Redis),
        spec: Some(StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(redis_name(&name)),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&name, Component::Redis)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security(REDIS_UID)),
                    termination_grace_period_seconds: Some(30),
                    volumes,
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: claims,
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

fn pdb(room: &ChatRoom) -> PodDisruptionBudget {
    let name = room.name_any();
    PodDisruptionBudget {
        metadata: meta(room, name.clone(), Component::Server),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name, Component::Server)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

/// Annotations ingress-nginx needs for long-lived WebSockets and for keeping a
/// long-polling client on one pod; `spec.ingress.annotations` override them.
pub fn default_ingress_annotations() -> BTreeMap<String, String> {
    [
        ("nginx.ingress.kubernetes.io/proxy-read-timeout", "3600"),
        ("nginx.ingress.kubernetes.io/proxy-send-timeout", "3600"),
        ("nginx.ingress.kubernetes.io/affinity", "cookie"),
        ("nginx.ingress.kubernetes.io/affinity-mode", "persistent"),
        (
            "nginx.ingress.kubernetes.io/session-cookie-name",
            "hubbub-affinity",
        ),
        (
            "nginx.ingress.kubernetes.io/session-cookie-max-age",
            "86400",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn ingress(room: &ChatRoom) -> Ingress {
    let name = room.name_any();
    let spec = room.spec.ingress.clone().unwrap_or_default();
    let host = spec.host.clone().unwrap_or_default();
    let mut annotations = default_ingress_annotations();
    annotations.extend(spec.annotations.clone());
    let mut metadata = meta(room, name.clone(), Component::Server);
    metadata.annotations = Some(annotations);
    Ingress {
        metadata,
        spec: Some(IngressSpec {
            ingress_class_name: spec.class_name.clone(),
            rules: Some(vec![IngressRule {
                host: Some(host.clone()),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".into()),
                        path_type: "Prefix".into(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: name.clone(),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".into()),
                                    number: None,
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            tls: spec.tls.as_ref().map(|tls| {
                vec![IngressTLS {
                    hosts: Some(vec![host.clone()]),
                    secret_name: Some(tls.secret_name.clone()),
                }]
            }),
            ..IngressSpec::default()
        }),
        status: None,
    }
}

fn hpa(room: &ChatRoom, auto: &crate::operator::crd::AutoscalingSpec) -> HorizontalPodAutoscaler {
    let name = room.name_any();
    HorizontalPodAutoscaler {
        metadata: meta(room, name.clone(), Component::Server),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name,
            },
            min_replicas: Some(auto.min_replicas),
            max_replicas: auto.max_replicas,
            metrics: Some(vec![MetricSpec {
                type_: "Resource".into(),
                resource: Some(ResourceMetricSource {
                    name: "cpu".into(),
                    target: MetricTarget {
                        type_: "Utilization".into(),
                        average_utilization: Some(auto.target_cpu_utilization_percentage),
                        ..MetricTarget::default()
                    },
                }),
                ..MetricSpec::default()
            }]),
            ..HorizontalPodAutoscalerSpec::default()
        }),
        status: None,
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
