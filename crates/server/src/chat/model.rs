//! Validated values of the chat application. Each newtype can only be built
//! through its parser, so a handler holding one knows it is acceptable.

use std::time::Instant;

use serde_json::Value;

/// Why an event was refused. The label set is fixed (it is a metric label);
/// the message is what the client reads in `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The event needs a prior `join`.
    #[error("not joined")]
    NotJoined,
    /// Wrong argument type or count.
    #[error("wrong argument type or count: {0}")]
    BadArguments(&'static str),
    /// Empty text.
    #[error("empty text")]
    EmptyText,
    /// Text over `--max-message-bytes`.
    #[error("text too long (max {0} bytes)")]
    TextTooLong(usize),
    /// A nickname that is empty, too long or has control characters.
    #[error("bad nickname: {0}")]
    BadNickname(&'static str),
    /// Too many events too fast.
    #[error("rate limit exceeded")]
    RateLimited,
    /// A second question from one connection.
    #[error("one question per connection")]
    QuestionLimit,
    /// The store could not take the write; nothing was broadcast.
    #[error("store unavailable, not stored")]
    StoreUnavailable,
}

impl Rejection {
    /// The metric label of `hubbub_events_rejected_total{reason}`.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::NotJoined => "not_joined",
            Rejection::BadArguments(_) => "bad_arguments",
            Rejection::EmptyText => "empty_text",
            Rejection::TextTooLong(_) => "text_too_long",
            Rejection::BadNickname(_) => "bad_nickname",
            Rejection::RateLimited => "rate_limited",
            Rejection::QuestionLimit => "question_limit",
            Rejection::StoreUnavailable => "store_unavailable",
        }
    }
}

/// Longest nickname, in characters.
pub const MAX_NICKNAME_CHARS: usize = 32;

/// A nickname: trimmed, 1 to 32 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nickname(String);

impl Nickname {
    /// Validates a `join` argument.
    pub fn parse(value: &Value) -> Result<Nickname, Rejection> {
        let Value::String(raw) = value else {
            return Err(Rejection::BadArguments("nickname must be a string"));
        };
        let name = raw.trim();
        if name.is_empty() {
            return Err(Rejection::BadNickname("empty"));
        }
        if name.chars().count() > MAX_NICKNAME_CHARS {
            return Err(Rejection::BadNickname("longer than 32 characters"));
        }
        if name.chars().any(char::is_control) {
            return Err(Rejection::BadNickname("control characters"));
        }
        Ok(Nickname(name.to_owned()))
    }

    /// The nickname.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A chat message, question or answer text: non-blank, at most `max` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    /// Validates a text argument against the byte limit.
    pub fn parse(value: &Value, max_bytes: usize) -> Result<MessageText, Rejection> {
        let Value::String(text) = value else {
            return Err(Rejection::BadArguments("text must be a string"));
        };
        if text.trim().is_empty() {
            return Err(Rejection::EmptyText);
        }
        if text.len() > max_bytes {
            return Err(Rejection::TextTooLong(max_bytes));
        }
        Ok(MessageText(text.clone()))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The argument of `join`: exactly one nickname.
pub fn join_args(args: &[Value]) -> Result<Nickname, Rejection> {
    let [arg] = args else {
        return Err(Rejection::BadArguments("join takes one nickname"));
    };
    Nickname::parse(arg)
}

/// The argument of `messages` and `question`: exactly one text.
pub fn text_args(
    args: &[Value],
    what: &'static str,
    max_bytes: usize,
) -> Result<MessageText, Rejection> {
    let [arg] = args else {
        return Err(Rejection::BadArguments(what));
    };
    MessageText::parse(arg, max_bytes)
}

/// The arguments of `answer`: a question and an answer text.
pub fn answer_args(
    args: &[Value],
    max_bytes: usize,
) -> Result<(MessageText, MessageText), Rejection> {
    let [question, answer] = args else {
        return Err(Rejection::BadArguments(
            "answer takes a question and an answer",
        ));
    };
    Ok((
        MessageText::parse(question, max_bytes)?,
        MessageText::parse(answer, max_bytes)?,
    ))
}

/// A per-connection token bucket: `rate` tokens per second, at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    #[test]
    fn nicknames() {
        assert_eq!(Nickname::parse(&json!("  ann ")).unwrap().as_str(), "ann");
        assert_eq!(
            Nickname::parse(&json!("é".repeat(32)))
                .unwrap()
                .as_str()
                .chars()
                .count(),
            32
        );
        assert_eq!(
            Nickname::parse(&json!("   ")),
            Err(Rejection::BadNickname("empty"))
        );
        assert!(matches!(
            Nickname::parse(&json!("x".repeat(33))),
            Err(Rejection::BadNickname(_))
        ));
        assert!(matches!(
            Nickname::parse(&json!("a\u{7}b")),
            Err(Rejection::BadNickname(_))
        ));
        assert!(matches!(
            Nickname::parse(&json!(42)),
            Err(Rejection::BadArguments(_))
        ));
    }

    #[test]
    fn texts() {
        assert_eq!(MessageText::parse(&json!("hi"), 10).unwrap().as_str(), "hi");
        assert_eq!(
            MessageText::parse(&json!(" \n"), 10),
            Err(Rejection::EmptyText)
        );
        assert_eq!(
            MessageText::parse(&json!("ééé"), 5),
            Err(Rejection::TextTooLong(5))
        );
        assert!(matches!(
            MessageText::parse(&json!({"text":"x"}), 5),
            Err(Rejection::BadArguments(_))
        ));
        assert_eq!(
            Rejection::TextTooLong(5).to_string(),
            "text too long (max 5 bytes)"
        );
    }

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 3, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(b.try_take(t0 + Duration::from_millis(100)));
        assert!(!b.try_take(t0 + Duration::from_millis(100)));
        assert!(b.try_take(t0 + Duration::from_secs(10)));
    }
}
