//! `report.json`: `{"summary":{…},"spec_version":N,"driver":…,"gateway":…,"cases":[{"id",
//! "requirement","failed_requirements","level","driver","result","duration_ms","latencies_ms",
//! "message",…}],"requirements":[{"id","strength","level","verdict","cases"}],"levels":[{"level",
//! "met","total",…}],"should_missed":[…],"latency_medians_ms":{…},…}`.

use super::RunReport;

/// The JSON text of a report.
pub fn render(report: &RunReport) -> String {
    let mut value = serde_json::to_value(report).expect("reports serialize");
    value["summary"] = serde_json::to_value(report.summary()).expect("counts serialize");
    value["spec"] = serde_json::json!("conformance/SPEC.md");
    value["spec_version"] = serde_json::json!(crate::spec::requirements::version());
    let verdicts = super::verdicts::verdicts(report);
    value["levels"] =
        serde_json::to_value(super::verdicts::levels(&verdicts)).expect("levels serialize");
    value["should_missed"] = serde_json::json!(super::verdicts::should_missed(&verdicts));
    value["requirements"] = serde_json::to_value(&verdicts).expect("verdicts serialize");
    value["latency_medians_ms"] =
        serde_json::to_value(super::verdicts::latency_medians(report)).expect("medians serialize");
    serde_json::to_string_pretty(&value).expect("values serialize")
}
