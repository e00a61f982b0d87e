//! Step 4 of the startup: the workload network namespace.
//!
//! `unshare(CLONE_NEWNET)` runs in a dedicated thread that exits right after, so the supervisor
//! itself stays in its own network (it must reach the gateway); the namespace lives on through
//! the fd kept here, which the spawn path joins with `setns`. It holds loopback only, brought up.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};

use crate::sys::{self, Errno};

/// Errors of the netns step (stage NETNS).
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// unshare(2) failed (EPERM under gVisor or without CAP_SYS_ADMIN).
    #[error("unshare(CLONE_NEWNET) failed: {:?} ({})", .0, .0.desc())]
    Unshare(Errno),
    /// The new namespace could not be opened (is /proc mounted?).
    #[error("cannot open /proc/thread-self/ns/net of the new namespace: {0} (is /proc mounted?)")]
    Open(#[source] std::io::Error),
    /// `lo` could not be brought up.
    #[error("cannot bring up lo in the new namespace: {:?} ({})", .0, .0.desc())]
    Loopback(Errno),
    /// The helper thread died.
    #[error("the netns thread failed: {0}")]
    Thread(String),
}

impl NetnsError {
    /// The errno name for the degraded list (`EPERM`), or a short word.
    pub fn detail(&self) -> String {
        match self {
            NetnsError::Unshare(e) | NetnsError::Loopback(e) => format!("{e:?}"),
            NetnsError::Open(e) => e
                .raw_os_error()
                .map_or("open".into(), |n| format!("{:?}", Errno::from_raw(n))),
            NetnsError::Thread(_) => "thread".into(),
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, NetnsError>;

/// The workload's network namespace, open for `setns`.
#[derive(Debug)]
pub struct Netns {
    file: File,
}

impl Netns {
    /// Creates the namespace in a dedicated thread and brings `lo` up in it.
    pub fn create() -> Result<Netns> {
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(|| {
                sys::unshare_net().map_err(NetnsError::Unshare)?;
                let file = File::open("/proc/thread-self/ns/net").map_err(NetnsError::Open)?;
                sys::set_loopback_up().map_err(NetnsError::Loopback)?;
                Ok(Netns { file })
            })
            .map_err(|e| NetnsError::Thread(e.to_string()))?
            .join()
            .map_err(|_| NetnsError::Thread("panicked".into()))?
    }

    /// The fd the spawn path joins.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unshare_failure_names_the_errno_once() {
        let e = NetnsError::Unshare(Errno::EPERM);
        assert_eq!(
            e.to_string(),
            "unshare(CLONE_NEWNET) failed: EPERM (Operation not permitted)"
        );
        assert_eq!(e.detail(), "EPERM");
    }
}
