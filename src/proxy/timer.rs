//! A wait that ends close to its deadline.
//!
//! tokio's timer wheel has 1ms granularity and rounds up, so `sleep_until(t)` returns up to
//! ~1ms (plus scheduling) after `t`. A latency toxic should add what it says within a fraction
//! of a millisecond, so we sleep on the timer until [`SPIN_WINDOW`] before the deadline and
//! then yield to the runtime in a loop until the clock passes it. The spin costs at most about
//! [`SPIN_WINDOW`] of CPU per delayed chunk, and it yields, so other tasks keep running.

use std::time::Duration;

use tokio::time::Instant;

/// How long before the deadline we stop trusting the timer wheel.
pub(crate) const SPIN_WINDOW: Duration = Duration::from_micros(2000);

/// Waits until `deadline`, returning within a few microseconds after it on an idle machine.
pub(crate) async fn precise_sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now + SPIN_WINDOW {
        tokio::time::sleep_until(deadline - SPIN_WINDOW).await;
    }
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn never_returns_early() {
        for ms in [0u64, 1, 3, 10] {
            let deadline = Instant::now() + Duration::from_millis(ms);
            precise_sleep_until(deadline).await;
            assert!(Instant::now() >= deadline);
        }
    }
}
