//! `openshell-gateway`: the reference gateway process.
//!
//! Parses flags, opens the store, builds the chosen compute driver, binds, prints
//! `openshell-gateway listening on ADDR` as its first stdout line (a harness reads it to learn
//! the port of `--listen 127.0.0.1:0`), and serves until SIGTERM or SIGINT.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use openshell_driver::{ComputeDriver, EventSender};
use openshell_gateway::state_lock::StateLock;
use openshell_gateway::store::Store;
use openshell_gateway::{CoreConfig, Lifecycle};
use tokio::signal::unix::{signal, SignalKind};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DriverKind {
    /// A chrooted child process per sandbox (needs root, no container engine).
    Process,
    /// A container per sandbox on a Docker engine.
    Docker,
}

/// The reference OpenShell gateway.
#[derive(Debug, Parser)]
#[command(name = "openshell-gateway", version)]
struct Args {
    /// Compute driver.
    #[arg(long, value_enum, default_value = "process")]
    driver: DriverKind,
    /// Address to serve gRPC on (IP:PORT); port 0 picks a free one. Loopback only, unless
    /// --allow-non-loopback.
    #[arg(long, default_value = "127.0.0.1:7443")]
    listen: String,
    /// Allow a --listen address that is not loopback. The API has no authentication: anyone who
    /// reaches the address can create and delete sandboxes.
    #[arg(long)]
    allow_non_loopback: bool,
    /// SQLite database path, or `:memory:`. Default: `<state-dir>/gateway.db`.
    #[arg(long)]
    db: Option<String>,
    /// Directory for the store and the process driver's sandbox roots.
    #[arg(long, default_value = "/var/lib/openshell-gateway")]
    state_dir: PathBuf,
    /// Endpoint handed to supervisors. Default: `http://<bound address>`.
    #[arg(long)]
    endpoint: Option<String>,
    /// Seconds between session heartbeats.
    #[arg(long, env = "OPENSHELL_HEARTBEAT_SECS", default_value_t = 15)]
    heartbeat_secs: u32,
    /// The static supervisor copied into process-driver roots. Default: beside this binary.
    #[arg(long)]
    supervisor: Option<PathBuf>,
    /// The static conformance probe copied into process-driver roots. Default: beside this binary.
    #[arg(long)]
    probe: Option<PathBuf>,
    /// A static busybox for process-driver roots.
    #[arg(long, default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// The fixtures directory (manifest.toml and trees).
    #[arg(long, env = "OPENSHELL_FIXTURES_DIR")]
    fixtures: Option<PathBuf>,
    /// Docker: the runtime used when a sandbox names none.
    #[arg(long, default_value = "runc")]
    docker_runtime: String,
    /// Docker: the engine address (default: DOCKER_HOST or the local socket).
    #[arg(long)]
    docker_host: Option<String>,
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot locate the gateway executable")?;
    Ok(exe.parent().unwrap_or(Path::new("/")).join(name))
}

async fn build_driver(args: &Args, events: EventSender) -> anyhow::Result<Arc<dyn ComputeDriver>> {
    Ok(match args.driver {
        DriverKind::Process => {
            let catalog = openshell_fixtures::Catalog::load(
                &args
                    .fixtures
                    .clone()
                    .unwrap_or_else(openshell_fixtures::default_dir),
            )?;
            let inputs = openshell_fixtures::Inputs {
                supervisor: args
                    .supervisor
                    .clone()
                    .map_or_else(|| sibling("openshell-supervisor"), Ok)?,
                busybox: args.busybox.clone(),
                probe: args
                    .probe
                    .clone()
                    .map_or_else(|| sibling("openshell-probe"), Ok)?,
            };
            let config = openshell_driver_process::ProcessConfig {
                state_dir: args.state_dir.clone(),
                catalog,
                inputs,
            };
            Arc::new(openshell_driver_process::ProcessDriver::new(
                config, events,
            )?)
        }
        DriverKind::Docker => {
            let config = openshell_driver_docker::DockerConfig {
                docker_host: args.docker_host.clone(),
                default_runtime: args.docker_runtime.clone(),
            };
            Arc::new(openshell_driver_docker::DockerDriver::connect(
                config, events,
            )?)
        }
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OPENSHELL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log file or pipe gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    if args.heartbeat_secs == 0 {
        bail!("--heartbeat-secs must be at least 1");
    }
    let listen = openshell_gateway::listen::check(&args.listen, args.allow_non_loopback)?;
    std::fs::create_dir_all(&args.state_dir).with_context(|| {
        format!(
            "cannot create the state directory {}",
            args.state_dir.display()
        )
    })?;
    // Before anything reads or changes the state: one gateway per state directory.
    let _state_lock = StateLock::acquire(&args.state_dir)?;
    let db = args.db.clone().unwrap_or_else(|| {
        args.state_dir
            .join("gateway.db")
            .to_string_lossy()
            .into_owned()
    });
    let store = Store::open(&db).with_context(|| format!("cannot open the store {db}"))?;

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let endpoint = args
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));

    let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
    let driver = build_driver(&args, events)
        .await
        .context("cannot start the compute driver")?;
    let core = Lifecycle::new(
        store,
        driver,
        CoreConfig {
            endpoint,
            heartbeat_secs: args.heartbeat_secs,
        },
    );
    core.start(receiver)
        .await
        .context("cannot recover stored sandboxes")?;

    // Handlers before the first line: whoever read it may send SIGTERM at once.
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    println!("openshell-gateway listening on {addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    tracing::info!(%addr, driver = ?args.driver, %db, "serving");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(openshell_gateway::serve(core, listener, async {
        let _ = stop_rx.await;
    }));
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    let _ = stop_tx.send(());
    // Open supervisor sessions and watches are long-lived streams: give them a moment to see the
    // shutdown, then exit regardless.
    match tokio::time::timeout(Duration::from_secs(3), server).await {
        Ok(Ok(Ok(()))) | Err(_) => Ok(()),
        Ok(Ok(Err(e))) => Err(e.into()),
        Ok(Err(e)) => Err(e.into()),
    }
}
