//! The Redis implementation of [`Store`]: chat history, questions with their answers, and
//! presence shared by every replica, under `--redis-key-prefix` (default `hubbub`).
//!
//! Keys (`P` is the key prefix):
//!
//! | key | type | content |
//! |---|---|---|
//! | `P:history` | list | chat messages as JSON `{"id","name","text","ts"}`, newest first, at most `--history-size` |
//! | `P:history:seq` | string | the last message id (`INCR`) |
//! | `P:questions` | list | `"<qid>:<text>"`, newest first, at most `--question-history` |
//! | `P:questions:seq` | string | the last question id (`INCR`) |
//! | `P:answers:<qid>` | list | answers to question `qid`, oldest first, at most [`ANSWERS_PER_QUESTION`] |
//! | `P:presence:<node>` | hash | socket id → nickname of the users joined on replica `node`; expires after `--presence-ttl-secs` unless refreshed |
//! | `P:replicas` | sorted set | replica ids scored by their last heartbeat (ms since the epoch) |
//!
//! Every write is one command, one MULTI, or one Lua script, so nothing is read and
//! written back by the application. Scripts are used where a MULTI cannot express the
//! operation atomically: appending a message needs its `INCR`ed id inside the stored JSON,
//! and an answer must find its question and be stored under it in one step. The scripts
//! touch keys derived from `P` that they are not all given in `KEYS` (the answer lists).
//!
//! On a Redis Cluster (`--redis-cluster-nodes`) `P` becomes the hash tag `{P}`
//! (`{hubbub}:history`, ...): every key above hashes to the one slot of `P`, so each MULTI,
//! script and pipeline stays within one slot, as a cluster requires. The chat's state thus
//! lives on one shard (it is small and bounded: `--history-size` messages,
//! `--question-history` questions); the cross-replica traffic is what spreads over the
//! shards (see `hubbub_redis::adapter`).
//!
//! Presence: each replica writes its users into its own hash, whose TTL its heartbeat
//! (`--presence-heartbeat-secs`) refreshes while also scoring the replica in `P:replicas`.
//! A replica that crashes stops refreshing, and its users vanish within the TTL. Readers
//! count only replicas seen within the TTL. When a heartbeat finds that its hash does not
//! hold as many users as the replica has joined (gone because Redis restarted or the
//! replica was cut off longer than the TTL, or recreated by a join after a failover
//! promoted a replica that lacked it), it rewrites the hash from the replica's own list of
//! joined users. Presence writes of one replica are serialised
//! so that such a rewrite can never resurrect a user removed concurrently.
//!
//! While Redis is unreachable every operation fails at once with
//! [`StoreError::Unavailable`]; the chat layer refuses the message instead of losing it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use fred::prelude::{
    HashesInterface, KeysInterface, ListInterface, LuaInterface, SortedSetsInterface,
    TransactionInterface,
};
use fred::types::Value as RedisValue;
use serde::Serialize;

use super::store::{
    ANSWERS_PER_QUESTION, ChatMessage, Store, StoreError, StoreLimits, StoredQuestion,
};
use hubbub_redis::link::{ClusterError, RedisLink};

/// INCR the id, push the message JSON with the id in front, trim. KEYS: history, seq.
/// ARGV: the JSON object of the message without its id and opening brace, the history size.
const APPEND_MESSAGE: &str = r#"
local id = redis.call('INCR', KEYS[2])
redis.call('LPUSH', KEYS[1], '{"id":' .. string.format('%d', id) .. ',' .. ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
return id
"#;

/// Push `<qid>:<text>`, delete the answer lists of questions trimmed away, trim.
/// KEYS: questions, seq. ARGV: text, question limit, answers key prefix.
const ADD_QUESTION: &str = r#"
local id = redis.call('INCR', KEYS[2])
redis.call('LPUSH', KEYS[1], string.format('%d', id) .. ':' .. ARGV[1])
local limit = tonumber(ARGV[2])
for _, q in ipairs(redis.call('LRANGE', KEYS[1], limit, -1)) do
  local sep = string.find(q, ':', 1, true)
  if sep then redis.call('DEL', ARGV[3] .. string.sub(q, 1, sep - 1)) end
end
redis.call('LTRIM', KEYS[1], 0, limit - 1)
return id
"#;

/// Find the newest stored question with this text and append the answer to its bounded
/// list; 1 when stored, 0 when no such question. KEYS: questions.
/// ARGV: question text, answer, answers key prefix, answers kept.
const ADD_ANSWER: &str = r#"
for _, q in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local sep = string.find(q, ':', 1, true)
  if sep and string.sub(q, sep + 1) == ARGV[1] then
    local key = ARGV[3] .. string.sub(q, 1, sep - 1)
    redis.call('RPUSH', key, ARGV[2])
    redis.call('LTRIM', key, -tonumber(ARGV[4]), -1)
    return 1
  end
end
return 0
"#;

/// Every stored question, oldest first, each followed by the array of its answers, read
/// atomically. KEYS: questions. ARGV: answers key prefix.
const READ_QUESTIONS: &str = r#"
local qs = redis.call('LRANGE', KEYS[1], 0, -1)
local out = {}
for i = #qs, 1, -1 do
  local q = qs[i]
  local sep = string.find(q, ':', 1, true)
  if sep then
    table.insert(out, string.sub(q, sep + 1))
    table.insert(out, redis.call('LRANGE', ARGV[1] .. string.sub(q, 1, sep - 1), 0, -1))
  end
end
return out
"#;

/// How presence is kept alive; from `--presence-heartbeat-secs` and `--presence-ttl-secs`.
#[derive(Debug, Clone, Copy)]
pub struct PresenceSettings {
    /// Time between heartbeats of this replica (default 5 s).
    pub heartbeat: Duration,
    /// Time after which a silent replica's users vanish (default 15 s; > heartbeat).
    pub ttl: Duration,
}

impl Default for PresenceSettings {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_secs(5),
            ttl: Duration::from_secs(15),
        }
    }
}

struct Keys {
    history: String,
    history_seq: String,
    questions: String,
    questions_seq: String,
    answers_prefix: String,
    presence: String,
    replicas: String,
}

impl Keys {
    fn new(prefix: &str, node: &str, cluster: bool) -> Self {
        // On a cluster every key carries the hash tag `{prefix}`: one slot for them all.
        let tagged;
        let prefix = if cluster {
            tagged = format!("{{{prefix}}}");
            tagged.as_str()
        } else {
            prefix
        };
        Self {
            history: format!("{prefix}:history"),
            history_seq: format!("{prefix}:history:seq"),
            questions: format!("{prefix}:questions"),
            questions_seq: format!("{prefix}:questions:seq"),
            answers_prefix: format!("{prefix}:answers:"),
            presence: format!("{prefix}:presence:{node}"),
            replicas: format!("{prefix}:replicas"),
        }
    }

    fn presence_of(&self, node: &str) -> String {
        // `presence` is `<prefix>:presence:<this node>`; swap the node.
        let base = self.presence.rsplit_once(':').map_or("", |(b, _)| b);
        format!("{base}:{node}")
    }
}

/// Chat state in Redis, shared by every replica.
pub struct RedisStore {
    link: RedisLink,
    limits: StoreLimits,
    presence: PresenceSettings,
    keys: Keys,
    node: String,
    /// This replica's view of its own presence. The async mutex also serialises this
    /// replica's presence writes (held across the Redis call on purpose).
    local_presence: tokio::sync::Mutex<LocalPresence>,
}

/// What this replica knows of its own users, to repair its presence hash.
#[derive(Default)]
struct LocalPresence {
    /// Joined users (socket id → name): the source for rewriting the hash.
    joined: HashMap<String, String>,
    /// Socket ids whose removal from Redis failed; the next heartbeat removes them.
    pending_removals: HashSet<String>,
}

fn map_err(e: ClusterError) -> StoreError {
    match e {
        ClusterError::Reply { .. } => StoreError::Corrupt(e.to_string()),
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn now_millis() -> f64 {
    (hubbub_redis::link::now_micros() / 1000) as f64
}

#[derive(Serialize)]
struct MessageTail<'a> {
    name: &'a str,
    text: &'a str,
    ts: u64,
}

impl RedisStore {
    /// A store on `link`'s command connection; call [`RedisStore::start_heartbeat`] too.
    pub fn new(link: RedisLink, limits: StoreLimits, presence: PresenceSettings) -> Arc<Self> {
        let node = link.node_id().to_owned();
        Arc::new(Self {
            keys: Keys::new(
                &link.settings().key_prefix,
                &node,
                link.topology().is_cluster(),
            ),
            link,
            limits,
            presence,
            node,
            local_presence: tokio::sync::Mutex::new(LocalPresence::default()),
        })
    }

    /// Starts the presence heartbeat of this replica (stops when the store is dropped).
    /// Beats every `heartbeat`, and at once when Redis becomes ready again.
    pub fn start_heartbeat(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        let heartbeat = self.presence.heartbeat;
        tokio::spawn(async move {
            let mut check = tokio::time::interval(Duration::from_millis(250));
            check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_beat: Option<tokio::time::Instant> = None;
            let mut was_ready = false;
            loop {
                check.tick().await;
                let Some(store) = weak.upgrade() else { return };
                let ready = store.link.commands_ready();
                let due = last_beat.is_none_or(|t| t.elapsed() >= heartbeat);
                if ready && (due || !was_ready) {
                    match store.heartbeat().await {
                        Ok(()) => last_beat = Some(tokio::time::Instant::now()),
                        Err(error) => tracing::warn!(%error, "presence heartbeat failed"),
                    }
                }
                was_ready = ready;
            }
        })
    }

    /// One heartbeat: refresh the TTL of this replica's presence hash and its score in the
    /// replica set, prune replicas silent for ten TTLs, retry failed removals, and rewrite
    /// the hash from the local list if it does not hold as many users: gone (Redis
    /// restarted, a long cut), or recreated by a join after a failover promoted a replica
    /// that had not received the hash yet (it then holds the newcomers only).
    pub async fn heartbeat(&self) -> Result<(), StoreError> {
        let mut local = self.local_presence.lock().await;
        let now = now_millis();
        let ttl_ms = self.presence.ttl.as_millis() as f64;
        let (presence, replicas, node) = (
            self.keys.presence.clone(),
            self.keys.replicas.clone(),
            self.node.clone(),
        );
        let removals: Vec<String> = local.pending_removals.iter().cloned().collect();
        let ttl = self.ttl_secs();
        let reply: Vec<RedisValue> = self
            .link
            .call("presence_heartbeat", |c| async move {
                let trx = c.multi();
                trx.expire::<(), _>(&presence, ttl, None).await?;
                trx.zadd::<(), _, _>(&replicas, None, None, false, false, (now, node.as_str()))
                    .await?;
                trx.zremrangebyscore::<(), _, _, _>(
                    &replicas,
                    f64::NEG_INFINITY,
                    now - 10.0 * ttl_ms,
                )
                .await?;
                if !removals.is_empty() {
                    trx.hdel::<(), _, _>(&presence, removals).await?;
                }
                trx.hlen::<(), _>(&presence).await?;
                trx.exec(true).await
            })
            .await
            .map_err(map_err)?;
        local.pending_removals.clear();
        // Presence writes are serialised under `local`, so the hash holds exactly the
        // users of `local.joined` unless Redis lost or recreated it.
        let stored = reply.last().and_then(RedisValue::as_i64).unwrap_or(-1);
        if stored != local.joined.len() as i64 {
            let entries: Vec<(String, String)> = local
                .joined
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let presence = self.keys.presence.clone();
            tracing::info!(
                users = entries.len(),
                stored,
                "presence hash does not match this replica's users (gone, or recreated after a failover); rewriting it"
            );
            self.link
                .call("presence_rewrite", |c| async move {
                    let trx = c.multi();
                    trx.del::<(), _>(&presence).await?;
                    // An empty hash does not exist in Redis: no users, nothing to write.
                    if !entries.is_empty() {
                        trx.hset::<(), _, _>(&presence, entries).await?;
                        trx.expire::<(), _>(&presence, ttl, None).await?;
                    }
                    trx.exec::<RedisValue>(true).await
                })
                .await
                .map_err(map_err)?;
        }
        Ok(())
    }

    /// Removes this replica's presence at once (graceful shutdown) and stops counting it.
    pub async fn withdraw(&self) -> Result<(), StoreError> {
        let mut local = self.local_presence.lock().await;
        local.joined.clear();
        local.pending_removals.clear();
        let (presence, replicas, node) = (
            self.keys.presence.clone(),
            self.keys.replicas.clone(),
            self.node.clone(),
        );
        self.link
            .call("presence_withdraw", |c| async move {
                let trx = c.multi();
                trx.del::<(), _>(&presence).await?;
                trx.zrem::<(), _, _>(&replicas, node.as_str()).await?;
                trx.exec::<RedisValue>(true).await
            })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    fn ttl_secs(&self) -> i64 {
        self.presence.ttl.as_secs().max(1) as i64
    }

    /// Replicas that sent a heartbeat within the TTL.
    async fn live_replicas(&self) -> Result<Vec<String>, StoreError> {
        let replicas = self.keys.replicas.clone();
        let since = now_millis() - self.presence.ttl.as_millis() as f64;
        self.link
            .call("presence_replicas", |c| async move {
                c.zrangebyscore(&replicas, since, f64::INFINITY, false, None)
                    .await
            })
            .await
            .map_err(map_err)
    }
}

fn as_string(v: &RedisValue) -> Option<String> {
    v.as_bytes_str().map(|s| s.to_string())
}

#[async_trait]
impl Store for RedisStore {
    async fn append_message(
        &self,
        name: &str,
        text: &str,
        ts: u64,
    ) -> Result<ChatMessage, StoreError> {
        let json = serde_json::to_string(&MessageTail { name, text, ts })
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        // `{"name":..}` → `"name":..}`: the script writes `{"id":N,` in front.
        let tail = json[1..].to_owned();
        let keys = vec![self.keys.history.clone(), self.keys.history_seq.clone()];
        let limit = self.limits.history_size as i64;
        let id: i64 = self
            .link
            .call("append_message", |c| async move {
                c.eval(
                    APPEND_MESSAGE,
                    keys,
                    vec![RedisValue::from(tail), RedisValue::from(limit)],
                )
                .await
            })
            .await
            .map_err(map_err)?;
        Ok(ChatMessage {
            id: id.max(0) as u64,
            name: name.to_owned(),
            text: text.to_owned(),
            ts,
        })
    }

    async fn recent_messages(&self) -> Result<Vec<ChatMessage>, StoreError> {
        let key = self.keys.history.clone();
        let stop = self.limits.history_size as i64 - 1;
        let raw: Vec<String> = self
            .link
            .call("recent_messages", |c| async move {
                c.lrange(&key, 0, stop).await
            })
            .await
            .map_err(map_err)?;
        raw.iter()
            .rev()
            .map(|s| {
                serde_json::from_str::<ChatMessage>(s)
                    .map_err(|e| StoreError::Corrupt(format!("history entry: {e}")))
            })
            .collect()
    }

    async fn add_question(&self, text: &str) -> Result<(), StoreError> {
        let keys = vec![self.keys.questions.clone(), self.keys.questions_seq.clone()];
        let args = vec![
            RedisValue::from(text),
            RedisValue::from(self.limits.question_history as i64),
            RedisValue::from(self.keys.answers_prefix.as_str()),
        ];
        let _: i64 = self
            .link
            .call("add_question", |c| async move {
                c.eval(ADD_QUESTION, keys, args).await
            })
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn add_answer(&self, question: &str, answer: &str) -> Result<bool, StoreError> {
        let keys = vec![self.keys.questions.clone()];
        let args = vec![
            RedisValue::from(question),
            RedisValue::from(answer),
            RedisValue::from(self.keys.answers_prefix.as_str()),
            RedisValue::from(ANSWERS_PER_QUESTION as i64),
        ];
        let stored: i64 = self
            .link
            .call("add_answer", |c| async move {
                c.eval(ADD_ANSWER, keys, args).await
            })
            .await
            .map_err(map_err)?;
        Ok(stored == 1)
    }

    async fn questions(&self) -> Result<Vec<StoredQuestion>, StoreError> {
        let keys = vec![self.keys.questions.clone()];
        let args = vec![RedisValue::from(self.keys.answers_prefix.as_str())];
        let flat: Vec<RedisValue> = self
            .link
            .call("questions", |c| async move {
                c.eval(READ_QUESTIONS, keys, args).await
            })
            .await
            .map_err(map_err)?;
        let corrupt = || StoreError::Corrupt("questions reply".into());
        flat.chunks(2)
            .map(|pair| {
                let [text, answers] = pair else {
                    return Err(corrupt());
                };
                let answers = match answers {
                    RedisValue::Array(items) => {
                        items.iter().map(as_string).collect::<Option<Vec<_>>>()
                    }
                    RedisValue::Null => Some(Vec::new()),
                    _ => None,
                }
                .ok_or_else(corrupt)?;
                Ok(StoredQuestion {
                    text: as_string(text).ok_or_else(corrupt)?,
                    answers,
                })
            })
            .collect()
    }

    async fn set_present(&self, sid: &str, name: &str) -> Result<(), StoreError> {
        let mut local = self.local_presence.lock().await;
        let (presence, replicas, node) = (
            self.keys.presence.clone(),
            self.keys.replicas.clone(),
            self.node.clone(),
        );
        let (sid_owned, name_owned) = (sid.to_owned(), name.to_owned());
        let ttl = self.ttl_secs();
        let now = now_millis();
        self.link
            .call("set_present", |c| async move {
                let trx = c.multi();
                trx.hset::<(), _, _>(&presence, (sid_owned, name_owned))
                    .await?;
                trx.expire::<(), _>(&presence, ttl, None).await?;
                trx.zadd::<(), _, _>(&replicas, None, None, false, false, (now, node.as_str()))
                    .await?;
                trx.exec::<RedisValue>(true).await
            })
            .await
            .map_err(map_err)?;
        local.pending_removals.remove(sid);
        local.joined.insert(sid.to_owned(), name.to_owned());
        Ok(())
    }

    async fn remove_present(&self, sid: &str) -> Result<Option<String>, StoreError> {
        let mut local = self.local_presence.lock().await;
        let known = local.joined.remove(sid);
        let presence = self.keys.presence.clone();
        let sid_owned = sid.to_owned();
        let reply: Result<Vec<RedisValue>, _> = self
            .link
            .call("remove_present", |c| async move {
                let trx = c.multi();
                trx.hget::<(), _, _>(&presence, sid_owned.as_str()).await?;
                trx.hdel::<(), _, _>(&presence, sid_owned.as_str()).await?;
                trx.exec(true).await
            })
            .await;
        match reply {
            // The hash may have expired during an outage: the local record still knows the name.
            Ok(reply) => Ok(reply.first().and_then(as_string).or(known)),
            Err(e) => {
                // Still in Redis: the next successful heartbeat removes it, so that it does
                // not linger as a ghost once Redis is back.
                local.pending_removals.insert(sid.to_owned());
                Err(map_err(e))
            }
        }
    }

    async fn online(&self) -> Result<usize, StoreError> {
        let replicas = self.live_replicas().await?;
        if replicas.is_empty() {
            return Ok(0);
        }
        let keys: Vec<String> = replicas.iter().map(|r| self.keys.presence_of(r)).collect();
        let counts: Vec<i64> = self
            .link
            .call("online", |c| async move {
                let pipeline = c.pipeline();
                for k in &keys {
                    pipeline.hlen::<(), _>(k).await?;
                }
                pipeline.all().await
            })
            .await
            .map_err(map_err)?;
        Ok(counts.iter().map(|n| (*n).max(0) as usize).sum())
    }

    async fn names(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let replicas = self.live_replicas().await?;
        if replicas.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = replicas.iter().map(|r| self.keys.presence_of(r)).collect();
        let per_replica: Vec<Vec<String>> = self
            .link
            .call("names", |c| async move {
                let pipeline = c.pipeline();
                for k in &keys {
                    pipeline.hvals::<(), _>(k).await?;
                }
                pipeline.all().await
            })
            .await
            .map_err(map_err)?;
        let mut names: Vec<String> = per_replica.into_iter().flatten().collect();
        names.sort();
        names.truncate(limit);
        Ok(names)
    }

    /// Whether store commands can run (the command connection is up). The server adds a
    /// separate `redis` readiness check for the whole link, subscriber included.
    fn is_ready(&self) -> bool {
        self.link.commands_ready()
    }
}
