//! The `openshell sandbox …` commands and their shared error type.
//!
//! - [`create`]: CreateSandbox, then watch until Ready or Error within the provision timeout.
//! - [`progress`]: which lines a watch prints and when it has a verdict (pure).
//! - [`inspect`]: `get`, `list` and `delete`.

pub mod create;
pub mod inspect;
pub mod progress;

use crate::gateway::GatewayError;
use progress::Failure;

/// Why a command failed; every variant exits with 1.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// The gateway could not be reached or refused the request.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// The sandbox went to Error (or was deleted) instead of becoming Ready.
    #[error("{0}")]
    SandboxFailed(Failure),
    /// Neither Ready nor Error within the provision timeout.
    #[error("sandbox {name} provisioning timed out after {secs}s; last status: {last}")]
    Timeout {
        /// The sandbox's name.
        name: String,
        /// The timeout.
        secs: u64,
        /// The last phase, reason and message seen.
        last: String,
    },
    /// The watch ended and the sandbox was still on its way.
    #[error("watch of sandbox {name} ended before it was Ready or Error; last status: {last}")]
    WatchEnded {
        /// The sandbox's name.
        name: String,
        /// Its status as a final GetSandbox saw it.
        last: String,
    },
}

/// Result of commands.
pub type Result<T> = std::result::Result<T, CommandError>;
