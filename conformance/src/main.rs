//! `openshell-conformance`: list the cases, run them against a gateway, build the fixture images.
//!
//! Exit codes of `run`: 0 every case passed or behaved as the expectations file says; 1 a case
//! failed or passed unexpectedly (or the leak audit found leftovers); 2 the run could not start,
//! executed no case, or a required lane is missing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use openshell_conformance::driver::{parse_lanes, Driver};
use openshell_conformance::runner::{self, RunConfig};
use openshell_conformance::spec::{catalog, requirements};
use openshell_conformance::{bench, gateway, images};

#[derive(Debug, Parser)]
#[command(
    name = "openshell-conformance",
    version,
    about = "Conformance suite for the OpenShell sandbox lifecycle contract"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
enum Command {
    /// Every case id with its requirements, level and applicable drivers.
    List {
        /// Only the cases of this lane.
        #[arg(long)]
        driver: Option<Driver>,
        /// Also list the requirements of SPEC.md, with their text.
        #[arg(long)]
        requirements: bool,
        /// Also list the features a vendor can declare, with the cases that need each.
        #[arg(long)]
        features: bool,
    },
    /// Run the cases of one lane against a gateway.
    Run {
        /// process, docker, docker-runsc, vm or k3s (a booted k3s, or --kubeconfig).
        #[arg(long, default_value = "process")]
        driver: Driver,
        /// Test this endpoint (http://127.0.0.1:PORT) instead of starting the reference gateway.
        #[arg(long)]
        gateway: Option<String>,
        /// Case ids (substring or glob with `*`, comma list), requirement ids, or `level:core`.
        #[arg(long)]
        filter: Option<String>,
        /// Expectations file (TOML) of the implementation under test.
        #[arg(long)]
        expectations: Option<PathBuf>,
        /// Where to write report.json, junit.xml, report.md and diagnostics/.
        #[arg(long)]
        report_dir: Option<PathBuf>,
        /// Lanes whose missing prerequisites are an error (exit 2) rather than a skip.
        #[arg(long, env = "OPENSHELL_REQUIRE_LANES", default_value = "")]
        require_lanes: String,
        /// The reference gateway binary to start (default: OPENSHELL_GATEWAY_BIN, else beside this binary).
        #[arg(long)]
        gateway_bin: Option<PathBuf>,
        /// Cases run at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Per-case timeout in seconds (default per driver; OPENSHELL_CONFORMANCE_TIMEOUT_<DRIVER>).
        #[arg(long)]
        case_timeout: Option<u64>,
        /// The features the implementation has (comma list, `all` or `none`; default: the
        /// expectations file's `features`, else all). See `list --features`.
        #[arg(long)]
        features: Option<String>,
        /// A vendor's static supervisor: the image references are computed with it (as `images
        /// --build --supervisor` built them) and a reference gateway the run starts uses it.
        #[arg(long)]
        supervisor: Option<PathBuf>,
        /// The extra tree the images were built with (`images --extra-tree`), so the references
        /// match; a reference gateway the run starts lays it into process-lane roots too.
        #[arg(long, env = "OPENSHELL_EXTRA_TREE")]
        extra_tree: Option<PathBuf>,
        /// The backend's label key holding the sandbox id.
        #[arg(long, default_value = openshell_proto::labels::SANDBOX_ID)]
        sandbox_label: String,
        /// The backend's label key holding the run id (`none`: the backend copies no request
        /// label; the audit then goes by sandbox ids and creation time).
        #[arg(long, default_value = openshell_proto::labels::RUN_ID)]
        run_label: String,
        /// k3s lane: run against the existing cluster of this kubeconfig instead of booting k3s.
        #[arg(long, env = "KUBECONFIG")]
        kubeconfig: Option<PathBuf>,
        /// k3s lane: the namespace of the sandboxes' Pods and Secrets (default `default`).
        #[arg(long)]
        namespace: Option<String>,
        /// k3s lane with --kubeconfig: Pods on their node's network (nodes on this machine).
        #[arg(long)]
        host_network: bool,
    },
    /// (Internal) remove a k3s cluster of the k3s lane once its owner process has ended.
    #[command(hide = true)]
    K3sReap {
        #[arg(long)]
        container: String,
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        owner: u32,
        #[arg(long)]
        owner_start: u64,
    },
    /// Lifecycle timings beside bare-runtime baselines (`bench run`), and the release gate
    /// (`bench compare`, or `bench run --baseline`).
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// List the fixture image references; with --build, build the missing ones in the local Docker engine.
    Images {
        /// Build missing images.
        #[arg(long)]
        build: bool,
        /// Also write them to a `docker save` tarball.
        #[arg(long)]
        export: Option<PathBuf>,
        /// The directory of the supervisor and probe binaries (default: beside this binary).
        #[arg(long)]
        bin_dir: Option<PathBuf>,
        /// Bake this supervisor into the images instead (a vendor's own build; must be static).
        #[arg(long)]
        supervisor: Option<PathBuf>,
        /// Lay this directory over every image (your runtime's tools, libraries, symlinks); give
        /// `run` the same (`--extra-tree` or OPENSHELL_EXTRA_TREE).
        #[arg(long, env = "OPENSHELL_EXTRA_TREE")]
        extra_tree: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Measure every figure of the lanes (medians and p90 over --runs after --warmup).
    Run {
        /// The lanes, a comma list (process, docker, docker-runsc, vm).
        #[arg(long, default_value = "process")]
        driver: String,
        /// Measured runs per figure.
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// Discarded warm-up runs.
        #[arg(long, default_value_t = 2)]
        warmup: usize,
        /// Write the result here (JSON).
        #[arg(long)]
        json: Option<PathBuf>,
        /// Compare with this earlier result; exit 1 when a ratio regressed.
        #[arg(long)]
        baseline: Option<PathBuf>,
        /// The regression threshold (0.25: a median ratio more than 25 % above the baseline's).
        #[arg(long, default_value_t = openshell_conformance::bench::compare::DEFAULT_THRESHOLD)]
        threshold: f64,
        /// Measure this endpoint instead of the reference gateway.
        #[arg(long)]
        gateway: Option<String>,
        /// The reference gateway binary.
        #[arg(long)]
        gateway_bin: Option<PathBuf>,
        /// The CLI (default: `openshell` beside this binary).
        #[arg(long)]
        cli: Option<PathBuf>,
    },
    /// Compare a result with a baseline: exit 1 when a ratio regressed, 2 when they cannot be
    /// compared.
    Compare {
        /// The new result.
        result: PathBuf,
        /// The earlier result.
        baseline: PathBuf,
        /// The regression threshold.
        #[arg(long, default_value_t = openshell_conformance::bench::compare::DEFAULT_THRESHOLD)]
        threshold: f64,
    },
}

/// The release gate: 0 nothing regressed, 1 a ratio regressed, 2 not comparable.
fn gate(result: &bench::BenchResult, baseline_path: &std::path::Path, threshold: f64) -> ExitCode {
    let baseline = match bench::BenchResult::load(baseline_path) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match bench::compare::compare(result, &baseline, threshold) {
        Ok(comparisons) => {
            print_lossy(&bench::compare::render(&comparisons, threshold));
            if comparisons.iter().any(|c| c.regressed) {
                eprintln!("error: a ratio regressed beyond the threshold");
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn bench_command(command: BenchCommand) -> ExitCode {
    match command {
        BenchCommand::Compare {
            result,
            baseline,
            threshold,
        } => match bench::BenchResult::load(&result) {
            Ok(r) => gate(&r, &baseline, threshold),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        BenchCommand::Run {
            driver,
            runs,
            warmup,
            json,
            baseline,
            threshold,
            gateway,
            gateway_bin,
            cli,
        } => {
            let lanes = match parse_lanes(&driver) {
                Ok(l) if !l.is_empty() => l,
                Ok(_) => {
                    eprintln!("error: --driver names no lane");
                    return ExitCode::from(2);
                }
                Err(e) => {
                    eprintln!("error: --driver: {e}");
                    return ExitCode::from(2);
                }
            };
            let config = bench::BenchConfig {
                lanes,
                runs: runs.max(1),
                warmup,
                gateway_url: gateway,
                gateway_bin,
                cli,
            };
            let result = match bench::run(&config).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            print_lossy(&result.table());
            if let Some(path) = &json {
                let text = serde_json::to_string_pretty(&result).expect("results serialize");
                if let Err(e) = std::fs::write(path, text) {
                    eprintln!("error: writing {}: {e}", path.display());
                    return ExitCode::from(2);
                }
            }
            let leaked = result.lanes.iter().any(|l| !l.leaks.is_empty());
            if leaked {
                eprintln!("error: the leak audit found leftovers");
            }
            match baseline {
                Some(b) => match gate(&result, &b, threshold) {
                    code if code == ExitCode::SUCCESS && leaked => ExitCode::from(1),
                    code => code,
                },
                None if leaked => ExitCode::from(1),
                None => ExitCode::SUCCESS,
            }
        }
    }
}

fn list(
    driver: Option<Driver>,
    with_requirements: bool,
    with_features: bool,
) -> anyhow::Result<()> {
    use std::fmt::Write as _;
    use std::io::Write as _;
    let fixtures =
        openshell_fixtures::Catalog::load_default().context("loading fixtures/manifest.toml")?;
    let mut out = String::new();
    let cases = catalog::all(&fixtures);
    if with_requirements {
        writeln!(out, "SPEC.md, contract version {}", requirements::version())?;
        for r in requirements::all() {
            writeln!(
                out,
                "\n{}  {:?}  {}  {}  ({})\n  {}",
                r.id, r.strength, r.level, r.source, r.group, r.text
            )?;
        }
        out.push('\n');
    }
    if with_features {
        for f in openshell_conformance::features::Feature::ALL {
            let needing: Vec<&str> = cases
                .iter()
                .filter(|c| c.features.contains(&f))
                .map(|c| c.id.as_str())
                .collect();
            writeln!(out, "{:<20} needed by {}", f.name(), needing.join(", "))?;
        }
        out.push('\n');
    }
    let width = cases.iter().map(|c| c.id.len()).max().unwrap_or(10);
    for c in cases
        .iter()
        .filter(|c| driver.is_none_or(|d| c.applies_to(d)))
    {
        let drivers: Vec<&str> = c.drivers.iter().map(|d| d.name()).collect();
        let reqs = c
            .requirements
            .iter()
            .map(|r| r.id())
            .collect::<Vec<_>>()
            .join(",");
        writeln!(
            out,
            "{:<width$}  {:<8}  {reqs:<40}  {}",
            c.id,
            c.level.name(),
            drivers.join(",")
        )?;
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    Ok(())
}

async fn images_command(
    build: bool,
    export: Option<PathBuf>,
    bin_dir: Option<PathBuf>,
    supervisor: Option<PathBuf>,
    extra_tree: Option<PathBuf>,
) -> anyhow::Result<()> {
    use std::io::Write as _;
    let fixtures = openshell_fixtures::Catalog::load_default()?;
    let base = match bin_dir {
        Some(d) => d.join("openshell-gateway"),
        None => gateway::sibling("openshell-gateway"),
    };
    let mut inputs = images::default_inputs(&base);
    if let Some(supervisor) = supervisor {
        inputs.supervisor = supervisor;
    }
    if let Some(tree) = extra_tree {
        anyhow::ensure!(
            tree.is_dir(),
            "--extra-tree {}: not a directory",
            tree.display()
        );
        inputs.extra_tree = Some(tree);
    }
    let refs = images::Images::compute(&fixtures, &inputs)?;
    if let Some(why) = refs.unavailable() {
        anyhow::bail!("{why}");
    }
    let docker = openshell_images::docker::connect(None).ok();
    if build {
        let docker = docker.as_ref().context("no docker engine")?;
        openshell_images::docker::build_all(&fixtures, &inputs, docker).await?;
    }
    for (name, reference) in refs.all() {
        let present = match &docker {
            Some(d) => match openshell_images::docker::image_exists(d, reference).await {
                Ok(true) => "built",
                Ok(false) => "missing",
                Err(_) => "engine unreachable",
            },
            None => "no engine",
        };
        // A closed pipe (`| head`) is not an error worth a panic.
        let line = format!("{reference:<52} {present:<18} {name}\n");
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
    if let Some(path) = export {
        let docker = docker.as_ref().context("no docker engine")?;
        let all: Vec<String> = refs.all().values().cloned().collect();
        openshell_images::docker::export_images(docker, &all, &path).await?;
        eprintln!("exported to {}", path.display());
    }
    Ok(())
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn print_lossy(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::List {
            driver,
            requirements,
            features,
        } => match list(driver, requirements, features) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::Bench { command } => bench_command(command).await,
        Command::Images {
            build,
            export,
            bin_dir,
            supervisor,
            extra_tree,
        } => match images_command(build, export, bin_dir, supervisor, extra_tree).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        },
        Command::K3sReap {
            container,
            dir,
            owner,
            owner_start,
        } => match openshell_conformance::k3s::cluster::reap(&container, &dir, owner, owner_start)
            .await
        {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::Run {
            driver,
            gateway,
            filter,
            expectations,
            report_dir,
            require_lanes,
            gateway_bin,
            parallel,
            case_timeout,
            features,
            supervisor,
            extra_tree,
            sandbox_label,
            run_label,
            kubeconfig,
            namespace,
            host_network,
        } => {
            let features = match features
                .as_deref()
                .map(openshell_conformance::features::parse_list)
            {
                None => None,
                Some(Ok(f)) => Some(f),
                Some(Err(e)) => {
                    eprintln!("error: --features: {e}");
                    return ExitCode::from(2);
                }
            };
            let label_keys = openshell_conformance::leaks::LabelKeys {
                sandbox: sandbox_label,
                run: Some(run_label).filter(|k| k != "none" && !k.is_empty()),
            };
            let require_lanes = match parse_lanes(&require_lanes) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: --require-lanes: {e}");
                    return ExitCode::from(2);
                }
            };
            let config = RunConfig {
                driver,
                gateway_url: gateway,
                gateway_bin,
                filter,
                expectations,
                report_dir: report_dir.clone(),
                require_lanes,
                parallel,
                case_timeout: case_timeout.map(Duration::from_secs),
                verbose: true,
                kube: openshell_conformance::k3s::KubeOptions {
                    kubeconfig: kubeconfig.filter(|p| !p.as_os_str().is_empty()),
                    namespace,
                    host_network,
                },
                gateway_env: Vec::new(),
                features,
                supervisor,
                extra_tree,
                label_keys,
            };
            match runner::run(&config).await {
                Ok(report) => {
                    print_lossy(&format!("\n{}\n", report.table()));
                    if let Some(dir) = report_dir {
                        print_lossy(&format!("reports in {}\n", dir.display()));
                    }
                    let code = report.exit_code();
                    if code == 2 {
                        eprintln!("error: no case was executed");
                    }
                    ExitCode::from(code as u8)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
