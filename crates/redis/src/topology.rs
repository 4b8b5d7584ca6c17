//! Which Redis deployment hubbub talks to ([`RedisTopology`]): one server by URL, a master
//! found through Sentinels, or a Redis Cluster found from seed nodes; the `fred`
//! configuration for each; and the start-up probe ([`probe`]) that turns the mistakes an
//! operator can make (Sentinels that answer nothing, a master name they do not know, a seed
//! that is not in cluster mode, a password a Sentinel or data node refuses, a TLS
//! certificate nothing trusts) into an error naming the setting, instead of an endless
//! reconnection loop.
//!
//! It owns no connection of its own beyond the probe's short-lived ones; `link.rs` builds
//! its clients from [`RedisTopology::fred_config`].

use std::fmt;
use std::time::Duration;

use fred::error::ErrorKind;
use fred::prelude::{ClientLike, Config, ServerConfig};
use fred::types::Value as RedisValue;
use fred::types::config::{Server, TlsConfig};
use fred::types::{ClusterHash, CustomCommand};

use crate::settings::{ClusterError, RedisSettings};

/// `host:port` of one Sentinel or cluster seed node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddr {
    /// Host name or IP address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl NodeAddr {
    /// Parses `host:port` (`[v6]:port` for IPv6 literals).
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not host:port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text:?} has no host"));
        }
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("{text:?} has no valid port"))?;
        Ok(Self {
            host: host.to_owned(),
            port,
        })
    }

    /// Parses a comma-separated list of `host:port`; at least one.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let nodes = text
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(Self::parse)
            .collect::<Result<Vec<_>, _>>()?;
        if nodes.is_empty() {
            return Err("no host:port given".into());
        }
        Ok(nodes)
    }

    fn server(&self) -> Server {
        Server::new(self.host.clone(), self.port)
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The Redis deployment.
#[derive(Debug, Clone)]
pub enum RedisTopology {
    /// One server (`--redis-url`): `redis://[:password@]host:port/db` or `rediss://...`.
    Standalone {
        /// The URL.
        url: String,
    },
    /// A master watched by Sentinels (`--redis-sentinels`, `--redis-sentinel-master`):
    /// the client asks the Sentinels for the master's address on every (re)connection, so
    /// it follows a failover by reconnecting.
    Sentinel {
        /// The Sentinels.
        sentinels: Vec<NodeAddr>,
        /// The master's name in the Sentinels' configuration.
        master: String,
        /// Password of the Sentinels themselves (`--redis-sentinel-password`), when they
        /// require one; the data nodes use [`crate::link::RedisSettings::password`].
        sentinel_password: Option<String>,
        /// TLS to the Sentinels and the data nodes (`--redis-tls`).
        tls: bool,
    },
    /// A Redis Cluster (`--redis-cluster-nodes`): slots discovered from any seed node,
    /// followed through MOVED redirections and failovers; cross-replica traffic over
    /// sharded pub/sub.
    Cluster {
        /// The seed nodes.
        nodes: Vec<NodeAddr>,
        /// TLS to every node (`--redis-tls`).
        tls: bool,
    },
}

impl RedisTopology {
    /// A short name for logs and `/readyz`: `standalone`, `sentinel` or `cluster`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Standalone { .. } => "standalone",
            Self::Sentinel { .. } => "sentinel",
            Self::Cluster { .. } => "cluster",
        }
    }

    /// Whether cross-replica traffic uses sharded pub/sub (SPUBLISH/SSUBSCRIBE).
    pub fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster { .. })
    }

    /// What the start-up log says about where Redis is, without any password.
    pub fn describe(&self) -> String {
        match self {
            Self::Standalone { url } => redact_url(url),
            Self::Sentinel {
                sentinels, master, ..
            } => format!("master {master:?} via sentinels {}", join(sentinels)),
            Self::Cluster { nodes, .. } => format!("cluster seeds {}", join(nodes)),
        }
    }

    /// Whether the connections use TLS: a `rediss://` URL, or `--redis-tls`.
    pub fn uses_tls(&self) -> bool {
        match self {
            Self::Standalone { url } => url.starts_with("rediss://"),
            Self::Sentinel { tls, .. } | Self::Cluster { tls, .. } => *tls,
        }
    }

    /// The `fred` configuration: `password` applied when the URL carries none; with TLS,
    /// the roots of [`crate::tls::tls_config`] (the system's plus `ca_pem`), for the
    /// Sentinels and the data nodes alike.
    pub fn fred_config(
        &self,
        password: Option<&str>,
        ca_pem: Option<&str>,
    ) -> Result<Config, ClusterError> {
        let tls = if self.uses_tls() {
            Some(crate::tls::tls_config(ca_pem)?)
        } else {
            None
        };
        let mut config = match self {
            Self::Standalone { url } => {
                // fred would give a `rediss://` URL its own TLS settings (the system's
                // roots only): parse it as `redis://` and put ours in.
                let plain = match url.strip_prefix("rediss://") {
                    Some(rest) => format!("redis://{rest}"),
                    None => url.clone(),
                };
                let mut config =
                    Config::from_url(&plain).map_err(|e| ClusterError::Config(e.to_string()))?;
                config.tls = tls;
                config
            }
            Self::Sentinel {
                sentinels,
                master,
                sentinel_password,
                ..
            } => Config {
                server: ServerConfig::Sentinel {
                    hosts: sentinels.iter().map(NodeAddr::server).collect(),
                    service_name: master.clone(),
                    username: None,
                    password: sentinel_password.clone(),
                },
                tls,
                ..Config::default()
            },
            Self::Cluster { nodes, .. } => Config {
                server: ServerConfig::Clustered {
                    hosts: nodes.iter().map(NodeAddr::server).collect(),
                    policy: Default::default(),
                },
                tls,
                ..Config::default()
            },
        };
        if let Some(password) = password
            && config.password.is_none()
        {
            config.password = Some(password.to_owned());
        }
        // Keep retrying the first connection too, instead of failing start-up.
        config.fail_fast = false;
        Ok(config)
    }
}

fn join(nodes: &[NodeAddr]) -> String {
    nodes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The URL with any password replaced by `***`.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// A start-up setting that cannot work, with the flag to blame.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct ProbeError {
    /// The flag, e.g. `--redis-sentinels`.
    pub setting: &'static str,
    /// What is wrong, naming the nodes asked and what they said (never a password).
    pub reason: String,
}

/// How long [`probe`] keeps asking nodes that do not answer before it gives up.
pub const PROBE_WINDOW: Duration = Duration::from_secs(10);

/// Why one node did not give the answer asked for.
#[derive(Debug)]
enum Refusal {
    /// It refused the password, wanted one, or was given one it has no use for.
    Password(String),
    /// The TLS handshake failed.
    Tls(String),
    /// Anything else: not reachable, no answer in time, an error reply.
    Other(String),
}

impl Refusal {
    fn of(error: &fred::error::Error) -> Self {
        let text = error.to_string();
        let password = *error.kind() == ErrorKind::Auth
            || ["WRONGPASS", "NOAUTH", "without any password configured"]
                .iter()
                .any(|needle| text.contains(needle));
        if password {
            Self::Password(text)
        } else if *error.kind() == ErrorKind::Tls
            || crate::tls::is_certificate_error(&text)
            || text.contains("CorruptMessage")
            || text.contains("InvalidContentType")
        {
            Self::Tls(text)
        } else {
            Self::Other(text)
        }
    }

    fn text(&self) -> &str {
        match self {
            Self::Password(t) | Self::Tls(t) | Self::Other(t) => t,
        }
    }
}

/// What the probe knows to turn a refusal into an error naming the setting.
struct Blame<'a> {
    /// Whether `--redis-ca-file` was given.
    ca_given: bool,
    /// The setting that turns TLS on: `--redis-url` (`rediss://`) or `--redis-tls`.
    tls_setting: &'static str,
    /// The node's role and address, e.g. `sentinel 127.0.0.1:26379`.
    node: &'a str,
}

impl Blame<'_> {
    /// A password refusal of a node whose password is `setting` (`given`: whether one was set).
    fn password(&self, setting: &'static str, env: &str, given: bool, said: &str) -> ProbeError {
        let reason = if given {
            format!("{} refused the password ({said})", self.node)
        } else {
            format!(
                "{} requires a password ({said}); set {setting} ({env})",
                self.node
            )
        };
        ProbeError { setting, reason }
    }

    /// A failed TLS handshake: an untrusted certificate blames `--redis-ca-file`.
    fn tls(&self, said: &str) -> ProbeError {
        if crate::tls::is_certificate_error(said) {
            let roots = if self.ca_given {
                "neither the system's roots nor --redis-ca-file trust it"
            } else {
                "the system's roots do not trust it; give the CA that signed it with --redis-ca-file (HUBBUB_REDIS_CA_FILE)"
            };
            ProbeError {
                setting: "--redis-ca-file",
                reason: format!(
                    "the TLS certificate of {} is not accepted ({said}): {roots}",
                    self.node
                ),
            }
        } else {
            ProbeError {
                setting: self.tls_setting,
                reason: format!(
                    "the TLS handshake with {} failed ({said}); does it listen for TLS on that port?",
                    self.node
                ),
            }
        }
    }
}

/// Checks, before hubbub starts serving, that Redis is what the settings say: at least
/// one Sentinel answers and knows the master, or at least one seed answers and is in
/// cluster mode. Nodes that do not answer are asked again (every 500 ms) for `window`; a
/// definite wrong answer fails at once: a node that refuses the password (naming
/// `--redis-sentinel-password` for a Sentinel, `--redis-password` for a data node) or
/// whose TLS certificate is not trusted (naming `--redis-ca-file`). The master a Sentinel
/// names is asked too, for its password and certificate. A standalone URL is asked once:
/// a refused password or certificate fails; a Redis that does not answer yet is retried
/// in the background, as it always has been.
pub async fn probe(settings: &RedisSettings, window: Duration) -> Result<String, ProbeError> {
    let topology = &settings.topology;
    let password = settings.password.as_deref();
    let timeout = settings.connect_timeout;
    let ca_pem = settings.ca_pem.as_deref();
    let tls = if topology.uses_tls() {
        Some(crate::tls::tls_config(ca_pem).map_err(|e| ProbeError {
            setting: "--redis-ca-file",
            reason: e.to_string(),
        })?)
    } else {
        None
    };
    let tls_setting = match topology {
        RedisTopology::Standalone { .. } => "--redis-url",
        _ => "--redis-tls",
    };
    let deadline = tokio::time::Instant::now() + window;
    loop {
        let mut failures = Vec::new();
        match topology {
            RedisTopology::Standalone { url } => {
                let mut config =
                    topology
                        .fred_config(password, ca_pem)
                        .map_err(|e| ProbeError {
                            setting: "--redis-url",
                            reason: e.to_string(),
                        })?;
                config.fail_fast = true;
                let node = format!("Redis at {}", topology.describe());
                let blame = Blame {
                    ca_given: ca_pem.is_some(),
                    tls_setting,
                    node: &node,
                };
                let in_url = url_has_password(url);
                return match ask(config, "PING", Vec::new(), timeout).await {
                    Ok(_) => Ok(format!("{} answered", topology.describe())),
                    Err(Refusal::Password(said)) if in_url => {
                        Err(blame.password("--redis-url", "HUBBUB_REDIS_URL", true, &said))
                    }
                    Err(Refusal::Password(said)) => Err(blame.password(
                        "--redis-password",
                        "HUBBUB_REDIS_PASSWORD",
                        password.is_some(),
                        &said,
                    )),
                    Err(Refusal::Tls(said)) => Err(blame.tls(&said)),
                    Err(Refusal::Other(said)) => Ok(format!(
                        "{} does not answer yet ({said}{}); retried in the background",
                        topology.describe(),
                        if topology.uses_tls() {
                            "; does it listen for TLS on that port?"
                        } else {
                            ""
                        }
                    )),
                };
            }
            RedisTopology::Sentinel {
                sentinels,
                master,
                sentinel_password,
                ..
            } => {
                for node in sentinels {
                    let args = vec!["get-master-addr-by-name".to_owned(), master.clone()];
                    let config = node_config(node, sentinel_password.as_deref(), &tls);
                    let who = format!("sentinel {node}");
                    let blame = Blame {
                        ca_given: ca_pem.is_some(),
                        tls_setting,
                        node: &who,
                    };
                    match ask(config, "SENTINEL", args, timeout).await {
                        Ok(RedisValue::Array(addr)) if addr.len() == 2 => {
                            let host = addr[0].as_bytes_str().unwrap_or_default().to_string();
                            let port = addr[1].as_bytes_str().unwrap_or_default().to_string();
                            let found = format!(
                                "master {master:?} at {host}:{port} (asked sentinel {node})"
                            );
                            let Ok(port) = port.parse::<u16>() else {
                                return Ok(found);
                            };
                            // The master itself: a wrong data-node password or an untrusted
                            // certificate would otherwise only show as endless reconnections.
                            let at = NodeAddr { host, port };
                            let who =
                                format!("master {master:?} at {at} (named by sentinel {node})");
                            let blame = Blame {
                                ca_given: ca_pem.is_some(),
                                tls_setting,
                                node: &who,
                            };
                            let config = node_config(&at, password, &tls);
                            return match ask(config, "PING", Vec::new(), timeout).await {
                                Ok(_) => Ok(found),
                                Err(Refusal::Password(said)) => Err(blame.password(
                                    "--redis-password",
                                    "HUBBUB_REDIS_PASSWORD",
                                    password.is_some(),
                                    &said,
                                )),
                                Err(Refusal::Tls(said)) => Err(blame.tls(&said)),
                                // A master that does not answer may be failing over: the
                                // link follows the Sentinels once it is elected.
                                Err(Refusal::Other(said)) => {
                                    Ok(format!("{found}; it does not answer yet ({said})"))
                                }
                            };
                        }
                        Ok(RedisValue::Null) | Ok(RedisValue::Array(_)) => {
                            return Err(ProbeError {
                                setting: "--redis-sentinel-master",
                                reason: format!(
                                    "sentinel {node} knows no master named {master:?} (check `sentinel monitor` in its configuration)"
                                ),
                            });
                        }
                        Ok(other) => failures.push(format!("{node}: unexpected reply {other:?}")),
                        Err(Refusal::Password(said)) => {
                            return Err(blame.password(
                                "--redis-sentinel-password",
                                "HUBBUB_REDIS_SENTINEL_PASSWORD",
                                sentinel_password.is_some(),
                                &said,
                            ));
                        }
                        Err(Refusal::Tls(said)) => return Err(blame.tls(&said)),
                        Err(Refusal::Other(e))
                            if e.contains("unknown command") || e.contains("ERR unknown") =>
                        {
                            return Err(ProbeError {
                                setting: "--redis-sentinels",
                                reason: format!("{node} is not a Sentinel ({e})"),
                            });
                        }
                        Err(other) => failures.push(format!("{node}: {}", other.text())),
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ProbeError {
                        setting: "--redis-sentinels",
                        reason: format!(
                            "no Sentinel answered within {window:?} ({})",
                            failures.join("; ")
                        ),
                    });
                }
            }
            RedisTopology::Cluster { nodes, .. } => {
                for node in nodes {
                    let config = node_config(node, password, &tls);
                    let who = format!("cluster seed {node}");
                    let blame = Blame {
                        ca_given: ca_pem.is_some(),
                        tls_setting,
                        node: &who,
                    };
                    match ask(config, "CLUSTER", vec!["INFO".to_owned()], timeout).await {
                        Ok(info) => {
                            let text = info.as_bytes_str().unwrap_or_default().to_string();
                            let state = text
                                .lines()
                                .find_map(|l| l.strip_prefix("cluster_state:"))
                                .unwrap_or("?")
                                .trim()
                                .to_owned();
                            return Ok(format!(
                                "cluster state {state} (asked seed {node}); {}",
                                topology.describe()
                            ));
                        }
                        Err(Refusal::Other(e)) if e.contains("cluster support disabled") => {
                            return Err(ProbeError {
                                setting: "--redis-cluster-nodes",
                                reason: format!(
                                    "{node} is not in cluster mode (it answered: {e}); use --redis-url for a single Redis"
                                ),
                            });
                        }
                        Err(Refusal::Password(said)) => {
                            return Err(blame.password(
                                "--redis-password",
                                "HUBBUB_REDIS_PASSWORD",
                                password.is_some(),
                                &said,
                            ));
                        }
                        Err(Refusal::Tls(said)) => return Err(blame.tls(&said)),
                        Err(other) => failures.push(format!("{node}: {}", other.text())),
                    }
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(ProbeError {
                        setting: "--redis-cluster-nodes",
                        reason: format!(
                            "no seed node answered within {window:?} ({})",
                            failures.join("; ")
                        ),
                    });
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a `redis://` URL carries a password (`redis://[user]:password@host`).
fn url_has_password(url: &str) -> bool {
    let Some(rest) = url.split_once("://").map(|(_, rest)| rest) else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.contains(':'))
}

/// A one-connection configuration for exactly `node`, failing at the first error.
fn node_config(node: &NodeAddr, password: Option<&str>, tls: &Option<TlsConfig>) -> Config {
    Config {
        server: ServerConfig::Centralized {
            server: node.server(),
        },
        password: password.map(str::to_owned),
        tls: tls.clone(),
        fail_fast: true,
        ..Config::default()
    }
}

/// One command on a short-lived connection made with `config`.
async fn ask(
    config: Config,
    command: &'static str,
    args: Vec<String>,
    timeout: Duration,
) -> Result<RedisValue, Refusal> {
    let client = fred::clients::Client::new(config, None, None, None);
    let no_answer = || Refusal::Other(format!("no answer within {timeout:?}"));
    let deadline = tokio::time::Instant::now() + timeout;
    let result = match tokio::time::timeout_at(deadline, client.init()).await {
        // A failed connection has stopped the client already: nothing to quit.
        Ok(Err(e)) => return Err(Refusal::of(&e)),
        Ok(Ok(_)) => {
            let command = CustomCommand::new_static(command, ClusterHash::Random, false);
            match tokio::time::timeout_at(deadline, client.custom::<RedisValue, _>(command, args))
                .await
            {
                Ok(reply) => reply.map_err(|e| Refusal::of(&e)),
                Err(_) => Err(no_answer()),
            }
        }
        Err(_) => Err(no_answer()),
    };
    let _ = tokio::time::timeout(Duration::from_millis(200), client.quit()).await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lists_parse_and_name_the_bad_entry() {
        let nodes = NodeAddr::parse_list("127.0.0.1:26379, redis-1:26380,[::1]:7000").unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[1].host, "redis-1");
        assert_eq!(nodes[2].host, "::1");
        assert_eq!(nodes[2].to_string(), "[::1]:7000");
        assert!(NodeAddr::parse_list("").is_err());
        let e = NodeAddr::parse_list("a:1,b").unwrap_err();
        assert!(e.contains("\"b\""), "{e}");
        assert!(NodeAddr::parse("a:0").is_err());
        assert!(NodeAddr::parse(":1").is_err());
        assert!(NodeAddr::parse("a:99999").is_err());
    }

    #[test]
    fn sentinel_and_cluster_configs() {
        let t = RedisTopology::Sentinel {
            sentinels: NodeAddr::parse_list("127.0.0.1:1,127.0.0.1:2").unwrap(),
            master: "mymaster".into(),
            sentinel_password: Some("s".into()),
            tls: false,
        };
        let c = t.fred_config(Some("data"), None).unwrap();
        assert!(c.server.is_sentinel());
        assert_eq!(c.password.as_deref(), Some("data"));
        assert!(!c.fail_fast);
        let t = RedisTopology::Cluster {
            nodes: NodeAddr::parse_list("127.0.0.1:7000").unwrap(),
            tls: true,
        };
        let c = t.fred_config(None, None).unwrap();
        assert!(c.server.is_clustered() && c.tls.is_some());
        assert!(t.is_cluster());
    }

    #[test]
    fn descriptions_hide_passwords() {
        let t = RedisTopology::Standalone {
            url: "redis://:s3cret@redis:6379/0".into(),
        };
        assert_eq!(t.describe(), "redis://***@redis:6379/0");
        assert_eq!(
            RedisTopology::Standalone {
                url: "redis://redis:6379".into()
            }
            .describe(),
            "redis://redis:6379"
        );
    }
}
