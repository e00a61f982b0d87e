//! Watching a sandbox: the status history every failure carries, and waits on the watch stream
//! with deadlines (never sleeps).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    sandbox_stream_event, Sandbox, SandboxCondition, SandboxPhase, WatchSandboxRequest,
};
use openshell_proto::{conditions, reasons, ReadyReason};
use tonic::transport::Channel;

fn serialize_phase<S: serde::Serializer>(phase: &SandboxPhase, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&phase_name(*phase as i32))
}

/// A condition as the history shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Cond {
    /// True / False / Unknown.
    pub status: String,
    /// The reason.
    pub reason: String,
    /// The message.
    pub message: String,
}

/// One observed state of a sandbox.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Snapshot {
    /// The sandbox's name.
    pub name: String,
    /// `metadata.resource_version`.
    pub resource_version: u64,
    /// The phase.
    #[serde(serialize_with = "serialize_phase")]
    pub phase: SandboxPhase,
    /// The `Ready` condition.
    pub ready: Option<Cond>,
    /// The `EnforcementDegraded` condition.
    pub degraded: Option<Cond>,
    /// `status.exit_code`.
    pub exit_code: Option<i32>,
}

/// The phase's short name (`Ready`, `Error`…), or the number when unknown.
pub fn phase_name(phase: i32) -> String {
    match SandboxPhase::try_from(phase) {
        Ok(p) => {
            let name = p
                .as_str_name()
                .trim_start_matches("SANDBOX_PHASE_")
                .to_lowercase();
            let mut chars = name.chars();
            chars
                .next()
                .map(|c| c.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        }
        Err(_) => format!("phase#{phase}"),
    }
}

fn cond(sandbox: &Sandbox, kind: &str) -> Option<Cond> {
    let status = sandbox.status.as_ref()?;
    status
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
        .map(|c: &SandboxCondition| Cond {
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
        })
}

impl Snapshot {
    /// The snapshot of a sandbox message.
    pub fn of(sandbox: &Sandbox) -> Snapshot {
        let meta = sandbox.metadata.clone().unwrap_or_default();
        let status = sandbox.status.clone().unwrap_or_default();
        Snapshot {
            name: meta.name,
            resource_version: meta.resource_version,
            phase: SandboxPhase::try_from(status.phase).unwrap_or(SandboxPhase::Unspecified),
            ready: cond(sandbox, conditions::READY),
            degraded: cond(sandbox, conditions::ENFORCEMENT_DEGRADED),
            exit_code: status.exit_code,
        }
    }

    /// Ready or Error.
    pub fn is_terminal(&self) -> bool {
        matches!(self.phase, SandboxPhase::Ready | SandboxPhase::Error)
    }

    /// The Ready condition's reason as sent ("" when absent; may be a foreign word).
    pub fn reason(&self) -> &str {
        self.ready.as_ref().map(|c| c.reason.as_str()).unwrap_or("")
    }

    /// The Ready condition's reason, when it is one of this contract's.
    pub fn ready_reason(&self) -> Option<ReadyReason> {
        ReadyReason::parse(self.reason())
    }

    /// Whether the phase is `phase` and the Ready reason is `reason`.
    pub fn is(&self, phase: SandboxPhase, reason: ReadyReason) -> bool {
        self.phase == phase && self.ready_reason() == Some(reason)
    }

    /// `Ready=True`.
    pub fn ready_true(&self) -> bool {
        self.ready
            .as_ref()
            .is_some_and(|c| c.status == conditions::TRUE)
    }

    /// The Ready condition's message ("" when absent).
    pub fn message(&self) -> &str {
        self.ready
            .as_ref()
            .map(|c| c.message.as_str())
            .unwrap_or("")
    }

    /// Whether `EnforcementDegraded=True`.
    pub fn degraded_true(&self) -> bool {
        self.degraded.as_ref().is_some_and(|c| {
            c.status == conditions::TRUE && c.reason == reasons::ENFORCEMENT_DEGRADED
        })
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…[{} bytes]", &s[..cut], s.len())
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rv={} phase={}",
            self.name,
            self.resource_version,
            phase_name(self.phase as i32)
        )?;
        if let Some(c) = &self.ready {
            write!(
                f,
                " Ready={}/{} {:?}",
                c.status,
                c.reason,
                shorten(&c.message, 300)
            )?;
        }
        if let Some(c) = &self.degraded {
            write!(
                f,
                " EnforcementDegraded={}/{} {:?}",
                c.status,
                c.reason,
                shorten(&c.message, 200)
            )?;
        }
        if let Some(code) = self.exit_code {
            write!(f, " exit_code={code}")?;
        }
        Ok(())
    }
}

/// Everything the case's watch streams saw: the status history and the backend output lines.
#[derive(Debug, Clone, Default)]
pub struct Journal {
    inner: Arc<Mutex<(Vec<Snapshot>, Vec<String>)>>,
}

impl Journal {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Vec<Snapshot>, Vec<String>)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a snapshot (consecutive duplicates of the same sandbox and version are dropped).
    pub fn record(&self, snapshot: Snapshot) {
        let mut j = self.lock();
        if j.0.last() != Some(&snapshot) {
            j.0.push(snapshot);
        }
    }

    /// Records a backend output line.
    pub fn log(&self, line: String) {
        let mut j = self.lock();
        j.1.push(line);
        let excess = j.1.len().saturating_sub(400);
        j.1.drain(..excess);
    }

    /// The history so far.
    pub fn history(&self) -> Vec<Snapshot> {
        self.lock().0.clone()
    }

    /// The output lines so far (at most the last 400).
    pub fn logs(&self) -> Vec<String> {
        self.lock().1.clone()
    }
}

/// How a watch ended.
#[derive(Debug, Clone, PartialEq)]
pub enum End {
    /// The predicate held on the last event.
    Matched,
    /// The server ended the stream.
    Closed,
    /// The deadline passed first.
    Deadline,
    /// The stream failed (the status's code and message).
    Failed(String),
}

/// The events one watch saw.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Every sandbox event, in order.
    pub events: Vec<Sandbox>,
    /// When each event arrived.
    pub received: Vec<Instant>,
    /// How the watch ended.
    pub end: End,
}

impl Observation {
    /// The last snapshot seen.
    pub fn last(&self) -> Option<Snapshot> {
        self.events.last().map(Snapshot::of)
    }

    /// Every snapshot, in order.
    pub fn snapshots(&self) -> Vec<Snapshot> {
        self.events.iter().map(Snapshot::of).collect()
    }

    /// When the first event in `phase` arrived.
    pub fn first_in(&self, phase: SandboxPhase) -> Option<Instant> {
        self.events
            .iter()
            .zip(&self.received)
            .find(|(e, _)| Snapshot::of(e).phase == phase)
            .map(|(_, at)| *at)
    }
}

/// Options of a watch.
#[derive(Debug, Clone, Copy, Default)]
pub struct WatchOpts {
    /// Ask the server to end the stream at Ready or Error.
    pub stop_on_terminal: bool,
    /// Also stream backend output lines into the journal.
    pub follow_logs: bool,
}

/// Watches sandbox `id` until `until` holds on an event, the stream ends, or `deadline` passes.
pub async fn watch(
    client: &mut OpenShellClient<Channel>,
    id: &str,
    opts: WatchOpts,
    deadline: Instant,
    journal: &Journal,
    mut until: impl FnMut(&Snapshot) -> bool,
) -> Result<Observation, tonic::Status> {
    let request = WatchSandboxRequest {
        id: id.to_string(),
        follow_status: true,
        follow_logs: opts.follow_logs,
        log_tail_lines: if opts.follow_logs { 200 } else { 0 },
        stop_on_terminal: opts.stop_on_terminal,
        ..Default::default()
    };
    let deadline = tokio::time::Instant::from_std(deadline);
    let mut stream = tokio::time::timeout_at(deadline, client.watch_sandbox(request))
        .await
        .map_err(|_| {
            tonic::Status::deadline_exceeded("WatchSandbox did not answer before the case deadline")
        })??
        .into_inner();
    let mut events = Vec::new();
    let mut received = Vec::new();
    loop {
        let next = match tokio::time::timeout_at(deadline, stream.message()).await {
            Err(_) => {
                return Ok(Observation {
                    events,
                    received,
                    end: End::Deadline,
                })
            }
            Ok(Err(status)) => {
                let end = End::Failed(format!("{:?}: {}", status.code(), status.message()));
                return Ok(Observation {
                    events,
                    received,
                    end,
                });
            }
            Ok(Ok(None)) => {
                return Ok(Observation {
                    events,
                    received,
                    end: End::Closed,
                })
            }
            Ok(Ok(Some(event))) => event,
        };
        match next.payload {
            Some(sandbox_stream_event::Payload::Sandbox(sandbox)) => {
                let snapshot = Snapshot::of(&sandbox);
                journal.record(snapshot.clone());
                events.push(sandbox);
                received.push(Instant::now());
                if until(&snapshot) {
                    return Ok(Observation {
                        events,
                        received,
                        end: End::Matched,
                    });
                }
            }
            Some(sandbox_stream_event::Payload::Log(line)) => {
                journal.log(format!("[{}] {}", line.source, line.message));
            }
            Some(sandbox_stream_event::Payload::Warning(w)) => {
                journal.log(format!("[watch warning] {}", w.message))
            }
            Some(sandbox_stream_event::Payload::Event(e)) => {
                journal.log(format!("[event {}] {}: {}", e.r#type, e.reason, e.message));
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openshell_proto::datamodel::v1::ObjectMeta;
    use openshell_proto::v1::SandboxStatus;

    fn sandbox(phase: SandboxPhase, reason: &str) -> Sandbox {
        Sandbox {
            metadata: Some(ObjectMeta {
                name: "n".into(),
                resource_version: 3,
                ..Default::default()
            }),
            status: Some(SandboxStatus {
                phase: phase as i32,
                conditions: vec![SandboxCondition {
                    r#type: "Ready".into(),
                    status: "False".into(),
                    reason: reason.into(),
                    message: "policy: bad".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn snapshots_show_phase_reason_and_message() {
        let s = Snapshot::of(&sandbox(SandboxPhase::Error, "SupervisorError"));
        assert_eq!(
            s.to_string(),
            "n rv=3 phase=Error Ready=False/SupervisorError \"policy: bad\""
        );
        assert!(s.is_terminal());
        assert!(s.is(SandboxPhase::Error, ReadyReason::SupervisorError));
        assert!(!s.is(SandboxPhase::Error, ReadyReason::ProcessExited));
        assert_eq!(
            phase_name(SandboxPhase::Provisioning as i32),
            "Provisioning"
        );
        assert_eq!(phase_name(99), "phase#99");
    }

    #[test]
    fn the_journal_drops_repeated_snapshots() {
        let j = Journal::default();
        let s = Snapshot::of(&sandbox(SandboxPhase::Ready, "SupervisorConnected"));
        j.record(s.clone());
        j.record(s);
        assert_eq!(j.history().len(), 1);
    }
}
