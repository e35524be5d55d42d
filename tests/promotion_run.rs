//! The promotion gate on `firedrill run`: a run by hand in an environment with `promote-from`
//! is refused (exit 3, nothing touched) until the same drill passed upstream, unless
//! `--skip-promotion-gate` is given.

mod common;

use std::path::{Path, PathBuf};

use common::firedrill;

const ENVIRONMENTS: &str = "\
environments:
  staging: {}
  production:
    promote-from: staging
    within: 7d
";

/// A drill whose fault leaves a mark on disk, so a refused run can be seen to touch nothing.
fn drill(name: &str, mark: &Path) -> String {
    format!(
        "name: {name}
environments: [staging, production]
probes:
  always:
    command: {{ run: [\"true\"] }}
    every: 100ms
faults:
  - command: {{ run: [touch, \"{mark}\"] }}
recovery: {{ objective: 5s, stable-for: 200ms, timeout: 10s }}
",
        mark = mark.display()
    )
}

fn run(file: &Path, reports: &Path, args: &[&str]) -> (Option<i32>, String) {
    let out = firedrill()
        .arg("run")
        .arg(file)
        .args(["--no-live", "--report-dir"])
        .arg(reports)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// A folder with the environments and drill `name`: (folder, drill file, mark, reports).
fn folder(name: &str) -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("firedrill.yaml"), ENVIRONMENTS).unwrap();
    let mark = dir.path().join("injected");
    let file = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&file, drill(name, &mark)).unwrap();
    let reports = dir.path().join("reports");
    (dir, file, mark, reports)
}

#[test]
fn production_runs_by_hand_only_after_staging_passed() {
    let (_dir, file, mark, reports) = folder("gated");

    let (code, text) = run(&file, &reports, &["--env", "production"]);
    assert_eq!(code, Some(3), "{text}");
    assert!(
        text.contains("held in environment `production`")
            && text.contains("needs 1 passing run(s) of this version in staging"),
        "{text}"
    );
    assert!(text.contains("--env staging"), "says what to do: {text}");
    assert!(!mark.exists(), "a held drill touched its target");
    assert!(
        common::reports(&reports).is_empty(),
        "a held run wrote a report"
    );

    // An explicit override runs it, and says so.
    let (code, text) = run(
        &file,
        &reports,
        &["--env", "production", "--skip-promotion-gate"],
    );
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("--skip-promotion-gate"), "{text}");
    assert!(mark.exists());
    std::fs::remove_file(&mark).unwrap();

    // A pass in staging opens the gate.
    let (code, text) = run(&file, &reports, &["--env", "staging"]);
    assert_eq!(code, Some(0), "{text}");
    let (code, text) = run(&file, &reports, &["--env", "production"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(mark.exists());
    assert!(!text.contains("promotion gate"), "{text}");
}

#[test]
fn a_changed_drill_needs_a_new_staging_pass() {
    let (_dir, file, mark, reports) = folder("changed");
    let (code, text) = run(&file, &reports, &["--env", "staging"]);
    assert_eq!(code, Some(0), "{text}");

    // Another version of the file is another drill for the gate: its content hash differs.
    std::fs::write(&file, format!("{}cooldown: 1s\n", drill("changed", &mark))).unwrap();
    std::fs::remove_file(&mark).unwrap();
    let (code, text) = run(&file, &reports, &["--env", "production"]);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("has 0"), "{text}");
    assert!(!mark.exists());
}
