//! Engine.IO packets as a WebSocket text frame (or one polling record) carries
//! them: `Packet::parse_text`.
//!
//! Properties: parsing never panics; an accepted packet re-encoded the way a
//! client writes it parses back to the same packet; a `4` message keeps every
//! byte after its type digit (the application sees exactly what was sent).
#![no_main]

use bytestring::ByteString;
use hubbub_engineio::packet::{Frame, Packet, PacketError};
use libfuzzer_sys::fuzz_target;

/// The text a client writes for `packet` (its payload kept where it has one).
fn client_text(packet: &Packet) -> Option<String> {
    Some(match packet {
        Packet::Open => "0".into(),
        Packet::Close => "1".into(),
        Packet::Ping(p) => format!("2{p}"),
        Packet::Pong(p) => format!("3{p}"),
        Packet::Message(m) => format!("4{m}"),
        Packet::Upgrade => "5".into(),
        Packet::Noop => "6".into(),
        // Binary messages never travel as text over WebSocket.
        Packet::Binary(_) => return None,
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Packet::parse_text(ByteString::from(text)) {
        Ok(packet) => {
            let first = text.as_bytes()[0];
            assert!((b'0'..=b'6').contains(&first), "accepted type {first}");
            let again = client_text(&packet).expect("text packets only");
            assert_eq!(
                Packet::parse_text(ByteString::from(again.as_str())),
                Ok(packet.clone())
            );
            match &packet {
                Packet::Message(m) => {
                    assert_eq!(&**m, &text[1..]);
                    // What the server writes for a message is what a client parses.
                    let Frame::Text(out) = Frame::message(m) else {
                        unreachable!()
                    };
                    assert_eq!(&*out, text);
                }
                Packet::Ping(p) | Packet::Pong(p) => assert_eq!(&**p, &text[1..]),
                _ => {}
            }
        }
        Err(PacketError::Empty) => assert!(text.is_empty()),
        Err(PacketError::UnknownType(c)) => {
            assert_eq!(text.chars().next(), Some(c));
            assert!(!('0'..='6').contains(&c));
        }
        Err(e) => panic!("text parsing cannot fail with {e:?}"),
    }
});
