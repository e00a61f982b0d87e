//! The per-implementation expectations file: which cases a given gateway is known to fail or
//! cannot run, with a reason and a link, so a run of that implementation is green exactly when
//! nothing changed (an unexpected pass is reported, like WPT's UNEXPECTED-PASS).
//!
//! ```toml
//! [[case]]
//! id = "fixture-boot-hang"
//! result = "failed"            # "failed" (xfail) or "skipped" (not run)
//! reason = "hook timeout not implemented yet"
//! link = "https://example.com/issues/12"
//! ```
//!
//! A file may also declare the implementation's features (`features = ["image-entrypoint"]`,
//! see [`crate::features`]); without the key every feature is judged.
//!
//! The reference implementation runs with an empty file. Unknown case ids are an error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::features::Feature;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ExpectationsError {
    /// The file could not be read.
    #[error("expectations file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("expectations file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ExpectationsError>;

/// What a case is expected to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expected {
    /// The case fails: a failure is `xfail`, a pass `xpass`.
    Failed,
    /// The case is not run: reported `skipped` with the reason.
    Skipped,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The case id.
    pub id: String,
    /// What the case is expected to do.
    pub result: Expected,
    /// Why.
    pub reason: String,
    /// Where it is tracked.
    #[serde(default)]
    pub link: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// The features the implementation has (`crate::features`); absent: every feature.
    #[serde(default)]
    features: Option<Vec<String>>,
    #[serde(default)]
    case: Vec<Entry>,
}

/// The expectations of a run, by case id.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    entries: BTreeMap<String, Entry>,
    features: Option<Vec<Feature>>,
}

impl Expectations {
    /// Parses `text` (from `path`, for messages), checking every id against `known_ids`.
    pub fn parse(text: &str, path: &Path, known_ids: &[String]) -> Result<Expectations> {
        let invalid = |message: String| ExpectationsError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
        let mut entries = BTreeMap::new();
        for entry in file.case {
            if !known_ids.contains(&entry.id) {
                return Err(invalid(format!(
                    "unknown case id {:?} (see `openshell-conformance list`)",
                    entry.id
                )));
            }
            if entry.reason.trim().is_empty() {
                return Err(invalid(format!("case {:?} needs a reason", entry.id)));
            }
            if entries.insert(entry.id.clone(), entry.clone()).is_some() {
                return Err(invalid(format!("case {:?} is listed twice", entry.id)));
            }
        }
        let features = file
            .features
            .map(|names| {
                names
                    .iter()
                    .map(|n| n.parse::<Feature>())
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .transpose()
            .map_err(|e| invalid(e.to_string()))?;
        Ok(Expectations { entries, features })
    }

    /// The features the file declares, if it declares any.
    pub fn features(&self) -> Option<&[Feature]> {
        self.features.as_deref()
    }

    /// Reads and checks a file.
    pub fn load(path: &Path, known_ids: &[String]) -> Result<Expectations> {
        let text = std::fs::read_to_string(path).map_err(|source| ExpectationsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Expectations::parse(&text, path, known_ids)
    }

    /// The entry for a case.
    pub fn get(&self, id: &str) -> Option<&Entry> {
        self.entries.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        vec!["fixture-good".into(), "fixture-boot-hang".into()]
    }

    #[test]
    fn an_empty_file_expects_nothing() {
        let e = Expectations::parse("", Path::new("e.toml"), &ids()).unwrap();
        assert!(e.get("fixture-good").is_none());
    }

    #[test]
    fn entries_carry_result_reason_and_link() {
        let text = "[[case]]\nid='fixture-boot-hang'\nresult='failed'\nreason='no timeout'\nlink='https://x/1'\n";
        let e = Expectations::parse(text, Path::new("e.toml"), &ids()).unwrap();
        let entry = e.get("fixture-boot-hang").unwrap();
        assert_eq!(entry.result, Expected::Failed);
        assert_eq!(entry.link.as_deref(), Some("https://x/1"));
    }

    #[test]
    fn features_are_declared_by_name() {
        let e = Expectations::parse(
            "features = ['image-command']\n",
            Path::new("e.toml"),
            &ids(),
        )
        .unwrap();
        assert_eq!(e.features(), Some(&[Feature::ImageCommand][..]));
        assert!(Expectations::parse("", Path::new("e.toml"), &ids())
            .unwrap()
            .features()
            .is_none());
        let err =
            Expectations::parse("features = ['warp']\n", Path::new("e.toml"), &ids()).unwrap_err();
        assert!(err.to_string().contains("warp"), "{err}");
    }

    #[test]
    fn unknown_ids_are_an_error() {
        let text = "[[case]]\nid='fixture-nope'\nresult='failed'\nreason='r'\n";
        let err = Expectations::parse(text, Path::new("e.toml"), &ids())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown case id \"fixture-nope\""), "{err}");
    }
}
