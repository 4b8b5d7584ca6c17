//! Socket.IO v5 packets: pure parsing and encoding, no I/O.
//!
//! Wire form: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`. The
//! namespace is present only when it is not `/` and ends at the first `,` or
//! at the end of the string. Binary values travel as separate Engine.IO binary
//! messages and are referenced from the JSON by
//! `{"_placeholder":true,"num":N}`; this layer keeps the placeholders in place
//! and the attachments beside them, in order.
//!
//! JSON is written compactly with object keys in the order received, so echoed
//! arguments come back byte for byte.

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

/// Socket.IO packet types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    /// `0`: join a namespace (client), or the join's acknowledgement (server).
    Connect = 0,
    /// `1`: leave a namespace.
    Disconnect = 1,
    /// `2`: an event.
    Event = 2,
    /// `3`: the answer to an event sent with an ack id.
    Ack = 3,
    /// `4`: a refused namespace join.
    ConnectError = 4,
    /// `5`: an event with binary attachments.
    BinaryEvent = 5,
    /// `6`: an ack with binary attachments.
    BinaryAck = 6,
}

impl PacketType {
    fn from_char(c: u8) -> Option<Self> {
        Some(match c {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// The digit on the wire.
    pub fn as_char(self) -> char {
        (b'0' + self as u8) as char
    }

    fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// Why a string is not a valid Socket.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Nothing to parse.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type.
    #[error("unknown packet type")]
    UnknownType,
    /// A binary packet without a valid `N-` attachment count (N >= 1).
    #[error("invalid attachment count")]
    InvalidAttachments,
    /// An ack id that is not a valid number.
    #[error("invalid ack id")]
    InvalidAckId,
    /// The payload is not valid JSON.
    #[error("invalid json payload")]
    InvalidJson,
    /// The payload does not have the shape the packet type requires.
    #[error("invalid payload for packet type {0:?}")]
    InvalidPayload(PacketType),
    /// A binary placeholder whose `num` is not one of the announced attachments
    /// (the official decoder's "illegal attachments").
    #[error("placeholder does not reference an attachment")]
    InvalidPlaceholder,
}

/// Names a client may not emit (they are lifecycle events in the reference).
pub const RESERVED_EVENTS: &[&str] = &[
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// A parsed packet. Binary attachments, if any, arrive separately.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// The packet type.
    pub kind: PacketType,
    /// The namespace (`/` when absent on the wire).
    pub nsp: String,
    /// The ack id, if any.
    pub id: Option<u64>,
    /// The JSON payload, if any (checked against the type's rules).
    pub data: Option<Value>,
    /// Number of binary attachments that follow (binary types only, >= 1).
    pub attachments: usize,
}

/// Parses one packet (the payload of an Engine.IO `4` message).
pub fn parse(s: &str) -> Result<Packet, ParseError> {
    let bytes = s.as_bytes();
    let kind = PacketType::from_char(*bytes.first().ok_or(ParseError::Empty)?)
        .ok_or(ParseError::UnknownType)?;
    let mut i = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i == start || i >= bytes.len() || bytes[i] != b'-' {
            return Err(ParseError::InvalidAttachments);
        }
        attachments = s[start..i]
            .parse()
            .map_err(|_| ParseError::InvalidAttachments)?;
        if attachments == 0 || attachments > MAX_ATTACHMENTS {
            return Err(ParseError::InvalidAttachments);
        }
        i += 1;
    }

    let mut nsp = String::from("/");
    if bytes.get(i) == Some(&b'/') {
        let end = s[i..].find(',').map_or(bytes.len(), |p| i + p);
        nsp = s[i..end].to_owned();
        i = if end < bytes.len() { end + 1 } else { end };
    }

    let start = i;
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    let id = if i > start {
        Some(s[start..i].parse().map_err(|_| ParseError::InvalidAckId)?)
    } else {
        None
    };

    let rest = &s[i..];
    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest).map_err(|_| ParseError::InvalidJson)?)
    };

    let valid = match kind {
        PacketType::Connect => data.as_ref().is_none_or(Value::is_object),
        PacketType::Disconnect => data.is_none(),
        PacketType::Event | PacketType::BinaryEvent => match &data {
            Some(Value::Array(items)) => match items.first() {
                Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
                _ => false,
            },
            _ => false,
        },
        PacketType::Ack | PacketType::BinaryAck => matches!(data, Some(Value::Array(_))),
        PacketType::ConnectError => false,
    };
    if !valid {
        return Err(ParseError::InvalidPayload(kind));
    }
    if kind.is_binary()
        && let Some(data) = &data
        && !placeholders_valid(data, attachments)
    {
        return Err(ParseError::InvalidPlaceholder);
    }
    Ok(Packet {
        kind,
        nsp,
        id,
        data,
        attachments,
    })
}

/// Whether every object the official decoder takes for a placeholder
/// (`"_placeholder": true`) has an integer `num` below `attachments`. The
/// official client refuses a packet with any other (and closes its
/// connection), so such a packet must not be accepted and relayed to one.
fn placeholders_valid(value: &Value, attachments: usize) -> bool {
    match value {
        Value::Array(items) => items.iter().all(|v| placeholders_valid(v, attachments)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                map.get("num")
                    .and_then(Value::as_u64)
                    .is_some_and(|n| n < attachments as u64)
            } else {
                map.values().all(|v| placeholders_valid(v, attachments))
            }
        }
        _ => true,
    }
}

/// Most attachments one packet may announce (a bound on memory held per client).
pub const MAX_ATTACHMENTS: usize = 1024;

/// Writes the header of a packet: type, attachment count, namespace, ack id.
fn write_header(
    out: &mut Vec<u8>,
    kind: PacketType,
    attachments: usize,
    nsp: &str,
    id: Option<u64>,
) {
    out.push(kind.as_char() as u8);
    if kind.is_binary() {
        out.extend_from_slice(attachments.to_string().as_bytes());
        out.push(b'-');
    }
    if nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.push(b',');
    }
    if let Some(id) = id {
        out.extend_from_slice(id.to_string().as_bytes());
    }
}

/// Encodes a packet as the text of an Engine.IO message, *including* the
/// Engine.IO `4` prefix, ready to become a shared frame.
pub fn encode_message<T: Serialize + ?Sized>(
    kind: PacketType,
    attachments: usize,
    nsp: &str,
    id: Option<u64>,
    data: Option<&T>,
) -> String {
    let mut out = Vec::with_capacity(64);
    out.push(b'4');
    write_header(&mut out, kind, attachments, nsp, id);
    if let Some(data) = data {
        // unwrap: serde_json only fails on non-string map keys or failing Serialize impls,
        // which the payload types used here (Value, strings, derived structs) never have.
        serde_json::to_writer(&mut out, data).expect("packet payload serialises");
    }
    // unwrap: the header is ASCII and serde_json writes UTF-8.
    String::from_utf8(out).expect("utf-8 packet")
}

/// An event's payload: `["name", arg0, arg1, ...]`, serialised without copying the args.
pub struct EventPayload<'a> {
    /// The event name.
    pub name: &'a str,
    /// The arguments.
    pub args: &'a [Value],
}

impl Serialize for EventPayload<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.args.len() + 1))?;
        seq.serialize_element(self.name)?;
        for a in self.args {
            seq.serialize_element(a)?;
        }
        seq.end()
    }
}

/// A binary placeholder `{"_placeholder":true,"num":N}`, in that key order.
pub fn placeholder(num: usize) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("_placeholder".into(), Value::Bool(true));
    m.insert("num".into(), Value::from(num));
    Value::Object(m)
}

/// The type to use for an event or ack, given its attachments.
pub fn event_type(binary: &[Bytes]) -> PacketType {
    if binary.is_empty() {
        PacketType::Event
    } else {
        PacketType::BinaryEvent
    }
}

/// The ack type, given its attachments.
pub fn ack_type(binary: &[Bytes]) -> PacketType {
    if binary.is_empty() {
        PacketType::Ack
    } else {
        PacketType::BinaryAck
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn p(s: &str) -> Packet {
        parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn parses_connect_forms() {
        let c = p("0");
        assert_eq!(
            (c.kind, c.nsp.as_str(), c.data),
            (PacketType::Connect, "/", None)
        );
        assert_eq!(p("0{\"token\":\"123\"}").data, Some(json!({"token":"123"})));
        assert_eq!(p("0/custom,").nsp, "/custom");
        assert_eq!(p("0/custom").nsp, "/custom");
        let c = p("0/custom,{\"token\":\"abc\"}");
        assert_eq!(
            (c.nsp.as_str(), c.data),
            ("/custom", Some(json!({"token":"abc"})))
        );
        assert_eq!(p("1/custom,").kind, PacketType::Disconnect);
        assert_eq!(p("1").nsp, "/");
    }

    #[test]
    fn parses_events_and_acks() {
        let e = p(r#"2["message",1,"2",{"3":[true]}]"#);
        assert_eq!(e.kind, PacketType::Event);
        assert_eq!(e.id, None);
        let e = p(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#);
        assert_eq!(e.id, Some(456));
        let e = p(r#"2/custom,7["x"]"#);
        assert_eq!((e.nsp.as_str(), e.id), ("/custom", Some(7)));
        let b = p(r#"52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
        assert_eq!((b.kind, b.attachments), (PacketType::BinaryEvent, 2));
        let b = p(r#"52-789["message-with-ack",{"_placeholder":true,"num":0}]"#);
        assert_eq!(b.id, Some(789));
        let b = p(r#"61-/custom,3[{"_placeholder":true,"num":0}]"#);
        assert_eq!(
            (b.kind, b.nsp.as_str(), b.id),
            (PacketType::BinaryAck, "/custom", Some(3))
        );
        assert_eq!(p("312[]").id, Some(12));
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse("abc"), Err(ParseError::UnknownType));
        assert_eq!(parse("7"), Err(ParseError::UnknownType));
        assert_eq!(
            parse("2{}"),
            Err(ParseError::InvalidPayload(PacketType::Event))
        );
        assert_eq!(
            parse("2"),
            Err(ParseError::InvalidPayload(PacketType::Event))
        );
        assert_eq!(
            parse("2[]"),
            Err(ParseError::InvalidPayload(PacketType::Event))
        );
        assert_eq!(
            parse("2[1]"),
            Err(ParseError::InvalidPayload(PacketType::Event))
        );
        assert_eq!(
            parse(r#"2["disconnect"]"#),
            Err(ParseError::InvalidPayload(PacketType::Event))
        );
        assert_eq!(
            parse(r#"2abc["message-with-ack",1]"#),
            Err(ParseError::InvalidJson)
        );
        assert_eq!(
            parse("0[]"),
            Err(ParseError::InvalidPayload(PacketType::Connect))
        );
        assert_eq!(
            parse("0\"x\""),
            Err(ParseError::InvalidPayload(PacketType::Connect))
        );
        assert_eq!(
            parse("1{}"),
            Err(ParseError::InvalidPayload(PacketType::Disconnect))
        );
        assert_eq!(
            parse("3{}"),
            Err(ParseError::InvalidPayload(PacketType::Ack))
        );
        assert_eq!(
            parse("4{}"),
            Err(ParseError::InvalidPayload(PacketType::ConnectError))
        );
        assert_eq!(parse(r#"5["x"]"#), Err(ParseError::InvalidAttachments));
        assert_eq!(parse(r#"50-["x"]"#), Err(ParseError::InvalidAttachments));
        assert_eq!(parse(r#"51["x"]"#), Err(ParseError::InvalidAttachments));
        assert_eq!(
            parse("52-"),
            Err(ParseError::InvalidPayload(PacketType::BinaryEvent))
        );
        assert_eq!(
            parse("599999999999999999999999-[\"x\"]"),
            Err(ParseError::InvalidAttachments)
        );
        assert_eq!(
            parse("299999999999999999999999[\"x\"]"),
            Err(ParseError::InvalidAckId)
        );
        assert_eq!(parse("2[\"x\""), Err(ParseError::InvalidJson));
    }

    /// Found by `fuzz/socketio_packet`: a binary packet whose placeholder points
    /// past its attachments was accepted, and `sendToAll` relayed it to clients
    /// whose decoder then closed their connections ("illegal attachments").
    #[test]
    fn rejects_placeholders_without_their_attachment() {
        let bad = [
            r#"51-["x",{"_placeholder":true,"num":1}]"#,
            r#"51-["x",{"_placeholder":true,"num":-1}]"#,
            r#"51-["x",{"_placeholder":true,"num":"0"}]"#,
            r#"51-["x",{"_placeholder":true}]"#,
            r#"51-["x",{"a":[{"_placeholder":true,"num":0.5}]}]"#,
            r#"62-3[{"_placeholder":true,"num":0},{"_placeholder":true,"num":2}]"#,
        ];
        for s in bad {
            assert_eq!(parse(s), Err(ParseError::InvalidPlaceholder), "{s}");
        }
        // Placeholders in range, nested, repeated or with extra keys are fine; a
        // text event's `_placeholder` objects are plain data.
        p(r#"52-["x",{"a":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}]"#);
        p(r#"51-["x",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#);
        p(r#"51-["x",{"_placeholder":false,"num":9}]"#);
        p(r#"2["x",{"_placeholder":true,"num":9}]"#);
    }

    /// Found by `fuzz/socketio_packet`: a long number re-encoded was not the
    /// number parsed (serde_json's default float parser can be one ulp off);
    /// with `float_roundtrip` the double is the correctly rounded one, as
    /// `JSON.parse` gives, and survives re-encoding.
    #[test]
    fn long_numbers_survive_reencoding() {
        let digits = "2444444444444444444444444444444444444444444444444442";
        let packet = p(&format!("3\n[{digits}]"));
        let expected: f64 = digits.parse().unwrap();
        assert_eq!(packet.data, Some(json!([expected])));
        let wire = encode_message(PacketType::Ack, 0, "/", None, packet.data.as_ref());
        assert_eq!(parse(&wire[1..]), Ok(packet));
    }

    #[test]
    fn encodes_byte_exact() {
        let args = [json!(1), json!("2"), json!({"3":[true]})];
        let payload = EventPayload {
            name: "message-back",
            args: &args,
        };
        assert_eq!(
            encode_message(PacketType::Event, 0, "/", None, Some(&payload)),
            r#"42["message-back",1,"2",{"3":[true]}]"#
        );
        let ack = [json!(1), json!("2"), json!({"3":[false]})];
        assert_eq!(
            encode_message(PacketType::Ack, 0, "/", Some(456), Some(&ack[..])),
            r#"43456[1,"2",{"3":[false]}]"#
        );
        let ph = [placeholder(0), placeholder(1)];
        assert_eq!(
            encode_message(PacketType::BinaryAck, 2, "/", Some(789), Some(&ph[..])),
            r#"462-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#
        );
        assert_eq!(
            encode_message(
                PacketType::Connect,
                0,
                "/custom",
                None,
                Some(&json!({"sid":"x"}))
            ),
            r#"40/custom,{"sid":"x"}"#
        );
        assert_eq!(
            encode_message(
                PacketType::ConnectError,
                0,
                "/random",
                None,
                Some(&json!({"message":"Invalid namespace"}))
            ),
            r#"44/random,{"message":"Invalid namespace"}"#
        );
        assert_eq!(
            encode_message::<Value>(PacketType::Disconnect, 0, "/", None, None),
            "41"
        );
    }

    #[test]
    fn keys_keep_their_order() {
        let e = p(r#"2["m",{"z":1,"a":2,"m":{"y":0,"b":1}}]"#);
        let out = encode_message(PacketType::Event, 0, "/", None, e.data.as_ref());
        assert_eq!(out, r#"42["m",{"z":1,"a":2,"m":{"y":0,"b":1}}]"#);
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            "[a-zA-Z0-9 é\"\\\\/\n]{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("[a-z]{1,4}", inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_identity(
            name in "[a-z][a-z-]{0,10}",
            args in prop::collection::vec(json_value(), 0..4),
            nsp in prop_oneof![Just("/".to_string()), "/[a-z]{1,8}"],
            id in prop::option::of(0u64..1_000_000),
        ) {
            prop_assume!(!RESERVED_EVENTS.contains(&name.as_str()));
            let payload = EventPayload { name: &name, args: &args };
            let wire = encode_message(PacketType::Event, 0, &nsp, id, Some(&payload));
            let parsed = parse(&wire[1..]).unwrap();
            let mut expected = vec![Value::String(name.clone())];
            expected.extend(args.iter().cloned());
            prop_assert_eq!(parsed.kind, PacketType::Event);
            prop_assert_eq!(parsed.nsp, nsp);
            prop_assert_eq!(parsed.id, id);
            prop_assert_eq!(parsed.data, Some(Value::Array(expected)));
        }

        #[test]
        fn arbitrary_input_never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }
    }
}
