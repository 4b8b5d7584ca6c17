//! The server side of the official Socket.IO Admin UI (`@socket.io/admin-ui` 0.5):
//! an admin namespace (default `/admin`) that the hosted dashboard at
//! admin.socket.io, or the same UI self-hosted, connects to unchanged.
//!
//! Owns: the namespace's authentication (a bcrypt hash as the Node package takes,
//! session ids through an [`AdminSessionStore`]), the `config` and `server_stats`
//! events, the commands (`emit`, `join`, `leave`, `_disconnect`), which act on every
//! node through the [`crate::Adapter`], and in development mode the per-socket
//! events ([`observer`]). It must not touch chat code, Redis or the Engine.IO
//! internals: the engine's counters come in through [`EngineCounters`], the
//! session store through its trait (memory here, Redis in hubbub-redis).
//!
//! Cost: nothing exists unless [`install`] is called. In production mode no hook
//! is set at all; `server_stats` reads the engine's existing counters every 2 s, so
//! the per-packet work stays the counter increments the engine always does. In
//! development mode each socket event, room change and emit also reports to the
//! admin namespace (see `docs/admin-ui.md` for the figures).

pub mod observer;
pub mod protocol;

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::socket::{Event, Socket};
use crate::{Io, Namespace};
use observer::AdminObserver;
use protocol::{EngineReading, NamespaceDetails, SerializedSocket, ServerStats};

/// How long a session id stays valid: the Node package's Redis store default (86400 s).
pub const SESSION_TTL: Duration = Duration::from_secs(86_400);

/// Most session ids the in-memory store keeps; the oldest go first beyond it.
pub const MEMORY_SESSIONS_MAX: usize = 10_000;

/// The message a refused login gets; the UI shows it and asks again.
pub const INVALID_CREDENTIALS: &str = "invalid credentials";

/// How `server_stats` are paced (the Node package's 2 s).
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);

/// Which events the UI is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminMode {
    /// Aggregated figures only (`server_stats`): no per-socket or per-event work.
    Production,
    /// Also every socket, room change and event (`ALL_EVENTS`).
    Development,
}

/// How the admin namespace authenticates.
#[derive(Debug, Clone)]
pub enum AdminAuth {
    /// Anyone reaching the namespace is an admin (explicitly asked for).
    Disabled,
    /// A username and a bcrypt hash of the password.
    Basic {
        /// The username the UI must send.
        username: String,
        /// A bcrypt hash (`$2a$`, `$2b$` or `$2y$`) of the password.
        password_hash: String,
    },
}

/// Settings of the admin namespace (the server builds them from its flags).
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// The namespace name (default `/admin`).
    pub namespace: String,
    /// Authentication.
    pub auth: AdminAuth,
    /// Offer only the aggregated views; commands are ignored.
    pub readonly: bool,
    /// Production (default) or development.
    pub mode: AdminMode,
    /// This host's name, shown in `server_stats`.
    pub hostname: String,
    /// Browser origins that may reach the namespace: only these, listed
    /// explicitly (never the chat page's own origin by the same-origin rule,
    /// never `*`). Non-browser clients (no `Origin`) are not restricted.
    pub allowed_origins: Vec<String>,
}

/// Why the admin namespace could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The password hash is not a bcrypt hash.
    #[error("the password hash is not a valid bcrypt hash: {0}")]
    InvalidHash(#[source] bcrypt::BcryptError),
    /// The username is empty.
    #[error("the username is empty")]
    EmptyUsername,
}

/// Checks a bcrypt hash without verifying anything against it.
pub fn validate_password_hash(hash: &str) -> Result<(), AdminError> {
    hash.parse::<bcrypt::HashParts>()
        .map(|_| ())
        .map_err(AdminError::InvalidHash)
}

/// Why a session store operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("admin session store: {0}")]
pub struct SessionStoreError(pub String);

/// Where admin session ids live: in memory for one replica, in Redis (hubbub-redis)
/// so that a session id works on every replica.
#[async_trait]
pub trait AdminSessionStore: Send + Sync + 'static {
    /// Whether `id` is a valid, unexpired session.
    async fn exists(&self, id: &str) -> Result<bool, SessionStoreError>;
    /// Records a new session for [`SESSION_TTL`].
    async fn save(&self, id: &str) -> Result<(), SessionStoreError>;
}

/// Session id → when it was saved, and a sequence number that orders saves;
/// then the last sequence number given.
type SavedSessions = (HashMap<String, (Instant, u64)>, u64);

/// The in-memory session store: one replica only, [`SESSION_TTL`] expiry, bounded.
#[derive(Debug, Default)]
pub struct MemorySessionStore {
    sessions: Mutex<SavedSessions>,
}

#[async_trait]
impl AdminSessionStore for MemorySessionStore {
    async fn exists(&self, id: &str) -> Result<bool, SessionStoreError> {
        let sessions = self.sessions.lock();
        Ok(sessions
            .0
            .get(id)
            .is_some_and(|(saved, _)| saved.elapsed() < SESSION_TTL))
    }

    async fn save(&self, id: &str) -> Result<(), SessionStoreError> {
        let mut guard = self.sessions.lock();
        let (sessions, seq) = &mut *guard;
        sessions.retain(|_, (saved, _)| saved.elapsed() < SESSION_TTL);
        if sessions.len() >= MEMORY_SESSIONS_MAX
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, (_, n))| *n)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        *seq += 1;
        sessions.insert(id.to_owned(), (Instant::now(), *seq));
        Ok(())
    }
}

/// The Engine.IO figures `server_stats` reports, read every 2 s (the server
/// implements it over its engine and the engine's metrics).
pub trait EngineCounters: Send + Sync + 'static {
    /// The counters now.
    fn read(&self) -> EngineReading;
}

/// Marks a socket that logged in with credentials: its new session id is sent
/// once the CONNECT was acknowledged.
struct NewSession(String);

/// Keeps the admin namespace's background work (the `server_stats` ticker) alive;
/// dropping it stops the ticker.
pub struct AdminHandle {
    ticker: tokio::task::JoinHandle<()>,
    namespace: Arc<Namespace>,
}

impl AdminHandle {
    /// The admin namespace.
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.namespace
    }
}

impl Drop for AdminHandle {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

/// Serves the admin namespace on `io`: authentication, `config`, the commands
/// (unless read-only), `server_stats` every 2 s and, in development mode, every
/// socket event. Fails on a bad bcrypt hash or an empty username.
pub fn install(
    io: &Arc<Io>,
    settings: AdminSettings,
    sessions: Arc<dyn AdminSessionStore>,
    engine: Arc<dyn EngineCounters>,
) -> Result<AdminHandle, AdminError> {
    if let AdminAuth::Basic {
        username,
        password_hash,
    } = &settings.auth
    {
        if username.is_empty() {
            return Err(AdminError::EmptyUsername);
        }
        validate_password_hash(password_hash)?;
    }
    let settings = Arc::new(settings);
    // No connection state recovery: offsets would ride on the UI's events, and a
    // reconnecting dashboard re-reads everything anyway.
    let admin = io.of_without_recovery(&settings.namespace);
    let development = settings.mode == AdminMode::Development;

    {
        let settings = settings.clone();
        let sessions = sessions.clone();
        admin.on_connect_async(move |socket, auth| {
            let settings = settings.clone();
            let sessions = sessions.clone();
            async move { authenticate(&settings, &*sessions, &socket, &auth).await }
        });
    }

    let features = protocol::features(settings.readonly, development);
    {
        let io = Arc::downgrade(io);
        admin.on_connection_async(move |socket| {
            let io = io.clone();
            let features = features.clone();
            async move {
                if let Some(session) = socket.extensions().remove::<NewSession>() {
                    // After the CONNECT reply, so that the UI (which listens for it only
                    // once connected) keeps it and a reload does not ask again.
                    let _ = socket.emit("session", &[Value::String(session.0.clone())]);
                }
                let _ = socket.emit("config", &[json!({ "supportedFeatures": features })]);
                if development && let Some(io) = io.upgrade() {
                    let sockets = all_sockets(&io).await;
                    let _ = socket.emit("all_sockets", &[json!(sockets)]);
                }
            }
        });
    }

    if !settings.readonly {
        register_commands(io, &admin);
    }
    if development {
        io.set_observer(Arc::new(AdminObserver::new(&admin)));
    }

    let ticker = tokio::spawn(stats_loop(
        Arc::downgrade(io),
        admin.clone(),
        settings.clone(),
        engine,
    ));
    match &settings.auth {
        AdminAuth::Disabled => tracing::warn!(
            namespace = %settings.namespace,
            "admin UI authentication is disabled: anyone who reaches the namespace controls the server"
        ),
        AdminAuth::Basic { .. } => tracing::info!(
            namespace = %settings.namespace,
            readonly = settings.readonly,
            development,
            "admin UI enabled"
        ),
    }
    Ok(AdminHandle {
        ticker,
        namespace: admin,
    })
}

/// The CONNECT check of the admin namespace.
async fn authenticate(
    settings: &AdminSettings,
    sessions: &dyn AdminSessionStore,
    socket: &Arc<Socket>,
    auth: &Value,
) -> Result<(), String> {
    if let Some(origin) = socket.handshake().and_then(|h| h.origin.as_deref())
        && !settings.allowed_origins.iter().any(|o| o == origin)
    {
        tracing::info!(
            origin,
            "admin namespace refused to a browser origin not listed"
        );
        return Err("origin not allowed".to_owned());
    }
    let AdminAuth::Basic {
        username,
        password_hash,
    } = &settings.auth
    else {
        return Ok(());
    };
    if let Some(id) = auth.get("sessionId").and_then(Value::as_str) {
        match sessions.exists(id).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "admin session id not checked"),
        }
    }
    let given_user = auth.get("username").and_then(Value::as_str);
    let given_password = auth.get("password").and_then(Value::as_str);
    if let (Some(user), Some(password)) = (given_user, given_password)
        && user == username
    {
        let password = password.to_owned();
        let hash = password_hash.clone();
        // bcrypt is deliberately slow: keep it off the runtime's workers.
        let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(false);
        if verified {
            let id = hubbub_engineio::session::random_id().to_string();
            match sessions.save(&id).await {
                Ok(()) => socket.extensions().insert(NewSession(id)),
                Err(error) => tracing::warn!(%error, "admin session id not saved; none sent"),
            }
            return Ok(());
        }
    }
    tracing::info!("admin login refused: invalid credentials");
    Err(INVALID_CREDENTIALS.to_owned())
}

/// The namespace named by a command's first argument, if it exists (commands
/// never create namespaces).
fn target(io: &Weak<Io>, event: &Event) -> Option<Arc<Namespace>> {
    let name = event.args.first()?.as_str()?;
    let io = io.upgrade()?;
    let ns = io.namespace(name);
    if ns.is_none() {
        tracing::debug!(nsp = name, "admin command for an unknown namespace ignored");
    }
    ns
}

/// The optional room filter at `index`: a string, or absent/null for the whole namespace.
fn filter(event: &Event, index: usize) -> Result<Option<String>, ()> {
    match event.args.get(index) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(()),
    }
}

fn scoped(ns: &Arc<Namespace>, filter: Option<String>) -> crate::BroadcastOperator {
    match filter {
        Some(room) => ns.broadcast().to(room),
        None => ns.broadcast(),
    }
}

/// `emit`, `join`, `leave` and `_disconnect`, acting on every node through the adapter.
fn register_commands(io: &Arc<Io>, admin: &Arc<Namespace>) {
    let weak = Arc::downgrade(io);
    {
        let io = weak.clone();
        // emit(nsp, filter, event, ...args)
        admin.on("emit", move |_, event| {
            let Some(ns) = target(&io, &event) else {
                return;
            };
            let (Ok(room), Some(Value::String(name))) = (filter(&event, 1), event.args.get(2))
            else {
                tracing::debug!("malformed admin emit ignored");
                return;
            };
            let args = event.args.get(3..).unwrap_or_default();
            scoped(&ns, room).emit_binary(name, args, event.binary.clone());
        });
    }
    for command in ["join", "leave"] {
        let io = weak.clone();
        // join(nsp, room, filter?) / leave(nsp, room, filter?)
        admin.on_async(command, move |_, event| {
            let io = io.clone();
            async move {
                let Some(ns) = target(&io, &event) else {
                    return;
                };
                let (Some(Value::String(room)), Ok(room_filter)) =
                    (event.args.get(1), filter(&event, 2))
                else {
                    tracing::debug!(command, "malformed admin command ignored");
                    return;
                };
                let op = scoped(&ns, room_filter);
                let rooms = vec![Arc::from(room.as_str())];
                if command == "join" {
                    op.join(rooms).await;
                } else {
                    op.leave(rooms).await;
                }
            }
        });
    }
    {
        let io = weak;
        // _disconnect(nsp, close, filter?)
        admin.on_async("_disconnect", move |_, event| {
            let io = io.clone();
            async move {
                let Some(ns) = target(&io, &event) else {
                    return;
                };
                let close = event.args.get(1).and_then(Value::as_bool).unwrap_or(false);
                let Ok(room_filter) = filter(&event, 2) else {
                    tracing::debug!("malformed admin _disconnect ignored");
                    return;
                };
                scoped(&ns, room_filter).disconnect(close).await;
            }
        });
    }
}

/// Every socket of every namespace on every node (`all_sockets`). Sockets of
/// this node are serialized from the socket itself; those of other nodes from what
/// their `fetchSockets()` answer carries (handshake, rooms, data with `_admin`), which
/// gives the same shape.
async fn all_sockets(io: &Arc<Io>) -> Vec<SerializedSocket> {
    let mut out = Vec::new();
    for ns in io.namespaces() {
        let infos = match ns.broadcast().fetch_sockets().await {
            Ok(infos) => infos,
            Err(error) => {
                tracing::warn!(%error, nsp = ns.name(), "remote sockets not fetched; local only");
                ns.local_socket_infos(&Default::default())
            }
        };
        for info in infos {
            out.push(match ns.get_socket(&info.id) {
                Some(socket) => observer::serialize(&socket),
                None => observer::serialize_remote(&info, ns.name()),
            });
        }
    }
    out
}

/// Emits `server_stats` to the admin namespace (every node's admin sockets) every 2 s.
async fn stats_loop(
    io: Weak<Io>,
    admin: Arc<Namespace>,
    settings: Arc<AdminSettings>,
    engine: Arc<dyn EngineCounters>,
) {
    let started = Instant::now();
    let pid = std::process::id();
    let server_id = format!("{}#{pid}", settings.hostname);
    let mut previous = engine.read();
    let mut tick = tokio::time::interval(STATS_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(io) = io.upgrade() else { return };
        let now = engine.read();
        let mut namespaces: Vec<NamespaceDetails> = io
            .namespaces()
            .iter()
            .map(|ns| NamespaceDetails {
                name: ns.name().to_owned(),
                sockets_count: ns.local_socket_count(),
            })
            .collect();
        namespaces.sort_by(|a, b| a.name.cmp(&b.name));
        let stats = ServerStats {
            server_id: server_id.clone(),
            hostname: settings.hostname.clone(),
            pid,
            uptime: started.elapsed().as_secs_f64(),
            clients_count: now.clients,
            polling_clients_count: now.polling_clients,
            aggregated_events: protocol::aggregated_events(
                &previous,
                &now,
                protocol::epoch_millis(SystemTime::now()),
            ),
            namespaces,
        };
        previous = now;
        match serde_json::to_value(&stats) {
            Ok(v) => admin.emit("server_stats", &[v]),
            Err(error) => tracing::warn!(%error, "server_stats not encoded"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_sessions_are_kept_and_bounded() {
        let store = MemorySessionStore::default();
        assert!(!store.exists("a").await.unwrap());
        store.save("a").await.unwrap();
        assert!(store.exists("a").await.unwrap());
        for i in 0..MEMORY_SESSIONS_MAX {
            store.save(&format!("s{i}")).await.unwrap();
        }
        assert_eq!(store.sessions.lock().0.len(), MEMORY_SESSIONS_MAX);
        assert!(!store.exists("a").await.unwrap(), "the oldest went first");
    }

    #[test]
    fn hashes_are_checked() {
        assert!(validate_password_hash("not a hash").is_err());
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        assert!(validate_password_hash(&hash).is_ok());
    }
}
