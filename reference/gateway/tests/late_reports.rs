//! Duplicate, late and out-of-order reports over real gRPC: a second report, a report after the
//! main process exited, after Error, during Deleting or after delete, and late driver events,
//! all change nothing stored, start no second cleanup, and bring nothing back to life.

mod common;

use std::sync::Arc;

use common::*;
use openshell_driver::{DriverError, DriverEvent};
use openshell_proto::v1::{
    DeleteSandboxRequest, ReportMainProcessExitRequest, ReportSupervisorErrorRequest, SandboxPhase,
    SupervisorStartupStage,
};
use tokio::sync::Notify;

fn error_report(id: &str, message: &str) -> ReportSupervisorErrorRequest {
    ReportSupervisorErrorRequest {
        sandbox_id: id.into(),
        stage: SupervisorStartupStage::Policy as i32,
        message: message.into(),
        ..Default::default()
    }
}

fn exit_report(id: &str, code: i32) -> ReportMainProcessExitRequest {
    ReportMainProcessExitRequest {
        sandbox_id: id.into(),
        exit_code: code,
        ..Default::default()
    }
}

fn late_driver_events(gw: &Gateway, id: &str) {
    let id = id.to_string();
    for event in [
        DriverEvent::Running {
            sandbox_id: id.clone(),
        },
        DriverEvent::Exited {
            sandbox_id: id.clone(),
            exit_code: 9,
        },
        DriverEvent::Failed {
            sandbox_id: id.clone(),
            error: DriverError::StartFailed("late".into()),
        },
        DriverEvent::Gone {
            sandbox_id: id.clone(),
        },
    ] {
        driver_event(gw, event);
    }
}

/// Waits until every driver event sent so far was applied (an event sent after them is seen).
async fn events_applied(gw: &Gateway) {
    let (marker, token) = gw.create(&format!("marker-{}", uuid_ish())).await;
    let _ = token;
    let mut w = watch(gw, &marker).await;
    driver_event(
        gw,
        DriverEvent::Exited {
            sandbox_id: marker.clone(),
            exit_code: 0,
        },
    );
    w.until("marker Error", |sb| phase(sb) == SandboxPhase::Error)
        .await;
}

fn uuid_ish() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn a_second_report_and_late_events_after_error_change_nothing() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("twice").await;
    let mut client = gw.client().await;
    client
        .report_supervisor_error(with_token(error_report(&id, "first"), &token))
        .await
        .unwrap();
    gw.driver.wait_deleted(&id).await;
    let frozen = gw.core.get(&id).unwrap();
    let versions = gw.core.history(&id).unwrap().len();

    client
        .report_supervisor_error(with_token(error_report(&id, "second"), &token))
        .await
        .expect("a duplicate report is answered, idempotently");
    client
        .report_main_process_exit(with_token(exit_report(&id, 1), &token))
        .await
        .expect("a late exit report is answered");
    let session = open_session(&gw, &id, &token, "late").await.unwrap();
    assert!(!session.accepted(), "no session for a sandbox in Error");
    late_driver_events(&gw, &id);
    events_applied(&gw).await;

    assert_eq!(gw.core.get(&id).unwrap(), frozen, "nothing changed");
    assert_eq!(gw.core.history(&id).unwrap().len(), versions);
    assert_eq!(ready(&frozen).2, "policy: first");
    let cleanups = gw
        .driver
        .deleted
        .lock()
        .unwrap()
        .iter()
        .filter(|d| **d == id)
        .count();
    assert_eq!(cleanups, 1, "one cleanup, not one per report");
}

#[tokio::test]
async fn an_exit_report_first_wins_over_a_later_startup_error() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("exit-first").await;
    let mut client = gw.client().await;
    client
        .report_main_process_exit(with_token(exit_report(&id, 7), &token))
        .await
        .unwrap();
    client
        .report_supervisor_error(with_token(error_report(&id, "too late"), &token))
        .await
        .unwrap();
    let sb = gw.core.get(&id).unwrap();
    assert_eq!(phase(&sb), SandboxPhase::Error);
    assert_eq!(ready(&sb).1, "ProcessExited");
    assert_eq!(sb.status.unwrap().exit_code, Some(7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_during_deleting_and_after_delete_bring_nothing_back() {
    let driver = Arc::new(RecordingDriver::default());
    // Hold the create's driver call, so the delete waits in Deleting.
    let gate = Arc::new(Notify::new());
    *driver.create_gate.lock().unwrap() = Some(gate.clone());
    let gw = Gateway::start_with(":memory:", 15, driver).await;
    let (id, token) = gw.create("going").await;
    let mut w = watch(&gw, &id).await;
    let mut client = gw.client().await;
    let delete = tokio::spawn({
        let mut client = client.clone();
        async move {
            client
                .delete_sandbox(DeleteSandboxRequest {
                    name: "going".into(),
                    ..Default::default()
                })
                .await
        }
    });
    w.until("Deleting", |sb| phase(sb) == SandboxPhase::Deleting)
        .await;
    client
        .report_supervisor_error(with_token(error_report(&id, "mid-delete"), &token))
        .await
        .unwrap();
    assert!(
        !open_session(&gw, &id, &token, "i")
            .await
            .unwrap()
            .accepted(),
        "no session while Deleting"
    );
    assert_eq!(phase(&gw.core.get(&id).unwrap()), SandboxPhase::Deleting);
    gate.notify_one();
    assert!(delete.await.unwrap().unwrap().into_inner().deleted);

    // After the delete: every report is NotFound, and nothing reappears.
    let status = client
        .report_supervisor_error(with_token(error_report(&id, "after"), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = client
        .report_main_process_exit(with_token(exit_report(&id, 0), &token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    let status = open_session(&gw, &id, &token, "i2").await.err().unwrap();
    assert_eq!(status.code(), tonic::Code::NotFound);
    late_driver_events(&gw, &id);
    driver_event(
        &gw,
        DriverEvent::Output {
            sandbox_id: id.clone(),
            line: "late output".into(),
        },
    );
    // (the marker's create passes the gate without waiting: the gate is only taken once)
    *gw.driver.create_gate.lock().unwrap() = None;
    events_applied(&gw).await;
    assert!(
        gw.core.get(&id).is_err(),
        "the deleted sandbox stays deleted"
    );
    assert!(gw.core.history(&id).unwrap().is_empty());
    assert!(gw
        .core
        .list("", 0, 0)
        .unwrap()
        .iter()
        .all(|sb| sb.metadata.as_ref().unwrap().id != id));
}
