//! The lifecycle core: the one place that changes sandbox records.
//!
//! Every request path and every driver event ends here. A change is made under one lock in
//! three steps that never interleave with another change: compute the next record with a
//! [`transitions`] function, store it (SQLite, with its history row), publish it on the
//! [`WatchBus`]. So the order watchers see is the stored order, and a consumer's stream equals
//! the stored history.
//!
//! Backend work (create, delete) never runs under the lock: it is spawned, and its outcome comes
//! back as another change. Entering Error always spawns the backend's cleanup (seed 000), after
//! the Error is stored and published, and retried until it succeeds.
//!
//! Recovery at start (stored records against the backend as it is now, and removal of backends
//! the store no longer knows) lives in `recovery`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use openshell_driver::{ComputeDriver, DriverEvent, EventReceiver};
use openshell_proto::reasons;
use openshell_proto::v1::{
    CreateSandboxRequest, DegradedSubsystem, Sandbox, SandboxLogLine, SandboxPhase,
};
use tokio::sync::broadcast;

use crate::auth;
use crate::bus::{BusEvent, WatchBus};
use crate::error::{GatewayError, Result};
use crate::last_output;
use crate::mutants;
use crate::request::{self, now_ms, parse_selector, Admitted};
use crate::store::{Row, Store, StoreError};
use crate::transitions::{self, is_terminal};

mod recovery;

/// The first and the longest wait between attempts of a failed sandbox's backend cleanup.
const CLEANUP_BACKOFF_MIN: std::time::Duration = std::time::Duration::from_millis(500);
const CLEANUP_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// Settings of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// The endpoint drivers hand the supervisor (`OPENSHELL_ENDPOINT`).
    pub endpoint: String,
    /// Seconds between session heartbeats.
    pub heartbeat_secs: u32,
}

struct Inner {
    store: Store,
    bus: WatchBus,
    /// The current supervisor session of each sandbox (a newer one supersedes an older one).
    sessions: HashMap<String, u64>,
}

/// What a watcher starts from: the current record, the kept output, and the live feed.
pub struct Subscription {
    pub snapshot: Sandbox,
    pub tail: Vec<Arc<SandboxLogLine>>,
    pub events: broadcast::Receiver<BusEvent>,
}

/// A test's hold on the core at a named point (see [`Lifecycle::pause_at`]).
pub type PauseHook =
    Arc<dyn Fn(PausePoint) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// The points of the core where a [`PauseHook`] is awaited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PausePoint {
    /// `create` has stored and published the new record and not yet started its driver call.
    CreateStored,
}

/// The lifecycle core.
pub struct Lifecycle {
    inner: Mutex<Inner>,
    driver: Arc<dyn ComputeDriver>,
    config: CoreConfig,
    next_session: AtomicU64,
    /// One lock per sandbox around the driver calls (create, delete, cleanup): a delete that
    /// arrives while the create is still in flight waits for it, so it never misses (and leaks)
    /// what the create was about to start.
    backend_ops: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Awaited at each [`PausePoint`]; none outside tests.
    pause: Mutex<Option<PauseHook>>,
    /// This core, for the background work it spawns from `&self` methods.
    me: std::sync::Weak<Lifecycle>,
}

impl Lifecycle {
    /// A core over `store` and `driver`. Call [`Lifecycle::start`] to recover and take events.
    pub fn new(store: Store, driver: Arc<dyn ComputeDriver>, config: CoreConfig) -> Arc<Lifecycle> {
        Arc::new_cyclic(|me| Lifecycle {
            inner: Mutex::new(Inner {
                store,
                bus: WatchBus::default(),
                sessions: HashMap::new(),
            }),
            driver,
            config,
            next_session: AtomicU64::new(1),
            backend_ops: Mutex::new(HashMap::new()),
            pause: Mutex::new(None),
            me: me.clone(),
        })
    }

    /// For tests: awaits `hook` at every [`PausePoint`], so a test can hold a request exactly
    /// where an interleaving matters and run another one meanwhile.
    pub fn pause_at(&self, hook: PauseHook) {
        *self.pause.lock().unwrap_or_else(|p| p.into_inner()) = Some(hook);
    }

    async fn pause_point(&self, point: PausePoint) {
        let hook = self.pause.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(hook) = hook {
            hook(point).await;
        }
    }

    /// The session heartbeat interval.
    pub fn heartbeat_secs(&self) -> u32 {
        self.config.heartbeat_secs
    }

    async fn consume(self: Arc<Self>, mut events: EventReceiver) {
        while let Some(event) = events.recv().await {
            if let Err(e) = self.on_driver_event(event) {
                tracing::warn!(error = %e, "driver event not applied");
            }
        }
    }

    fn on_driver_event(&self, event: DriverEvent) -> Result<()> {
        let id = event.sandbox_id().to_string();
        match event {
            DriverEvent::Running { .. } if mutants::active("ready-without-session") => {
                self.change_if_exists(&id, |sb| transitions::session_connected(sb, "", &[]))?;
            }
            DriverEvent::Running { .. } => tracing::debug!(%id, "backend running"),
            DriverEvent::Exited { exit_code, .. } => {
                let message = format!("the sandbox's top process exited with code {exit_code}");
                if mutants::active("overwrite-error") {
                    self.change_if_exists(&id, |sb| {
                        sb.status
                            .get_or_insert_with(Default::default)
                            .set_phase(SandboxPhase::Provisioning);
                        transitions::process_exited(sb, exit_code, &message)
                    })?;
                    return Ok(());
                }
                self.top_process_exited(&id, exit_code, message)?;
            }
            DriverEvent::ExitedWithoutCode { message, .. } => {
                self.change_if_exists(&id, |sb| {
                    transitions::process_ended_without_code(sb, &message)
                })?;
            }
            DriverEvent::Failed { error, .. } => {
                self.change_if_exists(&id, |sb| {
                    transitions::backend_failed(sb, error.reason(), &error.to_string())
                })?;
            }
            DriverEvent::Gone { .. } => {
                self.change_if_exists(&id, |sb| {
                    transitions::backend_failed(
                        sb,
                        reasons::BACKEND_LOST,
                        "the backend resource disappeared",
                    )
                })?;
            }
            DriverEvent::Output { line, .. } => {
                let mut inner = self.lock();
                if let Some(row) = inner.store.get(&id)? {
                    // A sandbox that prints its credential must not hand it to every watcher
                    // (OSC-SEC-004: WatchSandbox responses carry these lines).
                    // Redacted first: a cut made by sanitizing could leave part of it.
                    let message = if mutants::active("logs-unredacted") {
                        // Output lines published as printed, credential and all.
                        line
                    } else {
                        last_output::redact_token(&line, &row.token_hash)
                    };
                    let line = SandboxLogLine {
                        sandbox_id: id.clone(),
                        timestamp_ms: now_ms(),
                        level: "info".into(),
                        target: "backend".into(),
                        message: crate::hygiene::sanitize(&message),
                        source: self.driver.name().into(),
                    };
                    inner.bus.log(&id, line);
                }
            }
        }
        Ok(())
    }

    /// The driver saw the sandbox's top process end. If no supervisor session ever opened (and
    /// nothing was reported, or the record would be terminal already), the message carries the
    /// backend's last output: the only account of why it died.
    fn top_process_exited(&self, id: &str, exit_code: i32, mut message: String) -> Result<()> {
        let mut inner = self.lock();
        let Some(row) = inner.store.get(id)? else {
            return Ok(());
        };
        if is_terminal(&row.sandbox) {
            return Ok(());
        }
        let never_connected = row
            .sandbox
            .status
            .as_ref()
            .is_none_or(|s| s.main_process_instance_id.is_empty());
        if never_connected {
            let tail = last_output::for_message(&inner.bus.tail(id, 0), &row.token_hash);
            if tail.is_empty() {
                message.push_str(" before any supervisor session; it printed nothing");
            } else {
                message.push_str(" before any supervisor session; its last output:\n");
                message.push_str(&tail);
            }
        }
        self.apply(&mut inner, row.sandbox, |sb| {
            transitions::process_exited(sb, exit_code, &message)
        })?;
        Ok(())
    }

    // ---- public API operations ----

    /// Validates and stores a new sandbox, then asks the driver to start it (in the background).
    ///
    /// Order matters, because a delete can arrive the moment the record is visible:
    /// 1. take the sandbox's backend lock (its id is new, so nobody else holds it);
    /// 2. store and publish the record: from now on a delete finds it, and waits for the lock;
    /// 3. hand the lock to the background driver call: the delete's driver call runs after it,
    ///    so it removes whatever the create started (nothing leaks, nothing panics).
    pub async fn create(self: &Arc<Self>, request: CreateSandboxRequest) -> Result<Sandbox> {
        let Admitted {
            sandbox,
            token,
            driver_request,
        } = {
            let gateway_id = self.lock().store.gateway_id().to_string();
            request::admit(request, &self.config.endpoint, &gateway_id)?
        };
        let id = driver_request.sandbox_id.clone();
        // [1] The backend lock before the record exists.
        let guard = self.backend_lock(&id).lock_owned().await;
        // [2] Store, then publish (a failed store publishes nothing).
        let stored = {
            let mut inner = self.lock();
            match inner.store.get_by_name(&driver_request.name) {
                Ok(Some(_)) if !mutants::active("duplicate-names") => {
                    Err(GatewayError::AlreadyExists(driver_request.name.clone()))
                }
                Ok(_) => inner
                    .store
                    .insert(&Row {
                        sandbox: sandbox.clone(),
                        token_hash: auth::hash_token(&token),
                    })
                    .map_err(GatewayError::from),
                Err(e) => Err(e.into()),
            }
            .map(|()| inner.bus.publish(&sandbox))
        };
        if let Err(e) = stored {
            drop(guard);
            self.forget_backend_lock(&id);
            return Err(e);
        }
        self.pause_point(PausePoint::CreateStored).await;
        // [3] The driver call, holding the lock.
        let core = Arc::clone(self);
        tokio::spawn(async move {
            let _guard = guard;
            if let Err(error) = core.driver.create(driver_request).await {
                tracing::warn!(%id, %error, "driver create failed");
                let applied = core.change_if_exists(&id, |sb| {
                    transitions::backend_failed(sb, error.reason(), &error.to_string())
                });
                if let Err(e) = applied {
                    tracing::error!(%id, error = %e, "could not store the driver failure");
                }
            }
        });
        Ok(sandbox)
    }

    /// The sandbox with this name (or id).
    pub fn get(&self, name_or_id: &str) -> Result<Sandbox> {
        Ok(self.find(&self.lock(), name_or_id)?.sandbox)
    }

    /// Sandboxes whose labels match every `key=value` of `selector`, paged.
    pub fn list(&self, selector: &str, limit: u32, offset: u32) -> Result<Vec<Sandbox>> {
        let wanted = parse_selector(selector)?;
        let inner = self.lock();
        let mut rows = inner.store.list()?;
        if mutants::active("list-stale-status") {
            // Reads each record's first stored version instead of its latest.
            for row in &mut rows {
                let id = row
                    .sandbox
                    .metadata
                    .as_ref()
                    .map(|m| m.id.clone())
                    .unwrap_or_default();
                if let Some(first) = inner.store.history(&id)?.into_iter().next() {
                    row.sandbox = first;
                }
            }
        }
        drop(inner);
        let any = mutants::active("selector-any");
        let matching = rows.into_iter().map(|r| r.sandbox).filter(|sb| {
            // The store checked that every record carries metadata.
            let have = sb.metadata.as_ref().map(|m| &m.labels);
            let matches = |(k, v): &(String, String)| have.and_then(|l| l.get(k)) == Some(v);
            if any {
                wanted.is_empty() || wanted.iter().any(matches)
            } else {
                wanted.iter().all(matches)
            }
        });
        let page = matching.skip(offset as usize);
        Ok(if limit == 0 {
            page.collect()
        } else {
            page.take(limit as usize).collect()
        })
    }

    /// Marks the sandbox Deleting, removes its backend resources, then forgets it.
    ///
    /// A sandbox whose stored record is corrupt can still be deleted (by name or id): its id is
    /// read from the store's own column, and the Deleting step, which needs the record, is skipped.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        let found = {
            let inner = self.lock();
            match self.find(&inner, name) {
                Ok(row) => Ok(id_of(&row.sandbox)?.to_string()),
                Err(GatewayError::Store(StoreError::Corrupt { id, detail })) => {
                    tracing::warn!(%id, %detail, "deleting a sandbox whose record is corrupt");
                    Err(id)
                }
                // "Idempotent" delete: an unknown name is reported as nothing deleted.
                Err(GatewayError::NotFound(_)) if mutants::active("delete-unknown-ok") => {
                    return Ok(false)
                }
                Err(e) => return Err(e),
            }
        };
        let id = match found {
            Ok(id) => {
                self.change(&id, transitions::deleting)?;
                id
            }
            Err(corrupt) => corrupt,
        };
        let backend = self.backend_lock(&id);
        let _guard = backend.lock().await;
        if let Err(e) = self.driver.delete(&id).await {
            return Err(GatewayError::FailedPrecondition(format!(
                "sandbox {name:?} is Deleting but its backend could not be removed ({}: {e}); retry the delete",
                e.reason()
            )));
        }
        let mut inner = self.lock();
        let removed = inner.store.remove(&id)?;
        inner.bus.remove(&id);
        inner.sessions.remove(&id);
        drop(inner);
        self.forget_backend_lock(&id);
        Ok(removed)
    }

    /// The current record, the kept output and a feed of what comes next, taken atomically.
    pub fn subscribe(&self, name_or_id: &str, log_tail_lines: usize) -> Result<Subscription> {
        let mut inner = self.lock();
        let snapshot = self.find(&inner, name_or_id)?.sandbox;
        let id = id_of(&snapshot)?.to_string();
        let tail = inner.bus.tail(&id, log_tail_lines);
        let events = inner.bus.subscribe(&id);
        Ok(Subscription {
            snapshot,
            tail,
            events,
        })
    }

    /// Every stored version of a sandbox (what a watch stream must equal).
    pub fn history(&self, id: &str) -> Result<Vec<Sandbox>> {
        Ok(self.lock().store.history(id)?)
    }

    // ---- supervisor callbacks ----

    /// Checks a supervisor credential, in the contract's order: no token → Unauthenticated;
    /// unknown or deleted sandbox → NotFound; another sandbox's token → PermissionDenied.
    pub fn authenticate(&self, token: Option<&str>, sandbox_id: &str) -> Result<()> {
        let token = match token {
            Some(t) => t,
            // The credential check skipped when no header came at all.
            None if mutants::active("no-auth") => return Ok(()),
            None => return Err(GatewayError::Unauthenticated),
        };
        request::check_lookup("sandbox_id", sandbox_id)?;
        let row = match self.lock().store.get(sandbox_id)? {
            Some(row) => row,
            // Reports for unknown sandboxes accepted (and dropped) instead of refused.
            None if mutants::active("unknown-sandbox-ok") => return Ok(()),
            None => return Err(GatewayError::NotFound(sandbox_id.to_string())),
        };
        if auth::token_matches(token, &row.token_hash) || mutants::active("foreign-token") {
            Ok(())
        } else {
            Err(GatewayError::PermissionDenied(sandbox_id.to_string()))
        }
    }

    /// A fatal startup error (seed 000): stored and published before this returns; cleanup after.
    pub fn supervisor_error(&self, sandbox_id: &str, stage: &str, message: &str) -> Result<()> {
        // The message is stored and shown by every read API: never with the sandbox's token in
        // it (OSC-SEC-004), whatever the supervisor put there.
        let token_hash = self.lock().store.get(sandbox_id)?.map(|row| row.token_hash);
        let message = match &token_hash {
            // Mutant `report-unredacted`: the reported message stored as sent.
            Some(hash) if !mutants::active("report-unredacted") => {
                last_output::redact_token(message, hash)
            }
            _ => message.to_string(),
        };
        let apply = |sb: &mut Sandbox| transitions::supervisor_error(sb, stage, &message);
        if mutants::active("unknown-sandbox-ok") {
            self.change_if_exists(sandbox_id, apply)?;
        } else {
            self.change(sandbox_id, apply)?;
        }
        Ok(())
    }

    /// The main process ended.
    pub fn main_process_exited(&self, sandbox_id: &str, exit_code: i32) -> Result<()> {
        let message = format!("the main process exited with code {exit_code}");
        self.change(sandbox_id, |sb| {
            transitions::process_exited(sb, exit_code, &message)
        })?;
        Ok(())
    }

    /// Registers a supervisor session; it supersedes any older one. Fails for a terminal sandbox.
    pub fn session_opened(
        &self,
        sandbox_id: &str,
        instance_id: &str,
        degraded: &[DegradedSubsystem],
    ) -> Result<u64> {
        request::check_instance_id(instance_id)?;
        let session = self.next_session.fetch_add(1, Ordering::Relaxed);
        let mut inner = self.lock();
        let row = inner
            .store
            .get(sandbox_id)?
            .ok_or_else(|| GatewayError::NotFound(sandbox_id.to_string()))?;
        if is_terminal(&row.sandbox) {
            let phase = transitions::phase(&row.sandbox);
            return Err(GatewayError::FailedPrecondition(format!(
                "sandbox is {}; no session accepted",
                phase.as_str_name()
            )));
        }
        let known_instance = row
            .sandbox
            .status
            .as_ref()
            .is_some_and(|s| s.main_process_instance_id == instance_id);
        if mutants::active("reconnect-rejected")
            && known_instance
            && transitions::phase(&row.sandbox) != SandboxPhase::Ready
        {
            // A hello from an instance already seen is taken for a replayed duplicate.
            return Err(GatewayError::FailedPrecondition(format!(
                "instance {instance_id} already had a session"
            )));
        }
        // Stored first: a store that cannot be written leaves no session registered for it.
        self.apply(&mut inner, row.sandbox, |sb| {
            transitions::session_connected(sb, instance_id, degraded)
        })?;
        inner.sessions.insert(sandbox_id.to_string(), session);
        Ok(session)
    }

    /// A session ended. Only the end of the *current* session demotes Ready.
    pub fn session_closed(&self, sandbox_id: &str, session: u64) -> Result<()> {
        let mut inner = self.lock();
        let current = inner.sessions.get(sandbox_id) == Some(&session);
        if !current && !mutants::active("demote-superseded") {
            return Ok(());
        }
        // Stored first: a store that cannot be written keeps the session registered.
        if !mutants::active("no-demote") {
            if let Some(row) = inner.store.get(sandbox_id)? {
                self.apply(&mut inner, row.sandbox, transitions::session_ended)?;
            }
        }
        if current {
            inner.sessions.remove(sandbox_id);
        }
        Ok(())
    }

    // ---- the one write path ----

    fn change(&self, id: &str, f: impl FnOnce(&mut Sandbox) -> bool) -> Result<Option<Sandbox>> {
        let mut inner = self.lock();
        let row = inner
            .store
            .get(id)?
            .ok_or_else(|| GatewayError::NotFound(id.to_string()))?;
        self.apply(&mut inner, row.sandbox, f)
    }

    fn change_if_exists(
        &self,
        id: &str,
        f: impl FnOnce(&mut Sandbox) -> bool,
    ) -> Result<Option<Sandbox>> {
        match self.change(id, f) {
            Err(GatewayError::NotFound(_)) => Ok(None),
            other => other,
        }
    }

    /// Computes, stores and publishes one change; spawns cleanup when it entered Error.
    fn apply(
        &self,
        inner: &mut Inner,
        mut sandbox: Sandbox,
        f: impl FnOnce(&mut Sandbox) -> bool,
    ) -> Result<Option<Sandbox>> {
        let was_error = transitions::phase(&sandbox) == SandboxPhase::Error;
        if !f(&mut sandbox) {
            return Ok(None);
        }
        let meta = sandbox.metadata.as_mut().ok_or(StoreError::NoMetadata)?;
        meta.resource_version += 1;
        let id = meta.id.clone();
        inner.store.update(&sandbox)?;
        inner.bus.publish(&sandbox);
        if !was_error && transitions::phase(&sandbox) == SandboxPhase::Error {
            self.spawn_cleanup(&id);
        }
        Ok(Some(sandbox))
    }

    /// Removes the backend of a sandbox in Error, in the background, retrying with backoff
    /// until it succeeds (an engine that is down now may be back later) or the sandbox is gone
    /// (its delete removed the backend itself).
    fn spawn_cleanup(&self, id: &str) {
        if mutants::active("no-cleanup") {
            return;
        }
        let Some(core) = self.me.upgrade() else {
            return; // the core is shutting down
        };
        let id = id.to_string();
        let backend = self.backend_lock(&id);
        tokio::spawn(async move {
            let mut backoff = CLEANUP_BACKOFF_MIN;
            loop {
                let guard = backend.lock().await;
                match core.lock().store.id_known(&id) {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(%id, error = %e, "store unreadable during cleanup"),
                }
                match core.driver.delete(&id).await {
                    Ok(removed) => {
                        tracing::info!(%id, removed, "backend resources of failed sandbox cleaned up");
                        return;
                    }
                    Err(e) => tracing::warn!(
                        %id,
                        error = %e,
                        "cleanup of failed sandbox did not finish; retrying in {backoff:?}"
                    ),
                }
                drop(guard);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(CLEANUP_BACKOFF_MAX);
            }
        });
    }

    fn backend_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut ops = self.backend_ops.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(ops.entry(id.to_string()).or_default())
    }

    fn forget_backend_lock(&self, id: &str) {
        self.backend_ops
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    fn find(&self, inner: &Inner, name_or_id: &str) -> Result<Row> {
        request::check_lookup("the sandbox name", name_or_id)?;
        if let Some(row) = inner.store.get_by_name(name_or_id)? {
            return Ok(row);
        }
        inner
            .store
            .get(name_or_id)?
            .ok_or_else(|| GatewayError::NotFound(name_or_id.to_string()))
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock is a bug; the data is still consistent (SQLite
        // transactions), so keep serving rather than poisoning every later request.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The id of a record (the store checked that every record carries metadata).
fn id_of(sandbox: &Sandbox) -> Result<&str> {
    Ok(&sandbox.metadata.as_ref().ok_or(StoreError::NoMetadata)?.id)
}
