//! Starting the supervisor as PID 1 of a new PID and mount namespace, chrooted into its root.
//!
//! `unshare(CLONE_NEWPID)` only moves the caller's *future children* into the new namespace, so
//! the launch takes two processes, both made inside the `pre_exec` hook of one
//! [`tokio::process::Command`] (after `fork`, before `exec`; async-signal-safe work only, nothing
//! allocates — everything is prepared in a [`Plan`] beforehand):
//!
//! 1. The **intermediate** (the gateway's child): arms `PR_SET_PDEATHSIG(SIGKILL)`, leaves for new
//!    mount and PID namespaces, blocks `SIGCHLD`/`SIGTERM`/`SIGINT`/`SIGHUP`, forks, closes every
//!    inherited descriptor, then waits synchronously: on `SIGTERM`, `SIGINT` or `SIGHUP` it kills
//!    PID 1 with `SIGKILL`; when PID 1 has ended it exits with PID 1's code (128 + n for signal n).
//!    It never execs. Because a PID namespace's init only finishes dying after the kernel has
//!    killed and reaped everything else in the namespace, the intermediate's exit means the whole
//!    sandbox is gone.
//! 2. **PID 1** (the intermediate's child): arms `PR_SET_PDEATHSIG(SIGKILL)` (and exits if the
//!    intermediate died before that), makes every mount private, chroots into the root, mounts a
//!    fresh `proc` on `/proc` and a small `tmpfs` on `/dev` with `null`, `zero`, `full`,
//!    `random`, `urandom` and the `fd`/`stdin`/`stdout`/`stderr` links, marks every inherited
//!    descriptor above 2 close-on-exec, restores an empty signal mask, and returns to `std`,
//!    which execs the supervisor with stdin `/dev/null` and stdout/stderr the gateway's pipes. A failure here (or of the `exec`)
//!    reaches the gateway's `spawn` through std's close-on-exec error pipe.
//!
//! The network namespace is the host's: the supervisor reaches the gateway at `127.0.0.1`.
//!
//! Errors are plain `std::io::Error`s (what `pre_exec` must return; they do not allocate).

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;
use std::path::Path;

use crate::sys;

/// Exit code of a launch process that found its parent already gone.
pub const EXIT_ORPHANED: i32 = 125;

/// The intermediate's process name (`/proc/<pid>/comm`; its cmdline stays the gateway's).
pub const INTERMEDIATE_NAME: &CStr = c"openshell-init";

/// The character devices every sandbox gets in `/dev`: path, major, minor.
const DEVICES: &[(&CStr, u32, u32)] = &[
    (c"/dev/null", 1, 3),
    (c"/dev/zero", 1, 5),
    (c"/dev/full", 1, 7),
    (c"/dev/random", 1, 8),
    (c"/dev/urandom", 1, 9),
];

/// The symbolic links every sandbox gets in `/dev`: target, link.
const DEV_LINKS: &[(&CStr, &CStr)] = &[
    (c"/proc/self/fd", c"/dev/fd"),
    (c"/proc/self/fd/0", c"/dev/stdin"),
    (c"/proc/self/fd/1", c"/dev/stdout"),
    (c"/proc/self/fd/2", c"/dev/stderr"),
];

/// Everything the launch needs, prepared before the fork.
#[derive(Debug, Clone)]
pub struct Plan {
    root: CString,
    gateway_pid: i32,
}

impl Plan {
    /// A plan to start a process chrooted into `root`, parented by this process.
    pub fn new(root: &Path) -> io::Result<Plan> {
        use std::os::unix::ffi::OsStrExt;
        let root = CString::new(root.as_os_str().as_bytes()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "root path contains a NUL byte")
        })?;
        Ok(Plan {
            root,
            gateway_pid: sys::getpid(),
        })
    }

    /// The `pre_exec` hook. Returns only in PID 1, which std then turns into the supervisor.
    ///
    /// # Safety
    /// Must only run between `fork` and `exec` of the gateway's child (as `pre_exec` does).
    pub unsafe fn run(&self) -> io::Result<()> {
        sys::set_parent_death_signal(libc::SIGKILL)?;
        if sys::getppid() != self.gateway_pid {
            sys::exit_now(EXIT_ORPHANED);
        }
        sys::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID)?;
        let watched =
            sys::SignalSet::of(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP])?;
        watched.set_mask()?;
        let (alive_read, alive_write) = sys::pipe_cloexec()?;
        // SAFETY: we are the single-threaded child of a fork (the caller's contract).
        let child = unsafe { sys::fork() }?;
        if child == 0 {
            sys::close(alive_write);
            return self.become_pid_one(alive_read);
        }
        sys::close(alive_read);
        // It never execs, so without a name `ps` would show a second gateway.
        let _ = sys::set_name(INTERMEDIATE_NAME);
        intermediate(child, alive_write, &watched)
    }

    fn become_pid_one(&self, alive_read: RawFd) -> io::Result<()> {
        sys::set_parent_death_signal(libc::SIGKILL)?;
        if sys::hung_up(alive_read)? {
            sys::exit_now(EXIT_ORPHANED);
        }
        sys::close(alive_read);
        // Descriptors the gateway leaked without close-on-exec (a jobserver pipe, …) stay out.
        sys::cloexec_from_3()?;
        sys::mount(c"none", c"/", None, libc::MS_REC | libc::MS_PRIVATE, None)?;
        sys::chdir(&self.root)?;
        sys::chroot(c".")?;
        sys::chdir(c"/")?;
        let hardened = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
        sys::mount(c"proc", c"/proc", Some(c"proc"), hardened, None)?;
        sys::mount(
            c"tmpfs",
            c"/dev",
            Some(c"tmpfs"),
            libc::MS_NOSUID | libc::MS_NOEXEC,
            Some(c"mode=755,size=64k"),
        )?;
        for (path, major, minor) in DEVICES {
            sys::mknod_char(path, 0o666, *major, *minor)?;
        }
        for (target, link) in DEV_LINKS {
            sys::symlink(target, link)?;
        }
        sys::SignalSet::of(&[])?.set_mask()
    }
}

/// The intermediate's life after the fork: forward kill requests, then PID 1's exit code.
fn intermediate(child: i32, alive_write: RawFd, watched: &sys::SignalSet) -> ! {
    // Only PID 1 needs the stdio pipes' other copies and std's error pipe; keep the pipe whose
    // closing tells PID 1 that we died.
    let _ = sys::close_all_but(alive_write);
    loop {
        match watched.wait() {
            Ok(libc::SIGCHLD) => {}
            Ok(_) => {
                let _ = sys::kill(child, libc::SIGKILL);
            }
            Err(_) => {
                let _ = sys::kill(child, libc::SIGKILL);
                let code = sys::waitpid(child, false)
                    .ok()
                    .flatten()
                    .map_or(EXIT_ORPHANED, sys::exit_code_of);
                sys::exit_now(code);
            }
        }
        match sys::waitpid(child, true) {
            Ok(Some(status)) => sys::exit_now(sys::exit_code_of(status)),
            Ok(None) => {}
            Err(_) => sys::exit_now(EXIT_ORPHANED),
        }
    }
}
