//! Deliberately broken behaviours, the proof that the conformance suite can fail.
//!
//! Compiled only with the cargo feature `mutants` (no default build has it) and chosen at run
//! time by `OPENSHELL_MUTANT=<name>`. Each mutant breaks exactly one rule, and the suite's mutant
//! test asserts that exactly the requirement guarding that rule fails:
//!
//! | name | breaks |
//! |---|---|
//! | `no-cleanup` | backend resources are never removed after Error |
//! | `overwrite-error` | a late driver update overwrites Error |
//! | `ready-without-session` | the driver's "running" makes a sandbox Ready |
//! | `foreign-token` | a report is accepted with another sandbox's token |
//! | `raw-messages` | escape sequences are stored raw |
//!
//! A mutants build also forwards `OPENSHELL_MUTANT` to supervisors, whose own mutants
//! (`policy-fallback`) live in the supervisor crate.

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

/// Whether mutant `name` is active.
pub fn active(name: &str) -> bool {
    selected().as_deref() == Some(name)
}
