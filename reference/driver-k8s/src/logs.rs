//! A sandbox container's output: followed from the Pod's log endpoint once the container runs
//! (or read once when it ended before it was seen running), sent line by line as
//! [`DriverEvent::Output`] and kept as a bounded tail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, LogParams};
use openshell_driver::{DriverEvent, EventSender};
use tokio::sync::watch;

use crate::objects::{pod_name, CONTAINER};

/// Lines kept in a sandbox's tail.
pub const TAIL_LINES: usize = 200;
/// Bytes kept in a sandbox's tail.
pub const TAIL_BYTES: usize = 64 * 1024;
/// How long a one-shot log read may take.
const READ_LIMIT: Duration = Duration::from_secs(5);

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
            if let Some(dropped) = self.lines.pop_front() {
                self.bytes -= dropped.len();
            }
        }
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.lines.iter().cloned().collect()
    }
}

/// Where a sandbox's output lines go: the event channel and the tail.
#[derive(Debug, Clone)]
pub struct Sink {
    /// The sandbox.
    pub sandbox_id: String,
    /// Its tail.
    pub tail: Arc<Mutex<Tail>>,
    /// The driver's events.
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

fn params(follow: bool) -> LogParams {
    LogParams {
        container: Some(CONTAINER.into()),
        follow,
        ..Default::default()
    }
}

/// Follows the container's output until its stream ends (the container ended, or the Pod went);
/// the returned receiver turns `true` then.
pub fn follow(api: Api<Pod>, sink: Sink) -> watch::Receiver<bool> {
    let (done_tx, done_rx) = watch::channel(false);
    tokio::spawn(async move {
        let name = pod_name(&sink.sandbox_id);
        match api.log_stream(&name, &params(true)).await {
            Ok(reader) => {
                let mut lines = std::pin::pin!(reader.lines());
                while let Some(Ok(line)) = lines.next().await {
                    sink.line(line);
                }
            }
            Err(e) => tracing::debug!(pod = %name, error = %e, "no log stream"),
        }
        let _ = done_tx.send(true);
    });
    done_rx
}

/// Reads the container's whole output once (bounded); empty when there is none to read.
pub async fn read_all(api: &Api<Pod>, sandbox_id: &str) -> Vec<String> {
    let name = pod_name(sandbox_id);
    match tokio::time::timeout(READ_LIMIT, api.logs(&name, &params(false))).await {
        Ok(Ok(text)) => text.lines().map(str::to_string).collect(),
        Ok(Err(e)) => {
            tracing::debug!(pod = %name, error = %e, "no logs to read");
            Vec::new()
        }
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_newest_lines_within_its_bounds() {
        let mut tail = Tail::default();
        for i in 0..(TAIL_LINES + 5) {
            tail.push(format!("line {i}"));
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), TAIL_LINES);
        assert_eq!(lines[0], "line 5");
        tail.push("x".repeat(TAIL_BYTES + 1));
        assert_eq!(tail.lines().len(), 1, "one oversized line is still kept");
    }
}
