//! One running sandbox: its launch, its output, its end, and stopping it.
//!
//! The gateway's child is the launch's intermediate (see [`crate::launch`]); its exit status is
//! PID 1's, and its exit means every process of the sandbox is gone. A monitor task owns the
//! [`tokio::process::Child`], so signals are only ever sent to a pid that has not been reaped.

use std::collections::BTreeMap;
use std::path::Path;
use std::pin::Pin;
use std::process::Stdio;
use std::time::Duration;

use openshell_driver::{DriverError, DriverEvent, EventSender};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, watch};

use crate::{launch, spawner, sys};

/// How long after a stop request the whole process group gets `SIGKILL` as well.
const ESCALATE_AFTER: Duration = Duration::from_secs(5);
/// How long output may still arrive after the sandbox ended (only a leaked descriptor can delay it).
const OUTPUT_GRACE: Duration = Duration::from_secs(5);
/// Output lines longer than this are cut into several lines.
const MAX_LINE: usize = 16 * 1024;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The launch could not be prepared.
    #[error("cannot prepare the launch: {0}")]
    Prepare(std::io::Error),
    /// The supervisor could not be started.
    #[error("cannot start {program} as PID 1 of a new PID namespace chrooted into {root}: {source}{hint}")]
    Spawn {
        program: String,
        root: String,
        #[source]
        source: std::io::Error,
        hint: &'static str,
    },
    /// The spawner thread failed.
    #[error(transparent)]
    Spawner(#[from] spawner::SpawnerError),
    /// The sandbox did not end within the deadline after it was told to.
    #[error("sandbox process {pid} did not end within {seconds} s of SIGKILL")]
    Unkillable { pid: i32, seconds: u64 },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, SandboxError>;

/// The gateway's handle on one started sandbox.
#[derive(Debug)]
pub struct Handle {
    pid: i32,
    stop: mpsc::UnboundedSender<()>,
    done: watch::Receiver<bool>,
}

impl Handle {
    /// Whether the sandbox's processes are still running (or their output still being read).
    pub fn is_running(&self) -> bool {
        !*self.done.borrow()
    }

    /// Kills the sandbox (if it still runs) and waits until it has ended, its output was emitted
    /// and its `Exited` event sent.
    pub async fn stop(mut self, deadline: Duration) -> Result<()> {
        let _ = self.stop.send(());
        let ended = tokio::time::timeout(deadline, self.done.wait_for(|done| *done)).await;
        match ended {
            Ok(_) => Ok(()),
            Err(_) => Err(SandboxError::Unkillable {
                pid: self.pid,
                seconds: deadline.as_secs(),
            }),
        }
    }
}

/// What to start.
pub struct Launch<'a> {
    pub sandbox_id: &'a str,
    pub root: &'a Path,
    pub argv: &'a [String],
    pub env: &'a BTreeMap<String, String>,
}

/// Starts the sandbox, sends `Running`, and from then on its `Output` lines and `Exited`.
pub async fn start(launch: Launch<'_>, events: &EventSender) -> Result<Handle> {
    let plan = launch::Plan::new(launch.root).map_err(SandboxError::Prepare)?;
    let Some((program, args)) = launch.argv.split_first() else {
        return Err(SandboxError::Prepare(std::io::Error::other("empty argv")));
    };
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(launch.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: `Plan::run` is written for exactly this place: it runs after fork and before exec,
    // performs only async-signal-safe system calls and allocates nothing.
    unsafe {
        command.pre_exec(move || plan.run());
    }
    let spawned = spawner::run(move || {
        // Until every process of the launch exec'd or closed what it inherited (fork_lock).
        let _forking = crate::fork_lock::forking();
        command.spawn()
    })
    .await?;
    let mut child = spawned.map_err(|source| SandboxError::Spawn {
        program: program.clone(),
        root: launch.root.display().to_string(),
        hint: if source.kind() == std::io::ErrorKind::NotFound {
            " (the roots hold no shared libraries: the supervisor must be linked statically)"
        } else {
            ""
        },
        source,
    })?;
    let pid = child.id().map_or(-1, |pid| pid as i32);
    let sandbox_id = launch.sandbox_id.to_string();
    let _ = events.send(DriverEvent::Running {
        sandbox_id: sandbox_id.clone(),
    });

    let mut pumps = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(
            stdout,
            sandbox_id.clone(),
            events.clone(),
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(
            stderr,
            sandbox_id.clone(),
            events.clone(),
        )));
    }
    let (stop_tx, stop_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    tokio::spawn(monitor(
        child,
        sandbox_id,
        events.clone(),
        stop_rx,
        done_tx,
        pumps,
    ));
    Ok(Handle {
        pid,
        stop: stop_tx,
        done: done_rx,
    })
}

async fn monitor(
    mut child: tokio::process::Child,
    sandbox_id: String,
    events: EventSender,
    mut stop: mpsc::UnboundedReceiver<()>,
    done: watch::Sender<bool>,
    mut pumps: Vec<tokio::task::JoinHandle<()>>,
) {
    let mut escalate: Option<Pin<Box<tokio::time::Sleep>>> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            Some(()) = stop.recv() => {
                // The intermediate answers SIGTERM by killing PID 1, then exits with its status.
                if let Some(pid) = child.id() {
                    let _ = sys::kill(pid as i32, libc::SIGTERM);
                }
                escalate.get_or_insert_with(|| Box::pin(tokio::time::sleep(ESCALATE_AFTER)));
            }
            () = async { if let Some(sleep) = escalate.as_mut() { sleep.await } }, if escalate.is_some() => {
                if let Some(pid) = child.id() {
                    let _ = sys::kill(-(pid as i32), libc::SIGKILL);
                }
                escalate = None;
            }
        }
    };
    // The intermediate has ended, so has every process of the sandbox: the pipes are at EOF.
    let drained = tokio::time::timeout(OUTPUT_GRACE, async {
        for pump in pumps.iter_mut() {
            let _ = pump.await;
        }
    });
    if drained.await.is_err() {
        tracing::warn!(%sandbox_id, "sandbox output still open {OUTPUT_GRACE:?} after its end; dropping the rest");
        pumps.iter().for_each(|pump| pump.abort());
    }
    let event = match status {
        Ok(status) => DriverEvent::Exited {
            sandbox_id,
            exit_code: exit_code(status),
        },
        Err(e) => DriverEvent::Failed {
            sandbox_id,
            error: DriverError::StartFailed(format!("lost track of the sandbox process: {e}")),
        },
    };
    let _ = events.send(event);
    let _ = done.send(true);
}

/// An exit status as the contract's exit code (signals as 128 + n).
fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|n| 128 + n))
        .unwrap_or(-1)
}

/// Sends every line of `reader` as an `Output` event (lossy UTF-8, without the line break).
async fn pump(mut reader: impl AsyncRead + Unpin, sandbox_id: String, events: EventSender) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 8192];
    let emit = |bytes: &[u8]| {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = String::from_utf8_lossy(bytes).into_owned();
        let _ = events.send(DriverEvent::Output {
            sandbox_id: sandbox_id.clone(),
            line,
        });
    };
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            emit(&pending[start..start + pos]);
            start += pos + 1;
        }
        pending.drain(..start);
        while pending.len() >= MAX_LINE {
            emit(&pending[..MAX_LINE]);
            pending.drain(..MAX_LINE);
        }
    }
    if !pending.is_empty() {
        emit(&pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &'static [u8]) -> Vec<String> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        pump(input, "s".into(), tx).await;
        let mut lines = Vec::new();
        while let Ok(DriverEvent::Output { line, .. }) = rx.try_recv() {
            lines.push(line);
        }
        lines
    }

    #[tokio::test]
    async fn output_is_split_into_lines_and_a_last_partial_line_is_kept() {
        assert_eq!(
            lines_of(b"one\r\ntwo\n\nthree").await,
            ["one", "two", "", "three"]
        );
    }

    #[tokio::test]
    async fn invalid_utf8_output_is_replaced_not_dropped() {
        assert_eq!(lines_of(b"a\xffb\n").await, ["a\u{fffd}b"]);
    }

    #[test]
    fn signals_become_128_plus_n() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(9)), 137);
        assert_eq!(exit_code(std::process::ExitStatus::from_raw(7 << 8)), 7);
    }
}
