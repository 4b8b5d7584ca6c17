//! The reading side of a WebSocket connection run over bytes held in memory:
//! what hubbub makes of whatever a client writes after the handshake. For the
//! fuzz targets (`fuzz/`) and tests; not part of the API and hidden from the
//! docs. It runs the very [`Reader`] a connection uses (actix-http's codec in
//! server mode, continuations joined, the size limit), only the bytes come
//! from a list of chunks instead of a socket.

use std::collections::VecDeque;
use std::task::{Context, Poll, Waker};

use bytes::{Bytes, BytesMut};
use bytestring::ByteString;

use super::io::{Incoming, Reader, Source};

/// One thing the reader produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A text message (continuations joined), valid UTF-8.
    Text(ByteString),
    /// A binary message (continuations joined).
    Binary(Bytes),
    /// A WebSocket ping, answered with a pong by a connection.
    Ping(Bytes),
    /// A close frame: a connection ends here.
    Close,
    /// The reader refused the bytes (the message is the error's): a
    /// connection closes here as a transport error.
    Error(String),
}

/// What [`read_all`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// Everything read, in order, up to and including a close or an error.
    pub reads: Vec<Read>,
    /// The most bytes the reader held at once (undecoded input plus a
    /// fragmented message being joined), measured between reads.
    pub peak_buffered: usize,
}

/// Chunks handed out one per read, as a socket would.
struct Chunks(VecDeque<Bytes>);

impl Source for Chunks {
    async fn fill(&mut self, buf: &mut BytesMut) -> bool {
        match self.0.pop_front() {
            Some(chunk) => {
                buf.extend_from_slice(&chunk);
                true
            }
            None => false,
        }
    }
}

/// Reads `chunks` (what a client wrote, in the pieces a socket delivered
/// them) as a connection with a maximum message size of `max` would,
/// until the bytes run out, a close frame or an error.
pub fn read_all(chunks: impl IntoIterator<Item = Bytes>, max: usize) -> Replay {
    let mut reader = Reader::new(Chunks(chunks.into_iter().collect()), BytesMut::new(), max);
    let mut reads = Vec::new();
    let mut peak = 0;
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        // The chunks are always ready, so the future never waits.
        let next = match std::pin::pin!(reader.next()).poll(&mut cx) {
            Poll::Ready(r) => r,
            Poll::Pending => {
                reads.push(Read::Error("reader waited on bytes held in memory".into()));
                break;
            }
        };
        peak = peak.max(reader.held());
        match next {
            Ok(Some(Incoming::Text(t))) => reads.push(Read::Text(t)),
            Ok(Some(Incoming::Binary(b))) => reads.push(Read::Binary(b)),
            Ok(Some(Incoming::Ping(p))) => reads.push(Read::Ping(p)),
            Ok(Some(Incoming::Close)) => {
                reads.push(Read::Close);
                break;
            }
            Ok(None) => break,
            Err(e) => {
                reads.push(Read::Error(e.to_string()));
                break;
            }
        }
    }
    Replay {
        reads,
        peak_buffered: peak,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_http::ws::{Codec, Message};
    use tokio_util::codec::Encoder;

    /// Frames as a client writes them (masked).
    fn client_bytes(messages: Vec<Message>) -> Bytes {
        let mut codec = Codec::new().client_mode();
        let mut out = BytesMut::new();
        for m in messages {
            codec.encode(m, &mut out).expect("client frame encodes");
        }
        out.freeze()
    }

    #[test]
    fn joins_continuations_and_stops_at_close() {
        use actix_http::ws::Item;
        let bytes = client_bytes(vec![
            Message::Text("4hello".into()),
            Message::Continuation(Item::FirstText(Bytes::from_static(b"4a"))),
            Message::Ping(Bytes::from_static(b"p")),
            Message::Continuation(Item::Last(Bytes::from_static(b"b"))),
            Message::Binary(Bytes::from_static(&[1, 2])),
            Message::Close(None),
            Message::Text("4after".into()),
        ]);
        let one_byte_at_a_time = bytes.chunks(1).map(Bytes::copy_from_slice);
        let expected = vec![
            Read::Text("4hello".into()),
            Read::Ping(Bytes::from_static(b"p")),
            Read::Text("4ab".into()),
            Read::Binary(Bytes::from_static(&[1, 2])),
            Read::Close,
        ];
        assert_eq!(read_all([bytes.clone()], 100).reads, expected);
        assert_eq!(read_all(one_byte_at_a_time, 100).reads, expected);
    }

    #[test]
    fn refuses_what_a_connection_refuses() {
        let big = client_bytes(vec![Message::Text("4".repeat(101).into())]);
        let replay = read_all([big], 100);
        assert!(matches!(&replay.reads[..], [Read::Error(_)]), "{replay:?}");
        assert!(replay.peak_buffered <= 100 + 14, "{replay:?}");
        let not_utf8 = client_bytes(vec![Message::Text(
            // A ByteString cannot hold invalid UTF-8: write a binary frame's
            // bytes with the text opcode instead.
            "xx".into(),
        )]);
        let mut raw = not_utf8.to_vec();
        // Unmask, replace the payload by 0xff 0xfe, mask again (mask key at 2..6).
        let key = [raw[2], raw[3], raw[4], raw[5]];
        raw[6] = 0xff ^ key[0];
        raw[7] = 0xfe ^ key[1];
        let replay = read_all([Bytes::from(raw)], 100);
        assert_eq!(
            replay.reads,
            vec![Read::Error("text frame is not UTF-8".into())]
        );
        let unmasked = Bytes::from_static(&[0x81, 0x01, b'4']);
        assert!(matches!(
            &read_all([unmasked], 100).reads[..],
            [Read::Error(_)]
        ));
    }
}
