//! The reference OpenShell gateway: the control plane a conformance run talks to.
//!
//! It keeps the public record of every sandbox and is the only writer of its phase and `Ready`
//! condition (seed 002): a compute driver reports backend facts, the supervisor opens a session
//! (`ConnectSupervisor`) or reports a fatal startup error (`ReportSupervisorError`, seed 000),
//! and the lifecycle core turns those into stored, published changes.
//!
//! Layout (data flows top to bottom):
//! - [`accept`]: accepted connections (with `TCP_NODELAY`); [`service`]: the `OpenShell` gRPC
//!   service; decodes requests, checks credentials.
//! - [`session`]: one live supervisor session (heartbeats, end detection).
//! - [`lifecycle`]: the core; the one write path (transition → store → publish).
//! - [`request`]: admission of a create request (validation, record, driver request).
//! - [`transitions`]: the phase machine as pure functions.
//! - [`store`]: SQLite persistence with per-change history; [`bus`]: the watch bus and log tails.
//! - [`auth`]: sandbox tokens; [`hygiene`]: what stored messages may contain; [`last_output`]:
//!   the backend's last lines in the message of a sandbox that died before any session.
//! - [`state_lock`]: one gateway per state directory; [`listen`]: loopback unless told otherwise.
//! - [`error`]: `GatewayError` and its single mapping to `tonic::Status`.
//! - [`mutants`]: deliberately broken behaviours behind the `mutants` feature (never default).
//!
//! The binary (`src/main.rs`) picks a driver (process, Docker or Kubernetes), binds, prints
//! `openshell-gateway listening on ADDR` and serves until SIGTERM.

pub mod accept;
pub mod auth;
pub mod bus;
pub mod error;
pub mod hygiene;
pub mod last_output;
pub mod lifecycle;
pub mod listen;
pub mod mutants;
pub mod request;
pub mod service;
pub mod session;
pub mod state_lock;
pub mod store;
pub mod transitions;

use std::future::Future;
use std::sync::Arc;

use openshell_proto::v1::open_shell_server::OpenShellServer;
use tokio::net::TcpListener;

pub use lifecycle::{CoreConfig, Lifecycle};

/// Serves the gRPC API on `listener` until `shutdown` resolves.
///
/// At shutdown, open supervisor sessions and watch streams are ended at once (they would
/// otherwise hold the graceful shutdown open); a session ended this way is not a disconnect, so
/// it demotes nothing: the next gateway start does that (`Lifecycle::start`).
pub async fn serve(
    core: Arc<Lifecycle>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let (stopping_tx, stopping) = tokio::sync::watch::channel(false);
    let incoming = accept::incoming(listener);
    tonic::transport::Server::builder()
        .add_service(OpenShellServer::new(service::GatewayService::new(
            core, stopping,
        )))
        .serve_with_incoming_shutdown(incoming, async move {
            shutdown.await;
            let _ = stopping_tx.send(true);
        })
        .await
}
