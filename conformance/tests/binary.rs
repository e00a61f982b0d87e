//! The runner binary's contract: exit codes 0, 1 and 2, and reports (`report.json`,
//! `junit.xml`) that parsers accept, with the fields the issue names.
//!
//! A fake gateway (a tonic server of the real `OpenShell` service, in this test process) stands
//! in for an implementation, so the codes are tested without root or a container engine: it
//! answers `CreateSandbox("")` with `InvalidArgument` (exit 0 for that case) or, in its broken
//! form, accepts it (exit 1).

use std::path::PathBuf;
use std::pin::Pin;
use std::process::Command;

use openshell_proto::v1::open_shell_server::{OpenShell, OpenShellServer};
use openshell_proto::v1::*;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_openshell-conformance"))
}

#[derive(Debug, Clone, Copy)]
struct FakeGateway {
    broken: bool,
}

type Events = Pin<Box<dyn Stream<Item = Result<SandboxStreamEvent, Status>> + Send>>;
type GatewayEvents = Pin<Box<dyn Stream<Item = Result<GatewayMessage, Status>> + Send>>;

#[tonic::async_trait]
impl OpenShell for FakeGateway {
    async fn create_sandbox(
        &self,
        r: Request<CreateSandboxRequest>,
    ) -> Result<Response<SandboxResponse>, Status> {
        let image = r
            .get_ref()
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .map(|t| t.image.clone())
            .unwrap_or_default();
        if image.is_empty() && !self.broken {
            return Err(Status::invalid_argument(
                "spec.template.image must not be empty",
            ));
        }
        Ok(Response::new(SandboxResponse {
            sandbox: Some(Sandbox::default()),
        }))
    }
    async fn get_sandbox(
        &self,
        _: Request<GetSandboxRequest>,
    ) -> Result<Response<SandboxResponse>, Status> {
        Err(Status::not_found("no such sandbox"))
    }
    async fn list_sandboxes(
        &self,
        _: Request<ListSandboxesRequest>,
    ) -> Result<Response<ListSandboxesResponse>, Status> {
        Ok(Response::new(ListSandboxesResponse::default()))
    }
    async fn delete_sandbox(
        &self,
        _: Request<DeleteSandboxRequest>,
    ) -> Result<Response<DeleteSandboxResponse>, Status> {
        Err(Status::not_found("no such sandbox"))
    }
    type WatchSandboxStream = Events;
    async fn watch_sandbox(
        &self,
        _: Request<WatchSandboxRequest>,
    ) -> Result<Response<Events>, Status> {
        Err(Status::not_found("no such sandbox"))
    }
    type ConnectSupervisorStream = GatewayEvents;
    async fn connect_supervisor(
        &self,
        _: Request<tonic::Streaming<SupervisorMessage>>,
    ) -> Result<Response<GatewayEvents>, Status> {
        Err(Status::unauthenticated("no"))
    }
    async fn report_main_process_exit(
        &self,
        _: Request<ReportMainProcessExitRequest>,
    ) -> Result<Response<ReportMainProcessExitResponse>, Status> {
        Err(Status::unauthenticated("no"))
    }
    async fn report_supervisor_error(
        &self,
        _: Request<ReportSupervisorErrorRequest>,
    ) -> Result<Response<ReportSupervisorErrorResponse>, Status> {
        Err(Status::unauthenticated("no"))
    }
}

/// Serves a fake gateway on 127.0.0.1 from a background thread; returns its URL.
fn serve(fake: FakeGateway) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            tonic::transport::Server::builder()
                .add_service(OpenShellServer::new(fake))
                .serve_with_incoming(incoming)
                .await
                .unwrap();
        });
    });
    format!("http://{addr}")
}

/// `run --gateway URL --filter =empty-image-is-invalid-argument [extra…]`.
fn run_one_case(url: &str, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec![
        "run",
        "--gateway",
        url,
        "--filter",
        "=empty-image-is-invalid-argument",
    ];
    args.extend_from_slice(extra);
    run(&args)
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary())
        .args(args)
        .env_remove("OPENSHELL_REQUIRE_LANES")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_passing_run_exits_0_and_writes_parseable_reports() {
    let url = serve(FakeGateway { broken: false });
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap();
    let (code, stdout, stderr) = run_one_case(&url, &["--report-dir", dir_s]);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stdout.contains("PASS") && stdout.contains("empty-image-is-invalid-argument"),
        "{stdout}"
    );

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    for key in ["passed", "failed", "skipped", "xfail", "xpass"] {
        assert!(json["summary"][key].is_u64(), "summary.{key}: {json}");
    }
    assert_eq!(json["summary"]["passed"], 1);
    assert_eq!(json["driver"], "process");
    assert!(json["gateway"].as_str().unwrap().contains(&url));
    let case = &json["cases"][0];
    for key in ["id", "requirement", "level", "driver", "result", "message"] {
        assert!(case[key].is_string(), "cases[0].{key}: {case}");
    }
    assert!(case["duration_ms"].is_u64());
    assert_eq!(case["result"], "passed");
    assert_eq!(case["requirement"], "OSC-API-001");

    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 1);
    assert_eq!(
        cases[0].attribute("name"),
        Some("empty-image-is-invalid-argument")
    );
    assert!(dir.path().join("report.md").exists());
}

#[test]
fn a_failing_run_exits_1_naming_the_requirement_and_what_was_observed() {
    let url = serve(FakeGateway { broken: true });
    let dir = tempfile::tempdir().unwrap();
    let dir_s = dir.path().to_str().unwrap();
    let (code, stdout, _) = run_one_case(&url, &["--report-dir", dir_s]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("OSC-API-001: expected CreateSandbox with image \"\" to fail with InvalidArgument; observed success"), "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["summary"]["failed"], 1);
    assert_eq!(json["cases"][0]["result"], "failed");
    let xml = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let failure = doc
        .descendants()
        .find(|n| n.has_tag_name("failure"))
        .expect("a <failure> element");
    assert_eq!(failure.attribute("type"), Some("OSC-API-001"));
    assert!(dir
        .path()
        .join("diagnostics/empty-image-is-invalid-argument/failure.txt")
        .exists());
}

#[test]
fn an_expected_failure_exits_0_and_an_unexpected_pass_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("expectations.toml");
    std::fs::write(&exp, "[[case]]\nid = 'empty-image-is-invalid-argument'\nresult = 'failed'\nreason = 'known'\nlink = 'https://example.com/1'\n").unwrap();
    let exp_s = exp.to_str().unwrap();
    let broken = serve(FakeGateway { broken: true });
    let (code, stdout, _) = run_one_case(&broken, &["--expectations", exp_s]);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("1 xfail"), "{stdout}");
    let good = serve(FakeGateway { broken: false });
    let (code, stdout, _) = run_one_case(&good, &["--expectations", exp_s]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("XPASS") && stdout.contains("1 xpass"),
        "{stdout}"
    );
}

#[test]
fn unknown_ids_in_the_expectations_file_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let exp = dir.path().join("e.toml");
    std::fs::write(
        &exp,
        "[[case]]\nid = 'no-such-case'\nresult = 'failed'\nreason = 'r'\n",
    )
    .unwrap();
    let url = serve(FakeGateway { broken: false });
    let (code, _, stderr) = run(&[
        "run",
        "--gateway",
        &url,
        "--expectations",
        exp.to_str().unwrap(),
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown case id \"no-such-case\""),
        "{stderr}"
    );
}

/// `run --driver k3s` where there is no k3s image and no cluster (this machine): "not run",
/// naming the tag it looked for and both remedies; exit 2 as for any lane that ran nothing, and
/// as a required lane. A tag no engine has keeps the test from booting a cluster where one is.
#[test]
fn k3s_without_an_image_or_a_cluster_is_not_run_naming_the_tag_and_both_remedies() {
    let tag = "rancher/k3s:v0.0.0-openshell-absent";
    let run_k3s = |extra: &[&str], docker_host: Option<&str>| {
        let mut command = Command::new(binary());
        command
            .args([
                "run",
                "--driver",
                "k3s",
                "--filter",
                "=empty-image-is-invalid-argument",
            ])
            .args(extra)
            .env_remove("OPENSHELL_REQUIRE_LANES")
            .env_remove("KUBECONFIG")
            .env("OPENSHELL_K3S_IMAGE", tag);
        if let Some(host) = docker_host {
            command.env("DOCKER_HOST", host);
        }
        let out = command.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let names_everything = |text: &str| {
        assert!(text.contains("k3s lane not run"), "{text}");
        assert!(text.contains(tag), "the tag looked for: {text}");
        assert!(text.contains("docker load -i k3s.tar"), "{text}");
        assert!(text.contains("--kubeconfig PATH"), "{text}");
    };
    let (code, stdout, _) = run_k3s(&[], None);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("SKIPPED lane k3s:"), "{stdout}");
    assert!(
        stdout.contains("is not in the local Docker engine"),
        "{stdout}"
    );
    names_everything(&stdout);
    let (code, _, stderr) = run_k3s(&["--require-lanes", "k3s"], None);
    assert_eq!(code, 2);
    assert!(stderr.contains("required lane k3s cannot run"), "{stderr}");
    names_everything(&stderr);
    let (code, stdout, _) = run_k3s(&[], Some("unix:///nonexistent/docker.sock"));
    assert_eq!(code, 2, "{stdout}");
    names_everything(&stdout);
}

#[test]
fn a_filter_that_selects_nothing_exits_2() {
    let (code, _, stderr) = run(&[
        "run",
        "--gateway",
        "http://127.0.0.1:9",
        "--filter",
        "=no-such-case",
    ]);
    assert_eq!(code, 2);
    assert!(stderr.contains("no case"), "{stderr}");
}

#[test]
fn an_unreachable_gateway_exits_2() {
    let (code, _, stderr) = run(&[
        "run",
        "--gateway",
        "http://127.0.0.1:9",
        "--filter",
        "=empty-image-is-invalid-argument",
    ]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("127.0.0.1:9"), "{stderr}");
}

#[test]
fn a_required_lane_whose_prerequisites_are_missing_exits_2() {
    let (code, _, stderr) = run(&[
        "run",
        "--driver",
        "process",
        "--gateway-bin",
        "/nonexistent/openshell-gateway",
        "--require-lanes",
        "process",
    ]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("required lane process cannot run")
            && stderr.contains("/nonexistent/openshell-gateway"),
        "{stderr}"
    );
}

#[test]
fn a_lane_that_cannot_run_skips_every_case_and_exits_2_for_executing_none() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(&[
        "run",
        "--driver",
        "process",
        "--gateway-bin",
        "/nonexistent/openshell-gateway",
        "--filter",
        "fixture-good",
        "--report-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stdout}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("report.json")).unwrap())
            .unwrap();
    assert_eq!(json["summary"]["skipped"], 1);
    assert!(json["cases"][0]["message"]
        .as_str()
        .unwrap()
        .contains("/nonexistent/openshell-gateway"));
}

#[test]
fn list_names_every_case_with_requirements_level_and_drivers() {
    let (code, stdout, _) = run(&["list"]);
    assert_eq!(code, 0);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("fixture-stale-policy "))
        .expect("fixture-stale-policy listed");
    assert!(
        line.contains("OSC-ERR-001")
            && line.contains("core")
            && line.contains("process,docker,docker-runsc"),
        "{line}"
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("runsc-strict-netns-is-fatal "))
        .unwrap();
    assert!(line.trim_end().ends_with("docker-runsc"), "{line}");
}
