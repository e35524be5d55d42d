//! firedrill: chaos and disaster-recovery drills that measure time to recover.
//!
//! The flow is one way: experiment → plan → drill → timeline → analysis → report.
#![forbid(unsafe_code)]

pub mod experiment;
pub mod analysis;
pub mod timeline;
pub mod probe;
pub mod fault;
pub mod drill;
pub mod report;
pub mod platform;
