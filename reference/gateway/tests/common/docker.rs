//! Docker for the fault tests: lane gating, fixture references, the `docker` CLI, and a private
//! dockerd of a test's own (own data root, exec root, pidfile and socket; no bridge, no
//! iptables) that the test may stop and start, never the shared engine the other lanes use.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// The directory of the workspace's binaries.
pub fn bin_dir() -> PathBuf {
    super::process::binary().parent().unwrap().to_path_buf()
}

/// `openshell-fixture/<name>:<hash>` for this build's supervisor and probe.
pub fn fixture_ref(name: &str) -> String {
    let inputs = openshell_fixtures::Inputs::beside(&bin_dir());
    let catalog = openshell_fixtures::Catalog::load_default().unwrap();
    let hash =
        openshell_fixtures::content_hash(&catalog, catalog.get(name).unwrap(), &inputs).unwrap();
    openshell_fixtures::image_ref(name, &hash)
}

/// Whether `OPENSHELL_REQUIRE_LANES` lists `lane`.
pub fn required(lane: &str) -> bool {
    std::env::var("OPENSHELL_REQUIRE_LANES")
        .unwrap_or_default()
        .split(',')
        .any(|l| l.trim() == lane)
}

/// `Some(reason)` when the docker lane cannot run here (a failure when it is required).
pub fn docker_lane_missing(images: &[&str]) -> Option<String> {
    let missing: Vec<String> = images
        .iter()
        .map(|name| fixture_ref(name))
        .filter(|r| !docker(None, &["image", "inspect", r]).0)
        .collect();
    if missing.is_empty() {
        return None;
    }
    let why = format!(
        "docker engine unreachable or fixture images not built ({}; run openshell-conformance images --build)",
        missing.join(", ")
    );
    assert!(
        !required("docker"),
        "required lane docker cannot run: {why}"
    );
    println!("SKIPPED docker lane: {why}");
    Some(why)
}

/// Runs `docker [-H host] args…`; (success, stdout).
pub fn docker(host: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut command = Command::new("docker");
    if let Some(host) = host {
        command.args(["-H", host]);
    }
    match command.args(args).stderr(Stdio::null()).output() {
        Ok(out) => (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        ),
        Err(_) => (false, String::new()),
    }
}

/// Names of the containers (any state) carrying `label` (`key=value`).
pub fn containers_labelled(host: Option<&str>, label: &str) -> Vec<String> {
    let (_, out) = docker(
        host,
        &[
            "ps",
            "-a",
            "--filter",
            &format!("label={label}"),
            "--format",
            "{{.Names}}",
        ],
    );
    out.lines().map(str::to_string).collect()
}

/// A `docker events` stream of container destroys, read on a helper thread.
pub struct Destroys {
    child: Child,
    names: mpsc::Receiver<String>,
}

impl Destroys {
    /// Starts watching (before the removals it is meant to see).
    pub fn watch(host: Option<&str>) -> Destroys {
        let mut command = Command::new("docker");
        if let Some(host) = host {
            command.args(["-H", host]);
        }
        let mut child = command
            .args([
                "events",
                "--filter",
                "type=container",
                "--filter",
                "event=destroy",
                "--format",
                "{{.Actor.Attributes.name}}",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (tx, names) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line.trim().to_string()).is_err() {
                    return;
                }
            }
        });
        Destroys { child, names }
    }

    /// Waits until every container of `names` that `still_there` reports is destroyed.
    pub fn until_gone(
        &self,
        mut remaining: Vec<String>,
        within: Duration,
        still_there: impl Fn() -> Vec<String>,
    ) -> Result<(), Vec<String>> {
        let deadline = std::time::Instant::now() + within;
        // Only those that exist now need an event (the watch started before any removal).
        let present = still_there();
        remaining.retain(|n| present.contains(n));
        while !remaining.is_empty() {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.names.recv_timeout(left) {
                Ok(name) => remaining.retain(|n| *n != name),
                Err(_) => return Err(remaining),
            }
        }
        Ok(())
    }
}

impl Drop for Destroys {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A dockerd of the test's own.
pub struct PrivateDockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrivateDockerd {
    /// Starts it in a fresh temporary directory (short: the socket paths must fit).
    pub fn start() -> PrivateDockerd {
        let dir = tempfile::Builder::new()
            .prefix("osd")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::write(
            dir.path().join("daemon.json"),
            r#"{"bridge":"none","iptables":false,"ip6tables":false,"ip-forward":false,"ip-masq":false}"#,
        )
        .unwrap();
        let mut engine = PrivateDockerd { dir, child: None };
        engine.run();
        engine
    }

    /// `unix:///tmp/osdXXXX/docker.sock`.
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Starts the daemon (again) and waits for its "API listen on" line.
    pub fn run(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut child = Command::new("dockerd")
            .arg("--config-file")
            .arg(self.path("daemon.json"))
            .arg("--data-root")
            .arg(self.path("data"))
            .arg("--exec-root")
            .arg(self.path("exec"))
            .arg("--pidfile")
            .arg(self.path("docker.pid"))
            .arg("-H")
            .arg(self.host())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dockerd (bash ci/setup-docker.sh installs it)");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let log = self.path("dockerd.log");
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                use std::io::Write;
                let _ = writeln!(file, "{line}");
                if line.contains("API listen on") {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        if rx.recv_timeout(Duration::from_secs(60)).is_err() {
            panic!(
                "the private dockerd did not come up; its log:\n{}",
                std::fs::read_to_string(self.path("dockerd.log")).unwrap_or_default()
            );
        }
    }

    /// Stops the daemon (SIGTERM, as an operator's `systemctl stop`) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = child.wait();
        }
    }

    /// Copies `image` from the shared engine into this one.
    pub fn load_from_shared(&self, image: &str) {
        let mut save = Command::new("docker")
            .args(["save", image])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let load = Command::new("docker")
            .args(["-H", &self.host(), "load", "-q"])
            .stdin(save.stdout.take().unwrap())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            save.wait().unwrap().success() && load.success(),
            "loading {image}"
        );
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        self.stop();
        // Whatever the daemon left mounted under its own directory, then the directory.
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
        let root = self.dir.path().display().to_string();
        let mut ours: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split_whitespace().nth(1))
            .filter(|m| m.starts_with(&root))
            .collect();
        ours.sort_by_key(|m| std::cmp::Reverse(m.len()));
        for mount in ours {
            let _ = nix::mount::umount2(mount, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}
