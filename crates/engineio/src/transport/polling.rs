//! HTTP long-polling: the handshake GET, the held-open receiving GET and the
//! sending POST.
//!
//! At most one GET is pending per session: it holds the session's queue
//! receiver, so a second GET finds it taken, which closes the session.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix_web::HttpResponse;
use actix_web::web;
use bytestring::ByteString;
use futures_util::StreamExt;

use super::super::packet::Frame;
use super::super::payload;
use super::super::{CloseReason, Engine, EngineError, Session, Transport};

/// How long a POST's body may take to arrive, from the end of its head. actix-http
/// bounds the time to a request's head (the first request of a connection) but
/// not its body: without this, a client trickling a body a byte at a time would
/// hold the request (and the session's one POST slot) for ever.
pub const POST_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a GET that arrives during an upgrade waits for the upgrade to settle.
const UPGRADE_SETTLE: Duration = Duration::from_millis(50);

fn text_response(body: impl Into<String>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=UTF-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(body.into())
}

/// `GET ?EIO=4&transport=polling`: opens a session; the body is the open packet alone.
pub(crate) fn handshake(
    engine: &Arc<Engine>,
    head: &actix_http::RequestHead,
) -> Result<HttpResponse, EngineError> {
    let session = engine.open_session(Transport::Polling, head)?;
    let open = engine.open_frame(&session, Transport::Polling);
    let Frame::Text(text) = open else {
        unreachable!("the open packet is text")
    };
    engine.metrics().packets_sent_total.inc();
    engine.metrics().bytes_sent_total.inc_by(text.len() as u64);
    Ok(text_response(text.to_string()))
}

/// `GET ...&sid=S`: answers with every queued packet, waiting until there is one.
pub(crate) async fn poll(
    engine: &Arc<Engine>,
    session: Arc<Session>,
) -> Result<HttpResponse, EngineError> {
    if session.upgrading.load(Ordering::Acquire) {
        // A WebSocket probe is under way. The client may already have sent `5` on
        // it: give that frame a moment to be processed so that this GET is refused
        // after a completed upgrade, and otherwise answered (with the probe's noop).
        let done = session.upgrade_done.notified();
        let _ = tokio::time::timeout(UPGRADE_SETTLE, done).await;
        if session.transport() != Transport::Polling {
            return Err(EngineError::BadRequest);
        }
    }
    let Ok(mut rx) = session.rx.clone().try_lock_owned() else {
        tracing::debug!(sid = %session.sid(), "second concurrent poll; closing session");
        session.close(CloseReason::DuplicatePoll);
        return Err(EngineError::BadRequest);
    };
    let first = tokio::select! {
        biased;
        frame = rx.recv() => Some(frame),
        _ = session.closed().cancelled() => None,
    };
    let Some(first) = first else {
        // Closed while waiting. A client close is answered with a noop, anything
        // else with whatever is still queued (ending in the close packet) or a close.
        let body = match session.close_reason() {
            Some(CloseReason::ClientClose) => "6".to_owned(),
            _ => {
                let mut rest = Vec::new();
                while let Some(f) = rx.try_recv() {
                    rest.push(f);
                }
                session.mark_flushed();
                if rest.is_empty() {
                    "1".to_owned()
                } else {
                    payload::encode(&rest)
                }
            }
        };
        return Ok(text_response(body));
    };
    // Everything queued, up to about maxPayload bytes; the rest waits for the next GET.
    let budget = engine.config.max_payload;
    let mut used = payload::encoded_len(&first);
    let mut frames = vec![first];
    while used < budget {
        match rx.try_recv() {
            Some(f) => {
                used += payload::encoded_len(&f);
                frames.push(f);
            }
            None => break,
        }
    }
    drop(rx);
    if session.is_closed() {
        session.mark_flushed();
    }
    let body = payload::encode(&frames);
    let m = engine.metrics();
    m.packets_sent_total.inc_by(frames.len() as u64);
    m.bytes_sent_total.inc_by(body.len() as u64);
    Ok(text_response(body))
}

/// `POST ...&sid=S`: processes every packet of the body in order, then answers `ok`.
pub(crate) async fn post(
    engine: &Arc<Engine>,
    session: Arc<Session>,
    mut body: web::Payload,
) -> Result<HttpResponse, EngineError> {
    // One POST at a time keeps the session's messages in order; an overlapping
    // one closes the session, as in the reference ("data request overlap").
    if session.posting.swap(true, Ordering::AcqRel) {
        tracing::debug!(sid = %session.sid(), "overlapping POST; closing session");
        session.close(CloseReason::TransportError);
        return Err(EngineError::BadRequest);
    }
    struct Posting<'a>(&'a Session);
    impl Drop for Posting<'_> {
        fn drop(&mut self) {
            self.0.posting.store(false, Ordering::Release);
        }
    }
    let _posting = Posting(&session);
    let limit = engine.config.max_payload;
    let mut buf = web::BytesMut::new();
    let deadline = tokio::time::Instant::now() + POST_BODY_TIMEOUT;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, body.next()).await else {
            tracing::debug!(sid = %session.sid(), "POST body too slow; closing session");
            session.close(CloseReason::TransportError);
            return Err(EngineError::BodyTimeout);
        };
        let Some(chunk) = next else { break };
        let Ok(chunk) = chunk else {
            return Err(EngineError::BadRequest);
        };
        if buf.len() + chunk.len() > limit {
            tracing::debug!(sid = %session.sid(), limit, "POST body over maxPayload");
            session.close(CloseReason::PayloadTooLarge);
            return Err(EngineError::PayloadTooLarge);
        }
        buf.extend_from_slice(&chunk);
    }
    engine
        .metrics()
        .bytes_received_total
        .inc_by(buf.len() as u64);
    let Ok(text) = ByteString::try_from(buf.freeze()) else {
        session.close(CloseReason::ParseError);
        return Err(EngineError::BadRequest);
    };
    let packets = match payload::decode(text) {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(sid = %session.sid(), error = %e, "invalid polling payload");
            session.close(CloseReason::ParseError);
            return Err(EngineError::BadRequest);
        }
    };
    for packet in packets {
        match engine.on_packet(&session, packet) {
            Ok(()) => {}
            // A close packet from the client is a normal end: answer `ok`.
            Err(()) if session.close_reason() == Some(CloseReason::ClientClose) => break,
            Err(()) => return Err(EngineError::BadRequest),
        }
    }
    Ok(text_response("ok"))
}
