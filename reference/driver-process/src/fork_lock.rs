//! The fork lock: no descriptor open for writing may be inherited by a sandbox launch.
//!
//! A root is assembled by copying executables (the supervisor, the probe, `boot.sh`) into it, on
//! blocking-pool threads, while the spawner thread forks other sandboxes. A child forked while a
//! copy's descriptor is open inherits it (close-on-exec only closes it at `exec`), and a launch
//! keeps it for milliseconds (namespaces, mounts and `chroot` come before its `exec`). An `exec`
//! of that copy in the meantime fails with `ETXTBSY` ("Text file busy"): seen as a sandbox in
//! `Error / BackendStartFailed` when creates ran in parallel.
//!
//! As Go's `syscall.ForkLock`: whoever has files of a root open for writing holds
//! [`writing`] (shared), and a launch holds [`forking`] (exclusive) across its whole
//! `Command::spawn`, which returns only once every process of the launch has closed or exec'd
//! what it inherited.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

static LOCK: RwLock<()> = RwLock::new(());

/// Held while files are open for writing (shared: writers do not exclude each other).
pub fn writing() -> RwLockReadGuard<'static, ()> {
    LOCK.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Held across a launch's fork until its processes closed or exec'd their inherited descriptors.
pub fn forking() -> RwLockWriteGuard<'static, ()> {
    LOCK.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::path::Path;
    use std::process::Command;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use super::*;

    const SCRIPT: &[u8] = b"#!/bin/sh\nexit 0\n";

    /// Writes a fresh executable at `path` and runs it; whether `exec` said "Text file busy".
    fn write_and_run(path: &Path, locked: bool) -> bool {
        {
            let _writing = locked.then(writing);
            let mut file = std::fs::File::create(path).unwrap();
            file.write_all(SCRIPT).unwrap();
            // A real copy (a debug supervisor is tens of MB) keeps its descriptor open a while.
            std::thread::sleep(std::time::Duration::from_millis(1));
            file.set_permissions(std::fs::Permissions::from_mode(0o755))
                .unwrap();
        }
        let _forking = locked.then(forking);
        match Command::new(path).status() {
            Ok(status) => {
                assert!(status.success());
                false
            }
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => true,
            Err(e) => panic!("running {}: {e}", path.display()),
        }
    }

    /// Forks children that linger 5 ms before their `exec`, as a launch does, until `stop`.
    fn lingering_forks(stop: Arc<AtomicBool>, locked: bool) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _forking = locked.then(forking);
                let mut command = Command::new("/bin/true");
                // SAFETY: the hook only sleeps (nanosleep is async-signal-safe) and allocates
                // nothing.
                unsafe {
                    command.pre_exec(|| {
                        let pause = libc::timespec {
                            tv_sec: 0,
                            tv_nsec: 5_000_000,
                        };
                        libc::nanosleep(&pause, std::ptr::null_mut());
                        Ok(())
                    });
                }
                let _ = command.status();
            }
        })
    }

    /// How many of `rounds` write-then-exec rounds failed with `ETXTBSY` beside lingering forks.
    fn busy_rounds(locked: bool, rounds: usize) -> usize {
        let dir = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let forks = lingering_forks(Arc::clone(&stop), locked);
        let busy = (0..rounds)
            .filter(|n| write_and_run(&dir.path().join(format!("x{n}")), locked))
            .count();
        stop.store(true, Ordering::Relaxed);
        forks.join().unwrap();
        busy
    }

    /// One test, control first: run beside the unlocked control in one process (`cargo test`
    /// threads), the locked rounds would race the control's unlocked forks.
    #[test]
    fn a_fresh_copy_is_never_busy_under_the_lock_though_it_is_without() {
        // The race this module closes, on the bare mechanism: many of 300 unlocked rounds hit
        // it (16–33 % measured; the count is printed), so the locked run below has something to prevent.
        let busy = busy_rounds(false, 300);
        eprintln!("unlocked: {busy} of 300 rounds ETXTBSY");
        assert!(
            busy > 0,
            "no ETXTBSY in 300 unlocked rounds: the control shows nothing"
        );
        assert_eq!(busy_rounds(true, 300), 0, "ETXTBSY under the fork lock");
    }
}
