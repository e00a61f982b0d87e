//! The sandboxes this driver looks after, and the order their events leave in.
//!
//! Each tracked sandbox has a small task that turns what the engine reported ([`EngineEvent`],
//! possibly repeated after a reconnect) into [`DriverEvent`]s, once each and in order: `Running`,
//! then `Exited` only after the container's output has been sent (bounded by [`LOGS_GRACE`]),
//! `Gone` when the container vanished without the gateway asking. Nothing is reported for a
//! sandbox that is being deleted. Only containers this driver created (or was asked about, see
//! `exists`) are tracked, so drivers sharing one engine never report each other's sandboxes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openshell_driver::{DriverError, DriverEvent, EventSender};
use tokio::sync::{mpsc, watch};

use crate::logs::{Sink, Tail};

/// How long `Exited` waits for the container's last output lines.
pub const LOGS_GRACE: Duration = Duration::from_secs(2);

/// What the engine said about a container (from its event stream or an inspect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    /// The container started.
    Started,
    /// The container's top process ended.
    Died { exit_code: i32 },
    /// The container was removed.
    Destroyed,
    /// The engine's event stream is lost and could not be re-established in time.
    Lost(String),
}

#[derive(Debug)]
struct Tracked {
    events: mpsc::UnboundedSender<EngineEvent>,
    /// The container exists (created by this driver, or found by `exists`).
    created: bool,
    deleting: Arc<AtomicBool>,
    tail: Arc<Mutex<Tail>>,
    logs_done: watch::Receiver<bool>,
}

/// What `track` hands the caller: where output goes and how to say it has all been sent.
#[derive(Debug)]
pub struct Tracking {
    /// The output sink of the sandbox.
    pub sink: Sink,
    /// Send `true` when every output line was sent; dropping it counts as done too.
    pub logs_done: watch::Sender<bool>,
}

/// The tracked sandboxes, by id.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, Tracked>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts tracking a sandbox (replacing an earlier tracking of the same id).
    pub fn track(&self, sandbox_id: &str, events: &EventSender) -> Tracking {
        let (engine_tx, engine_rx) = mpsc::unbounded_channel();
        let (done_tx, done_rx) = watch::channel(false);
        let deleting = Arc::new(AtomicBool::new(false));
        let tail = Arc::new(Mutex::new(Tail::default()));
        tokio::spawn(sequence(
            sandbox_id.to_string(),
            engine_rx,
            deleting.clone(),
            done_rx.clone(),
            events.clone(),
        ));
        let tracked = Tracked {
            events: engine_tx,
            created: false,
            deleting,
            tail: tail.clone(),
            logs_done: done_rx,
        };
        self.lock().insert(sandbox_id.to_string(), tracked);
        Tracking {
            sink: Sink {
                sandbox_id: sandbox_id.to_string(),
                tail,
                events: events.clone(),
            },
            logs_done: done_tx,
        }
    }

    /// Whether the sandbox is tracked.
    pub fn contains(&self, sandbox_id: &str) -> bool {
        self.lock().contains_key(sandbox_id)
    }

    /// Hands an engine event to the sandbox's task; `false` when the sandbox is not tracked.
    pub fn dispatch(&self, sandbox_id: &str, event: EngineEvent) -> bool {
        self.lock()
            .get(sandbox_id)
            .is_some_and(|t| t.events.send(event).is_ok())
    }

    /// Records that the sandbox's container exists (from then on it is reconciled).
    pub fn mark_created(&self, sandbox_id: &str) {
        if let Some(tracked) = self.lock().get_mut(sandbox_id) {
            tracked.created = true;
        }
    }

    /// Every tracked sandbox whose container was created (one still being created is not
    /// there to inspect yet, and its `create` reports its own errors).
    pub fn created_ids(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, t)| t.created)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Marks the sandbox as being deleted (its task reports nothing more) and returns the
    /// receiver that turns `true` once its output was sent, if it is tracked.
    pub fn begin_delete(&self, sandbox_id: &str) -> Option<watch::Receiver<bool>> {
        let map = self.lock();
        let tracked = map.get(sandbox_id)?;
        tracked.deleting.store(true, Ordering::SeqCst);
        Some(tracked.logs_done.clone())
    }

    /// Stops tracking the sandbox (its task ends).
    pub fn forget(&self, sandbox_id: &str) {
        self.lock().remove(sandbox_id);
    }

    /// The kept tail of the sandbox's output (empty when not tracked).
    pub fn tail(&self, sandbox_id: &str) -> Vec<String> {
        self.lock()
            .get(sandbox_id)
            .map(|t| t.tail.lock().unwrap_or_else(|p| p.into_inner()).lines())
            .unwrap_or_default()
    }
}

/// Waits until the output is sent (or the sender is gone), at most [`LOGS_GRACE`].
pub async fn wait_for_output(mut logs_done: watch::Receiver<bool>) {
    let _ = tokio::time::timeout(LOGS_GRACE, logs_done.wait_for(|done| *done)).await;
}

async fn sequence(
    sandbox_id: String,
    mut engine_events: mpsc::UnboundedReceiver<EngineEvent>,
    deleting: Arc<AtomicBool>,
    logs_done: watch::Receiver<bool>,
    events: EventSender,
) {
    let (mut running, mut ended) = (false, false);
    let id = || sandbox_id.clone();
    while let Some(event) = engine_events.recv().await {
        if deleting.load(Ordering::SeqCst) {
            if event == EngineEvent::Destroyed {
                break;
            }
            continue;
        }
        let out = match event {
            EngineEvent::Started if !running && !ended => {
                running = true;
                DriverEvent::Running { sandbox_id: id() }
            }
            EngineEvent::Died { exit_code } if !ended => {
                ended = true;
                wait_for_output(logs_done.clone()).await;
                DriverEvent::Exited {
                    sandbox_id: id(),
                    exit_code,
                }
            }
            EngineEvent::Destroyed => {
                let _ = events.send(DriverEvent::Gone { sandbox_id: id() });
                break;
            }
            EngineEvent::Lost(detail) if !ended => {
                ended = true;
                DriverEvent::Failed {
                    sandbox_id: id(),
                    error: DriverError::Unavailable(detail),
                }
            }
            _ => continue,
        };
        if deleting.load(Ordering::SeqCst) {
            continue;
        }
        let _ = events.send(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn repeated_engine_events_are_reported_once_and_in_order() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let registry = Registry::default();
        let tracking = registry.track("a", &tx);
        drop(tracking.logs_done);
        for event in [
            EngineEvent::Started,
            EngineEvent::Started,
            EngineEvent::Died { exit_code: 5 },
        ] {
            assert!(registry.dispatch("a", event));
        }
        assert!(registry.dispatch("a", EngineEvent::Died { exit_code: 5 }));
        assert!(registry.dispatch("a", EngineEvent::Destroyed));
        assert!(
            !registry.dispatch("b", EngineEvent::Started),
            "untracked sandboxes are ignored"
        );
        let mut got = Vec::new();
        while let Some(event) = rx.recv().await {
            got.push(event.clone());
            if matches!(event, DriverEvent::Gone { .. }) {
                break;
            }
        }
        assert_eq!(
            got,
            vec![
                DriverEvent::Running {
                    sandbox_id: "a".into()
                },
                DriverEvent::Exited {
                    sandbox_id: "a".into(),
                    exit_code: 5
                },
                DriverEvent::Gone {
                    sandbox_id: "a".into()
                },
            ]
        );
    }

    #[tokio::test]
    async fn only_created_containers_are_reconciled() {
        let (tx, _rx) = mpsc::unbounded_channel();
        let registry = Registry::default();
        let _creating = registry.track("creating", &tx);
        let _created = registry.track("created", &tx);
        registry.mark_created("created");
        assert_eq!(registry.created_ids(), vec!["created".to_string()]);
    }

    #[tokio::test]
    async fn a_sandbox_being_deleted_reports_nothing() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let registry = Registry::default();
        let _tracking = registry.track("a", &tx);
        assert!(registry.begin_delete("a").is_some());
        registry.dispatch("a", EngineEvent::Died { exit_code: 137 });
        registry.dispatch("a", EngineEvent::Destroyed);
        registry.forget("a");
        drop(tx);
        drop(_tracking);
        assert_eq!(rx.recv().await, None);
    }
}
