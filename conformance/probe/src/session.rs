//! `rogue session`: a scripted supervisor for seed 002's session rules (OSC-READY-004…008).
//!
//! With the credential the driver hands in, it opens, drops, reopens and supersedes
//! `ConnectSupervisor` sessions, pacing itself by watching its own sandbox through the public API
//! (`WatchSandbox` on the same endpoint), so it waits on events, not on time, and works against
//! any gateway. The script, with the word each step adds to the verdict:
//!
//! 1. session A (instance I1) → `a-ready`: the sandbox became `Ready / SupervisorConnected`;
//! 2. A ends (its stream is closed) → `a-end-demoted`: `Provisioning / SupervisorDisconnected`;
//! 3. session B (a new instance I2) → `b-ready`;
//! 4. B ends → `b-end-demoted`;
//! 5. session C (I2 again: the same instance reconnecting) → `c-same-instance-ready`;
//! 6. session D (I2) while C is live → `d-accepted`: D supersedes C;
//! 7. C ends → `c-superseded-end`: `kept-ready` when no demotion shows within a 2 s window (the
//!    one negative observation: nothing happening can only be watched for a while);
//! 8. the verdict is reported as a startup error (stage OTHER): `rogue session: a-ready=yes …`;
//!    the sandbox must be `Error`, and D's end after it (the process exits, or its backend is
//!    removed) must change nothing.
//!
//! Each word is `yes`, `kept-ready`, `accepted`, or `no(<what was seen instead>)`. The suite's
//! case judges from its own watch of the sandbox; the words say what the script saw.

use std::time::Duration;

use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    gateway_message, sandbox_stream_event, supervisor_message, SandboxPhase, SupervisorHeartbeat,
    SupervisorHello, SupervisorMessage, WatchSandboxRequest,
};
use openshell_proto::{conditions, reasons};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// How long a step waits for the state it expects.
const STEP: Duration = Duration::from_secs(10);
/// How long "nothing changes" is watched for after a superseded session ends.
const QUIET: Duration = Duration::from_secs(2);

/// The sandbox as the script sees it.
#[derive(Debug, Clone, Default, PartialEq)]
struct State {
    phase: i32,
    reason: String,
    ready_true: bool,
}

impl State {
    fn ready(&self) -> bool {
        self.phase == SandboxPhase::Ready as i32
            && self.ready_true
            && self.reason == reasons::SUPERVISOR_CONNECTED
    }

    fn demoted(&self) -> bool {
        self.phase == SandboxPhase::Provisioning as i32
            && !self.ready_true
            && self.reason == reasons::SUPERVISOR_DISCONNECTED
    }

    fn word(&self) -> String {
        let phase = SandboxPhase::try_from(self.phase)
            .map(|p| {
                p.as_str_name()
                    .trim_start_matches("SANDBOX_PHASE_")
                    .to_lowercase()
            })
            .unwrap_or_else(|_| self.phase.to_string());
        format!("no({phase}/{})", self.reason)
    }
}

/// Attaches the sandbox credential to a request.
fn authorized<T>(message: T, token: &str) -> Result<tonic::Request<T>, String> {
    let mut request = tonic::Request::new(message);
    let value = format!("Bearer {token}")
        .parse()
        .map_err(|_| "the token has characters a header cannot carry".to_string())?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

/// Follows the sandbox's own status through `WatchSandbox`.
async fn follow(
    mut client: OpenShellClient<Channel>,
    id: String,
) -> Result<watch::Receiver<State>, String> {
    let request = WatchSandboxRequest {
        id,
        follow_status: true,
        ..Default::default()
    };
    let mut stream = client
        .watch_sandbox(request)
        .await
        .map_err(|s| {
            format!(
                "WatchSandbox of its own sandbox: {:?}: {}",
                s.code(),
                s.message()
            )
        })?
        .into_inner();
    let (tx, rx) = watch::channel(State::default());
    tokio::spawn(async move {
        while let Ok(Some(event)) = stream.message().await {
            if let Some(sandbox_stream_event::Payload::Sandbox(sb)) = event.payload {
                let status = sb.status.unwrap_or_default();
                let ready = status
                    .conditions
                    .iter()
                    .find(|c| c.r#type == conditions::READY);
                let _ = tx.send(State {
                    phase: status.phase,
                    reason: ready.map(|c| c.reason.clone()).unwrap_or_default(),
                    ready_true: ready.is_some_and(|c| c.status == conditions::TRUE),
                });
            }
        }
    });
    Ok(rx)
}

/// Waits until `holds` on the followed state, or `within` passes: the state either way.
async fn until(
    states: &mut watch::Receiver<State>,
    within: Duration,
    holds: impl Fn(&State) -> bool,
) -> Result<State, State> {
    let found = match tokio::time::timeout(within, states.wait_for(|s| holds(s))).await {
        Ok(Ok(state)) => Some(state.clone()),
        _ => None,
    };
    found.ok_or_else(|| states.borrow().clone())
}

/// A live session: closing `outbound` ends it.
struct Session {
    outbound: mpsc::Sender<SupervisorMessage>,
    task: tokio::task::JoinHandle<()>,
}

impl Session {
    /// Sends a hello for `instance_id` and waits for `SessionAccepted`.
    async fn open(
        client: &OpenShellClient<Channel>,
        token: &str,
        sandbox_id: &str,
        instance_id: &str,
    ) -> Result<Session, String> {
        let (outbound, rx) = mpsc::channel(8);
        let hello = SupervisorMessage {
            payload: Some(supervisor_message::Payload::Hello(SupervisorHello {
                sandbox_id: sandbox_id.to_string(),
                instance_id: instance_id.to_string(),
                degraded: Vec::new(),
            })),
        };
        outbound
            .send(hello)
            .await
            .map_err(|_| "closed".to_string())?;
        let mut client = client.clone();
        let request = authorized(ReceiverStream::new(rx), token)?;
        let opening = async {
            let mut inbound = client
                .connect_supervisor(request)
                .await
                .map_err(|s| format!("{:?}", s.code()))?
                .into_inner();
            loop {
                match inbound.message().await {
                    Ok(Some(m)) => match m.payload {
                        Some(gateway_message::Payload::SessionAccepted(a)) => {
                            return Ok((inbound, a.heartbeat_interval_secs))
                        }
                        Some(gateway_message::Payload::SessionRejected(r)) => {
                            return Err(format!("rejected:{}", r.reason.replace(' ', "_")))
                        }
                        _ => continue,
                    },
                    Ok(None) => return Err("closed".to_string()),
                    Err(s) => return Err(format!("{:?}", s.code())),
                }
            }
        };
        let (mut inbound, heartbeat) = tokio::time::timeout(STEP, opening)
            .await
            .map_err(|_| "no-answer".to_string())??;
        let beats = outbound.clone();
        let interval = Duration::from_secs(u64::from(heartbeat.max(1)));
        let task = tokio::spawn(async move {
            let mut tick =
                tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
            loop {
                tokio::select! {
                    message = inbound.message() => if !matches!(message, Ok(Some(_))) { return },
                    _ = tick.tick() => {
                        let beat = SupervisorMessage { payload: Some(supervisor_message::Payload::Heartbeat(SupervisorHeartbeat {})) };
                        if beats.send(beat).await.is_err() { return }
                    }
                }
            }
        });
        Ok(Session { outbound, task })
    }

    /// Ends the session: the request stream is closed and the response stream dropped.
    fn end(self) {
        drop(self.outbound);
        self.task.abort();
    }
}

fn yes_or(result: Result<State, State>) -> String {
    match result {
        Ok(_) => "yes".into(),
        Err(last) => last.word(),
    }
}

/// Runs the script; returns the verdict message (`rogue session: …`) to report, and the last
/// session (to end after the report).
pub async fn script(
    client: &OpenShellClient<Channel>,
    sandbox_id: &str,
    token: &str,
) -> Result<(String, Option<SessionGuard>), String> {
    let mut states = follow(client.clone(), sandbox_id.to_string()).await?;
    let mut words: Vec<(&str, String)> = Vec::new();
    let (i1, i2) = (format!("{sandbox_id}-a"), format!("{sandbox_id}-b"));
    let open =
        |instance: String| async move { Session::open(client, token, sandbox_id, &instance).await };

    // 1-2: A, then its end.
    match open(i1.clone()).await {
        Ok(a) => {
            words.push((
                "a-ready",
                yes_or(until(&mut states, STEP, State::ready).await),
            ));
            a.end();
            words.push((
                "a-end-demoted",
                yes_or(until(&mut states, STEP, State::demoted).await),
            ));
        }
        Err(e) => words.push(("a-ready", format!("no(open:{e})"))),
    }
    // 3-4: B, a new instance, then its end.
    match open(i2.clone()).await {
        Ok(b) => {
            words.push((
                "b-ready",
                yes_or(until(&mut states, STEP, State::ready).await),
            ));
            b.end();
            words.push((
                "b-end-demoted",
                yes_or(until(&mut states, STEP, State::demoted).await),
            ));
        }
        Err(e) => words.push(("b-ready", format!("no(open:{e})"))),
    }
    // 5-7: C (the same instance as B), D superseding it, then C's end.
    let mut last = None;
    match open(i2.clone()).await {
        Ok(c) => {
            words.push((
                "c-same-instance-ready",
                yes_or(until(&mut states, STEP, State::ready).await),
            ));
            match open(i2.clone()).await {
                Ok(d) => {
                    words.push(("d-accepted", "accepted".into()));
                    c.end();
                    let changed = until(&mut states, QUIET, |s| !s.ready()).await;
                    words.push((
                        "c-superseded-end",
                        match changed {
                            Ok(seen) => seen.word().replacen("no(", "demoted(", 1),
                            Err(_) => "kept-ready".into(),
                        },
                    ));
                    last = Some(SessionGuard(d));
                }
                Err(e) => {
                    words.push(("d-accepted", format!("no(open:{e})")));
                    last = Some(SessionGuard(c));
                }
            }
        }
        Err(e) => words.push(("c-same-instance-ready", format!("no(open:{e})"))),
    }
    let verdict = words
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ");
    Ok((format!("rogue session: {verdict}"), last))
}

/// The last live session, ended when dropped (after the verdict was reported).
pub struct SessionGuard(Session);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.task.abort();
    }
}
