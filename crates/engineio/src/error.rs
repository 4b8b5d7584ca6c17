//! The one place where Engine.IO protocol errors become HTTP responses, with
//! the JSON bodies the reference server sends: `{"code":N,"message":"..."}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

/// A request the Engine.IO endpoint refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EngineError {
    /// `transport` missing or not `polling`/`websocket` (code 0).
    #[error("transport unknown")]
    TransportUnknown,
    /// `sid` unknown or closed (code 1).
    #[error("session id unknown")]
    SessionUnknown,
    /// A session can only be opened with GET (code 2).
    #[error("bad handshake method")]
    BadHandshakeMethod,
    /// A request that does not fit the session's state (code 3).
    #[error("bad request")]
    BadRequest,
    /// The Origin is not allowed (code 4).
    #[error("forbidden")]
    Forbidden,
    /// `EIO` missing or not 4 (code 5).
    #[error("unsupported protocol version")]
    UnsupportedProtocol,
    /// A POST body over maxPayload (HTTP 413).
    #[error("payload too large")]
    PayloadTooLarge,
    /// The server is shutting down and takes no new sessions (HTTP 503).
    #[error("server shutting down")]
    ShuttingDown,
    /// The server holds as many sessions as it may (`--max-connections`; HTTP 503).
    #[error("too many connections")]
    TooManySessions,
    /// A POST body that did not arrive within its time (HTTP 408, code 3).
    #[error("request timeout")]
    BodyTimeout,
}

impl EngineError {
    /// The reference server's error code.
    pub fn code(self) -> u8 {
        match self {
            EngineError::TransportUnknown => 0,
            EngineError::SessionUnknown => 1,
            EngineError::BadHandshakeMethod => 2,
            EngineError::BadRequest | EngineError::PayloadTooLarge | EngineError::BodyTimeout => 3,
            EngineError::Forbidden => 4,
            EngineError::UnsupportedProtocol => 5,
            EngineError::ShuttingDown | EngineError::TooManySessions => 3,
        }
    }

    /// The reference server's message text.
    pub fn message(self) -> &'static str {
        match self {
            EngineError::TransportUnknown => "Transport unknown",
            EngineError::SessionUnknown => "Session ID unknown",
            EngineError::BadHandshakeMethod => "Bad handshake method",
            EngineError::BadRequest => "Bad request",
            EngineError::Forbidden => "Forbidden",
            EngineError::UnsupportedProtocol => "Unsupported protocol version",
            EngineError::PayloadTooLarge => "Payload too large",
            EngineError::ShuttingDown => "Server shutting down",
            EngineError::TooManySessions => "Too many connections",
            EngineError::BodyTimeout => "Request timeout",
        }
    }
}

impl ResponseError for EngineError {
    fn status_code(&self) -> StatusCode {
        match self {
            EngineError::Forbidden => StatusCode::FORBIDDEN,
            EngineError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            EngineError::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
            EngineError::ShuttingDown | EngineError::TooManySessions => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let body = serde_json::json!({ "code": self.code(), "message": self.message() });
        HttpResponse::build(self.status_code())
            .insert_header(("Cache-Control", "no-store"))
            .content_type("application/json")
            .body(body.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_match_the_reference() {
        let r = EngineError::SessionUnknown.error_response();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(EngineError::TransportUnknown.code(), 0);
        assert_eq!(EngineError::UnsupportedProtocol.code(), 5);
        assert_eq!(EngineError::Forbidden.status_code(), StatusCode::FORBIDDEN);
        assert_eq!(
            EngineError::PayloadTooLarge.status_code(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
