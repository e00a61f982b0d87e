//! One running VM: its console, its end, and stopping it.
//!
//! A monitor task owns QEMU's [`tokio::process::Child`] (so signals only ever reach a pid that
//! has not been reaped). The console (QEMU's stdout) is the backend's output: every line becomes
//! an `Output` event and goes into a bounded tail; QEMU's own stderr lines too, prefixed `qemu: `.
//! When QEMU has ended, the monitor reads the init's report and sends the one event that says how
//! the sandbox ended:
//!
//! | what happened | event |
//! |---|---|
//! | the init reported `openshell-exit N` | `Exited { exit_code: N }` (reason `ProcessExited`) |
//! | the init reported `openshell-init-error M` | `Failed(StartFailed)` with M |
//! | QEMU ended without a report | `ExitedWithoutCode` naming QEMU's status and last error |
//! | waiting for QEMU failed | `Failed(PollFailed)` (reason `ProcessPollFailed`) |
//!
//! Nothing is reported for a VM the gateway asked to stop. Readiness is never reported: it is
//! the supervisor session's, seen by the gateway alone (seed 002).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openshell_driver::{DriverError, DriverEvent, EventSender};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit};

use crate::guest::{self, Report};

/// How long the console may still deliver lines after QEMU ended.
const OUTPUT_GRACE: Duration = Duration::from_secs(5);
/// Lines kept in a VM's console tail.
pub const TAIL_LINES: usize = 200;
/// A longer console line is cut.
pub const MAX_LINE: usize = 16 * 1024;
/// QEMU stderr lines kept for the message of an unexplained end.
const QEMU_ERROR_LINES: usize = 5;

/// The last lines of a VM's console, bounded.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
}

impl Tail {
    /// Appends a line, dropping the oldest beyond [`TAIL_LINES`].
    pub fn push(&mut self, line: String) {
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES {
            self.lines.pop_front();
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// The gateway's handle on one VM.
#[derive(Debug)]
pub struct Handle {
    stop: mpsc::UnboundedSender<()>,
    done: watch::Receiver<bool>,
    tail: Arc<Mutex<Tail>>,
}

impl Handle {
    /// Whether QEMU still runs (or its output is still being read).
    pub fn is_running(&self) -> bool {
        !*self.done.borrow()
    }

    /// The console tail.
    pub fn tail(&self) -> Vec<String> {
        self.tail.lock().unwrap_or_else(|p| p.into_inner()).lines()
    }

    /// SIGKILLs QEMU (a throwaway microVM gains nothing from a graceful stop) and waits until it
    /// has ended and its console was sent; `false` when that took longer than `deadline`.
    pub async fn stop(mut self, deadline: Duration) -> bool {
        let _ = self.stop.send(());
        tokio::time::timeout(deadline, self.done.wait_for(|done| *done))
            .await
            .is_ok()
    }
}

/// A started QEMU to watch.
pub struct Watch {
    /// The sandbox.
    pub sandbox_id: String,
    /// QEMU.
    pub child: tokio::process::Child,
    /// The file the init's report port writes to.
    pub report: PathBuf,
    /// The VM's slot, given back when QEMU has ended.
    pub permit: OwnedSemaphorePermit,
}

/// Sends `Running`, then the console and the end (see the module doc).
pub fn watch(mut vm: Watch, events: &EventSender) -> Handle {
    let tail = Arc::new(Mutex::new(Tail::default()));
    let qemu_errors = Arc::new(Mutex::new(VecDeque::new()));
    let _ = events.send(DriverEvent::Running {
        sandbox_id: vm.sandbox_id.clone(),
    });
    let mut pumps = Vec::new();
    if let Some(stdout) = vm.child.stdout.take() {
        let sink = Sink {
            sandbox_id: vm.sandbox_id.clone(),
            events: events.clone(),
            tail: tail.clone(),
            errors: None,
        };
        pumps.push(tokio::spawn(pump(stdout, sink)));
    }
    if let Some(stderr) = vm.child.stderr.take() {
        let sink = Sink {
            sandbox_id: vm.sandbox_id.clone(),
            events: events.clone(),
            tail: tail.clone(),
            errors: Some(qemu_errors.clone()),
        };
        pumps.push(tokio::spawn(pump(stderr, sink)));
    }
    let (stop_tx, stop_rx) = mpsc::unbounded_channel();
    let (done_tx, done_rx) = watch::channel(false);
    tokio::spawn(monitor(
        vm,
        events.clone(),
        stop_rx,
        done_tx,
        pumps,
        qemu_errors,
    ));
    Handle {
        stop: stop_tx,
        done: done_rx,
        tail,
    }
}

async fn monitor(
    mut vm: Watch,
    events: EventSender,
    mut stop: mpsc::UnboundedReceiver<()>,
    done: watch::Sender<bool>,
    mut pumps: Vec<tokio::task::JoinHandle<()>>,
    qemu_errors: Arc<Mutex<VecDeque<String>>>,
) {
    let mut stopping = false;
    let status = loop {
        tokio::select! {
            status = vm.child.wait() => break status,
            Some(()) = stop.recv(), if !stopping => {
                stopping = true;
                let _ = vm.child.start_kill();
            }
        }
    };
    let drained = tokio::time::timeout(OUTPUT_GRACE, async {
        for pump in pumps.iter_mut() {
            let _ = pump.await;
        }
    });
    if drained.await.is_err() {
        pumps.iter().for_each(|pump| pump.abort());
    }
    drop(vm.permit);
    let sandbox_id = vm.sandbox_id;
    if !stopping {
        let event = match status {
            Err(e) => DriverEvent::Failed {
                sandbox_id,
                error: DriverError::PollFailed(format!("waiting for QEMU: {e}")),
            },
            Ok(status) => {
                let text = tokio::fs::read_to_string(&vm.report)
                    .await
                    .unwrap_or_default();
                let errors = qemu_errors.lock().unwrap_or_else(|p| p.into_inner());
                end_event(sandbox_id, guest::parse_report(&text), status, &errors)
            }
        };
        let _ = events.send(event);
    }
    let _ = done.send(true);
}

/// The event of a VM whose QEMU ended with `status` after the init reported `report`.
pub fn end_event(
    sandbox_id: String,
    report: Option<Report>,
    status: std::process::ExitStatus,
    qemu_errors: &VecDeque<String>,
) -> DriverEvent {
    match report {
        Some(Report::Exited(exit_code)) => DriverEvent::Exited {
            sandbox_id,
            exit_code,
        },
        Some(Report::InitFailed(message)) => DriverEvent::Failed {
            sandbox_id,
            error: DriverError::StartFailed(format!("the guest init: {message}")),
        },
        None => {
            let mut message = format!(
                "the VM ended without reporting its main process's exit code (QEMU {status})"
            );
            if !qemu_errors.is_empty() {
                let joined: Vec<&str> = qemu_errors.iter().map(String::as_str).collect();
                message.push_str(&format!("; QEMU said: {}", joined.join(" | ")));
            }
            DriverEvent::ExitedWithoutCode {
                sandbox_id,
                message,
            }
        }
    }
}

struct Sink {
    sandbox_id: String,
    events: EventSender,
    tail: Arc<Mutex<Tail>>,
    /// For QEMU's stderr: its last lines, and a `qemu: ` prefix.
    errors: Option<Arc<Mutex<VecDeque<String>>>>,
}

impl Sink {
    fn line(&self, mut line: String) {
        if line.ends_with('\r') {
            line.pop();
        }
        if let Some(errors) = &self.errors {
            let mut errors = errors.lock().unwrap_or_else(|p| p.into_inner());
            errors.push_back(line.clone());
            while errors.len() > QEMU_ERROR_LINES {
                errors.pop_front();
            }
            line = format!("qemu: {line}");
        }
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.clone());
        let _ = self.events.send(DriverEvent::Output {
            sandbox_id: self.sandbox_id.clone(),
            line,
        });
    }
}

async fn pump(reader: impl AsyncRead + Unpin, sink: Sink) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // A line is cut at MAX_LINE: `take` bounds what one read_until may buffer.
        let mut limited = (&mut reader).take(MAX_LINE as u64);
        match limited.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let bytes = buf.strip_suffix(b"\n").unwrap_or(&buf);
                sink.line(String::from_utf8_lossy(bytes).into_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn the_carried_out_code_is_the_exit_code() {
        let ev = end_event(
            "s".into(),
            Some(Report::Exited(5)),
            std::process::ExitStatus::from_raw(0),
            &VecDeque::new(),
        );
        assert_eq!(
            ev,
            DriverEvent::Exited {
                sandbox_id: "s".into(),
                exit_code: 5
            }
        );
    }

    #[test]
    fn an_end_without_a_report_says_so_and_names_qemus_complaint() {
        let errors = VecDeque::from(["could not load kernel".to_string()]);
        let ev = end_event(
            "s".into(),
            None,
            std::process::ExitStatus::from_raw(9),
            &errors,
        );
        let DriverEvent::ExitedWithoutCode { message, .. } = ev else {
            panic!("{ev:?}");
        };
        assert!(message.contains("without reporting"), "{message}");
        assert!(message.contains("could not load kernel"), "{message}");
    }

    #[test]
    fn an_init_failure_is_a_start_failure() {
        let ev = end_event(
            "s".into(),
            Some(Report::InitFailed("no eth0".into())),
            std::process::ExitStatus::from_raw(0),
            &VecDeque::new(),
        );
        assert!(
            matches!(&ev, DriverEvent::Failed { error: DriverError::StartFailed(m), .. } if m.contains("no eth0")),
            "{ev:?}"
        );
    }

    #[test]
    fn the_tail_is_bounded() {
        let mut tail = Tail::default();
        for i in 0..TAIL_LINES + 5 {
            tail.push(i.to_string());
        }
        assert_eq!(tail.lines().len(), TAIL_LINES);
        assert_eq!(tail.lines()[0], "5");
    }
}
