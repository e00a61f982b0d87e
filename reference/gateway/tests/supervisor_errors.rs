//! Seed 000 and the supervisor-RPC rules: error reports, process exits, credentials, hygiene.

mod common;

use common::*;
use openshell_driver::{DriverError, DriverEvent};
use openshell_proto::v1::{
    GetSandboxRequest, ListSandboxesRequest, ReportMainProcessExitRequest,
    ReportSupervisorErrorRequest, SandboxPhase, SupervisorStartupStage, WatchSandboxRequest,
};
use prost::Message;

fn report(id: &str, stage: SupervisorStartupStage, message: &str) -> ReportSupervisorErrorRequest {
    ReportSupervisorErrorRequest {
        sandbox_id: id.into(),
        instance_id: "i".into(),
        stage: stage as i32,
        message: message.into(),
    }
}

#[tokio::test]
async fn a_reported_startup_error_is_stored_published_cleaned_up_and_never_overwritten() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("stale").await;
    let mut w = watch(&gw, &id).await;
    let mut client = gw.client().await;
    let msg = "/etc/openshell/policy.yaml: unknown field `inference` at line 9 column 1";
    client
        .report_supervisor_error(with_token(
            report(&id, SupervisorStartupStage::Policy, msg),
            &token,
        ))
        .await
        .unwrap();
    // Answered only after it was stored: a Get right now sees it.
    let sb = gw.core.get(&id).unwrap();
    assert_eq!(phase(&sb), SandboxPhase::Error);
    assert_eq!(
        ready(&sb),
        (
            "False".into(),
            "SupervisorError".into(),
            format!("policy: {msg}")
        )
    );
    w.until("Error", is(SandboxPhase::Error, "SupervisorError"))
        .await;
    gw.driver.wait_deleted(&id).await;
    // Late backend and session events change nothing.
    driver_event(
        &gw,
        DriverEvent::Exited {
            sandbox_id: id.clone(),
            exit_code: 1,
        },
    );
    driver_event(
        &gw,
        DriverEvent::Running {
            sandbox_id: id.clone(),
        },
    );
    driver_event(
        &gw,
        DriverEvent::Gone {
            sandbox_id: id.clone(),
        },
    );
    let rejected = open_session(&gw, &id, &token, "late").await.unwrap();
    assert!(
        !rejected.accepted(),
        "a session for an Error sandbox is rejected"
    );
    client
        .report_supervisor_error(with_token(
            report(&id, SupervisorStartupStage::Netns, "second"),
            &token,
        ))
        .await
        .unwrap();
    // Flush the driver channel through a known event on another sandbox, then compare.
    let (other, _) = gw.create("flush").await;
    driver_event(
        &gw,
        DriverEvent::Exited {
            sandbox_id: other.clone(),
            exit_code: 0,
        },
    );
    let mut wo = watch(&gw, &other).await;
    wo.until("flushed", is(SandboxPhase::Error, "ProcessExited"))
        .await;
    let after = gw.core.get(&id).unwrap();
    assert_eq!(after, sb, "Error is never overwritten");
}

#[tokio::test]
async fn main_process_exit_is_error_with_the_exit_code_even_for_zero() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("exits").await;
    let _s = open_session(&gw, &id, &token, "i1").await.unwrap();
    let mut client = gw.client().await;
    let exit = ReportMainProcessExitRequest {
        sandbox_id: id.clone(),
        instance_id: "i1".into(),
        exit_code: 0,
    };
    client
        .report_main_process_exit(with_token(exit, &token))
        .await
        .unwrap();
    let sb = gw.core.get(&id).unwrap();
    assert_eq!(phase(&sb), SandboxPhase::Error);
    assert_eq!(ready(&sb).1, "ProcessExited");
    assert_eq!(sb.status.unwrap().exit_code, Some(0));
}

#[tokio::test]
async fn driver_failures_become_error_with_the_matching_reason() {
    let driver = std::sync::Arc::new(RecordingDriver::default());
    *driver.fail_create.lock().unwrap() = Some(DriverError::ImageNotFound {
        image: "openshell-fixture/nope:1".into(),
        detail: "no such image".into(),
    });
    let gw = Gateway::start_with(":memory:", 15, driver).await;
    let (id, _) = gw.create("no-image").await;
    let mut w = watch(&gw, &id).await;
    let sb = w
        .until("Error", is(SandboxPhase::Error, "ImageNotFound"))
        .await;
    assert!(ready(&sb).2.contains("openshell-fixture/nope:1"));
}

#[tokio::test]
async fn credentials_are_checked_in_order_unauthenticated_notfound_permissiondenied() {
    let gw = Gateway::start(":memory:", 15).await;
    let (a, token_a) = gw.create("cred-a").await;
    let (b, _token_b) = gw.create("cred-b").await;
    let mut client = gw.client().await;
    let code = |r: Result<tonic::Response<_>, tonic::Status>| r.map(|_| ()).unwrap_err().code();

    let no_token = client.report_supervisor_error(tonic::Request::new(report(
        &a,
        SupervisorStartupStage::Policy,
        "x",
    )));
    assert_eq!(code(no_token.await), tonic::Code::Unauthenticated);
    let unknown = client.report_supervisor_error(with_token(
        report("no-such-id", SupervisorStartupStage::Policy, "x"),
        &token_a,
    ));
    assert_eq!(code(unknown.await), tonic::Code::NotFound);
    let foreign = client.report_supervisor_error(with_token(
        report(&b, SupervisorStartupStage::Policy, "x"),
        &token_a,
    ));
    assert_eq!(code(foreign.await), tonic::Code::PermissionDenied);
    let exit = ReportMainProcessExitRequest {
        sandbox_id: b.clone(),
        instance_id: "i".into(),
        exit_code: 1,
    };
    let e = client
        .report_main_process_exit(with_token(exit, &token_a))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied);
    let session = open_session(&gw, &b, &token_a, "i").await;
    assert_eq!(session.err().unwrap().code(), tonic::Code::PermissionDenied);
    let session = open_session(&gw, &b, "", "i").await;
    assert_eq!(session.err().unwrap().code(), tonic::Code::Unauthenticated);
    assert_eq!(
        phase(&gw.core.get(&b).unwrap()),
        SandboxPhase::Provisioning,
        "b untouched"
    );

    // A deleted sandbox's own token: NotFound.
    client
        .delete_sandbox(openshell_proto::v1::DeleteSandboxRequest {
            name: "cred-a".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let after_delete = client.report_supervisor_error(with_token(
        report(&a, SupervisorStartupStage::Policy, "x"),
        &token_a,
    ));
    assert_eq!(code(after_delete.await), tonic::Code::NotFound);
}

#[tokio::test]
async fn the_token_appears_in_no_read_api() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("secret").await;
    let _s = open_session(&gw, &id, &token, "i1").await.unwrap();
    let mut client = gw.client().await;
    let mut bytes = Vec::new();
    let get = client
        .get_sandbox(GetSandboxRequest {
            name: "secret".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    bytes.extend(get.into_inner().encode_to_vec());
    let list = client
        .list_sandboxes(ListSandboxesRequest::default())
        .await
        .unwrap();
    bytes.extend(list.into_inner().encode_to_vec());
    let watch = WatchSandboxRequest {
        id: id.clone(),
        follow_status: true,
        stop_on_terminal: true,
        ..Default::default()
    };
    let mut stream = client.watch_sandbox(watch).await.unwrap().into_inner();
    while let Some(event) = stream.message().await.unwrap() {
        bytes.extend(event.encode_to_vec());
    }
    assert!(!bytes.is_empty());
    let needle = token.as_bytes();
    assert!(
        !bytes.windows(needle.len()).any(|w| w == needle),
        "token leaked through a read API"
    );
}

#[tokio::test]
async fn stored_messages_escape_c0_del_c1_and_are_cut_to_4096_bytes() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("hygiene").await;
    let mut client = gw.client().await;
    let hostile = format!("\x1b[2J\x07\x7f\u{9b}31m{}", "é".repeat(5000));
    client
        .report_supervisor_error(with_token(
            report(&id, SupervisorStartupStage::BootHook, &hostile),
            &token,
        ))
        .await
        .unwrap();
    let message = ready(&gw.core.get(&id).unwrap()).2;
    assert!(message.len() <= 4096, "{}", message.len());
    assert!(
        message.starts_with("boot-hook: \\x1b[2J\\x07\\x7f\\u{9b}31m"),
        "{}",
        &message[..40]
    );
    assert!(!message
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t'));
    assert!(message.ends_with("[truncated]"));
}

#[tokio::test]
async fn bad_requests_get_actionable_errors() {
    let gw = Gateway::start(":memory:", 15).await;
    let mut client = gw.client().await;
    let mut no_image = create_request("fine");
    no_image
        .spec
        .as_mut()
        .unwrap()
        .template
        .as_mut()
        .unwrap()
        .image
        .clear();
    let e = client.create_sandbox(no_image).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(e.message().contains("image"), "{}", e.message());
    let e = client
        .create_sandbox(create_request("Not_A_Label"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    client.create_sandbox(create_request("dup")).await.unwrap();
    let e = client
        .create_sandbox(create_request("dup"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists);
    let e = client
        .get_sandbox(GetSandboxRequest {
            name: "ghost".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    let mut reserved = create_request("reserved");
    reserved
        .spec
        .as_mut()
        .unwrap()
        .environment
        .insert("OPENSHELL_SANDBOX_TOKEN".into(), "x".into());
    assert_eq!(
        client.create_sandbox(reserved).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );
}

#[tokio::test]
async fn the_driver_gets_the_supervisor_environment_and_labels() {
    let gw = Gateway::start(":memory:", 15).await;
    let mut client = gw.client().await;
    let mut request = create_request("env");
    request
        .labels
        .insert("openshell.run-id".into(), "run-42".into());
    let spec = request.spec.as_mut().unwrap();
    spec.command = vec!["/bin/sleep".into(), "1".into()];
    spec.environment
        .insert("OPENSHELL_BEST_EFFORT_FAILURES".into(), "1".into());
    client.create_sandbox(request).await.unwrap();
    let r = gw.driver.created_request("env").await;
    assert_eq!(r.env["OPENSHELL_SANDBOX_ID"], r.sandbox_id);
    assert_eq!(r.env["OPENSHELL_ENDPOINT"], gw.endpoint);
    assert_eq!(r.env["OPENSHELL_SANDBOX_TOKEN"].len(), 64);
    assert_eq!(
        r.env["OPENSHELL_MAIN_PROCESS_SPEC"],
        r#"{"command":["/bin/sleep","1"],"tty":false,"version":1}"#
    );
    assert_eq!(r.env["OPENSHELL_BEST_EFFORT_FAILURES"], "1");
    assert_eq!(r.labels["openshell.sandbox-id"], r.sandbox_id);
    assert_eq!(r.labels["openshell.run-id"], "run-42");
}

#[tokio::test]
async fn a_delete_during_a_slow_create_waits_for_it_so_nothing_leaks() {
    let driver = std::sync::Arc::new(RecordingDriver::default());
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    *driver.create_gate.lock().unwrap() = Some(gate.clone());
    let gw = Gateway::start_with(":memory:", 15, driver.clone()).await;
    let mut client = gw.client().await;
    client.create_sandbox(create_request("slow")).await.unwrap();
    let request = driver.created_request("slow").await; // create is now in flight, held
    let delete = tokio::spawn({
        let mut client = gw.client().await;
        async move {
            client
                .delete_sandbox(openshell_proto::v1::DeleteSandboxRequest {
                    name: "slow".into(),
                    ..Default::default()
                })
                .await
        }
    });
    // The delete is in the gateway (the record turns Deleting) while the create still waits.
    let mut w = watch(&gw, &request.sandbox_id).await;
    w.until("Deleting", |sb| phase(sb) == SandboxPhase::Deleting)
        .await;
    gate.notify_one();
    delete.await.unwrap().unwrap();
    let log = driver.log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "create slow".to_string(),
            format!("delete {}", request.sandbox_id)
        ],
        "the delete waited for the create"
    );
}
