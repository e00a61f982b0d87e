//! Admission: turning a `CreateSandboxRequest` into the record the gateway stores and the
//! request its driver gets.
//!
//! Every check of a create request lives here, each with an actionable message: an image is
//! required, the name is a DNS-1123 label (generated when empty), and the spec may not set the
//! variables the gateway hands the supervisor. The driver request carries the complete supervisor
//! environment (docs/INTERFACES.md) and the backend labels.

use std::collections::BTreeMap;

use openshell_driver::SandboxRequest;
use openshell_proto::datamodel::v1::ObjectMeta;
use openshell_proto::v1::{CreateSandboxRequest, Sandbox};
use openshell_proto::{env, labels};

use crate::error::{GatewayError, Result};
use crate::{auth, mutants, transitions};

/// An accepted create request.
pub struct Admitted {
    /// The new record (Provisioning, resource version 1).
    pub sandbox: Sandbox,
    /// The sandbox's fresh credential (stored only hashed).
    pub token: String,
    /// What the driver is asked to start.
    pub driver_request: SandboxRequest,
}

/// Validates `request` and builds the record and the driver request.
pub fn admit(request: CreateSandboxRequest, endpoint: &str) -> Result<Admitted> {
    let spec = request
        .spec
        .ok_or_else(|| GatewayError::InvalidArgument("`spec` is required".into()))?;
    let template = spec.template.clone().unwrap_or_default();
    if template.image.trim().is_empty() && !mutants::active("empty-image-accepted") {
        return Err(GatewayError::InvalidArgument(
            "spec.template.image is required, e.g. openshell-fixture/good:<hash>".into(),
        ));
    }
    let name = if request.name.is_empty() {
        generated_name()
    } else {
        request.name.clone()
    };
    validate_name(&name)?;
    for key in spec.environment.keys().chain(template.environment.keys()) {
        if RESERVED_ENV.contains(&key.as_str()) {
            return Err(GatewayError::InvalidArgument(format!(
                "environment variable {key} is set by the gateway"
            )));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let token = auth::new_token();
    let sandbox = Sandbox {
        metadata: Some(ObjectMeta {
            id: id.clone(),
            name: name.clone(),
            created_at_ms: now_ms(),
            labels: request.labels.clone(),
            annotations: request.annotations.clone(),
            resource_version: 1,
            workspace: request.workspace.clone(),
            ..Default::default()
        }),
        spec: Some(spec.clone()),
        status: Some(transitions::initial_status(&name)),
    };
    let mut sandbox = sandbox;
    if mutants::active("token-in-status") {
        // A "helpful" debug message that carries the credential.
        if let Some(c) = sandbox
            .status
            .as_mut()
            .and_then(|s| s.conditions.first_mut())
        {
            c.message = format!("waiting for the supervisor session (credential {token})");
        }
    }
    let mut environment: BTreeMap<String, String> =
        template.environment.clone().into_iter().collect();
    environment.extend(spec.environment.clone());
    environment.insert(env::SANDBOX_ID.into(), id.clone());
    environment.insert(env::ENDPOINT.into(), endpoint.to_string());
    environment.insert(env::SANDBOX_TOKEN.into(), token.clone());
    if let Some(mutant) = mutants::selected() {
        environment.insert(mutants::ENV.into(), mutant);
    }
    if !spec.command.is_empty() {
        let main = serde_json::json!({ "version": 1, "command": spec.command, "tty": spec.tty });
        environment.insert(env::MAIN_PROCESS_SPEC.into(), main.to_string());
    }
    let mut backend_labels = BTreeMap::from([(labels::SANDBOX_ID.to_string(), id.clone())]);
    if let Some(run) = request.labels.get(labels::RUN_ID) {
        backend_labels.insert(labels::RUN_ID.to_string(), run.clone());
    }
    let driver_request = SandboxRequest {
        sandbox_id: id,
        name,
        image: template.image.clone(),
        runtime_class: Some(template.runtime_class_name.clone()).filter(|r| !r.is_empty()),
        command: spec.command.clone(),
        env: environment,
        labels: backend_labels,
    };
    Ok(Admitted {
        sandbox,
        token,
        driver_request,
    })
}

/// Variables the gateway sets itself; a spec may not set them.
const RESERVED_ENV: &[&str] = &[
    env::SANDBOX_ID,
    env::ENDPOINT,
    env::SANDBOX_TOKEN,
    env::MAIN_PROCESS_SPEC,
];

fn validate_name(name: &str) -> Result<()> {
    if mutants::active("lenient-names") && !name.is_empty() {
        return Ok(());
    }
    let valid = name.len() <= 63
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(GatewayError::InvalidArgument(format!(
            "invalid sandbox name {name:?}: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit"
        )))
    }
}

fn generated_name() -> String {
    format!(
        "sandbox-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    )
}

/// `key=value[,key=value…]` pairs of a label selector.
pub fn parse_selector(selector: &str) -> Result<Vec<(String, String)>> {
    selector
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| {
                    GatewayError::InvalidArgument(format!(
                        "label selector {pair:?} is not key=value"
                    ))
                })
        })
        .collect()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_dns_1123_labels() {
        for ok in ["a", "good-1", &"x".repeat(63)] {
            validate_name(ok).unwrap();
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Upper",
            "under_score",
            &"x".repeat(64),
            "a.b",
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
        validate_name(&generated_name()).unwrap();
    }

    #[test]
    fn selectors_parse_pairs_and_reject_garbage() {
        assert_eq!(parse_selector("a=1, b=2").unwrap().len(), 2);
        assert!(parse_selector("").unwrap().is_empty());
        assert!(parse_selector("novalue").is_err());
    }
}
