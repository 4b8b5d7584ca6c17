//! Engine.IO v4 packets: pure parsing and encoding, no I/O.
//!
//! A packet is a type digit (`0` open … `6` noop) followed by an optional
//! payload. Over WebSocket a text frame is one packet and a binary frame is a
//! binary message; over HTTP long-polling packets are joined by `\x1e` and
//! binary messages are written `b<base64>` (see [`super::payload`]).
//!
//! Outgoing packets are kept as [`Frame`]s: a text frame already carries its
//! type digit, so a broadcast is encoded once and every recipient shares the
//! same bytes.

use bytes::Bytes;
use bytestring::ByteString;

/// Why a string or frame is not an Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Nothing at all was received where a packet was expected.
    #[error("empty packet")]
    Empty,
    /// The first character is not a packet type.
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    /// A `b` packet whose payload is not valid base64.
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    /// A packet type the client must not send (open, upgrade outside a probe, ...).
    #[error("unexpected packet type {0:?} from a client")]
    Unexpected(char),
}

/// A packet received from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// `0`: only servers send it; a client sending it is an error.
    Open,
    /// `1`: the client closes the session.
    Close,
    /// `2`: a ping; clients send `2probe` during an upgrade.
    Ping(ByteString),
    /// `3`: the answer to a server ping.
    Pong(ByteString),
    /// `4`: a text message for the application.
    Message(ByteString),
    /// `5`: the client completes an upgrade.
    Upgrade,
    /// `6`: does nothing.
    Noop,
    /// A binary message (a binary WebSocket frame, or `b<base64>` over polling).
    Binary(Bytes),
}

impl Packet {
    /// Parses a text packet (a WebSocket text frame or one polling record).
    pub fn parse_text(text: ByteString) -> Result<Packet, PacketError> {
        let first = text.chars().next().ok_or(PacketError::Empty)?;
        // All type characters are ASCII, so slicing after one byte is safe.
        let rest = || text.slice_ref(&text[1..]);
        Ok(match first {
            '0' => Packet::Open,
            '1' => Packet::Close,
            '2' => Packet::Ping(rest()),
            '3' => Packet::Pong(rest()),
            '4' => Packet::Message(rest()),
            '5' => Packet::Upgrade,
            '6' => Packet::Noop,
            other => return Err(PacketError::UnknownType(other)),
        })
    }
}

/// An outgoing packet, encoded once and cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text packet including its type digit, e.g. `4hello` or `2`.
    Text(ByteString),
    /// The raw bytes of a binary message.
    Binary(Bytes),
}

impl Frame {
    /// The `1` close packet.
    pub fn close() -> Frame {
        Frame::Text(ByteString::from_static("1"))
    }
    /// The `2` ping packet.
    pub fn ping() -> Frame {
        Frame::Text(ByteString::from_static("2"))
    }
    /// The `3probe` answer to an upgrade probe.
    pub fn pong_probe() -> Frame {
        Frame::Text(ByteString::from_static("3probe"))
    }
    /// The `6` noop packet.
    pub fn noop() -> Frame {
        Frame::Text(ByteString::from_static("6"))
    }

    /// A `4` message carrying `text`.
    pub fn message(text: &str) -> Frame {
        let mut s = String::with_capacity(text.len() + 1);
        s.push('4');
        s.push_str(text);
        Frame::Text(ByteString::from(s))
    }

    /// Size of the frame on the wire (before polling's base64 expansion).
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(t) => t.len(),
            Frame::Binary(b) => b.len(),
        }
    }

    /// Whether the frame carries no bytes at all (never true for valid frames).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The JSON of the `open` packet: exactly these five keys, in this order.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OpenPacket<'a> {
    /// The session id.
    pub sid: &'a str,
    /// Transports the client may upgrade to.
    pub upgrades: &'a [&'a str],
    /// Milliseconds between pings.
    pub ping_interval: u64,
    /// Milliseconds to answer a ping.
    pub ping_timeout: u64,
    /// Largest accepted payload in bytes.
    pub max_payload: usize,
}

impl OpenPacket<'_> {
    /// Encodes `0{...}`.
    pub fn encode(&self) -> Frame {
        let mut out = String::from("0");
        // unwrap: serialising a struct of strings and integers cannot fail.
        out.push_str(&serde_json::to_string(self).expect("open packet serialises"));
        Frame::Text(ByteString::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &'static str) -> Result<Packet, PacketError> {
        Packet::parse_text(ByteString::from_static(s))
    }

    #[test]
    fn parses_every_packet_type() {
        assert_eq!(parse("0"), Ok(Packet::Open));
        assert_eq!(parse("1"), Ok(Packet::Close));
        assert_eq!(parse("2"), Ok(Packet::Ping("".into())));
        assert_eq!(parse("2probe"), Ok(Packet::Ping("probe".into())));
        assert_eq!(parse("3"), Ok(Packet::Pong("".into())));
        assert_eq!(parse("4hello"), Ok(Packet::Message("hello".into())));
        assert_eq!(parse("4"), Ok(Packet::Message("".into())));
        assert_eq!(parse("4é✓"), Ok(Packet::Message("é✓".into())));
        assert_eq!(parse("5"), Ok(Packet::Upgrade));
        assert_eq!(parse("6"), Ok(Packet::Noop));
    }

    #[test]
    fn rejects_malformed_packets() {
        assert_eq!(parse(""), Err(PacketError::Empty));
        assert_eq!(parse("abc"), Err(PacketError::UnknownType('a')));
        assert_eq!(parse("7"), Err(PacketError::UnknownType('7')));
        assert_eq!(parse("é"), Err(PacketError::UnknownType('é')));
        assert_eq!(parse("\u{1e}4x"), Err(PacketError::UnknownType('\u{1e}')));
    }

    #[test]
    fn encodes_frames() {
        assert_eq!(Frame::message("hello"), Frame::Text("4hello".into()));
        assert_eq!(Frame::ping(), Frame::Text("2".into()));
        assert_eq!(Frame::pong_probe(), Frame::Text("3probe".into()));
        assert_eq!(Frame::noop().len(), 1);
    }

    #[test]
    fn open_packet_has_exactly_the_five_keys_in_order() {
        let open = OpenPacket {
            sid: "abc_-1",
            upgrades: &["websocket"],
            ping_interval: 300,
            ping_timeout: 200,
            max_payload: 1_000_000,
        };
        assert_eq!(
            open.encode(),
            Frame::Text(
                r#"0{"sid":"abc_-1","upgrades":["websocket"],"pingInterval":300,"pingTimeout":200,"maxPayload":1000000}"#
                    .into()
            )
        );
    }
}
