//! A store that cannot be written (its disk is full, for real: a small tmpfs filled to the last
//! page): every change answers `Unavailable`, and nothing is half-applied: no record, no watch
//! event, no session and no backend cleanup that the store does not hold. Once space is back,
//! the same requests succeed. Needs root (mounts a tmpfs).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use common::*;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use openshell_proto::v1::{
    GetSandboxRequest, ReportSupervisorErrorRequest, SandboxPhase, SupervisorStartupStage,
};

/// A 2 MiB tmpfs on a temporary directory, detached when dropped.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount() -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("size=2m"),
        )
        .expect("mount a tmpfs (these tests need root)");
        SmallDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills every free byte; returns the filler to remove later.
    fn fill(&self) -> PathBuf {
        let filler = self.path().join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        let _ = file.sync_all();
        filler
    }
}

fn libc_enospc() -> i32 {
    nix::errno::Errno::ENOSPC as i32
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = umount2(self.dir.path(), MntFlags::MNT_DETACH);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_every_change_as_unavailable_and_publishes_nothing() {
    let disk = SmallDisk::mount();
    let db = disk.path().join("gateway.db");
    let gw = Gateway::start(db.to_str().unwrap(), 15).await;
    let (id, token) = gw.create("kept").await;
    let mut w = watch(&gw, &id).await;
    let first = w.next().await.unwrap();
    let version =
        |sb: &openshell_proto::v1::Sandbox| sb.metadata.as_ref().unwrap().resource_version;

    let filler = disk.fill();
    let mut client = gw.client().await;

    // A create: refused, nothing stored, nothing for the driver.
    let refused = client
        .create_sandbox(create_request("lost"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().contains("nothing was changed"),
        "{refused:?}"
    );
    let get = client
        .get_sandbox(GetSandboxRequest {
            name: "lost".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(get.code(), tonic::Code::NotFound);
    assert!(
        !gw.driver
            .created
            .lock()
            .unwrap()
            .iter()
            .any(|r| r.name == "lost"),
        "the driver was asked to start a sandbox the store does not hold"
    );

    // A fatal report: refused, the record stays as stored, no cleanup starts.
    let report = ReportSupervisorErrorRequest {
        sandbox_id: id.clone(),
        stage: SupervisorStartupStage::Policy as i32,
        message: "bad policy".into(),
        ..Default::default()
    };
    let refused = client
        .report_supervisor_error(with_token(report.clone(), &token))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert_eq!(
        phase(&gw.core.get(&id).unwrap()),
        SandboxPhase::Provisioning
    );
    assert!(gw.driver.deleted.lock().unwrap().is_empty(), "no cleanup");

    // A session: refused, so no session is registered for it.
    let session = open_session(&gw, &id, &token, "i1").await;
    assert_eq!(
        session.err().map(|s| s.code()),
        Some(tonic::Code::Unavailable)
    );

    // Space again: the same requests succeed, and the watch shows only what was stored.
    std::fs::remove_file(filler).unwrap();
    let _session = open_session(&gw, &id, &token, "i1").await.unwrap();
    let next = w.next().await.unwrap();
    assert_eq!(
        (phase(&next), version(&next)),
        (SandboxPhase::Ready, version(&first) + 1),
        "the first event after the refused changes is the session: {:?}",
        w.summary()
    );
    assert_eq!(gw.core.history(&id).unwrap().len() as u64, version(&next));
    client
        .report_supervisor_error(with_token(report, &token))
        .await
        .unwrap();
    client
        .create_sandbox(create_request("lost"))
        .await
        .expect("a create succeeds once the disk has space");
    drop(client);
    gw.stop().await;
}
