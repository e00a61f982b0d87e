//! Error persistence and cleanup cases (OSC-ERR-003/004, OSC-CLEAN-*).

use std::time::{Duration, Instant};

use openshell_proto::labels;

use crate::cases::fixture::observed;
use crate::check::{ensure, expect_code, fail, CaseResult};
use crate::harness::{status_text, CreateOpts, Harness, CASE_LABEL};
use crate::observe::{watch, Journal, Snapshot, WatchOpts};

/// How long a backend may take to remove a sandbox's resources.
const REMOVAL_LIMIT: Duration = Duration::from_secs(30);

fn same_error(a: &Snapshot, b: &Snapshot) -> bool {
    a.phase == b.phase && a.reason() == b.reason() && a.message() == b.message()
}

/// OSC-ERR-003: a background watch records every event while the backend exits and is removed;
/// after the first Error, every event must show the same Error.
pub async fn error_never_overwritten(h: Harness) -> CaseResult {
    let created = h
        .create("err", "stale-policy", CreateOpts::default(), "OSC-ERR-003")
        .await?;
    let journal = Journal::default();
    let background = {
        let (mut client, id, journal, deadline) = (
            h.client(),
            created.id.clone(),
            journal.clone(),
            h.deadline(),
        );
        tokio::spawn(async move {
            watch(
                &mut client,
                &id,
                WatchOpts::default(),
                deadline,
                &journal,
                |_| false,
            )
            .await
        })
    };
    let last = h.wait_phase(&created, "Error", "OSC-ERR-001").await?;
    ensure(
        last.phase == "Error",
        "OSC-ERR-001",
        "the stale-policy sandbox to reach Error",
        || observed(&last),
    )?;
    // Let the backend exit and be removed (bounded); leftovers are OSC-CLEAN-001's business.
    let _ = h.wait_resources_gone(&created.id, REMOVAL_LIMIT).await;
    let stored = h
        .get(&created.name)
        .await
        .map_err(|s| fail("OSC-ERR-003", "GetSandbox to succeed", status_text(&s)))?;
    let stored = Snapshot::of(&stored);
    background.abort();
    let history = journal.history();
    let first_error = history.iter().position(|s| s.phase == "Error");
    if let Some(at) = first_error {
        let reference = &history[at];
        if let Some(changed) = history[at..].iter().find(|s| !same_error(s, reference)) {
            return Err(fail(
                "OSC-ERR-003",
                format!("every event after {reference} to keep the Error"),
                format!("{changed}"),
            ));
        }
    }
    ensure(
        same_error(&stored, &last),
        "OSC-ERR-003",
        &format!("GetSandbox after the backend exited to still show {last}"),
        || stored.to_string(),
    )
}

/// OSC-ERR-004.
pub async fn error_visible_everywhere(h: Harness) -> CaseResult {
    let (created, last) = h.create_errored("vis", "OSC-ERR-004").await?;
    // Let the backend exit first, so the three reads see the settled record; a record that
    // changed meanwhile is OSC-ERR-003's failure, not this one's.
    let _ = h.wait_resources_gone(&created.id, REMOVAL_LIMIT).await;
    let got = h
        .get(&created.name)
        .await
        .map_err(|s| fail("OSC-ERR-004", "GetSandbox to succeed", status_text(&s)))?;
    let got = Snapshot::of(&got);
    ensure(
        same_error(&got, &last),
        "OSC-ERR-003",
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
        .map_err(|s| fail("OSC-ERR-004", "ListSandboxes to succeed", status_text(&s)))?;
    let in_list = listed
        .iter()
        .map(Snapshot::of)
        .find(|s| s.name == created.name);
    ensure(
        in_list.as_ref().is_some_and(|s| same_error(s, &last)),
        "OSC-ERR-004",
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
    .map_err(|s| fail("OSC-ERR-004", "WatchSandbox to open", status_text(&s)))?;
    let first = obs.last();
    ensure(
        first.as_ref().is_some_and(|s| same_error(s, &last)),
        "OSC-ERR-004",
        &format!("a new watch to start with {last}"),
        || format!("{first:?} ({:?})", obs.end),
    )
}

/// OSC-CLEAN-001.
pub async fn cleanup_after_error(h: Harness) -> CaseResult {
    let created = h
        .create(
            "clean",
            "stale-policy",
            CreateOpts::default(),
            "OSC-CLEAN-001",
        )
        .await?;
    let last = h.wait_phase(&created, "Error", "OSC-ERR-001").await?;
    ensure(
        last.phase == "Error",
        "OSC-ERR-001",
        "the stale-policy sandbox to reach Error",
        || observed(&last),
    )?;
    let left = h.wait_resources_gone(&created.id, REMOVAL_LIMIT).await?;
    ensure(
        left.is_empty(),
        "OSC-CLEAN-001",
        &format!(
            "no backend resource of {} within {REMOVAL_LIMIT:?} of Error, without a delete",
            created.id
        ),
        || {
            left.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        },
    )?;
    let got = h.get(&created.name).await.map_err(|s| {
        fail(
            "OSC-CLEAN-001",
            "the record to stay readable",
            status_text(&s),
        )
    })?;
    let got = Snapshot::of(&got);
    ensure(
        got.phase == "Error",
        "OSC-CLEAN-001",
        "the record to stay in Error after cleanup",
        || got.to_string(),
    )
}

/// OSC-CLEAN-002.
pub async fn cleanup_after_delete(h: Harness) -> CaseResult {
    let (created, _) = h.create_ready("del", "OSC-CLEAN-002").await?;
    h.delete(&created.name)
        .await
        .map_err(|s| fail("OSC-CLEAN-002", "DeleteSandbox to succeed", status_text(&s)))?;
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
            "OSC-CLEAN-002",
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
        "OSC-CLEAN-002",
        "GetSandbox after delete",
    )?;
    let left = h.wait_resources_gone(&created.id, REMOVAL_LIMIT).await?;
    ensure(
        left.is_empty(),
        "OSC-CLEAN-002",
        &format!("no backend resource of {} after the delete", created.id),
        || {
            left.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        },
    )
}

/// OSC-CLEAN-003.
pub async fn backend_labels(h: Harness) -> CaseResult {
    let (created, _) = h.create_ready("lbl", "OSC-CLEAN-003").await?;
    let found = h.resources(&created.id).await?;
    ensure(
        !found.is_empty(),
        "OSC-CLEAN-003",
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
            "OSC-CLEAN-003",
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
