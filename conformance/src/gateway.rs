//! The gateway under test: the reference gateway started as a process (like any vendor's would
//! be), or an endpoint given with `--gateway`.
//!
//! A started gateway gets `--listen 127.0.0.1:0 --db :memory: --state-dir <fresh tmp> --driver
//! <process|docker|vm> [--docker-runtime runsc]`; its first stdout line names the bound address. It
//! is stopped with SIGTERM (then killed) when the [`Gateway`] is dropped or [`Gateway::stop`]ped.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use openshell_proto::v1::open_shell_client::OpenShellClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::Channel;

use crate::Driver;

/// The first stdout line's prefix.
pub const LISTENING_PREFIX: &str = "openshell-gateway listening on ";
/// How long a started gateway may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No gateway binary where it was looked for.
    #[error("gateway binary {0} not found (build it with `cargo build -p openshell-gateway`, or pass --gateway-bin / OPENSHELL_GATEWAY_BIN, or --gateway URL)")]
    Missing(PathBuf),
    /// Starting the process failed.
    #[error("starting {path}: {source}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The process did not print its address.
    #[error(
        "the gateway did not print `{LISTENING_PREFIX}ADDR` within {STARTUP_TIMEOUT:?}: {detail}"
    )]
    NoAddress { detail: String },
    /// The endpoint could not be reached; `cause` is the underlying reason, spelled out.
    #[error("connecting to {endpoint}: {cause}")]
    Connect { endpoint: String, cause: String },
    /// The state directory could not be made.
    #[error("state directory: {0}")]
    StateDir(#[source] std::io::Error),
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, GatewayError>;

/// Why a connection failed, in words: tonic's own text is only `transport error`, so the error
/// chain is walked, and a refused connection says what it means.
pub fn connect_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut refused = false;
    let mut source = error.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            refused |= io.kind() == std::io::ErrorKind::ConnectionRefused;
        }
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    let chain = parts.join(": ");
    if refused || chain.to_lowercase().contains("connection refused") {
        format!(
            "connection refused: nothing is listening there (start the gateway first, or leave \
             out --gateway to let the runner start the reference one) [{chain}]"
        )
    } else {
        chain
    }
}

/// Where to find the reference gateway: `explicit`, else `OPENSHELL_GATEWAY_BIN`, else the
/// `openshell-gateway` beside the current executable (or beside its parent, for test binaries in
/// `target/<triple>/debug/deps/`).
pub fn locate_binary(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("OPENSHELL_GATEWAY_BIN") {
        return p.into();
    }
    sibling("openshell-gateway")
}

/// A binary beside the current executable (or beside its parent directory).
pub fn sibling(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    let here = dir.join(name);
    if here.exists() {
        return here;
    }
    match dir.parent() {
        Some(up) if dir.file_name().is_some_and(|n| n == "deps") => up.join(name),
        _ => here,
    }
}

/// A gateway the suite talks to.
#[derive(Debug)]
pub struct Gateway {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The gateway's state directory, when the suite started it.
    pub state_dir: Option<PathBuf>,
    /// A description for reports (`openshell-gateway (started: …)` or the URL).
    pub description: String,
    child: Option<Child>,
    _tmp: Option<tempfile::TempDir>,
}

impl Gateway {
    /// An endpoint started by someone else.
    pub fn external(url: &str) -> Gateway {
        Gateway {
            endpoint: url.trim_end_matches('/').to_string(),
            state_dir: None,
            description: url.to_string(),
            child: None,
            _tmp: None,
        }
    }

    /// Starts the reference gateway at `binary` for `driver`.
    /// `env` is added to the gateway's environment (a mutants build reads `OPENSHELL_MUTANT`).
    pub async fn start(binary: &Path, driver: Driver, env: &[(String, String)]) -> Result<Gateway> {
        Gateway::start_with(binary, driver, env, &[]).await
    }

    /// [`Gateway::start`] with the lane's own flags added (`--kubeconfig …` for k3s).
    pub async fn start_with(
        binary: &Path,
        driver: Driver,
        env: &[(String, String)],
        extra: &[String],
    ) -> Result<Gateway> {
        if !binary.exists() {
            return Err(GatewayError::Missing(binary.to_path_buf()));
        }
        let tmp = tempfile::Builder::new()
            .prefix("osc-gateway-")
            .tempdir()
            .map_err(GatewayError::StateDir)?;
        let state_dir = tmp.path().join("state");
        std::fs::create_dir_all(&state_dir).map_err(GatewayError::StateDir)?;
        let stderr_path = tmp.path().join("gateway.stderr");
        let stderr = std::fs::File::create(&stderr_path).map_err(GatewayError::StateDir)?;
        let mut command = Command::new(binary);
        command
            .args([
                "--listen",
                "127.0.0.1:0",
                "--db",
                ":memory:",
                "--driver",
                driver.gateway_driver(),
            ])
            .arg("--state-dir")
            .arg(&state_dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .kill_on_drop(true);
        if driver == Driver::DockerRunsc {
            command.args(["--docker-runtime", "runsc"]);
        }
        command.args(extra);
        let mut child = command.spawn().map_err(|source| GatewayError::Spawn {
            path: binary.to_path_buf(),
            source,
        })?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(STARTUP_TIMEOUT, lines.next_line()).await;
        let stderr_tail = || {
            let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        };
        let line = match first {
            Ok(Ok(Some(line))) => line,
            Ok(Ok(None)) => {
                let status = child
                    .wait()
                    .await
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                return Err(GatewayError::NoAddress {
                    detail: format!("it exited ({status}); stderr:\n{}", stderr_tail()),
                });
            }
            Ok(Err(e)) => {
                return Err(GatewayError::NoAddress {
                    detail: e.to_string(),
                })
            }
            Err(_) => {
                return Err(GatewayError::NoAddress {
                    detail: format!("timeout; stderr:\n{}", stderr_tail()),
                })
            }
        };
        let Some(addr) = line.strip_prefix(LISTENING_PREFIX) else {
            return Err(GatewayError::NoAddress {
                detail: format!("first line was {line:?}"),
            });
        };
        // Keep draining stdout so the gateway never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Gateway {
            endpoint: format!("http://{}", addr.trim()),
            description: format!(
                "{} --driver {} (started by the suite)",
                binary.display(),
                driver.gateway_driver()
            ),
            state_dir: Some(state_dir),
            child: Some(child),
            _tmp: Some(tmp),
        })
    }

    /// A client of the gateway.
    pub async fn connect(&self) -> Result<OpenShellClient<Channel>> {
        let endpoint = Channel::from_shared(self.endpoint.clone())
            .map_err(|e| GatewayError::NoAddress {
                detail: format!("bad endpoint {}: {e}", self.endpoint),
            })?
            .connect_timeout(Duration::from_secs(10));
        let channel = endpoint
            .connect()
            .await
            .map_err(|source| GatewayError::Connect {
                endpoint: self.endpoint.clone(),
                cause: connect_cause(&source),
            })?;
        Ok(OpenShellClient::new(channel))
    }

    /// Stops a started gateway: SIGTERM, then kill after 10 s.
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) with a pid this process spawned and has not yet reaped; no memory
            // is passed.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}
