//! A scripted OpenShell gateway for the CLI's own tests (a test double, not the reference gateway).
//!
//! `CreateSandbox` stores a Provisioning sandbox; `WatchSandbox` plays the script registered for
//! the sandbox's image, then closes, hangs or fails the stream; `GetSandbox` answers the stored
//! sandbox (after a watch: the script's final state); unknown names get `NotFound`. Every
//! request is recorded for assertions. It serves on 127.0.0.1:0 from its own runtime, so tests
//! can run the real `openshell` binary synchronously.

#![allow(dead_code)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use openshell_proto::datamodel::v1::ObjectMeta;
use openshell_proto::v1::open_shell_server::{OpenShell, OpenShellServer};
use openshell_proto::v1::sandbox_stream_event::Payload;
use openshell_proto::v1::*;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// How a scripted watch stream ends after its events.
#[derive(Clone)]
pub enum End {
    /// The stream closes normally.
    Close,
    /// The stream stays open and silent.
    Hang,
    /// The stream ends with this error.
    Fail(Status),
}

/// A watch script: events, then an end, then what GetSandbox answers.
#[derive(Clone)]
pub struct Script {
    pub events: Vec<(SandboxPhase, &'static str, String)>,
    pub end: End,
    /// The state GetSandbox reports once the watch started; the last event when `None`.
    pub final_state: Option<(SandboxPhase, &'static str, String)>,
    pub exit_code: Option<i32>,
}

/// Recorded requests.
#[derive(Default)]
pub struct Recorded {
    pub created: Vec<CreateSandboxRequest>,
    pub watched: Vec<WatchSandboxRequest>,
    pub selectors: Vec<String>,
    pub deleted: Vec<String>,
}

#[derive(Default)]
pub struct State {
    scripts: HashMap<String, Script>,
    store: Mutex<HashMap<String, Sandbox>>,
    pub recorded: Mutex<Recorded>,
}

pub fn sandbox(
    name: &str,
    image: &str,
    phase: SandboxPhase,
    reason: &str,
    message: &str,
    exit_code: Option<i32>,
) -> Sandbox {
    Sandbox {
        metadata: Some(ObjectMeta {
            id: format!("id-{name}"),
            name: name.into(),
            created_at_ms: 1_700_000_000_000,
            labels: [("team".to_string(), "a".to_string())].into(),
            resource_version: 1,
            ..Default::default()
        }),
        spec: Some(SandboxSpec {
            template: Some(SandboxTemplate {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: Some(SandboxStatus {
            phase: phase as i32,
            exit_code,
            conditions: vec![SandboxCondition {
                r#type: "Ready".into(),
                status: if phase == SandboxPhase::Ready {
                    "True"
                } else {
                    "False"
                }
                .into(),
                reason: reason.into(),
                message: message.into(),
                last_transition_time: "2026-11-23T10:00:00Z".into(),
            }],
            ..Default::default()
        }),
    }
}

fn image_of(sb: &Sandbox) -> String {
    sb.spec
        .as_ref()
        .and_then(|s| s.template.as_ref())
        .map(|t| t.image.clone())
        .unwrap_or_default()
}

#[tonic::async_trait]
impl OpenShell for State {
    async fn create_sandbox(
        &self,
        request: Request<CreateSandboxRequest>,
    ) -> Result<Response<SandboxResponse>, Status> {
        let req = request.into_inner();
        self.recorded.lock().unwrap().created.push(req.clone());
        let mut store = self.store.lock().unwrap();
        if store.contains_key(&req.name) {
            return Err(Status::already_exists(format!(
                "sandbox {} already exists",
                req.name
            )));
        }
        let image = req
            .spec
            .and_then(|s| s.template)
            .map(|t| t.image)
            .unwrap_or_default();
        let sb = sandbox(
            &req.name,
            &image,
            SandboxPhase::Provisioning,
            "Starting",
            "",
            None,
        );
        store.insert(req.name.clone(), sb.clone());
        Ok(Response::new(SandboxResponse { sandbox: Some(sb) }))
    }

    async fn get_sandbox(
        &self,
        request: Request<GetSandboxRequest>,
    ) -> Result<Response<SandboxResponse>, Status> {
        let name = request.into_inner().name;
        match self.store.lock().unwrap().get(&name) {
            Some(sb) => Ok(Response::new(SandboxResponse {
                sandbox: Some(sb.clone()),
            })),
            None => Err(Status::not_found(format!("no sandbox named {name}"))),
        }
    }

    async fn list_sandboxes(
        &self,
        request: Request<ListSandboxesRequest>,
    ) -> Result<Response<ListSandboxesResponse>, Status> {
        let selector = request.into_inner().label_selector;
        self.recorded.lock().unwrap().selectors.push(selector);
        let mut sandboxes: Vec<Sandbox> = self.store.lock().unwrap().values().cloned().collect();
        sandboxes.sort_by_key(|s| s.metadata.as_ref().map(|m| m.name.clone()));
        Ok(Response::new(ListSandboxesResponse { sandboxes }))
    }

    async fn delete_sandbox(
        &self,
        request: Request<DeleteSandboxRequest>,
    ) -> Result<Response<DeleteSandboxResponse>, Status> {
        let name = request.into_inner().name;
        self.recorded.lock().unwrap().deleted.push(name.clone());
        match self.store.lock().unwrap().remove(&name) {
            Some(_) => Ok(Response::new(DeleteSandboxResponse { deleted: true })),
            None => Err(Status::not_found(format!("no sandbox named {name}"))),
        }
    }

    type WatchSandboxStream = Boxed<SandboxStreamEvent>;

    async fn watch_sandbox(
        &self,
        request: Request<WatchSandboxRequest>,
    ) -> Result<Response<Self::WatchSandboxStream>, Status> {
        let req = request.into_inner();
        self.recorded.lock().unwrap().watched.push(req.clone());
        let mut store = self.store.lock().unwrap();
        let Some((name, current)) = store
            .iter()
            .find(|(_, sb)| {
                sb.metadata
                    .as_ref()
                    .is_some_and(|m| m.id == req.id || m.name == req.id)
            })
            .map(|(n, sb)| (n.clone(), sb.clone()))
        else {
            return Err(Status::not_found(format!("no sandbox {}", req.id)));
        };
        let image = image_of(&current);
        let script = self.scripts.get(&image).cloned().unwrap_or(Script {
            events: vec![],
            end: End::Close,
            final_state: None,
            exit_code: None,
        });
        let events: Vec<Sandbox> = script
            .events
            .iter()
            .enumerate()
            .map(|(i, (phase, reason, message))| {
                let code = if i + 1 == script.events.len() {
                    script.exit_code
                } else {
                    None
                };
                let mut sb = sandbox(&name, &image, *phase, reason, message, code);
                sb.metadata.as_mut().unwrap().resource_version = i as u64 + 1;
                sb
            })
            .collect();
        let final_sb = match &script.final_state {
            Some((phase, reason, message)) => {
                sandbox(&name, &image, *phase, reason, message, script.exit_code)
            }
            None => events.last().cloned().unwrap_or(current),
        };
        store.insert(name, final_sb);
        let items = events.into_iter().map(|sb| {
            Ok(SandboxStreamEvent {
                payload: Some(Payload::Sandbox(sb)),
            })
        });
        let head = tokio_stream::iter(items.collect::<Vec<_>>());
        let stream: Self::WatchSandboxStream = match script.end {
            End::Close => Box::pin(head),
            End::Hang => Box::pin(head.chain(tokio_stream::pending())),
            End::Fail(status) => Box::pin(head.chain(tokio_stream::once(Err(status)))),
        };
        Ok(Response::new(stream))
    }

    type ConnectSupervisorStream = Boxed<GatewayMessage>;

    async fn connect_supervisor(
        &self,
        _request: Request<Streaming<SupervisorMessage>>,
    ) -> Result<Response<Self::ConnectSupervisorStream>, Status> {
        Err(Status::unimplemented("not in the CLI's test double"))
    }

    async fn report_main_process_exit(
        &self,
        _request: Request<ReportMainProcessExitRequest>,
    ) -> Result<Response<ReportMainProcessExitResponse>, Status> {
        Err(Status::unimplemented("not in the CLI's test double"))
    }

    async fn report_supervisor_error(
        &self,
        _request: Request<ReportSupervisorErrorRequest>,
    ) -> Result<Response<ReportSupervisorErrorResponse>, Status> {
        Err(Status::unimplemented("not in the CLI's test double"))
    }
}

/// A running scripted gateway; stops when dropped.
pub struct TestGateway {
    pub url: String,
    pub state: Arc<State>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// Starts a scripted gateway with `scripts` (by image) and `preset` sandboxes in its store.
pub fn start(scripts: Vec<(&str, Script)>, preset: Vec<Sandbox>) -> TestGateway {
    let state = Arc::new(State {
        scripts: scripts
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        store: Mutex::new(
            preset
                .into_iter()
                .map(|sb| (sb.metadata.as_ref().unwrap().name.clone(), sb))
                .collect(),
        ),
        recorded: Mutex::default(),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("test runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    let service = OpenShellServer::from_arc(state.clone());
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    TestGateway {
        url: format!("http://{addr}"),
        state,
        runtime: Some(runtime),
    }
}

/// The `openshell` binary with a clean environment, pointed at `url`.
pub fn openshell(url: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_openshell"));
    cmd.env_remove("OPENSHELL_GATEWAY")
        .env_remove("OPENSHELL_PROVISION_TIMEOUT")
        .arg("--gateway")
        .arg(url);
    cmd
}

/// A URL where nothing listens: a port bound and released again.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    format!("http://{addr}")
}
