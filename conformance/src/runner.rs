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
use crate::features::Feature;
use crate::gateway::{self, Gateway};
use crate::harness::Harness;
use crate::images::{self, Images};
use crate::leaks::{Backend, LabelKeys, Resource};
use crate::progress::Progress;
use crate::spec::{Body, Case, Req};

pub use crate::report::{CaseReport, Counts, Outcome, RunReport};

/// How long the per-case and the run audits wait for a backend to remove resources.
const AUDIT_LIMIT: Duration = Duration::from_secs(30);

/// Errors that keep a run from starting (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// `vm`.
    #[error("driver {0} is not available in this build")]
    NotAvailable(Driver),
    /// The k3s lane's cluster could not be booted or reached.
    #[error("k3s lane: {0}")]
    Kube(String),
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
    /// The `k3s` lane's cluster: `--kubeconfig`, `--namespace`, `--host-network`.
    pub kube: crate::k3s::KubeOptions,
    /// Extra environment for a reference gateway the run starts (e.g. `OPENSHELL_MUTANT`).
    pub gateway_env: Vec<(String, String)>,
    /// The features the implementation declares (`--features`); `None`: the expectations
    /// file's declaration, else every feature.
    pub features: Option<Vec<Feature>>,
    /// A vendor's supervisor, baked into the fixture images (`images --supervisor`) and handed
    /// to a reference gateway the run starts.
    pub supervisor: Option<PathBuf>,
    /// The label keys of the backend's resources.
    pub label_keys: LabelKeys,
    /// A vendor's runtime tree laid over every image (`images --extra-tree`), so the references
    /// match; handed to a reference gateway the run starts (process-lane roots).
    pub extra_tree: Option<PathBuf>,
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
            kube: crate::k3s::KubeOptions::from_env(),
            gateway_env: Vec::new(),
            features: None,
            supervisor: None,
            label_keys: LabelKeys::default(),
            extra_tree: None,
        }
    }
}

/// Whether this machine can run `driver`'s cases; `Err` names what is missing. The k3s lane's
/// cluster comes from `KUBECONFIG` or a local k3s image (see [`prerequisites_with`]).
pub async fn prerequisites(
    driver: Driver,
    external_gateway: bool,
    gateway_bin: Option<&std::path::Path>,
) -> Result<(), String> {
    let kube = crate::k3s::KubeOptions::from_env();
    prerequisites_with(driver, external_gateway, gateway_bin, &kube).await
}

/// [`prerequisites`] with the k3s lane's cluster options of the run.
pub async fn prerequisites_with(
    driver: Driver,
    external_gateway: bool,
    gateway_bin: Option<&std::path::Path>,
    kube: &crate::k3s::KubeOptions,
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
            let docker = openshell_images::docker::connect(None).map_err(|e| e.to_string())?;
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
        Driver::K3s => crate::k3s::check(kube, external_gateway).await.map(drop),
        Driver::Vm => {
            // The VM lane boots the Docker lanes' images, read from the local engine.
            let docker = openshell_images::docker::connect(None).map_err(|e| e.to_string())?;
            docker.ping().await.map_err(|e| {
                format!("docker engine not reachable (the VM lane boots its images): {e} (bash ci/setup-docker.sh)")
            })?;
            if !external_gateway {
                vm_host_prerequisites(&gateway::locate_binary(gateway_bin))?;
            }
            Ok(())
        }
    }
}

/// What the reference gateway's VM driver needs on this host: QEMU, the kernel and modules in
/// the cache folder of `ci/setup-vm.sh` (`OPENSHELL_VM_CACHE`), the guest init beside the gateway.
fn vm_host_prerequisites(gateway_bin: &std::path::Path) -> Result<(), String> {
    let setup = "(bash ci/setup-vm.sh)";
    let on_path = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .any(|dir| dir.join("qemu-system-x86_64").is_file());
    if !on_path {
        return Err(format!("qemu-system-x86_64 is not installed {setup}"));
    }
    let cache = std::env::var_os("OPENSHELL_VM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/openshell/vm"));
    for part in ["vmlinuz", "modules"] {
        if !cache.join(part).exists() {
            return Err(format!(
                "no guest kernel: {} is missing {setup}",
                cache.join(part).display()
            ));
        }
    }
    let init = gateway_bin.with_file_name("openshell-vm-init");
    if !init.is_file() {
        return Err(format!(
            "{} not found (cargo build -p openshell-driver-vm)",
            init.display()
        ));
    }
    Ok(())
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
    let declared: Vec<Feature> = config
        .features
        .clone()
        .or_else(|| expectations.features().map(<[Feature]>::to_vec))
        .unwrap_or_else(|| Feature::ALL.to_vec());
    report.features = declared.clone();
    let gateway_bin = config.gateway_bin.as_deref();
    if let Err(reason) = prerequisites_with(driver, external, gateway_bin, &config.kube).await {
        if config.require_lanes.contains(&driver) {
            return Err(RunError::LaneMissing { driver, reason });
        }
        // Said once, up front: otherwise the user sees only a table of skips.
        eprintln!("lane {driver} cannot run here, every case is skipped: {reason}");
        report.gateway = "(not started)".into();
        if config.verbose {
            let line = format!("SKIPPED lane {driver}: {reason}\n");
            let _ = std::io::stdout().lock().write_all(line.as_bytes());
        }
        report
            .notes
            .push(format!("lane {driver} skipped: {reason}"));
        for case in &cases {
            report
                .cases
                .push(CaseReport::skipped(case, driver, &reason));
        }
        finish(config, &mut report, &expectations)?;
        return Ok(report);
    }

    let bin = gateway::locate_binary(config.gateway_bin.as_deref());
    let inputs_base = if external {
        gateway::sibling("openshell-gateway")
    } else {
        bin.clone()
    };
    let mut inputs = images::default_inputs(&inputs_base);
    if let Some(s) = &config.supervisor {
        inputs.supervisor = s.clone();
    }
    if config.extra_tree.is_some() {
        inputs.extra_tree = config.extra_tree.clone();
    }
    let mut images = Images::compute(&fixtures, &inputs)?;
    let run_started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 - 1)
        .unwrap_or(0);
    // The k3s lane's cluster first: the gateway's driver needs its kubeconfig.
    let lane = match driver {
        Driver::K3s => Some(k3s_lane(config, external, &fixtures, &inputs_base, &images).await?),
        _ => None,
    };
    let mut gateway_args: Vec<String> = lane.as_ref().map(|l| l.gateway_args()).unwrap_or_default();
    if let Some(s) = &config.supervisor {
        gateway_args.extend(["--supervisor".to_string(), s.display().to_string()]);
    }
    if let Some(tree) = &inputs.extra_tree {
        gateway_args.extend(["--extra-tree".to_string(), tree.display().to_string()]);
    }
    let mut gw = match &config.gateway_url {
        Some(url) => Gateway::external(url),
        None => Gateway::start_with(&bin, driver, &config.gateway_env, &gateway_args).await?,
    };
    report.gateway = gw.description.clone();
    if let Some(lane) = &lane {
        report.notes.push(format!("cluster: {}", lane.description));
    }
    let client = gw.connect().await?;
    // Every lane but the process one runs images from the local Docker engine.
    let docker = match driver {
        Driver::Process => None,
        _ => openshell_images::docker::connect(None).ok(),
    };
    let backend = match driver {
        Driver::Process => Some(Backend::Process {
            state_dir: gw.state_dir.clone(),
        }),
        Driver::K3s => lane.as_ref().map(|l| Backend::Kube(l.audit())),
        Driver::Vm => Some(Backend::Vm {
            state_dir: gw.state_dir.clone(),
        }),
        _ => docker.clone().map(|docker| Backend::Docker {
            docker,
            keys: config.label_keys.clone(),
            run_started,
        }),
    };
    if let (Some(docker), None) = (&docker, images.unavailable()) {
        if external {
            // A vendor's gateway runs the images it was given: build nothing (that would bake in
            // this suite's supervisor), but say when the references match no built image.
            let mut missing = Vec::new();
            for (name, reference) in images.all() {
                if !openshell_images::docker::image_exists(docker, reference)
                    .await
                    .unwrap_or(false)
                {
                    missing.push(format!("{name} ({reference})"));
                }
            }
            if !missing.is_empty() {
                let note = format!(
                    "warning: no built image matches the references of {} fixtures ({}): build them \
                     with `openshell-conformance images --build [--supervisor PATH]` and give `run` the \
                     same `--supervisor`",
                    missing.len(),
                    missing.join(", ")
                );
                eprintln!("{note}");
                report.notes.push(note);
            }
        } else if let Err(e) = openshell_images::docker::build_all(&fixtures, &inputs, docker).await
        {
            images = Images::from_map(Default::default());
            report
                .notes
                .push(format!("building fixture images failed: {e}"));
        }
    }
    let images = Arc::new(images);
    let fixtures = Arc::new(fixtures);
    let timeout = config.case_timeout.unwrap_or_else(|| driver.case_timeout());
    let total = cases.len();
    let started = Instant::now();
    let mut stream = futures::stream::iter(cases.into_iter().enumerate().map(|(index, case)| {
        let harness = Harness::new(
            client.clone(),
            &run_id,
            &format!("{}{index:02}", &run_id[4..10]),
            &case.id,
            driver,
            images.clone(),
            timeout,
            backend.clone(),
            fixtures.clone(),
        );
        let skip = expectations
            .get(&case.id)
            .filter(|e| e.result == Expected::Skipped)
            .map(|e| e.reason.clone());
        let missing: Vec<Feature> = case
            .features
            .iter()
            .copied()
            .filter(|f| !declared.contains(f))
            .collect();
        async move {
            match skip {
                _ if !missing.is_empty() => CaseReport::not_supported(&case, driver, &missing),
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
        let mut audit = audit_run(&client, backend, &run_id, &created_ids(&report)).await;
        if let Some(why) = report.cases.iter().find_map(|c| c.blind.clone()) {
            audit = Err(why);
        }
        report.leaks = audit.clone().unwrap_or_default();
        if !matches!(&audit, Ok(left) if left.is_empty()) || config.filter.is_none() {
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
    if let Some(lane) = lane {
        lane.finish().await;
    }
    finish(config, &mut report, &expectations)?;
    Ok(report)
}

/// Boots or attaches the k3s lane's cluster (see [`crate::k3s`]).
async fn k3s_lane(
    config: &RunConfig,
    external: bool,
    fixtures: &Catalog,
    inputs_base: &std::path::Path,
    images: &Images,
) -> Result<crate::k3s::Lane, RunError> {
    let source = crate::k3s::check(&config.kube, external)
        .await
        .map_err(RunError::Kube)?;
    let inputs = images::default_inputs(inputs_base);
    crate::k3s::Lane::prepare(source, &config.kube, fixtures, &inputs, images)
        .await
        .map_err(RunError::Kube)
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
    let primary = case.requirements.first().copied().unwrap_or(Req::API_009);
    let mut result = match tokio::time::timeout(timeout, body).await {
        Ok(r) => r,
        Err(_) => Err(crate::check::fail(
            primary,
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
    // Blindness: a sandbox still Ready at the end must show at least one backend resource, or
    // the suite cannot see this backend and "nothing left" would be a pass by blindness.
    let mut blind = None;
    if let Some(backend) = harness.backend() {
        for c in created.iter().filter(|c| !c.id.is_empty()) {
            let ready = harness.get(&c.name).await.is_ok_and(|s| {
                crate::observe::Snapshot::of(&s).phase == openshell_proto::v1::SandboxPhase::Ready
            });
            if ready && backend.of_sandbox(&c.id).await.is_ok_and(|r| r.is_empty()) {
                blind = Some(format!(
                    "cannot see this backend: sandbox {} is Ready, but there are no {}",
                    c.name,
                    backend.looks_for(&c.id)
                ));
                break;
            }
        }
    }
    for c in &created {
        let _ = harness.delete(&c.name).await;
    }
    if let Some(backend) = harness.backend() {
        let mut left: Vec<Resource> = Vec::new();
        let mut unreadable = None;
        let end = Instant::now() + AUDIT_LIMIT;
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        'audit: loop {
            tick.tick().await;
            left.clear();
            for c in created.iter().filter(|c| !c.id.is_empty()) {
                match backend.of_sandbox(&c.id).await {
                    Ok(found) => left.extend(found),
                    Err(e) => {
                        unreadable = Some(e);
                        break 'audit;
                    }
                }
            }
            if left.is_empty() || Instant::now() >= end {
                break;
            }
        }
        if result.is_ok() {
            if let Some(why) = &blind {
                result = Err(crate::check::fail(
                    Req::CLEAN_002,
                    "to see the backend resources of the case's Ready sandboxes",
                    why.clone(),
                ));
            } else if let Some(why) = unreadable {
                result = Err(crate::check::fail(
                    Req::CLEAN_002,
                    "the backend resources of the case's sandboxes to be listable after their deletion",
                    format!("the audit could not look: {why}"),
                ));
            } else if !left.is_empty() {
                result = Err(crate::check::fail(
                    Req::CLEAN_002,
                    format!("no backend resource of the case's sandboxes within {AUDIT_LIMIT:?} of their deletion"),
                    left.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
                ));
            }
        }
    }
    let mut report = CaseReport::from_case(&case, harness.driver(), started.elapsed());
    report.sandboxes = created
        .iter()
        .map(|c| format!("{} ({})", c.name, c.id))
        .collect();
    report.latencies_ms = harness.latencies();
    report.blind = blind;
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
            report.requirement = failure.requirement.id().to_string();
            report.failed_requirements = failure
                .requirements()
                .iter()
                .map(|r| r.id().to_string())
                .collect();
            report.held_requirements = failure.held.iter().map(|r| r.id().to_string()).collect();
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
/// hold nothing labelled with the run; returns what is left, or why the audit could not look
/// (the gateway's list or the backend's listing failed): a blind audit is never a clean one.
async fn audit_run(
    client: &openshell_proto::v1::open_shell_client::OpenShellClient<tonic::transport::Channel>,
    backend: &Backend,
    run_id: &str,
    created: &[String],
) -> Result<Vec<Resource>, String> {
    use openshell_proto::v1::{DeleteSandboxRequest, ListSandboxesRequest};
    let mut client = client.clone();
    let selector = format!("{}={run_id}", openshell_proto::labels::RUN_ID);
    let listed = client
        .list_sandboxes(ListSandboxesRequest {
            label_selector: selector.clone(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().sandboxes)
        .map_err(|s| {
            format!(
                "ListSandboxes {selector:?} failed ({}), so the run's sandboxes are unknown",
                crate::harness::status_text(&s)
            )
        })?;
    let mut ids: Vec<String> = listed
        .iter()
        .filter_map(|s| s.metadata.as_ref().map(|m| m.id.clone()))
        .collect();
    ids.extend(
        created
            .iter()
            .filter(|id| !ids.contains(id))
            .cloned()
            .collect::<Vec<_>>(),
    );
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
        let left = backend.of_run(run_id, &ids).await?;
        if left.is_empty() || Instant::now() >= end {
            return Ok(left);
        }
    }
}

/// The ids of every sandbox the run's cases created (from their reports' `name (id)` entries).
pub fn created_ids(report: &RunReport) -> Vec<String> {
    report
        .cases
        .iter()
        .flat_map(|c| c.sandboxes.iter())
        .filter_map(|s| {
            s.rsplit_once(" (")
                .map(|(_, id)| id.trim_end_matches(')').to_string())
        })
        .filter(|id| !id.is_empty())
        .collect()
}

impl RunReport {
    /// The requirement ids of failed cases (every requirement each failure breaks) and of
    /// unexpectedly passed ones.
    pub fn failed_requirements(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        for c in &self.cases {
            match c.result {
                Outcome::Failed => {
                    out.insert(c.requirement.clone());
                    out.extend(c.failed_requirements.iter().cloned());
                }
                Outcome::Xpass => {
                    out.insert(c.requirement.clone());
                }
                _ => {}
            }
        }
        out
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
