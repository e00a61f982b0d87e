//! Samples and their summaries: medians and p90 (nearest rank), and ratios taken pair by pair
//! (a lifecycle figure over the bare-runtime baseline measured right beside it, A B A B), since
//! absolute times on these machines vary from run to run far more than ratios do.

use serde::{Deserialize, Serialize};

/// The median and p90 of `samples` (nearest rank), `None` when empty.
pub fn summary(samples: &[f64]) -> Option<(f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = |q: f64| {
        let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
        sorted[i]
    };
    Some((rank(0.5), rank(0.9)))
}

/// One figure of a lane: the samples, their baseline beside them, and the ratios pair by pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// `create_to_ready`, `stale_policy_visible`, …
    pub name: String,
    /// What the samples time, for people.
    pub what: String,
    /// Milliseconds, one per run (warm-up runs discarded).
    pub samples_ms: Vec<f64>,
    /// Median of the samples.
    pub median_ms: Option<f64>,
    /// p90 of the samples.
    pub p90_ms: Option<f64>,
    /// The baseline's name and samples, measured interleaved with these.
    pub baseline: Option<Baseline>,
    /// `samples_ms[i] / baseline.samples_ms[i]`.
    pub ratios: Vec<f64>,
    /// Median of the ratios.
    pub ratio_median: Option<f64>,
    /// p90 of the ratios.
    pub ratio_p90: Option<f64>,
    /// Why the figure could not be measured ("not measured", never 0).
    pub not_measured: Option<String>,
}

/// A bare-runtime baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// What it runs (`docker run -d …`, the VM's bare boot, a chrooted `/bin/true`).
    pub what: String,
    /// Milliseconds, one per run.
    pub samples_ms: Vec<f64>,
    /// Median.
    pub median_ms: Option<f64>,
}

impl Figure {
    /// A figure from its samples and, when there is one, its baseline's.
    pub fn new(
        name: &str,
        what: &str,
        samples: Vec<f64>,
        baseline: Option<(String, Vec<f64>)>,
    ) -> Figure {
        let (median_ms, p90_ms) = summary(&samples).unzip();
        let ratios: Vec<f64> = match &baseline {
            Some((_, base)) => samples
                .iter()
                .zip(base)
                .filter(|(_, b)| **b > 0.0)
                .map(|(a, b)| a / b)
                .collect(),
            None => Vec::new(),
        };
        let (ratio_median, ratio_p90) = summary(&ratios).unzip();
        Figure {
            name: name.into(),
            what: what.into(),
            median_ms,
            p90_ms,
            samples_ms: samples,
            baseline: baseline.map(|(what, samples)| Baseline {
                median_ms: summary(&samples).map(|(m, _)| m),
                what,
                samples_ms: samples,
            }),
            ratios,
            ratio_median,
            ratio_p90,
            not_measured: None,
        }
    }

    /// A figure that could not be measured, and why.
    pub fn not_measured(name: &str, what: &str, why: &str) -> Figure {
        let mut f = Figure::new(name, what, Vec::new(), None);
        f.not_measured = Some(why.to_string());
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_p90_use_the_nearest_rank() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(summary(&samples), Some((5.0, 9.0)));
        assert_eq!(summary(&[3.0]), Some((3.0, 3.0)));
        assert_eq!(summary(&[]), None);
    }

    #[test]
    fn ratios_are_taken_pair_by_pair() {
        let f = Figure::new(
            "create_to_ready",
            "x",
            vec![110.0, 220.0],
            Some(("b".into(), vec![100.0, 200.0])),
        );
        assert_eq!(f.ratios, vec![1.1, 1.1]);
        assert_eq!(f.ratio_median, Some(1.1));
        let n = Figure::not_measured("supervisor_start_to_spawn", "x", "no supervisor lines");
        assert!(n.samples_ms.is_empty() && n.median_ms.is_none() && n.not_measured.is_some());
    }
}
