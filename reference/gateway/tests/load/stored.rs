//! Many stored sandboxes: what `get`, `list` and a restart cost when the store is large.
//!
//! `get` and `list` are timed one call at a time on an idle gateway (a user's view, not a
//! throughput figure). The restart is timed from opening the store until the first `get` is
//! answered, with a driver whose `exists` answers at once, so the figure is the gateway's own
//! recovery (one pass over every record) and not a backend's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openshell_proto::v1::{
    GetSandboxRequest, ListSandboxesRequest, ListSandboxesResponse, SandboxPhase,
};
use prost::Message;
use serde_json::{json, Value};

use crate::common::{phase, Gateway, RecordingDriver};
use crate::figures::{self, ms, Latencies};
use crate::setup::{connect, create_all};

/// tonic's default limit on a decoded message, which the `openshell` CLI keeps.
pub const DEFAULT_DECODE_LIMIT: usize = 4 * 1024 * 1024;

/// The size of a run.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub stored: usize,
    pub gets: usize,
    pub lists: usize,
}

/// What a run measured and found.
#[derive(Debug)]
pub struct Figures {
    pub size: Size,
    pub store_all: Duration,
    pub get: Latencies,
    pub list_all: Latencies,
    /// One page of 100 at the end of the store.
    pub list_last_page: Latencies,
    pub list_bytes: usize,
    pub restart_to_serving: Duration,
    /// Records found after the restart, and how many of them changed phase.
    pub after_restart: usize,
    pub phase_changed_by_restart: usize,
    pub rss_peak_kib: u64,
}

impl Figures {
    pub fn json(&self) -> Value {
        json!({
            "stored": self.size.stored,
            "store_all_ms": ms(self.store_all),
            "get": self.get.json(),
            "list_all": self.list_all.json(),
            "list_last_page_of_100": self.list_last_page.json(),
            "list_all_bytes": self.list_bytes,
            "list_all_fits_default_client_limit": self.list_bytes <= DEFAULT_DECODE_LIMIT,
            "restart_to_serving_ms": ms(self.restart_to_serving),
            "found_after_restart": self.after_restart,
            "phase_changed_by_restart": self.phase_changed_by_restart,
            "rss_peak_mib": self.rss_peak_kib / 1024,
        })
    }
}

async fn timed<T, F: std::future::Future<Output = T>>(samples: &mut Vec<Duration>, f: F) -> T {
    let started = Instant::now();
    let out = f.await;
    samples.push(started.elapsed());
    out
}

/// Runs the scenario with the file database `db` (which must not exist yet).
pub async fn run(db: &str, size: Size) -> Figures {
    figures::ensure_fd_limit(512);
    figures::reset_peak_rss();
    let gw = Gateway::start(db, 15).await;
    let names: Vec<String> = (0..size.stored).map(|i| format!("st-{i}")).collect();
    let started = Instant::now();
    create_all(&gw, &names).await;
    let store_all = started.elapsed();

    // The test client takes a list of any size: the figure is the gateway's cost; whether the
    // CLI's default limit would take it is reported beside it.
    let mut client = connect(&gw.endpoint)
        .await
        .max_decoding_message_size(usize::MAX);
    let mut gets = Vec::new();
    for k in 0..size.gets {
        // Spread over the whole store (7919 is prime, so the walk visits names evenly).
        let name = &names[(k * 7919) % names.len()];
        let got = timed(
            &mut gets,
            client.get_sandbox(GetSandboxRequest {
                name: name.clone(),
                ..Default::default()
            }),
        )
        .await
        .unwrap()
        .into_inner();
        assert_eq!(&got.sandbox.unwrap().metadata.unwrap().name, name);
    }
    let (mut lists, mut pages, mut list_bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..size.lists {
        let all: ListSandboxesResponse = timed(
            &mut lists,
            client.list_sandboxes(ListSandboxesRequest::default()),
        )
        .await
        .unwrap()
        .into_inner();
        assert_eq!(all.sandboxes.len(), size.stored);
        list_bytes = all.encoded_len();
        let last_page = ListSandboxesRequest {
            limit: 100,
            offset: size.stored.saturating_sub(100) as u32,
            ..Default::default()
        };
        let page = timed(&mut pages, client.list_sandboxes(last_page))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.sandboxes.len(), size.stored.min(100));
    }
    let before: Vec<_> = client
        .list_sandboxes(ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    drop(client);
    gw.stop().await;

    // The restart: a new core over the same file, with a driver that finds every backend.
    let driver = Arc::new(RecordingDriver::default());
    *driver.exists.lock().unwrap() = true;
    let restarted = Instant::now();
    let gw = Gateway::start_with(db, 15, driver).await;
    let mut client = connect(&gw.endpoint)
        .await
        .max_decoding_message_size(usize::MAX);
    client
        .get_sandbox(GetSandboxRequest {
            name: names[0].clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    let restart_to_serving = restarted.elapsed();
    let after = client
        .list_sandboxes(ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    let phase_before: HashMap<&str, SandboxPhase> = before
        .iter()
        .map(|sb| (sb.metadata.as_ref().unwrap().id.as_str(), phase(sb)))
        .collect();
    let phase_changed_by_restart = after
        .iter()
        .filter(|sb| {
            phase_before.get(sb.metadata.as_ref().unwrap().id.as_str()) != Some(&phase(sb))
        })
        .count();
    let after_restart = after.len();
    drop(client);
    gw.stop().await;
    Figures {
        size,
        store_all,
        get: Latencies::of(gets).expect("at least one get"),
        list_all: Latencies::of(lists).expect("at least one list"),
        list_last_page: Latencies::of(pages).expect("at least one list"),
        list_bytes,
        restart_to_serving,
        after_restart,
        phase_changed_by_restart,
        rss_peak_kib: figures::peak_rss_kib(),
    }
}
