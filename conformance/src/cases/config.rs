//! The supervisor's own settings (OSC-CONFIG-001): an unknown or malformed value is a `config:`
//! error naming the variable, never silently ignored.

use openshell_proto::env;
use openshell_proto::v1::SandboxPhase as Phase;
use openshell_proto::ReadyReason;

use crate::cases::fixture::observed;
use crate::check::{ensure, CaseResult};
use crate::harness::{CreateOpts, Harness};
use crate::spec::Req;

/// The bad values: one per variable.
pub const BAD_SETTINGS: &[(&str, &str)] = &[
    (env::SKIP_BOOTSTRAP, "netns,landlock"),
    (env::BEST_EFFORT_FAILURES, "maybe"),
    (env::BOOT_HOOK_TIMEOUT, "soon"),
];

/// OSC-CONFIG-001: a `good` sandbox per bad value, created together, each must end in
/// `Error / SupervisorError` with `config: …` naming its variable.
pub async fn malformed_settings(h: Harness) -> CaseResult {
    let mut created = Vec::new();
    for (i, (var, value)) in BAD_SETTINGS.iter().enumerate() {
        let opts = CreateOpts::default().env(var, value);
        created.push((
            *var,
            *value,
            h.create(&format!("cfg{i}"), "good", opts, Req::CONFIG_001)
                .await?,
        ));
    }
    for (var, value, sandbox) in created {
        let last = h.wait_error(&sandbox, Req::CONFIG_001).await?;
        ensure(
            last.is(Phase::Error, ReadyReason::SupervisorError)
                && last.message().starts_with("config: ")
                && last.message().contains(var),
            Req::CONFIG_001,
            &format!("{var}={value:?} to end in Error / SupervisorError `config: …` naming {var}"),
            || observed(&last),
        )?;
    }
    Ok(())
}
