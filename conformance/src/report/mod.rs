//! The results of a run and the files written from them in `--report-dir`: `report.json`
//! ([`json`]), `junit.xml` ([`junit`]), `report.md` ([`markdown`]) and, per failed case, a
//! diagnostics folder `diagnostics/<case-id>/` with the status history and the backend output
//! tail ([`diagnostics`]).

pub mod diagnostics;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod verdicts;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::check::Failure;
use crate::expectations::{Entry, Expected};
use crate::features::Feature;
use crate::leaks::Resource;
use crate::spec::{Case, Level, Req};
use crate::Driver;

/// A latency a case measured, reported with the case in milliseconds (`latencies_ms` in
/// report.json, keyed by [`Latency::key`]). Measured from the suite's side of the API: from the
/// request (or the watch event that showed a state) to the event or backend listing that showed
/// the next one, so they include the suite's polling granularity (100 ms for backend listings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Latency {
    /// From the watch event that showed `Error` to the first backend listing with nothing of the
    /// sandbox left (OSC-CLEAN-001, OSC-CLEAN-004).
    ErrorToBackendGone,
    /// From the `DeleteSandbox` request to the first backend listing with nothing left
    /// (OSC-CLEAN-002, OSC-CLEAN-004).
    DeleteToBackendGone,
    /// From the `CreateSandbox` request to the watch event that showed `Ready`.
    CreateToReady,
    /// From the `CreateSandbox` request to the watch event that showed `Error`.
    CreateToError,
}

impl Latency {
    /// Every latency, in report order.
    pub const ALL: [Latency; 4] = [
        Latency::ErrorToBackendGone,
        Latency::DeleteToBackendGone,
        Latency::CreateToReady,
        Latency::CreateToError,
    ];

    /// The key in report.json (milliseconds).
    pub fn key(self) -> &'static str {
        match self {
            Latency::ErrorToBackendGone => "error_to_backend_gone",
            Latency::DeleteToBackendGone => "delete_to_backend_gone",
            Latency::CreateToReady => "create_to_ready",
            Latency::CreateToError => "create_to_error",
        }
    }
}

impl serde::Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.key())
    }
}

/// A case's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Passed.
    Passed,
    /// Failed.
    Failed,
    /// Not run (the reason is the message).
    Skipped,
    /// Failed, as the expectations file says.
    Xfail,
    /// Passed although the expectations file says it fails.
    Xpass,
    /// Not run: it needs a feature the run did not declare (named in the message).
    #[serde(rename = "not-supported")]
    NotSupported,
}

impl Outcome {
    /// Upper-case label for the console.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Passed => "PASS",
            Outcome::Failed => "FAIL",
            Outcome::Skipped => "SKIP",
            Outcome::Xfail => "XFAIL",
            Outcome::Xpass => "XPASS",
            Outcome::NotSupported => "N/S",
        }
    }
}

/// One case's report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseReport {
    /// Case id.
    pub id: String,
    /// The failed requirement, or the case's main one.
    pub requirement: String,
    /// Every requirement the failure breaks (empty unless failed).
    pub failed_requirements: Vec<String>,
    /// Every requirement the case covers.
    pub requirements: Vec<String>,
    /// core or extended.
    pub level: String,
    /// The lane.
    pub driver: String,
    /// The result.
    pub result: Outcome,
    /// Wall time.
    pub duration_ms: u64,
    /// The failure, skip reason or expectation note.
    pub message: String,
    /// The sandboxes the case created, as `name (id)`.
    pub sandboxes: Vec<String>,
    /// What the case measured, in milliseconds.
    pub latencies_ms: BTreeMap<Latency, u64>,
    /// The failure with history and logs, for diagnostics.
    #[serde(skip)]
    pub failure: Option<Failure>,
    /// Why the case found the backend invisible (fails the run's leak audit too).
    #[serde(skip)]
    pub blind: Option<String>,
    /// Requirements a failed case checked and found held before it failed.
    pub held_requirements: Vec<String>,
}

impl CaseReport {
    /// A report for `case`, not yet decided (passed).
    pub fn from_case(case: &Case, driver: Driver, elapsed: Duration) -> CaseReport {
        CaseReport {
            id: case.id.clone(),
            requirement: case
                .requirements
                .first()
                .map(|r| r.id().to_string())
                .unwrap_or_default(),
            failed_requirements: Vec::new(),
            requirements: case
                .requirements
                .iter()
                .map(|r| r.id().to_string())
                .collect(),
            level: case.level.name().to_string(),
            driver: driver.name().to_string(),
            result: Outcome::Passed,
            duration_ms: elapsed.as_millis() as u64,
            message: String::new(),
            sandboxes: Vec::new(),
            latencies_ms: BTreeMap::new(),
            failure: None,
            blind: None,
            held_requirements: Vec::new(),
        }
    }

    /// A case that needs features the run did not declare.
    pub fn not_supported(case: &Case, driver: Driver, missing: &[Feature]) -> CaseReport {
        let mut r = CaseReport::from_case(case, driver, Duration::ZERO);
        r.result = Outcome::NotSupported;
        r.message = format!(
            "not supported: needs the undeclared feature(s) {}",
            missing
                .iter()
                .map(|f| f.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
        r
    }

    /// A skipped case.
    pub fn skipped(case: &Case, driver: Driver, reason: &str) -> CaseReport {
        let mut r = CaseReport::from_case(case, driver, Duration::ZERO);
        r.result = Outcome::Skipped;
        r.message = reason.to_string();
        r
    }

    /// The run-level leak audit as a case: what it found left, or why it could not look (an
    /// audit that could not list the backend fails; it never passes blind).
    pub fn leak_audit(driver: Driver, audit: &Result<Vec<Resource>, String>) -> CaseReport {
        let requirement = Req::CLEAN_002.id().to_string();
        let message = match audit {
            Ok(left) if left.is_empty() => String::new(),
            Ok(left) => format!(
                "{requirement}: expected nothing labelled with the run id after the run; observed {}",
                left.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
            ),
            Err(why) => format!(
                "{requirement}: expected the run's backend resources to be listable; observed that the audit could not look: {why}"
            ),
        };
        let failed = !message.is_empty();
        CaseReport {
            id: "leak-audit".into(),
            requirement: requirement.clone(),
            failed_requirements: if failed {
                vec![requirement.clone()]
            } else {
                Vec::new()
            },
            requirements: vec![requirement],
            level: Level::Core.name().into(),
            driver: driver.name().into(),
            result: if failed {
                Outcome::Failed
            } else {
                Outcome::Passed
            },
            duration_ms: 0,
            message,
            sandboxes: Vec::new(),
            latencies_ms: BTreeMap::new(),
            failure: None,
            blind: None,
            held_requirements: Vec::new(),
        }
    }

    /// Applies an expectations entry.
    pub fn apply_expectation(&mut self, entry: &Entry) {
        let link = entry
            .link
            .as_deref()
            .map(|l| format!(" ({l})"))
            .unwrap_or_default();
        match (entry.result, self.result) {
            (Expected::Failed, Outcome::Failed) => {
                self.result = Outcome::Xfail;
                self.message =
                    format!("expected failure: {}{link}\n{}", entry.reason, self.message);
            }
            (Expected::Failed, Outcome::Passed) => {
                self.result = Outcome::Xpass;
                self.message = format!(
                    "unexpected pass: the expectations file says this case fails ({}{link}); remove the entry",
                    entry.reason
                );
            }
            _ => {}
        }
    }
}

/// Counts by result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Passed.
    pub passed: usize,
    /// Failed.
    pub failed: usize,
    /// Skipped.
    pub skipped: usize,
    /// Expected failures.
    pub xfail: usize,
    /// Unexpected passes.
    pub xpass: usize,
    /// Not run for want of a declared feature.
    pub not_supported: usize,
}

/// A run's results.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    /// The lane.
    pub driver: String,
    /// The gateway tested.
    pub gateway: String,
    /// The run id (`openshell.run-id` label).
    pub run_id: String,
    /// Wall time of the cases.
    pub duration_ms: u64,
    /// Every case.
    pub cases: Vec<CaseReport>,
    /// What the run-level audit found left.
    pub leaks: Vec<Resource>,
    /// Remarks (e.g. image build failures).
    pub notes: Vec<String>,
    /// The features the run judged (declared, or every feature when none were declared).
    pub features: Vec<Feature>,
}

impl RunReport {
    /// An empty report.
    pub fn new(driver: Driver, run_id: &str) -> RunReport {
        RunReport {
            driver: driver.name().into(),
            gateway: String::new(),
            run_id: run_id.into(),
            duration_ms: 0,
            cases: Vec::new(),
            leaks: Vec::new(),
            notes: Vec::new(),
            features: Feature::ALL.to_vec(),
        }
    }

    /// Counts by result.
    pub fn summary(&self) -> Counts {
        let mut c = Counts::default();
        for case in &self.cases {
            match case.result {
                Outcome::Passed => c.passed += 1,
                Outcome::Failed => c.failed += 1,
                Outcome::Skipped => c.skipped += 1,
                Outcome::Xfail => c.xfail += 1,
                Outcome::Xpass => c.xpass += 1,
                Outcome::NotSupported => c.not_supported += 1,
            }
        }
        c
    }

    /// The summary table for the console.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self
            .cases
            .iter()
            .map(|c| c.id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        out.push_str(&format!(
            "{:<width$}  {:<6}  {:<18}  {:>8}\n",
            "case", "result", "requirement", "time"
        ));
        for c in &self.cases {
            out.push_str(&format!(
                "{:<width$}  {:<6}  {:<18}  {:>7.1}s\n",
                c.id,
                c.result.label(),
                c.requirement,
                c.duration_ms as f64 / 1000.0
            ));
        }
        let s = self.summary();
        out.push_str(&format!(
            "{} passed, {} failed, {} skipped, {} xfail, {} xpass, {} not supported (driver {}, run {})\n",
            s.passed, s.failed, s.skipped, s.xfail, s.xpass, s.not_supported, self.driver, self.run_id
        ));
        let verdicts = verdicts::verdicts(self);
        for level in verdicts::levels(&verdicts) {
            out.push_str(&verdicts::level_line(&level, &self.driver));
            out.push('\n');
        }
        out
    }
}

/// Writes every report file into `dir`.
pub fn write_all(report: &RunReport, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), json::render(report))?;
    std::fs::write(dir.join("junit.xml"), junit::render(report))?;
    std::fs::write(dir.join("report.md"), markdown::render(report))?;
    diagnostics::write(report, &dir.join("diagnostics"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, result: Outcome) -> CaseReport {
        CaseReport {
            id: id.into(),
            requirement: "OSC-API-001".into(),
            requirements: vec!["OSC-API-001".into()],
            level: "core".into(),
            driver: "process".into(),
            result,
            duration_ms: 1,
            message: String::new(),
            sandboxes: Vec::new(),
            latencies_ms: BTreeMap::new(),
            failure: None,
            blind: None,
            held_requirements: Vec::new(),
            failed_requirements: Vec::new(),
        }
    }

    fn report(results: &[Outcome]) -> RunReport {
        let mut r = RunReport::new(Driver::Process, "osc-test");
        r.cases = results
            .iter()
            .enumerate()
            .map(|(i, o)| case(&format!("c{i}"), *o))
            .collect();
        r
    }

    #[test]
    fn exit_codes_follow_the_issue() {
        assert_eq!(report(&[Outcome::Passed, Outcome::Skipped]).exit_code(), 0);
        assert_eq!(report(&[Outcome::Xfail]).exit_code(), 0);
        assert_eq!(report(&[Outcome::Passed, Outcome::Failed]).exit_code(), 1);
        assert_eq!(report(&[Outcome::Passed, Outcome::Xpass]).exit_code(), 1);
        assert_eq!(
            report(&[Outcome::Skipped]).exit_code(),
            2,
            "no case executed"
        );
        assert_eq!(report(&[]).exit_code(), 2);
    }

    #[test]
    fn expectations_turn_failures_into_xfail_and_passes_into_xpass() {
        let entry = Entry {
            id: "c0".into(),
            result: Expected::Failed,
            reason: "known".into(),
            link: Some("https://x/1".into()),
        };
        let mut failed = case("c0", Outcome::Failed);
        failed.apply_expectation(&entry);
        assert_eq!(failed.result, Outcome::Xfail);
        assert!(failed.message.contains("known") && failed.message.contains("https://x/1"));
        let mut passed = case("c0", Outcome::Passed);
        passed.apply_expectation(&entry);
        assert_eq!(passed.result, Outcome::Xpass);
        assert!(passed.message.contains("unexpected pass"));
    }

    #[test]
    fn the_failed_requirements_of_a_run_are_listed() {
        let mut r = report(&[Outcome::Failed, Outcome::Passed]);
        r.cases[0].requirement = "OSC-SEC-002".into();
        assert_eq!(
            r.failed_requirements().into_iter().collect::<Vec<_>>(),
            vec!["OSC-SEC-002".to_string()]
        );
    }

    #[test]
    fn a_leak_audit_that_could_not_look_fails_with_the_reason() {
        let blind = CaseReport::leak_audit(Driver::Docker, &Err("engine unreachable".into()));
        assert_eq!(blind.result, Outcome::Failed);
        assert!(
            blind.message.contains("could not look: engine unreachable"),
            "{}",
            blind.message
        );
        let clean = CaseReport::leak_audit(Driver::Docker, &Ok(Vec::new()));
        assert_eq!(clean.result, Outcome::Passed);
    }

    #[test]
    fn the_summary_table_ends_with_the_counts() {
        let table = report(&[Outcome::Passed, Outcome::Failed, Outcome::Skipped]).table();
        assert!(
            table.contains("1 passed, 1 failed, 1 skipped, 0 xfail, 0 xpass, 0 not supported"),
            "{table}"
        );
    }
}
