//! The WebSocket transport: a session opened directly over WebSocket, and the
//! upgrade of a polling session (`2probe` / `3probe` / `5`). One Engine.IO
//! packet per frame: text packets in text frames, binary messages as raw
//! binary frames.
//!
//! This module is the Engine.IO logic over a WebSocket (accepting, the probe, the read
//! loop); the raw I/O under it — why it is hand-written, with the figures — is
//! [`io`]. Built on actix-http's WebSocket codec, with no channel between the
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
//!   built by [`crate::serve`] hands the TCP stream over after the
//!   handshake and one task reads and writes it. actix-http's dispatcher, with
//!   its fixed 8 KiB read and 8 KiB write buffers, is gone; an idle
//!   connection holds no buffer at all.
//! * **Inside actix-web** ([`Accepted::respond`]), when the endpoint is mounted
//!   in an ordinary `HttpServer`: the 101 response's streaming body writes and
//!   a task reads the request payload.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};

use actix_http::RequestHead;
use actix_http::body::{BodyStream, MessageBody};
use actix_http::ws::{self};
use actix_web::{HttpResponse, web};
use bytes::BytesMut;
use tokio::net::TcpStream;

mod io;
#[doc(hidden)]
pub mod replay;

use io::{Control, DRAIN_TIMEOUT, Finish, Incoming, Link, Outbound, Reader, Sides, Source};
pub(crate) use io::{close_gracefully, write_all};

use super::super::packet::{Frame, Packet};
use super::super::session::RX_HANDOVER;
use super::super::{CloseReason, Engine, EngineError, Session, Transport};

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
            let session = engine.open_session(Transport::WebSocket, head)?;
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
    let out = Outbound::new(link.clone(), session.clone());
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
    /// with [`crate::serve`], which takes WebSockets off the dispatcher.
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
            let mut reading = std::pin::pin!(reading);
            // The two sides are woken separately: a frame queued for this client
            // runs the writer only, not the reader as well (and vice versa).
            let sides = Sides::new();
            let (read_waker, write_waker) = (
                Waker::from(sides.read.clone()),
                Waker::from(sides.write.clone()),
            );
            // The connection lasts as long as the writing side: reading ends by
            // telling the writer how to finish (drain, then a close frame).
            let mut read_done = false;
            let finished = std::future::poll_fn(|cx| {
                sides.register(cx.waker());
                if !read_done
                    && sides.read.take()
                    && reading
                        .as_mut()
                        .poll(&mut Context::from_waker(&read_waker))
                        .is_ready()
                {
                    read_done = true;
                }
                if sides.write.take()
                    && out
                        .poll_write(&mut Context::from_waker(&write_waker), &io)
                        .is_ready()
                {
                    return Poll::Ready(true);
                }
                if read_done {
                    Poll::Ready(false)
                } else {
                    Poll::Pending
                }
            })
            .await;
            if !finished {
                // Reading is over; the writer gets a bounded time to drain to a
                // client that may no longer read.
                let writing = std::future::poll_fn(|cx| out.poll_write(cx, &io));
                let _ = tokio::time::timeout(DRAIN_TIMEOUT, writing).await;
            }
        }
        drop(out);
        close_gracefully(io).await;
    }
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
    if let Some(conn) = session.connection() {
        conn.on_upgrade(Transport::WebSocket);
    }
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

/// Packets one connection's reader hands to the engine before it lets other
/// tasks run. Each may be a broadcast that queues a frame for every recipient:
/// BURST bounds what one turn of one sender adds to any queue (far below
/// `--outbound-queue`), while the frames of up to BURST broadcasts reach each
/// recipient's writer together and leave in one write (see docs/performance.md,
/// issue 15). A client sending slowly is not held back: its packets are handled
/// as they come, and a yield every BURST of them costs it nothing it would notice.
pub(crate) const BURST: usize = 16;

/// Reads the client's frames until the session or the connection ends, then
/// tells the writer how to finish.
async fn read_loop<S: Source>(
    engine: Arc<Engine>,
    session: Arc<Session>,
    link: Arc<Link>,
    mut reader: Reader<S>,
) {
    let closed = session.closed().clone();
    let mut handled = 0;
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
        // At most BURST packets per turn: a client sending a burst must not keep
        // the writers of the connections it broadcasts to from running (their
        // queues are bounded, and a full queue closes its session), yet frames
        // may pile up a little so that each writer sends them in one system call.
        handled += 1;
        if handled == BURST {
            handled = 0;
            tokio::task::yield_now().await;
        }
    }
    // Unless the client is gone, it still gets what is queued (e.g. a
    // disconnect and the close packet) before the close frame.
    let drain = session
        .close_reason()
        .is_some_and(|r| r != CloseReason::TransportClose);
    link.finish(if drain { Finish::Drain } else { Finish::Now });
}
