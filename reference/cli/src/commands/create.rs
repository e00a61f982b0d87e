//! `sandbox create`: CreateSandbox, then follow the sandbox's watch stream to a verdict.
//!
//! Progress lines (`Provisioning: Starting`) go to stderr; on Ready the name goes to stdout and
//! the command succeeds; on Error it fails with `Error: <reason>: <message>`. When the stream
//! ends (or breaks) before either, a final GetSandbox decides. The whole command, CreateSandbox
//! included, is bounded by `--timeout` / `OPENSHELL_PROVISION_TIMEOUT`; the timeout message names
//! the last phase and reason seen.

use std::time::Duration;

use openshell_proto::v1::sandbox_stream_event::Payload;
use openshell_proto::v1::{CreateSandboxRequest, Sandbox, SandboxSpec, SandboxTemplate};

use crate::args::CreateArgs;
use crate::commands::progress::{phase_of, verdict, Progress, Verdict};
use crate::commands::{CommandError, Result};
use crate::gateway::Gateway;
use crate::hygiene::escape_controls;
use crate::naming::generate_name;
use crate::output;

/// The CreateSandboxRequest for `args`, with `name` already chosen.
pub fn build_request(args: &CreateArgs, name: &str) -> CreateSandboxRequest {
    let environment = args
        .env
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    let labels = args
        .labels
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone()))
        .collect();
    CreateSandboxRequest {
        name: name.to_string(),
        labels,
        spec: Some(SandboxSpec {
            environment,
            command: args.command.clone(),
            template: Some(SandboxTemplate {
                image: args.image.clone(),
                runtime_class_name: args
                    .runtime
                    .map(|r| r.as_str().to_string())
                    .unwrap_or_default(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Prints what changed in `sandbox` and returns its verdict.
fn step(progress: &mut Progress, sandbox: &Sandbox) -> Verdict {
    for line in progress.observe(sandbox) {
        output::stderr(&format!("{line}\n"));
    }
    verdict(sandbox)
}

/// Turns a final verdict into the command's outcome.
fn conclude(verdict: Verdict, name: &str, progress: &Progress) -> Result<()> {
    match verdict {
        Verdict::Ready => {
            output::stdout(&format!("{name}\n"));
            Ok(())
        }
        Verdict::Failed(failure) => Err(CommandError::SandboxFailed(failure)),
        Verdict::Pending => Err(CommandError::WatchEnded {
            name: name.to_string(),
            last: progress.last_seen(),
        }),
    }
}

/// Creates the sandbox and follows it; `progress` keeps what was seen for the timeout message.
async fn create_and_follow(
    gateway: &mut Gateway,
    request: CreateSandboxRequest,
    progress: &mut Progress,
) -> Result<()> {
    let created = gateway.create(request).await?;
    let meta = created.metadata.clone().unwrap_or_default();
    let name = escape_controls(&meta.name).into_owned();
    if let v @ (Verdict::Ready | Verdict::Failed(_)) = step(progress, &created) {
        return conclude(v, &name, progress);
    }
    let watch_id = if meta.id.is_empty() {
        &meta.name
    } else {
        &meta.id
    };
    let mut stream = gateway.watch(watch_id, &meta.name).await?;
    loop {
        match stream.message().await {
            Ok(Some(event)) => match event.payload {
                Some(Payload::Sandbox(sandbox)) => match step(progress, &sandbox) {
                    Verdict::Pending => {}
                    v => return conclude(v, &name, progress),
                },
                Some(Payload::Warning(w)) => {
                    output::stderr(&format!("warning: {}\n", escape_controls(&w.message)));
                }
                Some(Payload::Log(_) | Payload::Event(_)) | None => {}
            },
            Ok(None) => break,
            Err(status) => {
                output::stderr(&format!(
                    "watch ended: {}; checking the sandbox once more\n",
                    escape_controls(status.message())
                ));
                break;
            }
        }
    }
    let last = gateway.get(&meta.name).await?;
    let v = step(progress, &last);
    if v == Verdict::Pending {
        return Err(CommandError::WatchEnded {
            name,
            last: format!("{} ({})", phase_of(&last), progress.last_seen()),
        });
    }
    conclude(v, &name, progress)
}

/// `sandbox create`.
pub async fn create(gateway: &mut Gateway, args: &CreateArgs) -> Result<()> {
    let name = args.name.clone().unwrap_or_else(generate_name);
    let request = build_request(args, &name);
    let mut progress = Progress::default();
    let limit = Duration::from_secs(args.timeout);
    match tokio::time::timeout(limit, create_and_follow(gateway, request, &mut progress)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(CommandError::Timeout {
            name: escape_controls(&name).into_owned(),
            secs: args.timeout,
            last: progress.last_seen(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{KeyValue, Runtime};

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: v.into(),
        }
    }

    #[test]
    fn request_carries_image_env_command_runtime_and_labels() {
        let args = CreateArgs {
            image: "img".into(),
            name: None,
            env: vec![kv("A", "1"), kv("A", "2"), kv("B", "")],
            runtime: Some(Runtime::Runsc),
            labels: vec![kv("openshell.run-id", "r1")],
            timeout: 5,
            command: vec!["sh".into(), "-c".into(), "true".into()],
        };
        let req = build_request(&args, "box");
        assert_eq!(req.name, "box");
        assert_eq!(
            req.labels.get("openshell.run-id").map(String::as_str),
            Some("r1")
        );
        let spec = req.spec.unwrap();
        assert_eq!(spec.command, ["sh", "-c", "true"]);
        assert_eq!(
            spec.environment.get("A").map(String::as_str),
            Some("2"),
            "last one wins"
        );
        assert_eq!(spec.environment.get("B").map(String::as_str), Some(""));
        let template = spec.template.unwrap();
        assert_eq!(template.image, "img");
        assert_eq!(template.runtime_class_name, "runsc");
    }

    #[test]
    fn request_without_runtime_leaves_it_to_the_gateway() {
        let args = CreateArgs {
            image: "img".into(),
            name: None,
            env: vec![],
            runtime: None,
            labels: vec![],
            timeout: 5,
            command: vec![],
        };
        let req = build_request(&args, "box");
        let spec = req.spec.unwrap();
        assert!(spec.command.is_empty());
        assert_eq!(spec.template.unwrap().runtime_class_name, "");
    }
}
