//! Watching the engine's event stream (containers labelled `openshell.sandbox-id`: `start`,
//! `die`, `destroy`) and handing each event to the tracked sandbox it is about.
//!
//! The stream is opened with `since` = the last event seen (at first: when the driver was made),
//! so the engine replays what happened while it was not open and no event between `create` and
//! the subscription is lost. When the stream breaks, the watcher reconnects with a growing
//! backoff (a retry pause, not a synchronisation); once the engine has been unreachable for
//! [`LOST_AFTER`], every tracked sandbox gets [`EngineEvent::Lost`]. After each reconnect the
//! tracked containers are inspected, so a container that died or vanished meanwhile is reported
//! even if the engine restarted and forgot its events.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::models::{ContainerStateStatusEnum, EventMessage};
use bollard::query_parameters::EventsOptions;
use futures::StreamExt;
use tokio::sync::Notify;

use crate::engine::{self, Engine, EngineError};
use crate::spec::{container_name, sandbox_id_label};
use crate::tracker::{EngineEvent, Registry};

/// How long the engine may be unreachable before tracked sandboxes are told.
pub const LOST_AFTER: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// The watcher's loop; runs until the driver is dropped (its task is aborted).
pub async fn run(engine: Arc<Engine>, registry: Registry, wake: Arc<Notify>) {
    let mut since = nanos_now();
    let mut down_since: Option<Instant> = None;
    let mut lost_reported = false;
    let mut backoff = BACKOFF_START;
    loop {
        let problem = match engine
            .bounded("ping", engine::QUICK, |c| async move { c.ping().await })
            .await
        {
            Ok(_) => {
                down_since = None;
                lost_reported = false;
                backoff = BACKOFF_START;
                reconcile(&engine, &registry).await;
                follow_events(&engine, &registry, &mut since).await
            }
            Err(e) => e.to_string(),
        };
        let down = *down_since.get_or_insert_with(Instant::now);
        if down.elapsed() >= LOST_AFTER && !lost_reported {
            lost_reported = true;
            let detail = format!("lost the docker event stream: {problem}");
            for id in registry.created_ids() {
                registry.dispatch(&id, EngineEvent::Lost(detail.clone()));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = wake.notified() => {}
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// Reads the event stream until it breaks; returns why.
async fn follow_events(engine: &Engine, registry: &Registry, since: &mut i128) -> String {
    let client = match engine.client("watch events") {
        Ok(client) => client,
        Err(e) => return e.to_string(),
    };
    let filters = HashMap::from([
        ("type".to_string(), vec!["container".to_string()]),
        ("label".to_string(), vec![sandbox_id_label().to_string()]),
        (
            "event".to_string(),
            vec![
                "start".to_string(),
                "die".to_string(),
                "destroy".to_string(),
            ],
        ),
    ]);
    let options = EventsOptions {
        since: Some(format_since(*since)),
        until: None,
        filters: Some(filters),
    };
    let mut stream = client.events(Some(options));
    while let Some(item) = stream.next().await {
        match item {
            Ok(message) => {
                if let Some(nanos) = message.time_nano {
                    *since = (*since).max(i128::from(nanos));
                }
                if let Some((sandbox_id, event)) = engine_event(&message) {
                    registry.dispatch(&sandbox_id, event);
                }
            }
            Err(e) => {
                engine.reset();
                return format!("event stream broke: {e}");
            }
        }
    }
    engine.reset();
    "event stream ended".to_string()
}

/// The sandbox and engine event of one engine message, if it is one of ours.
pub fn engine_event(message: &EventMessage) -> Option<(String, EngineEvent)> {
    let attributes = message.actor.as_ref()?.attributes.as_ref()?;
    let sandbox_id = attributes.get(sandbox_id_label())?.clone();
    let event = match message.action.as_deref()? {
        "start" => EngineEvent::Started,
        "die" => EngineEvent::Died {
            exit_code: attributes
                .get("exitCode")
                .and_then(|c| c.parse().ok())
                .unwrap_or(-1),
        },
        "destroy" => EngineEvent::Destroyed,
        _ => return None,
    };
    Some((sandbox_id, event))
}

/// Inspects every tracked container and dispatches what its state implies.
async fn reconcile(engine: &Engine, registry: &Registry) {
    for sandbox_id in registry.created_ids() {
        let name = container_name(&sandbox_id);
        let inspected = engine
            .bounded("inspect container", engine::QUICK, |c| async move {
                c.inspect_container(
                    &name,
                    None::<bollard::query_parameters::InspectContainerOptions>,
                )
                .await
            })
            .await;
        let state = match inspected {
            Ok(info) => info.state.unwrap_or_default(),
            Err(EngineError::NotFound(_)) => {
                registry.dispatch(&sandbox_id, EngineEvent::Destroyed);
                continue;
            }
            Err(_) => return,
        };
        match state.status {
            Some(ContainerStateStatusEnum::RUNNING) => {
                registry.dispatch(&sandbox_id, EngineEvent::Started);
            }
            Some(ContainerStateStatusEnum::EXITED | ContainerStateStatusEnum::DEAD) => {
                let exit_code = state
                    .exit_code
                    .and_then(|c| i32::try_from(c).ok())
                    .unwrap_or(-1);
                registry.dispatch(&sandbox_id, EngineEvent::Died { exit_code });
            }
            _ => {}
        }
    }
}

fn nanos_now() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// The engine's `since` form: `seconds.nanoseconds`.
pub fn format_since(nanos: i128) -> String {
    format!("{}.{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    fn message(action: &str, attributes: &[(&str, &str)]) -> EventMessage {
        EventMessage {
            action: Some(action.into()),
            actor: Some(EventActor {
                id: Some("c0ffee".into()),
                attributes: Some(
                    attributes
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn die_carries_the_exit_code_and_foreign_containers_are_skipped() {
        let die = message("die", &[("openshell.sandbox-id", "sb"), ("exitCode", "5")]);
        assert_eq!(
            engine_event(&die),
            Some(("sb".into(), EngineEvent::Died { exit_code: 5 }))
        );
        assert_eq!(
            engine_event(&message("start", &[("openshell.sandbox-id", "sb")]))
                .unwrap()
                .1,
            EngineEvent::Started
        );
        assert_eq!(engine_event(&message("start", &[("other", "x")])), None);
        assert_eq!(
            engine_event(&message("pause", &[("openshell.sandbox-id", "sb")])),
            None
        );
    }

    #[test]
    fn since_has_nanosecond_precision() {
        assert_eq!(
            format_since(1_700_000_000_000_000_042),
            "1700000000.000000042"
        );
    }
}
