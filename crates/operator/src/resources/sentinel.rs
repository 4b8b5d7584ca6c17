//! The Sentinel-managed Redis the operator deploys with `spec.redis.sentinel`: the data
//! StatefulSet `<room>-redis` becomes N pods (one master, the rest replicas), beside a
//! StatefulSet `<room>-sentinel` of Sentinels watching them, each with a headless Service
//! and a PodDisruptionBudget, spread over nodes by pod anti-affinity.
//!
//! Who is master is decided by the Sentinels, not by the operator: a pod that starts asks
//! the Sentinels (then the other data pods) for the current master and joins it as a
//! replica; only a set where nobody knows a master yet starts with pod 0 as master. The
//! start-up scripts below are plain `sh` for the official Redis image and use backticks,
//! never `$(...)`, which the kubelet would try to expand as a variable reference.

use super::*;
use crate::crd::RedisSentinelSpec;

/// Port the Sentinels listen on.
pub const SENTINEL_PORT: i32 = 26379;
/// The name under which the Sentinels monitor the room's master (each room has its own
/// Sentinels, so one fixed name is enough).
pub const SENTINEL_MASTER_NAME: &str = "hubbub";

/// Name of the Sentinels' StatefulSet, headless Service and PodDisruptionBudget.
pub fn sentinel_name(room: &str) -> String {
    format!("{room}-sentinel")
}

/// `host:port` of every Sentinel, as the chat server's `HUBBUB_REDIS_SENTINELS` lists them.
pub fn sentinel_addresses(room: &str, sentinel: &RedisSentinelSpec) -> Vec<String> {
    let name = sentinel_name(room);
    (0..sentinel.sentinels)
        .map(|i| format!("{name}-{i}.{name}:{SENTINEL_PORT}"))
        .collect()
}

/// The Sentinels needed to agree that the master is down: a majority.
pub fn quorum(sentinel: &RedisSentinelSpec) -> i32 {
    sentinel.sentinels / 2 + 1
}

/// Seconds a restarted master waits for the Sentinels to promote a replica: two
/// `down-after` periods and 10 s for the election, at most 30 s (the liveness probe gives a
/// silent container about 40 s).
pub fn promotion_wait_secs(sentinel: &RedisSentinelSpec) -> i32 {
    (sentinel.down_after_milliseconds * 2 / 1000 + 10).min(30)
}

pub(super) fn default_sentinel_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(&[("cpu", "20m"), ("memory", "32Mi")])),
        limits: Some(quantities(&[("memory", "64Mi")])),
        ..ResourceRequirements::default()
    }
}

/// The stable DNS names (`pod.service`) of the data pods, space-separated, for the scripts.
fn data_hosts(room: &str, sentinel: &RedisSentinelSpec) -> String {
    let name = redis_name(room);
    (0..sentinel.replicas)
        .map(|i| format!("{name}-{i}.{name}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn sentinel_hosts(room: &str, sentinel: &RedisSentinelSpec) -> String {
    let name = sentinel_name(room);
    (0..sentinel.sentinels)
        .map(|i| format!("{name}-{i}.{name}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `find_master` sets `$master` to the current master: the Sentinels' answer first, then a
/// data pod that says `role:master`, else empty. Shared by both start-up scripts.
const FIND_MASTER: &str = r#"find_master() {
master=""
for s in $SENTINEL_HOSTS; do
  # backticks: the kubelet would expand a dollar-parenthesis as a variable reference
  # shellcheck disable=SC2006
  reply=`env -u REDISCLI_AUTH timeout 3 redis-cli -h "$s" -p 26379 sentinel get-master-addr-by-name "$MASTER_NAME" 2>/dev/null | head -n 1`
  if [ -n "$reply" ]; then master="$reply"; break; fi
done
if [ -z "$master" ]; then
  for h in $DATA_HOSTS; do
    [ "$h" = "$SELF" ] && continue
    if timeout 3 redis-cli -h "$h" -p 6379 info replication 2>/dev/null | grep -q '^role:master'; then master="$h"; break; fi
  done
fi
}
find_master
"#;

/// Start-up of a data pod: join the current master as a replica, or be the first master.
pub fn data_script() -> String {
    format!(
        r#"set -eu
SELF="$POD_NAME.$REDIS_SERVICE"
{FIND_MASTER}# The Sentinels still name this pod, which has just restarted (without storage: empty).
# Give them time to promote a replica rather than come back as an empty master whose
# replicas would copy its empty dataset; bounded, then start as master after all.
# shellcheck disable=SC2006
for _ in `seq "$PROMOTION_WAIT_SECS"`; do
  {{ [ "$master" = "$SELF" ] || [ "$master" = "$POD_IP" ]; }} || break
  sleep 1
  find_master
done
if [ -z "$master" ]; then
  # nobody knows a master: a new set, whose pod 0 starts as the master
  master="$REDIS_SERVICE-0.$REDIS_SERVICE"
fi
set -- --port 6379 --dir /data --save "" --appendonly "$APPENDONLY" --replica-announce-ip "$SELF"
if [ -n "${{REDIS_PASSWORD:-}}" ]; then
  set -- "$@" --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD"
fi
if [ "$master" != "$SELF" ] && [ "$master" != "$POD_IP" ]; then
  set -- "$@" --replicaof "$master" 6379
fi
exec redis-server "$@"
"#
    )
}

/// Start-up of a Sentinel: write a config that monitors the current master (or pod 0 of
/// a new set) and run `redis-sentinel` on it (the Sentinel rewrites the file itself).
pub fn sentinel_script() -> String {
    format!(
        r#"set -eu
SELF="$POD_NAME.$SENTINEL_SERVICE"
{FIND_MASTER}[ -n "$master" ] || master="$REDIS_SERVICE-0.$REDIS_SERVICE"
cat > /data/sentinel.conf <<CONF
port 26379
dir /data
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $SELF
sentinel monitor $MASTER_NAME $master 6379 $QUORUM
sentinel down-after-milliseconds $MASTER_NAME $DOWN_AFTER_MS
sentinel failover-timeout $MASTER_NAME $FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $MASTER_NAME 1
CONF
if [ -n "${{REDIS_PASSWORD:-}}" ]; then
  echo "sentinel auth-pass $MASTER_NAME $REDIS_PASSWORD" >> /data/sentinel.conf
fi
exec redis-sentinel /data/sentinel.conf
"#
    )
}

/// `name` from the downward API field `path` (e.g. `metadata.name`).
fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The environment both start-up scripts read.
pub(super) fn script_env(room: &ChatRoom, sentinel: &RedisSentinelSpec) -> Vec<EnvVar> {
    let name = room.name_any();
    let mut vars = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_IP", "status.podIP"),
        env("REDIS_SERVICE", redis_name(&name)),
        env("SENTINEL_SERVICE", sentinel_name(&name)),
        env("DATA_HOSTS", data_hosts(&name, sentinel)),
        env("SENTINEL_HOSTS", sentinel_hosts(&name, sentinel)),
        env("MASTER_NAME", SENTINEL_MASTER_NAME),
    ];
    vars.extend(secret_env("REDIS_PASSWORD", room));
    // redis-cli reads the password from REDISCLI_AUTH, for the probes and the scripts
    vars.extend(secret_env("REDISCLI_AUTH", room));
    vars
}

/// Prefer one pod of `component` per node (a node's loss takes at most one of them).
pub(super) fn spread_over_nodes(room: &str, component: Component) -> Affinity {
    Affinity {
        pod_anti_affinity: Some(PodAntiAffinity {
            preferred_during_scheduling_ignored_during_execution: Some(vec![
                WeightedPodAffinityTerm {
                    weight: 100,
                    pod_affinity_term: PodAffinityTerm {
                        topology_key: "kubernetes.io/hostname".into(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(selector_labels(room, component)),
                            ..LabelSelector::default()
                        }),
                        ..PodAffinityTerm::default()
                    },
                },
            ]),
            ..PodAntiAffinity::default()
        }),
        ..Affinity::default()
    }
}

/// A PodDisruptionBudget that lets one pod of `component` go at a time.
pub(super) fn one_at_a_time(
    room: &ChatRoom,
    name: String,
    component: Component,
) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(room, name, component),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&room.name_any(), component)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

pub(super) fn sentinel_service(room: &ChatRoom) -> Service {
    let name = room.name_any();
    Service {
        metadata: meta(room, sentinel_name(&name), Component::Sentinel),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            // the Sentinels and data pods find each other by name before they are ready
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&name, Component::Sentinel)),
            ports: Some(vec![ServicePort {
                name: Some("sentinel".into()),
                port: SENTINEL_PORT,
                target_port: Some(IntOrString::String("sentinel".into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}

pub(super) fn sentinel_statefulset(
    room: &ChatRoom,
    images: &Images,
    sentinel: &RedisSentinelSpec,
) -> StatefulSet {
    let name = room.name_any();
    let redis = &room.spec.redis;
    let mut vars = script_env(room, sentinel);
    vars.extend([
        env("QUORUM", quorum(sentinel).to_string()),
        env(
            "DOWN_AFTER_MS",
            sentinel.down_after_milliseconds.to_string(),
        ),
        env(
            "FAILOVER_TIMEOUT_MS",
            (i64::from(sentinel.down_after_milliseconds) * 6).to_string(),
        ),
    ]);
    let ping = |period: i32, delay: i32| Probe {
        exec: Some(ExecAction {
            command: Some(vec![
                "sh".into(),
                "-c".into(),
                format!("env -u REDISCLI_AUTH redis-cli -p {SENTINEL_PORT} ping | grep -q PONG"),
            ]),
        }),
        initial_delay_seconds: Some(delay),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(3),
        ..Probe::default()
    };
    let container = Container {
        name: "sentinel".into(),
        image: Some(redis.image.clone().unwrap_or_else(|| images.redis.clone())),
        image_pull_policy: room.spec.image_pull_policy.map(|p| p.as_str().to_string()),
        command: Some(vec!["sh".into(), "-c".into(), sentinel_script()]),
        env: Some(vars),
        ports: Some(vec![ContainerPort {
            name: Some("sentinel".into()),
            container_port: SENTINEL_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        resources: Some(
            sentinel
                .resources
                .clone()
                .unwrap_or_else(default_sentinel_resources),
        ),
        readiness_probe: Some(ping(5, 2)),
        liveness_probe: Some(ping(10, 10)),
        security_context: Some(restricted_container_security()),
        volume_mounts: Some(vec![VolumeMount {
            name: "config".into(),
            mount_path: "/data".into(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    };
    StatefulSet {
        metadata: meta(room, sentinel_name(&name), Component::Sentinel),
        spec: Some(StatefulSetSpec {
            replicas: Some(sentinel.sentinels),
            service_name: Some(sentinel_name(&name)),
            pod_management_policy: Some("Parallel".into()),
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name, Component::Sentinel)),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels(&name, Component::Sentinel)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    affinity: Some(spread_over_nodes(&name, Component::Sentinel)),
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(pod_security(REDIS_UID)),
                    termination_grace_period_seconds: Some(30),
                    volumes: Some(vec![Volume {
                        name: "config".into(),
                        empty_dir: Some(EmptyDirVolumeSource {
                            size_limit: Some(Quantity("16Mi".into())),
                            ..EmptyDirVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            ..StatefulSetSpec::default()
        }),
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ChatRoomSpec;
    use serde_json::{Value, json};

    fn room(name: &str, spec: Value) -> ChatRoom {
        let mut room = ChatRoom::new(
            name,
            serde_json::from_value::<ChatRoomSpec>(spec).expect("spec"),
        );
        room.metadata.namespace = Some("chat".into());
        room.metadata.uid = Some("0d4c6d1e-0000-4000-8000-000000000001".into());
        room
    }

    fn build_ha(spec: Value) -> Children {
        build(&room("lobby", spec), &Images::default()).expect("build")
    }

    fn json_of<T: Serialize>(obj: &T) -> Value {
        serde_json::to_value(obj).expect("json")
    }

    fn env_of(pod_spec: &Value) -> BTreeMap<String, Value> {
        pod_spec["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                let v = e.get("value").cloned().unwrap_or(e["valueFrom"].clone());
                (e["name"].as_str().expect("name").to_string(), v)
            })
            .collect()
    }

    fn anti_affinity(component: &str) -> Value {
        json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
            "weight": 100,
            "podAffinityTerm": {
                "topologyKey": "kubernetes.io/hostname",
                "labelSelector": {"matchLabels": {
                    "app.kubernetes.io/component": component,
                    "app.kubernetes.io/instance": "lobby",
                    "app.kubernetes.io/name": "hubbub"
                }}
            }
        }]}})
    }

    #[test]
    fn sentinel_room_gets_three_data_pods_three_sentinels_two_pdbs_spread_over_nodes() {
        let c = build_ha(json!({"redis": {"sentinel": {}}}));
        let data = json_of(c.redis.as_ref().expect("data pods"));
        assert_eq!(data["spec"]["replicas"], json!(3));
        // podManagementPolicy is immutable: a room moving to Sentinels keeps OrderedReady
        assert!(data["spec"].get("podManagementPolicy").is_none());
        let data_pod = &data["spec"]["template"]["spec"];
        assert_eq!(data_pod["affinity"], anti_affinity("redis"));
        assert_eq!(data_pod["securityContext"]["runAsNonRoot"], json!(true));
        assert_eq!(data_pod["securityContext"]["runAsUser"], json!(REDIS_UID));
        let ctr = &data_pod["containers"][0];
        assert_eq!(ctr["command"][0], json!("sh"));
        assert!(ctr.get("args").is_none());
        assert_eq!(ctr["resources"]["requests"]["cpu"], json!("50m"));
        assert_eq!(
            ctr["securityContext"]["readOnlyRootFilesystem"],
            json!(true)
        );

        let svc = json_of(c.redis_service.as_ref().expect("data service"));
        assert_eq!(svc["spec"]["clusterIP"], json!("None"));
        assert_eq!(svc["spec"]["publishNotReadyAddresses"], json!(true));

        let sentinels = json_of(c.sentinel.as_ref().expect("sentinels"));
        assert_eq!(sentinels["metadata"]["name"], json!("lobby-sentinel"));
        assert_eq!(sentinels["spec"]["replicas"], json!(3));
        assert_eq!(sentinels["spec"]["serviceName"], json!("lobby-sentinel"));
        assert_eq!(sentinels["spec"]["podManagementPolicy"], json!("Parallel"));
        let pod = &sentinels["spec"]["template"]["spec"];
        assert_eq!(pod["affinity"], anti_affinity("sentinel"));
        assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
        assert_eq!(pod["automountServiceAccountToken"], json!(false));
        let ctr = &pod["containers"][0];
        assert_eq!(ctr["ports"][0]["containerPort"], json!(26379));
        assert_eq!(
            ctr["resources"],
            json!({"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}})
        );
        assert_eq!(
            ctr["securityContext"]["allowPrivilegeEscalation"],
            json!(false)
        );
        assert_eq!(ctr["volumeMounts"][0]["mountPath"], json!("/data"));
        let env = env_of(pod);
        assert_eq!(env["QUORUM"], json!("2"));
        assert_eq!(env["DOWN_AFTER_MS"], json!("5000"));
        assert_eq!(env["FAILOVER_TIMEOUT_MS"], json!("30000"));
        assert_eq!(
            env["DATA_HOSTS"],
            json!("lobby-redis-0.lobby-redis lobby-redis-1.lobby-redis lobby-redis-2.lobby-redis")
        );

        let sentinel_svc = json_of(c.sentinel_service.as_ref().expect("sentinel service"));
        assert_eq!(sentinel_svc["spec"]["clusterIP"], json!("None"));
        assert_eq!(
            sentinel_svc["spec"]["publishNotReadyAddresses"],
            json!(true)
        );
        assert_eq!(sentinel_svc["spec"]["ports"][0]["port"], json!(26379));

        for (pdb, component) in [(&c.redis_pdb, "redis"), (&c.sentinel_pdb, "sentinel")] {
            let pdb = json_of(pdb.as_ref().expect("pdb"));
            assert_eq!(pdb["spec"]["maxUnavailable"], json!(1));
            assert_eq!(
                pdb["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"],
                json!(component)
            );
            assert_eq!(
                pdb["metadata"]["ownerReferences"][0]["controller"],
                json!(true)
            );
        }
    }

    #[test]
    fn the_chat_server_is_configured_for_sentinel_mode() {
        let c = build_ha(json!({"redis": {
            "existingSecret": {"name": "lobby-redis-pw"},
            "sentinel": {"replicas": 2, "sentinels": 5, "downAfterMilliseconds": 2000}
        }}));
        let dep = json_of(&c.deployment);
        let env = env_of(&dep["spec"]["template"]["spec"]);
        assert_eq!(
            env["HUBBUB_REDIS_SENTINELS"],
            json!(
                "lobby-sentinel-0.lobby-sentinel:26379,lobby-sentinel-1.lobby-sentinel:26379,lobby-sentinel-2.lobby-sentinel:26379,lobby-sentinel-3.lobby-sentinel:26379,lobby-sentinel-4.lobby-sentinel:26379"
            )
        );
        assert_eq!(env["HUBBUB_REDIS_SENTINEL_MASTER"], json!("hubbub"));
        assert_eq!(
            env["HUBBUB_REDIS_PASSWORD"],
            json!({"secretKeyRef": {"name": "lobby-redis-pw", "key": "password", "optional": false}})
        );
        assert!(!env.contains_key("HUBBUB_REDIS_URL"));

        let sentinels = json_of(c.sentinel.as_ref().expect("sentinels"));
        assert_eq!(sentinels["spec"]["replicas"], json!(5));
        let senv = env_of(&sentinels["spec"]["template"]["spec"]);
        assert_eq!(senv["QUORUM"], json!("3"));
        assert_eq!(senv["DOWN_AFTER_MS"], json!("2000"));
        // the Sentinels authenticate to the data pods with the same Secret
        assert_eq!(
            senv["REDIS_PASSWORD"],
            json!({"secretKeyRef": {"name": "lobby-redis-pw", "key": "password", "optional": false}})
        );
        let data = json_of(c.redis.as_ref().expect("data pods"));
        assert_eq!(data["spec"]["replicas"], json!(2));
        let denv = env_of(&data["spec"]["template"]["spec"]);
        assert_eq!(
            denv["APPENDONLY"],
            json!("no"),
            "no storage: no append-only file"
        );
        // a restarted master waits 2 x 2 s + 10 s for a promotion before it starts anyway
        assert_eq!(denv["PROMOTION_WAIT_SECS"], json!("14"));
        assert_eq!(
            denv["POD_NAME"],
            json!({"fieldRef": {"fieldPath": "metadata.name"}})
        );
    }

    #[test]
    fn without_sentinel_there_are_no_sentinel_objects() {
        let c = build_ha(json!({}));
        assert!(c.sentinel.is_none() && c.sentinel_service.is_none());
        assert!(c.redis_pdb.is_none() && c.sentinel_pdb.is_none());
        let data = json_of(c.redis.as_ref().expect("redis"));
        assert_eq!(data["spec"]["replicas"], json!(1));
        assert!(data["spec"]["template"]["spec"].get("affinity").is_none());
    }

    #[test]
    fn the_start_up_scripts_are_valid_sh_without_kubelet_expansions() {
        for (what, script) in [("data", data_script()), ("sentinel", sentinel_script())] {
            // the kubelet expands $(NAME) in command and args: the scripts use none
            assert!(!script.contains("$("), "{what} script contains $(");
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .output()
                .expect("run sh (install dash or bash)");
            assert!(
                out.status.success(),
                "{what} script: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert!(sentinel_script().contains("sentinel monitor $MASTER_NAME $master 6379 $QUORUM"));
        assert!(data_script().contains("--replicaof \"$master\" 6379"));
        let slow = RedisSentinelSpec {
            down_after_milliseconds: 60000,
            ..serde_json::from_value(json!({})).expect("defaults")
        };
        assert_eq!(
            promotion_wait_secs(&slow),
            30,
            "capped below the liveness probe"
        );
    }

    /// Runs the data pod's start-up script as pod `pod` of a three-pod set with stand-ins
    /// for `redis-cli` and `redis-server` on PATH: the Sentinel answers the contents of
    /// `sentinel-N` for its N-th question (nothing when the file is absent), `info
    /// replication` says `role:master` for the host in `master-host`, and `redis-server`
    /// writes its arguments. Returns those arguments.
    fn run_data_script(pod: &str, setup: &[(&str, &str)]) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).expect("bin");
        let fake = dir.path().display().to_string();
        let cli = format!(
            r#"#!/bin/sh
case "$*" in
  *get-master-addr-by-name*)
    n=`cat {fake}/count 2>/dev/null || echo 0`; n=`expr "$n" + 1`; echo "$n" > {fake}/count
    [ -f "{fake}/sentinel-$n" ] && cat "{fake}/sentinel-$n"
    exit 0 ;;
  *"info replication"*)
    [ "$2" = "`cat {fake}/master-host 2>/dev/null`" ] && echo role:master || echo role:slave ;;
esac
"#
        );
        let server = format!("#!/bin/sh\necho \"$*\" > {fake}/args\n");
        for (name, text) in [("redis-cli", cli), ("redis-server", server)] {
            let path = bin.join(name);
            std::fs::write(&path, text).expect("write");
            std::process::Command::new("chmod")
                .args(["+x", &path.display().to_string()])
                .status()
                .expect("chmod");
        }
        for (file, text) in setup {
            std::fs::write(dir.path().join(file), text).expect("setup");
        }
        let status = std::process::Command::new("sh")
            .args(["-c", &data_script()])
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("POD_NAME", pod)
            .env("POD_IP", "10.0.0.9")
            .env("REDIS_SERVICE", "lobby-redis")
            .env(
                "DATA_HOSTS",
                "lobby-redis-0.lobby-redis lobby-redis-1.lobby-redis lobby-redis-2.lobby-redis",
            )
            .env("SENTINEL_HOSTS", "lobby-sentinel-0.lobby-sentinel")
            .env("MASTER_NAME", "hubbub")
            .env("APPENDONLY", "no")
            .env("PROMOTION_WAIT_SECS", "5")
            .env_remove("REDIS_PASSWORD")
            .status()
            .expect("run sh");
        assert!(status.success(), "data script failed");
        std::fs::read_to_string(dir.path().join("args")).expect("redis-server ran")
    }

    #[test]
    fn the_data_script_starts_pod_0_of_a_new_set_as_master_and_the_others_as_its_replicas() {
        let args = run_data_script("lobby-redis-0", &[]);
        assert!(!args.contains("--replicaof"), "{args}");
        assert!(
            args.contains("--replica-announce-ip lobby-redis-0.lobby-redis"),
            "{args}"
        );
        let args = run_data_script("lobby-redis-1", &[]);
        assert!(
            args.contains("--replicaof lobby-redis-0.lobby-redis 6379"),
            "{args}"
        );
    }

    #[test]
    fn the_data_script_joins_the_master_the_sentinels_or_the_data_pods_name() {
        let args = run_data_script(
            "lobby-redis-0",
            &[("sentinel-1", "lobby-redis-2.lobby-redis\n")],
        );
        assert!(
            args.contains("--replicaof lobby-redis-2.lobby-redis 6379"),
            "{args}"
        );
        // no Sentinel answers, but pod 1 says it is the master
        let args = run_data_script(
            "lobby-redis-0",
            &[("master-host", "lobby-redis-1.lobby-redis")],
        );
        assert!(
            args.contains("--replicaof lobby-redis-1.lobby-redis 6379"),
            "{args}"
        );
    }

    #[test]
    fn a_restarted_master_waits_for_the_promotion_and_joins_the_new_master() {
        // the Sentinels name this pod twice, then the replica they promoted
        let args = run_data_script(
            "lobby-redis-0",
            &[
                ("sentinel-1", "lobby-redis-0.lobby-redis\n"),
                ("sentinel-2", "lobby-redis-0.lobby-redis\n"),
                ("sentinel-3", "lobby-redis-1.lobby-redis\n"),
            ],
        );
        assert!(
            args.contains("--replicaof lobby-redis-1.lobby-redis 6379"),
            "{args}"
        );
        // no promotion within PROMOTION_WAIT_SECS: it starts as master after all
        let same: Vec<(String, &str)> = (1..=8)
            .map(|n| (format!("sentinel-{n}"), "lobby-redis-0.lobby-redis\n"))
            .collect();
        let setup: Vec<(&str, &str)> = same.iter().map(|(f, t)| (f.as_str(), *t)).collect();
        let args = run_data_script("lobby-redis-0", &setup);
        assert!(!args.contains("--replicaof"), "{args}");
    }

    #[test]
    fn a_name_too_long_for_the_sentinel_children_is_refused() {
        let long = "a".repeat(MAX_SENTINEL_ROOM_NAME + 1);
        let err = build(
            &room(&long, json!({"redis": {"sentinel": {}}})),
            &Images::default(),
        )
        .expect_err("too long");
        assert_eq!(err.reason(), "InvalidName");
        assert!(
            err.to_string().contains("too long for spec.redis.sentinel"),
            "{err}"
        );
        // the same name is fine without Sentinels
        build(&room(&long, json!({})), &Images::default()).expect("plain room");
    }

    #[test]
    fn sentinel_and_external_exclude_each_other() {
        let err = build(
            &room(
                "lobby",
                json!({"redis": {"sentinel": {},
                                 "external": {"mode": "standalone", "url": "redis://r:6379"}}}),
            ),
            &Images::default(),
        )
        .expect_err("conflict");
        assert_eq!(err.reason(), "ExternalRedisConflict");
        assert!(err.to_string().contains("spec.redis.sentinel"), "{err}");
    }
}
