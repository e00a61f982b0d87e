//! The compute-driver interface of the reference gateway.
//!
//! A driver turns a [`SandboxRequest`] into a running backend resource (a chrooted process, a
//! container, a VM) that starts the supervisor, and reports what the backend does as
//! [`DriverEvent`]s. Drivers report backend facts only: they never decide a sandbox's public phase
//! or its `Ready` condition, which belong to the gateway's lifecycle core (seed 002).
//!
//! Layout: this one file. [`ComputeDriver`] is the trait; [`DriverError`] the errors, each of
//! which names the `Ready` reason it maps to ([`DriverError::reason`]); [`EventSender`] the
//! channel a driver is constructed with. [`mutants`] selects the deliberately broken behaviours
//! of a `mutants` build (gateway and drivers share it).

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::mpsc;

/// Everything a driver needs to start one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxRequest {
    /// The sandbox id (stable, unique).
    pub sandbox_id: String,
    /// The sandbox name (DNS-1123 label).
    pub name: String,
    /// The image reference, e.g. `openshell-fixture/good:0123abcd4567`.
    pub image: String,
    /// Container runtime (`runc`, `runsc`); `None` means the driver's default.
    pub runtime_class: Option<String>,
    /// The main process; empty means the image's default command.
    pub command: Vec<String>,
    /// The complete supervisor environment: `OPENSHELL_SANDBOX_ID`, `OPENSHELL_ENDPOINT`,
    /// `OPENSHELL_SANDBOX_TOKEN`, `OPENSHELL_MAIN_PROCESS_SPEC` and the spec's environment.
    pub env: BTreeMap<String, String>,
    /// Labels for every backend resource: `openshell.sandbox-id` and, when the request had one,
    /// `openshell.run-id`.
    pub labels: BTreeMap<String, String>,
}

/// What a backend did, as a driver observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverEvent {
    /// The backend resource is running (the supervisor was started).
    Running { sandbox_id: String },
    /// The sandbox's top process (the supervisor) ended with this code (signals as 128 + n).
    Exited { sandbox_id: String, exit_code: i32 },
    /// The sandbox's top process ended, but its exit code could not be learned (a VM whose
    /// hypervisor died before the guest reported it); `message` says what was seen.
    ExitedWithoutCode { sandbox_id: String, message: String },
    /// The backend failed the sandbox after `create` returned (e.g. a start that failed later).
    Failed {
        sandbox_id: String,
        error: DriverError,
    },
    /// The backend resource disappeared without the gateway asking.
    Gone { sandbox_id: String },
    /// One line of the backend's output (stdout or stderr of the supervisor and its children).
    Output { sandbox_id: String, line: String },
}

impl DriverEvent {
    /// The sandbox the event is about.
    pub fn sandbox_id(&self) -> &str {
        match self {
            DriverEvent::Running { sandbox_id }
            | DriverEvent::Exited { sandbox_id, .. }
            | DriverEvent::ExitedWithoutCode { sandbox_id, .. }
            | DriverEvent::Failed { sandbox_id, .. }
            | DriverEvent::Gone { sandbox_id }
            | DriverEvent::Output { sandbox_id, .. } => sandbox_id,
        }
    }
}

/// The channel a driver sends its events on; the lifecycle core holds the receiver.
pub type EventSender = mpsc::UnboundedSender<DriverEvent>;
/// The receiving end, held by the lifecycle core.
pub type EventReceiver = mpsc::UnboundedReceiver<DriverEvent>;

/// Driver errors. Each maps to one `Ready` reason through [`DriverError::reason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DriverError {
    /// The image does not exist on the backend (nothing can be pulled on these machines).
    #[error("image {image} not found: {detail}")]
    ImageNotFound { image: String, detail: String },
    /// The backend refused to create the resource.
    #[error("backend could not create the sandbox: {0}")]
    CreateFailed(String),
    /// The resource was created but did not start.
    #[error("backend could not start the sandbox: {0}")]
    StartFailed(String),
    /// The backend (engine, runtime) could not be reached or is misconfigured.
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// The driver lost track of the sandbox's process: watching it failed (seed 002's
    /// `ProcessPollFailed`).
    #[error("cannot watch the sandbox's process: {0}")]
    PollFailed(String),
}

impl DriverError {
    /// The `Ready` condition reason this error becomes.
    pub fn reason(&self) -> &'static str {
        match self {
            DriverError::ImageNotFound { .. } => "ImageNotFound",
            DriverError::CreateFailed(_) => "BackendCreateFailed",
            DriverError::StartFailed(_) => "BackendStartFailed",
            DriverError::Unavailable(_) => "BackendUnavailable",
            DriverError::PollFailed(_) => "ProcessPollFailed",
        }
    }
}

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, DriverError>;

/// A compute backend.
///
/// Every method must return within a bounded time (an unreachable engine is an error, never a
/// hang) and must be safe to call concurrently for different sandboxes.
#[async_trait]
pub trait ComputeDriver: Send + Sync + 'static {
    /// A short name for logs and the CLI (`process`, `docker`).
    fn name(&self) -> &'static str;

    /// Create and start the sandbox's backend resource. Returns once the backend has accepted and
    /// started it; later changes arrive as [`DriverEvent`]s.
    async fn create(&self, request: SandboxRequest) -> Result<()>;

    /// Remove every backend resource of the sandbox; idempotent. `Ok(true)` if something was
    /// removed. Before removing, a driver emits what remains of the backend's output as
    /// [`DriverEvent::Output`] lines so diagnostics survive cleanup.
    async fn delete(&self, sandbox_id: &str) -> Result<bool>;

    /// Whether a backend resource for the sandbox still exists (asked at gateway start).
    async fn exists(&self, sandbox_id: &str) -> Result<bool>;

    /// The sandbox ids of every backend resource carrying all of `labels` (asked at gateway
    /// start with the gateway's own `openshell.gateway-id`, to remove what belongs to sandboxes
    /// its store no longer holds). The default lists nothing: a driver that cannot list leaves
    /// such resources to an operator.
    async fn labelled(&self, labels: &BTreeMap<String, String>) -> Result<Vec<String>> {
        let _ = labels;
        Ok(Vec::new())
    }
}

/// Deliberately broken behaviours, the proof that the conformance suite can fail: compiled in
/// only with the cargo feature `mutants` (never a default build), chosen at run time by
/// `OPENSHELL_MUTANT=<name>`. The gateway and the drivers ask [`mutants::active`].
pub mod mutants {
    /// The environment variable that selects a mutant.
    pub const ENV: &str = "OPENSHELL_MUTANT";

    /// The selected mutant, if this is a mutants build and one is selected.
    #[cfg(feature = "mutants")]
    pub fn selected() -> Option<String> {
        std::env::var(ENV).ok().filter(|m| !m.is_empty())
    }

    /// The selected mutant: never, in a default build.
    #[cfg(not(feature = "mutants"))]
    pub fn selected() -> Option<String> {
        None
    }

    /// Whether mutant `name` is active (`OPENSHELL_MUTANT` may list several, comma-separated).
    pub fn active(name: &str) -> bool {
        selected().is_some_and(|m| m.split(',').any(|n| n.trim() == name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_maps_to_a_contract_reason() {
        let cases = [
            (
                DriverError::ImageNotFound {
                    image: "i".into(),
                    detail: "d".into(),
                },
                "ImageNotFound",
            ),
            (DriverError::CreateFailed("x".into()), "BackendCreateFailed"),
            (DriverError::StartFailed("x".into()), "BackendStartFailed"),
            (DriverError::Unavailable("x".into()), "BackendUnavailable"),
            (DriverError::PollFailed("x".into()), "ProcessPollFailed"),
        ];
        for (error, reason) in cases {
            assert_eq!(error.reason(), reason, "{error}");
        }
    }
}
