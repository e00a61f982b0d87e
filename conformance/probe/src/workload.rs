//! `openshell-probe workload`: what the workload must see, checked from inside it.
//!
//! | check | exit code | holds when |
//! |---|---|---|
//! | `netns-differs` | 10 | `/proc/self/ns/net` differs from `/proc/1/ns/net` (PID 1 is the supervisor in both drivers); when PID 1's link cannot be read (it is root, we are not), its `/proc/1/net/dev` interface list must differ from ours. Either way, the same non-`lo` interfaces as PID 1 fail it (gVisor shows different ns inodes for one namespace) |
//! | `netns-only-lo` | 11 | `/proc/self/net/dev` lists only `lo`, and `lo` is up (127.0.0.1 can be bound) |
//! | `seccomp-eperm` | 12 | `io_uring_setup` fails with EPERM (the workload filter blocks it; without a filter the null-pointer call fails with EFAULT instead) |
//! | `identity` | 13 | real/effective uid and gid are the user's from `/etc/passwd`, groups are its primary group plus the `/etc/group` entries listing it |
//! | `no-root` | 14 | `setuid(0)` fails |
//! | `capabilities` | 15 | the effective, permitted, inheritable, bounding and ambient sets are empty and `no_new_privs` is set (read with capget/prctl) |
//! | `token-absent` | 16 | `OPENSHELL_SANDBOX_TOKEN` is not in the environment |
//! | `boot-marker` | 17 | (with `--marker PATH`) the file holds our uid: the boot hook ran as us, before us |
//! | `seccomp-own-filter` | 18 | we run under more seccomp filters (`Seccomp_filters` in `/proc/self/status`) than our parent, the supervisor: the workload filter is ours, not only the supervisor's prelude we inherit |
//!
//! Every check runs; the exit status is the code of the first one that failed, 0 if none.

use std::collections::BTreeSet;

use crate::sys;

/// Options of the mode.
#[derive(Debug)]
pub struct Options {
    /// The expected user (default `sandbox`).
    pub user: String,
    /// A boot-hook marker to check.
    pub marker: Option<String>,
}

impl Options {
    /// Parses `[--user NAME] [--marker PATH]`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut opts = Options {
            user: "sandbox".into(),
            marker: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{arg} needs a value"))
            };
            match arg.as_str() {
                "--user" => opts.user = value()?,
                "--marker" => opts.marker = Some(value()?),
                other => return Err(format!("unknown option {other:?}")),
            }
        }
        Ok(opts)
    }
}

/// The checks, in the order they run.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    NetnsDiffers,
    NetnsOnlyLo,
    SeccompEperm,
    Identity,
    NoRoot,
    Capabilities,
    TokenAbsent,
    BootMarker,
    SeccompOwnFilter,
}

impl Check {
    /// The exit status when this check fails.
    pub fn code(self) -> u8 {
        10 + self as u8
    }

    fn name(self) -> &'static str {
        match self {
            Check::NetnsDiffers => "netns-differs",
            Check::NetnsOnlyLo => "netns-only-lo",
            Check::SeccompEperm => "seccomp-eperm",
            Check::Identity => "identity",
            Check::NoRoot => "no-root",
            Check::Capabilities => "capabilities",
            Check::TokenAbsent => "token-absent",
            Check::BootMarker => "boot-marker",
            Check::SeccompOwnFilter => "seccomp-own-filter",
        }
    }
}

/// Runs every check; returns the exit status.
pub fn run(opts: &Options) -> u8 {
    let mut checks: Vec<(Check, Result<String, String>)> = vec![
        (Check::NetnsDiffers, netns_differs()),
        (Check::NetnsOnlyLo, netns_only_lo()),
        (Check::SeccompEperm, seccomp_eperm()),
        (Check::Identity, identity(&opts.user)),
        (Check::NoRoot, no_root()),
        (Check::Capabilities, capabilities()),
        (Check::TokenAbsent, token_absent()),
        (Check::SeccompOwnFilter, seccomp_own_filter()),
    ];
    if let Some(marker) = &opts.marker {
        checks.push((Check::BootMarker, boot_marker(marker)));
    }
    let mut status = 0;
    for (check, result) in checks {
        match result {
            Ok(detail) => say(&format!("ok   {}: {detail}", check.name())),
            Err(detail) => {
                say(&format!(
                    "FAIL {} (exit {}): {detail}",
                    check.name(),
                    check.code()
                ));
                if status == 0 {
                    status = check.code();
                }
            }
        }
    }
    say(&if status == 0 {
        "all checks hold".to_string()
    } else {
        format!("exit {status}")
    });
    status
}

/// One line on stderr in a single write, so it never interleaves with the supervisor's logs
/// (writes up to PIPE_BUF are atomic).
fn say(line: &str) {
    use std::io::Write;
    let _ = std::io::stderr().write_all(format!("openshell-probe: {line}\n").as_bytes());
}

fn interfaces(path: &str) -> Result<BTreeSet<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    Ok(text
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(|s| s.trim().to_string())
        .collect())
}

fn netns_differs() -> Result<String, String> {
    let own = std::fs::read_link("/proc/self/ns/net")
        .map_err(|e| format!("cannot read /proc/self/ns/net: {e}"))?;
    let ours = interfaces("/proc/self/net/dev")?;
    // PID 1's interfaces, when readable: a workload namespace holds only lo, so the same
    // non-lo interfaces as the supervisor's mean the same network whatever the links say
    // (gVisor shows different ns inodes for one namespace).
    let theirs = interfaces("/proc/1/net/dev");
    if let Ok(theirs) = &theirs {
        if *theirs == ours && ours.iter().any(|i| i != "lo") {
            return Err(format!(
                "PID 1 (the supervisor) and we see the same interfaces {ours:?}"
            ));
        }
    }
    match std::fs::read_link("/proc/1/ns/net") {
        Ok(pid1) if pid1 != own => Ok(format!(
            "{} != supervisor's {}",
            own.display(),
            pid1.display()
        )),
        Ok(pid1) => Err(format!(
            "same namespace as PID 1 (the supervisor): {}",
            pid1.display()
        )),
        Err(e) => match theirs {
            Ok(theirs) if theirs != ours => Ok(format!(
                "{} (/proc/1/ns/net unreadable: {e}; PID 1 sees {theirs:?}, we see {ours:?})",
                own.display()
            )),
            Ok(_) => Err(format!(
                "/proc/1/ns/net unreadable ({e}) and PID 1 sees the same interfaces {ours:?}"
            )),
            Err(e2) => Err(format!(
                "cannot read /proc/1/ns/net ({e}) nor compare interfaces ({e2})"
            )),
        },
    }
}

fn netns_only_lo() -> Result<String, String> {
    let names = interfaces("/proc/self/net/dev")?;
    if names.iter().map(String::as_str).ne(["lo"]) {
        return Err(format!("interfaces {names:?}, expected only lo"));
    }
    std::net::UdpSocket::bind("127.0.0.1:0")
        .map_err(|e| format!("only lo, but it is not usable: {e}"))?;
    Ok("only lo, and it is up".into())
}

fn seccomp_eperm() -> Result<String, String> {
    match sys::io_uring_setup_null() {
        Err(libc::EPERM) => Ok("io_uring_setup fails with EPERM".into()),
        Err(e) => Err(format!(
            "io_uring_setup failed with {}, not EPERM: no workload filter",
            sys::errno_name(e)
        )),
        Ok(fd) => Err(format!(
            "io_uring_setup succeeded (fd {fd}): no workload filter"
        )),
    }
}

fn seccomp_own_filter() -> Result<String, String> {
    let parent = std::os::unix::process::parent_id();
    let ours = crate::creds::seccomp_filters("self")?;
    let theirs = crate::creds::seccomp_filters(&parent.to_string())
        .map_err(|e| format!("cannot compare with the parent (pid {parent}): {e}"))?;
    if ours > theirs {
        Ok(format!(
            "{ours} seccomp filters, the parent (pid {parent}) {theirs}: the workload filter is our own"
        ))
    } else {
        Err(format!(
            "{ours} seccomp filters, no more than the parent (pid {parent}, {theirs}): only the supervisor's prelude, no workload filter"
        ))
    }
}

fn identity(user: &str) -> Result<String, String> {
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| format!("cannot read /etc/passwd: {e}"))?;
    let entry: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 4 && f[0] == user)
        .ok_or_else(|| format!("user {user:?} not in /etc/passwd"))?;
    let (uid, gid): (u32, u32) = (
        entry[2].parse().map_err(|_| "bad uid")?,
        entry[3].parse().map_err(|_| "bad gid")?,
    );
    let groups = std::fs::read_to_string("/etc/group")
        .map_err(|e| format!("cannot read /etc/group: {e}"))?;
    let mut expected: BTreeSet<u32> = groups
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4 && f[3].split(',').any(|m| m == user))
        .filter_map(|f| f[2].parse().ok())
        .collect();
    expected.insert(gid);
    let actual: BTreeSet<u32> = sys::groups()
        .map_err(|e| format!("getgroups: {}", sys::errno_name(e)))?
        .into_iter()
        .collect();
    let ids = sys::ids();
    if ids != (uid, uid, gid, gid) {
        return Err(format!(
            "uid/euid/gid/egid {ids:?}, expected {user}'s {uid}:{gid}"
        ));
    }
    if actual != expected {
        return Err(format!("groups {actual:?}, expected {expected:?}"));
    }
    Ok(format!("{user} = {uid}:{gid}, groups {actual:?}"))
}

fn no_root() -> Result<String, String> {
    match sys::setuid(0) {
        Err(e) => Ok(format!("setuid(0) fails with {}", sys::errno_name(e))),
        Ok(()) => Err("setuid(0) succeeded".into()),
    }
}

fn capabilities() -> Result<String, String> {
    // Syscalls, not /proc/self/status: gVisor's status file has no CapAmb or NoNewPrivs lines.
    let err = |what: &str, e: i32| format!("{what}: {}", sys::errno_name(e));
    let (eff, prm, inh) = sys::capabilities().map_err(|e| err("capget", e))?;
    let bnd = sys::bounding_set().map_err(|e| err("PR_CAPBSET_READ", e))?;
    let amb = sys::ambient_set().map_err(|e| err("PR_CAP_AMBIENT_IS_SET", e))?;
    let nnp = sys::no_new_privs().map_err(|e| err("PR_GET_NO_NEW_PRIVS", e))?;
    let wrong: Vec<String> = [
        ("effective", eff),
        ("permitted", prm),
        ("inheritable", inh),
        ("bounding", bnd),
        ("ambient", amb),
    ]
    .into_iter()
    .filter(|(_, set)| *set != 0)
    .map(|(name, set)| format!("{name} set {set:#x}"))
    .chain((!nnp).then(|| "no_new_privs is not set".to_string()))
    .collect();
    if wrong.is_empty() {
        Ok("no capabilities in any set (bounding and ambient included), no_new_privs".into())
    } else {
        Err(format!(
            "{} (want every set empty and no_new_privs)",
            wrong.join(", ")
        ))
    }
}

fn token_absent() -> Result<String, String> {
    match std::env::var_os("OPENSHELL_SANDBOX_TOKEN") {
        None => Ok("OPENSHELL_SANDBOX_TOKEN not in the environment".into()),
        Some(_) => Err("OPENSHELL_SANDBOX_TOKEN is in the environment".into()),
    }
}

fn boot_marker(path: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let uid = sys::ids().0;
    if text.trim() == uid.to_string() {
        Ok(format!("{path} written by uid {uid}"))
    } else {
        Err(format!(
            "{path} holds {:?}, expected our uid {uid}",
            text.trim()
        ))
    }
}
