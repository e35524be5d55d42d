//! The machine and the systems firedrill talks to: clients of real systems (each speaks one
//! platform's API and nothing else), child processes, files, processes by pid. A leaf: it
//! knows nothing of experiments, faults or probes.

pub mod child;
pub mod fs;
pub mod kube;
pub mod patroni;
pub mod process;
pub mod retry;

/// An error for people, rendered once at the edge that shows it: its own message and, when it
/// came from another error, that error's actionable part ([`cause`]).
pub fn render(e: &(dyn std::error::Error + 'static)) -> String {
    match e.source() {
        Some(source) => format!("{e}: {}", cause(source)),
        None => e.to_string(),
    }
}

/// The part of an error a person can act on: a Kubernetes API error's code, message and reason
/// ([`kube::describe`]), else the innermost cause.
pub fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    match e.downcast_ref::<::kube::Error>() {
        Some(k) => kube::describe(k),
        None => root_cause(e),
    }
}

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

/// A size for people: MiB below a GiB, GiB above (binary units, as `du -h` and pgBackRest).
pub fn bytes_text(b: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if b as f64 >= 1024.0 * MIB {
        format!("{:.2} GiB", b as f64 / (1024.0 * MIB))
    } else {
        format!("{:.1} MiB", b as f64 / MIB)
    }
}
