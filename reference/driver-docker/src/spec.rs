//! The container a sandbox request becomes: name, image, command, environment, labels, host
//! network, runtime, capabilities, and no restart policy.

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use openshell_driver::{mutants, SandboxRequest};

/// Capabilities added to Docker's default set (which already has SETUID, SETGID and SETPCAP, listed
/// again here so the requirement is explicit and survives a changed default):
///
/// - `SYS_ADMIN`: `unshare(CLONE_NEWNET)` for the workload's loopback-only network namespace,
///   and installing seccomp filters (no_new_privs aside) before the drop.
/// - `NET_ADMIN`: bringing `lo` up inside that new namespace. Measured with Debian's dockerd
///   20.10 and runc: with `SYS_ADMIN` alone `unshare -n ip link set lo up` fails with
///   `SIOCSIFFLAGS: Operation not permitted`; with `NET_ADMIN` added it succeeds. So it is needed.
/// - `SETUID`, `SETGID`: the privilege drop to the `sandbox` user (setgroups/setgid/setuid).
/// - `SETPCAP`: dropping every capability from the bounding set before anything image-controlled
///   runs (PR_CAPBSET_DROP).
///
/// The supervisor's spawn path drops all of them from the workload's bounding set.
pub const CAPABILITIES: &[&str] = &["SYS_ADMIN", "NET_ADMIN", "SETUID", "SETGID", "SETPCAP"];

/// The label that marks every container of this driver (used to filter the event stream).
pub const SANDBOX_ID_LABEL: &str = openshell_proto::labels::SANDBOX_ID;

/// Upstream's sandbox-id key, used by the `foreign-labels` mutant.
pub const FOREIGN_SANDBOX_ID_LABEL: &str = "openshell.ai/sandbox-id";

/// The key this driver's containers carry the sandbox id under: the contract's, or (mutant
/// `foreign-labels`, a stand-in for upstream's driver in the suite's own tests) upstream's.
pub fn sandbox_id_label() -> &'static str {
    if mutants::active("foreign-labels") {
        FOREIGN_SANDBOX_ID_LABEL
    } else {
        SANDBOX_ID_LABEL
    }
}

/// The labels of a sandbox's container: the request's (`openshell.sandbox-id`,
/// `openshell.run-id`), or, as upstream does (mutant `foreign-labels`), only its own keys.
pub fn container_labels(
    request: &SandboxRequest,
    sandbox_id: &str,
) -> std::collections::HashMap<String, String> {
    if mutants::active("foreign-labels") {
        return std::collections::HashMap::from([
            (FOREIGN_SANDBOX_ID_LABEL.to_string(), sandbox_id.to_string()),
            (
                "openshell.ai/managed-by".to_string(),
                "openshell".to_string(),
            ),
        ]);
    }
    let mut labels: std::collections::HashMap<String, String> = request
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels
        .entry(SANDBOX_ID_LABEL.to_string())
        .or_insert_with(|| sandbox_id.to_string());
    labels
}

/// The container's name for a sandbox.
pub fn container_name(sandbox_id: &str) -> String {
    format!("openshell-{sandbox_id}")
}

/// The create body of a sandbox's container.
pub fn container_body(request: &SandboxRequest, default_runtime: &str) -> ContainerCreateBody {
    let labels = container_labels(request, &request.sandbox_id);
    // Mutant `foreign-entrypoint`: the driver runs its own supervisor, not the image's
    // ENTRYPOINT (as upstream's Docker driver does).
    let entrypoint = mutants::active("foreign-entrypoint")
        .then(|| vec!["/usr/local/bin/openshell-supervisor".to_string()]);
    ContainerCreateBody {
        image: Some(request.image.clone()),
        entrypoint,
        cmd: (!request.command.is_empty()).then(|| request.command.clone()),
        env: Some(
            request
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
        ),
        labels: Some(labels),
        attach_stdout: Some(false),
        attach_stderr: Some(false),
        tty: Some(false),
        host_config: Some(HostConfig {
            network_mode: Some("host".to_string()),
            runtime: Some(
                request
                    .runtime_class
                    .clone()
                    .unwrap_or_else(|| default_runtime.to_string()),
            ),
            restart_policy: Some(RestartPolicy {
                name: Some(RestartPolicyNameEnum::NO),
                maximum_retry_count: None,
            }),
            auto_remove: Some(false),
            cap_add: Some(CAPABILITIES.iter().map(|c| c.to_string()).collect()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn request() -> SandboxRequest {
        SandboxRequest {
            sandbox_id: "sb-1".into(),
            name: "one".into(),
            image: "openshell-fixture/good:0123456789ab".into(),
            runtime_class: None,
            command: vec![],
            env: BTreeMap::from([("OPENSHELL_SANDBOX_ID".into(), "sb-1".into())]),
            labels: BTreeMap::from([
                ("openshell.sandbox-id".into(), "sb-1".into()),
                ("openshell.run-id".into(), "run-9".into()),
            ]),
        }
    }

    #[test]
    fn empty_command_keeps_the_image_default_and_runtime_falls_back() {
        let body = container_body(&request(), "runc");
        assert_eq!(body.cmd, None);
        let host = body.host_config.unwrap();
        assert_eq!(host.runtime.as_deref(), Some("runc"));
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert_eq!(
            body.env,
            Some(vec!["OPENSHELL_SANDBOX_ID=sb-1".to_string()])
        );
        assert_eq!(body.labels.unwrap()["openshell.run-id"], "run-9");
    }

    #[test]
    fn explicit_command_and_runtime_class_win() {
        let mut req = request();
        req.command = vec!["/bin/sh".into(), "-c".into(), "exit 3".into()];
        req.runtime_class = Some("runsc".into());
        let body = container_body(&req, "runc");
        assert_eq!(body.cmd, Some(req.command.clone()));
        assert_eq!(body.host_config.unwrap().runtime.as_deref(), Some("runsc"));
        assert_eq!(container_name("sb-1"), "openshell-sb-1");
    }
}
