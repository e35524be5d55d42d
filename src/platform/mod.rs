//! Clients of real systems. Each speaks one platform's API and nothing else.

pub mod child;
pub mod kube;
pub mod patroni;
pub mod retry;
