//! Features an implementation may or may not have, declared by its vendor (in the manner of
//! Gateway API's SupportedFeatures). A case that needs a feature the run did not declare is
//! reported `not-supported`: never passed, never failed. The seeds' core rules are not features:
//! no core case needs one (a test of the catalog holds this), so they cannot be declared away,
//! only expected to fail with a reason in the expectations file.
//!
//! Declared with `run --features a,b` or `features = ["a", "b"]` in the expectations file;
//! without a declaration a run judges every feature (the whole contract, what the reference does).

use std::fmt;
use std::str::FromStr;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// Not a feature name.
    #[error("unknown feature {0:?} (known: {known})", known = Feature::ALL.map(Feature::name).join(", "))]
    Unknown(String),
}

/// A feature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Feature {
    /// The driver runs the image's own ENTRYPOINT (the rogue probe fixtures play the supervisor).
    ImageEntrypoint,
    /// With an empty `spec.command`, the image's own CMD is the main process.
    ImageCommand,
    /// The supervisor's settings (`OPENSHELL_SKIP_BOOTSTRAP`, …) can be set through
    /// `spec.environment`.
    SettingsEnv,
    /// `OPENSHELL_BOOT_HOOK_TIMEOUT` bounds the boot hook.
    BootHookTimeout,
    /// The `EnforcementDegraded` condition reports tolerated or skipped enforcement.
    DegradedCondition,
}

impl Feature {
    /// Every feature.
    pub const ALL: [Feature; 5] = [
        Feature::ImageEntrypoint,
        Feature::ImageCommand,
        Feature::SettingsEnv,
        Feature::BootHookTimeout,
        Feature::DegradedCondition,
    ];

    /// The name used in declarations and reports.
    pub fn name(self) -> &'static str {
        match self {
            Feature::ImageEntrypoint => "image-entrypoint",
            Feature::ImageCommand => "image-command",
            Feature::SettingsEnv => "settings-env",
            Feature::BootHookTimeout => "boot-hook-timeout",
            Feature::DegradedCondition => "degraded-condition",
        }
    }
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Feature {
    type Err = FeatureError;

    fn from_str(s: &str) -> Result<Feature, FeatureError> {
        Feature::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| FeatureError::Unknown(s.to_string()))
    }
}

/// Parses a comma list (`none` or empty: no feature; `all`: every feature).
pub fn parse_list(list: &str) -> Result<Vec<Feature>, FeatureError> {
    let items: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    match items.as_slice() {
        ["all"] => Ok(Feature::ALL.to_vec()),
        ["none"] | [] => Ok(Vec::new()),
        _ => items.into_iter().map(Feature::from_str).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_names_all_and_none_and_reject_unknown_ones() {
        assert_eq!(parse_list("all").unwrap().len(), Feature::ALL.len());
        assert!(parse_list("none").unwrap().is_empty());
        assert_eq!(
            parse_list("image-entrypoint, settings-env").unwrap(),
            vec![Feature::ImageEntrypoint, Feature::SettingsEnv]
        );
        assert!(parse_list("teleport")
            .unwrap_err()
            .to_string()
            .contains("teleport"));
        for f in Feature::ALL {
            assert_eq!(f.name().parse::<Feature>().unwrap(), f);
        }
    }
}
