//! Upstream NVIDIA/OpenShell's reason names (`shared/reference/wire-subset.md`), so a run against
//! an implementation that uses them says precisely which reason it saw and which it expected.

use openshell_proto::ReadyReason;

/// Upstream's name for a reason of this contract, where the two differ.
pub fn upstream_names(contract_reason: ReadyReason) -> &'static [&'static str] {
    match contract_reason {
        ReadyReason::SupervisorConnected => &["DependenciesReady"],
        ReadyReason::SupervisorDisconnected => &["DependenciesNotReady"],
        ReadyReason::ProcessExited => &["ContainerExited", "MainProcessExited"],
        _ => &[],
    }
}

/// A note for a reason mismatch: empty unless `observed` is upstream's name for `expected`.
pub fn note(expected: ReadyReason, observed: &str) -> Option<String> {
    upstream_names(expected).contains(&observed).then(|| {
        format!(
            "saw upstream OpenShell's reason `{observed}` where this contract expects `{expected}` \
             (upstream naming, see shared/reference/wire-subset.md)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_reason_names_are_recognised_precisely() {
        let n = note(ReadyReason::SupervisorConnected, "DependenciesReady").unwrap();
        assert!(
            n.contains("`DependenciesReady`") && n.contains("`SupervisorConnected`"),
            "{n}"
        );
        assert!(note(ReadyReason::SupervisorConnected, "Starting").is_none());
        assert!(note(ReadyReason::ProcessExited, "ContainerExited").is_some());
    }
}
