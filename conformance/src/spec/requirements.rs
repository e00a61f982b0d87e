//! The requirements of `conformance/SPEC.md`, read from the document itself so the two can never
//! drift: a requirement is a heading `### OSC-<GROUP>-<NNN> · MUST|SHOULD · core|extended ·
//! <source>` followed by its text.

use std::fmt;

/// The specification text (compiled in, so the binary lists requirements without the source tree).
pub const SPEC_MD: &str = include_str!("../../SPEC.md");

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// A requirement heading is malformed.
    #[error("SPEC.md line {line}: {message}")]
    Heading { line: usize, message: String },
    /// Two requirements share an id.
    #[error("SPEC.md: requirement {0} is defined twice")]
    Duplicate(String),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, SpecError>;

/// RFC 2119 strength.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Strength {
    /// MUST.
    Must,
    /// SHOULD.
    Should,
}

/// Extension level: the seeds and the base API (`core`), or this project's additions (`extended`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Seeds 000–003 and the lifecycle API.
    Core,
    /// Project additions.
    Extended,
}

impl Level {
    /// `core` or `extended`.
    pub fn name(self) -> &'static str {
        match self {
            Level::Core => "core",
            Level::Extended => "extended",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One requirement.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Requirement {
    /// Stable id, e.g. `OSC-ERR-001`.
    pub id: String,
    /// MUST or SHOULD.
    pub strength: Strength,
    /// core or extended.
    pub level: Level,
    /// `seed 000` … `seed 003` or `project`.
    pub source: String,
    /// The section the requirement is in.
    pub group: String,
    /// The requirement's text.
    pub text: String,
}

/// Parses requirement headings and texts out of a SPEC.md text.
pub fn parse(text: &str) -> Result<Vec<Requirement>> {
    let mut out: Vec<Requirement> = Vec::new();
    let mut group = String::new();
    for (index, line) in text.lines().enumerate() {
        if let Some(title) = line.strip_prefix("## ") {
            group = title.trim().to_string();
        } else if let Some(heading) = line.strip_prefix("### OSC-") {
            let req = parse_heading(index + 1, &format!("OSC-{heading}"), &group)?;
            if out.iter().any(|r| r.id == req.id) {
                return Err(SpecError::Duplicate(req.id));
            }
            out.push(req);
        } else if line.starts_with('#') {
            continue;
        } else if let Some(last) = out.last_mut() {
            if !line.trim().is_empty() {
                if !last.text.is_empty() {
                    last.text.push(' ');
                }
                last.text.push_str(line.trim());
            }
        }
    }
    Ok(out)
}

fn parse_heading(line: usize, heading: &str, group: &str) -> Result<Requirement> {
    let bad = |message: &str| SpecError::Heading {
        line,
        message: message.to_string(),
    };
    let parts: Vec<&str> = heading.split('·').map(str::trim).collect();
    let [id, strength, level, source] = parts.as_slice() else {
        return Err(bad(
            "expected `### OSC-<GROUP>-<NNN> · MUST|SHOULD · core|extended · <source>`",
        ));
    };
    let well_formed = id.split('-').count() == 3
        && id
            .rsplit('-')
            .next()
            .is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()));
    if !well_formed {
        return Err(bad("the id must look like OSC-GROUP-NNN"));
    }
    let strength = match *strength {
        "MUST" => Strength::Must,
        "SHOULD" => Strength::Should,
        _ => return Err(bad("strength must be MUST or SHOULD")),
    };
    let level = match *level {
        "core" => Level::Core,
        "extended" => Level::Extended,
        _ => return Err(bad("level must be core or extended")),
    };
    let source_ok = *source == "project"
        || source
            .strip_prefix("seed ")
            .is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()));
    if !source_ok {
        return Err(bad("source must be `seed NNN` or `project`"));
    }
    Ok(Requirement {
        id: id.to_string(),
        strength,
        level,
        source: source.to_string(),
        group: group.to_string(),
        text: String::new(),
    })
}

/// The contract version of a SPEC.md text: the number on its `Contract version: **N**` line.
pub fn parse_version(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Contract version:"))
        .and_then(|v| v.trim().trim_matches('*').parse().ok())
}

/// The contract version of the compiled-in SPEC.md (report.json's `spec_version`).
pub fn version() -> u32 {
    parse_version(SPEC_MD).expect("conformance/SPEC.md states its contract version")
}

/// The requirements of the compiled-in SPEC.md.
pub fn all() -> Vec<Requirement> {
    parse(SPEC_MD).expect("conformance/SPEC.md is checked by the tests of this module")
}

/// The requirement with this id.
pub fn find(id: &str) -> Option<Requirement> {
    all().into_iter().find(|r| r.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_spec_parses_with_texts_and_groups() {
        let reqs = parse(SPEC_MD).unwrap();
        assert!(reqs.len() >= 30, "{}", reqs.len());
        for r in &reqs {
            assert!(!r.text.is_empty(), "{} has no text", r.id);
            assert!(!r.group.is_empty(), "{} has no group", r.id);
        }
    }

    #[test]
    fn the_shipped_spec_states_its_version() {
        assert!(version() >= 2);
        assert_eq!(parse_version("# T\n\nContract version: **7**\n"), Some(7));
        assert_eq!(parse_version("# T\n"), None);
    }

    #[test]
    fn seed_requirements_are_core_and_project_ones_name_their_source() {
        for r in all() {
            if r.source.starts_with("seed") {
                assert_eq!(r.level, Level::Core, "{}", r.id);
            }
        }
    }

    #[test]
    fn malformed_headings_are_rejected_with_their_line() {
        let err = parse("## G\n### OSC-X-001 · MAY · core · project\ntext\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        let err =
            parse("### OSC-X-001 · MUST · core · project\n### OSC-X-001 · MUST · core · project\n")
                .unwrap_err();
        assert!(matches!(err, SpecError::Duplicate(_)));
    }
}
