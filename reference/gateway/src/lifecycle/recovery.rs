//! Recovery after a (re)start: the stored records meet the backend as it is now.

use std::sync::Arc;

use openshell_driver::EventReceiver;
use openshell_proto::reasons;

use super::Lifecycle;
use crate::error::Result;
use crate::transitions::{self, is_terminal};

impl Lifecycle {
    /// Recovers after a (re)start, then consumes driver events until the channel closes.
    ///
    /// Recovery: sessions do not survive a restart, so Ready records wait for theirs again; a
    /// non-terminal record whose backend is gone becomes Error; Error records get their backend
    /// cleanup again (it may not have finished before the restart).
    pub async fn start(self: &Arc<Self>, events: EventReceiver) -> Result<()> {
        let rows = self.lock().store.scan()?;
        for row in rows {
            // A corrupt record is reported and left alone: every other sandbox still recovers.
            let row = match row {
                Ok(row) => row,
                Err(e) => {
                    tracing::error!(error = %e, "stored sandbox skipped at start");
                    continue;
                }
            };
            let id = row
                .sandbox
                .metadata
                .as_ref()
                .map(|m| m.id.clone())
                .unwrap_or_default();
            if is_terminal(&row.sandbox) {
                self.spawn_cleanup(&id);
                continue;
            }
            self.change(&id, transitions::gateway_restarted)?;
            match self.driver.exists(&id).await {
                Ok(true) => {}
                Ok(false) => {
                    self.change(&id, |sb| {
                        transitions::backend_failed(
                            sb,
                            reasons::BACKEND_LOST,
                            "the backend resource is gone (found at gateway start)",
                        )
                    })?;
                }
                Err(e) => {
                    self.change(&id, |sb| {
                        transitions::backend_failed(sb, e.reason(), &e.to_string())
                    })?;
                }
            }
        }
        let core = Arc::clone(self);
        tokio::spawn(async move { core.consume(events).await });
        let core = Arc::clone(self);
        tokio::spawn(async move { core.remove_unknown_backends().await });
        Ok(())
    }

    /// Removes the backend resources labelled with this gateway's id whose sandbox the store
    /// no longer holds (deleted from the store while the gateway was down, or a create whose
    /// record never made it). Each removal holds the sandbox's backend lock, like any other.
    async fn remove_unknown_backends(self: Arc<Self>) {
        let owner = self.lock().store.gateway_id().to_string();
        let wanted = std::collections::BTreeMap::from([(
            openshell_proto::labels::GATEWAY_ID.to_string(),
            owner,
        )]);
        let found = match self.driver.labelled(&wanted).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not list backend resources at start; unknown ones stay");
                return;
            }
        };
        for id in found {
            // Under the sandbox's backend lock: a create stores its record before it takes the
            // driver call, so a record missing here is really gone.
            let backend = self.backend_lock(&id);
            let guard = backend.lock().await;
            let known = self.lock().store.id_known(&id);
            match known {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(%id, error = %e, "store unreadable; backend left alone");
                    continue;
                }
            }
            match self.driver.delete(&id).await {
                Ok(_) => tracing::info!(
                    %id,
                    "removed the backend of a sandbox the store does not hold"
                ),
                Err(e) => tracing::warn!(
                    %id,
                    error = %e,
                    "could not remove the backend of an unknown sandbox"
                ),
            }
            drop(guard);
            self.forget_backend_lock(&id);
        }
    }
}
