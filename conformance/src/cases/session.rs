//! Seed 002's session rules (OSC-READY-004…008), black-box, through the scripted supervisor.
//!
//! The `rogue-session` fixture's entrypoint is `openshell-probe rogue session`: with the
//! credential the driver hands in it runs A (ends) → B, a new instance (ends) → C, B's instance
//! again → D supersedes C → C ends → it reports its verdict as a startup error, then its last
//! session ends (see the probe's `session` module). The case follows the sandbox from its
//! create to the removal of its backend and judges the history it saw:
//!
//! `Ready` (A) → `Provisioning / SupervisorDisconnected` (004) → `Ready` (B: 005) → demoted (004) →
//! `Ready` (C, same instance, no Error between: 008) → nothing but `Ready` until the verdict's
//! `Error` (C's end was superseded: 007) → nothing changes after it (006; another change is
//! OSC-ERR-003's). The script's own words are checked too, so a step the watch did not show
//! still counts. Every broken rule is reported, the first as the case's requirement.

use std::collections::BTreeMap;

use openshell_proto::v1::SandboxPhase as Phase;
use openshell_proto::ReadyReason;

use crate::cases::fixture::observed;
use crate::cases::lifecycle::REMOVAL_LIMIT;
use std::time::{Duration, Instant};

use crate::check::{also, fail, CaseResult};
use crate::harness::{CreateOpts, Harness};
use crate::observe::{watch, Journal, Snapshot, WatchOpts};
use crate::spec::Req;

/// The verdict's prefix, as the gateway stores it (`<stage>: <message>`).
pub const VERDICT: &str = "other: rogue session: ";

/// The script's words and the requirement each one stands for.
const WORDS: &[(&str, &str, Req)] = &[
    ("a-ready", "yes", Req::READY_001),
    ("a-end-demoted", "yes", Req::READY_004),
    ("b-ready", "yes", Req::READY_005),
    ("b-end-demoted", "yes", Req::READY_004),
    ("c-same-instance-ready", "yes", Req::READY_008),
    ("d-accepted", "accepted", Req::READY_007),
    ("c-superseded-end", "kept-ready", Req::READY_007),
];

fn ready(s: &Snapshot) -> bool {
    s.is(Phase::Ready, ReadyReason::SupervisorConnected) && s.ready_true()
}

fn demoted(s: &Snapshot) -> bool {
    s.is(Phase::Provisioning, ReadyReason::SupervisorDisconnected) && !s.ready_true()
}

/// One expected step of the history: what it is, how to recognise it, the rule it shows.
type Step = (&'static str, fn(&Snapshot) -> bool, Req);

/// The broken rules a history (one sandbox's, in order) shows: `(requirement, what happened)`.
pub fn judge(history: &[Snapshot]) -> Vec<(Req, String)> {
    let mut broken = Vec::new();
    let error_at = history.iter().position(|s| s.phase == Phase::Error);
    let before_error = &history[..error_at.unwrap_or(history.len())];
    // Walk the expected steps in order; each search starts where the last step was found.
    let steps: [Step; 5] = [
        ("Ready (session A)", ready, Req::READY_001),
        (
            "Provisioning / SupervisorDisconnected after A ended",
            demoted,
            Req::READY_004,
        ),
        (
            "Ready again (session B, a new instance)",
            ready,
            Req::READY_005,
        ),
        (
            "Provisioning / SupervisorDisconnected after B ended",
            demoted,
            Req::READY_004,
        ),
        (
            "Ready again (session C, B's instance reconnecting)",
            ready,
            Req::READY_008,
        ),
    ];
    let mut at = 0;
    for (what, holds, requirement) in steps {
        match before_error[at..].iter().position(holds) {
            Some(i) => at += i,
            None => {
                let seen = before_error
                    .get(at)
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let until = match error_at {
                    Some(e) => format!("before the Error ({})", observed(&history[e])),
                    None => "before the watch ended".to_string(),
                };
                broken.push((requirement, format!("never {what} {until} (from {seen})")));
                return broken;
            }
        }
    }
    // C's end was superseded by D: nothing but Ready until the verdict's Error.
    if let Some(other) = before_error[at..].iter().find(|s| !ready(s)) {
        broken.push((
            Req::READY_007,
            format!("after the superseded session C ended: {other}"),
        ));
    }
    let Some(e) = error_at else {
        broken.push((
            Req::READY_001,
            "no Error: the script's verdict was never stored".into(),
        ));
        return broken;
    };
    let error = &history[e];
    if !error.is(Phase::Error, ReadyReason::SupervisorError)
        || !error.message().starts_with(VERDICT)
    {
        broken.push((
            Req::API_009,
            format!(
                "the Error is not the script's verdict report: {}",
                observed(error)
            ),
        ));
    }
    for later in &history[e..] {
        if later.phase == error.phase
            && later.reason() == error.reason()
            && later.message() == error.message()
        {
            continue;
        }
        let requirement = if demoted(later) {
            Req::READY_006
        } else {
            Req::ERR_003
        };
        broken.push((
            requirement,
            format!("after the Error, as the last session ended: {later}"),
        ));
        break;
    }
    broken
}

/// What the script's own words say was broken.
pub fn judge_words(message: &str) -> Vec<(Req, String)> {
    let words: BTreeMap<&str, &str> = message
        .trim_start_matches(VERDICT)
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    WORDS
        .iter()
        .filter(|(key, want, _)| words.get(key) != Some(want))
        .map(|(key, want, requirement)| {
            (
                *requirement,
                format!(
                    "the script saw {key}={} (expected {want})",
                    words.get(key).unwrap_or(&"(not reported)")
                ),
            )
        })
        .collect()
}

/// OSC-READY-004…008.
pub async fn session_rules(h: Harness) -> CaseResult {
    let created = h
        .create(
            "sess",
            "rogue-session",
            CreateOpts::default(),
            Req::READY_004,
        )
        .await?;
    let follower = h.follow(&created);
    // Wait for the verdict's Error, but leave time to judge the history if it never comes (a
    // broken rule can stall the script at a step).
    let judging = Duration::from_secs(3);
    let until = h
        .deadline()
        .checked_sub(judging)
        .unwrap_or_else(Instant::now);
    let journal = Journal::default();
    let opts = WatchOpts::default();
    let watched = watch(&mut h.client(), &created.id, opts, until, &journal, |s| {
        s.phase == Phase::Error
    })
    .await;
    // How the case's own watch ended, for a failure's text when it saw no Error.
    let watch_end = match &watched {
        Ok(obs) => format!("{:?}", obs.end),
        Err(status) => format!("failed to open: {:?}: {}", status.code(), status.message()),
    };
    let waited = watched.ok().and_then(|obs| obs.last());
    let errored = waited.as_ref().is_some_and(|s| s.phase == Phase::Error);
    if errored {
        // Let the last session end and the backend go (bounded), watching for changes after
        // the Error.
        let _ = h
            .wait_resources_gone(&created.id, REMOVAL_LIMIT, Req::READY_006)
            .await;
    }
    let followed = follower.finish().await;
    if followed.history.is_empty() {
        return Err(fail(
            Req::READY_004,
            "the background watch to see the sandbox's history",
            followed.ended_early.unwrap_or_else(|| "no event".into()),
        ));
    }
    let mut broken = judge(&followed.history);
    if !errored {
        if let Some((_, what)) = broken.first_mut() {
            what.push_str(&format!(
                " [no Error seen: the case's watch ended {watch_end}; the background watch {}]",
                followed
                    .ended_early
                    .as_deref()
                    .unwrap_or("was stopped by the case")
            ));
        }
    }
    let message = waited
        .as_ref()
        .map(|s| s.message().to_string())
        .unwrap_or_default();
    if message.starts_with(VERDICT) {
        for b in judge_words(&message) {
            if !broken.iter().any(|(r, _)| *r == b.0) {
                broken.push(b);
            }
        }
    }
    let Some((first, _)) = broken.first().cloned() else {
        return Ok(());
    };
    let observed = broken
        .iter()
        .map(|(r, what)| format!("{r}: {what}"))
        .collect::<Vec<_>>()
        .join("; ");
    let others: Vec<Req> = broken.iter().map(|(r, _)| *r).collect();
    Err(also(
        fail(
            first,
            "the scripted supervisor's sessions to promote, demote, re-promote and supersede as seed 002 says",
            observed,
        ),
        &others,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::Cond;

    fn snap(phase: Phase, status: &str, reason: &str, message: &str) -> Snapshot {
        Snapshot {
            name: "s".into(),
            resource_version: 1,
            phase,
            ready: Some(Cond {
                status: status.into(),
                reason: reason.into(),
                message: message.into(),
            }),
            degraded: None,
            exit_code: None,
        }
    }

    fn good_history() -> Vec<Snapshot> {
        let r = snap(Phase::Ready, "True", "SupervisorConnected", "");
        let d = snap(Phase::Provisioning, "False", "SupervisorDisconnected", "");
        let e = snap(
            Phase::Error,
            "False",
            "SupervisorError",
            "other: rogue session: a-ready=yes",
        );
        vec![
            snap(Phase::Provisioning, "False", "Starting", ""),
            r.clone(),
            d.clone(),
            r.clone(),
            d,
            r,
            e.clone(),
            e,
        ]
    }

    #[test]
    fn the_expected_history_breaks_nothing() {
        assert_eq!(judge(&good_history()), vec![]);
    }

    #[test]
    fn each_broken_rule_is_named() {
        let d = snap(Phase::Provisioning, "False", "SupervisorDisconnected", "");
        // No demotion after A: 004.
        let mut h = good_history();
        h.remove(2);
        h.remove(2);
        assert_eq!(judge(&h)[0].0, Req::READY_004);
        // A demotion after the superseded C ended: 007.
        let mut h = good_history();
        h.insert(6, d.clone());
        assert_eq!(judge(&h)[0].0, Req::READY_007);
        // A demotion after the Error: 006; another change: ERR-003.
        let mut h = good_history();
        h.push(d);
        assert_eq!(judge(&h)[0].0, Req::READY_006);
        let mut h = good_history();
        h.push(snap(Phase::Error, "False", "ProcessExited", "exited"));
        assert_eq!(judge(&h)[0].0, Req::ERR_003);
        // Never Ready again after B's end: 008.
        let mut h = good_history();
        h.remove(5);
        assert_eq!(judge(&h)[0].0, Req::READY_008);
    }

    #[test]
    fn the_scripts_words_are_judged_too() {
        let ok =
            "other: rogue session: a-ready=yes a-end-demoted=yes b-ready=yes b-end-demoted=yes \
                  c-same-instance-ready=yes d-accepted=accepted c-superseded-end=kept-ready";
        assert!(judge_words(ok).is_empty());
        let bad = ok.replace(
            "c-superseded-end=kept-ready",
            "c-superseded-end=demoted(provisioning/SupervisorDisconnected)",
        );
        assert_eq!(judge_words(&bad)[0].0, Req::READY_007);
    }
}
