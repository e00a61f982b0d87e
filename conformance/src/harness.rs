//! What a case body gets: a gateway client, names unique to the case, the run id, the fixture
//! image references, the lane, the case deadline, the journal of everything watched, and the
//! backend view for cleanup checks. Every sandbox it creates is labelled with the run id and the
//! case, and is deleted (then audited) by the runner after the body, whatever the outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openshell_proto::labels;
use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    CreateSandboxRequest, DeleteSandboxRequest, GetSandboxRequest, ListSandboxesRequest, Sandbox,
    SandboxSpec, SandboxTemplate,
};
use tonic::transport::Channel;

use crate::check::{fail, skip, CaseError, CaseResult};
use crate::images::Images;
use crate::leaks::{Backend, Resource};
use crate::observe::{watch, Journal, Observation, Snapshot, WatchOpts};
use crate::Driver;

/// The label naming the case that created a sandbox.
pub const CASE_LABEL: &str = "openshell.conformance/case";

/// A sandbox the case created.
#[derive(Debug, Clone)]
pub struct Created {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: String,
}

#[derive(Debug)]
struct Inner {
    client: OpenShellClient<Channel>,
    run_id: String,
    prefix: String,
    case_id: String,
    driver: Driver,
    images: Arc<Images>,
    deadline: Instant,
    journal: Journal,
    created: Mutex<Vec<Created>>,
    backend: Option<Backend>,
}

/// A case's view of the world (cheap to clone).
#[derive(Debug, Clone)]
pub struct Harness {
    inner: Arc<Inner>,
}

/// How to create a sandbox from a fixture.
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// `spec.environment` entries.
    pub env: Vec<(String, String)>,
    /// `spec.command` (empty: the image's).
    pub command: Vec<String>,
    /// Extra labels.
    pub labels: Vec<(String, String)>,
    /// Leave out the lane's environment ([`crate::spec::catalog::fixture_env`]), e.g. to test
    /// strict mode under gVisor.
    pub without_lane_env: bool,
}

impl CreateOpts {
    /// With one environment entry.
    pub fn env(mut self, key: &str, value: &str) -> CreateOpts {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

impl Harness {
    /// A harness for one case.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: OpenShellClient<Channel>,
        run_id: &str,
        prefix: &str,
        case_id: &str,
        driver: Driver,
        images: Arc<Images>,
        timeout: Duration,
        backend: Option<Backend>,
    ) -> Harness {
        Harness {
            inner: Arc::new(Inner {
                client,
                run_id: run_id.to_string(),
                prefix: prefix.to_string(),
                case_id: case_id.to_string(),
                driver,
                images,
                deadline: Instant::now() + timeout,
                journal: Journal::default(),
                created: Mutex::new(Vec::new()),
                backend,
            }),
        }
    }

    /// A client of the gateway.
    pub fn client(&self) -> OpenShellClient<Channel> {
        self.inner.client.clone()
    }

    /// The run id (the `openshell.run-id` label of everything the run creates).
    pub fn run_id(&self) -> &str {
        &self.inner.run_id
    }

    /// The case id.
    pub fn case_id(&self) -> &str {
        &self.inner.case_id
    }

    /// The lane.
    pub fn driver(&self) -> Driver {
        self.inner.driver
    }

    /// The case deadline.
    pub fn deadline(&self) -> Instant {
        self.inner.deadline
    }

    /// The journal of everything watched.
    pub fn journal(&self) -> &Journal {
        &self.inner.journal
    }

    /// The backend view, if the lane has one.
    pub fn backend(&self) -> Option<&Backend> {
        self.inner.backend.as_ref()
    }

    /// A sandbox name unique to this case and run: `<prefix>-<suffix>` (a DNS-1123 label).
    pub fn name(&self, suffix: &str) -> String {
        let mut name = format!("{}-{suffix}", self.inner.prefix);
        name.truncate(63);
        name.trim_end_matches('-').to_string()
    }

    /// The image reference of `fixture`; a missing one skips the case.
    pub fn image(&self, fixture: &str) -> CaseResult<String> {
        self.inner
            .images
            .get(fixture)
            .map(str::to_string)
            .map_err(skip)
    }

    /// The labels every sandbox of this case carries.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (labels::RUN_ID.to_string(), self.inner.run_id.clone()),
            (CASE_LABEL.to_string(), self.inner.prefix.clone()),
        ])
    }

    /// The request that creates sandbox `name` from `image`.
    pub fn request(&self, name: &str, image: &str, opts: &CreateOpts) -> CreateSandboxRequest {
        let mut labels = self.labels();
        labels.extend(opts.labels.iter().cloned());
        CreateSandboxRequest {
            name: name.to_string(),
            labels,
            spec: Some(SandboxSpec {
                environment: opts.env.iter().cloned().collect(),
                command: opts.command.clone(),
                template: Some(SandboxTemplate {
                    image: image.to_string(),
                    runtime_class_name: self.inner.driver.runtime_class().to_string(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Sends a create request as is (bad-request cases); a created sandbox is remembered.
    pub async fn create_raw(
        &self,
        request: CreateSandboxRequest,
    ) -> Result<Sandbox, tonic::Status> {
        let name = request.name.clone();
        let response = self.client().create_sandbox(request).await?.into_inner();
        let sandbox = response.sandbox.unwrap_or_default();
        let id = sandbox
            .metadata
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default();
        self.remember(Created { name, id });
        Ok(sandbox)
    }

    fn remember(&self, created: Created) {
        self.inner
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(created);
    }

    /// Everything this case created.
    pub fn created(&self) -> Vec<Created> {
        self.inner
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Creates sandbox `<prefix>-<suffix>` from `fixture` with the lane's environment (unless
    /// `opts` sets the bootstrap variables itself); a refusal fails `requirement`.
    pub async fn create(
        &self,
        suffix: &str,
        fixture: &str,
        opts: CreateOpts,
        requirement: &str,
    ) -> CaseResult<Created> {
        let image = self.image(fixture)?;
        let name = self.name(suffix);
        let mut opts = opts;
        let bootstrap_set = opts.env.iter().any(|(k, _)| {
            k == openshell_proto::env::BEST_EFFORT_FAILURES
                || k == openshell_proto::env::SKIP_BOOTSTRAP
        });
        if !opts.without_lane_env && !bootstrap_set {
            opts.env
                .extend(crate::spec::catalog::fixture_env(self.inner.driver));
        }
        let sandbox = self
            .create_raw(self.request(&name, &image, &opts))
            .await
            .map_err(|s| {
                fail(
                    requirement,
                    format!("CreateSandbox {name} from {image} to succeed"),
                    status_text(&s),
                )
            })?;
        let id = sandbox.metadata.map(|m| m.id).unwrap_or_default();
        if id.is_empty() {
            return Err(fail(
                requirement,
                "CreateSandbox to return the sandbox with its id",
                "an empty id",
            ));
        }
        Ok(Created { name, id })
    }

    /// Creates a `good` sandbox and waits until it is Ready: the setup of many cases. Not reaching
    /// Ready fails OSC-READY-001 (the precondition's own requirement, so one broken rule fails
    /// one id); a refused create fails `requirement`.
    pub async fn create_ready(
        &self,
        suffix: &str,
        requirement: &str,
    ) -> CaseResult<(Created, Snapshot)> {
        let created = self
            .create(suffix, "good", CreateOpts::default(), requirement)
            .await?;
        let last = self.wait_terminal(&created, requirement).await?;
        if last.phase != "Ready" {
            return Err(fail(
                "OSC-READY-001",
                "the good sandbox to reach Ready",
                crate::cases::fixture::observed(&last),
            ));
        }
        Ok((created, last))
    }

    /// Creates a `stale-policy` sandbox and waits for its Error; not reaching Error fails
    /// OSC-ERR-001 (the precondition's own requirement).
    pub async fn create_errored(
        &self,
        suffix: &str,
        requirement: &str,
    ) -> CaseResult<(Created, Snapshot)> {
        let created = self
            .create(suffix, "stale-policy", CreateOpts::default(), requirement)
            .await?;
        let last = self.wait_phase(&created, "Error", "OSC-ERR-001").await?;
        if last.phase != "Error" {
            return Err(fail(
                "OSC-ERR-001",
                "the stale-policy sandbox to reach Error",
                crate::cases::fixture::observed(&last),
            ));
        }
        Ok((created, last))
    }

    /// Watches `created` (status and backend output) until it is Ready or Error or the case
    /// deadline passes; returns the last snapshot, failing `requirement` if it never got there.
    pub async fn wait_terminal(
        &self,
        created: &Created,
        requirement: &str,
    ) -> CaseResult<Snapshot> {
        self.wait_for(
            created,
            requirement,
            "Ready or Error",
            Snapshot::is_terminal,
        )
        .await
    }

    /// Watches `created` until the phase is `phase` (`Ready` stops at Error too, `Error` waits
    /// past Ready, since a main process may end after Ready).
    pub async fn wait_phase(
        &self,
        created: &Created,
        phase: &str,
        requirement: &str,
    ) -> CaseResult<Snapshot> {
        if phase == "Error" {
            self.wait_for(created, requirement, "Error", |s| s.phase == "Error")
                .await
        } else {
            self.wait_terminal(created, requirement).await
        }
    }

    /// Watches a sandbox whose entrypoint is not the supervisor (the rogue probe, `no-session`)
    /// until it is Ready or Error: Ready is a failure of OSC-READY-003, since nothing there opens a
    /// supervisor session.
    pub async fn wait_not_ready(
        &self,
        created: &Created,
        requirement: &str,
    ) -> CaseResult<Snapshot> {
        let last = self.wait_terminal(created, requirement).await?;
        if last.phase == "Ready" || last.ready.as_ref().is_some_and(|c| c.status == "True") {
            let note = "the fixture's entrypoint is not the supervisor, so nothing may open a session: either the \
                        driver ran the supervisor instead of the manifest's `entrypoint`, or the gateway made the \
                        sandbox Ready without a session";
            return Err(crate::check::with_note(
                fail(
                    "OSC-READY-003",
                    "no Ready phase and no Ready=True without a supervisor session",
                    last.to_string(),
                ),
                Some(note.to_string()),
            ));
        }
        Ok(last)
    }

    /// Watches `created` until `until` holds on a snapshot; a deadline or an ended stream first
    /// fails `requirement` with the last snapshot.
    pub async fn wait_for(
        &self,
        created: &Created,
        requirement: &str,
        what: &str,
        until: impl FnMut(&Snapshot) -> bool,
    ) -> CaseResult<Snapshot> {
        let obs = self.watch_until(&created.id, false, until).await?;
        match (obs.last(), &obs.end) {
            (Some(s), crate::observe::End::Matched) => Ok(s),
            (last, end) => Err(fail(
                requirement,
                format!("{} to reach {what}", created.name),
                format!(
                    "{} ({end:?}) before the case deadline",
                    last.map(|s| format!("last event {s}"))
                        .unwrap_or_else(|| "no event".into()),
                ),
            )),
        }
    }

    /// Watches `id` (status and logs) until `until` holds, the stream ends or the deadline passes.
    pub async fn watch_until(
        &self,
        id: &str,
        stop_on_terminal: bool,
        until: impl FnMut(&Snapshot) -> bool,
    ) -> CaseResult<Observation> {
        let opts = WatchOpts {
            stop_on_terminal,
            follow_logs: true,
        };
        watch(
            &mut self.client(),
            id,
            opts,
            self.inner.deadline,
            &self.inner.journal,
            until,
        )
        .await
        .map_err(|s| {
            fail(
                "OSC-API-005",
                "WatchSandbox to open a stream",
                status_text(&s),
            )
        })
    }

    /// `GetSandbox`.
    pub async fn get(&self, name: &str) -> Result<Sandbox, tonic::Status> {
        let response = self
            .client()
            .get_sandbox(GetSandboxRequest {
                name: name.to_string(),
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner().sandbox.unwrap_or_default())
    }

    /// `DeleteSandbox`.
    pub async fn delete(&self, name: &str) -> Result<bool, tonic::Status> {
        let response = self
            .client()
            .delete_sandbox(DeleteSandboxRequest {
                name: name.to_string(),
                ..Default::default()
            })
            .await?;
        Ok(response.into_inner().deleted)
    }

    /// `ListSandboxes` with a label selector.
    pub async fn list(&self, selector: &str) -> Result<Vec<Sandbox>, tonic::Status> {
        let request = ListSandboxesRequest {
            label_selector: selector.to_string(),
            ..Default::default()
        };
        Ok(self
            .client()
            .list_sandboxes(request)
            .await?
            .into_inner()
            .sandboxes)
    }

    /// The backend resources of sandbox `id` (none when the lane has no backend view).
    pub async fn resources(&self, id: &str) -> CaseResult<Vec<Resource>> {
        match self.backend() {
            Some(b) => b
                .of_sandbox(id)
                .await
                .map_err(|e| CaseError::Skipped(format!("backend not readable: {e}"))),
            None => Err(skip("no backend view for this lane")),
        }
    }

    /// Waits (bounded by `limit` and the case deadline, re-checking every 100 ms) until sandbox
    /// `id` has no backend resource left; returns what is left at the end.
    pub async fn wait_resources_gone(
        &self,
        id: &str,
        limit: Duration,
    ) -> CaseResult<Vec<Resource>> {
        // Leave the case a moment after the wait to make its own checks before its deadline.
        let margin = Duration::from_secs(3);
        let latest = self
            .inner
            .deadline
            .checked_sub(margin)
            .unwrap_or(self.inner.deadline);
        let end = (Instant::now() + limit).min(latest);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let left = self.resources(id).await?;
            if left.is_empty() || Instant::now() >= end {
                return Ok(left);
            }
        }
    }
}

/// A status as `Code: message`.
pub fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}
