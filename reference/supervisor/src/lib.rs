//! The reference OpenShell supervisor: the first process in every sandbox.
//!
//! It prepares enforcement, runs the image's boot hook, starts the long-lived main process,
//! and holds the gateway session that makes the sandbox Ready. The order and its reasons are
//! the checklist in [`startup`]; `README.md` documents stages, environment and filters.
//!
//! Layout, one module per step:
//! - [`config`]: environment and argv (stage CONFIG);
//! - [`policy`]: `/etc/openshell/policy.yaml`, strict upstream schema (POLICY);
//! - [`identity`]: the workload user and group from the image's files (IDENTITY);
//! - [`netns`]: the workload network namespace (NETNS);
//! - [`seccomp`]: the supervisor prelude and the workload filter, as data (*_SECCOMP);
//! - [`spawn`]: the one pre-exec path (setns → privilege drop → filter → exec);
//! - [`hook`]: the boot hook with its timeout and stderr tail (BOOT_HOOK);
//! - [`reaper`]: PID 1's zombie reaping and exit statuses;
//! - [`session`]: the gateway client: session, heartbeats, reports (GATEWAY);
//! - [`startup`]: the sequence; [`sys`]: every syscall, the only `unsafe` code;
//! - [`mutants`]: deliberately broken behaviours of a `mutants` build (never default).

pub mod config;
pub mod hook;
pub mod identity;
pub mod mutants;
pub mod netns;
pub mod policy;
pub mod reaper;
pub mod seccomp;
pub mod session;
pub mod spawn;
pub mod startup;
pub mod sys;
