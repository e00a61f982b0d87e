//! The OpenShell lifecycle wire contract, shared by every part that speaks it.
//!
//! This crate is the only thing the reference gateway, the reference supervisor, the CLI and the
//! conformance suite all depend on, so it also carries the contract's names that are not protobuf
//! messages: environment variables, labels, condition types and reasons.
//!
//! Layout:
//! - [`v1`]: messages and the `OpenShell` service (client and server) generated from
//!   `proto/openshell.proto` by `protox` + `tonic-prost-build` (no system `protoc`).
//! - [`datamodel`] holds `ObjectMeta`.
//! - [`env`], [`labels`], [`conditions`]: the contract's string constants; [`ReadyReason`]
//!   (with its words in [`reasons`]) the typed `Ready` reasons.
//! - [`stage_name`] gives the stable lower-case name of a [`v1::SupervisorStartupStage`].

/// Generated from `proto/datamodel.proto` (package `openshell.datamodel.v1`).
pub mod datamodel {
    /// Package `openshell.datamodel.v1`.
    pub mod v1 {
        tonic::include_proto!("openshell.datamodel.v1");
    }
}

/// Generated from `proto/openshell.proto` (package `openshell.v1`).
#[allow(clippy::large_enum_variant)]
pub mod v1 {
    tonic::include_proto!("openshell.v1");
}

/// Environment variables every driver sets for the supervisor.
pub mod env {
    /// The sandbox's id.
    pub const SANDBOX_ID: &str = "OPENSHELL_SANDBOX_ID";
    /// The gateway's gRPC endpoint as the supervisor reaches it, e.g. `http://127.0.0.1:7443`.
    pub const ENDPOINT: &str = "OPENSHELL_ENDPOINT";
    /// The sandbox's credential; the supervisor removes it from everything it starts.
    pub const SANDBOX_TOKEN: &str = "OPENSHELL_SANDBOX_TOKEN";
    /// JSON `{"version":1,"command":[…],"tty":false}`: the main process to run.
    pub const MAIN_PROCESS_SPEC: &str = "OPENSHELL_MAIN_PROCESS_SPEC";
    /// Truthy (`1`, `true`, `yes`, `on`): tolerate netns and seccomp failures (seed 003).
    pub const BEST_EFFORT_FAILURES: &str = "OPENSHELL_BEST_EFFORT_FAILURES";
    /// Comma list of `netns`, `supervisor-seccomp`, `workload-seccomp` or `all`: never attempted.
    pub const SKIP_BOOTSTRAP: &str = "OPENSHELL_SKIP_BOOTSTRAP";
    /// Seconds the boot hook may run (default 60).
    pub const BOOT_HOOK_TIMEOUT: &str = "OPENSHELL_BOOT_HOOK_TIMEOUT";
    /// Seconds the supervisor may spend reaching the gateway at startup, the first session and
    /// a startup error report together (default 10).
    pub const GATEWAY_TIMEOUT: &str = "OPENSHELL_GATEWAY_TIMEOUT";
    /// Seconds between session heartbeats (gateway side: the interval it announces).
    pub const HEARTBEAT_SECS: &str = "OPENSHELL_HEARTBEAT_SECS";
}

/// Labels on every backend resource (container, process root, VM, pod) of a sandbox.
pub mod labels {
    /// The sandbox's id.
    pub const SANDBOX_ID: &str = "openshell.sandbox-id";
    /// The run that created the sandbox: copied from the `CreateSandboxRequest` label of that name.
    pub const RUN_ID: &str = "openshell.run-id";
    /// The gateway (its store) that owns the sandbox: a restarted gateway removes backend
    /// resources carrying its id whose sandbox its store no longer holds.
    pub const GATEWAY_ID: &str = "openshell.gateway-id";
}

/// Condition types.
pub mod conditions {
    /// Ready: True exactly while the sandbox is not terminal and its supervisor session is live.
    pub const READY: &str = "Ready";
    /// Project addition: True when the supervisor skipped or tolerated an enforcement subsystem.
    pub const ENFORCEMENT_DEGRADED: &str = "EnforcementDegraded";
    /// Condition status values.
    pub const TRUE: &str = "True";
    /// Condition status values.
    pub const FALSE: &str = "False";
}

/// The reasons of the `Ready` condition, as one typed model: every part compares reasons as
/// [`ReadyReason`] values and spells them only through [`ReadyReason::as_str`] (the constants in
/// [`reasons`] are the same words, for `match`-free call sites).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadyReason {
    /// Created; no supervisor session yet.
    Starting,
    /// Ready=True: the supervisor session is live.
    SupervisorConnected,
    /// The current session ended; back to Provisioning.
    SupervisorDisconnected,
    /// The supervisor reported a fatal startup error (seed 000).
    SupervisorError,
    /// The main process ended (any exit code, 0 included).
    ProcessExited,
    /// The driver could not poll the sandbox's process (seed 002's VM driver).
    ProcessPollFailed,
    /// The driver could not find the image.
    ImageNotFound,
    /// The backend refused to create the sandbox.
    BackendCreateFailed,
    /// The backend created but could not start the sandbox.
    BackendStartFailed,
    /// The backend (engine, runtime) could not be reached.
    BackendUnavailable,
    /// The backend resource disappeared (found at gateway start, or removed behind its back).
    BackendLost,
    /// The sandbox is being deleted.
    Deleting,
}

impl ReadyReason {
    /// Every reason.
    pub const ALL: [ReadyReason; 12] = [
        Self::Starting,
        Self::SupervisorConnected,
        Self::SupervisorDisconnected,
        Self::SupervisorError,
        Self::ProcessExited,
        Self::ProcessPollFailed,
        Self::ImageNotFound,
        Self::BackendCreateFailed,
        Self::BackendStartFailed,
        Self::BackendUnavailable,
        Self::BackendLost,
        Self::Deleting,
    ];

    /// The wire word.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "Starting",
            Self::SupervisorConnected => "SupervisorConnected",
            Self::SupervisorDisconnected => "SupervisorDisconnected",
            Self::SupervisorError => "SupervisorError",
            Self::ProcessExited => "ProcessExited",
            Self::ProcessPollFailed => "ProcessPollFailed",
            Self::ImageNotFound => "ImageNotFound",
            Self::BackendCreateFailed => "BackendCreateFailed",
            Self::BackendStartFailed => "BackendStartFailed",
            Self::BackendUnavailable => "BackendUnavailable",
            Self::BackendLost => "BackendLost",
            Self::Deleting => "Deleting",
        }
    }

    /// The reason a wire word names, if it is one of this contract's.
    pub fn parse(word: &str) -> Option<ReadyReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == word)
    }
}

impl std::fmt::Display for ReadyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The words of [`ReadyReason`], as constants.
pub mod reasons {
    use super::ReadyReason as R;
    /// Created; no supervisor session yet.
    pub const STARTING: &str = R::Starting.as_str();
    /// Ready=True: the supervisor session is live.
    pub const SUPERVISOR_CONNECTED: &str = R::SupervisorConnected.as_str();
    /// The current session ended; back to Provisioning.
    pub const SUPERVISOR_DISCONNECTED: &str = R::SupervisorDisconnected.as_str();
    /// The supervisor reported a fatal startup error (seed 000).
    pub const SUPERVISOR_ERROR: &str = R::SupervisorError.as_str();
    /// The main process ended (any exit code, 0 included).
    pub const PROCESS_EXITED: &str = R::ProcessExited.as_str();
    /// The driver could not poll the sandbox's process.
    pub const PROCESS_POLL_FAILED: &str = R::ProcessPollFailed.as_str();
    /// The driver could not find the image.
    pub const IMAGE_NOT_FOUND: &str = R::ImageNotFound.as_str();
    /// The backend refused to create the sandbox.
    pub const BACKEND_CREATE_FAILED: &str = R::BackendCreateFailed.as_str();
    /// The backend created but could not start the sandbox.
    pub const BACKEND_START_FAILED: &str = R::BackendStartFailed.as_str();
    /// The backend (engine, runtime) could not be reached.
    pub const BACKEND_UNAVAILABLE: &str = R::BackendUnavailable.as_str();
    /// The backend resource disappeared (found at gateway start, or removed behind its back).
    pub const BACKEND_LOST: &str = R::BackendLost.as_str();
    /// The sandbox is being deleted.
    pub const DELETING: &str = R::Deleting.as_str();
    /// `EnforcementDegraded=True` (the reason of the second condition).
    pub const ENFORCEMENT_DEGRADED: &str = "EnforcementDegraded";
}

/// The path of the boot hook inside every sandbox root (seed 001).
pub const BOOT_HOOK_PATH: &str = "/etc/openshell/boot.sh";
/// The path of the sandbox policy inside every sandbox root.
pub const POLICY_PATH: &str = "/etc/openshell/policy.yaml";
/// The image reference prefix of conformance fixtures: `openshell-fixture/<name>:<hash>`.
pub const FIXTURE_IMAGE_PREFIX: &str = "openshell-fixture/";

/// The stable, lower-case name of a startup stage, as it prefixes the stored error message
/// (`"policy: …"`).
pub fn stage_name(stage: v1::SupervisorStartupStage) -> &'static str {
    use v1::SupervisorStartupStage as S;
    match stage {
        S::Unspecified => "unspecified",
        S::Config => "config",
        S::Policy => "policy",
        S::Identity => "identity",
        S::Netns => "netns",
        S::SupervisorSeccomp => "supervisor-seccomp",
        S::WorkloadSeccomp => "workload-seccomp",
        S::BootHook => "boot-hook",
        S::Privileges => "privileges",
        S::Spawn => "spawn",
        S::Gateway => "gateway",
        S::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn report_supervisor_error_uses_the_interface_field_numbers() {
        let req = v1::ReportSupervisorErrorRequest {
            sandbox_id: "a".into(),
            instance_id: "b".into(),
            stage: v1::SupervisorStartupStage::Policy as i32,
            message: "m".into(),
        };
        // field 1 (LEN) "a", field 2 (LEN) "b", field 3 (VARINT) 2, field 4 (LEN) "m"
        assert_eq!(
            req.encode_to_vec(),
            vec![0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 2, 0x22, 1, b'm']
        );
    }

    #[test]
    fn hello_degraded_list_is_field_100() {
        let hello = v1::SupervisorHello {
            degraded: vec![v1::DegradedSubsystem {
                subsystem: "netns".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        // tag = (100 << 3) | 2 = 802 = varint [0xa2, 0x06]
        assert_eq!(&hello.encode_to_vec()[..2], &[0xa2, 0x06]);
    }

    #[test]
    fn every_reason_round_trips_through_its_word() {
        for r in ReadyReason::ALL {
            assert_eq!(ReadyReason::parse(r.as_str()), Some(r));
        }
        assert_eq!(ReadyReason::parse("DependenciesReady"), None);
    }

    #[test]
    fn phase_numbers_match_upstream() {
        assert_eq!(v1::SandboxPhase::Ready as i32, 2);
        assert_eq!(v1::SandboxPhase::Error as i32, 3);
        assert_eq!(v1::SandboxPhase::Starting as i32, 8);
    }
}
