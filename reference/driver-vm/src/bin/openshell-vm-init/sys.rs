//! The guest init's system calls beyond those of `openshell_driver_process::sys`, one `unsafe`
//! block each.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsRawFd;

fn check(ret: libc::c_long) -> io::Result<()> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Loads the kernel module in `file` (`finit_module(2)`); an already loaded one is fine.
pub fn load_module(file: &std::fs::File) -> io::Result<()> {
    // SAFETY: finit_module(2) reads the open descriptor and the NUL-terminated empty parameter
    // string, both valid for the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            c"".as_ptr(),
            0 as libc::c_int,
        )
    };
    match check(ret) {
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        other => other,
    }
}

/// An interface request: the name and one `sockaddr_in` (the rest of the 24-byte union unused).
#[repr(C)]
struct IfreqAddr {
    name: [u8; libc::IFNAMSIZ],
    addr: libc::sockaddr_in,
    _rest: [u8; 8],
}

/// An interface request carrying flags.
#[repr(C)]
struct IfreqFlags {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _rest: [u8; 22],
}

fn ifname(name: &str) -> io::Result<[u8; libc::IFNAMSIZ]> {
    let mut out = [0u8; libc::IFNAMSIZ];
    if name.len() >= out.len() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "interface name too long",
        ));
    }
    out[..name.len()].copy_from_slice(name.as_bytes());
    Ok(out)
}

fn inet_socket() -> io::Result<std::os::fd::OwnedFd> {
    // SAFETY: socket(2) takes no pointers; the returned descriptor is owned by the OwnedFd.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and nothing else owns it.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

fn set_addr(
    sock: &impl AsRawFd,
    name: &str,
    request: libc::Ioctl,
    addr: [u8; 4],
) -> io::Result<()> {
    let mut req = IfreqAddr {
        name: ifname(name)?,
        // SAFETY: sockaddr_in is plain data; all zeroes is a valid value.
        addr: unsafe { std::mem::zeroed() },
        _rest: [0; 8],
    };
    req.addr.sin_family = libc::AF_INET as libc::sa_family_t;
    req.addr.sin_addr.s_addr = u32::from_ne_bytes(addr);
    // SAFETY: the request is a properly laid out `struct ifreq` that lives across the call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), request, &mut req) }.into())
}

/// Gives interface `name` an IPv4 address and netmask (`None`: none) and sets it up.
pub fn interface_up(name: &str, addr: Option<([u8; 4], [u8; 4])>) -> io::Result<()> {
    let sock = inet_socket()?;
    if let Some((addr, mask)) = addr {
        set_addr(&sock, name, libc::SIOCSIFADDR, addr)?;
        set_addr(&sock, name, libc::SIOCSIFNETMASK, mask)?;
    }
    let mut req = IfreqFlags {
        name: ifname(name)?,
        flags: 0,
        _rest: [0; 22],
    };
    // SAFETY: as above, a `struct ifreq` alive across the call.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) }.into())?;
    req.flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
    // SAFETY: as above.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &mut req) }.into())
}

/// Waits until `fd` (a tty) has sent everything written to it.
pub fn drain(fd: &impl AsRawFd) {
    // SAFETY: tcdrain(3) on a descriptor we own; no memory is passed.
    let _ = unsafe { libc::tcdrain(fd.as_raw_fd()) };
}

/// Flushes every filesystem, then powers the machine off (QEMU exits). Never returns.
pub fn power_off() -> ! {
    // SAFETY: sync(2) and reboot(2) take no pointers; reboot with RB_POWER_OFF does not return
    // on success.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
        // No ACPI power-off: a reboot, which `-no-reboot` turns into QEMU's exit.
        libc::reboot(libc::RB_AUTOBOOT);
    }
    // PID 1 exiting panics the kernel, and `panic=-1` with `-no-reboot` ends QEMU as well.
    std::process::exit(1)
}

/// Kills every process but this one with SIGKILL.
pub fn kill_all() {
    // SAFETY: kill(2) with pid -1 takes no pointers.
    let _ = unsafe { libc::kill(-1, libc::SIGKILL) };
}

/// Mounts `fstype` at `target` (created when missing); an already mounted target is fine.
pub fn mount(fstype: &CStr, target: &str, flags: libc::c_ulong) -> io::Result<()> {
    std::fs::create_dir_all(target)?;
    let target = std::ffi::CString::new(target).map_err(io::Error::other)?;
    match openshell_driver_process::sys::mount(fstype, &target, Some(fstype), flags, None) {
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Ok(()),
        other => other,
    }
}

/// Waits for any child: `Some((pid, exit code))`, or `None` when there is no child left.
pub fn wait_any() -> io::Result<Option<(i32, i32)>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable c_int for the duration of the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
        if pid > 0 {
            return Ok(Some((
                pid,
                openshell_driver_process::sys::exit_code_of(status),
            )));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::ECHILD) => return Ok(None),
            _ => return Err(e),
        }
    }
}
