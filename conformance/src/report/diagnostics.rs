//! Per failed case, `diagnostics/<case-id>/`: `failure.txt` (requirement, expected, observed),
//! `history.txt` (every status the watch streams showed) and `backend-output.txt` (the backend
//! output tail from `WatchSandbox follow_logs`, which the gateway keeps after removal).

use std::path::Path;

use super::RunReport;

/// Writes the diagnostics folders of every failed case.
pub fn write(report: &RunReport, dir: &Path) -> std::io::Result<()> {
    for case in &report.cases {
        let Some(failure) = &case.failure else {
            continue;
        };
        let folder = dir.join(&case.id);
        std::fs::create_dir_all(&folder)?;
        std::fs::write(
            folder.join("failure.txt"),
            format!(
                "case: {}\ndriver: {}\nrequirement: {}\nexpected: {}\nobserved: {}\n{}",
                case.id,
                case.driver,
                failure.requirement,
                failure.expected,
                failure.observed,
                failure
                    .note
                    .as_deref()
                    .map(|n| format!("note: {n}\n"))
                    .unwrap_or_default()
            ),
        )?;
        let history: Vec<String> = failure.history.iter().map(ToString::to_string).collect();
        std::fs::write(folder.join("history.txt"), history.join("\n") + "\n")?;
        std::fs::write(
            folder.join("backend-output.txt"),
            failure.logs.join("\n") + "\n",
        )?;
    }
    Ok(())
}
