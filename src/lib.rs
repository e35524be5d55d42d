//! firedrill: chaos and disaster-recovery drills that measure time to recover.
//!
//! The flow is one way: experiment → plan → drill → timeline → analysis → report.
#![forbid(unsafe_code)]

pub mod experiment;
pub mod proxy;
