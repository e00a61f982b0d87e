//! The VM driver: each sandbox is a QEMU microVM that boots the image's root as its initramfs,
//! with our own init as guest PID 1 and the supervisor (the image's entrypoint) as its child.
//!
//! # README
//!
//! **What it does.** [`VmDriver`] implements [`openshell_driver::ComputeDriver`] for the
//! reference gateway's `--driver vm`. For `create` it
//!
//! 1. finds the image on the local Docker engine (the Docker lanes' images, unchanged; a missing
//!    one is `ImageNotFound`) and packs its root once per image id into a cached newc archive
//!    (`<cache>/initramfs/<id>.cpio`, [`openshell_images::initramfs::cached_root`]);
//! 2. makes the state folder `<state-dir>/vms/<sandbox-id>/` ([`state`]): `labels.json`, and the
//!    initrd (mode 0600): the root archive, the driver's archive (init, modules) and a tiny
//!    archive with the launch description and the credential. The credential never goes on the
//!    kernel command line, which the workload can read;
//! 3. starts QEMU ([`boot`]: `-M microvm`, one vCPU, 256 MiB, `-name openshell-<sandbox-id>`,
//!    the console on stdout, a second serial port for the init's report, virtio-rng, and a
//!    virtio-net whose only way out is `guestfwd` to the gateway on the host's `127.0.0.1`) from
//!    the spawner thread with `PR_SET_PDEATHSIG` ([`launch`]), in the state folder;
//! 4. sends `Running`, the console lines as `Output`, and how the VM ended ([`vm`]). It never
//!    reports readiness: that is the supervisor session's (seed 002).
//!
//! In the guest ([`guest`], `src/bin/openshell-vm-init/`) the init mounts `/proc`, `/sys` and
//! `/dev`, loads the virtio modules, configures `lo` and `eth0`, reads and deletes the launch
//! description and the credential, runs the entrypoint with the image's environment, the
//! request's, and `OPENSHELL_ENDPOINT` rewritten from `http://127.0.0.1:PORT` to
//! `http://10.0.2.100:PORT`, reaps orphans, reports the main process's exit code on the second
//! serial port and powers off.
//!
//! `delete` SIGKILLs QEMU, waits until its console was sent, and removes the state folder.
//! `exists` is true while QEMU runs (a folder left by a dead gateway is residue: PDEATHSIG killed
//! its VM, so the restarted gateway marks the sandbox `BackendLost` and cleanup removes it).
//!
//! **Accelerator.** `--vm-accel auto|kvm|tcg` ([`accel`]); `auto` probes KVM once and caches
//! the verdict. The gateway logs which one runs and why ([`VmDriver::accel`]).
//!
//! **Bounds.** At most `max_running` VMs at once (a `create` waits for a slot, bounded by
//! [`SLOT_WAIT`]); 256 MiB and one vCPU each; console lines cut at 16 KiB, a 200-line tail.
//!
//! **Leak audit scheme** (the conformance suite implements it by itself): a VM is a process
//! whose command line holds `-name openshell-<sandbox-id>`; it and the relays QEMU spawns per
//! guest connection have the state folder `…/vms/<sandbox-id>` as their working directory
//! (`/proc/<pid>/cwd`), where `labels.json` holds the labels; leftover state is any entry of
//! `<state-dir>/vms/`.
//!
//! **Requirements.** QEMU with the microvm machine and Debian's cloud kernel with its modules
//! (`bash ci/setup-vm.sh`), a Docker engine holding the images, a static busybox on the host
//! (its `nc` is the relay), the cache folder writable. Under TCG the host's TSC frequency is read
//! from `/proc/cpuinfo` (see [`boot::Boot::cmdline`] for why the guest needs it).
//!
//! **Tests.** `cargo nextest run -p openshell-driver-vm` (real QEMU; skipped with a printed
//! reason without the lane's prerequisites, unless `OPENSHELL_REQUIRE_LANES` names `vm`).
//! `tests/driver.rs` drives the driver alone with stand-in images (busybox scripts) and a TCP
//! listener as the gateway: the only reachable address, the credential's absence from the
//! kernel command line, QEMU killed from outside. `tests/gateway.rs` runs the real gateway
//! process with the real supervisor: Ready, supervisor errors, the boot hook, exit codes
//! (`no-session`'s 5), the token absent from the workload, gateway death.
//!
//! **Bare boot.** [`bare::run`] boots the same kernel and cached root to a marker and off: the
//! baseline of a sandbox boot (`openshell-vm-bare-boot` prints it as JSON).
//!
//! # Layout
//! - [`guest`]: the driver–init contract (paths, launch description, report lines, modules).
//! - [`boot`]: QEMU, kernel and the driver's archive; the command line.
//! - [`accel`]: KVM or TCG, probed and cached.
//! - [`launch`]: starting QEMU with `PR_SET_PDEATHSIG` from the spawner thread.
//! - [`state`]: the per-sandbox state folder and initrd.
//! - [`vm`]: one running VM: console, end event, stop.
//! - [`bare`]: the bare boot.
//! - this file: [`VmDriver`] and the `ComputeDriver` implementation.

pub mod accel;
pub mod bare;
pub mod boot;
pub mod guest;
pub mod launch;
pub mod state;
pub mod vm;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openshell_driver::{ComputeDriver, DriverError, EventSender, SandboxRequest};
use openshell_images::initramfs::{self, ArchiveError};
use openshell_images::root::RootError;
use openshell_proto::env;
use tokio::sync::Semaphore;

use crate::boot::{Boot, BootConfig, QemuVm};
use crate::state::Folder;

/// How long `delete` waits for a killed QEMU to end.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// How long a `create` waits for one of the `max_running` slots.
pub const SLOT_WAIT: Duration = Duration::from_secs(120);
/// `PATH` when the image sets none (Docker's default).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Errors of constructing the driver (its operations answer [`DriverError`]s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A boot file is missing.
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    /// The state or cache folder could not be made.
    #[error("VM driver folder {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The Docker engine address is unusable.
    #[error("the VM driver reads images from a Docker engine: {0}")]
    Docker(String),
}

/// Result alias of this crate's constructor.
pub type Result<T> = std::result::Result<T, Error>;

/// The VM driver's configuration.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// Where state folders live (`<state_dir>/vms/`).
    pub state_dir: PathBuf,
    /// Packed roots (`<cache>/initramfs/`) and the accelerator verdict.
    pub cache_dir: PathBuf,
    /// QEMU, kernel, modules, init, busybox, memory.
    pub boot: BootConfig,
    /// `--vm-accel`.
    pub accel: accel::Choice,
    /// The Docker engine the images come from (default: `DOCKER_HOST`, else the local socket).
    pub docker_host: Option<String>,
    /// VMs at once.
    pub max_running: usize,
}

/// The default `max_running`: four per core, so a Ready VM waiting for a case's second sandbox
/// never starves it, while a 2-core machine runs at most 8 × 256 MiB.
pub fn default_max_running() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 4
}

/// The VM driver (see the crate documentation).
pub struct VmDriver {
    vms: PathBuf,
    cache_dir: PathBuf,
    boot: Arc<Boot>,
    accel: accel::Verdict,
    docker: bollard::Docker,
    events: EventSender,
    sandboxes: Mutex<HashMap<String, vm::Handle>>,
    slots: Arc<Semaphore>,
}

fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The gateway's port, from an endpoint `http://127.0.0.1:PORT`: the only host address the
/// guest's network forwards to.
pub fn gateway_port(endpoint: &str) -> std::result::Result<u16, String> {
    let rest = endpoint
        .strip_prefix("http://127.0.0.1:")
        .ok_or_else(|| {
            format!("the VM driver forwards guests to http://127.0.0.1:PORT only, not {endpoint:?} (start the gateway with --listen 127.0.0.1:PORT)")
        })?;
    rest.trim_end_matches('/')
        .parse()
        .map_err(|_| format!("no port in the endpoint {endpoint:?}"))
}

/// The guest's environment: the image's, overridden by the request's, with `PATH` defaulted,
/// the endpoint pointed at the gateway's guest alias and the token taken out (it travels as
/// the credential file). Answers (environment, token).
pub fn guest_env(
    image_env: &[String],
    request_env: &BTreeMap<String, String>,
    port: u16,
) -> (BTreeMap<String, String>, String) {
    let mut merged: BTreeMap<String, String> = image_env
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    merged.extend(request_env.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged
        .entry("PATH".to_string())
        .or_insert_with(|| DEFAULT_PATH.to_string());
    if merged.contains_key(env::ENDPOINT) {
        merged.insert(
            env::ENDPOINT.to_string(),
            format!("http://{}:{port}", guest::GATEWAY_ALIAS),
        );
    }
    let token = merged.remove(env::SANDBOX_TOKEN).unwrap_or_default();
    (merged, token)
}

fn image_error(image: &str, error: ArchiveError) -> DriverError {
    match error {
        ArchiveError::Root(RootError::NotFound { detail, .. }) => DriverError::ImageNotFound {
            image: image.to_string(),
            detail,
        },
        ArchiveError::Root(e @ RootError::Engine { .. }) => DriverError::Unavailable(e.to_string()),
        e => DriverError::CreateFailed(format!("packing the root of {image}: {e}")),
    }
}

impl VmDriver {
    /// Checks the boot files, makes the folders, resolves the accelerator (a probe may take
    /// [`accel::PROBE_LIMIT`] once per cache) and connects (lazily) to the Docker engine.
    pub async fn new(config: VmConfig, events: EventSender) -> Result<VmDriver> {
        let folder = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Folder { path, source }
        };
        let vms = state::vms_dir(&config.state_dir);
        std::fs::create_dir_all(&vms).map_err(folder(&vms))?;
        let vms = vms.canonicalize().map_err(folder(&vms))?;
        std::fs::create_dir_all(&config.cache_dir).map_err(folder(&config.cache_dir))?;
        let boot = Boot::load(config.boot)?;
        let accel = accel::resolve(config.accel, &boot, &config.cache_dir).await;
        let docker = openshell_images::docker::connect(config.docker_host.as_deref())
            .map_err(|e| Error::Docker(e.to_string()))?;
        Ok(VmDriver {
            vms,
            cache_dir: config.cache_dir,
            boot: Arc::new(boot),
            accel,
            docker,
            events,
            sandboxes: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(config.max_running.max(1))),
        })
    }

    /// The accelerator VMs run with, and why.
    pub fn accel(&self) -> &accel::Verdict {
        &self.accel
    }

    /// The console tail of a running VM (empty for one this driver does not run).
    pub fn output_tail(&self, sandbox_id: &str) -> Vec<String> {
        self.lock()
            .get(sandbox_id)
            .map(vm::Handle::tail)
            .unwrap_or_default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, vm::Handle>> {
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn is_running(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(vm::Handle::is_running)
    }

    async fn start(
        &self,
        request: &SandboxRequest,
        folder: &Folder,
    ) -> openshell_driver::Result<vm::Handle> {
        let endpoint = request.env.get(env::ENDPOINT).cloned().unwrap_or_default();
        let port = gateway_port(&endpoint).map_err(DriverError::CreateFailed)?;
        let root = initramfs::cached_root(&self.docker, &request.image, &self.cache_dir)
            .await
            .map_err(|e| image_error(&request.image, e))?;
        let (env, token) = guest_env(&root.config.env, &request.env, port);
        let launch = guest::Launch {
            argv: root.config.argv(&request.command),
            env,
            working_dir: root.config.working_dir.clone(),
        };
        let permit = tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| {
                DriverError::CreateFailed(format!(
                    "no VM slot within {SLOT_WAIT:?}: as many VMs as --vm-max-running run already"
                ))
            })?
            .map_err(|e| DriverError::CreateFailed(e.to_string()))?;
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            DriverError::CreateFailed(format!("{what}: {e}"))
        };
        let (folder_c, labels, archive, root_path) = (
            folder.clone(),
            request.labels.clone(),
            self.boot.archive.clone(),
            root.path.clone(),
        );
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            folder_c.remove()?;
            std::fs::create_dir_all(&folder_c.dir)?;
            let json = serde_json::to_vec_pretty(&labels).map_err(std::io::Error::other)?;
            std::fs::write(folder_c.labels(), json)?;
            let sandbox = state::sandbox_archive(&launch, &token)?;
            state::write_initrd(&folder_c.initrd(), Some(&root_path), &archive, &sandbox)
        })
        .await
        .map_err(|e| failed("preparing the state folder", &e))?
        .map_err(|e| failed(&format!("preparing {}", folder.dir.display()), &e))?;
        let (initrd, report) = (folder.initrd(), folder.report());
        let qemu_vm = QemuVm {
            name: format!("openshell-{}", request.sandbox_id),
            accel: self.accel.accel,
            initrd: &initrd,
            report: Some(&report),
            gateway_port: Some(port),
        };
        let child = launch::spawn(&self.boot.qemu, self.boot.qemu_args(&qemu_vm), &folder.dir)
            .await
            .map_err(|e| DriverError::StartFailed(e.to_string()))?;
        Ok(vm::watch(
            vm::Watch {
                sandbox_id: request.sandbox_id.clone(),
                child,
                report,
                permit,
            },
            &self.events,
        ))
    }
}

#[async_trait]
impl ComputeDriver for VmDriver {
    fn name(&self) -> &'static str {
        "vm"
    }

    async fn create(&self, request: SandboxRequest) -> openshell_driver::Result<()> {
        let id = request.sandbox_id.clone();
        if !is_safe_id(&id) {
            return Err(DriverError::CreateFailed(format!(
                "sandbox id {id:?} cannot name a folder"
            )));
        }
        if self.is_running(&id) {
            return Err(DriverError::CreateFailed(format!(
                "sandbox {id} is already running"
            )));
        }
        let folder = Folder::of(&self.vms, &id);
        match self.start(&request, &folder).await {
            Ok(handle) => {
                self.lock().insert(id, handle);
                Ok(())
            }
            Err(e) => {
                let _ = tokio::task::spawn_blocking(move || folder.remove()).await;
                Err(e)
            }
        }
    }

    async fn delete(&self, sandbox_id: &str) -> openshell_driver::Result<bool> {
        if !is_safe_id(sandbox_id) {
            return Ok(false);
        }
        let mut removed = false;
        let handle = self.lock().remove(sandbox_id);
        if let Some(handle) = handle {
            removed = handle.is_running();
            if !handle.stop(STOP_DEADLINE).await {
                return Err(DriverError::Unavailable(format!(
                    "the QEMU of sandbox {sandbox_id} did not end within {STOP_DEADLINE:?} of SIGKILL"
                )));
            }
        }
        let folder = Folder::of(&self.vms, sandbox_id);
        let cleaned = tokio::task::spawn_blocking(move || folder.remove())
            .await
            .map_err(|e| DriverError::Unavailable(format!("removing the state folder: {e}")))?
            .map_err(|e| {
                DriverError::Unavailable(format!("removing the state folder of {sandbox_id}: {e}"))
            })?;
        Ok(removed || cleaned)
    }

    async fn exists(&self, sandbox_id: &str) -> openshell_driver::Result<bool> {
        Ok(is_safe_id(sandbox_id) && self.is_running(sandbox_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_loopback_endpoint_can_be_forwarded() {
        assert_eq!(gateway_port("http://127.0.0.1:7443"), Ok(7443));
        assert!(gateway_port("http://10.1.2.3:7443")
            .unwrap_err()
            .contains("127.0.0.1"));
        assert!(gateway_port("http://127.0.0.1:x").is_err());
    }

    #[test]
    fn the_guest_env_points_at_the_alias_and_keeps_the_token_out() {
        let image = vec!["A=image".to_string(), "B=image".to_string()];
        let request = BTreeMap::from([
            ("B".to_string(), "request".to_string()),
            (
                env::ENDPOINT.to_string(),
                "http://127.0.0.1:7443".to_string(),
            ),
            (env::SANDBOX_TOKEN.to_string(), "t0ken".to_string()),
        ]);
        let (merged, token) = guest_env(&image, &request, 7443);
        assert_eq!(token, "t0ken");
        assert!(!merged.contains_key(env::SANDBOX_TOKEN));
        assert_eq!(merged["A"], "image");
        assert_eq!(merged["B"], "request");
        assert_eq!(merged[env::ENDPOINT], "http://10.0.2.100:7443");
        assert_eq!(merged["PATH"], DEFAULT_PATH);
    }
}
