//! The driver's requests and its status mapping, against kube's tower-test mock
//! (`openshell_driver_k8s::mock`). These are unit tests in addition to the k3s lane, which runs
//! the same driver against a real cluster; they never stand in for it.

use std::collections::BTreeMap;
use std::time::Duration;

use openshell_driver::{ComputeDriver, DriverEvent, EventReceiver, SandboxRequest};
use openshell_driver_k8s::mock::MockApi;
use openshell_driver_k8s::objects::{pod_name, secret_name};
use openshell_driver_k8s::{K8sConfig, K8sDriver};
use serde_json::json;

const ID: &str = "0d7c5c8e-1c1f-4a57-9f7a-3b6f0e6d2a11";
const LIMIT: Duration = Duration::from_secs(10);

fn request() -> SandboxRequest {
    SandboxRequest {
        sandbox_id: ID.into(),
        name: "one".into(),
        image: "openshell-fixture/good:0123456789ab".into(),
        runtime_class: None,
        command: vec![],
        env: BTreeMap::from([
            ("OPENSHELL_SANDBOX_ID".into(), ID.into()),
            ("OPENSHELL_SANDBOX_TOKEN".into(), "s3cret".into()),
        ]),
        labels: BTreeMap::from([
            ("openshell.sandbox-id".into(), ID.into()),
            ("openshell.run-id".into(), "run-9".into()),
        ]),
    }
}

fn driver() -> (K8sDriver, MockApi, EventReceiver) {
    let (client, api) = MockApi::start();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let config = K8sConfig {
        image_pull_policy: "Never".into(),
        ..Default::default()
    };
    (K8sDriver::new(client, config, tx).unwrap(), api, rx)
}

async fn created() -> (K8sDriver, MockApi, EventReceiver) {
    let (driver, api, rx) = driver();
    assert!(api.watching().await, "the driver watches its pods");
    driver.create(request()).await.unwrap();
    (driver, api, rx)
}

/// The next event that is not an output line.
async fn next_state(rx: &mut EventReceiver) -> DriverEvent {
    loop {
        let event = tokio::time::timeout(LIMIT, rx.recv())
            .await
            .expect("an event in time")
            .expect("the channel is open");
        if !matches!(event, DriverEvent::Output { .. }) {
            return event;
        }
    }
}

/// Everything sent so far, without waiting.
fn drain(rx: &mut EventReceiver) -> Vec<DriverEvent> {
    std::iter::from_fn(|| rx.try_recv().ok()).collect()
}

fn container(state: serde_json::Value) -> serde_json::Value {
    json!({"phase": "Pending", "containerStatuses": [{
        "name": "sandbox", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
        "state": state,
    }]})
}

fn running() -> serde_json::Value {
    container(json!({"running": {"startedAt": "2026-12-01T00:00:00Z"}}))
}

#[tokio::test]
async fn create_makes_the_secret_then_the_pod_then_sets_the_secrets_owner() {
    let (_driver, api, _rx) = created().await;
    let pods = "/api/v1/namespaces/default/pods";
    let secrets = "/api/v1/namespaces/default/secrets";
    assert_eq!(
        api.writes(),
        vec![
            format!("POST {secrets}"),
            format!("POST {pods}"),
            format!("PATCH {secrets}/{}", secret_name(ID)),
        ]
    );
    let secret = api.secret(&secret_name(ID)).unwrap();
    let owner = &secret["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Pod");
    assert_eq!(owner["name"], pod_name(ID));
    assert_eq!(owner["uid"], format!("uid-{}", pod_name(ID)));
    let pod = api.pod(&pod_name(ID)).unwrap();
    for labels in [&pod["metadata"]["labels"], &secret["metadata"]["labels"]] {
        assert_eq!(labels["openshell.sandbox-id"], ID);
        assert_eq!(labels["openshell.run-id"], "run-9");
    }
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    assert_eq!(pod["spec"]["containers"][0]["imagePullPolicy"], "Never");
    assert!(
        !pod.to_string().contains("s3cret"),
        "the token is only in the secret"
    );
}

#[tokio::test]
async fn refusals_map_to_contract_reasons_naming_the_api_servers_message() {
    let (driver, api, _rx) = driver();
    api.refuse(
        "POST",
        "/pods",
        403,
        "pods \"x\" is forbidden: violates PodSecurity \"baseline:latest\": non-default capabilities",
    );
    let error = driver.create(request()).await.unwrap_err();
    assert_eq!(error.reason(), "BackendCreateFailed");
    assert!(error.to_string().contains("PodSecurity"), "{error}");

    let (driver, api, _rx) = self::driver();
    api.refuse(
        "POST",
        "/secrets",
        403,
        "secrets is forbidden: User \"system:serviceaccount:x:y\" cannot create resource \"secrets\"",
    );
    let error = driver.create(request()).await.unwrap_err();
    assert_eq!(error.reason(), "BackendUnavailable");
    assert!(error.to_string().contains("cannot create"), "{error}");
    assert_eq!(api.writes().len(), 1, "no pod without its secret");
}

#[tokio::test]
async fn pod_statuses_become_failures_with_contract_reasons() {
    let cases = [
        (
            container(
                json!({"waiting": {"reason": "ErrImageNeverPull", "message": "not present"}}),
            ),
            "ImageNotFound",
            "ErrImageNeverPull",
        ),
        (
            container(json!({"waiting": {"reason": "ImagePullBackOff", "message": "back-off"}})),
            "ImageNotFound",
            "ImagePullBackOff",
        ),
        (
            container(json!({"waiting": {"reason": "CreateContainerConfigError",
                "message": "secret \"x\" not found"}})),
            "BackendCreateFailed",
            "CreateContainerConfigError",
        ),
        (
            json!({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable", "message": "0/1 nodes are available"}]}),
            "BackendStartFailed",
            "Unschedulable",
        ),
    ];
    for (status, reason, cause) in cases {
        let (_driver, api, mut rx) = created().await;
        api.set_pod_status(&pod_name(ID), json!({"phase": "Pending"}));
        api.set_pod_status(&pod_name(ID), status);
        match next_state(&mut rx).await {
            DriverEvent::Failed { sandbox_id, error } => {
                assert_eq!(sandbox_id, ID);
                assert_eq!(error.reason(), reason, "{error}");
                assert!(error.to_string().contains(cause), "{error}");
            }
            other => panic!("{cause}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_terminated_container_is_exited_with_its_code_after_its_output() {
    let (_driver, api, mut rx) = created().await;
    api.set_logs(
        &pod_name(ID),
        "supervisor: starting\nsupervisor: out of memory\n",
    );
    api.set_pod_status(&pod_name(ID), running());
    assert_eq!(
        next_state(&mut rx).await,
        DriverEvent::Running {
            sandbox_id: ID.into()
        }
    );
    api.set_pod_status(
        &pod_name(ID),
        container(json!({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})),
    );
    let mut lines = Vec::new();
    let ended = loop {
        match tokio::time::timeout(LIMIT, rx.recv())
            .await
            .unwrap()
            .unwrap()
        {
            DriverEvent::Output { line, .. } => lines.push(line),
            other => break other,
        }
    };
    assert_eq!(
        ended,
        DriverEvent::Exited {
            sandbox_id: ID.into(),
            exit_code: 137
        }
    );
    assert_eq!(
        lines[..2],
        ["supervisor: starting", "supervisor: out of memory"]
    );
    assert!(lines[2].contains("OOMKilled"), "{lines:?}");
}

#[tokio::test]
async fn statuses_after_an_ending_change_nothing_and_running_is_said_once() {
    let (driver, api, mut rx) = created().await;
    let name = pod_name(ID);
    api.set_pod_status(&name, running());
    api.set_pod_status(&name, running());
    assert_eq!(
        next_state(&mut rx).await,
        DriverEvent::Running {
            sandbox_id: ID.into()
        }
    );
    api.set_pod_status(
        &name,
        container(json!({"terminated": {"exitCode": 1, "reason": "Error"}})),
    );
    assert!(matches!(
        next_state(&mut rx).await,
        DriverEvent::Exited { exit_code: 1, .. }
    ));
    // Late statuses (as a re-list or a slow kubelet may send them) after the ending.
    api.set_pod_status(&name, json!({"phase": "Pending"}));
    api.set_pod_status(&name, running());
    api.set_pod_status(
        &name,
        container(json!({"waiting": {"reason": "ErrImagePull", "message": "late"}})),
    );
    // The delete returns once the watcher saw the Pod go, i.e. after it handled the statuses.
    assert!(driver.delete(ID).await.unwrap());
    let late: Vec<DriverEvent> = drain(&mut rx)
        .into_iter()
        .filter(|e| !matches!(e, DriverEvent::Output { .. }))
        .collect();
    assert_eq!(late, vec![], "nothing after the ending");
}

#[tokio::test]
async fn a_pod_someone_else_deleted_is_gone() {
    let (_driver, api, mut rx) = created().await;
    api.set_pod_status(&pod_name(ID), running());
    assert!(matches!(
        next_state(&mut rx).await,
        DriverEvent::Running { .. }
    ));
    api.remove_pod(&pod_name(ID));
    assert_eq!(
        next_state(&mut rx).await,
        DriverEvent::Gone {
            sandbox_id: ID.into()
        }
    );
}

#[tokio::test]
async fn delete_removes_pod_and_secret_with_a_short_grace_and_reports_nothing() {
    let (driver, api, mut rx) = created().await;
    api.set_logs(&pod_name(ID), "policy: stale field\n");
    assert!(driver.delete(ID).await.unwrap());
    assert_eq!(
        api.objects(),
        Vec::<String>::new(),
        "nothing labelled remains"
    );
    let deletes: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 2, "{deletes:?}");
    assert!(deletes[0]
        .path
        .ends_with(&format!("/pods/{}", pod_name(ID))));
    assert_eq!(deletes[0].body["gracePeriodSeconds"], 2);
    assert!(deletes[1]
        .path
        .ends_with(&format!("/secrets/{}", secret_name(ID))));
    let events = drain(&mut rx);
    assert_eq!(
        events,
        vec![DriverEvent::Output {
            sandbox_id: ID.into(),
            line: "policy: stale field".into()
        }],
        "the output is sent before the pod goes; no Gone for a delete"
    );
    assert!(!driver.delete(ID).await.unwrap(), "idempotent");
}

#[tokio::test(start_paused = true)]
async fn delete_forces_a_pod_that_will_not_terminate_within_the_cleanup_bound() {
    let (driver, api, _rx) = created().await;
    api.pods_never_terminate();
    let started = tokio::time::Instant::now();
    assert!(driver.delete(ID).await.unwrap());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let graces: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/pods/"))
        .map(|r| r.body["gracePeriodSeconds"].clone())
        .collect();
    assert_eq!(
        graces,
        vec![json!(2), json!(0)],
        "graceful first, then forced"
    );
    assert_eq!(api.objects(), Vec::<String>::new());
}

#[tokio::test]
async fn exists_asks_the_api_and_follows_a_pod_found_after_a_restart() {
    let (driver, api, _rx) = created().await;
    assert!(driver.exists(ID).await.unwrap());
    assert!(!driver.exists("another").await.unwrap());
    // A new driver (the gateway restarted) over the same API, the Pod ended meanwhile.
    api.set_pod_status(
        &pod_name(ID),
        container(json!({"terminated": {"exitCode": 3, "reason": "Error"}})),
    );
    drop(driver);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let client = api.client();
    let restarted = K8sDriver::new(client, K8sConfig::default(), tx).unwrap();
    assert!(restarted.exists(ID).await.unwrap());
    assert!(matches!(
        next_state(&mut rx).await,
        DriverEvent::Exited { exit_code: 3, .. }
    ));
}
