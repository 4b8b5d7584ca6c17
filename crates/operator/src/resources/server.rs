//! The chat server: its Deployment (probes, rolling updates, security context, spread),
//! its Service, its environment (the `HUBBUB_*` settings the spec sets) and the hash that
//! rolls the pods when they change.

use super::*;

pub(super) fn default_server_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "100m"), ("memory", "64Mi")])),
        limits: Some(quantities(&[("memory", "256Mi")])),
        ..ResourceRequirements::default()
    }
}

/// The chat server's environment: every `HUBBUB_*` setting the spec maps to.
pub fn server_env(room: &ChatRoom) -> Vec<EnvVar> {
    let spec = &room.spec;
    let mut vars = vec![env("HUBBUB_BIND", format!("0.0.0.0:{SERVER_PORT}"))];
    match (&spec.redis.external, &spec.redis.sentinel) {
        (Some(external), _) => vars.extend(external_redis_env(external)),
        (None, Some(sentinel)) => {
            vars.push(env(
                "HUBBUB_REDIS_SENTINELS",
                sentinel_addresses(&room.name_any(), sentinel).join(","),
            ));
            vars.push(env("HUBBUB_REDIS_SENTINEL_MASTER", SENTINEL_MASTER_NAME));
            vars.extend(secret_env("HUBBUB_REDIS_PASSWORD", room));
        }
        (None, None) => {
            vars.push(env(
                "HUBBUB_REDIS_URL",
                format!("redis://{}:{REDIS_PORT}/0", redis_name(&room.name_any())),
            ));
            vars.extend(secret_env("HUBBUB_REDIS_PASSWORD", room));
        }
    }
    // Where the other replicas forward requests of this pod's sessions: its own IP.
    vars.push(EnvVar {
        name: "HUBBUB_ADVERTISE_IP".into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "status.podIP".into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
    if let Some(amqp) = &spec.amqp {
        // The URL carries credentials: it comes from the Secret, never from the spec.
        vars.push(secret_key_env(
            "HUBBUB_AMQP_URL",
            &amqp.url_secret.name,
            &amqp.url_secret.key,
        ));
        let prefix = amqp.prefix.clone().unwrap_or_else(|| {
            match room.namespace().filter(|n| !n.is_empty()) {
                Some(ns) => format!("hubbub.{ns}.{}", room.name_any()),
                None => format!("hubbub.{}", room.name_any()),
            }
        });
        vars.push(env("HUBBUB_AMQP_PREFIX", prefix));
    }
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
                crate::crd::LogFormat::Text => "text",
                crate::crd::LogFormat::Json => "json",
            };
            vars.push(env("HUBBUB_LOG_FORMAT", format));
        }
    }
    if let Some(admin) = &spec.admin_ui {
        vars.push(env("HUBBUB_ADMIN_UI", "true"));
        let secret = &admin.credentials_secret;
        vars.push(secret_key_env("HUBBUB_ADMIN_USERNAME", secret, "username"));
        vars.push(secret_key_env(
            "HUBBUB_ADMIN_PASSWORD_HASH",
            secret,
            "passwordHash",
        ));
        vars.push(env("HUBBUB_ADMIN_READONLY", admin.readonly.to_string()));
        let mode = match admin.mode {
            crate::crd::AdminUiMode::Production => "production",
            crate::crd::AdminUiMode::Development => "development",
        };
        vars.push(env("HUBBUB_ADMIN_MODE", mode));
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
        secret: Option<&'a crate::crd::SecretKeyRef>,
        amqp: Option<&'a crate::crd::AmqpSpec>,
    }
    let hashed = Hashed {
        image,
        env: server_env(room),
        secret: room.spec.redis.existing_secret.as_ref(),
        amqp: room.spec.amqp.as_ref(),
    };
    // serialising plain strings and k8s-openapi structs to JSON cannot fail
    let bytes = serde_json::to_vec(&hashed).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

pub(super) fn server_deployment(
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

pub(super) fn server_service(room: &ChatRoom) -> Service {
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
            // Any pod serves any request: the replicas forward a polling request or a
            // WebSocket upgrade to the pod that holds its session (docs/forwarding.md).
            // Affinity only when asked for.
            session_affinity: match spec.session_affinity {
                SessionAffinity::ClientIP => Some("ClientIP".into()),
                SessionAffinity::None => None,
            },
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
