//! The CLI against the real reference gateway (a process, started as a user would), the real
//! supervisor and real fixture roots or images: seed 000's user-facing promise, "the CLI shows
//! the message at once". Process lane always (root); Docker lane when the engine answers and the
//! fixture images are built, required when `OPENSHELL_REQUIRE_LANES` lists `docker`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Far above the expected ~0.2 s; only guards against waiting for a timeout.
const AT_ONCE: Duration = Duration::from_secs(10);

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_openshell"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture_ref(name: &str) -> String {
    let dir = bin_dir();
    let inputs = openshell_fixtures::Inputs::beside(&dir);
    for path in [
        &inputs.supervisor,
        &inputs.probe,
        &dir.join("openshell-gateway"),
    ] {
        assert!(
            path.exists(),
            "{} is missing: run `cargo build --workspace` first",
            path.display()
        );
    }
    let catalog = openshell_fixtures::Catalog::load_default().unwrap();
    let hash =
        openshell_fixtures::content_hash(&catalog, catalog.get(name).unwrap(), &inputs).unwrap();
    openshell_fixtures::image_ref(name, &hash)
}

struct Gateway {
    child: Child,
    url: String,
    _state: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn gateway(driver: &str) -> Gateway {
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin_dir().join("openshell-gateway"))
        .args([
            "--driver",
            driver,
            "--listen",
            "127.0.0.1:0",
            "--db",
            ":memory:",
            "--state-dir",
        ])
        .arg(state.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("openshell-gateway listening on ")
        .unwrap_or_else(|| panic!("first line {line:?}"));
    Gateway {
        url: format!("http://{addr}"),
        child,
        _state: state,
    }
}

fn create(gw: &Gateway, image: &str, name: &str) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_openshell"))
        .args([
            "--gateway",
            &gw.url,
            "sandbox",
            "create",
            "--from",
            image,
            "--name",
            name,
        ])
        .output()
        .unwrap();
    (out, started.elapsed())
}

fn stale_policy_error_is_shown_at_once(driver: &str) {
    let gw = gateway(driver);
    let (out, took) = create(&gw, &fixture_ref("stale-policy"), "stale");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(
        stderr.contains("Error: SupervisorError: policy: /etc/openshell/policy.yaml"),
        "{stderr}"
    );
    assert!(stderr.contains("inference"), "{stderr}");
    assert!(
        took < AT_ONCE,
        "took {took:?}: the CLI waited instead of showing the error at once"
    );

    let (out, _) = create(&gw, &fixture_ref("good"), "good");
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "good");
    for name in ["stale", "good"] {
        let deleted = Command::new(env!("CARGO_BIN_EXE_openshell"))
            .args(["--gateway", &gw.url, "sandbox", "delete", name])
            .status()
            .unwrap();
        assert!(deleted.success());
    }
}

#[test]
fn process_lane_stale_policy_error_is_shown_at_once_and_good_is_ready() {
    stale_policy_error_is_shown_at_once("process");
}

#[test]
fn docker_lane_stale_policy_error_is_shown_at_once_and_good_is_ready() {
    let required = std::env::var("OPENSHELL_REQUIRE_LANES")
        .unwrap_or_default()
        .split(',')
        .any(|l| l.trim() == "docker");
    let images_present = ["stale-policy", "good"].iter().all(|name| {
        Command::new("docker")
            .args(["image", "inspect", &fixture_ref(name)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    });
    if !images_present {
        let why = "docker engine unreachable or fixture images not built (openshell-conformance images --build)";
        assert!(!required, "required lane docker cannot run: {why}");
        println!("SKIPPED docker lane: {why}");
        return;
    }
    stale_policy_error_is_shown_at_once("docker");
}
