//! The narrow syscall interface of the supervisor: every `unsafe` of the crate lives here, one
//! short block per call.
//!
//! Functions marked *async-signal-safe* are raw system calls with no allocation and no locks;
//! they are the only ones the spawn path calls between `fork` and `exec`. They call the kernel
//! directly (not glibc's `setresuid` & co., which broadcast to every thread of the process).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub use nix::errno::Errno;

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, Errno>;

fn check(rc: libc::c_long) -> Result<()> {
    if rc < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Moves the calling thread into a new network namespace.
pub fn unshare_net() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
}

/// Brings `lo` up in the calling thread's network namespace.
pub fn set_loopback_up() -> Result<()> {
    // SAFETY: socket(2) takes no pointers; the returned fd is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, which lives on
    // this stack frame for the whole call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) }.into())?;
    // SAFETY: reading the union member SIOCGIFFLAGS just wrote.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) }.into())
}

/// Fills `buf` from the kernel's random source (no `/dev/urandom` needed in the root).
pub fn getrandom(buf: &mut [u8]) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`, which is valid memory.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            match Errno::last() {
                Errno::EINTR => continue,
                e => return Err(e),
            }
        }
        filled += n as usize;
    }
    Ok(())
}

/// Makes the supervisor the reaper of orphaned descendants even when it is not PID 1.
pub fn set_child_subreaper() -> Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// Async-signal-safe: joins the network namespace `fd` refers to.
pub fn setns_net(fd: RawFd) -> Result<()> {
    // SAFETY: setns(2) takes an fd and flags, no pointers.
    check(unsafe { libc::syscall(libc::SYS_setns, fd, libc::CLONE_NEWNET) })
}

/// Async-signal-safe: starts a new session (the workload gets its own process group).
pub fn setsid() -> Result<()> {
    // SAFETY: setsid(2) takes no arguments.
    check(unsafe { libc::syscall(libc::SYS_setsid) })
}

/// Async-signal-safe: puts the caller in a new process group of its own.
pub fn setpgid_self() -> Result<()> {
    // SAFETY: setpgid(2) with (0, 0) takes no pointers.
    check(unsafe { libc::syscall(libc::SYS_setpgid, 0, 0) })
}

/// Async-signal-safe: drops every capability from the bounding set (needs CAP_SETPCAP).
pub fn drop_bounding_set() -> Result<()> {
    for cap in 0..64 {
        // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes no pointers.
        let rc = unsafe { libc::syscall(libc::SYS_prctl, libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc < 0 {
            match Errno::last() {
                Errno::EINVAL => return Ok(()), // past the kernel's last capability
                e => return Err(e),
            }
        }
    }
    Ok(())
}

/// Async-signal-safe: clears the ambient capability set (EINVAL on kernels without it is fine).
pub fn clear_ambient() -> Result<()> {
    // SAFETY: prctl(PR_CAP_AMBIENT, CLEAR_ALL) takes no pointers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_prctl,
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    match check(rc) {
        Err(Errno::EINVAL) => Ok(()),
        other => other,
    }
}

/// Async-signal-safe: sets the supplementary groups of the calling thread.
pub fn setgroups(groups: &[libc::gid_t]) -> Result<()> {
    // SAFETY: the kernel reads `groups.len()` gids from the slice, which outlives the call.
    check(unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) })
}

/// Async-signal-safe: sets real, effective and saved gid.
pub fn setresgid(gid: libc::gid_t) -> Result<()> {
    // SAFETY: setresgid(2) takes three integers.
    check(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) })
}

/// Async-signal-safe: sets real, effective and saved uid.
pub fn setresuid(uid: libc::uid_t) -> Result<()> {
    // SAFETY: setresuid(2) takes three integers.
    check(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) })
}

/// Async-signal-safe: setuid(2), used to verify that regaining root fails.
pub fn setuid(uid: libc::uid_t) -> Result<()> {
    // SAFETY: setuid(2) takes one integer.
    check(unsafe { libc::syscall(libc::SYS_setuid, uid) })
}

/// Async-signal-safe: (real uid, effective uid, real gid, effective gid).
pub fn ids() -> (u32, u32, u32, u32) {
    (
        nix::unistd::getuid().as_raw(),
        nix::unistd::geteuid().as_raw(),
        nix::unistd::getgid().as_raw(),
        nix::unistd::getegid().as_raw(),
    )
}

/// Async-signal-safe: writes `bytes` to `fd` (best effort: used to report a pre-exec step).
pub fn write_all(fd: RawFd, bytes: &[u8]) {
    // SAFETY: the kernel reads at most `bytes.len()` bytes from the slice.
    let _ = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

/// A pipe with both ends close-on-exec: (read, write).
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
}

/// Sends `signal` to `pid` (a negative pid names a process group).
pub fn kill(pid: i32, signal: nix::sys::signal::Signal) -> Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
}
