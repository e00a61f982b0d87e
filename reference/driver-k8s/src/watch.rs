//! Watching the driver's Pods (label `openshell.sandbox-id`, in its namespace) with a
//! kube-runtime watcher and handing each status to the tracked sandbox it is about.
//!
//! The watcher lists, then watches from the listed resource version, and re-lists after a broken
//! watch (with kube-runtime's default backoff), so no status between `create` and the first
//! watch is lost. A re-list that no longer contains a created Pod means the Pod went while the
//! watch was down: it is reported as deleted. When the API has answered nothing but errors for
//! [`LOST_AFTER`], every tracked sandbox gets [`PodEvent::Lost`].

use std::collections::HashSet;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use openshell_proto::labels;

use crate::status::observe;
use crate::tracker::{PodEvent, Registry};

/// How long the API may answer only errors before tracked sandboxes are told.
pub const LOST_AFTER: Duration = Duration::from_secs(15);

/// The sandbox id of a Pod of this driver.
pub fn sandbox_of(pod: &Pod) -> Option<String> {
    pod.metadata
        .labels
        .as_ref()?
        .get(labels::SANDBOX_ID)
        .cloned()
}

/// The watcher's loop; runs until the driver is dropped (its task is aborted).
pub async fn run(pods: Api<Pod>, registry: Registry) {
    let config = watcher::Config::default().labels(labels::SANDBOX_ID);
    let mut stream = std::pin::pin!(watcher::watcher(pods, config).default_backoff());
    // Created sandboxes when the current (re-)list started, and those it has listed so far.
    let mut listing: Option<(Vec<String>, HashSet<String>)> = None;
    let mut failing_since: Option<Instant> = None;
    let mut lost_reported = false;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => {
                failing_since = None;
                lost_reported = false;
                event
            }
            Err(e) => {
                tracing::debug!(error = %e, "pod watch failed; retrying");
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= LOST_AFTER && !lost_reported {
                    lost_reported = true;
                    let detail = format!("lost the Kubernetes pod watch: {e}");
                    for id in registry.created_ids() {
                        registry.dispatch(&id, PodEvent::Lost(detail.clone()));
                    }
                }
                continue;
            }
        };
        match event {
            Event::Init => listing = Some((registry.created_ids(), HashSet::new())),
            Event::InitApply(pod) | Event::Apply(pod) => {
                let Some(id) = sandbox_of(&pod) else { continue };
                if let Some((_, seen)) = listing.as_mut() {
                    seen.insert(id.clone());
                }
                registry.dispatch(&id, PodEvent::Seen(observe(&pod)));
            }
            Event::Delete(pod) => {
                if let Some(id) = sandbox_of(&pod) {
                    registry.dispatch(&id, PodEvent::Deleted);
                }
            }
            Event::InitDone => {
                if let Some((before, seen)) = listing.take() {
                    for id in before.iter().filter(|id| !seen.contains(*id)) {
                        registry.dispatch(id, PodEvent::Deleted);
                    }
                }
            }
        }
    }
}
