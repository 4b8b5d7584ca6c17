//! Request routing for the Engine.IO endpoint: query validation, the Origin
//! check and CORS headers, then the polling or WebSocket transport.
//!
//! Two ways in: [`dispatch`], the actix-web handler's path for every request
//! that reaches the application, and [`upgrade_request`], for WebSocket
//! upgrades that [`crate::serve`] takes off actix-http's dispatcher
//! before they reach any handler. Both run the same [`check`].

pub mod polling;
pub mod ws;

use std::sync::Arc;

use actix_http::RequestHead;
use actix_http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, web};

use super::{Engine, EngineError, EngineQuery, Transport};

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    header_str(headers, header::UPGRADE).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Adds CORS headers to a response for an allowed browser origin.
pub(crate) fn add_cors(engine: &Engine, request: &HeaderMap, response: &mut HeaderMap) {
    let Some(origin) = header_str(request, header::ORIGIN) else {
        return;
    };
    if !engine
        .config
        .origins
        .allows(Some(origin), header_str(request, header::HOST))
    {
        return;
    }
    if let Ok(value) = HeaderValue::from_str(origin) {
        response.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        response.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        response.append(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// The checks every request passes: the Origin, the query, the protocol
/// version and the transport.
pub(crate) fn check(
    engine: &Engine,
    head: &RequestHead,
) -> Result<(Transport, EngineQuery), EngineError> {
    let headers = &head.headers;
    if !engine.config.origins.allows(
        header_str(headers, header::ORIGIN),
        header_str(headers, header::HOST),
    ) {
        tracing::debug!(origin = ?header_str(headers, header::ORIGIN), "origin refused");
        return Err(EngineError::Forbidden);
    }
    let query = web::Query::<EngineQuery>::from_query(head.uri.query().unwrap_or(""))
        .map_err(|_| EngineError::BadRequest)?
        .into_inner();
    if query.eio.as_deref() != Some("4") {
        return Err(EngineError::UnsupportedProtocol);
    }
    let transport = match query.transport.as_deref() {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return Err(EngineError::TransportUnknown),
    };
    Ok((transport, query))
}

/// A WebSocket upgrade request, checked and accepted.
pub(crate) fn upgrade_request(
    engine: &Arc<Engine>,
    head: &RequestHead,
) -> Result<ws::Accepted, EngineError> {
    let (transport, query) = check(engine, head)?;
    if transport != Transport::WebSocket
        || head.method != Method::GET
        || !is_websocket_upgrade(&head.headers)
    {
        return Err(EngineError::BadRequest);
    }
    ws::accept(engine, head, query.sid.as_deref())
}

/// Validates the request and hands it to the right transport.
pub(crate) async fn dispatch(
    engine: &Arc<Engine>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, EngineError> {
    let upgrade = is_websocket_upgrade(req.headers());
    let refuse = |e: EngineError| {
        // A refused WebSocket request must not be left hanging: close the connection.
        if upgrade {
            let mut resp = actix_web::ResponseError::error_response(&e);
            resp.head_mut()
                .set_connection_type(actix_web::http::ConnectionType::Close);
            Ok(resp)
        } else {
            Err(e)
        }
    };

    let (transport, query) = match check(engine, req.head()) {
        Ok(checked) => checked,
        Err(e) => return refuse(e),
    };

    if req.method() == Method::OPTIONS {
        let mut resp = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                header_str(req.headers(), header::ACCESS_CONTROL_REQUEST_HEADERS)
                    .unwrap_or("content-type"),
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
            .finish();
        add_cors(engine, req.headers(), resp.headers_mut());
        return Ok(resp);
    }

    let mut resp = match transport {
        Transport::WebSocket => {
            if !upgrade || req.method() != Method::GET {
                return Err(EngineError::BadRequest);
            }
            match ws::accept(engine, req.head(), query.sid.as_deref()) {
                Ok(accepted) => accepted.respond(body),
                Err(e) => return refuse(e),
            }
        }
        Transport::Polling => match query.sid {
            None if req.method() == Method::GET => polling::handshake(engine, req.head())?,
            None => return Err(EngineError::BadHandshakeMethod),
            Some(sid) => {
                let session = engine
                    .get(&sid)
                    .or_else(|| {
                        (req.method() == Method::GET)
                            .then(|| engine.get_flushing(&sid))
                            .flatten()
                    })
                    .ok_or(EngineError::SessionUnknown)?;
                if session.transport() != Transport::Polling {
                    return Err(EngineError::BadRequest);
                }
                match *req.method() {
                    Method::GET => polling::poll(engine, session).await?,
                    Method::POST => polling::post(engine, session, body).await?,
                    _ => return Err(EngineError::BadHandshakeMethod),
                }
            }
        },
    };
    add_cors(engine, req.headers(), resp.headers_mut());
    Ok(resp)
}
