//! One benchmark client connection: target URL parsing, the TCP connect
//! (optionally from a chosen 127.0.0.x source address), the WebSocket upgrade
//! to `/socket.io/?EIO=4&transport=websocket`, and the Engine.IO/Socket.IO
//! handshake (`0{...}` open, `40` CONNECT, `40{"sid":...}` ack) done by hand.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::BenchError;

/// An established Socket.IO connection on the default namespace.
pub type Conn = WebSocketStream<TcpStream>;

/// Where a client connects: the resolved address and the request URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL as given, for reports.
    pub url: String,
    /// The server's socket address.
    pub addr: SocketAddr,
    /// `ws://host:port/<path>?EIO=4&transport=websocket`.
    pub ws_url: String,
}

impl Target {
    /// Parses `ws://host:port[/path/]` or `http://host:port[/path/]`; the
    /// path defaults to `/socket.io/`.
    pub fn parse(url: &str) -> Result<Target, BenchError> {
        let bad = |reason: &str| BenchError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let rest = url
            .strip_prefix("ws://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| bad("expected ws:// or http:// (TLS is not supported)"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || !authority.contains(':') {
            return Err(bad("expected host:port"));
        }
        let path = if path == "/" { "/socket.io/" } else { path };
        let path = if path.ends_with('/') {
            path.to_owned()
        } else {
            format!("{path}/")
        };
        let addr = authority
            .to_socket_addrs()
            .map_err(|e| bad(&e.to_string()))?
            .next()
            .ok_or_else(|| bad("host does not resolve"))?;
        Ok(Target {
            url: url.to_owned(),
            addr,
            ws_url: format!("ws://{authority}{path}?EIO=4&transport=websocket"),
        })
    }

    /// Parses a comma-separated list of URLs.
    pub fn parse_list(urls: &str) -> Result<Vec<Target>, BenchError> {
        let targets = urls
            .split(',')
            .filter(|u| !u.trim().is_empty())
            .map(|u| Target::parse(u.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err(BenchError::Setting("at least one --url is needed".into()));
        }
        Ok(targets)
    }

    /// Whether the server is on 127.0.0.0/8, where the source address can be
    /// spread over 127.0.0.x to get past the ephemeral port range.
    pub fn is_loopback_v4(&self) -> bool {
        matches!(self.addr.ip(), IpAddr::V4(ip) if ip.is_loopback())
    }
}

/// The source address for connection number `i` when `spread` loopback
/// addresses are in use (127.0.0.1 ..= 127.0.0.spread); `None` for 0 or 1.
pub fn source_for(i: usize, spread: usize) -> Option<Ipv4Addr> {
    if spread <= 1 {
        return None;
    }
    let k = (i % spread) as u32 + 1;
    Some(Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + k))
}

/// How many 127.0.0.x source addresses `connections` need: one per 25,000
/// (the default ephemeral range has about 28,000 ports).
pub fn spread_for(connections: usize) -> usize {
    connections.div_ceil(25_000).clamp(1, 250)
}

/// WebSocket buffers sized for many small messages: a 4 KiB read buffer
/// instead of tungstenite's 128 KiB, so that idle connections stay cheap.
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
}

/// Connects, upgrades and completes the Socket.IO CONNECT within `timeout`.
pub async fn connect(
    target: &Target,
    source: Option<Ipv4Addr>,
    timeout: Duration,
) -> Result<Conn, BenchError> {
    tokio::time::timeout(timeout, connect_inner(target, source))
        .await
        .map_err(|_| BenchError::Timeout(timeout))?
}

async fn connect_inner(target: &Target, source: Option<Ipv4Addr>) -> Result<Conn, BenchError> {
    let socket = match target.addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let (Some(ip), SocketAddr::V4(_)) = (source, target.addr) {
        socket.bind(SocketAddr::new(IpAddr::V4(ip), 0))?;
    }
    let stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (mut ws, _response) = tokio_tungstenite::client_async_with_config(
        target.ws_url.as_str(),
        stream,
        Some(ws_config()),
    )
    .await?;
    let open = next_text(&mut ws).await?;
    if !open.starts_with('0') {
        return Err(BenchError::Protocol(format!(
            "expected the open packet 0{{...}}, got {:?}",
            truncate(&open)
        )));
    }
    ws.send(Message::text("40")).await?;
    loop {
        let text = next_text(&mut ws).await?;
        match Frame::classify(&text) {
            Frame::Ping => ws.send(Message::text("3")).await?,
            Frame::ConnectAck => return Ok(ws),
            Frame::ConnectError => {
                return Err(BenchError::Protocol(format!(
                    "connect refused: {}",
                    truncate(&text)
                )));
            }
            Frame::Close => return Err(BenchError::Closed),
            Frame::Event | Frame::Other => {}
        }
    }
}

/// Opens `count` connections, `concurrency` at a time, connection `i` to
/// `targets[i % targets.len()]` from source address `source_for(i, spread)`.
/// Returns the connections with their handshake times, and the failures.
pub async fn connect_many(
    targets: &[Target],
    count: usize,
    concurrency: usize,
    spread: usize,
    timeout: Duration,
) -> (Vec<(Conn, Duration)>, Vec<BenchError>) {
    let results: Vec<Result<(Conn, Duration), BenchError>> = futures_util::stream::iter(0..count)
        .map(|i| async move {
            let started = std::time::Instant::now();
            let conn = connect(&targets[i % targets.len()], source_for(i, spread), timeout).await?;
            Ok((conn, started.elapsed()))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut conns = Vec::with_capacity(count);
    let mut failures = Vec::new();
    for r in results {
        match r {
            Ok(c) => conns.push(c),
            Err(e) => failures.push(e),
        }
    }
    (conns, failures)
}

async fn next_text(ws: &mut Conn) -> Result<String, BenchError> {
    loop {
        match ws.next().await {
            None => return Err(BenchError::Closed),
            Some(Err(e)) => return Err(e.into()),
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(_))) => return Err(BenchError::Closed),
            Some(Ok(_)) => {}
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// What an incoming text frame is, as far as the load tool cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Engine.IO ping `2`: answer `3`.
    Ping,
    /// Socket.IO CONNECT acknowledgement `40{...}` on the default namespace.
    ConnectAck,
    /// Socket.IO CONNECT_ERROR `44...`.
    ConnectError,
    /// Engine.IO close `1`.
    Close,
    /// A Socket.IO EVENT `42[...]`.
    Event,
    /// Anything else (noop, pong, acks, other namespaces).
    Other,
}

impl Frame {
    /// Classifies a text frame by its first bytes.
    pub fn classify(text: &str) -> Frame {
        let b = text.as_bytes();
        match b {
            [b'2'] => Frame::Ping,
            [b'1', ..] => Frame::Close,
            [b'4', b'0', rest @ ..] if rest.is_empty() || rest[0] == b'{' => Frame::ConnectAck,
            [b'4', b'4', ..] => Frame::ConnectError,
            [b'4', b'2', ..] => Frame::Event,
            _ => Frame::Other,
        }
    }
}

/// The send time stamped into a `messages` event by a publisher:
/// `42["messages",{"t":<µs>,...}]` → `Some(µs)`; any other frame → `None`.
pub fn stamped_time(text: &str) -> Option<u64> {
    let rest = text.strip_prefix("42[\"messages\",{\"t\":")?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// The `sendToAll` frame a publisher sends: the argument object
/// `{"t":<µs>,"p":"xxx…"}` is padded to about `size` bytes.
pub fn publish_frame(t_micros: u64, padding: &str) -> String {
    format!("42[\"sendToAll\",{{\"t\":{t_micros},\"p\":\"{padding}\"}}]")
}

/// Padding that makes the `sendToAll` argument about `size` bytes of JSON
/// (the stamp takes 16 digits and the object 13 bytes of syntax).
pub fn padding_for(size: usize) -> String {
    "x".repeat(size.saturating_sub(29))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_with_default_path() {
        let t = Target::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            t.ws_url,
            "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket"
        );
        assert!(t.is_loopback_v4());
        let t = Target::parse("ws://127.0.0.1:9/chat").unwrap();
        assert_eq!(t.ws_url, "ws://127.0.0.1:9/chat/?EIO=4&transport=websocket");
        assert!(Target::parse("https://127.0.0.1:1").is_err());
        assert!(Target::parse("ws://127.0.0.1").is_err());
        assert_eq!(
            Target::parse_list("ws://127.0.0.1:1, ws://127.0.0.1:2")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn classifies_frames() {
        assert_eq!(Frame::classify("2"), Frame::Ping);
        assert_eq!(Frame::classify("40{\"sid\":\"abc\"}"), Frame::ConnectAck);
        assert_eq!(Frame::classify("40"), Frame::ConnectAck);
        assert_eq!(Frame::classify("40/chat,{}"), Frame::Other);
        assert_eq!(
            Frame::classify("44{\"message\":\"no\"}"),
            Frame::ConnectError
        );
        assert_eq!(Frame::classify("42[\"messages\",1]"), Frame::Event);
        assert_eq!(Frame::classify("1"), Frame::Close);
    }

    #[test]
    fn stamps_round_trip() {
        let pad = padding_for(100);
        let frame = publish_frame(1_700_000_000_000_000, &pad);
        let arg = frame
            .strip_prefix("42[\"sendToAll\",")
            .and_then(|s| s.strip_suffix(']'))
            .unwrap();
        assert_eq!(arg.len(), 100);
        let delivered = frame.replacen("sendToAll", "messages", 1);
        assert_eq!(stamped_time(&delivered), Some(1_700_000_000_000_000));
        assert_eq!(
            stamped_time("42[\"messages\",{\"hello\":\"Hello World\"}]"),
            None
        );
    }

    #[test]
    fn spreads_sources_over_loopback() {
        assert_eq!(source_for(5, 1), None);
        assert_eq!(source_for(0, 4), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source_for(3, 4), Some(Ipv4Addr::new(127, 0, 0, 4)));
        assert_eq!(spread_for(10_000), 1);
        assert_eq!(spread_for(100_000), 4);
    }
}
