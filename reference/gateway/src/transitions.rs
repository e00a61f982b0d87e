//! The phase machine: pure functions from a stored record and an event to the next record.
//!
//! These are the only functions that write a sandbox's public phase and its `Ready` condition.
//! Each returns whether it changed the record; the lifecycle core persists and publishes a
//! changed record and drops an unchanged one. The rules (seed 002 and seed 000):
//! - Ready exactly while the record is not terminal and its current supervisor session is live:
//!   [`session_connected`] promotes, [`session_ended`] (of the current session) demotes.
//! - Error and Deleting are terminal: no session event, driver event or second report changes
//!   them ([`is_terminal`] guards every transition).
//! - Driver observations never promote and never demote Ready; they can only fail a sandbox.

use openshell_proto::v1::{
    DegradedSubsystem, Sandbox, SandboxCondition, SandboxPhase, SandboxStatus,
};
use openshell_proto::{conditions, reasons};

use crate::hygiene::sanitize;
use crate::mutants;

/// The phase of a record.
pub fn phase(sandbox: &Sandbox) -> SandboxPhase {
    sandbox
        .status
        .as_ref()
        .map(|s| s.phase())
        .unwrap_or(SandboxPhase::Unspecified)
}

/// Error and Deleting: no event moves a record out of them.
pub fn is_terminal(sandbox: &Sandbox) -> bool {
    matches!(phase(sandbox), SandboxPhase::Error | SandboxPhase::Deleting)
}

/// The status of a new record: Provisioning, `Ready=False reason=Starting`.
pub fn initial_status(name: &str) -> SandboxStatus {
    let mut status = SandboxStatus {
        sandbox_name: name.to_string(),
        ..Default::default()
    };
    status.set_phase(SandboxPhase::Provisioning);
    set_condition(
        &mut status,
        conditions::READY,
        false,
        reasons::STARTING,
        "waiting for the supervisor session",
    );
    status
}

/// A supervisor session registered: Ready, with the degraded subsystems it declared.
pub fn session_connected(
    sandbox: &mut Sandbox,
    instance_id: &str,
    degraded: &[DegradedSubsystem],
) -> bool {
    if is_terminal(sandbox) {
        return false;
    }
    if mutants::active("no-repromote")
        && ready_condition(sandbox).is_some_and(|c| c.reason == reasons::SUPERVISOR_DISCONNECTED)
    {
        // Promotes only a sandbox that is starting, never one that lost its session.
        return false;
    }
    let before = sandbox.clone();
    let status = status_mut(sandbox);
    status.set_phase(SandboxPhase::Ready);
    status.main_process_instance_id = instance_id.to_string();
    let connected = if mutants::active("ready-wrong-reason") {
        "DependenciesReady"
    } else {
        reasons::SUPERVISOR_CONNECTED
    };
    set_condition(
        status,
        conditions::READY,
        true,
        connected,
        "supervisor session connected",
    );
    if degraded.is_empty() {
        status
            .conditions
            .retain(|c| c.r#type != conditions::ENFORCEMENT_DEGRADED);
    } else {
        let message = degraded_message(degraded);
        set_condition(
            status,
            conditions::ENFORCEMENT_DEGRADED,
            true,
            reasons::ENFORCEMENT_DEGRADED,
            &message,
        );
    }
    *sandbox != before
}

/// The current supervisor session ended: back to Provisioning.
pub fn session_ended(sandbox: &mut Sandbox) -> bool {
    if mutants::active("demote-error") && phase(sandbox) == SandboxPhase::Error {
        // The terminal guard forgotten on the disconnect path.
        let status = status_mut(sandbox);
        status.set_phase(SandboxPhase::Provisioning);
        set_condition(
            status,
            conditions::READY,
            false,
            reasons::SUPERVISOR_DISCONNECTED,
            "supervisor session ended",
        );
        return true;
    }
    demote(sandbox, "supervisor session ended")
}

/// The gateway restarted: sessions are gone, so a Ready record waits for its session again.
pub fn gateway_restarted(sandbox: &mut Sandbox) -> bool {
    demote(
        sandbox,
        "gateway restarted; waiting for the supervisor session to come back",
    )
}

/// Ready → Provisioning, `Ready=False reason=SupervisorDisconnected`; nothing else is demoted.
fn demote(sandbox: &mut Sandbox, message: &str) -> bool {
    if phase(sandbox) != SandboxPhase::Ready {
        return false;
    }
    let status = status_mut(sandbox);
    status.set_phase(SandboxPhase::Provisioning);
    set_condition(
        status,
        conditions::READY,
        false,
        reasons::SUPERVISOR_DISCONNECTED,
        message,
    );
    true
}

/// The supervisor reported a fatal startup error (seed 000).
pub fn supervisor_error(sandbox: &mut Sandbox, stage: &str, message: &str) -> bool {
    fail(
        sandbox,
        reasons::SUPERVISOR_ERROR,
        &format!("{stage}: {message}"),
        None,
    )
}

/// The main process ended, reported by the supervisor or seen by the driver, whichever first.
pub fn process_exited(sandbox: &mut Sandbox, exit_code: i32, message: &str) -> bool {
    let code = (!mutants::active("exit-code-dropped")).then_some(exit_code);
    fail(sandbox, reasons::PROCESS_EXITED, message, code)
}

/// The main process ended and nobody could learn its exit code (the message says why).
pub fn process_ended_without_code(sandbox: &mut Sandbox, message: &str) -> bool {
    fail(sandbox, reasons::PROCESS_EXITED, message, None)
}

/// A driver failure or a vanished backend; `reason` is one of the contract's backend reasons.
pub fn backend_failed(sandbox: &mut Sandbox, reason: &str, message: &str) -> bool {
    fail(sandbox, reason, message, None)
}

/// Deletion started.
pub fn deleting(sandbox: &mut Sandbox) -> bool {
    if phase(sandbox) == SandboxPhase::Deleting {
        return false;
    }
    let status = status_mut(sandbox);
    status.set_phase(SandboxPhase::Deleting);
    set_condition(
        status,
        conditions::READY,
        false,
        reasons::DELETING,
        "sandbox is being deleted",
    );
    true
}

fn fail(sandbox: &mut Sandbox, reason: &str, message: &str, exit_code: Option<i32>) -> bool {
    if is_terminal(sandbox) {
        return false;
    }
    let status = status_mut(sandbox);
    status.set_phase(SandboxPhase::Error);
    status.exit_code = exit_code;
    set_condition(status, conditions::READY, false, reason, message);
    true
}

/// `netns(failed: EPERM), workload-seccomp(skipped)`.
pub fn degraded_message(degraded: &[DegradedSubsystem]) -> String {
    degraded
        .iter()
        .map(|d| match (d.mode.as_str(), d.detail.is_empty()) {
            (mode, true) => format!("{}({mode})", d.subsystem),
            (mode, false) => format!("{}({mode}: {})", d.subsystem, d.detail),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn status_mut(sandbox: &mut Sandbox) -> &mut SandboxStatus {
    sandbox.status.get_or_insert_with(Default::default)
}

/// Sets (or replaces) the condition of `kind`; the transition time changes only with the status.
fn set_condition(status: &mut SandboxStatus, kind: &str, value: bool, reason: &str, message: &str) {
    let value = if value {
        conditions::TRUE
    } else {
        conditions::FALSE
    };
    let message = sanitize(message);
    let now = now_rfc3339();
    match status.conditions.iter_mut().find(|c| c.r#type == kind) {
        Some(c) => {
            if c.status != value {
                c.last_transition_time = now;
            }
            c.status = value.to_string();
            c.reason = reason.to_string();
            c.message = message;
        }
        None => status.conditions.push(SandboxCondition {
            r#type: kind.to_string(),
            status: value.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: now,
        }),
    }
}

/// Seconds-precision UTC time in RFC 3339 (no date crate needed for one format).
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The condition of type `kind` of a record.
pub fn condition<'a>(sandbox: &'a Sandbox, kind: &str) -> Option<&'a SandboxCondition> {
    sandbox
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
}

/// The `Ready` condition of a record.
pub fn ready_condition(sandbox: &Sandbox) -> Option<&SandboxCondition> {
    condition(sandbox, conditions::READY)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provisioning() -> Sandbox {
        Sandbox {
            status: Some(initial_status("s")),
            ..Default::default()
        }
    }

    fn ready_reason(sb: &Sandbox) -> (&str, &str) {
        let c = ready_condition(sb).unwrap();
        (c.status.as_str(), c.reason.as_str())
    }

    #[test]
    fn connect_promotes_and_end_demotes() {
        let mut sb = provisioning();
        assert!(session_connected(&mut sb, "i1", &[]));
        assert_eq!(phase(&sb), SandboxPhase::Ready);
        assert_eq!(ready_reason(&sb), ("True", "SupervisorConnected"));
        assert!(session_ended(&mut sb));
        assert_eq!(phase(&sb), SandboxPhase::Provisioning);
        assert_eq!(ready_reason(&sb), ("False", "SupervisorDisconnected"));
    }

    #[test]
    fn re_register_is_idempotent() {
        let mut sb = provisioning();
        assert!(session_connected(&mut sb, "i1", &[]));
        assert!(
            !session_connected(&mut sb, "i1", &[]),
            "same session facts change nothing"
        );
    }

    #[test]
    fn error_is_never_overwritten() {
        let mut sb = provisioning();
        assert!(supervisor_error(&mut sb, "policy", "bad field `inference`"));
        let frozen = sb.clone();
        assert!(!session_connected(&mut sb, "i1", &[]));
        assert!(!session_ended(&mut sb));
        assert!(!process_exited(&mut sb, 1, "exited"));
        assert!(!backend_failed(&mut sb, "BackendLost", "gone"));
        assert!(!supervisor_error(&mut sb, "netns", "second report"));
        assert!(!gateway_restarted(&mut sb));
        assert_eq!(sb, frozen);
        assert_eq!(
            ready_condition(&sb).unwrap().message,
            "policy: bad field `inference`"
        );
    }

    #[test]
    fn deleting_is_terminal_for_sessions() {
        let mut sb = provisioning();
        session_connected(&mut sb, "i", &[]);
        assert!(deleting(&mut sb));
        assert!(!session_ended(&mut sb));
        assert!(!session_connected(&mut sb, "i", &[]));
        assert_eq!(phase(&sb), SandboxPhase::Deleting);
    }

    #[test]
    fn any_exit_is_error_with_the_code() {
        let mut sb = provisioning();
        session_connected(&mut sb, "i", &[]);
        assert!(process_exited(
            &mut sb,
            0,
            "main process exited with code 0"
        ));
        assert_eq!(phase(&sb), SandboxPhase::Error);
        assert_eq!(sb.status.as_ref().unwrap().exit_code, Some(0));
        assert_eq!(ready_reason(&sb), ("False", "ProcessExited"));
    }

    #[test]
    fn an_end_without_a_code_is_process_exited_without_one_and_says_so() {
        let mut sb = provisioning();
        assert!(process_ended_without_code(
            &mut sb,
            "the VM ended without reporting its main process's exit code"
        ));
        assert_eq!(phase(&sb), SandboxPhase::Error);
        assert_eq!(sb.status.as_ref().unwrap().exit_code, None);
        assert_eq!(ready_reason(&sb), ("False", "ProcessExited"));
        assert!(ready_condition(&sb)
            .unwrap()
            .message
            .contains("without reporting"));
    }

    #[test]
    fn degraded_subsystems_become_a_condition_and_vanish_when_clean() {
        let mut sb = provisioning();
        let degraded = [
            DegradedSubsystem {
                subsystem: "netns".into(),
                mode: "failed".into(),
                detail: "EPERM".into(),
            },
            DegradedSubsystem {
                subsystem: "workload-seccomp".into(),
                mode: "skipped".into(),
                detail: String::new(),
            },
        ];
        session_connected(&mut sb, "i", &degraded);
        let c = condition(&sb, "EnforcementDegraded").unwrap();
        assert_eq!(c.status, "True");
        assert_eq!(c.message, "netns(failed: EPERM), workload-seccomp(skipped)");
        session_connected(&mut sb, "i2", &[]);
        assert!(sb
            .status
            .as_ref()
            .unwrap()
            .conditions
            .iter()
            .all(|c| c.r#type != "EnforcementDegraded"));
    }

    #[test]
    fn stored_messages_are_sanitized() {
        let mut sb = provisioning();
        supervisor_error(&mut sb, "boot-hook", "\x1b]0;pwned\x07");
        assert_eq!(
            ready_condition(&sb).unwrap().message,
            "boot-hook: \\x1b]0;pwned\\x07"
        );
    }

    #[test]
    fn rfc3339_has_the_expected_shape() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'));
    }
}
