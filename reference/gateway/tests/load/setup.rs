//! Setting up a load run: connections and many sandboxes, created over the API.

use std::collections::HashMap;
use std::time::Duration;

use futures::{stream, StreamExt};
use openshell_proto::v1::open_shell_client::OpenShellClient;
use tonic::transport::{Channel, Endpoint};

use crate::common::{create_request, Gateway};

/// Creates in flight at once while setting up: enough to keep both cores busy, few enough that
/// the listen backlog and the store lock are not what the setup measures.
pub const SETUP_CONCURRENCY: usize = 32;

/// A fresh HTTP/2 connection to the gateway (one per simulated supervisor, as in a sandbox).
pub async fn connect(endpoint: &str) -> OpenShellClient<Channel> {
    let channel = Endpoint::from_shared(endpoint.to_string())
        .unwrap()
        .connect_timeout(Duration::from_secs(10))
        .connect()
        .await
        .unwrap_or_else(|e| panic!("connect to {endpoint}: {e}"));
    OpenShellClient::new(channel)
}

/// A sandbox as its supervisor knows it.
#[derive(Debug, Clone)]
pub struct Created {
    pub id: String,
    pub token: String,
}

/// Creates `names` through `CreateSandbox` over a few shared connections, then waits (bounded)
/// until the driver has been asked for every one, and returns what each supervisor would get.
pub async fn create_all(gw: &Gateway, names: &[String]) -> HashMap<String, Created> {
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(connect(&gw.endpoint).await);
    }
    stream::iter(names.iter().enumerate())
        .for_each_concurrent(SETUP_CONCURRENCY, |(i, name)| {
            let mut client = clients[i % clients.len()].clone();
            async move {
                client
                    .create_sandbox(create_request(name))
                    .await
                    .unwrap_or_else(|s| panic!("create {name}: {s}"));
            }
        })
        .await;
    // The driver's create runs after the API call returns (spawned by the core); wait for all.
    let wanted = names.len();
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let notified = gw.driver.changed.notified();
            if gw.driver.created.lock().unwrap().len() >= wanted {
                return;
            }
            notified.await;
        }
    })
    .await
    .expect("the driver was asked to create every sandbox within 60 s");
    let created = gw.driver.created.lock().unwrap();
    let by_name: HashMap<String, Created> = created
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                Created {
                    id: r.sandbox_id.clone(),
                    token: r.env["OPENSHELL_SANDBOX_TOKEN"].clone(),
                },
            )
        })
        .collect();
    assert!(names.iter().all(|n| by_name.contains_key(n)));
    by_name
}
