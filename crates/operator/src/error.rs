//! The operator's one error type. Each variant maps to a short, fixed metric label
//! ([`Error::metric_label`]) and, for the reconciler, to a `Ready=False` reason.

use crate::resources::BuildError;

/// Anything that stops a reconciliation or the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The ChatRoom passes the schema but cannot be turned into objects.
    #[error("invalid chatroom spec: {0}")]
    InvalidSpec(#[from] BuildError),

    /// A call to the Kubernetes API failed.
    #[error("kubernetes api call failed ({action}): {source}")]
    Kube {
        /// What was being done, e.g. `apply Deployment`.
        action: String,
        /// The client error.
        #[source]
        source: kube::Error,
    },

    /// The ChatRoom lacks a namespace or uid (never true for objects from the API server).
    #[error("chatroom is missing {0}")]
    MissingMetadata(&'static str),

    /// Serialising an object failed.
    #[error("could not serialise {what}: {source}")]
    Serialise {
        /// What was being serialised.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },

    /// Reading or parsing the `render` input failed.
    #[error("could not read chatroom from {path}: {reason}")]
    Input {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },

    /// Writing YAML failed.
    #[error("could not write yaml: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),

    /// The metrics/health listener could not start.
    #[error("could not serve metrics on {bind}: {source}")]
    MetricsBind {
        /// The address.
        bind: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// Leadership was lost while reconciling; the process exits so that another replica
    /// takes over with a clean state.
    #[error("lost leadership of lease {0}")]
    LeadershipLost(String),

    /// Creating the Kubernetes client failed.
    #[error("could not create kubernetes client: {0}")]
    Client(#[source] kube::Error),
}

impl Error {
    /// A label from a small fixed set, for `hubbub_operator_reconcile_failures_total{reason}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::InvalidSpec(_) => "invalid_spec",
            Error::Kube { .. } => "kube_api",
            Error::MissingMetadata(_) => "missing_metadata",
            Error::Serialise { .. } => "serialise",
            Error::Input { .. } | Error::Yaml(_) => "input",
            Error::MetricsBind { .. } => "metrics_bind",
            Error::LeadershipLost(_) => "leadership_lost",
            Error::Client(_) => "client",
        }
    }

    /// The `Ready=False` reason for this error (PascalCase, as Kubernetes conditions use).
    pub fn condition_reason(&self) -> &'static str {
        match self {
            Error::InvalidSpec(e) => e.reason(),
            Error::Kube { .. } => "ApplyFailed",
            _ => "ReconcileFailed",
        }
    }

    /// Shorthand for a failed API call.
    pub fn kube(action: impl Into<String>, source: kube::Error) -> Self {
        Error::Kube {
            action: action.into(),
            source,
        }
    }
}
