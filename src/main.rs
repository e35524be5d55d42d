//! The `firedrill` binary: parse the command line, set up logging, hand over to the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    // A fault's child starts as this binary, sets its parent-death signal and execs.
    if let Some(code) = firedrill::platform::child::trampoline() {
        return code;
    }
    // The dead-man switch of a run (safety::watchdog).
    if let Some(code) = firedrill::safety::watchdog::main_if_watchdog() {
        return code;
    }
    firedrill::platform::child::enable_trampoline();
    firedrill::cli::main()
}
