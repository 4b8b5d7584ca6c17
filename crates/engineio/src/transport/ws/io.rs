//! The hand-written WebSocket I/O under the Engine.IO transport: the connection's
//! writing side ([`Outbound`], the reader of the session's queue), the frame reader
//! ([`Reader`] over a [`Source`]), the state the two share ([`Link`]), the poll-level
//! reads and writes on a connection of its own, and the graceful close. It knows the
//! Engine.IO session only to count bytes and to end the session with its transport; the
//! probe/upgrade logic and the read loop live in the parent module.
//!
//! Why not actix-ws or tungstenite: measured on the 2-core development machine
//! (docs/performance.md, "Change 1"-"Change 3"), the same server with actix-http's
//! dispatcher and an actix-ws writer task held 16.0 KiB per idle connection (fixed 8 KiB
//! read and 8 KiB write buffers, a channel and a second task per connection); this module
//! holds 5.2 KiB: no buffer while idle (the read buffer exists only while bytes wait to
//! be decoded, written chunks are freed at once), one task per connection polling
//! readiness instead of storing readiness futures, and no channel between the session's
//! queue and the socket — a broadcast frame costs one queue push and one wake-up, and
//! frames that pile up go out in one `write` (up to [`MAX_CHUNK`] bytes). The framing
//! itself is actix-http's codec, the one actix-ws wraps; only the I/O around it is ours.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_http::ws::{self, Codec};
use actix_web::web;
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::OwnedMutexGuard;
use tokio_util::codec::{Decoder, Encoder};

use crate::packet::Frame;
use crate::queue::Receiver;
use crate::{CloseReason, Engine, Session};

/// The most bytes of frames encoded into one chunk before it is written.
pub(crate) const MAX_CHUNK: usize = 32 * 1024;

pub(crate) type Queue = OwnedMutexGuard<Receiver>;

/// A frame the reader side asks the writer side to send, ahead of the queue.
pub(crate) enum Control {
    /// An Engine.IO packet (the open packet, `3probe`).
    Packet(Frame),
    /// The answer to a WebSocket ping.
    Pong(Bytes),
}

/// How the writer ends.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// Write what the queue still holds (a disconnect, the close packet), then
    /// a WebSocket close frame.
    Drain,
    /// Write a WebSocket close frame now.
    Now,
}

#[derive(Default)]
pub(crate) struct LinkState {
    control: VecDeque<Control>,
    queue: Option<Queue>,
    finish: Option<Finish>,
    /// The writer's waker (the connection's task), registered at every poll.
    writer: Option<Waker>,
}

/// What the reading and the writing side of a connection share (two tasks
/// inside actix-web, one task on a connection of its own).
#[derive(Default)]
pub(crate) struct Link {
    state: Mutex<LinkState>,
}

impl Link {
    pub(crate) fn update(&self, f: impl FnOnce(&mut LinkState)) {
        let mut state = self.state.lock();
        f(&mut state);
        if let Some(w) = &state.writer {
            w.wake_by_ref();
        }
    }
    pub(crate) fn control(&self, c: Control) {
        self.update(|s| s.control.push_back(c));
    }
    pub(crate) fn hand_over(&self, queue: Queue) {
        self.update(|s| s.queue = Some(queue));
    }
    pub(crate) fn finish(&self, how: Finish) {
        self.update(|s| {
            s.finish.get_or_insert(how);
        });
    }
}

/// The writing side: the session's queue (once it has it) and the control
/// frames, encoded as WebSocket frames, a chunk at a time.
pub(crate) struct Outbound {
    engine: Arc<Engine>,
    link: Arc<Link>,
    session: Arc<Session>,
    queue: Option<Queue>,
    codec: Codec,
    pub(crate) buf: BytesMut,
    done: bool,
}

impl Outbound {
    pub(crate) fn new(engine: Arc<Engine>, link: Arc<Link>, session: Arc<Session>) -> Outbound {
        Outbound {
            engine,
            link,
            session,
            queue: None,
            codec: Codec::new(),
            buf: BytesMut::new(),
            done: false,
        }
    }

    pub(crate) fn encode(&mut self, msg: ws::Message) {
        // Encoding a server frame into a growable buffer cannot fail.
        let _ = self.codec.encode(msg, &mut self.buf);
    }

    pub(crate) fn encode_packet(&mut self, frame: Frame) {
        let m = self.engine.metrics();
        m.packets_sent_total.inc();
        m.bytes_sent_total.inc_by(frame.len() as u64);
        self.encode(match frame {
            Frame::Text(t) => ws::Message::Text(t),
            Frame::Binary(b) => ws::Message::Binary(b),
        });
    }
}

impl futures_util::Stream for Outbound {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let (control, finish) = {
            let mut state = this.link.state.lock();
            match &mut state.writer {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            if this.queue.is_none() {
                this.queue = state.queue.take();
            }
            (std::mem::take(&mut state.control), state.finish)
        };
        for c in control {
            match c {
                Control::Packet(frame) => this.encode_packet(frame),
                Control::Pong(p) => this.encode(ws::Message::Pong(p)),
            }
        }
        let mut drained = true;
        if finish != Some(Finish::Now)
            && let Some(mut queue) = this.queue.take()
        {
            while this.buf.len() < MAX_CHUNK {
                match queue.poll_recv(cx) {
                    Poll::Ready(frame) => this.encode_packet(frame),
                    Poll::Pending => break,
                }
            }
            drained = this.buf.len() < MAX_CHUNK;
            this.queue = Some(queue);
        }
        if finish.is_some() && drained {
            this.encode(ws::Message::Close(None));
            this.done = true;
        }
        if !this.buf.is_empty() {
            // Taken whole: an idle connection keeps no write buffer either.
            Poll::Ready(Some(Ok(std::mem::take(&mut this.buf).freeze())))
        } else if this.done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        // The connection is gone (or finished). If this writer was the session's
        // transport, the session ends with it; a failed probe's writer never took
        // the queue and leaves the polling session alone.
        let had_queue = self.queue.is_some() || self.link.state.lock().queue.is_some();
        if had_queue {
            self.session.close(CloseReason::TransportClose);
        }
    }
}

/// A frame read from the client, continuations joined.
pub(crate) enum Incoming {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Close,
}

/// Why reading stopped with an error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error(transparent)]
    Protocol(#[from] ws::ProtocolError),
    #[error("text frame is not UTF-8")]
    Utf8,
    #[error("message over {0} bytes")]
    TooLarge(usize),
    #[error("continuation frame out of order")]
    Continuation,
}

/// Where a WebSocket's bytes come from.
pub(crate) trait Source {
    /// Appends the next bytes to `buf`; `false` once the client is gone.
    async fn fill(&mut self, buf: &mut BytesMut) -> bool;
}

/// The request payload of a WebSocket served inside actix-web.
impl Source for web::Payload {
    async fn fill(&mut self, buf: &mut BytesMut) -> bool {
        match self.next().await {
            // Copied out, so the dispatcher's read buffer is free for reuse at once.
            Some(Ok(chunk)) => {
                buf.extend_from_slice(&chunk);
                true
            }
            Some(Err(_)) | None => false,
        }
    }
}

/// A connection of its own: read when readable, into a buffer that exists
/// only while bytes wait to be decoded. Polled, not awaited through a stored
/// readiness future, so that an idle connection's task stays small.
impl Source for &TcpStream {
    async fn fill(&mut self, buf: &mut BytesMut) -> bool {
        let io = *self;
        std::future::poll_fn(|cx| {
            loop {
                match io.poll_read_ready(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(_)) => return Poll::Ready(false),
                    Poll::Ready(Ok(())) => {}
                }
                buf.reserve(READ_SIZE);
                match io.try_read_buf(buf) {
                    Ok(0) => return Poll::Ready(false),
                    Ok(_) => return Poll::Ready(true),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        // A spurious wake-up: do not keep the buffer while waiting.
                        if buf.is_empty() {
                            *buf = BytesMut::new();
                        }
                    }
                    Err(_) => return Poll::Ready(false),
                }
            }
        })
        .await
    }
}

/// Decodes a WebSocket's bytes into [`Incoming`] frames.
pub(crate) struct Reader<S> {
    source: S,
    pub(crate) buf: BytesMut,
    codec: Codec,
    max: usize,
    /// A fragmented message being joined: whether it is text, and its bytes.
    partial: Option<(bool, BytesMut)>,
}

impl<S: Source> Reader<S> {
    pub(crate) fn new(source: S, buf: BytesMut, max: usize) -> Reader<S> {
        // A leftover of the HTTP read buffer is copied, so that its (larger)
        // allocation is not held for the life of the connection.
        let buf = if buf.is_empty() {
            BytesMut::new()
        } else {
            BytesMut::from(&buf[..])
        };
        Reader {
            source,
            buf,
            codec: Codec::new().max_size(max),
            max,
            partial: None,
        }
    }

    /// The next frame, or `None` once the client is gone. Cancel-safe: the
    /// bytes read so far stay in `self`.
    pub(crate) async fn next(&mut self) -> Result<Option<Incoming>, ReadError> {
        loop {
            while let Some(frame) = self.codec.decode(&mut self.buf)? {
                if let Some(incoming) = self.on_frame(frame)? {
                    return Ok(Some(incoming));
                }
            }
            if self.buf.is_empty() && self.buf.capacity() > 0 {
                // Nothing waits: an idle connection holds no read buffer.
                self.buf = BytesMut::new();
            }
            if !self.source.fill(&mut self.buf).await {
                return Ok(None);
            }
        }
    }

    pub(crate) fn on_frame(&mut self, frame: ws::Frame) -> Result<Option<Incoming>, ReadError> {
        use ws::{Frame as F, Item};
        Ok(match frame {
            F::Text(b) => Some(text(b)?),
            F::Binary(b) => Some(Incoming::Binary(b)),
            F::Ping(p) => Some(Incoming::Ping(p)),
            F::Pong(_) => None,
            F::Close(_) => Some(Incoming::Close),
            F::Continuation(item) => match (item, self.partial.as_mut()) {
                (Item::FirstText(b), None) => self.start(true, b)?,
                (Item::FirstBinary(b), None) => self.start(false, b)?,
                (Item::Continue(b), Some(_)) => self.extend(b)?,
                (Item::Last(b), Some(_)) => {
                    self.extend(b)?;
                    let (is_text, bytes) = self.partial.take().unwrap_or_default();
                    let bytes = bytes.freeze();
                    Some(if is_text {
                        text(bytes)?
                    } else {
                        Incoming::Binary(bytes)
                    })
                }
                _ => return Err(ReadError::Continuation),
            },
        })
    }

    /// Bytes held now: undecoded input plus a fragmented message being joined.
    pub(crate) fn held(&self) -> usize {
        self.buf.len() + self.partial.as_ref().map_or(0, |(_, b)| b.len())
    }

    pub(crate) fn start(&mut self, is_text: bool, b: Bytes) -> Result<Option<Incoming>, ReadError> {
        self.partial = Some((is_text, BytesMut::new()));
        self.extend(b)
    }

    pub(crate) fn extend(&mut self, b: Bytes) -> Result<Option<Incoming>, ReadError> {
        if let Some((_, bytes)) = self.partial.as_mut() {
            if bytes.len() + b.len() > self.max {
                return Err(ReadError::TooLarge(self.max));
            }
            bytes.extend_from_slice(&b);
        }
        Ok(None)
    }
}

pub(crate) fn text(b: Bytes) -> Result<Incoming, ReadError> {
    ByteString::try_from(b)
        .map(Incoming::Text)
        .map_err(|_| ReadError::Utf8)
}

/// How long a connection whose reading side has ended may take to write what
/// is left (the close packet, then a close frame).
pub(crate) const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing connection waits for the client to close its side.
pub(crate) const LINGER: Duration = Duration::from_secs(1);

/// Bytes read per system call on a connection of its own.
pub(crate) const READ_SIZE: usize = 4096;

/// Writes every chunk the outbound side produces, until it ends or the
/// client is gone.
pub(crate) async fn write_loop(out: &mut Outbound, io: &TcpStream) {
    while let Some(Ok(chunk)) = out.next().await {
        if write_all(io, &chunk).await.is_err() {
            return;
        }
    }
}

/// Writes all of `bytes`, trying at once and waiting for room only when the
/// socket's buffer is full.
pub(crate) async fn write_all(io: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    std::future::poll_fn(|cx| {
        while !bytes.is_empty() {
            match io.try_write(bytes) {
                Ok(0) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    match io.poll_write_ready(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Ready(Ok(())) => {}
                    }
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    })
    .await
}

/// Ends a connection: our side first, then what the client still sends is
/// read and dropped (briefly), so that the close does not turn into a reset
/// that could destroy the last frames on their way.
pub(crate) async fn close_gracefully(mut io: TcpStream) {
    use tokio::io::AsyncWriteExt;
    if io.shutdown().await.is_err() {
        return;
    }
    let _ = tokio::time::timeout(LINGER, async {
        let mut sink = BytesMut::new();
        loop {
            if io.readable().await.is_err() {
                return;
            }
            sink.clear();
            sink.reserve(512);
            match io.try_read_buf(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    })
    .await;
}
