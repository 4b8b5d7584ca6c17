//! The bytes a client writes on a WebSocket after the handshake, through the
//! very reader a hubbub connection runs (actix-http's codec in server mode,
//! continuations joined, the maxPayload limit):
//! `hubbub_engineio::transport::ws::replay`.
//!
//! The input is `[max_size_selector, split_selector, bytes...]`: the first
//! byte picks the message size limit, the second how the bytes are cut into
//! the pieces a socket delivers. Properties: reading never panics and never
//! waits on bytes it holds; no message is larger than the limit; the reader
//! never holds more than one frame header, one limit's worth of payload and
//! one delivered piece at once; and what is read does not depend on how the
//! bytes were cut (one piece, the selected pieces, one byte at a time).
#![no_main]

use bytes::Bytes;
use hubbub_engineio::transport::ws::replay::{Read, read_all};
use libfuzzer_sys::fuzz_target;

/// Largest WebSocket frame header: 2 + 8 bytes of length + 4 of mask.
const MAX_HEADER: usize = 14;

fuzz_target!(|data: &[u8]| {
    let [size, split, bytes @ ..] = data else {
        return;
    };
    let max = [0, 1, 2, 125, 126, 127, 1000, 65_536, 1_000_000][usize::from(*size) % 9];
    let step = usize::from(*split).max(1);
    let whole = read_all([Bytes::copy_from_slice(bytes)], max);
    let pieces: Vec<Bytes> = bytes.chunks(step).map(Bytes::copy_from_slice).collect();
    let cut = read_all(pieces, max);
    let single: Vec<Bytes> = bytes.chunks(1).map(Bytes::copy_from_slice).collect();
    let trickled = read_all(single, max);
    for replay in [&whole, &cut, &trickled] {
        for read in &replay.reads {
            match read {
                Read::Text(t) => assert!(t.len() <= max, "text of {} over {max}", t.len()),
                Read::Binary(b) => assert!(b.len() <= max, "binary of {} over {max}", b.len()),
                Read::Ping(p) => assert!(p.len() <= 125.min(max.max(125))),
                Read::Error(e) => assert_ne!(e, "reader waited on bytes held in memory"),
                Read::Close => {}
            }
        }
    }
    // Holding: one piece plus a frame and a joined message in the making.
    assert!(whole.peak_buffered <= bytes.len() + MAX_HEADER + max);
    // Cut into pieces it holds no more than the whole input would (a tighter
    // bound, a piece plus one frame, was refuted by the fuzzer).
    assert!(cut.peak_buffered <= bytes.len() + MAX_HEADER + max);
    assert!(trickled.peak_buffered <= bytes.len() + MAX_HEADER + max);
    // Everything up to the first error is the same however the bytes came.
    let ok = |r: &Vec<Read>| -> Vec<Read> {
        r.iter()
            .take_while(|x| !matches!(x, Read::Error(_)))
            .cloned()
            .collect()
    };
    assert_eq!(ok(&whole.reads), ok(&cut.reads));
    assert_eq!(ok(&whole.reads), ok(&trickled.reads));
    assert_eq!(
        whole.reads.last().map(|r| matches!(r, Read::Error(_))),
        cut.reads.last().map(|r| matches!(r, Read::Error(_))),
    );
});
