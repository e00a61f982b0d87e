//! The process driver: each sandbox is the supervisor, run by the gateway as PID 1 of its own PID
//! and mount namespaces, chrooted into an assembled fixture root. No container engine needed.
//!
//! # README
//!
//! **What it does.** [`ProcessDriver`] implements [`openshell_driver::ComputeDriver`] for the
//! reference gateway's `--driver process` (the default). For `create` it
//!
//! 1. resolves `openshell-fixture/<name>:<hash>` against its catalog and re-computes the content
//!    hash from its own input binaries; an unknown fixture or a different hash is
//!    `ImageNotFound`, whose message names both hashes;
//! 2. assembles the fixture's root afresh into `<state_dir>/roots/<sandbox_id>/` and writes the
//!    request's labels (`openshell.sandbox-id`, `openshell.run-id`) to
//!    `<state_dir>/roots/<sandbox_id>.labels.json`;
//! 3. starts the fixture's entrypoint (`/usr/local/bin/openshell-supervisor` unless the manifest
//!    names another, as Docker's ENTRYPOINT) inside the root with the arguments = the request's
//!    command, or else the manifest's; environment = `PATH=/usr/local/bin:/bin`, overridden by the
//!    manifest's env, overridden by the request's env; nothing of the gateway's environment;
//! 4. as PID 1 of a new PID namespace in a new mount namespace (mounts private, chrooted, fresh
//!    `/proc`, a small `/dev` tmpfs), in the host's network namespace, stdin `/dev/null`, with
//!    `PR_SET_PDEATHSIG(SIGKILL)` so nothing outlives the gateway (see [`launch`]);
//! 5. sends `Running`, then one `Output` per line of stdout and stderr, then `Exited` with the
//!    supervisor's exit code (a death by signal n is 128 + n), also after a `delete`.
//!
//! `delete` kills the sandbox (PID 1 gets `SIGKILL`; the kernel then kills the rest of its PID
//! namespace), waits until it has ended and its output was sent, kills any process still
//! chrooted under the root (from an earlier gateway), detaches leftover mounts and removes the
//! root and the labels file. It is idempotent and answers `true` if it removed anything.
//! `exists` is true while the process runs or the root directory exists.
//!
//! **Requirements.** Root (`CAP_SYS_ADMIN` for namespaces, mounts and chroot): [`ProcessDriver::new`]
//! refuses without it ([`require_root`]), and when an input binary (supervisor, busybox, probe)
//! is missing. The supervisor must be static (the roots hold no libraries).
//!
//! **Leak audit scheme** (the conformance suite re-implements it by reading `/proc`; [`residue()`]
//! is this crate's version): a sandbox process is any `/proc/<pid>` whose `root` link resolves
//! under `<state_dir>/roots/` (the first component below is the sandbox id; compare against the
//! canonical state directory, as the links are); a leftover root is any entry of
//! `<state_dir>/roots/`. Mounts never leak onto the host: a sandbox mounts only in
//! its own private mount namespace, which the kernel drops with its last process.
//!
//! **Tests.** `cargo test -p openshell-driver-process` (as root). `tests/lifecycle.rs` runs a
//! stand-in supervisor (`src/bin/fake_supervisor.rs`: prints its pid, environment and open
//! descriptors, then execs its arguments) with busybox, so it needs no gateway;
//! `tests/gateway_death.rs` SIGKILLs a helper "gateway" process and waits (pidfds) for its
//! sandbox to die; `tests/real_supervisor.rs` runs the workspace's supervisor when it is built.
//!
//! **In `ps`.** Each sandbox shows as `openshell-init` (the intermediate: the gateway's child,
//! its cmdline still the gateway's), its child the supervisor (PID 1 inside), and the rest.
//!
//! # Layout
//! - [`sys`]: the system calls, one `unsafe` block each, nothing that allocates.
//! - [`fork_lock`]: no launch inherits a root file open for writing (`ETXTBSY`).
//! - [`launch`]: the intermediate and PID 1 between `fork` and `exec`.
//! - [`spawner`]: the long-lived thread every launch is forked from (`PDEATHSIG` is per thread).
//! - [`sandbox`]: one running sandbox: its output pumps, its monitor, stopping it.
//! - [`image`]: image reference → fixture; argv and environment.
//! - [`mod@residue`]: what sandboxes leave on the host (the leak audit scheme), mount cleanup.
//! - this file: [`ProcessDriver`] and the [`openshell_driver::ComputeDriver`] implementation.

pub mod fork_lock;
pub mod image;
pub mod launch;
pub mod residue;
pub mod sandbox;
pub mod spawner;
pub mod sys;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openshell_driver::{mutants, ComputeDriver, DriverError, EventSender, SandboxRequest};
use openshell_fixtures::{Catalog, Inputs};

pub use residue::{scan as residue, Residue, SandboxProcess};

/// How long `delete` waits for a killed sandbox to end.
const STOP_DEADLINE: Duration = Duration::from_secs(15);
/// How long `delete` waits for stray processes (of an earlier gateway) to die.
const STRAY_DEADLINE: Duration = Duration::from_secs(5);

/// Errors of constructing the driver (its operations answer [`DriverError`]s).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not running as root.
    #[error(
        "the process driver must run as root (it creates PID and mount namespaces, mounts /proc and \
         chroots); this gateway runs as uid {euid}: run it as root, or use --driver docker"
    )]
    NotRoot { euid: u32 },
    /// An input binary is missing.
    #[error("the process driver's {role} binary {path} is not usable: {source}")]
    MissingInput {
        role: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The state directory could not be created.
    #[error("process driver state directory {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Result alias of this crate's constructor.
pub type Result<T> = std::result::Result<T, Error>;

/// The process driver's configuration.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Where roots and labels live (`<state_dir>/roots/`); created if missing.
    pub state_dir: PathBuf,
    /// The fixture catalog images are resolved against.
    pub catalog: Catalog,
    /// The binaries every root gets (and that every content hash covers).
    pub inputs: Inputs,
}

/// The process driver (see the crate documentation).
pub struct ProcessDriver {
    roots: PathBuf,
    catalog: Arc<Catalog>,
    inputs: Arc<Inputs>,
    events: EventSender,
    sandboxes: Mutex<HashMap<String, sandbox::Handle>>,
}

/// Refuses anyone but root, with a message that says why and what to do.
pub fn require_root(euid: u32) -> Result<()> {
    if euid == 0 {
        Ok(())
    } else {
        Err(Error::NotRoot { euid })
    }
}

fn require_file(role: &'static str, path: &Path) -> Result<()> {
    let missing = |source| Error::MissingInput {
        role,
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(missing)?;
    if meta.is_file() {
        Ok(())
    } else {
        Err(missing(io::Error::other("not a regular file")))
    }
}

/// Whether `id` can name a directory under `roots/` (no separators, no dot names).
fn is_safe_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl ProcessDriver {
    /// Checks privileges and inputs, creates `<state_dir>/roots/`.
    pub fn new(config: ProcessConfig, events: EventSender) -> Result<ProcessDriver> {
        require_root(sys::euid())?;
        require_file("supervisor", &config.inputs.supervisor)?;
        require_file("busybox", &config.inputs.busybox)?;
        require_file("probe", &config.inputs.probe)?;
        let state_dir = |source| Error::StateDir {
            path: config.state_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&config.state_dir).map_err(state_dir)?;
        // Canonical, so that `/proc/<pid>/root` links compare equal with it.
        let roots = residue::roots_dir(&config.state_dir.canonicalize().map_err(state_dir)?);
        std::fs::create_dir_all(&roots).map_err(state_dir)?;
        Ok(ProcessDriver {
            roots,
            catalog: Arc::new(config.catalog),
            inputs: Arc::new(config.inputs),
            events,
            sandboxes: Mutex::new(HashMap::new()),
        })
    }

    fn root_of(&self, id: &str) -> PathBuf {
        self.roots.join(id)
    }

    fn labels_of(&self, id: &str) -> PathBuf {
        self.roots.join(format!("{id}.labels.json"))
    }

    fn take_handle(&self, id: &str) -> Option<sandbox::Handle> {
        self.sandboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(id)
    }

    fn is_running(&self, id: &str) -> bool {
        let sandboxes = self
            .sandboxes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        sandboxes.get(id).is_some_and(sandbox::Handle::is_running)
    }

    /// Resolves the image and writes a fresh root and labels file; answers (argv, env).
    async fn prepare(
        &self,
        request: &SandboxRequest,
    ) -> std::result::Result<Prepared, DriverError> {
        let catalog = Arc::clone(&self.catalog);
        let inputs = Arc::clone(&self.inputs);
        let root = self.root_of(&request.sandbox_id);
        let labels = self.labels_of(&request.sandbox_id);
        let request = request.clone();
        let blocking = tokio::task::spawn_blocking(move || {
            let fixture = image::resolve(&catalog, &inputs, &request.image).map_err(|e| {
                if mutants::active("image-missing-create-failed") {
                    // Every preparation failure lumped together as a create failure.
                    return DriverError::CreateFailed(format!("preparing the root: {e}"));
                }
                DriverError::ImageNotFound {
                    image: request.image.clone(),
                    detail: e.to_string(),
                }
            })?;
            let failed = |what: &str, e: &dyn std::fmt::Display| {
                DriverError::CreateFailed(format!("{what}: {e}"))
            };
            // No launch may fork while this root's files are open for writing (fork_lock).
            let _writing = fork_lock::writing();
            remove_root(&root, &labels).map_err(|e| failed("removing a stale root", &e))?;
            openshell_fixtures::assemble(&catalog, fixture, &inputs, &root)
                .map_err(|e| failed("assembling the root", &e))?;
            let mut written = request.labels.clone();
            if mutants::active("unlabelled") {
                // Only the driver's own label written, the request's run label dropped.
                written.retain(|k, _| k == openshell_proto::labels::SANDBOX_ID);
            }
            let json =
                serde_json::to_vec_pretty(&written).map_err(|e| failed("encoding labels", &e))?;
            std::fs::write(&labels, json)
                .map_err(|e| failed(&format!("writing {}", labels.display()), &e))?;
            Ok(Prepared {
                root,
                argv: image::argv(
                    &openshell_fixtures::Catalog::entrypoint_of(fixture),
                    &fixture.command,
                    &request.command,
                ),
                // Mutant `image-env-dropped`: the image's ENV forgotten, only the request's passed.
                env: if mutants::active("image-env-dropped") {
                    image::environment(&Default::default(), &request.env)
                } else {
                    image::environment(&fixture.env, &request.env)
                },
            })
        });
        blocking
            .await
            .map_err(|e| DriverError::CreateFailed(format!("preparing the root: {e}")))?
    }
}

struct Prepared {
    root: PathBuf,
    argv: Vec<String>,
    env: std::collections::BTreeMap<String, String>,
}

/// Detaches mounts under the root, removes it and the labels file; whether anything existed.
fn remove_root(root: &Path, labels: &Path) -> io::Result<bool> {
    let mut removed = false;
    if root.symlink_metadata().is_ok() {
        residue::unmount_below(root).map_err(io::Error::other)?;
        std::fs::remove_dir_all(root)?;
        removed = true;
    }
    match std::fs::remove_file(labels) {
        Ok(()) => removed = true,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(removed)
}

/// The sandbox ids whose labels file under `roots` carries every one of `labels`.
fn labelled_roots(
    roots: &Path,
    labels: &std::collections::BTreeMap<String, String>,
) -> io::Result<Vec<String>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(roots)? {
        let path = entry?.path();
        let Some(id) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".labels.json"))
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let have: std::collections::BTreeMap<String, String> =
            serde_json::from_str(&text).unwrap_or_default();
        if labels.iter().all(|(k, v)| have.get(k) == Some(v)) {
            ids.push(id.to_string());
        }
    }
    Ok(ids)
}

/// SIGKILLs every process chrooted at or under `root` and waits (bounded) until none is left.
async fn kill_strays(root: &Path) -> std::result::Result<bool, DriverError> {
    let unavailable = |e: &dyn std::fmt::Display| {
        DriverError::Unavailable(format!("cleaning {}: {e}", root.display()))
    };
    let deadline = tokio::time::Instant::now() + STRAY_DEADLINE;
    let mut found_any = false;
    loop {
        let strays = residue::processes_under(root).map_err(|e| unavailable(&e))?;
        if strays.is_empty() {
            return Ok(found_any);
        }
        found_any = true;
        if tokio::time::Instant::now() >= deadline {
            let pids: Vec<i32> = strays.iter().map(|p| p.pid).collect();
            return Err(unavailable(&format!("processes {pids:?} survive SIGKILL")));
        }
        for stray in &strays {
            let _ = sys::kill(stray.pid, libc::SIGKILL);
        }
        // Not our children: nothing to wait on but /proc itself.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[async_trait]
impl ComputeDriver for ProcessDriver {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn create(&self, request: SandboxRequest) -> std::result::Result<(), DriverError> {
        let id = request.sandbox_id.clone();
        if !is_safe_id(&id) {
            return Err(DriverError::CreateFailed(format!(
                "sandbox id {id:?} cannot name a directory"
            )));
        }
        if self.is_running(&id) {
            return Err(DriverError::CreateFailed(format!(
                "sandbox {id} is already running"
            )));
        }
        let prepared = self.prepare(&request).await?;
        let launch = sandbox::Launch {
            sandbox_id: &id,
            root: &prepared.root,
            argv: &prepared.argv,
            env: &prepared.env,
        };
        match sandbox::start(launch, &self.events).await {
            Ok(handle) => {
                let mut sandboxes = self
                    .sandboxes
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                sandboxes.insert(id, handle);
                Ok(())
            }
            Err(e) => {
                let (root, labels) = (prepared.root.clone(), self.labels_of(&id));
                let _ = tokio::task::spawn_blocking(move || remove_root(&root, &labels)).await;
                Err(DriverError::StartFailed(e.to_string()))
            }
        }
    }

    async fn delete(&self, sandbox_id: &str) -> std::result::Result<bool, DriverError> {
        if !is_safe_id(sandbox_id) {
            return Ok(false);
        }
        let mut removed = false;
        if mutants::active("slow-teardown") {
            // A fixed "grace period" before the sandbox is stopped.
            tokio::time::sleep(std::time::Duration::from_secs(8)).await;
        }
        if let Some(handle) = self.take_handle(sandbox_id) {
            removed = handle.is_running();
            handle
                .stop(STOP_DEADLINE)
                .await
                .map_err(|e| DriverError::Unavailable(e.to_string()))?;
        }
        let root = self.root_of(sandbox_id);
        removed |= kill_strays(&root).await?;
        let labels = self.labels_of(sandbox_id);
        if mutants::active("delete-leaves-root") {
            // The processes are killed, the root directory forgotten.
            return Ok(removed);
        }
        let cleaned = tokio::task::spawn_blocking(move || remove_root(&root, &labels))
            .await
            .map_err(|e| DriverError::Unavailable(format!("removing the root: {e}")))?
            .map_err(|e| {
                DriverError::Unavailable(format!("removing the root of {sandbox_id}: {e}"))
            })?;
        Ok(removed || cleaned)
    }

    async fn labelled(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> std::result::Result<Vec<String>, DriverError> {
        let roots = self.roots.clone();
        let labels = labels.clone();
        let listed = tokio::task::spawn_blocking(move || labelled_roots(&roots, &labels))
            .await
            .map_err(|e| DriverError::Unavailable(format!("listing sandbox roots: {e}")))?;
        listed.map_err(|e| DriverError::Unavailable(format!("listing sandbox roots: {e}")))
    }

    async fn exists(&self, sandbox_id: &str) -> std::result::Result<bool, DriverError> {
        if !is_safe_id(sandbox_id) {
            return Ok(false);
        }
        // Only a live process is a live backend: a root left on disk after the gateway died
        // (PR_SET_PDEATHSIG killed its processes) is residue, so the gateway marks the sandbox
        // BackendLost at start and its cleanup removes the root.
        Ok(self.is_running(sandbox_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anyone_but_root_is_refused_with_a_reason_and_a_way_out() {
        assert!(require_root(0).is_ok());
        let message = require_root(1000).unwrap_err().to_string();
        assert!(message.contains("must run as root"), "{message}");
        assert!(message.contains("uid 1000"), "{message}");
        assert!(message.contains("--driver docker"), "{message}");
    }

    #[test]
    fn a_missing_input_binary_is_named() {
        let message = require_file("probe", Path::new("/nonexistent/openshell-probe"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("probe binary /nonexistent/openshell-probe"),
            "{message}"
        );
    }

    #[test]
    fn ids_that_could_escape_the_roots_directory_are_refused() {
        for bad in ["", ".", "..", "a/b", "../x", ".hidden", "a\0b"] {
            assert!(!is_safe_id(bad), "{bad:?}");
        }
        for good in ["sbx-0123", "3f2a_b.c", "A1"] {
            assert!(is_safe_id(good), "{good:?}");
        }
    }
}
