//! `junit.xml` for CI systems: one `<testsuite>` per run, one `<testcase>` per case (classname
//! `openshell.conformance.<driver>`), `<failure>` for failed and unexpectedly passed cases,
//! `<skipped>` for skipped ones; expected failures pass with a `<system-out>` note.

use super::{Outcome, RunReport};

/// Escapes text for XML content and attributes, dropping characters XML 1.0 cannot carry.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

/// The JUnit XML text of a report.
pub fn render(report: &RunReport) -> String {
    let s = report.summary();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"openshell-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">\n",
        report.cases.len(),
        s.failed + s.xpass,
        s.skipped
    ));
    out.push_str(&format!(
        "  <testsuite name=\"openshell-conformance.{}\" tests=\"{}\" failures=\"{}\" errors=\"0\" skipped=\"{}\" time=\"{:.3}\">\n",
        escape(&report.driver),
        report.cases.len(),
        s.failed + s.xpass,
        s.skipped,
        report.duration_ms as f64 / 1000.0
    ));
    out.push_str(&format!(
        "    <properties><property name=\"gateway\" value=\"{}\"/><property name=\"run-id\" value=\"{}\"/></properties>\n",
        escape(&report.gateway),
        escape(&report.run_id)
    ));
    for c in &report.cases {
        out.push_str(&format!(
            "    <testcase classname=\"openshell.conformance.{}\" name=\"{}\" time=\"{:.3}\">\n",
            escape(&c.driver),
            escape(&c.id),
            c.duration_ms as f64 / 1000.0
        ));
        match c.result {
            Outcome::Failed | Outcome::Xpass => {
                let first = c.message.lines().next().unwrap_or_default();
                out.push_str(&format!(
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                    escape(first),
                    escape(&c.requirement),
                    escape(&c.message)
                ));
            }
            Outcome::Skipped | Outcome::NotSupported => out.push_str(&format!(
                "      <skipped message=\"{}\"/>\n",
                escape(&c.message)
            )),
            Outcome::Xfail => out.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                escape(&c.message)
            )),
            Outcome::Passed => {}
        }
        out.push_str(&format!(
            "      <properties><property name=\"requirements\" value=\"{}\"/><property name=\"level\" value=\"{}\"/></properties>\n",
            escape(&c.requirements.join(",")),
            escape(&c.level)
        ));
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_and_control_characters_are_escaped() {
        assert_eq!(
            escape("a<b & \"c\"\x1b"),
            "a&lt;b &amp; &quot;c&quot;\\u{1b}"
        );
    }
}
