//! A Socket.IO server that exercises the whole handler API of
//! `hubbub::socketio`: auth on connect, events with binary attachments, acks
//! both ways, rooms, broadcasts with exclusions, custom namespaces and
//! server-side disconnects. The protocol integration tests
//! (`tests/node/protocol.test.mjs`) run the official `socket.io-client`
//! against it.
//!
//! ```sh
//! cargo run --example echo -- --bind 127.0.0.1:3001
//! ```
//! It takes the Engine.IO settings of `hubbub-server` (`--ping-interval-ms`,
//! `--ping-timeout-ms`, `--connect-timeout-ms`, `--max-payload`, ...).

use std::sync::Arc;
use std::time::Duration;

use actix_web::App;
use clap::Parser;
use hubbub::engineio::serve::{self, Mounts, ServeOptions};
use serde_json::{Value, json};

use hubbub::config::ServerConfig;
use hubbub::engineio::Engine;
use hubbub::http::{self, AppState, Health};
use hubbub::metrics::Metrics;
use hubbub::socketio::{Io, IoConfig, IoHandler, MemoryAdapter, Namespace, Socket};

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

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let mut config = ServerConfig::parse();
    if config.cors_origins.is_empty() {
        config.cors_origins = vec!["*".into()];
    }
    config.validate()?;
    hubbub::telemetry::init(&config.log, config.log_format)?;
    let metrics = Arc::new(Metrics::new());
    let io = Io::new(
        IoConfig {
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            max_attachment_bytes: config.max_payload,
        },
        Arc::new(MemoryAdapter),
        metrics.clone(),
    );
    register_main(&io.of("/"));
    register_echo(&io.of("/custom"));
    let engine = Engine::new(
        hubbub::server::engine_config(&config),
        Arc::new(IoHandler(io)),
        metrics.clone(),
    );
    let state = AppState {
        engine,
        metrics,
        health: Health::new(),
        path: config.path.clone(),
    };
    let options = ServeOptions {
        workers: Some(2),
        ..ServeOptions::default()
    };
    let listener = serve::listener(config.bind)?;
    tracing::info!(addr = %listener.local_addr()?, "hubbub-server listening");
    let mounts = Mounts::new(config.path.clone(), state.engine.clone());
    let server = serve::server(vec![listener], mounts, &options, move || {
        App::new().configure(http::routes(state.clone()))
    })?;
    server.await?;
    Ok(())
}
