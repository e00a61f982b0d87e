//! Fixture cases: create a fixture with nothing else set (bar the lane's environment) and assert
//! the outcome its manifest entry states: phase, Ready reason, message pattern, exit code.

use openshell_fixtures::{Catalog, Expectation, Fixture};
use openshell_proto::v1::SandboxPhase as Phase;
use openshell_proto::ReadyReason;

use crate::check::{also, fail, with_note, CaseResult};
use crate::harness::{CreateOpts, Harness};
use crate::observe::{phase_name, Snapshot};
use crate::spec::catalog::fixture_requirements;
use crate::spec::Req;
use crate::upstream;

/// The expectation as one line.
pub fn describe(expect: &Expectation) -> String {
    let mut s = format!(
        "phase {}, Ready reason {}",
        phase_name(expect.phase.phase() as i32),
        expect.reason
    );
    if let Some(m) = &expect.message {
        s.push_str(&format!(", message matching /{m}/"));
    }
    if let Some(code) = expect.exit_code {
        s.push_str(&format!(", exit_code {code}"));
    }
    if expect.ready_first {
        s.push_str(", after a Ready / SupervisorConnected");
    }
    s
}

/// What was observed, as one line.
pub fn observed(s: &Snapshot) -> String {
    let mut o = format!(
        "phase {}, Ready reason {:?}, message {:?}",
        phase_name(s.phase as i32),
        s.reason(),
        s.message()
    );
    if let Some(code) = s.exit_code {
        o.push_str(&format!(", exit_code {code}"));
    }
    o
}

/// Checks a terminal snapshot against an expectation; a failure names `requirement`.
/// (`ready_first` is a property of the history, checked by [`run`].)
pub fn expect_outcome(snapshot: &Snapshot, expect: &Expectation, requirement: Req) -> CaseResult {
    let expected = describe(expect);
    let mismatch = || fail(requirement, expected.clone(), observed(snapshot));
    if snapshot.phase != expect.phase.phase() || snapshot.ready_reason() != Some(expect.reason) {
        return Err(with_note(
            mismatch(),
            upstream::note(expect.reason, snapshot.reason()),
        ));
    }
    if let Some(pattern) = &expect.message {
        let re = regex::Regex::new(pattern).map_err(|e| {
            fail(
                Req::API_009,
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

/// Whether `history` (one sandbox's, in order) shows `Ready / SupervisorConnected` before its
/// first Error.
pub fn ready_before_error(history: &[Snapshot]) -> bool {
    history
        .iter()
        .take_while(|s| s.phase != Phase::Error)
        .any(|s| s.is(Phase::Ready, ReadyReason::SupervisorConnected))
}

/// The fixture case body. A failure names every requirement the fixture stands for, and
/// OSC-API-009 (its manifest outcome).
pub async fn run(h: Harness, fixture: Fixture) -> CaseResult {
    let mut requirements = fixture_requirements(&fixture.name).to_vec();
    requirements.push(Req::API_009);
    let requirement = requirements[0];
    check(&h, &fixture, requirement)
        .await
        .map_err(|e| also(e, &requirements))
}

async fn check(h: &Harness, fixture: &Fixture, requirement: Req) -> CaseResult {
    let created = h
        .create("fx", &fixture.name, CreateOpts::default(), requirement)
        .await?;
    let supervisor = [format!("/{}", openshell_fixtures::tree::SUPERVISOR_PATH)];
    let last = if Catalog::entrypoint_of(fixture) != supervisor && !fixture.expect.ready_first {
        // Not the supervisor, nor a script that opens sessions itself: nothing ever opens a
        // session, so nothing may ever be Ready.
        h.wait_not_ready(&created, requirement).await?
    } else {
        h.wait_phase(&created, fixture.expect.phase.phase(), requirement)
            .await?
    };
    expect_outcome(&last, &fixture.expect, requirement)?;
    if fixture.expect.ready_first {
        // The outcome came after a Ready the watch must have shown.
        let history: Vec<Snapshot> = h
            .journal()
            .history()
            .into_iter()
            .filter(|s| s.name == created.name)
            .collect();
        if !ready_before_error(&history) {
            return Err(fail(
                requirement,
                describe(&fixture.expect),
                format!(
                    "{}, never Ready / SupervisorConnected before it",
                    observed(&last)
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Cond;
    use openshell_fixtures::ExpectedPhase;

    fn snap(phase: Phase, reason: &str, message: &str, exit_code: Option<i32>) -> Snapshot {
        Snapshot {
            name: "s".into(),
            resource_version: 1,
            phase,
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
        phase: ExpectedPhase,
        reason: ReadyReason,
        message: Option<&str>,
        exit_code: Option<i32>,
    ) -> Expectation {
        Expectation {
            phase,
            reason,
            message: message.map(Into::into),
            exit_code,
            ready_first: false,
        }
    }

    #[test]
    fn a_matching_outcome_passes() {
        let e = expect(
            ExpectedPhase::Error,
            ReadyReason::SupervisorError,
            Some("^policy: .*inference"),
            None,
        );
        expect_outcome(
            &snap(
                Phase::Error,
                "SupervisorError",
                "policy: /etc/openshell/policy.yaml: inference",
                None,
            ),
            &e,
            Req::API_009,
        )
        .unwrap();
    }

    #[test]
    fn a_wrong_message_names_requirement_expected_and_observed() {
        let e = expect(
            ExpectedPhase::Error,
            ReadyReason::SupervisorError,
            Some("^policy: "),
            None,
        );
        let err = expect_outcome(
            &snap(Phase::Error, "SupervisorError", "identity: no user", None),
            &e,
            Req::ERR_001,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("OSC-ERR-001: expected phase Error, Ready reason SupervisorError, message matching /^policy: /"), "{err}");
        assert!(err.contains("observed phase Error, Ready reason \"SupervisorError\", message \"identity: no user\""), "{err}");
    }

    #[test]
    fn an_upstream_reason_is_named_as_such() {
        let e = expect(
            ExpectedPhase::Ready,
            ReadyReason::SupervisorConnected,
            None,
            None,
        );
        let err = expect_outcome(
            &snap(Phase::Ready, "DependenciesReady", "", None),
            &e,
            Req::READY_001,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("upstream OpenShell's reason `DependenciesReady`"),
            "{err}"
        );
    }

    #[test]
    fn ready_first_needs_a_ready_before_the_error() {
        let ready = snap(Phase::Ready, "SupervisorConnected", "", None);
        let exited = snap(Phase::Error, "ProcessExited", "", Some(0));
        assert!(ready_before_error(&[ready.clone(), exited.clone()]));
        assert!(!ready_before_error(&[exited.clone(), ready]));
        assert!(!ready_before_error(&[exited]));
    }

    #[test]
    fn the_exit_code_is_checked() {
        let e = expect(
            ExpectedPhase::Error,
            ReadyReason::ProcessExited,
            None,
            Some(7),
        );
        assert!(expect_outcome(
            &snap(Phase::Error, "ProcessExited", "", Some(7)),
            &e,
            Req::API_009
        )
        .is_ok());
        assert!(expect_outcome(
            &snap(Phase::Error, "ProcessExited", "", Some(0)),
            &e,
            Req::API_009
        )
        .is_err());
        assert!(expect_outcome(
            &snap(Phase::Error, "ProcessExited", "", None),
            &e,
            Req::API_009
        )
        .is_err());
    }
}
