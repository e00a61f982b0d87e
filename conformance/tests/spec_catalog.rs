//! SPEC.md and the case catalog stay in step: every requirement has a case, every case names
//! only known requirements, and every fixture of the manifest gives a case.

use std::collections::BTreeSet;

use openshell_conformance::spec::{catalog, requirements};

#[test]
fn every_requirement_of_spec_md_is_covered_by_a_case() {
    let cases = catalog::all(&openshell_fixtures::Catalog::load_default().unwrap());
    let covered: BTreeSet<&str> = cases
        .iter()
        .flat_map(|c| c.requirements.iter().map(|r| r.id()))
        .collect();
    let missing: Vec<String> = requirements::all()
        .into_iter()
        .map(|r| r.id)
        .filter(|id| !covered.contains(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "requirements without a case: {missing:?}"
    );
}

#[test]
fn every_case_names_only_known_requirements() {
    let known: BTreeSet<String> = requirements::all().into_iter().map(|r| r.id).collect();
    for case in catalog::all(&openshell_fixtures::Catalog::load_default().unwrap()) {
        assert!(
            !case.requirements.is_empty(),
            "{} names no requirement",
            case.id
        );
        for r in &case.requirements {
            assert!(
                known.contains(r.id()),
                "case {} names unknown requirement {r}",
                case.id
            );
        }
        assert!(!case.drivers.is_empty(), "{} applies to no driver", case.id);
    }
}

#[test]
fn every_fixture_of_the_manifest_gives_a_case_on_the_process_lane() {
    let fixtures = openshell_fixtures::Catalog::load_default().unwrap();
    let cases = catalog::all(&fixtures);
    for f in fixtures.fixtures() {
        let id = format!("fixture-{}", f.name);
        let case = cases
            .iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("no case {id}"));
        assert!(
            case.applies_to(openshell_conformance::Driver::Process),
            "{id}"
        );
    }
}

#[test]
fn requirements_of_the_seeds_are_core_and_project_additions_extended_or_interfaces() {
    for r in requirements::all() {
        if r.source.starts_with("seed") {
            assert_eq!(r.level, requirements::Level::Core, "{}", r.id);
        }
    }
    let extended: Vec<String> = requirements::all()
        .into_iter()
        .filter(|r| r.level == requirements::Level::Extended)
        .map(|r| r.id)
        .collect();
    for group in ["OSC-SEC-", "OSC-HYG-"] {
        assert!(
            extended.iter().any(|id| id.starts_with(group)),
            "{group} requirements are project extensions"
        );
    }
}
