//! Starting QEMU so that it never outlives the gateway.
//!
//! `PR_SET_PDEATHSIG` belongs to the thread that forked, so QEMU is forked from the process
//! driver's long-lived spawner thread (`openshell_driver_process::spawner`), never from a tokio
//! worker that may exit. Between `fork` and `exec` the child arms `PR_SET_PDEATHSIG(SIGKILL)` and
//! exits if the gateway died before that. QEMU runs in its own process group, in the sandbox's
//! state folder (its `/proc/<pid>/cwd` names the folder: the leak audit reads it), with stdin
//! `/dev/null` and stdout (the console) and stderr piped to the driver.

use std::ffi::OsString;
use std::path::Path;
use std::process::Stdio;

use openshell_driver_process::{spawner, sys};

/// Exit code of a QEMU child whose gateway died before it could arm its death signal.
pub const EXIT_ORPHANED: i32 = 125;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The spawner thread failed.
    #[error(transparent)]
    Spawner(#[from] spawner::SpawnerError),
    /// QEMU could not be started.
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, LaunchError>;

/// Starts `qemu args…` in `dir` (see the module doc).
pub async fn spawn(qemu: &Path, args: Vec<OsString>, dir: &Path) -> Result<tokio::process::Child> {
    let gateway = sys::getpid();
    let mut command = tokio::process::Command::new(qemu);
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // SAFETY: the hook runs between fork and exec and makes only async-signal-safe calls
    // (prctl, getppid, _exit); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            sys::set_parent_death_signal(libc::SIGKILL)?;
            if sys::getppid() != gateway {
                sys::exit_now(EXIT_ORPHANED);
            }
            Ok(())
        });
    }
    let program = qemu.display().to_string();
    spawner::run(move || command.spawn())
        .await?
        .map_err(|source| LaunchError::Spawn { program, source })
}
