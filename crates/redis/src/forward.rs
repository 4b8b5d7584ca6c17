//! The owner directory of cross-replica forwarding in Redis: each replica registers the
//! address it can be reached at under its owner tag, and looks up the others'.
//!
//! | key | type | content |
//! |---|---|---|
//! | `{key_prefix}:owner:{tag}` | string | `ip:port` of the live replica whose session ids start with `tag` |
//!
//! The key's TTL is the presence TTL (`--presence-ttl-secs`, 15 s); the replica refreshes
//! it every presence heartbeat (`--presence-heartbeat-secs`, 5 s) and deletes it when it
//! shuts down. A crashed replica's tag resolves to nothing once the TTL has run out; until
//! then a connection to its address fails at once (or within the forwarder's 1 s connect
//! timeout), which the forwarder answers like an unknown session.
//!
//! Lookups are cached for one heartbeat, so a busy forwarder asks Redis about each owner
//! about once per heartbeat; a failed connection drops the cached entry. A tag nobody
//! holds costs one GET per request (nothing negative is cached, so a replica that has
//! just started is found at once). The forwarding itself (HTTP, the WebSocket pipe) is
//! `hubbub_engineio::forward`'s; this module only answers where an owner lives.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::prelude::*;
use hubbub_engineio::forward::{BoxFuture, OwnerDirectory, random_tag};
use parking_lot::Mutex;
use tokio::time::Instant;

use crate::link::RedisLink;
use crate::settings::ClusterError;

/// Longest wait for Redis to say where an owner lives.
const LOOKUP_TIMEOUT: Duration = Duration::from_millis(500);

/// The owner registry of this replica and the cache of the others'.
pub struct RedisOwnerDirectory {
    link: RedisLink,
    tag: String,
    /// `{key_prefix}:owner:`.
    key_base: String,
    /// How often the registration is refreshed, and how long a lookup is cached.
    heartbeat: Duration,
    /// How long the registration outlives the last refresh.
    ttl: Duration,
    /// Where this replica is reached; set by [`RedisOwnerDirectory::start`].
    address: Mutex<Option<SocketAddr>>,
    /// Set once the registration has been written: until then the other replicas cannot
    /// find this one's sessions, so it is not ready for traffic.
    registered: AtomicBool,
    cache: Mutex<HashMap<String, (SocketAddr, Instant)>>,
}

impl std::fmt::Debug for RedisOwnerDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOwnerDirectory")
            .field("tag", &self.tag)
            .field("address", &*self.address.lock())
            .finish_non_exhaustive()
    }
}

impl RedisOwnerDirectory {
    /// A directory on `link` with a new random owner tag; registration refreshed every
    /// `heartbeat` and kept `ttl` after the last refresh (`ttl > heartbeat`).
    pub fn new(link: RedisLink, heartbeat: Duration, ttl: Duration) -> Arc<Self> {
        let key_base = format!("{}:owner:", link.settings().key_prefix);
        Arc::new(Self {
            link,
            tag: random_tag(),
            key_base,
            heartbeat,
            ttl,
            address: Mutex::new(None),
            registered: AtomicBool::new(false),
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn key(&self, tag: &str) -> String {
        format!("{}{tag}", self.key_base)
    }

    /// Registers this replica at `address` and keeps the registration alive: every
    /// heartbeat, and at once when Redis becomes ready again. Stops when the directory
    /// is dropped.
    pub fn start(self: &Arc<Self>, address: SocketAddr) -> tokio::task::JoinHandle<()> {
        *self.address.lock() = Some(address);
        tracing::info!(tag = %self.tag, %address, "registered for forwarding");
        let weak: Weak<Self> = Arc::downgrade(self);
        let heartbeat = self.heartbeat;
        tokio::spawn(async move {
            let mut check = tokio::time::interval(Duration::from_millis(250));
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last: Option<Instant> = None;
            let mut was_ready = false;
            loop {
                check.tick().await;
                let Some(dir) = weak.upgrade() else { return };
                let ready = dir.link.commands_ready();
                let due = last.is_none_or(|t| t.elapsed() >= heartbeat);
                if ready && (due || !was_ready) {
                    match dir.register().await {
                        Ok(()) => last = Some(Instant::now()),
                        Err(error) => tracing::warn!(%error, "forwarding registration failed"),
                    }
                }
                was_ready = ready;
            }
        })
    }

    /// Registers this replica at `address` once (the heartbeat of [`Self::start`] keeps
    /// it alive).
    pub async fn register_at(&self, address: SocketAddr) -> Result<(), ClusterError> {
        *self.address.lock() = Some(address);
        self.register().await
    }

    /// Whether this replica's address has been registered (a readiness condition: the
    /// others cannot forward to it before).
    pub fn is_registered(&self) -> bool {
        self.registered.load(Ordering::Acquire)
    }

    /// Writes (or refreshes) this replica's registration.
    async fn register(&self) -> Result<(), ClusterError> {
        let Some(address) = *self.address.lock() else {
            return Ok(());
        };
        let key = self.key(&self.tag);
        let ttl_ms = self.ttl.as_millis() as i64;
        self.link
            .call("owner_register", |c| async move {
                c.set::<(), _, _>(
                    &key,
                    address.to_string(),
                    Some(Expiration::PX(ttl_ms)),
                    None,
                    false,
                )
                .await
            })
            .await?;
        self.registered.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes this replica's registration (graceful shutdown): requests for its sessions
    /// are then answered `Session ID unknown` by the others at once.
    pub async fn withdraw(&self) -> Result<(), ClusterError> {
        *self.address.lock() = None;
        self.registered.store(false, Ordering::Release);
        let key = self.key(&self.tag);
        self.link
            .call(
                "owner_withdraw",
                |c| async move { c.del::<(), _>(&key).await },
            )
            .await
    }

    async fn lookup(&self, tag: &str) -> Option<SocketAddr> {
        if let Some((addr, at)) = self.cache.lock().get(tag)
            && at.elapsed() < self.heartbeat
        {
            return Some(*addr);
        }
        let key = self.key(tag);
        let lookup = self
            .link
            .call("owner_lookup", |c| async move { c.get(&key).await });
        // The forwarder answers within a second even when Redis is slow.
        let value: Option<String> = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(v)) => v,
            Ok(Err(error)) => {
                tracing::debug!(%error, "owner lookup failed");
                None
            }
            Err(_) => {
                tracing::debug!("owner lookup timed out");
                None
            }
        };
        let addr: SocketAddr = value?.parse().ok()?;
        self.cache
            .lock()
            .insert(tag.to_owned(), (addr, Instant::now()));
        Some(addr)
    }
}

impl OwnerDirectory for RedisOwnerDirectory {
    fn local_tag(&self) -> &str {
        &self.tag
    }

    fn resolve<'a>(&'a self, tag: &'a str) -> BoxFuture<'a, Option<SocketAddr>> {
        Box::pin(self.lookup(tag))
    }

    fn forget(&self, tag: &str) {
        self.cache.lock().remove(tag);
    }
}
