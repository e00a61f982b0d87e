//! The Docker compute driver of the reference gateway (bollard, Docker API 1.41).
//!
//! A sandbox is one container named `openshell-<sandbox id>`, made from a fixture image
//! (`openshell-fixture/<name>:<hash>`, built locally: nothing is ever pulled), labelled with the
//! request's labels, on the host's network, with the runtime of the request (`runc`, `runsc`) or
//! the driver's default, with no restart policy so an exited supervisor stays exited, and with the
//! capabilities the supervisor needs ([`spec::CAPABILITIES`], each explained there).
//!
//! Backend facts come from the engine's event stream (no polling): `start` → `Running`, `die` →
//! `Exited` (after the container's last output), `destroy` without a delete → `Gone`. Output is
//! followed from the engine's log stream and sent line by line; a bounded tail is kept per
//! sandbox. Every engine request has a deadline: an unreachable or silent engine is
//! `Unavailable`, never a hang.
//!
//! Layout: [`engine`] the client and error sorting; [`spec`] the container a request becomes;
//! [`logs`] output lines and the tail; [`tracker`] per-sandbox event ordering; [`watch`] the
//! engine's event stream; this file the [`DockerDriver`] itself.

pub mod engine;
pub mod logs;
pub mod spec;
pub mod tracker;
pub mod watch;

use std::sync::Arc;

use async_trait::async_trait;
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, KillContainerOptions,
    ListContainersOptionsBuilder, RemoveContainerOptions, StartContainerOptions,
};
use openshell_driver::{
    mutants, ComputeDriver, DriverError, DriverEvent, EventSender, Result, SandboxRequest,
};
use tokio::sync::Notify;

use crate::engine::{is_unavailable, Engine, EngineError};
use crate::spec::container_name;
use crate::tracker::Registry;

/// How the driver reaches the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerConfig {
    /// `unix:///var/run/docker.sock` (default: `DOCKER_HOST`, else that socket), `tcp://…`.
    pub docker_host: Option<String>,
    /// The runtime of sandboxes whose request names none (`runc`; `runsc` for gVisor).
    pub default_runtime: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            docker_host: None,
            default_runtime: "runc".to_string(),
        }
    }
}

/// The Docker driver. Dropping it stops its event watcher (containers stay).
#[derive(Debug)]
pub struct DockerDriver {
    engine: Arc<Engine>,
    registry: Registry,
    events: EventSender,
    default_runtime: String,
    wake: Arc<Notify>,
    watcher: tokio::task::AbortHandle,
}

impl Drop for DockerDriver {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

fn unavailable(error: EngineError) -> DriverError {
    DriverError::Unavailable(error.to_string())
}

impl DockerDriver {
    /// Makes the driver and starts watching the engine's events. Must be called within a tokio
    /// runtime. Sends nothing to the engine yet: an engine that is down makes each later
    /// request fail with [`DriverError::Unavailable`] (see [`DockerDriver::ping`]).
    pub fn connect(config: DockerConfig, events: EventSender) -> Result<DockerDriver> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| {
            DriverError::Unavailable("the Docker driver needs a tokio runtime".into())
        })?;
        if config.default_runtime.trim().is_empty() {
            return Err(DriverError::Unavailable(
                "the Docker driver's default runtime is empty".into(),
            ));
        }
        let engine = Arc::new(Engine::new(config.docker_host));
        let registry = Registry::default();
        let wake = Arc::new(Notify::new());
        let watcher = runtime
            .spawn(watch::run(engine.clone(), registry.clone(), wake.clone()))
            .abort_handle();
        Ok(DockerDriver {
            engine,
            registry,
            events,
            default_runtime: config.default_runtime,
            wake,
            watcher,
        })
    }

    /// Checks that the engine answers (within a few seconds).
    pub async fn ping(&self) -> Result<()> {
        self.engine
            .bounded("ping", engine::QUICK, |c| async move { c.ping().await })
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    /// The kept tail of a sandbox's output (at most [`logs::TAIL_LINES`] lines and
    /// [`logs::TAIL_BYTES`] bytes); empty for a sandbox this driver does not track.
    pub fn output_tail(&self, sandbox_id: &str) -> Vec<String> {
        self.registry.tail(sandbox_id)
    }

    async fn start(&self, sandbox_id: &str, name: &str) -> Result<()> {
        let started = self
            .engine
            .bounded("start container", engine::SLOW, |c| async move {
                c.start_container(name, None::<StartContainerOptions>).await
            })
            .await;
        match started {
            Ok(()) => Ok(()),
            Err(e) if is_unavailable(&e) => Err(unavailable(e)),
            Err(e) => Err(DriverError::StartFailed(format!(
                "container {name} of sandbox {sandbox_id}: {e}"
            ))),
        }
    }
}

#[async_trait]
impl ComputeDriver for DockerDriver {
    fn name(&self) -> &'static str {
        "docker"
    }

    async fn create(&self, request: SandboxRequest) -> Result<()> {
        self.ping().await?;
        let sandbox_id = request.sandbox_id.clone();
        let name = container_name(&sandbox_id);
        let body = spec::container_body(&request, &self.default_runtime);
        let tracking = self.registry.track(&sandbox_id, &self.events);
        let options = CreateContainerOptions {
            name: Some(name.clone()),
            ..Default::default()
        };
        let created = self
            .engine
            .bounded("create container", engine::SLOW, |c| async move {
                c.create_container(Some(options), body).await
            })
            .await;
        if let Err(e) = created {
            self.registry.forget(&sandbox_id);
            return Err(match e {
                EngineError::NotFound(detail) => DriverError::ImageNotFound {
                    image: request.image,
                    detail,
                },
                e if is_unavailable(&e) => unavailable(e),
                EngineError::Refused { message, .. }
                    if message.to_lowercase().contains("unknown runtime") =>
                {
                    DriverError::Unavailable(format!(
                        "docker engine at {} has no such runtime: {message}",
                        self.engine.host()
                    ))
                }
                e => DriverError::CreateFailed(format!("container {name}: {e}")),
            });
        }
        self.registry.mark_created(&sandbox_id);
        self.start(&sandbox_id, &name).await?;
        if mutants::active("leak-created") {
            // A stray never-started container under an id nobody knows, as a refused create of
            // upstream's left behind: only an audit that looks by run (or by time) finds it.
            let stray_id = format!("stray-{}", &sandbox_id[..8.min(sandbox_id.len())]);
            let mut stray = spec::container_body(&request, &self.default_runtime);
            stray.labels = Some(spec::container_labels(&request, &stray_id));
            let options = CreateContainerOptions {
                name: Some(container_name(&stray_id)),
                ..Default::default()
            };
            let _ = self
                .engine
                .bounded("create container", engine::SLOW, |c| async move {
                    c.create_container(Some(options), stray).await
                })
                .await;
        }
        let follower_done = logs::follow(self.engine.clone(), name, tracking.sink);
        tokio::spawn(async move {
            let mut follower_done = follower_done;
            let _ = follower_done.wait_for(|done| *done).await;
            let _ = tracking.logs_done.send(true);
        });
        self.wake.notify_one();
        Ok(())
    }

    async fn delete(&self, sandbox_id: &str) -> Result<bool> {
        let name = container_name(sandbox_id);
        match self.registry.begin_delete(sandbox_id) {
            Some(logs_done) if !*logs_done.borrow() => {
                // Stop it first so its log stream ends with every line sent, then remove.
                let kill_name = name.clone();
                let killed = self
                    .engine
                    .bounded("kill container", engine::QUICK, |c| async move {
                        c.kill_container(&kill_name, None::<KillContainerOptions>)
                            .await
                    })
                    .await;
                if let Err(e) = killed {
                    if is_unavailable(&e) {
                        return Err(unavailable(e));
                    }
                }
                tracker::wait_for_output(logs_done).await;
            }
            Some(_) => {}
            None => match logs::read_tail(&self.engine, &name).await {
                Ok(lines) => {
                    for line in lines {
                        let _ = self.events.send(DriverEvent::Output {
                            sandbox_id: sandbox_id.to_string(),
                            line,
                        });
                    }
                }
                Err(EngineError::NotFound(_)) => return Ok(false),
                Err(e) if is_unavailable(&e) => return Err(unavailable(e)),
                Err(_) => {}
            },
        }
        let options = RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        let removed = self
            .engine
            .bounded("remove container", engine::SLOW, |c| async move {
                c.remove_container(&name, Some(options)).await
            })
            .await;
        let result = match removed {
            Ok(()) => Ok(true),
            Err(EngineError::NotFound(_)) => Ok(false),
            // 409: a removal of this container is already under way.
            Err(EngineError::Refused { status: 409, .. }) => Ok(true),
            Err(e) => Err(unavailable(e)),
        };
        if result.is_ok() {
            self.registry.forget(sandbox_id);
        }
        result
    }

    async fn labelled(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<String>> {
        let wanted: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let filters = std::collections::HashMap::from([(
            "label".to_string(),
            wanted
                .iter()
                .map(String::as_str)
                .map(String::from)
                .collect::<Vec<_>>(),
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .engine
            .bounded("list containers", engine::QUICK, |c| async move {
                c.list_containers(Some(options)).await
            })
            .await
            .map_err(unavailable)?;
        Ok(listed
            .into_iter()
            .filter_map(|c| c.labels?.remove(openshell_proto::labels::SANDBOX_ID))
            .collect())
    }

    async fn exists(&self, sandbox_id: &str) -> Result<bool> {
        let name = container_name(sandbox_id);
        let inspected = self
            .engine
            .bounded("inspect container", engine::QUICK, |c| async move {
                c.inspect_container(&name, None::<InspectContainerOptions>)
                    .await
            })
            .await;
        match inspected {
            Ok(_) => {
                // Asked about it: follow its events from now on (e.g. after a gateway restart).
                if !self.registry.contains(sandbox_id) {
                    drop(self.registry.track(sandbox_id, &self.events));
                    self.registry.mark_created(sandbox_id);
                    self.wake.notify_one();
                }
                Ok(true)
            }
            Err(EngineError::NotFound(_)) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }
}
