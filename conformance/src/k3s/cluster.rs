//! Booting the lane's k3s cluster (testcontainers-modules' `K3s`) and sharing it.
//!
//! **One cluster per run.** A `run --driver k3s` boots one cluster for all its cases and removes
//! it at the end ([`Scope::Run`]). Under nextest every case is its own process, so the cluster is
//! shared by the nextest run ([`Scope::Nextest`], keyed by `NEXTEST_RUN_ID`): the first test
//! takes an exclusive `flock` on `$TMPDIR/openshell-k3s-<run id>/lock`, boots the cluster and
//! writes `cluster.json` (container id, kubeconfig); every later test takes the same lock, finds
//! the running container and uses its kubeconfig. No test knows it is the last, so the first one
//! also starts a reaper (`openshell-conformance k3s-reap`, detached, output to
//! `reaper.log`), which removes the container and the directory once the nextest process
//! (the tests' parent) has ended.
//!
//! **The cluster.** The image is run privileged with the host's network (these dockerds have no
//! bridge, so there is no mapped port), with its own API port (`--https-listen-port`, a free pair
//! of ports: k3s puts its internal apiserver on the next one) and with k3s kept off the host's
//! network: `--flannel-backend=none --disable-network-policy --disable-kube-proxy
//! --disable=traefik,servicelb,coredns,metrics-server,local-storage`. Sandbox Pods then run with
//! `hostNetwork: true` and reach the gateway on 127.0.0.1. The node has no CNI and stays
//! `NotReady`; the driver's host-network mode tolerates that taint, and the kubelet runs
//! host-network Pods without a CNI. The kubelet, scheduler and controller ports stay k3s's
//! fixed ones (10250, 10257-10259), so one such cluster runs per machine at a time.
//!
//! **Images.** No registry is reachable: the fixture images and the [`pause`] image are built
//! in the local Docker engine, written as one `docker save` tarball into a directory mounted at
//! `/var/lib/rancher/k3s/agent/images` *before* boot (k3s imports that directory when its agent
//! starts; importing into a running k3s needs 1.32 or later), and the driver uses
//! `imagePullPolicy: Never`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use openshell_fixtures::{Catalog, Inputs};
use testcontainers_modules::k3s::K3s;
use testcontainers_modules::testcontainers::core::Mount;
use testcontainers_modules::testcontainers::runners::AsyncRunner;
use testcontainers_modules::testcontainers::{ImageExt, ReuseDirective};

use super::pause;

/// Where k3s imports image tarballs from when its agent starts.
pub const IMAGES_DIR: &str = "/var/lib/rancher/k3s/agent/images";
/// How long the k3s container may take to report "Node controller sync successful".
const BOOT_LIMIT: Duration = Duration::from_secs(240);
/// The label on the cluster container (its value: the scope's key).
pub const CLUSTER_LABEL: &str = "openshell.k3s-cluster";

/// Who shares the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// This process's run only; removed when the run ends.
    Run,
    /// Every test process of one nextest run (its `NEXTEST_RUN_ID`).
    Nextest(String),
}

impl Scope {
    /// `Nextest` under nextest, else `Run`.
    pub fn current() -> Scope {
        match std::env::var("NEXTEST_RUN_ID") {
            Ok(id) if !id.trim().is_empty() => Scope::Nextest(id),
            _ => Scope::Run,
        }
    }

    fn key(&self) -> String {
        match self {
            Scope::Run => format!(
                "run-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            Scope::Nextest(id) => format!("nextest-{id}"),
        }
    }

    /// The process whose end ends the cluster: this one, or nextest (the tests' parent).
    fn owner(&self) -> u32 {
        match self {
            Scope::Run => std::process::id(),
            Scope::Nextest(_) => std::os::unix::process::parent_id(),
        }
    }
}

/// What `cluster.json` records.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct State {
    container: String,
    kubeconfig: PathBuf,
    image: String,
    port: u16,
}

/// A running cluster of the lane.
#[derive(Debug)]
pub struct Cluster {
    /// Its kubeconfig (server `https://127.0.0.1:<port>`).
    pub kubeconfig: PathBuf,
    /// For the report.
    pub description: String,
    container: String,
    scope: Scope,
    dir: PathBuf,
}

/// The cluster of `scope`: the running one, or a new one booted from `image` with the fixture
/// images `references` (built first from `catalog` and `inputs`) loaded.
pub async fn acquire(
    image: &str,
    scope: Scope,
    catalog: &Catalog,
    inputs: &Inputs,
    references: &[String],
) -> Result<Cluster, String> {
    let key = scope.key();
    let dir = std::env::temp_dir().join(format!("openshell-k3s-{key}"));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Held until this function returns: one process boots, the others wait and then find it.
    let _lock = lock(&dir.join("lock")).await?;
    let docker = openshell_images::docker::connect(None).map_err(|e| e.to_string())?;
    let state_path = dir.join("cluster.json");
    if let Some(state) = read_state(&state_path) {
        if running(&docker, &state.container).await && state.kubeconfig.exists() {
            return Ok(Cluster {
                description: describe(&state, &key, "shared"),
                kubeconfig: state.kubeconfig,
                container: state.container,
                scope,
                dir,
            });
        }
    }
    // 1. The images k3s must find at boot: fixtures and pause, one tarball.
    openshell_images::docker::build_all(catalog, inputs, &docker)
        .await
        .map_err(|e| format!("building the fixture images for k3s: {e}"))?;
    let pause = pause::build(&docker, &inputs.busybox).await?;
    let images = dir.join("images");
    std::fs::create_dir_all(&images).map_err(|e| format!("{}: {e}", images.display()))?;
    let mut all = references.to_vec();
    all.push(pause.clone());
    openshell_images::docker::export_images(&docker, &all, &images.join("openshell.tar"))
        .await
        .map_err(|e| format!("exporting the fixture images for k3s: {e}"))?;
    // 2. Boot it on its own API port.
    let port = free_port_pair()?;
    let conf = dir.join("conf");
    std::fs::create_dir_all(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
    let container = boot(image, &key, port, &conf, &images, &pause).await?;
    let kubeconfig = conf.join("k3s.yaml");
    if !kubeconfig.exists() {
        remove(&docker, &container).await;
        return Err(format!(
            "k3s ({image}) booted but wrote no kubeconfig at {}",
            kubeconfig.display()
        ));
    }
    let state = State {
        container: container.clone(),
        kubeconfig: kubeconfig.clone(),
        image: image.to_string(),
        port,
    };
    let text = serde_json::to_string(&state).map_err(|e| e.to_string())?;
    std::fs::write(&state_path, text).map_err(|e| format!("{}: {e}", state_path.display()))?;
    // 3. Whoever owns the cluster may end without removing it (a killed run, the last nextest
    //    test): the reaper removes it after the owner.
    let reaper = spawn_reaper(&container, &dir, scope.owner());
    let mut description = describe(&state, &key, "booted");
    if let Err(e) = reaper {
        description.push_str(&format!(
            "; no reaper ({e}): remove container {container} by hand if the run is killed"
        ));
    }
    Ok(Cluster {
        kubeconfig,
        description,
        container,
        scope,
        dir,
    })
}

impl Cluster {
    /// Removes a cluster of [`Scope::Run`] now; a shared one is left to its reaper.
    pub async fn release(self) {
        if self.scope != Scope::Run {
            return;
        }
        if let Ok(docker) = openshell_images::docker::connect(None) {
            remove(&docker, &self.container).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn describe(state: &State, key: &str, how: &str) -> String {
    format!(
        "k3s {} ({how}, container {}, API https://127.0.0.1:{}, scope {key})",
        state.image,
        &state.container[..state.container.len().min(12)],
        state.port
    )
}

/// The k3s command line (see the module doc).
pub fn command(port: u16, pause_image: &str) -> Vec<String> {
    [
        "server".to_string(),
        "--snapshotter=native".to_string(),
        format!("--https-listen-port={port}"),
        "--flannel-backend=none".to_string(),
        "--disable-network-policy".to_string(),
        "--disable-kube-proxy".to_string(),
        "--disable=traefik,servicelb,coredns,metrics-server,local-storage".to_string(),
        format!("--pause-image={}", pause::qualified(pause_image)),
    ]
    .to_vec()
}

/// `name:tag` of an image reference (a registry port is not a tag).
pub fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}

async fn boot(
    image: &str,
    key: &str,
    port: u16,
    conf: &Path,
    images: &Path,
    pause: &str,
) -> Result<String, String> {
    let (name, tag) = split_image(image);
    let request = K3s::default()
        .with_conf_mount(conf)
        .with_name(name)
        .with_tag(tag)
        .with_privileged(true)
        .with_network("host")
        .with_mount(Mount::bind_mount(images.display().to_string(), IMAGES_DIR))
        .with_cmd(command(port, pause))
        .with_container_name(format!("openshell-k3s-{key}"))
        .with_label(CLUSTER_LABEL, key)
        // Not removed when this handle drops: the run (or the reaper) removes it.
        .with_reuse(ReuseDirective::Always)
        .with_startup_timeout(BOOT_LIMIT);
    let container = request
        .start()
        .await
        .map_err(|e| format!("booting k3s from {image}: {e}"))?;
    Ok(container.id().to_string())
}

/// Two free consecutive loopback ports (k3s's API port and its internal apiserver's).
fn free_port_pair() -> Result<u16, String> {
    for _ in 0..32 {
        let first = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let port = first.local_addr().map_err(|e| e.to_string())?.port();
        if port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Ok(port);
        }
    }
    Err("no two consecutive free loopback ports for k3s".into())
}

async fn lock(path: &Path) -> Result<File, String> {
    let file = File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let shown = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        // SAFETY: flock(2) on a descriptor this closure owns (through `file`) for the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc == 0 {
            Ok(file)
        } else {
            Err(format!(
                "flock {shown}: {}",
                std::io::Error::last_os_error()
            ))
        }
    })
    .await
    .map_err(|e| e.to_string())?
}

fn read_state(path: &Path) -> Option<State> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

async fn running(docker: &bollard::Docker, container: &str) -> bool {
    use bollard::query_parameters::InspectContainerOptions;
    docker
        .inspect_container(container, None::<InspectContainerOptions>)
        .await
        .ok()
        .and_then(|c| c.state)
        .and_then(|s| s.running)
        .unwrap_or(false)
}

async fn remove(docker: &bollard::Docker, container: &str) {
    use bollard::query_parameters::RemoveContainerOptions;
    let options = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    let _ = docker.remove_container(container, Some(options)).await;
}

/// The start time of a process (field 22 of `/proc/<pid>/stat`), to tell it from a later one
/// with the same pid.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split(' ').nth(19)?.parse().ok()
}

fn spawn_reaper(container: &str, dir: &Path, owner: u32) -> Result<(), String> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let binary = if exe
        .file_name()
        .is_some_and(|n| n == "openshell-conformance")
    {
        exe
    } else {
        crate::gateway::sibling("openshell-conformance")
    };
    if !binary.exists() {
        return Err(format!("{} not found", binary.display()));
    }
    let started = start_time(owner).ok_or_else(|| format!("process {owner} not found"))?;
    let log = File::create(dir.join("reaper.log")).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    std::process::Command::new(&binary)
        .args(["k3s-reap", "--container", container, "--dir"])
        .arg(dir)
        .args([
            "--owner",
            &owner.to_string(),
            "--owner-start",
            &started.to_string(),
        ])
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(err)
        // Its own process group: a signal to the test's group does not end it early.
        .process_group(0)
        .spawn()
        .map(drop)
        .map_err(|e| format!("starting {}: {e}", binary.display()))
}

/// The reaper: waits until process `owner` (started at `owner_start`) has ended or the container
/// is gone, then removes the container and `dir`. A reaper waits on another process's end, which
/// sends it nothing: it looks every two seconds.
pub async fn reap(container: &str, dir: &Path, owner: u32, owner_start: u64) -> Result<(), String> {
    let docker = openshell_images::docker::connect(None).map_err(|e| e.to_string())?;
    while start_time(owner) == Some(owner_start) && running(&docker, container).await {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    remove(&docker, container).await;
    let _ = std::fs::remove_dir_all(dir);
    println!("removed k3s container {container} and {}", dir.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_keeps_k3s_off_the_host_network_on_its_own_port() {
        let cmd = command(41234, "openshell-conformance/pause:abc");
        for flag in [
            "server",
            "--https-listen-port=41234",
            "--flannel-backend=none",
            "--disable-network-policy",
            "--disable-kube-proxy",
            "--pause-image=docker.io/openshell-conformance/pause:abc",
        ] {
            assert!(cmd.iter().any(|c| c == flag), "{flag} missing from {cmd:?}");
        }
        let disabled = cmd.iter().find(|c| c.starts_with("--disable=")).unwrap();
        for part in ["traefik", "servicelb", "coredns", "metrics-server"] {
            assert!(disabled.contains(part), "{disabled}");
        }
    }

    #[test]
    fn image_references_split_into_name_and_tag() {
        assert_eq!(
            split_image("rancher/k3s:v1.28.8-k3s1"),
            ("rancher/k3s", "v1.28.8-k3s1")
        );
        assert_eq!(split_image("reg:5000/k3s"), ("reg:5000/k3s", "latest"));
    }

    #[test]
    fn the_scope_follows_nextest_and_a_process_is_told_from_a_later_one() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(Scope::Run.owner(), me);
        assert!(Scope::Nextest("x".into()).key().contains("nextest-x"));
    }

    #[tokio::test]
    async fn the_lock_is_exclusive_between_holders() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let try_lock = || {
            let other = File::create(&path).unwrap();
            // SAFETY: flock(2) on a descriptor `other` owns for the call.
            unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
        };
        let held = lock(&path).await.unwrap();
        assert!(!try_lock(), "a second holder must wait");
        drop(held);
        assert!(try_lock(), "released when the holder drops it");
    }
}
