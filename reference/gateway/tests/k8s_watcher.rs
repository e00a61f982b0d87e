//! Seed 000's Kubernetes story with the Kubernetes driver's real watcher over kube's tower-test
//! mock: statuses the watcher produced before the gateway stored `SupervisorError` but that
//! reach the core after it (a late `Pending`, `Running`, the supervisor's exit) change nothing,
//! and the cleanup that follows the Error removes the Pod and its Secret. The k3s lane runs the
//! same driver against a real cluster; this test is in addition to it.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{create_request, phase, ready};
use openshell_driver::DriverEvent;
use openshell_driver_k8s::mock::MockApi;
use openshell_driver_k8s::objects::pod_name;
use openshell_driver_k8s::{K8sConfig, K8sDriver};
use openshell_gateway::bus::BusEvent;
use openshell_gateway::store::Store;
use openshell_gateway::{CoreConfig, Lifecycle};
use openshell_proto::v1::SandboxPhase;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(10);

fn container(state: serde_json::Value) -> serde_json::Value {
    json!({"phase": "Running", "containerStatuses": [{
        "name": "sandbox", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": state,
    }]})
}

#[tokio::test]
async fn late_pod_statuses_after_supervisor_error_change_nothing_and_cleanup_removes_pod_and_secret(
) {
    let (client, api) = MockApi::start();
    // The driver's events pass through the test, which holds them back to make them late.
    let (driver_tx, mut driver_rx) = tokio::sync::mpsc::unbounded_channel();
    let (core_tx, core_rx) = tokio::sync::mpsc::unbounded_channel();
    let driver = K8sDriver::new(client, K8sConfig::default(), driver_tx).unwrap();
    assert!(api.watching().await);
    let config = CoreConfig {
        endpoint: "http://127.0.0.1:9".into(),
        heartbeat_secs: 15,
    };
    let core = Lifecycle::new(Store::open(":memory:").unwrap(), Arc::new(driver), config);
    core.start(core_rx).await.unwrap();

    let id = core
        .create(create_request("k8s-stale-policy"))
        .await
        .unwrap()
        .metadata
        .unwrap()
        .id;
    assert!(
        api.wait_until(LIMIT, |a| a.writes().len() == 3).await,
        "secret, pod, owner reference: {:?}",
        api.writes()
    );
    // The kubelet's view while the supervisor fails: pending, running, then its exit.
    let pod = pod_name(&id);
    api.set_pod_status(&pod, json!({"phase": "Pending"}));
    api.set_pod_status(&pod, container(json!({"running": {}})));
    api.set_pod_status(
        &pod,
        container(json!({"terminated": {"exitCode": 1, "reason": "Error"}})),
    );
    let mut held = Vec::new();
    while !matches!(held.last(), Some(DriverEvent::Exited { .. })) {
        held.push(
            tokio::time::timeout(LIMIT, driver_rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(matches!(held[0], DriverEvent::Running { .. }), "{held:?}");

    // The supervisor's report wins the race to the store.
    let message = "/etc/openshell/policy.yaml: unknown field `inference`";
    core.supervisor_error(&id, "policy", message).unwrap();
    let at_error = core.history(&id).unwrap();
    let error = at_error.last().unwrap().clone();
    assert_eq!(phase(&error), SandboxPhase::Error);

    // Then the watcher's late events arrive, and a marker line after them.
    let mut feed = core.subscribe(&id, 0).unwrap().events;
    for event in held {
        core_tx.send(event).unwrap();
    }
    core_tx
        .send(DriverEvent::Output {
            sandbox_id: id.clone(),
            line: "marker".into(),
        })
        .unwrap();
    loop {
        match tokio::time::timeout(LIMIT, feed.recv()).await.unwrap() {
            Ok(BusEvent::Log(line)) if line.message == "marker" => break,
            Ok(BusEvent::Snapshot(sb)) => panic!("a late driver event changed the record: {sb:?}"),
            _ => {}
        }
    }
    assert_eq!(
        core.history(&id).unwrap(),
        at_error,
        "nothing after the Error"
    );
    let (status, reason, shown) = ready(&core.get(&id).unwrap());
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "SupervisorError")
    );
    assert!(shown.contains("unknown field `inference`"), "{shown}");

    // The cleanup the Error started removes everything labelled with the sandbox.
    assert!(
        api.wait_until(LIMIT, |a| a.objects().is_empty()).await,
        "left: {:?}",
        api.objects()
    );
    let deletes: Vec<String> = api
        .writes()
        .into_iter()
        .filter(|w| w.starts_with("DELETE"))
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(deletes[0].contains("/pods/") && deletes[1].contains("/secrets/"));
}
