//! How a sandbox is shown: a stable JSON view and the text of `get` and `list`.
//!
//! Every string that came from the gateway passes through [`crate::hygiene`] first, in text and
//! JSON alike. The view holds only what the lifecycle API returns; no credential is in the API,
//! and none is ever printed.

use std::collections::BTreeMap;
use std::fmt::Write;

use openshell_proto::v1::{Sandbox, SandboxCondition, SandboxPhase};
use serde::Serialize;

use crate::hygiene::escape_controls;

/// The display name of a phase number (`"Ready"`, `"Error"`…), `"Phase(N)"` for unknown numbers.
pub fn phase_name(phase: i32) -> String {
    match SandboxPhase::try_from(phase) {
        Ok(SandboxPhase::Unspecified) => "Unspecified".into(),
        Ok(SandboxPhase::Provisioning) => "Provisioning".into(),
        Ok(SandboxPhase::Ready) => "Ready".into(),
        Ok(SandboxPhase::Error) => "Error".into(),
        Ok(SandboxPhase::Deleting) => "Deleting".into(),
        Ok(SandboxPhase::Unknown) => "Unknown".into(),
        Ok(SandboxPhase::Stopping) => "Stopping".into(),
        Ok(SandboxPhase::Stopped) => "Stopped".into(),
        Ok(SandboxPhase::Starting) => "Starting".into(),
        Err(_) => format!("Phase({phase})"),
    }
}

fn clean(text: &str) -> String {
    escape_controls(text).into_owned()
}

/// One condition as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConditionView {
    /// `Ready`, `EnforcementDegraded`…
    #[serde(rename = "type")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The reason, e.g. `SupervisorError`.
    pub reason: String,
    /// The message (control characters escaped).
    pub message: String,
    /// When the status last changed, as the gateway wrote it.
    pub last_transition_time: String,
}

impl From<&SandboxCondition> for ConditionView {
    fn from(c: &SandboxCondition) -> Self {
        ConditionView {
            kind: clean(&c.r#type),
            status: clean(&c.status),
            reason: clean(&c.reason),
            message: clean(&c.message),
            last_transition_time: clean(&c.last_transition_time),
        }
    }
}

/// A sandbox as `get` and `list` show it; its JSON form is the CLI's stable output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxView {
    /// Sandbox name.
    pub name: String,
    /// Sandbox id.
    pub id: String,
    /// Phase name, e.g. `Ready`.
    pub phase: String,
    /// The main process's exit code, once it has exited.
    pub exit_code: Option<i32>,
    /// Image reference.
    pub image: String,
    /// Labels, sorted by key.
    pub labels: BTreeMap<String, String>,
    /// Creation time, milliseconds since the epoch.
    pub created_at_ms: i64,
    /// The object's resource version.
    pub resource_version: u64,
    /// Every condition, in the gateway's order.
    pub conditions: Vec<ConditionView>,
}

impl From<&Sandbox> for SandboxView {
    fn from(sb: &Sandbox) -> Self {
        let meta = sb.metadata.clone().unwrap_or_default();
        let status = sb.status.clone().unwrap_or_default();
        let image = sb
            .spec
            .as_ref()
            .and_then(|s| s.template.as_ref())
            .map(|t| clean(&t.image))
            .unwrap_or_default();
        SandboxView {
            name: clean(&meta.name),
            id: clean(&meta.id),
            phase: phase_name(status.phase),
            exit_code: status.exit_code,
            image,
            labels: meta
                .labels
                .iter()
                .map(|(k, v)| (clean(k), clean(v)))
                .collect(),
            created_at_ms: meta.created_at_ms,
            resource_version: meta.resource_version,
            conditions: status.conditions.iter().map(ConditionView::from).collect(),
        }
    }
}

impl SandboxView {
    /// The `Ready` condition, if the gateway sent one.
    pub fn ready(&self) -> Option<&ConditionView> {
        self.conditions
            .iter()
            .find(|c| c.kind == openshell_proto::conditions::READY)
    }
}

/// Continuation lines of a multi-line message, indented under their first line.
fn indent_lines(text: &str, indent: &str) -> String {
    text.replace('\n', &format!("\n{indent}"))
}

/// The text of `sandbox get`.
pub fn sandbox_text(view: &SandboxView) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "Name:       {}", view.name);
    let _ = writeln!(out, "Id:         {}", view.id);
    let _ = writeln!(out, "Image:      {}", view.image);
    let _ = writeln!(out, "Phase:      {}", view.phase);
    if let Some(code) = view.exit_code {
        let _ = writeln!(out, "Exit code:  {code}");
    }
    if !view.labels.is_empty() {
        let labels: Vec<String> = view
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(out, "Labels:     {}", labels.join(","));
    }
    if view.conditions.is_empty() {
        let _ = writeln!(out, "Conditions: <none>");
    } else {
        let _ = writeln!(out, "Conditions:");
        for c in &view.conditions {
            let _ = writeln!(out, "  {} = {}  reason: {}", c.kind, c.status, c.reason);
            if !c.message.is_empty() {
                let _ = writeln!(
                    out,
                    "    message: {}",
                    indent_lines(&c.message, "             ")
                );
            }
        }
    }
    out
}

/// The text of `sandbox list`: a header and one row per sandbox.
pub fn list_text(views: &[SandboxView]) -> String {
    let rows: Vec<[String; 4]> = views
        .iter()
        .map(|v| {
            let reason = v.ready().map(|c| c.reason.clone()).unwrap_or_default();
            [v.name.clone(), v.phase.clone(), reason, v.id.clone()]
        })
        .collect();
    let header = ["NAME", "PHASE", "REASON", "ID"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Pretty JSON of one value, ending in a newline.
pub fn json<T: Serialize>(value: &T) -> String {
    // Serializing plain structs of strings and numbers cannot fail; fall back to `null` anyway.
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use openshell_proto::datamodel::v1::ObjectMeta;
    use openshell_proto::v1::{SandboxSpec, SandboxStatus, SandboxTemplate};

    fn errored() -> Sandbox {
        Sandbox {
            metadata: Some(ObjectMeta {
                id: "id-1".into(),
                name: "box".into(),
                created_at_ms: 1700,
                labels: [("team".to_string(), "a".to_string())].into(),
                resource_version: 4,
                ..Default::default()
            }),
            spec: Some(SandboxSpec {
                template: Some(SandboxTemplate {
                    image: "img:1".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            status: Some(SandboxStatus {
                phase: SandboxPhase::Error as i32,
                exit_code: Some(3),
                conditions: vec![
                    SandboxCondition {
                        r#type: "Ready".into(),
                        status: "False".into(),
                        reason: "SupervisorError".into(),
                        message: "policy: bad \u{1b}[31mred\u{9b}2J".into(),
                        last_transition_time: "t".into(),
                    },
                    SandboxCondition {
                        r#type: "EnforcementDegraded".into(),
                        status: "True".into(),
                        reason: "EnforcementDegraded".into(),
                        message: "netns(skipped)".into(),
                        last_transition_time: "t".into(),
                    },
                ],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn phase_names_cover_known_and_unknown_numbers() {
        assert_eq!(phase_name(1), "Provisioning");
        assert_eq!(phase_name(2), "Ready");
        assert_eq!(phase_name(3), "Error");
        assert_eq!(phase_name(42), "Phase(42)");
    }

    #[test]
    fn text_shows_phase_exit_code_and_every_condition_escaped() {
        let text = sandbox_text(&SandboxView::from(&errored()));
        assert!(text.contains("Name:       box\n"), "{text}");
        assert!(text.contains("Id:         id-1\n"), "{text}");
        assert!(text.contains("Phase:      Error\n"), "{text}");
        assert!(text.contains("Exit code:  3\n"), "{text}");
        assert!(text.contains("Labels:     team=a\n"), "{text}");
        assert!(
            text.contains("  Ready = False  reason: SupervisorError\n"),
            "{text}"
        );
        assert!(
            text.contains("message: policy: bad \\u{1b}[31mred\\u{9b}2J"),
            "{text}"
        );
        assert!(text.contains("  EnforcementDegraded = True  reason: EnforcementDegraded\n"));
        assert!(text.contains("message: netns(skipped)"), "{text}");
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{9b}'),
            "{text}"
        );
    }

    #[test]
    fn text_omits_exit_code_when_unset_and_says_when_there_are_no_conditions() {
        let mut sb = errored();
        let status = sb.status.as_mut().unwrap();
        status.exit_code = None;
        status.conditions.clear();
        let text = sandbox_text(&SandboxView::from(&sb));
        assert!(!text.contains("Exit code"), "{text}");
        assert!(text.contains("Conditions: <none>"), "{text}");
    }

    #[test]
    fn json_is_a_stable_object_with_escaped_messages() {
        let value: serde_json::Value =
            serde_json::from_str(&json(&SandboxView::from(&errored()))).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "name": "box",
                "id": "id-1",
                "phase": "Error",
                "exit_code": 3,
                "image": "img:1",
                "labels": {"team": "a"},
                "created_at_ms": 1700,
                "resource_version": 4,
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "SupervisorError",
                     "message": "policy: bad \\u{1b}[31mred\\u{9b}2J", "last_transition_time": "t"},
                    {"type": "EnforcementDegraded", "status": "True",
                     "reason": "EnforcementDegraded", "message": "netns(skipped)",
                     "last_transition_time": "t"}
                ]
            })
        );
    }

    #[test]
    fn json_field_order_is_fixed() {
        let text = json(&SandboxView::from(&errored()));
        let order = [
            "\"name\"",
            "\"id\"",
            "\"phase\"",
            "\"exit_code\"",
            "\"conditions\"",
        ];
        let positions: Vec<usize> = order.iter().map(|k| text.find(k).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn json_has_null_exit_code_when_unset() {
        let mut sb = errored();
        sb.status.as_mut().unwrap().exit_code = None;
        let value: serde_json::Value =
            serde_json::from_str(&json(&SandboxView::from(&sb))).unwrap();
        assert!(value["exit_code"].is_null());
    }

    #[test]
    fn list_text_has_a_header_and_aligned_rows() {
        let mut ready = errored();
        ready.metadata.as_mut().unwrap().name = "a-much-longer-name".into();
        let text = list_text(&[SandboxView::from(&errored()), SandboxView::from(&ready)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[0].starts_with("NAME                PHASE  REASON"),
            "{text}"
        );
        assert!(
            lines[1].starts_with("box                 Error  SupervisorError  id-1"),
            "{text}"
        );
    }

    #[test]
    fn a_sandbox_without_metadata_or_status_still_renders() {
        let view = SandboxView::from(&Sandbox::default());
        assert_eq!(view.phase, "Unspecified");
        assert!(sandbox_text(&view).contains("Conditions: <none>"));
    }
}
