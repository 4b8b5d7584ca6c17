//! The WebSocket transport: a session opened directly over WebSocket, and the
//! upgrade of a polling session (`2probe` / `3probe` / `5`). One Engine.IO
//! packet per frame: text packets in text frames, binary messages as raw
//! binary frames.
//!
//! Built on actix-http's WebSocket codec, with no channel between the
//! session's outbound queue and the socket:
//!
//! * **Writing.** [`Outbound`] *is* the reader of the session's queue: every
//!   frame that is ready is encoded into one chunk, written with one system
//!   call. Delivering a broadcast frame costs one queue push and one wake-up
//!   of the connection, and frames that pile up go out together.
//! * **Reading.** [`Reader`] decodes WebSocket frames, joins continuations,
//!   and [`read_loop`] hands Engine.IO packets to the engine. For an upgrade
//!   [`probe`] runs first.
//! * The two share a [`Link`]: frames the reader wants written (the open
//!   packet, `3probe`, WebSocket pongs), the queue handed over after an
//!   upgrade, and when to finish.
//!
//! Two ways to run a connection:
//!
//! * **On its own** ([`Accepted::serve`]), the production path: the server
//!   built by [`crate::engineio::serve`] hands the TCP stream over after the
//!   handshake and one task reads and writes it. actix-http's dispatcher, with
//!   its fixed 8 KiB read and 8 KiB write buffers, is gone; an idle
//!   connection holds no buffer at all.
//! * **Inside actix-web** ([`Accepted::respond`]), when the endpoint is mounted
//!   in an ordinary `HttpServer`: the 101 response's streaming body writes and
//!   a task reads the request payload.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use std::time::Duration;

use actix_http::RequestHead;
use actix_http::body::{BodyStream, MessageBody};
use actix_http::ws::{self, Codec};
use actix_web::{HttpResponse, web};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tokio::sync::OwnedMutexGuard;
use tokio_util::codec::{Decoder, Encoder};

use super::super::packet::{Frame, Packet};
use super::super::queue::Receiver;
use super::super::session::RX_HANDOVER;
use super::super::{CloseReason, Engine, EngineError, Session, Transport};

/// The most bytes of frames encoded into one chunk before it is written.
const MAX_CHUNK: usize = 32 * 1024;

type Queue = OwnedMutexGuard<Receiver>;

/// A frame the reader side asks the writer side to send, ahead of the queue.
enum Control {
    /// An Engine.IO packet (the open packet, `3probe`).
    Packet(Frame),
    /// The answer to a WebSocket ping.
    Pong(Bytes),
}

/// How the writer ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Finish {
    /// Write what the queue still holds (a disconnect, the close packet), then
    /// a WebSocket close frame.
    Drain,
    /// Write a WebSocket close frame now.
    Now,
}

#[derive(Default)]
struct LinkState {
    control: VecDeque<Control>,
    queue: Option<Queue>,
    finish: Option<Finish>,
    /// The writer's waker (the connection's task), registered at every poll.
    writer: Option<Waker>,
}

/// What the reading and the writing side of a connection share (two tasks
/// inside actix-web, one task on a connection of its own).
#[derive(Default)]
struct Link {
    state: Mutex<LinkState>,
}

impl Link {
    fn update(&self, f: impl FnOnce(&mut LinkState)) {
        let mut state = self.state.lock();
        f(&mut state);
        if let Some(w) = &state.writer {
            w.wake_by_ref();
        }
    }
    fn control(&self, c: Control) {
        self.update(|s| s.control.push_back(c));
    }
    fn hand_over(&self, queue: Queue) {
        self.update(|s| s.queue = Some(queue));
    }
    fn finish(&self, how: Finish) {
        self.update(|s| {
            s.finish.get_or_insert(how);
        });
    }
}

/// The writing side: the session's queue (once it has it) and the control
/// frames, encoded as WebSocket frames, a chunk at a time.
struct Outbound {
    engine: Arc<Engine>,
    link: Arc<Link>,
    session: Arc<Session>,
    queue: Option<Queue>,
    codec: Codec,
    buf: BytesMut,
    done: bool,
}

impl Outbound {
    fn new(engine: Arc<Engine>, link: Arc<Link>, session: Arc<Session>) -> Outbound {
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

    fn encode(&mut self, msg: ws::Message) {
        // Encoding a server frame into a growable buffer cannot fail.
        let _ = self.codec.encode(msg, &mut self.buf);
    }

    fn encode_packet(&mut self, frame: Frame) {
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
enum Incoming {
    Text(ByteString),
    Binary(Bytes),
    Ping(Bytes),
    Close,
}

/// Why reading stopped with an error.
#[derive(Debug, thiserror::Error)]
enum ReadError {
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
trait Source {
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
struct Reader<S> {
    source: S,
    buf: BytesMut,
    codec: Codec,
    max: usize,
    /// A fragmented message being joined: whether it is text, and its bytes.
    partial: Option<(bool, BytesMut)>,
}

impl<S: Source> Reader<S> {
    fn new(source: S, buf: BytesMut, max: usize) -> Reader<S> {
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
    async fn next(&mut self) -> Result<Option<Incoming>, ReadError> {
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

    fn on_frame(&mut self, frame: ws::Frame) -> Result<Option<Incoming>, ReadError> {
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

    fn start(&mut self, is_text: bool, b: Bytes) -> Result<Option<Incoming>, ReadError> {
        self.partial = Some((is_text, BytesMut::new()));
        self.extend(b)
    }

    fn extend(&mut self, b: Bytes) -> Result<Option<Incoming>, ReadError> {
        if let Some((_, bytes)) = self.partial.as_mut() {
            if bytes.len() + b.len() > self.max {
                return Err(ReadError::TooLarge(self.max));
            }
            bytes.extend_from_slice(&b);
        }
        Ok(None)
    }
}

fn text(b: Bytes) -> Result<Incoming, ReadError> {
    ByteString::try_from(b)
        .map(Incoming::Text)
        .map_err(|_| ReadError::Utf8)
}

/// A WebSocket accepted for a session: the 101 answer, the writing side
/// and what the reading side will do.
pub(crate) struct Accepted {
    engine: Arc<Engine>,
    response: actix_http::ResponseBuilder,
    out: Outbound,
    read: Option<ReadSide>,
}

/// The reading side of an accepted WebSocket.
struct ReadSide {
    engine: Arc<Engine>,
    session: Arc<Session>,
    link: Arc<Link>,
    /// An upgrade of a polling session: run the probe first.
    probe: bool,
}

impl ReadSide {
    async fn run<S: Source>(self, reader: Reader<S>) {
        let reader = if self.probe {
            // Boxed: only upgrades pay for the probe's state, and only while it runs.
            match Box::pin(probe(&self.engine, &self.session, &self.link, reader)).await {
                Some(reader) => reader,
                None => return,
            }
        } else {
            reader
        };
        read_loop(self.engine, self.session, self.link, reader).await;
    }
}

/// Accepts a WebSocket request that passed the Engine.IO checks: a new session
/// without `sid`, the upgrade of a polling session with it.
pub(crate) fn accept(
    engine: &Arc<Engine>,
    head: &RequestHead,
    sid: Option<&str>,
) -> Result<Accepted, EngineError> {
    let response = ws::handshake(head).map_err(|_| EngineError::BadRequest)?;
    let link = Arc::new(Link::default());
    let (session, read) = match sid {
        None => {
            let session = engine.open_session(Transport::WebSocket)?;
            link.control(Control::Packet(
                engine.open_frame(&session, Transport::WebSocket),
            ));
            // A fresh session's queue is never locked.
            match session.rx.clone().try_lock_owned() {
                Ok(queue) => link.hand_over(queue),
                Err(_) => {
                    session.close(CloseReason::TransportError);
                    return Err(EngineError::BadRequest);
                }
            }
            (session, Some(false))
        }
        Some(sid) => {
            let session = engine.get(sid).ok_or(EngineError::SessionUnknown)?;
            let already = session.transport() == Transport::WebSocket
                || session.upgrading.swap(true, Ordering::AcqRel);
            if already {
                // A second WebSocket for an upgraded (or upgrading) session: accept, then close.
                link.finish(Finish::Now);
                (session, None)
            } else {
                (session, Some(true))
            }
        }
    };
    let out = Outbound::new(engine.clone(), link.clone(), session.clone());
    let read = read.map(|probe| ReadSide {
        engine: engine.clone(),
        session,
        link,
        probe,
    });
    Ok(Accepted {
        engine: engine.clone(),
        response,
        out,
        read,
    })
}

impl Accepted {
    /// The 101 answer, without a body (the connection is no longer HTTP).
    pub(crate) fn response_head(&mut self) -> actix_http::Response<()> {
        self.response.message_body(()).unwrap_or_else(|_| {
            // Only a builder holding an earlier error fails; ours has none.
            actix_http::Response::with_body(actix_http::StatusCode::INTERNAL_SERVER_ERROR, ())
        })
    }

    /// Serves the WebSocket inside actix-web: the 101 response's body writes,
    /// a task reads the request payload. Used when the server was not built
    /// with [`crate::engineio::serve`], which takes WebSockets off the dispatcher.
    pub(crate) fn respond(self, body: web::Payload) -> HttpResponse {
        let Accepted {
            engine,
            mut response,
            out,
            read,
        } = self;
        if let Some(read) = read {
            let reader = Reader::new(body, BytesMut::new(), engine.config.max_payload);
            actix_web::rt::spawn(read.run(reader));
        }
        match response.message_body(BodyStream::new(out).boxed()) {
            Ok(resp) => resp.into(),
            // Only a builder holding an earlier error fails here; ours has none.
            Err(_) => HttpResponse::InternalServerError().finish(),
        }
    }

    /// Serves the WebSocket on a connection of its own: one task reads and
    /// writes the socket. `head` is the encoded 101 answer, written first
    /// (with the open packet); `read_buf` holds what the client sent after
    /// its request.
    pub(crate) async fn serve(self, io: TcpStream, head: BytesMut, read_buf: BytesMut) {
        let Accepted {
            engine, out, read, ..
        } = self;
        let mut out = out;
        out.buf = head;
        {
            let reader = Reader::new(&io, read_buf, engine.config.max_payload);
            let reading = async move {
                match read {
                    Some(read) => read.run(reader).await,
                    None => std::future::pending().await,
                }
            };
            let writing = write_loop(&mut out, &io);
            let mut reading = std::pin::pin!(reading);
            let mut writing = std::pin::pin!(writing);
            // The connection lasts as long as the writing side: reading ends by
            // telling the writer how to finish (drain, then a close frame).
            let mut read_done = false;
            let finished = std::future::poll_fn(|cx| {
                if !read_done && reading.as_mut().poll(cx).is_ready() {
                    read_done = true;
                }
                match writing.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(true),
                    Poll::Pending if read_done => Poll::Ready(false),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await;
            if !finished {
                // Reading is over; the writer gets a bounded time to drain to a
                // client that may no longer read.
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, writing).await;
            }
        }
        drop(out);
        close_gracefully(io).await;
    }
}

/// How long a connection whose reading side has ended may take to write what
/// is left (the close packet, then a close frame).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_secs(1);

/// Bytes read per system call on a connection of its own.
const READ_SIZE: usize = 4096;

/// Writes every chunk the outbound side produces, until it ends or the
/// client is gone.
async fn write_loop(out: &mut Outbound, io: &TcpStream) {
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

/// Undoes what a probe has done if it ends without finishing, including when
/// its connection ends under it (the future is dropped).
struct ProbeGuard<'a> {
    session: &'a Session,
    state: ProbeState,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum ProbeState {
    /// Probing: the session stays on polling and may try again.
    Probing,
    /// Moved to WebSocket, waiting for the queue: without it the session has
    /// no transport left and is closed.
    Upgraded,
    /// The queue is handed over (or the session closed): nothing to undo.
    Done,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        match self.state {
            ProbeState::Probing => {
                self.session.upgrading.store(false, Ordering::Release);
                self.session.upgrade_done.notify_waiters();
            }
            ProbeState::Upgraded => self.session.close(CloseReason::TransportError),
            ProbeState::Done => {}
        }
    }
}

/// Runs the probe of an upgrade; the reader once the session has moved to
/// this WebSocket, `None` if it stays on polling (or has ended).
async fn probe<S: Source>(
    engine: &Engine,
    session: &Session,
    link: &Link,
    mut reader: Reader<S>,
) -> Option<Reader<S>> {
    let mut guard = ProbeGuard {
        session,
        state: ProbeState::Probing,
    };
    let deadline = tokio::time::Instant::now() + engine.config.upgrade_timeout;
    let upgraded = loop {
        let incoming = tokio::select! {
            r = reader.next() => r,
            _ = tokio::time::sleep_until(deadline) => break false,
            _ = session.closed().cancelled() => break false,
        };
        match incoming {
            Ok(Some(Incoming::Text(text))) => match Packet::parse_text(text) {
                Ok(Packet::Ping(p)) if &*p == "probe" => {
                    link.control(Control::Packet(Frame::pong_probe()));
                    // Releases the pending polling GET (or answers the next one) with a noop.
                    if session.send(Frame::noop()).is_err() {
                        break false;
                    }
                }
                Ok(Packet::Upgrade) => break true,
                _ => break false,
            },
            Ok(Some(Incoming::Ping(p))) => link.control(Control::Pong(p)),
            _ => break false,
        }
    };
    if !upgraded {
        // The guard puts the session back on polling.
        link.finish(Finish::Now);
        return None;
    }
    session.set_transport(Transport::WebSocket);
    session.upgrade_done.notify_waiters();
    guard.state = ProbeState::Upgraded;
    // Polling requests now get 400; wait for a pending GET to hand the queue over.
    let queue = match session.rx.clone().try_lock_owned() {
        Ok(queue) => Some(queue),
        Err(_) => {
            // A GET still holds the queue (an upgrade without a probe, which the
            // reference accepts): release it with a noop, as the reference does.
            let _ = session.send(Frame::noop());
            tokio::select! {
                queue = session.rx.clone().lock_owned() => Some(queue),
                _ = session.closed().cancelled() => None,
                _ = tokio::time::sleep(RX_HANDOVER) => None,
            }
        }
    };
    match queue {
        Some(queue) => {
            link.hand_over(queue);
            guard.state = ProbeState::Done;
            Some(reader)
        }
        None => {
            // The guard closes the session.
            link.finish(Finish::Now);
            None
        }
    }
}

/// Reads the client's frames until the session or the connection ends, then
/// tells the writer how to finish.
async fn read_loop<S: Source>(
    engine: Arc<Engine>,
    session: Arc<Session>,
    link: Arc<Link>,
    mut reader: Reader<S>,
) {
    let closed = session.closed().clone();
    loop {
        let incoming = tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            r = reader.next() => r,
        };
        let packet = match incoming {
            Ok(Some(Incoming::Text(text))) => {
                engine
                    .metrics()
                    .bytes_received_total
                    .inc_by(text.len() as u64);
                match Packet::parse_text(text) {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::debug!(sid = %session.sid(), error = %e, "invalid packet");
                        session.close(CloseReason::ParseError);
                        break;
                    }
                }
            }
            Ok(Some(Incoming::Binary(bytes))) => {
                engine
                    .metrics()
                    .bytes_received_total
                    .inc_by(bytes.len() as u64);
                Packet::Binary(bytes)
            }
            Ok(Some(Incoming::Ping(p))) => {
                link.control(Control::Pong(p));
                continue;
            }
            Ok(Some(Incoming::Close)) | Ok(None) => {
                session.close(CloseReason::TransportClose);
                break;
            }
            Err(e) => {
                tracing::debug!(sid = %session.sid(), error = %e, "websocket error");
                session.close(CloseReason::TransportError);
                break;
            }
        };
        if engine.on_packet(&session, packet).is_err() {
            break;
        }
        // One packet per turn: a client sending a burst must not keep the
        // writers of the connections it broadcasts to from running (their
        // queues are bounded, and a full queue closes its session).
        tokio::task::yield_now().await;
    }
    // Unless the client is gone, it still gets what is queued (e.g. a
    // disconnect and the close packet) before the close frame.
    let drain = session
        .close_reason()
        .is_some_and(|r| r != CloseReason::TransportClose);
    link.finish(if drain { Finish::Drain } else { Finish::Now });
}
