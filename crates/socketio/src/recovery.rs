//! Connection state recovery, as in Socket.IO 4.6+: a client whose connection dropped comes
//! back with the same socket id, rooms and per-socket data, and first receives every event it
//! missed. This module owns the protocol's pieces that do not touch a socket: the private
//! session id and offset types, the session record, the failure reasons, the
//! [`RecoveryStore`] seam (where sessions, and for a cluster the event log, live) with its
//! in-memory implementation, and the bounded in-memory event log of one namespace. The hooks
//! into the CONNECT path and the broadcast path are in `namespace.rs` and `lib.rs`; the Redis
//! implementation of the store is in `hubbub-redis`.
//!
//! The protocol (compatible with the official clients):
//! - the CONNECT reply carries a private session id: `40{"sid":"…","pid":"…"}`;
//! - every event sent to a client that expects no ack ends with an offset string; the client
//!   keeps the last one and sends `40{"pid":"…","offset":"…",…auth}` when it reconnects;
//! - when the session can be restored, the events it missed (broadcasts after its offset that
//!   match its rooms) are sent, in order, *before* the CONNECT reply, which repeats the same
//!   `sid` and `pid`; otherwise the client gets a fresh session and a new `pid`.
//!
//! Beyond socket.io: the session is recorded when the socket connects and kept up to date
//! while it is connected (not only at disconnect), so a cluster store can restore it after
//! its server was killed; a client that never received an event (no offset) recovers from
//! the position its session started at; direct emits carry the position of the last
//! broadcast already queued to the client, so their trailing string arguments are never
//! mistaken for offsets.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use smallvec::SmallVec;
use tokio::time::Instant;

use super::Sid;
use super::rooms::Room;
use hubbub_engineio::Frame;

/// Default time a disconnected session can be restored (`--recovery-window-secs`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(120);
/// Default number of broadcasts the log keeps per namespace (`--recovery-max-events`).
pub const DEFAULT_MAX_EVENTS: usize = 10_000;

/// Recovery settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoverySettings {
    /// How long after a disconnection the session can be restored (socket.io's
    /// `maxDisconnectionDuration`); default 120 s.
    pub window: Duration,
    /// Most broadcasts kept per namespace; a client that missed more is not recovered.
    /// Default 10,000.
    pub max_events: usize,
    /// Most events replayed to one client; more count as `too_many` (the server sets its
    /// outbound queue size, since the replay is queued at once). Default 1024.
    pub max_replay: usize,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        RecoverySettings {
            window: DEFAULT_WINDOW,
            max_events: DEFAULT_MAX_EVENTS,
            max_replay: 1024,
        }
    }
}

/// A position in a namespace's log of broadcasts, written `ms-seq` on the wire (the shape of a
/// Redis stream id, which is what the Redis store uses; the in-memory log uses the process
/// start time and a counter). Offsets of one log are totally ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Offset {
    /// Milliseconds part.
    pub ms: u64,
    /// Sequence part.
    pub seq: u64,
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// An offset string that is not `ms-seq`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an offset: {0:?}")]
pub struct BadOffset(pub String);

impl FromStr for Offset {
    type Err = BadOffset;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadOffset(s.chars().take(64).collect());
        let (ms, seq) = s.split_once('-').ok_or_else(bad)?;
        let digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(ms) || !digits(seq) {
            return Err(bad());
        }
        Ok(Offset {
            ms: ms.parse().map_err(|_| bad())?,
            seq: seq.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for Offset {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Offset {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What a socket needs to be restored: written when it connects and whenever its rooms or
/// data change, kept for the window after it disconnects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The private session id (never shown to other clients).
    pub pid: String,
    /// The socket id, kept across recoveries.
    pub sid: String,
    /// The namespace.
    pub nsp: String,
    /// Rooms joined, without the socket's own id.
    pub rooms: Vec<String>,
    /// Per-socket data (`Socket::data`), a JSON object.
    pub data: Value,
    /// The log position when the session started: a client with no offset (it received no
    /// event) missed everything after it.
    pub since: Offset,
}

/// A CONNECT that asks for recovery: `{"pid": "...", "offset": "..."}` in its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// The private session id.
    pub pid: String,
    /// The last offset the client received, if any (a string; anything else counts as none).
    pub offset: Option<String>,
}

impl Claim {
    /// The claim in a CONNECT payload: present when `pid` is a string (as socket.io, which
    /// also requires `offset`; hubbub recovers a client without one from its session start).
    pub fn from_auth(auth: &Value) -> Option<Claim> {
        let pid = auth.get("pid")?.as_str()?;
        Some(Claim {
            pid: pid.to_owned(),
            offset: auth
                .get("offset")
                .and_then(Value::as_str)
                .map(str::to_owned),
        })
    }
}

/// Why a session was not restored; each is a value of `hubbub_recovery_total{result}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// Disconnected longer than the window.
    #[error("session expired")]
    Expired,
    /// No such session (never existed, already restored, or forgotten after a clean disconnect).
    #[error("unknown session")]
    UnknownSession,
    /// The log no longer holds everything after the client's offset.
    #[error("offset no longer in the log")]
    Trimmed,
    /// The offset is not one this log gave out.
    #[error("offset not from this log")]
    BadOffset,
    /// More events were missed than the client's outbound queue holds: replaying them
    /// would close the connection as a slow consumer.
    #[error("too many missed events")]
    TooMany,
    /// The store could not be reached.
    #[error("recovery store unavailable")]
    Unavailable,
}

/// Values of `hubbub_recovery_total{result}`.
pub const RESULT_LABELS: &[&str] = &[
    "recovered",
    "expired",
    "unknown_session",
    "trimmed",
    "bad_offset",
    "too_many",
    "unavailable",
    "disabled",
];

impl Failure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Expired => "expired",
            Failure::UnknownSession => "unknown_session",
            Failure::Trimmed => "trimmed",
            Failure::BadOffset => "bad_offset",
            Failure::TooMany => "too_many",
            Failure::Unavailable => "unavailable",
        }
    }
}

/// One logged broadcast: its offset, its encoded frames (the offset already in them) and the
/// rooms it was aimed at and excluded, to decide whether a restored socket gets it.
#[derive(Debug, Clone)]
pub struct LoggedEvent {
    /// Its position.
    pub offset: Offset,
    /// The frames as sent to the clients that were connected.
    pub frames: SmallVec<[Frame; 1]>,
    /// Target rooms; empty means every socket.
    pub rooms: SmallVec<[Room; 1]>,
    /// Excluded rooms.
    pub except: SmallVec<[Room; 1]>,
}

impl LoggedEvent {
    /// Whether a socket in `rooms` (its own id included) was meant to get this event: the rule
    /// of socket.io's `shouldIncludePacket`.
    pub fn is_for(&self, rooms: &[&str]) -> bool {
        let included =
            self.rooms.is_empty() || rooms.iter().any(|r| self.rooms.iter().any(|t| &**t == *r));
        let excluded = rooms.iter().any(|r| self.except.iter().any(|t| &**t == *r));
        included && !excluded
    }
}

/// Recovery as a namespace uses it: the settings and the store.
pub struct Recovery {
    /// The settings.
    pub settings: RecoverySettings,
    /// Where sessions (and, with Redis, the log) live.
    pub store: Arc<dyn RecoveryStore>,
}

impl fmt::Debug for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recovery")
            .field("settings", &self.settings)
            .finish()
    }
}

/// A connected socket's session as a [`RecoveryStore`] reads it (the socket itself; when it
/// leaves, the socket with the rooms it left).
pub trait SessionSource: Send + Sync {
    /// The Engine.IO session that holds it, so that a late `end` from a connection that has
    /// been taken over does not touch the new owner's session.
    fn owner(&self) -> &str;

    /// Its record as of now (`None` when it has no log position yet, so cannot be restored).
    fn record(&self) -> Option<SessionRecord>;
}

/// Where sessions (and, for a cluster, the event log) are kept.
///
/// `connected`, `changed` and `end` are called on the hot path of the socket's life and must
/// not block: a networked store queues the write. `take` and `missed` are awaited during a
/// CONNECT.
#[async_trait]
pub trait RecoveryStore: Send + Sync + 'static {
    /// A socket with session `pid` connected. A store that keeps copies (the Redis store, so
    /// that another replica can restore the session after this one was killed) writes
    /// `source`'s record now; the in-memory store keeps only the handle and reads the record
    /// when the session ends or is taken, so a connected socket costs it no copy.
    fn connected(&self, pid: &Sid, source: Weak<dyn SessionSource>);

    /// The rooms or data of the connected session `pid` changed.
    fn changed(&self, pid: &str, source: &dyn SessionSource);

    /// The socket left (`source` reads its record as it left): keep the session for the window
    /// when `recoverable`, else forget it.
    fn end(&self, pid: &str, recoverable: bool, source: &dyn SessionSource);

    /// Removes and returns the session `pid` (a session is restored at most once).
    async fn take(&self, pid: &str) -> Result<SessionRecord, Failure>;

    /// Whether broadcasts are logged by this process (in memory, under the namespace's
    /// delivery lock) rather than by the adapter (the Redis store: `missed` reads them).
    fn logs_in_memory(&self) -> bool;

    /// The logged events of `nsp` after `after`, oldest first, at most `limit` of them (the
    /// Redis store). `Trimmed` when `after` is older than the log's oldest entry.
    async fn missed(
        &self,
        _nsp: &str,
        _after: Offset,
        _limit: usize,
    ) -> Result<Vec<LoggedEvent>, Failure> {
        Err(Failure::Unavailable)
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A session the in-memory store holds.
enum Held {
    /// Connected: read from the socket when it ends or is taken.
    Live(Weak<dyn SessionSource>),
    /// Disconnected at `at`, restorable until the window is over.
    Ended(Box<(SessionRecord, Instant)>),
}

impl Held {
    fn ended_at(&self) -> Option<Instant> {
        match self {
            Held::Live(_) => None,
            Held::Ended(e) => Some(e.1),
        }
    }
}

#[derive(Default)]
struct Sessions {
    by_pid: HashMap<Sid, Held>,
    /// Ended sessions in the order they ended, to drop them when their window is over.
    expiry: VecDeque<(Instant, Sid)>,
}

/// Sessions of a single process, with its namespaces' logs in memory. A connected session
/// costs one map entry (its pid and a weak handle on the socket); its record is built only
/// when it disconnects, or when a new connection claims it while the old one is still open
/// (a half-open connection not yet noticed).
pub struct MemoryRecoveryStore {
    window: Duration,
    sessions: Mutex<Sessions>,
}

impl MemoryRecoveryStore {
    /// A store whose ended sessions last `window`.
    pub fn new(window: Duration) -> Self {
        MemoryRecoveryStore {
            window,
            sessions: Mutex::new(Sessions::default()),
        }
    }

    /// Sessions held (connected and within their window), for tests.
    pub fn len(&self) -> usize {
        self.sessions.lock().by_pid.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sweep(sessions: &mut Sessions, window: Duration, now: Instant) {
        while let Some((ended, _)) = sessions.expiry.front() {
            if now.duration_since(*ended) <= window {
                break;
            }
            let Some((ended, pid)) = sessions.expiry.pop_front() else {
                break;
            };
            // Only if it is still that ended session (not restored and ended again later).
            if sessions
                .by_pid
                .get(&pid)
                .is_some_and(|s| s.ended_at() == Some(ended))
            {
                sessions.by_pid.remove(&pid);
            }
        }
    }
}

#[async_trait]
impl RecoveryStore for MemoryRecoveryStore {
    fn connected(&self, pid: &Sid, source: Weak<dyn SessionSource>) {
        self.sessions
            .lock()
            .by_pid
            .insert(pid.clone(), Held::Live(source));
    }

    fn changed(&self, _pid: &str, _source: &dyn SessionSource) {
        // Read from the socket when needed.
    }

    fn end(&self, pid: &str, recoverable: bool, source: &dyn SessionSource) {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        Self::sweep(&mut sessions, self.window, now);
        let Some((pid, Held::Live(live))) = sessions.by_pid.get_key_value(pid) else {
            return; // unknown, or already ended
        };
        // A socket that is gone without an `end` cannot be the one ending now.
        if live.upgrade().is_some_and(|s| s.owner() != source.owner()) {
            return; // taken over by a newer connection
        }
        let pid = pid.clone();
        match source.record().filter(|_| recoverable) {
            Some(record) => {
                sessions
                    .by_pid
                    .insert(pid.clone(), Held::Ended(Box::new((record, now))));
                sessions.expiry.push_back((now, pid));
            }
            None => {
                sessions.by_pid.remove(&pid);
            }
        }
    }

    async fn take(&self, pid: &str) -> Result<SessionRecord, Failure> {
        let now = Instant::now();
        let held = self
            .sessions
            .lock()
            .by_pid
            .remove(pid)
            .ok_or(Failure::UnknownSession)?;
        match held {
            // Claimed while its connection still looks open (a half-open one).
            Held::Live(live) => live
                .upgrade()
                .and_then(|s| s.record())
                .ok_or(Failure::UnknownSession),
            Held::Ended(e) if now.duration_since(e.1) > self.window => Err(Failure::Expired),
            Held::Ended(e) => Ok(e.0),
        }
    }

    fn logs_in_memory(&self) -> bool {
        true
    }
}

/// The in-memory log of one namespace's broadcasts: the newest `max` of them. Lives under the
/// namespace's delivery lock, so offsets are given out in delivery order.
#[derive(Debug)]
pub(crate) struct MemoryLog {
    /// The `ms` part of every offset of this log: the time the log was created, so that an
    /// offset from an earlier process is recognised as foreign.
    epoch: u64,
    /// The sequence number of the next event.
    next: u64,
    entries: VecDeque<LoggedEvent>,
    max: usize,
}

impl MemoryLog {
    pub(crate) fn new(max: usize) -> Self {
        MemoryLog {
            epoch: now_ms(),
            next: 1,
            entries: VecDeque::new(),
            max: max.max(1),
        }
    }

    /// The position of the newest event (`seq` 0 before the first).
    pub(crate) fn head(&self) -> Offset {
        Offset {
            ms: self.epoch,
            seq: self.next - 1,
        }
    }

    /// The offset the next appended event gets.
    pub(crate) fn next_offset(&self) -> Offset {
        Offset {
            ms: self.epoch,
            seq: self.next,
        }
    }

    /// Appends the event (whose offset is `next_offset()`), dropping the oldest beyond `max`.
    pub(crate) fn append(&mut self, event: LoggedEvent) {
        debug_assert_eq!(event.offset, self.next_offset());
        self.next += 1;
        if self.entries.len() == self.max {
            self.entries.pop_front();
        }
        self.entries.push_back(event);
    }

    /// Every event after `after`, or why they cannot all be given.
    pub(crate) fn after(
        &self,
        after: Offset,
    ) -> Result<impl Iterator<Item = &LoggedEvent>, Failure> {
        if after.ms != self.epoch || after.seq >= self.next {
            return Err(Failure::BadOffset);
        }
        let first = self.entries.front().map_or(self.next, |e| e.offset.seq);
        if after.seq + 1 < first {
            return Err(Failure::Trimmed);
        }
        let skip = (after.seq + 1 - first) as usize;
        Ok(self.entries.iter().skip(skip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(offset: Offset, rooms: &[&str], except: &[&str]) -> LoggedEvent {
        LoggedEvent {
            offset,
            frames: SmallVec::new(),
            rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
            except: except.iter().map(|r| Room::from(*r)).collect(),
        }
    }

    #[test]
    fn offsets_round_trip_and_order() {
        let o: Offset = "1733360000000-7".parse().unwrap();
        assert_eq!(
            o,
            Offset {
                ms: 1_733_360_000_000,
                seq: 7
            }
        );
        assert_eq!(o.to_string(), "1733360000000-7");
        assert!(o < "1733360000000-8".parse().unwrap());
        assert!(o < "1733360000001-0".parse().unwrap());
        for bad in [
            "",
            "7",
            "-",
            "1-",
            "-1",
            "a-1",
            "1-2-3",
            "1 -2",
            "+1-2",
            "99999999999999999999999-1",
        ] {
            assert!(bad.parse::<Offset>().is_err(), "{bad:?}");
        }
        assert_eq!(serde_json::to_value(o).unwrap(), json!("1733360000000-7"));
    }

    #[test]
    fn claims_need_a_string_pid_and_take_only_a_string_offset() {
        assert_eq!(
            Claim::from_auth(&json!({"pid": "p", "offset": "1-2", "token": "t"})),
            Some(Claim {
                pid: "p".into(),
                offset: Some("1-2".into())
            })
        );
        assert_eq!(
            Claim::from_auth(&json!({"pid": "p", "offset": 5})),
            Some(Claim {
                pid: "p".into(),
                offset: None
            })
        );
        assert_eq!(Claim::from_auth(&json!({"pid": 1, "offset": "1-2"})), None);
        assert_eq!(Claim::from_auth(&json!({})), None);
        assert_eq!(Claim::from_auth(&Value::Null), None);
    }

    #[test]
    fn events_are_for_sockets_as_in_socket_io() {
        let all = event(Offset::default(), &[], &["x"]);
        assert!(all.is_for(&["me"]));
        assert!(!all.is_for(&["me", "x"]), "a socket in an excluded room");
        assert!(
            !event(Offset::default(), &[], &["me"]).is_for(&["me"]),
            "broadcast().except(own id)"
        );
        let room = event(Offset::default(), &["r"], &[]);
        assert!(room.is_for(&["me", "r"]));
        assert!(!room.is_for(&["me"]));
        assert!(
            event(Offset::default(), &["me"], &[]).is_for(&["me"]),
            "to(own id)"
        );
    }

    #[test]
    fn memory_log_gives_what_follows_and_refuses_trimmed_or_foreign_offsets() {
        let mut log = MemoryLog::new(3);
        let start = log.head();
        assert_eq!(log.after(start).unwrap().count(), 0);
        for _ in 0..5 {
            let o = log.next_offset();
            log.append(event(o, &[], &[]));
        }
        // Seqs 3, 4, 5 are kept.
        let seqs = |after: Offset| {
            log.after(after)
                .map(|it| it.map(|e| e.offset.seq).collect::<Vec<_>>())
        };
        assert_eq!(seqs(Offset { seq: 2, ..start }), Ok(vec![3, 4, 5]));
        assert_eq!(seqs(Offset { seq: 4, ..start }), Ok(vec![5]));
        assert_eq!(seqs(Offset { seq: 5, ..start }), Ok(vec![]));
        assert_eq!(seqs(Offset { seq: 1, ..start }), Err(Failure::Trimmed));
        assert_eq!(seqs(start), Err(Failure::Trimmed));
        assert_eq!(seqs(Offset { seq: 6, ..start }), Err(Failure::BadOffset));
        assert_eq!(
            seqs(Offset {
                ms: start.ms + 1,
                seq: 4
            }),
            Err(Failure::BadOffset)
        );
    }

    fn record(pid: &str) -> SessionRecord {
        SessionRecord {
            pid: pid.into(),
            sid: "sid".into(),
            nsp: "/".into(),
            rooms: vec![],
            data: json!({}),
            since: Offset::default(),
        }
    }

    /// A stand-in for a connected socket: its owner and its record, which it can change.
    struct Source {
        owner: &'static str,
        record: Mutex<SessionRecord>,
    }

    impl SessionSource for Source {
        fn owner(&self) -> &str {
            self.owner
        }
        fn record(&self) -> Option<SessionRecord> {
            Some(self.record.lock().clone())
        }
    }

    /// A connected session `pid` owned by `owner`: keep the `Arc` alive as the socket would.
    fn connect(store: &MemoryRecoveryStore, pid: &str, owner: &'static str) -> Arc<Source> {
        let source = Arc::new(Source {
            owner,
            record: Mutex::new(record(pid)),
        });
        let weak: Weak<Source> = Arc::downgrade(&source);
        store.connected(&Sid::from(pid), weak);
        source
    }

    #[tokio::test(start_paused = true)]
    async fn memory_sessions_last_the_window_once_and_only_when_recoverable() {
        let store = MemoryRecoveryStore::new(Duration::from_millis(50));
        let a = connect(&store, "a", "e1");
        a.record.lock().rooms = vec!["r".into()];
        // Connected sessions (a half-open connection's, say) can be taken, as they are now.
        let taken = store.take("a").await.unwrap();
        assert_eq!(
            (taken.pid.as_str(), taken.rooms),
            ("a", vec!["r".to_owned()])
        );
        assert_eq!(
            store.take("a").await,
            Err(Failure::UnknownSession),
            "restored once"
        );

        let b = connect(&store, "b", "e1");
        store.end("b", false, &*b);
        assert_eq!(
            store.take("b").await,
            Err(Failure::UnknownSession),
            "clean disconnects are forgotten"
        );

        let c1 = connect(&store, "c", "e1");
        let c2 = connect(&store, "c", "e2"); // taken over by a new connection
        c2.record.lock().data = json!({"nick": "new"});
        store.end("c", true, &*c1); // the old connection's late end changes nothing
        assert_eq!(store.len(), 1);
        store.end("c", true, &*c2);
        drop((c1, c2)); // the record was copied when the session ended
        assert_eq!(
            store.take("c").await.map(|r| r.data),
            Ok(json!({"nick": "new"}))
        );

        let d = connect(&store, "d", "e1");
        store.end("d", true, &*d);
        store.end("d", true, &*d); // a second end of an ended session changes nothing
        tokio::time::advance(Duration::from_millis(80)).await;
        assert_eq!(store.take("d").await, Err(Failure::Expired));
        let e = connect(&store, "e", "e1");
        store.end("e", true, &*e);
        tokio::time::advance(Duration::from_millis(80)).await;
        let f = connect(&store, "f", "e1");
        store.end("f", true, &*f); // sweeps "e"
        assert_eq!(store.len(), 1);

        // A socket dropped without an `end` (never happens; the entry must not be restored).
        let g = connect(&store, "g", "e1");
        drop(g);
        assert_eq!(store.take("g").await, Err(Failure::UnknownSession));
    }
}
