//! Tracing set-up shared by hubbub's binaries (`hubbub-server`, `hubbub-operator`, the
//! examples): the only place that installs process-wide globals (the subscriber), and the
//! [`LogFormat`] both command lines accept. Each binary calls [`init`] once at start-up.
//!
//! A crate of its own so that the operator shares it without depending on the server;
//! it depends on nothing of hubbub's.

use clap::ValueEnum;
use tracing_subscriber::EnvFilter;

/// Log output format (`--log-format` / `HUBBUB_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter string does not parse.
    #[error("invalid log filter {filter:?} (HUBBUB_LOG): {reason}")]
    Filter {
        /// The filter given.
        filter: String,
        /// The parser's complaint.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("logging already initialised")]
    AlreadySet,
}

/// Installs the global tracing subscriber: `filter` in `EnvFilter` syntax
/// (e.g. `info,hubbub=debug`), written to stderr as text or JSON lines.
pub fn init(filter: &str, format: LogFormat) -> Result<(), TelemetryError> {
    let env_filter = EnvFilter::try_new(filter).map_err(|e| TelemetryError::Filter {
        filter: filter.to_owned(),
        reason: e.to_string(),
    })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(env_filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|_| TelemetryError::AlreadySet)
}
