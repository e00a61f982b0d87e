//! A recording test double of the gateway's supervisor-facing RPCs on 127.0.0.1:0.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openshell_proto::v1::open_shell_server::{OpenShell, OpenShellServer};
use openshell_proto::v1::*;
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// What the supervisor did, with the `authorization` metadata it sent.
#[derive(Debug, Clone)]
pub enum Event {
    Hello {
        hello: SupervisorHello,
        auth: String,
    },
    Heartbeat,
    Error {
        report: ReportSupervisorErrorRequest,
        auth: String,
    },
    Exit {
        report: ReportMainProcessExitRequest,
        auth: String,
    },
}

struct Service {
    events: mpsc::UnboundedSender<Event>,
    heartbeat_secs: u32,
    /// End this many sessions after their first heartbeat (to make the supervisor reconnect).
    sessions_to_end: AtomicUsize,
}

fn auth<T>(req: &Request<T>) -> String {
    req.metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl OpenShell for Service {
    async fn create_sandbox(
        &self,
        _: Request<CreateSandboxRequest>,
    ) -> Result<Response<SandboxResponse>, Status> {
        Err(Status::unimplemented("test double"))
    }
    async fn get_sandbox(
        &self,
        _: Request<GetSandboxRequest>,
    ) -> Result<Response<SandboxResponse>, Status> {
        Err(Status::unimplemented("test double"))
    }
    async fn list_sandboxes(
        &self,
        _: Request<ListSandboxesRequest>,
    ) -> Result<Response<ListSandboxesResponse>, Status> {
        Err(Status::unimplemented("test double"))
    }
    async fn delete_sandbox(
        &self,
        _: Request<DeleteSandboxRequest>,
    ) -> Result<Response<DeleteSandboxResponse>, Status> {
        Err(Status::unimplemented("test double"))
    }
    type WatchSandboxStream = BoxStream<SandboxStreamEvent>;
    async fn watch_sandbox(
        &self,
        _: Request<WatchSandboxRequest>,
    ) -> Result<Response<Self::WatchSandboxStream>, Status> {
        Err(Status::unimplemented("test double"))
    }
    type ConnectSupervisorStream = BoxStream<GatewayMessage>;
    async fn connect_supervisor(
        &self,
        request: Request<Streaming<SupervisorMessage>>,
    ) -> Result<Response<Self::ConnectSupervisorStream>, Status> {
        let auth = auth(&request);
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        let events = self.events.clone();
        let heartbeat_secs = self.heartbeat_secs;
        let end_this_one = self
            .sessions_to_end
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        tokio::spawn(async move {
            while let Ok(Some(msg)) = inbound.message().await {
                match msg.payload {
                    Some(supervisor_message::Payload::Hello(hello)) => {
                        let _ = events.send(Event::Hello {
                            hello,
                            auth: auth.clone(),
                        });
                        let accepted = SessionAccepted {
                            session_id: "s-1".into(),
                            heartbeat_interval_secs: heartbeat_secs,
                        };
                        let msg = GatewayMessage {
                            payload: Some(gateway_message::Payload::SessionAccepted(accepted)),
                        };
                        if tx.send(Ok(msg)).await.is_err() {
                            return;
                        }
                    }
                    Some(supervisor_message::Payload::Heartbeat(_)) => {
                        let _ = events.send(Event::Heartbeat);
                        if end_this_one {
                            return; // drops `tx`: the response stream ends
                        }
                    }
                    None => {}
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
    async fn report_main_process_exit(
        &self,
        request: Request<ReportMainProcessExitRequest>,
    ) -> Result<Response<ReportMainProcessExitResponse>, Status> {
        let auth = auth(&request);
        let _ = self.events.send(Event::Exit {
            report: request.into_inner(),
            auth,
        });
        Ok(Response::new(ReportMainProcessExitResponse {}))
    }
    async fn report_supervisor_error(
        &self,
        request: Request<ReportSupervisorErrorRequest>,
    ) -> Result<Response<ReportSupervisorErrorResponse>, Status> {
        let auth = auth(&request);
        let _ = self.events.send(Event::Error {
            report: request.into_inner(),
            auth,
        });
        Ok(Response::new(ReportSupervisorErrorResponse {}))
    }
}

/// The running double.
pub struct GatewayDouble {
    pub addr: SocketAddr,
    events: Mutex<mpsc::UnboundedReceiver<Event>>,
    _shutdown: oneshot::Sender<()>,
}

impl GatewayDouble {
    /// Starts the double announcing a 1 s heartbeat.
    pub async fn start() -> GatewayDouble {
        Self::start_with(1, 0).await
    }

    /// Starts the double; the first `sessions_to_end` sessions end after their first heartbeat.
    pub async fn start_with(heartbeat_secs: u32, sessions_to_end: usize) -> GatewayDouble {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let (events_tx, events) = mpsc::unbounded_channel();
        let (shutdown, stop) = oneshot::channel::<()>();
        let service = Service {
            events: events_tx,
            heartbeat_secs,
            sessions_to_end: AtomicUsize::new(sessions_to_end),
        };
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(OpenShellServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stop.await;
                }),
        );
        GatewayDouble {
            addr,
            events: Mutex::new(events),
            _shutdown: shutdown,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next recorded event, or None once `within` passed.
    pub async fn next(&self, within: Duration) -> Option<Event> {
        tokio::time::timeout(within, self.events.lock().await.recv())
            .await
            .ok()
            .flatten()
    }

    /// Every event recorded so far.
    pub async fn drain(&self) -> Vec<Event> {
        let mut out = Vec::new();
        let mut rx = self.events.lock().await;
        while let Ok(e) = rx.try_recv() {
            out.push(e);
        }
        out
    }

    /// Waits for the first event that `pick` accepts, skipping others (heartbeats); panics with
    /// what was seen when `within` passes.
    pub async fn expect<T>(
        &self,
        within: Duration,
        what: &str,
        mut pick: impl FnMut(&Event) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + within;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(e) => match pick(&e) {
                    Some(v) => return v,
                    None => seen.push(e),
                },
                None => panic!("no {what} within {within:?}; saw {seen:?}"),
            }
        }
    }
}

/// Keeps `Arc` imported for helpers that share the double.
pub type Shared = Arc<GatewayDouble>;
