//! The Socket.IO Admin UI settings (`--admin-*` / `HUBBUB_ADMIN_*`), their start-up
//! checks, and the wiring of `hubbub_socketio::admin` into this server: the engine's
//! counters as `server_stats` reads them and the session store (Redis when configured).
//!
//! Owns no protocol: that is `hubbub_socketio::admin`'s. Does no I/O but reading the
//! host name and the engine's counters.

use std::sync::Arc;

use clap::{Args, ValueEnum};
use prometheus::core::Collector;

use crate::config::ConfigError;
use crate::metrics::Metrics;
use hubbub_engineio::Engine;
use hubbub_socketio::admin::protocol::EngineReading;
use hubbub_socketio::admin::{AdminAuth, AdminMode, AdminSettings, EngineCounters};

/// Which events the dashboard is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AdminModeFlag {
    /// Aggregated figures only (`server_stats` every 2 s); no per-socket work.
    Production,
    /// Also every socket, room change and event, with their arguments.
    Development,
}

/// The `--admin-*` settings.
#[derive(Debug, Clone, Args)]
pub struct AdminConfig {
    /// Serve the Socket.IO Admin UI's namespace (off by default).
    #[arg(long = "admin-ui", env = "HUBBUB_ADMIN_UI")]
    pub enabled: bool,

    /// Name of the admin namespace; must start with `/` and not be `/` (the chat's).
    #[arg(
        long = "admin-namespace",
        env = "HUBBUB_ADMIN_NAMESPACE",
        default_value = "/admin"
    )]
    pub namespace: String,

    /// Username the dashboard logs in with (required unless --admin-no-auth).
    #[arg(long = "admin-username", env = "HUBBUB_ADMIN_USERNAME")]
    pub username: Option<String>,

    /// bcrypt hash of the dashboard's password, as the Node package takes it
    /// (e.g. from `htpasswd -nbBC 10 '' PASSWORD`; required unless --admin-no-auth).
    #[arg(
        long = "admin-password-hash",
        env = "HUBBUB_ADMIN_PASSWORD_HASH",
        hide_env_values = true
    )]
    pub password_hash: Option<String>,

    /// Run the admin namespace without authentication (logged as a warning).
    #[arg(long = "admin-no-auth", env = "HUBBUB_ADMIN_NO_AUTH")]
    pub no_auth: bool,

    /// Offer only the aggregated views; the dashboard's commands are ignored.
    #[arg(long = "admin-readonly", env = "HUBBUB_ADMIN_READONLY")]
    pub readonly: bool,

    /// `production` (aggregated figures only) or `development` (every socket and event).
    #[arg(
        long = "admin-mode",
        env = "HUBBUB_ADMIN_MODE",
        value_enum,
        default_value_t = AdminModeFlag::Production
    )]
    pub mode: AdminModeFlag,
}

impl AdminConfig {
    /// Checks the settings when the admin UI is on: a namespace name, and credentials
    /// (a username and a valid bcrypt hash) unless authentication is explicitly off.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if !self.namespace.starts_with('/') || self.namespace == "/" {
            return Err(ConfigError {
                setting: "--admin-namespace",
                env: "ADMIN_NAMESPACE",
                reason: format!(
                    "{:?} must start with '/' and not be '/', e.g. /admin",
                    self.namespace
                ),
            });
        }
        let username = self.username.as_deref().filter(|u| !u.is_empty());
        let hash = self.password_hash.as_deref().filter(|h| !h.is_empty());
        if self.no_auth {
            if username.is_some() || hash.is_some() {
                return Err(ConfigError {
                    setting: "--admin-no-auth",
                    env: "ADMIN_NO_AUTH",
                    reason: "contradicts --admin-username/--admin-password-hash: give either \
                             credentials or --admin-no-auth"
                        .into(),
                });
            }
            return Ok(());
        }
        let (Some(_), Some(hash)) = (username, hash) else {
            return Err(ConfigError {
                setting: "--admin-username/--admin-password-hash",
                env: "ADMIN_USERNAME/HUBBUB_ADMIN_PASSWORD_HASH",
                reason: "--admin-ui needs a username and a bcrypt password hash, or \
                         --admin-no-auth (HUBBUB_ADMIN_NO_AUTH=true) to run without authentication"
                    .into(),
            });
        };
        hubbub_socketio::admin::validate_password_hash(hash).map_err(|e| ConfigError {
            setting: "--admin-password-hash",
            env: "ADMIN_PASSWORD_HASH",
            reason: e.to_string(),
        })
    }

    /// The Socket.IO layer's admin settings; `cors_origins` are the server's
    /// `--cors-origins` (only origins listed explicitly may reach the namespace).
    pub fn settings(&self, cors_origins: &[String]) -> AdminSettings {
        let auth = match (&self.username, &self.password_hash) {
            (Some(username), Some(password_hash)) if !self.no_auth => AdminAuth::Basic {
                username: username.clone(),
                password_hash: password_hash.clone(),
            },
            _ => AdminAuth::Disabled,
        };
        AdminSettings {
            namespace: self.namespace.clone(),
            auth,
            readonly: self.readonly,
            mode: match self.mode {
                AdminModeFlag::Production => AdminMode::Production,
                AdminModeFlag::Development => AdminMode::Development,
            },
            hostname: hostname(),
            allowed_origins: cors_origins
                .iter()
                .filter(|o| o.as_str() != "*")
                .cloned()
                .collect(),
        }
    }
}

/// This host's name (the pod name in Kubernetes).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// `server_stats`' figures from the engine and the Engine.IO metrics it already keeps:
/// reading them every 2 s adds no work per packet.
pub struct ServerCounters {
    /// The engine (its open sessions).
    pub engine: Arc<Engine>,
    /// The registry's handles.
    pub metrics: Arc<Metrics>,
}

impl EngineCounters for ServerCounters {
    fn read(&self) -> EngineReading {
        let m = &self.metrics.engine;
        let mut disconnections = Vec::new();
        for family in m.disconnects_total.collect() {
            for metric in family.get_metric() {
                let label = metric
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "reason")
                    .map(|l| l.value().to_owned())
                    .unwrap_or_default();
                disconnections.push((label, metric.get_counter().value() as u64));
            }
        }
        EngineReading {
            clients: self.engine.session_count() as u64,
            polling_clients: m
                .connections_open
                .with_label_values(&["polling"])
                .get()
                .max(0) as u64,
            connections: m.connections_total.get(),
            disconnections,
            packets_in: m.packets_received_total.get(),
            packets_out: m.packets_sent_total.get(),
            bytes_in: m.bytes_received_total.get(),
            bytes_out: m.bytes_sent_total.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::ServerConfig;
    use clap::Parser;

    fn parse(args: &[&str]) -> ServerConfig {
        let mut all = vec!["hubbub-server"];
        all.extend_from_slice(args);
        ServerConfig::try_parse_from(all).unwrap()
    }

    /// bcrypt (cost 4) of `hubbub-admin-pw`.
    const HASH: &str = "$2b$04$zVqnqPCRrVq4j9yrWKrPe.pSAX0rk4svUBjKt75ON/S2TnbhW729q";

    #[test]
    fn off_by_default_and_refused_without_credentials() {
        let c = parse(&[]);
        assert!(!c.admin.enabled);
        assert_eq!(c.admin.namespace, "/admin");
        c.validate().unwrap();
        let e = parse(&["--admin-ui"]).validate().unwrap_err();
        assert_eq!(e.setting, "--admin-username/--admin-password-hash");
        assert!(e.to_string().contains("--admin-no-auth"), "{e}");
        parse(&["--admin-ui", "--admin-no-auth"])
            .validate()
            .unwrap();
        let e = parse(&[
            "--admin-ui",
            "--admin-username",
            "admin",
            "--admin-password-hash",
            "plain",
        ])
        .validate()
        .unwrap_err();
        assert_eq!(e.setting, "--admin-password-hash");
        parse(&[
            "--admin-ui",
            "--admin-username",
            "admin",
            "--admin-password-hash",
            HASH,
            "--admin-mode",
            "development",
        ])
        .validate()
        .unwrap();
        let e = parse(&["--admin-ui", "--admin-no-auth", "--admin-namespace", "/"])
            .validate()
            .unwrap_err();
        assert_eq!(e.setting, "--admin-namespace");
    }

    #[test]
    fn only_listed_origins_reach_the_namespace() {
        let c = parse(&["--admin-ui", "--admin-no-auth"]);
        let s = c
            .admin
            .settings(&["*".into(), "https://admin.socket.io".into()]);
        assert_eq!(s.allowed_origins, vec!["https://admin.socket.io"]);
    }
}
