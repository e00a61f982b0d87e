//! What a newcomer sees from the runner when something basic is wrong: a port with nothing
//! listening says "connection refused", and a user who is not root gets a refusal that says what
//! to do instead of a failure deep in a case.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_openshell-conformance"))
}

fn output(command: &mut Command) -> (i32, String) {
    let out = command
        .env_remove("OPENSHELL_REQUIRE_LANES")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn a_port_with_nothing_listening_says_connection_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let (code, text) = output(Command::new(binary()).args([
        "run",
        "--gateway",
        &url,
        "--filter",
        "=empty-image-is-invalid-argument",
    ]));
    assert_eq!(code, 2, "{text}");
    assert!(text.contains(&url), "{text}");
    assert!(
        text.contains("connection refused") && text.contains("nothing is listening"),
        "the cause, not just `transport error`: {text}"
    );
}

#[test]
fn a_user_who_is_not_root_is_told_what_to_do_for_the_process_lane() {
    // The runner itself drops to nobody (65534), as a newcomer's own account would be.
    let report = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        report.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let (code, text) = output(
        Command::new(binary())
            .args(["run", "--driver", "process", "--report-dir"])
            .arg(report.path())
            .uid(65534)
            .gid(65534)
            .env("HOME", "/tmp"),
    );
    assert_ne!(code, 0, "{text}");
    assert!(
        text.contains("needs root") && text.contains("uid 65534"),
        "{text}"
    );
    assert!(
        text.contains("run the command as root") && text.contains("--driver docker"),
        "says what to do: {text}"
    );
}
