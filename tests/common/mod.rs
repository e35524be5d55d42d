//! Shared test support: the built binary, and the demo service with its supervisor
//! (tests/support/demo_service.py).
#![allow(dead_code)]

pub mod net;
pub mod patroni;
pub mod pgbackrest;
pub mod pgstore;
pub mod proxy;
pub mod restore;
pub mod sim;
pub mod sticky;

use std::path::Path;

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct DemoService {
    pub dir: tempfile::TempDir,
    pub pid_file: PathBuf,
    pub truth_file: PathBuf,
    pub port: u16,
    supervisor: Child,
}

pub struct Truth {
    /// Wall-clock nanoseconds at which the service was listening.
    pub up: Vec<i64>,
    pub down: Vec<i64>,
}

impl DemoService {
    /// Start the supervised service and wait until it answers.
    pub fn start(restart_delay_ms: u64) -> DemoService {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("demo.pid");
        let port_file = dir.path().join("demo.port");
        let truth_file = dir.path().join("truth.log");
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/demo_service.py");
        let supervisor = Command::new("python3")
            .arg(&script)
            .arg("supervise")
            .arg("--port-file")
            .arg(&port_file)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--truth")
            .arg(&truth_file)
            .arg("--restart-delay-ms")
            .arg(restart_delay_ms.to_string())
            .stdin(Stdio::null())
            .spawn()
            .expect("python3 runs the demo service");
        let mut svc = DemoService {
            dir,
            pid_file,
            truth_file,
            port: 0,
            supervisor,
        };
        for _ in 0..500 {
            if let Ok(p) = std::fs::read_to_string(&port_file) {
                if let Ok(port) = p.trim().parse() {
                    svc.port = port;
                    if svc.truth().up.len() == 1 {
                        return svc;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("demo service did not start");
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/healthz", self.port)
    }

    pub fn truth(&self) -> Truth {
        let text = std::fs::read_to_string(&self.truth_file).unwrap_or_default();
        let mut t = Truth {
            up: vec![],
            down: vec![],
        };
        for line in text.lines() {
            let mut it = line.split_whitespace();
            match (it.next(), it.next().and_then(|n| n.parse().ok())) {
                (Some("up"), Some(n)) => t.up.push(n),
                (Some("down"), Some(n)) => t.down.push(n),
                _ => {}
            }
        }
        t
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg(self.supervisor.id().to_string())
            .status();
        let _ = self.supervisor.wait();
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
        }
    }
}

impl Drop for DemoService {
    fn drop(&mut self) {
        let _ = self.supervisor.kill();
        if let Ok(pid) = std::fs::read_to_string(&self.pid_file) {
            let _ = Command::new("kill").arg("-9").arg(pid.trim()).status();
        }
    }
}

/// The `firedrill` binary under test.
pub fn firedrill() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_firedrill"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        // Journals, locks and the halt file of tests stay out of the user's state directory.
        .env(
            "FIREDRILL_STATE_DIR",
            std::env::temp_dir().join(format!("firedrill-test-state-{}", std::process::id())),
        );
    c
}

/// Every regular file under `dir`, recursively (not following links).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => out.push(e.path()),
                _ => {}
            }
        }
    }
    out
}

/// Every regular file under `dir` with its text (lossy UTF-8): for looking for what must not
/// be written anywhere (a secret).
pub fn texts_under(dir: &Path) -> Vec<(PathBuf, String)> {
    files_under(dir)
        .into_iter()
        .filter_map(|p| {
            let bytes = std::fs::read(&p).ok()?;
            Some((p, String::from_utf8_lossy(&bytes).into_owned()))
        })
        .collect()
}

/// Every JSON report under a report directory.
pub fn reports(dir: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "json") {
                let text = std::fs::read_to_string(&p).unwrap();
                out.push(serde_json::from_str(&text).unwrap());
            }
        }
    }
    out
}

/// The one JSON report a run wrote.
pub fn only_report(dir: &Path) -> serde_json::Value {
    let mut all = reports(dir);
    assert_eq!(
        all.len(),
        1,
        "expected exactly one report under {}",
        dir.display()
    );
    all.remove(0)
}

/// A record's duration field (`…_s`, fractional seconds).
pub fn secs(v: &serde_json::Value) -> std::time::Duration {
    std::time::Duration::from_secs_f64(v.as_f64().unwrap_or_else(|| panic!("not seconds: {v}")))
}

/// `firedrill run [args] --report-dir <beside the file>/reports FILE`; returns the output and
/// the report folder.
pub fn run_drill(file: &Path, args: &[&str]) -> (std::process::Output, PathBuf) {
    let reports = file.parent().unwrap_or(Path::new(".")).join("reports");
    let out = firedrill()
        .arg("run")
        .args(args)
        .arg("--report-dir")
        .arg(&reports)
        .arg(file)
        .output()
        .unwrap();
    (out, reports)
}

/// The pids of the watchdogs of the runs whose state directory is `state` (their journals,
/// named on their command lines, are in it).
fn watchdogs(state: &Path) -> Vec<i32> {
    let state = state.to_string_lossy();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c);
                c.contains("__firedrill-watchdog") && c.contains(state.as_ref())
            })
        })
        .collect()
}

/// SIGKILL the watchdogs of the runs of state directory `state`: a test of `recover` must
/// not race the dead-man switch that would revert first.
pub fn kill_watchdogs(state: &Path) {
    for pid in watchdogs(state) {
        let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
    }
}

/// Whether a watchdog of a run of state directory `state` is still alive.
pub fn watchdog_alive(state: &Path) -> bool {
    !watchdogs(state).is_empty()
}

// A drill driven from outside, as the safety tests do: wait, stop, signal, read.

pub fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the child to exit within `limit`; kills it and fails otherwise.
pub fn finish(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "did not exit within {limit:?}\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Cancels `stop` once a JSON report appears in `dir`, or after `limit`: how a test ends a
/// daemon that runs until it is told to stop.
pub fn stop_when_a_report_appears(
    dir: PathBuf,
    limit: Duration,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            let done = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .any(|e| e.path().extension().is_some_and(|x| x == "json"))
                })
                .unwrap_or(false);
            if done {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stop.cancel();
    });
}
