//! Shared harness of the integration tests: a driver over a temporary state directory, with the
//! crate's stand-in supervisor, and helpers that wait on driver events with deadlines.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use openshell_driver::{DriverEvent, EventReceiver, SandboxRequest};
use openshell_driver_process::{ProcessConfig, ProcessDriver};
use openshell_fixtures::{content_hash, image_ref, Catalog, Inputs};

/// The longest any single wait of these tests may take.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub struct Harness {
    pub driver: ProcessDriver,
    pub events: EventReceiver,
    pub state: tempfile::TempDir,
    pub catalog: Catalog,
    pub inputs: Inputs,
}

/// The stand-in supervisor built from `src/bin/fake_supervisor.rs`.
pub fn fake_supervisor() -> PathBuf {
    PathBuf::from(env!(
        "CARGO_BIN_EXE_openshell-driver-process-fake-supervisor"
    ))
}

pub fn inputs_with(supervisor: &Path) -> Inputs {
    Inputs {
        supervisor: supervisor.to_path_buf(),
        busybox: "/bin/busybox".into(),
        probe: fake_supervisor(),
        extra_tree: None,
    }
}

pub fn harness() -> anyhow::Result<Harness> {
    harness_with(&fake_supervisor())
}

pub fn harness_with(supervisor: &Path) -> anyhow::Result<Harness> {
    let state = tempfile::tempdir()?;
    let catalog = Catalog::load_default()?;
    let inputs = inputs_with(supervisor);
    let (tx, events) = tokio::sync::mpsc::unbounded_channel();
    let config = ProcessConfig {
        state_dir: state.path().to_path_buf(),
        catalog: catalog.clone(),
        inputs: inputs.clone(),
    };
    let driver = ProcessDriver::new(config, tx).context("the process driver tests run as root")?;
    Ok(Harness {
        driver,
        events,
        state,
        catalog,
        inputs,
    })
}

impl Harness {
    /// The image reference of `fixture` with this harness's inputs.
    pub fn image(&self, fixture: &str) -> anyhow::Result<String> {
        let hash = content_hash(&self.catalog, self.catalog.get(fixture)?, &self.inputs)?;
        Ok(image_ref(fixture, &hash))
    }

    pub fn request(
        &self,
        id: &str,
        fixture: &str,
        command: &[&str],
    ) -> anyhow::Result<SandboxRequest> {
        Ok(SandboxRequest {
            sandbox_id: id.to_string(),
            name: id.to_string(),
            image: self.image(fixture)?,
            runtime_class: None,
            command: command.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            labels: BTreeMap::from([("openshell.sandbox-id".to_string(), id.to_string())]),
        })
    }

    pub fn root(&self, id: &str) -> PathBuf {
        self.state
            .path()
            .canonicalize()
            .unwrap()
            .join("roots")
            .join(id)
    }

    pub fn labels(&self, id: &str) -> PathBuf {
        self.state
            .path()
            .canonicalize()
            .unwrap()
            .join("roots")
            .join(format!("{id}.labels.json"))
    }

    /// The next event, or an error after [`DEADLINE`].
    pub async fn next_event(&mut self) -> anyhow::Result<DriverEvent> {
        match tokio::time::timeout(DEADLINE, self.events.recv()).await {
            Ok(Some(event)) => Ok(event),
            Ok(None) => bail!("the driver's event channel closed"),
            Err(_) => bail!("no driver event within {DEADLINE:?}"),
        }
    }

    /// Every output line up to the `Exited` event, and the exit code; checks `Running` came first.
    pub async fn run_to_exit(&mut self, id: &str) -> anyhow::Result<(Vec<String>, i32)> {
        let mut lines = Vec::new();
        let mut running = false;
        loop {
            match self.next_event().await? {
                DriverEvent::Running { sandbox_id } if sandbox_id == id => running = true,
                DriverEvent::Output { sandbox_id, line } if sandbox_id == id => {
                    anyhow::ensure!(running, "output {line:?} before Running");
                    lines.push(line);
                }
                DriverEvent::Exited {
                    sandbox_id,
                    exit_code,
                } if sandbox_id == id => return Ok((lines, exit_code)),
                other => bail!("unexpected event {other:?} (output so far: {lines:#?})"),
            }
        }
    }

    /// Output lines until one satisfies `done` (which is returned with those before it).
    pub async fn output_until(
        &mut self,
        id: &str,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Vec<String>> {
        let mut lines = Vec::new();
        loop {
            match self.next_event().await? {
                DriverEvent::Running { sandbox_id } if sandbox_id == id => {}
                DriverEvent::Output { sandbox_id, line } if sandbox_id == id => {
                    let last = done(&line);
                    lines.push(line);
                    if last {
                        return Ok(lines);
                    }
                }
                other => bail!("unexpected event {other:?} (output so far: {lines:#?})"),
            }
        }
    }
}
