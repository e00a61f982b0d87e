//! `bench`: a small real run on the process lane measures every figure, and the release gate
//! (`bench compare`, `bench run --baseline`) exits 0 against an unchanged result, 1 against a
//! crafted regressed one, 2 against another schema.

use std::path::PathBuf;
use std::process::Command;

use openshell_conformance::bench::{BenchResult, Facts, Figure, LaneResult, SCHEMA};

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_openshell-conformance"))
}

fn result(measured_ms: f64, baseline_ms: f64, schema: u32) -> BenchResult {
    BenchResult {
        schema,
        facts: Facts::default(),
        lanes: vec![LaneResult {
            lane: "docker".into(),
            figures: vec![Figure::new(
                "create_to_ready",
                "x",
                vec![measured_ms; 3],
                Some(("docker run -d".into(), vec![baseline_ms; 3])),
            )],
            leaks: Vec::new(),
            notes: Vec::new(),
        }],
    }
}

fn write(dir: &std::path::Path, name: &str, r: &BenchResult) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string(r).unwrap()).unwrap();
    path
}

fn compare(result: &PathBuf, baseline: &PathBuf) -> i32 {
    Command::new(binary())
        .args(["bench", "compare"])
        .arg(result)
        .arg(baseline)
        .output()
        .unwrap()
        .status
        .code()
        .unwrap_or(-1)
}

#[test]
fn the_gate_passes_an_unchanged_result_fails_a_regressed_one_and_refuses_another_schema() {
    let dir = tempfile::tempdir().unwrap();
    let base = write(dir.path(), "base.json", &result(105.0, 100.0, SCHEMA));
    let same = write(dir.path(), "same.json", &result(210.0, 200.0, SCHEMA));
    let slow = write(dir.path(), "slow.json", &result(160.0, 100.0, SCHEMA));
    let other = write(dir.path(), "other.json", &result(105.0, 100.0, SCHEMA + 1));
    assert_eq!(compare(&same, &base), 0);
    assert_eq!(compare(&slow, &base), 1);
    assert_eq!(compare(&other, &base), 2);
}

#[test]
fn a_small_process_lane_run_measures_every_figure_beside_its_baseline() {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let bin = binary().with_file_name("openshell-gateway");
    if !root || !bin.exists() || !binary().with_file_name("openshell").exists() {
        let required = std::env::var("OPENSHELL_REQUIRE_LANES").unwrap_or_default();
        assert!(
            !required.contains("process"),
            "the process lane cannot run the bench here"
        );
        println!("SKIPPED: the process lane needs root and the built binaries");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = Command::new(binary())
        .args([
            "bench", "run", "--driver", "process", "--runs", "2", "--warmup", "0", "--json",
        ])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = BenchResult::load(&json).unwrap();
    assert_eq!(r.schema, SCHEMA);
    assert!(r.facts.cpus > 0 && !r.facts.kernel.is_empty());
    let lane = &r.lanes[0];
    assert!(lane.leaks.is_empty(), "{:?}", lane.leaks);
    for f in &lane.figures {
        assert!(
            f.not_measured.is_none(),
            "{} not measured: {:?}",
            f.name,
            f.not_measured
        );
        assert_eq!(f.samples_ms.len(), 2, "{}", f.name);
    }
    for name in [
        "create_to_ready",
        "stale_policy_visible",
        "missing_user_visible",
    ] {
        let f = lane.figures.iter().find(|f| f.name == name).unwrap();
        assert_eq!(f.ratios.len(), 2, "{name}: ratios pair by pair");
    }
    // The gate against itself.
    assert_eq!(compare(&json, &json), 0);
}
