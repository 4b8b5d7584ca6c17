//! The chat application's event arguments, as a client sends them in a
//! Socket.IO EVENT (`hubbub_server::chat::model`): `join`'s nickname, the
//! texts of `messages` and `question`, `answer`'s pair.
//!
//! The input is a Socket.IO packet; an accepted EVENT's name and arguments go
//! through the validation its handler runs. Properties: validation never
//! panics; an accepted nickname is trimmed, 1 to 32 characters, without
//! control characters, and validates again to itself; an accepted text is not
//! blank and at most the byte limit; a refusal's reason is one of the fixed
//! metric labels and its message is what the README lists.
#![no_main]

use hubbub_server::chat::model::{self, MAX_NICKNAME_CHARS, Rejection};
use hubbub_socketio::packet::{self, PacketType};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const LIMITS: [usize; 3] = [1, 16, 4096];

fn refused(r: &Rejection) {
    let label = r.label();
    assert!(
        [
            "not_joined",
            "bad_arguments",
            "empty_text",
            "text_too_long",
            "bad_nickname",
            "rate_limited",
            "question_limit",
            "store_unavailable",
        ]
        .contains(&label)
    );
    let message = r.to_string();
    assert!(
        message.starts_with("wrong argument type or count: ")
            || message == "empty text"
            || message.starts_with("text too long (max ")
            || message.starts_with("bad nickname: "),
        "{message}"
    );
}

fn text_ok(t: &model::MessageText, max: usize) {
    assert!(!t.as_str().trim().is_empty());
    assert!(t.as_str().len() <= max);
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(p) = packet::parse(text) else {
        return;
    };
    if p.kind != PacketType::Event {
        return;
    }
    let Some(Value::Array(items)) = p.data else {
        return;
    };
    let args = &items[1..];
    match model::join_args(args) {
        Ok(name) => {
            let n = name.as_str();
            assert_eq!(n, n.trim());
            let chars = n.chars().count();
            assert!((1..=MAX_NICKNAME_CHARS).contains(&chars));
            assert!(!n.chars().any(char::is_control));
            assert_eq!(
                model::Nickname::parse(&Value::String(n.to_owned())),
                Ok(name)
            );
        }
        Err(r) => refused(&r),
    }
    for max in LIMITS {
        match model::text_args(args, "messages takes one text", max) {
            Ok(t) => text_ok(&t, max),
            Err(r) => refused(&r),
        }
        match model::answer_args(args, max) {
            Ok((q, a)) => {
                text_ok(&q, max);
                text_ok(&a, max);
            }
            Err(r) => refused(&r),
        }
    }
});
