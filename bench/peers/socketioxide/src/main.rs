//! socketioxide 0.18 serving exactly the benchmark behaviour of hubbub's
//! `sendToAll`: every `sendToAll(arg)` is broadcast as `messages(arg)` to every
//! other socket. With a Redis URL, replicas share broadcasts through
//! socketioxide-redis (its own protocol, not @socket.io/redis-adapter's).
//!
//! Usage: socketioxide-peer PORT [REDIS_URL]

use axum::serve::ListenerExt;
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Data, SocketRef};
use socketioxide_redis::drivers::redis::redis_client as redis;
use socketioxide_redis::{RedisAdapter, RedisAdapterCtr};

// Key order is kept (serde_json's `preserve_order`), so the relayed argument is
// byte-for-byte the one received, as with hubbub and socket.io.
async fn on_send_to_all<A: Adapter>(s: SocketRef<A>, Data(arg): Data<serde_json::Value>) {
    let _ = s.broadcast().emit("messages", &arg).await;
}

async fn on_connect<A: Adapter>(s: SocketRef<A>) {
    s.on("sendToAll", on_send_to_all);
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().as_deref().unwrap_or("3000").parse()?;
    let redis_url = args.next();
    let app = match &redis_url {
        Some(url) => {
            // socketioxide-redis speaks RESP3.
            let url = if url.contains('?') { format!("{url}&protocol=resp3") } else { format!("{url}?protocol=resp3") };
            let client = redis::Client::open(url)?;
            let adapter = RedisAdapterCtr::new_with_redis(&client).await?;
            let (layer, io) = SocketIo::builder()
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_layer();
            io.ns("/", on_connect).await?;
            axum::Router::new().layer(layer)
        }
        None => {
            let (layer, io) = SocketIo::new_layer();
            io.ns("/", on_connect);
            axum::Router::new().layer(layer)
        }
    };
    // TCP_NODELAY on every connection, as hubbub and Node's http server set it:
    // without it Nagle's algorithm holds small frames behind delayed ACKs.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await?
        .tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                eprintln!("setting TCP_NODELAY: {e}");
            }
        });
    println!(
        "socketioxide listening on 127.0.0.1:{port}{}",
        redis_url.map(|u| format!(" with {u}")).unwrap_or_default()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("installing a SIGTERM handler at start-up");
            term.recv().await;
        })
        .await?;
    Ok(())
}
