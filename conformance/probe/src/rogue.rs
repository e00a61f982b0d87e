//! `rogue hygiene|credentials`: the probe as a rogue supervisor, used as a fixture's entrypoint
//! instead of the supervisor. It uses the credential the driver hands in
//! (`OPENSHELL_SANDBOX_ID`, `OPENSHELL_ENDPOINT`, `OPENSHELL_SANDBOX_TOKEN`) to send crafted
//! `ReportSupervisorError` calls the conformance suite then observes through the public API:
//!
//! - `hygiene`: one report (stage OTHER) of about 10 KiB laced with ESC sequences, BEL, DEL, NUL,
//!   the 8-bit CSI (U+009B) and multi-byte characters; the stored message must come back escaped
//!   and at most 4096 bytes.
//! - `credentials`: `ConnectSupervisor` and `ReportMainProcessExit` without a token, and
//!   reports without a token (own id), for an unknown id, for another live
//!   sandbox's id (`OSC_PROBE_OTHER_SANDBOX_ID`) and for a deleted one's
//!   (`OSC_PROBE_DELETED_SANDBOX_ID`), each with a message saying what it is, then the
//!   verdict with its own id and token: `rogue credentials: no-token=<code>
//!   unknown-sandbox=<code> other-sandbox=<code> deleted-sandbox=<code> no-token-connect=<code>
//!   no-token-exit=<code> token-sha256=<16 hex> token-len=<n>` (`<code>` is the gRPC code name, `Ok`, or `not-tried`). The token's hash
//!   prefix and length let the suite look for the token in every read response without ever
//!   learning it.
//! - `session`: the scripted supervisor of [`crate::session`] (seed 002's session rules); its
//!   verdict is the report.
//!
//! Exit status: 0 once the last report was accepted, 1 when it was not, 2 on a usage error.

use openshell_proto::v1::open_shell_client::OpenShellClient;
use openshell_proto::v1::{
    supervisor_message, ReportMainProcessExitRequest, ReportSupervisorErrorRequest,
    SupervisorHello, SupervisorMessage, SupervisorStartupStage,
};
use sha2::{Digest, Sha256};
use tonic::transport::Channel;

/// The usage line of this mode.
pub const USAGE: &str = "openshell-probe rogue hygiene|credentials|session";

struct Credential {
    sandbox_id: String,
    endpoint: String,
    token: String,
}

fn credential() -> Result<Credential, String> {
    let var = |name: &str| std::env::var(name).map_err(|_| format!("{name} is not set"));
    Ok(Credential {
        sandbox_id: var(openshell_proto::env::SANDBOX_ID)?,
        endpoint: var(openshell_proto::env::ENDPOINT)?,
        token: var(openshell_proto::env::SANDBOX_TOKEN)?,
    })
}

async fn report(
    client: &mut OpenShellClient<Channel>,
    token: Option<&str>,
    sandbox_id: &str,
    message: &str,
) -> String {
    let mut request = tonic::Request::new(ReportSupervisorErrorRequest {
        sandbox_id: sandbox_id.to_string(),
        instance_id: "rogue-probe".to_string(),
        stage: SupervisorStartupStage::Other as i32,
        message: message.to_string(),
    });
    if let Some(token) = token {
        match format!("Bearer {token}").parse() {
            Ok(value) => {
                request.metadata_mut().insert("authorization", value);
            }
            Err(_) => return "bad-token-characters".to_string(),
        }
    }
    match client.report_supervisor_error(request).await {
        Ok(_) => "Ok".to_string(),
        Err(status) => format!("{:?}", status.code()),
    }
}

fn code_of<T>(result: Result<T, tonic::Status>) -> String {
    match result {
        Ok(_) => "Ok".to_string(),
        Err(status) => format!("{:?}", status.code()),
    }
}

/// `ConnectSupervisor` without a token: the hello must be refused before any session exists.
async fn connect_without_token(client: &mut OpenShellClient<Channel>, sandbox_id: &str) -> String {
    let hello = SupervisorMessage {
        payload: Some(supervisor_message::Payload::Hello(SupervisorHello {
            sandbox_id: sandbox_id.to_string(),
            instance_id: "rogue-probe".to_string(),
            degraded: Vec::new(),
        })),
    };
    let outbound = tonic::codegen::tokio_stream::iter(vec![hello]);
    match client.connect_supervisor(outbound).await {
        Err(status) => format!("{:?}", status.code()),
        Ok(response) => code_of(response.into_inner().message().await),
    }
}

/// About 10 KiB of hostile text.
pub fn hostile_message() -> String {
    let mut message = String::from("rogue hygiene: ");
    let piece = "\x1b[31mred\x1b[0m \x07bell \x7fdel \x00nul \u{9b}2Jcsi \u{85}nel é€😀 \r\n\t";
    while message.len() < 10 * 1024 {
        message.push_str(piece);
    }
    message
}

async fn run_async(mode: &str) -> Result<u8, String> {
    let cred = credential()?;
    let channel = Channel::from_shared(cred.endpoint.clone())
        .map_err(|e| format!("bad endpoint {}: {e}", cred.endpoint))?
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connecting to {}: {e}", cred.endpoint))?;
    let mut client = OpenShellClient::new(channel);
    let token = Some(cred.token.as_str());
    let last = match mode {
        "hygiene" => report(&mut client, token, &cred.sandbox_id, &hostile_message()).await,
        "credentials" => {
            let no_token = report(
                &mut client,
                None,
                &cred.sandbox_id,
                "rogue attempt without a token",
            )
            .await;
            let no_token_connect = connect_without_token(&mut client, &cred.sandbox_id).await;
            let exit_request = ReportMainProcessExitRequest {
                sandbox_id: cred.sandbox_id.clone(),
                instance_id: "rogue-probe".to_string(),
                exit_code: 99,
            };
            let no_token_exit = code_of(client.report_main_process_exit(exit_request).await);
            let unknown_id = format!("rogue-unknown-{}", std::process::id());
            let unknown = report(
                &mut client,
                token,
                &unknown_id,
                "rogue attempt for an unknown sandbox",
            )
            .await;
            let mut tried = Vec::new();
            for (key, var) in [
                ("other-sandbox", "OSC_PROBE_OTHER_SANDBOX_ID"),
                ("deleted-sandbox", "OSC_PROBE_DELETED_SANDBOX_ID"),
            ] {
                let code = match std::env::var(var) {
                    Ok(id) if !id.is_empty() => {
                        report(
                            &mut client,
                            token,
                            &id,
                            &format!("rogue attempt with the {key}'s id"),
                        )
                        .await
                    }
                    _ => "not-tried".to_string(),
                };
                tried.push(format!("{key}={code}"));
            }
            let hash = hex::encode(Sha256::digest(cred.token.as_bytes()));
            let verdict = format!(
                "rogue credentials: no-token={no_token} unknown-sandbox={unknown} {} \
                 no-token-connect={no_token_connect} no-token-exit={no_token_exit} token-sha256={} token-len={}",
                tried.join(" "),
                &hash[..16],
                cred.token.len()
            );
            eprintln!("openshell-probe: {verdict}");
            // The credential itself, printed (backend output, which `WatchSandbox` follows) and
            // reported: a gateway must keep it out of every read API (OSC-SEC-004).
            eprintln!("openshell-probe: echo of its token: {}", cred.token);
            let verdict = format!("{verdict} echo={}", cred.token);
            report(&mut client, token, &cred.sandbox_id, &verdict).await
        }
        "session" => {
            let (verdict, last_session) =
                crate::session::script(&client, &cred.sandbox_id, &cred.token).await?;
            eprintln!("openshell-probe: {verdict}");
            let answer = report(&mut client, token, &cred.sandbox_id, &verdict).await;
            // The last session ends only after the sandbox is in Error (OSC-READY-006).
            drop(last_session);
            answer
        }
        other => return Err(format!("unknown rogue mode {other:?}")),
    };
    if last == "Ok" {
        Ok(0)
    } else {
        eprintln!("openshell-probe: the final report was refused: {last}");
        Ok(1)
    }
}

/// Runs `rogue <mode>`; returns the exit status.
pub fn run(args: &[String]) -> u8 {
    let Some(mode) = args.first() else {
        eprintln!("openshell-probe: no rogue mode given\nusage: {USAGE}");
        return 2;
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("openshell-probe: tokio runtime: {e}");
            return 1;
        }
    };
    match runtime.block_on(run_async(mode)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("openshell-probe: rogue {mode}: {e}");
            if e.starts_with("unknown rogue mode") {
                2
            } else {
                1
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hostile_message_is_over_10_kib_and_holds_c0_del_and_c1() {
        let m = hostile_message();
        assert!(m.len() >= 10 * 1024);
        for c in ['\x1b', '\x07', '\x7f', '\x00', '\u{9b}', '\u{85}', '€'] {
            assert!(m.contains(c), "{c:?}");
        }
    }
}
