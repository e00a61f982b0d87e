//! What the VM driver's tests share: the lane check, images, a real gateway process, the VMs
//! visible in `/proc`.
//!
//! The lane needs a Docker engine (the images), QEMU and the kernel of `ci/setup-vm.sh`, and the
//! workspace's binaries. Without them a test prints `SKIPPED …` and passes, unless
//! `OPENSHELL_REQUIRE_LANES` names `vm`: then it fails with the reason.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use openshell_fixtures::{Catalog, Expectation, Fixture, Inputs};
use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    sandbox_stream_event, CreateSandboxRequest, Sandbox, SandboxSpec, SandboxTemplate,
    WatchSandboxRequest,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

/// Upper bound for one VM to boot and reach an expected state under TCG on a loaded 2-core
/// host (expected: about 10 s).
pub const DEADLINE: Duration = Duration::from_secs(150);
/// The cache folder of ci/setup-vm.sh.
pub const CACHE: &str = "/var/cache/openshell/vm";

/// The workspace's binaries (`target/<triple>/debug`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("deps folder");
    deps.parent().unwrap_or(deps).to_path_buf()
}

/// Whether the lane can run here; `Ok(false)` (printed) when it may be skipped.
pub fn lane() -> anyhow::Result<bool> {
    let required = std::env::var("OPENSHELL_REQUIRE_LANES")
        .unwrap_or_default()
        .split(',')
        .any(|l| l.trim() == "vm");
    let missing = [
        Path::new("/var/run/docker.sock").to_path_buf(),
        Path::new(CACHE).join("vmlinuz"),
        Path::new(CACHE).join("modules"),
        bin_dir().join("openshell-vm-init"),
        bin_dir().join("openshell-gateway"),
        bin_dir().join("openshell-supervisor"),
        bin_dir().join("openshell-probe"),
    ]
    .into_iter()
    .filter(|p| !p.exists())
    .map(|p| p.display().to_string())
    .collect::<Vec<_>>();
    let qemu = openshell_driver_vm::boot::find_program(Path::new("qemu-system-x86_64")).is_some();
    let mut reasons = missing;
    if !qemu {
        reasons.push("qemu-system-x86_64".into());
    }
    if reasons.is_empty() {
        return Ok(true);
    }
    let reason = format!(
        "missing {} (bash ci/setup-docker.sh; bash ci/setup-vm.sh; cargo build --workspace)",
        reasons.join(", ")
    );
    if required {
        bail!("OPENSHELL_REQUIRE_LANES names vm but it cannot run: {reason}");
    }
    eprintln!("SKIPPED lane vm: {reason}");
    Ok(false)
}

/// The fixture image of `name`, built with the workspace's supervisor and probe.
pub async fn fixture_image(name: &str) -> anyhow::Result<String> {
    let catalog = Catalog::load_default()?;
    let fixture = catalog.get(name).context("fixture")?;
    let docker = openshell_images::docker::connect(None)?;
    Ok(openshell_images::docker::build_image(
        &catalog,
        fixture,
        &Inputs::beside(&bin_dir()),
        &docker,
    )
    .await?)
}

/// A stand-in image: the base tree with busybox as the entrypoint running `script` under `sh`.
pub async fn script_image(name: &str, script: &str) -> anyhow::Result<String> {
    let catalog = Catalog::load_default()?;
    let fixture = Fixture {
        name: name.to_string(),
        description: "VM driver test stand-in".into(),
        entrypoint: Some(vec!["/bin/busybox".into(), "sh".into(), "-c".into()]),
        command: vec![script.to_string()],
        env: BTreeMap::new(),
        expect: Expectation {
            phase: openshell_fixtures::ExpectedPhase::Error,
            reason: openshell_proto::ReadyReason::ProcessExited,
            message: None,
            exit_code: None,
            ready_first: false,
        },
    };
    let busybox = PathBuf::from("/bin/busybox");
    let inputs = Inputs {
        supervisor: busybox.clone(),
        busybox: busybox.clone(),
        probe: busybox,
        extra_tree: None,
    };
    let docker = openshell_images::docker::connect(None)?;
    Ok(openshell_images::docker::build_image(&catalog, &fixture, &inputs, &docker).await?)
}

/// Host processes of the VM of `sandbox_id` (QEMU named `openshell-<id>`): their pids.
pub fn vm_processes(sandbox_id: &str) -> Vec<i32> {
    let name = format!("openshell-{sandbox_id}");
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
        if args
            .windows(2)
            .any(|w| w[0] == b"-name" && w[1] == name.as_bytes())
        {
            pids.push(pid);
        }
    }
    pids
}

/// Waits (bounded) until the VM of `sandbox_id` has no process left; answers what is left.
pub async fn wait_no_vm(sandbox_id: &str, limit: Duration) -> Vec<i32> {
    let end = Instant::now() + limit;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let left = vm_processes(sandbox_id);
        if left.is_empty() || Instant::now() >= end {
            return left;
        }
    }
}

/// The reference gateway started as a process with `--driver vm`.
pub struct Gateway {
    pub endpoint: String,
    pub child: tokio::process::Child,
    pub state: tempfile::TempDir,
}

impl Gateway {
    pub async fn start() -> anyhow::Result<Gateway> {
        let state = tempfile::Builder::new()
            .prefix("vm-driver-test-")
            .tempdir()?;
        let mut child = tokio::process::Command::new(bin_dir().join("openshell-gateway"))
            .args([
                "--driver",
                "vm",
                "--listen",
                "127.0.0.1:0",
                "--db",
                ":memory:",
            ])
            .arg("--state-dir")
            .arg(state.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .context("the gateway's first line")??
            .context("the gateway exited")?;
        let addr = first
            .strip_prefix("openshell-gateway listening on ")
            .context("listening line")?
            .to_string();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Gateway {
            endpoint: format!("http://{addr}"),
            child,
            state,
        })
    }

    pub async fn client(&self) -> anyhow::Result<OpenShellClient<Channel>> {
        Ok(OpenShellClient::connect(self.endpoint.clone()).await?)
    }

    /// Creates a sandbox of `image` (with `command`, when not empty); answers its id.
    pub async fn create(
        &self,
        name: &str,
        image: &str,
        command: &[&str],
    ) -> anyhow::Result<String> {
        let request = CreateSandboxRequest {
            name: name.into(),
            spec: Some(SandboxSpec {
                command: command.iter().map(|s| s.to_string()).collect(),
                template: Some(SandboxTemplate {
                    image: image.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let created = self
            .client()
            .await?
            .create_sandbox(request)
            .await?
            .into_inner();
        Ok(created
            .sandbox
            .and_then(|s| s.metadata)
            .map(|m| m.id)
            .unwrap_or_default())
    }

    /// Watches `name` until Ready or Error; answers the last snapshot and the backend's lines.
    pub async fn settle(&self, name: &str) -> anyhow::Result<(Sandbox, Vec<String>)> {
        self.watch(name, true).await
    }

    /// Watches `name` until Error (through Ready, for a main process that exits).
    pub async fn until_error(&self, name: &str) -> anyhow::Result<(Sandbox, Vec<String>)> {
        self.watch(name, false).await
    }

    async fn watch(
        &self,
        name: &str,
        stop_at_ready: bool,
    ) -> anyhow::Result<(Sandbox, Vec<String>)> {
        let request = WatchSandboxRequest {
            id: name.into(),
            follow_status: true,
            follow_logs: true,
            stop_on_terminal: stop_at_ready,
            ..Default::default()
        };
        let mut stream = self
            .client()
            .await?
            .watch_sandbox(request)
            .await?
            .into_inner();
        let mut last = None;
        let mut logs = Vec::new();
        let end = Instant::now() + DEADLINE;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let Ok(event) = tokio::time::timeout(left, stream.message()).await else {
                bail!("{name}: no Ready or Error within {DEADLINE:?}; logs: {logs:?}");
            };
            match event?.and_then(|e| e.payload) {
                Some(sandbox_stream_event::Payload::Sandbox(sb)) => {
                    let error = outcome(&sb).0 == "SANDBOX_PHASE_ERROR";
                    last = Some(sb);
                    if error && !stop_at_ready {
                        break;
                    }
                }
                Some(sandbox_stream_event::Payload::Log(line)) => logs.push(line.message),
                Some(_) => {}
                None => break,
            }
        }
        Ok((last.context("no snapshot")?, logs))
    }

    /// Deletes `name`.
    pub async fn delete(&self, name: &str) -> anyhow::Result<()> {
        let request = openshell_proto::v1::DeleteSandboxRequest {
            name: name.into(),
            ..Default::default()
        };
        self.client().await?.delete_sandbox(request).await?;
        Ok(())
    }
}

/// (phase, reason, message, exit code) of a snapshot.
pub fn outcome(sb: &Sandbox) -> (String, String, String, Option<i32>) {
    let status = sb.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready")
        .cloned()
        .unwrap_or_default();
    (
        status.phase().as_str_name().to_string(),
        ready.reason,
        ready.message,
        status.exit_code,
    )
}
