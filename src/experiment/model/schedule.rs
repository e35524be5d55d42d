//! When an environment lets scheduled drills start: the `schedule:` rules of `firedrill.yaml`.

use std::time::Duration;

use serde::Serialize;

use super::window;

/// When an environment lets scheduled drills start (`firedrill.yaml`).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Rules {
    /// Empty: any time.
    pub windows: Vec<window::Window>,
    pub blackouts: Vec<window::Blackout>,
    /// Each run starts a random delay in `[0, jitter]` after its tick (seeded, reproducible).
    pub jitter: Duration,
    /// A tick later than this (daemon down, clock jump) is skipped, never replayed.
    pub starting_deadline: Option<Duration>,
    pub concurrency: Concurrency,
    /// Passing staging runs needed before promotion (`passes`, default 1).
    pub promote_passes: u32,
}

/// What a tick does while the same drill still runs in the same environment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Concurrency {
    /// Skip the tick and log it (the only policy: two copies of a drill would measure
    /// each other's faults).
    #[default]
    Forbid,
}

impl Rules {
    pub fn passes(&self) -> u32 {
        self.promote_passes.max(1)
    }
}
