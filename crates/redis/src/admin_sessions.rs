//! Admin UI session ids in Redis, so that a dashboard that logged in on one replica
//! is recognised by every replica. Same keys and expiry as the Node package's
//! `RedisStore` (`socket.io-admin#<id>` = `1`, `EX 86400`), so Node replicas sharing
//! the Redis accept hubbub's sessions and the other way round.
//!
//! Owns nothing but those keys; the admin protocol itself is hubbub-socketio's.

use async_trait::async_trait;
use fred::prelude::KeysInterface;
use fred::types::Expiration;

use hubbub_socketio::admin::{AdminSessionStore, SESSION_TTL, SessionStoreError};

use crate::link::RedisLink;

/// The key prefix of the Node package's Redis store.
pub const KEY_PREFIX: &str = "socket.io-admin";

/// The Redis key of session `id`.
pub fn session_key(id: &str) -> String {
    format!("{KEY_PREFIX}#{id}")
}

/// [`AdminSessionStore`] over the link's command connection.
#[derive(Debug, Clone)]
pub struct RedisAdminSessions {
    link: RedisLink,
}

impl RedisAdminSessions {
    /// A store using `link`.
    pub fn new(link: RedisLink) -> Self {
        RedisAdminSessions { link }
    }
}

#[async_trait]
impl AdminSessionStore for RedisAdminSessions {
    async fn exists(&self, id: &str) -> Result<bool, SessionStoreError> {
        let key = session_key(id);
        let found: u64 = self
            .link
            .call("admin_session_exists", |c| async move {
                c.exists::<u64, _>(&key).await
            })
            .await
            .map_err(|e| SessionStoreError(e.to_string()))?;
        Ok(found == 1)
    }

    async fn save(&self, id: &str) -> Result<(), SessionStoreError> {
        let key = session_key(id);
        let ttl = SESSION_TTL.as_secs() as i64;
        self.link
            .call("admin_session_save", |c| async move {
                c.set::<(), _, _>(&key, "1", Some(Expiration::EX(ttl)), None, false)
                    .await
            })
            .await
            .map_err(|e| SessionStoreError(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_as_the_node_package_names_them() {
        assert_eq!(session_key("0123abcd"), "socket.io-admin#0123abcd");
    }
}
