//! Connection state recovery across replicas: the Redis implementation of
//! `hubbub_socketio::RecoveryStore`, and the log of broadcasts the Redis adapter writes.
//!
//! - **The log** is one Redis Stream per namespace, `<key-prefix>:recovery:<nsp>`, trimmed to
//!   exactly `--recovery-max-events` entries. A broadcast is one `EVAL` of [`LOG_SCRIPT`]:
//!   `XADD` of the adapter's MessagePack broadcast `[uid, packet, opts, sent_at]`, then
//!   `PUBLISH` of the same message with the entry id as a fifth element. Both happen in one
//!   atomic script, so the order of the stream is the order in which every replica receives
//!   the broadcasts. The Node adapter reads only the first three elements, so Node peers get
//!   exactly the arguments that were emitted; hubbub replicas append the id (zero-padded,
//!   `ms-seq` with 16 digits each) to the arguments once before their one encoding: it is the
//!   offset their clients get. Every replica, the sender included, delivers logged broadcasts
//!   when they come back from Redis, in that order. One command per broadcast whatever the
//!   fan-out; commands are pipelined in order by one writer task.
//! - **Sessions** are `<key-prefix>:recovery:session:<pid>` strings (`owner\njson`), written
//!   when a socket connects and whenever its rooms or data change, with a TTL of the window
//!   plus two refresh periods that a background task renews for the connected sockets of
//!   this replica. At a disconnection the record is rewritten with a TTL of the window (or
//!   deleted for a clean one) by [`END_SCRIPT`], only if this connection still owns it. So a
//!   replica killed with SIGKILL leaves its sockets' sessions in Redis, restorable elsewhere
//!   for at least the window after it died (at most the window plus two refresh periods).
//! - **Restoring** takes the record with `GETDEL` (once) and reads the stream after the
//!   client's offset with one `XRANGE`; when the offset itself is gone the log was trimmed
//!   past it and the client gets a fresh session.
//!
//! The stream is not in the `@socket.io/redis-streams-adapter` format: that adapter replaces
//! pub/sub by the stream, while hubbub keeps `@socket.io/redis-adapter` pub/sub (so Node
//! replicas on that adapter still share broadcasts) and adds the stream beside it.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use fred::interfaces::ClientLike;
use fred::prelude::{KeysInterface, StreamsInterface};
use fred::types::Value as RedisValue;
use fred::types::{ClusterHash, CustomCommand, Expiration};
use parking_lot::Mutex;
use serde_json::Value as Json;
use tokio::sync::mpsc;

use crate::link::RedisLink;
use crate::wire;
use hubbub_socketio::recovery::{
    Failure, LoggedEvent, Offset, RecoverySettings, SessionRecord, SessionSource,
};
use hubbub_socketio::{BroadcastOptions, BroadcastPacket, Namespace, RecoveryStore, Sid};

/// `XADD` then `PUBLISH` with the entry id appended to the MessagePack array (see the module
/// doc): the array header `0x94` (four elements) becomes `0x95`, and the id follows as a
/// 33-byte `str8` (`0xd9 0x21`). KEYS[1] the stream; ARGV: max length, channel, payload.
pub const LOG_SCRIPT: &str = r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'p', ARGV[3])
local dash = string.find(id, '-', 1, true)
local ms = string.sub(id, 1, dash - 1)
local seq = string.sub(id, dash + 1)
local offset = string.rep('0', 16 - #ms) .. ms .. '-' .. string.rep('0', 16 - #seq) .. seq
local msg = ARGV[3]
redis.call('PUBLISH', ARGV[2], string.char(string.byte(msg, 1) + 1) .. string.sub(msg, 2) .. '\217\033' .. offset)
return id
"#;

/// Rewrites (recoverable) or deletes a session record if `owner` still holds it.
/// KEYS[1] the record; ARGV: owner prefix (`owner\n`), "1" to keep, new value, TTL in ms.
pub const END_SCRIPT: &str = r#"
local cur = redis.call('GET', KEYS[1])
if not cur or string.sub(cur, 1, #ARGV[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '1' then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
else
  redis.call('DEL', KEYS[1])
end
return 1
"#;

/// Width of a logged offset on the wire: 16 digits, `-`, 16 digits.
pub const OFFSET_WIDTH: usize = 33;

/// A stream id as the clients see it: `ms-seq`, each zero-padded to 16 digits.
pub fn wire_offset(offset: Offset) -> String {
    format!("{:016}-{:016}", offset.ms, offset.seq)
}

/// The stream id [`LOG_SCRIPT`] appended to a published broadcast: a five-element array
/// ending with a 33-byte string that parses as an offset. Looked up in the raw bytes, without
/// decoding the message again.
pub fn appended_offset(payload: &[u8]) -> Option<Offset> {
    let n = payload.len();
    if n < OFFSET_WIDTH + 3 || payload[0] != 0x95 {
        return None;
    }
    let tail = &payload[n - OFFSET_WIDTH - 2..];
    if tail[0] != 0xd9 || tail[1] as usize != OFFSET_WIDTH {
        return None;
    }
    std::str::from_utf8(&tail[2..]).ok()?.parse().ok()
}

/// A session write, applied in order by the writer task.
enum Write {
    Save {
        key: String,
        value: String,
        ttl_ms: i64,
    },
    End {
        key: String,
        owner: String,
        keep: bool,
        value: String,
        ttl_ms: i64,
    },
    Refresh {
        keys: Vec<String>,
        ttl_ms: i64,
    },
}

/// A broadcast waiting to be logged and published.
struct Logged {
    ns: Weak<Namespace>,
    stream: String,
    channel: String,
    payload: Bytes,
    /// For local delivery without an offset when Redis cannot be reached.
    packet: BroadcastPacket,
    opts: BroadcastOptions,
}

/// The connected sessions of this replica: pid → (owner, stored value).
type Connected = HashMap<String, (String, String)>;

/// Sessions in Redis and the stream log of broadcasts.
pub struct RedisRecovery {
    link: RedisLink,
    settings: RecoverySettings,
    key_prefix: String,
    connected: Mutex<Connected>,
    writes: mpsc::UnboundedSender<Write>,
    logs: mpsc::Sender<Logged>,
    /// How often this replica renews the TTL of its connected sessions.
    refresh: Duration,
}

impl std::fmt::Debug for RedisRecovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRecovery")
            .field("settings", &self.settings)
            .finish()
    }
}

/// Broadcasts queued for the log before new ones are delivered locally without an offset.
const LOG_QUEUE: usize = 65_536;

impl RedisRecovery {
    /// Starts the store on `link`: a writer task for sessions, one for the log, and the TTL
    /// refresh of connected sessions. Must be called inside a Tokio runtime.
    pub fn start(link: RedisLink, settings: RecoverySettings) -> Arc<Self> {
        let (writes, writes_rx) = mpsc::unbounded_channel();
        let (logs, logs_rx) = mpsc::channel(LOG_QUEUE);
        let refresh = (settings.window / 2).clamp(Duration::from_secs(1), Duration::from_secs(30));
        let store = Arc::new(RedisRecovery {
            key_prefix: link.settings().key_prefix.clone(),
            link,
            settings,
            connected: Mutex::new(HashMap::new()),
            writes,
            logs,
            refresh,
        });
        tokio::spawn(session_writer(Arc::downgrade(&store), writes_rx));
        tokio::spawn(log_writer(Arc::downgrade(&store), logs_rx));
        tokio::spawn(refresher(Arc::downgrade(&store)));
        store
    }

    /// The settings.
    pub fn settings(&self) -> &RecoverySettings {
        &self.settings
    }

    /// The stream of namespace `nsp`.
    pub fn stream_key(&self, nsp: &str) -> String {
        format!("{}:recovery:{}", self.key_prefix, nsp)
    }

    /// Writes the session's record to Redis (with its owner) and keeps the value to renew it.
    fn save(&self, source: &dyn SessionSource) {
        let Some(record) = source.record() else {
            return;
        };
        let Ok(json) = serde_json::to_string(&record) else {
            return;
        };
        let owner = source.owner();
        let value = format!("{owner}\n{json}");
        self.connected
            .lock()
            .insert(record.pid.clone(), (owner.to_owned(), value.clone()));
        let _ = self.writes.send(Write::Save {
            key: self.session_key(&record.pid),
            value,
            ttl_ms: self.connected_ttl_ms(),
        });
    }

    fn session_key(&self, pid: &str) -> String {
        format!("{}:recovery:session:{}", self.key_prefix, pid)
    }

    /// TTL of a connected socket's record: the window plus two refresh periods.
    fn connected_ttl_ms(&self) -> i64 {
        (self.settings.window + 2 * self.refresh).as_millis() as i64
    }

    /// The offset a received broadcast carries, if it was logged (see [`appended_offset`]).
    pub fn offset_of(&self, payload: &[u8]) -> Option<Offset> {
        appended_offset(payload)
    }

    /// Queues a broadcast to be logged and published; `payload` is its adapter encoding
    /// (`[uid, packet, opts, sent_at]`). When the queue is full or Redis fails, the broadcast
    /// is delivered to this replica's sockets only, without an offset.
    pub fn log(
        &self,
        ns: &Arc<Namespace>,
        channel: String,
        payload: Vec<u8>,
        packet: BroadcastPacket,
        opts: BroadcastOptions,
    ) {
        if payload.first() != Some(&0x94) {
            // Not the four-element array the script extends (never happens for hubbub's own).
            ns.deliver_local(&packet, &opts);
            return;
        }
        let item = Logged {
            ns: Arc::downgrade(ns),
            stream: self.stream_key(ns.name()),
            channel,
            payload: Bytes::from(payload),
            packet,
            opts,
        };
        if let Err(e) = self.logs.try_send(item) {
            let item = match e {
                mpsc::error::TrySendError::Full(i) | mpsc::error::TrySendError::Closed(i) => i,
            };
            tracing::warn!("recovery log queue full; broadcast delivered locally only");
            ns.deliver_local(&item.packet, &item.opts);
        }
    }

    /// Learns the newest id of the namespace's stream, the position of new sessions until
    /// the first logged broadcast arrives. Retries until Redis answers.
    pub fn init_namespace(self: &Arc<Self>, ns: &Arc<Namespace>) {
        let me = Arc::downgrade(self);
        let weak_ns = Arc::downgrade(ns);
        tokio::spawn(async move {
            loop {
                let (Some(me), Some(ns)) = (me.upgrade(), weak_ns.upgrade()) else {
                    return;
                };
                // Asked as soon as the link is up (it polls every few milliseconds).
                if !me.link.wait_ready(Duration::from_secs(1)).await {
                    continue;
                }
                let key = me.stream_key(ns.name());
                let newest: Result<RedisValue, _> = me
                    .link
                    .call("recovery_head", |c| async move {
                        c.xrevrange(key, "+", "-", Some(1)).await
                    })
                    .await;
                match newest {
                    Ok(reply) => {
                        let head = stream_entries(reply)
                            .first()
                            .map_or(Offset::default(), |(id, _)| *id);
                        ns.init_log_head(head);
                        return;
                    }
                    Err(error) => tracing::debug!(%error, "recovery log head not read yet"),
                }
                drop((me, ns));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

/// The entries of an `XRANGE`/`XREVRANGE` reply: each id and its `p` field.
fn stream_entries(reply: RedisValue) -> Vec<(Offset, Bytes)> {
    let RedisValue::Array(items) = reply else {
        return Vec::new();
    };
    items
        .into_iter()
        .filter_map(|item| {
            let RedisValue::Array(mut pair) = item else {
                return None;
            };
            if pair.len() != 2 {
                return None;
            }
            let fields = pair.pop()?;
            let id: Offset = pair.pop()?.as_string()?.parse().ok()?;
            let RedisValue::Array(fields) = fields else {
                return None;
            };
            let mut fields = fields.into_iter();
            while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
                if name.as_str().as_deref() == Some("p") {
                    let bytes = match value {
                        RedisValue::Bytes(b) => b,
                        RedisValue::String(s) => s.into_inner(),
                        _ => return None,
                    };
                    return Some((id, bytes));
                }
            }
            None
        })
        .collect()
}

#[async_trait]
impl RecoveryStore for RedisRecovery {
    fn connected(&self, _pid: &Sid, source: Weak<dyn SessionSource>) {
        if let Some(source) = source.upgrade() {
            self.save(&*source);
        }
    }

    fn changed(&self, _pid: &str, source: &dyn SessionSource) {
        self.save(source);
    }

    fn end(&self, pid: &str, recoverable: bool, source: &dyn SessionSource) {
        let owner = source.owner();
        let value = {
            let mut connected = self.connected.lock();
            match connected.get(pid) {
                Some((o, _)) if o == owner => connected.remove(pid).map(|(_, v)| v),
                _ => None,
            }
        };
        let Some(value) = value else { return };
        let _ = self.writes.send(Write::End {
            key: self.session_key(pid),
            owner: format!("{owner}\n"),
            keep: recoverable,
            value,
            ttl_ms: self.settings.window.as_millis() as i64,
        });
    }

    async fn take(&self, pid: &str) -> Result<SessionRecord, Failure> {
        if pid.is_empty() || pid.len() > 64 {
            return Err(Failure::UnknownSession);
        }
        let key = self.session_key(pid);
        let value: Option<String> = self
            .link
            .call("recovery_take", |c| async move { c.getdel(key).await })
            .await
            .map_err(|_| Failure::Unavailable)?;
        let value = value.ok_or(Failure::UnknownSession)?;
        let (_, json) = value.split_once('\n').ok_or(Failure::UnknownSession)?;
        serde_json::from_str(json).map_err(|_| Failure::UnknownSession)
    }

    fn logs_in_memory(&self) -> bool {
        false
    }

    async fn missed(
        &self,
        nsp: &str,
        after: Offset,
        limit: usize,
    ) -> Result<Vec<LoggedEvent>, Failure> {
        let key = self.stream_key(nsp);
        let start = after.to_string();
        // The entry at `after` too: if it is gone, the log was trimmed past it.
        let count = (limit + 1) as u64;
        let replies: Vec<RedisValue> = self
            .link
            .call("recovery_read", |c| async move {
                let pipeline = c.pipeline();
                // Queuing into a pipeline only buffers the command locally.
                let _: Result<(), _> = pipeline.xrange(key.as_str(), start, "+", Some(count)).await;
                let _: Result<(), _> = pipeline.xlen(key.as_str()).await;
                pipeline.all().await
            })
            .await
            .map_err(|_| Failure::Unavailable)?;
        let mut replies = replies.into_iter();
        let entries = stream_entries(replies.next().unwrap_or(RedisValue::Null));
        let len = replies.next().and_then(|v| v.as_u64()).unwrap_or(0);
        let mut entries = entries.into_iter().peekable();
        if after != Offset::default() {
            match entries.peek() {
                Some((id, _)) if *id == after => {
                    entries.next();
                }
                _ => return Err(Failure::Trimmed),
            }
        } else if len as usize >= self.settings.max_events {
            // From the start of the stream: complete only if it was never trimmed.
            return Err(Failure::Trimmed);
        }
        let mut out = Vec::new();
        for (offset, payload) in entries {
            let Ok(msg) = wire::decode_broadcast(&payload) else {
                continue;
            };
            let mut data = msg.packet.data.value;
            if let Json::Array(items) = &mut data {
                items.push(Json::String(wire_offset(offset)));
            }
            let packet = BroadcastPacket {
                data,
                binary: msg.packet.data.attachments,
            };
            let opts = crate::adapter::from_selector(&msg.opts.selector);
            out.push(LoggedEvent {
                offset,
                frames: packet.frames(nsp),
                rooms: opts.rooms,
                except: opts.except,
            });
        }
        Ok(out)
    }
}

/// `EVAL` as a command a pipeline can carry (fred's pipelines have no script interface).
fn eval() -> CustomCommand {
    CustomCommand::new_static("EVAL", ClusterHash::Random, false)
}

/// Applies session writes in order, as pipelines of whatever is waiting.
async fn session_writer(weak: Weak<RedisRecovery>, mut rx: mpsc::UnboundedReceiver<Write>) {
    const BATCH: usize = 256;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let Some(me) = weak.upgrade() else { return };
        let writes = std::mem::take(&mut batch);
        let result = me
            .link
            .call("recovery_session", |c| async move {
                let pipeline = c.pipeline();
                for w in writes {
                    match w {
                        Write::Save { key, value, ttl_ms } => {
                            let _: () = pipeline
                                .set(key, value, Some(Expiration::PX(ttl_ms)), None, false)
                                .await?;
                        }
                        Write::End {
                            key,
                            owner,
                            keep,
                            value,
                            ttl_ms,
                        } => {
                            let keep = if keep { "1" } else { "0" };
                            let args: Vec<RedisValue> = vec![
                                END_SCRIPT.into(),
                                1.into(),
                                key.into(),
                                owner.into(),
                                keep.into(),
                                value.into(),
                                ttl_ms.into(),
                            ];
                            let _: () = pipeline.custom(eval(), args).await?;
                        }
                        Write::Refresh { keys, ttl_ms } => {
                            for key in keys {
                                let _: () = pipeline.pexpire(key, ttl_ms, None).await?;
                            }
                        }
                    }
                }
                pipeline.all::<RedisValue>().await
            })
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "recovery sessions not written");
        }
    }
}

/// Logs and publishes broadcasts in order, as pipelines of whatever is waiting; on failure
/// delivers them locally without an offset (as broadcasts are delivered while Redis is away).
async fn log_writer(weak: Weak<RedisRecovery>, mut rx: mpsc::Receiver<Logged>) {
    const BATCH: usize = 256;
    let mut batch: Vec<Logged> = Vec::with_capacity(BATCH);
    loop {
        if rx.recv_many(&mut batch, BATCH).await == 0 {
            return;
        }
        let Some(me) = weak.upgrade() else { return };
        let max = me.settings.max_events.to_string();
        let commands: Vec<(String, Vec<RedisValue>)> = batch
            .iter()
            .map(|l| {
                (
                    l.stream.clone(),
                    vec![
                        RedisValue::from(max.as_str()),
                        RedisValue::from(l.channel.as_str()),
                        RedisValue::Bytes(l.payload.clone()),
                    ],
                )
            })
            .collect();
        let result = me
            .link
            .call("recovery_log", |c| async move {
                let pipeline = c.pipeline();
                for (stream, args) in commands {
                    let mut all: Vec<RedisValue> = vec![LOG_SCRIPT.into(), 1.into(), stream.into()];
                    all.extend(args);
                    let _: () = pipeline.custom(eval(), all).await?;
                }
                pipeline.all::<RedisValue>().await
            })
            .await;
        match result {
            Ok(_) => me
                .link
                .metrics()
                .published
                .with_label_values(&["broadcast"])
                .inc_by(batch.len() as u64),
            Err(error) => {
                tracing::warn!(%error, broadcasts = batch.len(), "broadcasts not logged; delivered on this replica only");
                for l in batch.drain(..) {
                    if let Some(ns) = l.ns.upgrade() {
                        ns.deliver_local(&l.packet, &l.opts);
                    }
                }
            }
        }
        batch.clear();
    }
}

/// Renews the TTL of this replica's connected sessions every refresh period.
async fn refresher(weak: Weak<RedisRecovery>) {
    let period = match weak.upgrade() {
        Some(me) => me.refresh,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(me) = weak.upgrade() else { return };
        let keys: Vec<String> = me
            .connected
            .lock()
            .keys()
            .map(|pid| me.session_key(pid))
            .collect();
        for chunk in keys.chunks(1000) {
            let _ = me.writes.send(Write::Refresh {
                keys: chunk.to_vec(),
                ttl_ms: me.connected_ttl_ms(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn offsets_on_the_wire_have_a_fixed_width_and_parse_back() {
        let o = Offset {
            ms: 1_733_390_000_000,
            seq: 7,
        };
        let s = wire_offset(o);
        assert_eq!(s, "0001733390000000-0000000000000007");
        assert_eq!(s.len(), OFFSET_WIDTH);
        assert_eq!(s.parse::<Offset>(), Ok(o));
    }

    #[test]
    fn stream_replies_become_ids_and_payloads() {
        let reply = RedisValue::Array(vec![
            RedisValue::Array(vec![
                RedisValue::from("5-1"),
                RedisValue::Array(vec![
                    RedisValue::from("p"),
                    RedisValue::Bytes(Bytes::from_static(b"abc")),
                ]),
            ]),
            RedisValue::Array(vec![
                RedisValue::from("not an id"),
                RedisValue::Array(vec![]),
            ]),
            RedisValue::Array(vec![
                RedisValue::from("6-0"),
                RedisValue::Array(vec![RedisValue::from("other"), RedisValue::from("x")]),
            ]),
        ]);
        assert_eq!(
            stream_entries(reply),
            vec![(Offset { ms: 5, seq: 1 }, Bytes::from_static(b"abc"))]
        );
        assert!(stream_entries(RedisValue::Null).is_empty());
    }

    #[test]
    fn the_appended_offset_is_read_from_the_raw_message_only_when_the_script_added_it() {
        let four = crate::wire::encode_event_broadcast(
            "uid",
            "/",
            &json!(["messages", {"a": 1}]),
            &[],
            &crate::wire::BroadcastOpts::default(),
            Some(1),
        );
        assert_eq!(four[0], 0x94);
        assert_eq!(appended_offset(&four), None);
        // What the script publishes: the header bumped, the id appended as a str8.
        let mut five = four.clone();
        five[0] = 0x95;
        five.extend_from_slice(&[0xd9, 33]);
        five.extend_from_slice(b"0000000000000005-0000000000000001");
        assert_eq!(appended_offset(&five), Some(Offset { ms: 5, seq: 1 }));
        // Still a valid broadcast for any decoder: the fifth element is ignored.
        let msg = crate::wire::decode_broadcast(&five).unwrap();
        assert_eq!(msg.packet.data.value, json!(["messages", {"a": 1}]));
        assert_eq!(msg.sent_at_us, Some(1));
        let mut bad = five.clone();
        let n = bad.len();
        bad[n - 1] = b'x';
        assert_eq!(appended_offset(&bad), None);
    }
}
