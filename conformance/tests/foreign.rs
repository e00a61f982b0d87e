//! The suite judges a foreign implementation correctly (issue: running it against upstream
//! OpenShell), shown without upstream: the reference gateway made to look foreign by mutants of
//! its Docker driver (`foreign-labels`: containers labelled `openshell.ai/sandbox-id`, request
//! labels not copied; `foreign-entrypoint`: the image's ENTRYPOINT replaced by the supervisor;
//! `leak-created`: a never-started container left under an id the suite never learns), on the
//! docker lane.
//!
//! - With the right declarations (no `image-entrypoint` feature, the foreign label keys, an
//!   expectations file for the core cases the replaced entrypoint breaks) the run is judged
//!   correctly: exit 0, the entrypoint cases `not-supported`, the expected failures `xfail`.
//! - With the audit pointed at the contract's keys, the run fails as blind.
//! - A container left in `Created` state is found by the run's audit.
//!
//! Needs the mutant binaries (`ci/build-mutants.sh`; `OPENSHELL_MUTANTS_DIR` makes their absence
//! a failure) and a Docker engine.

use std::path::PathBuf;
use std::time::Duration;

use openshell_conformance::driver::Driver;
use openshell_conformance::features::Feature;
use openshell_conformance::leaks::LabelKeys;
use openshell_conformance::runner::{self, Outcome, RunConfig, RunReport};

fn mutants_dir() -> Option<PathBuf> {
    let required = std::env::var_os("OPENSHELL_MUTANTS_DIR");
    let dir = required
        .clone()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/mutants"));
    if dir.join("openshell-gateway").exists() {
        return Some(dir);
    }
    assert!(
        required.is_none(),
        "{} is missing: run ci/build-mutants.sh",
        dir.display()
    );
    println!("SKIPPED: no mutant binaries in {}", dir.display());
    None
}

fn foreign_keys() -> LabelKeys {
    LabelKeys {
        sandbox: "openshell.ai/sandbox-id".into(),
        run: None,
    }
}

/// Runs the docker lane against the mutants gateway with `mutants` selected.
fn run(mutants: &str, configure: impl FnOnce(&mut RunConfig)) -> Option<RunReport> {
    let dir = mutants_dir()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let gateway = dir.join("openshell-gateway");
    if let Err(reason) = rt.block_on(runner::prerequisites(Driver::Docker, false, Some(&gateway))) {
        let required = std::env::var("OPENSHELL_REQUIRE_LANES").unwrap_or_default();
        assert!(
            !required.contains("docker"),
            "the docker lane cannot run: {reason}"
        );
        println!("SKIPPED: {reason}");
        return None;
    }
    let mut config = RunConfig::new(Driver::Docker);
    config.gateway_bin = Some(gateway);
    config.gateway_env = vec![("OPENSHELL_MUTANT".into(), mutants.into())];
    config.case_timeout = Some(Duration::from_secs(25));
    configure(&mut config);
    let report = rt.block_on(runner::run(&config)).unwrap();
    if mutants.contains("leak-created") {
        rt.block_on(remove_strays(&report));
    }
    Some(report)
}

/// Removes what `leak-created` left for this run's sandboxes: the stray of sandbox `<id>` is
/// labelled `openshell.ai/sandbox-id=stray-<first 8 of id>`. Only this run's: the tests run at
/// once (nextest), and another test's strays must still be there for its own audit.
async fn remove_strays(report: &RunReport) {
    let Ok(docker) = bollard::Docker::connect_with_local_defaults() else {
        return;
    };
    let strays: Vec<String> = runner::created_ids(report)
        .iter()
        .filter(|id| id.len() >= 8)
        .map(|id| format!("openshell.ai/sandbox-id=stray-{}", &id[..8]))
        .collect();
    // One list per label: Docker ANDs several label filters.
    for stray in &strays {
        let filters = std::collections::HashMap::from([("label", vec![stray.as_str()])]);
        let options = bollard::query_parameters::ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        for c in docker
            .list_containers(Some(options))
            .await
            .unwrap_or_default()
        {
            if let Some(id) = c.id {
                let rm = bollard::query_parameters::RemoveContainerOptionsBuilder::new()
                    .force(true)
                    .build();
                let _ = docker.remove_container(&id, Some(rm)).await;
            }
        }
    }
}

fn outcome(report: &RunReport, id: &str) -> Outcome {
    report
        .cases
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("no case {id}"))
        .result
}

#[test]
fn a_foreign_gateway_with_its_declarations_is_judged_correctly() {
    let expectations =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/foreign/expectations.toml");
    // The features are the expectations file's declaration.
    let Some(report) = run("foreign-labels,foreign-entrypoint", |c| {
        c.label_keys = foreign_keys();
        c.expectations = Some(expectations);
    }) else {
        return;
    };
    println!("{}", report.table());
    assert_eq!(report.exit_code(), 0, "{}", report.table());
    assert!(!report.features.contains(&Feature::ImageEntrypoint));
    assert_eq!(
        outcome(&report, "image-command-is-the-default"),
        Outcome::NotSupported
    );
    assert_eq!(
        outcome(&report, "fixture-rogue-hygiene"),
        Outcome::NotSupported
    );
    assert_eq!(outcome(&report, "fixture-no-session"), Outcome::Xfail);
    assert_eq!(outcome(&report, "leak-audit"), Outcome::Passed);
}

#[test]
fn an_audit_pointed_at_the_wrong_label_keys_fails_as_blind() {
    let Some(report) = run("foreign-labels", |c| {
        c.filter = Some("=cleanup-after-delete".into());
    }) else {
        return;
    };
    let failed: Vec<_> = report
        .cases
        .iter()
        .filter(|c| c.result == Outcome::Failed)
        .map(|c| (c.id.clone(), c.message.clone()))
        .collect();
    assert!(
        failed
            .iter()
            .any(|(id, m)| id == "cleanup-after-delete" && m.contains("cannot see this backend")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|(id, m)| id == "leak-audit" && m.contains("cannot see this backend")),
        "{failed:?}"
    );
}

#[test]
fn a_container_left_in_created_state_is_found_by_the_run_audit() {
    let Some(report) = run("foreign-labels,leak-created", |c| {
        c.filter = Some("=fixture-good".into());
        c.label_keys = foreign_keys();
    }) else {
        return;
    };
    let audit = report
        .cases
        .iter()
        .find(|c| c.id == "leak-audit")
        .unwrap_or_else(|| panic!("no leak-audit case (nothing found?)\n{}", report.table()));
    assert_eq!(audit.result, Outcome::Failed, "{}", report.table());
    assert!(
        audit.message.contains("openshell-stray-") && audit.message.contains("[created]"),
        "{}",
        audit.message
    );
}
