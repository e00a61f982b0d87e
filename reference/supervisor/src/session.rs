//! Step 7 of the startup: the gateway side. The `ConnectSupervisor` session whose being live
//! makes the sandbox Ready (hello, accepted, heartbeats, reconnects), and the two reports:
//! `ReportSupervisorError` (once, bounded) and `ReportMainProcessExit` (until acknowledged,
//! bounded). Every call carries `authorization: Bearer <token>`.

use std::time::{Duration, Instant};

use openshell_proto::v1::{
    gateway_message, open_shell_client::OpenShellClient, supervisor_message,
    ReportMainProcessExitRequest, ReportSupervisorErrorRequest, SupervisorHeartbeat,
    SupervisorHello, SupervisorMessage, SupervisorStartupStage as Stage,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Status, Streaming};

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the gateway may take to accept a hello.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(3);
/// The heartbeat interval when the gateway announces none.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(15);
/// Reconnect backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Errors of the gateway side (stage GATEWAY).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The endpoint or token cannot be used at all.
    #[error("{0}")]
    Setup(String),
    /// No connection.
    #[error("cannot connect to the gateway at {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    /// The gateway answered with an error status.
    #[error("the gateway answered {}: {}", .0.code(), .0.message())]
    Status(Status),
    /// The gateway rejected the session.
    #[error("the gateway rejected the session: {0}")]
    Rejected(String),
    /// The stream ended.
    #[error("the gateway closed the session stream")]
    Closed,
    /// The gateway did not answer in time.
    #[error("the gateway did not answer within {0:?}")]
    Timeout(Duration),
}

impl SessionError {
    /// Whether trying again can help (the gateway may be starting or restarting).
    pub fn retryable(&self) -> bool {
        match self {
            SessionError::Connect { .. } | SessionError::Closed | SessionError::Timeout(_) => true,
            SessionError::Status(s) => {
                matches!(
                    s.code(),
                    Code::Unavailable
                        | Code::Unknown
                        | Code::DeadlineExceeded
                        | Code::Internal
                        | Code::Aborted
                        | Code::ResourceExhausted
                )
            }
            SessionError::Setup(_) | SessionError::Rejected(_) => false,
        }
    }
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, SessionError>;

/// The gateway as the supervisor sees it.
pub struct Gateway {
    endpoint: Endpoint,
    shown: String,
    auth: MetadataValue<Ascii>,
    sandbox_id: String,
    instance_id: String,
}

impl Gateway {
    /// Checks the endpoint and token.
    pub fn new(
        endpoint: &str,
        token: &str,
        sandbox_id: &str,
        instance_id: &str,
    ) -> Result<Gateway> {
        let parsed = Endpoint::from_shared(endpoint.to_string())
            .map_err(|e| {
                SessionError::Setup(format!("OPENSHELL_ENDPOINT={endpoint:?} is not a URL: {e}"))
            })?
            .connect_timeout(CONNECT_TIMEOUT);
        let auth = format!("Bearer {token}").parse().map_err(|_| {
            SessionError::Setup("OPENSHELL_SANDBOX_TOKEN is not valid header text".into())
        })?;
        Ok(Gateway {
            endpoint: parsed,
            shown: endpoint.into(),
            auth,
            sandbox_id: sandbox_id.into(),
            instance_id: instance_id.into(),
        })
    }

    async fn client(&self) -> Result<OpenShellClient<Channel>> {
        let channel = self
            .endpoint
            .connect()
            .await
            .map_err(|e| SessionError::Connect {
                endpoint: self.shown.clone(),
                detail: error_chain(&e),
            })?;
        Ok(OpenShellClient::new(channel))
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut req = Request::new(message);
        req.metadata_mut()
            .insert("authorization", self.auth.clone());
        req
    }

    /// Sends `ReportSupervisorError` once (retrying connection failures) within `bound`.
    pub async fn report_error(&self, stage: Stage, message: &str, bound: Duration) -> Result<()> {
        let req = ReportSupervisorErrorRequest {
            sandbox_id: self.sandbox_id.clone(),
            instance_id: self.instance_id.clone(),
            stage: stage as i32,
            message: message.into(),
        };
        self.until_acknowledged(bound, || async {
            let mut client = self.client().await?;
            client
                .report_supervisor_error(self.request(req.clone()))
                .await
                .map_err(SessionError::Status)?;
            Ok(())
        })
        .await
    }

    /// Sends `ReportMainProcessExit` until acknowledged, within `bound`.
    pub async fn report_exit(&self, exit_code: i32, bound: Duration) -> Result<()> {
        let req = ReportMainProcessExitRequest {
            sandbox_id: self.sandbox_id.clone(),
            instance_id: self.instance_id.clone(),
            exit_code,
        };
        self.until_acknowledged(bound, || async {
            let mut client = self.client().await?;
            client
                .report_main_process_exit(self.request(req.clone()))
                .await
                .map_err(SessionError::Status)?;
            Ok(())
        })
        .await
    }

    async fn until_acknowledged<F, Fut>(&self, bound: Duration, call: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<()>>,
    {
        let deadline = Instant::now() + bound;
        let mut backoff = BACKOFF_MIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let err = match tokio::time::timeout(left, call()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_) => return Err(SessionError::Timeout(bound)),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if !err.retryable() || left.is_zero() {
                return Err(err);
            }
            tokio::time::sleep(backoff.min(left)).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Opens a session: hello, then waits for `SessionAccepted`.
    pub async fn open(&self, hello: &SupervisorHello) -> Result<Session> {
        let (tx, rx) = mpsc::channel(8);
        let hello_msg = SupervisorMessage {
            payload: Some(supervisor_message::Payload::Hello(hello.clone())),
        };
        tx.send(hello_msg).await.map_err(|_| SessionError::Closed)?;
        let opening = async {
            let mut client = self.client().await?;
            let mut inbound = client
                .connect_supervisor(self.request(ReceiverStream::new(rx)))
                .await
                .map_err(SessionError::Status)?
                .into_inner();
            loop {
                match inbound.message().await.map_err(SessionError::Status)? {
                    None => return Err(SessionError::Closed),
                    Some(m) => match m.payload {
                        Some(gateway_message::Payload::SessionAccepted(a)) => {
                            let heartbeat = match a.heartbeat_interval_secs {
                                0 => DEFAULT_HEARTBEAT,
                                n => Duration::from_secs(n.into()),
                            };
                            return Ok((inbound, heartbeat, a.session_id));
                        }
                        Some(gateway_message::Payload::SessionRejected(r)) => {
                            return Err(SessionError::Rejected(r.reason))
                        }
                        _ => continue,
                    },
                }
            }
        };
        let (inbound, heartbeat, session_id) =
            tokio::time::timeout(CONNECT_TIMEOUT + ACCEPT_TIMEOUT, opening)
                .await
                .map_err(|_| SessionError::Timeout(CONNECT_TIMEOUT + ACCEPT_TIMEOUT))??;
        Ok(Session {
            tx,
            inbound,
            heartbeat,
            session_id,
        })
    }

    /// Holds sessions for as long as the returned task runs: the first attempts go on until
    /// `first_bound`, and `first` learns how they ended; after that, every lost session is
    /// reopened with bounded exponential backoff (the gateway may restart).
    pub async fn maintain(
        &self,
        hello: SupervisorHello,
        first_bound: Duration,
        first: oneshot::Sender<Result<()>>,
    ) {
        let start = Instant::now();
        let mut first = Some(first);
        let mut backoff = BACKOFF_MIN;
        loop {
            // While the first session is pending, no attempt may outlast its bound.
            let attempt = match first.is_some() {
                true => {
                    let left = first_bound.saturating_sub(start.elapsed()).max(BACKOFF_MIN);
                    tokio::time::timeout(left, self.open(&hello))
                        .await
                        .unwrap_or(Err(SessionError::Timeout(first_bound)))
                }
                false => self.open(&hello).await,
            };
            match attempt {
                Ok(session) => {
                    tracing::info!(session_id = %session.session_id, heartbeat = ?session.heartbeat, "gateway session accepted");
                    if let Some(tx) = first.take() {
                        let _ = tx.send(Ok(()));
                    }
                    backoff = BACKOFF_MIN;
                    let ended = session.hold().await;
                    tracing::warn!("gateway session lost ({ended}); reconnecting");
                }
                Err(e) => {
                    let left = first_bound.saturating_sub(start.elapsed());
                    if first.is_some() && (!e.retryable() || left.is_zero()) {
                        if let Some(tx) = first.take() {
                            let _ = tx.send(Err(e));
                        }
                        return;
                    }
                    if first.is_some() {
                        // Keep trying until the first session's bound, not past it.
                        backoff = backoff.min(left);
                    }
                    tracing::warn!("gateway session: {e}; retrying in {backoff:?}");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// A live session.
pub struct Session {
    tx: mpsc::Sender<SupervisorMessage>,
    inbound: Streaming<openshell_proto::v1::GatewayMessage>,
    heartbeat: Duration,
    session_id: String,
}

impl Session {
    /// Sends heartbeats until the stream ends; returns why it ended.
    pub async fn hold(mut self) -> SessionError {
        let mut tick = tokio::time::interval(self.heartbeat);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let beat = SupervisorMessage { payload: Some(supervisor_message::Payload::Heartbeat(SupervisorHeartbeat {})) };
                    if self.tx.send(beat).await.is_err() {
                        return SessionError::Closed;
                    }
                }
                msg = self.inbound.message() => match msg {
                    Ok(Some(_)) => continue,
                    Ok(None) => return SessionError::Closed,
                    Err(status) => return SessionError::Status(status),
                },
            }
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
