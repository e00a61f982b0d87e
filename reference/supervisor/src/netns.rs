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
    /// unshare(2) failed (EPERM under gVisor, without CAP_SYS_ADMIN, or not as root).
    #[error("unshare(CLONE_NEWNET) failed: {:?} ({}){}", .0, .0.desc(), .1.hint(*.0, Need::SysAdmin))]
    Unshare(Errno, Privilege),
    /// The new namespace could not be opened (is /proc mounted?).
    #[error("cannot open /proc/thread-self/ns/net of the new namespace: {0} (is /proc mounted?)")]
    Open(#[source] std::io::Error),
    /// `lo` could not be brought up.
    #[error("cannot bring up lo in the new namespace: {:?} ({}){}", .0, .0.desc(), .1.hint(*.0, Need::NetAdmin))]
    Loopback(Errno, Privilege),
    /// The helper thread died.
    #[error("the netns thread failed: {0}")]
    Thread(String),
}

impl NetnsError {
    /// The errno name for the degraded list (`EPERM`), or a short word.
    pub fn detail(&self) -> String {
        match self {
            NetnsError::Unshare(e, _) | NetnsError::Loopback(e, _) => format!("{e:?}"),
            NetnsError::Open(e) => e
                .raw_os_error()
                .map_or("open".into(), |n| format!("{:?}", Errno::from_raw(n))),
            NetnsError::Thread(_) => "thread".into(),
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, NetnsError>;

/// The capability a step needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// `unshare(CLONE_NEWNET)`.
    SysAdmin,
    /// Bringing up `lo`.
    NetAdmin,
}

/// linux/capability.h
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Who the supervisor runs as, to explain an EPERM: its effective uid and capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privilege {
    /// The effective uid.
    pub euid: u32,
    /// The effective capability set (`CapEff` of `/proc/self/status`); `None` if unreadable.
    pub effective: Option<u64>,
}

impl Privilege {
    /// The calling process's.
    pub fn current() -> Privilege {
        let effective = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
                u64::from_str_radix(line.trim_start_matches("CapEff:").trim(), 16).ok()
            });
        Privilege {
            euid: sys::ids().1,
            effective,
        }
    }

    fn has(&self, cap: u32) -> Option<bool> {
        self.effective.map(|set| set & (1 << cap) != 0)
    }

    /// What an EPERM means for this identity, and what to do; empty for other errors.
    pub fn hint(&self, errno: Errno, need: Need) -> String {
        if errno != Errno::EPERM {
            return String::new();
        }
        let (cap, name, docker) = match need {
            Need::SysAdmin => (CAP_SYS_ADMIN, "CAP_SYS_ADMIN", "SYS_ADMIN"),
            Need::NetAdmin => (CAP_NET_ADMIN, "CAP_NET_ADMIN", "NET_ADMIN"),
        };
        if self.euid != 0 {
            return format!(
                "; the supervisor runs as uid {}, not root: it needs uid 0 with CAP_SYS_ADMIN and \
                 CAP_NET_ADMIN to make the workload's network namespace (it drops privileges for \
                 the workload itself), so start the image's entrypoint as root (no USER in the \
                 image, or the runtime's --user 0)",
                self.euid
            );
        }
        match self.has(cap) {
            Some(false) => format!(
                "; the supervisor runs as root without {name} in its effective set: the runtime \
                 must grant it (Docker: --cap-add {docker}), or, where it cannot (gVisor), declare \
                 netns in OPENSHELL_SKIP_BOOTSTRAP or use OPENSHELL_BEST_EFFORT_FAILURES"
            ),
            _ => format!(
                "; the supervisor runs as root with {name}, so the runtime or a security policy \
                 refuses it (gVisor, a seccomp or LSM profile)"
            ),
        }
    }
}

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
                sys::unshare_net().map_err(|e| NetnsError::Unshare(e, Privilege::current()))?;
                let file = File::open("/proc/thread-self/ns/net").map_err(NetnsError::Open)?;
                sys::set_loopback_up()
                    .map_err(|e| NetnsError::Loopback(e, Privilege::current()))?;
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

    const ROOT_WITH_ALL: Privilege = Privilege {
        euid: 0,
        effective: Some(u64::MAX),
    };

    #[test]
    fn unshare_failure_names_the_errno_once() {
        let e = NetnsError::Unshare(Errno::EPERM, ROOT_WITH_ALL);
        assert!(
            e.to_string()
                .starts_with("unshare(CLONE_NEWNET) failed: EPERM (Operation not permitted); "),
            "{e}"
        );
        assert_eq!(e.detail(), "EPERM");
        let other = NetnsError::Loopback(Errno::EAFNOSUPPORT, ROOT_WITH_ALL);
        assert!(!other.to_string().contains(';'), "{other}");
    }

    #[test]
    fn an_eperm_names_the_uid_or_the_missing_capability_and_what_to_do() {
        let user = Privilege {
            euid: 1000,
            effective: Some(0),
        };
        let hint = user.hint(Errno::EPERM, Need::SysAdmin);
        assert!(
            hint.contains("uid 1000, not root") && hint.contains("USER"),
            "{hint}"
        );
        let no_admin = Privilege {
            euid: 0,
            effective: Some(!(1 << CAP_SYS_ADMIN)),
        };
        let hint = no_admin.hint(Errno::EPERM, Need::SysAdmin);
        assert!(
            hint.contains("without CAP_SYS_ADMIN") && hint.contains("--cap-add SYS_ADMIN"),
            "{hint}"
        );
        let hint = no_admin.hint(Errno::EPERM, Need::NetAdmin);
        assert!(hint.contains("with CAP_NET_ADMIN"), "{hint}");
    }
}
