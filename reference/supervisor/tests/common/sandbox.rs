//! Runs the real supervisor binary the way the process driver does: chrooted into an assembled
//! fixture root, as PID 1 of a new PID namespace in a new mount namespace with /proc mounted,
//! on the host network. Needs root.
//!
//! The test process forks (std's spawn); that child unshares the mount and PID namespaces and
//! forks again: the grandchild is PID 1 of the new namespace, mounts /proc, chroots and execs
//! the supervisor; the child stays as a tiny waiter that exits with the grandchild's status.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openshell_fixtures::{assemble, Catalog, Inputs};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

/// The sandbox id and token the tests hand the supervisor.
pub const SANDBOX_ID: &str = "sb-test";
pub const TOKEN: &str = "tok-secret-123";
/// linux/capability.h
const CAP_SYS_ADMIN: libc::c_int = 21;

/// The probe binary, built by `cargo build -p openshell-probe` next to this test's binaries.
pub fn probe_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("openshell-probe");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p openshell-probe` before these tests",
        path.display()
    );
    path
}

/// An assembled fixture root in a temporary directory.
pub struct Root {
    pub dir: tempfile::TempDir,
    pub fixture: openshell_fixtures::Fixture,
}

impl Root {
    /// Assembles fixture `name` with this build's supervisor and probe and /bin/busybox.
    pub fn assemble(name: &str) -> Root {
        let catalog = Catalog::load_default().expect("fixture catalog");
        let fixture = catalog.get(name).expect("fixture").clone();
        let inputs = Inputs {
            supervisor: PathBuf::from(env!("CARGO_BIN_EXE_openshell-supervisor")),
            busybox: PathBuf::from("/bin/busybox"),
            probe: probe_path(),
            extra_tree: None,
        };
        let dir = tempfile::Builder::new()
            .prefix("supervisor-test-")
            .tempdir()
            .expect("tempdir");
        assemble(&catalog, &fixture, &inputs, dir.path()).expect("assemble");
        Root { dir, fixture }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file into the root.
    pub fn write(&self, rel: &str, text: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
}

/// How to start the supervisor.
#[derive(Default, Clone)]
pub struct Launch {
    /// Environment beyond id/endpoint/token and the fixture's env.
    pub env: Vec<(String, String)>,
    /// Replaces the fixture's command (the supervisor's argv[1..]).
    pub command: Option<Vec<String>>,
    /// Drop CAP_SYS_ADMIN from the bounding set before exec: the supervisor then runs as root
    /// without it, and `unshare(CLONE_NEWNET)` fails with EPERM for real (as under gVisor).
    pub without_cap_sys_admin: bool,
    /// Start the supervisor already as this uid:gid (an outer runtime that dropped privileges
    /// before the entrypoint, seed 003).
    pub as_ids: Option<(u32, u32)>,
    /// Start the supervisor under a seccomp filter that answers `seccomp(2)` with EINVAL, as
    /// gVisor does for filters it does not model: both of the supervisor's filters fail for real.
    pub seccomp_einval: bool,
}

/// The harness filter of [`Launch::seccomp_einval`].
fn seccomp_einval_filter() -> seccompiler::BpfProgram {
    let rules = [(libc::SYS_seccomp, vec![])].into_iter().collect();
    let arch = std::env::consts::ARCH.try_into().expect("arch");
    let filter = seccompiler::SeccompFilter::new(
        rules,
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::EINVAL as u32),
        arch,
    )
    .expect("filter");
    filter.try_into().expect("compile")
}

/// A running supervisor.
pub struct Running {
    child: Child,
    stderr: Arc<Mutex<String>>,
    eof: Option<tokio::sync::oneshot::Receiver<()>>,
    started: Instant,
}

/// How it ended.
#[derive(Debug)]
pub struct Outcome {
    pub code: Option<i32>,
    pub elapsed: Duration,
    pub stderr: String,
}

impl Launch {
    /// Starts the supervisor in `root` against `endpoint`.
    pub fn start(&self, root: &Root, endpoint: &str) -> Running {
        let mut cmd = Command::new("/usr/local/bin/openshell-supervisor");
        cmd.args(
            self.command
                .clone()
                .unwrap_or_else(|| root.fixture.command.clone()),
        )
        .env_clear()
        .env("PATH", "/usr/local/bin:/bin")
        .env(openshell_proto::env::SANDBOX_ID, SANDBOX_ID)
        .env(openshell_proto::env::ENDPOINT, endpoint)
        .env(openshell_proto::env::SANDBOX_TOKEN, TOKEN)
        .envs(root.fixture.env.iter())
        .envs(self.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
        let root_c = CString::new(root.path().as_os_str().as_bytes()).unwrap();
        let proc_c = CString::new(root.path().join("proc").as_os_str().as_bytes()).unwrap();
        let (drop_admin, ids) = (self.without_cap_sys_admin, self.as_ids);
        let filter = self.seccomp_einval.then(seccomp_einval_filter);
        // SAFETY: `enter` makes only raw system calls on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                enter(&root_c, &proc_c, drop_admin, ids)?;
                match &filter {
                    Some(program) => {
                        seccompiler::apply_filter(program).map_err(std::io::Error::other)
                    }
                    None => Ok(()),
                }
            })
        };
        let mut child = cmd.spawn().expect("spawn the supervisor");
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let (eof_tx, eof) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let text = String::from_utf8_lossy(&buf[..n]);
                eprint!("{text}");
                sink.lock().unwrap().push_str(&text);
            }
            let _ = eof_tx.send(());
        });
        Running {
            child,
            stderr,
            eof: Some(eof),
            started: Instant::now(),
        }
    }
}

impl Running {
    /// Waits for the supervisor to exit; panics with its stderr when `within` passes.
    pub async fn finish(mut self, within: Duration) -> Outcome {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => {
                let code = status.expect("wait").code();
                // The waiter exits once PID 1 is gone; stderr reaches EOF right after.
                let stderr = self.stderr_after_eof().await;
                Outcome {
                    code,
                    elapsed: self.started.elapsed(),
                    stderr,
                }
            }
            Err(_) => {
                let _ = self.child.kill().await;
                panic!(
                    "supervisor still running after {within:?}; stderr:\n{}",
                    self.stderr.lock().unwrap()
                );
            }
        }
    }

    async fn stderr_after_eof(&mut self) -> String {
        if let Some(eof) = self.eof.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), eof).await;
        }
        self.stderr.lock().unwrap().clone()
    }

    /// Stops the sandbox (SIGKILL to the waiter; PID 1 follows through its parent-death signal).
    pub async fn kill(mut self) -> String {
        let _ = self.child.kill().await;
        let _ = self.child.wait().await;
        self.stderr.lock().unwrap().clone()
    }

    /// The supervisor's pid as the host sees it (the waiter's only child).
    pub fn supervisor_pid(&self) -> i32 {
        let waiter = self.child.id().expect("waiter running");
        let children = std::fs::read_to_string(format!("/proc/{waiter}/task/{waiter}/children"))
            .expect("children");
        children
            .split_whitespace()
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the supervisor")
    }

    /// What the supervisor printed so far.
    pub fn stderr_so_far(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

fn cvt(rc: libc::c_int) -> std::io::Result<()> {
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// In the forked child: new mount + PID namespaces, fork PID 1, /proc, chroot.
fn enter(
    root: &CString,
    proc_dir: &CString,
    drop_admin: bool,
    ids: Option<(u32, u32)>,
) -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) })?;
    // SAFETY: unshare takes flags only.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWPID) })?;
    // SAFETY: the pointers are static C strings or null; MS_REC|MS_PRIVATE changes propagation only.
    cvt(unsafe {
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    })?;
    // SAFETY: fork in a single-threaded (already forked) process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid > 0 {
        waiter(pid);
    }
    // SAFETY: prctl with integer arguments only.
    cvt(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) })?;
    // SAFETY: valid C strings that outlive the call.
    cvt(unsafe {
        libc::mount(
            c"proc".as_ptr(),
            proc_dir.as_ptr(),
            c"proc".as_ptr(),
            0,
            std::ptr::null(),
        )
    })?;
    // SAFETY: a valid C string.
    cvt(unsafe { libc::chroot(root.as_ptr()) })?;
    // SAFETY: a static C string.
    cvt(unsafe { libc::chdir(c"/".as_ptr()) })?;
    if drop_admin {
        // SAFETY: prctl with integer arguments only.
        cvt(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN) })?;
    }
    if let Some((uid, gid)) = ids {
        let groups = [gid];
        // SAFETY: the kernel reads one gid from `groups`, which outlives the call.
        cvt(unsafe { libc::syscall(libc::SYS_setgroups, 1, groups.as_ptr()) } as libc::c_int)?;
        // SAFETY: integers only.
        cvt(unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } as libc::c_int)?;
        // SAFETY: integers only.
        cvt(unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } as libc::c_int)?;
    }
    Ok(())
}

/// The waiter: closes every inherited fd but stdio (so std's spawn sees the exec), waits for
/// PID 1 and exits with its status.
fn waiter(pid: libc::pid_t) -> ! {
    // SAFETY: close_range takes integers only.
    unsafe { libc::syscall(libc::SYS_close_range, 3, u32::MAX, 0) };
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            // SAFETY: _exit takes an integer and does not return.
            unsafe { libc::_exit(125) };
        }
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    // SAFETY: _exit takes an integer and does not return.
    unsafe { libc::_exit(code) }
}
