//! The watch bus: how stored changes and backend output reach watchers.
//!
//! One broadcast channel per sandbox. The lifecycle core publishes a snapshot only after it
//! stored it and while it still holds its lock, so the order on the bus is the order in the
//! store. A watcher that falls more than [`CHANNEL_CAPACITY`] events behind is told so
//! (`Lagged`) and its stream ends with an error: never a silent skip.
//!
//! The bus also keeps the last [`LOG_TAIL_LINES`] output lines of each sandbox, so a failure's
//! diagnostics outlive the backend resource that printed them.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use openshell_proto::v1::{Sandbox, SandboxLogLine};
use tokio::sync::broadcast;

/// Events a watcher can fall behind by before its stream ends.
pub const CHANNEL_CAPACITY: usize = 256;
/// Output lines kept per sandbox.
pub const LOG_TAIL_LINES: usize = 200;

/// What travels on a sandbox's channel.
#[derive(Debug, Clone)]
pub enum BusEvent {
    /// A stored version of the record.
    Snapshot(Arc<Sandbox>),
    /// One line of backend output.
    Log(Arc<SandboxLogLine>),
    /// The record was removed (deleted).
    Removed,
}

#[derive(Default)]
struct Topic {
    sender: Option<broadcast::Sender<BusEvent>>,
    tail: VecDeque<Arc<SandboxLogLine>>,
}

/// The bus. Owned by the lifecycle core, behind the core's lock.
#[derive(Default)]
pub struct WatchBus {
    topics: HashMap<String, Topic>,
}

impl WatchBus {
    /// Subscribes to a sandbox's future events.
    pub fn subscribe(&mut self, id: &str) -> broadcast::Receiver<BusEvent> {
        let topic = self.topics.entry(id.to_string()).or_default();
        topic
            .sender
            .get_or_insert_with(|| broadcast::channel(CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Publishes a stored snapshot.
    pub fn publish(&mut self, sandbox: &Sandbox) {
        let id = sandbox
            .metadata
            .as_ref()
            .map(|m| m.id.clone())
            .unwrap_or_default();
        self.send(&id, BusEvent::Snapshot(Arc::new(sandbox.clone())));
    }

    /// Records and publishes an output line.
    pub fn log(&mut self, id: &str, line: SandboxLogLine) {
        let line = Arc::new(line);
        let topic = self.topics.entry(id.to_string()).or_default();
        if topic.tail.len() == LOG_TAIL_LINES {
            topic.tail.pop_front();
        }
        topic.tail.push_back(line.clone());
        self.send(id, BusEvent::Log(line));
    }

    /// The kept output of a sandbox, oldest first, at most `lines` (0: all kept).
    pub fn tail(&self, id: &str, lines: usize) -> Vec<Arc<SandboxLogLine>> {
        let Some(topic) = self.topics.get(id) else {
            return Vec::new();
        };
        let skip = if lines == 0 {
            0
        } else {
            topic.tail.len().saturating_sub(lines)
        };
        topic.tail.iter().skip(skip).cloned().collect()
    }

    /// Tells watchers the record is gone and forgets the sandbox.
    pub fn remove(&mut self, id: &str) {
        self.send(id, BusEvent::Removed);
        self.topics.remove(id);
    }

    fn send(&mut self, id: &str, event: BusEvent) {
        if let Some(sender) = self.topics.get(id).and_then(|t| t.sender.as_ref()) {
            // No receiver is fine: nobody watches this sandbox right now.
            let _ = sender.send(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> SandboxLogLine {
        SandboxLogLine {
            message: n.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn tail_is_bounded_and_keeps_the_newest() {
        let mut bus = WatchBus::default();
        for n in 0..LOG_TAIL_LINES + 50 {
            bus.log("a", line(n));
        }
        let tail = bus.tail("a", 0);
        assert_eq!(tail.len(), LOG_TAIL_LINES);
        assert_eq!(
            tail.last().unwrap().message,
            (LOG_TAIL_LINES + 49).to_string()
        );
        assert_eq!(bus.tail("a", 3).len(), 3);
    }

    #[test]
    fn a_lagging_watcher_is_told_not_skipped() {
        let mut bus = WatchBus::default();
        let mut rx = bus.subscribe("a");
        for n in 0..CHANNEL_CAPACITY + 1 {
            bus.log("a", line(n));
        }
        assert!(matches!(
            rx.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
    }
}
