//! Which Redis deployment hubbub talks to ([`RedisTopology`]): one server by URL, a master
//! found through Sentinels, or a Redis Cluster found from seed nodes; the `fred`
//! configuration for each; and the start-up probe ([`probe`]) that turns the mistakes an
//! operator can make with the last two (Sentinels that answer nothing, a master name they do
//! not know, a seed that is not in cluster mode) into an error naming the setting, instead
//! of an endless reconnection loop.
//!
//! It owns no connection of its own beyond the probe's short-lived ones; `link.rs` builds
//! its clients from [`RedisTopology::fred_config`].

use std::fmt;
use std::time::Duration;

use fred::prelude::{ClientLike, Config, ServerConfig};
use fred::types::Value as RedisValue;
use fred::types::config::{Server, TlsConnector};
use fred::types::{ClusterHash, CustomCommand};

use crate::settings::ClusterError;

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

    /// The `fred` configuration (password applied when the URL carries none).
    pub fn fred_config(&self, password: Option<&str>) -> Result<Config, ClusterError> {
        let mut config = match self {
            Self::Standalone { url } => {
                Config::from_url(url).map_err(|e| ClusterError::Config(e.to_string()))?
            }
            Self::Sentinel {
                sentinels,
                master,
                sentinel_password,
                tls,
            } => Config {
                server: ServerConfig::Sentinel {
                    hosts: sentinels.iter().map(NodeAddr::server).collect(),
                    service_name: master.clone(),
                    username: None,
                    password: sentinel_password.clone(),
                },
                tls: tls_config(*tls)?,
                ..Config::default()
            },
            Self::Cluster { nodes, tls } => Config {
                server: ServerConfig::Clustered {
                    hosts: nodes.iter().map(NodeAddr::server).collect(),
                    policy: Default::default(),
                },
                tls: tls_config(*tls)?,
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

fn tls_config(tls: bool) -> Result<Option<fred::types::config::TlsConfig>, ClusterError> {
    if !tls {
        return Ok(None);
    }
    let connector =
        TlsConnector::default_rustls().map_err(|e| ClusterError::Config(format!("tls: {e}")))?;
    Ok(Some(connector.into()))
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
    /// What is wrong, naming the nodes asked and what they said.
    pub reason: String,
}

/// How long [`probe`] keeps asking nodes that do not answer before it gives up.
pub const PROBE_WINDOW: Duration = Duration::from_secs(10);

/// Checks, before hubbub starts serving, that the Sentinels or seed nodes are what the
/// settings say: at least one Sentinel answers and knows the master, or at least one seed
/// answers and is in cluster mode. Nodes that do not answer are asked again (every
/// 500 ms) for `window`; a definite wrong answer fails at once. A standalone URL is not
/// probed: that mode keeps retrying in the background, as it always has.
pub async fn probe(
    topology: &RedisTopology,
    password: Option<&str>,
    connect_timeout: Duration,
    window: Duration,
) -> Result<String, ProbeError> {
    let deadline = tokio::time::Instant::now() + window;
    loop {
        let mut failures = Vec::new();
        match topology {
            RedisTopology::Standalone { .. } => return Ok(topology.describe()),
            RedisTopology::Sentinel {
                sentinels,
                master,
                sentinel_password,
                tls,
            } => {
                for node in sentinels {
                    let args = vec!["get-master-addr-by-name".to_owned(), master.clone()];
                    match ask(
                        node,
                        sentinel_password.as_deref(),
                        *tls,
                        "SENTINEL",
                        args,
                        connect_timeout,
                    )
                    .await
                    {
                        Ok(RedisValue::Array(addr)) if addr.len() == 2 => {
                            let host = addr[0].as_bytes_str().unwrap_or_default();
                            let port = addr[1].as_bytes_str().unwrap_or_default();
                            return Ok(format!(
                                "master {master:?} at {host}:{port} (asked sentinel {node})"
                            ));
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
                        Err(e) if e.contains("unknown command") || e.contains("ERR unknown") => {
                            return Err(ProbeError {
                                setting: "--redis-sentinels",
                                reason: format!("{node} is not a Sentinel ({e})"),
                            });
                        }
                        Err(e) => failures.push(format!("{node}: {e}")),
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
            RedisTopology::Cluster { nodes, tls } => {
                for node in nodes {
                    match ask(
                        node,
                        password,
                        *tls,
                        "CLUSTER",
                        vec!["INFO".to_owned()],
                        connect_timeout,
                    )
                    .await
                    {
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
                        Err(e) if e.contains("cluster support disabled") => {
                            return Err(ProbeError {
                                setting: "--redis-cluster-nodes",
                                reason: format!(
                                    "{node} is not in cluster mode (it answered: {e}); use --redis-url for a single Redis"
                                ),
                            });
                        }
                        Err(e) => failures.push(format!("{node}: {e}")),
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

/// One command on a short-lived connection to exactly `node`; the error as text.
async fn ask(
    node: &NodeAddr,
    password: Option<&str>,
    tls: bool,
    command: &'static str,
    args: Vec<String>,
    timeout: Duration,
) -> Result<RedisValue, String> {
    let config = Config {
        server: ServerConfig::Centralized {
            server: node.server(),
        },
        password: password.map(str::to_owned),
        tls: tls_config(tls).map_err(|e| e.to_string())?,
        fail_fast: true,
        ..Config::default()
    };
    let client = fred::clients::Client::new(config, None, None, None);
    let work = async {
        client.init().await.map_err(|e| e.to_string())?;
        client
            .custom::<RedisValue, _>(
                CustomCommand::new_static(command, ClusterHash::Random, false),
                args,
            )
            .await
            .map_err(|e| e.to_string())
    };
    let result = tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")));
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
        let c = t.fred_config(Some("data")).unwrap();
        assert!(c.server.is_sentinel());
        assert_eq!(c.password.as_deref(), Some("data"));
        assert!(!c.fail_fast);
        let t = RedisTopology::Cluster {
            nodes: NodeAddr::parse_list("127.0.0.1:7000").unwrap(),
            tls: true,
        };
        let c = t.fred_config(None).unwrap();
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
