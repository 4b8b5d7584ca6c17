//! `hubbub-server`: parses the configuration, sets up logging and runs the
//! server. Everything else lives in the library (`hubbub_server::server`).

use anyhow::Context;
use clap::Parser;
use hubbub_server::config::ServerConfig;

/// jemalloc instead of the system allocator: under connection churn glibc's per-thread arenas
/// fragment and keep the freed memory resident (docs/reliability.md, "Memory after churn");
/// jemalloc's background thread returns dirty pages to the system once they have been unused
/// for its decay time (10 s), so an idle server shrinks back.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> anyhow::Result<()> {
    let config = ServerConfig::parse();
    config.validate()?;
    hubbub_telemetry::init(&config.log, config.log_format)?;
    actix_web::rt::System::new()
        .block_on(hubbub_server::server::run(config))
        .context("hubbub-server failed")
}
