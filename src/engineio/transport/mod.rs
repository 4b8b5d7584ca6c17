//! Request routing for the Engine.IO endpoint: query validation, the Origin
//! check and CORS headers, then the polling or WebSocket transport.

pub mod polling;
pub mod ws;

use std::sync::Arc;

use actix_web::http::{Method, header};
use actix_web::{HttpRequest, HttpResponse, web};

use super::{Engine, EngineError, EngineQuery, Transport};

fn header_str(req: &HttpRequest, name: header::HeaderName) -> Option<&str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn is_websocket_upgrade(req: &HttpRequest) -> bool {
    header_str(req, header::UPGRADE).is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Adds CORS headers for an allowed browser origin.
pub(crate) fn add_cors(engine: &Engine, req: &HttpRequest, resp: &mut HttpResponse) {
    let Some(origin) = header_str(req, header::ORIGIN) else {
        return;
    };
    if !engine
        .config
        .origins
        .allows(Some(origin), header_str(req, header::HOST))
    {
        return;
    }
    if let Ok(value) = header::HeaderValue::from_str(origin) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            header::HeaderValue::from_static("true"),
        );
        h.append(header::VARY, header::HeaderValue::from_static("Origin"));
    }
}

/// Validates the request and hands it to the right transport.
pub(crate) async fn dispatch(
    engine: &Arc<Engine>,
    req: &HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, EngineError> {
    let upgrade = is_websocket_upgrade(req);
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

    if !engine.config.origins.allows(
        header_str(req, header::ORIGIN),
        header_str(req, header::HOST),
    ) {
        tracing::debug!(origin = ?header_str(req, header::ORIGIN), "origin refused");
        return refuse(EngineError::Forbidden);
    }
    let query = match web::Query::<EngineQuery>::from_query(req.query_string()) {
        Ok(q) => q.into_inner(),
        Err(_) => return refuse(EngineError::BadRequest),
    };
    if query.eio.as_deref() != Some("4") {
        return refuse(EngineError::UnsupportedProtocol);
    }
    let transport = match query.transport.as_deref() {
        Some("polling") => Transport::Polling,
        Some("websocket") => Transport::WebSocket,
        _ => return refuse(EngineError::TransportUnknown),
    };

    if req.method() == Method::OPTIONS {
        let mut resp = HttpResponse::NoContent()
            .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"))
            .insert_header((
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                header_str(req, header::ACCESS_CONTROL_REQUEST_HEADERS).unwrap_or("content-type"),
            ))
            .insert_header((header::ACCESS_CONTROL_MAX_AGE, "86400"))
            .finish();
        add_cors(engine, req, &mut resp);
        return Ok(resp);
    }

    let mut resp = match transport {
        Transport::WebSocket => {
            if !upgrade || req.method() != Method::GET {
                return Err(EngineError::BadRequest);
            }
            match query.sid {
                None => ws::open(engine, req, body)?,
                Some(sid) => match engine.get(&sid) {
                    Some(session) => ws::upgrade(engine, session, req, body)?,
                    None => return refuse(EngineError::SessionUnknown),
                },
            }
        }
        Transport::Polling => match query.sid {
            None if req.method() == Method::GET => polling::handshake(engine)?,
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
    add_cors(engine, req, &mut resp);
    Ok(resp)
}
