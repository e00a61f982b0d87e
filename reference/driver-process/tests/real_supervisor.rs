//! The process driver with the workspace's real supervisor, when it has been built (the other
//! tests use a stand-in). Without a gateway to reach, the supervisor still has to start in the
//! root, say something, and be deleted without leaving anything behind.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use openshell_driver::{ComputeDriver, DriverEvent};

fn real_supervisor() -> Option<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target.join("x86_64-unknown-linux-gnu/debug/openshell-supervisor");
    path.is_file().then_some(path)
}

#[tokio::test]
async fn the_real_supervisor_starts_in_the_root_and_is_deleted_without_residue(
) -> anyhow::Result<()> {
    let Some(supervisor) = real_supervisor() else {
        eprintln!(
            "skipped: build openshell-supervisor first (cargo build -p openshell-supervisor)"
        );
        return Ok(());
    };
    let mut h = common::harness_with(&supervisor)?;
    let mut request = h.request("real", "good", &[])?;
    // Nothing listens on the discard port: the supervisor cannot reach a gateway.
    request.env = BTreeMap::from([
        ("OPENSHELL_SANDBOX_ID".to_string(), "real".to_string()),
        (
            "OPENSHELL_ENDPOINT".to_string(),
            "http://127.0.0.1:9".to_string(),
        ),
        (
            "OPENSHELL_SANDBOX_TOKEN".to_string(),
            "not-a-real-token".to_string(),
        ),
    ]);
    let started = std::time::Instant::now();
    h.driver.create(request).await?;
    eprintln!(
        "create (hash, assemble, launch) took {:?}",
        started.elapsed()
    );
    assert!(matches!(h.next_event().await?, DriverEvent::Running { .. }));
    // Wait for its first word (or its end), whichever comes first.
    let first = h.next_event().await?;
    eprintln!("the real supervisor's first event: {first:?}");
    assert!(
        matches!(
            first,
            DriverEvent::Output { .. } | DriverEvent::Exited { .. }
        ),
        "{first:?}"
    );
    assert!(h.driver.delete("real").await?);
    let mut rest = Vec::new();
    while let Ok(event) = h.events.try_recv() {
        rest.push(event);
    }
    eprintln!("then: {rest:#?}");
    assert!(
        matches!(first, DriverEvent::Exited { .. })
            || rest.iter().any(|e| matches!(e, DriverEvent::Exited { .. })),
        "delete returns after Exited was sent"
    );
    let residue = openshell_driver_process::residue(h.state.path())?;
    assert!(residue.is_empty(), "{residue:?}");
    Ok(())
}
