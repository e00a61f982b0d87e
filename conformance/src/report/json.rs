//! `report.json`: `{"summary":{…},"spec_version":N,"driver":…,"gateway":…,"cases":[{"id",
//! "requirement","failed_requirements","level","driver","result","duration_ms","latencies_ms",
//! "message",…}],…}`.

use super::RunReport;

/// The JSON text of a report.
pub fn render(report: &RunReport) -> String {
    let mut value = serde_json::to_value(report).expect("reports serialize");
    value["summary"] = serde_json::to_value(report.summary()).expect("counts serialize");
    value["spec"] = serde_json::json!("conformance/SPEC.md");
    value["spec_version"] = serde_json::json!(crate::spec::requirements::version());
    serde_json::to_string_pretty(&value).expect("values serialize")
}
