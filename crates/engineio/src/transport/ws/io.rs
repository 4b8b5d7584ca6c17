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
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use actix_http::ws::{self, Codec};
use actix_web::web;
use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::OwnedMutexGuard;
use tokio_util::codec::Decoder;

use crate::packet::Frame;
use crate::queue::Receiver;
use crate::{CloseReason, Session};

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
    link: Arc<Link>,
    session: Arc<Session>,
    queue: Option<Queue>,
    /// Bytes encoded but not written yet: the 101 answer at the start, then only
    /// what a full socket buffer left over. Empty (no allocation) otherwise.
    pub(crate) buf: BytesMut,
    done: bool,
    /// The last chunk carried frames of several packets: broadcasts reach this
    /// connection faster than its turns come, so its next write waits up to
    /// [`HOLD`] to take more of them at once (see `poll_write`).
    behind: bool,
    /// The timer of a held write: allocated when the writer falls behind, dropped
    /// once a write carries one packet or none.
    hold: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// How long a writer that is behind holds its next write (see `poll_write`).
const HOLD: Duration = Duration::from_millis(1);

/// What a turn of encoding found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoded {
    /// Nothing to write now; the writer is woken when there is.
    Idle,
    /// Frames were encoded, and the writer is registered for more.
    Some,
    /// Frames were encoded up to the chunk's size; more are queued.
    More,
    /// The close frame was encoded: the writer ends once it is written.
    Last,
}

impl Outbound {
    /// The writer of `session` (whose metrics it counts in: the engine's).
    pub(crate) fn new(link: Arc<Link>, session: Arc<Session>) -> Outbound {
        Outbound {
            link,
            session,
            queue: None,
            buf: BytesMut::new(),
            done: false,
            behind: false,
            hold: None,
        }
    }

    /// Encodes what is ready into `dst` (control frames first, then the session's
    /// queue, up to about [`MAX_CHUNK`] bytes) and registers `cx` for more.
    fn encode_ready(&mut self, cx: &mut Context<'_>, dst: &mut BytesMut) -> Encoded {
        if self.done {
            return Encoded::Last;
        }
        let start = dst.len();
        let (control, finish) = {
            let mut state = self.link.state.lock();
            match &mut state.writer {
                Some(w) if w.will_wake(cx.waker()) => {}
                slot => *slot = Some(cx.waker().clone()),
            }
            if self.queue.is_none() {
                self.queue = state.queue.take();
            }
            // Usually empty: taken only when not, to keep the common path short.
            let control = if state.control.is_empty() {
                None
            } else {
                Some(std::mem::take(&mut state.control))
            };
            (control, state.finish)
        };
        let (mut packets, mut bytes) = (0u64, 0u64);
        for c in control.into_iter().flatten() {
            match c {
                Control::Packet(frame) => {
                    packets += 1;
                    bytes += frame.len() as u64;
                    encode_data(dst, &frame);
                }
                Control::Pong(p) => encode_frame(dst, OP_PONG, &p),
            }
        }
        let mut drained = true;
        if finish != Some(Finish::Now)
            && let Some(queue) = self.queue.as_mut()
        {
            // All the frames of a chunk are taken under one lock of the queue, which
            // also registers this writer once it is empty.
            drained = queue
                .poll_recv_each(cx, MAX_CHUNK, |frame| {
                    packets += 1;
                    bytes += frame.len() as u64;
                    encode_data(dst, &frame);
                })
                .is_pending();
        }
        self.behind = packets > 1;
        if !self.behind {
            // The burst is over: a connection that is not behind keeps no timer (a join's
            // replayed history makes almost every connection behind once).
            self.hold = None;
        }
        if packets > 0 {
            // Counted once per chunk rather than per frame.
            let m = self.session.metrics();
            m.packets_sent_total.inc_by(packets);
            m.bytes_sent_total.inc_by(bytes);
        }
        if finish.is_some() && drained {
            encode_frame(dst, OP_CLOSE, &[]);
            self.done = true;
            Encoded::Last
        } else if !drained {
            Encoded::More
        } else if dst.len() > start {
            Encoded::Some
        } else {
            Encoded::Idle
        }
    }

    /// Writes to `io` until the writer ends (`Ready`) or has nothing to write
    /// (`Pending`, woken by a frame or by room in the socket's buffer). Frames are
    /// encoded into the thread's scratch buffer and written from there with one
    /// system call per chunk: a connection keeps bytes of its own only when the
    /// socket's buffer is full.
    ///
    /// A writer that is behind (its last chunk held several packets: broadcasts
    /// come faster than its turns) holds its next write for [`HOLD`], so that
    /// the broadcasts handled meanwhile leave in the same write. Under load that
    /// halves the writes, and the client's reads, per delivery, for at most a
    /// millisecond or two of latency (the timer's resolution); a connection that
    /// gets one packet at a time is never held (docs/performance.md, change 7).
    pub(crate) fn poll_write(&mut self, cx: &mut Context<'_>, io: &TcpStream) -> Poll<()> {
        if std::mem::take(&mut self.behind) && self.buf.is_empty() && !self.done {
            let deadline = tokio::time::Instant::now() + HOLD;
            let hold = self
                .hold
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
            hold.as_mut().reset(deadline);
            if hold.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        loop {
            while !self.buf.is_empty() {
                match io.try_write(&self.buf) {
                    Ok(0) => return Poll::Ready(()),
                    Ok(n) => {
                        let _ = self.buf.split_to(n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        match io.poll_write_ready(cx) {
                            Poll::Pending => return Poll::Pending,
                            Poll::Ready(Err(_)) => return Poll::Ready(()),
                            Poll::Ready(Ok(())) => {}
                        }
                    }
                    Err(_) => return Poll::Ready(()),
                }
            }
            if self.buf.capacity() > 0 {
                // Written: an idle connection keeps no write buffer.
                self.buf = BytesMut::new();
            }
            if self.done {
                return Poll::Ready(());
            }
            let written = SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                scratch.clear();
                let encoded = self.encode_ready(cx, &mut scratch);
                if encoded == Encoded::Idle {
                    return Poll::Pending;
                }
                let more = encoded != Encoded::Some;
                match io.try_write(&scratch) {
                    Ok(n) if n == scratch.len() => {}
                    // The rest waits in the connection's own buffer.
                    Ok(n) => self.buf.extend_from_slice(&scratch[n..]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        self.buf.extend_from_slice(&scratch)
                    }
                    Err(_) => return Poll::Ready(Err(())),
                }
                if scratch.capacity() > SCRATCH_KEEP {
                    // A large message went through: do not keep its room per thread.
                    *scratch = BytesMut::with_capacity(SCRATCH_KEEP);
                }
                Poll::Ready(Ok(more))
            });
            match written {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(())) => return Poll::Ready(()),
                // Everything is written and the writer is registered for what comes next
                // (the queue and the link wake it): no second look at an empty queue.
                Poll::Ready(Ok(false)) if self.buf.is_empty() => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
            }
        }
    }
}

thread_local! {
    /// Where a worker thread encodes the chunks its connections write: one
    /// buffer per thread instead of an allocation per write.
    static SCRATCH: std::cell::RefCell<BytesMut> =
        std::cell::RefCell::new(BytesMut::with_capacity(SCRATCH_KEEP));
}

/// Capacity the scratch buffer keeps between writes.
const SCRATCH_KEEP: usize = 2 * MAX_CHUNK;

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PONG: u8 = 0xA;

/// An Engine.IO packet as one WebSocket data frame (text or binary).
fn encode_data(dst: &mut BytesMut, frame: &Frame) {
    match frame {
        Frame::Text(t) => encode_frame(dst, OP_TEXT, t.as_bytes()),
        Frame::Binary(b) => encode_frame(dst, OP_BINARY, b),
    }
}

/// A final, unmasked (server-to-client) WebSocket frame (RFC 6455 section 5.2).
fn encode_frame(dst: &mut BytesMut, opcode: u8, payload: &[u8]) {
    let len = payload.len();
    dst.reserve(len + 10);
    dst.put_u8(0x80 | opcode);
    if len < 126 {
        dst.put_u8(len as u8);
    } else if len <= usize::from(u16::MAX) {
        dst.put_u8(126);
        dst.put_u16(len as u16);
    } else {
        dst.put_u8(127);
        dst.put_u64(len as u64);
    }
    dst.extend_from_slice(payload);
}

/// Inside actix-web: the 101 response's streaming body.
impl futures_util::Stream for Outbound {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let mut buf = std::mem::take(&mut this.buf);
        let encoded = this.encode_ready(cx, &mut buf);
        if !buf.is_empty() {
            // Taken whole: an idle connection keeps no write buffer either.
            Poll::Ready(Some(Ok(buf.freeze())))
        } else if encoded == Encoded::Last {
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

/// The wakers of a connection's two sides, each recording that it was woken
/// before waking the connection's task, so that the task polls only the side
/// that has something to do.
pub(crate) struct Sides {
    pub(crate) read: Arc<Side>,
    pub(crate) write: Arc<Side>,
}

impl Sides {
    /// Both sides start woken: each is polled once to register its interest.
    pub(crate) fn new() -> Sides {
        Sides {
            read: Arc::new(Side::default()),
            write: Arc::new(Side::default()),
        }
    }

    /// The task's own waker, which both sides wake.
    pub(crate) fn register(&self, waker: &Waker) {
        self.read.register(waker);
        self.write.register(waker);
    }
}

pub(crate) struct Side {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl Default for Side {
    fn default() -> Side {
        Side {
            woken: AtomicBool::new(true),
            task: Mutex::new(None),
        }
    }
}

impl Side {
    fn register(&self, waker: &Waker) {
        let mut task = self.task.lock();
        match &mut *task {
            Some(w) if w.will_wake(waker) => {}
            slot => *slot = Some(waker.clone()),
        }
    }

    /// Whether this side was woken since the last call.
    pub(crate) fn take(&self) -> bool {
        self.woken.swap(false, Ordering::AcqRel)
    }
}

impl std::task::Wake for Side {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(w) = &*self.task.lock() {
            w.wake_by_ref();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transport;
    use crate::metrics::EngineMetrics;
    use tokio::sync::Notify;
    use tokio_util::codec::Encoder;

    /// A waker that wakes whoever awaits `.0` (a wake-up before the wait is kept).
    #[derive(Default)]
    struct Woken(Notify);
    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.notify_one();
        }
    }

    /// One writer on a loopback connection, and the client's end of it.
    struct Writer {
        session: Arc<Session>,
        out: Outbound,
        server: TcpStream,
        /// The client's end, read directly (not through the runtime's readiness).
        client: std::net::TcpStream,
        woken: Arc<Woken>,
    }

    impl Writer {
        async fn new() -> Writer {
            let metrics = Arc::new(EngineMetrics::detached());
            let session = Session::new(Transport::WebSocket, 64, metrics);
            let link = Arc::new(Link::default());
            link.hand_over(session.rx.clone().lock_owned().await);
            let out = Outbound::new(link, session.clone());
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let client = TcpStream::connect(listener.local_addr().unwrap())
                .await
                .unwrap();
            let (server, _) = listener.accept().await.unwrap();
            let client = client.into_std().unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            Writer {
                session,
                out,
                server,
                client,
                woken: Arc::default(),
            }
        }

        fn send(&self, text: &'static str) {
            self.session
                .send(Frame::Text(ByteString::from_static(text)))
                .unwrap();
        }

        fn poll(&mut self) -> Poll<()> {
            let waker = Waker::from(self.woken.clone());
            self.out
                .poll_write(&mut Context::from_waker(&waker), &self.server)
        }

        /// Reads exactly `expected`'s length and checks the bytes.
        fn assert_written(&mut self, expected: &[u8]) {
            use std::io::Read;
            self.client.set_nonblocking(false).unwrap();
            let mut buf = vec![0; expected.len()];
            self.client.read_exact(&mut buf).expect("the frames arrive");
            assert_eq!(buf, expected);
        }

        /// Nothing was written (loopback: what a `write` sends is in the client's
        /// buffer once it returns).
        fn assert_nothing_written(&mut self) {
            use std::io::Read;
            self.client.set_nonblocking(true).unwrap();
            let mut buf = [0; 64];
            match self.client.read(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                other => panic!("expected nothing to read, got {other:?}"),
            }
        }

        async fn wake_up(&self) {
            tokio::time::timeout(Duration::from_secs(5), self.woken.0.notified())
                .await
                .expect("the writer is woken");
        }
    }

    fn frames(texts: &[&'static str]) -> Vec<u8> {
        let mut b = BytesMut::new();
        for t in texts {
            encode_data(&mut b, &Frame::Text(ByteString::from_static(t)));
        }
        b.to_vec()
    }

    /// A writer whose last write carried several packets holds its next one
    /// until its timer fires, and then writes everything queued meanwhile at
    /// once; a writer that got one packet at a time writes at once.
    #[tokio::test]
    async fn a_writer_behind_holds_its_next_write_once() {
        let mut w = Writer::new().await;
        // Two packets before the writer's first turn: one write, and it is behind.
        w.send("4a");
        w.send("4b");
        assert!(w.poll().is_pending());
        w.assert_written(&frames(&["4a", "4b"]));

        // Behind: the next packet waits for the hold...
        w.send("4c");
        w.wake_up().await;
        assert!(w.poll().is_pending());
        w.assert_nothing_written();
        w.send("4d");
        // ...whose timer wakes the writer, which then writes both in one go.
        w.wake_up().await;
        assert!(w.poll().is_pending());
        w.assert_written(&frames(&["4c", "4d"]));

        // Still behind (two packets): one more hold, with nothing to take, after which
        // the writer keeps no timer.
        assert!(w.poll().is_pending());
        assert!(w.out.hold.is_some());
        w.wake_up().await;
        assert!(w.poll().is_pending());
        w.assert_nothing_written();
        assert!(w.out.hold.is_none());

        // No longer behind: a single packet leaves at once, and so does the next.
        w.send("4e");
        w.wake_up().await;
        assert!(w.poll().is_pending());
        w.assert_written(&frames(&["4e"]));
        w.send("4f");
        w.wake_up().await;
        assert!(w.poll().is_pending());
        w.assert_written(&frames(&["4f"]));
    }

    /// The hand-written frame encoder writes exactly what actix-http's codec
    /// (the one the reading side decodes with) writes, at every length boundary.
    #[test]
    fn frames_match_the_codec() {
        for len in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
            let text = "x".repeat(len);
            let bin = Bytes::from(vec![7u8; len]);
            for (ours, theirs) in [
                (
                    Frame::Text(ByteString::from(text.clone())),
                    ws::Message::Text(ByteString::from(text.clone())),
                ),
                (Frame::Binary(bin.clone()), ws::Message::Binary(bin.clone())),
            ] {
                let mut a = BytesMut::new();
                encode_data(&mut a, &ours);
                let mut b = BytesMut::new();
                Codec::new().encode(theirs, &mut b).unwrap();
                assert_eq!(a, b, "length {len}");
            }
            let mut a = BytesMut::new();
            encode_frame(&mut a, OP_PONG, &bin);
            let mut b = BytesMut::new();
            Codec::new()
                .encode(ws::Message::Pong(bin.clone()), &mut b)
                .unwrap();
            assert_eq!(a, b, "pong of length {len}");
        }
        let mut a = BytesMut::new();
        encode_frame(&mut a, OP_CLOSE, &[]);
        let mut b = BytesMut::new();
        Codec::new()
            .encode(ws::Message::Close(None), &mut b)
            .unwrap();
        assert_eq!(a, b, "close");
    }
}
