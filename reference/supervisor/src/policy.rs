//! Step 2 of the startup: the sandbox policy, `/etc/openshell/policy.yaml`, in upstream's schema.
//!
//! The schema is strict (seed 000): unknown fields are rejected at every level, and a file that
//! cannot be read, parsed or validated is an error naming the file, the field and its line. There
//! is no silent fallback; only a *missing* file means [`Policy::default_policy`].
//!
//! Enforced by this reference: `version` (must be 1) and `process.run_as_user`/`run_as_group`.
//! Parsed and validated but not enforced: `filesystem_policy`, `landlock`, `network_policies`,
//! `network_middlewares` (the network entries' inner fields are kept as opaque YAML).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors of the policy step (stage POLICY).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file exists but cannot be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not YAML, or not the schema (serde_yaml_ng names the field, line and column).
    #[error("{path}: {detail} ({hint}; there is no fallback policy)")]
    Parse {
        path: PathBuf,
        detail: String,
        hint: &'static str,
    },
    /// Parsed, but a value is outside what the schema allows.
    #[error("{path}: field `{field}` at line {line}: {problem}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        line: usize,
        problem: String,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, PolicyError>;

/// Upstream's `PolicyFile`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Schema version; only 1 exists.
    pub version: u32,
    /// Not enforced by this reference.
    pub filesystem_policy: Option<FilesystemDef>,
    /// Not enforced by this reference.
    pub landlock: Option<LandlockDef>,
    /// Who the workload and the boot hook run as.
    pub process: Option<ProcessDef>,
    /// Not enforced by this reference.
    #[serde(default)]
    pub network_policies: BTreeMap<String, NetworkPolicyRuleDef>,
    /// Not enforced by this reference; kept as opaque YAML.
    #[serde(default)]
    pub network_middlewares: BTreeMap<String, serde_yaml_ng::Value>,
}

/// `filesystem_policy`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FilesystemDef {
    /// Whether the working directory is writable.
    #[serde(default)]
    pub include_workdir: bool,
    /// Read-only paths.
    #[serde(default)]
    pub read_only: Vec<String>,
    /// Read-write paths.
    #[serde(default)]
    pub read_write: Vec<String>,
}

/// `landlock`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LandlockDef {
    /// `best_effort` or `hard_requirement`.
    #[serde(default)]
    pub compatibility: Option<String>,
}

/// `process`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProcessDef {
    /// A user name (or uid) from the image's `/etc/passwd`.
    pub run_as_user: Option<String>,
    /// A group name (or gid) from the image's `/etc/group`.
    pub run_as_group: Option<String>,
}

/// One entry of `network_policies`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkPolicyRuleDef {
    /// Display name.
    #[serde(default)]
    pub name: Option<String>,
    /// Opaque here.
    #[serde(default)]
    pub endpoints: Vec<serde_yaml_ng::Value>,
    /// Opaque here.
    #[serde(default)]
    pub binaries: Vec<serde_yaml_ng::Value>,
}

/// The default identity when the policy names none.
pub const DEFAULT_IDENTITY: &str = "sandbox";

impl Policy {
    /// The policy used when the image has no policy file: version 1, everything else unset,
    /// so the workload runs as `sandbox:sandbox`.
    pub fn default_policy() -> Policy {
        Policy {
            version: 1,
            ..Default::default()
        }
    }

    /// The user the workload runs as.
    pub fn run_as_user(&self) -> &str {
        self.process
            .as_ref()
            .and_then(|p| p.run_as_user.as_deref())
            .unwrap_or(DEFAULT_IDENTITY)
    }

    /// The group the workload runs as.
    pub fn run_as_group(&self) -> &str {
        self.process
            .as_ref()
            .and_then(|p| p.run_as_group.as_deref())
            .unwrap_or(DEFAULT_IDENTITY)
    }
}

/// Loads `path`; `Ok(None)` when the file does not exist.
pub fn load(path: &Path) -> Result<Option<Policy>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(PolicyError::Read {
                path: path.into(),
                source,
            })
        }
    };
    parse(path, &text).map(Some)
}

/// Parses and validates a policy document.
pub fn parse(path: &Path, text: &str) -> Result<Policy> {
    let policy: Policy = serde_yaml_ng::from_str(text).map_err(|e| {
        let detail = describe(&e);
        let schema = [
            "unknown field",
            "missing field",
            "invalid type",
            "invalid value",
            "unknown variant",
        ]
        .iter()
        .any(|m| detail.contains(m));
        let hint = if schema {
            "the policy schema is strict: fix or remove the field"
        } else {
            "not valid YAML"
        };
        PolicyError::Parse {
            path: path.into(),
            detail,
            hint,
        }
    })?;
    validate(path, text, &policy)?;
    Ok(policy)
}

/// serde_yaml_ng's message always carries the location when it has one; make sure of it.
fn describe(e: &serde_yaml_ng::Error) -> String {
    let msg = e.to_string();
    match e.location() {
        Some(loc) if !msg.contains("line ") => {
            format!("{msg} at line {} column {}", loc.line(), loc.column())
        }
        _ => msg,
    }
}

fn validate(path: &Path, text: &str, policy: &Policy) -> Result<()> {
    let invalid = |field: &'static str, key: &str, problem: String| PolicyError::Invalid {
        path: path.into(),
        field,
        line: line_of(text, key),
        problem,
    };
    if policy.version != 1 {
        return Err(invalid(
            "version",
            "version",
            format!("{} is not supported (only 1)", policy.version),
        ));
    }
    if let Some(p) = &policy.process {
        for (field, key, value) in [
            ("process.run_as_user", "run_as_user", &p.run_as_user),
            ("process.run_as_group", "run_as_group", &p.run_as_group),
        ] {
            if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
                return Err(invalid(field, key, "must not be empty".into()));
            }
        }
    }
    if let Some(fs) = &policy.filesystem_policy {
        for (field, key, paths) in [
            ("filesystem_policy.read_only", "read_only", &fs.read_only),
            ("filesystem_policy.read_write", "read_write", &fs.read_write),
        ] {
            if let Some(bad) = paths
                .iter()
                .find(|p| !p.starts_with('/') || p.split('/').any(|c| c == ".."))
            {
                return Err(invalid(
                    field,
                    key,
                    format!("{bad:?} must be an absolute path without `..`"),
                ));
            }
        }
        if fs.read_write.iter().any(|p| p == "/") {
            return Err(invalid(
                "filesystem_policy.read_write",
                "read_write",
                "`/` cannot be read-write".into(),
            ));
        }
    }
    if let Some(mode) = policy
        .landlock
        .as_ref()
        .and_then(|l| l.compatibility.as_deref())
    {
        if mode != "best_effort" && mode != "hard_requirement" {
            return Err(invalid(
                "landlock.compatibility",
                "compatibility",
                format!("{mode:?} is not best_effort or hard_requirement"),
            ));
        }
    }
    Ok(())
}

/// The 1-based line of the first `key:` in the document (0 when not found).
fn line_of(text: &str, key: &str) -> usize {
    let prefix = format!("{key}:");
    text.lines()
        .position(|l| l.trim_start().starts_with(&prefix))
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/openshell/policy.yaml";

    fn err(text: &str) -> String {
        parse(Path::new(PATH), text).unwrap_err().to_string()
    }

    #[test]
    fn upstream_schema_example_parses() {
        let text = "version: 1\nfilesystem_policy:\n  include_workdir: true\n  read_only: [/usr]\n  read_write: [/tmp]\nlandlock:\n  compatibility: best_effort\nprocess:\n  run_as_user: sandbox\n  run_as_group: sandbox\nnetwork_policies:\n  pypi:\n    name: pypi\n    endpoints: [{host: pypi.org, port: 443}]\n    binaries: [{path: /usr/bin/pip}]\nnetwork_middlewares: {}\n";
        let p = parse(Path::new(PATH), text).unwrap();
        assert_eq!(p.run_as_user(), "sandbox");
        assert_eq!(p.network_policies.len(), 1);
    }

    #[test]
    fn removed_inference_field_is_named_with_file_and_line() {
        let e = err(
            "version: 1\nprocess:\n  run_as_user: sandbox\ninference:\n  allowed_routes: [local]\n",
        );
        assert!(e.starts_with(PATH), "{e}");
        assert!(e.contains("unknown field `inference`"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn unknown_nested_fields_are_rejected_with_their_path() {
        let e = err("version: 1\nprocess:\n  run_as_usr: sandbox\n");
        assert!(e.contains("run_as_usr") && e.contains("line 3"), "{e}");
    }

    #[test]
    fn malformed_yaml_names_the_line() {
        let e = err("version: 1\nprocess:\n  run_as_user: [sandbox\n  run_as_group: : sandbox\n");
        assert!(e.starts_with(PATH) && e.contains("line "), "{e}");
    }

    #[test]
    fn validation_errors_name_field_and_line() {
        assert_eq!(
            err("# c\nversion: 2\n"),
            format!("{PATH}: field `version` at line 2: 2 is not supported (only 1)")
        );
        assert!(err("version: 1\nfilesystem_policy:\n  read_write: [tmp]\n").contains("line 3"));
    }

    #[test]
    fn missing_file_means_the_default_policy() {
        assert_eq!(load(Path::new("/nonexistent/policy.yaml")).unwrap(), None);
        assert_eq!(Policy::default_policy().run_as_group(), "sandbox");
    }
}
