//! Admission: turning a `CreateSandboxRequest` into the record the gateway stores and the
//! request its driver gets.
//!
//! Every check of a create request lives here, each with an actionable message: an image is
//! required, the name is a DNS-1123 label (generated when empty), the spec may not set the
//! variables the gateway hands the supervisor, and every field stays within [`limits`] (so a
//! request is stored whole or not at all, never cut). The driver request carries the complete
//! supervisor environment (docs/INTERFACES.md) and the backend labels.

use std::collections::BTreeMap;

use openshell_driver::SandboxRequest;
use openshell_proto::datamodel::v1::ObjectMeta;
use openshell_proto::v1::{CreateSandboxRequest, Sandbox, SandboxSpec};
use openshell_proto::{env, labels};
use prost::Message;

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

/// The bounds of what a request may carry (docs/INTERFACES.md, "Limits"). Beyond one, a request
/// is `InvalidArgument`, named with the field and the bound.
pub mod limits {
    /// A sandbox name (DNS-1123 label).
    pub const NAME_BYTES: usize = 63;
    /// A name or id a request looks a sandbox up by (ids are 36-byte UUIDs).
    pub const LOOKUP_BYTES: usize = 253;
    /// `spec.template.image`.
    pub const IMAGE_BYTES: usize = 512;
    /// `spec.template.runtime_class_name`.
    pub const RUNTIME_CLASS_BYTES: usize = 63;
    /// Labels, and annotations, of one map.
    pub const LABELS: usize = 64;
    /// A label or annotation key.
    pub const LABEL_KEY_BYTES: usize = 253;
    /// A label value.
    pub const LABEL_VALUE_BYTES: usize = 253;
    /// An annotation value.
    pub const ANNOTATION_VALUE_BYTES: usize = 4096;
    /// Environment variables, spec and template together.
    pub const ENV_VARS: usize = 256;
    /// An environment variable name.
    pub const ENV_KEY_BYTES: usize = 256;
    /// An environment variable value.
    pub const ENV_VALUE_BYTES: usize = 32 * 1024;
    /// Arguments of `spec.command`.
    pub const COMMAND_ARGS: usize = 256;
    /// `spec.command`, all arguments together.
    pub const COMMAND_BYTES: usize = 128 * 1024;
    /// A label selector of `ListSandboxes`.
    pub const SELECTOR_BYTES: usize = 4096;
    /// A supervisor's `instance_id` (it is stored).
    pub const INSTANCE_ID_BYTES: usize = 128;
    /// The whole stored record, whatever else the spec carries.
    pub const RECORD_BYTES: usize = 1024 * 1024;
}

fn invalid(message: String) -> GatewayError {
    GatewayError::InvalidArgument(message)
}

/// A field's text for a message: escaped, and short.
fn shown(text: &str) -> String {
    let mut out = crate::hygiene::escape_controls(text);
    if out.len() > 64 {
        let mut cut = 64;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    format!("{out:?}")
}

/// A name or id a request names a sandbox by.
pub fn check_lookup(field: &str, key: &str) -> Result<()> {
    if key.len() > limits::LOOKUP_BYTES {
        return Err(invalid(format!(
            "{field} is {} bytes; names and ids are at most {} bytes",
            key.len(),
            limits::LOOKUP_BYTES
        )));
    }
    Ok(())
}

/// A supervisor's instance id (stored in the record).
pub fn check_instance_id(instance_id: &str) -> Result<()> {
    if instance_id.len() > limits::INSTANCE_ID_BYTES || instance_id.chars().any(char::is_control) {
        return Err(invalid(format!(
            "instance_id must be at most {} bytes without control characters",
            limits::INSTANCE_ID_BYTES
        )));
    }
    Ok(())
}

fn check_labels(
    field: &str,
    map: &std::collections::HashMap<String, String>,
    value_bytes: usize,
    value_ok: fn(&str) -> bool,
) -> Result<()> {
    if map.len() > limits::LABELS {
        return Err(invalid(format!(
            "{field} has {} entries; at most {}",
            map.len(),
            limits::LABELS
        )));
    }
    for (key, value) in map {
        let key_ok = !key.is_empty()
            && key.len() <= limits::LABEL_KEY_BYTES
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'));
        if !key_ok {
            return Err(invalid(format!(
                "{field} key {} is invalid: use 1 to {} letters, digits, '-', '_', '.' or '/'",
                shown(key),
                limits::LABEL_KEY_BYTES
            )));
        }
        if value.len() > value_bytes || !value_ok(value) {
            return Err(invalid(format!(
                "{field}[{}] is invalid: at most {value_bytes} bytes{}",
                shown(key),
                if value_bytes == limits::LABEL_VALUE_BYTES {
                    ", without control characters, ',' or '=', and no space at either end"
                } else {
                    ", without NUL"
                }
            )));
        }
    }
    Ok(())
}

/// A label value: selectable (`key=value,…`), so no separators and nothing a trim would change.
fn label_value_ok(value: &str) -> bool {
    value.trim() == value
        && !value
            .chars()
            .any(|c| c.is_control() || c == ',' || c == '=')
}

fn annotation_value_ok(value: &str) -> bool {
    !value.contains('\0')
}

fn check_environment(spec: &SandboxSpec) -> Result<()> {
    let template = spec.template.as_ref();
    let all: Vec<(&String, &String)> = spec
        .environment
        .iter()
        .chain(template.into_iter().flat_map(|t| t.environment.iter()))
        .collect();
    if all.len() > limits::ENV_VARS {
        return Err(invalid(format!(
            "the environment has {} variables; at most {}",
            all.len(),
            limits::ENV_VARS
        )));
    }
    for (key, value) in all {
        let key_ok = key.len() <= limits::ENV_KEY_BYTES
            && key
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !key_ok {
            return Err(invalid(format!(
                "environment variable name {} is invalid: use 1 to {} letters, digits and '_', not starting with a digit",
                shown(key),
                limits::ENV_KEY_BYTES
            )));
        }
        if RESERVED_ENV.contains(&key.as_str()) {
            return Err(invalid(format!(
                "environment variable {key} is set by the gateway"
            )));
        }
        if value.len() > limits::ENV_VALUE_BYTES || value.contains('\0') {
            return Err(invalid(format!(
                "environment variable {key} is invalid: its value must be at most {} bytes, without NUL",
                limits::ENV_VALUE_BYTES
            )));
        }
    }
    Ok(())
}

fn check_command(command: &[String]) -> Result<()> {
    let total: usize = command.iter().map(String::len).sum();
    if command.len() > limits::COMMAND_ARGS || total > limits::COMMAND_BYTES {
        return Err(invalid(format!(
            "spec.command has {} arguments of {total} bytes; at most {} arguments and {} bytes",
            command.len(),
            limits::COMMAND_ARGS,
            limits::COMMAND_BYTES
        )));
    }
    if command.first().is_some_and(String::is_empty) || command.iter().any(|a| a.contains('\0')) {
        return Err(invalid(
            "spec.command is invalid: its program must not be empty and no argument may hold NUL"
                .into(),
        ));
    }
    Ok(())
}

fn check_template(spec: &SandboxSpec) -> Result<()> {
    let template = spec.template.clone().unwrap_or_default();
    if template.image.trim().is_empty() && !mutants::active("empty-image-accepted") {
        return Err(invalid(
            "spec.template.image is required, e.g. openshell-fixture/good:<hash>".into(),
        ));
    }
    if template.image.len() > limits::IMAGE_BYTES
        || template
            .image
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid(format!(
            "spec.template.image {} is invalid: at most {} bytes, without spaces or control characters",
            shown(&template.image),
            limits::IMAGE_BYTES
        )));
    }
    let runtime = &template.runtime_class_name;
    if runtime.len() > limits::RUNTIME_CLASS_BYTES
        || !runtime
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(invalid(format!(
            "spec.template.runtime_class_name {} is invalid: at most {} letters, digits, '-', '_' or '.'",
            shown(runtime),
            limits::RUNTIME_CLASS_BYTES
        )));
    }
    check_labels(
        "spec.template.labels",
        &template.labels,
        limits::LABEL_VALUE_BYTES,
        label_value_ok,
    )?;
    check_labels(
        "spec.template.annotations",
        &template.annotations,
        limits::ANNOTATION_VALUE_BYTES,
        annotation_value_ok,
    )
}

/// Validates `request` and builds the record and the driver request.
pub fn admit(request: CreateSandboxRequest, endpoint: &str, gateway_id: &str) -> Result<Admitted> {
    let spec = request
        .spec
        .ok_or_else(|| GatewayError::InvalidArgument("`spec` is required".into()))?;
    check_template(&spec)?;
    let template = spec.template.clone().unwrap_or_default();
    let name = if request.name.is_empty() {
        generated_name()
    } else {
        request.name.clone()
    };
    validate_name(&name)?;
    check_labels(
        "labels",
        &request.labels,
        limits::LABEL_VALUE_BYTES,
        label_value_ok,
    )?;
    check_labels(
        "annotations",
        &request.annotations,
        limits::ANNOTATION_VALUE_BYTES,
        annotation_value_ok,
    )?;
    if request.workspace.len() > limits::LOOKUP_BYTES
        || request.workspace.chars().any(char::is_control)
    {
        return Err(invalid(format!(
            "workspace must be at most {} bytes without control characters",
            limits::LOOKUP_BYTES
        )));
    }
    check_environment(&spec)?;
    check_command(&spec.command)?;
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
    // The backstop for every field without a bound of its own (providers, log level, …).
    if sandbox.encoded_len() > limits::RECORD_BYTES {
        return Err(invalid(format!(
            "the sandbox record would be {} bytes; at most {}",
            sandbox.encoded_len(),
            limits::RECORD_BYTES
        )));
    }
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
    let mut backend_labels = BTreeMap::from([
        (labels::SANDBOX_ID.to_string(), id.clone()),
        (labels::GATEWAY_ID.to_string(), gateway_id.to_string()),
    ]);
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
    let valid = name.len() <= limits::NAME_BYTES
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
            "invalid sandbox name {}: use at most 63 lower-case letters, digits and '-', starting and ending with a letter or digit",
            shown(name)
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
    if selector.len() > limits::SELECTOR_BYTES {
        return Err(invalid(format!(
            "label selector is {} bytes; at most {}",
            selector.len(),
            limits::SELECTOR_BYTES
        )));
    }
    selector
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            pair.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .filter(|(k, _)| !k.is_empty())
                .ok_or_else(|| {
                    GatewayError::InvalidArgument(format!(
                        "label selector {} is not key=value (with a non-empty key)",
                        shown(pair)
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
