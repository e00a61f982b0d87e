//! The state directory's lock: one gateway per `--state-dir`.
//!
//! A gateway's restart recovery and residue cleanup act on every sandbox its state describes, so
//! a second gateway on the same directory would fail the first one's sandboxes and remove their
//! backends. The first gateway holds an exclusive `flock(2)` on `<state-dir>/gateway.lock` for its
//! whole life (the kernel drops it when the process ends, even by SIGKILL) and writes its pid
//! into the file; a second one fails to take it and names that pid.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// The lock file's name inside the state directory.
pub const LOCK_FILE: &str = "gateway.lock";

/// Errors of taking the lock.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "the state directory {dir} is in use by another gateway ({holder}, holding {file}); \
         stop that gateway first, or give this one its own --state-dir"
    )]
    Held {
        dir: PathBuf,
        file: PathBuf,
        holder: String,
    },
    /// The lock file cannot be opened, locked or written.
    #[error("cannot lock the state directory through {file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, LockError>;

/// The held lock; dropping it releases the directory.
#[derive(Debug)]
pub struct StateLock {
    _file: Flock<File>,
}

impl StateLock {
    /// Takes the lock of `dir` (which must exist) or says who holds it.
    pub fn acquire(dir: &Path) -> Result<StateLock> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            file: path.clone(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        let mut locked = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(LockError::Held {
                    dir: dir.to_path_buf(),
                    file: path.clone(),
                    holder: holder(&text),
                });
            }
            Err((_, errno)) => return Err(io(errno.into())),
        };
        // Ours now: record who we are for the next one to name.
        locked.set_len(0).map_err(io)?;
        locked.rewind().map_err(io)?;
        writeln!(locked, "{}", std::process::id()).map_err(io)?;
        Ok(StateLock { _file: locked })
    }
}

/// `pid N (openshell-gateway)`, from the lock file's text and `/proc`.
fn holder(text: &str) -> String {
    match text.trim().parse::<u32>() {
        Ok(pid) => match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
            Ok(comm) => format!("pid {pid}, {}", comm.trim()),
            Err(_) => format!("pid {pid}"),
        },
        Err(_) => "a process that has not written its pid yet".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_names_the_holder_and_the_first_release_frees_it() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains("--state-dir"), "{err}");
        drop(first);
        StateLock::acquire(dir.path()).expect("free again once released");
    }
}
