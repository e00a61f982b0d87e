//! Deliberately broken behaviours of the supervisor, the proof that the conformance suite can
//! fail: compiled in only with the cargo feature `mutants` (never a default build), chosen at
//! run time by `OPENSHELL_MUTANT=<name>` in the sandbox environment (a mutants gateway forwards
//! its own). Each is a plausible bug in the step the rule governs:
//!
//! | name | breaks | requirement |
//! |---|---|---|
//! | `policy-fallback` | a broken policy silently replaced by the default (upstream's old bug) | OSC-ERR-001 |
//! | `identity-fallback` | a missing user replaced by `nobody` | OSC-ERR-002 |
//! | `hook-as-root` | the boot hook skips the privilege drop | OSC-BOOT-001 |
//! | `hook-concurrent` | the main process is started before the hook, not after it | OSC-BOOT-001 |
//! | `hook-failure-ignored` | a failing hook's status is ignored | OSC-BOOT-002 |
//! | `hook-sh-fallback` | a hook without its exec bit is run through `/bin/sh` | OSC-BOOT-003 |
//! | `hook-no-timeout` | the hook timeout is never enforced | OSC-BOOT-004 |
//! | `hook-missing-fatal` | a missing hook is an error | OSC-BOOT-005 |
//! | `netns-failure-ignored` | strict mode swallows a netns failure | OSC-BOOTSTRAP-001 |
//! | `best-effort-ignored` | `OPENSHELL_BEST_EFFORT_FAILURES` is never read | OSC-BOOTSTRAP-002 |
//! | `skip-ignored` | `OPENSHELL_SKIP_BOOTSTRAP` is never read | OSC-BOOTSTRAP-003 |
//! | `degraded-unreported` | the hello's degraded list is always empty | OSC-BOOTSTRAP-004 |
//! | `degraded-spurious` | the hello claims netns was skipped when it was not | OSC-BOOTSTRAP-005 |
//! | `best-effort-policy` | best-effort mode also tolerates a broken policy (default policy) | OSC-BOOTSTRAP-006 |
//! | `no-workload-seccomp` | the workload filter is never applied (only the inherited prelude) | OSC-SEC-005 |
//! | `token-inherited` | the sandbox token stays in the children's environment | OSC-SEC-005 |
//! | `lenient-config` | unknown or malformed settings fall back to defaults | OSC-CONFIG-001 |
//! | `argv-ignored` | the image's command (argv) is ignored for a built-in default | OSC-API-010 |

/// The selected mutant, if this is a mutants build and one is selected.
#[cfg(feature = "mutants")]
pub fn selected() -> Option<String> {
    std::env::var("OPENSHELL_MUTANT")
        .ok()
        .filter(|m| !m.is_empty())
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
