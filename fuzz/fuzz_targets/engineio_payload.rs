//! HTTP long-polling payloads, as a POST body carries them: `payload::decode`.
//!
//! Properties: decoding never panics; an accepted body has exactly one packet
//! per `\x1e`-separated record, and no binary packet larger than its base64;
//! the packets re-encoded as the server writes them (`payload::encode`, text
//! with its type digit, binary as `b` + base64) decode to the same packets,
//! and `encoded_len` predicts the encoded size exactly; a body that only
//! carries messages and binary is reproduced byte for byte.
#![no_main]

use bytestring::ByteString;
use hubbub_engineio::packet::{Frame, Packet};
use hubbub_engineio::payload;
use libfuzzer_sys::fuzz_target;

fn frame_of(packet: &Packet) -> Frame {
    Frame::Text(ByteString::from(match packet {
        Packet::Binary(b) => return Frame::Binary(b.clone()),
        Packet::Open => "0".to_owned(),
        Packet::Close => "1".to_owned(),
        Packet::Ping(p) => format!("2{p}"),
        Packet::Pong(p) => format!("3{p}"),
        Packet::Message(m) => format!("4{m}"),
        Packet::Upgrade => "5".to_owned(),
        Packet::Noop => "6".to_owned(),
    }))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(packets) = payload::decode(ByteString::from(text)) else {
        return;
    };
    let records: Vec<&str> = text.split(payload::SEPARATOR).collect();
    assert_eq!(packets.len(), records.len());
    for (packet, record) in packets.iter().zip(&records) {
        if let Packet::Binary(b) = packet {
            assert!(record.starts_with('b'));
            assert!(b.len() <= (record.len() - 1) / 4 * 3);
        }
    }
    let frames: Vec<Frame> = packets.iter().map(frame_of).collect();
    let body = payload::encode(&frames);
    let expected: usize = frames.iter().map(payload::encoded_len).sum::<usize>() - 1;
    assert_eq!(body.len(), expected, "encoded_len disagrees with encode");
    let again = payload::decode(ByteString::from(body.as_str())).expect("re-encoded body decodes");
    assert_eq!(again, packets);
    if packets.iter().all(|p| {
        matches!(
            p,
            Packet::Message(_) | Packet::Binary(_) | Packet::Ping(_) | Packet::Pong(_)
        )
    }) {
        assert_eq!(body, text, "canonical body not reproduced");
    }
});
