//! The chat and Q&A application on namespace `/`: event handlers, validation,
//! rate limits. It talks to [`hubbub_socketio`] and to a [`store::Store`] only.

pub mod events;
pub mod model;
pub mod store;
pub mod store_redis;

pub use events::{Chat, ChatSettings};
