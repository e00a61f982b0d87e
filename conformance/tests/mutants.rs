//! Proof that the suite can fail: one test per mutant of the reference (cargo feature `mutants`,
//! built into `target/mutants/` by `ci/build-mutants.sh`, never in a default build), each a
//! plausible bug in the component a rule governs. A mutant is *caught* when its run fails and
//! the failed requirements include the one it targets; other failed requirements are printed,
//! not fatal (one broken rule can break a case that checks several).
//!
//! Each test runs the cases that cover its target requirement (`--filter OSC-…`) on the lane
//! that can show the bug (the process lane; docker-runsc for the gVisor-only bootstrap rules,
//! whose fixture images are built with the mutant supervisor, since the runner computes image
//! references from the binaries beside the gateway it starts). The mutant is chosen by
//! `OPENSHELL_MUTANT` in the started gateway's environment; a mutants gateway forwards it into
//! every sandbox's environment, which is how the supervisor inside a container learns it.
//!
//! `coverage` fails when a requirement of SPEC.md has no mutant, and prints the table
//! requirement → mutant → component → lane → the cases that check it.
//!
//! `OPENSHELL_MUTANTS_DIR` names the binaries; when it is set (CI sets it) missing binaries fail
//! the tests, otherwise they say why they skipped.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use openshell_conformance::driver::Driver;
use openshell_conformance::runner::{self, RunConfig};
use openshell_conformance::spec::{catalog, Level, Req};

/// Where a mutant lives.
#[derive(Debug, Clone, Copy)]
enum Component {
    Gateway,
    Supervisor,
    ProcessDriver,
}

/// `(mutant, the requirement it breaks, its component, the lane that shows it)`.
const MUTANTS: &[(&str, Req, Component, Driver)] = {
    use Component::*;
    use Driver::{DockerRunsc as Runsc, Process as P};
    &[
        ("policy-fallback", Req::ERR_001, Supervisor, P),
        ("identity-fallback", Req::ERR_002, Supervisor, P),
        ("overwrite-error", Req::ERR_003, Gateway, P),
        ("list-stale-status", Req::ERR_004, Gateway, P),
        ("hook-as-root", Req::BOOT_001, Supervisor, P),
        ("hook-concurrent", Req::BOOT_001, Supervisor, P),
        ("hook-failure-ignored", Req::BOOT_002, Supervisor, P),
        ("hook-sh-fallback", Req::BOOT_003, Supervisor, P),
        ("hook-no-timeout", Req::BOOT_004, Supervisor, P),
        ("hook-missing-fatal", Req::BOOT_005, Supervisor, P),
        ("ready-wrong-reason", Req::READY_001, Gateway, P),
        ("exit-code-dropped", Req::READY_002, Gateway, P),
        ("ready-without-session", Req::READY_003, Gateway, P),
        ("no-demote", Req::READY_004, Gateway, P),
        ("no-repromote", Req::READY_005, Gateway, P),
        ("demote-error", Req::READY_006, Gateway, P),
        ("demote-superseded", Req::READY_007, Gateway, P),
        ("reconnect-rejected", Req::READY_008, Gateway, P),
        (
            "netns-failure-ignored",
            Req::BOOTSTRAP_001,
            Supervisor,
            Runsc,
        ),
        ("best-effort-ignored", Req::BOOTSTRAP_002, Supervisor, Runsc),
        ("skip-ignored", Req::BOOTSTRAP_003, Supervisor, Runsc),
        ("degraded-unreported", Req::BOOTSTRAP_004, Supervisor, P),
        ("degraded-spurious", Req::BOOTSTRAP_005, Supervisor, P),
        ("best-effort-policy", Req::BOOTSTRAP_006, Supervisor, P),
        ("no-cleanup", Req::CLEAN_001, Gateway, P),
        ("delete-leaves-root", Req::CLEAN_002, ProcessDriver, P),
        ("unlabelled", Req::CLEAN_003, ProcessDriver, P),
        ("slow-teardown", Req::CLEAN_004, ProcessDriver, P),
        ("no-auth", Req::SEC_001, Gateway, P),
        ("foreign-token", Req::SEC_002, Gateway, P),
        ("unknown-sandbox-ok", Req::SEC_003, Gateway, P),
        ("token-in-status", Req::SEC_004, Gateway, P),
        ("logs-unredacted", Req::SEC_004, Gateway, P),
        ("report-unredacted", Req::SEC_004, Gateway, P),
        ("no-workload-seccomp", Req::SEC_005, Supervisor, P),
        ("token-inherited", Req::SEC_005, Supervisor, P),
        ("raw-messages", Req::HYG_001, Gateway, P),
        ("no-truncate", Req::HYG_002, Gateway, P),
        ("empty-image-accepted", Req::API_001, Gateway, P),
        ("lenient-names", Req::API_002, Gateway, P),
        ("duplicate-names", Req::API_003, Gateway, P),
        ("delete-unknown-ok", Req::API_004, Gateway, P),
        ("watch-no-snapshot", Req::API_005, Gateway, P),
        ("watch-ignores-stop", Req::API_006, Gateway, P),
        ("selector-any", Req::API_007, Gateway, P),
        (
            "image-missing-create-failed",
            Req::API_008,
            ProcessDriver,
            P,
        ),
        ("image-env-dropped", Req::API_009, ProcessDriver, P),
        ("argv-ignored", Req::API_010, Supervisor, P),
        ("lenient-config", Req::CONFIG_001, Supervisor, P),
    ]
};

/// The per-case deadline of a mutant run: healthy cases take seconds; a broken one would
/// otherwise sit out the lane's default waiting for what never comes.
const CASE_TIMEOUT: Duration = Duration::from_secs(20);

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

fn run_mutant(mutant: &'static str, target: Req, lane: Driver) -> Result<(), Failed> {
    let Some(dir) = mutants_dir()? else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let gateway = dir.join("openshell-gateway");
    rt.block_on(async {
        if let Err(reason) = runner::prerequisites(lane, false, Some(&gateway)).await {
            return Err(Failed::from(format!(
                "lane {lane} cannot run mutant {mutant}: {reason}"
            )));
        }
        let mut config = RunConfig::new(lane);
        config.gateway_bin = Some(gateway);
        config.gateway_env = vec![("OPENSHELL_MUTANT".into(), mutant.into())];
        config.filter = Some(target.id().to_string());
        config.case_timeout = Some(CASE_TIMEOUT);
        let report = runner::run(&config)
            .await
            .map_err(|e| Failed::from(format!("mutant {mutant}: the run did not start: {e}")))?;
        let failed = report.failed_requirements();
        let catching: Vec<String> = report
            .cases
            .iter()
            .filter(|c| c.failed_requirements.iter().any(|r| r == target.id()))
            .map(|c| c.id.clone())
            .collect();
        println!("mutant {mutant} (targets {target}, lane {lane}): failed requirements {failed:?}; caught by {catching:?}");
        if failed.contains(target.id()) {
            Ok(())
        } else {
            let summary: Vec<String> = report
                .cases
                .iter()
                .map(|c| format!("  {} {}: {}", c.id, c.result.label(), c.message.lines().next().unwrap_or("")))
                .collect();
            Err(Failed::from(format!(
                "mutant {mutant} escaped: no case failed {target} on lane {lane}\n{}",
                summary.join("\n")
            )))
        }
    })
}

/// Every requirement has a mutant; prints the coverage table.
fn coverage() -> Result<(), Failed> {
    let fixtures = openshell_fixtures::Catalog::load_default()?;
    let cases = catalog::all(&fixtures);
    let mut missing = Vec::new();
    println!("requirement        level     mutant                        component       lane          checked by");
    for req in Req::ALL {
        let level = req.level();
        let checked: Vec<&str> = cases
            .iter()
            .filter(|c| c.requirements.contains(&req))
            .map(|c| c.id.as_str())
            .collect();
        let mine: Vec<_> = MUTANTS.iter().filter(|(_, r, _, _)| *r == req).collect();
        if mine.is_empty() {
            missing.push(format!("{req} ({level})"));
            println!("{:<18} {:<9} (none)", req.id(), level.name());
        }
        for (mutant, _, component, lane) in mine {
            println!(
                "{:<18} {:<9} {mutant:<29} {:<15} {:<13} {}",
                req.id(),
                level.name(),
                format!("{component:?}"),
                lane.name(),
                checked.join(", ")
            );
        }
    }
    let core_missing: Vec<&String> = missing
        .iter()
        .filter(|m| m.ends_with(&format!("({})", Level::Core.name())))
        .collect();
    if !core_missing.is_empty() {
        return Err(Failed::from(format!(
            "core requirements without a mutant: {core_missing:?}"
        )));
    }
    if !missing.is_empty() {
        println!("extended requirements without a mutant: {missing:?}");
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let mut trials = vec![Trial::test("coverage", coverage)];
    for &(mutant, target, _, lane) in MUTANTS {
        let name = format!("{}::{mutant}", lane.name().replace('-', "_"));
        trials.push(Trial::test(name, move || run_mutant(mutant, target, lane)));
    }
    libtest_mimic::run(&args, trials).exit_code()
}
