//! Nothing outlives the gateway: when the process that created a sandbox dies (even by SIGKILL),
//! every process of the sandbox dies too (PR_SET_PDEATHSIG on the intermediate and on PID 1).
//!
//! The "gateway" is this test binary re-run as a child (`gateway_helper`), so the test process
//! itself never loses a child it depends on.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use openshell_driver::ComputeDriver;

const HELPER_ENV: &str = "OPENSHELL_DRIVER_PROCESS_TEST_GATEWAY_STATE";

/// Acts as a gateway when run by `sandboxes_die_with_the_gateway`; passes trivially otherwise.
#[test]
fn gateway_helper() -> anyhow::Result<()> {
    let Some(state) = std::env::var_os(HELPER_ENV) else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut h = common::harness()?;
        // The harness's own temporary state dir is not used; the parent names one to scan.
        let config = openshell_driver_process::ProcessConfig {
            state_dir: state.into(),
            catalog: h.catalog.clone(),
            inputs: h.inputs.clone(),
        };
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        h.driver = openshell_driver_process::ProcessDriver::new(config, tx)?;
        h.events = events;
        let script = "sleep 2147483647 & echo started; wait";
        h.driver
            .create(h.request("orphan", "good", &["/bin/sh", "-c", script])?)
            .await?;
        h.output_until("orphan", |l| l == "started").await?;
        println!("GATEWAY-READY");
        std::future::pending::<anyhow::Result<()>>().await
    })
}

/// A pidfd that becomes readable when the process ends (it need not be our child).
fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Waits until the process behind `fd` has ended, at most `millis`.
fn wait_ended(fd: &OwnedFd, millis: i32) -> std::io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, millis) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(n == 1)
}

#[test]
fn sandboxes_die_with_the_gateway_even_when_it_is_sigkilled() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let mut gateway = Command::new(std::env::current_exe()?)
        .args([
            "--exact",
            "gateway_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, state.path())
        .stdout(Stdio::piped())
        .spawn()?;
    // The helper's stdout ends (EOF) if it fails before announcing itself. libtest prints the
    // test's name without a line break first, so the marker ends a line rather than being one.
    let stdout = gateway.stdout.take().context("helper stdout")?;
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.ends_with("GATEWAY-READY"));
    if !ready {
        let _ = gateway.kill();
        bail!(
            "the helper gateway did not start its sandbox (status {:?})",
            gateway.wait()?
        );
    }
    let inside = openshell_driver_process::residue(state.path())?.processes;
    assert!(
        inside.len() >= 2,
        "supervisor and sleep are running: {inside:?}"
    );
    let fds = inside
        .iter()
        .map(|p| pidfd(p.pid))
        .collect::<std::io::Result<Vec<_>>>()?;

    let killed = Instant::now();
    gateway.kill()?; // SIGKILL: no destructor, no cleanup code of the gateway runs
    gateway.wait()?;
    for (fd, process) in fds.iter().zip(&inside) {
        assert!(
            wait_ended(fd, 10_000)?,
            "sandbox process {process:?} outlived its gateway by 10 s"
        );
    }
    eprintln!(
        "all {} sandbox processes ended {:?} after the gateway's SIGKILL",
        inside.len(),
        killed.elapsed()
    );
    let left = openshell_driver_process::residue(state.path())?.processes;
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}
