//! What the suite checks: the requirements of `SPEC.md` and the catalog of cases that cover them.

pub mod catalog;
pub mod req;
pub mod requirements;

pub use catalog::{Body, Case, CaseFn};
pub use req::Req;
pub use requirements::{Level, Requirement, Strength};
