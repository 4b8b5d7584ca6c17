//! The Kubernetes operator for the `ChatRoom` custom resource: the CRD types ([`crd`]),
//! the pure builders of child objects ([`resources`]), the reconciler ([`reconciler`]),
//! Lease-based leader election ([`leader`]), the operator's own metrics and health
//! endpoints ([`metrics`]) and the commands of `hubbub-operator` ([`cli`]).
//!
//! Never imports engineio, socketio, cluster or chat: the operator only knows the chat
//! server through its container image and its `HUBBUB_*` settings.

pub mod cli;
pub mod crd;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod reconciler;
pub mod render;
pub mod resources;

pub use error::Error;
