//! Running the selected cases of one lane against one gateway.
//!
//! [`run`] checks the lane's prerequisites, starts (or connects to) the gateway, computes the
//! fixture images, runs the cases in parallel (bounded), each with its own names, deadline and
//! journal, deletes what each case created and audits its backend resources, then audits the
//! whole run by its `openshell.run-id` label, applies the expectations and writes the reports.
//! A test can call it with a given gateway binary and read which requirement ids failed
//! ([`RunReport::failed_requirements`]).

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use openshell_fixtures::Catalog;

use crate::check::CaseError;
use crate::driver::Driver;
use crate::expectations::{Expectations, Expected};
use crate::gateway::{self, Gateway};
use crate::harness::Harness;
use crate::images::{self, Images};
use crate::leaks::{Backend, Resource};
use crate::progress::Progress;
use crate::spec::{Body, Case};

pub use crate::report::{CaseReport, Counts, Outcome, RunReport};

/// How long the per-case and the run audits wait for a backend to remove resources.
const AUDIT_LIMIT: Duration = Duration::from_secs(30);

/// Errors that keep a run from starting (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `vm`, `k3s`.
    #[error("driver {0} is not available in this build")]
    NotAvailable(Driver),
    /// A required lane's prerequisites are missing.
    #[error("required lane {driver} cannot run: {reason}")]
    LaneMissing { driver: Driver, reason: String },
    /// The gateway could not be started or reached.
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    /// The fixture manifest could not be read.
    #[error(transparent)]
    Fixtures(#[from] openshell_fixtures::FixtureError),
    /// The expectations file is invalid.
    #[error(transparent)]
    Expectations(#[from] crate::expectations::ExpectationsError),
    /// Image references could not be computed.
    #[error(transparent)]
    Images(#[from] images::ImagesError),
    /// The filter selected nothing.
    #[error(
        "no case of lane {driver} matches the filter {filter:?} (see `openshell-conformance list`)"
    )]
    NoCases { driver: Driver, filter: String },
    /// The reports could not be written.
    #[error("writing reports to {path}: {source}")]
    Report {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The lane.
    pub driver: Driver,
    /// An endpoint to test instead of starting the reference gateway.
    pub gateway_url: Option<String>,
    /// The gateway binary to start (default: [`gateway::locate_binary`]).
    pub gateway_bin: Option<PathBuf>,
    /// `--filter`.
    pub filter: Option<String>,
    /// `--expectations`.
    pub expectations: Option<PathBuf>,
    /// `--report-dir`.
    pub report_dir: Option<PathBuf>,
    /// Lanes whose missing prerequisites are an error.
    pub require_lanes: Vec<Driver>,
    /// Cases run at once.
    pub parallel: usize,
    /// Per-case timeout (default: the lane's).
    pub case_timeout: Option<Duration>,
    /// Print a line per case.
    pub verbose: bool,
}

impl RunConfig {
    /// Defaults for a lane.
    pub fn new(driver: Driver) -> RunConfig {
        RunConfig {
            driver,
            gateway_url: None,
            gateway_bin: None,
            filter: None,
            expectations: None,
            report_dir: None,
            require_lanes: Vec::new(),
            parallel: 4,
            case_timeout: None,
            verbose: false,
        }
    }
}

/// Whether this machine can run `driver`'s cases; `Err` names what is missing.
pub async fn prerequisites(
    driver: Driver,
    external_gateway: bool,
    gateway_bin: Option<&std::path::Path>,
) -> Result<(), String> {
    if !driver.available() {
        return Err(format!("driver {driver} is not available in this build"));
    }
    if !external_gateway {
        let bin = gateway::locate_binary(gateway_bin);
        if !bin.exists() {
            return Err(format!(
                "gateway binary {} not found (cargo build -p openshell-gateway)",
                bin.display()
            ));
        }
        let inputs = images::default_inputs(&bin);
        for p in [&inputs.supervisor, &inputs.probe, &inputs.busybox] {
            if !p.exists() {
                return Err(format!("{} not found (cargo build -p openshell-supervisor -p openshell-probe; busybox-static)", p.display()));
            }
        }
    }
    match driver {
        Driver::Process => {
            // SAFETY: geteuid(2) has no preconditions and cannot fail.
            let euid = unsafe { libc::geteuid() };
            if euid != 0 && !external_gateway {
                return Err(format!(
                    "the process driver needs root (it chroots and creates mount and PID \
                     namespaces) and this runs as uid {euid}: run the command as root (as \
                     written, without sudo, in a root shell), or use --driver docker after \
                     `bash ci/setup-docker.sh`"
                ));
            }
            Ok(())
        }
        Driver::Docker | Driver::DockerRunsc => {
            let docker = openshell_fixtures::docker::connect(None).map_err(|e| e.to_string())?;
            let info = docker.info().await.map_err(|e| {
                format!("docker engine not reachable: {e} (bash ci/setup-docker.sh)")
            })?;
            if driver == Driver::DockerRunsc
                && !info.runtimes.unwrap_or_default().contains_key("runsc")
            {
                return Err(
                    "the docker engine has no `runsc` runtime (bash ci/setup-docker.sh)".into(),
                );
            }
            Ok(())
        }
        Driver::Vm | Driver::K3s => Err(format!("driver {driver} is not available in this build")),
    }
}

/// The cases of `driver` that `filter` selects.
pub fn select(cases: Vec<Case>, driver: Driver, filter: Option<&str>) -> Vec<Case> {
    cases
        .into_iter()
        .filter(|c| c.applies_to(driver))
        .filter(|c| filter.is_none_or(|f| crate::spec::catalog::matches(c, f)))
        .collect()
}

/// Runs one lane.
pub async fn run(config: &RunConfig) -> Result<RunReport, RunError> {
    let driver = config.driver;
    if !driver.available() {
        return Err(RunError::NotAvailable(driver));
    }
    let fixtures = Catalog::load_default()?;
    let all_cases = crate::spec::catalog::all(&fixtures);
    let known: Vec<String> = all_cases
        .iter()
        .map(|c| c.id.clone())
        .chain(["leak-audit".to_string()])
        .collect();
    let expectations = match &config.expectations {
        Some(path) => Expectations::load(path, &known)?,
        None => Expectations::default(),
    };
    let cases = select(all_cases, driver, config.filter.as_deref());
    if cases.is_empty() {
        return Err(RunError::NoCases {
            driver,
            filter: config.filter.clone().unwrap_or_default(),
        });
    }
    let run_id = format!("osc-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let external = config.gateway_url.is_some();
    let mut report = RunReport::new(driver, &run_id);
    if let Err(reason) = prerequisites(driver, external, config.gateway_bin.as_deref()).await {
        if config.require_lanes.contains(&driver) {
            return Err(RunError::LaneMissing { driver, reason });
        }
        // Said once, up front: otherwise the user sees only a table of skips.
        eprintln!("lane {driver} cannot run here, every case is skipped: {reason}");
        report.gateway = "(not started)".into();
        for case in &cases {
            report
                .cases
                .push(CaseReport::skipped(case, driver, &reason));
        }
        finish(config, &mut report, &expectations)?;
        return Ok(report);
    }

    let bin = gateway::locate_binary(config.gateway_bin.as_deref());
    let mut gw = match &config.gateway_url {
        Some(url) => Gateway::external(url),
        None => Gateway::start(&bin, driver).await?,
    };
    report.gateway = gw.description.clone();
    let client = gw.connect().await?;
    let inputs_base = if external {
        gateway::sibling("openshell-gateway")
    } else {
        bin.clone()
    };
    let mut images = Images::compute(&fixtures, &images::default_inputs(&inputs_base))?;
    let backend = match driver {
        Driver::Process => Some(Backend::Process {
            state_dir: gw.state_dir.clone(),
        }),
        _ => openshell_fixtures::docker::connect(None)
            .ok()
            .map(Backend::Docker),
    };
    if let (Some(Backend::Docker(docker)), None) = (&backend, images.unavailable()) {
        let inputs = images::default_inputs(&inputs_base);
        if let Err(e) = openshell_fixtures::docker::build_all(&fixtures, &inputs, docker).await {
            images = Images::from_map(Default::default());
            report
                .notes
                .push(format!("building fixture images failed: {e}"));
        }
    }
    let images = Arc::new(images);
    let timeout = config.case_timeout.unwrap_or_else(|| driver.case_timeout());
    let total = cases.len();
    let started = Instant::now();
    let mut stream = futures::stream::iter(cases.into_iter().enumerate().map(|(index, case)| {
        let harness = Harness::new(
            client.clone(),
            &run_id,
            &format!("{}-{index:02}", &run_id[4..12]),
            &case.id,
            driver,
            images.clone(),
            timeout,
            backend.clone(),
        );
        let skip = expectations
            .get(&case.id)
            .filter(|e| e.result == Expected::Skipped)
            .map(|e| e.reason.clone());
        async move {
            match skip {
                Some(reason) => {
                    CaseReport::skipped(&case, driver, &format!("expectations file: {reason}"))
                }
                None => run_case(case, harness, timeout).await,
            }
        }
    }))
    .buffer_unordered(config.parallel.max(1));
    let mut progress = Progress::new(total, config.verbose);
    while let Some(case_report) = stream.next().await {
        progress.case(&case_report, config.verbose);
        report.cases.push(case_report);
    }
    progress.finish();
    drop(stream);
    report.cases.sort_by(|a, b| a.id.cmp(&b.id));
    if let Some(backend) = &backend {
        let audit = audit_run(&client, backend, &run_id).await;
        report.leaks = audit.clone();
        if !audit.is_empty() || config.filter.is_none() {
            let case = CaseReport::leak_audit(driver, &audit);
            if config.verbose {
                let text = crate::progress::line(total + 1, total + 1, &case);
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
            }
            report.cases.push(case);
        }
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    gw.stop().await;
    finish(config, &mut report, &expectations)?;
    Ok(report)
}

fn finish(
    config: &RunConfig,
    report: &mut RunReport,
    expectations: &Expectations,
) -> Result<(), RunError> {
    for case in &mut report.cases {
        if let Some(entry) = expectations.get(&case.id) {
            case.apply_expectation(entry);
        }
    }
    if let Some(dir) = &config.report_dir {
        crate::report::write_all(report, dir).map_err(|source| RunError::Report {
            path: dir.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Runs one case: body under its deadline, then delete and per-case leak audit.
pub async fn run_case(case: Case, harness: Harness, timeout: Duration) -> CaseReport {
    let started = Instant::now();
    let body = match case.body.clone() {
        Body::Fixture(fixture) => Box::pin(crate::cases::fixture::run(harness.clone(), *fixture)),
        Body::Fn(f) => f(harness.clone()),
    };
    let primary = case.requirements.first().cloned().unwrap_or_default();
    let mut result = match tokio::time::timeout(timeout, body).await {
        Ok(r) => r,
        Err(_) => Err(crate::check::fail(
            &primary,
            format!("the case to finish within its {timeout:?} deadline"),
            "the deadline passed; the status history below is what the watch stream showed",
        )),
    };
    // Cleanup and per-case audit: whatever the case created must go.
    let created = harness.created();
    // Before deleting: on failure, the backend output tail of every sandbox of the case, as the
    // gateway keeps it (WatchSandbox follow_logs), for the diagnostics folder.
    let tail = match &result {
        Err(CaseError::Failed(_)) => log_tail(&harness, &created).await,
        _ => Vec::new(),
    };
    for c in &created {
        let _ = harness.delete(&c.name).await;
    }
    if let Some(backend) = harness.backend() {
        let mut left: Vec<Resource> = Vec::new();
        let end = Instant::now() + AUDIT_LIMIT;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tick.tick().await;
            left.clear();
            for c in created.iter().filter(|c| !c.id.is_empty()) {
                left.extend(backend.of_sandbox(&c.id).await.unwrap_or_default());
            }
            if left.is_empty() || Instant::now() >= end {
                break;
            }
        }
        if !left.is_empty() && result.is_ok() {
            result = Err(crate::check::fail(
                "OSC-CLEAN-002",
                format!("no backend resource of the case's sandboxes within {AUDIT_LIMIT:?} of their deletion"),
                left.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            ));
        }
    }
    let mut report = CaseReport::from_case(&case, harness.driver(), started.elapsed());
    report.sandboxes = created
        .iter()
        .map(|c| format!("{} ({})", c.name, c.id))
        .collect();
    match result {
        Ok(()) => report.result = Outcome::Passed,
        Err(CaseError::Skipped(why)) => {
            report.result = Outcome::Skipped;
            report.message = why;
        }
        Err(CaseError::Failed(mut failure)) => {
            failure.history = harness.journal().history();
            failure.logs = if tail.is_empty() {
                harness.journal().logs()
            } else {
                tail
            };
            report.result = Outcome::Failed;
            report.requirement = failure.requirement.clone();
            report.message = failure.to_string();
            report.failure = Some(*failure);
        }
    }
    report
}

/// The backend output tail of each sandbox (up to 200 lines each, 3 s per sandbox).
async fn log_tail(harness: &Harness, created: &[crate::harness::Created]) -> Vec<String> {
    use crate::observe::{watch, Journal, WatchOpts};
    let mut lines = Vec::new();
    for c in created.iter().filter(|c| !c.id.is_empty()) {
        let journal = Journal::default();
        let deadline = Instant::now() + Duration::from_secs(3);
        let opts = WatchOpts {
            stop_on_terminal: true,
            follow_logs: true,
        };
        let _ = watch(
            &mut harness.client(),
            &c.id,
            opts,
            deadline,
            &journal,
            |_| false,
        )
        .await;
        let logs = journal.logs();
        if !logs.is_empty() {
            lines.push(format!("==> {} ({})", c.name, c.id));
            lines.extend(logs);
        }
    }
    lines
}

/// Deletes whatever is still listed with the run label, then waits (bounded) for the backend to
/// hold nothing labelled with the run; returns what is left.
async fn audit_run(
    client: &openshell_proto::v1::open_shell_client::OpenShellClient<tonic::transport::Channel>,
    backend: &Backend,
    run_id: &str,
) -> Vec<Resource> {
    use openshell_proto::v1::{DeleteSandboxRequest, ListSandboxesRequest};
    let mut client = client.clone();
    let selector = format!("{}={run_id}", openshell_proto::labels::RUN_ID);
    let listed = client
        .list_sandboxes(ListSandboxesRequest {
            label_selector: selector,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().sandboxes)
        .unwrap_or_default();
    let ids: Vec<String> = listed
        .iter()
        .filter_map(|s| s.metadata.as_ref().map(|m| m.id.clone()))
        .collect();
    for s in &listed {
        let name = s
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let _ = client
            .delete_sandbox(DeleteSandboxRequest {
                name,
                ..Default::default()
            })
            .await;
    }
    let end = Instant::now() + AUDIT_LIMIT;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tick.tick().await;
        let left = backend.of_run(run_id, &ids).await.unwrap_or_default();
        if left.is_empty() || Instant::now() >= end {
            return left;
        }
    }
}

impl RunReport {
    /// The requirement ids of failed (and unexpectedly passed) cases.
    pub fn failed_requirements(&self) -> BTreeSet<String> {
        self.cases
            .iter()
            .filter(|c| matches!(c.result, Outcome::Failed | Outcome::Xpass))
            .map(|c| c.requirement.clone())
            .collect()
    }

    /// 0: everything passed or was expected; 1: a failure or an unexpected pass; 2: no case ran.
    pub fn exit_code(&self) -> i32 {
        let counts = self.summary();
        if counts.failed > 0 || counts.xpass > 0 {
            1
        } else if counts.passed + counts.xfail == 0 {
            2
        } else {
            0
        }
    }
}
