//! What a client's first request carried (peer address, headers, query, URL, time),
//! kept on its [`crate::Session`] for applications that show it, such as the Socket.IO
//! Admin UI's socket details. Taken once at the handshake, and only after
//! [`crate::Engine::keep_handshakes`] (off by default: no copy of every session's headers);
//! never consulted by the Engine.IO layer itself.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_http::RequestHead;
use actix_http::header;

/// The handshake request of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handshake {
    /// The peer's IP address, when known.
    pub address: Option<String>,
    /// Every header, names lower-case, in request order.
    pub headers: Vec<(String, String)>,
    /// The query string's parameters, decoded.
    pub query: Vec<(String, String)>,
    /// The request target (path and query).
    pub url: String,
    /// Whether the request arrived over TLS (as a proxy's `X-Forwarded-Proto` says).
    pub secure: bool,
    /// When the session opened, in milliseconds since the epoch.
    pub issued_ms: u64,
    /// The browser's `Origin`, when the request came from a page.
    pub origin: Option<String>,
}

impl Handshake {
    /// The handshake of the request `head`.
    pub fn from_head(head: &RequestHead) -> Self {
        let headers: Vec<(String, String)> = head
            .headers
            .iter()
            .filter_map(|(name, value)| {
                value
                    .to_str()
                    .ok()
                    .map(|v| (name.as_str().to_owned(), v.to_owned()))
            })
            .collect();
        let query = head
            .uri
            .query()
            .and_then(|q| {
                actix_web::web::Query::<Vec<(String, String)>>::from_query(q)
                    .ok()
                    .map(|q| q.into_inner())
            })
            .unwrap_or_default();
        let secure = head
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        Handshake {
            address: head.peer_addr.map(|a| a.ip().to_string()),
            origin: head
                .headers
                .get(header::ORIGIN)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            headers,
            query,
            url: head.uri.to_string(),
            secure,
            issued_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn takes_address_headers_query_and_origin() {
        let req = TestRequest::get()
            .uri("/socket.io/?EIO=4&transport=polling&room=a%20b")
            .insert_header(("Origin", "https://admin.socket.io"))
            .peer_addr("127.0.0.1:4000".parse().unwrap())
            .to_http_request();
        let h = Handshake::from_head(req.head());
        assert_eq!(h.address.as_deref(), Some("127.0.0.1"));
        assert_eq!(h.origin.as_deref(), Some("https://admin.socket.io"));
        assert!(h.query.contains(&("room".into(), "a b".into())));
        assert!(
            h.headers
                .contains(&("origin".into(), "https://admin.socket.io".into()))
        );
        assert_eq!(h.url, "/socket.io/?EIO=4&transport=polling&room=a%20b");
        assert!(!h.secure);
    }
}
