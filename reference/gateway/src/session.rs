//! One supervisor session: the `ConnectSupervisor` stream after its hello was accepted.
//!
//! The session is live while messages keep arriving: the gateway sends a heartbeat every
//! interval, and ends the session when the supervisor misses [`MISSED_HEARTBEATS`] in a row, when
//! its stream ends or fails, or when the response stream is dropped. The end is reported to the
//! lifecycle core, which demotes Ready only if this is still the sandbox's current session. A
//! gateway shutdown also ends it, but reports nothing: the supervisor did not go away, and the
//! next gateway start demotes Ready records until their sessions return.

use std::sync::Arc;
use std::time::Duration;

use openshell_proto::v1::{
    gateway_message, supervisor_message, GatewayHeartbeat, GatewayMessage, SupervisorMessage,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tonic::{Status, Streaming};

use crate::lifecycle::Lifecycle;

/// Heartbeat intervals without a message after which a session is over.
pub const MISSED_HEARTBEATS: u32 = 3;

/// Runs a registered session to its end, then tells the core.
pub async fn run(
    core: Arc<Lifecycle>,
    sandbox_id: String,
    session: u64,
    mut inbound: Streaming<SupervisorMessage>,
    outbound: mpsc::Sender<Result<GatewayMessage, Status>>,
    mut stopping: watch::Receiver<bool>,
) {
    let interval = Duration::from_secs(core.heartbeat_secs().max(1).into());
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    let mut deadline = Instant::now() + interval * MISSED_HEARTBEATS;
    let why = loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(SupervisorMessage { payload: Some(supervisor_message::Payload::Heartbeat(_)) })) => {
                    deadline = Instant::now() + interval * MISSED_HEARTBEATS;
                }
                Ok(Some(_)) => deadline = Instant::now() + interval * MISSED_HEARTBEATS,
                Ok(None) => break "stream closed by the supervisor".to_string(),
                Err(status) => break format!("stream failed: {}", status.message()),
            },
            _ = ticker.tick() => {
                let beat = GatewayMessage { payload: Some(gateway_message::Payload::Heartbeat(GatewayHeartbeat {})) };
                if outbound.send(Ok(beat)).await.is_err() {
                    break "response stream dropped".to_string();
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                break format!("{MISSED_HEARTBEATS} heartbeats missed");
            }
            _ = outbound.closed() => break "response stream dropped".to_string(),
            _ = stopped(&mut stopping) => {
                tracing::info!(%sandbox_id, session, "gateway shutting down: session closed");
                return;
            }
        }
    };
    tracing::info!(%sandbox_id, session, %why, "supervisor session ended");
    if let Err(e) = core.session_closed(&sandbox_id, session) {
        tracing::warn!(%sandbox_id, error = %e, "session end not applied");
    }
}

/// Resolves once the gateway is shutting down (or the server is gone).
pub async fn stopped(stopping: &mut watch::Receiver<bool>) {
    loop {
        if *stopping.borrow_and_update() {
            return;
        }
        if stopping.changed().await.is_err() {
            return;
        }
    }
}
