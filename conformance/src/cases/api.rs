//! Interface cases (OSC-API-*): bad requests, watch semantics, list selection, missing images.

use std::time::{Duration, Instant};

use tonic::Code;

use crate::check::{ensure, expect_code, fail, CaseResult};
use crate::harness::{status_text, CreateOpts, Harness, CASE_LABEL};
use crate::observe::{watch, End, Journal, Snapshot, WatchOpts};
use crate::spec::Req;
use openshell_proto::labels;
use openshell_proto::v1::SandboxPhase as Phase;
use openshell_proto::ReadyReason;

/// An image reference for requests whose image does not matter (fixtures may be unavailable).
fn some_image(h: &Harness) -> String {
    h.image("good")
        .unwrap_or_else(|_| "openshell-fixture/good:000000000000".to_string())
}

/// OSC-API-001.
pub async fn empty_image(h: Harness) -> CaseResult {
    let request = h.request(&h.name("empty"), "", &CreateOpts::default());
    expect_code(
        h.create_raw(request).await,
        Code::InvalidArgument,
        Req::API_001,
        "CreateSandbox with image \"\"",
    )
}

/// OSC-API-002.
pub async fn invalid_names(h: Harness) -> CaseResult {
    let image = some_image(&h);
    for name in [
        "Upper-Case".to_string(),
        "under_score".to_string(),
        "-leading-dash".to_string(),
        "a".repeat(64),
    ] {
        let request = h.request(&name, &image, &CreateOpts::default());
        expect_code(
            h.create_raw(request).await,
            Code::InvalidArgument,
            Req::API_002,
            &format!("CreateSandbox named {name:?}"),
        )?;
    }
    Ok(())
}

/// OSC-API-003.
pub async fn duplicate_name(h: Harness) -> CaseResult {
    let image = h.image("good")?;
    let name = h.name("dup");
    h.create_raw(h.request(&name, &image, &CreateOpts::default()))
        .await
        .map_err(|s| {
            fail(
                Req::API_003,
                format!("the first CreateSandbox {name} to succeed"),
                status_text(&s),
            )
        })?;
    let again = h
        .create_raw(h.request(&name, &image, &CreateOpts::default()))
        .await;
    expect_code(
        again,
        Code::AlreadyExists,
        Req::API_003,
        &format!("a second CreateSandbox {name}"),
    )
}

/// OSC-API-004.
pub async fn unknown_sandbox(h: Harness) -> CaseResult {
    let name = h.name("never-created");
    expect_code(
        h.get(&name).await,
        Code::NotFound,
        Req::API_004,
        &format!("GetSandbox {name}"),
    )?;
    expect_code(
        h.delete(&name).await,
        Code::NotFound,
        Req::API_004,
        &format!("DeleteSandbox {name}"),
    )
}

fn rising(snapshots: &[Snapshot]) -> CaseResult {
    for pair in snapshots.windows(2) {
        ensure(
            pair[1].resource_version > pair[0].resource_version,
            Req::API_005,
            "strictly rising resource_version",
            || format!("{} followed by {}", pair[0], pair[1]),
        )?;
    }
    Ok(())
}

/// OSC-API-005.
pub async fn watch_snapshot_first(h: Harness) -> CaseResult {
    let image = h.image("good")?;
    let name = h.name("watch");
    let created = h
        .create_raw(h.request(&name, &image, &CreateOpts::default()))
        .await
        .map_err(|s| {
            fail(
                Req::API_005,
                format!("CreateSandbox {name} to succeed"),
                status_text(&s),
            )
        })?;
    let meta = created.metadata.unwrap_or_default();
    let obs = h
        .watch_until(&meta.id, false, Snapshot::is_terminal)
        .await?;
    let snaps = obs.snapshots();
    let first = snaps.first().ok_or_else(|| {
        fail(
            Req::API_005,
            "a first event (the snapshot)",
            format!("{:?}", obs.end),
        )
    })?;
    ensure(
        first.resource_version >= meta.resource_version,
        Req::API_005,
        "the first event to be the current snapshot",
        || {
            format!(
                "first event rv {} older than the create response's rv {}",
                first.resource_version, meta.resource_version
            )
        },
    )?;
    rising(&snaps)?;
    // A second watch, opened once the sandbox is terminal: its first event is the stored state.
    let stored = h
        .get(&name)
        .await
        .map_err(|s| fail(Req::API_005, "GetSandbox to succeed", status_text(&s)))?;
    let stored = Snapshot::of(&stored);
    let journal = Journal::default();
    let deadline = (Instant::now() + Duration::from_secs(10)).min(h.deadline());
    let second = watch(
        &mut h.client(),
        &meta.id,
        WatchOpts::default(),
        deadline,
        &journal,
        |_| true,
    )
    .await
    .map_err(|s| {
        fail(
            Req::API_005,
            "a second WatchSandbox to open",
            status_text(&s),
        )
    })?;
    let first = second
        .last()
        .ok_or_else(|| fail(Req::API_005, "a first event", format!("{:?}", second.end)))?;
    ensure(
        first.resource_version >= stored.resource_version && first.phase == stored.phase,
        Req::API_005,
        "a new watch's first event to be the current snapshot",
        || format!("first event {first}; GetSandbox {stored}"),
    )
}

/// OSC-API-006.
pub async fn stop_on_terminal(h: Harness) -> CaseResult {
    for fixture in ["good", "stale-policy"] {
        let created = h
            .create(fixture, fixture, CreateOpts::default(), Req::API_006)
            .await?;
        let obs = h.watch_until(&created.id, true, |_| false).await?;
        let last = obs.last();
        ensure(
            obs.end == End::Closed && last.as_ref().is_some_and(Snapshot::is_terminal),
            Req::API_006,
            &format!(
                "the stop_on_terminal stream of {} to end right after Ready or Error",
                created.name
            ),
            || {
                format!(
                    "stream end {:?}, last event {}",
                    obs.end,
                    last.map(|s| s.to_string()).unwrap_or_default()
                )
            },
        )?;
        // Opened on a terminal sandbox, the stream gives the snapshot and ends.
        let journal = Journal::default();
        let deadline = (Instant::now() + Duration::from_secs(10)).min(h.deadline());
        let opts = WatchOpts {
            stop_on_terminal: true,
            follow_logs: false,
        };
        let again = watch(
            &mut h.client(),
            &created.id,
            opts,
            deadline,
            &journal,
            |_| false,
        )
        .await
        .map_err(|s| fail(Req::API_006, "WatchSandbox to open", status_text(&s)))?;
        ensure(
            again.end == End::Closed && !again.events.is_empty(),
            Req::API_006,
            "a stop_on_terminal watch of a terminal sandbox to give its snapshot and end",
            || format!("{} events, end {:?}", again.events.len(), again.end),
        )?;
    }
    Ok(())
}

/// OSC-API-007.
pub async fn list_by_label(h: Harness) -> CaseResult {
    let image = some_image(&h);
    let mut names = Vec::new();
    // A decoy of the same run whose case label differs: a selector must match every pair.
    let decoy = h.name("l3");
    let mut decoy_opts = CreateOpts::default();
    decoy_opts.labels.push((
        CASE_LABEL.to_string(),
        format!("{}-decoy", h.labels()[CASE_LABEL]),
    ));
    h.create_raw(h.request(&decoy, &image, &decoy_opts))
        .await
        .map_err(|s| {
            fail(
                Req::API_007,
                format!("CreateSandbox {decoy}"),
                status_text(&s),
            )
        })?;
    for suffix in ["l1", "l2"] {
        let name = h.name(suffix);
        h.create_raw(h.request(&name, &image, &CreateOpts::default()))
            .await
            .map_err(|s| {
                fail(
                    Req::API_007,
                    format!("CreateSandbox {name}"),
                    status_text(&s),
                )
            })?;
        names.push(name);
    }
    let case_label = h.labels()[CASE_LABEL].clone();
    let selector = format!(
        "{}={},{CASE_LABEL}={case_label}",
        labels::RUN_ID,
        h.run_id()
    );
    let listed = h
        .list(&selector)
        .await
        .map_err(|s| fail(Req::API_007, "ListSandboxes to succeed", status_text(&s)))?;
    let mut got: Vec<String> = listed
        .iter()
        .filter_map(|s| s.metadata.as_ref().map(|m| m.name.clone()))
        .collect();
    got.sort();
    ensure(
        got == names,
        Req::API_007,
        &format!("ListSandboxes {selector:?} to return exactly {names:?} (not {decoy}, which matches only the run label)"),
        || format!("{got:?}"),
    )?;
    let run_only = format!("{}={}", labels::RUN_ID, h.run_id());
    let listed = h
        .list(&run_only)
        .await
        .map_err(|s| fail(Req::API_007, "ListSandboxes to succeed", status_text(&s)))?;
    let all: Vec<String> = listed
        .iter()
        .filter_map(|s| s.metadata.as_ref().map(|m| m.name.clone()))
        .collect();
    ensure(
        names.iter().all(|n| all.contains(n)),
        Req::API_007,
        &format!("ListSandboxes {run_only:?} to include {names:?}"),
        || format!("{all:?}"),
    )?;
    let foreign = format!("{}=not-{}", labels::RUN_ID, h.run_id());
    let listed = h
        .list(&foreign)
        .await
        .map_err(|s| fail(Req::API_007, "ListSandboxes to succeed", status_text(&s)))?;
    let leaked: Vec<String> = listed
        .iter()
        .filter_map(|s| s.metadata.as_ref().map(|m| m.name.clone()))
        .filter(|n| names.contains(n))
        .collect();
    ensure(
        leaked.is_empty(),
        Req::API_007,
        &format!("ListSandboxes {foreign:?} to exclude this run's sandboxes"),
        || format!("{leaked:?}"),
    )
}

/// OSC-API-008.
pub async fn image_not_found(h: Harness) -> CaseResult {
    let name = h.name("noimage");
    let image = "openshell-fixture/good:000000000000";
    let sandbox = h
        .create_raw(h.request(&name, image, &CreateOpts::default()))
        .await
        .map_err(|s| {
            fail(
                Req::API_008,
                format!("CreateSandbox from {image} to be accepted (the driver finds out)"),
                status_text(&s),
            )
        })?;
    let created = crate::harness::Created {
        name,
        id: sandbox.metadata.unwrap_or_default().id,
        requested_at: Instant::now(),
    };
    let last = h.wait_terminal(&created, Req::API_008).await?;
    ensure(
        last.is(Phase::Error, ReadyReason::ImageNotFound),
        Req::API_008,
        "phase Error, Ready reason ImageNotFound",
        || crate::cases::fixture::observed(&last),
    )
}

/// OSC-API-010: `main-exits` without a `spec.command` runs its image's CMD (`sleep 2; exit 7`).
pub async fn image_command_default(h: Harness) -> CaseResult {
    let opts = CreateOpts {
        image_command: true,
        ..Default::default()
    };
    let created = h.create("cmd", "main-exits", opts, Req::API_010).await?;
    let last = h.wait_error(&created, Req::API_010).await?;
    ensure(
        last.is(Phase::Error, ReadyReason::ProcessExited) && last.exit_code == Some(7),
        Req::API_010,
        "Error / ProcessExited with exit code 7 (the image's CMD, `sleep 2; exit 7`)",
        || crate::cases::fixture::observed(&last),
    )
}
