//! The WebSocket transport: a session opened directly over WebSocket, and the
//! upgrade of a polling session (`2probe` / `3probe` / `5`). One Engine.IO
//! packet per frame: text packets in text frames, binary messages as raw
//! binary frames.
//!
//! Built on actix-http's WebSocket codec, with no channel or task between the
//! session's outbound queue and the socket:
//!
//! * **Writing.** The HTTP response body ([`Outbound`]) *is* the reader of the
//!   session's queue. The connection's dispatcher polls it; every frame that is
//!   ready is encoded into one chunk, which the dispatcher writes with one
//!   system call. Delivering a broadcast frame costs one queue push and one
//!   wake-up of the connection, and frames that pile up go out together.
//! * **Reading.** One task per connection ([`read_loop`]) decodes the request
//!   payload into WebSocket frames, joins continuations, and hands Engine.IO
//!   packets to the engine. For an upgrade it first runs the probe.
//! * The two share a [`Link`]: frames the reader wants written (the open
//!   packet, `3probe`, WebSocket pongs), the queue handed over after an
//!   upgrade, and when to finish.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use actix_http::body::{BodyStream, MessageBody};
use actix_http::ws::{self, Codec};
use actix_web::{HttpRequest, HttpResponse, web};
use bytes::{Bytes, BytesMut};
use bytestring::ByteString;
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::OwnedMutexGuard;
use tokio_util::codec::{Decoder, Encoder};

use super::super::packet::{Frame, Packet};
use super::super::queue::Receiver;
use super::super::session::RX_HANDOVER;
use super::super::{CloseReason, Engine, EngineError, Session, Transport};

/// The most bytes of frames encoded into one chunk before it is handed to the
/// dispatcher (which writes and then polls again).
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

/// What the reader task and the response body share.
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

/// The response body: the session's queue (once it has it) and the control
/// frames, encoded as WebSocket frames.
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
            Poll::Ready(Some(Ok(this.buf.split().freeze())))
        } else if this.done {
            Poll::Ready(None)
        } else {
            Poll::Pending
        }
    }
}

impl Drop for Outbound {
    fn drop(&mut self) {
        // The connection is gone (or finished). If this body was the session's
        // transport, the session ends with it; a failed probe's body never took
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

/// Decodes the request payload into [`Incoming`] frames.
struct Reader {
    payload: web::Payload,
    buf: BytesMut,
    codec: Codec,
    max: usize,
    /// A fragmented message being joined: whether it is text, and its bytes.
    partial: Option<(bool, BytesMut)>,
}

impl Reader {
    fn new(payload: web::Payload, max: usize) -> Reader {
        Reader {
            payload,
            buf: BytesMut::new(),
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
            match self.payload.next().await {
                // Copied out, so the dispatcher's read buffer is free for reuse at once.
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(_)) | None => return Ok(None),
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

/// Checks the WebSocket handshake; the builder makes the 101 answer.
fn handshake(req: &HttpRequest) -> Result<actix_http::ResponseBuilder, EngineError> {
    ws::handshake(req.head()).map_err(|_| EngineError::BadRequest)
}

/// The 101 answer, with `out` as its body.
fn respond(mut builder: actix_http::ResponseBuilder, out: Outbound) -> HttpResponse {
    match builder.message_body(BodyStream::new(out).boxed()) {
        Ok(resp) => resp.into(),
        // Only a builder holding an earlier error fails here; ours has none.
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// `GET ?EIO=4&transport=websocket` with an upgrade: a new session over WebSocket.
pub(crate) fn open(
    engine: &Arc<Engine>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, EngineError> {
    let builder = handshake(req)?;
    let session = engine.open_session(Transport::WebSocket)?;
    let link = Arc::new(Link::default());
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
    let out = Outbound::new(engine.clone(), link.clone(), session.clone());
    let reader = Reader::new(body, engine.config.max_payload);
    actix_web::rt::spawn(read_loop(engine.clone(), session, link, reader));
    Ok(respond(builder, out))
}

/// `GET ...&transport=websocket&sid=S`: upgrades a polling session.
pub(crate) fn upgrade(
    engine: &Arc<Engine>,
    session: Arc<Session>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, EngineError> {
    let builder = handshake(req)?;
    let link = Arc::new(Link::default());
    let out = Outbound::new(engine.clone(), link.clone(), session.clone());
    let already = session.transport() == Transport::WebSocket
        || session.upgrading.swap(true, Ordering::AcqRel);
    if already {
        // A second WebSocket for an upgraded (or upgrading) session: accept, then close.
        link.finish(Finish::Now);
    } else {
        let reader = Reader::new(body, engine.config.max_payload);
        actix_web::rt::spawn(probe(engine.clone(), session, link, reader));
    }
    Ok(respond(builder, out))
}

async fn probe(engine: Arc<Engine>, session: Arc<Session>, link: Arc<Link>, mut reader: Reader) {
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
        session.upgrading.store(false, Ordering::Release);
        session.upgrade_done.notify_waiters();
        link.finish(Finish::Now);
        return;
    }
    session.set_transport(Transport::WebSocket);
    session.upgrade_done.notify_waiters();
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
            read_loop(engine, session, link, reader).await;
        }
        None => {
            session.close(CloseReason::TransportError);
            link.finish(Finish::Now);
        }
    }
}

/// Reads the client's frames until the session or the connection ends, then
/// tells the writer how to finish.
async fn read_loop(
    engine: Arc<Engine>,
    session: Arc<Session>,
    link: Arc<Link>,
    mut reader: Reader,
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
    }
    // Unless the client is gone, it still gets what is queued (e.g. a
    // disconnect and the close packet) before the close frame.
    let drain = session
        .close_reason()
        .is_some_and(|r| r != CloseReason::TransportClose);
    link.finish(if drain { Finish::Drain } else { Finish::Now });
}
