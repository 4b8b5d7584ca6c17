//! HTTP long-polling payloads: several packets joined by the record separator
//! `\x1e`, binary messages written `b` + standard base64 with padding. Pure
//! parsing and encoding, no I/O.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use bytestring::ByteString;

use super::packet::{Frame, Packet, PacketError};

/// The separator between packets in a polling payload.
pub const SEPARATOR: char = '\x1e';

/// Splits a POST body into packets, in order. The first invalid packet makes
/// the whole payload invalid.
pub fn decode(body: ByteString) -> Result<Vec<Packet>, PacketError> {
    let mut packets = Vec::new();
    for record in body.split(SEPARATOR) {
        let record = body.slice_ref(record);
        if let Some(b64) = record.strip_prefix('b') {
            let bytes = STANDARD
                .decode(b64.as_bytes())
                .map_err(|_| PacketError::InvalidBase64)?;
            packets.push(Packet::Binary(Bytes::from(bytes)));
        } else {
            packets.push(Packet::parse_text(record)?);
        }
    }
    Ok(packets)
}

/// Joins frames into one polling response body.
pub fn encode<'a>(frames: impl IntoIterator<Item = &'a Frame>) -> String {
    let mut out = String::new();
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        match frame {
            Frame::Text(text) => out.push_str(text),
            Frame::Binary(bytes) => {
                out.push('b');
                STANDARD.encode_string(bytes, &mut out);
            }
        }
    }
    out
}

/// The size a frame takes in a polling body (for capping one response).
pub fn encoded_len(frame: &Frame) -> usize {
    match frame {
        Frame::Text(t) => t.len() + 1,
        Frame::Binary(b) => 2 + b.len().div_ceil(3) * 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_several_packets_in_order() {
        let packets = decode("4test1\x1e4test2\x1ebAQIDBA==\x1e3".into()).unwrap();
        assert_eq!(
            packets,
            vec![
                Packet::Message("test1".into()),
                Packet::Message("test2".into()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
                Packet::Pong("".into()),
            ]
        );
    }

    #[test]
    fn rejects_invalid_payloads() {
        assert_eq!(decode("abc".into()), Err(PacketError::UnknownType('a')));
        assert_eq!(decode("4ok\x1e".into()), Err(PacketError::Empty));
        assert_eq!(decode("".into()), Err(PacketError::Empty));
        assert_eq!(decode("b!!!".into()), Err(PacketError::InvalidBase64));
        assert_eq!(decode("4a\x1e9".into()), Err(PacketError::UnknownType('9')));
    }

    #[test]
    fn encodes_text_and_binary() {
        let frames = [
            Frame::message("hello"),
            Frame::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            Frame::ping(),
        ];
        let body = encode(&frames);
        assert_eq!(body, "4hello\x1ebAQIDBA==\x1e2");
        let expected: usize = frames.iter().map(encoded_len).sum::<usize>() - 1;
        assert_eq!(body.len(), expected);
    }

    fn frame() -> impl Strategy<Value = Frame> {
        prop_oneof![
            "[^\u{1e}]*".prop_map(|s| Frame::message(&s)),
            prop::collection::vec(any::<u8>(), 0..64).prop_map(|v| Frame::Binary(Bytes::from(v))),
        ]
    }

    fn as_packet(frame: &Frame) -> Packet {
        match frame {
            Frame::Text(t) => Packet::parse_text(t.clone()).unwrap(),
            Frame::Binary(b) => Packet::Binary(b.clone()),
        }
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(frames in prop::collection::vec(frame(), 1..8)) {
            let body = encode(&frames);
            let decoded = decode(ByteString::from(body)).unwrap();
            let expected: Vec<Packet> = frames.iter().map(as_packet).collect();
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in any::<String>()) {
            let _ = decode(ByteString::from(body));
        }
    }
}
