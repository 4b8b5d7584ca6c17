//! The Kubernetes operator for the `ChatRoom` custom resource: the CRD types ([`crd`]),
//! the pure builders of child objects ([`resources`]), the reconciler ([`reconciler`]),
//! Lease-based leader election ([`leader`]), the operator's own metrics and health
//! endpoints ([`metrics`]) and the commands of `hubbub-operator` ([`cli`]).
//!
//! YAML output (`render`, `crd`) is in [`render`], apart from the pure builders.
//!
//! Depends on no other hubbub crate but `hubbub-telemetry`, and links no web framework or
//! Redis client (its three HTTP routes are served with hyper, which `kube` already
//! links): the operator only knows the chat server through its container image and its
//! `HUBBUB_*` settings. `crates/server/tests/layering.rs` checks this with `cargo tree`.

pub mod cli;
pub mod crd;
pub mod error;
pub mod leader;
pub mod metrics;
pub mod reconciler;
pub mod render;
pub mod resources;

pub use error::Error;
