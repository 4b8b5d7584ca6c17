//! telemetry (under construction)
