//! Every RPC with oversized or malformed fields, over real gRPC: beyond a limit is
//! `InvalidArgument` naming the field, nothing is stored half-way, the driver is never asked, and
//! the gateway keeps serving. A 1 MiB startup error is accepted and stored cut to 4096 bytes
//! (OSC-HYG-002); an unknown stage is stored as `other`.

mod common;

use std::collections::HashMap;

use common::*;
use openshell_proto::v1::{
    DeleteSandboxRequest, GetSandboxRequest, ListSandboxesRequest, ReportSupervisorErrorRequest,
    SandboxPhase, WatchSandboxRequest,
};
use tonic::Code;

fn with(
    f: impl FnOnce(&mut openshell_proto::v1::CreateSandboxRequest),
) -> openshell_proto::v1::CreateSandboxRequest {
    let mut request = create_request("bad");
    f(&mut request);
    request
}

fn env_of(request: &mut openshell_proto::v1::CreateSandboxRequest) -> &mut HashMap<String, String> {
    &mut request.spec.as_mut().unwrap().environment
}

#[tokio::test]
async fn oversized_or_malformed_create_fields_are_invalid_argument_and_nothing_is_stored() {
    let gw = Gateway::start(":memory:", 15).await;
    let mut client = gw.client().await;
    let big = |n: usize| "x".repeat(n);
    let cases: Vec<(&str, openshell_proto::v1::CreateSandboxRequest)> = vec![
        ("name", with(|r| r.name = big(64))),
        ("name", with(|r| r.name = big(1 << 20))),
        ("name", with(|r| r.name = "Ünïcode".into())),
        (
            "labels",
            with(|r| r.labels = (0..65).map(|n| (format!("k{n}"), "v".into())).collect()),
        ),
        (
            "labels",
            with(|r| {
                r.labels.insert("key with space".into(), "v".into());
            }),
        ),
        (
            "labels",
            with(|r| {
                r.labels.insert("k".into(), big(254));
            }),
        ),
        (
            "labels",
            with(|r| {
                r.labels.insert("k".into(), "a,b=c".into());
            }),
        ),
        (
            "annotations",
            with(|r| {
                r.annotations.insert("k".into(), big(4097));
            }),
        ),
        (
            "environment",
            with(|r| *env_of(r) = (0..257).map(|n| (format!("V{n}"), "1".into())).collect()),
        ),
        (
            "environment",
            with(|r| {
                env_of(r).insert("V".into(), big(32 * 1024 + 1));
            }),
        ),
        (
            "environment",
            with(|r| {
                env_of(r).insert("1BAD".into(), "1".into());
            }),
        ),
        (
            "environment",
            with(|r| {
                env_of(r).insert("V".into(), "nul\0inside".into());
            }),
        ),
        (
            "environment",
            with(|r| {
                env_of(r).insert("OPENSHELL_SANDBOX_TOKEN".into(), "mine".into());
            }),
        ),
        (
            "spec.command",
            with(|r| r.spec.as_mut().unwrap().command = vec!["a".into(); 257]),
        ),
        (
            "spec.command",
            with(|r| r.spec.as_mut().unwrap().command = vec![String::new()]),
        ),
        (
            "spec.template.image",
            with(|r| {
                r.spec.as_mut().unwrap().template.as_mut().unwrap().image = "two words".into()
            }),
        ),
        (
            "spec.template.image",
            with(|r| r.spec.as_mut().unwrap().template.as_mut().unwrap().image = big(513)),
        ),
        (
            "runtime_class_name",
            with(|r| {
                r.spec
                    .as_mut()
                    .unwrap()
                    .template
                    .as_mut()
                    .unwrap()
                    .runtime_class_name = "../runsc".into()
            }),
        ),
        (
            "record",
            with(|r| r.spec.as_mut().unwrap().providers = vec![big(600 * 1024), big(600 * 1024)]),
        ),
        ("workspace", with(|r| r.workspace = big(300))),
    ];
    for (field, request) in cases {
        let status = client.create_sandbox(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().contains(field)
                || field == "record" && status.message().contains("record"),
            "{field}: the message names the field: {}",
            status.message()
        );
        assert!(status.message().len() < 1024, "{field}: a short message");
    }
    let listed = client
        .list_sandboxes(ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(listed.sandboxes.is_empty(), "nothing stored half-way");
    assert!(gw.driver.created.lock().unwrap().is_empty());
    // And the gateway still serves a good request.
    client.create_sandbox(create_request("good")).await.unwrap();
}

#[tokio::test]
async fn oversized_lookups_and_selectors_are_invalid_argument() {
    let gw = Gateway::start(":memory:", 15).await;
    let mut client = gw.client().await;
    let huge = "n".repeat(1 << 20);
    let get = client
        .get_sandbox(GetSandboxRequest {
            name: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), Code::InvalidArgument, "{get:?}");
    let delete = client
        .delete_sandbox(DeleteSandboxRequest {
            name: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(delete.code(), Code::InvalidArgument, "{delete:?}");
    let watch = client
        .watch_sandbox(WatchSandboxRequest {
            id: huge.clone(),
            ..Default::default()
        })
        .await
        .map(|_| ())
        .expect_err("refused");
    assert_eq!(watch.code(), Code::InvalidArgument, "{watch:?}");
    for selector in ["k".repeat(5000), "novalue".into(), "a=1,,=".into()] {
        let list = client
            .list_sandboxes(ListSandboxesRequest {
                label_selector: selector.clone(),
                ..Default::default()
            })
            .await;
        match list {
            Err(s) => assert_eq!(s.code(), Code::InvalidArgument, "{selector:.20}: {s:?}"),
            Ok(_) => panic!("selector {selector:.20} accepted"),
        }
    }
    let report = ReportSupervisorErrorRequest {
        sandbox_id: huge,
        message: "x".into(),
        ..Default::default()
    };
    let status = client
        .report_supervisor_error(with_token(report, "some-token"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
}

#[tokio::test]
async fn a_one_mib_report_is_stored_cut_to_4096_bytes_and_an_unknown_stage_as_other() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("big-report").await;
    let mut client = gw.client().await;
    let report = ReportSupervisorErrorRequest {
        sandbox_id: id.clone(),
        stage: 999,
        message: "é".repeat(512 * 1024), // 1 MiB of two-byte characters
        ..Default::default()
    };
    client
        .report_supervisor_error(with_token(report, &token))
        .await
        .expect("a 1 MiB report is accepted");
    let sb = gw.core.get(&id).unwrap();
    assert_eq!(phase(&sb), SandboxPhase::Error);
    let (_, reason, message) = ready(&sb);
    assert_eq!(reason, "SupervisorError");
    assert!(message.len() <= 4096, "{} bytes", message.len());
    assert!(message.starts_with("other: éé"), "{message:.40}");
    assert!(message.ends_with("… [truncated]"));
}

#[tokio::test]
async fn a_report_beyond_the_decode_limit_is_refused_and_the_gateway_keeps_serving() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("huge-report").await;
    let mut client = gw.client().await;
    let report = ReportSupervisorErrorRequest {
        sandbox_id: id.clone(),
        message: "x".repeat(5 << 20),
        ..Default::default()
    };
    let status = client
        .report_supervisor_error(with_token(report, &token))
        .await
        .unwrap_err();
    // tonic's own 4 MiB decode limit answers before the gateway sees the request.
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert_eq!(
        phase(&gw.core.get(&id).unwrap()),
        SandboxPhase::Provisioning,
        "nothing stored"
    );
    let small = ReportSupervisorErrorRequest {
        sandbox_id: id.clone(),
        message: "after".into(),
        ..Default::default()
    };
    client
        .report_supervisor_error(with_token(small, &token))
        .await
        .expect("still serving");
}

#[tokio::test]
async fn an_oversized_instance_id_is_refused_and_the_sandbox_is_not_ready() {
    let gw = Gateway::start(":memory:", 15).await;
    let (id, token) = gw.create("long-instance").await;
    let refused = open_session(&gw, &id, &token, &"i".repeat(100_000))
        .await
        .err()
        .expect("refused");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert_eq!(
        phase(&gw.core.get(&id).unwrap()),
        SandboxPhase::Provisioning
    );
}
