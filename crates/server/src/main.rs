//! `hubbub-server`: parses the configuration, sets up logging and runs the
//! server. Everything else lives in the library (`hubbub_server::server`).

use anyhow::Context;
use clap::Parser;
use hubbub_server::config::ServerConfig;

fn main() -> anyhow::Result<()> {
    let config = ServerConfig::parse();
    config.validate()?;
    hubbub_telemetry::init(&config.log, config.log_format)?;
    actix_web::rt::System::new()
        .block_on(hubbub_server::server::run(config))
        .context("hubbub-server failed")
}
