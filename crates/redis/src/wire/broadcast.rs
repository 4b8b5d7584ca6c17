//! Broadcast messages: `[uid, packet, opts]` (+ hubbub's publish time), their flags and
//! room selectors, encoded as the Node adapter does and decoded from any peer.

use super::*;

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
    pub(super) fn from_mp(value: Option<&Mp>) -> Self {
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

    pub(super) fn to_mp(&self) -> Mp {
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
    pub(super) fn from_mp(value: Option<&Mp>) -> Result<Self, WireError> {
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

    pub(super) fn to_json(&self) -> Json {
        let mut m = Map::with_capacity(2);
        m.insert("rooms".into(), json_strings(&self.rooms));
        m.insert("except".into(), json_strings(&self.except));
        Json::Object(m)
    }
}

pub(super) fn json_strings(items: &[String]) -> Json {
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

    pub(super) fn from_mp(value: Mp) -> Result<Self, WireError> {
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

    pub(super) fn to_mp(&self) -> Mp {
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
    pub(super) fn from_mp(value: &Mp) -> Result<Self, WireError> {
        Ok(Self {
            selector: Selector::from_mp(Some(value))?,
            flags: BroadcastFlags::from_mp(field(value, "flags")),
        })
    }

    /// In the adapter's key order: rooms, except, flags.
    pub(super) fn to_mp(&self) -> Mp {
        Mp::Map(vec![
            (Mp::from("rooms"), mp_strings(&self.selector.rooms)),
            (Mp::from("except"), mp_strings(&self.selector.except)),
            (Mp::from("flags"), self.flags.to_mp()),
        ])
    }
}

pub(super) fn mp_strings(items: &[String]) -> Mp {
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
    check_deliverable(&packet.data)?;
    Ok(BroadcastMessage {
        uid,
        packet,
        opts,
        sent_at_us,
    })
}
