//! The `openshell-gateway` process itself: first line, SIGTERM, and a restart that keeps an Error
//! (process driver, real supervisor, real SQLite file). Needs root and the workspace's binaries
//! (`cargo build --workspace`), as ci/test.sh provides.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    sandbox_stream_event, CreateSandboxRequest, GetSandboxRequest, SandboxPhase, SandboxSpec,
    SandboxTemplate, WatchSandboxRequest,
};

fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_openshell-gateway"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn fixture_ref(name: &str) -> String {
    let dir = bin_dir();
    let inputs = openshell_fixtures::Inputs::beside(&dir);
    for path in [&inputs.supervisor, &inputs.probe] {
        assert!(
            path.exists(),
            "{} is missing: run `cargo build --workspace` first",
            path.display()
        );
    }
    let catalog = openshell_fixtures::Catalog::load_default().unwrap();
    let hash =
        openshell_fixtures::content_hash(&catalog, catalog.get(name).unwrap(), &inputs).unwrap();
    openshell_fixtures::image_ref(name, &hash)
}

struct Gateway {
    child: Child,
    endpoint: String,
}

fn start(state: &std::path::Path) -> Gateway {
    let mut child = Command::new(env!("CARGO_BIN_EXE_openshell-gateway"))
        .args([
            "--driver",
            "process",
            "--listen",
            "127.0.0.1:0",
            "--state-dir",
        ])
        .arg(state)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("openshell-gateway listening on ")
        .unwrap_or_else(|| panic!("first line: {line:?}"));
    Gateway {
        endpoint: format!("http://{addr}"),
        child,
    }
}

fn sigterm_and_wait(mut gw: Gateway) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(gw.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    loop {
        if let Some(status) = gw.child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "gateway ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn sigterm_stops_the_gateway_cleanly_and_a_restart_keeps_the_error() {
    let state = tempfile::tempdir().unwrap();
    let image = fixture_ref("stale-policy");
    let gw = start(state.path());
    let mut client = OpenShellClient::connect(gw.endpoint.clone()).await.unwrap();
    let request = CreateSandboxRequest {
        name: "stale".into(),
        spec: Some(SandboxSpec {
            template: Some(SandboxTemplate {
                image,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    client.create_sandbox(request).await.unwrap();
    let watch = WatchSandboxRequest {
        id: "stale".into(),
        follow_status: true,
        stop_on_terminal: true,
        ..Default::default()
    };
    let mut stream = client.watch_sandbox(watch).await.unwrap().into_inner();
    let mut last = None;
    while let Some(event) = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .unwrap()
        .unwrap()
    {
        if let Some(sandbox_stream_event::Payload::Sandbox(sb)) = event.payload {
            last = Some(sb);
        }
    }
    let before = last.expect("at least one snapshot");
    assert_eq!(before.status.as_ref().unwrap().phase(), SandboxPhase::Error);
    drop(client);

    let (status, took) = sigterm_and_wait(gw);
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");

    let gw = start(state.path());
    let mut client = OpenShellClient::connect(gw.endpoint.clone()).await.unwrap();
    let after = client
        .get_sandbox(GetSandboxRequest {
            name: "stale".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = after.into_inner().sandbox.unwrap();
    assert_eq!(
        after.status, before.status,
        "phase and conditions survive the restart"
    );
    let message = &after.status.as_ref().unwrap().conditions[0].message;
    assert!(
        message.starts_with("policy: ") && message.contains("inference"),
        "{message}"
    );
    sigterm_and_wait(gw);
}
