//! firedrill: chaos and disaster-recovery drills that measure time to recover.
//!
//! The flow is one way: experiment → plan → drill → timeline → analysis → report.
#![forbid(unsafe_code)]

pub mod analysis;
pub mod cli;
pub mod drill;
pub mod exit;
pub mod experiment;
pub mod fault;
pub mod platform;
pub mod probe;
pub mod proxy;
pub mod report;
pub mod safety;
pub mod schedule;
pub mod shutdown;
pub mod sim;
pub mod store;
#[cfg(test)]
mod testing;
pub mod timeline;
pub mod timer;
pub mod workspace;
