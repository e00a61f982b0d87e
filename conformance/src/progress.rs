//! What a run prints while it runs: one line per finished case, and on a terminal a progress bar
//! under them (indicatif). Piped or in CI, the lines alone, so logs stay plain text.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressStyle};

use crate::report::{CaseReport, Outcome};

/// The run's progress display.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    done: usize,
}

impl Progress {
    /// A display for `total` cases; silent when `verbose` is false.
    pub fn new(total: usize, verbose: bool) -> Progress {
        let bar = (verbose && std::io::stdout().is_terminal()).then(|| {
            let bar = ProgressBar::new(total as u64);
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} {pos}/{len} cases  {elapsed}  {msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
        }
    }

    /// A case finished.
    pub fn case(&mut self, case: &CaseReport, verbose: bool) {
        self.done += 1;
        if !verbose {
            return;
        }
        let text = line(self.done.min(self.total), self.total, case);
        match &self.bar {
            Some(bar) => {
                bar.println(text.trim_end());
                bar.inc(1);
                bar.set_message(case.id.clone());
            }
            None => {
                // A closed pipe (`| head`) is not worth a panic.
                let _ = std::io::stdout().lock().write_all(text.as_bytes());
            }
        }
    }

    /// The run is over: remove the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// `[  3/31] PASS   fixture-good (process, 0.1s)` plus the message of a failure or a skip.
pub fn line(done: usize, total: usize, case: &CaseReport) -> String {
    let mut out = format!(
        "[{done:>3}/{total}] {:<6} {} ({}, {:.1}s)\n",
        case.result.label(),
        case.id,
        case.driver,
        case.duration_ms as f64 / 1000.0
    );
    if matches!(
        case.result,
        Outcome::Failed | Outcome::Xpass | Outcome::Skipped | Outcome::NotSupported
    ) && !case.message.is_empty()
    {
        for text in case.message.lines().take(40) {
            out.push_str("         ");
            out.push_str(text);
            out.push('\n');
        }
    }
    out
}
