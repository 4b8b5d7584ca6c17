//! The WebSocket transport (actix-ws): a session opened directly over
//! WebSocket, and the upgrade of a polling session (`2probe` / `3probe` / `5`).
//!
//! One loop per connection `select!`s on the session's close token, the
//! outbound queue and the client's frames. One Engine.IO packet per frame: text packets in text
//! frames, binary messages as raw binary frames.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::AggregatedMessage;
use tokio::sync::OwnedMutexGuard;
use tokio::sync::mpsc::Receiver;

use super::super::packet::{Frame, Packet};
use super::super::session::RX_HANDOVER;
use super::super::{CloseReason, Engine, EngineError, Session, Transport};

type Stream = actix_ws::AggregatedMessageStream;

fn accept(
    engine: &Engine,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<(HttpResponse, actix_ws::Session, Stream), EngineError> {
    let (resp, ws, stream) = actix_ws::handle(req, body).map_err(|_| EngineError::BadRequest)?;
    let max = engine.config.max_payload;
    let stream = stream
        .max_frame_size(max)
        .aggregate_continuations()
        .max_continuation_size(max);
    Ok((resp, ws, stream))
}

/// `GET ?EIO=4&transport=websocket` with an upgrade: a new session over WebSocket.
pub(crate) fn open(
    engine: &Arc<Engine>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, EngineError> {
    let (resp, ws, stream) = accept(engine, req, body)?;
    let session = engine.open_session(Transport::WebSocket)?;
    let open = engine.open_frame(&session, Transport::WebSocket);
    let engine = engine.clone();
    actix_web::rt::spawn(async move {
        // unwrap-free: a fresh session's queue receiver is never locked.
        let Ok(rx) = session.rx.clone().try_lock_owned() else {
            session.close(CloseReason::TransportError);
            return;
        };
        let mut ws = ws;
        if write(&engine, &mut ws, open).await.is_err() {
            session.close(CloseReason::TransportClose);
            return;
        }
        run(engine, session, ws, stream, rx).await;
    });
    Ok(resp)
}

/// `GET ...&transport=websocket&sid=S`: upgrades a polling session.
pub(crate) fn upgrade(
    engine: &Arc<Engine>,
    session: Arc<Session>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, EngineError> {
    let (resp, ws, stream) = accept(engine, req, body)?;
    let engine = engine.clone();
    let already = session.transport() == Transport::WebSocket
        || session.upgrading.swap(true, Ordering::AcqRel);
    actix_web::rt::spawn(async move {
        if already {
            // A second WebSocket for an upgraded (or upgrading) session: accept, then close.
            let _ = ws.close(None).await;
            return;
        }
        probe(engine, session, ws, stream).await;
    });
    Ok(resp)
}

async fn probe(
    engine: Arc<Engine>,
    session: Arc<Session>,
    mut ws: actix_ws::Session,
    mut stream: Stream,
) {
    let deadline = tokio::time::Instant::now() + engine.config.upgrade_timeout;
    let upgraded = loop {
        let msg = tokio::select! {
            msg = stream.recv() => msg,
            _ = tokio::time::sleep_until(deadline) => break false,
            _ = session.closed().cancelled() => break false,
        };
        match msg {
            Some(Ok(AggregatedMessage::Text(text))) => match Packet::parse_text(text) {
                Ok(Packet::Ping(p)) if &*p == "probe" => {
                    if write(&engine, &mut ws, Frame::pong_probe()).await.is_err() {
                        break false;
                    }
                    // Releases the pending polling GET (or answers the next one) with a noop.
                    if session.send(Frame::noop()).is_err() {
                        break false;
                    }
                }
                Ok(Packet::Upgrade) => break true,
                _ => break false,
            },
            Some(Ok(AggregatedMessage::Ping(p))) => {
                let _ = ws.pong(&p).await;
            }
            _ => break false,
        }
    };
    if !upgraded {
        session.upgrading.store(false, Ordering::Release);
        session.upgrade_done.notify_waiters();
        let _ = ws.close(None).await;
        return;
    }
    session.set_transport(Transport::WebSocket);
    session.upgrade_done.notify_waiters();
    // Polling requests now get 400; wait for a pending GET to hand the queue over.
    let rx = match session.rx.clone().try_lock_owned() {
        Ok(rx) => Some(rx),
        Err(_) => {
            // A GET still holds the queue (an upgrade without a probe, which the
            // reference accepts): release it with a noop, as the reference does.
            let _ = session.send(Frame::noop());
            tokio::select! {
                rx = session.rx.clone().lock_owned() => Some(rx),
                _ = session.closed().cancelled() => None,
                _ = tokio::time::sleep(RX_HANDOVER) => None,
            }
        }
    };
    match rx {
        Some(rx) => run(engine, session, ws, stream, rx).await,
        None => {
            session.close(CloseReason::TransportError);
            let _ = ws.close(None).await;
        }
    }
}

async fn write(
    engine: &Engine,
    ws: &mut actix_ws::Session,
    frame: Frame,
) -> Result<(), actix_ws::Closed> {
    let m = engine.metrics();
    m.packets_sent_total.inc();
    m.bytes_sent_total.inc_by(frame.len() as u64);
    match frame {
        Frame::Text(t) => ws.text(t).await,
        Frame::Binary(b) => ws.binary(b).await,
    }
}

/// The connection loop of an open WebSocket session.
async fn run(
    engine: Arc<Engine>,
    session: Arc<Session>,
    mut ws: actix_ws::Session,
    mut stream: Stream,
    mut rx: OwnedMutexGuard<Receiver<Frame>>,
) {
    let closed = session.closed().clone();
    loop {
        tokio::select! {
            biased;
            _ = closed.cancelled() => break,
            frame = rx.recv() => match frame {
                Some(frame) => {
                    if write(&engine, &mut ws, frame).await.is_err() {
                        session.close(CloseReason::TransportClose);
                        break;
                    }
                }
                None => break,
            },
            msg = stream.recv() => {
                let packet = match msg {
                    Some(Ok(AggregatedMessage::Text(text))) => {
                        engine.metrics().bytes_received_total.inc_by(text.len() as u64);
                        match Packet::parse_text(text) {
                            Ok(p) => p,
                            Err(e) => {
                                tracing::debug!(sid = %session.sid(), error = %e, "invalid packet");
                                session.close(CloseReason::ParseError);
                                break;
                            }
                        }
                    }
                    Some(Ok(AggregatedMessage::Binary(bytes))) => {
                        engine.metrics().bytes_received_total.inc_by(bytes.len() as u64);
                        Packet::Binary(bytes)
                    }
                    Some(Ok(AggregatedMessage::Ping(p))) => {
                        let _ = ws.pong(&p).await;
                        continue;
                    }
                    Some(Ok(AggregatedMessage::Pong(_))) => continue,
                    Some(Ok(AggregatedMessage::Close(_))) | None => {
                        session.close(CloseReason::TransportClose);
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::debug!(sid = %session.sid(), error = %e, "websocket error");
                        session.close(CloseReason::TransportError);
                        break;
                    }
                };
                if engine.on_packet(&session, packet).is_err() {
                    break;
                }
            }
        }
    }
    // Write what is still queued (e.g. a disconnect and the close packet), then close.
    if session
        .close_reason()
        .is_some_and(|r| r != CloseReason::TransportClose)
    {
        while let Ok(frame) = rx.try_recv() {
            if write(&engine, &mut ws, frame).await.is_err() {
                break;
            }
        }
    }
    drop(rx);
    let _ = ws.close(None).await;
}
