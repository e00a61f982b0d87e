//! The sandboxes this driver looks after, and the order their events leave in.
//!
//! The watcher hands every status of a tracked sandbox's Pod to that sandbox's small task
//! ([`PodEvent`], repeated as often as Kubernetes re-sends it). The task turns them into
//! [`DriverEvent`]s, each at most once and in order: `Running`; then exactly one ending, either
//! `Failed` (a contract reason) or `Exited` (after the container's output was sent) or `Gone`
//! (the Pod vanished without the gateway asking). After an ending, later statuses (a late
//! `Pending` or `Running` after the gateway stored `SupervisorError`) produce nothing. While the
//! gateway deletes the sandbox nothing is reported at all. Only sandboxes this driver created (or
//! was asked about) are tracked, so gateways sharing a namespace never report each other's pods.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use openshell_driver::{DriverError, DriverEvent, EventSender};
use tokio::sync::{mpsc, watch};

use crate::logs::{self, Sink, Tail};
use crate::status::Observation;

/// How long `Exited` (and a delete) waits for the container's last output lines.
pub const LOGS_GRACE: Duration = Duration::from_secs(2);

/// What the watcher saw of a sandbox's Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodEvent {
    /// A status of the Pod.
    Seen(Observation),
    /// The Pod is gone from the API.
    Deleted,
    /// The API could not be watched for too long.
    Lost(String),
}

/// How far the sandbox's output has been read.
#[derive(Debug, Clone, Default)]
pub enum LogState {
    /// Not yet.
    #[default]
    Unread,
    /// A follower runs; `true` once its stream ended.
    Following(watch::Receiver<bool>),
    /// Read once, completely.
    Read,
}

#[derive(Debug)]
struct Tracked {
    events: mpsc::UnboundedSender<PodEvent>,
    /// The Pod was created (by this driver, or found by `exists`).
    created: bool,
    deleting: Arc<AtomicBool>,
    gone: watch::Receiver<bool>,
    logs: Arc<Mutex<LogState>>,
    sink: Sink,
}

/// The tracked sandboxes, by id.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Mutex<HashMap<String, Tracked>>>,
    pods: Api<Pod>,
    events: EventSender,
}

/// What `begin_delete` hands the caller.
#[derive(Debug)]
pub struct Deleting {
    /// Turns `true` when the watcher saw the Pod deleted.
    pub gone: watch::Receiver<bool>,
    /// How far the output was read.
    pub logs: Arc<Mutex<LogState>>,
    /// Where remaining output lines go.
    pub sink: Sink,
}

impl Registry {
    /// An empty registry for pods of `pods`, reporting on `events`.
    pub fn new(pods: Api<Pod>, events: EventSender) -> Registry {
        Registry {
            inner: Arc::default(),
            pods,
            events,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Tracked>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts tracking a sandbox (replacing an earlier tracking of the same id).
    pub fn track(&self, sandbox_id: &str) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (gone_tx, gone_rx) = watch::channel(false);
        let deleting = Arc::new(AtomicBool::new(false));
        let logs = Arc::new(Mutex::new(LogState::Unread));
        let sink = Sink {
            sandbox_id: sandbox_id.to_string(),
            tail: Arc::new(Mutex::new(Tail::default())),
            events: self.events.clone(),
        };
        tokio::spawn(sequence(Sequence {
            pods: self.pods.clone(),
            sink: sink.clone(),
            deleting: deleting.clone(),
            logs: logs.clone(),
            gone: gone_tx,
            input: rx,
        }));
        let tracked = Tracked {
            events: tx,
            created: false,
            deleting,
            gone: gone_rx,
            logs,
            sink,
        };
        self.lock().insert(sandbox_id.to_string(), tracked);
    }

    /// Whether the sandbox is tracked.
    pub fn contains(&self, sandbox_id: &str) -> bool {
        self.lock().contains_key(sandbox_id)
    }

    /// Hands a Pod event to the sandbox's task; `false` when the sandbox is not tracked.
    pub fn dispatch(&self, sandbox_id: &str, event: PodEvent) -> bool {
        self.lock()
            .get(sandbox_id)
            .is_some_and(|t| t.events.send(event).is_ok())
    }

    /// Records that the sandbox's Pod exists (from then on a re-list that misses it means gone).
    pub fn mark_created(&self, sandbox_id: &str) {
        if let Some(tracked) = self.lock().get_mut(sandbox_id) {
            tracked.created = true;
        }
    }

    /// Every tracked sandbox whose Pod was created.
    pub fn created_ids(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, t)| t.created)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Marks the sandbox as being deleted (its task reports nothing more); tracks it first if
    /// it was not, so the watcher's deletion reaches the caller.
    pub fn begin_delete(&self, sandbox_id: &str) -> Deleting {
        if !self.contains(sandbox_id) {
            self.track(sandbox_id);
            self.mark_created(sandbox_id);
        }
        let map = self.lock();
        let tracked = &map[sandbox_id];
        tracked.deleting.store(true, Ordering::SeqCst);
        Deleting {
            gone: tracked.gone.clone(),
            logs: tracked.logs.clone(),
            sink: tracked.sink.clone(),
        }
    }

    /// Stops tracking the sandbox (its task ends).
    pub fn forget(&self, sandbox_id: &str) {
        self.lock().remove(sandbox_id);
    }

    /// The kept tail of the sandbox's output (empty when not tracked).
    pub fn tail(&self, sandbox_id: &str) -> Vec<String> {
        self.lock()
            .get(sandbox_id)
            .map(|t| {
                t.sink
                    .tail
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .lines()
            })
            .unwrap_or_default()
    }
}

/// Sends whatever output of the sandbox has not been sent yet: waits (bounded) for a running
/// follower, or reads the output once.
pub async fn flush_output(pods: &Api<Pod>, logs: &Mutex<LogState>, sink: &Sink) {
    let state = logs.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match state {
        LogState::Following(mut done) => {
            let _ = tokio::time::timeout(LOGS_GRACE, done.wait_for(|d| *d)).await;
        }
        LogState::Unread => {
            *logs.lock().unwrap_or_else(|p| p.into_inner()) = LogState::Read;
            for line in logs::read_all(pods, &sink.sandbox_id).await {
                sink.line(line);
            }
        }
        LogState::Read => {}
    }
}

struct Sequence {
    pods: Api<Pod>,
    sink: Sink,
    deleting: Arc<AtomicBool>,
    logs: Arc<Mutex<LogState>>,
    gone: watch::Sender<bool>,
    input: mpsc::UnboundedReceiver<PodEvent>,
}

async fn sequence(mut s: Sequence) {
    let (mut running, mut ended) = (false, false);
    let id = || s.sink.sandbox_id.clone();
    while let Some(event) = s.input.recv().await {
        let deleting = || s.deleting.load(Ordering::SeqCst);
        if event == PodEvent::Deleted {
            let _ = s.gone.send(true);
            if !deleting() && !ended {
                let _ = s.sink.events.send(DriverEvent::Gone { sandbox_id: id() });
            }
            break;
        }
        if deleting() || ended {
            continue;
        }
        let out = match event {
            PodEvent::Seen(Observation::Pending) | PodEvent::Deleted => continue,
            PodEvent::Seen(Observation::Running) if running => continue,
            PodEvent::Seen(Observation::Running) => {
                running = true;
                let mut logs = s.logs.lock().unwrap_or_else(|p| p.into_inner());
                if matches!(*logs, LogState::Unread) {
                    *logs = LogState::Following(logs::follow(s.pods.clone(), s.sink.clone()));
                }
                DriverEvent::Running { sandbox_id: id() }
            }
            PodEvent::Seen(Observation::Failed(error)) => {
                ended = true;
                DriverEvent::Failed {
                    sandbox_id: id(),
                    error,
                }
            }
            PodEvent::Seen(Observation::Exited { exit_code, detail }) => {
                ended = true;
                flush_output(&s.pods, &s.logs, &s.sink).await;
                s.sink.line(format!("[kubernetes] {detail}"));
                DriverEvent::Exited {
                    sandbox_id: id(),
                    exit_code,
                }
            }
            PodEvent::Lost(detail) => {
                ended = true;
                DriverEvent::Failed {
                    sandbox_id: id(),
                    error: DriverError::Unavailable(detail),
                }
            }
        };
        if !deleting() {
            let _ = s.sink.events.send(out);
        }
    }
}
