//! The `OpenShell` gRPC service: request decoding, credentials, and streams.
//!
//! Every state change is delegated to the [`Lifecycle`] core; errors become `tonic::Status`
//! only through `From<GatewayError>` (src/error.rs).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use openshell_proto::v1::open_shell_server::OpenShell;
use openshell_proto::v1::{
    gateway_message, sandbox_stream_event, supervisor_message, CreateSandboxRequest,
    DeleteSandboxRequest, DeleteSandboxResponse, GatewayMessage, GetSandboxRequest,
    ListSandboxesRequest, ListSandboxesResponse, ReportMainProcessExitRequest,
    ReportMainProcessExitResponse, ReportSupervisorErrorRequest, ReportSupervisorErrorResponse,
    SandboxPhase, SandboxResponse, SandboxStreamEvent, SessionAccepted, SessionRejected,
    SupervisorMessage, SupervisorStartupStage, WatchSandboxRequest,
};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::bearer_token;
use crate::bus::BusEvent;
use crate::error::GatewayError;
use crate::lifecycle::Lifecycle;
use crate::session;
use crate::transitions::phase;

/// How long a supervisor has to send its hello after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

type EventStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The service, a thin layer over the core.
pub struct GatewayService {
    core: Arc<Lifecycle>,
    /// Turns true when the gateway shuts down: long-lived streams end.
    stopping: watch::Receiver<bool>,
}

impl GatewayService {
    /// A service over `core`.
    pub fn new(core: Arc<Lifecycle>, stopping: watch::Receiver<bool>) -> GatewayService {
        GatewayService { core, stopping }
    }
}

fn ends_watch(sandbox: &openshell_proto::v1::Sandbox) -> bool {
    matches!(phase(sandbox), SandboxPhase::Ready | SandboxPhase::Error)
}

#[tonic::async_trait]
impl OpenShell for GatewayService {
    async fn create_sandbox(
        &self,
        request: Request<CreateSandboxRequest>,
    ) -> Result<Response<SandboxResponse>, Status> {
        let sandbox = self.core.create(request.into_inner()).await?;
        Ok(Response::new(SandboxResponse {
            sandbox: Some(sandbox),
        }))
    }

    async fn get_sandbox(
        &self,
        request: Request<GetSandboxRequest>,
    ) -> Result<Response<SandboxResponse>, Status> {
        let sandbox = self.core.get(&request.into_inner().name)?;
        Ok(Response::new(SandboxResponse {
            sandbox: Some(sandbox),
        }))
    }

    async fn list_sandboxes(
        &self,
        request: Request<ListSandboxesRequest>,
    ) -> Result<Response<ListSandboxesResponse>, Status> {
        let r = request.into_inner();
        let sandboxes = self.core.list(&r.label_selector, r.limit, r.offset)?;
        Ok(Response::new(ListSandboxesResponse { sandboxes }))
    }

    async fn delete_sandbox(
        &self,
        request: Request<DeleteSandboxRequest>,
    ) -> Result<Response<DeleteSandboxResponse>, Status> {
        let deleted = self.core.delete(&request.into_inner().name).await?;
        Ok(Response::new(DeleteSandboxResponse { deleted }))
    }

    type WatchSandboxStream = EventStream<SandboxStreamEvent>;

    async fn watch_sandbox(
        &self,
        request: Request<WatchSandboxRequest>,
    ) -> Result<Response<Self::WatchSandboxStream>, Status> {
        let r = request.into_inner();
        let sub = self.core.subscribe(&r.id, r.log_tail_lines as usize)?;
        let (follow_status, follow_logs, stop) =
            (r.follow_status, r.follow_logs, r.stop_on_terminal);
        let mut stopping = self.stopping.clone();
        let stream = async_stream::try_stream! {
            use sandbox_stream_event::Payload;
            let mut events = sub.events;
            let stop = stop && !crate::mutants::active("watch-ignores-stop");
            let first_ends = stop && ends_watch(&sub.snapshot);
            if !crate::mutants::active("watch-no-snapshot") {
                yield SandboxStreamEvent { payload: Some(Payload::Sandbox(sub.snapshot)) };
            }
            if follow_logs {
                for line in sub.tail {
                    yield SandboxStreamEvent { payload: Some(Payload::Log((*line).clone())) };
                }
            }
            if first_ends || !(follow_status || follow_logs) {
                return;
            }
            loop {
                let event = tokio::select! {
                    event = events.recv() => event,
                    _ = session::stopped(&mut stopping) => return,
                };
                match event {
                    Ok(BusEvent::Snapshot(sandbox)) => {
                        let ends = stop && ends_watch(&sandbox);
                        if follow_status {
                            yield SandboxStreamEvent { payload: Some(Payload::Sandbox((*sandbox).clone())) };
                        }
                        if ends {
                            return;
                        }
                    }
                    Ok(BusEvent::Log(line)) => {
                        if follow_logs {
                            yield SandboxStreamEvent { payload: Some(Payload::Log((*line).clone())) };
                        }
                    }
                    Ok(BusEvent::Removed) | Err(broadcast::error::RecvError::Closed) => return,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        Err(Status::resource_exhausted(format!(
                            "watch consumer fell {n} events behind and the stream was ended; watch again to resume from a fresh snapshot"
                        )))?;
                    }
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    type ConnectSupervisorStream = EventStream<GatewayMessage>;

    async fn connect_supervisor(
        &self,
        request: Request<Streaming<SupervisorMessage>>,
    ) -> Result<Response<Self::ConnectSupervisorStream>, Status> {
        let token = bearer_token(request.metadata()).ok_or(GatewayError::Unauthenticated)?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| {
                Status::deadline_exceeded("no hello within 10 s of opening the session")
            })??;
        let hello = match first.and_then(|m| m.payload) {
            Some(supervisor_message::Payload::Hello(hello)) => hello,
            _ => {
                return Err(Status::invalid_argument(
                    "the first session message must be a hello",
                ))
            }
        };
        self.core.authenticate(Some(&token), &hello.sandbox_id)?;
        let (tx, rx) = mpsc::channel(16);
        match self
            .core
            .session_opened(&hello.sandbox_id, &hello.instance_id, &hello.degraded)
        {
            Ok(session) => {
                let accepted = SessionAccepted {
                    session_id: session.to_string(),
                    heartbeat_interval_secs: self.core.heartbeat_secs(),
                };
                let _ = tx
                    .send(Ok(GatewayMessage {
                        payload: Some(gateway_message::Payload::SessionAccepted(accepted)),
                    }))
                    .await;
                tokio::spawn(session::run(
                    Arc::clone(&self.core),
                    hello.sandbox_id,
                    session,
                    inbound,
                    tx,
                    self.stopping.clone(),
                ));
            }
            Err(GatewayError::FailedPrecondition(reason)) => {
                let rejected = SessionRejected { reason };
                let _ = tx
                    .send(Ok(GatewayMessage {
                        payload: Some(gateway_message::Payload::SessionRejected(rejected)),
                    }))
                    .await;
            }
            Err(e) => return Err(e.into()),
        }
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn report_main_process_exit(
        &self,
        request: Request<ReportMainProcessExitRequest>,
    ) -> Result<Response<ReportMainProcessExitResponse>, Status> {
        let token = bearer_token(request.metadata());
        let r = request.into_inner();
        self.core.authenticate(token.as_deref(), &r.sandbox_id)?;
        self.core.main_process_exited(&r.sandbox_id, r.exit_code)?;
        Ok(Response::new(ReportMainProcessExitResponse {}))
    }

    async fn report_supervisor_error(
        &self,
        request: Request<ReportSupervisorErrorRequest>,
    ) -> Result<Response<ReportSupervisorErrorResponse>, Status> {
        let token = bearer_token(request.metadata());
        let r = request.into_inner();
        self.core.authenticate(token.as_deref(), &r.sandbox_id)?;
        // A stage this gateway does not know (a newer supervisor's) is stored as `other`.
        let stage =
            SupervisorStartupStage::try_from(r.stage).unwrap_or(SupervisorStartupStage::Other);
        self.core.supervisor_error(
            &r.sandbox_id,
            openshell_proto::stage_name(stage),
            &r.message,
        )?;
        Ok(Response::new(ReportSupervisorErrorResponse {}))
    }
}
