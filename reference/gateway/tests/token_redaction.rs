//! OSC-SEC-004 beyond the status the gateway writes itself: a sandbox's token that its supervisor
//! prints, or puts into its startup-error report, reaches no reader: not `WatchSandbox`'s output
//! lines (`follow_logs`), not the stored message `GetSandbox` shows. The gateway keeps only the
//! token's hash, so it finds the token by hashing candidate runs.

mod common;

use common::*;
use openshell_driver::DriverEvent;
use openshell_gateway::last_output::REDACTED;
use openshell_proto::v1::{
    sandbox_stream_event, ReportSupervisorErrorRequest, SandboxPhase, SupervisorStartupStage,
    WatchSandboxRequest,
};

#[tokio::test]
async fn a_printed_token_is_redacted_in_followed_output_lines() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("prints-token").await;
    let mut client = gw.client().await;
    let request = WatchSandboxRequest {
        id: id.clone(),
        follow_logs: true,
        ..Default::default()
    };
    let mut stream = client.watch_sandbox(request).await.unwrap().into_inner();
    for line in [
        format!("OPENSHELL_SANDBOX_TOKEN={token}"),
        format!("bearer \"{token}\", again: {token}"),
        "the last line".to_string(),
    ] {
        driver_event(
            &gw,
            DriverEvent::Output {
                sandbox_id: id.clone(),
                line,
            },
        );
    }
    let mut lines = Vec::new();
    while lines.last().map(String::as_str) != Some("the last line") {
        let event = tokio::time::timeout(DEADLINE, stream.message())
            .await
            .expect("an event within the deadline")
            .expect("a healthy stream")
            .expect("the stream stays open");
        if let Some(sandbox_stream_event::Payload::Log(line)) = event.payload {
            lines.push(line.message);
        }
    }
    assert_eq!(
        lines,
        [
            format!("OPENSHELL_SANDBOX_TOKEN={REDACTED}"),
            format!("bearer \"{REDACTED}\", again: {REDACTED}"),
            "the last line".to_string(),
        ]
    );
}

#[tokio::test]
async fn a_token_in_a_startup_error_report_is_never_stored() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("reports-token").await;
    let mut w = watch(&gw, &id).await;
    let mut client = gw.client().await;
    let report = ReportSupervisorErrorRequest {
        sandbox_id: id.clone(),
        instance_id: "i".into(),
        stage: SupervisorStartupStage::Other as i32,
        message: format!("cannot start with OPENSHELL_SANDBOX_TOKEN={token} set"),
    };
    client
        .report_supervisor_error(with_token(report, &token))
        .await
        .unwrap();
    let sb = w
        .until("Error", |sb| phase(sb) == SandboxPhase::Error)
        .await;
    let (_, reason, message) = ready(&sb);
    assert_eq!(reason, "SupervisorError");
    assert_eq!(
        message,
        format!("other: cannot start with OPENSHELL_SANDBOX_TOKEN={REDACTED} set")
    );
    let stored = gw.core.get(&id).unwrap();
    assert!(!format!("{stored:?}").contains(&token), "{stored:?}");
}
