//! The process driver end to end, with the stand-in supervisor and busybox (needs root).

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use common::harness;
use openshell_driver::{ComputeDriver, DriverError, DriverEvent};

#[tokio::test]
async fn the_supervisor_is_pid_1_and_sees_the_fixture_tree_as_root() -> anyhow::Result<()> {
    let mut h = harness()?;
    // A file that exists on the host at a path the root also has (/tmp): invisible inside.
    let host_only = tempfile::Builder::new()
        .prefix("openshell-host-only-")
        .tempfile_in("/tmp")?;
    let host_path = host_only.path().display().to_string();
    let script = format!(
        "if test -e {host_path}; then echo host-file-visible; else echo host-file-absent; fi; \
         echo tmp=$(ls -A /tmp | wc -l); ls /; \
         test -f /etc/openshell/policy.yaml && echo policy-present; \
         for p in /proc/[0-9]*; do echo proc-entry=${{p#/proc/}}; done; echo cwd=$(pwd); \
         test -c /dev/null && echo devnull-ok"
    );
    h.driver
        .create(h.request("root-view", "good", &["/bin/sh", "-c", &script])?)
        .await?;
    let (lines, code) = h.run_to_exit("root-view").await?;
    assert_eq!(code, 0, "{lines:#?}");
    let has = |l: &str| lines.iter().any(|x| x == l);
    assert!(
        has("pid=1"),
        "the supervisor is PID 1 of its namespace: {lines:#?}"
    );
    assert!(
        has("ppid=0"),
        "its parent is outside the namespace: {lines:#?}"
    );
    assert!(
        has("host-file-absent") && !has("host-file-visible"),
        "{lines:#?}"
    );
    assert!(has("tmp=0"), "the root's /tmp is empty: {lines:#?}");
    for entry in ["bin", "etc", "proc", "sandbox", "tmp", "usr"] {
        assert!(has(entry), "/ lists {entry}: {lines:#?}");
    }
    assert!(has("policy-present"), "{lines:#?}");
    let procs: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("proc-entry="))
        .collect();
    assert_eq!(
        procs,
        ["proc-entry=1"],
        "/proc shows only the namespace's own processes"
    );
    assert!(has("cwd=/"), "{lines:#?}");
    assert!(has("devnull-ok"), "{lines:#?}");
    assert!(
        has("fds=0,1,2,3"),
        "stdio and the fd listing itself, nothing inherited: {lines:#?}"
    );
    h.driver.delete("root-view").await?;
    Ok(())
}

#[tokio::test]
async fn the_environment_is_exactly_the_image_env_and_the_request_env() -> anyhow::Result<()> {
    let mut h = harness()?;
    let mut request = h.request("env-exact", "boot-hang", &["/bin/true"])?;
    request.env = BTreeMap::from([
        ("OPENSHELL_SANDBOX_ID".to_string(), "env-exact".to_string()),
        (
            "OPENSHELL_ENDPOINT".to_string(),
            "http://127.0.0.1:1".to_string(),
        ),
        ("OPENSHELL_BOOT_HOOK_TIMEOUT".to_string(), "9".to_string()),
    ]);
    h.driver.create(request).await?;
    let (lines, code) = h.run_to_exit("env-exact").await?;
    assert_eq!(code, 0, "{lines:#?}");
    let env: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("env "))
        .collect();
    assert_eq!(
        env,
        [
            "OPENSHELL_BOOT_HOOK_TIMEOUT=9", // the request overrides the image's 2
            "OPENSHELL_ENDPOINT=http://127.0.0.1:1",
            "OPENSHELL_SANDBOX_ID=env-exact",
            "PATH=/usr/local/bin:/bin",
        ],
        "nothing of the test process's environment (HOME, CARGO_*) leaks in"
    );
    h.driver.delete("env-exact").await?;
    Ok(())
}

#[tokio::test]
async fn without_a_request_command_the_image_command_runs() -> anyhow::Result<()> {
    let mut h = harness()?;
    // main-exits: `sh -c 'sleep 2; exit 7'`.
    h.driver
        .create(h.request("image-command", "main-exits", &[])?)
        .await?;
    let (lines, code) = h.run_to_exit("image-command").await?;
    assert_eq!(code, 7, "{lines:#?}");
    h.driver.delete("image-command").await?;
    Ok(())
}

#[tokio::test]
async fn stdout_and_stderr_lines_arrive_before_the_exit_code() -> anyhow::Result<()> {
    let mut h = harness()?;
    let script = "echo to-stdout; echo to-stderr >&2; printf 'no-newline'; exit 42";
    h.driver
        .create(h.request("output", "good", &["/bin/sh", "-c", script])?)
        .await?;
    let (lines, code) = h.run_to_exit("output").await?;
    assert_eq!(code, 42);
    for line in ["to-stdout", "to-stderr", "no-newline"] {
        assert!(lines.iter().any(|l| l == line), "{line}: {lines:#?}");
    }
    assert!(h.root("output").exists(), "the root stays until delete");
    assert!(
        !h.driver.exists("output").await?,
        "an exited sandbox is no live backend"
    );
    assert!(h.driver.delete("output").await?);
    Ok(())
}

#[tokio::test]
async fn delete_kills_the_whole_sandbox_and_removes_root_and_labels() -> anyhow::Result<()> {
    let mut h = harness()?;
    let script = "sleep 2147483647 & echo started; wait";
    h.driver
        .create(h.request("long", "good", &["/bin/sh", "-c", script])?)
        .await?;
    h.output_until("long", |l| l == "started").await?;
    let labels: BTreeMap<String, String> =
        serde_json::from_slice(&std::fs::read(h.labels("long"))?)?;
    assert_eq!(labels["openshell.sandbox-id"], "long");
    let inside = openshell_driver_process::residue::processes_under(&h.root("long"))?;
    assert!(
        inside.len() >= 2,
        "supervisor and sleep run chrooted in the root: {inside:?}"
    );
    let pid1 = inside.iter().map(|p| p.pid).min().unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid1}/status"))?;
    let ppid: i32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap_or_default()
        .trim()
        .parse()?;
    let name = std::fs::read_to_string(format!("/proc/{ppid}/comm"))?;
    assert_eq!(
        name.trim(),
        "openshell-init",
        "the intermediate is recognisable in ps"
    );
    assert!(h.driver.exists("long").await?);

    let started = Instant::now();
    assert!(
        h.driver.delete("long").await?,
        "delete reports that it removed something"
    );
    let took = started.elapsed();
    // delete returns after the output was sent and the end was seen.
    let exited = loop {
        match h.events.try_recv()? {
            DriverEvent::Exited { exit_code, .. } => break exit_code,
            DriverEvent::Output { .. } => {}
            other => anyhow::bail!("unexpected {other:?}"),
        }
    };
    assert_eq!(exited, 128 + libc::SIGKILL, "PID 1 died of SIGKILL");
    assert!(!h.root("long").exists() && !h.labels("long").exists());
    let residue = openshell_driver_process::residue(h.state.path())?;
    assert!(residue.is_empty(), "{residue:?}");
    assert!(!h.driver.exists("long").await?);
    assert!(
        !h.driver.delete("long").await?,
        "a second delete finds nothing"
    );
    eprintln!("delete of a running sandbox took {took:?}");
    Ok(())
}

#[tokio::test]
async fn a_wrong_hash_is_image_not_found_naming_both_hashes() -> anyhow::Result<()> {
    let h = harness()?;
    let right = h.image("good")?;
    let actual = right.rsplit(':').next().unwrap_or_default().to_string();
    let mut request = h.request("wrong-hash", "good", &[])?;
    request.image = "openshell-fixture/good:000000000000".to_string();
    match h.driver.create(request).await {
        Err(DriverError::ImageNotFound { image, detail }) => {
            assert_eq!(image, "openshell-fixture/good:000000000000");
            assert!(
                detail.contains("000000000000") && detail.contains(&actual),
                "{detail}"
            );
        }
        other => anyhow::bail!("expected ImageNotFound, got {other:?}"),
    }
    let mut request = h.request("unknown", "good", &[])?;
    request.image = "openshell-fixture/no-such-fixture:000000000000".to_string();
    let error = h.driver.create(request).await.expect_err("unknown fixture");
    assert_eq!(error.reason(), "ImageNotFound", "{error}");
    assert!(!h.driver.exists("wrong-hash").await? && !h.driver.exists("unknown").await?);
    Ok(())
}

#[tokio::test]
async fn a_stale_root_is_replaced_by_a_fresh_one() -> anyhow::Result<()> {
    let mut h = harness()?;
    std::fs::create_dir_all(h.root("stale").join("tmp"))?;
    std::fs::write(h.root("stale").join("tmp/left-over"), "old")?;
    assert!(
        !h.driver.exists("stale").await?,
        "a root left on disk (e.g. after a gateway restart) is residue, not a live backend"
    );
    h.driver
        .create(h.request("stale", "good", &["/bin/sh", "-c", "ls /tmp | wc -l"])?)
        .await?;
    let (lines, code) = h.run_to_exit("stale").await?;
    assert_eq!(code, 0);
    assert_eq!(lines.last().map(String::as_str), Some("0"), "{lines:#?}");
    h.driver.delete("stale").await?;
    Ok(())
}

#[tokio::test]
async fn a_supervisor_that_cannot_exec_is_a_start_failure_that_leaves_nothing() -> anyhow::Result<()>
{
    // A dynamically linked supervisor: its ELF interpreter does not exist in the root.
    let mut h = common::harness_with(std::path::Path::new("/bin/true"))?;
    let error = h
        .driver
        .create(h.request("broken", "good", &[])?)
        .await
        .expect_err("exec fails");
    assert_eq!(error.reason(), "BackendStartFailed", "{error}");
    assert!(
        error.to_string().contains("static"),
        "the message hints at the cause: {error}"
    );
    assert!(!h.root("broken").exists() && !h.labels("broken").exists());
    assert!(
        h.events.try_recv().is_err(),
        "no Running for a sandbox that never started"
    );
    Ok(())
}

#[tokio::test]
async fn several_sandboxes_run_side_by_side_and_leave_nothing_behind() -> anyhow::Result<()> {
    let mut h = harness()?;
    let ids = ["side-a", "side-b", "side-c", "side-d"];
    let script = "echo up; exec sleep 2147483647";
    let requests = ids.map(|id| h.request(id, "good", &["/bin/sh", "-c", script]));
    let [a, b, c, d] = requests;
    let (ra, rb, rc, rd) = tokio::join!(
        h.driver.create(a?),
        h.driver.create(b?),
        h.driver.create(c?),
        h.driver.create(d?)
    );
    for result in [ra, rb, rc, rd] {
        result?;
    }
    let mut up = std::collections::BTreeSet::new();
    while up.len() < ids.len() {
        match h.next_event().await? {
            DriverEvent::Output { sandbox_id, line } if line == "up" => {
                up.insert(sandbox_id);
            }
            DriverEvent::Running { .. } | DriverEvent::Output { .. } => {}
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    let running = openshell_driver_process::residue(h.state.path())?;
    assert_eq!(
        running.processes.len(),
        ids.len(),
        "one process each (sh execs sleep): {running:?}"
    );
    let (da, db, dc, dd) = tokio::join!(
        h.driver.delete(ids[0]),
        h.driver.delete(ids[1]),
        h.driver.delete(ids[2]),
        h.driver.delete(ids[3])
    );
    for removed in [da, db, dc, dd] {
        assert!(removed?);
    }
    let residue = openshell_driver_process::residue(h.state.path())?;
    assert!(residue.is_empty(), "{residue:?}");
    Ok(())
}
