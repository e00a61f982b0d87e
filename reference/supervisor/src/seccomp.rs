//! Step 5 of the startup: the seccomp filters, as reviewed data (one comment per rule).
//!
//! Both filters allow by default and return `EPERM` for a short list of kernel interfaces a
//! sandbox has no business with (the shape upstream uses, with seccompiler). The supervisor's
//! prelude is applied to all its threads; the workload filter is compiled here and applied in
//! the spawn path after the privilege drop, so the boot hook and the main process both get it.
//! A second workload program answers `clone3` with `ENOSYS` (its flags live in memory a filter
//! cannot read), so libc falls back to `clone`, whose flags the first program checks.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

/// Errors of the seccomp steps (stages SUPERVISOR_SECCOMP and WORKLOAD_SECCOMP).
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The filter could not be compiled.
    #[error("cannot compile the {which} filter: {source}")]
    Compile {
        which: &'static str,
        #[source]
        source: seccompiler::Error,
    },
    /// The thread that tried the workload filter died.
    #[error("the thread trying the workload filter panicked")]
    Thread,
    /// The kernel refused the filter.
    #[error("cannot apply the {which} filter: {source} [{}]", kernel_detail(.source))]
    Apply {
        which: &'static str,
        #[source]
        source: seccompiler::Error,
    },
}

impl SeccompError {
    /// A short detail for the degraded list: the errno name when there is one.
    pub fn detail(&self) -> String {
        let source = match self {
            SeccompError::Compile { source, .. } | SeccompError::Apply { source, .. } => source,
            SeccompError::Thread => return "thread".into(),
        };
        kernel_detail(source)
    }
}

/// The errno name of a seccompiler error (`EINVAL`), or its text.
fn kernel_detail(source: &seccompiler::Error) -> String {
    match source {
        seccompiler::Error::Prctl(e) | seccompiler::Error::Seccomp(e) => {
            e.raw_os_error().map_or_else(
                || e.to_string(),
                |n| format!("{:?}", nix::errno::Errno::from_raw(n)),
            )
        }
        other => other.to_string(),
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, SeccompError>;

/// `(syscall, why it is blocked)`: blocked for the supervisor *and* everything it starts.
pub const BLOCKED_EVERYWHERE: &[(i64, &str)] = &[
    (
        libc::SYS_ptrace,
        "ptrace: no sandbox process may read or steer another one's memory",
    ),
    (
        libc::SYS_process_vm_writev,
        "process_vm_writev: writing another process's memory, as ptrace",
    ),
    (
        libc::SYS_bpf,
        "bpf: loading kernel programs is kernel attack surface",
    ),
    (
        libc::SYS_io_uring_setup,
        "io_uring_setup: a second syscall path seccomp cannot see into",
    ),
    (
        libc::SYS_io_uring_enter,
        "io_uring_enter: as io_uring_setup",
    ),
    (
        libc::SYS_io_uring_register,
        "io_uring_register: as io_uring_setup",
    ),
    (
        libc::SYS_kexec_load,
        "kexec_load: replacing the running kernel",
    ),
    (
        libc::SYS_kexec_file_load,
        "kexec_file_load: replacing the running kernel",
    ),
    (libc::SYS_init_module, "init_module: loading kernel modules"),
    (
        libc::SYS_finit_module,
        "finit_module: loading kernel modules",
    ),
    (
        libc::SYS_delete_module,
        "delete_module: unloading kernel modules",
    ),
    (
        libc::SYS_mount,
        "mount: the sandbox's filesystem view is fixed by its driver",
    ),
    (libc::SYS_umount2, "umount2: as mount"),
    (libc::SYS_pivot_root, "pivot_root: as mount"),
    (libc::SYS_swapon, "swapon: host memory management"),
    (libc::SYS_swapoff, "swapoff: host memory management"),
    (libc::SYS_reboot, "reboot: host power state"),
    (libc::SYS_acct, "acct: host process accounting"),
    (
        libc::SYS_keyctl,
        "keyctl: the kernel keyring is not namespaced",
    ),
    (
        libc::SYS_add_key,
        "add_key: the kernel keyring is not namespaced",
    ),
    (
        libc::SYS_request_key,
        "request_key: the kernel keyring is not namespaced",
    ),
    (
        libc::SYS_userfaultfd,
        "userfaultfd: a common exploit primitive (stalling kernel copies)",
    ),
    (
        libc::SYS_perf_event_open,
        "perf_event_open: kernel attack surface and side channels",
    ),
    (
        libc::SYS_open_by_handle_at,
        "open_by_handle_at: escapes a chroot through file handles",
    ),
    (
        libc::SYS_unshare,
        "unshare: the supervisor made its only namespace (step 4) before this filter",
    ),
];

/// `(syscall, why)`: blocked for the workload (boot hook and main process) only; the supervisor
/// itself needs these in the spawn path.
pub const BLOCKED_FOR_WORKLOAD: &[(i64, &str)] = &[(
    libc::SYS_setns,
    "setns: the workload must not leave the namespaces it was put in",
)];

/// `(syscall, argument, mask, value, why)`: blocked for the workload when `arg & mask == value`.
pub const BLOCKED_FOR_WORKLOAD_IF: &[(i64, u8, u64, u64, &str)] = &[
    (
        libc::SYS_clone,
        0,
        libc::CLONE_NEWUSER as u64,
        libc::CLONE_NEWUSER as u64,
        "clone(CLONE_NEWUSER): a user namespace hands an unprivileged process every capability",
    ),
    (
        libc::SYS_socket,
        0,
        u32::MAX as u64,
        libc::AF_PACKET as u64,
        "socket(AF_PACKET): raw link-layer access",
    ),
];

/// The supervisor's prelude filter.
pub fn supervisor_filter() -> Result<BpfProgram> {
    compile(
        "supervisor",
        BLOCKED_EVERYWHERE.iter().map(|(n, _)| (*n, vec![])),
        libc::EPERM,
    )
}

/// The workload programs, applied in this order.
pub fn workload_filters() -> Result<Vec<BpfProgram>> {
    let unconditional = BLOCKED_EVERYWHERE
        .iter()
        .chain(BLOCKED_FOR_WORKLOAD)
        .map(|(n, _)| (*n, vec![]));
    let mut conditional = Vec::new();
    for &(nr, arg, mask, value, _) in BLOCKED_FOR_WORKLOAD_IF {
        let cond = SeccompCondition::new(
            arg,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(mask),
            value,
        )
        .and_then(|c| SeccompRule::new(vec![c]))
        .map_err(|e| SeccompError::Compile {
            which: "workload",
            source: e.into(),
        })?;
        conditional.push((nr, vec![cond]));
    }
    let main = compile("workload", unconditional.chain(conditional), libc::EPERM)?;
    let clone3 = compile(
        "workload clone3",
        [(libc::SYS_clone3, vec![])].into_iter(),
        libc::ENOSYS,
    )?;
    Ok(vec![main, clone3])
}

fn compile(
    which: &'static str,
    rules: impl Iterator<Item = (i64, Vec<SeccompRule>)>,
    errno: i32,
) -> Result<BpfProgram> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, rule) in rules {
        map.entry(nr).or_default().extend(rule);
    }
    let arch = std::env::consts::ARCH
        .try_into()
        .map_err(|e: seccompiler::BackendError| SeccompError::Compile {
            which,
            source: e.into(),
        })?;
    SeccompFilter::new(
        map,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .and_then(BpfProgram::try_from)
    .map_err(|e| SeccompError::Compile {
        which,
        source: e.into(),
    })
}

/// Applies the supervisor prelude to every thread of the supervisor.
pub fn apply_to_supervisor(program: &BpfProgram) -> Result<()> {
    seccompiler::apply_filter_all_threads(program).map_err(|source| SeccompError::Apply {
        which: "supervisor",
        source,
    })
}

/// Checks that the kernel accepts the workload programs by applying them to a throwaway thread
/// (seccomp and `no_new_privs` are per thread), so a failure surfaces here, at its stage,
/// instead of in the middle of a spawn.
pub fn try_workload(programs: &[BpfProgram]) -> Result<()> {
    std::thread::scope(|s| {
        s.spawn(|| {
            programs
                .iter()
                .try_for_each(|p| seccompiler::apply_filter(p))
                .map_err(|source| SeccompError::Apply {
                    which: "workload",
                    source,
                })
        })
        .join()
        .unwrap_or(Err(SeccompError::Thread))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_is_commented_and_listed_once() {
        let mut seen = std::collections::BTreeSet::new();
        for (nr, why) in BLOCKED_EVERYWHERE.iter().chain(BLOCKED_FOR_WORKLOAD) {
            assert!(why.len() > 10, "rule {nr} needs a reason");
            assert!(seen.insert(*nr), "syscall {nr} listed twice");
        }
        // The spawn path must keep what it needs.
        for needed in [
            libc::SYS_setns,
            libc::SYS_setresuid,
            libc::SYS_setgroups,
            libc::SYS_seccomp,
            libc::SYS_prctl,
        ] {
            assert!(
                !BLOCKED_EVERYWHERE.iter().any(|(n, _)| *n == needed),
                "{needed} is needed by the spawn path"
            );
        }
    }

    #[test]
    fn filters_compile_for_this_architecture() {
        assert!(!supervisor_filter().unwrap().is_empty());
        assert_eq!(workload_filters().unwrap().len(), 2);
    }

    #[test]
    fn workload_filter_makes_io_uring_setup_fail_with_eperm_in_its_thread_only() {
        let programs = workload_filters().unwrap();
        let in_filtered_thread = std::thread::spawn(move || {
            programs
                .iter()
                .for_each(|p| seccompiler::apply_filter(p).unwrap());
            nix::errno::Errno::result(io_uring_setup())
        })
        .join()
        .unwrap();
        assert_eq!(in_filtered_thread, Err(nix::errno::Errno::EPERM));
        // This thread is unaffected: the call gets past seccomp (and fails on the bad pointer).
        assert_ne!(
            nix::errno::Errno::result(io_uring_setup()),
            Err(nix::errno::Errno::EPERM)
        );
    }

    fn io_uring_setup() -> libc::c_long {
        // SAFETY: a null params pointer makes the kernel return EFAULT, touching no memory.
        unsafe {
            libc::syscall(
                libc::SYS_io_uring_setup,
                1,
                std::ptr::null_mut::<libc::c_void>(),
            )
        }
    }
}
