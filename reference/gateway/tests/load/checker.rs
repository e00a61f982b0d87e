//! The lost/reordered-transition check: a watch stream must equal the stored history.
//!
//! The stream starts with the snapshot current when the watch was opened and then carries every
//! stored change in order (proto: `WatchSandbox`). So from its first snapshot on it must be the
//! stored history exactly: a skipped version is a lost transition, a version that goes back or
//! repeats is a reordering, a snapshot that differs from the stored one with the same version is
//! a corrupted one, and a stream that stops before the last stored version lost its tail.

use openshell_proto::v1::Sandbox;

/// How a watch stream departs from the stored history (the first departure only).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamFault {
    /// The stream carried nothing, so not even the opening snapshot.
    #[error("the stream carried no snapshot")]
    Empty,
    /// A stream opened before the first change did not start with the first version.
    #[error("lost the opening snapshot: the stream starts at version {0}, not 1")]
    LostHead(u64),
    /// The first snapshot is no stored version.
    #[error("the first snapshot has version {0}, which was never stored")]
    UnknownStart(u64),
    /// Versions were skipped.
    #[error("lost transition: expected version {expected}, got {got}")]
    Lost { expected: u64, got: u64 },
    /// A version arrived after a later one, or twice.
    #[error("reordered transition: expected version {expected}, got {got}")]
    Reordered { expected: u64, got: u64 },
    /// Same version, different record.
    #[error("version {0} differs from the stored record")]
    Differs(u64),
    /// The stream ended before the last stored versions.
    #[error("lost transitions at the end: stream stopped at version {last_seen}, store has up to {last_stored}")]
    LostTail { last_seen: u64, last_stored: u64 },
    /// The stream carried versions the store does not have.
    #[error("version {0} was streamed but never stored")]
    NotStored(u64),
}

fn version(sb: &Sandbox) -> u64 {
    sb.metadata.as_ref().map_or(0, |m| m.resource_version)
}

/// Checks a stream opened before the sandbox's first change: it must carry the whole history.
pub fn check_whole_history(seen: &[Sandbox], history: &[Sandbox]) -> Result<(), StreamFault> {
    let first = seen.first().ok_or(StreamFault::Empty)?;
    if history.first().map(version) != Some(version(first)) {
        return Err(StreamFault::LostHead(version(first)));
    }
    check_stream(seen, history)
}

/// Checks `seen` (a watch stream, in arrival order) against `history` (every stored version).
pub fn check_stream(seen: &[Sandbox], history: &[Sandbox]) -> Result<(), StreamFault> {
    let first = seen.first().ok_or(StreamFault::Empty)?;
    let start = history
        .iter()
        .position(|h| version(h) == version(first))
        .ok_or(StreamFault::UnknownStart(version(first)))?;
    let stored = &history[start..];
    for (i, got) in seen.iter().enumerate() {
        let Some(expected) = stored.get(i) else {
            return Err(StreamFault::NotStored(version(got)));
        };
        let (e, g) = (version(expected), version(got));
        if g > e {
            // Skipped here: arriving later makes it a reordering, never arriving a loss.
            let later = seen[i + 1..].iter().any(|s| version(s) == e);
            return Err(if later {
                StreamFault::Reordered {
                    expected: e,
                    got: g,
                }
            } else {
                StreamFault::Lost {
                    expected: e,
                    got: g,
                }
            });
        }
        if g < e {
            return Err(StreamFault::Reordered {
                expected: e,
                got: g,
            });
        }
        if got != expected {
            return Err(StreamFault::Differs(g));
        }
    }
    if seen.len() < stored.len() {
        return Err(StreamFault::LostTail {
            last_seen: version(&seen[seen.len() - 1]),
            last_stored: version(&stored[stored.len() - 1]),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use openshell_proto::datamodel::v1::ObjectMeta;
    use openshell_proto::v1::{SandboxPhase, SandboxStatus};

    /// A stored history of `n` versions whose phases differ, like a real one.
    fn history(n: u64) -> Vec<Sandbox> {
        (1..=n)
            .map(|v| Sandbox {
                metadata: Some(ObjectMeta {
                    id: "sb".into(),
                    resource_version: v,
                    ..Default::default()
                }),
                status: Some(SandboxStatus {
                    phase: if v == n {
                        SandboxPhase::Error
                    } else {
                        SandboxPhase::Provisioning
                    } as i32,
                    main_process_instance_id: format!("instance {v}"),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect()
    }

    #[test]
    fn a_stream_equal_to_the_history_passes_from_any_start() {
        let h = history(4);
        assert_eq!(check_stream(&h, &h), Ok(()));
        assert_eq!(check_stream(&h[2..], &h), Ok(()));
    }

    #[test]
    fn a_reordered_stream_fails() {
        let h = history(4);
        let seen = vec![h[0].clone(), h[2].clone(), h[1].clone(), h[3].clone()];
        assert_eq!(
            check_stream(&seen, &h),
            Err(StreamFault::Reordered {
                expected: 2,
                got: 3
            })
        );
        let seen = vec![h[0].clone(), h[1].clone(), h[1].clone(), h[2].clone()];
        assert_eq!(
            check_stream(&seen, &h),
            Err(StreamFault::Reordered {
                expected: 3,
                got: 2
            })
        );
    }

    #[test]
    fn a_stream_that_lost_an_event_fails() {
        let h = history(4);
        let seen = vec![h[0].clone(), h[1].clone(), h[3].clone()];
        assert_eq!(
            check_stream(&seen, &h),
            Err(StreamFault::Lost {
                expected: 3,
                got: 4
            })
        );
    }

    #[test]
    fn a_stream_opened_before_any_change_must_carry_the_first_version() {
        let h = history(3);
        assert_eq!(check_whole_history(&h, &h), Ok(()));
        assert_eq!(
            check_whole_history(&h[1..], &h),
            Err(StreamFault::LostHead(2))
        );
    }

    #[test]
    fn a_stream_that_lost_its_last_event_fails() {
        let h = history(3);
        assert_eq!(
            check_stream(&h[..2], &h),
            Err(StreamFault::LostTail {
                last_seen: 2,
                last_stored: 3
            })
        );
    }

    #[test]
    fn a_changed_record_and_an_unstored_version_fail() {
        let h = history(3);
        let mut seen = h.clone();
        seen[1].status.as_mut().unwrap().main_process_instance_id = "another".into();
        assert_eq!(check_stream(&seen, &h), Err(StreamFault::Differs(2)));
        let mut longer = h.clone();
        longer.push(history(4)[3].clone());
        assert_eq!(check_stream(&longer, &h), Err(StreamFault::NotStored(4)));
        assert_eq!(check_stream(&[], &h), Err(StreamFault::Empty));
        assert_eq!(
            check_stream(&history(5)[4..], &h),
            Err(StreamFault::UnknownStart(5))
        );
    }
}
