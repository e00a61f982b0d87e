//! Following a sandbox through its watch events: which progress lines to print, and when the
//! sandbox has reached a verdict (Ready, or a failure with its reason and message).
//!
//! Pure logic over `Sandbox` snapshots, so it is tested without a gateway.

use std::collections::BTreeMap;
use std::fmt;

use openshell_proto::v1::{Sandbox, SandboxPhase};

use crate::render::{phase_name, SandboxView};

/// Where a sandbox stands for `sandbox create`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still on its way (Provisioning, Starting, Unknown…).
    Pending,
    /// Ready.
    Ready,
    /// Error, or a phase it cannot come back from during create (Deleting, Stopping, Stopped).
    Failed(Failure),
}

/// A sandbox that will not become Ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The sandbox's name.
    pub name: String,
    /// Phase name, `Error` most of the time.
    pub phase: String,
    /// The `Ready` condition's reason (escaped), empty when there is none.
    pub reason: String,
    /// The `Ready` condition's message (escaped).
    pub message: String,
    /// `status.exit_code`, when set.
    pub exit_code: Option<i32>,
}

impl fmt::Display for Failure {
    /// `Error: <reason>: <message> (exit code N)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.phase == "Error" {
            write!(
                f,
                "Error: {}",
                if self.reason.is_empty() {
                    "Unknown"
                } else {
                    &self.reason
                }
            )?;
        } else {
            write!(f, "Error: sandbox {} is {}", self.name, self.phase)?;
            if !self.reason.is_empty() {
                write!(f, ": {}", self.reason)?;
            }
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        if let Some(code) = self.exit_code {
            write!(f, " (exit code {code})")?;
        }
        Ok(())
    }
}

/// The verdict a snapshot gives.
pub fn verdict(sandbox: &Sandbox) -> Verdict {
    let view = SandboxView::from(sandbox);
    let phase = sandbox.status.as_ref().map(|s| s.phase).unwrap_or_default();
    match SandboxPhase::try_from(phase) {
        Ok(SandboxPhase::Ready) => Verdict::Ready,
        Ok(
            SandboxPhase::Error
            | SandboxPhase::Deleting
            | SandboxPhase::Stopping
            | SandboxPhase::Stopped,
        ) => {
            let (reason, message) = view
                .ready()
                .map(|c| (c.reason.clone(), c.message.clone()))
                .unwrap_or_default();
            Verdict::Failed(Failure {
                name: view.name,
                phase: view.phase,
                reason,
                message,
                exit_code: view.exit_code,
            })
        }
        _ => Verdict::Pending,
    }
}

/// Remembers what was shown, so each phase or condition change prints one line.
#[derive(Debug, Default)]
pub struct Progress {
    /// (phase, Ready reason) last printed.
    last_ready: Option<(String, String)>,
    /// The other conditions last seen: type → (status, reason, message).
    last_other: BTreeMap<String, (String, String, String)>,
    /// `phase: reason: message` of the last snapshot.
    last_status: Option<String>,
}

impl Progress {
    /// Takes in a snapshot; returns the lines to print for what changed.
    ///
    /// A phase / `Ready` reason change prints `Phase: Reason` (not for Ready or Error, which the
    /// caller reports itself); a change of another condition that is `True`, such as
    /// `EnforcementDegraded`, prints `Type=True: message`.
    pub fn observe(&mut self, sandbox: &Sandbox) -> Vec<String> {
        let view = SandboxView::from(sandbox);
        let mut lines = Vec::new();
        let (reason, message) = view
            .ready()
            .map(|c| (c.reason.clone(), c.message.clone()))
            .unwrap_or_default();
        let key = (view.phase.clone(), reason.clone());
        if self.last_ready.as_ref() != Some(&key) {
            if verdict(sandbox) == Verdict::Pending {
                let shown = if reason.is_empty() {
                    "-"
                } else {
                    reason.as_str()
                };
                lines.push(format!("{}: {shown}", view.phase));
            }
            self.last_ready = Some(key);
        }
        for c in view
            .conditions
            .iter()
            .filter(|c| c.kind != openshell_proto::conditions::READY)
        {
            let now = (c.status.clone(), c.reason.clone(), c.message.clone());
            if self.last_other.get(&c.kind) != Some(&now) {
                if c.status == openshell_proto::conditions::TRUE {
                    lines.push(format!("{}={}: {}", c.kind, c.status, c.message));
                }
                self.last_other.insert(c.kind.clone(), now);
            }
        }
        let mut status = view.phase;
        for part in [reason, message] {
            if !part.is_empty() {
                status = format!("{status}: {part}");
            }
        }
        self.last_status = Some(status);
        lines
    }

    /// The last status seen, `Provisioning: Starting: …`, for timeout messages.
    pub fn last_seen(&self) -> String {
        self.last_status
            .clone()
            .unwrap_or_else(|| "no status received yet".into())
    }
}

/// The phase name of a snapshot (for messages).
pub fn phase_of(sandbox: &Sandbox) -> String {
    phase_name(sandbox.status.as_ref().map(|s| s.phase).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openshell_proto::datamodel::v1::ObjectMeta;
    use openshell_proto::v1::{SandboxCondition, SandboxStatus};

    fn snapshot(phase: SandboxPhase, reason: &str, message: &str) -> Sandbox {
        Sandbox {
            metadata: Some(ObjectMeta {
                name: "box".into(),
                id: "id".into(),
                ..Default::default()
            }),
            spec: None,
            status: Some(SandboxStatus {
                phase: phase as i32,
                conditions: vec![SandboxCondition {
                    r#type: "Ready".into(),
                    status: if phase == SandboxPhase::Ready {
                        "True"
                    } else {
                        "False"
                    }
                    .into(),
                    reason: reason.into(),
                    message: message.into(),
                    last_transition_time: String::new(),
                }],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn one_line_per_phase_or_reason_change_and_none_for_repeats() {
        let mut p = Progress::default();
        assert_eq!(
            p.observe(&snapshot(SandboxPhase::Provisioning, "Starting", "")),
            ["Provisioning: Starting"]
        );
        assert!(p
            .observe(&snapshot(SandboxPhase::Provisioning, "Starting", ""))
            .is_empty());
        assert_eq!(
            p.observe(&snapshot(
                SandboxPhase::Provisioning,
                "SupervisorDisconnected",
                ""
            )),
            ["Provisioning: SupervisorDisconnected"]
        );
        assert!(p
            .observe(&snapshot(SandboxPhase::Ready, "SupervisorConnected", ""))
            .is_empty());
    }

    #[test]
    fn a_degraded_condition_is_reported_once() {
        let mut p = Progress::default();
        let mut sb = snapshot(SandboxPhase::Ready, "SupervisorConnected", "");
        sb.status
            .as_mut()
            .unwrap()
            .conditions
            .push(SandboxCondition {
                r#type: "EnforcementDegraded".into(),
                status: "True".into(),
                reason: "EnforcementDegraded".into(),
                message: "netns(failed: EPERM)".into(),
                last_transition_time: String::new(),
            });
        assert_eq!(
            p.observe(&sb),
            ["EnforcementDegraded=True: netns(failed: EPERM)"]
        );
        assert!(p.observe(&sb).is_empty());
    }

    #[test]
    fn last_seen_names_phase_reason_and_message() {
        let mut p = Progress::default();
        assert_eq!(p.last_seen(), "no status received yet");
        p.observe(&snapshot(
            SandboxPhase::Provisioning,
            "Starting",
            "waiting for supervisor",
        ));
        assert_eq!(
            p.last_seen(),
            "Provisioning: Starting: waiting for supervisor"
        );
    }

    #[test]
    fn verdicts_follow_the_phase() {
        assert_eq!(
            verdict(&snapshot(SandboxPhase::Provisioning, "Starting", "")),
            Verdict::Pending
        );
        assert_eq!(
            verdict(&snapshot(SandboxPhase::Ready, "SupervisorConnected", "")),
            Verdict::Ready
        );
        let Verdict::Failed(f) = verdict(&snapshot(SandboxPhase::Error, "ImageNotFound", "no img"))
        else {
            panic!("not failed")
        };
        assert_eq!(f.to_string(), "Error: ImageNotFound: no img");
        let Verdict::Failed(f) = verdict(&snapshot(SandboxPhase::Deleting, "", "")) else {
            panic!("not failed")
        };
        assert_eq!(f.to_string(), "Error: sandbox box is Deleting");
    }

    #[test]
    fn failure_shows_the_exit_code_and_escapes_the_message() {
        let mut sb = snapshot(
            SandboxPhase::Error,
            "ProcessExited",
            "main \u{1b}[2J exited",
        );
        sb.status.as_mut().unwrap().exit_code = Some(7);
        let Verdict::Failed(f) = verdict(&sb) else {
            panic!("not failed")
        };
        assert_eq!(
            f.to_string(),
            "Error: ProcessExited: main \\u{1b}[2J exited (exit code 7)"
        );
    }
}
