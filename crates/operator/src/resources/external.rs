//! An external Redis (`spec.redis.external`): the checks a spec must pass before the
//! operator points the chat server at it, and the `HUBBUB_REDIS_*` settings it becomes.
//!
//! The CRD's CEL rules say most of this to the API server already; the same checks run
//! here because `hubbub-operator render` reads files no API server has seen, and because
//! a message naming the field is what ends up in the `Ready` condition. Passwords are only
//! ever `secretKeyRef` environment variables: nothing here reads or copies a Secret.

use super::*;
use crate::crd::{ExternalRedisMode, ExternalRedisSpec, RedisSpec};

/// Why `spec.redis.external` cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExternalRedisError {
    /// A field of the bundled Redis is set beside `external`.
    #[error(
        "cannot be combined with spec.redis.{0}, which configures the bundled Redis; remove one of them"
    )]
    CombinedWithBundled(&'static str),
    /// The mode needs a field that is absent (or empty).
    #[error("mode {mode} needs {field}")]
    Missing {
        /// The mode.
        mode: &'static str,
        /// The absent field.
        field: &'static str,
    },
    /// A field that another mode uses.
    #[error("{field} does not apply to mode {mode}")]
    NotForMode {
        /// The mode.
        mode: &'static str,
        /// The field that does not belong.
        field: &'static str,
    },
    /// The URL is not `redis://` or `rediss://`.
    #[error("url must start with redis:// or rediss://")]
    UrlScheme,
    /// The URL carries a user or password.
    #[error(
        "url must not carry credentials: put the password in a Secret and name it in passwordSecretRef"
    )]
    UrlCredentials,
    /// A Sentinel or node address that is not `host:port`.
    #[error("{field}: {value:?} is not host:port")]
    Address {
        /// `sentinels` or `nodes`.
        field: &'static str,
        /// The address as given.
        value: String,
    },
    /// A master name the Sentinels could not know (empty or with spaces).
    #[error("masterName {0:?} must be 1 to 128 letters, digits, '.', '_' or '-'")]
    MasterName(String),
}

impl ExternalRedisError {
    /// The `Ready=False` reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CombinedWithBundled(_) => "ExternalRedisConflict",
            _ => "InvalidExternalRedis",
        }
    }
}

/// Checks `spec.redis`: `external` alone, complete for its mode, nothing of another mode.
pub fn validate(redis: &RedisSpec) -> Result<(), ExternalRedisError> {
    let Some(ext) = &redis.external else {
        return Ok(());
    };
    let bundled = [
        ("image", redis.image.is_some()),
        ("resources", redis.resources.is_some()),
        ("storage", redis.storage.is_some()),
        ("existingSecret", redis.existing_secret.is_some()),
        ("sentinel", redis.sentinel.is_some()),
    ];
    if let Some((field, _)) = bundled.iter().find(|(_, set)| *set) {
        return Err(ExternalRedisError::CombinedWithBundled(field));
    }
    let mode = ext.mode.as_str();
    let present = [
        ("url", ext.url.is_some()),
        ("sentinels", ext.sentinels.is_some()),
        ("masterName", ext.master_name.is_some()),
        ("nodes", ext.nodes.is_some()),
        (
            "sentinelPasswordSecretRef",
            ext.sentinel_password_secret_ref.is_some(),
        ),
    ];
    let (needed, allowed): (&[&'static str], &[&'static str]) = match ext.mode {
        ExternalRedisMode::Standalone => (&["url"], &["url"]),
        ExternalRedisMode::Sentinel => (
            &["sentinels", "masterName"],
            &["sentinels", "masterName", "sentinelPasswordSecretRef"],
        ),
        ExternalRedisMode::Cluster => (&["nodes"], &["nodes"]),
    };
    for field in needed {
        let set = present.iter().any(|(f, set)| f == field && *set);
        let empty_list = match *field {
            "sentinels" => ext.sentinels.as_ref().is_some_and(Vec::is_empty),
            "nodes" => ext.nodes.as_ref().is_some_and(Vec::is_empty),
            _ => false,
        };
        if !set || empty_list {
            return Err(ExternalRedisError::Missing { mode, field });
        }
    }
    if let Some((field, _)) = present.iter().find(|(f, set)| *set && !allowed.contains(f)) {
        return Err(ExternalRedisError::NotForMode { mode, field });
    }
    if ext.mode == ExternalRedisMode::Standalone && ext.tls.is_some_and(|tls| tls) {
        return Err(ExternalRedisError::NotForMode { mode, field: "tls" });
    }
    if let Some(url) = &ext.url {
        let Some(rest) = url
            .strip_prefix("redis://")
            .or_else(|| url.strip_prefix("rediss://"))
        else {
            return Err(ExternalRedisError::UrlScheme);
        };
        let authority = rest.split('/').next().unwrap_or_default();
        if authority.contains('@') {
            return Err(ExternalRedisError::UrlCredentials);
        }
        if authority.is_empty() {
            return Err(ExternalRedisError::Missing {
                mode,
                field: "a host in url",
            });
        }
    }
    for (field, list) in [("sentinels", &ext.sentinels), ("nodes", &ext.nodes)] {
        for value in list.iter().flatten() {
            if !is_host_port(value) {
                return Err(ExternalRedisError::Address {
                    field,
                    value: value.clone(),
                });
            }
        }
    }
    if let Some(name) = &ext.master_name
        && (name.is_empty()
            || name.len() > 128
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
    {
        return Err(ExternalRedisError::MasterName(name.clone()));
    }
    Ok(())
}

/// `host:port` with a non-empty host and a port in 1..=65535 (IPv6 in brackets).
fn is_host_port(text: &str) -> bool {
    let Some((host, port)) = text.rsplit_once(':') else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    !host.is_empty()
        && !host.contains(|c: char| c.is_whitespace() || c == ',' || c == '@' || c == '/')
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// The chat server's Redis settings for an external Redis (already [`validate`]d).
pub(super) fn external_redis_env(ext: &ExternalRedisSpec) -> Vec<EnvVar> {
    let mut vars = Vec::new();
    match ext.mode {
        ExternalRedisMode::Standalone => {
            vars.push(env("HUBBUB_REDIS_URL", ext.url.clone().unwrap_or_default()));
        }
        ExternalRedisMode::Sentinel => {
            vars.push(env(
                "HUBBUB_REDIS_SENTINELS",
                ext.sentinels.clone().unwrap_or_default().join(","),
            ));
            vars.push(env(
                "HUBBUB_REDIS_SENTINEL_MASTER",
                ext.master_name.clone().unwrap_or_default(),
            ));
        }
        ExternalRedisMode::Cluster => {
            vars.push(env(
                "HUBBUB_REDIS_CLUSTER_NODES",
                ext.nodes.clone().unwrap_or_default().join(","),
            ));
        }
    }
    if let Some(secret) = &ext.password_secret_ref {
        vars.push(secret_key_env(
            "HUBBUB_REDIS_PASSWORD",
            &secret.name,
            &secret.key,
        ));
    }
    if let Some(secret) = &ext.sentinel_password_secret_ref {
        vars.push(secret_key_env(
            "HUBBUB_REDIS_SENTINEL_PASSWORD",
            &secret.name,
            &secret.key,
        ));
    }
    if ext.mode != ExternalRedisMode::Standalone && ext.tls == Some(true) {
        vars.push(env("HUBBUB_REDIS_TLS", "true"));
    }
    vars
}

/// A one-line description for Events and conditions, without any address or credential.
pub fn describe(ext: &ExternalRedisSpec) -> String {
    match ext.mode {
        ExternalRedisMode::Standalone => "external Redis (standalone)".to_string(),
        ExternalRedisMode::Sentinel => format!(
            "external Redis (sentinel, master {})",
            ext.master_name.as_deref().unwrap_or_default()
        ),
        ExternalRedisMode::Cluster => "external Redis (cluster)".to_string(),
    }
}

#[cfg(test)]
mod tests {
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

    fn build_room(spec: Value) -> Result<Children, BuildError> {
        build(&room(spec), &Images::default())
    }

    /// The server container's environment as name -> `value` or `valueFrom`.
    fn env_of(children: &Children) -> BTreeMap<String, Value> {
        let dep = serde_json::to_value(&children.deployment).expect("json");
        dep["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .iter()
            .map(|e| {
                let name = e["name"].as_str().expect("name").to_string();
                let v = e.get("value").cloned().unwrap_or(e["valueFrom"].clone());
                (name, v)
            })
            .collect()
    }

    fn secret(name: &str, key: &str) -> Value {
        json!({"secretKeyRef": {"name": name, "key": key, "optional": false}})
    }

    const REDIS_VARS: &[&str] = &[
        "HUBBUB_REDIS_URL",
        "HUBBUB_REDIS_PASSWORD",
        "HUBBUB_REDIS_SENTINELS",
        "HUBBUB_REDIS_SENTINEL_MASTER",
        "HUBBUB_REDIS_SENTINEL_PASSWORD",
        "HUBBUB_REDIS_CLUSTER_NODES",
        "HUBBUB_REDIS_TLS",
    ];

    /// Only the Redis variables, to compare a mode's settings as a whole.
    fn redis_env(children: &Children) -> BTreeMap<String, Value> {
        env_of(children)
            .into_iter()
            .filter(|(k, _)| REDIS_VARS.contains(&k.as_str()))
            .collect()
    }

    #[test]
    fn sentinel_mode_sets_the_sentinels_the_master_and_both_passwords_from_secrets() {
        let c = build_room(json!({"redis": {"external": {
            "mode": "sentinel",
            "sentinels": ["s-0.sentinel:26379", "s-1.sentinel:26379", "s-2.sentinel:26379"],
            "masterName": "mymaster",
            "passwordSecretRef": {"name": "auth", "key": "password"},
            "sentinelPasswordSecretRef": {"name": "auth", "key": "sentinel-password"},
            "tls": true
        }}}))
        .expect("build");
        assert!(
            c.redis.is_none() && c.redis_service.is_none(),
            "no Redis of our own"
        );
        assert_eq!(
            redis_env(&c),
            BTreeMap::from([
                (
                    "HUBBUB_REDIS_SENTINELS".to_string(),
                    json!("s-0.sentinel:26379,s-1.sentinel:26379,s-2.sentinel:26379")
                ),
                (
                    "HUBBUB_REDIS_SENTINEL_MASTER".to_string(),
                    json!("mymaster")
                ),
                (
                    "HUBBUB_REDIS_PASSWORD".to_string(),
                    secret("auth", "password")
                ),
                (
                    "HUBBUB_REDIS_SENTINEL_PASSWORD".to_string(),
                    secret("auth", "sentinel-password")
                ),
                ("HUBBUB_REDIS_TLS".to_string(), json!("true")),
            ])
        );
    }

    #[test]
    fn cluster_mode_sets_the_seed_nodes_and_no_url() {
        let c = build_room(json!({"redis": {"external": {
            "mode": "cluster",
            "nodes": ["redis-0.redis:6379", "[fd00::1]:6379"],
            "passwordSecretRef": {"name": "cluster-auth"}
        }}}))
        .expect("build");
        assert!(c.redis.is_none() && c.redis_service.is_none());
        assert_eq!(
            redis_env(&c),
            BTreeMap::from([
                (
                    "HUBBUB_REDIS_CLUSTER_NODES".to_string(),
                    json!("redis-0.redis:6379,[fd00::1]:6379")
                ),
                (
                    "HUBBUB_REDIS_PASSWORD".to_string(),
                    secret("cluster-auth", "password")
                ),
            ])
        );
    }

    #[test]
    fn standalone_mode_sets_the_url_and_no_password_without_a_secret() {
        let c = build_room(json!({"redis": {"external": {
            "mode": "standalone", "url": "rediss://cache.example.net:6380/2"
        }}}))
        .expect("build");
        assert!(c.redis.is_none() && c.redis_service.is_none());
        assert_eq!(
            redis_env(&c),
            BTreeMap::from([(
                "HUBBUB_REDIS_URL".to_string(),
                json!("rediss://cache.example.net:6380/2")
            )])
        );
        // the rest of the server's settings are untouched
        let env = env_of(&c);
        assert_eq!(env["HUBBUB_BIND"], json!("0.0.0.0:8080"));
        assert_eq!(env["HUBBUB_HISTORY_SIZE"], json!("10"));
    }

    #[test]
    fn no_password_value_reaches_the_pod_spec_only_secret_references() {
        let c = build_room(json!({"redis": {"external": {
            "mode": "sentinel", "sentinels": ["s:26379"], "masterName": "m",
            "passwordSecretRef": {"name": "auth"},
            "sentinelPasswordSecretRef": {"name": "auth", "key": "sentinel"}
        }}}))
        .expect("build");
        let dep = serde_json::to_value(&c.deployment).expect("json");
        let container = &dep["spec"]["template"]["spec"]["containers"][0];
        assert!(container.get("args").is_none(), "no settings in args");
        for var in container["env"].as_array().expect("env") {
            let name = var["name"].as_str().expect("name");
            if name.contains("PASSWORD") {
                assert!(var.get("value").is_none(), "{name} carries a value: {var}");
                assert!(var["valueFrom"]["secretKeyRef"].is_object(), "{var}");
            }
        }
    }

    #[test]
    fn changing_the_external_redis_rolls_the_pods() {
        let sentinel = |master: &str| {
            json!({"redis": {"external": {
                "mode": "sentinel", "sentinels": ["s:26379"], "masterName": master
            }}})
        };
        let hash = |spec| config_hash(&room(spec), "img");
        assert_ne!(hash(sentinel("a")), hash(sentinel("b")));
        assert_ne!(hash(sentinel("a")), hash(json!({})));
    }

    #[test]
    fn invalid_external_specs_are_refused_with_the_field_named() {
        let cases = [
            (
                json!({"mode": "sentinel", "sentinels": ["s:26379"]}),
                "spec.redis.external: mode sentinel needs masterName",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "sentinel", "masterName": "m"}),
                "spec.redis.external: mode sentinel needs sentinels",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "sentinel", "sentinels": [], "masterName": "m"}),
                "spec.redis.external: mode sentinel needs sentinels",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "cluster"}),
                "spec.redis.external: mode cluster needs nodes",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "standalone"}),
                "spec.redis.external: mode standalone needs url",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "cluster", "nodes": ["n:6379"], "url": "redis://r:6379"}),
                "spec.redis.external: url does not apply to mode cluster",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "standalone", "url": "redis://r:6379", "masterName": "m"}),
                "spec.redis.external: masterName does not apply to mode standalone",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "cluster", "nodes": ["n:6379"],
                       "sentinelPasswordSecretRef": {"name": "s"}}),
                "spec.redis.external: sentinelPasswordSecretRef does not apply to mode cluster",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "standalone", "url": "redis://r:6379", "tls": true}),
                "spec.redis.external: tls does not apply to mode standalone",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "standalone", "url": "redis://user:pw@r:6379/0"}),
                "spec.redis.external: url must not carry credentials: put the password in a Secret and name it in passwordSecretRef",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "standalone", "url": "http://r:6379"}),
                "spec.redis.external: url must start with redis:// or rediss://",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "cluster", "nodes": ["n:6379", "m"]}),
                "spec.redis.external: nodes: \"m\" is not host:port",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "sentinel", "sentinels": ["s:0"], "masterName": "m"}),
                "spec.redis.external: sentinels: \"s:0\" is not host:port",
                "InvalidExternalRedis",
            ),
            (
                json!({"mode": "sentinel", "sentinels": ["s:26379"], "masterName": "my master"}),
                "spec.redis.external: masterName \"my master\" must be 1 to 128 letters, digits, '.', '_' or '-'",
                "InvalidExternalRedis",
            ),
        ];
        for (external, message, reason) in cases {
            let err = build_room(json!({"redis": {"external": external.clone()}}))
                .expect_err(&format!("{external} must be refused"));
            assert_eq!(err.to_string(), message, "{external}");
            assert_eq!(err.reason(), reason, "{external}");
        }
    }

    #[test]
    fn external_beside_the_bundled_redis_is_a_conflict() {
        let external = json!({"mode": "standalone", "url": "redis://r:6379/0"});
        for (field, value) in [
            ("image", json!("redis:7.4")),
            ("resources", json!({"requests": {"cpu": "1"}})),
            ("storage", json!({"size": "1Gi"})),
            ("existingSecret", json!({"name": "pw"})),
        ] {
            let err = build_room(json!({"redis": {"external": external, field: value}}))
                .expect_err(field);
            assert_eq!(
                err.to_string(),
                format!(
                    "spec.redis.external: cannot be combined with spec.redis.{field}, which configures the bundled Redis; remove one of them"
                )
            );
            assert_eq!(err.reason(), "ExternalRedisConflict");
        }
    }

    #[test]
    fn the_crd_refuses_in_env_every_setting_the_operator_manages() {
        let crd = serde_json::to_value(crate::crd::crd()).expect("crd");
        let rule = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
            ["properties"]["env"]["x-kubernetes-validations"][0]["rule"]
            .as_str()
            .expect("env rule")
            .to_string();
        for name in MANAGED_ENV {
            assert!(rule.contains(&format!("'{name}'")), "CEL rule lacks {name}");
        }
        assert_eq!(rule.matches("'HUBBUB_").count(), MANAGED_ENV.len());
        for name in REDIS_VARS {
            assert!(MANAGED_ENV.contains(name), "{name} is not managed");
        }
    }
}
