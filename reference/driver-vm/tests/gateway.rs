//! The VM driver behind the real gateway process (`--driver vm`), with the real supervisor in
//! real QEMU guests. Each test starts its own gateway; states are awaited on the watch stream
//! with deadlines, never with sleeps.

mod common;

use std::time::Duration;

use common::{outcome, Gateway};

const READY: &str = "SANDBOX_PHASE_READY";
const ERROR: &str = "SANDBOX_PHASE_ERROR";

#[tokio::test]
async fn good_boots_to_ready_through_the_supervisor_session() -> anyhow::Result<()> {
    if !common::lane()? {
        return Ok(());
    }
    let image = common::fixture_image("good").await?;
    let gw = Gateway::start().await?;
    let id = gw.create("good", &image, &[]).await?;
    let (sb, logs) = gw.settle("good").await?;
    let (phase, reason, _, _) = outcome(&sb);
    assert_eq!(
        (phase.as_str(), reason.as_str()),
        (READY, "SupervisorConnected"),
        "{logs:?}"
    );
    assert_eq!(
        common::vm_processes(&id).len(),
        1,
        "one QEMU runs the sandbox"
    );
    gw.delete("good").await?;
    assert!(common::wait_no_vm(&id, Duration::from_secs(20))
        .await
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn stale_policy_and_missing_user_reach_error_with_the_supervisors_message(
) -> anyhow::Result<()> {
    if !common::lane()? {
        return Ok(());
    }
    let stale = common::fixture_image("stale-policy").await?;
    let nouser = common::fixture_image("missing-user").await?;
    let gw = Gateway::start().await?;
    gw.create("stale", &stale, &[]).await?;
    gw.create("nouser", &nouser, &[]).await?;
    let ((stale, _), (nouser, _)) = tokio::try_join!(gw.settle("stale"), gw.settle("nouser"))?;
    let (phase, reason, message, _) = outcome(&stale);
    assert_eq!(
        (phase.as_str(), reason.as_str()),
        (ERROR, "SupervisorError")
    );
    assert!(
        message.starts_with("policy: ") && message.contains("inference"),
        "{message}"
    );
    let (phase, reason, message, _) = outcome(&nouser);
    assert_eq!(
        (phase.as_str(), reason.as_str()),
        (ERROR, "SupervisorError")
    );
    assert!(
        message.starts_with("identity: ") && message.contains("sandbox"),
        "{message}"
    );
    Ok(())
}

#[tokio::test]
async fn a_failing_boot_hook_reaches_error_with_its_output() -> anyhow::Result<()> {
    if !common::lane()? {
        return Ok(());
    }
    let image = common::fixture_image("boot-fail").await?;
    let gw = Gateway::start().await?;
    let id = gw.create("hook", &image, &[]).await?;
    let (sb, _) = gw.settle("hook").await?;
    let (phase, reason, message, _) = outcome(&sb);
    assert_eq!(
        (phase.as_str(), reason.as_str()),
        (ERROR, "SupervisorError")
    );
    assert!(
        message.starts_with("boot-hook: ") && message.contains("widget cache is missing"),
        "{message}"
    );
    // Cleanup after Error: the VM goes without a delete.
    assert!(common::wait_no_vm(&id, Duration::from_secs(30))
        .await
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn the_main_process_exit_code_is_carried_out_of_the_vm() -> anyhow::Result<()> {
    if !common::lane()? {
        return Ok(());
    }
    let exits = common::fixture_image("main-exits").await?;
    let no_session = common::fixture_image("no-session").await?;
    let gw = Gateway::start().await?;
    gw.create("exits", &exits, &[]).await?;
    let no_session_id = gw.create("nosession", &no_session, &[]).await?;
    let ((exits, _), (no_session, logs)) =
        tokio::try_join!(gw.until_error("exits"), gw.until_error("nosession"))?;
    let (phase, reason, _, code) = outcome(&exits);
    assert_eq!(
        (phase.as_str(), reason.as_str(), code),
        (ERROR, "ProcessExited", Some(7))
    );
    // Not the supervisor: nothing but the VM's carried-out code can tell the gateway this 5.
    let (phase, reason, _, code) = outcome(&no_session);
    assert_eq!(
        (phase.as_str(), reason.as_str(), code),
        (ERROR, "ProcessExited", Some(5)),
        "{logs:?}"
    );
    assert!(common::wait_no_vm(&no_session_id, Duration::from_secs(30))
        .await
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn the_token_is_absent_from_the_workload_environment() -> anyhow::Result<()> {
    if !common::lane()? {
        return Ok(());
    }
    // The probe as the workload checks (among its other checks) that OPENSHELL_SANDBOX_TOKEN is
    // not in its environment: exit 16 if it is, 0 when every check holds.
    let image = common::fixture_image("workload-probe").await?;
    let gw = Gateway::start().await?;
    gw.create("probe", &image, &[]).await?;
    let (sb, logs) = gw.until_error("probe").await?;
    let (phase, reason, _, code) = outcome(&sb);
    assert_eq!(
        (phase.as_str(), reason.as_str(), code),
        (ERROR, "ProcessExited", Some(0)),
        "{logs:?}"
    );
    assert!(
        logs.iter().any(|l| l.contains("ok   token-absent")),
        "{logs:?}"
    );
    Ok(())
}

#[tokio::test]
async fn gateway_death_leaves_no_vm() -> anyhow::Result<()> {
    if !common::lane()? {
        return Ok(());
    }
    let image = common::fixture_image("good").await?;
    let mut gw = Gateway::start().await?;
    let id = gw.create("orphan", &image, &[]).await?;
    let (sb, _) = gw.settle("orphan").await?;
    assert_eq!(outcome(&sb).0, READY);
    let relays_before = relays(&gw);
    gw.child.start_kill()?;
    gw.child.wait().await?;
    let left = common::wait_no_vm(&id, Duration::from_secs(20)).await;
    assert!(left.is_empty(), "QEMU {left:?} outlived its gateway");
    // The relays QEMU spawned end with their connections (the gateway's end closed).
    assert!(!relays_before.is_empty(), "the session ran through a relay");
    let end = std::time::Instant::now() + Duration::from_secs(20);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let left = loop {
        tick.tick().await;
        let left = relays(&gw);
        if left.is_empty() || std::time::Instant::now() >= end {
            break left;
        }
    };
    assert!(left.is_empty(), "relays {left:?} outlived the gateway");
    Ok(())
}

/// The `nc` relays of this gateway's VMs (spawned by QEMU, reparented to init).
fn relays(gw: &Gateway) -> Vec<i32> {
    let port = gw
        .endpoint
        .rsplit(':')
        .next()
        .unwrap_or_default()
        .to_string();
    let needle = format!("nc\u{0}127.0.0.1\u{0}{port}\u{0}");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_string_lossy().parse::<i32>().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline)
                .contains(&needle)
                .then_some(pid)
        })
        .collect()
}
