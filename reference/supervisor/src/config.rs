//! Step 1 of the startup: the supervisor's configuration, read from its environment and argv.
//!
//! Nothing here touches the system; every function takes the environment as data so the
//! rules (truthy values, the skip list, the main process) are unit tested without changing
//! the test process.

use std::collections::BTreeSet;
use std::time::Duration;

use openshell_proto::env;
use serde::Deserialize;

/// Errors of the configuration step (stage CONFIG).
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// A variable every driver must set is missing or empty.
    #[error("{0} is not set (every driver must set it)")]
    Missing(&'static str),
    /// A variable has a value outside its documented set.
    #[error("{name}={value:?} is invalid: {expected}")]
    Invalid {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// `OPENSHELL_MAIN_PROCESS_SPEC` is not the documented JSON.
    #[error("{var} is not valid JSON {{\"version\":1,\"command\":[…],\"tty\":false}}: {0}", var = env::MAIN_PROCESS_SPEC)]
    Spec(String),
    /// Neither the spec nor argv names a main process.
    #[error(
        "no main process: {} is not set and the supervisor got no command arguments",
        env::MAIN_PROCESS_SPEC
    )]
    NoMainProcess,
}

/// Result alias of this module.
pub type Result<T> = std::result::Result<T, ConfigError>;

/// An enforcement subsystem that best-effort mode may tolerate or a declaration may skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subsystem {
    /// The workload network namespace.
    Netns,
    /// The seccomp prelude on the supervisor itself.
    SupervisorSeccomp,
    /// The seccomp filter of every spawned process.
    WorkloadSeccomp,
}

impl Subsystem {
    /// Every subsystem, in startup order.
    pub const ALL: [Subsystem; 3] = [Self::Netns, Self::SupervisorSeccomp, Self::WorkloadSeccomp];

    /// The wire name (`DegradedSubsystem.subsystem`, `OPENSHELL_SKIP_BOOTSTRAP` entries).
    pub fn name(self) -> &'static str {
        match self {
            Self::Netns => "netns",
            Self::SupervisorSeccomp => "supervisor-seccomp",
            Self::WorkloadSeccomp => "workload-seccomp",
        }
    }
}

/// The supervisor's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `OPENSHELL_SANDBOX_ID`.
    pub sandbox_id: String,
    /// `OPENSHELL_ENDPOINT`.
    pub endpoint: String,
    /// `OPENSHELL_SANDBOX_TOKEN` (never passed on to anything the supervisor starts).
    pub token: String,
    /// The rest of the configuration, which can fail after the gateway is known.
    pub rest: std::result::Result<Settings, ConfigError>,
}

/// Settings beyond the three credentials; an error here is reported to the gateway.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The main process argv.
    pub command: Vec<String>,
    /// `OPENSHELL_BEST_EFFORT_FAILURES` is truthy.
    pub best_effort: bool,
    /// `OPENSHELL_SKIP_BOOTSTRAP`: subsystems never attempted.
    pub skip: BTreeSet<Subsystem>,
    /// `OPENSHELL_BOOT_HOOK_TIMEOUT` (default 60 s).
    pub hook_timeout: Duration,
    /// `OPENSHELL_GATEWAY_TIMEOUT` (default 10 s): the first session and a startup error report
    /// share it.
    pub gateway_timeout: Duration,
}

/// The default boot hook timeout.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);
/// The default budget for reaching the gateway at startup.
pub const DEFAULT_GATEWAY_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MainProcessSpec {
    version: u32,
    command: Vec<String>,
    #[serde(default)]
    tty: bool,
}

impl Config {
    /// Reads the configuration from `lookup` (an environment) and the supervisor's arguments.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>, args: &[String]) -> Result<Config> {
        let required = |name: &'static str| {
            lookup(name)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(name))
        };
        Ok(Config {
            sandbox_id: required(env::SANDBOX_ID)?,
            endpoint: required(env::ENDPOINT)?,
            token: required(env::SANDBOX_TOKEN)?,
            rest: Settings::from_lookup(&lookup, args),
        })
    }
}

impl Settings {
    fn from_lookup(lookup: &impl Fn(&str) -> Option<String>, args: &[String]) -> Result<Settings> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());
        if crate::mutants::active("lenient-config") {
            // Whatever does not parse is dropped for the default.
            let lenient = |v: Option<String>, f: fn(&str) -> bool| v.filter(|v| f(v));
            let skip = get(env::SKIP_BOOTSTRAP).unwrap_or_default();
            let known: Vec<&str> = skip
                .split(',')
                .map(str::trim)
                .filter(|i| skip_list(i).is_ok())
                .collect();
            return Ok(Settings {
                command: main_command(get(env::MAIN_PROCESS_SPEC).as_deref(), args)?,
                best_effort: lenient(get(env::BEST_EFFORT_FAILURES), |v| truthy(v).is_ok())
                    .is_some_and(|v| truthy(&v).unwrap_or(false)),
                skip: skip_list(&known.join(",")).unwrap_or_default(),
                hook_timeout: get(env::BOOT_HOOK_TIMEOUT)
                    .and_then(|v| seconds(env::BOOT_HOOK_TIMEOUT, &v).ok())
                    .unwrap_or(DEFAULT_HOOK_TIMEOUT),
                gateway_timeout: get(env::GATEWAY_TIMEOUT)
                    .and_then(|v| seconds(env::GATEWAY_TIMEOUT, &v).ok())
                    .unwrap_or(DEFAULT_GATEWAY_TIMEOUT),
            });
        }
        Ok(Settings {
            command: main_command(get(env::MAIN_PROCESS_SPEC).as_deref(), args)?,
            best_effort: get(env::BEST_EFFORT_FAILURES)
                .map(|v| truthy(&v))
                .transpose()?
                .unwrap_or(false),
            skip: get(env::SKIP_BOOTSTRAP)
                .map(|v| skip_list(&v))
                .transpose()?
                .unwrap_or_default(),
            hook_timeout: get(env::BOOT_HOOK_TIMEOUT)
                .map(|v| seconds(env::BOOT_HOOK_TIMEOUT, &v))
                .transpose()?
                .unwrap_or(DEFAULT_HOOK_TIMEOUT),
            gateway_timeout: get(env::GATEWAY_TIMEOUT)
                .map(|v| seconds(env::GATEWAY_TIMEOUT, &v))
                .transpose()?
                .unwrap_or(DEFAULT_GATEWAY_TIMEOUT),
        })
    }
}

/// `OPENSHELL_MAIN_PROCESS_SPEC` when set, else argv[1..].
pub fn main_command(spec: Option<&str>, args: &[String]) -> Result<Vec<String>> {
    if let Some(json) = spec {
        let spec: MainProcessSpec =
            serde_json::from_str(json).map_err(|e| ConfigError::Spec(e.to_string()))?;
        if spec.version != 1 {
            return Err(ConfigError::Spec(format!(
                "version {} is not supported (only 1)",
                spec.version
            )));
        }
        if spec.command.is_empty() || spec.command[0].is_empty() {
            return Err(ConfigError::Spec("command is empty".into()));
        }
        if spec.tty {
            tracing::warn!(
                "tty=true is not supported by the reference supervisor; running without a terminal"
            );
        }
        return Ok(spec.command);
    }
    if crate::mutants::active("argv-ignored") {
        // The image's command ignored for a built-in long-lived default.
        return Ok(vec!["/bin/sleep".into(), "2147483647".into()]);
    }
    if args.is_empty() {
        return Err(ConfigError::NoMainProcess);
    }
    Ok(args.to_vec())
}

/// `1`, `true`, `yes`, `on` (any case) are true; `0`, `false`, `no`, `off` false; anything else is an error.
pub fn truthy(value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Invalid {
            name: env::BEST_EFFORT_FAILURES,
            value: value.into(),
            expected: "use 1, true, yes or on (or 0, false, no, off)",
        }),
    }
}

/// A comma list of subsystem names or `all`.
pub fn skip_list(value: &str) -> Result<BTreeSet<Subsystem>> {
    let mut out = BTreeSet::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "all" {
            out.extend(Subsystem::ALL);
            continue;
        }
        let found = Subsystem::ALL.into_iter().find(|s| s.name() == item);
        out.insert(found.ok_or_else(|| ConfigError::Invalid {
            name: env::SKIP_BOOTSTRAP,
            value: value.into(),
            expected: "a comma list of netns, supervisor-seccomp, workload-seccomp, or all",
        })?);
    }
    Ok(out)
}

/// Positive seconds of variable `name`, fractions allowed (`2`, `0.5`).
pub fn seconds(name: &'static str, value: &str) -> Result<Duration> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| ConfigError::Invalid {
            name,
            value: value.into(),
            expected: "seconds, a positive number up to 86400",
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    const BASE: [(&str, &str); 3] = [
        (env::SANDBOX_ID, "sb"),
        (env::ENDPOINT, "http://127.0.0.1:1"),
        (env::SANDBOX_TOKEN, "t"),
    ];

    #[test]
    fn missing_token_is_a_config_error_naming_the_variable() {
        let err = Config::from_lookup(lookup(&BASE[..2]), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "OPENSHELL_SANDBOX_TOKEN is not set (every driver must set it)"
        );
    }

    #[test]
    fn spec_wins_over_argv_and_argv_is_the_fallback() {
        let spec = r#"{"version":1,"command":["/bin/true"],"tty":false}"#;
        assert_eq!(
            main_command(Some(spec), &["/bin/sleep".into()]).unwrap(),
            ["/bin/true"]
        );
        assert_eq!(
            main_command(None, &["/bin/sleep".into(), "1".into()]).unwrap(),
            ["/bin/sleep", "1"]
        );
        assert!(matches!(
            main_command(None, &[]),
            Err(ConfigError::NoMainProcess)
        ));
        assert!(main_command(Some(r#"{"version":2,"command":["x"]}"#), &[]).is_err());
        assert!(main_command(Some(r#"{"version":1,"command":[]}"#), &[]).is_err());
    }

    #[test]
    fn best_effort_accepts_the_documented_truthy_values_only() {
        for v in ["1", "true", "YES", "on"] {
            assert!(truthy(v).unwrap(), "{v}");
        }
        assert!(!truthy("0").unwrap());
        assert!(truthy("maybe")
            .unwrap_err()
            .to_string()
            .contains("OPENSHELL_BEST_EFFORT_FAILURES"));
    }

    #[test]
    fn skip_list_parses_names_and_all_and_rejects_unknown_names() {
        assert_eq!(skip_list("netns, workload-seccomp").unwrap().len(), 2);
        assert_eq!(skip_list("all").unwrap().len(), 3);
        assert!(skip_list("netns,landlock")
            .unwrap_err()
            .to_string()
            .contains("landlock"));
    }

    #[test]
    fn the_gateway_timeout_defaults_to_ten_seconds_and_takes_fractions() {
        let cfg = Config::from_lookup(lookup(&BASE), &["/bin/sh".into()]).unwrap();
        assert_eq!(cfg.rest.unwrap().gateway_timeout, Duration::from_secs(10));
        let mut pairs = BASE.to_vec();
        pairs.push((env::GATEWAY_TIMEOUT, "2.5"));
        let cfg = Config::from_lookup(lookup(&pairs), &["/bin/sh".into()]).unwrap();
        assert_eq!(
            cfg.rest.unwrap().gateway_timeout,
            Duration::from_millis(2500)
        );
        assert!(seconds(env::GATEWAY_TIMEOUT, "0")
            .unwrap_err()
            .to_string()
            .contains("OPENSHELL_GATEWAY_TIMEOUT"));
    }

    #[test]
    fn settings_errors_are_kept_for_reporting_once_credentials_are_known() {
        let mut pairs = BASE.to_vec();
        pairs.push((env::BOOT_HOOK_TIMEOUT, "soon"));
        let cfg = Config::from_lookup(lookup(&pairs), &["/bin/sh".into()]).unwrap();
        assert!(cfg
            .rest
            .unwrap_err()
            .to_string()
            .contains("OPENSHELL_BOOT_HOOK_TIMEOUT"));
    }
}
