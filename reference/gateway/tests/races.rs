//! Create racing delete, over real gRPC: a delete that arrives between a create storing its
//! record and its driver call must wait for that call, so the create never panics and its
//! backend never outlives the record (nothing leaks).

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::*;
use openshell_gateway::lifecycle::{PauseHook, PausePoint};
use openshell_proto::v1::{DeleteSandboxRequest, SandboxPhase};

fn delete_request(name: &str) -> DeleteSandboxRequest {
    DeleteSandboxRequest {
        name: name.into(),
        ..Default::default()
    }
}
use tokio::sync::Notify;

/// The driver calls of `id`, in order, as "create" / "delete".
fn calls_of(driver: &RecordingDriver, name: &str, id: &str) -> Vec<&'static str> {
    driver
        .log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|entry| {
            if *entry == format!("create {name}") {
                Some("create")
            } else if *entry == format!("delete {id}") {
                Some("delete")
            } else {
                None
            }
        })
        .collect()
}

/// Waits (with the deadline) until the driver log holds a create of `name` and a delete of `id`.
async fn both_driver_calls(driver: &RecordingDriver, name: &str, id: &str) -> Vec<&'static str> {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let notified = driver.changed.notified();
            let calls = calls_of(driver, name, id);
            if calls.contains(&"create") && calls.contains(&"delete") {
                return calls;
            }
            notified.await;
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the driver never saw both calls of {name}: {:?}",
            driver.log.lock().unwrap()
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delete_between_a_creates_store_and_its_driver_call_waits_for_that_call() {
    let gw = Gateway::start(":memory:", 15).await;
    // Hold the first create right after its record is stored and published.
    let (paused, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let hook: PauseHook = {
        let (paused, release) = (paused.clone(), release.clone());
        Arc::new(move |point| {
            let (paused, release) = (paused.clone(), release.clone());
            Box::pin(async move {
                if point == PausePoint::CreateStored {
                    paused.notify_one();
                    release.notified().await;
                }
            })
        })
    };
    gw.core.pause_at(hook);

    let mut client = gw.client().await;
    let create = tokio::spawn({
        let mut client = client.clone();
        async move { client.create_sandbox(create_request("racer")).await }
    });
    paused.notified().await;
    let id = gw.core.get("racer").unwrap().metadata.unwrap().id;

    // The delete starts while the create is held; wait until it marked the record Deleting.
    let mut w = watch(&gw, &id).await;
    let delete = tokio::spawn(async move { client.delete_sandbox(delete_request("racer")).await });
    w.until("Deleting", |sb| phase(sb) == SandboxPhase::Deleting)
        .await;
    release.notify_one();

    let created = create.await.unwrap();
    assert!(
        created.is_ok(),
        "the create must answer, not panic: {created:?}"
    );
    let deleted = delete.await.unwrap().expect("the delete succeeds");
    assert!(deleted.into_inner().deleted);
    let calls = both_driver_calls(&gw.driver, "racer", &id).await;
    assert_eq!(
        calls,
        ["create", "delete"],
        "the backend the create started must be removed after it, not before"
    );
    assert!(gw.core.get("racer").is_err(), "the record is gone");
}

/// Pairs of a create and a delete of the same name sent at once.
const PAIRS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_create_delete_pairs_leave_no_backend_and_no_record() {
    let gw = Arc::new(Gateway::start(":memory:", 15).await);
    let mut tasks = Vec::new();
    for n in 0..PAIRS {
        let gw = gw.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("pair-{n}");
            let (mut a, mut b) = (gw.client().await, gw.client().await);
            let request = delete_request(&name);
            let (created, deleted) = tokio::join!(
                a.create_sandbox(create_request(&name)),
                b.delete_sandbox(request)
            );
            let created = created.unwrap_or_else(|s| panic!("create {name}: {s:?}"));
            match deleted {
                Ok(_) => {}
                // The delete arrived before the record: delete again, now that it exists.
                Err(s) if s.code() == tonic::Code::NotFound => {
                    b.delete_sandbox(delete_request(&name))
                        .await
                        .unwrap_or_else(|s| panic!("second delete {name}: {s:?}"));
                }
                Err(s) => panic!("delete {name}: {s:?}"),
            }
            (
                name,
                created.into_inner().sandbox.unwrap().metadata.unwrap().id,
            )
        }));
    }
    let mut ids = HashMap::new();
    for task in tasks {
        let (name, id) = task.await.expect("no request panicked");
        ids.insert(name, id);
    }
    for (name, id) in &ids {
        let calls = both_driver_calls(&gw.driver, name, id).await;
        assert_eq!(
            calls.last(),
            Some(&"delete"),
            "{name}: a driver create after the last delete leaks its backend: {calls:?}"
        );
    }
    assert!(
        gw.core.list("", 0, 0).unwrap().is_empty(),
        "no record survives its delete"
    );
}
