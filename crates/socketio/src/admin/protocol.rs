//! The `@socket.io/admin-ui` 0.5 wire shapes, sans-IO: the features offered in
//! `config`, the `server_stats` payload with its aggregated events (computed from
//! two readings of the engine's counters), serialized sockets, the disconnect
//! reasons as the Node server names them, and JavaScript `Date` timestamps.
//!
//! Nothing here touches a socket or a clock: callers pass the readings and the
//! time, and the tests compare with the JSON the Node package emits.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{Value, json};

use hubbub_engineio::CloseReason;

use crate::socket::DisconnectReason;

/// What the UI may offer (`Feature` in the package's `typed-events.ts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Feature {
    /// `emit` to a namespace or a room.
    Emit,
    /// `join` with a socket id as filter.
    Join,
    /// `leave` with a socket id as filter.
    Leave,
    /// `_disconnect` with a socket id as filter.
    Disconnect,
    /// `join` for every socket of a namespace or room.
    Mjoin,
    /// `leave` for every socket of a namespace or room.
    Mleave,
    /// `_disconnect` for every socket of a namespace or room.
    Mdisconnect,
    /// `server_stats` carries `aggregatedEvents`.
    AggregatedEvents,
    /// Development mode: every socket and event is reported.
    AllEvents,
}

/// The features announced in `config`: no command in read-only mode, every
/// event in development mode.
pub fn features(readonly: bool, development: bool) -> Vec<Feature> {
    let mut out = if readonly {
        Vec::new()
    } else {
        vec![
            Feature::Emit,
            Feature::Join,
            Feature::Leave,
            Feature::Disconnect,
            Feature::Mjoin,
            Feature::Mleave,
            Feature::Mdisconnect,
        ]
    };
    out.push(Feature::AggregatedEvents);
    if development {
        out.push(Feature::AllEvents);
    }
    out
}

/// One reading of the Engine.IO layer's counters (cumulative since start,
/// except the two client counts, which are current).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineReading {
    /// Engine.IO sessions open now (every client, the UI's own included).
    pub clients: u64,
    /// Of which on HTTP long-polling.
    pub polling_clients: u64,
    /// Sessions opened since start.
    pub connections: u64,
    /// Sessions closed since start, by `CloseReason::label`.
    pub disconnections: Vec<(String, u64)>,
    /// Packets received since start.
    pub packets_in: u64,
    /// Packets written since start.
    pub packets_out: u64,
    /// Bytes received since start.
    pub bytes_in: u64,
    /// Bytes written since start.
    pub bytes_out: u64,
}

/// One entry of `aggregatedEvents`: `{timestamp, type, subType?, count}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AggregatedEvent {
    /// Milliseconds since the epoch, rounded down to the second (as the Node package does).
    pub timestamp: u64,
    /// `rawConnection`, `rawDisconnection`, `packetsIn`, `packetsOut`, `bytesIn` or `bytesOut`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The disconnect reason of a `rawDisconnection`.
    #[serde(rename = "subType", skip_serializing_if = "Option::is_none")]
    pub sub_type: Option<&'static str>,
    /// How many since the previous `server_stats`.
    pub count: u64,
}

/// The Node server's name for an Engine.IO close reason (`rawDisconnection`'s subType).
pub fn engine_close_reason(label: &str) -> &'static str {
    match label {
        "client_close" | "transport_close" => "transport close",
        "ping_timeout" => "ping timeout",
        "parse_error" => "parse error",
        "shutdown" => "server shutting down",
        "server_close" | "connect_timeout" | "slow_consumer" => "forced close",
        // transport_error, duplicate_poll, payload_too_large and anything new.
        _ => "transport error",
    }
}

/// The Node server's name for why a socket left (`socket_disconnected`'s reason).
pub fn socket_disconnect_reason(reason: DisconnectReason) -> &'static str {
    match reason {
        DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
        DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
        DisconnectReason::Transport(r) => match r {
            CloseReason::ServerClose => "forced server close",
            other => engine_close_reason(other.label()),
        },
    }
}

/// The events between two readings, stamped `now_ms` rounded down to the second;
/// zero counts are left out.
pub fn aggregated_events(
    before: &EngineReading,
    after: &EngineReading,
    now_ms: u64,
) -> Vec<AggregatedEvent> {
    let timestamp = now_ms - now_ms % 1000;
    let mut out = Vec::new();
    let mut push = |kind, sub_type, count: u64| {
        if count > 0 {
            out.push(AggregatedEvent {
                timestamp,
                kind,
                sub_type,
                count,
            });
        }
    };
    push(
        "rawConnection",
        None,
        after.connections.saturating_sub(before.connections),
    );
    // Several labels map to one Node reason: add them up per reason.
    let mut by_reason: Vec<(&'static str, u64)> = Vec::new();
    for (label, total) in &after.disconnections {
        let prior = before
            .disconnections
            .iter()
            .find(|(l, _)| l == label)
            .map_or(0, |(_, c)| *c);
        let delta = total.saturating_sub(prior);
        let reason = engine_close_reason(label);
        match by_reason.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, c)) => *c += delta,
            None => by_reason.push((reason, delta)),
        }
    }
    for (reason, count) in by_reason {
        push("rawDisconnection", Some(reason), count);
    }
    push(
        "packetsIn",
        None,
        after.packets_in.saturating_sub(before.packets_in),
    );
    push(
        "packetsOut",
        None,
        after.packets_out.saturating_sub(before.packets_out),
    );
    push(
        "bytesIn",
        None,
        after.bytes_in.saturating_sub(before.bytes_in),
    );
    push(
        "bytesOut",
        None,
        after.bytes_out.saturating_sub(before.bytes_out),
    );
    out
}

/// `{name, socketsCount}` of one namespace on this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NamespaceDetails {
    /// The namespace name.
    pub name: String,
    /// Sockets connected to it on this server.
    pub sockets_count: usize,
}

/// The `server_stats` payload.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerStats {
    /// Unique per replica: `hostname#pid`.
    pub server_id: String,
    /// The host name.
    pub hostname: String,
    /// The process id.
    pub pid: u32,
    /// Seconds since the server started (fractional, as Node's `process.uptime()`).
    pub uptime: f64,
    /// Engine.IO clients connected now.
    pub clients_count: u64,
    /// Of which on HTTP long-polling.
    pub polling_clients_count: u64,
    /// Events since the previous `server_stats`.
    pub aggregated_events: Vec<AggregatedEvent>,
    /// Every namespace with its local socket count.
    pub namespaces: Vec<NamespaceDetails>,
}

/// A socket as the UI shows it (`SerializedSocket`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SerializedSocket {
    /// The socket id.
    pub id: String,
    /// The first 12 characters of the Engine.IO session id (as the Node package trims it).
    pub client_id: Option<String>,
    /// `polling` or `websocket` (unknown for a remote socket whose node does not say).
    pub transport: Option<String>,
    /// The namespace.
    pub nsp: String,
    /// Application data: socket.io's `socket.data` ([`crate::Socket::set_data`]), `{}` when
    /// unset, without the Node package's `_admin` field.
    pub data: Value,
    /// `{address, headers, query, issued, secure, time, url, xdomain}`; never the CONNECT payload.
    pub handshake: Value,
    /// The rooms, its own id first.
    pub rooms: Vec<String>,
}

/// The client id as the Node package shows it: the session id's first 12 characters.
pub fn client_id(session_id: &str) -> String {
    session_id.chars().take(12).collect()
}

/// A JavaScript `Date` as JSON encodes it: `2026-12-05T01:07:30.123Z`.
pub fn iso_timestamp(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = since.as_secs();
    let millis = since.subsec_millis();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Milliseconds since the epoch.
pub fn epoch_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Year, month, day of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The `handshake` object of a serialized socket, from socket.io's `socket.handshake` (a
/// local socket's from [`crate::socket::handshake_json`], or a remote one's as its node's
/// `fetchSockets()` answer carried it): `{address, headers, query, issued, secure, time, url,
/// xdomain}` with `address` taken as the Node package does (`cf-connecting-ip`, then
/// `x-forwarded-for`, then the peer's); never `auth`. Missing fields are filled in empty.
pub fn serialized_handshake(h: &Value) -> Value {
    let headers = match h.get("headers") {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let address = ["cf-connecting-ip", "x-forwarded-for"]
        .iter()
        .find_map(|name| headers.get(*name).filter(|v| v.is_string()).cloned())
        .or_else(|| h.get("address").cloned())
        .unwrap_or(Value::Null);
    let or = |key: &str, default: Value| h.get(key).cloned().unwrap_or(default);
    json!({
        "address": address,
        "headers": headers,
        "query": or("query", json!({})),
        "issued": or("issued", json!(0)),
        "secure": or("secure", json!(false)),
        "time": or("time", json!(iso_timestamp(UNIX_EPOCH))),
        "url": or("url", Value::Null),
        "xdomain": or("xdomain", json!(false)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_as_the_node_package_lists_them() {
        assert_eq!(
            serde_json::to_value(features(false, false)).unwrap(),
            json!([
                "EMIT",
                "JOIN",
                "LEAVE",
                "DISCONNECT",
                "MJOIN",
                "MLEAVE",
                "MDISCONNECT",
                "AGGREGATED_EVENTS"
            ])
        );
        assert_eq!(
            serde_json::to_value(features(true, true)).unwrap(),
            json!(["AGGREGATED_EVENTS", "ALL_EVENTS"])
        );
    }

    #[test]
    fn aggregated_events_are_the_differences_per_second() {
        let before = EngineReading {
            connections: 3,
            disconnections: vec![("ping_timeout".into(), 1)],
            packets_in: 10,
            packets_out: 20,
            bytes_in: 100,
            bytes_out: 200,
            ..Default::default()
        };
        let after = EngineReading {
            connections: 5,
            disconnections: vec![
                ("ping_timeout".into(), 1),
                ("client_close".into(), 2),
                ("transport_close".into(), 1),
            ],
            packets_in: 14,
            packets_out: 20,
            bytes_in: 150,
            bytes_out: 260,
            ..Default::default()
        };
        let events = aggregated_events(&before, &after, 1_700_000_001_234);
        assert_eq!(
            serde_json::to_value(&events).unwrap(),
            json!([
                {"timestamp": 1_700_000_001_000u64, "type": "rawConnection", "count": 2},
                {"timestamp": 1_700_000_001_000u64, "type": "rawDisconnection", "subType": "transport close", "count": 3},
                {"timestamp": 1_700_000_001_000u64, "type": "packetsIn", "count": 4},
                {"timestamp": 1_700_000_001_000u64, "type": "bytesIn", "count": 50},
                {"timestamp": 1_700_000_001_000u64, "type": "bytesOut", "count": 60},
            ])
        );
        assert!(aggregated_events(&after, &after, 0).is_empty());
    }

    #[test]
    fn server_stats_shape() {
        let stats = ServerStats {
            server_id: "h#1".into(),
            hostname: "h".into(),
            pid: 1,
            uptime: 1.5,
            clients_count: 2,
            polling_clients_count: 1,
            aggregated_events: vec![],
            namespaces: vec![NamespaceDetails {
                name: "/".into(),
                sockets_count: 1,
            }],
        };
        assert_eq!(
            serde_json::to_value(&stats).unwrap(),
            json!({"serverId": "h#1", "hostname": "h", "pid": 1, "uptime": 1.5,
                   "clientsCount": 2, "pollingClientsCount": 1, "aggregatedEvents": [],
                   "namespaces": [{"name": "/", "socketsCount": 1}]})
        );
    }

    #[test]
    fn dates_as_javascript_encodes_them() {
        assert_eq!(iso_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_796_432_850_123);
        assert_eq!(iso_timestamp(t), "2026-12-05T01:07:30.123Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(iso_timestamp(leap), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn reasons_as_the_node_server_names_them() {
        assert_eq!(
            socket_disconnect_reason(DisconnectReason::ServerNamespaceDisconnect),
            "server namespace disconnect"
        );
        assert_eq!(
            socket_disconnect_reason(DisconnectReason::Transport(CloseReason::ClientClose)),
            "transport close"
        );
        assert_eq!(engine_close_reason("shutdown"), "server shutting down");
        assert_eq!(client_id("abcdefghijklmnop"), "abcdefghijkl");
    }

    #[test]
    fn handshake_hides_credentials_and_prefers_forwarded_address() {
        let h = hubbub_engineio::Handshake {
            address: Some("10.0.0.1".into()),
            headers: vec![
                ("cookie".into(), "sid=secret".into()),
                ("authorization".into(), "Bearer t".into()),
                ("x-forwarded-for".into(), "203.0.113.9".into()),
            ],
            query: vec![("EIO".into(), "4".into())],
            url: "/socket.io/?EIO=4&transport=polling".into(),
            secure: false,
            issued_ms: 0,
            origin: None,
        };
        let node = crate::socket::handshake_json(Some(&h));
        assert_eq!(
            node["address"], "10.0.0.1",
            "socket.handshake keeps the peer"
        );
        assert_eq!(node["headers"]["cookie"], "[redacted]");
        assert_eq!(node["headers"]["authorization"], "[redacted]");
        let v = serialized_handshake(&node);
        assert_eq!(v["address"], "203.0.113.9");
        assert_eq!(v["headers"]["cookie"], "[redacted]");
        assert_eq!(v["query"]["EIO"], "4");
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["xdomain"], false);
        assert_eq!(v["url"], "/socket.io/?EIO=4&transport=polling");
    }

    #[test]
    fn handshake_of_a_remote_socket_as_node_sends_it() {
        // What a Node replica's `fetchSockets()` answer carries (with `auth`, which is dropped).
        let node = json!({
            "headers": {"host": "chat:3000", "cf-connecting-ip": "198.51.100.7",
                        "x-forwarded-for": "203.0.113.9"},
            "time": "Sat Dec 05 2026 04:10:44 GMT+0000 (Coordinated Universal Time)",
            "address": "::ffff:10.0.0.2",
            "xdomain": true,
            "secure": true,
            "issued": 1_796_444_000_000u64,
            "url": "/socket.io/?EIO=4&transport=websocket",
            "query": {"EIO": "4"},
            "auth": {"token": "secret"},
        });
        let v = serialized_handshake(&node);
        assert_eq!(
            v,
            json!({
                "address": "198.51.100.7",
                "headers": node["headers"],
                "query": {"EIO": "4"},
                "issued": 1_796_444_000_000u64,
                "secure": true,
                "time": "Sat Dec 05 2026 04:10:44 GMT+0000 (Coordinated Universal Time)",
                "url": "/socket.io/?EIO=4&transport=websocket",
                "xdomain": true,
            })
        );
        // A node that sends no handshake: the same keys, empty.
        let empty = serialized_handshake(&Value::Null);
        assert_eq!(empty["address"], Value::Null);
        assert_eq!(
            serialized_handshake(&crate::socket::handshake_json(None))["address"],
            ""
        );
        assert_eq!(empty["headers"], json!({}));
        assert_eq!(empty["issued"], 0);
    }
}
