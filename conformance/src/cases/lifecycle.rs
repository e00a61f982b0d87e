//! Error persistence and cleanup cases (OSC-ERR-003/004, OSC-CLEAN-*).

use std::time::{Duration, Instant};

use openshell_proto::labels;
use openshell_proto::v1::SandboxPhase as Phase;

use crate::cases::fixture::observed;
use crate::check::{ensure, expect_code, fail, CaseResult};
use crate::harness::{status_text, Followed, Harness, CASE_LABEL};
use crate::leaks::Resource;
use crate::observe::{watch, Journal, Snapshot, WatchOpts};
use crate::report::Latency;
use crate::spec::Req;

/// How long a backend may take to remove a sandbox's resources (the MUST of OSC-CLEAN-001/002).
pub const REMOVAL_LIMIT: Duration = Duration::from_secs(30);
/// How long it should take (the SHOULD of OSC-CLEAN-004).
pub const PROMPT_REMOVAL: Duration = Duration::from_secs(5);

fn same_error(a: &Snapshot, b: &Snapshot) -> bool {
    a.phase == b.phase && a.reason() == b.reason() && a.message() == b.message()
}

fn listed(left: &[Resource]) -> String {
    left.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// OSC-ERR-003: a background watch, opened right after the create, records every event while
/// the backend exits and is removed; it must have seen the Error, and every event after the first
/// Error must show that same Error (a watch that never opened, or never saw the Error, checked
/// nothing, and fails).
pub async fn error_never_overwritten(h: Harness) -> CaseResult {
    let created = h
        .create("err", "stale-policy", Default::default(), Req::ERR_003)
        .await?;
    let follower = h.follow(&created);
    let last = h.wait_error(&created, Req::ERR_001).await?;
    ensure(
        last.is(Phase::Error, openshell_proto::ReadyReason::SupervisorError),
        Req::ERR_001,
        "the stale-policy sandbox to reach Error / SupervisorError",
        || observed(&last),
    )?;
    // Let the backend exit and be removed (bounded); leftovers are OSC-CLEAN-001's business.
    let _ = h
        .wait_resources_gone(&created.id, REMOVAL_LIMIT, Req::ERR_003)
        .await;
    let stored = h
        .get(&created.name)
        .await
        .map_err(|s| fail(Req::ERR_003, "GetSandbox to succeed", status_text(&s)))?;
    let stored = Snapshot::of(&stored);
    let Followed {
        history,
        ended_early,
    } = follower.finish().await;
    error_kept(&history, ended_early)?;
    ensure(
        same_error(&stored, &last),
        Req::ERR_003,
        &format!("GetSandbox after the backend exited to still show {last}"),
        || stored.to_string(),
    )
}

/// OSC-ERR-003's judgement of a followed history: it must hold an Error (a watch that never
/// opened or never saw the Error checked nothing, and fails), and every event from the first
/// Error on must show that same Error.
pub fn error_kept(history: &[Snapshot], ended_early: Option<String>) -> CaseResult {
    let Some(at) = history.iter().position(|s| s.phase == Phase::Error) else {
        return Err(fail(
            Req::ERR_003,
            "the background watch to see the Error, so what follows it is checked",
            format!(
                "it saw {} events and no Error{}",
                history.len(),
                ended_early.map(|e| format!("; {e}")).unwrap_or_default()
            ),
        ));
    };
    let reference = &history[at];
    match history[at..].iter().find(|s| !same_error(s, reference)) {
        Some(changed) => Err(fail(
            Req::ERR_003,
            format!("every event after {reference} to keep the Error"),
            format!("{changed}"),
        )),
        None => Ok(()),
    }
}

/// OSC-ERR-004.
pub async fn error_visible_everywhere(h: Harness) -> CaseResult {
    let (created, last) = h.create_errored("vis", Req::ERR_004).await?;
    // Let the backend exit first, so the three reads see the settled record; a record that
    // changed meanwhile is OSC-ERR-003's failure, not this one's.
    let _ = h
        .wait_resources_gone(&created.id, REMOVAL_LIMIT, Req::ERR_004)
        .await;
    let got = h
        .get(&created.name)
        .await
        .map_err(|s| fail(Req::ERR_004, "GetSandbox to succeed", status_text(&s)))?;
    let got = Snapshot::of(&got);
    ensure(
        same_error(&got, &last),
        Req::ERR_003,
        &format!("GetSandbox after the backend exited to still show {last}"),
        || got.to_string(),
    )?;
    let last = got;
    let selector = format!(
        "{}={},{CASE_LABEL}={}",
        labels::RUN_ID,
        h.run_id(),
        h.labels()[CASE_LABEL]
    );
    let listed = h
        .list(&selector)
        .await
        .map_err(|s| fail(Req::ERR_004, "ListSandboxes to succeed", status_text(&s)))?;
    let in_list = listed
        .iter()
        .map(Snapshot::of)
        .find(|s| s.name == created.name);
    ensure(
        in_list.as_ref().is_some_and(|s| same_error(s, &last)),
        Req::ERR_004,
        &format!("ListSandboxes to show {last}"),
        || format!("{in_list:?}"),
    )?;
    let journal = Journal::default();
    let deadline = (Instant::now() + Duration::from_secs(10)).min(h.deadline());
    let obs = watch(
        &mut h.client(),
        &created.id,
        WatchOpts::default(),
        deadline,
        &journal,
        |_| true,
    )
    .await
    .map_err(|s| fail(Req::ERR_004, "WatchSandbox to open", status_text(&s)))?;
    let first = obs.last();
    ensure(
        first.as_ref().is_some_and(|s| same_error(s, &last)),
        Req::ERR_004,
        &format!("a new watch to start with {last}"),
        || format!("{first:?} ({:?})", obs.end),
    )
}

/// Checks a removal's two bounds: nothing left within [`REMOVAL_LIMIT`] (`must`), and within
/// [`PROMPT_REMOVAL`] (OSC-CLEAN-004, a SHOULD).
fn removal_bounds(left: &[Resource], took: Duration, must: Req, what: &str) -> CaseResult {
    ensure(
        left.is_empty(),
        must,
        &format!("no backend resource of {what} within {REMOVAL_LIMIT:?}"),
        || listed(left),
    )?;
    ensure(
        took <= PROMPT_REMOVAL,
        Req::CLEAN_004,
        &format!("no backend resource of {what} within {PROMPT_REMOVAL:?}"),
        || {
            format!(
                "the last one was gone only after {:.1} s",
                took.as_secs_f64()
            )
        },
    )
    .map_err(|e| crate::check::held(e, &[must]))
}

/// OSC-CLEAN-001 and OSC-CLEAN-004: the failed sandbox's resources go without a delete.
pub async fn cleanup_after_error(h: Harness) -> CaseResult {
    let (created, _) = h.create_errored("clean", Req::CLEAN_001).await?;
    let (left, took) = h
        .wait_resources_gone(&created.id, REMOVAL_LIMIT, Req::CLEAN_001)
        .await?;
    if left.is_empty() {
        h.record_latency(Latency::ErrorToBackendGone, took);
    }
    removal_bounds(
        &left,
        took,
        Req::CLEAN_001,
        &format!("{} after its Error, without a delete", created.id),
    )?;
    let got = h.get(&created.name).await.map_err(|s| {
        fail(
            Req::CLEAN_001,
            "the record to stay readable",
            status_text(&s),
        )
    })?;
    let got = Snapshot::of(&got);
    ensure(
        got.phase == Phase::Error,
        Req::CLEAN_001,
        "the record to stay in Error after cleanup",
        || got.to_string(),
    )
}

/// OSC-CLEAN-002 and OSC-CLEAN-004. The suite must see the Ready sandbox's backend resource
/// first: a backend it cannot see would make "nothing left" a pass by blindness.
pub async fn cleanup_after_delete(h: Harness) -> CaseResult {
    let (created, _) = h.create_ready("del", Req::CLEAN_002).await?;
    let before = h.resources(&created.id, Req::CLEAN_002).await?;
    ensure(
        !before.is_empty(),
        Req::CLEAN_002,
        &format!(
            "to see the Ready sandbox's backend resource (labelled {}={}) before the delete",
            labels::SANDBOX_ID,
            created.id
        ),
        || "none found: the suite cannot see this backend, so it cannot judge cleanup".into(),
    )?;
    let deleted_at = Instant::now();
    h.delete(&created.name)
        .await
        .map_err(|s| fail(Req::CLEAN_002, "DeleteSandbox to succeed", status_text(&s)))?;
    let end = (Instant::now() + REMOVAL_LIMIT).min(h.deadline());
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut still = None;
    while Instant::now() < end {
        tick.tick().await;
        match h.get(&created.name).await {
            Err(s) if s.code() == tonic::Code::NotFound => {
                still = None;
                break;
            }
            other => {
                still = Some(
                    other
                        .map(|s| Snapshot::of(&s).to_string())
                        .unwrap_or_else(|s| status_text(&s)),
                )
            }
        }
    }
    if let Some(state) = still {
        return Err(fail(
            Req::CLEAN_002,
            format!(
                "GetSandbox {} to answer NotFound after the delete",
                created.name
            ),
            state,
        ));
    }
    expect_code(
        h.get(&created.name).await,
        tonic::Code::NotFound,
        Req::CLEAN_002,
        "GetSandbox after delete",
    )?;
    let (left, _) = h
        .wait_resources_gone(&created.id, REMOVAL_LIMIT, Req::CLEAN_002)
        .await?;
    let took = deleted_at.elapsed();
    if left.is_empty() {
        h.record_latency(Latency::DeleteToBackendGone, took);
    }
    removal_bounds(
        &left,
        took,
        Req::CLEAN_002,
        &format!("{} after its delete", created.id),
    )
}

/// OSC-CLEAN-003.
pub async fn backend_labels(h: Harness) -> CaseResult {
    let (created, _) = h.create_ready("lbl", Req::CLEAN_003).await?;
    let found = h.resources(&created.id, Req::CLEAN_003).await?;
    ensure(
        !found.is_empty(),
        Req::CLEAN_003,
        &format!(
            "a backend resource labelled {}={}",
            labels::SANDBOX_ID,
            created.id
        ),
        || "none found".into(),
    )?;
    for r in &found {
        let ok = r.labels.get(labels::SANDBOX_ID) == Some(&created.id)
            && r.labels.get(labels::RUN_ID).map(String::as_str) == Some(h.run_id());
        ensure(
            ok,
            Req::CLEAN_003,
            &format!(
                "labels {}={} and {}={}",
                labels::SANDBOX_ID,
                created.id,
                labels::RUN_ID,
                h.run_id()
            ),
            || format!("{r}: {:?}", r.labels),
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Cond;

    fn snap(phase: Phase, reason: &str) -> Snapshot {
        Snapshot {
            name: "s".into(),
            resource_version: 1,
            phase,
            ready: Some(Cond {
                status: "False".into(),
                reason: reason.into(),
                message: "policy: x".into(),
            }),
            degraded: None,
            exit_code: None,
        }
    }

    #[test]
    fn a_watch_that_saw_no_error_checked_nothing_and_fails() {
        let err = error_kept(&[], Some("it failed to open: Unavailable".into())).unwrap_err();
        assert!(
            err.to_string()
                .contains("saw 0 events and no Error; it failed to open"),
            "{err}"
        );
        assert!(error_kept(&[snap(Phase::Provisioning, "Starting")], None).is_err());
    }

    #[test]
    fn an_error_kept_passes_and_one_overwritten_fails() {
        let e = snap(Phase::Error, "SupervisorError");
        assert!(error_kept(
            &[snap(Phase::Provisioning, "Starting"), e.clone(), e.clone()],
            None
        )
        .is_ok());
        assert!(error_kept(&[e, snap(Phase::Provisioning, "Starting")], None).is_err());
    }
}
