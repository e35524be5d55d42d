//! Game days on a real terminal: tmux runs `firedrill run` in a pty, scripted keys press
//! `d`, `n` + a note, `m` and `h`, and the marks land in the JSON record (and halt aborts).
//! Without a terminal the run keeps plain progress lines.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{firedrill, only_report};

fn tmux_available() -> bool {
    let ok = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "tmux is missing under CI: scripts/install-reports.sh installs it"
        );
        eprintln!("skipped: tmux is not installed (scripts/install-reports.sh)");
    }
    ok
}

struct Session(String);

impl Session {
    fn start(name: &str, report_dir: &Path, repeat: u32) -> Session {
        let name = format!("{name}-{}", std::process::id());
        let cmd = format!(
            "cd {} && env -u CI {} run experiments/quickstart.yaml --report-dir {} --repeat {repeat} --seed 5; echo EXIT=$?; sleep 60",
            env!("CARGO_MANIFEST_DIR"),
            env!("CARGO_BIN_EXE_firedrill"),
            report_dir.display()
        );
        let st = Command::new("tmux")
            .args([
                "new-session",
                "-d",
                "-s",
                &name,
                "-x",
                "140",
                "-y",
                "45",
                &cmd,
            ])
            .status()
            .unwrap();
        assert!(st.success());
        Session(name)
    }

    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["capture-pane", "-p", "-t", &self.0])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, text: &str, limit: Duration) -> String {
        let t = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(t.elapsed() < limit, "no `{text}` on screen:\n{s}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.0.as_str()];
        args.extend_from_slice(keys);
        assert!(Command::new("tmux").args(&args).status().unwrap().success());
    }

    fn literal(&self, text: &str) {
        self.keys(&["-l", text]);
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

fn marks(record: &serde_json::Value) -> Vec<(String, String)> {
    record["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "mark")
        .map(|e| {
            (
                e["mark"].as_str().unwrap().to_string(),
                e["text"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn operator_marks_from_keys_land_in_the_record() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Session::start("fd-marks", dir.path(), 2);
    let screen = s.wait_for("keys: d detected", Duration::from_secs(60));
    assert!(screen.contains("checkout-http"), "{screen}");
    s.wait_for("phase: observe", Duration::from_secs(60));
    s.keys(&["d"]);
    s.wait_for("marked: detected", Duration::from_secs(10));
    s.keys(&["n"]);
    s.wait_for("note (Enter to save", Duration::from_secs(10));
    s.literal("cache looked cold");
    s.keys(&["Enter"]);
    s.wait_for("note recorded", Duration::from_secs(10));
    s.keys(&["m"]);
    s.wait_for("marked: mitigated", Duration::from_secs(10));
    let end = s.wait_for("EXIT=", Duration::from_secs(120));
    assert!(end.contains("EXIT=0"), "{end}");
    assert!(end.contains("operators detected it after"), "{end}");

    let record = only_report(dir.path());
    let m = marks(&record);
    let names: Vec<&str> = m.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["detected", "note", "mitigated"], "{m:?}");
    assert_eq!(m[1].1, "cache looked cold");
    let html = std::fs::read_to_string(
        dir.path()
            .join("quickstart/local")
            .join(format!("{}.html", record["run_id"].as_str().unwrap())),
    )
    .unwrap();
    assert!(html.contains("data-mark=\"detected\""));
    assert!(html.contains("time to mitigate (operator mark)"));
}

#[test]
fn halt_key_reverts_and_aborts() {
    if !tmux_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = Session::start("fd-halt", dir.path(), 3);
    s.wait_for("phase: observe", Duration::from_secs(60));
    s.keys(&["h"]);
    let end = s.wait_for("EXIT=", Duration::from_secs(60));
    assert!(end.contains("EXIT=3"), "{end}");
    let record = only_report(dir.path());
    assert_eq!(record["outcome"], "aborted");
    assert!(record["trials"].as_array().unwrap().len() < 3);
}

#[test]
fn without_a_terminal_progress_stays_plain() {
    let dir = tempfile::tempdir().unwrap();
    let out = firedrill()
        .args([
            "run",
            "experiments/quickstart.yaml",
            "--seed",
            "5",
            "--report-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("] trial 1 observe"), "{err}");
    assert!(!err.contains("keys: d detected"));
    assert!(!err.contains("\x1b[2J"));
}
