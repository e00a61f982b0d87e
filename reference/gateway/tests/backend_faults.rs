//! Faults on real parts: the gateway killed and restarted on the same port and database with
//! sandboxes Provisioning, Ready and in Error (Docker lane); the container engine stopped
//! mid-run (a private dockerd of this test's own); and a sandbox whose top process dies before
//! any session, whose Error message then carries the backend's last output (process lane:
//! gateway unreachable; Docker lane: a vendor's supervisor that is not even an executable).
//!
//! The Docker tests run when the engine answers and the fixture images are built, and are
//! required when `OPENSHELL_REQUIRE_LANES` lists `docker`. Everything needs root.

mod common;

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use common::docker::{
    bin_dir, containers_labelled, docker, docker_lane_missing, fixture_ref, Destroys,
    PrivateDockerd,
};
use common::process::{state_args, GatewayProcess};
use common::proxy::Proxy;
use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    sandbox_stream_event, CreateSandboxRequest, DeleteSandboxRequest, GetSandboxRequest,
    ListSandboxesRequest, Sandbox, SandboxPhase, SandboxSpec, SandboxTemplate, WatchSandboxRequest,
};
use tonic::transport::Channel;

/// Far above what any step takes here; only guards against a hang.
const DEADLINE: Duration = Duration::from_secs(90);

type Client = OpenShellClient<Channel>;

fn request(name: &str, image: &str, env: &[(&str, &str)]) -> CreateSandboxRequest {
    CreateSandboxRequest {
        name: name.into(),
        spec: Some(SandboxSpec {
            environment: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>(),
            template: Some(SandboxTemplate {
                image: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn phase(sb: &Sandbox) -> SandboxPhase {
    sb.status.as_ref().unwrap().phase()
}

fn ready(sb: &Sandbox) -> (String, String) {
    let c = sb
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.r#type == "Ready")
        .unwrap();
    (c.reason.clone(), c.message.clone())
}

async fn get(client: &mut Client, name: &str) -> Sandbox {
    client
        .get_sandbox(GetSandboxRequest {
            name: name.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
}

/// Follows `name` until `pred` holds (the current record counts); panics at the deadline.
async fn until(
    client: &mut Client,
    name: &str,
    what: &str,
    pred: impl Fn(&Sandbox) -> bool,
) -> Sandbox {
    let watch = WatchSandboxRequest {
        id: name.into(),
        follow_status: true,
        ..Default::default()
    };
    let mut stream = client.watch_sandbox(watch).await.unwrap().into_inner();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(DEADLINE, async {
        while let Some(event) = stream.message().await.unwrap() {
            if let Some(sandbox_stream_event::Payload::Sandbox(sb)) = event.payload {
                seen.push((phase(&sb), ready(&sb).0));
                if pred(&sb) {
                    return Some(sb);
                }
            }
        }
        None
    })
    .await;
    match found {
        Ok(Some(sb)) => sb,
        _ => panic!("{name} never {what}; saw {seen:?}"),
    }
}

fn is_phase(p: SandboxPhase) -> impl Fn(&Sandbox) -> bool {
    move |sb| phase(sb) == p
}

async fn delete(client: &mut Client, name: &str) -> Result<bool, tonic::Status> {
    tokio::time::timeout(
        DEADLINE,
        client.delete_sandbox(DeleteSandboxRequest {
            name: name.into(),
            ..Default::default()
        }),
    )
    .await
    .expect("a delete answers")
    .map(|r| r.into_inner().deleted)
}

fn docker_gateway_args(state: &Path, listen: &str, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--driver", "docker", "--listen", listen]
        .iter()
        .map(Into::into)
        .collect();
    args.extend(state_args(state));
    args.extend(extra.iter().map(Into::into));
    args
}

/// The gateway id a database holds (every backend resource of that gateway carries it).
fn gateway_id(db: &Path) -> String {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row("SELECT value FROM meta WHERE key = 'gateway_id'", [], |r| {
            r.get(0)
        })
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_and_restart_on_the_same_port_and_database_keeps_every_sandbox_right() {
    if docker_lane_missing(&["good", "stale-policy"]).is_some() {
        return;
    }
    let (good, stale) = (fixture_ref("good"), fixture_ref("stale-policy"));
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("gateway.db");
    // Supervisors reach the gateway through a proxy the test can hold.
    let proxy = Proxy::start().await;
    let endpoint = format!("http://{}", proxy.addr);
    let first = GatewayProcess::start(docker_gateway_args(
        state.path(),
        "127.0.0.1:0",
        &["--endpoint", &endpoint],
    ))
    .unwrap();
    proxy.forward_to(first.addr.parse().unwrap());
    let mut client = first.client().await;
    let budget = [("OPENSHELL_GATEWAY_TIMEOUT", "120")];
    for (name, image) in [("ready", &good), ("doomed", &good), ("failed", &stale)] {
        client
            .create_sandbox(request(name, image, &budget))
            .await
            .unwrap();
    }
    until(&mut client, "ready", "Ready", is_phase(SandboxPhase::Ready)).await;
    let doomed = until(
        &mut client,
        "doomed",
        "Ready",
        is_phase(SandboxPhase::Ready),
    )
    .await;
    let failed = until(
        &mut client,
        "failed",
        "Error",
        is_phase(SandboxPhase::Error),
    )
    .await;
    // Provisioning, for as long as the test wants: its supervisor's connection is held.
    proxy.hold();
    let before = proxy.accepted();
    client
        .create_sandbox(request("late", &good, &budget))
        .await
        .unwrap();
    proxy.accepted_more_than(before).await;
    assert_eq!(
        phase(&get(&mut client, "late").await),
        SandboxPhase::Provisioning
    );
    drop(client);

    // The crash.
    let port = first.addr.clone();
    first.kill9();
    // While it is down, the operator removes one sandbox from the store by hand.
    let doomed_id = doomed.metadata.unwrap().id;
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute("DELETE FROM sandboxes WHERE id = ?1", [&doomed_id])
            .unwrap();
        conn.execute("DELETE FROM history WHERE sandbox_id = ?1", [&doomed_id])
            .unwrap();
    }
    let destroys = Destroys::watch(None);
    let second = GatewayProcess::start(docker_gateway_args(
        state.path(),
        &port,
        &["--endpoint", &endpoint],
    ))
    .expect("restart on the same port and database");
    assert_eq!(second.addr, port);
    proxy.release();
    let mut client = second.client().await;

    // Error keeps phase, reason and message.
    let after = get(&mut client, "failed").await;
    assert_eq!(phase(&after), SandboxPhase::Error);
    assert_eq!(
        ready(&after),
        ready(&failed),
        "the Error survives as it was"
    );
    // Ready ones reconnect and are Ready again; the Provisioning one finishes.
    until(
        &mut client,
        "ready",
        "Ready again",
        is_phase(SandboxPhase::Ready),
    )
    .await;
    let late = until(&mut client, "late", "Ready", is_phase(SandboxPhase::Ready)).await;
    assert_eq!(ready(&late).0, "SupervisorConnected");
    // The sandbox the store lost leaves no container.
    let doomed_container = format!("openshell-{doomed_id}");
    destroys
        .until_gone(vec![doomed_container.clone()], DEADLINE, || {
            containers_labelled(None, &format!("openshell.sandbox-id={doomed_id}"))
        })
        .unwrap_or_else(|left| panic!("still there: {left:?}\n{}", second.stderr()));
    assert!(!docker(None, &["inspect", &doomed_container]).0);

    // Cleanup, and nothing of this gateway is left.
    for name in ["ready", "late", "failed"] {
        delete(&mut client, name).await.unwrap();
    }
    let owner = format!("openshell.gateway-id={}", gateway_id(&db));
    assert_eq!(containers_labelled(None, &owner), Vec::<String>::new());
    drop(client);
    second.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_fails_creates_as_unavailable_at_once_and_is_reconciled_when_back() {
    if docker_lane_missing(&["good"]).is_some() {
        return;
    }
    let good = fixture_ref("good");
    let mut engine = PrivateDockerd::start();
    let host = engine.host();
    engine.load_from_shared(&good);
    let state = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(docker_gateway_args(
        state.path(),
        "127.0.0.1:0",
        &["--docker-host", &host],
    ))
    .unwrap();
    let mut client = gw.client().await;
    client
        .create_sandbox(request("before", &good, &[]))
        .await
        .unwrap();
    until(
        &mut client,
        "before",
        "Ready",
        is_phase(SandboxPhase::Ready),
    )
    .await;

    engine.stop();
    // A create now: answered, then Error BackendUnavailable within a few seconds.
    let asked = Instant::now();
    client
        .create_sandbox(request("during", &good, &[]))
        .await
        .unwrap();
    let during = until(
        &mut client,
        "during",
        "Error",
        is_phase(SandboxPhase::Error),
    )
    .await;
    let took = asked.elapsed();
    eprintln!(
        "engine down: create -> Error {:?} after {took:?}",
        ready(&during)
    );
    assert_eq!(
        ready(&during).0,
        "BackendUnavailable",
        "{:?}",
        ready(&during)
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    // Nothing hangs: reads answer, a delete answers (it cannot finish yet, and says so).
    let read = Instant::now();
    let listed = client
        .list_sandboxes(ListSandboxesRequest::default())
        .await
        .unwrap();
    assert_eq!(listed.into_inner().sandboxes.len(), 2);
    assert!(
        read.elapsed() < Duration::from_secs(2),
        "{:?}",
        read.elapsed()
    );
    let refused = delete(&mut client, "during").await;
    assert!(
        matches!(&refused, Err(s) if s.code() == tonic::Code::FailedPrecondition && s.message().contains("retry")),
        "{refused:?}"
    );
    // The sandbox that was running fails too (its engine is gone).
    let before = until(
        &mut client,
        "before",
        "Error",
        is_phase(SandboxPhase::Error),
    )
    .await;

    // The engine comes back: the failed sandbox's container is cleaned up without anyone asking.
    eprintln!(
        "engine down: the running sandbox -> {:?} after {:?}",
        ready(&before),
        asked.elapsed()
    );
    engine.run();
    let back = Instant::now();
    let destroys = Destroys::watch(Some(&host));
    let owner = format!(
        "openshell.gateway-id={}",
        gateway_id(&state.path().join("gateway.db"))
    );
    let leftover = containers_labelled(Some(&host), &owner);
    eprintln!("engine back: its containers of this gateway: {leftover:?}");
    destroys
        .until_gone(leftover, DEADLINE, || {
            containers_labelled(Some(&host), &owner)
        })
        .unwrap_or_else(|left| panic!("not reconciled: {left:?}\n{}", gw.stderr()));
    eprintln!("engine back: reconciled after {:?}", back.elapsed());
    for line in gw
        .stderr()
        .lines()
        .filter(|l| l.contains("cleanup") || l.contains("cleaned"))
    {
        eprintln!("gateway: {line}");
    }
    assert_eq!(delete(&mut client, "during").await.ok(), Some(true));
    delete(&mut client, "before").await.unwrap();
    assert_eq!(
        containers_labelled(Some(&host), &owner),
        Vec::<String>::new()
    );
    drop(client);
    gw.stop();
    engine.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_that_cannot_reach_its_gateway_shows_why_in_sandbox_get() {
    // Process lane: the gateway hands supervisors an endpoint where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let state = tempfile::tempdir().unwrap();
    let mut args: Vec<OsString> = ["--driver", "process", "--listen", "127.0.0.1:0"]
        .iter()
        .map(Into::into)
        .collect();
    args.extend(state_args(state.path()));
    args.push("--endpoint".into());
    args.push(format!("http://127.0.0.1:{port}").into());
    let gw = GatewayProcess::start(args).unwrap();
    let mut client = gw.client().await;
    client
        .create_sandbox(request(
            "lonely",
            &fixture_ref("good"),
            &[("OPENSHELL_GATEWAY_TIMEOUT", "2")],
        ))
        .await
        .unwrap();
    let sb = until(
        &mut client,
        "lonely",
        "Error",
        is_phase(SandboxPhase::Error),
    )
    .await;
    let (reason, message) = ready(&sb);
    assert_eq!(reason, "ProcessExited");
    assert!(
        message.contains("cannot connect to the gateway") && message.contains("onnection refused"),
        "{message}"
    );
    // What a user runs.
    let cli = bin_dir().join("openshell");
    let out = std::process::Command::new(&cli)
        .args(["--gateway", &gw.endpoint, "sandbox", "get", "lonely"])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (cargo build --workspace)", cli.display()));
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("cannot connect to the gateway"), "{shown}");
    delete(&mut client, "lonely").await.unwrap();
    drop(client);
    gw.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_that_is_not_an_executable_shows_exec_format_error_in_sandbox_get() {
    if docker_lane_missing(&["good"]).is_some() {
        return;
    }
    // A vendor's image whose supervisor cannot even start: not an ELF, no #! line.
    let context = tempfile::tempdir().unwrap();
    let bogus = context.path().join("openshell-supervisor");
    std::fs::write(&bogus, b"\x00\x01\x02\x03 not a program\n").unwrap();
    std::fs::set_permissions(&bogus, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY openshell-supervisor /usr/local/bin/openshell-supervisor\nENTRYPOINT [\"/usr/local/bin/openshell-supervisor\"]\nCMD [\"/bin/sleep\", \"1\"]\n",
    )
    .unwrap();
    let image = format!("openshell-test/not-executable:{}", std::process::id());
    let built = docker(
        None,
        &[
            "build",
            "-q",
            "-t",
            &image,
            context.path().to_str().unwrap(),
        ],
    );
    assert!(built.0, "docker build of {image}");
    let state = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(docker_gateway_args(state.path(), "127.0.0.1:0", &[])).unwrap();
    let mut client = gw.client().await;
    client
        .create_sandbox(request("vendor", &image, &[]))
        .await
        .unwrap();
    let sb = until(
        &mut client,
        "vendor",
        "Error",
        is_phase(SandboxPhase::Error),
    )
    .await;
    let (reason, message) = ready(&sb);
    eprintln!("not an executable: {reason}: {message}");
    assert!(
        message.to_lowercase().contains("exec format error"),
        "{reason}: {message}"
    );
    let longest_hex = message
        .split(|c: char| !c.is_ascii_hexdigit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_hex < 32,
        "a long hex run (container id?) in {message}"
    );
    let cli = bin_dir().join("openshell");
    let out = std::process::Command::new(&cli)
        .args(["--gateway", &gw.endpoint, "sandbox", "get", "vendor"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .to_lowercase()
            .contains("exec format error"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    delete(&mut client, "vendor").await.unwrap();
    drop(client);
    gw.stop();
    docker(None, &["rmi", "-f", &image]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_lane_a_sandbox_removed_from_the_store_while_down_leaves_no_root() {
    let state = tempfile::tempdir().unwrap();
    let mut args: Vec<OsString> = ["--driver", "process", "--listen", "127.0.0.1:0"]
        .iter()
        .map(Into::into)
        .collect();
    args.extend(state_args(state.path()));
    let first = GatewayProcess::start(args.clone()).unwrap();
    let mut client = first.client().await;
    let created = client
        .create_sandbox(request("forgotten", &fixture_ref("good"), &[]))
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap();
    until(
        &mut client,
        "forgotten",
        "Ready",
        is_phase(SandboxPhase::Ready),
    )
    .await;
    drop(client);
    first.kill9();
    let id = created.metadata.unwrap().id;
    let root = state.path().join("roots").join(&id);
    assert!(root.exists(), "the crash leaves the root behind");
    let conn = rusqlite::Connection::open(state.path().join("gateway.db")).unwrap();
    conn.execute("DELETE FROM sandboxes WHERE id = ?1", [&id])
        .unwrap();
    drop(conn);

    let second = GatewayProcess::start(args).unwrap();
    // The sweep runs in the background after start: wait (bounded) for the root to go.
    let deadline = Instant::now() + DEADLINE;
    while root.exists()
        || state
            .path()
            .join("roots")
            .join(format!("{id}.labels.json"))
            .exists()
    {
        assert!(
            Instant::now() < deadline,
            "root still there:\n{}",
            second.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = second.stop();
    assert!(
        log.contains("removed the backend of a sandbox the store does not hold"),
        "{log}"
    );
}
