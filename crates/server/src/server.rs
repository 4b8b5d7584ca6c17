//! Wiring of the server: store and adapter (in-memory, or Redis when
//! configured), the Socket.IO server with the chat application, the Engine.IO
//! endpoint, the HTTP server, and graceful shutdown.
//!
//! Shutdown on SIGTERM or SIGINT: `/readyz` turns 503 at once, new sessions
//! are refused, every client is sent a close so that it reconnects (to another
//! replica), queued writes are flushed, and the process returns within the
//! grace period.

use std::sync::Arc;
use std::time::Duration;

use actix_web::App;

use crate::admin::ServerCounters;
use crate::advertise;
use crate::chat::store::{MemoryStore, Store, StoreLimits};
use crate::chat::store_redis::{PresenceSettings, RedisStore};
use crate::chat::{Chat, ChatSettings};
use crate::config::ServerConfig;
use crate::http::{self, AppState, Health};
use crate::metrics::Metrics;
use hubbub_amqp::adapter::AmqpAdapter;
use hubbub_amqp::link::AmqpLink;
use hubbub_engineio::forward::{ForwardMetrics, Forwarder};
use hubbub_engineio::serve::{self, Mounts, ServeOptions};
use hubbub_engineio::{CloseReason, Engine, EngineConfig, OriginPolicy};
use hubbub_redis::adapter::RedisAdapter;
use hubbub_redis::admin_sessions::RedisAdminSessions;
use hubbub_redis::forward::RedisOwnerDirectory;
use hubbub_redis::link::RedisLink;
use hubbub_redis::recovery::RedisRecovery;
use hubbub_redis::sharded::ShardedAdapter;
use hubbub_socketio::admin::{self, AdminSessionStore, MemorySessionStore};
use hubbub_socketio::{
    Adapter, Io, IoConfig, IoHandler, MemoryAdapter, MemoryRecoveryStore, Recovery, RecoveryStore,
};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP server failed.
    #[error("http server failed: {0}")]
    Http(#[from] std::io::Error),
    /// The Redis back end could not be set up.
    #[error("redis: {0}")]
    Redis(String),
    /// A metric could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The admin UI could not be set up.
    #[error("admin ui: {0}")]
    Admin(#[from] admin::AdminError),
    /// The RabbitMQ back end could not be set up (bad URL, refused credentials or vhost).
    #[error("{0}")]
    Amqp(#[from] hubbub_amqp::link::AmqpError),
}

/// The Engine.IO settings from the server configuration.
pub fn engine_config(config: &ServerConfig) -> EngineConfig {
    EngineConfig {
        ping_interval: config.ping_interval(),
        ping_timeout: config.ping_timeout(),
        max_payload: config.max_payload,
        upgrade_timeout: Duration::from_millis(config.upgrade_timeout_ms),
        outbound_queue: config.outbound_queue,
        max_sessions: config.max_connections,
        origins: OriginPolicy::from_list(&config.cors_origins),
    }
}

/// The storage and broadcast back ends for this configuration, and the Redis handles to
/// withdraw presence and close connections at shutdown (when Redis is configured).
///
/// | `--redis-url` | `--amqp-url` | stored state (history, presence) | cross-replica traffic |
/// |---|---|---|---|
/// | unset | unset | memory | none (one replica) |
/// | set | unset | Redis | Redis pub/sub |
/// | set | set | Redis | RabbitMQ (Redis carries no pub/sub) |
/// | unset | set | memory, per replica | RabbitMQ |
async fn backends(config: &ServerConfig, metrics: &Arc<Metrics>) -> Result<Backends, ServerError> {
    let limits = StoreLimits {
        history_size: config.history_size,
        question_history: config.question_history,
    };
    // Checks the URL and tries once: a refused user or vhost stops start-up here; an
    // unreachable broker is retried in the background (/readyz 503 until it answers).
    let amqp = match config.amqp_settings() {
        Some(settings) => Some(AmqpLink::start(settings, &metrics.registry).await?),
        None => None,
    };
    let Some(settings) = config.redis_settings() else {
        let adapter: Arc<dyn Adapter> = match &amqp {
            Some(link) => AmqpAdapter::new(link.clone()),
            None => Arc::new(MemoryAdapter),
        };
        // One node: sessions and the log of broadcasts in memory. Over RabbitMQ the replicas
        // would need a shared log, which does not exist yet: recovery is off there.
        let recovery = config
            .recovery_settings()
            .filter(|_| amqp.is_none())
            .map(|settings| {
                Arc::new(Recovery {
                    store: Arc::new(MemoryRecoveryStore::new(settings.window)),
                    settings,
                })
            });
        return Ok(Backends {
            store: Arc::new(MemoryStore::new(limits)),
            adapter,
            redis: None,
            amqp,
            recovery,
        });
    };
    // Redis is asked first, so that a wrong Sentinel list, master name, a seed outside
    // cluster mode, a refused password or an untrusted TLS certificate stops start-up with
    // the setting named (a URL that does not answer yet is retried in the background).
    let found = hubbub_redis::topology::probe(&settings, hubbub_redis::topology::PROBE_WINDOW)
        .await
        .map_err(|e| ServerError::Redis(e.to_string()))?;
    tracing::info!(topology = settings.topology.kind(), %found, "redis topology");
    // Starts connecting in the background: the server starts and /readyz is 503 until
    // Redis answers (retried with capped exponential back-off).
    let link = RedisLink::start(settings, &metrics.registry)
        .map_err(|e| ServerError::Redis(e.to_string()))?;
    let presence = PresenceSettings {
        heartbeat: Duration::from_secs(config.presence_heartbeat_secs),
        ttl: Duration::from_secs(config.presence_ttl_secs),
    };
    let store = RedisStore::new(link.clone(), limits, presence);
    store.start_heartbeat();
    // Where this replica is reached for forwarding: refreshed like presence.
    let owners = RedisOwnerDirectory::new(link.clone(), presence.heartbeat, presence.ttl);
    // With RabbitMQ configured, the Redis adapter is never created: nothing subscribes
    // or publishes on Redis, which keeps only the stored state. Otherwise, on a cluster,
    // cross-replica traffic uses sharded pub/sub in the format of the Node sharded adapter,
    // and classic pub/sub in the format of the Node redis adapter everywhere else.
    // Connection state recovery needs the stream log that only the classic adapter writes:
    // it is off over RabbitMQ and on a cluster.
    let (adapter, recovery): (Arc<dyn Adapter>, _) = match &amqp {
        Some(amqp) => (AmqpAdapter::new(amqp.clone()), None),
        None if link.topology().is_cluster() => (ShardedAdapter::new(link.clone()), None),
        None => {
            let adapter = RedisAdapter::new(link.clone());
            // Sessions and the stream of broadcasts in Redis; the adapter logs through it.
            let recovery = config.recovery_settings().map(|settings| {
                let log = RedisRecovery::start(link.clone(), settings.clone());
                adapter.set_recovery(log.clone());
                let store: Arc<dyn RecoveryStore> = log;
                Arc::new(Recovery { store, settings })
            });
            (adapter as Arc<dyn Adapter>, recovery)
        }
    };
    Ok(Backends {
        store: store.clone(),
        adapter,
        redis: Some(RedisBackend {
            store,
            link,
            owners,
        }),
        amqp,
        recovery,
    })
}

/// What `backends` sets up.
struct Backends {
    store: Arc<dyn Store>,
    adapter: Arc<dyn Adapter>,
    redis: Option<RedisBackend>,
    amqp: Option<AmqpLink>,
    /// Connection state recovery, when on and possible with these back ends.
    recovery: Option<Arc<Recovery>>,
}

/// What forwarding and shutdown need of the Redis back end.
struct RedisBackend {
    store: Arc<RedisStore>,
    link: RedisLink,
    /// The owner directory of cross-replica forwarding (docs/forwarding.md).
    owners: Arc<RedisOwnerDirectory>,
}

/// Runs the server until SIGTERM/SIGINT, then drains and returns.
pub async fn run(config: ServerConfig) -> Result<(), ServerError> {
    let metrics = Arc::new(Metrics::new());
    let health = Health::new();
    let Backends {
        store,
        adapter,
        redis,
        amqp,
        recovery,
    } = backends(&config, &metrics).await?;
    {
        let store = store.clone();
        health.add_check("store", move || store.is_ready());
    }
    if let Some(redis) = &redis {
        // Both Redis connections up and every subscription in place.
        let link = redis.link.clone();
        health.add_detailed_check("redis", move || {
            if link.is_ready() {
                None
            } else {
                Some(link.unready_detail().unwrap_or_else(|| "not ready".into()))
            }
        });
        // Other replicas can forward requests of this one's sessions to it.
        let owners = redis.owners.clone();
        health.add_check("forwarding", move || owners.is_registered());
    }
    if let Some(amqp) = &amqp {
        // Connected to RabbitMQ with this replica's queue declared and consumed.
        let link = amqp.clone();
        health.add_detailed_check("amqp", move || link.status().err());
    }
    let io = Io::with_recovery(
        IoConfig {
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            max_attachment_bytes: config.max_payload,
        },
        adapter,
        Arc::new(metrics.socket.clone()),
        recovery,
    );
    let settings = ChatSettings {
        welcome: config.welcome.clone(),
        max_message_bytes: config.max_message_bytes,
        rate_limit: config.rate_limit,
        rate_burst: config.rate_burst,
    };
    Chat::new(store, settings, metrics.chat.clone()).register(&io);
    // hubbub_tasks_alive counts this (main) runtime's tasks too; serve adds each worker's.
    metrics.engine.tasks.watch_current();
    {
        // With Redis, a replica offers recovery once it has read the log's head.
        let io = io.clone();
        health.add_check("recovery", move || {
            io.namespaces().iter().all(|ns| ns.recovery_ready())
        });
    }
    let engine = Engine::new(
        engine_config(&config),
        Arc::new(IoHandler(io.clone())),
        Arc::new(metrics.engine.clone()),
    );
    if let Some(redis) = &redis {
        // Requests for other replicas' sessions go to their owners: no sticky sessions.
        let forward_metrics = ForwardMetrics::register(&metrics.registry)?;
        engine.set_forwarder(Forwarder::new(redis.owners.clone(), forward_metrics));
    }
    // Kept until the process ends: dropping it stops the admin UI's stats.
    let _admin = if config.admin.enabled {
        // The dashboard shows each socket's handshake, and the admin namespace checks
        // its Origin; without the admin UI no session keeps a copy of its request.
        engine.keep_handshakes();
        let sessions: Arc<dyn AdminSessionStore> = match &redis {
            Some(redis) => Arc::new(RedisAdminSessions::new(redis.link.clone())),
            None => Arc::new(MemorySessionStore::default()),
        };
        let counters = Arc::new(ServerCounters {
            engine: engine.clone(),
            metrics: metrics.clone(),
        });
        Some(admin::install(
            &io,
            config.admin.settings(&config.cors_origins),
            sessions,
            counters,
        )?)
    } else {
        None
    };
    let state = AppState {
        engine: engine.clone(),
        metrics,
        health: health.clone(),
        path: config.path.clone(),
    };
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let mounts = Mounts::new(config.path.clone(), engine.clone());
    let options = ServeOptions {
        shutdown_timeout_secs: config.shutdown_grace_secs.max(1),
        ..ServeOptions::default()
    };
    let listener = serve::listener(config.bind).map_err(|source| ServerError::Bind {
        addr: config.bind,
        source,
    })?;
    let addr = listener.local_addr().unwrap_or(config.bind);
    let server = serve::server(vec![listener], mounts, &options, move || {
        App::new().configure(http::routes(state.clone()))
    })?;
    if let Some(redis) = &redis {
        let towards_redis = advertise::redis_route_target(&config);
        let advertised =
            advertise::advertised_address(config.advertise_ip, addr, towards_redis).await;
        redis.owners.start(advertised);
    }
    tracing::info!(%addr, path = %config.path, "hubbub-server listening");
    let handle = server.handle();
    let mut running = tokio::spawn(server);

    tokio::select! {
        result = &mut running => {
            return match result {
                Ok(r) => r.map_err(ServerError::Http),
                Err(e) => Err(ServerError::Http(std::io::Error::other(e))),
            };
        }
        signal = shutdown_signal() => {
            health.set_draining();
            engine.stop_accepting();
            // Logged after the switch, so that whoever waits for this line knows
            // that /readyz already answers 503 and new sessions are refused.
            tracing::info!(signal, grace_secs = grace.as_secs(), "shutting down");
        }
    }

    let deadline = tokio::time::Instant::now() + grace;
    if config.shutdown_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(config.shutdown_delay_ms)).await;
    }
    let sessions = engine.close_all(CloseReason::Shutdown);
    tracing::info!(sessions, "closing client sessions");
    if tokio::time::timeout_at(deadline, engine.wait_empty())
        .await
        .is_err()
    {
        tracing::warn!(
            left = engine.session_count(),
            "grace period over with sessions left"
        );
    }
    // WebSocket connections write their last frames and close on their own;
    // the HTTP server's stop does not wait for them.
    if tokio::time::timeout_at(deadline, engine.wait_connections())
        .await
        .is_err()
    {
        tracing::warn!(
            left = engine.connection_count(),
            "grace period over with WebSocket connections left"
        );
    }
    // In-flight HTTP requests get what is left of the grace period.
    handle.stop(true).await;
    let _ = running.await;
    if let Some(redis) = redis {
        // Users of this replica leave presence now rather than when the TTL runs out.
        if let Err(error) = redis.store.withdraw().await {
            tracing::warn!(%error, "presence not withdrawn");
        }
        // Its session ids resolve to nothing from now on: the others answer at once.
        if let Err(error) = redis.owners.withdraw().await {
            tracing::warn!(%error, "forwarding registration not withdrawn");
        }
        redis.link.shutdown().await;
    }
    if let Some(amqp) = amqp {
        // Closing the connection makes RabbitMQ delete this replica's queue at once.
        amqp.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or SIGINT with the signal's name.
async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT"
    }
}
