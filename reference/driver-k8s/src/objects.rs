//! The Kubernetes objects a sandbox request becomes: a Secret with the sandbox credential and the
//! Pod that reads it, both labelled, named after the sandbox id.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    AppArmorProfile, Capabilities, Container, EnvVar, EnvVarSource, Pod, PodSpec, Secret,
    SecretKeySelector, SecurityContext, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use openshell_driver::SandboxRequest;
use openshell_proto::{env, labels};

use crate::K8sConfig;

/// The name of the sandbox's one container (logs and statuses are read for it).
pub const CONTAINER: &str = "sandbox";
/// The key of the credential inside the Secret.
pub const TOKEN_KEY: &str = "token";
/// Grace period of the Pod: a supervisor that ignores SIGTERM is killed after it.
pub const GRACE_SECONDS: i64 = 2;

/// Capabilities added to the container runtime's default set, as the Docker driver grants them
/// (each is explained at `openshell_driver_docker::spec::CAPABILITIES`): `SYS_ADMIN` (unshare the
/// workload network namespace, install seccomp filters), `NET_ADMIN` (bring `lo` up in it),
/// `SETUID`/`SETGID` (the privilege drop), `SETPCAP` (empty the bounding set). The supervisor's
/// spawn path drops all of them before anything image-controlled runs. `SYS_ADMIN` and
/// `NET_ADMIN` are outside Pod Security Admission's `baseline` level: the namespace must be
/// `privileged` (see `deploy/kubernetes/README.md`).
pub const CAPABILITIES: &[&str] = &["SYS_ADMIN", "NET_ADMIN", "SETUID", "SETGID", "SETPCAP"];

/// The Pod's name for a sandbox (`openshell-<uuid>`: 46 characters, a valid DNS label).
pub fn pod_name(sandbox_id: &str) -> String {
    format!("openshell-{sandbox_id}")
}

/// The credential Secret's name for a sandbox.
pub fn secret_name(sandbox_id: &str) -> String {
    format!("openshell-{sandbox_id}-credential")
}

/// The labels of every object of the sandbox: the request's, plus `openshell.sandbox-id`.
pub fn object_labels(request: &SandboxRequest) -> BTreeMap<String, String> {
    let mut out = request.labels.clone();
    out.entry(labels::SANDBOX_ID.to_string())
        .or_insert_with(|| request.sandbox_id.clone());
    out
}

/// The Secret holding the sandbox token (the Pod reads it as `OPENSHELL_SANDBOX_TOKEN`).
pub fn secret(request: &SandboxRequest, namespace: &str) -> Secret {
    let token = request
        .env
        .get(env::SANDBOX_TOKEN)
        .cloned()
        .unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(&request.sandbox_id)),
            namespace: Some(namespace.to_string()),
            labels: Some(object_labels(request)),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), token)])),
        ..Default::default()
    }
}

/// The owner reference that makes the Secret go with the Pod (garbage collection).
pub fn owner_reference(pod_name: &str, pod_uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Pod".into(),
        name: pod_name.to_string(),
        uid: pod_uid.to_string(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }
}

/// The Pod of a sandbox.
pub fn pod(request: &SandboxRequest, config: &K8sConfig) -> Pod {
    let name = pod_name(&request.sandbox_id);
    let env = request
        .env
        .iter()
        .map(|(key, value)| {
            if key == env::SANDBOX_TOKEN {
                EnvVar {
                    name: key.clone(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret_name(&request.sandbox_id),
                            key: TOKEN_KEY.into(),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }
            } else {
                EnvVar {
                    name: key.clone(),
                    value: Some(value.clone()),
                    ..Default::default()
                }
            }
        })
        .collect();
    let container = Container {
        name: CONTAINER.into(),
        image: Some(request.image.clone()),
        image_pull_policy: Some(config.image_pull_policy.clone()),
        // `args` replaces the image's CMD and keeps its ENTRYPOINT (the supervisor), as Docker's
        // `cmd` does; empty keeps the image's default command.
        args: (!request.command.is_empty()).then(|| request.command.clone()),
        env: Some(env),
        security_context: Some(SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
                drop: None,
            }),
            // A runtime/default AppArmor profile can refuse the supervisor's namespace and mount
            // setup (upstream's Helm chart defaults to Unconfined for the same reason).
            app_armor_profile: Some(AppArmorProfile {
                type_: "Unconfined".into(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut annotations = BTreeMap::new();
    // The same for clusters before 1.30, which ignore `appArmorProfile`.
    annotations.insert(
        format!("container.apparmor.security.beta.kubernetes.io/{CONTAINER}"),
        "unconfined".to_string(),
    );
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(config.namespace.clone()),
            labels: Some(object_labels(request)),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![container],
            // A failing supervisor must not crash-loop (seed 000): it ends, and that is final.
            restart_policy: Some("Never".into()),
            runtime_class_name: request
                .runtime_class
                .clone()
                .filter(|r| !r.is_empty())
                .or_else(|| config.default_runtime_class.clone()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            termination_grace_period_seconds: Some(GRACE_SECONDS),
            host_network: config.host_network.then_some(true),
            // On the host's network the node's resolver; cluster DNS may not run (k3s lane).
            dns_policy: config.host_network.then(|| "Default".to_string()),
            tolerations: config.host_network.then(host_network_tolerations),
            ..Default::default()
        }),
        status: None,
    }
}

/// A node without a CNI (the k3s lane: `--flannel-backend=none`) stays `NotReady` and tainted
/// `node.kubernetes.io/not-ready:NoSchedule`; the kubelet still runs host-network pods there, so
/// in host-network mode the Pod tolerates that taint (and nothing else).
fn host_network_tolerations() -> Vec<Toleration> {
    vec![Toleration {
        key: Some("node.kubernetes.io/not-ready".into()),
        operator: Some("Exists".into()),
        effect: Some("NoSchedule".into()),
        ..Default::default()
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SandboxRequest {
        SandboxRequest {
            sandbox_id: "0d7c5c8e-1c1f-4a57-9f7a-3b6f0e6d2a11".into(),
            name: "one".into(),
            image: "openshell-fixture/good:0123456789ab".into(),
            runtime_class: None,
            command: vec![],
            env: BTreeMap::from([
                ("OPENSHELL_SANDBOX_ID".into(), "sb".into()),
                ("OPENSHELL_SANDBOX_TOKEN".into(), "s3cret".into()),
            ]),
            labels: BTreeMap::from([("openshell.run-id".into(), "run-9".into())]),
        }
    }

    #[test]
    fn the_token_lives_in_the_secret_and_reaches_the_pod_by_reference() {
        let config = K8sConfig::default();
        let secret = secret(&request(), &config.namespace);
        assert_eq!(secret.string_data.unwrap()[TOKEN_KEY], "s3cret");
        let pod = pod(&request(), &config);
        let env = pod.spec.unwrap().containers[0].env.clone().unwrap();
        let token = env
            .iter()
            .find(|e| e.name == "OPENSHELL_SANDBOX_TOKEN")
            .unwrap();
        assert_eq!(token.value, None, "the token is never written into the pod");
        let selector = token.value_from.clone().unwrap().secret_key_ref.unwrap();
        assert_eq!(selector.name, secret_name(&request().sandbox_id));
        let id = env
            .iter()
            .find(|e| e.name == "OPENSHELL_SANDBOX_ID")
            .unwrap();
        assert_eq!(id.value.as_deref(), Some("sb"));
    }

    #[test]
    fn both_objects_carry_the_sandbox_and_run_labels() {
        let config = K8sConfig::default();
        for labels in [
            secret(&request(), "ns").metadata.labels.unwrap(),
            pod(&request(), &config).metadata.labels.unwrap(),
        ] {
            assert_eq!(labels["openshell.run-id"], "run-9");
            assert_eq!(labels["openshell.sandbox-id"], request().sandbox_id);
        }
    }

    #[test]
    fn the_pod_never_restarts_and_gets_the_supervisor_capabilities() {
        let pod = pod(&request(), &K8sConfig::default());
        let spec = pod.spec.unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.runtime_class_name, None);
        assert_eq!(spec.host_network, None);
        assert_eq!(spec.tolerations, None);
        let container = &spec.containers[0];
        assert_eq!(container.args, None, "the image's default command");
        assert_eq!(container.image_pull_policy.as_deref(), Some("IfNotPresent"));
        let caps = container
            .security_context
            .clone()
            .unwrap()
            .capabilities
            .unwrap();
        assert_eq!(caps.add.unwrap(), CAPABILITIES);
    }

    #[test]
    fn runtime_class_pull_policy_command_and_host_network_follow_request_and_config() {
        let mut req = request();
        req.runtime_class = Some("gvisor".into());
        req.command = vec!["/bin/sh".into(), "-c".into(), "exit 3".into()];
        let config = K8sConfig {
            image_pull_policy: "Never".into(),
            default_runtime_class: Some("kata".into()),
            host_network: true,
            ..Default::default()
        };
        let spec = pod(&req, &config).spec.unwrap();
        assert_eq!(spec.runtime_class_name.as_deref(), Some("gvisor"));
        assert_eq!(spec.host_network, Some(true));
        assert_eq!(spec.dns_policy.as_deref(), Some("Default"));
        assert_eq!(
            spec.tolerations.unwrap()[0].key.as_deref(),
            Some("node.kubernetes.io/not-ready")
        );
        assert_eq!(spec.containers[0].args, Some(req.command.clone()));
        assert_eq!(
            spec.containers[0].image_pull_policy.as_deref(),
            Some("Never")
        );
        req.runtime_class = None;
        let spec = pod(&req, &config).spec.unwrap();
        assert_eq!(spec.runtime_class_name.as_deref(), Some("kata"));
    }
}
