//! The address other replicas reach this one at, registered in Redis for forwarding
//! requests of this replica's sessions (docs/forwarding.md).
//!
//! In order: `--advertise-ip` (the operator sets it to the pod IP through the downward
//! API) with the bound port; the bound address when it names one interface; otherwise
//! the local address of the route towards Redis (the interface this replica talks to
//! its peers' Redis through), found with an unsent UDP "connect"; 127.0.0.1 as the last
//! resort, with a warning.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `host` and `port` of a `redis://` or `rediss://` URL (port 6379 when absent).
pub fn redis_host_port(url: &str) -> Option<(String, u16)> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if let Some(v6) = host_port.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after
            .strip_prefix(':')
            .map_or(Some(6379), |p| p.parse().ok())?;
        return Some((host.to_owned(), port));
    }
    match host_port.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None if !host_port.is_empty() => Some((host_port.to_owned(), 6379)),
        None => None,
    }
}

/// A Redis node to find the route towards: the `--redis-url` host, else the first
/// Sentinel or cluster seed.
pub fn redis_route_target(config: &crate::config::ServerConfig) -> Option<(String, u16)> {
    if let Some(url) = &config.redis_url {
        return redis_host_port(url);
    }
    let list = config
        .redis_sentinels
        .as_deref()
        .or(config.redis_cluster_nodes.as_deref())?;
    let first = hubbub_redis::topology::NodeAddr::parse_list(list)
        .ok()?
        .into_iter()
        .next()?;
    Some((first.host, first.port))
}

/// The local IP of the route towards `host:port` (nothing is sent).
async fn route_ip(host: &str, port: u16) -> Option<IpAddr> {
    let target = tokio::net::lookup_host((host, port)).await.ok()?.next()?;
    let any: IpAddr = if target.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let socket = tokio::net::UdpSocket::bind((any, 0)).await.ok()?;
    socket.connect(target).await.ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

/// Where the other replicas reach this one (see the module documentation).
pub async fn advertised_address(
    advertise_ip: Option<IpAddr>,
    bound: SocketAddr,
    towards_redis: Option<(String, u16)>,
) -> SocketAddr {
    if let Some(ip) = advertise_ip {
        return SocketAddr::new(ip, bound.port());
    }
    if !bound.ip().is_unspecified() {
        return bound;
    }
    if let Some((host, port)) = towards_redis
        && let Some(ip) = route_ip(&host, port).await
    {
        return SocketAddr::new(ip, bound.port());
    }
    tracing::warn!(
        "no address for other replicas to forward to: set --advertise-ip (HUBBUB_ADVERTISE_IP)"
    );
    SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_route_target_is_the_url_host_or_the_first_sentinel() {
        use clap::Parser;
        let parse = |args: &[&str]| {
            let mut all = vec!["hubbub-server"];
            all.extend_from_slice(args);
            crate::config::ServerConfig::try_parse_from(all).unwrap()
        };
        assert_eq!(
            redis_route_target(&parse(&["--redis-url", "redis://cache:6380/0"])),
            Some(("cache".into(), 6380))
        );
        assert_eq!(
            redis_route_target(&parse(&[
                "--redis-sentinels",
                "s1:26379,s2:26379",
                "--redis-sentinel-master",
                "m"
            ])),
            Some(("s1".into(), 26379))
        );
        assert_eq!(redis_route_target(&parse(&[])), None);
    }

    #[test]
    fn redis_urls_give_host_and_port() {
        let hp = |u| redis_host_port(u);
        assert_eq!(hp("redis://redis:6379/0"), Some(("redis".into(), 6379)));
        assert_eq!(
            hp("redis://:secret@10.0.0.5:6380"),
            Some(("10.0.0.5".into(), 6380))
        );
        assert_eq!(
            hp("rediss://user:pw@cache.example/2"),
            Some(("cache.example".into(), 6379))
        );
        assert_eq!(hp("redis://[::1]:7000/0"), Some(("::1".into(), 7000)));
        assert_eq!(hp("redis://[::1]"), Some(("::1".into(), 6379)));
        assert_eq!(hp("redis://host:notaport"), None);
        assert_eq!(hp("not a url"), None);
    }

    #[tokio::test]
    async fn the_advertised_address_prefers_the_setting_then_the_bound_ip() {
        let bound: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            advertised_address(Some(ip), bound, Some(("127.0.0.1".into(), 6379))).await,
            "10.1.2.3:8080".parse().unwrap()
        );
        let specific: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        assert_eq!(
            advertised_address(None, specific, Some(("redis".into(), 6379))).await,
            specific
        );
        // Towards a loopback Redis, the route's local address is loopback.
        assert_eq!(
            advertised_address(None, bound, Some(("127.0.0.1".into(), 6379))).await,
            "127.0.0.1:8080".parse().unwrap()
        );
    }
}
