//! The Docker driver against the real dockerd, on runc and on runsc (gVisor).
//!
//! Lanes: `docker` (runc) and `docker-runsc`. A lane whose prerequisite is missing (no engine
//! socket, no `runsc` runtime) skips with a printed reason, unless `OPENSHELL_REQUIRE_LANES`
//! names it: then the test fails. The sandboxes run a stand-in image (busybox as the entrypoint)
//! so these tests exercise the driver, not the supervisor. Events are awaited with deadlines
//! (upper bounds far above the expected times), never with sleeps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bollard::query_parameters::{InspectContainerOptions, RemoveContainerOptions};
use openshell_driver::{ComputeDriver, DriverError, DriverEvent, EventReceiver, SandboxRequest};
use openshell_driver_docker::{DockerConfig, DockerDriver};
use openshell_fixtures::{Catalog, Expectation, Fixture, Inputs};
use openshell_images::docker as images;
use tokio::sync::mpsc;

const SOCKET: &str = "/var/run/docker.sock";
const RUN_ID: &str = "driver-docker-tests";
/// Upper bound for any one expected event.
const DEADLINE: Duration = Duration::from_secs(30);

fn lane_required(lane: &str) -> bool {
    std::env::var("OPENSHELL_REQUIRE_LANES")
        .unwrap_or_default()
        .split(',')
        .any(|l| l.trim() == lane)
}

/// The engine for `lane` (`docker` or `docker-runsc`), or `None` (printed) when it may be skipped.
async fn lane(lane: &str) -> anyhow::Result<Option<bollard::Docker>> {
    let skip = |reason: String| -> anyhow::Result<Option<bollard::Docker>> {
        if lane_required(lane) {
            bail!("OPENSHELL_REQUIRE_LANES names {lane} but {reason} (run ci/setup-docker.sh)");
        }
        eprintln!("SKIPPED lane {lane}: {reason}; run ci/setup-docker.sh as root to enable");
        Ok(None)
    };
    if !Path::new(SOCKET).exists() {
        return skip(format!("{SOCKET} is absent"));
    }
    let docker = images::connect(None)?;
    if lane == "docker-runsc" {
        let info = docker.info().await.context("docker info")?;
        if !info.runtimes.unwrap_or_default().contains_key("runsc") {
            return skip("the engine has no runsc runtime".into());
        }
    }
    Ok(Some(docker))
}

fn busybox_inputs() -> Inputs {
    let busybox = PathBuf::from("/bin/busybox");
    Inputs {
        supervisor: busybox.clone(),
        busybox: busybox.clone(),
        probe: busybox,
        extra_tree: None,
    }
}

/// Builds (once) a stand-in image: the base fixture tree with `entrypoint` and `command`.
async fn stand_in(
    docker: &bollard::Docker,
    name: &str,
    entrypoint: &str,
    command: &[&str],
) -> anyhow::Result<String> {
    let catalog = Catalog::load_default()?;
    let fixture = Fixture {
        name: name.to_string(),
        description: "driver test stand-in".into(),
        entrypoint: Some(vec![entrypoint.to_string()]),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::from([("STANDIN".to_string(), "yes".to_string())]),
        expect: Expectation {
            phase: openshell_fixtures::ExpectedPhase::Error,
            reason: openshell_proto::ReadyReason::ProcessExited,
            message: None,
            exit_code: None,
            ready_first: false,
        },
    };
    Ok(images::build_image(&catalog, &fixture, &busybox_inputs(), docker).await?)
}

async fn exiting_image(docker: &bollard::Docker) -> anyhow::Result<String> {
    stand_in(
        docker,
        "driver-standin",
        "/bin/busybox",
        &["sh", "-c", "echo hi; echo oops >&2; exit 5"],
    )
    .await
}

/// Removes a sandbox's container when a test ends early (a failed assertion), so failures leave
/// nothing behind; a test that got as far as its own delete finds nothing to remove.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker")
            .args(["rm", "-f", &format!("openshell-{}", self.0)])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn request(image: &str, runtime: Option<&str>, command: &[&str]) -> SandboxRequest {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let sandbox_id = format!(
        "dt-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    SandboxRequest {
        sandbox_id: sandbox_id.clone(),
        name: sandbox_id.clone(),
        image: image.to_string(),
        runtime_class: runtime.map(str::to_string),
        command: command.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::from([("OPENSHELL_SANDBOX_ID".to_string(), sandbox_id.clone())]),
        labels: BTreeMap::from([
            ("openshell.sandbox-id".to_string(), sandbox_id),
            ("openshell.run-id".to_string(), RUN_ID.to_string()),
        ]),
    }
}

fn driver(default_runtime: &str) -> anyhow::Result<(DockerDriver, EventReceiver)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let config = DockerConfig {
        docker_host: None,
        default_runtime: default_runtime.to_string(),
    };
    Ok((DockerDriver::connect(config, tx)?, rx))
}

/// Receives events until one matches; returns it and everything seen before it.
async fn until(
    rx: &mut EventReceiver,
    what: &str,
    matches: impl Fn(&DriverEvent) -> bool,
) -> anyhow::Result<(DriverEvent, Vec<DriverEvent>)> {
    let mut seen = Vec::new();
    let wait = async {
        while let Some(event) = rx.recv().await {
            if matches(&event) {
                return Some(event);
            }
            seen.push(event);
        }
        None
    };
    match tokio::time::timeout(DEADLINE, wait).await {
        Ok(Some(event)) => Ok((event, seen)),
        Ok(None) => bail!("event channel closed waiting for {what}; saw {seen:?}"),
        Err(_) => bail!("no {what} within {DEADLINE:?}; saw {seen:?}"),
    }
}

/// Runs the exiting stand-in on `runtime` and checks Running, Output, Exited, labels and delete.
async fn runs_and_reports(docker: &bollard::Docker, runtime: &str) -> anyhow::Result<()> {
    let image = exiting_image(docker).await?;
    let (driver, mut rx) = driver(runtime)?;
    let req = request(&image, None, &[]);
    let id = req.sandbox_id.clone();
    let _cleanup = Cleanup(id.clone());

    let started = Instant::now();
    driver.create(req).await?;
    let returned = started.elapsed();
    until(&mut rx, "Running", |e| {
        matches!(e, DriverEvent::Running { .. })
    })
    .await?;
    let running = started.elapsed();
    let (exited, before) = until(&mut rx, "Exited", |e| {
        matches!(e, DriverEvent::Exited { .. })
    })
    .await?;
    eprintln!("{runtime}: create returned after {returned:?}, Running after {running:?}");
    assert_eq!(
        exited,
        DriverEvent::Exited {
            sandbox_id: id.clone(),
            exit_code: 5
        }
    );
    let lines: Vec<&str> = before
        .iter()
        .filter_map(|e| match e {
            DriverEvent::Output { line, .. } => Some(line.as_str()),
            _ => None,
        })
        .collect();
    assert!(
        lines.contains(&"hi") && lines.contains(&"oops"),
        "stdout and stderr lines before Exited: {before:?}"
    );
    let tail = driver.output_tail(&id);
    assert!(
        tail.iter().any(|l| l == "hi") && tail.iter().any(|l| l == "oops"),
        "kept tail: {tail:?}"
    );

    let container = docker
        .inspect_container(&format!("openshell-{id}"), None::<InspectContainerOptions>)
        .await?;
    let labels = container.config.and_then(|c| c.labels).unwrap_or_default();
    assert_eq!(labels.get("openshell.sandbox-id"), Some(&id));
    assert_eq!(
        labels.get("openshell.run-id").map(String::as_str),
        Some(RUN_ID)
    );
    let host = container.host_config.context("no host config")?;
    assert_eq!(host.network_mode.as_deref(), Some("host"));
    assert_eq!(host.runtime.as_deref(), Some(runtime));

    assert!(driver.exists(&id).await?);
    assert!(driver.delete(&id).await?, "delete removes the container");
    assert!(!driver.exists(&id).await?);
    assert!(!driver.delete(&id).await?, "a second delete finds nothing");
    Ok(())
}

#[tokio::test]
async fn runc_container_reports_running_output_and_exit_code_then_delete_removes_it(
) -> anyhow::Result<()> {
    let Some(docker) = lane("docker").await? else {
        return Ok(());
    };
    runs_and_reports(&docker, "runc").await
}

#[tokio::test]
async fn runsc_container_reports_running_output_and_exit_code_then_delete_removes_it(
) -> anyhow::Result<()> {
    let Some(docker) = lane("docker-runsc").await? else {
        return Ok(());
    };
    runs_and_reports(&docker, "runsc").await
}

#[tokio::test]
async fn request_command_and_runtime_class_override_the_defaults() -> anyhow::Result<()> {
    let Some(docker) = lane("docker-runsc").await? else {
        return Ok(());
    };
    let image = exiting_image(&docker).await?;
    let (driver, mut rx) = driver("runc")?;
    let req = request(
        &image,
        Some("runsc"),
        &["sh", "-c", "echo standin=$STANDIN; exit 3"],
    );
    let id = req.sandbox_id.clone();
    let _cleanup = Cleanup(id.clone());
    driver.create(req).await?;
    let (exited, before) = until(&mut rx, "Exited", |e| {
        matches!(e, DriverEvent::Exited { .. })
    })
    .await?;
    assert_eq!(
        exited,
        DriverEvent::Exited {
            sandbox_id: id.clone(),
            exit_code: 3
        }
    );
    assert!(
        before.contains(&DriverEvent::Output {
            sandbox_id: id.clone(),
            line: "standin=yes".into()
        }),
        "{before:?}"
    );
    let container = docker
        .inspect_container(&format!("openshell-{id}"), None::<InspectContainerOptions>)
        .await?;
    assert_eq!(
        container.host_config.and_then(|h| h.runtime).as_deref(),
        Some("runsc")
    );
    assert!(driver.delete(&id).await?);
    Ok(())
}

#[tokio::test]
async fn container_removed_behind_the_drivers_back_is_gone() -> anyhow::Result<()> {
    let Some(docker) = lane("docker").await? else {
        return Ok(());
    };
    let image = exiting_image(&docker).await?;
    let (driver, mut rx) = driver("runc")?;
    let req = request(&image, None, &["sh", "-c", "echo up; exec sleep 600"]);
    let id = req.sandbox_id.clone();
    let _cleanup = Cleanup(id.clone());
    driver.create(req).await?;
    until(&mut rx, "Running", |e| {
        matches!(e, DriverEvent::Running { .. })
    })
    .await?;
    let options = RemoveContainerOptions {
        force: true,
        ..Default::default()
    };
    docker
        .remove_container(&format!("openshell-{id}"), Some(options))
        .await?;
    until(&mut rx, "Gone", |e| {
        *e == DriverEvent::Gone {
            sandbox_id: id.clone(),
        }
    })
    .await?;
    assert!(!driver.delete(&id).await?);
    Ok(())
}

#[tokio::test]
async fn deleting_a_running_sandbox_keeps_its_output_and_reports_no_exit() -> anyhow::Result<()> {
    let Some(docker) = lane("docker").await? else {
        return Ok(());
    };
    let image = exiting_image(&docker).await?;
    let (driver, mut rx) = driver("runc")?;
    let req = request(
        &image,
        None,
        &["sh", "-c", "echo before-delete; exec sleep 600"],
    );
    let id = req.sandbox_id.clone();
    let _cleanup = Cleanup(id.clone());
    driver.create(req).await?;
    until(
        &mut rx,
        "its output",
        |e| matches!(e, DriverEvent::Output { line, .. } if line == "before-delete"),
    )
    .await?;
    assert!(driver.delete(&id).await?);
    assert_eq!(
        driver.output_tail(&id),
        Vec::<String>::new(),
        "the tail is dropped with the sandbox"
    );
    drop(driver);
    let rest: Vec<DriverEvent> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
    assert!(
        !rest
            .iter()
            .any(|e| matches!(e, DriverEvent::Exited { .. } | DriverEvent::Gone { .. })),
        "a deleted sandbox reports no exit and is not Gone: {rest:?}"
    );
    Ok(())
}

#[tokio::test]
async fn missing_image_is_image_not_found() -> anyhow::Result<()> {
    let Some(_docker) = lane("docker").await? else {
        return Ok(());
    };
    let (driver, _rx) = driver("runc")?;
    let req = request("openshell-fixture/absent:000000000000", None, &[]);
    let id = req.sandbox_id.clone();
    let _cleanup = Cleanup(id.clone());
    match driver.create(req).await {
        Err(DriverError::ImageNotFound { image, detail }) => {
            assert_eq!(image, "openshell-fixture/absent:000000000000");
            assert!(detail.contains("absent"), "{detail}");
        }
        other => bail!("expected ImageNotFound, got {other:?}"),
    }
    assert!(!driver.exists(&id).await?);
    Ok(())
}

#[tokio::test]
async fn unknown_runtime_is_unavailable() -> anyhow::Result<()> {
    let Some(docker) = lane("docker").await? else {
        return Ok(());
    };
    let image = exiting_image(&docker).await?;
    let (driver, _rx) = driver("runc")?;
    let req = request(&image, Some("no-such-runtime"), &[]);
    match driver.create(req).await {
        Err(DriverError::Unavailable(message)) => {
            assert!(message.contains("no-such-runtime"), "{message}")
        }
        other => bail!("expected Unavailable, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn entrypoint_that_cannot_run_is_start_failed() -> anyhow::Result<()> {
    let Some(docker) = lane("docker").await? else {
        return Ok(());
    };
    let image = stand_in(&docker, "driver-standin-noexec", "/nonexistent", &["x"]).await?;
    let (driver, _rx) = driver("runc")?;
    let req = request(&image, None, &[]);
    let id = req.sandbox_id.clone();
    let _cleanup = Cleanup(id.clone());
    match driver.create(req).await {
        Err(DriverError::StartFailed(message)) => {
            assert!(message.contains("/nonexistent"), "{message}")
        }
        other => bail!("expected StartFailed, got {other:?}"),
    }
    assert!(
        driver.delete(&id).await?,
        "the created container is removed by delete"
    );
    Ok(())
}

#[tokio::test]
async fn unreachable_engine_is_unavailable_within_seconds() -> anyhow::Result<()> {
    let (tx, _rx) = mpsc::unbounded_channel();
    let config = DockerConfig {
        docker_host: Some("unix:///nonexistent/docker.sock".into()),
        default_runtime: "runc".into(),
    };
    let driver = DockerDriver::connect(config, tx)?;
    let started = Instant::now();
    let created = driver
        .create(request("openshell-fixture/good:000000000000", None, &[]))
        .await;
    assert!(
        matches!(&created, Err(DriverError::Unavailable(m)) if m.contains("/nonexistent/docker.sock")),
        "{created:?}"
    );
    assert!(matches!(
        driver.exists("x").await,
        Err(DriverError::Unavailable(_))
    ));
    assert!(matches!(
        driver.delete("x").await,
        Err(DriverError::Unavailable(_))
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}
