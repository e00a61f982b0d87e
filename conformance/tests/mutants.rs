//! Proof that the suite can fail: each mutant of the reference (cargo feature `mutants`, built
//! into `target/mutants/` by `ci/build-mutants.sh`, never in a default build) breaks one rule,
//! and a full process-lane run against it must fail exactly the requirement guarding that rule,
//! and nothing else.
//!
//! The mutants run one after another in this one test: the mutant is chosen through the
//! environment (`OPENSHELL_MUTANT`, inherited by the gateway and forwarded to supervisors), which
//! is process-wide. `OPENSHELL_MUTANTS_DIR` names the binaries; when it is set (CI sets it) a
//! missing binary fails the test, otherwise the test says why it skipped.

use std::collections::BTreeSet;
use std::path::PathBuf;

use openshell_conformance::driver::Driver;
use openshell_conformance::runner::{self, RunConfig};

/// Mutant → the one requirement its run must fail.
const MUTANTS: &[(&str, &str)] = &[
    ("policy-fallback", "OSC-ERR-001"),
    ("no-cleanup", "OSC-CLEAN-001"),
    ("overwrite-error", "OSC-ERR-003"),
    ("ready-without-session", "OSC-READY-003"),
    ("foreign-token", "OSC-SEC-002"),
    ("raw-messages", "OSC-HYG-001"),
];

/// The mutant binaries; `Ok(None)` (with the reason printed) when they are absent and not required.
fn mutants_dir() -> Result<Option<PathBuf>, String> {
    let required = std::env::var_os("OPENSHELL_MUTANTS_DIR");
    let dir = required
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/mutants"));
    for binary in [
        "openshell-gateway",
        "openshell-supervisor",
        "openshell-probe",
    ] {
        if !dir.join(binary).exists() {
            let why = format!(
                "{} is missing: run ci/build-mutants.sh",
                dir.join(binary).display()
            );
            if required.is_some() {
                return Err(why);
            }
            println!("SKIPPED mutants: {why}");
            return Ok(None);
        }
    }
    Ok(Some(dir))
}

#[test]
fn every_mutant_fails_exactly_the_requirement_it_breaks() {
    let Some(dir) = mutants_dir().unwrap_or_else(|why| panic!("{why}")) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if let Err(reason) = rt.block_on(runner::prerequisites(
        Driver::Process,
        false,
        Some(&dir.join("openshell-gateway")),
    )) {
        panic!("the process lane cannot run the mutants: {reason}");
    }
    let mut wrong = Vec::new();
    for (mutant, requirement) in MUTANTS {
        // Process-wide, so: this test is the only one in its binary, and it sets the variable
        // before the run starts its gateway (which inherits it).
        std::env::set_var("OPENSHELL_MUTANT", mutant);
        let mut config = RunConfig::new(Driver::Process);
        config.gateway_bin = Some(dir.join("openshell-gateway"));
        // Healthy process-lane cases take a few seconds; a mutant's broken case would otherwise
        // sit out the lane's 60 s default waiting for what never comes.
        config.case_timeout = Some(std::time::Duration::from_secs(15));
        let report = rt
            .block_on(runner::run(&config))
            .unwrap_or_else(|e| panic!("mutant {mutant}: run failed to start: {e}"));
        let failed = report.failed_requirements();
        let expected = BTreeSet::from([requirement.to_string()]);
        println!("mutant {mutant}: failed {failed:?}");
        if failed != expected {
            let details: Vec<String> = report
                .cases
                .iter()
                .filter(|c| c.requirement != *requirement && failed.contains(&c.requirement))
                .map(|c| {
                    format!(
                        "  {} ({}): {}",
                        c.id,
                        c.requirement,
                        c.message.lines().next().unwrap_or("")
                    )
                })
                .collect();
            wrong.push(format!(
                "mutant {mutant}: expected exactly {expected:?} to fail, got {failed:?}\n{}",
                details.join("\n")
            ));
        }
    }
    std::env::remove_var("OPENSHELL_MUTANT");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
