//! The real `openshell-gateway` binary as a child process: started with flags, its first stdout
//! line read for the address, its stderr kept in a file, stopped with SIGTERM or SIGKILL.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// A running gateway process.
pub struct GatewayProcess {
    child: Option<Child>,
    /// `127.0.0.1:PORT`, as printed.
    pub addr: String,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    stderr_path: PathBuf,
    _logs: tempfile::TempDir,
}

/// How a gateway that never listened ended.
#[derive(Debug)]
pub struct Refused {
    pub status: ExitStatus,
    pub stderr: String,
}

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_openshell-gateway"))
}

impl GatewayProcess {
    /// Starts the gateway with `args`; `Err` with its stderr when it exits before listening.
    pub fn start<I, S>(args: I) -> Result<GatewayProcess, Refused>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        Self::start_with(args, &[])
    }

    /// As [`GatewayProcess::start`], with extra environment variables.
    pub fn start_with<I, S>(args: I, env: &[(&str, &str)]) -> Result<GatewayProcess, Refused>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let logs = tempfile::tempdir().unwrap();
        let stderr_path = logs.path().join("gateway.stderr");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let mut child = Command::new(binary())
            .args(&args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut line = String::new();
        // The first line, or EOF when the gateway exits without listening.
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(addr) = line.trim().strip_prefix("openshell-gateway listening on ") else {
            let status = child.wait().unwrap();
            return Err(Refused {
                status,
                stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
            });
        };
        let addr = addr.to_string();
        Ok(GatewayProcess {
            endpoint: format!("http://{addr}"),
            addr,
            child: Some(child),
            stderr_path,
            _logs: logs,
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// What it wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// A client of its API.
    pub async fn client(
        &self,
    ) -> openshell_proto::v1::open_shell_client::OpenShellClient<tonic::transport::Channel> {
        openshell_proto::v1::open_shell_client::OpenShellClient::connect(self.endpoint.clone())
            .await
            .unwrap()
    }

    /// SIGKILL, as a crash: nothing of the gateway's shutdown runs. Returns its stderr.
    pub fn kill9(mut self) -> String {
        self.signal_and_reap(Signal::SIGKILL)
    }

    /// SIGTERM and wait: a clean shutdown. Returns its stderr.
    pub fn stop(mut self) -> String {
        self.signal_and_reap(Signal::SIGTERM)
    }

    fn signal_and_reap(&mut self, signal: Signal) -> String {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), signal);
            wait_bounded(&mut child, Duration::from_secs(10));
        }
        self.stderr()
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.signal_and_reap(Signal::SIGKILL);
    }
}

/// Waits for `child` (a blocking wait on a helper thread, bounded); kills it past the bound.
fn wait_bounded(child: &mut Child, within: Duration) {
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let _ = tx.send(child.wait());
        });
        if rx.recv_timeout(within).is_err() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    });
}

/// A fresh state directory's flags: `--state-dir DIR` (the store is `DIR/gateway.db`).
pub fn state_args(dir: &Path) -> Vec<OsString> {
    vec!["--state-dir".into(), dir.into()]
}
