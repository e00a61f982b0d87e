//! The running sandbox, observed from inside by the probe (`openshell-probe workload`) as the
//! main process: namespace, seccomp, identity, token; the boot hook's identity and re-runs;
//! the session (hello, heartbeats, reconnect) and the main process's exit report.

mod common;

use std::time::Duration;

use common::sandbox::{probe_path, TOKEN};
use common::{Event, GatewayDouble, Launch, Root};

const BOUND: Duration = Duration::from_secs(30);

fn probe(args: &[&str]) -> Launch {
    let _ = probe_path(); // fails with a clear message when the probe was not built
    let mut command = vec![
        "/usr/local/bin/openshell-probe".to_string(),
        "workload".into(),
    ];
    command.extend(args.iter().map(|s| s.to_string()));
    Launch {
        command: Some(command),
        ..Default::default()
    }
}

/// Runs `launch`, expects a session then an exit report of `code`, and the supervisor to exit
/// with the same code; returns the supervisor's stderr.
async fn run_to_exit(root: &Root, launch: &Launch, code: i32) -> String {
    let gw = GatewayDouble::start().await;
    let outcome = launch.start(root, &gw.endpoint()).finish(BOUND).await;
    let events = gw.drain().await;
    let hello = events.iter().find_map(|e| match e {
        Event::Hello { hello, auth } => Some((hello.clone(), auth.clone())),
        _ => None,
    });
    let (hello, auth) = hello.unwrap_or_else(|| panic!("no hello: {events:?}\n{}", outcome.stderr));
    assert_eq!(auth, format!("Bearer {TOKEN}"));
    let exits: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Exit { report, .. } => Some(report.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        exits.len(),
        1,
        "one exit report: {events:?}\n{}",
        outcome.stderr
    );
    assert_eq!(
        exits[0].exit_code, code,
        "reported exit code; stderr:\n{}",
        outcome.stderr
    );
    assert_eq!(
        exits[0].instance_id, hello.instance_id,
        "the exit belongs to the hello's main process"
    );
    assert_eq!(
        outcome.code,
        Some(code),
        "the supervisor exits with the child's code"
    );
    assert!(
        !events.iter().any(|e| matches!(e, Event::Error { .. })),
        "{events:?}"
    );
    outcome.stderr
}

#[tokio::test]
async fn workload_probe_sees_own_netns_with_only_lo_seccomp_sandbox_identity_and_no_token() {
    let root = Root::assemble("workload-probe");
    let stderr = run_to_exit(&root, &Launch::default(), 0).await;
    for check in [
        "netns-differs",
        "netns-only-lo",
        "seccomp-eperm",
        "identity",
        "no-root",
        "capabilities",
        "token-absent",
    ] {
        assert!(
            stderr.contains(&format!("openshell-probe: ok   {check}")),
            "{check} did not pass:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("openshell-probe: all checks hold"),
        "{stderr}"
    );
}

/// `openshell-probe hook-check /tmp/boot-record` without its hold (the fixture's command holds 4 s).
fn hook_check() -> Launch {
    let _ = probe_path();
    Launch {
        command: Some(
            [
                "/usr/local/bin/openshell-probe",
                "hook-check",
                "/tmp/boot-record",
                "--hold",
                "0",
            ]
            .map(String::from)
            .to_vec(),
        ),
        ..Default::default()
    }
}

#[tokio::test]
async fn boot_hook_runs_as_the_workload_identity_before_the_child_and_again_on_restart() {
    let root = Root::assemble("boot-ok");
    let first = run_to_exit(&root, &hook_check(), 0).await;
    assert!(
        first.contains("hook-check ok: the hook finished")
            && first.contains("credentials (1000/1000)"),
        "{first}"
    );
    // Second start on the same root: a stale record must be rewritten by the hook.
    std::fs::write(
        root.path().join("tmp/boot-record"),
        "uid=0/0\nfinished_unix_ns=0\n",
    )
    .unwrap();
    let second = run_to_exit(&root, &hook_check(), 0).await;
    assert!(
        second.contains("running boot hook /etc/openshell/boot.sh"),
        "{second}"
    );
    assert!(
        second.contains("hook-check ok"),
        "the hook did not run again:\n{second}"
    );
}

#[tokio::test]
async fn boot_ok_fixture_default_command_checks_the_hook_record_itself() {
    // The fixture's own command: hook-check with its 4 s hold, exit 0 when every check holds.
    let root = Root::assemble("boot-ok");
    let stderr = run_to_exit(&root, &Launch::default(), 0).await;
    assert!(stderr.contains("hook-check ok"), "{stderr}");
}

#[tokio::test]
async fn missing_boot_hook_is_skipped_and_logged() {
    let root = Root::assemble("good");
    let stderr = run_to_exit(&root, &probe(&[]), 0).await;
    assert!(
        stderr.contains("no boot hook at /etc/openshell/boot.sh; skipping"),
        "{stderr}"
    );
}

#[tokio::test]
async fn main_process_exit_code_is_reported_and_becomes_the_supervisors() {
    let root = Root::assemble("main-exits");
    let launch = Launch {
        command: Some(vec!["/bin/sh".into(), "-c".into(), "exit 7".into()]),
        ..Default::default()
    };
    run_to_exit(&root, &launch, 7).await;
}

#[tokio::test]
async fn main_process_killed_by_a_signal_is_reported_as_128_plus_n() {
    let root = Root::assemble("good");
    let launch = Launch {
        command: Some(vec!["/bin/sh".into(), "-c".into(), "kill -9 $$".into()]),
        ..Default::default()
    };
    run_to_exit(&root, &launch, 137).await;
}

#[tokio::test]
async fn session_sends_heartbeats_and_reconnects_with_the_same_instance_after_the_stream_ends() {
    let root = Root::assemble("good");
    let gw = GatewayDouble::start_with(1, 1).await;
    let running = Launch::default().start(&root, &gw.endpoint());
    let pick_hello = |e: &Event| match e {
        Event::Hello { hello, .. } => Some(hello.clone()),
        _ => None,
    };
    let first = gw.expect(BOUND, "first hello", pick_hello).await;
    gw.expect(Duration::from_secs(5), "a heartbeat", |e| {
        matches!(e, Event::Heartbeat).then_some(())
    })
    .await;
    // The double ended that session after the heartbeat: the supervisor must come back.
    let second = gw
        .expect(Duration::from_secs(10), "second hello", pick_hello)
        .await;
    assert_eq!(first.instance_id, second.instance_id);
    assert_eq!(first.sandbox_id, common::sandbox::SANDBOX_ID);
    assert!(
        first.degraded.is_empty(),
        "nothing failed, nothing declared: {:?}",
        first.degraded
    );
    running.kill().await;
}

#[tokio::test]
async fn sigterm_to_the_supervisor_is_forwarded_and_the_exit_reported_as_143() {
    let root = Root::assemble("good");
    let gw = GatewayDouble::start().await;
    let running = Launch::default().start(&root, &gw.endpoint());
    gw.expect(BOUND, "hello", |e| {
        matches!(e, Event::Hello { .. }).then_some(())
    })
    .await;
    // SAFETY: kill(2) with a pid and a signal number.
    let rc = unsafe { libc::kill(running.supervisor_pid(), libc::SIGTERM) };
    assert_eq!(rc, 0);
    let code = gw
        .expect(BOUND, "exit report", |e| match e {
            Event::Exit { report, .. } => Some(report.exit_code),
            _ => None,
        })
        .await;
    assert_eq!(code, 128 + libc::SIGTERM);
    assert_eq!(running.finish(BOUND).await.code, Some(128 + libc::SIGTERM));
}

#[tokio::test]
async fn orphans_are_reaped_by_the_supervisor() {
    // The main process leaves an orphan (a backgrounded `true` whose parent subshell exits at
    // once); it is re-parented to the supervisor, PID 1. The main process then waits, with a
    // deadline, until no zombie is left in the namespace: it exits 0 if the supervisor reaped
    // the orphan, 1 if a zombie outlived the deadline.
    let script = r#"(/bin/true &); i=0; while grep -q ') Z ' /proc/[0-9]*/stat; do i=$((i+1)); [ $i -gt 200 ] && exit 1; /bin/busybox usleep 20000; done; exit 0"#;
    let root = Root::assemble("good");
    let launch = Launch {
        command: Some(vec!["/bin/sh".into(), "-c".into(), script.into()]),
        ..Default::default()
    };
    run_to_exit(&root, &launch, 0).await;
}
