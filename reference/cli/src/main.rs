//! The `openshell` binary: parse the command line, run it, map the outcome to an exit code.
//!
//! clap handles usage errors itself (exit 2); every other failure prints one line to stderr and
//! exits 1: `Error: <reason>: <message>` for a sandbox in Error, `error: …` otherwise.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use openshell_cli::args::Cli;
use openshell_cli::commands::CommandError;
use openshell_cli::output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime");
    let result = match runtime {
        Ok(runtime) => runtime
            .block_on(openshell_cli::run(cli))
            .map_err(anyhow::Error::from),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            match err.downcast_ref::<CommandError>() {
                Some(CommandError::SandboxFailed(failure)) => {
                    output::stderr(&format!("{failure}\n"))
                }
                _ => output::stderr(&format!("error: {err:#}\n")),
            }
            ExitCode::FAILURE
        }
    }
}
