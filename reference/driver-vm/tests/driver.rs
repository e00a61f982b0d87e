//! The VM driver on its own: real QEMU guests running stand-in images (busybox `sh -c SCRIPT` as
//! the entrypoint, no supervisor), with a TCP listener on the host's 127.0.0.1 standing in for
//! the gateway. Events are awaited with deadlines, never with sleeps.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use openshell_driver::{ComputeDriver, DriverEvent, EventReceiver, SandboxRequest};
use openshell_driver_vm::{accel, boot::BootConfig, VmConfig, VmDriver};
use tokio::io::{AsyncBufReadExt, BufReader};

async fn driver(state: &Path) -> anyhow::Result<(VmDriver, EventReceiver)> {
    let cache = Path::new(common::CACHE);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let config = VmConfig {
        state_dir: state.to_path_buf(),
        cache_dir: cache.to_path_buf(),
        boot: BootConfig {
            qemu: "qemu-system-x86_64".into(),
            kernel: cache.join("vmlinuz"),
            modules: cache.join("modules"),
            init: common::bin_dir().join("openshell-vm-init"),
            busybox: "/bin/busybox".into(),
            memory_mib: 256,
        },
        accel: accel::Choice::Auto,
        docker_host: None,
        max_running: 2,
    };
    Ok((VmDriver::new(config, tx).await?, rx))
}

fn request(id: &str, image: &str, port: u16, token: &str) -> SandboxRequest {
    SandboxRequest {
        sandbox_id: id.into(),
        name: id.into(),
        image: image.into(),
        runtime_class: None,
        command: vec![],
        env: BTreeMap::from([
            ("OPENSHELL_SANDBOX_ID".into(), id.into()),
            (
                "OPENSHELL_ENDPOINT".into(),
                format!("http://127.0.0.1:{port}"),
            ),
            ("OPENSHELL_SANDBOX_TOKEN".into(), token.into()),
        ]),
        labels: BTreeMap::from([
            ("openshell.sandbox-id".into(), id.into()),
            ("openshell.run-id".into(), "driver-vm-tests".into()),
        ]),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), uuid_like())
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("{nanos:08x}")
}

/// Events of `id` until one satisfies `done`; answers it and the output lines seen.
async fn until(
    rx: &mut EventReceiver,
    id: &str,
    what: &str,
    done: impl Fn(&DriverEvent) -> bool,
) -> anyhow::Result<(DriverEvent, Vec<String>)> {
    let end = Instant::now() + common::DEADLINE;
    let mut lines = Vec::new();
    loop {
        let left = end.saturating_duration_since(Instant::now());
        let Ok(Some(event)) = tokio::time::timeout(left, rx.recv()).await else {
            bail!(
                "no {what} for {id} within {:?}; output: {lines:?}",
                common::DEADLINE
            );
        };
        if event.sandbox_id() != id {
            continue;
        }
        if let DriverEvent::Output { line, .. } = &event {
            lines.push(line.clone());
        }
        if done(&event) {
            return Ok((event, lines));
        }
    }
}

fn ended(event: &DriverEvent) -> bool {
    matches!(
        event,
        DriverEvent::Exited { .. }
            | DriverEvent::ExitedWithoutCode { .. }
            | DriverEvent::Failed { .. }
    )
}

/// A stand-in gateway: accepts connections on 127.0.0.1 and records the first line of each.
async fn listener() -> anyhow::Result<(u16, Arc<Mutex<Vec<String>>>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let mut line = String::new();
                let _ = BufReader::new(socket).read_line(&mut line).await;
                record.lock().unwrap().push(line.trim_end().to_string());
            });
        }
    });
    Ok((port, seen))
}

#[tokio::test]
async fn the_guest_reaches_the_gateway_and_no_other_address() -> anyhow::Result<()> {
    if !common::lane()? {
        return Ok(());
    }
    // 10.0.2.2 is QEMU's alias of the host and 10.0.2.3 its DNS relay: both reachable without
    // `restrict=on`. Only the forwarded alias 10.0.2.100 may answer.
    let image = common::script_image(
        "vm-test-network",
        r#"P=${OPENSHELL_ENDPOINT##*:}
           echo hello | busybox nc 10.0.2.100 "$P" || exit 30
           busybox nc -w 3 10.0.2.2 "$P" </dev/null && exit 31
           busybox nc -w 3 10.0.2.3 53 </dev/null && exit 32
           exit 0"#,
    )
    .await?;
    let state = tempfile::tempdir()?;
    let (driver, mut rx) = driver(state.path()).await?;
    let (port, seen) = listener().await?;
    let id = unique("net");
    driver.create(request(&id, &image, port, "t")).await?;
    let (end, lines) = until(&mut rx, &id, "end", ended).await?;
    assert!(
        matches!(end, DriverEvent::Exited { exit_code: 0, .. }),
        "{end:?} {lines:?}"
    );
    assert_eq!(
        *seen.lock().unwrap(),
        ["hello"],
        "one connection, the forwarded one"
    );
    driver.delete(&id).await?;
    Ok(())
}

#[tokio::test]
async fn the_credential_never_reaches_the_kernel_command_line_and_its_files_are_gone(
) -> anyhow::Result<()> {
    if !common::lane()? {
        return Ok(());
    }
    let image = common::script_image(
        "vm-test-credential",
        r#"[ -n "$OPENSHELL_SANDBOX_TOKEN" ] || exit 40
           grep -qF "$OPENSHELL_SANDBOX_TOKEN" /proc/cmdline && exit 41
           [ -e /.openshell/credential ] && exit 42
           [ -e /.openshell/launch.json ] && exit 43
           case "$OPENSHELL_ENDPOINT" in http://10.0.2.100:*) ;; *) exit 44 ;; esac
           exit 0"#,
    )
    .await?;
    let state = tempfile::tempdir()?;
    let (driver, mut rx) = driver(state.path()).await?;
    let (port, _) = listener().await?;
    let id = unique("cred");
    let token = format!("vm-test-token-{}", uuid_like());
    driver.create(request(&id, &image, port, &token)).await?;
    let folder = state.path().join("vms").join(&id);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(folder.join("initrd"))?.permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the initrd holding the credential is private"
    );
    let (end, lines) = until(&mut rx, &id, "end", ended).await?;
    assert!(
        matches!(end, DriverEvent::Exited { exit_code: 0, .. }),
        "{end:?} {lines:?}"
    );
    assert!(lines.iter().all(|l| !l.contains(&token)), "{lines:?}");
    assert!(driver.delete(&id).await?);
    assert!(
        !folder.exists(),
        "the state folder (and the credential) removed"
    );
    Ok(())
}

#[tokio::test]
async fn qemu_killed_from_outside_is_process_exited_without_a_code_and_leaves_nothing(
) -> anyhow::Result<()> {
    if !common::lane()? {
        return Ok(());
    }
    let image = common::script_image("vm-test-sleeper", "echo guest-up; exec sleep 100000").await?;
    let state = tempfile::tempdir()?;
    let (driver, mut rx) = driver(state.path()).await?;
    let (port, _) = listener().await?;
    let id = unique("kill");
    driver.create(request(&id, &image, port, "t")).await?;
    until(
        &mut rx,
        &id,
        "the guest's first line",
        |e| matches!(e, DriverEvent::Output { line, .. } if line == "guest-up"),
    )
    .await?;
    let pids = common::vm_processes(&id);
    assert_eq!(pids.len(), 1, "{pids:?}");
    openshell_driver_process::sys::kill(pids[0], libc::SIGKILL).context("kill QEMU")?;
    let (end, _) = until(&mut rx, &id, "end", ended).await?;
    let DriverEvent::ExitedWithoutCode { message, .. } = &end else {
        bail!("expected ExitedWithoutCode, got {end:?}");
    };
    assert!(message.contains("without reporting"), "{message}");
    assert!(!driver.exists(&id).await?);
    driver.delete(&id).await?;
    assert!(common::wait_no_vm(&id, Duration::from_secs(10))
        .await
        .is_empty());
    assert!(!state.path().join("vms").join(&id).exists());
    Ok(())
}
