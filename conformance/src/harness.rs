//! What a case body gets: a gateway client, names unique to the case, the run id, the fixture
//! image references, the lane, the case deadline, the journal of everything watched, and the
//! backend view for cleanup checks. Every sandbox it creates is labelled with the run id and the
//! case, and is deleted (then audited) by the runner after the body, whatever the outcome.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openshell_fixtures::{Catalog, Fixture};
use openshell_proto::labels;
use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    CreateSandboxRequest, DeleteSandboxRequest, GetSandboxRequest, ListSandboxesRequest, Sandbox,
    SandboxSpec, SandboxTemplate,
};
use tonic::transport::Channel;

use crate::check::{fail, skip, CaseResult};
use crate::images::Images;
use crate::leaks::{Backend, Resource};
use crate::observe::{watch, Journal, Observation, Snapshot, WatchOpts};
use crate::report::Latency;
use crate::spec::Req;
use crate::Driver;
use openshell_proto::v1::SandboxPhase as Phase;
use openshell_proto::ReadyReason;

/// The longest sandbox name the suite generates (upstream OpenShell caps names at 19).
pub const MAX_NAME: usize = 19;
/// The longest suffix a case gives [`Harness::name`].
const MAX_SUFFIX: usize = MAX_NAME - 9;

/// The label naming the case that created a sandbox.
pub const CASE_LABEL: &str = "openshell.conformance/case";

/// A sandbox the case created.
#[derive(Debug, Clone)]
pub struct Created {
    /// Its name.
    pub name: String,
    /// Its id.
    pub id: String,
    /// When the `CreateSandbox` request was sent.
    pub requested_at: Instant,
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
    latencies: Mutex<BTreeMap<Latency, u64>>,
    fixtures: Arc<Catalog>,
    responses: Mutex<Vec<Sandbox>>,
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
    /// Send no `spec.command`, so the image's own command runs (OSC-API-010). Otherwise an empty
    /// `command` becomes the fixture's manifest command: the cases never rely on an image's CMD
    /// reaching the main process (an implementation may replace it, as upstream does).
    pub image_command: bool,
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
        fixtures: Arc<Catalog>,
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
                latencies: Mutex::new(BTreeMap::new()),
                fixtures,
                responses: Mutex::new(Vec::new()),
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

    /// The fixture `name`'s manifest entry (a case that creates it with other settings checks
    /// the same outcome); an unknown name fails OSC-API-009.
    pub fn fixture(&self, name: &str) -> CaseResult<Fixture> {
        self.inner.fixtures.get(name).cloned().map_err(|e| {
            fail(
                Req::API_009,
                format!("fixture {name} in the manifest"),
                e.to_string(),
            )
        })
    }

    /// The backend view, if the lane has one.
    pub fn backend(&self) -> Option<&Backend> {
        self.inner.backend.as_ref()
    }

    /// A sandbox name unique to this case and run: `<prefix>-<suffix>`, the 8-character prefix
    /// of the run and case plus at most 10 characters of `suffix`, so it fits in 19 characters (a
    /// DNS-1123 label short enough for implementations that cap names, as upstream does at 19).
    pub fn name(&self, suffix: &str) -> String {
        let suffix: String = suffix.chars().take(MAX_SUFFIX).collect();
        let name = format!("{}-{suffix}", self.inner.prefix);
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
        let command = match (&opts.command, opts.image_command) {
            (_, true) => Vec::new(),
            (c, false) if !c.is_empty() => c.clone(),
            _ => self
                .inner
                .images
                .fixture_of(image)
                .and_then(|f| self.inner.fixtures.get(f).ok())
                .map(|f| f.command.clone())
                .unwrap_or_default(),
        };
        CreateSandboxRequest {
            name: name.to_string(),
            labels,
            spec: Some(SandboxSpec {
                environment: opts.env.iter().cloned().collect(),
                command,
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
        let requested_at = Instant::now();
        let response = self.client().create_sandbox(request).await?.into_inner();
        let sandbox = response.sandbox.unwrap_or_default();
        self.inner
            .responses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(sandbox.clone());
        let id = sandbox
            .metadata
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default();
        self.remember(Created {
            name,
            id,
            requested_at,
        });
        Ok(sandbox)
    }

    fn remember(&self, created: Created) {
        self.inner
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(created);
    }

    /// The `CreateSandbox` responses this case got, in order (a read API like any other).
    pub fn create_responses(&self) -> Vec<Sandbox> {
        self.inner
            .responses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
        requirement: Req,
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
        let requested_at = self
            .created()
            .iter()
            .rev()
            .find(|c| c.name == name)
            .map_or_else(Instant::now, |c| c.requested_at);
        Ok(Created {
            name,
            id,
            requested_at,
        })
    }

    /// Creates a `good` sandbox and waits until it is Ready: the setup of many cases. Not reaching
    /// Ready fails OSC-READY-001 (the precondition's own requirement, so one broken rule fails
    /// one id); a refused create fails `requirement`.
    pub async fn create_ready(
        &self,
        suffix: &str,
        requirement: Req,
    ) -> CaseResult<(Created, Snapshot)> {
        let created = self
            .create(suffix, "good", CreateOpts::default(), requirement)
            .await?;
        let last = self
            .wait_phase(&created, Phase::Ready, Req::READY_001)
            .await?;
        if !last.is(Phase::Ready, ReadyReason::SupervisorConnected) {
            return Err(fail(
                Req::READY_001,
                "the good sandbox to reach Ready / SupervisorConnected",
                crate::cases::fixture::observed(&last),
            ));
        }
        Ok((created, last))
    }

    /// Creates a `stale-policy` sandbox and waits for its Error, which must be the one the
    /// fixture stands for (`SupervisorError`, a `policy: …` message): a different Error (a crash,
    /// an exit) is not a startup error report, and fails OSC-ERR-001, the precondition's own
    /// requirement.
    pub async fn create_errored(
        &self,
        suffix: &str,
        requirement: Req,
    ) -> CaseResult<(Created, Snapshot)> {
        let created = self
            .create(suffix, "stale-policy", CreateOpts::default(), requirement)
            .await?;
        let last = self.wait_error(&created, Req::ERR_001).await?;
        if !last.is(Phase::Error, ReadyReason::SupervisorError)
            || !last.message().starts_with("policy: ")
        {
            return Err(fail(
                Req::ERR_001,
                "the stale-policy sandbox to reach Error / SupervisorError with a `policy: …` message",
                crate::cases::fixture::observed(&last),
            ));
        }
        Ok((created, last))
    }

    /// Watches `created` (status and backend output) until it is Ready or Error or the case
    /// deadline passes; returns the last snapshot, failing `requirement` if it never got there.
    pub async fn wait_terminal(&self, created: &Created, requirement: Req) -> CaseResult<Snapshot> {
        self.wait_for(
            created,
            requirement,
            "Ready or Error",
            Snapshot::is_terminal,
        )
        .await
    }

    /// Watches `created` until its phase is `phase`, or Error (which no later event leaves, so
    /// waiting longer for another phase would only wait for the deadline). Waiting for Error
    /// therefore waits past Ready: a main process may end after Ready.
    pub async fn wait_phase(
        &self,
        created: &Created,
        phase: Phase,
        requirement: Req,
    ) -> CaseResult<Snapshot> {
        let what = format!("phase {}", crate::observe::phase_name(phase as i32));
        self.wait_for(created, requirement, &what, |s| {
            s.phase == phase || s.phase == Phase::Error
        })
        .await
    }

    /// [`Harness::wait_phase`] for Error.
    pub async fn wait_error(&self, created: &Created, requirement: Req) -> CaseResult<Snapshot> {
        self.wait_phase(created, Phase::Error, requirement).await
    }

    /// Watches a sandbox whose entrypoint is not the supervisor (the rogue probe, `no-session`)
    /// until it is Ready or Error: a Ready phase or `Ready=True` in any event of its history is a
    /// failure of OSC-READY-003, since nothing there opens a supervisor session.
    pub async fn wait_not_ready(
        &self,
        created: &Created,
        requirement: Req,
    ) -> CaseResult<Snapshot> {
        let last = self
            .wait_for(created, requirement, "Ready or Error", |s| {
                s.is_terminal() || s.ready_true()
            })
            .await?;
        let ready = self
            .journal()
            .history()
            .into_iter()
            .filter(|s| s.name == created.name)
            .find(|s| s.phase == Phase::Ready || s.ready_true());
        if let Some(ready) = ready {
            let note = "the fixture's entrypoint is not the supervisor, so nothing may open a session: either the \
                        driver ran the supervisor instead of the manifest's `entrypoint`, or the gateway made the \
                        sandbox Ready without a session";
            return Err(crate::check::with_note(
                fail(
                    Req::READY_003,
                    "no Ready phase and no Ready=True without a supervisor session",
                    ready.to_string(),
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
        requirement: Req,
        what: &str,
        until: impl FnMut(&Snapshot) -> bool,
    ) -> CaseResult<Snapshot> {
        let obs = self.watch_until(&created.id, false, until).await?;
        // The first Ready and the first Error this watch saw, as create latencies (the first
        // sandbox of the case that showed them).
        for (phase, which) in [
            (Phase::Ready, Latency::CreateToReady),
            (Phase::Error, Latency::CreateToError),
        ] {
            if let Some(at) = obs.first_in(phase) {
                if !self.latencies().contains_key(&which) {
                    self.record_latency(which, at.saturating_duration_since(created.requested_at));
                }
            }
        }
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
                Req::API_005,
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

    /// The backend resources of sandbox `id`. A backend the suite cannot read (or a lane without
    /// a backend view) fails `requirement`: what the suite cannot see is never a pass.
    pub async fn resources(&self, id: &str, requirement: Req) -> CaseResult<Vec<Resource>> {
        match self.backend() {
            Some(b) => b.of_sandbox(id).await.map_err(|e| {
                fail(
                    requirement,
                    format!("the backend resources of {id} to be listable"),
                    format!("the backend could not be read: {e}"),
                )
            }),
            None => Err(fail(
                requirement,
                format!("a view of lane {}'s backend resources", self.driver()),
                "this run has no backend view, so it cannot see what is left",
            )),
        }
    }

    /// Waits (bounded by `limit` and the case deadline, re-checking every 100 ms) until sandbox
    /// `id` has no backend resource left; returns what is left at the end and how long it took
    /// (from the call) until nothing was.
    pub async fn wait_resources_gone(
        &self,
        id: &str,
        limit: Duration,
        requirement: Req,
    ) -> CaseResult<(Vec<Resource>, Duration)> {
        // Leave the case a moment after the wait to make its own checks before its deadline.
        let margin = Duration::from_secs(3);
        let latest = self
            .inner
            .deadline
            .checked_sub(margin)
            .unwrap_or(self.inner.deadline);
        let started = Instant::now();
        let end = (started + limit).min(latest);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            let left = self.resources(id, requirement).await?;
            if left.is_empty() || Instant::now() >= end {
                return Ok((left, started.elapsed()));
            }
        }
    }

    /// Records a latency the case measured (reported with the case, see [`Latency`]).
    pub fn record_latency(&self, which: Latency, took: Duration) {
        self.inner
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(which, took.as_millis() as u64);
    }

    /// The latencies the case recorded.
    pub fn latencies(&self) -> BTreeMap<Latency, u64> {
        self.inner
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// A watch running in the background from just after a create, recording everything a sandbox
/// goes through while the case does other things (see [`Harness::follow`]).
pub struct Follower {
    journal: Journal,
    task: tokio::task::JoinHandle<Result<crate::observe::Observation, tonic::Status>>,
}

/// What a [`Follower`] saw.
#[derive(Debug, Clone)]
pub struct Followed {
    /// Every snapshot, in order.
    pub history: Vec<Snapshot>,
    /// Why the watch stopped before it was asked to (it failed to open, or the stream ended).
    pub ended_early: Option<String>,
}

impl Follower {
    /// Stops the watch and returns what it saw.
    pub async fn finish(self) -> Followed {
        let ended_early = if self.task.is_finished() {
            match self.task.await {
                Ok(Err(status)) => Some(format!("it failed to open: {}", status_text(&status))),
                Ok(Ok(obs)) => Some(format!("it ended early ({:?})", obs.end)),
                Err(e) => Some(format!("it stopped: {e}")),
            }
        } else {
            self.task.abort();
            None
        };
        Followed {
            history: self.journal.history(),
            ended_early,
        }
    }
}

impl Harness {
    /// Starts a background watch of `created` until the case deadline or [`Follower::finish`].
    pub fn follow(&self, created: &Created) -> Follower {
        let journal = Journal::default();
        let (mut client, id, recorder, deadline) = (
            self.client(),
            created.id.clone(),
            journal.clone(),
            self.deadline(),
        );
        let task = tokio::spawn(async move {
            crate::observe::watch(
                &mut client,
                &id,
                WatchOpts::default(),
                deadline,
                &recorder,
                |_| false,
            )
            .await
        });
        Follower { journal, task }
    }
}

/// A status as `Code: message`.
pub fn status_text(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::CaseError;

    fn harness(backend: Option<Backend>) -> Harness {
        let channel = tonic::transport::Channel::from_static("http://127.0.0.1:9").connect_lazy();
        Harness::new(
            OpenShellClient::new(channel),
            "osc-test",
            "test-00",
            "case",
            Driver::Docker,
            Arc::new(Images::from_map(Default::default())),
            Duration::from_secs(5),
            backend,
            Arc::new(Catalog::load_default().unwrap()),
        )
    }

    #[tokio::test]
    async fn a_backend_that_cannot_be_read_fails_the_requirement_instead_of_skipping() {
        // An engine address nothing answers on (loopback, discard port).
        let docker = bollard::Docker::connect_with_http(
            "http://127.0.0.1:9",
            5,
            bollard::API_DEFAULT_VERSION,
        )
        .unwrap();
        let backend = Backend::Docker {
            docker,
            keys: Default::default(),
            run_started: 0,
        };
        let err = harness(Some(backend))
            .resources("sb", Req::CLEAN_001)
            .await
            .unwrap_err();
        let CaseError::Failed(f) = err else {
            panic!("expected a failure, got {err}")
        };
        assert_eq!(f.requirement, Req::CLEAN_001);
        assert!(f.observed.contains("could not be read"), "{}", f.observed);
        let blind = harness(None)
            .resources("sb", Req::CLEAN_002)
            .await
            .unwrap_err();
        assert!(matches!(blind, CaseError::Failed(_)), "{blind}");
    }
}
