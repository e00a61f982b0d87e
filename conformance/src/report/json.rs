//! `report.json`: `{"summary":{…},"driver":…,"gateway":…,"cases":[{"id","requirement","level",
//! "driver","result","duration_ms","message",…}],…}`.

use super::RunReport;

/// The JSON text of a report.
pub fn render(report: &RunReport) -> String {
    let mut value = serde_json::to_value(report).expect("reports serialize");
    value["summary"] = serde_json::to_value(report.summary()).expect("counts serialize");
    value["spec"] = serde_json::json!("conformance/SPEC.md");
    serde_json::to_string_pretty(&value).expect("values serialize")
}
