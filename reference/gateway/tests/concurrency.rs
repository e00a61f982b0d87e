//! Bounded concurrency: several sandboxes, flapping sessions and several watchers each; every
//! watch stream must equal the stored history from its first snapshot on.

mod common;

use common::*;
use openshell_proto::v1::{ReportSupervisorErrorRequest, SandboxPhase, SupervisorStartupStage};

const SANDBOXES: usize = 6;
const FLAPS: usize = 5;
const WATCHERS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_watch_stream_equals_the_stored_history_under_session_flaps() {
    let gw = std::sync::Arc::new(Gateway::start(":memory:", 15).await);
    let mut tasks = Vec::new();
    for n in 0..SANDBOXES {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("flap-{n}");
            let (id, token) = gw.create(&name).await;
            let mut watchers = Vec::new();
            for _ in 0..WATCHERS {
                let mut w = watch(&gw, &id).await;
                watchers.push(tokio::spawn(async move {
                    w.until("Error", |sb| phase(sb) == SandboxPhase::Error)
                        .await;
                    w.seen
                }));
            }
            for flap in 0..FLAPS {
                let session = open_session(&gw, &id, &token, &format!("i{flap}"))
                    .await
                    .unwrap();
                assert!(session.accepted());
                drop(session);
            }
            let report = ReportSupervisorErrorRequest {
                sandbox_id: id.clone(),
                stage: SupervisorStartupStage::Other as i32,
                message: "done".into(),
                ..Default::default()
            };
            gw.client()
                .await
                .report_supervisor_error(with_token(report, &token))
                .await
                .unwrap();
            let history = gw.core.history(&id).unwrap();
            for watcher in watchers {
                let seen = watcher.await.unwrap();
                let first = seen[0].metadata.as_ref().unwrap().resource_version as usize;
                assert_eq!(
                    seen.as_slice(),
                    &history[first - 1..],
                    "{name}: a watch stream differs from the stored history"
                );
            }
            let versions: Vec<u64> = history
                .iter()
                .map(|sb| sb.metadata.as_ref().unwrap().resource_version)
                .collect();
            assert!(
                versions.windows(2).all(|w| w[1] == w[0] + 1),
                "{name}: versions {versions:?}"
            );
            history.len()
        }));
    }
    let mut changes = 0;
    for task in tasks {
        changes += task.await.unwrap();
    }
    assert!(
        changes >= SANDBOXES * 3,
        "each sandbox at least created, promoted and failed: {changes}"
    );
}
