//! A container's output: followed from the engine's log stream (stdout and stderr), split into
//! lines, sent as [`DriverEvent::Output`] and kept as a bounded tail per sandbox.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures::StreamExt;
use openshell_driver::{DriverEvent, EventSender};
use tokio::sync::watch;

use crate::engine::{self, Engine};

/// Lines kept in a sandbox's tail.
pub const TAIL_LINES: usize = 200;
/// Bytes kept in a sandbox's tail.
pub const TAIL_BYTES: usize = 64 * 1024;
/// A longer line is cut into pieces of this size.
pub const MAX_LINE: usize = 16 * 1024;

/// The last lines of a sandbox's output, at most [`TAIL_LINES`] lines and [`TAIL_BYTES`] bytes.
#[derive(Debug, Default)]
pub struct Tail {
    lines: VecDeque<String>,
    bytes: usize,
}

impl Tail {
    /// Appends a line, dropping the oldest ones beyond the bounds.
    pub fn push(&mut self, line: String) {
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > TAIL_LINES || (self.bytes > TAIL_BYTES && self.lines.len() > 1) {
            let dropped = self.lines.pop_front().expect("not empty");
            self.bytes -= dropped.len();
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// Splits a byte stream into lines (without the `\n`), cutting lines longer than [`MAX_LINE`].
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
}

impl Splitter {
    /// Feeds bytes; returns the lines completed by them.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        for &byte in bytes {
            if byte == b'\n' {
                lines.push(take_line(&mut self.pending));
            } else {
                self.pending.push(byte);
                if self.pending.len() >= MAX_LINE {
                    lines.push(take_line(&mut self.pending));
                }
            }
        }
        lines
    }

    /// The unterminated rest, if any.
    pub fn finish(&mut self) -> Option<String> {
        (!self.pending.is_empty()).then(|| take_line(&mut self.pending))
    }
}

fn take_line(pending: &mut Vec<u8>) -> String {
    let mut line = String::from_utf8_lossy(pending).into_owned();
    pending.clear();
    if line.ends_with('\r') {
        line.pop();
    }
    line
}

/// Where a sandbox's lines go: the driver's event channel and the sandbox's tail.
#[derive(Debug, Clone)]
pub struct Sink {
    pub sandbox_id: String,
    pub tail: Arc<Mutex<Tail>>,
    pub events: EventSender,
}

impl Sink {
    /// Sends one line and keeps it in the tail.
    pub fn line(&self, line: String) {
        self.tail
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line.clone());
        let _ = self.events.send(DriverEvent::Output {
            sandbox_id: self.sandbox_id.clone(),
            line,
        });
    }
}

/// The lines a follow stream sent, counted, so a later complete read can add only what it missed.
#[derive(Debug, Default)]
struct Sent {
    counts: std::collections::HashMap<String, usize>,
}

impl Sent {
    fn send(&mut self, sink: &Sink, line: String) {
        *self.counts.entry(line.clone()).or_default() += 1;
        sink.line(line);
    }

    /// The lines of a complete read that were not sent (each sent line accounts for one copy).
    fn missing(mut self, complete: Vec<String>) -> Vec<String> {
        complete
            .into_iter()
            .filter(|line| match self.counts.get_mut(line) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            })
            .collect()
    }
}

/// Follows the container's output until its log stream ends (the container stopped or went
/// away). The returned receiver turns `true` once every line has been sent.
pub fn follow(engine: Arc<Engine>, container: String, sink: Sink) -> watch::Receiver<bool> {
    let (done, finished) = watch::channel(false);
    tokio::spawn(async move {
        if let Ok(client) = engine.client("follow logs") {
            let options = LogsOptions {
                follow: true,
                stdout: true,
                stderr: true,
                ..Default::default()
            };
            let mut stream = client.logs(&container, Some(options));
            let (mut out, mut err) = (Splitter::default(), Splitter::default());
            let mut sent = Sent::default();
            while let Some(Ok(chunk)) = stream.next().await {
                let (splitter, bytes) = match &chunk {
                    LogOutput::StdErr { message } => (&mut err, message),
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        (&mut out, message)
                    }
                    LogOutput::StdIn { .. } => continue,
                };
                splitter
                    .feed(bytes)
                    .into_iter()
                    .for_each(|line| sent.send(&sink, line));
            }
            out.finish()
                .into_iter()
                .chain(err.finish())
                .for_each(|line| sent.send(&sink, line));
            // Docker 20.10 can end a follow stream of a container that just exited before the
            // last write of its other stream reached the log (seen under gVisor: the stdout line
            // lost, the stderr line kept). The stopped container's log is complete: read it once
            // and send what the follow missed, so no diagnostic is lost before `Exited`.
            if let Ok(lines) = read_tail(&engine, &container).await {
                for line in sent.missing(lines) {
                    sink.line(line);
                }
            }
        }
        let _ = done.send(true);
    });
    finished
}

/// The last [`TAIL_LINES`] lines of a container's output, read once (for a container this
/// driver did not follow, e.g. one left from before a gateway restart).
pub async fn read_tail(engine: &Engine, container: &str) -> engine::Result<Vec<String>> {
    let options = LogsOptions {
        follow: false,
        stdout: true,
        stderr: true,
        tail: TAIL_LINES.to_string(),
        ..Default::default()
    };
    let chunks = engine
        .bounded("read logs", engine::QUICK, |client| async move {
            let mut stream = client.logs(container, Some(options));
            let mut chunks = Vec::new();
            while let Some(chunk) = stream.next().await {
                chunks.push(chunk?);
            }
            Ok(chunks)
        })
        .await?;
    let mut splitter = Splitter::default();
    let mut lines = Vec::new();
    for chunk in chunks {
        lines.extend(splitter.feed(chunk.as_ref()));
        lines.extend(splitter.finish());
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_read_adds_only_what_the_follow_missed() {
        let mut sent = Sent::default();
        *sent.counts.entry("oops".into()).or_default() += 1;
        *sent.counts.entry("x".into()).or_default() += 1;
        let complete = ["hi", "x", "oops", "x"].map(String::from).to_vec();
        assert_eq!(
            sent.missing(complete),
            vec!["hi".to_string(), "x".to_string()]
        );
    }

    #[test]
    fn splitter_joins_partial_chunks_and_cuts_long_lines() {
        let mut s = Splitter::default();
        assert_eq!(s.feed(b"hel"), Vec::<String>::new());
        assert_eq!(s.feed(b"lo\r\nwor"), vec!["hello"]);
        assert_eq!(s.finish(), Some("wor".to_string()));
        assert_eq!(s.finish(), None);
        let long = vec![b'x'; MAX_LINE + 3];
        let lines = s.feed(&long);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), MAX_LINE);
        assert_eq!(s.finish(), Some("xxx".to_string()));
    }

    #[test]
    fn tail_keeps_the_newest_lines_within_both_bounds() {
        let mut tail = Tail::default();
        for i in 0..(TAIL_LINES + 50) {
            tail.push(format!("line {i}"));
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines.last().unwrap(), &format!("line {}", TAIL_LINES + 49));
        let mut tail = Tail::default();
        for _ in 0..10 {
            tail.push("y".repeat(MAX_LINE));
        }
        assert!(tail.lines().len() * MAX_LINE <= TAIL_BYTES);
    }
}
