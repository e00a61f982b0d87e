//! The `k3s` lane: the same cases on Kubernetes, either on one k3s cluster the suite boots per run
//! (testcontainers-modules' `K3s`, only when its image is in the local Docker engine), or on an
//! existing cluster named by `--kubeconfig` / `KUBECONFIG`, as sonobuoy and hydrophone do.
//!
//! Where neither exists the lane is *not run*, with the exact reason, the k3s image tag looked
//! for and both remedies ([`not_run_reason`]); no fake API server ever stands in for it.
//!
//! Layout: this file the options, the prerequisite check and the prepared [`Lane`];
//! [`cluster`] booting and sharing the k3s cluster; [`pause`] the pod sandbox image k3s needs
//! without a registry; [`audit`] the leak audit's listing of labelled Pods and Secrets.

pub mod audit;
pub mod cluster;
pub mod pause;

use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::Api;
use kube::runtime::wait::await_condition;
use openshell_fixtures::{Catalog, Inputs};

use crate::images::Images;

/// The k3s image the lane boots unless `OPENSHELL_K3S_IMAGE` names another (testcontainers-
/// modules' default; k3s before 1.32 imports images only at boot, which is how the lane loads
/// them).
pub const DEFAULT_IMAGE: &str = "rancher/k3s:v1.28.8-k3s1";
/// The namespace of the lane's objects unless `--namespace` names another.
pub const DEFAULT_NAMESPACE: &str = "default";
/// How long a booted cluster may take to register its node and its default service account.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);

/// Where the lane's cluster comes from, as the run was asked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeOptions {
    /// `--kubeconfig` (else `KUBECONFIG`): an existing cluster.
    pub kubeconfig: Option<PathBuf>,
    /// `--namespace` (default [`DEFAULT_NAMESPACE`]).
    pub namespace: Option<String>,
    /// `--host-network`: on an existing cluster, run Pods on their node's network (nodes of
    /// this machine, e.g. kind or k3s here), so the suite's gateway on 127.0.0.1 is reachable.
    pub host_network: bool,
}

impl KubeOptions {
    /// The options a run without flags has: `KUBECONFIG` only.
    pub fn from_env() -> KubeOptions {
        KubeOptions {
            kubeconfig: std::env::var_os("KUBECONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            ..Default::default()
        }
    }

    /// The namespace.
    pub fn namespace(&self) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string())
    }
}

/// The k3s image to look for.
pub fn image() -> String {
    std::env::var("OPENSHELL_K3S_IMAGE")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_IMAGE.to_string())
}

/// Where the cluster of a run comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An existing cluster.
    Kubeconfig(PathBuf),
    /// A k3s cluster booted from this local image.
    K3s(String),
}

/// The "not run" reason: what is missing, the image tag, and both remedies.
pub fn not_run_reason(image: &str, why: &str) -> String {
    format!(
        "k3s lane not run: no Kubernetes cluster: {why}, and no --kubeconfig or KUBECONFIG was \
         given. Remedies: load the k3s image into this Docker engine (`docker save {image} -o \
         k3s.tar` where a registry is reachable, then `docker load -i k3s.tar` here; \
         OPENSHELL_K3S_IMAGE names another tag), or run against an existing cluster with \
         `--kubeconfig PATH` (or KUBECONFIG)"
    )
}

/// Whether the lane can run; `Err` is the "not run" reason.
pub async fn check(options: &KubeOptions, external_gateway: bool) -> Result<Source, String> {
    if let Some(path) = &options.kubeconfig {
        let client = audit::client(path).await?;
        tokio::time::timeout(Duration::from_secs(10), client.apiserver_version())
            .await
            .map_err(|_| {
                format!(
                    "the cluster of kubeconfig {} did not answer within 10 s",
                    path.display()
                )
            })?
            .map_err(|e| {
                format!(
                    "the cluster of kubeconfig {} does not answer: {e}",
                    path.display()
                )
            })?;
        if !external_gateway && !options.host_network {
            return Err(format!(
                "the suite's gateway listens on 127.0.0.1, which Pods of the cluster of {} reach \
                 only on their node's network: pass --host-network when the nodes are this \
                 machine, or start a gateway the Pods can reach and pass --gateway URL",
                path.display()
            ));
        }
        return Ok(Source::Kubeconfig(path.clone()));
    }
    let image = image();
    if external_gateway {
        return Err(format!(
            "with --gateway the lane audits the cluster your gateway uses: pass its --kubeconfig \
             (the k3s image {image} is only booted for the suite's own gateway)"
        ));
    }
    let docker = openshell_images::docker::connect(None).map_err(|e| {
        not_run_reason(
            &image,
            &format!("no Docker engine to look for {image} in ({e})"),
        )
    })?;
    match openshell_images::docker::image_exists(&docker, &image).await {
        Ok(true) => Ok(Source::K3s(image)),
        Ok(false) => Err(not_run_reason(
            &image,
            &format!(
                "the k3s image {image} is not in the local Docker engine (no registry is \
                 reachable to pull it)"
            ),
        )),
        Err(e) => Err(not_run_reason(
            &image,
            &format!("the Docker engine could not be asked for {image} ({e})"),
        )),
    }
}

/// A prepared lane: a cluster that answers, with the fixture images where its nodes find them.
pub struct Lane {
    /// The kubeconfig the gateway and the audit use.
    pub kubeconfig: PathBuf,
    /// The namespace of the sandboxes.
    pub namespace: String,
    /// `imagePullPolicy` of the sandboxes (`Never` on the booted k3s).
    pub pull_policy: &'static str,
    /// Pods on their node's network.
    pub host_network: bool,
    /// What the report says about the cluster.
    pub description: String,
    client: kube::Client,
    cluster: Option<cluster::Cluster>,
}

impl Lane {
    /// Boots or attaches to the cluster of `source`. For a booted k3s, the fixture images (and
    /// the pause image) are built in the local Docker engine and handed to k3s before it boots.
    pub async fn prepare(
        source: Source,
        options: &KubeOptions,
        catalog: &Catalog,
        inputs: &Inputs,
        images: &Images,
    ) -> Result<Lane, String> {
        let namespace = options.namespace();
        let (kubeconfig, cluster, pull_policy, host_network) = match source {
            Source::Kubeconfig(path) => (path, None, "IfNotPresent", options.host_network),
            Source::K3s(image) => {
                if let Some(why) = images.unavailable() {
                    return Err(format!("the k3s lane needs the fixture images: {why}"));
                }
                let refs: Vec<String> = images.all().values().cloned().collect();
                let booted =
                    cluster::acquire(&image, cluster::Scope::current(), catalog, inputs, &refs)
                        .await?;
                (booted.kubeconfig.clone(), Some(booted), "Never", true)
            }
        };
        let client = audit::client(&kubeconfig).await?;
        let description = match &cluster {
            Some(c) => c.description.clone(),
            None => format!("existing cluster of {}", kubeconfig.display()),
        };
        if cluster.is_some() {
            settle(&client, &namespace).await?;
        }
        Ok(Lane {
            kubeconfig,
            namespace,
            pull_policy,
            host_network,
            description,
            client,
            cluster,
        })
    }

    /// The reference gateway's flags for this lane.
    pub fn gateway_args(&self) -> Vec<String> {
        let mut args = vec![
            "--kubeconfig".to_string(),
            self.kubeconfig.display().to_string(),
            "--k8s-namespace".to_string(),
            self.namespace.clone(),
            "--k8s-image-pull-policy".to_string(),
            self.pull_policy.to_string(),
        ];
        if self.host_network {
            args.push("--k8s-host-network".to_string());
        }
        args
    }

    /// The leak audit of the lane's namespace.
    pub fn audit(&self) -> audit::KubeAudit {
        audit::KubeAudit::new(self.client.clone(), &self.namespace)
    }

    /// Ends the lane: a cluster booted for this run alone is removed (a shared one stays for
    /// the other tests of its nextest run; its reaper removes it after that run).
    pub async fn finish(self) {
        if let Some(cluster) = self.cluster {
            cluster.release().await;
        }
    }
}

/// Waits until the booted cluster has a node (else every Pod is unschedulable) and the
/// namespace's default service account (else every Pod is refused at admission).
async fn settle(client: &kube::Client, namespace: &str) -> Result<(), String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = async {
        let watch = kube::runtime::watcher(nodes, Default::default());
        let mut watch = std::pin::pin!(kube::runtime::WatchStreamExt::applied_objects(watch));
        use futures::StreamExt;
        while let Some(item) = watch.next().await {
            if item.is_ok() {
                return;
            }
        }
    };
    tokio::time::timeout(SETTLE_LIMIT, node)
        .await
        .map_err(|_| format!("the k3s cluster registered no node within {SETTLE_LIMIT:?}"))?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account = await_condition(accounts, "default", |sa: Option<&ServiceAccount>| {
        sa.is_some()
    });
    tokio::time::timeout(SETTLE_LIMIT, account)
        .await
        .map_err(|_| {
            format!("namespace {namespace} got no default service account within {SETTLE_LIMIT:?}")
        })?
        .map_err(|e| format!("waiting for namespace {namespace}'s default service account: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_not_run_reason_names_the_image_tag_and_both_remedies() {
        let why = not_run_reason(DEFAULT_IMAGE, "the k3s image is not there");
        assert!(why.contains("rancher/k3s:v1.28.8-k3s1"), "{why}");
        assert!(why.contains("docker load -i k3s.tar"), "{why}");
        assert!(why.contains("--kubeconfig"), "{why}");
        assert!(why.starts_with("k3s lane not run"), "{why}");
    }

    #[test]
    fn options_default_to_the_default_namespace() {
        assert_eq!(KubeOptions::default().namespace(), "default");
    }
}
