//! The OpenShell lifecycle conformance suite, as a library the runner binary and the nextest
//! tests both call.
//!
//! The suite reaches a gateway only through the public gRPC API (`openshell-proto`) and finds
//! what a run left behind on the backend itself, by label. It never links any `reference/*`
//! crate: the reference gateway is started as a process like any vendor's would be.
//!
//! Layout:
//! - [`spec`]: the requirements of `conformance/SPEC.md` ([`spec::requirements`]) and the case
//!   catalog ([`spec::catalog`]): id, requirement ids, level, drivers, body.
//! - [`driver`]: the lanes (`process`, `docker`, `docker-runsc`, `vm`, `k3s`) and their
//!   prerequisites.
//! - [`gateway`]: start the reference gateway process, or connect to an endpoint.
//! - [`images`]: the fixture image references a run uses.
//! - [`k3s`]: the `k3s` lane's cluster (booted k3s or `--kubeconfig`) and its leak audit.
//! - [`harness`]: what a case body gets (client, unique names, run id, images, watch helpers).
//! - [`observe`]: watch-stream observation with deadlines, the status history.
//! - [`check`]: assertions that return a [`check::Failure`] instead of panicking.
//! - [`cases`]: the case bodies, one module per requirement group.
//! - [`runner`]: run the selected cases (bounded parallelism, per-case timeouts, leak audit).
//! - [`expectations`]: the per-implementation expectations file.
//! - [`features`]: the features a vendor declares; a case needing an undeclared one is
//!   `not-supported`.
//! - [`leaks`]: find backend resources by `openshell.run-id` / `openshell.sandbox-id`.
//! - [`report`]: `report.json`, `junit.xml`, `report.md` and per-failure diagnostics.
//! - [`upstream`]: upstream OpenShell's reason names, for precise failure messages.
//! - [`bench`]: lifecycle timings beside bare-runtime baselines, and their comparison (the
//!   `bench` command).

pub mod bench;
pub mod cases;
pub mod check;
pub mod driver;
pub mod expectations;
pub mod features;
pub mod gateway;
pub mod harness;
pub mod images;
pub mod k3s;
pub mod leaks;
pub mod observe;
pub mod progress;
pub mod report;
pub mod runner;
pub mod spec;
pub mod upstream;

pub use driver::Driver;
pub use runner::{RunConfig, RunError, RunReport};
