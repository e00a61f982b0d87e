//! `openshell sandbox create` against a scripted gateway: the real binary, real gRPC on loopback.

mod common;

use assert_cmd::assert::OutputAssertExt;
use common::{dead_url, openshell, start, End, Script};
use openshell_proto::v1::SandboxPhase::{Error, Provisioning, Ready};

fn script(
    events: Vec<(openshell_proto::v1::SandboxPhase, &'static str, &str)>,
    end: End,
) -> Script {
    Script {
        events: events
            .into_iter()
            .map(|(p, r, m)| (p, r, m.to_string()))
            .collect(),
        end,
        final_state: None,
        exit_code: None,
    }
}

fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn provisioning_then_ready_prints_progress_and_the_name_and_exits_zero() {
    let gw = start(
        vec![(
            "good",
            script(
                vec![
                    (Provisioning, "Starting", ""),
                    (Ready, "SupervisorConnected", ""),
                ],
                End::Close,
            ),
        )],
        vec![],
    );
    let output = openshell(&gw.url)
        .args([
            "sandbox", "create", "--from", "good", "--name", "box", "--env", "A=1",
        ])
        .args([
            "--env",
            "B=x=y",
            "--label",
            "openshell.run-id=r1",
            "--runtime",
            "runsc",
        ])
        .args(["--", "sh", "-c", "echo hi"])
        .output()
        .unwrap();
    output.clone().assert().success().stdout("box\n");
    assert!(
        stderr_of(&output).contains("Provisioning: Starting\n"),
        "{}",
        stderr_of(&output)
    );

    let recorded = gw.state.recorded.lock().unwrap();
    let req = &recorded.created[0];
    assert_eq!(req.name, "box");
    assert_eq!(
        req.labels.get("openshell.run-id").map(String::as_str),
        Some("r1")
    );
    let spec = req.spec.as_ref().unwrap();
    assert_eq!(spec.environment.get("B").map(String::as_str), Some("x=y"));
    assert_eq!(spec.command, ["sh", "-c", "echo hi"]);
    let template = spec.template.as_ref().unwrap();
    assert_eq!(
        (
            template.image.as_str(),
            template.runtime_class_name.as_str()
        ),
        ("good", "runsc")
    );
    let watch = &recorded.watched[0];
    assert_eq!(watch.id, "id-box");
    assert!(watch.follow_status && watch.stop_on_terminal);
}

#[test]
fn without_a_name_a_dns1123_name_is_generated_and_printed() {
    let gw = start(
        vec![(
            "good",
            script(vec![(Ready, "SupervisorConnected", "")], End::Close),
        )],
        vec![],
    );
    let output = openshell(&gw.url)
        .args(["sandbox", "create", "--from", "good"])
        .output()
        .unwrap();
    output.clone().assert().success();
    let name = String::from_utf8(output.stdout).unwrap();
    let name = name.trim_end();
    assert!(name.starts_with("sb-") && name.len() == 11, "{name}");
    assert!(
        name[3..]
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{name}"
    );
    assert_eq!(gw.state.recorded.lock().unwrap().created[0].name, name);
}

#[test]
fn supervisor_error_prints_reason_and_escaped_message_and_exits_one() {
    let message = "policy: unknown field `inference` \u{1b}[31mred\u{9b}2J\u{7}";
    let gw = start(
        vec![(
            "stale-policy",
            script(
                vec![
                    (Provisioning, "Starting", ""),
                    (Error, "SupervisorError", message),
                ],
                End::Close,
            ),
        )],
        vec![],
    );
    let output = openshell(&gw.url)
        .args([
            "sandbox",
            "create",
            "--from",
            "stale-policy",
            "--name",
            "bad",
        ])
        .output()
        .unwrap();
    output.clone().assert().code(1).stdout("");
    let stderr = stderr_of(&output);
    assert!(stderr.contains("Provisioning: Starting\n"), "{stderr}");
    assert!(
        stderr.contains(
            "Error: SupervisorError: policy: unknown field `inference` \\u{1b}[31mred\\u{9b}2J\\u{7}\n"
        ),
        "{stderr}"
    );
    assert!(
        !output.stderr.contains(&0x1b) && !output.stderr.contains(&0x07),
        "{stderr}"
    );
    assert!(!stderr.contains('\u{9b}'), "{stderr}");
}

#[test]
fn process_exit_shows_the_exit_code() {
    let mut s = script(
        vec![
            (Provisioning, "Starting", ""),
            (Error, "ProcessExited", "main process exited"),
        ],
        End::Close,
    );
    s.exit_code = Some(3);
    let gw = start(vec![("exits", s)], vec![]);
    let output = openshell(&gw.url)
        .args(["sandbox", "create", "--from", "exits", "--name", "ex"])
        .output()
        .unwrap();
    output.clone().assert().code(1);
    assert!(
        stderr_of(&output).contains("Error: ProcessExited: main process exited (exit code 3)\n"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn no_terminal_phase_within_the_timeout_names_the_last_status() {
    let gw = start(
        vec![(
            "slow",
            script(
                vec![(Provisioning, "Starting", "waiting for the supervisor")],
                End::Hang,
            ),
        )],
        vec![],
    );
    let output = openshell(&gw.url)
        .env("OPENSHELL_PROVISION_TIMEOUT", "1")
        .args(["sandbox", "create", "--from", "slow", "--name", "slow"])
        .output()
        .unwrap();
    output.clone().assert().code(1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains(
            "error: sandbox slow provisioning timed out after 1s; last status: \
             Provisioning: Starting: waiting for the supervisor"
        ),
        "{stderr}"
    );
}

#[test]
fn stream_closing_early_is_decided_by_a_final_get() {
    let mut s = script(vec![(Provisioning, "Starting", "")], End::Close);
    s.final_state = Some((Ready, "SupervisorConnected", String::new()));
    let gw = start(vec![("early", s)], vec![]);
    openshell(&gw.url)
        .args(["sandbox", "create", "--from", "early", "--name", "e1"])
        .assert()
        .success()
        .stdout("e1\n");
}

#[test]
fn stream_failing_early_then_error_on_get_exits_one() {
    let mut s = script(
        vec![(Provisioning, "Starting", "")],
        End::Fail(tonic::Status::resource_exhausted("watcher lagged")),
    );
    s.final_state = Some((Error, "ImageNotFound", "no image nope:1".to_string()));
    let gw = start(vec![("lag", s)], vec![]);
    let output = openshell(&gw.url)
        .args(["sandbox", "create", "--from", "lag", "--name", "l1"])
        .output()
        .unwrap();
    output.clone().assert().code(1);
    let stderr = stderr_of(&output);
    assert!(stderr.contains("watch ended: watcher lagged"), "{stderr}");
    assert!(
        stderr.contains("Error: ImageNotFound: no image nope:1\n"),
        "{stderr}"
    );
}

#[test]
fn stream_ending_while_still_provisioning_is_a_clear_failure() {
    let gw = start(
        vec![(
            "stuck",
            script(vec![(Provisioning, "Starting", "")], End::Close),
        )],
        vec![],
    );
    let output = openshell(&gw.url)
        .args(["sandbox", "create", "--from", "stuck", "--name", "s1"])
        .output()
        .unwrap();
    output.clone().assert().code(1);
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("error: watch of sandbox s1 ended before it was Ready or Error"),
        "{stderr}"
    );
}

#[test]
fn a_duplicate_name_shows_the_gateways_message() {
    let existing = common::sandbox("taken", "good", Ready, "SupervisorConnected", "", None);
    let gw = start(vec![], vec![existing]);
    let output = openshell(&gw.url)
        .args(["sandbox", "create", "--from", "good", "--name", "taken"])
        .output()
        .unwrap();
    output.clone().assert().code(1);
    assert_eq!(stderr_of(&output), "error: sandbox taken already exists\n");
}

#[test]
fn gateway_down_is_a_one_line_error_naming_the_url() {
    let url = dead_url();
    let output = openshell(&url)
        .args(["sandbox", "create", "--from", "good"])
        .output()
        .unwrap();
    output.clone().assert().code(1).stdout("");
    let stderr = stderr_of(&output);
    assert!(
        stderr.starts_with(&format!("error: cannot reach gateway at {url}: ")),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn env_without_equals_is_a_usage_error_with_exit_two() {
    openshell(&dead_url())
        .args(["sandbox", "create", "--from", "good", "--env", "NOPE"])
        .assert()
        .code(2);
}

#[test]
fn every_phase_or_reason_change_prints_one_progress_line_in_order() {
    let gw = start(
        vec![(
            "flappy",
            script(
                vec![
                    (Provisioning, "Starting", ""),
                    (Provisioning, "Starting", ""),
                    (Provisioning, "SupervisorDisconnected", "session ended"),
                    (Ready, "SupervisorConnected", ""),
                ],
                End::Close,
            ),
        )],
        vec![],
    );
    let output = openshell(&gw.url)
        .args(["sandbox", "create", "--from", "flappy", "--name", "f1"])
        .output()
        .unwrap();
    output.clone().assert().success().stdout("f1\n");
    assert_eq!(
        stderr_of(&output),
        "Provisioning: Starting\nProvisioning: SupervisorDisconnected\n"
    );
}
