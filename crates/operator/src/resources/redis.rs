//! The bundled Redis: its StatefulSet (optionally persistent, append-only) and headless
//! Service; with `spec.redis.sentinel` the same StatefulSet holds the Sentinel-managed
//! data pods (see [`super::sentinel`]).

use super::*;

pub(super) fn default_redis_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "50m"), ("memory", "64Mi")])),
        limits: Some(quantities(&[("memory", "256Mi")])),
        ..ResourceRequirements::default()
    }
}

pub(super) fn redis_service(room: &ChatRoom) -> Service {
    let name = room.name_any();
    Service {
        metadata: meta(room, redis_name(&name), Component::Redis),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // with Sentinels, the data pods find each other by name before they are ready
            publish_not_ready_addresses: room.spec.redis.sentinel.as_ref().map(|_| true),
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

pub(super) fn redis_statefulset(room: &ChatRoom, images: &Images) -> StatefulSet {
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

    // with Sentinels a start-up script decides whether the pod is master or replica
    let (command, args, env) = match &redis.sentinel {
        None => (None, Some(args), env),
        Some(sentinel) => {
            let mut env = script_env(room, sentinel);
            env.push(super::env(
                "APPENDONLY",
                if persistent { "yes" } else { "no" },
            ));
            env.push(super::env(
                "PROMOTION_WAIT_SECS",
                promotion_wait_secs(sentinel).to_string(),
            ));
            (
                Some(vec!["sh".into(), "-c".into(), data_script()]),
                None,
                env,
            )
        }
    };

    let container = Container {
        name: "redis".into(),
        image: Some(redis.image.clone().unwrap_or_else(|| images.redis.clone())),
        image_pull_policy: room.spec.image_pull_policy.map(|p| p.as_str().to_string()),
        command,
        args,
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
            replicas: Some(redis.sentinel.as_ref().map_or(1, |s| s.replicas)),
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
                    affinity: redis
                        .sentinel
                        .as_ref()
                        .map(|_| spread_over_nodes(&name, Component::Redis)),
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
