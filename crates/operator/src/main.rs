//! `hubbub-operator`: parses arguments, sets up telemetry and calls into
//! `hubbub_operator::cli` (`run`, `crd` or `render`). Nothing else.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use hubbub_operator::cli::{self, Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let args = Cli::parse();
    let result = match args.command {
        Some(Command::Crd) => cli::crd_command().map(print),
        Some(Command::Render(render)) => cli::render_command(&render).map(print),
        Some(Command::Run(run)) => start(run).await,
        None => start(args.run).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hubbub-operator: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Writes command output; a closed pipe (`... | head`) is not an error.
fn print(text: String) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

async fn start(run: cli::RunArgs) -> Result<(), hubbub_operator::Error> {
    if let Err(e) = hubbub_telemetry::init(&run.log, run.log_format) {
        eprintln!("hubbub-operator: {e}");
        std::process::exit(2);
    }
    cli::run(run).await
}
