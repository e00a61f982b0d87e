//! Test harness: the real gateway (core, store, gRPC on 127.0.0.1) with a recording driver.
//!
//! The recording driver stands in for a compute backend so these tests can drive every event
//! order the lifecycle core must handle (sessions before driver snapshots, late driver updates
//! after Error, restarts). The real drivers run in the conformance lanes.
#![allow(dead_code)]

pub mod docker;
pub mod process;
pub mod proxy;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use openshell_driver::{ComputeDriver, DriverError, DriverEvent, EventSender, SandboxRequest};
use openshell_gateway::store::Store;
use openshell_gateway::{CoreConfig, Lifecycle};
use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    gateway_message, sandbox_stream_event, supervisor_message, CreateSandboxRequest,
    DegradedSubsystem, GatewayMessage, Sandbox, SandboxPhase, SandboxSpec, SandboxTemplate,
    SupervisorHello, SupervisorMessage, WatchSandboxRequest,
};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

pub const DEADLINE: Duration = Duration::from_secs(10);

/// A driver that records what it is asked and lets the test emit backend events.
#[derive(Default)]
pub struct RecordingDriver {
    pub created: Mutex<Vec<SandboxRequest>>,
    pub deleted: Mutex<Vec<String>>,
    pub fail_create: Mutex<Option<DriverError>>,
    pub exists: Mutex<bool>,
    pub changed: Notify,
    /// When set, `create` waits for this before it returns (a slow backend).
    pub create_gate: Mutex<Option<Arc<Notify>>>,
    /// Driver calls in the order they completed: "create <name>", "delete <id>".
    pub log: Mutex<Vec<String>>,
}

#[async_trait]
impl ComputeDriver for RecordingDriver {
    fn name(&self) -> &'static str {
        "recording"
    }
    async fn create(&self, request: SandboxRequest) -> openshell_driver::Result<()> {
        let name = request.name.clone();
        self.created.lock().unwrap().push(request);
        self.changed.notify_waiters();
        let gate = self.create_gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.notified().await;
        }
        self.log.lock().unwrap().push(format!("create {name}"));
        match self.fail_create.lock().unwrap().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
    async fn delete(&self, sandbox_id: &str) -> openshell_driver::Result<bool> {
        self.log
            .lock()
            .unwrap()
            .push(format!("delete {sandbox_id}"));
        self.deleted.lock().unwrap().push(sandbox_id.to_string());
        self.changed.notify_waiters();
        Ok(true)
    }
    async fn exists(&self, _sandbox_id: &str) -> openshell_driver::Result<bool> {
        Ok(*self.exists.lock().unwrap())
    }
}

impl RecordingDriver {
    /// Waits (with the deadline) until the driver was asked to create `name`; returns the request.
    pub async fn created_request(&self, name: &str) -> SandboxRequest {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let notified = self.changed.notified();
                if let Some(r) = self.created.lock().unwrap().iter().find(|r| r.name == name) {
                    return r.clone();
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("driver never asked to create {name}"))
    }

    /// Waits (with the deadline) until the driver was asked to delete `id`.
    pub async fn wait_deleted(&self, id: &str) {
        tokio::time::timeout(DEADLINE, async {
            loop {
                let notified = self.changed.notified();
                if self.deleted.lock().unwrap().iter().any(|d| d == id) {
                    return;
                }
                notified.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("driver never asked to delete {id}"))
    }
}

/// A running gateway.
pub struct Gateway {
    pub endpoint: String,
    pub core: Arc<Lifecycle>,
    pub driver: Arc<RecordingDriver>,
    pub events: EventSender,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Gateway {
    pub async fn start(db: &str, heartbeat_secs: u32) -> Gateway {
        Gateway::start_with(db, heartbeat_secs, Arc::new(RecordingDriver::default())).await
    }

    pub async fn start_with(
        db: &str,
        heartbeat_secs: u32,
        driver: Arc<RecordingDriver>,
    ) -> Gateway {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let (events, receiver) = mpsc::unbounded_channel();
        let core = Lifecycle::new(
            Store::open(db).unwrap(),
            driver.clone(),
            CoreConfig {
                endpoint: endpoint.clone(),
                heartbeat_secs,
            },
        );
        core.start(receiver).await.unwrap();
        let (stop, stopped) = oneshot::channel();
        let server = tokio::spawn({
            let core = core.clone();
            async move {
                openshell_gateway::serve(core, listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
            }
        });
        Gateway {
            endpoint,
            core,
            driver,
            events,
            stop: Some(stop),
            server: Some(server),
        }
    }

    pub async fn client(&self) -> OpenShellClient<Channel> {
        OpenShellClient::connect(self.endpoint.clone())
            .await
            .unwrap()
    }

    /// Stops serving (open sessions are cut) and waits for the server task.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server.take().unwrap()).await;
    }

    /// Creates a sandbox and returns (id, token) as the driver received them.
    pub async fn create(&self, name: &str) -> (String, String) {
        let mut client = self.client().await;
        client.create_sandbox(create_request(name)).await.unwrap();
        let request = self.driver.created_request(name).await;
        (
            request.sandbox_id.clone(),
            request.env["OPENSHELL_SANDBOX_TOKEN"].clone(),
        )
    }
}

pub fn create_request(name: &str) -> CreateSandboxRequest {
    CreateSandboxRequest {
        name: name.into(),
        spec: Some(SandboxSpec {
            template: Some(SandboxTemplate {
                image: "openshell-fixture/good:000000000000".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A supervisor session held open by the test; dropping it ends the stream.
pub struct Session {
    pub outbound: mpsc::Sender<SupervisorMessage>,
    pub inbound: Streaming<GatewayMessage>,
    pub first: GatewayMessage,
}

pub async fn open_session(
    gw: &Gateway,
    id: &str,
    token: &str,
    instance: &str,
) -> Result<Session, tonic::Status> {
    open_session_degraded(gw, id, token, instance, vec![]).await
}

pub async fn open_session_degraded(
    gw: &Gateway,
    id: &str,
    token: &str,
    instance: &str,
    degraded: Vec<DegradedSubsystem>,
) -> Result<Session, tonic::Status> {
    let (outbound, rx) = mpsc::channel(8);
    let hello = SupervisorHello {
        sandbox_id: id.into(),
        instance_id: instance.into(),
        degraded,
    };
    outbound
        .send(SupervisorMessage {
            payload: Some(supervisor_message::Payload::Hello(hello)),
        })
        .await
        .unwrap();
    let mut client = gw.client().await;
    let mut inbound = client
        .connect_supervisor(with_token(ReceiverStream::new(rx), token))
        .await?
        .into_inner();
    let first = inbound
        .message()
        .await?
        .expect("the gateway answers the hello");
    Ok(Session {
        outbound,
        inbound,
        first,
    })
}

impl Session {
    pub fn accepted(&self) -> bool {
        matches!(
            self.first.payload,
            Some(gateway_message::Payload::SessionAccepted(_))
        )
    }
}

/// A watch stream of snapshots.
pub struct Watch {
    stream: Streaming<openshell_proto::v1::SandboxStreamEvent>,
    pub seen: Vec<Sandbox>,
}

pub async fn watch(gw: &Gateway, id: &str) -> Watch {
    let mut client = gw.client().await;
    let request = WatchSandboxRequest {
        id: id.into(),
        follow_status: true,
        ..Default::default()
    };
    Watch {
        stream: client.watch_sandbox(request).await.unwrap().into_inner(),
        seen: Vec::new(),
    }
}

impl Watch {
    /// The next snapshot, within the deadline.
    pub async fn next(&mut self) -> Option<Sandbox> {
        loop {
            let event = tokio::time::timeout(DEADLINE, self.stream.message())
                .await
                .expect("watch event within the deadline")
                .expect("watch stream healthy")?;
            if let Some(sandbox_stream_event::Payload::Sandbox(sb)) = event.payload {
                self.seen.push(sb.clone());
                return Some(sb);
            }
        }
    }

    /// Reads snapshots until `pred` holds; panics with the history at the deadline.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&Sandbox) -> bool) -> Sandbox {
        loop {
            match self.next().await {
                Some(sb) if pred(&sb) => return sb,
                Some(_) => continue,
                None => panic!("watch ended before {what}; saw {:?}", self.summary()),
            }
        }
    }

    pub fn summary(&self) -> Vec<(u64, String, String)> {
        self.seen
            .iter()
            .map(|sb| {
                let ready = ready(sb);
                (
                    sb.metadata.as_ref().unwrap().resource_version,
                    phase(sb).as_str_name().to_string(),
                    ready.1,
                )
            })
            .collect()
    }
}

pub fn phase(sb: &Sandbox) -> SandboxPhase {
    sb.status.as_ref().unwrap().phase()
}

/// (status, reason, message) of the Ready condition.
pub fn ready(sb: &Sandbox) -> (String, String, String) {
    let c = sb
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready")
        .unwrap();
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

pub fn is(p: SandboxPhase, reason: &'static str) -> impl Fn(&Sandbox) -> bool {
    move |sb| phase(sb) == p && ready(sb).1 == reason
}

pub fn driver_event(gw: &Gateway, event: DriverEvent) {
    gw.events.send(event).unwrap();
}
