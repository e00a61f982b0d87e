//! The gateway binary's own guards: one gateway per state directory, loopback unless told
//! otherwise, a plain-text log when stderr is no terminal, and a damaged database that yields
//! clear errors instead of a panic. Most point the Docker driver at a socket nobody serves (it
//! connects lazily), so they need neither root nor an engine; the damaged-row test deletes a
//! sandbox, so it runs the process driver (root, like tests/binary.rs).

mod common;

use std::ffi::OsString;
use std::path::Path;

use common::process::{state_args, GatewayProcess};
use common::{create_request, DEADLINE};
use openshell_proto::v1::{DeleteSandboxRequest, GetSandboxRequest, ListSandboxesRequest};

fn args(state: &Path, extra: &[&str]) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--driver", "docker", "--listen", "127.0.0.1:0"]
        .iter()
        .map(Into::into)
        .collect();
    args.push("--docker-host".into());
    args.push(format!("unix://{}/no-engine.sock", state.display()).into());
    args.extend(state_args(state));
    args.extend(extra.iter().map(Into::into));
    args
}

#[test]
fn a_second_gateway_on_the_same_state_dir_refuses_and_names_the_first() {
    let state = tempfile::tempdir().unwrap();
    let first = GatewayProcess::start(args(state.path(), &[])).unwrap();
    let refused = GatewayProcess::start(args(state.path(), &["--db", ":memory:"]))
        .err()
        .expect("the second gateway must not start");
    assert!(!refused.status.success());
    let stderr = refused.stderr;
    assert!(
        stderr.contains(&format!("pid {}", first.pid())),
        "names the holder: {stderr}"
    );
    assert!(
        stderr.contains(&state.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("--state-dir"), "says what to do: {stderr}");
    // The lock dies with its holder, even by SIGKILL.
    first.kill9();
    GatewayProcess::start(args(state.path(), &[])).expect("free once the first is gone");
}

#[test]
fn a_non_loopback_listen_address_is_refused_unless_the_flag_allows_it() {
    let state = tempfile::tempdir().unwrap();
    let mut wildcard = args(state.path(), &[]);
    let at = wildcard.iter().position(|a| a == "127.0.0.1:0").unwrap();
    wildcard[at] = "0.0.0.0:0".into();
    let refused = GatewayProcess::start(wildcard)
        .err()
        .expect("0.0.0.0 must be refused without the flag");
    assert!(!refused.status.success());
    assert!(
        refused.stderr.contains("--allow-non-loopback")
            && refused.stderr.contains("no authentication"),
        "{}",
        refused.stderr
    );
}

#[test]
fn the_log_has_no_colour_codes_when_stderr_is_not_a_terminal() {
    let state = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(args(state.path(), &[])).unwrap();
    let log = gw.stop();
    assert!(log.contains("SIGTERM"), "the log has its lines: {log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a log file: {log:?}"
    );
}

/// The process driver's flags (its image references fail with ImageNotFound: nothing starts).
fn process_args(state: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = ["--driver", "process", "--listen", "127.0.0.1:0"]
        .iter()
        .map(Into::into)
        .collect();
    args.extend(state_args(state));
    args
}

#[tokio::test]
async fn a_truncated_record_is_an_internal_error_naming_the_sandbox_and_a_log_line() {
    let state = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(process_args(state.path())).unwrap();
    let mut client = gw.client().await;
    let victim = client
        .create_sandbox(create_request("victim"))
        .await
        .unwrap()
        .into_inner()
        .sandbox
        .unwrap()
        .metadata
        .unwrap()
        .id;
    client
        .create_sandbox(create_request("healthy"))
        .await
        .unwrap();
    drop(client);
    gw.stop();

    // Tear the victim's row as a crash mid-write would: its record loses its second half.
    let db = state.path().join("gateway.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed = conn
        .execute(
            "UPDATE sandboxes SET record = substr(record, 1, length(record) / 2) WHERE name = 'victim'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);

    let gw = GatewayProcess::start(process_args(state.path())).expect("the gateway still starts");
    let mut client = gw.client().await;
    let get = |name: &str| GetSandboxRequest {
        name: name.into(),
        ..Default::default()
    };
    let status = client.get_sandbox(get("victim")).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
    assert!(
        status.message().contains(&victim) && status.message().contains("corrupt"),
        "{status:?}"
    );
    client
        .get_sandbox(get("healthy"))
        .await
        .expect("the other sandbox is served");
    let listed = client
        .list_sandboxes(ListSandboxesRequest::default())
        .await
        .unwrap_err();
    assert_eq!(listed.code(), tonic::Code::Internal);
    assert!(listed.message().contains(&victim), "{listed:?}");
    // The way out the message names: delete it.
    let deleted = tokio::time::timeout(
        DEADLINE,
        client.delete_sandbox(DeleteSandboxRequest {
            name: "victim".into(),
            ..Default::default()
        }),
    )
    .await
    .unwrap()
    .expect("a corrupt sandbox can be deleted");
    assert!(deleted.into_inner().deleted);
    let left = client
        .list_sandboxes(ListSandboxesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .sandboxes;
    assert_eq!(left.len(), 1);
    drop(client);
    let log = gw.stop();
    assert!(
        log.contains("stored sandbox skipped at start") && log.contains(&victim),
        "a log line names it: {log}"
    );
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test]
async fn a_database_file_overwritten_with_garbage_fails_clearly_without_a_panic() {
    let state = tempfile::tempdir().unwrap();
    let gw = GatewayProcess::start(args(state.path(), &[])).unwrap();
    let mut client = gw.client().await;
    for n in 0..20 {
        client
            .create_sandbox(create_request(&format!("sb-{n}")))
            .await
            .unwrap();
    }
    drop(client);
    gw.stop();
    // Every page after the header becomes garbage.
    let db = state.path().join("gateway.db");
    let mut bytes = std::fs::read(&db).unwrap();
    assert!(bytes.len() > 4096, "{} bytes", bytes.len());
    for b in bytes.iter_mut().skip(100) {
        *b = 0xA5;
    }
    std::fs::write(&db, bytes).unwrap();

    match GatewayProcess::start(args(state.path(), &[])) {
        Err(refused) => {
            assert!(!refused.status.success());
            assert!(
                refused.stderr.contains("store") && !refused.stderr.contains("panicked"),
                "{}",
                refused.stderr
            );
        }
        Ok(gw) => {
            let mut client = gw.client().await;
            let status = client
                .list_sandboxes(ListSandboxesRequest::default())
                .await
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::Internal, "{status:?}");
            drop(client);
            let log = gw.stop();
            assert!(!log.contains("panicked"), "{log}");
        }
    }
}
