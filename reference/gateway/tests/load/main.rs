//! The gateway load test (issue 13): the reference gateway on the recording driver, a file
//! database, the default heartbeat and real gRPC on 127.0.0.1, with simulated supervisors (no
//! containers), one connection each.
//!
//! - [`sessions`]: sessions with heartbeats, a burst of `ReportSupervisorError`, a watcher on
//!   every sandbox; report-ack latency, peak memory, and every watch stream checked against the
//!   stored history by [`checker`].
//! - [`stored`]: many stored sandboxes; `get` and `list` latency and the restart to serving.
//! - [`setup`]: connections and bulk creation; [`figures`]: percentiles, memory, fd limit.
//!
//! CI runs both scenarios at small sizes as ordinary tests that fail on any lost, reordered or
//! unexpected transition. The full size (1,000 sessions, 1,000 reports, 10,000 stored) is a
//! command, not a timed test; it prints one JSON line:
//!
//! ```text
//! cargo test --release -p openshell-gateway --test load -- --ignored --nocapture full_size
//! ```

#[path = "../common/mod.rs"]
mod common;

mod checker;
mod figures;
mod sessions;
mod setup;
mod stored;

use std::time::Duration;

use serde_json::json;

/// The gateway's default `--heartbeat-secs` (src/main.rs): the load runs at what users run.
const DEFAULT_HEARTBEAT_SECS: u32 = 15;

/// Far above what a CI-size run takes (milliseconds), so it only catches a gateway that stalls.
const CI_ACK_GUARD: Duration = Duration::from_secs(2);

fn assert_clean(f: &sessions::Figures) {
    assert!(
        f.reports_failed.is_empty(),
        "reports failed: {:?}",
        f.reports_failed
    );
    assert_eq!(f.report_ack.count, f.size.reports);
    assert!(
        f.faults.is_empty(),
        "watch streams departed from the stored history: {:?}",
        &f.faults[..f.faults.len().min(10)]
    );
    assert!(
        f.unexpected_histories.is_empty(),
        "histories not created → Ready → demoted / created → Error: {:?}",
        &f.unexpected_histories[..f.unexpected_histories.len().min(10)]
    );
    assert_eq!(f.streams_checked, f.size.sessions + f.size.reports);
    assert_eq!(
        f.streams_settled, f.streams_checked,
        "every stream reached its sandbox's last state"
    );
    assert!(
        f.min_beats.0 >= 1 && f.min_beats.1 >= 1,
        "every session exchanged heartbeats: {:?}",
        f.min_beats
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_reports_and_watchers_lose_no_transition_at_ci_size() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let size = sessions::Size {
        sessions: 50,
        reports: 50,
        watchers_per_connection: 20,
        heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
        report_spread: Duration::ZERO,
    };
    let f = sessions::run(db.to_str().unwrap(), size).await;
    assert_clean(&f);
    assert!(
        f.report_ack.max < CI_ACK_GUARD,
        "a report ack took {:?}",
        f.report_ack.max
    );
    println!("{}", f.json());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_sandboxes_are_served_and_survive_a_restart_at_ci_size() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let size = stored::Size {
        stored: 300,
        gets: 50,
        lists: 3,
    };
    let f = stored::run(db.to_str().unwrap(), size).await;
    assert_eq!(
        f.after_restart, size.stored,
        "every record survives the restart"
    );
    assert_eq!(
        f.phase_changed_by_restart, 0,
        "a restart with every backend present changes no phase"
    );
    assert!(f.restart_to_serving < Duration::from_secs(30));
    println!("{}", f.json());
}

/// The full-size run: a measurement, not a test of speed (it asserts only correctness).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "full-size load run (minutes); run with --release --ignored, see the header"]
async fn full_size() {
    let dir = tempfile::tempdir().unwrap();
    let size = sessions::Size {
        sessions: 1000,
        reports: 1000,
        watchers_per_connection: 100,
        heartbeat_secs: DEFAULT_HEARTBEAT_SECS,
        report_spread: Duration::ZERO,
    };
    let burst = sessions::run(dir.path().join("burst.db").to_str().unwrap(), size).await;
    // The same with the reports at a steady 200 per second (spread over 5 s).
    let steady_size = sessions::Size {
        report_spread: Duration::from_secs(5),
        ..size
    };
    let steady = sessions::run(dir.path().join("steady.db").to_str().unwrap(), steady_size).await;
    let stored_size = stored::Size {
        stored: 10_000,
        gets: 1000,
        lists: 10,
    };
    let stored = stored::run(dir.path().join("stored.db").to_str().unwrap(), stored_size).await;
    let line = json!({
        "scenario": "gateway-load",
        "schema": 1,
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "burst": burst.json(),
        "steady": steady.json(),
        "stored": stored.json(),
    });
    println!("{line}");
    assert_clean(&burst);
    assert_clean(&steady);
    assert_eq!(stored.after_restart, stored_size.stored);
}
