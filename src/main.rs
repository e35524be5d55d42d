//! The `firedrill` binary: parse the command line, set up logging, hand over to the library.
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    firedrill::cli::main()
}
