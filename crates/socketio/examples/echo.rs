//! A Socket.IO server that exercises the whole handler API of
//! `hubbub_socketio`: auth on connect, events with binary attachments, acks
//! both ways, rooms, broadcasts with exclusions, custom namespaces and
//! server-side disconnects. The protocol integration tests
//! (`tests/node/protocol.test.mjs`) run the official `socket.io-client`
//! against it.
//!
//! ```sh
//! cargo run --example echo -- --bind 127.0.0.1:3001
//! ```
//! It takes a few of `hubbub-server`'s settings, with the same names (`--bind`,
//! `--ping-interval-ms`, `--ping-timeout-ms`, `--connect-timeout-ms`, `--max-payload`).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, web};
use clap::Parser;
use hubbub_engineio::serve::{self, Mounts, ServeOptions};
use hubbub_engineio::{Engine, EngineConfig, EngineMetrics, OriginPolicy};
use hubbub_socketio::{Io, IoConfig, IoHandler, MemoryAdapter, Namespace, Socket, SocketMetrics};
use hubbub_telemetry::LogFormat;
use serde_json::{Value, json};

fn first_str(args: &[Value]) -> Option<String> {
    args.first().and_then(Value::as_str).map(str::to_owned)
}

fn register_echo(ns: &Arc<Namespace>) {
    ns.on("echo", |socket, event| {
        let _ = socket.emit_binary("echo", &event.args, &event.binary);
    });
    ns.on("ack", |_socket, event| {
        if let Some(ack) = event.ack {
            ack.send_binary(&event.args, event.binary);
        }
    });
}

fn register_main(ns: &Arc<Namespace>) {
    ns.on_connect(
        |_socket, auth| match auth.get("token").and_then(Value::as_str) {
            Some("bad") => Err("unauthorized".to_owned()),
            _ => Ok(()),
        },
    );
    ns.on_connection(|socket| {
        let _ = socket.emit(
            "welcome",
            &[json!({ "id": &**socket.id(), "auth": socket.auth() })],
        );
    });
    register_echo(ns);
    ns.on("join-room", |socket, event| {
        if let Some(room) = first_str(&event.args) {
            socket.join(room);
        }
        if let Some(ack) = event.ack {
            ack.send(&[json!(
                socket.rooms().iter().map(|r| &**r).collect::<Vec<_>>()
            )]);
        }
    });
    ns.on("leave-room", |socket, event| {
        if let Some(room) = first_str(&event.args) {
            socket.leave(&room);
        }
        if let Some(ack) = event.ack {
            ack.send(&[json!(
                socket.rooms().iter().map(|r| &**r).collect::<Vec<_>>()
            )]);
        }
    });
    // to-room(room, ...args): to everyone in the room but the sender.
    ns.on("to-room", |socket, event| {
        if let Some(room) = first_str(&event.args) {
            socket
                .to(room)
                .emit_binary("room-message", &event.args[1..], event.binary);
        }
    });
    // broadcast(...args): to everyone but the sender; except(room, ...args) also skips a room.
    ns.on("broadcast", |socket, event| {
        socket
            .broadcast()
            .emit_binary("broadcast", &event.args, event.binary);
    });
    ns.on("except", |socket, event| {
        if let Some(room) = first_str(&event.args) {
            socket
                .broadcast()
                .except(room)
                .emit("except", &event.args[1..]);
        }
    });
    // everyone(...args): to every socket of the namespace, the sender included.
    ns.on("everyone", |socket, event| {
        socket.ns().emit("everyone", &event.args);
    });
    // ask(timeoutMs, ack): the server asks the client `question` with an ack and
    // acks the request with the client's answer, or with {"error": ...}.
    ns.on_async("ask", |socket: Arc<Socket>, event| async move {
        let ms = event.args.first().and_then(Value::as_u64).unwrap_or(1000);
        let result = socket
            .emit_with_ack("question", &[json!("ready?")], Duration::from_millis(ms))
            .await;
        if let Some(ack) = event.ack {
            match result {
                Ok(resp) => ack.send_binary(&resp.args, resp.binary),
                Err(e) => ack.send(&[json!({ "error": e.to_string() })]),
            }
        }
    });
    ns.on("server-disconnect", |socket, _event| socket.disconnect());
    ns.on("server-close", |socket, _event| socket.close_connection());
    ns.on_async("fetch", |socket: Arc<Socket>, event| async move {
        let mut op = socket.ns().broadcast();
        if let Some(room) = first_str(&event.args) {
            op = op.to(room);
        }
        let ids: Vec<String> = match op.fetch_sockets().await {
            Ok(infos) => infos.into_iter().map(|i| i.id.to_string()).collect(),
            Err(_) => Vec::new(),
        };
        if let Some(ack) = event.ack {
            ack.send(&[json!(ids)]);
        }
    });
}

/// The example's settings (a subset of `hubbub-server`'s flags, with the same names).
#[derive(Debug, Parser)]
struct Args {
    /// Address and port to listen on.
    #[arg(long, default_value = "127.0.0.1:3001")]
    bind: std::net::SocketAddr,
    /// Socket.IO endpoint path.
    #[arg(long, default_value = "/socket.io/")]
    path: String,
    /// Server ping interval.
    #[arg(long, default_value_t = 25_000)]
    ping_interval_ms: u64,
    /// Time to answer a ping.
    #[arg(long, default_value_t = 20_000)]
    ping_timeout_ms: u64,
    /// Time a connection has to join a namespace.
    #[arg(long, default_value_t = 45_000)]
    connect_timeout_ms: u64,
    /// Largest POST body / WebSocket message in bytes.
    #[arg(long, default_value_t = 1_000_000)]
    max_payload: usize,
    /// Log filter (tracing syntax).
    #[arg(long, env = "HUBBUB_LOG", default_value = "info")]
    log: String,
    /// `text` or `json`.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    hubbub_telemetry::init(&args.log, args.log_format)?;
    let io = Io::new(
        IoConfig {
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
            max_attachment_bytes: args.max_payload,
        },
        Arc::new(MemoryAdapter),
        Arc::new(SocketMetrics::detached()),
    );
    register_main(&io.of("/"));
    register_echo(&io.of("/custom"));
    let engine = Engine::new(
        EngineConfig {
            ping_interval: Duration::from_millis(args.ping_interval_ms),
            ping_timeout: Duration::from_millis(args.ping_timeout_ms),
            max_payload: args.max_payload,
            upgrade_timeout: Duration::from_secs(10),
            outbound_queue: 1024,
            max_sessions: 0,
            // The protocol tests connect from Node without an Origin; any origin is fine here.
            origins: OriginPolicy::Any,
        },
        Arc::new(IoHandler(io)),
        Arc::new(EngineMetrics::detached()),
    );
    let options = ServeOptions {
        workers: Some(2),
        ..ServeOptions::default()
    };
    let listener = serve::listener(args.bind)?;
    tracing::info!(addr = %listener.local_addr()?, "hubbub-server listening");
    let path = args.path.clone();
    let mounts = Mounts::new(path.clone(), engine.clone());
    let data = web::Data::new(engine);
    let server = serve::server(vec![listener], mounts, &options, move || {
        App::new()
            .app_data(data.clone())
            .route(&path, web::route().to(hubbub_engineio::endpoint))
    })?;
    server.await?;
    Ok(())
}
