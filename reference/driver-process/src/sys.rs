//! The narrow syscall interface of this crate.
//!
//! Every function here is one system call (or a short sequence of them) with one `unsafe` block.
//! Nothing here allocates: [`crate::launch`] calls these between `fork` and `exec`, where only
//! async-signal-safe work is allowed. Errors are `std::io::Error::last_os_error()`, which does not
//! allocate either.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::RawFd;
use std::ptr;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(ptr::null(), CStr::as_ptr)
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// This process's id.
pub fn getpid() -> i32 {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// The parent's process id (0 when the parent is outside this process's PID namespace).
pub fn getppid() -> i32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() }
}

/// `unshare(2)`: leave the namespaces named by `flags` (`CLONE_NEW*`).
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare only changes this process's namespaces; flags are plain bits.
    check(unsafe { libc::unshare(flags) }).map(drop)
}

/// `fork(2)`: 0 in the child, the child's pid in the parent.
///
/// # Safety
/// The caller must be single-threaded (as between `fork` and `exec`) or accept that the child may
/// only do async-signal-safe work.
pub unsafe fn fork() -> io::Result<i32> {
    // SAFETY: the caller upholds fork's contract (see above); fork takes no arguments.
    check(unsafe { libc::fork() })
}

/// `waitpid(2)` on one child. `Ok(None)` when `nohang` and the child is still running.
pub fn waitpid(pid: i32, nohang: bool) -> io::Result<Option<libc::c_int>> {
    let mut status: libc::c_int = 0;
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: `status` is a valid, writable c_int for the duration of the call.
        match check(unsafe { libc::waitpid(pid, &mut status, flags) }) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(status)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// A wait status as an exit code: the code itself, or 128 + n for a death by signal n.
pub fn exit_code_of(status: libc::c_int) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// `kill(2)`.
pub fn kill(pid: i32, signal: libc::c_int) -> io::Result<()> {
    // SAFETY: kill takes plain integers; a wrong pid is an error, never memory unsafety.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// A set of signals, blocked and waited for synchronously.
#[derive(Clone, Copy)]
pub struct SignalSet(libc::sigset_t);

impl SignalSet {
    /// The set holding exactly `signals`.
    pub fn of(signals: &[libc::c_int]) -> io::Result<SignalSet> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the sigset_t it is given.
        check(unsafe { libc::sigemptyset(set.as_mut_ptr()) })?;
        // SAFETY: initialised by sigemptyset just above.
        let mut set = unsafe { set.assume_init() };
        for &signal in signals {
            // SAFETY: `set` is an initialised sigset_t owned by this frame.
            check(unsafe { libc::sigaddset(&mut set, signal) })?;
        }
        Ok(SignalSet(set))
    }

    /// Makes this set the calling thread's signal mask (an empty set unblocks everything).
    pub fn set_mask(&self) -> io::Result<()> {
        // SAFETY: the set is initialised; the old mask is not requested (null).
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, ptr::null_mut()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(rc))
        }
    }

    /// Waits for one of the (blocked) signals of this set and returns its number.
    pub fn wait(&self) -> io::Result<libc::c_int> {
        loop {
            // SAFETY: the set is initialised; no siginfo is requested (null).
            match check(unsafe { libc::sigwaitinfo(&self.0, ptr::null_mut()) }) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

/// `prctl(PR_SET_PDEATHSIG)`: receive `signal` when the parent thread exits.
pub fn set_parent_death_signal(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: PR_SET_PDEATHSIG takes the signal number as its only argument.
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) })
        .map(drop)
}

/// `prctl(PR_SET_NAME)`: the thread's name in `ps` and `/proc/<pid>/comm` (15 bytes at most).
pub fn set_name(name: &CStr) -> io::Result<()> {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string that outlives the call.
    check(unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr(), 0, 0, 0) }).map(drop)
}

/// `pipe2(O_CLOEXEC)`: (read end, write end).
pub fn pipe_cloexec() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [-1 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two c_ints, as pipe2 requires.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    Ok((fds[0], fds[1]))
}

/// `close(2)`; errors are ignored (the descriptor is gone either way).
pub fn close(fd: RawFd) {
    // SAFETY: closing a descriptor this code owns; callers never use it afterwards.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor from 3 up except `keep`.
pub fn close_all_but(keep: RawFd) -> io::Result<()> {
    let keep = keep as libc::c_uint;
    if keep > 3 {
        // SAFETY: close_range takes plain integers; closing inherited descriptors is intended.
        check(unsafe { libc::close_range(3, keep - 1, 0) })?;
    }
    // SAFETY: as above.
    check(unsafe { libc::close_range(keep.max(2) + 1, libc::c_uint::MAX, 0) }).map(drop)
}

/// Marks every descriptor from 3 up close-on-exec (so `exec` drops whatever was inherited).
pub fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: close_range takes plain integers; with CLOSE_RANGE_CLOEXEC it only sets flags.
    check(unsafe {
        libc::close_range(
            3,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_int,
        )
    })
    .map(drop)
}

/// Whether the write end of the pipe `fd` reads from has been closed by every holder.
pub fn hung_up(fd: RawFd) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `pfd` is one valid pollfd; a zero timeout never blocks.
    check(unsafe { libc::poll(&mut pfd, 1, 0) })?;
    Ok(pfd.revents & libc::POLLHUP != 0)
}

/// `mount(2)`.
pub fn mount(
    source: &CStr,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> io::Result<()> {
    // SAFETY: every pointer is a NUL-terminated string that outlives the call, or null.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast(),
        )
    };
    check(rc).map(drop)
}

/// `umount2(MNT_DETACH)`.
pub fn unmount_detach(target: &CStr) -> io::Result<()> {
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) }).map(drop)
}

/// `chdir(2)`.
pub fn chdir(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::chdir(path.as_ptr()) }).map(drop)
}

/// `chroot(2)`.
pub fn chroot(path: &CStr) -> io::Result<()> {
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::chroot(path.as_ptr()) }).map(drop)
}

/// `mknod(2)` of a character device.
pub fn mknod_char(path: &CStr, mode: libc::mode_t, major: u32, minor: u32) -> io::Result<()> {
    let dev = libc::makedev(major, minor);
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::mknod(path.as_ptr(), libc::S_IFCHR | mode, dev) }).map(drop)
}

/// `symlink(2)`.
pub fn symlink(target: &CStr, link: &CStr) -> io::Result<()> {
    // SAFETY: both are NUL-terminated strings that outlive the call.
    check(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }).map(drop)
}

/// `_exit(2)`: ends the process at once, without running destructors or atexit handlers.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(code) }
}
