//! The probe's raw syscalls: one short `unsafe` block each.

/// The errno of the last failed call.
fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// `io_uring_setup(1, NULL)`: `Err(errno)`. Without a filter the kernel answers EFAULT (the
/// params pointer is null, nothing is created); the workload filter answers EPERM first.
pub fn io_uring_setup_null() -> Result<i64, i32> {
    // SAFETY: a null params pointer makes the kernel fail with EFAULT without touching memory.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_io_uring_setup,
            1,
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(rc)
    }
}

/// `setuid(uid)` as a raw syscall (this thread only).
pub fn setuid(uid: u32) -> Result<(), i32> {
    // SAFETY: setuid(2) takes one integer.
    let rc = unsafe { libc::syscall(libc::SYS_setuid, uid) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// (real uid, effective uid, real gid, effective gid).
pub fn ids() -> (u32, u32, u32, u32) {
    // SAFETY: these four calls take no arguments and cannot fail.
    unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    }
}

/// The supplementary groups.
pub fn groups() -> Result<Vec<u32>, i32> {
    let mut buf = vec![0 as libc::gid_t; 1024];
    // SAFETY: the kernel writes at most `buf.len()` gids into `buf`.
    let n = unsafe { libc::getgroups(buf.len() as libc::c_int, buf.as_mut_ptr()) };
    if n < 0 {
        return Err(errno());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// The symbolic name of an errno value.
pub fn errno_name(e: i32) -> String {
    match e {
        libc::EPERM => "EPERM".into(),
        libc::EACCES => "EACCES".into(),
        libc::EFAULT => "EFAULT".into(),
        libc::ENOSYS => "ENOSYS".into(),
        libc::EINVAL => "EINVAL".into(),
        libc::ENOENT => "ENOENT".into(),
        n => format!("errno {n}"),
    }
}
