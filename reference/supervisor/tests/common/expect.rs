//! Assertions shared by the test files.

use std::time::Duration;

use openshell_proto::v1::{ReportSupervisorErrorRequest, SupervisorStartupStage as Stage};

use super::sandbox::{Launch, Outcome, Root, TOKEN};
use super::{Event, GatewayDouble};

/// Generous bound on one supervisor run that should fail at startup.
pub const FAIL_BOUND: Duration = Duration::from_secs(30);

/// Runs `root` with `launch` and checks the startup-failure contract: exactly one
/// `ReportSupervisorError` with `stage` and the token, no session, a non-zero exit, and the
/// error on stderr too. Returns the report and the outcome.
pub async fn single_failure(
    root: &Root,
    launch: &Launch,
    stage: Stage,
) -> (ReportSupervisorErrorRequest, Outcome) {
    let gw = GatewayDouble::start().await;
    let outcome = launch.start(root, &gw.endpoint()).finish(FAIL_BOUND).await;
    let events = gw.drain().await;
    let errors: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error { report, auth } => Some((report.clone(), auth.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "exactly one error report; events {events:?}; stderr:\n{}",
        outcome.stderr
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Hello { .. })),
        "no session after a startup failure: {events:?}"
    );
    let (report, auth) = errors.into_iter().next().unwrap();
    assert_eq!(auth, format!("Bearer {TOKEN}"));
    assert_eq!(report.stage, stage as i32, "stage of {report:?}");
    assert_eq!(report.sandbox_id, super::sandbox::SANDBOX_ID);
    assert!(!report.instance_id.is_empty());
    assert!(
        matches!(outcome.code, Some(c) if c != 0),
        "non-zero exit: {outcome:?}"
    );
    assert!(
        outcome.stderr.contains(&report.message),
        "stderr carries the error too:\n{}",
        outcome.stderr
    );
    (report, outcome)
}

/// Checks `"<stage>: <message>"` (what the gateway stores) against the fixture's manifest regex.
pub fn matches_manifest(root: &Root, report: &ReportSupervisorErrorRequest) {
    let stage = Stage::try_from(report.stage).expect("known stage");
    let stored = format!("{}: {}", openshell_proto::stage_name(stage), report.message);
    let pattern = root
        .fixture
        .expect
        .message
        .as_deref()
        .expect("fixture has a message regex");
    let re = regex::Regex::new(pattern).expect("manifest regex");
    assert!(
        re.is_match(&stored),
        "{stored:?} does not match the manifest's {pattern:?}"
    );
}
