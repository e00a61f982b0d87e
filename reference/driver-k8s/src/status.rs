//! What a Pod's status says about its sandbox, as one [`Observation`].
//!
//! Each failure maps to an existing contract reason (through [`DriverError`]) with a message
//! naming the Kubernetes cause:
//! - `ErrImagePull`, `ImagePullBackOff`, `ErrImageNeverPull`, `InvalidImageName` → `ImageNotFound`;
//! - `CreateContainerConfigError`, `CreateContainerError` → `BackendCreateFailed`;
//! - `PodScheduled=False` (unschedulable), `RunContainerError`, or a pod the kubelet rejected
//!   (phase `Failed` without a terminated container, e.g. `Evicted`) → `BackendStartFailed`;
//! - a terminated container (`OOMKilled` included) → [`Observation::Exited`] with its code.
//!
//! Nothing here ever means Ready: the supervisor's session does (seed 002). A Pod that is gone is
//! not a status; the watcher reports it ([`crate::watch`]).

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use openshell_driver::DriverError;

use crate::objects::CONTAINER;

/// The state of a sandbox's Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Not started yet (scheduling, pulling, creating): nothing to report.
    Pending,
    /// The container runs (the supervisor was started).
    Running,
    /// The backend failed the sandbox.
    Failed(DriverError),
    /// The container ended: its exit code and what Kubernetes says about it
    /// (`reason=OOMKilled …`).
    Exited { exit_code: i32, detail: String },
}

/// Waiting reasons that mean the image is not there (and with no registry, never will be).
const IMAGE_MISSING: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
];
/// Waiting reasons that mean the container could not be created.
const CREATE_FAILED: &[&str] = &["CreateContainerConfigError", "CreateContainerError"];
/// Waiting reasons that mean the container was created but could not be started.
const START_FAILED: &[&str] = &["RunContainerError"];

/// The observation of `pod`.
pub fn observe(pod: &Pod) -> Observation {
    let name = pod.metadata.name.as_deref().unwrap_or("?");
    let Some(status) = &pod.status else {
        return Observation::Pending;
    };
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == CONTAINER);
    if let Some(container) = container {
        if let Some(seen) = container_observation(name, pod, container) {
            return seen;
        }
    }
    if let Some(unschedulable) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .filter(|c| c.reason.as_deref() == Some("Unschedulable"))
    {
        return Observation::Failed(DriverError::StartFailed(format!(
            "pod {name} is unschedulable (PodScheduled=False reason=Unschedulable): {}",
            unschedulable.message.as_deref().unwrap_or("no message")
        )));
    }
    if status.phase.as_deref() == Some("Failed") {
        return Observation::Failed(DriverError::StartFailed(format!(
            "pod {name} failed before its container ran (phase Failed reason={}): {}",
            status.reason.as_deref().unwrap_or("none"),
            status.message.as_deref().unwrap_or("no message")
        )));
    }
    Observation::Pending
}

fn container_observation(
    name: &str,
    pod: &Pod,
    container: &ContainerStatus,
) -> Option<Observation> {
    let state = container.state.as_ref()?;
    if let Some(terminated) = &state.terminated {
        let mut detail = format!(
            "pod {name}: container {CONTAINER} terminated: reason={} exit code {}",
            terminated.reason.as_deref().unwrap_or("none"),
            terminated.exit_code
        );
        if let Some(signal) = terminated.signal {
            detail.push_str(&format!(" signal {signal}"));
        }
        if let Some(message) = terminated.message.as_deref().filter(|m| !m.is_empty()) {
            detail.push_str(&format!(": {message}"));
        }
        return Some(Observation::Exited {
            exit_code: terminated.exit_code,
            detail,
        });
    }
    if state.running.is_some() {
        return Some(Observation::Running);
    }
    let waiting = state.waiting.as_ref()?;
    let reason = waiting.reason.as_deref().unwrap_or_default();
    let cause = format!(
        "pod {name}: container {CONTAINER} waiting: {reason}: {}",
        waiting.message.as_deref().unwrap_or("no message")
    );
    let image = || {
        pod.spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == CONTAINER))
            .and_then(|c| c.image.clone())
            .unwrap_or_default()
    };
    if IMAGE_MISSING.contains(&reason) {
        Some(Observation::Failed(DriverError::ImageNotFound {
            image: image(),
            detail: cause,
        }))
    } else if CREATE_FAILED.contains(&reason) {
        Some(Observation::Failed(DriverError::CreateFailed(cause)))
    } else if START_FAILED.contains(&reason) {
        Some(Observation::Failed(DriverError::StartFailed(cause)))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(status: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "openshell-sb"},
            "spec": {"containers": [{"name": "sandbox", "image": "openshell-fixture/good:abc"}]},
            "status": status,
        }))
        .unwrap()
    }

    fn waiting(reason: &str) -> Pod {
        pod(json!({"phase": "Pending", "containerStatuses": [{
            "name": "sandbox", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": reason, "message": "kubelet says so"}}
        }]}))
    }

    #[test]
    fn image_pull_failures_are_image_not_found_naming_the_kubernetes_cause() {
        for reason in ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull"] {
            let Observation::Failed(error) = observe(&waiting(reason)) else {
                panic!("{reason}: not a failure");
            };
            assert_eq!(error.reason(), "ImageNotFound", "{reason}");
            let text = error.to_string();
            assert!(
                text.contains(reason) && text.contains("openshell-fixture/good:abc"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_container_config_error_is_backend_create_failed() {
        let Observation::Failed(error) = observe(&waiting("CreateContainerConfigError")) else {
            panic!("not a failure");
        };
        assert_eq!(error.reason(), "BackendCreateFailed");
        assert!(error.to_string().contains("CreateContainerConfigError"));
    }

    #[test]
    fn an_unschedulable_pod_is_backend_start_failed() {
        let p = pod(json!({"phase": "Pending", "conditions": [{
            "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
            "message": "0/1 nodes are available: 1 node(s) had untolerated taint"
        }]}));
        let Observation::Failed(error) = observe(&p) else {
            panic!("not a failure");
        };
        assert_eq!(error.reason(), "BackendStartFailed");
        assert!(error.to_string().contains("untolerated taint"), "{error}");
    }

    #[test]
    fn a_terminated_container_is_exited_with_its_code_oom_included() {
        let p = pod(json!({"phase": "Failed", "containerStatuses": [{
            "name": "sandbox", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}
        }]}));
        let Observation::Exited { exit_code, detail } = observe(&p) else {
            panic!("not exited");
        };
        assert_eq!(exit_code, 137);
        assert!(detail.contains("OOMKilled"), "{detail}");
        let p = pod(json!({"phase": "Failed", "containerStatuses": [{
            "name": "sandbox", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": 1, "reason": "Error"}}
        }]}));
        assert!(matches!(
            observe(&p),
            Observation::Exited { exit_code: 1, .. }
        ));
    }

    #[test]
    fn pending_and_running_pods_never_fail_and_never_mean_ready() {
        assert_eq!(
            observe(&pod(json!({"phase": "Pending"}))),
            Observation::Pending
        );
        assert_eq!(observe(&waiting("ContainerCreating")), Observation::Pending);
        let running = pod(json!({"phase": "Running", "containerStatuses": [{
            "name": "sandbox", "image": "i", "imageID": "", "ready": true, "restartCount": 0,
            "state": {"running": {}}
        }]}));
        assert_eq!(observe(&running), Observation::Running);
    }

    #[test]
    fn a_pod_the_kubelet_rejected_is_backend_start_failed() {
        let p = pod(json!({"phase": "Failed", "reason": "Evicted", "message": "low on memory"}));
        let Observation::Failed(error) = observe(&p) else {
            panic!("not a failure");
        };
        assert_eq!(error.reason(), "BackendStartFailed");
        assert!(error.to_string().contains("Evicted"));
    }
}
