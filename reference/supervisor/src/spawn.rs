//! The one spawn path for everything image-controlled (boot hook and main process).
//!
//! Pre-exec steps, in order, each async-signal-safe (raw syscalls only, nothing allocated):
//! 1. `setsid`: the process leads its own group, so a timeout can kill all of it;
//! 2. `setns` into the workload network namespace (needs CAP_SYS_ADMIN, so before the drop);
//! 3. drop privileges: bounding set emptied, supplementary groups, gid, uid (the kernel clears
//!    the effective and permitted capabilities on the uid change), ambient set cleared, then
//!    verified, `setuid(0)` included; skipped when already at the target ids (seed 003);
//! 4. the workload seccomp filter (sets `no_new_privs`), last, so it need not allow steps 1-3;
//! 5. `exec`, directly: a missing exec bit or interpreter is an error, never a shell fallback.
//!
//! A failing step writes its number to a close-on-exec pipe so the parent can name it.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use openshell_proto::v1::SupervisorStartupStage as Stage;
use seccompiler::BpfProgram;

use crate::identity::Identity;
use crate::netns::Netns;
use crate::reaper::Reaper;
use crate::sys::{self, Errno};

/// Errors of the spawn path.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// `setsid` failed.
    #[error("setsid failed: {0}")]
    Session(Errno),
    /// `setns` into the workload namespace failed.
    #[error("joining the workload network namespace failed: {:?} ({})", .0, .0.desc())]
    Netns(Errno),
    /// The privilege drop failed or did not hold.
    #[error("dropping privileges to {user} ({uid}:{gid}) failed: {:?} ({})", .errno, .errno.desc())]
    Privileges {
        user: String,
        uid: u32,
        gid: u32,
        errno: Errno,
    },
    /// The workload filter was refused.
    #[error("applying the workload seccomp filter failed: {:?} ({})", .0, .0.desc())]
    Seccomp(Errno),
    /// `exec` failed.
    #[error("{program} is {what}")]
    Exec {
        program: String,
        what: String,
        errno: Errno,
    },
    /// Anything else (pipes, fork).
    #[error("cannot start {program}: {source}")]
    Io {
        program: String,
        #[source]
        source: std::io::Error,
    },
}

impl SpawnError {
    /// The startup stage a failure belongs to (an exec failure is the caller's: hook or spawn).
    pub fn stage(&self, exec_stage: Stage) -> Stage {
        match self {
            SpawnError::Netns(_) => Stage::Netns,
            SpawnError::Privileges { .. } => Stage::Privileges,
            SpawnError::Seccomp(_) => Stage::WorkloadSeccomp,
            SpawnError::Exec { .. } => exec_stage,
            SpawnError::Session(_) | SpawnError::Io { .. } => Stage::Spawn,
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, SpawnError>;

const STEP_SESSION: u8 = 1;
const STEP_NETNS: u8 = 2;
const STEP_PRIVILEGES: u8 = 3;
const STEP_SECCOMP: u8 = 4;

/// What every spawned process gets.
pub struct Spawner {
    /// The namespace to join (None when skipped or tolerated).
    pub netns: Option<Netns>,
    /// Who to become.
    pub identity: Identity,
    /// The workload programs (None when skipped or tolerated).
    pub seccomp: Option<Vec<BpfProgram>>,
    /// The environment, the sandbox token already removed.
    pub env: Vec<(OsString, OsString)>,
    /// Reaps what is spawned.
    pub reaper: Reaper,
}

/// A started process.
pub struct Spawned {
    /// Its pid (also its process group).
    pub pid: i32,
    /// Its stderr, when captured.
    pub stderr: Option<OwnedFd>,
}

/// The supervisor's environment for its children: everything but the sandbox token, plus the
/// identity's `HOME`, `USER` and `LOGNAME`, and a default `PATH` when there is none.
pub fn child_env(
    vars: impl Iterator<Item = (OsString, OsString)>,
    id: &Identity,
) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = vars
        .filter(|(k, _)| {
            (k != openshell_proto::env::SANDBOX_TOKEN || crate::mutants::active("token-inherited"))
                && !["HOME", "USER", "LOGNAME"].contains(&k.to_str().unwrap_or(""))
        })
        .collect();
    for (k, v) in [
        ("HOME", &id.home),
        ("USER", &id.user),
        ("LOGNAME", &id.user),
    ] {
        env.push((k.into(), v.into()));
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push((
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ));
    }
    env
}

impl Spawner {
    /// Starts `argv` through the spawn path; `capture_stderr` pipes its stderr (boot hook).
    pub fn spawn(&self, argv: &[String], capture_stderr: bool) -> Result<Spawned> {
        let program = argv.first().cloned().unwrap_or_default();
        let io = |source| SpawnError::Io {
            program: program.clone(),
            source,
        };
        let (step_r, step_w) = sys::pipe().map_err(|e| io(e.into()))?;
        let mut cmd = Command::new(&program);
        cmd.args(&argv[1..])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        if capture_stderr {
            // No /dev/null needed in the root: stdin is a pipe whose writer is dropped.
            cmd.stdin(Stdio::piped()).stderr(Stdio::piped());
        }
        let step_fd = step_w.as_raw_fd();
        let netns_fd = self.netns.as_ref().map(Netns::fd);
        let (uid, gid, groups) = (
            self.identity.uid,
            self.identity.gid,
            self.identity.groups.clone(),
        );
        let programs = self.seccomp.clone().unwrap_or_default();
        // Mutant `hook-as-root`: the hook (the one spawn that captures stderr) keeps root.
        let keep_root = capture_stderr && crate::mutants::active("hook-as-root");
        let pre_exec = move || -> std::io::Result<()> {
            let fail = |step: u8, e: Errno| {
                sys::write_all(step_fd, &[step]);
                std::io::Error::from_raw_os_error(e as i32)
            };
            sys::setsid().map_err(|e| fail(STEP_SESSION, e))?;
            if let Some(fd) = netns_fd {
                sys::setns_net(fd).map_err(|e| fail(STEP_NETNS, e))?;
            }
            if !keep_root {
                drop_privileges(uid, gid, &groups).map_err(|e| fail(STEP_PRIVILEGES, e))?;
            }
            for p in &programs {
                seccompiler::apply_filter(p).map_err(|e| fail(STEP_SECCOMP, seccomp_errno(&e)))?;
            }
            Ok(())
        };
        // SAFETY: the closure only makes raw system calls (see `sys`: async-signal-safe, no
        // allocation, no locks) on data captured by value before the fork.
        unsafe { cmd.pre_exec(pre_exec) };
        let spawned = {
            let _guard = self.reaper.spawn_guard();
            cmd.spawn()
        };
        drop(step_w);
        match spawned {
            Ok(mut child) => {
                drop(child.stdin.take());
                let stderr = child.stderr.take().map(OwnedFd::from);
                Ok(Spawned {
                    pid: child.id() as i32,
                    stderr,
                })
            }
            Err(e) => Err(self.failure(&program, step_r, e)),
        }
    }

    fn failure(&self, program: &str, step_r: OwnedFd, e: std::io::Error) -> SpawnError {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(0));
        let mut step = [0u8; 1];
        let got = std::fs::File::from(step_r).read(&mut step).unwrap_or(0);
        match (got, step[0]) {
            (1, STEP_SESSION) => SpawnError::Session(errno),
            (1, STEP_NETNS) => SpawnError::Netns(errno),
            (1, STEP_PRIVILEGES) => SpawnError::Privileges {
                user: self.identity.user.clone(),
                uid: self.identity.uid,
                gid: self.identity.gid,
                errno,
            },
            (1, STEP_SECCOMP) => SpawnError::Seccomp(errno),
            _ if e.raw_os_error().is_some() => SpawnError::Exec {
                program: program.into(),
                what: exec_failure(program, errno),
                errno,
            },
            _ => SpawnError::Io {
                program: program.into(),
                source: e,
            },
        }
    }
}

/// Why exec'ing `program` failed with `errno`, in words. For ENOENT it looks at the file: a
/// missing file, a `#!` line naming a missing interpreter (named), or a binary whose loader is
/// missing are different mistakes with different fixes.
fn exec_failure(program: &str, errno: Errno) -> String {
    match errno {
        Errno::EACCES => {
            "not executable (permission denied: it is exec'd directly, check its exec bit)".into()
        }
        Errno::ENOENT => missing_what(program),
        Errno::ENOEXEC => "not a valid executable (exec format error: missing #! line?)".into(),
        e => format!("not executable: {e:?} ({})", e.desc()),
    }
}

fn missing_what(program: &str) -> String {
    let path = std::path::Path::new(program);
    if !program.contains('/') || std::fs::symlink_metadata(path).is_err() {
        return "not found (no such file or directory)".into();
    }
    match shebang_interpreter(path) {
        Some(interpreter) if std::fs::metadata(&interpreter).is_err() => format!(
            "a script whose #! interpreter {interpreter} is not found (no such file or \
             directory): install {interpreter} in the image or change the #! line"
        ),
        Some(interpreter) => format!(
            "a script whose #! interpreter {interpreter} exists but cannot be started (no such \
             file or directory: its own loader or libraries are missing?)"
        ),
        None => "present, but its ELF loader (dynamic linker) is missing (no such file or \
                 directory): link it statically or add the loader to the image"
            .into(),
    }
}

/// The interpreter a `#!` first line names, if the file starts with one.
fn shebang_interpreter(path: &std::path::Path) -> Option<String> {
    let mut head = [0u8; 256];
    let n = std::fs::File::open(path).ok()?.read(&mut head).ok()?;
    let line = head[..n].strip_prefix(b"#!")?;
    let line = line.split(|&b| b == b'\n').next()?;
    let text = String::from_utf8_lossy(line);
    text.split_whitespace().next().map(str::to_string)
}

fn seccomp_errno(e: &seccompiler::Error) -> Errno {
    match e {
        seccompiler::Error::Prctl(io) | seccompiler::Error::Seccomp(io) => {
            Errno::from_raw(io.raw_os_error().unwrap_or(libc::EINVAL))
        }
        _ => Errno::EINVAL,
    }
}

/// Async-signal-safe privilege drop (see the module header, step 3).
fn drop_privileges(uid: u32, gid: u32, groups: &[u32]) -> sys::Result<()> {
    let at_target = |(ruid, euid, rgid, egid): (u32, u32, u32, u32)| {
        ruid == uid && euid == uid && rgid == gid && egid == gid
    };
    if !at_target(sys::ids()) {
        if sys::ids().1 == 0 {
            sys::drop_bounding_set()?;
        }
        sys::setgroups(groups)?;
        sys::setresgid(gid)?;
        sys::setresuid(uid)?;
    }
    sys::clear_ambient()?;
    if !at_target(sys::ids()) {
        return Err(Errno::EPERM);
    }
    if uid != 0 && sys::setuid(0).is_ok() {
        return Err(Errno::EPERM);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_environment_has_no_token_and_the_identity_home() {
        let id = Identity {
            user: "sandbox".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            home: "/sandbox".into(),
        };
        let vars = [
            ("OPENSHELL_SANDBOX_TOKEN", "secret"),
            ("HOME", "/root"),
            ("A", "b"),
        ]
        .into_iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = child_env(vars, &id);
        assert!(!env.iter().any(|(k, _)| k == "OPENSHELL_SANDBOX_TOKEN"));
        assert!(env.contains(&("HOME".into(), "/sandbox".into())));
        assert!(!env.contains(&("HOME".into(), "/root".into())));
        assert!(env.iter().any(|(k, _)| k == "PATH"));
    }

    #[test]
    fn exec_failures_name_the_cause() {
        assert!(exec_failure("/x", Errno::EACCES).contains("not executable (permission denied"));
        assert!(exec_failure("/nonexistent/x", Errno::ENOENT).starts_with("not found"));
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hook.sh");
        std::fs::write(&script, "#!/opt/nowhere/zsh -e\nexit 0\n").unwrap();
        let what = exec_failure(script.to_str().unwrap(), Errno::ENOENT);
        assert!(
            what.contains("#! interpreter /opt/nowhere/zsh is not found"),
            "{what}"
        );
        let binary = dir.path().join("tool");
        std::fs::write(&binary, b"\x7fELF").unwrap();
        assert!(exec_failure(binary.to_str().unwrap(), Errno::ENOENT).contains("loader"));
    }
}
