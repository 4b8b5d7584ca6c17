//! The wire format of the Node.js `@socket.io/redis-adapter` (classic pub/sub variant, 8.x)
//! and `@socket.io/redis-emitter`, as pure encode/decode functions: no Redis, no sockets.
//!
//! What travels, per namespace `nsp` and channel prefix `key` (default `socket.io`):
//!
//! | channel | payload |
//! |---|---|
//! | `<key>#<nsp>#` | broadcast, MessagePack `[uid, packet, opts]` |
//! | `<key>#<nsp>#<room>#` | the same, when `opts.rooms` is exactly one room |
//! | `<key>-request#<nsp>#` | requests: JSON object, except `BROADCAST` (MessagePack) |
//! | `<key>-response#<nsp>#` | responses: JSON object, except `BROADCAST_ACK` (MessagePack) |
//! | `<key>-response#<nsp>#<uid>#` | the same, when the requester asked for a private channel |
//!
//! `packet` is `{type, data, nsp}` (type 2 = EVENT even when `data` holds binary, which is
//! MessagePack `bin`); `opts` is `{rooms, except, flags}`. A receiver tells JSON from
//! MessagePack by the first byte (`{` is JSON). Each node has a random `uid` and ignores its
//! own broadcasts; the emitter's uid is `"emitter"`. The server count used to know how many
//! responses to await is `PUBSUB NUMSUB <key>-request#<nsp>#`. Details and every request and
//! response shape: `docs/redis.md`.
//!
//! hubbub appends one element to its own broadcasts, `[uid, packet, opts, sent_at_us]`: the
//! publish time in microseconds since the Unix epoch, for the pub/sub lag histogram. The Node
//! adapter destructures only the first three elements, so this stays compatible.
//!
//! Packet data is represented the way Socket.IO itself does before it writes binary frames:
//! a JSON value in which every binary blob is replaced by `{"_placeholder":true,"num":N}` and
//! the blobs are kept in order in `attachments` ([`Payload`]).

use bytes::Bytes;
use rmpv::Value as Mp;
use serde_json::{Map, Number, Value as Json};

/// The uid that `@socket.io/redis-emitter` puts into its broadcasts and requests.
pub const EMITTER_UID: &str = "emitter";

/// Socket.IO packet type EVENT (what the adapter sends, with or without binary).
pub const PACKET_TYPE_EVENT: u8 = 2;
/// Socket.IO packet type BINARY_EVENT (accepted on receipt and treated as EVENT).
pub const PACKET_TYPE_BINARY_EVENT: u8 = 5;

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Not valid MessagePack.
    #[error("invalid messagepack: {0}")]
    MessagePack(String),
    /// Not valid JSON.
    #[error("invalid json: {0}")]
    Json(String),
    /// Valid encoding, but not the shape the adapter protocol defines.
    #[error("unexpected message shape: {0}")]
    Shape(String),
}

fn shape(what: impl Into<String>) -> WireError {
    WireError::Shape(what.into())
}

/// The Redis channels of one namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels {
    /// `<key>#<nsp>#`: broadcasts to everyone or to several rooms.
    pub broadcast: String,
    /// `<key>-request#<nsp>#`: requests; its subscriber count is the server count.
    pub request: String,
    /// `<key>-response#<nsp>#`: responses (the Node adapter's default reply channel).
    pub response: String,
    /// `<key>-response#<nsp>#<uid>#`: responses meant for this node only.
    pub private_response: String,
}

impl Channels {
    /// The channels of namespace `nsp` for prefix `key`, as seen by the node `uid`.
    pub fn new(key: &str, nsp: &str, uid: &str) -> Self {
        let response = format!("{key}-response#{nsp}#");
        Self {
            broadcast: format!("{key}#{nsp}#"),
            request: format!("{key}-request#{nsp}#"),
            private_response: format!("{response}{uid}#"),
            response,
        }
    }

    /// The pattern a node PSUBSCRIBEs to for broadcasts (`<key>#<nsp>#*`).
    pub fn broadcast_pattern(&self) -> String {
        format!("{}*", self.broadcast)
    }

    /// The channel a broadcast is published on: the room channel when `rooms` is exactly one
    /// room, otherwise the namespace channel.
    pub fn broadcast_channel(&self, rooms: &[String]) -> String {
        match rooms {
            [room] => format!("{}{room}#", self.broadcast),
            _ => self.broadcast.clone(),
        }
    }

    /// For a channel received through the broadcast pattern: `None` when it is not a
    /// broadcast channel of this namespace, `Some(None)` for the namespace channel,
    /// `Some(Some(room))` for a room channel.
    pub fn room_of<'a>(&self, channel: &'a str) -> Option<Option<&'a str>> {
        let rest = channel.strip_prefix(self.broadcast.as_str())?;
        if rest.is_empty() {
            return Some(None);
        }
        rest.strip_suffix('#').map(Some)
    }

    /// The private response channel of another node `uid` (`<key>-response#<nsp>#<uid>#`).
    pub fn private_response_of(&self, uid: &str) -> String {
        format!("{}{uid}#", self.response)
    }
}

/// A JSON value whose binary parts were taken out as attachments (Socket.IO's own model).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Payload {
    /// The value, with `{"_placeholder":true,"num":N}` where attachment N was.
    pub value: Json,
    /// The binary parts, in placeholder order.
    pub attachments: Vec<Bytes>,
}

impl Payload {
    /// A payload without binary parts.
    pub fn json(value: Json) -> Self {
        Self {
            value,
            attachments: Vec::new(),
        }
    }

    /// Converts a MessagePack value: `bin` become attachments, map keys become strings,
    /// floats that are not finite become `null` (as `JSON.stringify` does), extension types
    /// (notepack's `undefined`, dates) become `null`.
    pub fn from_msgpack(value: Mp) -> Self {
        let mut attachments = Vec::new();
        let value = mp_to_json(value, &mut attachments);
        Self { value, attachments }
    }

    /// Converts to MessagePack, putting attachments back where their placeholders are.
    /// Integral numbers are written as the smallest integer type and others as float 64,
    /// exactly like the Node adapter's encoder (notepack.io).
    pub fn to_msgpack(&self) -> Mp {
        json_to_mp(&self.value, &self.attachments)
    }
}

fn placeholder(num: usize) -> Json {
    let mut m = Map::with_capacity(2);
    m.insert("_placeholder".into(), Json::Bool(true));
    m.insert("num".into(), Json::from(num));
    Json::Object(m)
}

fn placeholder_num(map: &Map<String, Json>) -> Option<usize> {
    if map.len() == 2 && map.get("_placeholder") == Some(&Json::Bool(true)) {
        map.get("num")?.as_u64().map(|n| n as usize)
    } else {
        None
    }
}

fn mp_to_json(value: Mp, attachments: &mut Vec<Bytes>) -> Json {
    match value {
        Mp::Nil => Json::Null,
        Mp::Boolean(b) => Json::Bool(b),
        Mp::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (None, Some(s)) => Json::from(s),
            (None, None) => Json::Null,
        },
        Mp::F32(f) => Number::from_f64(f64::from(f)).map_or(Json::Null, Json::Number),
        Mp::F64(f) => Number::from_f64(f).map_or(Json::Null, Json::Number),
        Mp::String(s) => Json::String(utf8_lossy(s)),
        Mp::Binary(b) => {
            attachments.push(Bytes::from(b));
            placeholder(attachments.len() - 1)
        }
        Mp::Array(items) => Json::Array(
            items
                .into_iter()
                .map(|v| mp_to_json(v, attachments))
                .collect(),
        ),
        Mp::Map(entries) => {
            let mut m = Map::with_capacity(entries.len());
            for (k, v) in entries {
                m.insert(key_string(k), mp_to_json(v, attachments));
            }
            Json::Object(m)
        }
        Mp::Ext(_, _) => Json::Null,
    }
}

fn key_string(key: Mp) -> String {
    match key {
        Mp::String(s) => utf8_lossy(s),
        Mp::Integer(i) => i.to_string(),
        Mp::Boolean(b) => b.to_string(),
        Mp::Nil => "null".into(),
        other => other.to_string(),
    }
}

fn json_to_mp(value: &Json, attachments: &[Bytes]) -> Mp {
    match value {
        Json::Null => Mp::Nil,
        Json::Bool(b) => Mp::Boolean(*b),
        Json::Number(n) => number_to_mp(n),
        Json::String(s) => Mp::from(s.as_str()),
        Json::Array(items) => Mp::Array(items.iter().map(|v| json_to_mp(v, attachments)).collect()),
        Json::Object(map) => {
            if let Some(num) = placeholder_num(map)
                && let Some(blob) = attachments.get(num)
            {
                return Mp::Binary(blob.to_vec());
            }
            Mp::Map(
                map.iter()
                    .map(|(k, v)| (Mp::from(k.as_str()), json_to_mp(v, attachments)))
                    .collect(),
            )
        }
    }
}

/// JavaScript has one number type; notepack.io writes integral values as integers.
fn number_to_mp(n: &Number) -> Mp {
    if let Some(u) = n.as_u64() {
        return Mp::from(u);
    }
    if let Some(i) = n.as_i64() {
        return Mp::from(i);
    }
    let f = n.as_f64().unwrap_or(0.0);
    // 2^63: beyond it an integral float no longer fits the integer types.
    if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_776e18 {
        if f >= 0.0 {
            return Mp::from(f as u64);
        }
        return Mp::from(f as i64);
    }
    Mp::F64(f)
}

/// The `flags` of a broadcast. Only the flags that matter across nodes are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BroadcastFlags {
    /// Drop the packet for clients that cannot take it right now.
    pub volatile: Option<bool>,
    /// Per-message compression wish (informational for hubbub).
    pub compress: Option<bool>,
    /// Deliver on this node only (never published; kept for completeness).
    pub local: Option<bool>,
    /// Milliseconds the sender waits for acknowledgements (broadcast with ack).
    pub timeout: Option<u64>,
}

impl BroadcastFlags {
    fn from_mp(value: Option<&Mp>) -> Self {
        let mut flags = Self::default();
        if let Some(Mp::Map(entries)) = value {
            for (k, v) in entries {
                match k.as_str() {
                    Some("volatile") => flags.volatile = v.as_bool(),
                    Some("compress") => flags.compress = v.as_bool(),
                    Some("local") => flags.local = v.as_bool(),
                    Some("timeout") => {
                        flags.timeout = v.as_u64().or_else(|| v.as_f64().map(|f| f.max(0.0) as u64))
                    }
                    _ => {}
                }
            }
        }
        flags
    }

    fn to_mp(&self) -> Mp {
        let mut entries = Vec::new();
        if let Some(v) = self.volatile {
            entries.push((Mp::from("volatile"), Mp::Boolean(v)));
        }
        if let Some(v) = self.compress {
            entries.push((Mp::from("compress"), Mp::Boolean(v)));
        }
        if let Some(v) = self.local {
            entries.push((Mp::from("local"), Mp::Boolean(v)));
        }
        if let Some(v) = self.timeout {
            entries.push((Mp::from("timeout"), Mp::from(v)));
        }
        Mp::Map(entries)
    }
}

/// Which sockets an operation applies to: members of any of `rooms` (every socket when
/// empty), minus members of any of `except` (Socket.IO's `BroadcastOptions`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector {
    /// Target rooms; empty means every socket of the namespace.
    pub rooms: Vec<String>,
    /// Rooms whose members are excluded (a socket id is a room of its own).
    pub except: Vec<String>,
}

impl Selector {
    fn from_mp(value: Option<&Mp>) -> Result<Self, WireError> {
        let Some(value) = value else {
            return Ok(Self::default());
        };
        if value.is_nil() {
            return Ok(Self::default());
        }
        Ok(Self {
            rooms: string_list(field(value, "rooms"), "rooms")?,
            except: string_list(field(value, "except"), "except")?,
        })
    }

    fn to_json(&self) -> Json {
        let mut m = Map::with_capacity(2);
        m.insert("rooms".into(), json_strings(&self.rooms));
        m.insert("except".into(), json_strings(&self.except));
        Json::Object(m)
    }
}

fn json_strings(items: &[String]) -> Json {
    Json::Array(items.iter().map(|s| Json::String(s.clone())).collect())
}

/// A Socket.IO packet as the adapter carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct WirePacket {
    /// Packet type; 2 (EVENT) for everything the adapter broadcasts.
    pub packet_type: u8,
    /// The event name and arguments, as one JSON array with binary placeholders.
    pub data: Payload,
    /// The namespace, e.g. `/`.
    pub nsp: String,
}

impl WirePacket {
    /// An EVENT packet for namespace `nsp` with `data` = `[event, ...args]`.
    pub fn event(nsp: &str, data: Payload) -> Self {
        Self {
            packet_type: PACKET_TYPE_EVENT,
            data,
            nsp: nsp.to_owned(),
        }
    }

    fn from_mp(value: Mp) -> Result<Self, WireError> {
        let Mp::Map(entries) = value else {
            return Err(shape("packet is not a map"));
        };
        let mut packet_type = None;
        let mut data = None;
        let mut nsp = None;
        for (k, v) in entries {
            match k.as_str() {
                Some("type") => packet_type = v.as_u64(),
                Some("data") => data = Some(v),
                Some("nsp") => nsp = v.as_str().map(str::to_owned),
                _ => {}
            }
        }
        let packet_type = packet_type.ok_or_else(|| shape("packet without type"))?;
        let packet_type =
            u8::try_from(packet_type).map_err(|_| shape("packet type out of range"))?;
        Ok(Self {
            packet_type,
            data: Payload::from_msgpack(data.unwrap_or(Mp::Nil)),
            // The adapter defaults a missing namespace to "/".
            nsp: nsp.unwrap_or_else(|| "/".to_owned()),
        })
    }

    fn to_mp(&self) -> Mp {
        Mp::Map(vec![
            (Mp::from("type"), Mp::from(self.packet_type)),
            (Mp::from("data"), self.data.to_msgpack()),
            (Mp::from("nsp"), Mp::from(self.nsp.as_str())),
        ])
    }
}

/// The `opts` of a broadcast.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BroadcastOpts {
    /// Target rooms and excluded rooms.
    pub selector: Selector,
    /// Delivery flags.
    pub flags: BroadcastFlags,
}

impl BroadcastOpts {
    fn from_mp(value: &Mp) -> Result<Self, WireError> {
        Ok(Self {
            selector: Selector::from_mp(Some(value))?,
            flags: BroadcastFlags::from_mp(field(value, "flags")),
        })
    }

    /// In the adapter's key order: rooms, except, flags.
    fn to_mp(&self) -> Mp {
        Mp::Map(vec![
            (Mp::from("rooms"), mp_strings(&self.selector.rooms)),
            (Mp::from("except"), mp_strings(&self.selector.except)),
            (Mp::from("flags"), self.flags.to_mp()),
        ])
    }
}

fn mp_strings(items: &[String]) -> Mp {
    Mp::Array(items.iter().map(|s| Mp::from(s.as_str())).collect())
}

/// One broadcast message: `[uid, packet, opts]` (+ hubbub's publish time).
#[derive(Debug, Clone, PartialEq)]
pub struct BroadcastMessage {
    /// The publishing node's uid (`"emitter"` for the emitter).
    pub uid: String,
    /// What to deliver.
    pub packet: WirePacket,
    /// To whom.
    pub opts: BroadcastOpts,
    /// Publish time in microseconds since the Unix epoch; only hubbub nodes send it.
    pub sent_at_us: Option<u64>,
}

/// Encodes a broadcast exactly as the Node adapter does (plus `sent_at_us` when set).
pub fn encode_broadcast(msg: &BroadcastMessage) -> Vec<u8> {
    let mut items = vec![
        Mp::from(msg.uid.as_str()),
        msg.packet.to_mp(),
        msg.opts.to_mp(),
    ];
    if let Some(t) = msg.sent_at_us {
        items.push(Mp::from(t));
    }
    write_mp(&Mp::Array(items))
}

/// Encodes an EVENT broadcast from borrowed parts (the hot path: no copy of the data).
pub fn encode_event_broadcast(
    uid: &str,
    nsp: &str,
    data: &Json,
    attachments: &[Bytes],
    opts: &BroadcastOpts,
    sent_at_us: Option<u64>,
) -> Vec<u8> {
    let packet = Mp::Map(vec![
        (Mp::from("type"), Mp::from(PACKET_TYPE_EVENT)),
        (Mp::from("data"), json_to_mp(data, attachments)),
        (Mp::from("nsp"), Mp::from(nsp)),
    ]);
    let mut items = vec![Mp::from(uid), packet, opts.to_mp()];
    if let Some(t) = sent_at_us {
        items.push(Mp::from(t));
    }
    write_mp(&Mp::Array(items))
}

/// Decodes a broadcast from a Node adapter, the emitter or a hubbub node.
pub fn decode_broadcast(bytes: &[u8]) -> Result<BroadcastMessage, WireError> {
    let Mp::Array(items) = read_mp(bytes)? else {
        return Err(shape("broadcast is not an array"));
    };
    let mut items = items.into_iter();
    let uid = match items.next() {
        Some(Mp::String(s)) => utf8_lossy(s),
        Some(Mp::Nil) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let packet = WirePacket::from_mp(
        items
            .next()
            .ok_or_else(|| shape("broadcast without packet"))?,
    )?;
    let opts = match items.next() {
        Some(v) => BroadcastOpts::from_mp(&v)?,
        None => BroadcastOpts::default(),
    };
    let sent_at_us = items.next().and_then(|v| v.as_u64());
    Ok(BroadcastMessage {
        uid,
        packet,
        opts,
        sent_at_us,
    })
}

/// The request types of the adapter protocol (the numbers are on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RequestType {
    /// Socket ids in some rooms (adapters before 8.x).
    Sockets = 0,
    /// Every room of every node.
    AllRooms = 1,
    /// Make sockets join rooms.
    RemoteJoin = 2,
    /// Make sockets leave rooms.
    RemoteLeave = 3,
    /// Disconnect sockets.
    RemoteDisconnect = 4,
    /// Describe sockets (`fetchSockets()`).
    RemoteFetch = 5,
    /// An event for the servers themselves (`serverSideEmit`), and its ack response.
    ServerSideEmit = 6,
    /// A broadcast whose recipients' acks are wanted (`timeout().emit(.., cb)`).
    Broadcast = 7,
    /// Response: how many clients a node sent the acked broadcast to.
    BroadcastClientCount = 8,
    /// Response: one client's ack of an acked broadcast.
    BroadcastAck = 9,
}

impl RequestType {
    /// The type for a wire number.
    pub fn from_number(n: u64) -> Option<Self> {
        Some(match n {
            0 => Self::Sockets,
            1 => Self::AllRooms,
            2 => Self::RemoteJoin,
            3 => Self::RemoteLeave,
            4 => Self::RemoteDisconnect,
            5 => Self::RemoteFetch,
            6 => Self::ServerSideEmit,
            7 => Self::Broadcast,
            8 => Self::BroadcastClientCount,
            9 => Self::BroadcastAck,
            _ => return None,
        })
    }

    /// A fixed, low-cardinality name for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sockets => "sockets",
            Self::AllRooms => "all_rooms",
            Self::RemoteJoin => "remote_join",
            Self::RemoteLeave => "remote_leave",
            Self::RemoteDisconnect => "remote_disconnect",
            Self::RemoteFetch => "remote_fetch",
            Self::ServerSideEmit => "server_side_emit",
            Self::Broadcast => "broadcast",
            Self::BroadcastClientCount => "broadcast_client_count",
            Self::BroadcastAck => "broadcast_ack",
        }
    }
}

/// Which sockets a join/leave/disconnect request targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The current form: every socket matching the selector (`opts`).
    Selector(Selector),
    /// The pre-8.x form: one socket id (`sid`); these requests expect an empty response.
    Socket(String),
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestBody {
    /// Socket ids of the members of `rooms` (all sockets when empty).
    Sockets {
        /// The rooms.
        rooms: Vec<String>,
    },
    /// All room names.
    AllRooms,
    /// Make the targeted sockets join `rooms`.
    RemoteJoin {
        /// Which sockets.
        target: Target,
        /// Rooms to join.
        rooms: Vec<String>,
    },
    /// Make the targeted sockets leave `rooms`.
    RemoteLeave {
        /// Which sockets.
        target: Target,
        /// Rooms to leave.
        rooms: Vec<String>,
    },
    /// Disconnect the targeted sockets (`close`: close the underlying connection too).
    RemoteDisconnect {
        /// Which sockets.
        target: Target,
        /// Whether the Engine.IO connection is closed as well.
        close: bool,
    },
    /// Describe the selected sockets.
    RemoteFetch {
        /// Which sockets.
        selector: Selector,
    },
    /// An event for the servers: `data` = `[event, ...args]`; acked when the request has an id.
    ServerSideEmit {
        /// The event name and arguments.
        data: Payload,
    },
    /// A broadcast whose client acks are collected by the requester.
    Broadcast {
        /// What to deliver.
        packet: WirePacket,
        /// To whom, and the ack timeout.
        opts: BroadcastOpts,
    },
}

impl RequestBody {
    /// The wire type of this request.
    pub fn request_type(&self) -> RequestType {
        match self {
            Self::Sockets { .. } => RequestType::Sockets,
            Self::AllRooms => RequestType::AllRooms,
            Self::RemoteJoin { .. } => RequestType::RemoteJoin,
            Self::RemoteLeave { .. } => RequestType::RemoteLeave,
            Self::RemoteDisconnect { .. } => RequestType::RemoteDisconnect,
            Self::RemoteFetch { .. } => RequestType::RemoteFetch,
            Self::ServerSideEmit { .. } => RequestType::ServerSideEmit,
            Self::Broadcast { .. } => RequestType::Broadcast,
        }
    }
}

/// A request on `<key>-request#<nsp>#`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The requesting node (absent in the emitter's join/leave/disconnect requests).
    pub uid: Option<String>,
    /// Set when the requester waits for responses.
    pub request_id: Option<String>,
    /// What is asked.
    pub body: RequestBody,
}

/// Decodes a request (JSON, or MessagePack for `BROADCAST`).
pub fn decode_request(bytes: &[u8]) -> Result<Request, WireError> {
    let value = read_any(bytes)?;
    let uid = field(&value, "uid").and_then(Mp::as_str).map(str::to_owned);
    let request_id = field(&value, "requestId").and_then(id_string);
    let kind = field(&value, "type")
        .and_then(Mp::as_u64)
        .ok_or_else(|| shape("request without numeric type"))?;
    let kind = RequestType::from_number(kind)
        .ok_or_else(|| shape(format!("unknown request type {kind}")))?;
    let target = || -> Result<Target, WireError> {
        match field(&value, "opts") {
            Some(opts) if !opts.is_nil() => Ok(Target::Selector(Selector::from_mp(Some(opts))?)),
            _ => field(&value, "sid")
                .and_then(id_string)
                .map(Target::Socket)
                .ok_or_else(|| shape("request without opts or sid")),
        }
    };
    let rooms = || -> Result<Vec<String>, WireError> {
        match field(&value, "rooms") {
            Some(v) if !v.is_nil() => string_list(Some(v), "rooms"),
            // The legacy single-socket form names one `room`.
            _ => Ok(field(&value, "room")
                .and_then(id_string)
                .into_iter()
                .collect()),
        }
    };
    let body = match kind {
        RequestType::Sockets => RequestBody::Sockets {
            rooms: string_list(field(&value, "rooms"), "rooms")?,
        },
        RequestType::AllRooms => RequestBody::AllRooms,
        RequestType::RemoteJoin => RequestBody::RemoteJoin {
            target: target()?,
            rooms: rooms()?,
        },
        RequestType::RemoteLeave => RequestBody::RemoteLeave {
            target: target()?,
            rooms: rooms()?,
        },
        RequestType::RemoteDisconnect => RequestBody::RemoteDisconnect {
            target: target()?,
            close: field(&value, "close")
                .and_then(Mp::as_bool)
                .unwrap_or(false),
        },
        RequestType::RemoteFetch => RequestBody::RemoteFetch {
            selector: Selector::from_mp(field(&value, "opts"))?,
        },
        RequestType::ServerSideEmit => RequestBody::ServerSideEmit {
            data: Payload::from_msgpack(
                field(&value, "data").cloned().unwrap_or(Mp::Array(vec![])),
            ),
        },
        RequestType::Broadcast => RequestBody::Broadcast {
            packet: WirePacket::from_mp(
                field(&value, "packet")
                    .cloned()
                    .ok_or_else(|| shape("broadcast request without packet"))?,
            )?,
            opts: field(&value, "opts")
                .map(BroadcastOpts::from_mp)
                .transpose()?
                .unwrap_or_default(),
        },
        RequestType::BroadcastClientCount | RequestType::BroadcastAck => {
            return Err(shape(format!("{} is a response type", kind.as_str())));
        }
    };
    Ok(Request {
        uid,
        request_id,
        body,
    })
}

/// Encodes a request the way the Node adapter does (same key order; JSON except
/// `BROADCAST`, which is MessagePack because its packet may hold binary).
pub fn encode_request(req: &Request) -> Vec<u8> {
    if let RequestBody::Broadcast { packet, opts } = &req.body {
        let mut entries = Vec::with_capacity(5);
        if let Some(uid) = &req.uid {
            entries.push((Mp::from("uid"), Mp::from(uid.as_str())));
        }
        if let Some(id) = &req.request_id {
            entries.push((Mp::from("requestId"), Mp::from(id.as_str())));
        }
        entries.push((Mp::from("type"), Mp::from(RequestType::Broadcast as u8)));
        entries.push((Mp::from("packet"), packet.to_mp()));
        entries.push((Mp::from("opts"), opts.to_mp()));
        return write_mp(&Mp::Map(entries));
    }
    let mut m = Map::new();
    if let Some(uid) = &req.uid {
        m.insert("uid".into(), uid.as_str().into());
    }
    if let Some(id) = &req.request_id {
        m.insert("requestId".into(), id.as_str().into());
    }
    m.insert("type".into(), (req.body.request_type() as u8).into());
    let put_target = |m: &mut Map<String, Json>, target: &Target| match target {
        Target::Selector(s) => {
            m.insert("opts".into(), s.to_json());
        }
        Target::Socket(sid) => {
            m.insert("sid".into(), sid.as_str().into());
        }
    };
    match &req.body {
        RequestBody::Sockets { rooms } => {
            m.insert("rooms".into(), json_strings(rooms));
        }
        RequestBody::AllRooms => {}
        RequestBody::RemoteJoin { target, rooms } | RequestBody::RemoteLeave { target, rooms } => {
            put_target(&mut m, target);
            match target {
                Target::Selector(_) => {
                    m.insert("rooms".into(), json_strings(rooms));
                }
                Target::Socket(_) => {
                    m.insert(
                        "room".into(),
                        rooms.first().map_or(Json::Null, |r| r.as_str().into()),
                    );
                }
            }
        }
        RequestBody::RemoteDisconnect { target, close } => {
            put_target(&mut m, target);
            m.insert("close".into(), (*close).into());
        }
        RequestBody::RemoteFetch { selector } => {
            m.insert("opts".into(), selector.to_json());
        }
        RequestBody::ServerSideEmit { data } => {
            // JSON cannot carry binary; like JSON.stringify of a Buffer, it is written as
            // {"type":"Buffer","data":[bytes]}.
            m.insert("data".into(), json_with_buffers(data));
        }
        RequestBody::Broadcast { .. } => unreachable!("handled above"),
    }
    json_bytes(&Json::Object(m))
}

fn json_with_buffers(payload: &Payload) -> Json {
    fn walk(v: &Json, att: &[Bytes]) -> Json {
        match v {
            Json::Array(items) => Json::Array(items.iter().map(|i| walk(i, att)).collect()),
            Json::Object(map) => {
                if let Some(num) = placeholder_num(map)
                    && let Some(blob) = att.get(num)
                {
                    let mut m = Map::with_capacity(2);
                    m.insert("type".into(), "Buffer".into());
                    m.insert(
                        "data".into(),
                        Json::Array(blob.iter().map(|b| Json::from(*b)).collect()),
                    );
                    return Json::Object(m);
                }
                Json::Object(map.iter().map(|(k, v)| (k.clone(), walk(v, att))).collect())
            }
            other => other.clone(),
        }
    }
    walk(&payload.value, &payload.attachments)
}

/// One socket as described in a `REMOTE_FETCH` response (what `fetchSockets()` returns).
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteSocket {
    /// The socket id.
    pub id: String,
    /// The handshake: `{headers, time, address, xdomain, secure, issued, url, query, auth}`.
    pub handshake: Json,
    /// The rooms it is in (its own id included).
    pub rooms: Vec<String>,
    /// Application data attached to the socket (`socket.data`).
    pub data: Json,
}

impl RemoteSocket {
    fn to_json(&self) -> Json {
        let mut m = Map::with_capacity(4);
        m.insert("id".into(), self.id.as_str().into());
        m.insert("handshake".into(), self.handshake.clone());
        m.insert("rooms".into(), json_strings(&self.rooms));
        m.insert("data".into(), self.data.clone());
        Json::Object(m)
    }

    fn from_mp(value: &Mp) -> Result<Self, WireError> {
        let id = field(value, "id")
            .and_then(id_string)
            .ok_or_else(|| shape("fetched socket without id"))?;
        Ok(Self {
            id,
            handshake: field(value, "handshake")
                .cloned()
                .map_or(Json::Null, |v| Payload::from_msgpack(v).value),
            rooms: string_list(field(value, "rooms"), "rooms")?,
            data: field(value, "data")
                .cloned()
                .map_or(Json::Null, |v| Payload::from_msgpack(v).value),
        })
    }
}

/// A response on `<key>-response#<nsp>#` (or a node's private response channel).
#[derive(Debug, Clone, PartialEq)]
pub enum Response {
    /// To `SOCKETS`: `{"requestId","sockets":[ids]}`.
    Sockets {
        /// The request answered.
        request_id: String,
        /// Socket ids on the responding node.
        sockets: Vec<String>,
    },
    /// To `ALL_ROOMS`: `{"requestId","rooms":[..]}`.
    AllRooms {
        /// The request answered.
        request_id: String,
        /// Rooms on the responding node.
        rooms: Vec<String>,
    },
    /// To a legacy single-socket join/leave/disconnect: `{"requestId"}`.
    Done {
        /// The request answered.
        request_id: String,
    },
    /// To `REMOTE_FETCH`: `{"requestId","sockets":[{id,handshake,rooms,data}]}`.
    FetchSockets {
        /// The request answered.
        request_id: String,
        /// Sockets on the responding node.
        sockets: Vec<RemoteSocket>,
    },
    /// To `SERVER_SIDE_EMIT` with ack: `{"type":6,"requestId","data"}`.
    ServerSideEmit {
        /// The request answered.
        request_id: String,
        /// The first argument the handler acknowledged with.
        data: Json,
    },
    /// To `BROADCAST`: `{"type":8,"requestId","clientCount"}` (JSON).
    BroadcastClientCount {
        /// The request answered.
        request_id: String,
        /// Clients the responding node sent the packet to.
        client_count: u64,
    },
    /// To `BROADCAST`, once per client ack: `{"type":9,"requestId","packet"}` (MessagePack).
    BroadcastAck {
        /// The request answered.
        request_id: String,
        /// The client's first ack argument.
        packet: Payload,
    },
}

impl Response {
    /// The request this answers.
    pub fn request_id(&self) -> &str {
        match self {
            Self::Sockets { request_id, .. }
            | Self::AllRooms { request_id, .. }
            | Self::Done { request_id }
            | Self::FetchSockets { request_id, .. }
            | Self::ServerSideEmit { request_id, .. }
            | Self::BroadcastClientCount { request_id, .. }
            | Self::BroadcastAck { request_id, .. } => request_id,
        }
    }
}

/// Encodes a response as the Node adapter does.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    if let Response::BroadcastAck { request_id, packet } = resp {
        return write_mp(&Mp::Map(vec![
            (Mp::from("type"), Mp::from(RequestType::BroadcastAck as u8)),
            (Mp::from("requestId"), Mp::from(request_id.as_str())),
            (Mp::from("packet"), packet.to_msgpack()),
        ]));
    }
    let mut m = Map::new();
    match resp {
        Response::Sockets {
            request_id,
            sockets,
        } => {
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert("sockets".into(), json_strings(sockets));
        }
        Response::AllRooms { request_id, rooms } => {
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert("rooms".into(), json_strings(rooms));
        }
        Response::Done { request_id } => {
            m.insert("requestId".into(), request_id.as_str().into());
        }
        Response::FetchSockets {
            request_id,
            sockets,
        } => {
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert(
                "sockets".into(),
                Json::Array(sockets.iter().map(RemoteSocket::to_json).collect()),
            );
        }
        Response::ServerSideEmit { request_id, data } => {
            m.insert("type".into(), (RequestType::ServerSideEmit as u8).into());
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert("data".into(), data.clone());
        }
        Response::BroadcastClientCount {
            request_id,
            client_count,
        } => {
            m.insert(
                "type".into(),
                (RequestType::BroadcastClientCount as u8).into(),
            );
            m.insert("requestId".into(), request_id.as_str().into());
            m.insert("clientCount".into(), (*client_count).into());
        }
        Response::BroadcastAck { .. } => unreachable!("handled above"),
    }
    json_bytes(&Json::Object(m))
}

/// A response whose meaning depends on the request it answers (the Node protocol does not
/// say, for example, whether `sockets` holds ids or descriptions): parse the envelope first,
/// look the request up by id, then interpret with [`ResponseFrame::interpret`].
#[derive(Debug, Clone, PartialEq)]
pub struct ResponseFrame {
    /// The request answered.
    pub request_id: String,
    /// The `type` field, when the response has one (6, 8, 9).
    pub response_type: Option<RequestType>,
    value: Mp,
}

impl ResponseFrame {
    /// Parses the envelope of a response (JSON or MessagePack).
    pub fn parse(bytes: &[u8]) -> Result<Self, WireError> {
        let value = read_any(bytes)?;
        let request_id = field(&value, "requestId")
            .and_then(id_string)
            .ok_or_else(|| shape("response without requestId"))?;
        let response_type = field(&value, "type")
            .and_then(Mp::as_u64)
            .and_then(RequestType::from_number);
        Ok(Self {
            request_id,
            response_type,
            value,
        })
    }

    /// Interprets the response as an answer to a request of type `asked`.
    pub fn interpret(self, asked: RequestType) -> Result<Response, WireError> {
        let request_id = self.request_id;
        let v = &self.value;
        Ok(match (asked, self.response_type) {
            (RequestType::Broadcast, Some(RequestType::BroadcastClientCount)) => {
                Response::BroadcastClientCount {
                    request_id,
                    client_count: field(v, "clientCount")
                        .and_then(Mp::as_u64)
                        .ok_or_else(|| shape("client count response without clientCount"))?,
                }
            }
            (RequestType::Broadcast, Some(RequestType::BroadcastAck)) => Response::BroadcastAck {
                request_id,
                packet: Payload::from_msgpack(field(v, "packet").cloned().unwrap_or(Mp::Nil)),
            },
            (RequestType::Broadcast, _) => {
                return Err(shape("broadcast response without type 8 or 9"));
            }
            (RequestType::Sockets, _) => Response::Sockets {
                request_id,
                sockets: string_list(field(v, "sockets"), "sockets")?,
            },
            (RequestType::AllRooms, _) => Response::AllRooms {
                request_id,
                rooms: string_list(field(v, "rooms"), "rooms")?,
            },
            (RequestType::RemoteFetch, _) => Response::FetchSockets {
                request_id,
                sockets: match field(v, "sockets") {
                    Some(Mp::Array(items)) => items
                        .iter()
                        .map(RemoteSocket::from_mp)
                        .collect::<Result<_, _>>()?,
                    _ => return Err(shape("fetch response without sockets")),
                },
            },
            (RequestType::ServerSideEmit, _) => Response::ServerSideEmit {
                request_id,
                data: field(v, "data")
                    .cloned()
                    .map_or(Json::Null, |d| Payload::from_msgpack(d).value),
            },
            (
                RequestType::RemoteJoin | RequestType::RemoteLeave | RequestType::RemoteDisconnect,
                _,
            ) => Response::Done { request_id },
            (RequestType::BroadcastClientCount | RequestType::BroadcastAck, _) => {
                return Err(shape("responses are not requests"));
            }
        })
    }
}

// ---- helpers ---------------------------------------------------------------------------

/// JavaScript strings survive any bytes; replace invalid UTF-8 rather than drop the message.
fn utf8_lossy(s: rmpv::Utf8String) -> String {
    match String::from_utf8(s.into_bytes()) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn write_mp(value: &Mp) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    // unwrap: writing MessagePack into a Vec<u8> cannot fail (the writer is infallible).
    rmpv::encode::write_value(&mut out, value).expect("writing to a Vec cannot fail");
    out
}

fn read_mp(bytes: &[u8]) -> Result<Mp, WireError> {
    let mut rd = bytes;
    rmpv::decode::read_value(&mut rd).map_err(|e| WireError::MessagePack(e.to_string()))
}

fn json_bytes(value: &Json) -> Vec<u8> {
    // unwrap: serializing a serde_json::Value (string keys only) cannot fail.
    serde_json::to_vec(value).expect("a json value always serializes")
}

/// JSON when the payload starts with `{` (what the Node adapter checks), else MessagePack.
fn read_any(bytes: &[u8]) -> Result<Mp, WireError> {
    if bytes.first() == Some(&b'{') {
        let json: Json =
            serde_json::from_slice(bytes).map_err(|e| WireError::Json(e.to_string()))?;
        Ok(json_to_mp(&json, &[]))
    } else {
        read_mp(bytes)
    }
}

fn field<'a>(map: &'a Mp, key: &str) -> Option<&'a Mp> {
    match map {
        Mp::Map(entries) => entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v),
        _ => None,
    }
}

/// Room names and ids are strings, but JavaScript lets numbers through (`io.to(42)`).
fn id_string(v: &Mp) -> Option<String> {
    match v {
        Mp::String(s) => s.as_str().map(str::to_owned),
        Mp::Integer(i) => Some(i.to_string()),
        Mp::F64(f) => Some(f.to_string()),
        Mp::F32(f) => Some(f.to_string()),
        _ => None,
    }
}

fn string_list(v: Option<&Mp>, what: &str) -> Result<Vec<String>, WireError> {
    match v {
        None | Some(Mp::Nil) => Ok(Vec::new()),
        Some(Mp::Array(items)) => items
            .iter()
            .map(|i| id_string(i).ok_or_else(|| shape(format!("{what} holds a non-string"))))
            .collect(),
        Some(_) => Err(shape(format!("{what} is not an array"))),
    }
}

#[cfg(test)]
mod tests;
