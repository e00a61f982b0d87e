//! Supervisor-RPC security (OSC-SEC-001…004), through the rogue probe.
//!
//! The `rogue-credentials` fixture's entrypoint is `openshell-probe rogue credentials` instead of
//! the supervisor. With the token the driver hands it, it sends crafted `ReportSupervisorError`
//! calls and finally reports its own verdict (its own id, its own token) as
//! `other: rogue credentials: no-token=<code> unknown-sandbox=<code> other-sandbox=<code>
//! deleted-sandbox=<code> no-token-connect=<code> no-token-exit=<code> token-sha256=<16 hex>
//! token-len=<n> echo=<the token>`, which the suite reads back through the API; it also prints
//! the token to its output, which `WatchSandbox` with `follow_logs` carries: a gateway must redact
//! it in both places (OSC-SEC-004), and the followed output lines are checked for it too.
//!
//! The token check cannot know the token, so it combines three signs of a leak in every string
//! field of Get, List and Watch responses: (1) any substring of the token's length whose SHA-256
//! starts with the 16 hex digits the probe reported for its token; (2) the variable name `OPENSHELL_SANDBOX_TOKEN`;
//! (3) a run of 32 or more hex digits that is not an identifier the API shows on purpose (sandbox
//! ids, main-process instance ids) nor one the suite put there itself (a hex-encoded 128-bit token
//! is 32 digits). (1) is exact for verbatim leaks of the rogue's token; (2) and (3) catch a
//! dumped environment or a hex token of any sandbox.

use std::collections::BTreeMap;

use openshell_proto::v1::{Sandbox, SandboxPhase as Phase};
use openshell_proto::{env, labels, ReadyReason};
use sha2::{Digest, Sha256};

use crate::cases::fixture::observed;
use crate::check::{ensure, fail, CaseResult};
use crate::harness::{status_text, CreateOpts, Harness, CASE_LABEL};
use crate::observe::{watch, Journal, Snapshot, WatchOpts};
use crate::spec::Req;

/// Environment the rogue probe reads: another live sandbox's id (not `OPENSHELL_*`, which an
/// implementation may reserve for itself, as upstream does).
pub const OTHER_SANDBOX_VAR: &str = "OSC_PROBE_OTHER_SANDBOX_ID";
/// Environment the rogue probe reads: a deleted sandbox's id.
pub const DELETED_SANDBOX_VAR: &str = "OSC_PROBE_DELETED_SANDBOX_ID";

/// The `key=value` words of a verdict message.
pub fn verdict(message: &str) -> BTreeMap<String, String> {
    message
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn check_verdict(
    v: &BTreeMap<String, String>,
    key: &str,
    want: &str,
    requirement: Req,
    what: &str,
) -> CaseResult {
    let got = v.get(key).map(String::as_str).unwrap_or("(not reported)");
    ensure(
        got == want,
        requirement,
        &format!("{what} to fail with {want}"),
        || got.to_string(),
    )
}

/// OSC-SEC-001/002/003.
pub async fn rogue_reports_refused(h: Harness) -> CaseResult {
    let (other, other_before) = h.create_ready("other", Req::SEC_002).await?;
    let gone = h
        .create("gone", "good", CreateOpts::default(), Req::SEC_003)
        .await?;
    h.wait_terminal(&gone, Req::SEC_003).await?;
    h.delete(&gone.name)
        .await
        .map_err(|s| fail(Req::SEC_003, "DeleteSandbox to succeed", status_text(&s)))?;
    let opts = CreateOpts::default()
        .env(OTHER_SANDBOX_VAR, &other.id)
        .env(DELETED_SANDBOX_VAR, &gone.id);
    let rogue = h
        .create("rogue", "rogue-credentials", opts, Req::SEC_001)
        .await?;
    let last = h.wait_not_ready(&rogue, Req::SEC_001).await?;
    ensure(
        last.phase == Phase::Error && last.message().contains("rogue credentials:"),
        Req::SEC_001,
        "the rogue's own verdict report (Error, `other: rogue credentials: …`)",
        || observed(&last),
    )?;
    let v = verdict(last.message());
    check_verdict(
        &v,
        "no-token",
        "Unauthenticated",
        Req::SEC_001,
        "a report without a token",
    )?;
    check_verdict(
        &v,
        "no-token-connect",
        "Unauthenticated",
        Req::SEC_001,
        "ConnectSupervisor without a token",
    )?;
    check_verdict(
        &v,
        "no-token-exit",
        "Unauthenticated",
        Req::SEC_001,
        "ReportMainProcessExit without a token",
    )?;
    check_verdict(
        &v,
        "other-sandbox",
        "PermissionDenied",
        Req::SEC_002,
        "a report for another sandbox's id",
    )?;
    check_verdict(
        &v,
        "deleted-sandbox",
        "NotFound",
        Req::SEC_003,
        "a report for a deleted sandbox's id",
    )?;
    check_verdict(
        &v,
        "unknown-sandbox",
        "NotFound",
        Req::SEC_003,
        "a report for an unknown sandbox id",
    )?;
    let after = h
        .get(&other.name)
        .await
        .map_err(|s| fail(Req::SEC_002, "GetSandbox of the victim", status_text(&s)))?;
    let after = Snapshot::of(&after);
    ensure(
        after.is(Phase::Ready, ReadyReason::SupervisorConnected)
            && after.reason() == other_before.reason(),
        Req::SEC_002,
        "the victim sandbox to stay Ready, untouched by the rogue's report",
        || after.to_string(),
    )
}

/// Every string field of a sandbox, with its path.
pub fn strings(sandbox: &Sandbox) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut push = |path: &str, value: &str| out.push((path.to_string(), value.to_string()));
    if let Some(m) = &sandbox.metadata {
        push("metadata.id", &m.id);
        push("metadata.name", &m.name);
        push("metadata.workspace", &m.workspace);
        for (k, v) in m.labels.iter().chain(m.annotations.iter()) {
            push("metadata.labels/annotations key", k);
            push(&format!("metadata.labels/annotations[{k}]"), v);
        }
    }
    if let Some(s) = &sandbox.spec {
        push("spec.log_level", &s.log_level);
        for (k, v) in &s.environment {
            push("spec.environment key", k);
            push(&format!("spec.environment[{k}]"), v);
        }
        for (i, p) in s.providers.iter().chain(s.command.iter()).enumerate() {
            push(&format!("spec.providers/command[{i}]"), p);
        }
        if let Some(t) = &s.template {
            push("spec.template.image", &t.image);
            push("spec.template.runtime_class_name", &t.runtime_class_name);
            push("spec.template.agent_socket", &t.agent_socket);
            for (k, v) in t
                .labels
                .iter()
                .chain(t.annotations.iter())
                .chain(t.environment.iter())
            {
                push("spec.template map key", k);
                push(&format!("spec.template map[{k}]"), v);
            }
        }
    }
    if let Some(st) = &sandbox.status {
        push("status.sandbox_name", &st.sandbox_name);
        push("status.agent_pod", &st.agent_pod);
        push("status.agent_fd", &st.agent_fd);
        push("status.sandbox_fd", &st.sandbox_fd);
        push(
            "status.main_process_instance_id",
            &st.main_process_instance_id,
        );
        for c in &st.conditions {
            for (field, value) in [
                ("type", &c.r#type),
                ("status", &c.status),
                ("reason", &c.reason),
                ("message", &c.message),
                ("last_transition_time", &c.last_transition_time),
            ] {
                push(&format!("status.conditions[{}].{field}", c.r#type), value);
            }
        }
    }
    out
}

/// The first leak sign in `value`, if any (see the module documentation).
pub fn leak_in(value: &str, token: Option<(&str, usize)>, known: &[String]) -> Option<String> {
    if value.contains(env::SANDBOX_TOKEN) {
        return Some(format!("contains `{}`", env::SANDBOX_TOKEN));
    }
    let re = regex::Regex::new("[0-9a-fA-F]{32,}").expect("static pattern");
    for m in re.find_iter(value) {
        if !known.iter().any(|k| k.contains(m.as_str())) {
            return Some(format!(
                "contains the {}-digit hex run {:?}",
                m.len(),
                m.as_str()
            ));
        }
    }
    token.and_then(|(hash, len)| token_in(value, hash, len))
}

/// Where in `value` a substring of `len` bytes hashes to the reported `hash` prefix, if anywhere.
pub fn token_in(value: &str, hash: &str, len: usize) -> Option<String> {
    if hash.is_empty() || len == 0 {
        return None;
    }
    for (start, window) in value.as_bytes().windows(len).enumerate() {
        if hex::encode(Sha256::digest(window)).starts_with(hash) {
            return Some(format!(
                "contains the rogue sandbox's token (bytes {start}..{})",
                start + len
            ));
        }
    }
    None
}

/// OSC-SEC-004.
pub async fn token_absent(h: Harness) -> CaseResult {
    let good = h
        .create("tok", "good", CreateOpts::default(), Req::SEC_004)
        .await?;
    let rogue = h
        .create(
            "tokrogue",
            "rogue-credentials",
            CreateOpts::default(),
            Req::SEC_004,
        )
        .await?;
    // The rogue first: its verdict is the first Error event; whatever changes the record later is
    // OSC-ERR-003's business.
    let rogue_last = h.wait_not_ready(&rogue, Req::SEC_004).await?;
    h.wait_terminal(&good, Req::SEC_004).await?;
    let v = verdict(rogue_last.message());
    let token_hash = v.get("token-sha256").cloned().unwrap_or_default();
    let token_len: usize = v.get("token-len").and_then(|l| l.parse().ok()).unwrap_or(0);
    ensure(
        token_hash.len() == 16 && token_len > 0,
        Req::SEC_004,
        "the rogue probe's verdict to carry token-sha256=<16 hex> token-len=<n>",
        || observed(&rogue_last),
    )?;
    // The create responses first: the record as first stored, before any later change hides
    // what its first version said.
    let mut output_lines: Vec<String> = Vec::new();
    let mut responses: Vec<(String, Sandbox)> = h
        .create_responses()
        .into_iter()
        .map(|s| ("CreateSandbox".to_string(), s))
        .collect();
    for c in [&good, &rogue] {
        let got = h
            .get(&c.name)
            .await
            .map_err(|s| fail(Req::SEC_004, "GetSandbox to succeed", status_text(&s)))?;
        responses.push((format!("GetSandbox {}", c.name), got));
        let journal = Journal::default();
        let deadline =
            (std::time::Instant::now() + std::time::Duration::from_secs(10)).min(h.deadline());
        // The rogue's watch follows its (kept) output too: it printed its token. Terminal, so
        // the stream ends after the snapshot and the output tail (OSC-API-006).
        let rogue_logs = c.id == rogue.id;
        let opts = WatchOpts {
            follow_logs: rogue_logs,
            stop_on_terminal: rogue_logs,
        };
        let obs = watch(&mut h.client(), &c.id, opts, deadline, &journal, |_| {
            !rogue_logs
        })
        .await
        .map_err(|s| fail(Req::SEC_004, "WatchSandbox to open", status_text(&s)))?;
        output_lines.extend(journal.logs());
        responses.extend(
            obs.events
                .into_iter()
                .map(|e| (format!("WatchSandbox {}", c.name), e)),
        );
    }
    let selector = format!(
        "{}={},{CASE_LABEL}={}",
        labels::RUN_ID,
        h.run_id(),
        h.labels()[CASE_LABEL]
    );
    let listed = h
        .list(&selector)
        .await
        .map_err(|s| fail(Req::SEC_004, "ListSandboxes to succeed", status_text(&s)))?;
    responses.extend(listed.into_iter().map(|s| ("ListSandboxes".to_string(), s)));
    let known: Vec<String> = responses
        .iter()
        .filter_map(|(_, s)| s.metadata.as_ref().map(|m| m.id.clone()))
        .chain(responses.iter().filter_map(|(_, s)| {
            s.status
                .as_ref()
                .map(|st| st.main_process_instance_id.clone())
        }))
        .filter(|k| !k.is_empty())
        .chain([h.run_id().to_string()])
        .chain(h.image("good").ok())
        .chain(h.image("rogue-credentials").ok())
        .collect();
    for line in &output_lines {
        if let Some(sign) = token_in(line, &token_hash, token_len) {
            return Err(fail(
                Req::SEC_004,
                "no token in the output lines WatchSandbox follows",
                format!("WatchSandbox {} (follow_logs): {line:?} {sign}", rogue.name),
            ));
        }
    }
    for (source, sandbox) in &responses {
        for (path, value) in strings(sandbox) {
            if let Some(sign) = leak_in(&value, Some((&token_hash, token_len)), &known) {
                return Err(fail(
                    Req::SEC_004,
                    "no token in any string field of the read APIs",
                    format!("{source}: {path} {sign}"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_words_are_parsed() {
        let v = verdict(
            "other: rogue credentials: no-token=Unauthenticated other-sandbox=PermissionDenied",
        );
        assert_eq!(v["no-token"], "Unauthenticated");
        assert_eq!(v["other-sandbox"], "PermissionDenied");
    }

    #[test]
    fn a_token_is_found_by_its_hash_and_hex_runs_by_length() {
        let token = "s3cr3t-t0ken-value-0123456789";
        let hash = &hex::encode(Sha256::digest(token.as_bytes()))[..16];
        let t = Some((hash, token.len()));
        assert!(leak_in(&format!("policy: x {token} y"), t, &[])
            .unwrap()
            .contains("token"));
        assert!(leak_in("policy: nothing here, nothing at all", t, &[]).is_none());
        let hex32 = "0123456789abcdef0123456789abcdef";
        assert!(leak_in(hex32, None, &[]).unwrap().contains("32-digit"));
        assert!(leak_in(hex32, None, &[format!("id-{hex32}")]).is_none());
        assert!(leak_in("env OPENSHELL_SANDBOX_TOKEN=x", None, &[]).is_some());
    }
}
