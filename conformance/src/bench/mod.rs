//! `openshell-conformance bench`: how fast an implementation's lifecycle is, beside the bare
//! runtime it runs on, so a release gate can see a regression (issue: benchmarks a release gate
//! can trust).
//!
//! Every figure is measured as a user waits: through the `openshell` CLI process, from its start
//! until it has exited at Ready, or exited having printed the cause of the Error. Each lifecycle
//! sample is taken beside a bare-runtime baseline in the same run, interleaved (A B A B), and
//! reported as a ratio pair by pair ([`stats`]):
//!
//! | figure | what | baseline |
//! |---|---|---|
//! | `create_to_ready` | `openshell sandbox create` of `good` until it exits at Ready | docker: `docker run -d --network host [--runtime runsc] --entrypoint /bin/sleep IMAGE 1000`; vm: the bare boot to its console marker; process: a chrooted `/bin/true` |
//! | `stale_policy_visible` | create of `stale-policy` until it exits having printed `policy: …` | docker: `docker run --rm --network host [--runtime runsc] --entrypoint /bin/true IMAGE` (upstream's baseline); vm and process as above |
//! | `missing_user_visible` | create of `missing-user` until it exits having printed `identity: …` | as above |
//! | `error_to_backend_gone` | from that CLI's exit to the first backend listing with nothing of the sandbox left | – |
//! | `delete_to_backend_gone` | `openshell sandbox delete` of a Ready sandbox until nothing is left | – |
//! | `supervisor_start_to_spawn` | the supervisor's own timestamps, `supervisor started` to `main process started` (no boot hook) | – |
//!
//! Warm-up runs are discarded. Against `--gateway URL` (a vendor's implementation) a figure the
//! suite cannot see there (the supervisor's lines, a backend it cannot list) is "not measured",
//! never 0. A leak audit by the run's label ends every lane. The JSON ([`BenchResult`]) records
//! what makes results comparable ([`facts`]); [`compare`] is the release gate.

pub mod compare;
pub mod facts;
pub mod stats;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use openshell_fixtures::Catalog;
use openshell_proto::v1::{GetSandboxRequest, WatchSandboxRequest};
use openshell_proto::{env, labels};
use serde::{Deserialize, Serialize};

use crate::driver::Driver;
use crate::gateway::{self, Gateway};
use crate::images::{self, Images};
use crate::leaks::{Backend, LabelKeys};

pub use facts::Facts;
pub use stats::Figure;

/// The schema of [`BenchResult`]; bumped when a figure changes meaning.
pub const SCHEMA: u32 = 1;
/// How long one CLI create may take before the sample fails.
const CLI_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a backend may take to remove what it holds of a sandbox.
const REMOVAL_LIMIT: Duration = Duration::from_secs(30);

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The lane cannot run here.
    #[error("lane {0} cannot run: {1}")]
    Lane(Driver, String),
    /// The gateway could not be started or reached.
    #[error(transparent)]
    Gateway(#[from] gateway::GatewayError),
    /// The fixtures could not be read.
    #[error(transparent)]
    Fixtures(#[from] openshell_fixtures::FixtureError),
    /// Image references could not be computed, or images built.
    #[error("images: {0}")]
    Images(String),
    /// A sample failed (a CLI that did not reach the expected outcome, a baseline that failed).
    #[error("{0}")]
    Sample(String),
    /// Reading or writing a result file.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, BenchError>;

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The lanes, in order.
    pub lanes: Vec<Driver>,
    /// Measured runs per figure.
    pub runs: usize,
    /// Discarded warm-up runs before them.
    pub warmup: usize,
    /// A vendor's endpoint instead of the reference gateway.
    pub gateway_url: Option<String>,
    /// The reference gateway binary (default beside this binary).
    pub gateway_bin: Option<PathBuf>,
    /// The CLI (default `openshell` beside this binary).
    pub cli: Option<PathBuf>,
}

/// One lane's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaneResult {
    /// The lane.
    pub lane: String,
    /// Its figures.
    pub figures: Vec<Figure>,
    /// What the final leak audit found.
    pub leaks: Vec<String>,
    /// Remarks.
    pub notes: Vec<String>,
}

/// A whole benchmark result (`--json FILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchResult {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The machine and build.
    pub facts: Facts,
    /// Every lane measured.
    pub lanes: Vec<LaneResult>,
}

impl BenchResult {
    /// Reads a result file.
    pub fn load(path: &Path) -> Result<BenchResult> {
        let bad = |message: String| BenchError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| bad(format!("not a bench result: {e}")))
    }

    /// Every figure as a table for people.
    pub fn table(&self) -> String {
        let mut out = String::new();
        for lane in &self.lanes {
            out.push_str(&format!("lane {}\n", lane.lane));
            for f in &lane.figures {
                let ms = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.0} ms"));
                match &f.not_measured {
                    Some(why) => out.push_str(&format!("  {:<27} not measured: {why}\n", f.name)),
                    None => out.push_str(&format!(
                        "  {:<27} median {:>8} p90 {:>8}{}\n",
                        f.name,
                        ms(f.median_ms),
                        ms(f.p90_ms),
                        match (&f.baseline, f.ratio_median, f.ratio_p90) {
                            (Some(b), Some(r), Some(p)) => format!(
                                "  baseline {} ({})  ratio median {r:.2} p90 {p:.2}",
                                ms(b.median_ms),
                                b.what
                            ),
                            _ => String::new(),
                        }
                    )),
                }
            }
            if !lane.leaks.is_empty() {
                out.push_str(&format!("  LEAKS: {}\n", lane.leaks.join("; ")));
            }
        }
        out
    }
}

/// Runs the benchmark.
pub async fn run(config: &BenchConfig) -> Result<BenchResult> {
    let mut facts = Facts::read().await;
    let mut lanes = Vec::new();
    for &lane in &config.lanes {
        let result = run_lane(config, lane, &mut facts).await?;
        lanes.push(result);
    }
    Ok(BenchResult {
        schema: SCHEMA,
        facts,
        lanes,
    })
}

/// Everything a lane's samples need.
struct Lane {
    driver: Driver,
    cli: PathBuf,
    endpoint: String,
    client: openshell_proto::v1::open_shell_client::OpenShellClient<tonic::transport::Channel>,
    images: Images,
    backend: Option<Backend>,
    run_id: String,
    external: bool,
    /// A chrooted `/bin/true`'s root (process lane baseline).
    root: Option<tempfile::TempDir>,
    /// The VM bare boot binary (vm lane baseline).
    bare_boot: PathBuf,
}

async fn run_lane(config: &BenchConfig, driver: Driver, facts: &mut Facts) -> Result<LaneResult> {
    let external = config.gateway_url.is_some();
    crate::runner::prerequisites(driver, external, config.gateway_bin.as_deref())
        .await
        .map_err(|why| BenchError::Lane(driver, why))?;
    let fixtures = Catalog::load_default()?;
    let bin = gateway::locate_binary(config.gateway_bin.as_deref());
    let inputs = images::default_inputs(
        if external {
            gateway::sibling("openshell-gateway")
        } else {
            bin.clone()
        }
        .as_path(),
    );
    let images =
        Images::compute(&fixtures, &inputs).map_err(|e| BenchError::Images(e.to_string()))?;
    if let Some(why) = images.unavailable() {
        return Err(BenchError::Images(why.to_string()));
    }
    let docker = match driver {
        Driver::Process => None,
        _ => openshell_images::docker::connect(None).ok(),
    };
    if let (Some(docker), false) = (&docker, external) {
        openshell_images::docker::build_all(&fixtures, &inputs, docker)
            .await
            .map_err(|e| BenchError::Images(e.to_string()))?;
    }
    let mut gw = match &config.gateway_url {
        Some(url) => Gateway::external(url),
        None => Gateway::start(&bin, driver, &[]).await?,
    };
    let client = gw.connect().await?;
    let run_id = format!("osb-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let backend = match driver {
        Driver::Process => Some(Backend::Process {
            state_dir: gw.state_dir.clone(),
        }),
        Driver::Vm => Some(Backend::Vm {
            state_dir: gw.state_dir.clone(),
        }),
        Driver::Docker | Driver::DockerRunsc => docker.clone().map(|docker| Backend::Docker {
            docker,
            keys: LabelKeys::default(),
            run_started: 0,
        }),
        Driver::K3s => None,
    };
    let root = if driver == Driver::Process {
        let dir = tempfile::tempdir().map_err(|e| BenchError::Sample(e.to_string()))?;
        let good = fixtures.get("good")?;
        openshell_fixtures::assemble(&fixtures, good, &inputs, dir.path())?;
        Some(dir)
    } else {
        None
    };
    let lane = Lane {
        driver,
        cli: config
            .cli
            .clone()
            .unwrap_or_else(|| gateway::sibling("openshell")),
        endpoint: gw.endpoint.clone(),
        client,
        images,
        backend,
        run_id,
        external,
        root,
        bare_boot: bin.with_file_name("openshell-vm-bare-boot"),
    };
    let mut notes = Vec::new();
    let result = measure(&lane, config, facts, &mut notes).await;
    let leaks = match &lane.backend {
        Some(b) => audit(b, &lane.run_id).await,
        None => vec!["not audited: no view of this lane's backend".into()],
    };
    gw.stop().await;
    Ok(LaneResult {
        lane: driver.name().into(),
        figures: result?,
        leaks,
        notes,
    })
}

/// The samples of every figure of a lane, warm-up runs first (discarded).
async fn measure(
    lane: &Lane,
    config: &BenchConfig,
    facts: &mut Facts,
    notes: &mut Vec<String>,
) -> Result<Vec<Figure>> {
    let (mut ready, mut ready_base) = (Vec::new(), Vec::new());
    let (mut stale, mut stale_base) = (Vec::new(), Vec::new());
    let (mut missing, mut missing_base) = (Vec::new(), Vec::new());
    let (mut error_gone, mut delete_gone, mut spawn) = (Vec::new(), Vec::new(), Vec::new());
    let mut spawn_unseen = None;
    for i in 0..config.warmup + config.runs {
        let keep = i >= config.warmup;
        let push = |v: &mut Vec<f64>, d: Duration| {
            if keep {
                v.push(d.as_secs_f64() * 1000.0);
            }
        };
        // A B A B: each lifecycle sample right beside its baseline.
        let name = format!("{}-r{i}", &lane.run_id[4..12]);
        push(&mut ready, cli_create(lane, "good", &name, true).await?);
        push(&mut ready_base, baseline(lane, true, facts).await?);
        match supervisor_start_to_spawn(lane, &name).await {
            Ok(d) => push(&mut spawn, d),
            Err(why) => spawn_unseen = Some(why),
        }
        let id = sandbox_id(lane, &name).await?;
        let started = Instant::now();
        cli_delete(lane, &name).await?;
        match gone(lane, &id).await {
            Some(()) => push(&mut delete_gone, started.elapsed()),
            None => notes.push(format!(
                "{name}: backend not listable or not empty after delete"
            )),
        }
        for (fixture, samples, base, suffix) in [
            ("stale-policy", &mut stale, &mut stale_base, "s"),
            ("missing-user", &mut missing, &mut missing_base, "m"),
        ] {
            let name = format!("{}-{suffix}{i}", &lane.run_id[4..12]);
            push(samples, cli_create(lane, fixture, &name, false).await?);
            let visible = Instant::now();
            let id = sandbox_id(lane, &name).await?;
            if fixture == "stale-policy" && gone(lane, &id).await.is_some() {
                push(&mut error_gone, visible.elapsed());
            }
            push(base, baseline(lane, false, facts).await?);
            cli_delete(lane, &name).await?;
        }
    }
    let base_what = baseline_what(lane.driver);
    let figures = vec![
        Figure::new(
            "create_to_ready",
            "openshell sandbox create (good) until its exit at Ready",
            ready,
            Some((base_what.0.to_string(), ready_base)),
        ),
        Figure::new(
            "stale_policy_visible",
            "openshell sandbox create (stale-policy) until its exit, the cause printed",
            stale,
            Some((base_what.1.to_string(), stale_base)),
        ),
        Figure::new(
            "missing_user_visible",
            "openshell sandbox create (missing-user) until its exit, the cause printed",
            missing,
            Some((base_what.1.to_string(), missing_base)),
        ),
        backend_figure(
            lane,
            "error_to_backend_gone",
            "from the CLI's exit at Error to nothing of the sandbox on the backend",
            error_gone,
        ),
        backend_figure(
            lane,
            "delete_to_backend_gone",
            "openshell sandbox delete until nothing of the sandbox is on the backend",
            delete_gone,
        ),
        match spawn_unseen {
            Some(why) if spawn.is_empty() => Figure::not_measured(
                "supervisor_start_to_spawn",
                "the supervisor's own timestamps, start to main process spawn (no hook)",
                &why,
            ),
            _ => Figure::new(
                "supervisor_start_to_spawn",
                "the supervisor's own timestamps, start to main process spawn (no hook)",
                spawn,
                None,
            ),
        },
    ];
    Ok(figures)
}

fn backend_figure(lane: &Lane, name: &str, what: &str, samples: Vec<f64>) -> Figure {
    if lane.backend.is_none() || samples.is_empty() {
        Figure::not_measured(name, what, "the suite cannot list this backend's resources")
    } else {
        Figure::new(name, what, samples, None)
    }
}

/// (Ready baseline, error baseline) descriptions.
fn baseline_what(driver: Driver) -> (&'static str, &'static str) {
    match driver {
        Driver::Docker => (
            "docker run -d --network host --entrypoint /bin/sleep IMAGE 1000",
            "docker run --rm --network host --entrypoint /bin/true IMAGE",
        ),
        Driver::DockerRunsc => (
            "docker run -d --network host --runtime runsc --entrypoint /bin/sleep IMAGE 1000",
            "docker run --rm --network host --runtime runsc --entrypoint /bin/true IMAGE",
        ),
        Driver::Vm => (
            "bare boot of the same kernel and initramfs to its console marker",
            "bare boot of the same kernel and initramfs to its console marker",
        ),
        _ => ("chroot ROOT /bin/true", "chroot ROOT /bin/true"),
    }
}

/// Times a CLI `sandbox create` of `fixture` (its command as `spec.command`); `ready` says which
/// exit is the expected one (0 at Ready, 1 having printed the cause).
async fn cli_create(lane: &Lane, fixture: &str, name: &str, ready: bool) -> Result<Duration> {
    let image = lane
        .images
        .get(fixture)
        .map_err(BenchError::Images)?
        .to_string();
    let command = Catalog::load_default()?.get(fixture)?.command.clone();
    let mut cmd = tokio::process::Command::new(&lane.cli);
    cmd.args([
        "--gateway",
        &lane.endpoint,
        "sandbox",
        "create",
        "--from",
        &image,
        "--name",
        name,
    ])
    .arg("--label")
    .arg(format!("{}={}", labels::RUN_ID, lane.run_id))
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    if lane.driver == Driver::DockerRunsc {
        cmd.args(["--runtime", "runsc", "--env"])
            .arg(format!("{}=1", env::BEST_EFFORT_FAILURES));
    }
    cmd.arg("--").args(&command);
    let started = Instant::now();
    let out = tokio::time::timeout(CLI_TIMEOUT, cmd.output())
        .await
        .map_err(|_| {
            BenchError::Sample(format!(
                "openshell sandbox create {name} did not exit within {CLI_TIMEOUT:?}"
            ))
        })?
        .map_err(|e| BenchError::Sample(format!("{}: {e}", lane.cli.display())))?;
    let took = started.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stage = if fixture == "missing-user" {
        "identity: "
    } else {
        "policy: "
    };
    let as_expected = if ready {
        out.status.code() == Some(0)
    } else {
        out.status.code() == Some(1) && text.contains(stage)
    };
    if !as_expected {
        return Err(BenchError::Sample(format!(
            "openshell sandbox create {name} from {fixture}: exit {:?}, expected {}; output: {}",
            out.status.code(),
            if ready {
                "0 at Ready"
            } else {
                "1 with the cause printed"
            },
            text.trim()
        )));
    }
    Ok(took)
}

async fn cli_delete(lane: &Lane, name: &str) -> Result<()> {
    let out = tokio::process::Command::new(&lane.cli)
        .args(["--gateway", &lane.endpoint, "sandbox", "delete", name])
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| BenchError::Sample(format!("{}: {e}", lane.cli.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Sample(format!(
            "openshell sandbox delete {name}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

async fn sandbox_id(lane: &Lane, name: &str) -> Result<String> {
    let got = lane
        .client
        .clone()
        .get_sandbox(GetSandboxRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .map_err(|s| BenchError::Sample(format!("GetSandbox {name}: {}", s.message())))?;
    Ok(got
        .into_inner()
        .sandbox
        .and_then(|s| s.metadata)
        .map(|m| m.id)
        .unwrap_or_default())
}

/// Waits (polling every 20 ms, bounded) until the backend holds nothing of `id`.
async fn gone(lane: &Lane, id: &str) -> Option<()> {
    let backend = lane.backend.as_ref()?;
    let end = Instant::now() + REMOVAL_LIMIT;
    while Instant::now() < end {
        if backend.of_sandbox(id).await.ok()?.is_empty() {
            return Some(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// One baseline sample of the lane's bare runtime.
async fn baseline(lane: &Lane, ready: bool, facts: &mut Facts) -> Result<Duration> {
    let image = lane
        .images
        .get("good")
        .map_err(BenchError::Images)?
        .to_string();
    let timed = |mut cmd: tokio::process::Command| async move {
        let started = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| BenchError::Sample(format!("baseline: {e}")))?;
        if !out.status.success() {
            return Err(BenchError::Sample(format!(
                "baseline failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok((
            started.elapsed(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ))
    };
    match lane.driver {
        Driver::Docker | Driver::DockerRunsc => {
            let mut cmd = tokio::process::Command::new("docker");
            cmd.arg("run");
            if ready {
                cmd.arg("-d");
            } else {
                cmd.arg("--rm");
            }
            cmd.args(["--network", "host", "--label"]).arg(format!(
                "{}={}",
                labels::RUN_ID,
                lane.run_id
            ));
            if lane.driver == Driver::DockerRunsc {
                cmd.args(["--runtime", "runsc"]);
            }
            if ready {
                cmd.args(["--entrypoint", "/bin/sleep", &image, "1000"]);
            } else {
                cmd.args(["--entrypoint", "/bin/true", &image]);
            }
            let (took, stdout) = timed(cmd).await?;
            if ready {
                let container = stdout.trim().to_string();
                let _ = tokio::process::Command::new("docker")
                    .args(["rm", "-f", &container])
                    .output()
                    .await;
            }
            Ok(took)
        }
        Driver::Vm => {
            let mut cmd = tokio::process::Command::new(&lane.bare_boot);
            cmd.args(["--image", &image]);
            let (_, stdout) = timed(cmd).await?;
            let json: serde_json::Value = serde_json::from_str(stdout.trim())
                .map_err(|e| BenchError::Sample(format!("bare boot output {stdout:?}: {e}")))?;
            if let Some(accel) = json["accel"].as_str() {
                facts.accelerator = accel.to_string();
            }
            let ms = json["to_marker_ms"].as_u64().ok_or_else(|| {
                BenchError::Sample(format!("bare boot without to_marker_ms: {stdout}"))
            })?;
            Ok(Duration::from_millis(ms))
        }
        _ => {
            let root = lane
                .root
                .as_ref()
                .ok_or_else(|| BenchError::Sample("no root for the chroot baseline".into()))?;
            let mut cmd = tokio::process::Command::new("chroot");
            cmd.arg(root.path()).arg("/bin/true");
            Ok(timed(cmd).await?.0)
        }
    }
}

/// The supervisor's own start-to-spawn time, from its two timestamped lines in the backend
/// output the gateway keeps (`WatchSandbox` follow_logs).
async fn supervisor_start_to_spawn(
    lane: &Lane,
    name: &str,
) -> std::result::Result<Duration, String> {
    let id = sandbox_id(lane, name).await.map_err(|e| e.to_string())?;
    let request = WatchSandboxRequest {
        id,
        follow_logs: true,
        log_tail_lines: 200,
        ..Default::default()
    };
    let mut stream = lane
        .client
        .clone()
        .watch_sandbox(request)
        .await
        .map_err(|s| format!("WatchSandbox: {}", s.message()))?
        .into_inner();
    let mut lines = Vec::new();
    while let Ok(Ok(Some(event))) =
        tokio::time::timeout(Duration::from_secs(2), stream.message()).await
    {
        if let Some(openshell_proto::v1::sandbox_stream_event::Payload::Log(l)) = event.payload {
            lines.push(l.message);
        }
    }
    let at = |needle: &str| {
        lines
            .iter()
            .find(|l| l.contains(needle))
            .and_then(|l| l.split_whitespace().next())
            .and_then(parse_rfc3339_micros)
    };
    match (at("supervisor started"), at("main process started")) {
        (Some(a), Some(b)) if b >= a => Ok(Duration::from_micros(b - a)),
        _ if lane.external => {
            Err("the gateway's backend output has no reference supervisor lines".into())
        }
        _ => Err(format!(
            "no `supervisor started` / `main process started` lines in {} lines of backend output",
            lines.len()
        )),
    }
}

/// Microseconds since the epoch of `2026-12-02T00:59:40.312760Z` (the supervisor's log format).
pub fn parse_rfc3339_micros(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    let micros: i64 = format!("{frac:0<6}")[..6].parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + min * 60 + s;
    u64::try_from(secs * 1_000_000 + micros).ok()
}

/// The run's leftovers, as lines.
async fn audit(backend: &Backend, run_id: &str) -> Vec<String> {
    let end = Instant::now() + REMOVAL_LIMIT;
    loop {
        match backend.of_run(run_id, &[]).await {
            Ok(left) if left.is_empty() => return Vec::new(),
            Ok(left) if Instant::now() >= end => {
                return left.iter().map(ToString::to_string).collect()
            }
            Err(e) => return vec![format!("the audit could not look: {e}")],
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervisor_timestamps_parse_to_microseconds() {
        let a = parse_rfc3339_micros("2026-12-02T00:59:40.312760Z").unwrap();
        let b = parse_rfc3339_micros("2026-12-02T00:59:40.637204Z").unwrap();
        assert_eq!(b - a, 324_444);
        assert_eq!(
            parse_rfc3339_micros("1970-01-01T00:00:01Z"),
            Some(1_000_000)
        );
        assert_eq!(parse_rfc3339_micros("2026-12-02 00:59"), None);
    }
}
