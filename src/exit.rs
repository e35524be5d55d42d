//! The process exit codes every command shares (DESIGN.md, README "Outcomes and exit codes"):
//! one [`Exit`] value instead of bare numbers, importable by the command line and the scheduler
//! alike (a leaf: it depends on nothing in the crate but the record's constant), and
//! [`RunResult`], what `run --result-file` tells the program that started the run.

use std::process::ExitCode;

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// The drill passed, or the command did what it was asked.
    Passed = 0,
    /// The drill failed: the objective was missed, it never recovered, or the regression gate
    /// failed.
    Failed = 1,
    /// Invalid input (or an unauthorized run in a protected environment): nothing was touched.
    Invalid = 2,
    /// Aborted or inconclusive; also a refusal by the halt lever, a busy scope or the
    /// promotion gate, and a faulty journal `recover` could not replay.
    Refused = 3,
    /// An internal error.
    Internal = 4,
    /// A fault was left in place: a revert failed after its retries
    /// ([`crate::report::record::EXIT_FAULT_LEFT`]).
    FaultLeft = 5,
}

impl Exit {
    /// The exit of a run from its record's code ([`crate::report::record::RunRecord::exit_code`]).
    pub fn from_record_code(code: i32) -> Exit {
        match code {
            0 => Exit::Passed,
            1 => Exit::Failed,
            2 => Exit::Invalid,
            3 => Exit::Refused,
            crate::report::record::EXIT_FAULT_LEFT => Exit::FaultLeft,
            _ => Exit::Internal,
        }
    }

    /// The number the process exits with.
    pub fn code(self) -> u8 {
        self as u8
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

/// What `run --result-file FILE` writes once the run's report exists: the contract between a
/// run and the program that started it (the scheduler), instead of its terminal view.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunResult {
    pub run_id: String,
    /// The process's exit code.
    pub exit_code: u8,
    /// The run's JSON report.
    pub report: std::path::PathBuf,
}

impl RunResult {
    /// Writes the result to `file` atomically: a reader never sees half of it.
    pub fn write(&self, file: &std::path::Path) -> std::io::Result<()> {
        let mut json = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        json.push(b'\n');
        crate::platform::fs::write_file_atomic(file, &json)
    }

    /// The result a run wrote to `file`.
    pub fn read(file: &std::path::Path) -> std::io::Result<RunResult> {
        let text = std::fs::read(file)?;
        serde_json::from_slice(&text).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_documented_ones_and_a_record_code_round_trips() {
        let all = [
            (Exit::Passed, 0),
            (Exit::Failed, 1),
            (Exit::Invalid, 2),
            (Exit::Refused, 3),
            (Exit::Internal, 4),
            (Exit::FaultLeft, 5),
        ];
        for (e, n) in all {
            assert_eq!(e.code(), n);
            assert_eq!(Exit::from_record_code(i32::from(n)), e);
        }
        assert_eq!(
            i32::from(Exit::FaultLeft.code()),
            crate::report::record::EXIT_FAULT_LEFT
        );
    }
}
