//! Deliberately broken behaviours, the proof that the conformance suite can fail.
//!
//! Compiled only with the cargo feature `mutants` (no default build has it) and chosen at run
//! time by `OPENSHELL_MUTANT=<name>` in the gateway's environment; the selector itself lives in
//! the driver interface crate ([`openshell_driver::mutants`]) so the drivers share it. Each
//! mutant is a plausible bug in the component the rule governs, and the suite's mutant tests
//! (`conformance/tests/mutants.rs`) assert that the requirement guarding that rule fails. The
//! gateway's own:
//!
//! | name | breaks | requirement |
//! |---|---|---|
//! | `overwrite-error` | a late driver update overwrites Error | OSC-ERR-003 |
//! | `list-stale-status` | ListSandboxes reads each record's first stored version | OSC-ERR-004 |
//! | `ready-wrong-reason` | Ready with upstream's `DependenciesReady` | OSC-READY-001 |
//! | `exit-code-dropped` | ProcessExited without `status.exit_code` | OSC-READY-002 |
//! | `ready-without-session` | the driver's "running" makes a sandbox Ready | OSC-READY-003 |
//! | `no-demote` | a session's end demotes nothing | OSC-READY-004 |
//! | `no-repromote` | only a starting sandbox is promoted, never one that lost its session | OSC-READY-005 |
//! | `demote-error` | a session's end demotes an Error | OSC-READY-006 |
//! | `demote-superseded` | the end of a superseded session demotes | OSC-READY-007 |
//! | `reconnect-rejected` | a hello from an instance already seen is refused | OSC-READY-008 |
//! | `no-cleanup` | backend resources are never removed after Error | OSC-CLEAN-001 |
//! | `no-auth` | a report without a token is accepted | OSC-SEC-001 |
//! | `foreign-token` | a report is accepted with another sandbox's token | OSC-SEC-002 |
//! | `unknown-sandbox-ok` | a report for an unknown sandbox is accepted and dropped | OSC-SEC-003 |
//! | `token-in-status` | the initial condition message carries the credential | OSC-SEC-004 |
//! | `logs-unredacted` | output lines reach `WatchSandbox` with the credential a sandbox printed | OSC-SEC-004 |
//! | `report-unredacted` | a reported startup-error message is stored with the credential in it | OSC-SEC-004 |
//! | `raw-messages` | escape sequences are stored raw | OSC-HYG-001 |
//! | `no-truncate` | messages are stored at any length | OSC-HYG-002 |
//! | `empty-image-accepted` | a create without an image is admitted | OSC-API-001 |
//! | `lenient-names` | any non-empty name is admitted | OSC-API-002 |
//! | `duplicate-names` | the name check before the insert is gone | OSC-API-003 |
//! | `delete-unknown-ok` | deleting an unknown name answers "nothing deleted" | OSC-API-004 |
//! | `watch-no-snapshot` | a watch starts with the next change, not the snapshot | OSC-API-005 |
//! | `watch-ignores-stop` | `stop_on_terminal` is ignored | OSC-API-006 |
//! | `selector-any` | a label selector matches when any pair matches | OSC-API-007 |
//!
//! The process driver's (`image-missing-create-failed`, `delete-leaves-root`, `unlabelled`,
//! `slow-teardown`, `image-env-dropped`) are in `reference/driver-process`, the Docker driver's
//! stand-ins for a foreign implementation (`foreign-labels`, `foreign-entrypoint`,
//! `leak-created`) in `reference/driver-docker`, the supervisor's in its `mutants` module.
//! A mutants build also forwards `OPENSHELL_MUTANT` to supervisors through the sandbox
//! environment (`request::admit`), which is how a mutant is selected inside a container or VM.

pub use openshell_driver::mutants::{active, selected, ENV};
