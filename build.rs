//! Links the `firedrill` binary with packed relative relocations (`DT_RELR`) where the
//! toolchain and C library support them (GNU ld ≥ 2.38, glibc ≥ 2.36).
//!
//! Why: the binary is position-independent, and its ~1.6 MB table of ordinary relative
//! relocations is read and applied at every start. Packed, the table is a few KB, and a
//! one-probe drill's peak RSS drops by ~3.5 MiB (BENCHMARKS.md).
//! Address-space randomisation is unchanged. Where the linker or the C library cannot do it
//! (older distributions, other targets, cross builds), the binary links as before.

use std::path::Path;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let host = std::env::var("HOST").unwrap_or_default();
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return;
    };
    if links_and_runs(&Path::new(&out).join("relr-probe")) {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}

/// Whether the C compiler rustc links with (`cc`) accepts the flag and the program it links
/// runs here (a glibc without `GLIBC_ABI_DT_RELR` refuses to load it).
fn links_and_runs(probe: &Path) -> bool {
    use std::io::Write;
    let compiler = Command::new("cc")
        .args(["-x", "c", "-", "-o"])
        .arg(probe)
        .arg(FLAG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let Ok(mut cc) = compiler else {
        return false;
    };
    if let Some(mut stdin) = cc.stdin.take() {
        if stdin.write_all(b"int main(void) { return 0; }\n").is_err() {
            return false;
        }
    }
    let linked = cc.wait().is_ok_and(|s| s.success());
    linked
        && Command::new(probe)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}
