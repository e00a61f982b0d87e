//! The startup sequence, as a checklist. Each step says why it comes where it does.
//!
//! 1. CONFIG: id, endpoint and token first: without them nobody can be told about anything
//!    (stderr only). The rest of the configuration is checked next and *reported*.
//! 2. Reaper: the supervisor is PID 1; orphans can appear from the first spawn on, and every
//!    spawned process is waited for through it.
//! 3. POLICY: the identity comes from the policy, so it is read before anything depends on it;
//!    a broken file is fatal in every mode (seed 000: no silent fallback).
//! 4. IDENTITY: plain file reads of the image's contract; checked before touching the kernel so
//!    an image mistake is reported as such.
//! 5. NETNS: created before the supervisor's seccomp prelude, which blocks `unshare`.
//! 6. SUPERVISOR_SECCOMP, then WORKLOAD_SECCOMP (compiled and tried on a throwaway thread):
//!    the supervisor is hardened before anything image-controlled runs, and a workload filter
//!    the kernel refuses fails here, at its own stage, not inside a spawn.
//! 7. BOOT_HOOK: before the main process (it prepares what the workload needs, seed 001),
//!    through the same spawn path, so it never runs as root or sees the host network.
//! 8. SPAWN the main process, then GATEWAY: the session makes the sandbox Ready, so it opens
//!    only once the workload really runs (as upstream: the session starts after the child).
//! 9. Wait for the main process (forwarding SIGTERM/SIGINT), report its exit, exit with its code.
//!
//! Steps 5-6 are the subsystems `OPENSHELL_SKIP_BOOTSTRAP` may declare and
//! `OPENSHELL_BEST_EFFORT_FAILURES` may tolerate (seed 003); what was skipped or tolerated goes
//! in the hello's degraded list. Every failure from step 1's reportable part on is reported
//! once and ends the supervisor with [`EXIT_STARTUP_FAILED`].
//!
//! Reaching the gateway at startup has one budget, [`GatewayBudget`] (`OPENSHELL_GATEWAY_TIMEOUT`,
//! default 10 s), whose clock starts at the first attempt: the first session's attempts and,
//! when startup fails, the report share it, so a supervisor facing a silent or refusing gateway
//! ends within the budget instead of waiting for the same address twice.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use openshell_proto::v1::{DegradedSubsystem, SupervisorHello, SupervisorStartupStage as Stage};
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{Config, Settings, Subsystem, DEFAULT_GATEWAY_TIMEOUT};
use crate::hook;
use crate::identity;
use crate::mutants;
use crate::netns::Netns;
use crate::policy::{self, Policy};
use crate::reaper::Reaper;
use crate::seccomp;
use crate::session::Gateway;
use crate::spawn::{child_env, Spawner};
use crate::sys;

/// The time the supervisor may spend reaching the gateway at startup: the first session and a
/// startup error report together. The clock starts at the first attempt (the boot hook's time
/// is its own).
#[derive(Debug)]
pub struct GatewayBudget {
    total: Duration,
    started: std::sync::OnceLock<Instant>,
}

impl GatewayBudget {
    /// A budget of `total`, not started.
    pub fn new(total: Duration) -> GatewayBudget {
        GatewayBudget {
            total,
            started: std::sync::OnceLock::new(),
        }
    }

    /// What is left (starting the clock at the first call).
    pub fn left(&self) -> Duration {
        let started = *self.started.get_or_init(Instant::now);
        self.total.saturating_sub(started.elapsed())
    }

    /// The whole budget.
    pub fn total(&self) -> Duration {
        self.total
    }
}
/// How long `ReportMainProcessExit` is retried.
pub const EXIT_REPORT_BOUND: Duration = Duration::from_secs(30);
/// Exit status of a reported startup failure.
pub const EXIT_STARTUP_FAILED: i32 = 1;
/// Exit status of a configuration error that could not be reported (EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;

/// A fatal startup failure: where, and the cause.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", openshell_proto::stage_name(*.stage))]
pub struct Failure {
    /// The stage.
    pub stage: Stage,
    /// The cause, without the stage prefix (the gateway adds it).
    pub message: String,
}

fn fail(stage: Stage, e: impl std::fmt::Display) -> Failure {
    Failure {
        stage,
        message: e.to_string(),
    }
}

/// Runs the supervisor; returns its exit status.
pub async fn run(cfg: Config) -> i32 {
    let instance_id = new_instance_id();
    let gateway = match Gateway::new(&cfg.endpoint, &cfg.token, &cfg.sandbox_id, &instance_id) {
        Ok(g) => Arc::new(g),
        Err(e) => {
            say(&format!("config: {e}"));
            return EXIT_CONFIG;
        }
    };
    let budget = GatewayBudget::new(
        cfg.rest
            .as_ref()
            .map_or(DEFAULT_GATEWAY_TIMEOUT, |s| s.gateway_timeout),
    );
    match supervise(cfg, &gateway, &instance_id, &budget).await {
        Ok(code) => code,
        Err(failure) => {
            say(&format!("startup failed: {failure}"));
            let left = budget.left();
            if left.is_zero() {
                say(&format!(
                    "not reported: the {:?} gateway budget ({}) is spent",
                    budget.total(),
                    openshell_proto::env::GATEWAY_TIMEOUT
                ));
            } else if let Err(e) = gateway
                .report_error(failure.stage, &failure.message, left)
                .await
            {
                say(&format!("could not report the failure to the gateway: {e}"));
            }
            EXIT_STARTUP_FAILED
        }
    }
}

async fn supervise(
    cfg: Config,
    gateway: &Arc<Gateway>,
    instance_id: &str,
    budget: &GatewayBudget,
) -> Result<i32, Failure> {
    // [1] CONFIG, the reportable part: id, endpoint and token were checked in main (nobody to
    //     tell without them); from here on every failure reaches the gateway.
    let mut settings = cfg.rest.map_err(|e| fail(Stage::Config, e))?;
    if mutants::active("best-effort-ignored") {
        settings.best_effort = false;
    }
    if mutants::active("skip-ignored") {
        settings.skip.clear();
    }
    // [2] Reaper before anything is spawned: we are PID 1, every child is waited for through it.
    let reaper = Reaper::start().map_err(|e| fail(Stage::Other, e))?;
    // Handlers now: as PID 1, a SIGTERM without a handler would be dropped (docker stop).
    let signals = Signals::install().map_err(|e| fail(Stage::Other, e))?;
    if let Err(e) = sys::set_child_subreaper() {
        tracing::warn!("cannot become a child subreaper: {e}");
    }
    // [3] POLICY before IDENTITY: the identity is a policy field. Broken = fatal in every mode.
    let loaded = policy::load(Path::new(openshell_proto::POLICY_PATH));
    // Mutants (feature `mutants` only): upstream's old bug, a broken policy silently replaced by
    // the default; and best-effort mode stretched to cover the policy. The suite must catch both.
    let loaded = match loaded {
        Err(e)
            if mutants::active("policy-fallback")
                || (settings.best_effort && mutants::active("best-effort-policy")) =>
        {
            tracing::debug!("mutant swallows: {e}");
            Ok(None)
        }
        other => other,
    };
    let policy = match loaded.map_err(|e| fail(Stage::Policy, e))? {
        Some(p) => p,
        None => {
            tracing::info!(
                "no {}; using the default policy",
                openshell_proto::POLICY_PATH
            );
            Policy::default_policy()
        }
    };
    // [4] IDENTITY before touching the kernel: an image-contract error is reported as such.
    let identity =
        match identity::resolve(Path::new("/"), policy.run_as_user(), policy.run_as_group()) {
            Err(_) if mutants::active("identity-fallback") => identity::Identity {
                user: "nobody".into(),
                uid: 65534,
                gid: 65534,
                groups: vec![65534],
                home: "/".into(),
            },
            other => other.map_err(|e| fail(Stage::Identity, e))?,
        };
    // [5] NETNS before the prelude (the prelude blocks unshare). [6] SUPERVISOR_SECCOMP before
    //     anything image-controlled runs; WORKLOAD_SECCOMP tried now so a refusal fails at its
    //     own stage, not mid-spawn. All three obey OPENSHELL_SKIP_BOOTSTRAP / best-effort.
    let mut degraded = Vec::new();
    let netns = enforce(&settings, Subsystem::Netns, &mut degraded, || {
        Netns::create().map_err(|e| (e.detail(), fail(Stage::Netns, e)))
    })?;
    enforce(
        &settings,
        Subsystem::SupervisorSeccomp,
        &mut degraded,
        || {
            seccomp::supervisor_filter()
                .and_then(|p| seccomp::apply_to_supervisor(&p))
                .map_err(|e| (e.detail(), fail(Stage::SupervisorSeccomp, e)))
        },
    )?;
    let workload = enforce(&settings, Subsystem::WorkloadSeccomp, &mut degraded, || {
        let programs = seccomp::workload_filters()
            .map_err(|e| (e.detail(), fail(Stage::WorkloadSeccomp, &e)))?;
        seccomp::try_workload(&programs)
            .map_err(|e| (e.detail(), fail(Stage::WorkloadSeccomp, e)))?;
        Ok(programs)
    })?
    .filter(|_| !mutants::active("no-workload-seccomp"));
    if mutants::active("degraded-unreported") {
        degraded.clear();
    }
    if mutants::active("degraded-spurious") && degraded.is_empty() {
        degraded.push(DegradedSubsystem {
            subsystem: Subsystem::Netns.name().into(),
            mode: "skipped".into(),
            detail: String::new(),
        });
    }
    let spawner = Spawner {
        netns,
        env: child_env(std::env::vars_os(), &identity),
        identity,
        seccomp: workload,
        reaper: reaper.clone(),
    };
    // [7] BOOT_HOOK before the main process it prepares (seed 001), through the same spawn path.
    //     (Mutant `hook-concurrent` starts the main process first.)
    let early = if mutants::active("hook-concurrent") {
        Some(
            spawner
                .spawn(&settings.command, false)
                .map_err(|e| fail(e.stage(Stage::Spawn), e))?,
        )
    } else {
        None
    };
    let hooked = hook::run(
        &spawner,
        &reaper,
        Path::new(openshell_proto::BOOT_HOOK_PATH),
        settings.hook_timeout,
    )
    .await;
    match hooked {
        Err(hook::HookError::Failed { .. }) if mutants::active("hook-failure-ignored") => {}
        other => {
            other.map_err(|e| match e {
                hook::HookError::Spawn(s) => fail(s.stage(Stage::BootHook), s),
                other => fail(Stage::BootHook, other),
            })?;
        }
    }
    // [8] SPAWN, then GATEWAY: the session means Ready, so it opens once the workload runs.
    let main = match early {
        Some(main) => main,
        None => spawner
            .spawn(&settings.command, false)
            .map_err(|e| fail(e.stage(Stage::Spawn), e))?,
    };
    tracing::info!(pid = main.pid, command = ?settings.command, "main process started");
    let hello = SupervisorHello {
        sandbox_id: cfg.sandbox_id.clone(),
        instance_id: instance_id.into(),
        degraded,
    };
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let holder = {
        let (gateway, first_bound) = (gateway.clone(), budget.left());
        tokio::spawn(async move { gateway.maintain(hello, first_bound, first_tx).await })
    };
    let first = first_rx
        .await
        .unwrap_or(Err(crate::session::SessionError::Closed));
    if let Err(e) = first {
        let _ = sys::kill(-main.pid, Signal::SIGKILL);
        return Err(fail(Stage::Gateway, e));
    }
    // [9] Wait (signals forwarded), report the exit, exit with the child's code.
    let exit = wait_forwarding_signals(&reaper, signals, main.pid)
        .await
        .map_err(|e| fail(Stage::Other, e))?;
    tracing::info!("main process {exit}");
    if let Err(e) = gateway.report_exit(exit.code(), EXIT_REPORT_BOUND).await {
        tracing::error!("could not report the main process exit: {e}");
    }
    holder.abort();
    Ok(exit.code())
}

/// Runs one enforcement subsystem under the skip / best-effort rules.
fn enforce<T>(
    settings: &Settings,
    which: Subsystem,
    degraded: &mut Vec<DegradedSubsystem>,
    attempt: impl FnOnce() -> Result<T, (String, Failure)>,
) -> Result<Option<T>, Failure> {
    let entry = |mode: &str, detail: String| DegradedSubsystem {
        subsystem: which.name().into(),
        mode: mode.into(),
        detail,
    };
    if settings.skip.contains(&which) {
        tracing::warn!(
            "{} skipped: declared in {}",
            which.name(),
            openshell_proto::env::SKIP_BOOTSTRAP
        );
        degraded.push(entry("skipped", String::new()));
        return Ok(None);
    }
    match attempt() {
        Ok(v) => Ok(Some(v)),
        Err(_) if which == Subsystem::Netns && mutants::active("netns-failure-ignored") => Ok(None),
        Err((detail, failure)) if settings.best_effort => {
            tracing::warn!(
                "{} failed and is tolerated (best-effort mode): {}",
                which.name(),
                failure.message
            );
            degraded.push(entry("failed", detail));
            Ok(None)
        }
        Err((_, failure)) => Err(failure),
    }
}

/// SIGTERM and SIGINT, watched from startup on; forwarded to the main process once it runs
/// (one that arrived during startup is forwarded as soon as it starts).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, crate::reaper::ReaperError> {
        let watch = |kind| signal(kind).map_err(crate::reaper::ReaperError::Signal);
        Ok(Signals {
            term: watch(SignalKind::terminate())?,
            int: watch(SignalKind::interrupt())?,
        })
    }
}

async fn wait_forwarding_signals(
    reaper: &Reaper,
    mut signals: Signals,
    pid: i32,
) -> Result<crate::reaper::Exit, crate::reaper::ReaperError> {
    let wait = reaper.wait(pid);
    tokio::pin!(wait);
    loop {
        tokio::select! {
            exit = &mut wait => return exit,
            _ = signals.term.recv() => forward(pid, Signal::SIGTERM),
            _ = signals.int.recv() => forward(pid, Signal::SIGINT),
        }
    }
}

fn forward(pid: i32, signal: Signal) {
    tracing::info!("forwarding {} to the main process", signal.as_str());
    if sys::kill(-pid, signal).is_err() {
        let _ = sys::kill(pid, signal);
    }
}

/// One line on stderr in one write, so it never interleaves with the workload's output.
pub fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("openshell-supervisor: {line}\n").as_bytes());
}

/// A fresh random id for this main process (32 hex digits).
pub fn new_instance_id() -> String {
    let mut bytes = [0u8; 16];
    if sys::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes = (nanos ^ u128::from(std::process::id())).to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
