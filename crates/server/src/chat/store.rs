//! The storage boundary of the chat application: the [`Store`] trait and its
//! in-memory implementation, [`MemoryStore`], used when no Redis is configured.
//!
//! A store owns chat history, questions with their answers, and presence (who is
//! joined, on which connection). Every method is one atomic operation from the
//! application's point of view; history order is the order of acceptance. The
//! Redis implementation lives in `store_redis.rs` and must behave the same way.
//! This module knows nothing of Socket.IO.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// How many answers are kept under one question (newest first are kept).
pub const ANSWERS_PER_QUESTION: usize = 50;

/// A chat message as stored and as sent to clients (`{"id","name","text","ts"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Unique, increasing id assigned by the store at append time.
    pub id: u64,
    /// The sender's nickname at the time of sending.
    pub name: String,
    /// The message text.
    pub text: String,
    /// Milliseconds since the Unix epoch, taken by the accepting server.
    pub ts: u64,
}

/// A stored question with its stored answers, oldest answer first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredQuestion {
    /// The question text, as asked.
    pub text: String,
    /// Answers, oldest first, at most [`ANSWERS_PER_QUESTION`].
    pub answers: Vec<String>,
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backing store cannot be reached (Redis down, connection lost).
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backing store answered something this code does not understand.
    #[error("store returned corrupt data: {0}")]
    Corrupt(String),
}

/// Bounds a store applies; from the server configuration.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// How many chat messages are kept (`--history-size`, default 10).
    pub history_size: usize,
    /// How many questions are kept (`--question-history`, default 20).
    pub question_history: usize,
}

/// Storage of chat history, questions, answers and presence.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends a message, assigning its id, and trims history to the limit.
    async fn append_message(
        &self,
        name: &str,
        text: &str,
        ts: u64,
    ) -> Result<ChatMessage, StoreError>;
    /// The newest `history_size` messages, oldest first.
    async fn recent_messages(&self) -> Result<Vec<ChatMessage>, StoreError>;
    /// Stores a question (keeping the newest `question_history`).
    async fn add_question(&self, text: &str) -> Result<(), StoreError>;
    /// Stores an answer under its question; `Ok(false)` when that question is not stored.
    async fn add_answer(&self, question: &str, answer: &str) -> Result<bool, StoreError>;
    /// The stored questions, oldest first, each with its answers.
    async fn questions(&self) -> Result<Vec<StoredQuestion>, StoreError>;
    /// Records that connection `sid` is joined as `name` (replacing an earlier name).
    async fn set_present(&self, sid: &str, name: &str) -> Result<(), StoreError>;
    /// Forgets connection `sid`; `Ok(Some(name))` when it was joined.
    async fn remove_present(&self, sid: &str) -> Result<Option<String>, StoreError>;
    /// Number of joined connections (across all replicas for a shared store).
    async fn online(&self) -> Result<usize, StoreError>;
    /// Up to `limit` names of joined users.
    async fn names(&self, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Whether the store can currently serve requests (drives `/readyz`).
    fn is_ready(&self) -> bool;
}

/// The single-process store: plain data behind short-lived mutexes.
pub struct MemoryStore {
    limits: StoreLimits,
    next_id: AtomicU64,
    history: Mutex<VecDeque<ChatMessage>>,
    /// Newest question last.
    questions: Mutex<VecDeque<StoredQuestion>>,
    presence: Mutex<HashMap<String, String>>,
}

impl MemoryStore {
    /// Creates an empty store with the given bounds.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            limits,
            next_id: AtomicU64::new(1),
            history: Mutex::new(VecDeque::with_capacity(limits.history_size + 1)),
            questions: Mutex::new(VecDeque::new()),
            presence: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn append_message(
        &self,
        name: &str,
        text: &str,
        ts: u64,
    ) -> Result<ChatMessage, StoreError> {
        let mut history = self.history.lock();
        // The id is taken under the history lock so that id order is history order.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let msg = ChatMessage {
            id,
            name: name.to_owned(),
            text: text.to_owned(),
            ts,
        };
        history.push_back(msg.clone());
        while history.len() > self.limits.history_size {
            history.pop_front();
        }
        Ok(msg)
    }

    async fn recent_messages(&self) -> Result<Vec<ChatMessage>, StoreError> {
        Ok(self.history.lock().iter().cloned().collect())
    }

    async fn add_question(&self, text: &str) -> Result<(), StoreError> {
        let mut questions = self.questions.lock();
        questions.push_back(StoredQuestion {
            text: text.to_owned(),
            answers: Vec::new(),
        });
        while questions.len() > self.limits.question_history {
            questions.pop_front();
        }
        Ok(())
    }

    async fn add_answer(&self, question: &str, answer: &str) -> Result<bool, StoreError> {
        let mut questions = self.questions.lock();
        // The newest question with that text receives the answer.
        match questions.iter_mut().rev().find(|q| q.text == question) {
            Some(q) => {
                q.answers.push(answer.to_owned());
                if q.answers.len() > ANSWERS_PER_QUESTION {
                    let excess = q.answers.len() - ANSWERS_PER_QUESTION;
                    q.answers.drain(..excess);
                }
                Ok(true)
            }
            None => Ok(false),
        }
    }

    async fn questions(&self) -> Result<Vec<StoredQuestion>, StoreError> {
        Ok(self.questions.lock().iter().cloned().collect())
    }

    async fn set_present(&self, sid: &str, name: &str) -> Result<(), StoreError> {
        self.presence.lock().insert(sid.to_owned(), name.to_owned());
        Ok(())
    }

    async fn remove_present(&self, sid: &str) -> Result<Option<String>, StoreError> {
        Ok(self.presence.lock().remove(sid))
    }

    async fn online(&self) -> Result<usize, StoreError> {
        Ok(self.presence.lock().len())
    }

    async fn names(&self, limit: usize) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = self.presence.lock().values().take(limit).cloned().collect();
        names.sort();
        Ok(names)
    }

    fn is_ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(history: usize, questions: usize) -> MemoryStore {
        MemoryStore::new(StoreLimits {
            history_size: history,
            question_history: questions,
        })
    }

    #[tokio::test]
    async fn history_keeps_the_newest_in_order_with_increasing_ids() {
        let s = store(10, 20);
        for i in 0..12 {
            s.append_message("ann", &format!("m{i}"), i).await.unwrap();
        }
        let recent = s.recent_messages().await.unwrap();
        let texts: Vec<_> = recent.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, (2..12).map(|i| format!("m{i}")).collect::<Vec<_>>());
        assert!(recent.windows(2).all(|w| w[0].id < w[1].id));
    }

    #[tokio::test]
    async fn questions_are_bounded_and_answers_attach_to_stored_questions() {
        let s = store(10, 2);
        s.add_question("q1").await.unwrap();
        s.add_question("q2").await.unwrap();
        s.add_question("q3").await.unwrap();
        assert!(!s.add_answer("q1", "gone").await.unwrap());
        assert!(s.add_answer("q3", "a").await.unwrap());
        let qs = s.questions().await.unwrap();
        assert_eq!(qs.len(), 2);
        assert_eq!(qs[0].text, "q2");
        assert_eq!(qs[1].answers, vec!["a".to_string()]);
        for i in 0..60 {
            s.add_answer("q2", &i.to_string()).await.unwrap();
        }
        let qs = s.questions().await.unwrap();
        assert_eq!(qs[0].answers.len(), ANSWERS_PER_QUESTION);
        assert_eq!(qs[0].answers[0], "10");
    }

    #[tokio::test]
    async fn presence_counts_connections_and_renames() {
        let s = store(10, 20);
        s.set_present("a", "ann").await.unwrap();
        s.set_present("b", "bob").await.unwrap();
        s.set_present("a", "anna").await.unwrap();
        assert_eq!(s.online().await.unwrap(), 2);
        assert_eq!(s.names(10).await.unwrap(), vec!["anna", "bob"]);
        assert_eq!(
            s.remove_present("a").await.unwrap().as_deref(),
            Some("anna")
        );
        assert_eq!(s.remove_present("a").await.unwrap(), None);
        assert_eq!(s.online().await.unwrap(), 1);
    }
}
