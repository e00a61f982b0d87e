//! `report.md`: the run for people: summary, a table of every case, then each failure in full.

use super::{Outcome, RunReport};

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown text of a report.
pub fn render(report: &RunReport) -> String {
    let s = report.summary();
    let features: Vec<&str> = report.features.iter().map(|f| f.name()).collect();
    let mut out = format!(
        "# OpenShell conformance run `{}`\n\n- contract: SPEC.md version {}\n- driver: `{}`\n- gateway: `{}`\n- features judged: {}\n- result: **{} passed, {} failed, {} skipped, {} xfail, {} xpass, {} not supported**\n\n",
        report.run_id,
        crate::spec::requirements::version(),
        report.driver,
        report.gateway,
        if features.is_empty() { "none".to_string() } else { features.join(", ") },
        s.passed,
        s.failed,
        s.skipped,
        s.xfail,
        s.xpass,
        s.not_supported
    );
    for note in &report.notes {
        out.push_str(&format!("> {}\n\n", cell(note)));
    }
    let verdicts = super::verdicts::verdicts(report);
    for level in super::verdicts::levels(&verdicts) {
        out.push_str(&format!(
            "- {}\n",
            super::verdicts::level_line(&level, &report.driver)
        ));
    }
    let missed = super::verdicts::should_missed(&verdicts);
    if !missed.is_empty() {
        out.push_str(&format!("- SHOULD missed: {}\n", missed.join(", ")));
    }
    let medians = super::verdicts::latency_medians(report);
    if !medians.is_empty() {
        let text: Vec<String> = medians
            .iter()
            .map(|(k, v)| format!("{} {v} ms", k.key()))
            .collect();
        out.push_str(&format!("- latency medians: {}\n", text.join(", ")));
    }
    out.push('\n');
    out.push_str("| case | result | requirement | level | time |\n|---|---|---|---|---|\n");
    for c in &report.cases {
        out.push_str(&format!(
            "| `{}` | {} | {} | {} | {:.1} s |\n",
            c.id,
            c.result.label(),
            c.requirement,
            c.level,
            c.duration_ms as f64 / 1000.0
        ));
    }
    let problems: Vec<_> = report
        .cases
        .iter()
        .filter(|c| {
            matches!(
                c.result,
                Outcome::Failed
                    | Outcome::Xpass
                    | Outcome::Skipped
                    | Outcome::Xfail
                    | Outcome::NotSupported
            )
        })
        .collect();
    out.push_str(
        "\n## Requirements\n\n| requirement | level | verdict | cases |\n|---|---|---|---|\n",
    );
    for v in &verdicts {
        out.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            v.id,
            v.level,
            serde_json::to_value(v.verdict)
                .ok()
                .and_then(|j| j.as_str().map(String::from))
                .unwrap_or_default(),
            v.cases.join(", ")
        ));
    }
    if !problems.is_empty() {
        out.push_str("\n## Details\n");
        for c in problems {
            out.push_str(&format!(
                "\n### `{}` — {}\n\n```text\n{}\n```\n",
                c.id,
                c.result.label(),
                c.message
            ));
            if c.failure.is_some() {
                out.push_str(&format!("Diagnostics: `diagnostics/{}/`\n", c.id));
            }
        }
    }
    out
}
