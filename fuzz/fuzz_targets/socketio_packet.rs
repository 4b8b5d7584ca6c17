//! Socket.IO packets, as the payload of an Engine.IO message: `packet::parse`.
//!
//! Properties: parsing never panics; an accepted packet announces at most
//! `MAX_ATTACHMENTS` attachments (and at least one exactly when it is a binary
//! type); re-encoded by the server's encoder it parses back to the same packet;
//! every binary placeholder of an accepted binary packet references one of the
//! attachments it announces (the official client's decoder refuses anything
//! else with "illegal attachments" and closes its connection, so such a packet
//! must never be accepted, relayed or acknowledged).
#![no_main]

use hubbub_socketio::packet::{self, MAX_ATTACHMENTS, PacketType};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Calls `f` with the `num` of every object the official decoder treats as a
/// placeholder (`_placeholder === true`), or `None` when `num` is not a number.
fn placeholders(v: &Value, f: &mut impl FnMut(Option<&Value>)) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| placeholders(i, f)),
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                f(map.get("num"));
            } else {
                map.values().for_each(|i| placeholders(i, f));
            }
        }
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = packet::parse(text) else {
        return;
    };
    let binary = matches!(p.kind, PacketType::BinaryEvent | PacketType::BinaryAck);
    assert_eq!(binary, p.attachments > 0);
    assert!(p.attachments <= MAX_ATTACHMENTS);
    assert!(p.nsp.starts_with('/') && !p.nsp.contains(','));
    if binary && let Some(data) = &p.data {
        placeholders(data, &mut |num| {
            let n = num.and_then(Value::as_u64);
            assert!(
                n.is_some_and(|n| (n as usize) < p.attachments),
                "placeholder {num:?} with {} attachments accepted",
                p.attachments
            );
        });
    }
    let wire = packet::encode_message(p.kind, p.attachments, &p.nsp, p.id, p.data.as_ref());
    assert!(wire.starts_with('4'));
    let again = packet::parse(&wire[1..])
        .unwrap_or_else(|e| panic!("{wire:?} re-encoded from {text:?}: {e}"));
    assert_eq!(again, p);
});
