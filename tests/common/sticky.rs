//! A drill that holds a fault until it is stopped, for the safety tests: its command fault
//! creates a marker, its revert removes it and counts itself, and its probe fails while the
//! marker exists.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::firedrill;

/// A drill whose command fault creates `injected`, whose revert appends a line to `reverted`,
/// and whose probe fails while `injected` exists: it never recovers on its own, so the drill
/// sits observing until it is stopped.
pub struct Sticky {
    pub dir: tempfile::TempDir,
}

impl Sticky {
    pub fn new(extra_faults: &str) -> Sticky {
        let dir = tempfile::tempdir().unwrap();
        let s = Sticky { dir };
        let yaml = format!(
            r#"name: sticky
probes:
  clean:
    command: {{ run: [test, "!", -e, "{injected}"] }}
    every: 50ms
faults:
  - command:
      run: [touch, "{injected}"]
      revert: [sh, -c, "rm -f '{injected}'; echo x >> '{reverted}'"]
      timeout: 5s
{extra_faults}recovery: {{ objective: 5s, stable-for: 200ms, timeout: 60s }}
"#,
            injected = s.injected().display(),
            reverted = s.reverted().display(),
        );
        std::fs::write(s.file(), yaml).unwrap();
        s
    }
    pub fn file(&self) -> PathBuf {
        self.dir.path().join("sticky.yaml")
    }
    pub fn injected(&self) -> PathBuf {
        self.dir.path().join("injected")
    }
    pub fn reverted(&self) -> PathBuf {
        self.dir.path().join("reverted")
    }
    pub fn reverts(&self) -> usize {
        std::fs::read_to_string(self.reverted())
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
    pub fn reports(&self) -> PathBuf {
        self.dir.path().join("reports")
    }
    pub fn cmd(&self) -> Command {
        let mut c = firedrill();
        c.env("FIREDRILL_STATE_DIR", self.state());
        c
    }
    pub fn spawn_run(&self) -> Child {
        self.cmd()
            .arg("run")
            .arg(self.file())
            .arg("--report-dir")
            .arg(self.reports())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}
