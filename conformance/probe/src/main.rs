//! `openshell-probe`: the conformance suite's probe that runs *inside* a sandbox (like youki's
//! runtimetest), static so it can be copied into any root at `/usr/local/bin/openshell-probe`.
//!
//! Modes:
//! - `workload [--user NAME] [--marker PATH]` ([`workload`]): run as the sandbox's main
//!   process, checks what the workload sees (network namespace, seccomp, identity, token) and
//!   exits 0 when every check holds, else with the code of the first failed check
//!   ([`workload::Check::code`]); one line per check on stderr.
//! - `hook-record PATH` / `hook-check PATH` ([`hook`]): the boot hook recording what it runs with,
//!   and the main process checking that record against its own credentials and start time.
//! - `rogue hygiene|credentials|session` ([`rogue`], [`session`]): as a fixture's entrypoint
//!   instead of the supervisor, sends crafted `ReportSupervisorError` calls with the driver's
//!   credential, or scripts supervisor sessions (open, drop, reconnect, supersede).
//!
//! Layout: [`sys`] holds the few raw syscalls (the only `unsafe`), [`creds`] what a process runs
//! with, [`workload`] the workload checks.
//! Exit status 2 is a usage error.

mod creds;
mod hook;
mod rogue;
mod session;
mod sys;
mod workload;

use std::process::ExitCode;

const USAGE: &str = "usage: openshell-probe workload [--user NAME] [--marker PATH]\n       openshell-probe hook-record PATH [--linger-ms N]\n       openshell-probe hook-check PATH [--hold SECS]\n       openshell-probe rogue hygiene|credentials|session";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("workload") => match workload::Options::parse(&args[1..]) {
            Ok(opts) => ExitCode::from(workload::run(&opts)),
            Err(e) => usage(&e),
        },
        Some("hook-record") => ExitCode::from(hook::record(&args[1..])),
        Some("hook-check") => ExitCode::from(hook::check(&args[1..])),
        Some("rogue") => ExitCode::from(rogue::run(&args[1..])),
        Some("--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => usage(&format!("unknown mode {other:?}")),
        None => usage("no mode given"),
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("openshell-probe: {problem}\n{USAGE}");
    ExitCode::from(2)
}
