//! The verdict per requirement a release gate reads (in the manner of Gateway API's
//! ConformanceReport), and the medians of the latencies the cases measured.
//!
//! A requirement's verdict on a lane, from the cases that cover it:
//! - `failed`: a failed (or unexpectedly passed) case names it among the requirements it broke;
//! - `expected-failure`: an `xfail` case names it, and nothing failed it;
//! - `met`: at least one case covering it passed (or checked it and held it before failing on
//!   another, as a SHOULD checked after its MUST), and none failed it or was expected to;
//! - `not-tested`: nothing above (no case on this lane, or only skipped, not-supported, or
//!   failed on another requirement first).
//!
//! Each level gets a line ("core: 30 of 34 requirements met on docker"), counted over every
//! requirement of SPEC.md at that level, so a lane that cannot test a requirement does not meet
//! it. SHOULD requirements that failed are listed apart. The exit code does not change.

use std::collections::BTreeMap;

use super::{Latency, Outcome, RunReport};
use crate::spec::{requirements, Level, Req, Strength};

/// A requirement's verdict on one lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Every case that checked it passed.
    Met,
    /// A case failed it.
    Failed,
    /// Nothing checked it on this lane.
    NotTested,
    /// A case failed it, as the expectations file says.
    ExpectedFailure,
}

/// One requirement's line.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RequirementVerdict {
    /// `OSC-…`.
    pub id: String,
    /// MUST or SHOULD.
    pub strength: Strength,
    /// core or extended.
    pub level: Level,
    /// The verdict.
    pub verdict: Verdict,
    /// The cases that cover it on this lane.
    pub cases: Vec<String>,
}

/// The level summary: how many of the level's requirements were met.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LevelSummary {
    /// core or extended.
    pub level: Level,
    /// Met.
    pub met: usize,
    /// Every requirement of SPEC.md at this level.
    pub total: usize,
    /// Failed.
    pub failed: usize,
    /// Expected failures.
    pub expected_failure: usize,
    /// Not tested on this lane.
    pub not_tested: usize,
}

/// Every requirement's verdict, from a run's cases.
pub fn verdicts(report: &RunReport) -> Vec<RequirementVerdict> {
    requirements::all()
        .into_iter()
        .map(|r| {
            let covering: Vec<_> = report
                .cases
                .iter()
                .filter(|c| c.requirements.contains(&r.id))
                .collect();
            let names = |c: &&super::CaseReport| {
                c.failed_requirements.contains(&r.id) || c.requirement == r.id
            };
            let failed = covering.iter().any(|c| {
                (c.result == Outcome::Failed && c.failed_requirements.contains(&r.id))
                    || (c.result == Outcome::Xpass && names(c))
            });
            let expected = covering
                .iter()
                .any(|c| c.result == Outcome::Xfail && names(c));
            let passed = covering
                .iter()
                .any(|c| c.result == Outcome::Passed || c.held_requirements.contains(&r.id));
            let verdict = if failed {
                Verdict::Failed
            } else if expected {
                Verdict::ExpectedFailure
            } else if passed {
                Verdict::Met
            } else {
                Verdict::NotTested
            };
            RequirementVerdict {
                id: r.id.clone(),
                strength: r.strength,
                level: r.level,
                verdict,
                cases: covering.iter().map(|c| c.id.clone()).collect(),
            }
        })
        .collect()
}

/// The line per level, over [`verdicts`].
pub fn levels(verdicts: &[RequirementVerdict]) -> Vec<LevelSummary> {
    [Level::Core, Level::Extended]
        .into_iter()
        .map(|level| {
            let of: Vec<_> = verdicts.iter().filter(|v| v.level == level).collect();
            let count = |v: Verdict| of.iter().filter(|r| r.verdict == v).count();
            LevelSummary {
                level,
                met: count(Verdict::Met),
                total: of.len(),
                failed: count(Verdict::Failed),
                expected_failure: count(Verdict::ExpectedFailure),
                not_tested: count(Verdict::NotTested),
            }
        })
        .collect()
}

/// The SHOULD requirements that failed (reported apart from the MUSTs).
pub fn should_missed(verdicts: &[RequirementVerdict]) -> Vec<String> {
    verdicts
        .iter()
        .filter(|v| v.strength == Strength::Should && v.verdict == Verdict::Failed)
        .map(|v| v.id.clone())
        .collect()
}

/// `core: 30 of 34 requirements met on docker (2 failed, 0 expected failures, 2 not tested)`.
pub fn level_line(summary: &LevelSummary, driver: &str) -> String {
    format!(
        "{}: {} of {} requirements met on {driver} ({} failed, {} expected failures, {} not tested)",
        summary.level, summary.met, summary.total, summary.failed, summary.expected_failure, summary.not_tested
    )
}

/// The median of each latency over the cases that measured it.
pub fn latency_medians(report: &RunReport) -> BTreeMap<Latency, u64> {
    let mut by: BTreeMap<Latency, Vec<u64>> = BTreeMap::new();
    for c in &report.cases {
        for (k, v) in &c.latencies_ms {
            by.entry(*k).or_default().push(*v);
        }
    }
    by.into_iter()
        .map(|(k, mut v)| {
            v.sort_unstable();
            (k, v[v.len() / 2])
        })
        .collect()
}

/// Whether `id` names a requirement (for a test that the ids in reports are SPEC.md's).
pub fn is_requirement(id: &str) -> bool {
    Req::parse(id).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::CaseReport;
    use crate::Driver;

    fn case(id: &str, reqs: &[Req], result: Outcome, failed: &[Req]) -> CaseReport {
        CaseReport {
            id: id.into(),
            requirement: reqs[0].id().into(),
            failed_requirements: failed.iter().map(|r| r.id().to_string()).collect(),
            requirements: reqs.iter().map(|r| r.id().to_string()).collect(),
            level: "core".into(),
            driver: "docker".into(),
            result,
            duration_ms: 1,
            message: String::new(),
            sandboxes: Vec::new(),
            latencies_ms: BTreeMap::new(),
            failure: None,
            blind: None,
            held_requirements: Vec::new(),
        }
    }

    fn verdict_of(v: &[RequirementVerdict], r: Req) -> Verdict {
        v.iter().find(|x| x.id == r.id()).unwrap().verdict
    }

    #[test]
    fn a_requirement_is_failed_only_by_a_failure_that_names_it() {
        let mut report = RunReport::new(Driver::Docker, "osc-t");
        report.cases = vec![
            case(
                "a",
                &[Req::READY_001, Req::BOOT_005],
                Outcome::Failed,
                &[Req::READY_001],
            ),
            case("b", &[Req::BOOT_005], Outcome::Passed, &[]),
            case(
                "c",
                &[Req::CLEAN_001, Req::CLEAN_004],
                Outcome::Failed,
                &[Req::CLEAN_004],
            ),
            case(
                "f",
                &[Req::CLEAN_002, Req::CLEAN_004],
                Outcome::Failed,
                &[Req::CLEAN_004],
            ),
            case("d", &[Req::ERR_001], Outcome::Xfail, &[Req::ERR_001]),
            case("e", &[Req::API_001], Outcome::NotSupported, &[]),
        ];
        // Case f checked its MUST before the SHOULD failed.
        report.cases[3].held_requirements = vec![Req::CLEAN_002.id().to_string()];
        let v = verdicts(&report);
        assert_eq!(verdict_of(&v, Req::CLEAN_002), Verdict::Met);
        assert_eq!(verdict_of(&v, Req::READY_001), Verdict::Failed);
        assert_eq!(verdict_of(&v, Req::BOOT_005), Verdict::Met);
        assert_eq!(verdict_of(&v, Req::CLEAN_001), Verdict::NotTested);
        assert_eq!(verdict_of(&v, Req::CLEAN_004), Verdict::Failed);
        assert_eq!(verdict_of(&v, Req::ERR_001), Verdict::ExpectedFailure);
        assert_eq!(verdict_of(&v, Req::API_001), Verdict::NotTested);
        assert_eq!(should_missed(&v), vec![Req::CLEAN_004.id().to_string()]);
        let core = &levels(&v)[0];
        assert_eq!(core.level, Level::Core);
        assert_eq!(core.met, 2, "BOOT-005 and CLEAN-002");
        assert_eq!(
            core.total,
            requirements::all()
                .iter()
                .filter(|r| r.level == Level::Core)
                .count()
        );
        assert!(
            level_line(core, "docker").starts_with("core: 2 of "),
            "{}",
            level_line(core, "docker")
        );
    }

    #[test]
    fn latency_medians_take_the_middle_value() {
        let mut report = RunReport::new(Driver::Docker, "osc-t");
        for (i, ms) in [30u64, 10, 20].into_iter().enumerate() {
            let mut c = case(&format!("c{i}"), &[Req::API_001], Outcome::Passed, &[]);
            c.latencies_ms.insert(Latency::CreateToReady, ms);
            report.cases.push(c);
        }
        assert_eq!(latency_medians(&report)[&Latency::CreateToReady], 20);
        assert!(is_requirement("OSC-API-001") && !is_requirement("OSC-API-999"));
    }
}
