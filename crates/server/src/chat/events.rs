//! The chat and Q&A event handlers on namespace `/` (the contract is the
//! README's events table): `join`, `messages`, `sendToAll`, `question`,
//! `answer`, `who`, plus the welcome and question replay on connection and
//! `joined`/`left` notices.
//!
//! Every event first passes the connection's rate limit; a refused event is
//! acked with `{"error": reason}` (when the client asked for an ack), counted
//! in `hubbub_events_rejected_total{reason}`, and never stored or broadcast.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::model::{Nickname, Rejection, TokenBucket, answer_args, join_args, text_args};
use super::store::Store;
use crate::metrics::ChatMetrics;
use hubbub_socketio::{AckSender, Event, Io, Socket};

/// Events with their own metric label; everything else counts as `other`.
const KNOWN_EVENTS: &[&str] = &["join", "messages", "sendToAll", "question", "answer", "who"];

/// Most names a `who` answer lists.
pub const WHO_NAMES_LIMIT: usize = 1000;

/// Settings of the chat application (from the server configuration).
#[derive(Debug, Clone)]
pub struct ChatSettings {
    /// Sent as `messages {"hello": welcome}` on connection; empty disables it.
    pub welcome: String,
    /// Largest text in bytes.
    pub max_message_bytes: usize,
    /// Events per second per connection.
    pub rate_limit: u32,
    /// Burst of events per connection; also how many refused events in a row
    /// a flooding client gets before it is disconnected.
    pub rate_burst: u32,
}

/// The application: its store, settings and metrics.
pub struct Chat {
    store: Arc<dyn Store>,
    settings: ChatSettings,
    metrics: ChatMetrics,
}

/// Keys of the per-socket data that connection state recovery restores.
const DATA_NAME: &str = "name";
const DATA_ASKED: &str = "asked";

/// Per-connection state, kept in the socket's extensions (and mirrored in its session data,
/// `DATA_NAME`/`DATA_ASKED`, so that a recovered connection keeps it).
struct Member {
    name: Mutex<Option<Nickname>>,
    asked: AtomicBool,
    bucket: Mutex<TokenBucket>,
    /// Events refused by the rate limit since the last accepted one.
    strikes: AtomicU32,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Chat {
    /// Creates the application over `store`.
    pub fn new(store: Arc<dyn Store>, settings: ChatSettings, metrics: ChatMetrics) -> Arc<Chat> {
        Arc::new(Chat {
            store,
            settings,
            metrics,
        })
    }

    /// Registers the handlers on namespace `/` of `io`.
    pub fn register(self: &Arc<Self>, io: &Io) {
        let ns = io.of("/");
        let chat = self.clone();
        ns.on_connection_async(move |socket| {
            let chat = chat.clone();
            async move { chat.on_connection(socket).await }
        });
        self.on_async(&ns, "join", Chat::join);
        self.on_async(&ns, "messages", Chat::message);
        self.on_async(&ns, "question", Chat::question);
        self.on_async(&ns, "answer", Chat::answer);
        self.on_async(&ns, "who", Chat::who);
        let chat = self.clone();
        ns.on("sendToAll", move |socket, mut event| {
            if chat.admit(&socket, "sendToAll", &mut event) {
                socket
                    .broadcast()
                    .emit_binary("messages", &event.args, event.binary);
            }
        });
        let chat = self.clone();
        ns.on_fallback(move |socket, mut event| {
            if chat.admit(&socket, "other", &mut event) {
                tracing::debug!(event = %event.name, "unknown event ignored");
            }
        });
        let chat = self.clone();
        ns.on_disconnect(move |socket, _reason| {
            let chat = chat.clone();
            tokio::spawn(async move { chat.on_leave(socket).await });
        });
    }

    /// Registers an async handler that answers with an ack value or a rejection.
    fn on_async<F, Fut>(self: &Arc<Self>, ns: &hubbub_socketio::Namespace, name: &'static str, f: F)
    where
        F: Fn(Arc<Chat>, Arc<Socket>, Vec<Value>) -> Fut + Copy + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<Value, Rejection>> + Send + 'static,
    {
        let chat = self.clone();
        ns.on_async(name, move |socket, mut event| {
            let chat = chat.clone();
            async move {
                if !chat.admit(&socket, name, &mut event) {
                    return;
                }
                let ack = event.ack.take();
                match f(chat.clone(), socket, event.args).await {
                    Ok(reply) => {
                        if let Some(ack) = ack {
                            ack.send(&[reply]);
                        }
                    }
                    Err(rejection) => chat.reject(ack, &rejection),
                }
            }
        });
    }

    fn member(&self, socket: &Socket) -> Arc<Member> {
        if let Some(m) = socket.extensions().get::<Member>() {
            return m;
        }
        // A recovered socket brings its nickname and question back in its session data.
        let name = socket
            .data(DATA_NAME)
            .and_then(|v| Nickname::parse(&v).ok());
        let asked = socket.data(DATA_ASKED) == Some(Value::Bool(true));
        let member = Member {
            name: Mutex::new(name),
            asked: AtomicBool::new(asked),
            bucket: Mutex::new(TokenBucket::new(
                self.settings.rate_limit,
                self.settings.rate_burst,
                Instant::now(),
            )),
            strikes: AtomicU32::new(0),
        };
        socket.extensions().insert(member);
        // unwrap: inserted just above, and only this connection's handlers (run in order) touch it.
        socket
            .extensions()
            .get::<Member>()
            .expect("member just inserted")
    }

    /// Counts the event and applies the rate limit. A refused event is acked
    /// with the reason; a client that keeps flooding is disconnected.
    fn admit(&self, socket: &Arc<Socket>, label: &str, event: &mut Event) -> bool {
        let label = if KNOWN_EVENTS.contains(&label) {
            label
        } else {
            "other"
        };
        self.metrics
            .events_received_total
            .with_label_values(&[label])
            .inc();
        let member = self.member(socket);
        if member.bucket.lock().try_take(Instant::now()) {
            member.strikes.store(0, Ordering::Relaxed);
            return true;
        }
        self.reject(event.ack.take(), &Rejection::RateLimited);
        let strikes = member.strikes.fetch_add(1, Ordering::Relaxed) + 1;
        if strikes >= self.settings.rate_burst {
            tracing::info!(socket = %socket.id(), "client keeps flooding; disconnecting");
            socket.close_connection();
        }
        false
    }

    fn reject(&self, ack: Option<AckSender>, rejection: &Rejection) {
        self.metrics
            .events_rejected_total
            .with_label_values(&[rejection.label()])
            .inc();
        if let Some(ack) = ack {
            ack.send(&[json!({ "error": rejection.to_string() })]);
        }
    }

    async fn on_connection(&self, socket: Arc<Socket>) {
        if socket.recovered() {
            // The client missed nothing and already has the welcome and the questions.
            // It is back in the presence set under its old nickname (its drop said `left`).
            let name = self.member(&socket).name.lock().clone();
            if let Some(name) = name {
                if let Err(e) = self.store.set_present(socket.id(), name.as_str()).await {
                    tracing::warn!(error = %e, "recovered: presence not stored");
                }
                let online = self.store.online().await.unwrap_or(0);
                let notice = json!({ "name": name.as_str(), "online": online });
                socket.broadcast().emit("joined", &[notice]);
            }
            return;
        }
        if !self.settings.welcome.is_empty() {
            let _ = socket.emit("messages", &[json!({ "hello": self.settings.welcome })]);
        }
        match self.store.questions().await {
            Ok(questions) => {
                for q in questions {
                    let _ = socket.emit("question", &[Value::String(q.text.clone())]);
                    for a in q.answers {
                        let _ = socket
                            .emit("answer", &[Value::String(q.text.clone()), Value::String(a)]);
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not replay questions"),
        }
    }

    async fn join(
        self: Arc<Self>,
        socket: Arc<Socket>,
        args: Vec<Value>,
    ) -> Result<Value, Rejection> {
        let name = join_args(&args)?;
        self.store
            .set_present(socket.id(), name.as_str())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "join: presence not stored");
                Rejection::StoreUnavailable
            })?;
        *self.member(&socket).name.lock() = Some(name.clone());
        socket.set_data(DATA_NAME, Value::String(name.as_str().to_owned()));
        match self.store.recent_messages().await {
            Ok(history) => {
                for m in history {
                    let _ = socket.emit("messages", &[json!(m)]);
                }
            }
            Err(e) => tracing::warn!(error = %e, "join: history not replayed"),
        }
        let online = self.store.online().await.unwrap_or(0);
        let notice = json!({ "name": name.as_str(), "online": online });
        socket.broadcast().emit("joined", &[notice]);
        Ok(json!({ "ok": true, "name": name.as_str(), "online": online }))
    }

    async fn message(
        self: Arc<Self>,
        socket: Arc<Socket>,
        args: Vec<Value>,
    ) -> Result<Value, Rejection> {
        let name = self
            .member(&socket)
            .name
            .lock()
            .clone()
            .ok_or(Rejection::NotJoined)?;
        let text = text_args(
            &args,
            "messages takes one text",
            self.settings.max_message_bytes,
        )?;
        let msg = self
            .store
            .append_message(name.as_str(), text.as_str(), now_ms())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "message not stored; refused");
                Rejection::StoreUnavailable
            })?;
        socket.broadcast().emit("messages", &[json!(msg)]);
        Ok(json!({ "ok": true, "id": msg.id, "ts": msg.ts }))
    }

    async fn question(
        self: Arc<Self>,
        socket: Arc<Socket>,
        args: Vec<Value>,
    ) -> Result<Value, Rejection> {
        let text = text_args(
            &args,
            "question takes one text",
            self.settings.max_message_bytes,
        )?;
        let member = self.member(&socket);
        if member.asked.swap(true, Ordering::AcqRel) {
            return Err(Rejection::QuestionLimit);
        }
        socket.set_data(DATA_ASKED, Value::Bool(true));
        if let Err(e) = self.store.add_question(text.as_str()).await {
            tracing::warn!(error = %e, "question not stored; refused");
            member.asked.store(false, Ordering::Release);
            socket.set_data(DATA_ASKED, Value::Bool(false));
            return Err(Rejection::StoreUnavailable);
        }
        socket
            .broadcast()
            .emit("question", &[Value::String(text.as_str().to_owned())]);
        Ok(json!({ "ok": true }))
    }

    async fn answer(
        self: Arc<Self>,
        socket: Arc<Socket>,
        args: Vec<Value>,
    ) -> Result<Value, Rejection> {
        let (question, answer) = answer_args(&args, self.settings.max_message_bytes)?;
        let stored = self
            .store
            .add_answer(question.as_str(), answer.as_str())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "answer not stored; refused");
                Rejection::StoreUnavailable
            })?;
        let pair = [
            Value::String(question.as_str().to_owned()),
            Value::String(answer.as_str().to_owned()),
        ];
        socket.broadcast().emit("answer", &pair);
        Ok(json!({ "ok": true, "stored": stored }))
    }

    async fn who(
        self: Arc<Self>,
        _socket: Arc<Socket>,
        _args: Vec<Value>,
    ) -> Result<Value, Rejection> {
        let online = self.store.online().await;
        let names = self.store.names(WHO_NAMES_LIMIT).await;
        match (online, names) {
            (Ok(online), Ok(names)) => Ok(json!({ "online": online, "names": names })),
            _ => Err(Rejection::StoreUnavailable),
        }
    }

    async fn on_leave(&self, socket: Arc<Socket>) {
        if socket.ns().get_socket(socket.id()).is_some() {
            return; // a recovering connection has taken this socket over: still present
        }
        match self.store.remove_present(socket.id()).await {
            Ok(Some(name)) => {
                let online = self.store.online().await.unwrap_or(0);
                // Not to the socket itself: should it recover, its own `left` is not replayed.
                socket
                    .ns()
                    .broadcast()
                    .except(socket.id().clone())
                    .emit("left", &[json!({ "name": name, "online": online })]);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "presence not removed on disconnect"),
        }
    }
}
