//! The leak audit of a Kubernetes lane: the Pods and Secrets of the lane's namespace that carry
//! a sandbox's or a run's label, listed through the Kubernetes API with the suite's own client
//! (kube-rs; nothing of `reference/`). It only ever lists; it never deletes.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use openshell_proto::labels;

use crate::leaks::Resource;

/// How long one list may take.
const LIST_LIMIT: Duration = Duration::from_secs(10);

/// A client for the cluster of a kubeconfig file.
pub async fn client(path: &Path) -> Result<kube::Client, String> {
    // kube is built with rustls and ring; the provider must be chosen once per process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bad = |e: String| format!("kubeconfig {}: {e}", path.display());
    let file = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(|e| bad(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| bad(e.to_string()))
}

/// The labelled objects of one namespace.
#[derive(Clone)]
pub struct KubeAudit {
    client: kube::Client,
    namespace: String,
}

impl std::fmt::Debug for KubeAudit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KubeAudit({})", self.namespace)
    }
}

impl KubeAudit {
    /// The audit of `namespace` through `client`.
    pub fn new(client: kube::Client, namespace: &str) -> KubeAudit {
        KubeAudit {
            client,
            namespace: namespace.to_string(),
        }
    }

    /// Every Pod and Secret whose labels match `selector` (`key=value`).
    pub async fn labelled(&self, selector: &str) -> Result<Vec<Resource>, String> {
        let params = ListParams::default().labels(selector);
        let mut out = Vec::new();
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let listed = tokio::time::timeout(LIST_LIMIT, pods.list(&params))
            .await
            .map_err(|_| format!("listing pods labelled {selector}: no answer in {LIST_LIMIT:?}"))?
            .map_err(|e| format!("listing pods labelled {selector}: {e}"))?;
        for pod in listed {
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            let terminating = pod.metadata.deletion_timestamp.is_some();
            out.push(resource(
                "pod",
                &self.namespace,
                pod.metadata.name.unwrap_or_default(),
                format!("{phase}{}", if terminating { ", terminating" } else { "" }),
                pod.metadata.labels,
            ));
        }
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let listed = tokio::time::timeout(LIST_LIMIT, secrets.list(&params))
            .await
            .map_err(|_| {
                format!("listing secrets labelled {selector}: no answer in {LIST_LIMIT:?}")
            })?
            .map_err(|e| format!("listing secrets labelled {selector}: {e}"))?;
        for secret in listed {
            out.push(resource(
                "secret",
                &self.namespace,
                secret.metadata.name.unwrap_or_default(),
                String::new(),
                secret.metadata.labels,
            ));
        }
        Ok(out)
    }

    /// The objects of sandbox `id`.
    pub async fn of_sandbox(&self, id: &str) -> Result<Vec<Resource>, String> {
        self.labelled(&format!("{}={id}", labels::SANDBOX_ID)).await
    }

    /// The objects of run `run_id`.
    pub async fn of_run(&self, run_id: &str) -> Result<Vec<Resource>, String> {
        self.labelled(&format!("{}={run_id}", labels::RUN_ID)).await
    }
}

fn resource(
    kind: &str,
    namespace: &str,
    name: String,
    state: String,
    labels: Option<BTreeMap<String, String>>,
) -> Resource {
    let state = if state.is_empty() {
        String::new()
    } else {
        format!(" [{state}]")
    };
    Resource {
        kind: kind.into(),
        name: format!("{namespace}/{name}{state}"),
        labels: labels.unwrap_or_default(),
        created: None,
    }
}
