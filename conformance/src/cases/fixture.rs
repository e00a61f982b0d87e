//! Fixture cases: create a fixture with nothing else set (bar the lane's environment) and assert
//! the outcome its manifest entry states: phase, Ready reason, message pattern, exit code.

use openshell_fixtures::{Catalog, Expectation, Fixture};

use crate::check::{fail, with_note, CaseResult};
use crate::harness::{CreateOpts, Harness};
use crate::observe::Snapshot;
use crate::spec::catalog::fixture_requirements;
use crate::upstream;

/// `ready` → `Ready`, `error` → `Error`.
fn phase_word(phase: &str) -> String {
    let mut chars = phase.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The expectation as one line.
pub fn describe(expect: &Expectation) -> String {
    let mut s = format!(
        "phase {}, Ready reason {}",
        phase_word(&expect.phase),
        expect.reason
    );
    if let Some(m) = &expect.message {
        s.push_str(&format!(", message matching /{m}/"));
    }
    if let Some(code) = expect.exit_code {
        s.push_str(&format!(", exit_code {code}"));
    }
    s
}

/// What was observed, as one line.
pub fn observed(s: &Snapshot) -> String {
    let mut o = format!(
        "phase {}, Ready reason {:?}, message {:?}",
        s.phase,
        s.reason(),
        s.message()
    );
    if let Some(code) = s.exit_code {
        o.push_str(&format!(", exit_code {code}"));
    }
    o
}

/// Checks a terminal snapshot against an expectation; a failure names `requirement`.
pub fn expect_outcome(snapshot: &Snapshot, expect: &Expectation, requirement: &str) -> CaseResult {
    let expected = describe(expect);
    let mismatch = || fail(requirement, expected.clone(), observed(snapshot));
    if snapshot.phase != phase_word(&expect.phase) {
        return Err(with_note(
            mismatch(),
            upstream::note(&expect.reason, snapshot.reason()),
        ));
    }
    if snapshot.reason() != expect.reason {
        return Err(with_note(
            mismatch(),
            upstream::note(&expect.reason, snapshot.reason()),
        ));
    }
    if let Some(pattern) = &expect.message {
        let re = regex::Regex::new(pattern).map_err(|e| {
            fail(
                "OSC-API-009",
                "a valid message pattern in the manifest",
                e.to_string(),
            )
        })?;
        if !re.is_match(snapshot.message()) {
            return Err(mismatch());
        }
    }
    if let Some(code) = expect.exit_code {
        if snapshot.exit_code != Some(code) {
            return Err(mismatch());
        }
    }
    Ok(())
}

/// The fixture case body.
pub async fn run(h: Harness, fixture: Fixture) -> CaseResult {
    let requirement = fixture_requirements(&fixture.name)
        .first()
        .copied()
        .unwrap_or("OSC-API-009");
    let created = h
        .create("fx", &fixture.name, CreateOpts::default(), requirement)
        .await?;
    let supervisor = [format!("/{}", openshell_fixtures::tree::SUPERVISOR_PATH)];
    let last = if Catalog::entrypoint_of(&fixture) != supervisor {
        // Not the supervisor: nothing ever opens a session, so nothing may ever be Ready.
        h.wait_not_ready(&created, requirement).await?
    } else {
        h.wait_phase(&created, &phase_word(&fixture.expect.phase), requirement)
            .await?
    };
    expect_outcome(&last, &fixture.expect, requirement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Cond;

    fn snap(phase: &str, reason: &str, message: &str, exit_code: Option<i32>) -> Snapshot {
        Snapshot {
            name: "s".into(),
            resource_version: 1,
            phase: phase.into(),
            ready: Some(Cond {
                status: "False".into(),
                reason: reason.into(),
                message: message.into(),
            }),
            degraded: None,
            exit_code,
        }
    }

    fn expect(
        phase: &str,
        reason: &str,
        message: Option<&str>,
        exit_code: Option<i32>,
    ) -> Expectation {
        Expectation {
            phase: phase.into(),
            reason: reason.into(),
            message: message.map(Into::into),
            exit_code,
        }
    }

    #[test]
    fn a_matching_outcome_passes() {
        let e = expect(
            "error",
            "SupervisorError",
            Some("^policy: .*inference"),
            None,
        );
        expect_outcome(
            &snap(
                "Error",
                "SupervisorError",
                "policy: /etc/openshell/policy.yaml: inference",
                None,
            ),
            &e,
            "R",
        )
        .unwrap();
    }

    #[test]
    fn a_wrong_message_names_requirement_expected_and_observed() {
        let e = expect("error", "SupervisorError", Some("^policy: "), None);
        let err = expect_outcome(
            &snap("Error", "SupervisorError", "identity: no user", None),
            &e,
            "OSC-ERR-001",
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("OSC-ERR-001: expected phase Error, Ready reason SupervisorError, message matching /^policy: /"), "{err}");
        assert!(err.contains("observed phase Error, Ready reason \"SupervisorError\", message \"identity: no user\""), "{err}");
    }

    #[test]
    fn an_upstream_reason_is_named_as_such() {
        let e = expect("ready", "SupervisorConnected", None, None);
        let err = expect_outcome(
            &snap("Ready", "DependenciesReady", "", None),
            &e,
            "OSC-READY-001",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("upstream OpenShell's reason `DependenciesReady`"),
            "{err}"
        );
    }

    #[test]
    fn the_exit_code_is_checked() {
        let e = expect("error", "ProcessExited", None, Some(7));
        assert!(expect_outcome(&snap("Error", "ProcessExited", "", Some(7)), &e, "R").is_ok());
        assert!(expect_outcome(&snap("Error", "ProcessExited", "", Some(0)), &e, "R").is_err());
        assert!(expect_outcome(&snap("Error", "ProcessExited", "", None), &e, "R").is_err());
    }
}
