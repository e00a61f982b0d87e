//! Seed 002: the gateway owns Ready. Real gRPC on 127.0.0.1, real SQLite, recording driver.

mod common;

use common::*;
use openshell_driver::DriverEvent;
use openshell_proto::v1::{
    DegradedSubsystem, SandboxPhase, SupervisorHeartbeat, SupervisorMessage,
};

#[tokio::test]
async fn session_connect_promotes_to_ready_and_its_end_demotes() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("ready-demote").await;
    let mut w = watch(&gw, &id).await;
    w.until(
        "Provisioning/Starting",
        is(SandboxPhase::Provisioning, "Starting"),
    )
    .await;
    let session = open_session(&gw, &id, &token, "i1").await.unwrap();
    assert!(session.accepted());
    w.until("Ready", is(SandboxPhase::Ready, "SupervisorConnected"))
        .await;
    drop(session);
    w.until(
        "demoted",
        is(SandboxPhase::Provisioning, "SupervisorDisconnected"),
    )
    .await;
}

#[tokio::test]
async fn a_newer_session_supersedes_and_the_older_ones_end_does_not_demote() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("supersede").await;
    let mut w = watch(&gw, &id).await;
    let old = open_session(&gw, &id, &token, "i1").await.unwrap();
    w.until("Ready", is(SandboxPhase::Ready, "SupervisorConnected"))
        .await;
    let new = open_session(&gw, &id, &token, "i2").await.unwrap();
    let promoted = w
        .until("instance i2", |sb| {
            sb.status.as_ref().unwrap().main_process_instance_id == "i2"
        })
        .await;
    assert_eq!(phase(&promoted), SandboxPhase::Ready);
    drop(old);
    // The end of the superseded session must not demote: prove it by ending the current one and
    // checking the very next change is that demotion, not an earlier one.
    drop(new);
    let next = w.next().await.unwrap();
    assert_eq!(
        (phase(&next), ready(&next).1.as_str()),
        (SandboxPhase::Provisioning, "SupervisorDisconnected"),
        "history {:?}",
        w.summary()
    );
    let demotions = w
        .seen
        .iter()
        .filter(|sb| ready(sb).1 == "SupervisorDisconnected")
        .count();
    assert_eq!(demotions, 1, "history {:?}", w.summary());
}

#[tokio::test]
async fn a_session_before_the_drivers_first_snapshot_still_yields_ready() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("backfill").await;
    let mut w = watch(&gw, &id).await;
    let _session = open_session(&gw, &id, &token, "i1").await.unwrap();
    w.until("Ready", is(SandboxPhase::Ready, "SupervisorConnected"))
        .await;
    // The driver's late "running" snapshot changes nothing, and never demotes Ready.
    driver_event(
        &gw,
        DriverEvent::Running {
            sandbox_id: id.clone(),
        },
    );
    driver_event(
        &gw,
        DriverEvent::Output {
            sandbox_id: id.clone(),
            line: "marker".into(),
        },
    );
    let mut client = gw.client().await;
    let got = client.get_sandbox(openshell_proto::v1::GetSandboxRequest {
        name: id.clone(),
        ..Default::default()
    });
    let got = got.await.unwrap().into_inner().sandbox.unwrap();
    assert_eq!(phase(&got), SandboxPhase::Ready);
    assert_eq!(
        gw.core.history(&id).unwrap().len(),
        2,
        "create + promote only"
    );
}

#[tokio::test]
async fn re_registering_the_same_session_facts_is_idempotent() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("idempotent").await;
    let _a = open_session(&gw, &id, &token, "i1").await.unwrap();
    let _b = open_session(&gw, &id, &token, "i1").await.unwrap();
    let history = gw.core.history(&id).unwrap();
    assert_eq!(
        history.len(),
        2,
        "the second identical hello stores nothing new"
    );
}

#[tokio::test]
async fn missed_heartbeats_end_the_session() {
    let gw = Gateway::start(":memory:", 1).await;
    let (id, token) = gw.create("heartbeats").await;
    let mut w = watch(&gw, &id).await;
    let session = open_session(&gw, &id, &token, "i1").await.unwrap();
    w.until("Ready", is(SandboxPhase::Ready, "SupervisorConnected"))
        .await;
    // The stream stays open but silent: three 1 s intervals later the gateway ends it.
    let started = std::time::Instant::now();
    w.until(
        "demoted",
        is(SandboxPhase::Provisioning, "SupervisorDisconnected"),
    )
    .await;
    assert!(
        started.elapsed() >= std::time::Duration::from_secs(2),
        "not before the heartbeats were missed"
    );
    drop(session);
}

#[tokio::test]
async fn heartbeats_keep_a_session_alive() {
    let gw = Gateway::start(":memory:", 1).await;
    let (id, token) = gw.create("alive").await;
    let mut session = open_session(&gw, &id, &token, "i1").await.unwrap();
    // Answer five gateway heartbeats (about 5 s, longer than the 3 s miss window).
    for _ in 0..5 {
        let beat = tokio::time::timeout(DEADLINE, session.inbound.message())
            .await
            .unwrap()
            .unwrap();
        assert!(beat.is_some());
        let hb = SupervisorMessage {
            payload: Some(openshell_proto::v1::supervisor_message::Payload::Heartbeat(
                SupervisorHeartbeat {},
            )),
        };
        session.outbound.send(hb).await.unwrap();
    }
    let sb = gw.core.get(&id).unwrap();
    assert_eq!(
        phase(&sb),
        SandboxPhase::Ready,
        "history {:?}",
        gw.core.history(&id).unwrap().len()
    );
}

#[tokio::test]
async fn degraded_enforcement_is_shown_and_absent_when_nothing_degraded() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("degraded").await;
    let netns = DegradedSubsystem {
        subsystem: "netns".into(),
        mode: "failed".into(),
        detail: "EPERM".into(),
    };
    let _s = open_session_degraded(&gw, &id, &token, "i1", vec![netns])
        .await
        .unwrap();
    let sb = gw.core.get(&id).unwrap();
    let c = openshell_gateway::transitions::condition(&sb, "EnforcementDegraded").unwrap();
    assert_eq!(
        (c.status.as_str(), c.message.as_str()),
        ("True", "netns(failed: EPERM)")
    );

    let (clean, token) = gw.create("not-degraded").await;
    let _s = open_session(&gw, &clean, &token, "i1").await.unwrap();
    let sb = gw.core.get(&clean).unwrap();
    assert!(sb
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .all(|c| c.r#type != "EnforcementDegraded"));
}
