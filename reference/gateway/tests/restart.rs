//! A restart keeps every sandbox, phase and condition; sessions must come back.

mod common;

use std::sync::Arc;

use common::*;
use openshell_proto::v1::{ReportSupervisorErrorRequest, SandboxPhase, SupervisorStartupStage};

#[tokio::test]
async fn a_second_gateway_on_the_same_store_recovers_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let db = db.to_str().unwrap();

    let first = Gateway::start(db, 15).await;
    let (failed, failed_token) = first.create("failed").await;
    let (ready_id, ready_token) = first.create("was-ready").await;
    let (lost, _) = first.create("lost").await;
    let report = ReportSupervisorErrorRequest {
        sandbox_id: failed.clone(),
        stage: SupervisorStartupStage::Identity as i32,
        message: "user \"sandbox\" not found in /etc/passwd".into(),
        ..Default::default()
    };
    first
        .client()
        .await
        .report_supervisor_error(with_token(report, &failed_token))
        .await
        .unwrap();
    let _session = open_session(&first, &ready_id, &ready_token, "i1")
        .await
        .unwrap();
    assert_eq!(
        phase(&first.core.get(&ready_id).unwrap()),
        SandboxPhase::Ready
    );
    let error_before = first.core.get(&failed).unwrap();

    // The second gateway opens the store exactly as the first left it (as after a crash:
    // the Ready record was never demoted by a session end).
    let driver = Arc::new(RecordingDriver::default());
    *driver.exists.lock().unwrap() = true;
    let second = Gateway::start_with(db, 15, driver.clone()).await;
    second.driver.wait_deleted(&failed).await; // Error records get their cleanup again.
    assert_eq!(
        second.core.get(&failed).unwrap().status,
        error_before.status,
        "Error survives the restart"
    );
    let waiting = second.core.get(&ready_id).unwrap();
    assert_eq!(
        phase(&waiting),
        SandboxPhase::Provisioning,
        "Ready waits for its session again"
    );
    assert_eq!(ready(&waiting).1, "SupervisorDisconnected");

    // The stored credential hash survived: the supervisor's session comes back.
    let mut w = watch(&second, &ready_id).await;
    let _again = open_session(&second, &ready_id, &ready_token, "i1")
        .await
        .unwrap();
    w.until(
        "Ready again",
        is(SandboxPhase::Ready, "SupervisorConnected"),
    )
    .await;
    let _ = lost;
}

#[tokio::test]
async fn a_record_whose_backend_is_gone_at_start_becomes_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("gateway.db");
    let db = db.to_str().unwrap();
    let first = Gateway::start(db, 15).await;
    let (lost, _) = first.create("lost").await;
    first.stop().await;
    // The recording driver knows no backend resources: exists() is false.
    let second = Gateway::start(db, 15).await;
    let sb = second.core.get(&lost).unwrap();
    assert_eq!(phase(&sb), SandboxPhase::Error);
    assert_eq!(ready(&sb).1, "BackendLost");
}
