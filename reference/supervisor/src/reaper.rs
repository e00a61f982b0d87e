//! Child reaping. The supervisor is PID 1 of its PID namespace (process driver) or container
//! (Docker), so every orphan in the sandbox becomes its child: one task answers SIGCHLD with
//! `waitpid(-1, WNOHANG)` until nothing is left, and hands the statuses of the processes the
//! supervisor started (boot hook, main process) to whoever waits for them.
//!
//! `std::process::Command::spawn` reaps a child itself when its `exec` fails; so that the reaper
//! never steals that status, spawning holds [`Reaper::spawn_guard`], which the reaper also takes.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::oneshot;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    /// The SIGCHLD handler could not be installed.
    #[error("cannot watch SIGCHLD: {0}")]
    Signal(#[source] std::io::Error),
    /// The reaper task is gone.
    #[error("the reaper stopped before process {0} exited")]
    Gone(i32),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ReaperError>;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exited with this status.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl Exit {
    /// The shell convention: the status, or 128 + the signal number.
    pub fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal(s) => match nix::sys::signal::Signal::try_from(s) {
                Ok(sig) => write!(f, "killed by signal {s} ({})", sig.as_str()),
                Err(_) => write!(f, "killed by signal {s}"),
            },
        }
    }
}

enum Slot {
    Exited(Exit),
    Waiting(oneshot::Sender<Exit>),
}

#[derive(Default)]
struct Inner {
    spawn_lock: Mutex<()>,
    slots: Mutex<HashMap<i32, Slot>>,
}

/// The reaper; cheap to clone.
#[derive(Clone)]
pub struct Reaper {
    inner: Arc<Inner>,
}

impl Reaper {
    /// Installs the SIGCHLD watch and starts the reaping task (call inside a tokio runtime,
    /// before the first child is started).
    pub fn start() -> Result<Reaper> {
        let mut sigchld = signal(SignalKind::child()).map_err(ReaperError::Signal)?;
        let reaper = Reaper {
            inner: Arc::default(),
        };
        let task = reaper.clone();
        tokio::spawn(async move {
            loop {
                task.reap_all();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        });
        Ok(reaper)
    }

    /// Held while a child is being spawned.
    pub fn spawn_guard(&self) -> MutexGuard<'_, ()> {
        self.inner
            .spawn_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for `pid` (a process this supervisor started) to end.
    pub async fn wait(&self, pid: i32) -> Result<Exit> {
        let rx = {
            let mut slots = self.slots();
            if let Some(Slot::Exited(exit)) = slots.remove(&pid) {
                return Ok(exit);
            }
            let (tx, rx) = oneshot::channel();
            slots.insert(pid, Slot::Waiting(tx));
            rx
        };
        // In case SIGCHLD arrived between the spawn and the registration.
        self.reap_all();
        rx.await.map_err(|_| ReaperError::Gone(pid))
    }

    fn slots(&self) -> MutexGuard<'_, HashMap<i32, Slot>> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn reap_all(&self) {
        let _spawning = self.spawn_guard();
        loop {
            let (pid, exit) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), Exit::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), Exit::Signal(sig as i32)),
                Ok(WaitStatus::StillAlive) => return,
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return, // ECHILD: no children left
            };
            let mut slots = self.slots();
            match slots.remove(&pid) {
                Some(Slot::Waiting(tx)) => {
                    // A waiter that gave up (a timeout) leaves the status for the next one.
                    if let Err(exit) = tx.send(exit) {
                        slots.insert(pid, Slot::Exited(exit));
                    }
                }
                // Either a child not waited for yet, or an orphan; orphans' entries are
                // bounded by the number of processes and dropped when nobody asks.
                _ if slots.len() < 4096 => {
                    slots.insert(pid, Slot::Exited(exit));
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        assert_eq!(Exit::Code(3).code(), 3);
        assert_eq!(Exit::Signal(9).code(), 137);
        assert_eq!(Exit::Code(3).to_string(), "exited with status 3");
        assert_eq!(Exit::Signal(9).to_string(), "killed by signal 9 (SIGKILL)");
    }
}
