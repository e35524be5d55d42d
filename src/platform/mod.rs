//! The machine and the systems firedrill talks to: clients of real systems (each speaks one
//! platform's API and nothing else), child processes, files, processes by pid. A leaf: it
//! knows nothing of experiments, faults or probes.

pub mod child;
pub mod fs;
pub mod kube;
pub mod patroni;
pub mod process;
pub mod retry;

/// The innermost cause of an error, which is the part a person can act on
/// ("connection refused", not "error sending request").
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Wall-clock now as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
