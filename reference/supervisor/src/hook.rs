//! Step 6 of the startup: the boot hook (seed 001), `/etc/openshell/boot.sh`.
//!
//! Exec'd directly through the spawn path (same identity, namespace and filter as the
//! workload), to completion, before the main process, on every start. Its stderr is echoed to
//! the supervisor's stderr and its tail kept in a bounded ring ([`Tail`]) for the error report.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

use crate::reaper::{Exit, Reaper, ReaperError};
use crate::spawn::{SpawnError, Spawner};
use crate::sys;

/// Lines of stderr kept for the report.
pub const TAIL_LINES: usize = 20;
/// Bytes of stderr kept for the report.
pub const TAIL_BYTES: usize = 2048;
/// How long to wait for the hook's stderr to reach end-of-file after it ended.
const DRAIN: Duration = Duration::from_secs(1);

/// Errors of the boot hook step (stage BOOT_HOOK, or the spawn path's own stage).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be started (not executable, bad interpreter, or a spawn-path step).
    #[error("{0}")]
    Spawn(#[from] SpawnError),
    /// It ended unsuccessfully.
    #[error("{path} {exit}{}", tail_suffix(.tail))]
    Failed {
        path: String,
        exit: Exit,
        tail: String,
    },
    /// It outlived its timeout and was killed.
    #[error("{path} timed out after {}s and was killed{}", fmt_secs(*.after), tail_suffix(.tail))]
    TimedOut {
        path: String,
        after: Duration,
        tail: String,
    },
    /// Waiting failed.
    #[error("waiting for {path}: {source}")]
    Wait {
        path: String,
        #[source]
        source: ReaperError,
    },
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, HookError>;

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        "; its stderr was empty".into()
    } else {
        format!("; stderr tail:\n{tail}")
    }
}

fn fmt_secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}")
    } else {
        format!("{s}")
    }
}

/// What happened to the hook.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No hook in the image.
    Missing,
    /// It ran and exited 0.
    Succeeded,
}

/// The last [`TAIL_LINES`] lines / [`TAIL_BYTES`] bytes of a stream, in bounded memory.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    partial: Vec<u8>,
}

impl Tail {
    /// Feeds bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&std::mem::take(&mut self.partial)).into_owned();
                self.lines.push_back(line);
                if self.lines.len() > TAIL_LINES {
                    self.lines.pop_front();
                }
            } else {
                self.partial.push(b);
                if self.partial.len() > 2 * TAIL_BYTES {
                    self.partial.drain(..TAIL_BYTES);
                }
            }
        }
    }

    /// The tail: whole lines plus any unterminated last line, cut to [`TAIL_BYTES`] from the end
    /// on a character boundary.
    pub fn text(&self) -> String {
        let mut all: Vec<&str> = self.lines.iter().map(String::as_str).collect();
        let partial = String::from_utf8_lossy(&self.partial);
        if !partial.is_empty() {
            all.push(&partial);
        }
        let text = all.join("\n");
        if text.len() <= TAIL_BYTES {
            return text;
        }
        let mut start = text.len() - TAIL_BYTES;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        text[start..].to_string()
    }
}

/// Runs the hook at `path` if it exists.
pub async fn run(
    spawner: &Spawner,
    reaper: &Reaper,
    path: &Path,
    timeout: Duration,
) -> Result<Outcome> {
    let shown = path.display().to_string();
    let timeout = if crate::mutants::active("hook-no-timeout") {
        Duration::from_secs(86_400)
    } else {
        timeout
    };
    if std::fs::symlink_metadata(path).is_err() && crate::mutants::active("hook-missing-fatal") {
        return Err(HookError::Spawn(SpawnError::Exec {
            program: shown,
            what: "not found".into(),
            errno: crate::sys::Errno::ENOENT,
        }));
    }
    if std::fs::symlink_metadata(path).is_err() {
        tracing::info!("no boot hook at {shown}; skipping");
        return Ok(Outcome::Missing);
    }
    tracing::info!("running boot hook {shown} (timeout {}s)", fmt_secs(timeout));
    let spawned = match spawner.spawn(std::slice::from_ref(&shown), true) {
        Err(SpawnError::Exec { errno, .. })
            if errno == crate::sys::Errno::EACCES && crate::mutants::active("hook-sh-fallback") =>
        {
            spawner.spawn(&["/bin/sh".to_string(), shown.clone()], true)?
        }
        other => other?,
    };
    let tail = Arc::new(Mutex::new(Tail::default()));
    let drained = spawned.stderr.map(|fd| collect(fd, tail.clone()));
    let exit = tokio::time::timeout(timeout, reaper.wait(spawned.pid)).await;
    let timed_out = exit.is_err();
    if timed_out {
        // The hook leads its own process group (setsid in the spawn path): end all of it.
        let _ = sys::kill(-spawned.pid, Signal::SIGKILL);
        let _ = tokio::time::timeout(DRAIN, reaper.wait(spawned.pid)).await;
    }
    if let Some(rx) = drained {
        let _ = tokio::time::timeout(DRAIN, rx).await;
    }
    let tail = tail.lock().unwrap_or_else(PoisonError::into_inner).text();
    match exit {
        Err(_) => Err(HookError::TimedOut {
            path: shown,
            after: timeout,
            tail,
        }),
        Ok(Err(source)) => Err(HookError::Wait {
            path: shown,
            source,
        }),
        Ok(Ok(Exit::Code(0))) => Ok(Outcome::Succeeded),
        Ok(Ok(exit)) => Err(HookError::Failed {
            path: shown,
            exit,
            tail,
        }),
    }
}

/// Reads `fd` to its end in a thread of its own (a hook's background child may hold it open
/// forever; the caller stops waiting after [`DRAIN`]), echoing to stderr.
fn collect(fd: OwnedFd, tail: Arc<Mutex<Tail>>) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("boot-hook-stderr".into())
        .spawn(move || {
            let mut file = std::fs::File::from(fd);
            let mut buf = [0u8; 4096];
            loop {
                match file.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let _ = std::io::stderr().write_all(&buf[..n]);
                        tail.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(&buf[..n]);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
    if spawned.is_err() {
        tracing::warn!("cannot start the boot hook stderr reader; its tail will be empty");
    }
    rx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_twenty_lines() {
        let mut t = Tail::default();
        for i in 0..100 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let text = t.text();
        assert!(
            text.starts_with("line 80\n") && text.ends_with("line 99"),
            "{text}"
        );
    }

    #[test]
    fn tail_is_bounded_in_bytes_even_without_newlines() {
        let mut t = Tail::default();
        for _ in 0..10_000 {
            t.push(&[b'x'; 100]);
        }
        t.push("é\nend".as_bytes());
        let text = t.text();
        assert!(text.len() <= TAIL_BYTES && text.ends_with("é\nend"));
        assert!(t.partial.len() <= 2 * TAIL_BYTES);
    }

    #[test]
    fn failure_messages_name_status_timeout_and_tail() {
        let failed = HookError::Failed {
            path: "/etc/openshell/boot.sh".into(),
            exit: Exit::Code(3),
            tail: "boom".into(),
        };
        assert_eq!(
            failed.to_string(),
            "/etc/openshell/boot.sh exited with status 3; stderr tail:\nboom"
        );
        let hung = HookError::TimedOut {
            path: "b".into(),
            after: Duration::from_secs(2),
            tail: String::new(),
        };
        assert_eq!(
            hung.to_string(),
            "b timed out after 2s and was killed; its stderr was empty"
        );
    }
}
