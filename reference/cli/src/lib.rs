//! `openshell`: the command line of the OpenShell reference implementation.
//!
//! It talks to any gateway that serves the `openshell.v1.OpenShell` gRPC service (the reference
//! gateway or a vendor's) and depends on `openshell-proto` only. Commands:
//! `sandbox create --from IMAGE …` (create, then watch to Ready or Error), `sandbox get NAME`,
//! `sandbox list`, `sandbox delete NAME`; `--output json` on get and list; the endpoint from
//! `--gateway` or `OPENSHELL_GATEWAY`.
//!
//! Exit codes: 0 success; 1 the sandbox went to Error or the operation failed; 2 usage error.
//!
//! Layout:
//! - [`args`]: the clap command line and the `KEY=VALUE` parser.
//! - [`gateway`]: connecting, the RPCs, and gRPC status → one-line user errors.
//! - [`commands`]: the commands; [`commands::progress`] is the watch logic.
//! - [`render`]: the text and the stable JSON view of a sandbox.
//! - [`hygiene`]: control characters from the gateway are escaped before display.
//! - [`naming`]: generated `sb-<8 hex>` names.
//! - [`output`]: stdout/stderr writes that never panic.

pub mod args;
pub mod commands;
pub mod gateway;
pub mod hygiene;
pub mod naming;
pub mod output;
pub mod render;

use args::{Cli, Command, SandboxCommand};
use commands::Result;
use gateway::Gateway;

/// Runs a parsed command line against its gateway.
pub async fn run(cli: Cli) -> Result<()> {
    let mut gateway = Gateway::connect(&cli.gateway).await?;
    match &cli.command {
        Command::Sandbox(SandboxCommand::Create(a)) => {
            commands::create::create(&mut gateway, a).await
        }
        Command::Sandbox(SandboxCommand::Get(a)) => commands::inspect::get(&mut gateway, a).await,
        Command::Sandbox(SandboxCommand::List(a)) => commands::inspect::list(&mut gateway, a).await,
        Command::Sandbox(SandboxCommand::Delete(a)) => {
            commands::inspect::delete(&mut gateway, a).await
        }
    }
}
