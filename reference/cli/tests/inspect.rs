//! `openshell sandbox get|list|delete` against a scripted gateway.

mod common;

use assert_cmd::assert::OutputAssertExt;
use common::{dead_url, openshell, sandbox, start};
use openshell_proto::v1::SandboxPhase::{Error, Ready};

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn errored() -> openshell_proto::v1::Sandbox {
    let mut sb = sandbox(
        "bad",
        "stale",
        Error,
        "SupervisorError",
        "policy: \u{1b}]0;pwned\u{7} x",
        Some(2),
    );
    sb.status
        .as_mut()
        .unwrap()
        .conditions
        .push(openshell_proto::v1::SandboxCondition {
            r#type: "EnforcementDegraded".into(),
            status: "True".into(),
            reason: "EnforcementDegraded".into(),
            message: "netns(failed: EPERM)".into(),
            last_transition_time: String::new(),
        });
    sb
}

#[test]
fn get_text_shows_phase_exit_code_and_every_condition() {
    let gw = start(vec![], vec![errored()]);
    let output = openshell(&gw.url)
        .args(["sandbox", "get", "bad"])
        .output()
        .unwrap();
    output.clone().assert().success();
    let text = stdout_of(&output);
    assert!(text.contains("Name:       bad\n"), "{text}");
    assert!(text.contains("Id:         id-bad\n"), "{text}");
    assert!(text.contains("Phase:      Error\n"), "{text}");
    assert!(text.contains("Exit code:  2\n"), "{text}");
    assert!(
        text.contains("Ready = False  reason: SupervisorError\n"),
        "{text}"
    );
    assert!(
        text.contains("message: policy: \\u{1b}]0;pwned\\u{7} x\n"),
        "{text}"
    );
    assert!(
        text.contains("EnforcementDegraded = True  reason: EnforcementDegraded\n"),
        "{text}"
    );
    assert!(text.contains("message: netns(failed: EPERM)\n"), "{text}");
    assert!(!output.stdout.contains(&0x1b), "{text}");
}

#[test]
fn get_json_is_a_stable_object_without_any_token() {
    let gw = start(vec![], vec![errored()]);
    let output = openshell(&gw.url)
        .args(["sandbox", "get", "bad", "--output", "json"])
        .output()
        .unwrap();
    output.clone().assert().success();
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value["name"], "bad");
    assert_eq!(value["id"], "id-bad");
    assert_eq!(value["phase"], "Error");
    assert_eq!(value["exit_code"], 2);
    assert_eq!(value["labels"]["team"], "a");
    assert_eq!(value["conditions"][0]["type"], "Ready");
    assert_eq!(value["conditions"][0]["reason"], "SupervisorError");
    assert_eq!(
        value["conditions"][0]["message"],
        "policy: \\u{1b}]0;pwned\\u{7} x"
    );
    assert_eq!(value["conditions"][1]["type"], "EnforcementDegraded");
    assert!(!stdout_of(&output).to_lowercase().contains("token"));
}

#[test]
fn get_of_an_unknown_name_says_not_found_and_exits_one() {
    let gw = start(vec![], vec![]);
    let output = openshell(&gw.url)
        .args(["sandbox", "get", "nope"])
        .output()
        .unwrap();
    output.clone().assert().code(1).stdout("");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: sandbox nope not found\n"
    );
}

#[test]
fn get_with_the_gateway_down_names_the_gateway() {
    let url = dead_url();
    let output = openshell(&url)
        .args(["sandbox", "get", "x"])
        .output()
        .unwrap();
    output.clone().assert().code(1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("error: cannot reach gateway at {url}: ")),
        "{stderr}"
    );
}

#[test]
fn gateway_comes_from_the_environment_when_no_flag_is_given() {
    let gw = start(vec![], vec![errored()]);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_openshell"));
    cmd.env("OPENSHELL_GATEWAY", &gw.url)
        .args(["sandbox", "get", "bad"]);
    cmd.assert().success();
}

#[test]
fn list_text_shows_one_row_per_sandbox_and_passes_the_selector() {
    let ready = sandbox("good", "img", Ready, "SupervisorConnected", "", None);
    let gw = start(vec![], vec![errored(), ready]);
    let output = openshell(&gw.url)
        .args(["sandbox", "list", "--selector", "team=a"])
        .output()
        .unwrap();
    output.clone().assert().success();
    let text = stdout_of(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("NAME"), "{text}");
    assert!(
        lines[1].starts_with("bad ") && lines[1].contains("SupervisorError"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("good") && lines[2].contains("Ready"),
        "{text}"
    );
    assert_eq!(gw.state.recorded.lock().unwrap().selectors, ["team=a"]);
}

#[test]
fn list_json_is_an_array_of_get_objects() {
    let gw = start(vec![], vec![errored()]);
    let output = openshell(&gw.url)
        .args(["sandbox", "list", "-o", "json"])
        .output()
        .unwrap();
    output.clone().assert().success();
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(value.as_array().map(Vec::len), Some(1));
    assert_eq!(value[0]["name"], "bad");
}

#[test]
fn delete_removes_a_known_sandbox_and_reports_an_unknown_one() {
    let gw = start(vec![], vec![errored()]);
    openshell(&gw.url)
        .args(["sandbox", "delete", "bad"])
        .assert()
        .success()
        .stdout("deleted sandbox bad\n");
    let output = openshell(&gw.url)
        .args(["sandbox", "delete", "bad"])
        .output()
        .unwrap();
    output.clone().assert().code(1);
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        "error: sandbox bad not found\n"
    );
}

#[test]
fn an_invalid_output_format_is_a_usage_error() {
    openshell(&dead_url())
        .args(["sandbox", "get", "x", "--output", "yaml"])
        .assert()
        .code(2);
}
