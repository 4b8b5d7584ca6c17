//! The HTTP server for an actix-web application with Engine.IO endpoints,
//! whose WebSocket connections leave actix-http after the handshake.
//!
//! actix-http serves every HTTP/1 connection with a dispatcher that keeps an
//! 8 KiB read and an 8 KiB write buffer for the connection's whole life; a
//! WebSocket served as a streaming response keeps them, and the dispatcher's
//! task, for hours. Built here with actix-http's *upgrade* hook instead, every
//! request carrying `Upgrade: websocket` is handed over with its TCP stream:
//! on an Engine.IO path it is checked like any other request and, once
//! accepted, served by one task of the WebSocket transport that holds no
//! buffer while idle; anywhere else it gets `404`. All other requests go to
//! the application as usual.
//!
//! What actix-http hands over is every request it would treat as a stream:
//! `Upgrade: websocket` (without `Transfer-Encoding: chunked`, which goes to
//! the application) and `CONNECT`, which gets `404`. A request for an
//! Engine.IO path that carries `Upgrade: websocket` but asks for the polling
//! transport is refused (400): it cannot be both. Another WebSocket route in
//! the application would not be reached either.
//!
//! Stopping the server does not wait for WebSocket connections: they are no
//! longer actix-server's. [`Engine::wait_connections`] does, after the
//! sessions have been closed.
//!
//! The server is otherwise what `actix_web::HttpServer` builds by default
//! (HTTP/1.1 over TCP, the same time-outs, keep-alive connections told to
//! close on a graceful stop), without its signal handling: the caller decides
//! when to stop.

use std::convert::Infallible;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_codec::Framed;
use actix_http::body::{BodySize, MessageBody};
use actix_http::error::DispatchError;
use actix_http::h1::{self, Message};
use actix_http::{ConnectionType, HttpService, KeepAlive, Protocol, Request, Response};
use actix_service::{
    IntoServiceFactory, ServiceFactory, ServiceFactoryExt, fn_service, map_config,
};
use actix_web::dev::AppConfig;
use actix_web::{HttpResponse, ResponseError};
use bytes::BytesMut;
use tokio::net::TcpStream;
use tokio_util::codec::Encoder;

use self::heads::TimedHeads;
use super::forward::Forwarder;
use super::transport::{self, ws};
use super::{Engine, EngineError};

mod heads;

/// Engine.IO endpoints by exact path, e.g. `/socket.io/`.
#[derive(Clone, Default)]
pub struct Mounts(Arc<Vec<(String, Arc<Engine>)>>);

impl Mounts {
    /// One engine at `path`.
    pub fn new(path: impl Into<String>, engine: Arc<Engine>) -> Mounts {
        Mounts(Arc::new(vec![(path.into(), engine)]))
    }

    fn engines(&self) -> impl Iterator<Item = &Arc<Engine>> {
        self.0.iter().map(|(_, e)| e)
    }

    fn find(&self, path: &str) -> Option<&Arc<Engine>> {
        self.0.iter().find(|(p, _)| p == path).map(|(_, e)| e)
    }
}

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Worker threads; `None` for one per available CPU.
    pub workers: Option<usize>,
    /// Seconds in-flight HTTP requests get when the server stops gracefully.
    pub shutdown_timeout_secs: u64,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            workers: None,
            shutdown_timeout_secs: 30,
        }
    }
}

// The settings below are those `actix_web::HttpServer` applies, which actix does not
// export as values (its builder keeps them in private fields); they are copied here by
// name, with actix-web 4's values. The keep-alive policy is taken from actix itself
// (`KeepAlive::default()`, 5 s).

/// Connections waiting to be accepted: `HttpServer::backlog`'s default (1024).
const BACKLOG: i32 = 1024;

/// Time a client has to send a request's head: `HttpServer::client_request_timeout`'s
/// default (5 s). A slower client gets 408 and is closed. actix-http applies it to a
/// connection's first request only; [`heads`] applies it to the later ones (from their
/// first byte; closed without a 408).
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Time a closing connection has to shut down: `HttpServer::client_disconnect_timeout`'s
/// default (1 s).
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Prepares an accepted connection: TCP_NODELAY on, and every request head
/// timed. Without TCP_NODELAY, Nagle's algorithm holds a small write while an
/// earlier one waits for the client's acknowledgement, which the client may
/// delay by up to 40 ms: a broadcast's frames then arrive in bursts that long
/// (docs/performance.md, change 7).
fn accepted(io: TcpStream) -> (TimedHeads, Option<SocketAddr>) {
    let peer = io.peer_addr().ok();
    if let Err(e) = io.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
    (TimedHeads::new(io, CLIENT_REQUEST_TIMEOUT), peer)
}

/// A listening socket for [`server`], as `actix_web::HttpServer::bind` makes it.
pub fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// An HTTP server on `listeners` for the application `factory` builds (one
/// per worker), with the Engine.IO endpoints in `mounts` taking their
/// WebSockets off actix-http's dispatcher. Run it by awaiting (or spawning)
/// the returned server; stop it with its handle.
pub fn server<F, I, S, B>(
    listeners: Vec<std::net::TcpListener>,
    mounts: Mounts,
    options: &ServeOptions,
    factory: F,
) -> std::io::Result<actix_server::Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    B: MessageBody + 'static,
{
    let mut builder = actix_server::Server::build()
        .disable_signals()
        .shutdown_timeout(options.shutdown_timeout_secs);
    if let Some(workers) = options.workers {
        builder = builder.workers(workers);
    }
    // Tells keep-alive connections to close when the server stops gracefully.
    let shutdown = builder.graceful_shutdown_signal();
    for listener in listeners {
        let addr = listener.local_addr()?;
        let mounts = mounts.clone();
        let factory = factory.clone();
        let shutdown = shutdown.clone();
        builder = builder.listen("hubbub-http", listener, move || {
            // Runs on each worker's thread as it starts: count its runtime's tasks.
            for engine in mounts.engines() {
                engine.metrics().tasks.watch_current();
            }
            let mounts = mounts.clone();
            let shutdown = shutdown.clone();
            let app = heads::track(
                factory()
                    .into_factory()
                    .map_err(|err| err.into().error_response()),
            );
            // actix-web's `HttpServer` settings (see the constants above).
            let http = HttpService::build()
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .keep_alive(KeepAlive::default())
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                .local_addr(addr)
                .on_connect_ext(|io: &TimedHeads, data| {
                    data.insert(io.requests());
                })
                .upgrade(fn_service(
                    move |(req, framed): (Request, Framed<TimedHeads, h1::Codec>)| {
                        upgraded(&mounts, req, framed);
                        std::future::ready(Ok::<_, Infallible>(()))
                    },
                ))
                // The default connection config: the application derives nothing
                // from the server's own host name.
                .finish(map_config(app, |_| AppConfig::default()));
            // What `HttpService::tcp` does, with every request head timed.
            fn_service(|io: TcpStream| {
                let (io, peer) = accepted(io);
                std::future::ready(Ok::<_, DispatchError>((io, Protocol::Http1, peer)))
            })
            .and_then(http)
        })?;
    }
    Ok(builder.run())
}

/// A request with `Upgrade: websocket`, handed over with its connection by
/// actix-http. Returns at once: the connection goes on in a task of its own,
/// and the dispatcher (with its buffers) is freed.
fn upgraded(mounts: &Mounts, req: Request, framed: Framed<TimedHeads, h1::Codec>) {
    let parts = framed.into_parts();
    let mut codec = parts.codec;
    let io = parts.io.into_inner();
    // Responses to requests pipelined ahead of this one that the dispatcher has
    // not written yet: they go out first.
    let pending = if parts.write_buf.is_empty() {
        BytesMut::new()
    } else {
        parts.write_buf
    };
    let Some(engine) = mounts.find(req.path()) else {
        let resp = HttpResponse::NotFound().body("not found");
        actix_web::rt::spawn(refuse(io, codec, pending, resp));
        return;
    };
    match transport::upgrade_request(engine, req.head()) {
        Ok(mut accepted) => {
            let mut response = accepted.response_head();
            transport::add_cors(engine, &req.head().headers, response.headers_mut());
            let mut head = pending;
            // Encoding a response head into a growable buffer does not fail; if
            // it did, dropping `accepted` ends the connection and its session.
            if codec
                .encode(Message::Item((response, BodySize::None)), &mut head)
                .is_ok()
            {
                let connection = accepted.serve(io, head, parts.read_buf);
                actix_web::rt::spawn(engine.track_connection(connection));
            }
        }
        Err(e) => {
            if e == EngineError::SessionUnknown
                && let Some(sid) = transport::query_sid(req.head())
                && let Some((forwarder, tag)) = engine.forward_target(&sid, req.head())
            {
                // Another replica's session: the owner answers the probe and serves
                // the WebSocket through a pipe from here.
                let request = Forwarder::upgrade_bytes(req.head(), &parts.read_buf);
                let (forwarder, tag, engine) = (forwarder.clone(), tag.to_owned(), engine.clone());
                let headers = req.head().headers.clone();
                actix_web::rt::spawn(async move {
                    if let Err((io, pending, e)) =
                        forwarder.proxy_upgrade(&tag, request, pending, io).await
                    {
                        let mut resp = e.error_response();
                        transport::add_cors(&engine, &headers, resp.headers_mut());
                        refuse(io, codec, pending, resp).await;
                    }
                });
                return;
            }
            let mut resp = e.error_response();
            transport::add_cors(engine, &req.head().headers, resp.headers_mut());
            actix_web::rt::spawn(engine.track_connection(refuse(io, codec, pending, resp)));
        }
    }
}

/// Answers a refused upgrade (after `pending`, the responses owed to earlier
/// pipelined requests) and closes the connection.
async fn refuse(io: TcpStream, mut codec: h1::Codec, pending: BytesMut, resp: HttpResponse) {
    let (mut head, body) = Response::from(resp).into_parts();
    head.head_mut().set_connection_type(ConnectionType::Close);
    let body = body.try_into_bytes().unwrap_or_default();
    let mut bytes = pending;
    let encoded = codec
        .encode(
            Message::Item((head, BodySize::Sized(body.len() as u64))),
            &mut bytes,
        )
        .and_then(|()| codec.encode(Message::Chunk(Some(body)), &mut bytes))
        .and_then(|()| codec.encode(Message::Chunk(None), &mut bytes));
    if encoded.is_ok() && ws::write_all(&io, &bytes).await.is_ok() {
        ws::close_gracefully(io).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_write_without_nagle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (io, peer) = listener.accept().await.unwrap();
        assert!(!io.nodelay().unwrap(), "a fresh socket has Nagle on");
        let (io, seen) = accepted(io);
        assert_eq!(seen, Some(peer));
        assert!(io.into_inner().nodelay().unwrap());
    }
}
