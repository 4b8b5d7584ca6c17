//! A time limit on the head of every request of a keep-alive connection, not
//! only the first one.
//!
//! actix-http 3 has two timers for a connection waiting on a client: the
//! *request* timer (`client_request_timeout`, 408 then close) runs from the
//! connection's start until its **first** request head is decoded and is then
//! cleared for good; the *keep-alive* timer runs after each response and is
//! cleared by the first byte read. So once one byte of a later request has
//! arrived, nothing limits how long the rest of its head takes: a client that
//! sends one request normally, then the next head a byte every few seconds,
//! held the connection (its buffers and a file descriptor) until the 128 KiB
//! head limit.
//!
//! [`TimedHeads`] wraps the connection's TCP stream and times every head
//! itself: the first byte read while no request is with the application
//! starts a clock of `limit` (the request timeout, 5 s); when the head is
//! complete and handed to the application ([`track`] counts it) the clock
//! stops. If it runs out first, the next read fails with `TimedOut` and
//! actix-http drops the connection — without a 408, since the dispatcher may
//! still be writing the previous response. A request is "with the
//! application" from the call until its response body has been written
//! (actix-http drops the body then), so a long response or a pipelined
//! request waiting behind one is never cut off. The first request's head is
//! left to actix-http's own timer (from the connection's start, answered 408).
//!
//! A WebSocket upgrade takes the bare stream back ([`TimedHeads::into_inner`]).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::body::{BodySize, BoxBody, MessageBody};
use actix_http::{Request, Response};
use actix_service::{Service, ServiceFactory, apply_fn_factory};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// What the application side tells a connection's stream, through the
/// connection data actix-http gives every request. One connection's
/// dispatcher, stream and requests live on one worker thread.
#[derive(Default)]
pub(crate) struct Requests {
    /// Requests handed to the application whose responses are not written yet.
    busy: Cell<u32>,
    /// Requests handed to the application so far on this connection.
    started: Cell<u64>,
}

/// A connection's TCP stream whose request heads are timed (see the module).
pub(crate) struct TimedHeads {
    io: TcpStream,
    requests: Rc<Requests>,
    limit: Duration,
    /// The clock, made at the first head and reset for the later ones.
    clock: Option<Pin<Box<Sleep>>>,
    /// `Some(n)` while a head is being timed: `n` requests had been started
    /// when its first byte arrived.
    timing: Option<u64>,
}

impl TimedHeads {
    pub(crate) fn new(io: TcpStream, limit: Duration) -> TimedHeads {
        TimedHeads {
            io,
            requests: Rc::default(),
            limit,
            clock: None,
            timing: None,
        }
    }

    /// The handle the application side counts requests through
    /// (`HttpServiceBuilder::on_connect_ext` puts it in the connection data).
    pub(crate) fn requests(&self) -> Rc<Requests> {
        self.requests.clone()
    }

    /// The bare stream, for a connection leaving HTTP (a WebSocket).
    pub(crate) fn into_inner(self) -> TcpStream {
        self.io
    }

    fn start_clock(&mut self, cx: &mut Context<'_>) {
        let deadline = Instant::now() + self.limit;
        let clock = match &mut self.clock {
            Some(clock) => {
                clock.as_mut().reset(deadline);
                clock
            }
            None => self
                .clock
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        // Registers this task to be woken at the deadline (it cannot be due yet).
        let _ = clock.as_mut().poll(cx);
        self.timing = Some(self.requests.started.get());
    }
}

impl AsyncRead for TimedHeads {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let idle = this.requests.busy.get() == 0;
        if let Some(at) = this.timing {
            if !idle || this.requests.started.get() != at {
                // The head was complete: the application has (had) its request.
                this.timing = None;
            } else if let Some(clock) = &mut this.clock
                && clock.as_mut().poll(cx).is_ready()
            {
                tracing::debug!(limit = ?this.limit, "request head too slow; closing connection");
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not complete in time",
                )));
            }
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        // From the second request on: actix-http times the first head itself.
        let later = this.requests.started.get() > 0;
        if this.timing.is_none() && idle && later && buf.filled().len() > before {
            this.start_clock(cx);
        }
        read
    }
}

impl AsyncWrite for TimedHeads {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// One request with the application: counted from the call until its
/// response body is dropped (written, or the connection gone).
struct InFlight(Option<Rc<Requests>>);

impl InFlight {
    fn enter(req: &Request) -> InFlight {
        let requests = req.conn_data::<Rc<Requests>>().cloned();
        if let Some(r) = &requests {
            r.busy.set(r.busy.get() + 1);
            r.started.set(r.started.get() + 1);
        }
        InFlight(requests)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(r) = &self.0 {
            r.busy.set(r.busy.get().saturating_sub(1));
        }
    }
}

/// A response body that keeps its request counted until it is dropped.
pub(crate) struct TrackedBody {
    body: BoxBody,
    _in_flight: InFlight,
}

impl MessageBody for TrackedBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_next(cx)
    }
}

/// The application `app`, telling each connection's [`TimedHeads`] when a
/// request is handed over and when its response is done.
pub(crate) fn track<SF, B>(
    app: SF,
) -> impl ServiceFactory<
    Request,
    Config = SF::Config,
    Response = Response<TrackedBody>,
    Error = SF::Error,
    InitError = SF::InitError,
>
where
    SF: ServiceFactory<Request>,
    SF::Response: Into<Response<B>>,
    B: MessageBody + 'static,
{
    apply_fn_factory(app, |req: Request, service: &SF::Service| {
        let in_flight = InFlight::enter(&req);
        let call = service.call(req);
        async move {
            // An error is answered by actix-http itself; `in_flight` ends here then.
            let response: Response<B> = call.await?.into();
            Ok(response.map_body(|_, body| TrackedBody {
                body: BoxBody::new(body),
                _in_flight: in_flight,
            }))
        }
    })
}
