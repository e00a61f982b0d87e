//! Shared harness of the supervisor's tests with the real binary: a recording test double of
//! the gateway's supervisor RPCs ([`gateway`]) and a sandbox launcher that runs the supervisor
//! chrooted into an assembled fixture root as PID 1 of a new PID namespace ([`sandbox`]).
#![allow(dead_code)]

pub mod expect;
pub mod gateway;
pub mod sandbox;

pub use gateway::{Event, GatewayDouble};
pub use sandbox::{Launch, Root};
