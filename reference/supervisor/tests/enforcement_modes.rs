//! Strict, best-effort and declared-skip bootstrap (seed 003), with a real netns failure: the
//! supervisor runs as root without CAP_SYS_ADMIN in its bounding set, so
//! `unshare(CLONE_NEWNET)` fails with EPERM exactly as under gVisor.

mod common;

use std::time::Duration;

use common::expect::single_failure;
use common::{Event, GatewayDouble, Launch, Root};
use openshell_proto::v1::{DegradedSubsystem, SupervisorStartupStage as Stage};

const BOUND: Duration = Duration::from_secs(30);

fn without_admin(env: &[(&str, &str)]) -> Launch {
    Launch {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        without_cap_sys_admin: true,
        ..Default::default()
    }
}

fn degraded(subsystem: &str, mode: &str, detail: &str) -> DegradedSubsystem {
    DegradedSubsystem {
        subsystem: subsystem.into(),
        mode: mode.into(),
        detail: detail.into(),
    }
}

/// Starts `launch`, returns the hello's degraded list, then stops the sandbox.
async fn hello_degraded(root: &Root, launch: &Launch) -> Vec<DegradedSubsystem> {
    let gw = GatewayDouble::start().await;
    let running = launch.start(root, &gw.endpoint());
    let hello = gw
        .expect(BOUND, "hello", |e| match e {
            Event::Hello { hello, .. } => Some(hello.clone()),
            Event::Error { report, .. } => panic!("unexpected startup failure {report:?}"),
            _ => None,
        })
        .await;
    running.kill().await;
    hello.degraded
}

#[tokio::test]
async fn strict_mode_reports_the_netns_failure_with_its_errno() {
    let root = Root::assemble("good");
    let (report, _) = single_failure(&root, &without_admin(&[]), Stage::Netns).await;
    assert!(
        report
            .message
            .contains("unshare(CLONE_NEWNET) failed: EPERM"),
        "{}",
        report.message
    );
}

#[tokio::test]
async fn best_effort_tolerates_the_netns_failure_and_lists_it_as_failed() {
    let root = Root::assemble("good");
    let list = hello_degraded(
        &root,
        &without_admin(&[("OPENSHELL_BEST_EFFORT_FAILURES", "1")]),
    )
    .await;
    assert_eq!(list, vec![degraded("netns", "failed", "EPERM")]);
}

#[tokio::test]
async fn declared_skip_is_never_attempted_and_listed_as_skipped() {
    let root = Root::assemble("good");
    // Without CAP_SYS_ADMIN an attempt would fail; the declared skip never makes one.
    let list = hello_degraded(
        &root,
        &without_admin(&[("OPENSHELL_SKIP_BOOTSTRAP", "netns")]),
    )
    .await;
    assert_eq!(list, vec![degraded("netns", "skipped", "")]);
}

#[tokio::test]
async fn undeclared_failure_stays_fatal_when_another_subsystem_is_declared() {
    let root = Root::assemble("good");
    let launch = without_admin(&[("OPENSHELL_SKIP_BOOTSTRAP", "workload-seccomp")]);
    let (report, _) = single_failure(&root, &launch, Stage::Netns).await;
    assert!(report.message.contains("EPERM"), "{}", report.message);
}

#[tokio::test]
async fn best_effort_does_not_excuse_a_broken_policy() {
    let root = Root::assemble("stale-policy");
    let launch = Launch {
        env: vec![("OPENSHELL_BEST_EFFORT_FAILURES".into(), "true".into())],
        ..Default::default()
    };
    single_failure(&root, &launch, Stage::Policy).await;
}

#[tokio::test]
async fn invalid_best_effort_value_is_a_config_error() {
    let root = Root::assemble("good");
    let launch = Launch {
        env: vec![("OPENSHELL_BEST_EFFORT_FAILURES".into(), "sometimes".into())],
        ..Default::default()
    };
    single_failure(&root, &launch, Stage::Config).await;
}

#[tokio::test]
async fn strict_mode_with_everything_working_sends_no_degraded_list() {
    let root = Root::assemble("good");
    assert_eq!(hello_degraded(&root, &Launch::default()).await, vec![]);
}

#[tokio::test]
async fn skip_all_lists_every_subsystem_in_order() {
    let root = Root::assemble("good");
    let launch = Launch {
        env: vec![("OPENSHELL_SKIP_BOOTSTRAP".into(), "all".into())],
        ..Default::default()
    };
    let list = hello_degraded(&root, &launch).await;
    assert_eq!(
        list,
        vec![
            degraded("netns", "skipped", ""),
            degraded("supervisor-seccomp", "skipped", ""),
            degraded("workload-seccomp", "skipped", ""),
        ]
    );
}

#[tokio::test]
async fn probe_notices_when_the_filters_are_skipped() {
    // The probe's seccomp check is real: with both filters declared away, io_uring_setup gets
    // past seccomp and the probe exits with its seccomp code (12).
    let root = Root::assemble("workload-probe");
    let gw = GatewayDouble::start().await;
    let launch = Launch {
        env: vec![(
            "OPENSHELL_SKIP_BOOTSTRAP".into(),
            "supervisor-seccomp,workload-seccomp".into(),
        )],
        ..Default::default()
    };
    let outcome = launch.start(&root, &gw.endpoint()).finish(BOUND).await;
    assert_eq!(outcome.code, Some(12), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("FAIL seccomp-eperm"),
        "{}",
        outcome.stderr
    );
}

#[tokio::test]
async fn supervisor_already_at_the_target_ids_skips_the_privilege_drop() {
    // Seed 003: an outer runtime started the entrypoint as sandbox (1000:1000). Without
    // privileges netns fails (EPERM, tolerated in best-effort mode) and the drop must be a
    // no-op instead of failing; the hook and the main process still run as 1000.
    let root = Root::assemble("boot-ok");
    let gw = GatewayDouble::start().await;
    let launch = Launch {
        env: vec![("OPENSHELL_BEST_EFFORT_FAILURES".into(), "1".into())],
        command: Some(vec![
            "/bin/sh".into(),
            "-c".into(),
            "grep -qx uid=1000/1000 /tmp/boot-record && test \"$(id -u):$(id -g)\" = 1000:1000"
                .into(),
        ]),
        as_ids: Some((1000, 1000)),
        ..Default::default()
    };
    let outcome = launch.start(&root, &gw.endpoint()).finish(BOUND).await;
    let events = gw.drain().await;
    let hello = events.iter().find_map(|e| match e {
        Event::Hello { hello, .. } => Some(hello.clone()),
        _ => None,
    });
    let hello = hello.unwrap_or_else(|| panic!("no hello: {events:?}\n{}", outcome.stderr));
    assert_eq!(hello.degraded, vec![degraded("netns", "failed", "EPERM")]);
    assert_eq!(outcome.code, Some(0), "{}", outcome.stderr);
}

#[tokio::test]
async fn probe_notices_when_the_workload_shares_the_supervisors_network() {
    // Best-effort mode tolerated the netns failure: the workload is on the host network, and
    // the probe's first check says so with its code (10), the second agrees.
    let root = Root::assemble("workload-probe");
    let gw = GatewayDouble::start().await;
    let launch = without_admin(&[("OPENSHELL_BEST_EFFORT_FAILURES", "1")]);
    let outcome = launch.start(&root, &gw.endpoint()).finish(BOUND).await;
    assert_eq!(outcome.code, Some(10), "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("FAIL netns-differs"),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("FAIL netns-only-lo"),
        "{}",
        outcome.stderr
    );
}

fn seccomp_einval(env: &[(&str, &str)]) -> Launch {
    Launch {
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        seccomp_einval: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn strict_mode_reports_a_refused_supervisor_filter_with_its_errno() {
    let root = Root::assemble("good");
    let (report, _) = single_failure(&root, &seccomp_einval(&[]), Stage::SupervisorSeccomp).await;
    assert!(
        report
            .message
            .contains("cannot apply the supervisor filter")
            && report.message.contains("EINVAL"),
        "{}",
        report.message
    );
}

#[tokio::test]
async fn undeclared_workload_filter_failure_stays_fatal_when_the_prelude_is_declared() {
    let root = Root::assemble("good");
    let launch = seccomp_einval(&[("OPENSHELL_SKIP_BOOTSTRAP", "supervisor-seccomp")]);
    let (report, _) = single_failure(&root, &launch, Stage::WorkloadSeccomp).await;
    assert!(
        report.message.contains("cannot apply the workload filter"),
        "{}",
        report.message
    );
}

#[tokio::test]
async fn best_effort_tolerates_refused_filters_and_lists_both() {
    let root = Root::assemble("good");
    let list = hello_degraded(
        &root,
        &seccomp_einval(&[("OPENSHELL_BEST_EFFORT_FAILURES", "yes")]),
    )
    .await;
    assert_eq!(
        list,
        vec![
            degraded("supervisor-seccomp", "failed", "EINVAL"),
            degraded("workload-seccomp", "failed", "EINVAL")
        ]
    );
}
