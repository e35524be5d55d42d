//! What the restore-drill tests share: a drill file in a temp dir run by the real binary, the
//! record's restore section read back, and the check that a scratch instance left nothing.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{firedrill, only_report, secs};

/// Whether the tests run as root (then the drill needs `run-as: postgres`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok())
        })
        == Some(0)
}

/// A drill file in a temp dir of its own, with its own state dir and reports folder.
pub struct Drill {
    pub dir: tempfile::TempDir,
}

impl Drill {
    pub fn new(yaml: &str) -> Drill {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("drill.yaml"), yaml).unwrap();
        Drill { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `firedrill` with this drill's state dir.
    pub fn cmd(&self) -> Command {
        let mut c = firedrill();
        c.env("FIREDRILL_STATE_DIR", self.path().join("state"));
        c
    }

    /// `firedrill run ARGS --report-dir … drill.yaml`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .arg("run")
            .args(args)
            .arg("--report-dir")
            .arg(self.path().join("reports"))
            .arg(self.path().join("drill.yaml"))
            .output()
            .unwrap()
    }
}

/// Runs the drill off the async runtime (the fixture's writer and server live on it); the
/// output and the report.
pub async fn run(d: &Drill, args: &[&str]) -> (Output, serde_json::Value) {
    let t0 = std::time::Instant::now();
    let out = tokio::task::block_in_place(|| d.run(args));
    eprintln!("firedrill run took {:.1}s", t0.elapsed().as_secs_f64());
    let report = only_report(&d.path().join("reports"));
    (out, report)
}

/// Nothing of a scratch instance is left under `root`: no `firedrill-restore-*` directory, no
/// process working in it.
pub fn assert_scratch_gone(root: &Path) {
    let left: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("firedrill-restore-"))
        })
        .collect();
    assert!(left.is_empty(), "scratch directories left: {left:?}");
    let procs: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let cwd = std::fs::read_link(e.path().join("cwd")).ok()?;
            cwd.starts_with(root)
                .then(|| e.file_name().to_string_lossy().into_owned())
        })
        .collect();
    assert!(
        procs.is_empty(),
        "processes left in {}: {procs:?}",
        root.display()
    );
}

/// The first trial's restore section of a record.
pub fn restore(report: &serde_json::Value) -> &serde_json::Value {
    &report["trials"][0]["restore"]
}

pub fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

/// The restore's check named `name`.
pub fn check<'a>(r: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    r["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name} in {r}"))
}

/// The phase bounds in the order a restore passes them.
pub fn phases(r: &serde_json::Value) -> Vec<(String, Duration, Duration)> {
    r["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["phase"].as_str().unwrap().to_string(),
                secs(&p["lower_s"]),
                secs(&p["upper_s"]),
            )
        })
        .collect()
}
