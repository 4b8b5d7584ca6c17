//! Packet data between JSON (with binary attachments, Socket.IO's own model) and
//! MessagePack (what the Node adapter publishes), both ways.

use super::*;

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

pub(super) fn placeholder(num: usize) -> Json {
    let mut m = Map::with_capacity(2);
    m.insert("_placeholder".into(), Json::Bool(true));
    m.insert("num".into(), Json::from(num));
    Json::Object(m)
}

pub(super) fn placeholder_num(map: &Map<String, Json>) -> Option<usize> {
    if map.len() == 2 && map.get("_placeholder") == Some(&Json::Bool(true)) {
        map.get("num")?.as_u64().map(|n| n as usize)
    } else {
        None
    }
}

pub(super) fn mp_to_json(value: Mp, attachments: &mut Vec<Bytes>) -> Json {
    match value {
        Mp::Nil => Json::Null,
        Mp::Boolean(b) => Json::Bool(b),
        Mp::Integer(i) => match (i.as_u64(), i.as_i64()) {
            (Some(u), _) => Json::from(u),
            (None, Some(s)) => Json::from(s),
            (None, None) => Json::Null,
        },
        Mp::F32(f) => float_to_json(f64::from(f)),
        Mp::F64(f) => float_to_json(f),
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

pub(super) fn key_string(key: Mp) -> String {
    match key {
        Mp::String(s) => utf8_lossy(s),
        Mp::Integer(i) => i.to_string(),
        Mp::Boolean(b) => b.to_string(),
        Mp::Nil => "null".into(),
        other => other.to_string(),
    }
}

pub(super) fn json_to_mp(value: &Json, attachments: &[Bytes]) -> Mp {
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

/// A float read from a peer, as JavaScript sees it: an integral value is the integer
/// (JavaScript has one number type), so that it is written back as one whatever the
/// encoding — JSON would otherwise write `-3.0` where the next round writes `-3` (found by
/// `fuzz/redis_wire`). Not finite: `null`, as `JSON.stringify` writes it.
pub(super) fn float_to_json(f: f64) -> Json {
    // 2^63: beyond it an integral float no longer fits the integer types.
    if f.fract() == 0.0 && f.abs() < 9.223_372_036_854_776e18 {
        return if f >= 0.0 {
            Json::from(f as u64)
        } else {
            Json::from(f as i64)
        };
    }
    Number::from_f64(f).map_or(Json::Null, Json::Number)
}

/// JavaScript has one number type; notepack.io writes integral values as integers.
pub(super) fn number_to_mp(n: &Number) -> Mp {
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

/// Whether `data` is an event the official client accepts: `[name, ...args]`
/// with a name that is a number or a string other than a reserved event, and
/// every binary placeholder referencing one of the attachments. hubbub relays
/// a peer's broadcast to its clients as is, and a client that cannot decode a
/// packet closes its connection: one malformed publish must not disconnect
/// every client of every replica (found by `fuzz/redis_wire`).
pub(super) fn check_deliverable(data: &Payload) -> Result<(), WireError> {
    fn placeholders_valid(v: &Json, attachments: usize) -> bool {
        match v {
            Json::Array(items) => items.iter().all(|i| placeholders_valid(i, attachments)),
            Json::Object(map) if map.get("_placeholder") == Some(&Json::Bool(true)) => map
                .get("num")
                .and_then(Json::as_u64)
                .is_some_and(|n| n < attachments as u64),
            Json::Object(map) => map.values().all(|i| placeholders_valid(i, attachments)),
            _ => true,
        }
    }
    let name_ok = match &data.value {
        Json::Array(items) => match items.first() {
            Some(Json::String(name)) => {
                !hubbub_socketio::packet::RESERVED_EVENTS.contains(&name.as_str())
            }
            Some(Json::Number(_)) => true,
            _ => false,
        },
        _ => false,
    };
    if !name_ok {
        return Err(shape("packet data is not [event, ...args]"));
    }
    if !placeholders_valid(&data.value, data.attachments.len()) {
        return Err(shape("placeholder without its attachment"));
    }
    Ok(())
}
