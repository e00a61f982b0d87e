//! One nextest/libtest test per case and lane (`<lane>::<case-id>`), each calling the runner
//! library against a freshly started reference gateway, so filters, JUnit and test groups work.
//!
//! A lane whose prerequisites are missing (no root, no docker engine, no runsc, binaries not
//! built) makes its tests pass with a printed `SKIPPED … : <reason>` line, unless
//! `OPENSHELL_REQUIRE_LANES` lists the lane: then they fail with that reason.

use std::process::ExitCode;

use libtest_mimic::{Arguments, Failed, Trial};
use openshell_conformance::driver::{required_lanes_from_env, Driver};
use openshell_conformance::runner::{self, Outcome, RunConfig};

fn run_one(driver: Driver, case_id: String) -> Result<(), Failed> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let required = required_lanes_from_env().map_err(|e| Failed::from(e.to_string()))?;
        if let Err(reason) = runner::prerequisites(driver, false, None).await {
            if required.contains(&driver) {
                return Err(Failed::from(format!(
                    "required lane {driver} cannot run: {reason}"
                )));
            }
            println!("SKIPPED {case_id} on {driver}: {reason}");
            return Ok(());
        }
        let mut config = RunConfig::new(driver);
        config.filter = Some(format!("={case_id}"));
        config.require_lanes = required;
        let report = runner::run(&config)
            .await
            .map_err(|e| Failed::from(e.to_string()))?;
        let mut problems = Vec::new();
        for case in &report.cases {
            match case.result {
                Outcome::Passed | Outcome::Xfail => {}
                Outcome::Skipped | Outcome::NotSupported => {
                    println!("SKIPPED {} on {driver}: {}", case.id, case.message)
                }
                Outcome::Failed | Outcome::Xpass => {
                    problems.push(format!("{}: {}", case.id, case.message))
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Failed::from(problems.join("\n")))
        }
    })
}

fn main() -> ExitCode {
    let args = Arguments::from_args();
    let fixtures =
        openshell_fixtures::Catalog::load_default().expect("fixtures/manifest.toml loads");
    let cases = openshell_conformance::spec::catalog::all(&fixtures);
    let mut trials = Vec::new();
    for driver in Driver::AVAILABLE {
        for case in cases.iter().filter(|c| c.applies_to(driver)) {
            let id = case.id.clone();
            let name = format!("{}::{}", driver.name().replace('-', "_"), case.id);
            trials
                .push(Trial::test(name, move || run_one(driver, id)).with_kind(case.level.name()));
        }
    }
    libtest_mimic::run(&args, trials).exit_code()
}
