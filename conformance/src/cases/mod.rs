//! The case bodies, one module per requirement group, and the table of named cases.
//!
//! A body gets a [`Harness`] and returns a [`CaseResult`]: `Ok`, a failure naming a requirement
//! with expected and observed values, or a skip naming the missing prerequisite. The runner adds
//! the status history, deletes what the case created and audits the backend afterwards.
//!
//! A case whose *precondition* fails (the `stale-policy` sandbox never reaches Error, the `good`
//! one never Ready) names the requirement of that precondition (`OSC-ERR-001`, `OSC-READY-001`),
//! not its own, so one broken rule fails one requirement id across the run.

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod fixture;
pub mod hygiene;
pub mod lifecycle;
pub mod security;
pub mod session;

use crate::check::CaseResult;
use crate::features::Feature;
use crate::harness::Harness;
use crate::spec::CaseFn;
use crate::spec::Req;
use crate::Driver;

/// A named case.
#[derive(Debug, Clone, Copy)]
pub struct Named {
    /// The case id.
    pub id: &'static str,
    /// The requirements it covers (the first is the main one).
    pub requirements: &'static [Req],
    /// The lanes it applies to.
    pub drivers: &'static [Driver],
    /// The features it needs (none for a core case).
    pub features: &'static [Feature],
    /// One line for `list`.
    pub summary: &'static str,
    /// The body.
    pub body: CaseFn,
}

const ALL: &[Driver] = &[
    Driver::Process,
    Driver::Docker,
    Driver::DockerRunsc,
    Driver::Vm,
    Driver::K3s,
];
const RUNSC: &[Driver] = &[Driver::DockerRunsc];
const NOT_RUNSC: &[Driver] = &[Driver::Process, Driver::Docker, Driver::Vm, Driver::K3s];

macro_rules! body {
    ($f:path) => {
        |h: Harness| -> futures::future::BoxFuture<'static, CaseResult> { Box::pin($f(h)) }
    };
}

/// Every named case.
pub fn named() -> Vec<Named> {
    vec![
        Named {
            id: "empty-image-is-invalid-argument",
            requirements: &[Req::API_001],
            drivers: ALL,
            features: &[],
            summary: "CreateSandbox with an empty image fails with InvalidArgument",
            body: body!(api::empty_image),
        },
        Named {
            id: "invalid-names-are-invalid-argument",
            requirements: &[Req::API_002],
            drivers: ALL,
            features: &[],
            summary: "upper case, underscore, leading dash and 64-character names fail with InvalidArgument",
            body: body!(api::invalid_names),
        },
        Named {
            id: "duplicate-name-is-already-exists",
            requirements: &[Req::API_003],
            drivers: ALL,
            features: &[],
            summary: "a second CreateSandbox with the same name fails with AlreadyExists",
            body: body!(api::duplicate_name),
        },
        Named {
            id: "unknown-sandbox-is-not-found",
            requirements: &[Req::API_004],
            drivers: ALL,
            features: &[],
            summary: "GetSandbox and DeleteSandbox of an unknown name fail with NotFound",
            body: body!(api::unknown_sandbox),
        },
        Named {
            id: "watch-snapshot-first-then-rising-versions",
            requirements: &[Req::API_005],
            drivers: ALL,
            features: &[],
            summary: "a watch starts with the current snapshot; resource_version rises strictly",
            body: body!(api::watch_snapshot_first),
        },
        Named {
            id: "watch-stop-on-terminal-ends-stream",
            requirements: &[Req::API_006],
            drivers: ALL,
            features: &[],
            summary: "stop_on_terminal ends the stream at Ready and at Error",
            body: body!(api::stop_on_terminal),
        },
        Named {
            id: "list-selects-by-run-label",
            requirements: &[Req::API_007],
            drivers: ALL,
            features: &[],
            summary: "ListSandboxes with a label selector returns exactly the labelled sandboxes",
            body: body!(api::list_by_label),
        },
        Named {
            id: "missing-image-is-image-not-found",
            requirements: &[Req::API_008],
            drivers: ALL,
            features: &[],
            summary: "an unknown fixture hash ends in Error / ImageNotFound",
            body: body!(api::image_not_found),
        },
        Named {
            id: "error-never-overwritten",
            requirements: &[Req::ERR_003],
            drivers: ALL,
            features: &[],
            summary: "after SupervisorError the sandbox stays Error, same reason and message, while its backend exits",
            body: body!(lifecycle::error_never_overwritten),
        },
        Named {
            id: "error-visible-through-get-list-watch",
            requirements: &[Req::ERR_004],
            drivers: ALL,
            features: &[],
            summary: "Get, List and a new Watch show the same Error phase, reason and message",
            body: body!(lifecycle::error_visible_everywhere),
        },
        Named {
            id: "cleanup-after-error",
            requirements: &[Req::CLEAN_001, Req::CLEAN_004],
            drivers: ALL,
            features: &[],
            summary: "after Error no backend resource with the sandbox-id label remains, without a delete",
            body: body!(lifecycle::cleanup_after_error),
        },
        Named {
            id: "cleanup-after-delete",
            requirements: &[Req::CLEAN_002, Req::CLEAN_004],
            drivers: ALL,
            features: &[],
            summary: "after DeleteSandbox the sandbox is NotFound and its backend resources are gone",
            body: body!(lifecycle::cleanup_after_delete),
        },
        Named {
            id: "backend-resources-carry-labels",
            requirements: &[Req::CLEAN_003],
            drivers: ALL,
            features: &[],
            summary: "a Ready sandbox's backend resources carry openshell.sandbox-id and openshell.run-id",
            body: body!(lifecycle::backend_labels),
        },
        Named {
            id: "rogue-reports-are-refused",
            requirements: &[Req::SEC_001, Req::SEC_002, Req::SEC_003],
            drivers: ALL,
            features: &[Feature::ImageEntrypoint],
            summary: "the rogue probe's reports without a token, for another or a deleted sandbox are refused",
            body: body!(security::rogue_reports_refused),
        },
        Named {
            id: "token-absent-from-read-apis",
            requirements: &[Req::SEC_004],
            drivers: ALL,
            features: &[Feature::ImageEntrypoint],
            summary: "no string of Get/List/Watch holds the token (by hash), its variable name, or a long hex run",
            body: body!(security::token_absent),
        },
        Named {
            id: "hostile-message-stored-escaped-and-bounded",
            requirements: &[Req::HYG_001, Req::HYG_002],
            drivers: ALL,
            features: &[Feature::ImageEntrypoint],
            summary: "a 10 KiB report with ESC, BEL, DEL, NUL and C1 is stored escaped and within 4096 bytes",
            body: body!(hygiene::hostile_message),
        },
        Named {
            id: "session-end-demotes-and-reconnect-promotes",
            requirements: &[
                Req::READY_004,
                Req::READY_005,
                Req::READY_006,
                Req::READY_007,
                Req::READY_008,
            ],
            drivers: ALL,
            features: &[],
            summary: "a scripted supervisor's sessions: end demotes, a new or the same instance re-promotes, a superseded end and an end after Error change nothing",
            body: body!(session::session_rules),
        },
        Named {
            id: "best-effort-keeps-policy-fatal",
            requirements: &[Req::BOOTSTRAP_006],
            drivers: ALL,
            features: &[],
            summary: "OPENSHELL_BEST_EFFORT_FAILURES=1: a stale policy still ends in Error / SupervisorError `policy: …`",
            body: body!(bootstrap::best_effort_keeps_policy_fatal),
        },
        Named {
            id: "best-effort-keeps-identity-fatal",
            requirements: &[Req::BOOTSTRAP_006],
            drivers: ALL,
            features: &[],
            summary: "OPENSHELL_BEST_EFFORT_FAILURES=1: a missing user still ends in Error / SupervisorError `identity: …`",
            body: body!(bootstrap::best_effort_keeps_identity_fatal),
        },
        Named {
            id: "best-effort-keeps-boot-hook-fatal",
            requirements: &[Req::BOOTSTRAP_006],
            drivers: ALL,
            features: &[],
            summary: "OPENSHELL_BEST_EFFORT_FAILURES=1: a failing boot hook still ends in Error / SupervisorError `boot-hook: …`",
            body: body!(bootstrap::best_effort_keeps_boot_hook_fatal),
        },
        Named {
            id: "malformed-supervisor-settings-are-config-errors",
            requirements: &[Req::CONFIG_001],
            drivers: ALL,
            features: &[Feature::SettingsEnv],
            summary: "an unknown OPENSHELL_SKIP_BOOTSTRAP entry, a non-boolean best-effort value and a non-numeric hook timeout end in `config: …`",
            body: body!(config::malformed_settings),
        },
        Named {
            id: "image-command-is-the-default",
            requirements: &[Req::API_010],
            drivers: ALL,
            features: &[Feature::ImageCommand],
            summary: "with an empty spec.command the image's CMD is the main process (main-exits exits 7)",
            body: body!(api::image_command_default),
        },
        Named {
            id: "runsc-strict-netns-is-fatal",
            requirements: &[Req::BOOTSTRAP_001],
            drivers: RUNSC,
            features: &[],
            summary: "gVisor, strict: `good` ends in Error / SupervisorError `netns: …` naming the errno",
            body: body!(bootstrap::strict_netns_eperm),
        },
        Named {
            id: "runsc-best-effort-is-ready",
            requirements: &[Req::BOOTSTRAP_002],
            drivers: RUNSC,
            features: &[],
            summary: "gVisor, OPENSHELL_BEST_EFFORT_FAILURES=1: the netns failure is tolerated, Ready / SupervisorConnected",
            body: body!(bootstrap::best_effort_ready),
        },
        Named {
            id: "runsc-best-effort-ready-degraded",
            requirements: &[Req::BOOTSTRAP_004],
            drivers: RUNSC,
            features: &[Feature::DegradedCondition],
            summary: "gVisor, OPENSHELL_BEST_EFFORT_FAILURES=1: Ready with EnforcementDegraded naming netns",
            body: body!(bootstrap::best_effort_degraded),
        },
        Named {
            id: "declared-skip-netns-ready-degraded",
            requirements: &[Req::BOOTSTRAP_003, Req::BOOTSTRAP_004],
            drivers: ALL,
            features: &[Feature::SettingsEnv, Feature::DegradedCondition],
            summary: "OPENSHELL_SKIP_BOOTSTRAP=netns: Ready with EnforcementDegraded naming netns",
            body: body!(bootstrap::declared_skip_degraded),
        },
        Named {
            id: "no-degraded-condition-when-nothing-failed",
            requirements: &[Req::BOOTSTRAP_005],
            drivers: NOT_RUNSC,
            features: &[Feature::DegradedCondition],
            summary: "strict mode with nothing failing: Ready and no EnforcementDegraded=True",
            body: body!(bootstrap::nothing_degraded),
        },
    ]
}
