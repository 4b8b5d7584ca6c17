//! Unit tests of the pure builders: each child object, field by field.

use super::*;
use crate::crd::ChatRoomSpec;
use serde_json::{Value, json};

fn room(spec: Value) -> ChatRoom {
    let mut room = ChatRoom::new(
        "lobby",
        serde_json::from_value::<ChatRoomSpec>(spec).expect("spec"),
    );
    room.metadata.namespace = Some("chat".into());
    room.metadata.uid = Some("0d4c6d1e-0000-4000-8000-000000000001".into());
    room
}

fn images() -> Images {
    Images {
        server: "example/hubbub:1".into(),
        redis: "example/redis:7".into(),
    }
}

fn build_ok(spec: Value) -> Children {
    build(&room(spec), &images()).expect("build")
}

fn json_of<T: Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).expect("serialise")
}

fn env_map(children: &Children) -> BTreeMap<String, Value> {
    let dep = json_of(&children.deployment);
    dep["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let v = if e.get("value").is_some() {
                e["value"].clone()
            } else {
                e["valueFrom"].clone()
            };
            (e["name"].as_str().expect("name").to_string(), v)
        })
        .collect()
}

#[test]
fn minimal_room_gets_redis_server_service_and_pdb() {
    let c = build_ok(json!({}));
    assert_eq!(
        c.redis_service
            .as_ref()
            .and_then(|s| s.metadata.name.as_deref()),
        Some("lobby-redis")
    );
    assert_eq!(
        c.redis.as_ref().and_then(|s| s.metadata.name.as_deref()),
        Some("lobby-redis")
    );
    assert_eq!(c.service.metadata.name.as_deref(), Some("lobby"));
    assert_eq!(c.deployment.metadata.name.as_deref(), Some("lobby"));
    // default 2 replicas: a PDB, no ingress, no HPA
    assert_eq!(
        c.pdb.as_ref().and_then(|p| p.metadata.name.as_deref()),
        Some("lobby")
    );
    assert!(c.ingress.is_none());
    assert!(c.hpa.is_none());
}

#[test]
fn every_child_is_labelled_namespaced_and_controller_owned() {
    let c = build_ok(json!({
        "ingress": {"host": "chat.example.com"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5}
    }));
    let metas = [
        &c.redis_service.as_ref().expect("redis service").metadata,
        &c.redis.as_ref().expect("redis").metadata,
        &c.service.metadata,
        &c.deployment.metadata,
        &c.pdb.as_ref().expect("pdb").metadata,
        &c.ingress.as_ref().expect("ingress").metadata,
        &c.hpa.as_ref().expect("hpa").metadata,
    ];
    for meta in metas {
        assert_eq!(meta.namespace.as_deref(), Some("chat"));
        let labels = meta.labels.as_ref().expect("labels");
        for key in ["name", "instance", "component", "managed-by", "part-of"] {
            assert!(
                labels.contains_key(&format!("app.kubernetes.io/{key}")),
                "{:?} lacks {key}",
                meta.name
            );
        }
        assert_eq!(labels["app.kubernetes.io/managed-by"], "hubbub-operator");
        let owners = meta.owner_references.as_ref().expect("owner");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "ChatRoom");
        assert_eq!(owners[0].api_version, "hubbub.dev/v1alpha1");
        assert_eq!(owners[0].name, "lobby");
        assert_eq!(owners[0].controller, Some(true));
        assert_eq!(owners[0].uid, "0d4c6d1e-0000-4000-8000-000000000001");
    }
}

#[test]
fn render_without_uid_has_no_owner_reference() {
    let mut r = room(json!({}));
    r.metadata.uid = None;
    let c = build(&r, &images()).expect("build");
    assert!(c.deployment.metadata.owner_references.is_none());
}

#[test]
fn deployment_maps_the_spec_to_server_settings() {
    let c = build_ok(json!({
        "history": {"messages": 50, "questions": 5},
        "welcome": "hi there",
        "maxMessageBytes": 2048,
        "rateLimit": {"perSecond": 5, "burst": 10},
        "corsOrigins": ["https://a.example", "https://b.example"],
        "shutdownGraceSeconds": 20,
        "log": {"level": "debug", "format": "json"},
        "env": [{"name": "HUBBUB_PING_INTERVAL_MS", "value": "10000"}],
        "redis": {"existingSecret": {"name": "redis-pass"}}
    }));
    let env = env_map(&c);
    assert_eq!(env["HUBBUB_BIND"], json!("0.0.0.0:8080"));
    assert_eq!(
        env["HUBBUB_ADVERTISE_IP"],
        json!({"fieldRef": {"fieldPath": "status.podIP"}}),
        "the pod IP, for the other replicas to forward to"
    );
    assert_eq!(env["HUBBUB_REDIS_URL"], json!("redis://lobby-redis:6379/0"));
    assert_eq!(
        env["HUBBUB_REDIS_PASSWORD"],
        json!({"secretKeyRef": {"name": "redis-pass", "key": "password", "optional": false}})
    );
    assert_eq!(env["HUBBUB_HISTORY_SIZE"], json!("50"));
    assert_eq!(env["HUBBUB_QUESTION_HISTORY"], json!("5"));
    assert_eq!(env["HUBBUB_WELCOME"], json!("hi there"));
    assert_eq!(env["HUBBUB_MAX_MESSAGE_BYTES"], json!("2048"));
    assert_eq!(env["HUBBUB_RATE_LIMIT"], json!("5"));
    assert_eq!(env["HUBBUB_RATE_BURST"], json!("10"));
    assert_eq!(
        env["HUBBUB_CORS_ORIGINS"],
        json!("https://a.example,https://b.example")
    );
    assert_eq!(env["HUBBUB_SHUTDOWN_GRACE_SECS"], json!("20"));
    assert_eq!(env["HUBBUB_LOG"], json!("debug"));
    assert_eq!(env["HUBBUB_LOG_FORMAT"], json!("json"));
    assert_eq!(env["HUBBUB_PING_INTERVAL_MS"], json!("10000"));

    let dep = json_of(&c.deployment);
    let pod = &dep["spec"]["template"]["spec"];
    // drain (20) + preStop pause (5) + slack (5)
    assert_eq!(pod["terminationGracePeriodSeconds"], json!(30));
}

#[test]
fn admin_ui_takes_its_credentials_from_a_secret() {
    let env = env_map(&build_ok(json!({
        "corsOrigins": ["https://admin.socket.io"],
        "adminUi": {"credentialsSecret": "dashboard", "mode": "development"}
    })));
    assert_eq!(env["HUBBUB_ADMIN_UI"], json!("true"));
    assert_eq!(
        env["HUBBUB_ADMIN_USERNAME"],
        json!({"secretKeyRef": {"name": "dashboard", "key": "username", "optional": false}})
    );
    assert_eq!(
        env["HUBBUB_ADMIN_PASSWORD_HASH"],
        json!({"secretKeyRef": {"name": "dashboard", "key": "passwordHash", "optional": false}})
    );
    assert_eq!(env["HUBBUB_ADMIN_READONLY"], json!("false"));
    assert_eq!(env["HUBBUB_ADMIN_MODE"], json!("development"));
    assert_eq!(env["HUBBUB_CORS_ORIGINS"], json!("https://admin.socket.io"));
    // Another Secret rolls the pods.
    let a = room(json!({"adminUi": {"credentialsSecret": "one"}}));
    let b = room(json!({"adminUi": {"credentialsSecret": "two", "readonly": true}}));
    assert_ne!(
        config_hash(&a, "example/hubbub:1"),
        config_hash(&b, "example/hubbub:1")
    );
    assert!(
        !env_map(&build_ok(json!({}))).contains_key("HUBBUB_ADMIN_UI"),
        "off by default"
    );
}

#[test]
fn minimal_env_sets_only_defaults_the_server_needs() {
    let env = env_map(&build_ok(json!({})));
    let names: Vec<&str> = env.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "HUBBUB_ADVERTISE_IP",
            "HUBBUB_BIND",
            "HUBBUB_HISTORY_SIZE",
            "HUBBUB_QUESTION_HISTORY",
            "HUBBUB_REDIS_URL",
            "HUBBUB_SHUTDOWN_GRACE_SECS"
        ]
    );
}

#[test]
fn deployment_is_hardened_probed_and_rolls_safely() {
    let c = build_ok(json!({"replicas": 3}));
    let dep = json_of(&c.deployment);
    let spec = &dep["spec"];
    assert_eq!(spec["replicas"], json!(3));
    assert_eq!(
        spec["strategy"]["rollingUpdate"]["maxUnavailable"],
        json!(0)
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], json!(true));
    assert_eq!(pod["securityContext"]["runAsUser"], json!(65532));
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        json!("RuntimeDefault")
    );
    assert_eq!(pod["terminationGracePeriodSeconds"], json!(20));
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        json!("kubernetes.io/hostname")
    );
    let ctr = &pod["containers"][0];
    assert_eq!(ctr["image"], json!("example/hubbub:1"));
    assert_eq!(ctr["ports"][0]["containerPort"], json!(8080));
    assert_eq!(ctr["readinessProbe"]["httpGet"]["path"], json!("/readyz"));
    assert_eq!(ctr["livenessProbe"]["httpGet"]["path"], json!("/healthz"));
    assert_eq!(ctr["lifecycle"]["preStop"]["sleep"]["seconds"], json!(5));
    assert!(
        ctr["lifecycle"]["preStop"].get("exec").is_none(),
        "distroless image: no shell"
    );
    let sc = &ctr["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], json!(true));
    assert_eq!(sc["allowPrivilegeEscalation"], json!(false));
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    let ann = &spec["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], json!("true"));
    assert_eq!(ann["prometheus.io/port"], json!("8080"));
    assert_eq!(ann["prometheus.io/path"], json!("/metrics"));
    assert!(
        ann[CONFIG_HASH_ANNOTATION]
            .as_str()
            .is_some_and(|h| h.len() == 16)
    );
}

#[test]
fn config_hash_changes_with_configuration_only() {
    let a = build_ok(json!({"welcome": "a"}));
    let a2 = build_ok(json!({"welcome": "a", "replicas": 5}));
    let b = build_ok(json!({"welcome": "b"}));
    let hash = |c: &Children| {
        c.deployment
            .spec
            .as_ref()
            .expect("spec")
            .template
            .metadata
            .as_ref()
            .expect("meta")
            .annotations
            .as_ref()
            .expect("annotations")[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    assert_eq!(hash(&a), hash(&a2), "scaling must not roll the pods");
    assert_ne!(hash(&a), hash(&b), "a config change must roll the pods");
}

#[test]
fn pod_annotations_win_over_scrape_annotations_but_not_the_hash() {
    let c = build_ok(json!({"podAnnotations": {
        "prometheus.io/scrape": "false",
        "hubbub.dev/config-hash": "forged",
        "team": "chat"
    }}));
    let dep = json_of(&c.deployment);
    let ann = &dep["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], json!("false"));
    assert_eq!(ann["team"], json!("chat"));
    assert_ne!(ann[CONFIG_HASH_ANNOTATION], json!("forged"));
}

#[test]
fn scheduling_passthrough_reaches_the_pod() {
    let c = build_ok(json!({
        "imagePullPolicy": "Always",
        "nodeSelector": {"pool": "chat"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "chat", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["chat"]}]}]}}},
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}}
    }));
    let dep = json_of(&c.deployment);
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"pool": "chat"}));
    assert_eq!(pod["tolerations"][0]["key"], json!("dedicated"));
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["values"],
        json!(["chat"])
    );
    assert_eq!(pod["containers"][0]["imagePullPolicy"], json!("Always"));
    assert_eq!(
        pod["containers"][0]["resources"],
        json!({"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}})
    );
}

#[test]
fn service_spreads_requests_without_affinity_unless_asked() {
    let svc = json_of(&build_ok(json!({})).service);
    assert_eq!(svc["spec"].get("sessionAffinity"), None, "{svc}");
    let c = build_ok(json!({"service": {"sessionAffinity": "ClientIP"}}));
    assert_eq!(
        json_of(&c.service)["spec"]["sessionAffinity"],
        json!("ClientIP")
    );
    let c = build_ok(json!({"service": {"sessionAffinity": "None"}}));
    assert_eq!(json_of(&c.service)["spec"].get("sessionAffinity"), None);
    assert!(
        serde_json::from_value::<crate::crd::ServiceSpec>(json!({"sessionAffinity": "Cookie"}))
            .is_err(),
        "only None and ClientIP"
    );
}

#[test]
fn service_has_type_ports_and_annotations() {
    let c =
        build_ok(json!({"service": {"type": "LoadBalancer", "annotations": {"lb": "internal"}}}));
    let svc = json_of(&c.service);
    assert_eq!(svc["spec"]["type"], json!("LoadBalancer"));
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}])
    );
    assert_eq!(svc["metadata"]["annotations"], json!({"lb": "internal"}));
    assert_eq!(
        svc["spec"]["selector"],
        json!({"app.kubernetes.io/component": "server", "app.kubernetes.io/instance": "lobby", "app.kubernetes.io/name": "hubbub"})
    );
}

#[test]
fn redis_is_ephemeral_without_storage() {
    let c = build_ok(json!({}));
    let sts = json_of(c.redis.as_ref().expect("redis"));
    assert_eq!(sts["spec"]["replicas"], json!(1));
    assert_eq!(sts["spec"]["serviceName"], json!("lobby-redis"));
    assert!(sts["spec"].get("volumeClaimTemplates").is_none());
    let pod = &sts["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"], json!([{"name": "data", "emptyDir": {}}]));
    assert_eq!(pod["securityContext"]["runAsUser"], json!(999));
    let ctr = &pod["containers"][0];
    assert_eq!(ctr["image"], json!("example/redis:7"));
    let args: Vec<&str> = ctr["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().expect("str"))
        .collect();
    assert_eq!(
        args,
        [
            "--port",
            "6379",
            "--dir",
            "/data",
            "--save",
            "",
            "--appendonly",
            "no"
        ]
    );
    assert_eq!(
        ctr["readinessProbe"]["exec"]["command"],
        json!(["sh", "-c", "redis-cli -p 6379 ping | grep -q PONG"])
    );
    assert!(ctr["livenessProbe"]["exec"].is_object());
    assert_eq!(
        ctr["securityContext"]["readOnlyRootFilesystem"],
        json!(true)
    );
    assert_eq!(ctr["resources"]["limits"]["memory"], json!("256Mi"));
    let svc = json_of(c.redis_service.as_ref().expect("redis service"));
    assert_eq!(svc["spec"]["clusterIP"], json!("None"));
    assert_eq!(svc["spec"]["ports"][0]["port"], json!(6379));
}

#[test]
fn redis_with_storage_and_password_persists_and_authenticates() {
    let c = build_ok(json!({"redis": {
        "image": "redis:7.4",
        "storage": {"size": "2Gi", "storageClassName": "fast"},
        "existingSecret": {"name": "rp", "key": "pw"}
    }}));
    let sts = json_of(c.redis.as_ref().expect("redis"));
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], json!("data"));
    assert_eq!(
        claim["spec"]["resources"]["requests"]["storage"],
        json!("2Gi")
    );
    assert_eq!(claim["spec"]["storageClassName"], json!("fast"));
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    let pod = &sts["spec"]["template"]["spec"];
    assert!(pod.get("volumes").is_none());
    let ctr = &pod["containers"][0];
    assert_eq!(ctr["image"], json!("redis:7.4"));
    let args = ctr["args"].as_array().expect("args");
    let pos = |s: &str| args.iter().position(|a| a == s).expect(s);
    assert_eq!(args[pos("--appendonly") + 1], json!("yes"));
    assert_eq!(args[pos("--requirepass") + 1], json!("$(REDIS_PASSWORD)"));
    let env: Vec<&str> = ctr["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| e["name"].as_str().expect("n"))
        .collect();
    assert_eq!(env, ["REDIS_PASSWORD", "REDISCLI_AUTH"]);
    assert_eq!(
        ctr["env"][0]["valueFrom"]["secretKeyRef"],
        json!({"name": "rp", "key": "pw", "optional": false})
    );
}

#[test]
fn ingress_has_host_tls_and_nginx_annotations_that_users_can_override() {
    let c = build_ok(json!({"ingress": {
        "host": "chat.example.com",
        "className": "nginx",
        "tls": {"secretName": "chat-tls"},
        "annotations": {"nginx.ingress.kubernetes.io/proxy-read-timeout": "600"}
    }}));
    let ing = json_of(c.ingress.as_ref().expect("ingress"));
    assert_eq!(ing["spec"]["ingressClassName"], json!("nginx"));
    assert_eq!(ing["spec"]["rules"][0]["host"], json!("chat.example.com"));
    assert_eq!(
        ing["spec"]["rules"][0]["http"]["paths"][0],
        json!({"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "lobby", "port": {"name": "http"}}}})
    );
    assert_eq!(
        ing["spec"]["tls"],
        json!([{"hosts": ["chat.example.com"], "secretName": "chat-tls"}])
    );
    let ann = &ing["metadata"]["annotations"];
    assert_eq!(
        ann["nginx.ingress.kubernetes.io/proxy-read-timeout"],
        json!("600")
    );
    assert_eq!(
        ann.get("nginx.ingress.kubernetes.io/affinity"),
        None,
        "no affinity by default"
    );
    let c = build_ok(json!({
        "service": {"sessionAffinity": "ClientIP"},
        "ingress": {"host": "chat.example.com"}
    }));
    let ing = json_of(c.ingress.as_ref().expect("ingress"));
    let ann = &ing["metadata"]["annotations"];
    assert_eq!(ann["nginx.ingress.kubernetes.io/affinity"], json!("cookie"));
    assert_eq!(
        ann["nginx.ingress.kubernetes.io/session-cookie-name"],
        json!("hubbub-affinity")
    );
    assert_eq!(
        ann["nginx.ingress.kubernetes.io/proxy-read-timeout"],
        json!("3600")
    );
}

#[test]
fn autoscaling_makes_an_hpa_and_leaves_replicas_to_it() {
    let c = build_ok(
        json!({"replicas": 3, "autoscaling": {"minReplicas": 2, "maxReplicas": 8, "targetCPUUtilizationPercentage": 60}}),
    );
    let hpa = json_of(c.hpa.as_ref().expect("hpa"));
    assert_eq!(hpa["apiVersion"], json!("autoscaling/v2"));
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "lobby"})
    );
    assert_eq!(hpa["spec"]["minReplicas"], json!(2));
    assert_eq!(hpa["spec"]["maxReplicas"], json!(8));
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"],
        json!({"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}})
    );
    assert!(c.deployment.spec.as_ref().expect("spec").replicas.is_none());
}

#[test]
fn pdb_only_with_more_than_one_pod() {
    assert!(build_ok(json!({"replicas": 1})).pdb.is_none());
    assert!(
        build_ok(json!({"replicas": 1, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}}))
            .pdb
            .is_none()
    );
    let pdb = json_of(build_ok(json!({"replicas": 2})).pdb.as_ref().expect("pdb"));
    assert_eq!(pdb["apiVersion"], json!("policy/v1"));
    assert_eq!(pdb["spec"]["maxUnavailable"], json!(1));
}

#[test]
fn unreconcilable_specs_are_errors_with_reasons() {
    let err = |spec: Value| build(&room(spec), &images()).expect_err("must fail");
    assert_eq!(err(json!({"ingress": {}})).reason(), "IngressHostMissing");
    assert_eq!(
        err(json!({"ingress": {"host": ""}})).reason(),
        "IngressHostMissing"
    );
    assert_eq!(
        err(json!({"resources": {"limits": {"memory": "1Gi"}}, "autoscaling": {"maxReplicas": 4}}))
            .reason(),
        "AutoscalingNeedsCpuRequest"
    );
    assert_eq!(
        err(json!({"env": [{"name": "HUBBUB_REDIS_URL", "value": "redis://elsewhere"}]})),
        BuildError::ManagedEnvSetting("HUBBUB_REDIS_URL".into())
    );
    for bad in ["1room", "a.b", "Room", "x-", &"a".repeat(MAX_ROOM_NAME + 1)] {
        let mut r = room(json!({}));
        r.metadata.name = Some(bad.to_string());
        assert_eq!(
            build(&r, &images()).expect_err(bad).reason(),
            "InvalidName",
            "{bad}"
        );
    }
    let mut r = room(json!({}));
    r.metadata.name = Some("a".repeat(MAX_ROOM_NAME));
    assert!(build(&r, &images()).is_ok());
}

#[test]
fn endpoint_names_service_and_ingress() {
    assert_eq!(
        endpoint(&room(json!({}))),
        "http://lobby.chat.svc.cluster.local"
    );
    assert_eq!(
        endpoint(&room(
            json!({"ingress": {"host": "c.example", "tls": {"secretName": "t"}}})
        )),
        "http://lobby.chat.svc.cluster.local https://c.example/"
    );
}

#[test]
fn yaml_output_quotes_yaml11_booleans() {
    let c = build_ok(json!({"podAnnotations": {"flag": "on"}, "welcome": "line one\nno\n"}));
    let yaml = crate::render::children_yaml(&c).expect("yaml");
    assert!(yaml.contains("- 'no'\n"), "{yaml}");
    assert!(yaml.contains("flag: 'on'\n"));
    // every document parses back to the same objects
    let docs: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("doc"))
        .collect();
    assert_eq!(docs.len(), 5);
    assert_eq!(docs[3], json_of(&c.deployment));
    assert_eq!(
        crate::render::quote_yaml11_booleans("a: |\n  no\nb: no\n"),
        "a: |\n  no\nb: 'no'\n"
    );
}

#[test]
fn building_is_deterministic() {
    let spec = json!({"ingress": {"host": "h"}, "autoscaling": {"maxReplicas": 3}, "podAnnotations": {"a": "1", "b": "2"}});
    assert_eq!(build_ok(spec.clone()), build_ok(spec));
}

#[test]
fn an_existing_rabbitmq_comes_from_a_secret_with_a_per_room_prefix() {
    let c = build_ok(json!({"amqp": {"urlSecret": {"name": "rabbit"}}}));
    let env = env_map(&c);
    assert_eq!(
        env["HUBBUB_AMQP_URL"],
        json!({"secretKeyRef": {"name": "rabbit", "key": "url", "optional": false}})
    );
    assert_eq!(env["HUBBUB_AMQP_PREFIX"], json!("hubbub.chat.lobby"));
    // Redis stays: it keeps history, questions and presence.
    assert_eq!(env["HUBBUB_REDIS_URL"], json!("redis://lobby-redis:6379/0"));
    let c = build_ok(
        json!({"amqp": {"urlSecret": {"name": "rabbit", "key": "amqp"}, "prefix": "team.chat"}}),
    );
    let env = env_map(&c);
    assert_eq!(env["HUBBUB_AMQP_PREFIX"], json!("team.chat"));
    assert_eq!(env["HUBBUB_AMQP_URL"]["secretKeyRef"]["key"], json!("amqp"));
    // Pointing a room at another Secret rolls its pods.
    let a = room(json!({"amqp": {"urlSecret": {"name": "rabbit"}}}));
    let b = room(json!({"amqp": {"urlSecret": {"name": "rabbit2"}}}));
    assert_ne!(config_hash(&a, "i"), config_hash(&b, "i"));
    assert!(build_ok(json!({})).deployment.spec.is_some());
    assert!(!env_map(&build_ok(json!({}))).contains_key("HUBBUB_AMQP_URL"));
}
