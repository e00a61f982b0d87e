//! The Kubernetes compute driver of the reference gateway (kube-rs).
//!
//! A sandbox is two objects in the driver's namespace, both labelled with the request's labels
//! (`openshell.sandbox-id`, `openshell.run-id`): a Secret holding the sandbox credential, and a
//! Pod (`restartPolicy: Never`, the request's image and environment, the credential read from
//! the Secret, `runtimeClassName` when the request names a runtime, the configured
//! `imagePullPolicy`, the capabilities the supervisor needs) whose deletion takes the Secret with
//! it (owner reference). The driver creates the Pod itself rather than upstream's agent-sandbox
//! `Sandbox` resource, so a cluster needs no controller.
//!
//! Backend facts come from a kube-runtime watcher on the driver's Pods ([`watch`]), mapped to
//! contract reasons in [`status`] and ordered per sandbox in [`tracker`]; output comes from the
//! Pod's log endpoint ([`logs`]). The driver never reports Ready: the supervisor's session does.
//! Every API request has a deadline: an unreachable API server is `Unavailable`, never a hang.
//!
//! Layout: [`objects`] the Secret and Pod a request becomes; [`status`] Pod status → observation;
//! [`tracker`] per-sandbox event order; [`watch`] the Pod watcher; [`logs`] output; [`api`] the
//! client, deadlines and error sorting; this file the [`K8sDriver`]; [`mock`] (feature `mock`) a
//! tower-test API double for unit tests.

pub mod api;
pub mod logs;
#[cfg(feature = "mock")]
pub mod mock;
pub mod objects;
pub mod status;
pub mod tracker;
pub mod watch;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use openshell_driver::{ComputeDriver, DriverError, EventSender, Result, SandboxRequest};
use tokio::sync::watch as signal;

use crate::api::{bounded, Refusal, QUICK, SLOW};
use crate::objects::{pod_name, secret_name};
use crate::tracker::{flush_output, Registry};

/// How long a delete waits for the Pod to go after its graceful delete, before forcing it; and
/// again after forcing. Both together stay well inside the suite's 30 s cleanup bound.
pub const GRACEFUL_WAIT: Duration = Duration::from_secs(8);
/// See [`GRACEFUL_WAIT`].
pub const FORCED_WAIT: Duration = Duration::from_secs(8);

/// How the driver reaches the cluster and what its Pods look like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K8sConfig {
    /// A kubeconfig file; `None`: `KUBECONFIG`, `~/.kube/config`, else the in-cluster service
    /// account.
    pub kubeconfig: Option<PathBuf>,
    /// The namespace of every sandbox's objects.
    pub namespace: String,
    /// `imagePullPolicy` of the sandbox container: `IfNotPresent`, `Never` (images loaded onto
    /// the nodes, as in the k3s lane) or `Always`.
    pub image_pull_policy: String,
    /// `runtimeClassName` of sandboxes whose request names no runtime (`None`: the cluster's
    /// default runtime).
    pub default_runtime_class: Option<String>,
    /// Run Pods on their node's network (`hostNetwork: true`, node DNS, tolerating a node whose
    /// CNI is not ready): the k3s lane's mode, where Pods reach the gateway on 127.0.0.1.
    pub host_network: bool,
}

impl Default for K8sConfig {
    fn default() -> Self {
        K8sConfig {
            kubeconfig: None,
            namespace: "default".into(),
            image_pull_policy: "IfNotPresent".into(),
            default_runtime_class: None,
            host_network: false,
        }
    }
}

/// The pull policies Kubernetes accepts.
pub const PULL_POLICIES: &[&str] = &["Always", "IfNotPresent", "Never"];

/// The Kubernetes driver. Dropping it stops its watcher (Pods stay).
#[derive(Debug)]
pub struct K8sDriver {
    pods: Api<Pod>,
    secrets: Api<Secret>,
    config: K8sConfig,
    registry: Registry,
    watcher: tokio::task::AbortHandle,
}

impl Drop for K8sDriver {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl K8sDriver {
    /// Makes a client from the configuration and starts the driver (see [`K8sDriver::new`]).
    pub async fn connect(config: K8sConfig, events: EventSender) -> Result<K8sDriver> {
        let client = api::client(config.kubeconfig.as_deref()).await?;
        K8sDriver::new(client, config, events)
    }

    /// The driver over `client` (a real cluster, or [`mock`] in tests); starts the watcher. Must
    /// be called within a tokio runtime. Sends nothing yet: an unreachable API makes each later
    /// request fail with [`DriverError::Unavailable`] (see [`K8sDriver::ping`]).
    pub fn new(client: kube::Client, config: K8sConfig, events: EventSender) -> Result<K8sDriver> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            DriverError::Unavailable("the Kubernetes driver needs a tokio runtime".into())
        })?;
        if !PULL_POLICIES.contains(&config.image_pull_policy.as_str()) {
            return Err(DriverError::Unavailable(format!(
                "image pull policy {:?} is none of {}",
                config.image_pull_policy,
                PULL_POLICIES.join(", ")
            )));
        }
        if config.namespace.trim().is_empty() {
            return Err(DriverError::Unavailable(
                "the Kubernetes driver's namespace is empty".into(),
            ));
        }
        let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
        let secrets: Api<Secret> = Api::namespaced(client, &config.namespace);
        let registry = Registry::new(pods.clone(), events);
        let watcher = runtime
            .spawn(watch::run(pods.clone(), registry.clone()))
            .abort_handle();
        Ok(K8sDriver {
            pods,
            secrets,
            config,
            registry,
            watcher,
        })
    }

    /// Checks that the API server answers (within a few seconds).
    pub async fn ping(&self) -> Result<()> {
        let client: kube::Client = self.pods.clone().into_client();
        bounded(
            "ask the API server its version",
            QUICK,
            client.apiserver_version(),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.into_driver_error())
    }

    /// The kept tail of a sandbox's output; empty for a sandbox this driver does not track.
    pub fn output_tail(&self, sandbox_id: &str) -> Vec<String> {
        self.registry.tail(sandbox_id)
    }

    /// The namespace of the driver's objects.
    pub fn namespace(&self) -> &str {
        &self.config.namespace
    }

    async fn delete_object<K>(
        &self,
        api: &Api<K>,
        what: &str,
        name: &str,
        grace: u32,
    ) -> Result<bool>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let params = DeleteParams {
            grace_period_seconds: Some(grace),
            propagation_policy: Some(kube::api::PropagationPolicy::Background),
            ..Default::default()
        };
        match bounded(
            &format!("delete {what} {name}"),
            QUICK,
            api.delete(name, &params),
        )
        .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.refusal() == Some(Refusal::NotFound) => Ok(false),
            Err(e) => Err(e.into_driver_error()),
        }
    }

    /// Waits until the watcher saw the Pod go, at most `limit`; then asks the API once.
    async fn pod_gone(
        &self,
        gone: &mut signal::Receiver<bool>,
        name: &str,
        limit: Duration,
    ) -> bool {
        if tokio::time::timeout(limit, gone.wait_for(|g| *g))
            .await
            .is_ok()
        {
            return true;
        }
        matches!(
            bounded(&format!("get pod {name}"), QUICK, self.pods.get_opt(name)).await,
            Ok(None)
        )
    }
}

#[async_trait]
impl ComputeDriver for K8sDriver {
    fn name(&self) -> &'static str {
        "k8s"
    }

    async fn create(&self, request: SandboxRequest) -> Result<()> {
        let sandbox_id = request.sandbox_id.clone();
        let pod_name = pod_name(&sandbox_id);
        let secret_name = secret_name(&sandbox_id);
        // Tracked before anything exists, so no status of the new Pod is missed.
        self.registry.track(&sandbox_id);
        let created = async {
            // 1. The Secret first: a Pod whose Secret is missing only gets
            //    `CreateContainerConfigError` from the kubelet.
            let secret = objects::secret(&request, &self.config.namespace);
            bounded(
                &format!("create secret {secret_name}"),
                SLOW,
                self.secrets.create(&PostParams::default(), &secret),
            )
            .await
            .map_err(|e| e.into_driver_error())?;
            // 2. The Pod that reads it.
            let pod = objects::pod(&request, &self.config);
            let pod = bounded(
                &format!("create pod {pod_name}"),
                SLOW,
                self.pods.create(&PostParams::default(), &pod),
            )
            .await
            .map_err(|e| e.into_driver_error())?;
            self.registry.mark_created(&sandbox_id);
            // 3. The Secret belongs to the Pod, so deleting the Pod (by anyone) removes it too.
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let owner = objects::owner_reference(&pod_name, &uid);
            let patch = serde_json::json!({"metadata": {"ownerReferences": [owner]}});
            bounded(
                &format!("set the owner of secret {secret_name}"),
                QUICK,
                self.secrets
                    .patch(&secret_name, &PatchParams::default(), &Patch::Merge(&patch)),
            )
            .await
            .map_err(|e| e.into_driver_error())?;
            Ok(())
        };
        let result: Result<()> = created.await;
        if result.is_err() && !self.registry.created_ids().contains(&sandbox_id) {
            // Nothing to watch; what was made (the Secret) goes with the gateway's cleanup.
            self.registry.forget(&sandbox_id);
        }
        result
    }

    async fn delete(&self, sandbox_id: &str) -> Result<bool> {
        let name = pod_name(sandbox_id);
        // 1. From now on the sandbox reports nothing (a deleted sandbox has no backend story).
        let mut deleting = self.registry.begin_delete(sandbox_id);
        // 2. Output not yet sent is read before the Pod goes (diagnostics survive cleanup).
        if matches!(
            *deleting.logs.lock().unwrap_or_else(|p| p.into_inner()),
            tracker::LogState::Unread
        ) {
            flush_output(&self.pods, &deleting.logs, &deleting.sink).await;
        }
        // 3. The Pod with a short grace period, and the Secret (its owner reference would
        //    remove it too, but only once the garbage collector runs, and not at all when the
        //    create stopped before setting it).
        let grace = objects::GRACE_SECONDS as u32;
        let pod_removed = self.delete_object(&self.pods, "pod", &name, grace).await?;
        let secret_removed = self
            .delete_object(&self.secrets, "secret", &secret_name(sandbox_id), 0)
            .await?;
        // 4. Wait for the Pod to go; a Pod that will not terminate (its node is gone, its
        //    runtime hangs) is force-deleted, so a delete never blocks on it.
        if pod_removed
            && !self
                .pod_gone(&mut deleting.gone, &name, GRACEFUL_WAIT)
                .await
        {
            tracing::warn!(pod = %name, "pod did not terminate in time; force-deleting it");
            self.delete_object(&self.pods, "pod", &name, 0).await?;
            if !self.pod_gone(&mut deleting.gone, &name, FORCED_WAIT).await {
                return Err(DriverError::Unavailable(format!(
                    "pod {name} is still there after a forced delete"
                )));
            }
        }
        // 5. The follower's last lines, then forget the sandbox.
        flush_output(&self.pods, &deleting.logs, &deleting.sink).await;
        self.registry.forget(sandbox_id);
        Ok(pod_removed || secret_removed)
    }

    async fn exists(&self, sandbox_id: &str) -> Result<bool> {
        let name = pod_name(sandbox_id);
        let found = bounded(&format!("get pod {name}"), QUICK, self.pods.get_opt(&name))
            .await
            .map_err(|e| e.into_driver_error())?;
        let Some(pod) = found else {
            return Ok(false);
        };
        if !self.registry.contains(sandbox_id) {
            // Asked about it: follow its statuses from now on (e.g. after a gateway restart),
            // starting with the one it has now (it may have ended while nobody watched).
            self.registry.track(sandbox_id);
            self.registry.mark_created(sandbox_id);
            self.registry
                .dispatch(sandbox_id, tracker::PodEvent::Seen(status::observe(&pod)));
        }
        Ok(true)
    }
}
