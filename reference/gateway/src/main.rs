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
    /// A Secret and a Pod per sandbox in a Kubernetes namespace.
    K8s,
    /// A QEMU microVM per sandbox, booted from the Docker engine's image (needs ci/setup-vm.sh).
    Vm,
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
    /// Endpoint handed to supervisors. Default: `http://<bound address>`. With `--driver k8s`
    /// it must be an address the Pods reach (their node's 127.0.0.1 with `--k8s-host-network`).
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
    /// A vendor's runtime tree laid over every process-driver root (as `openshell-conformance
    /// images --build --extra-tree` lays it into the images).
    #[arg(long, env = "OPENSHELL_EXTRA_TREE")]
    extra_tree: Option<PathBuf>,
    /// A static busybox for process-driver roots; its `nc` also relays VM guests to the gateway.
    #[arg(long, default_value = "/bin/busybox")]
    busybox: PathBuf,
    /// The fixtures directory (manifest.toml and trees).
    #[arg(long, env = "OPENSHELL_FIXTURES_DIR")]
    fixtures: Option<PathBuf>,
    /// Docker: the runtime used when a sandbox names none.
    #[arg(long, default_value = "runc")]
    docker_runtime: String,
    /// Docker: the engine address (default: DOCKER_HOST or the local socket). The VM driver
    /// reads its images from the same engine.
    #[arg(long)]
    docker_host: Option<String>,
    /// Kubernetes: the kubeconfig file (default: KUBECONFIG, ~/.kube/config, else in-cluster).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubernetes: the namespace of the sandboxes' Pods and Secrets.
    #[arg(long, default_value = "default")]
    k8s_namespace: String,
    /// Kubernetes: imagePullPolicy of sandbox containers (IfNotPresent, Never, Always).
    #[arg(long, default_value = "IfNotPresent")]
    k8s_image_pull_policy: String,
    /// Kubernetes: runtimeClassName of sandboxes whose request names no runtime.
    #[arg(long)]
    k8s_runtime_class: Option<String>,
    /// Kubernetes: run Pods on their node's network (the k3s lane; Pods reach 127.0.0.1).
    #[arg(long)]
    k8s_host_network: bool,
    /// VM: the accelerator, `auto` (KVM when a cached probe says it works, else TCG), `kvm` or
    /// `tcg`.
    #[arg(long, default_value = "auto")]
    vm_accel: openshell_driver_vm::accel::Choice,
    /// VM: the cache folder of ci/setup-vm.sh (kernel, modules, packed roots, the accelerator
    /// verdict).
    #[arg(
        long,
        env = "OPENSHELL_VM_CACHE",
        default_value = "/var/cache/openshell/vm"
    )]
    vm_cache_dir: PathBuf,
    /// VM: the guest kernel. Default: `<vm-cache-dir>/vmlinuz`.
    #[arg(long)]
    vm_kernel: Option<PathBuf>,
    /// VM: the kernel's modules folder. Default: `<vm-cache-dir>/modules`.
    #[arg(long)]
    vm_modules: Option<PathBuf>,
    /// VM: the static guest init. Default: `openshell-vm-init` beside this binary.
    #[arg(long)]
    vm_init: Option<PathBuf>,
    /// VM: the QEMU binary.
    #[arg(long, default_value = "qemu-system-x86_64")]
    vm_qemu: PathBuf,
    /// VM: guest memory in MiB.
    #[arg(long, default_value_t = 256)]
    vm_memory_mib: u32,
    /// VM: VMs running at once (default: four per core).
    #[arg(long)]
    vm_max_running: Option<usize>,
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
                extra_tree: args.extra_tree.clone(),
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
        DriverKind::K8s => {
            let config = openshell_driver_k8s::K8sConfig {
                kubeconfig: args.kubeconfig.clone(),
                namespace: args.k8s_namespace.clone(),
                image_pull_policy: args.k8s_image_pull_policy.clone(),
                default_runtime_class: args.k8s_runtime_class.clone(),
                host_network: args.k8s_host_network,
            };
            let driver = openshell_driver_k8s::K8sDriver::connect(config, events).await?;
            driver.ping().await?;
            Arc::new(driver)
        }
        DriverKind::Vm => {
            let cache = &args.vm_cache_dir;
            let config = openshell_driver_vm::VmConfig {
                state_dir: args.state_dir.clone(),
                cache_dir: cache.clone(),
                boot: openshell_driver_vm::boot::BootConfig {
                    qemu: args.vm_qemu.clone(),
                    kernel: args
                        .vm_kernel
                        .clone()
                        .unwrap_or_else(|| cache.join("vmlinuz")),
                    modules: args
                        .vm_modules
                        .clone()
                        .unwrap_or_else(|| cache.join("modules")),
                    init: args
                        .vm_init
                        .clone()
                        .map_or_else(|| sibling("openshell-vm-init"), Ok)?,
                    busybox: args.busybox.clone(),
                    memory_mib: args.vm_memory_mib,
                },
                accel: args.vm_accel,
                docker_host: args.docker_host.clone(),
                max_running: args
                    .vm_max_running
                    .unwrap_or_else(openshell_driver_vm::default_max_running),
            };
            let driver = openshell_driver_vm::VmDriver::new(config, events).await?;
            let verdict = driver.accel();
            tracing::info!(accel = %verdict.accel, why = %verdict.why, "VM accelerator");
            Arc::new(driver)
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
