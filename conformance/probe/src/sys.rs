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

/// The effective, permitted and inheritable capability sets, from capget(2) (version 3).
pub fn capabilities() -> Result<(u64, u64, u64), i32> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: the kernel reads `header` and writes two `Data` entries (version 3), both live
    // on this frame for the whole call.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) };
    if rc < 0 {
        return Err(errno());
    }
    let join = |f: fn(&Data) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

/// A capability set read one bit at a time with prctl (`PR_CAPBSET_READ` or
/// `PR_CAP_AMBIENT_IS_SET`), up to the kernel's last capability (EINVAL).
fn prctl_set(option: libc::c_int, sub: Option<libc::c_ulong>) -> Result<u64, i32> {
    let mut set = 0u64;
    for cap in 0..64u64 {
        let rc = match sub {
            // SAFETY: prctl with integer arguments only.
            Some(sub) => unsafe { libc::prctl(option, sub, cap, 0, 0) },
            // SAFETY: prctl with integer arguments only.
            None => unsafe { libc::prctl(option, cap, 0, 0, 0) },
        };
        match rc {
            1 => set |= 1 << cap,
            0 => {}
            // Past the last capability; at cap 0 the kernel has no such set (gVisor has no
            // ambient set), which holds nothing.
            _ if errno() == libc::EINVAL => break,
            _ => return Err(errno()),
        }
    }
    Ok(set)
}

/// The bounding set.
pub fn bounding_set() -> Result<u64, i32> {
    prctl_set(libc::PR_CAPBSET_READ, None)
}

/// The ambient set.
pub fn ambient_set() -> Result<u64, i32> {
    prctl_set(
        libc::PR_CAP_AMBIENT,
        Some(libc::PR_CAP_AMBIENT_IS_SET as libc::c_ulong),
    )
}

/// Whether `no_new_privs` is set.
pub fn no_new_privs() -> Result<bool, i32> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(rc == 1)
    }
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
