//! Connection state recovery, as a reconnecting client or the session store
//! hands it over (`hubbub_socketio::recovery`): the offset string a client
//! sends back, the `{"pid","offset"}` claim in its CONNECT payload, and a
//! stored session record.
//!
//! The input is UTF-8 text. Properties: nothing panics; an accepted offset
//! prints as `ms-seq` and parses back to itself, and two offsets compare as
//! their `(ms, seq)` pairs; a claim is found exactly when `pid` is a string,
//! and carries the `offset` only when that is a string; a session record that
//! deserializes serializes to JSON that deserializes to the same record.
#![no_main]

use hubbub_socketio::recovery::{Claim, Offset, SessionRecord};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(offset) = text.parse::<Offset>() {
        let printed = offset.to_string();
        assert_eq!(printed.parse::<Offset>(), Ok(offset));
        let (ms, seq) = text.split_once('-').expect("an offset has a dash");
        assert_eq!(ms.parse::<u64>().ok(), Some(offset.ms));
        assert_eq!(seq.parse::<u64>().ok(), Some(offset.seq));
        let next = Offset {
            ms: offset.ms,
            seq: offset.seq.wrapping_add(1),
        };
        assert_eq!(offset < next, offset.seq != u64::MAX);
    }
    if let Ok(auth) = serde_json::from_str::<Value>(text) {
        let claim = Claim::from_auth(&auth);
        let pid = auth.get("pid").and_then(Value::as_str);
        assert_eq!(claim.as_ref().map(|c| c.pid.as_str()), pid);
        if let Some(claim) = &claim {
            assert_eq!(
                claim.offset.as_deref(),
                auth.get("offset").and_then(Value::as_str)
            );
        }
    }
    if let Ok(record) = serde_json::from_str::<SessionRecord>(text) {
        let json = serde_json::to_string(&record).expect("a record serializes");
        let again: SessionRecord =
            serde_json::from_str(&json).expect("a written record reads back");
        assert_eq!(again, record);
    }
});
