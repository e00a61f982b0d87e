//! A sandbox whose top process exits before any session or report: the Error message carries the
//! backend's last output lines (from any driver's `Output` events), the token redacted by its
//! hash and long hex runs shortened; once a session was seen, the exit stays a plain exit.

mod common;

use common::*;
use openshell_driver::DriverEvent;
use openshell_proto::v1::SandboxPhase;

fn output(id: &str, line: &str) -> DriverEvent {
    DriverEvent::Output {
        sandbox_id: id.into(),
        line: line.into(),
    }
}

#[tokio::test]
async fn an_exit_before_any_session_shows_the_last_output_redacted() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("early-exit").await;
    let mut w = watch(&gw, &id).await;
    let container = "ab".repeat(32);
    for n in 0..30 {
        driver_event(&gw, output(&id, &format!("noise {n}")));
    }
    driver_event(
        &gw,
        output(
            &id,
            &format!("env OPENSHELL_ENDPOINT=http://127.0.0.1:1 token={token}"),
        ),
    );
    driver_event(&gw, output(&id, &format!("container {container} started")));
    driver_event(
        &gw,
        output(
            &id,
            "openshell-supervisor: startup failed: gateway: cannot connect to the gateway at http://127.0.0.1:1: connection refused",
        ),
    );
    driver_event(
        &gw,
        DriverEvent::Exited {
            sandbox_id: id.clone(),
            exit_code: 1,
        },
    );
    let sb = w
        .until("Error", |sb| phase(sb) == SandboxPhase::Error)
        .await;
    let (_, reason, message) = ready(&sb);
    assert_eq!(reason, "ProcessExited");
    assert!(
        message.starts_with("the sandbox's top process exited with code 1 before any supervisor session; its last output:\n"),
        "{message}"
    );
    assert!(message.contains("connection refused"), "{message}");
    assert!(!message.contains(&token), "the token leaked: {message}");
    assert!(message.contains("<redacted sandbox token>"), "{message}");
    assert!(!message.contains(&container), "{message}");
    assert!(message.contains("container ababababab"), "{message}");
    assert!(
        !message.contains("noise 12\n"),
        "bounded to the last lines: {message}"
    );
    assert!(message.contains("noise 29"), "{message}");
    let longest_hex = message
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(longest_hex < 32, "a {longest_hex}-digit hex run: {message}");
}

#[tokio::test]
async fn an_exit_without_output_says_so_and_one_after_a_session_stays_plain() {
    let gw = Gateway::start(":memory:", 15).await;
    let (silent, _) = gw.create("silent").await;
    driver_event(
        &gw,
        DriverEvent::Exited {
            sandbox_id: silent.clone(),
            exit_code: 139,
        },
    );
    let mut w = watch(&gw, &silent).await;
    let sb = w
        .until("Error", |sb| phase(sb) == SandboxPhase::Error)
        .await;
    assert!(
        ready(&sb).2.ends_with("it printed nothing"),
        "{:?}",
        ready(&sb)
    );

    let (id, token) = gw.create("had-a-session").await;
    let session = open_session(&gw, &id, &token, "i1").await.unwrap();
    assert!(session.accepted());
    let mut w = watch(&gw, &id).await;
    driver_event(&gw, output(&id, "workload chatter"));
    driver_event(
        &gw,
        DriverEvent::Exited {
            sandbox_id: id.clone(),
            exit_code: 3,
        },
    );
    let sb = w
        .until("Error", |sb| phase(sb) == SandboxPhase::Error)
        .await;
    assert_eq!(
        ready(&sb).2,
        "the sandbox's top process exited with code 3",
        "after a session the workload's output is the workload's business"
    );
}
