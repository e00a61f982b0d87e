//! `bench compare` and `bench run --baseline`: a result against an earlier one, for a release
//! gate. Only results of the same schema compare; a figure regressed when its median ratio to its
//! bare-runtime baseline grew by more than the threshold (default [`DEFAULT_THRESHOLD`], 25 %).
//! Ratios, not absolute times: the baseline is measured in the same run, interleaved, so machine
//! noise mostly cancels out (absolute times varied by 2× between runs here; ratios by ~10 %).

use super::BenchResult;

/// The default regression threshold: a median ratio more than 25 % above the baseline's.
pub const DEFAULT_THRESHOLD: f64 = 0.25;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The two results have different schemas.
    #[error("incompatible results: schema {result} against baseline schema {baseline}; re-measure the baseline with this version")]
    Schema { result: u32, baseline: u32 },
    /// Nothing to compare.
    #[error("the result and the baseline have no ratio figure in common (lanes {result:?} vs {baseline:?})")]
    NothingInCommon {
        result: Vec<String>,
        baseline: Vec<String>,
    },
}

/// One compared figure.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// The lane.
    pub lane: String,
    /// The figure.
    pub figure: String,
    /// The baseline's median ratio.
    pub before: f64,
    /// This result's median ratio.
    pub after: f64,
    /// Whether it regressed beyond the threshold.
    pub regressed: bool,
}

/// Compares `result` with `baseline`: every ratio figure the two have in common.
pub fn compare(
    result: &BenchResult,
    baseline: &BenchResult,
    threshold: f64,
) -> Result<Vec<Comparison>, CompareError> {
    if result.schema != baseline.schema {
        return Err(CompareError::Schema {
            result: result.schema,
            baseline: baseline.schema,
        });
    }
    let mut out = Vec::new();
    for lane in &result.lanes {
        let Some(before_lane) = baseline.lanes.iter().find(|l| l.lane == lane.lane) else {
            continue;
        };
        for figure in &lane.figures {
            let before = before_lane
                .figures
                .iter()
                .find(|f| f.name == figure.name)
                .and_then(|f| f.ratio_median);
            if let (Some(before), Some(after)) = (before, figure.ratio_median) {
                out.push(Comparison {
                    lane: lane.lane.clone(),
                    figure: figure.name.clone(),
                    before,
                    after,
                    regressed: after > before * (1.0 + threshold),
                });
            }
        }
    }
    if out.is_empty() {
        return Err(CompareError::NothingInCommon {
            result: result.lanes.iter().map(|l| l.lane.clone()).collect(),
            baseline: baseline.lanes.iter().map(|l| l.lane.clone()).collect(),
        });
    }
    Ok(out)
}

/// The comparison as lines for people.
pub fn render(comparisons: &[Comparison], threshold: f64) -> String {
    let mut out = format!(
        "ratio figures against the baseline (threshold +{:.0} %):\n",
        threshold * 100.0
    );
    for c in comparisons {
        out.push_str(&format!(
            "  {:<13} {:<28} {:.3} -> {:.3} {}\n",
            c.lane,
            c.figure,
            c.before,
            c.after,
            if c.regressed { "REGRESSED" } else { "ok" }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::stats::Figure;
    use crate::bench::{Facts, LaneResult, SCHEMA};

    fn result(ratio_pair: (f64, f64)) -> BenchResult {
        let figure = Figure::new(
            "create_to_ready",
            "x",
            vec![ratio_pair.0],
            Some(("b".into(), vec![ratio_pair.1])),
        );
        BenchResult {
            schema: SCHEMA,
            facts: Facts::default(),
            lanes: vec![LaneResult {
                lane: "docker".into(),
                figures: vec![figure],
                leaks: Vec::new(),
                notes: Vec::new(),
            }],
        }
    }

    #[test]
    fn an_unchanged_result_passes_and_a_regressed_one_fails() {
        let base = result((105.0, 100.0));
        let same = compare(&result((105.0, 100.0)), &base, DEFAULT_THRESHOLD).unwrap();
        assert!(same.iter().all(|c| !c.regressed));
        let slower = compare(&result((150.0, 100.0)), &base, DEFAULT_THRESHOLD).unwrap();
        assert!(slower[0].regressed, "{slower:?}");
        // A slower machine, same ratio: not a regression.
        let noisy = compare(&result((210.0, 200.0)), &base, DEFAULT_THRESHOLD).unwrap();
        assert!(!noisy[0].regressed);
    }

    #[test]
    fn another_schema_is_refused() {
        let mut old = result((1.0, 1.0));
        old.schema = SCHEMA + 1;
        assert!(matches!(
            compare(&result((1.0, 1.0)), &old, DEFAULT_THRESHOLD),
            Err(CompareError::Schema { .. })
        ));
    }
}
