//! Safety promises kept when firedrill's own actions fail, when it is killed, and when its
//! inputs are hostile (issue 14): a revert that fails for good fails the run loudly and stops
//! it; a killed runner's injector does not outlive `recover`; `--var` values are data.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::firedrill;

/// A drill whose command fault appends a line to `injected.log` and whose revert fails its
/// first `fails` attempts (counted in `revert.count`), then succeeds.
struct Failing {
    dir: tempfile::TempDir,
}

impl Failing {
    fn new(fails: u32) -> Failing {
        let dir = tempfile::tempdir().unwrap();
        let f = Failing { dir };
        let yaml = format!(
            r#"name: failing-revert
probes:
  up:
    command: {{ run: ["true"] }}
    every: 50ms
faults:
  - command:
      run: [sh, -c, "echo x >> '{injected}'"]
      revert: [sh, -c, "n=$(cat '{count}' 2>/dev/null || echo 0); n=$((n+1)); echo $n > '{count}'; [ $n -gt {fails} ] || {{ echo 'the API said no' >&2; exit 7; }}"]
      timeout: 5s
recovery: {{ objective: 5s, stable-for: 100ms, timeout: 10s }}
"#,
            injected = f.path("injected.log").display(),
            count = f.path("revert.count").display(),
        );
        std::fs::write(f.path("drill.yaml"), yaml).unwrap();
        f
    }
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    fn lines(&self, name: &str) -> usize {
        std::fs::read_to_string(self.path(name))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
    fn reverts(&self) -> u32 {
        std::fs::read_to_string(self.path("revert.count"))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0)
    }
    fn run(&self, extra: &[&str]) -> Output {
        firedrill()
            .env("FIREDRILL_STATE_DIR", self.path("state"))
            .arg("run")
            .arg(self.path("drill.yaml"))
            .arg("--report-dir")
            .arg(self.path("reports"))
            .arg("--junit")
            .arg(self.path("junit.xml"))
            .arg("--summary")
            .arg(self.path("summary.md"))
            .args(extra)
            .output()
            .unwrap()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_revert_that_keeps_failing_fails_the_run_with_its_own_exit_code_and_stops_it() {
    let d = Failing::new(1000);
    let out = d.run(&["--repeat", "3"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert_eq!(
        d.lines("injected.log"),
        1,
        "no trial after a fault was left: {err}"
    );
    assert!(d.reverts() > 1, "the revert was retried: {err}");
    let record = common::only_report(&d.path("reports"));
    assert_eq!(record["outcome"], "failed");
    let reason = record["reason"].as_str().unwrap();
    assert!(reason.starts_with("fault left in place: "), "{reason}");
    assert!(reason.contains("the API said no"), "{reason}");
    assert_eq!(record["faults_left"][0]["fault"], "command sh");
    // Every channel says so.
    assert!(read(&d.path("junit.xml")).contains("fault left in place"));
    assert!(read(&d.path("summary.md")).contains("fault left in place"));
    let run_dir = d.path("reports").join("failing-revert").join("local");
    let run_id = record["run_id"].as_str().unwrap();
    assert!(read(&run_dir.join(format!("{run_id}.html"))).contains("fault left in place"));
    assert!(read(&run_dir.join(format!("{run_id}.md"))).contains("fault left in place"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("fault left in place"), "{stdout}");
}

#[test]
fn a_revert_that_fails_once_is_retried_and_the_run_passes() {
    let d = Failing::new(2);
    let out = d.run(&["--repeat", "2"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(d.lines("injected.log"), 2, "{err}");
    // Trial 1: two failures then a success; trial 2: a success.
    assert_eq!(d.reverts(), 4, "{err}");
    let record = common::only_report(&d.path("reports"));
    assert_eq!(record["outcome"], "passed");
    assert!(record.get("faults_left").is_none());
}

#[test]
fn a_fault_left_in_place_reaches_the_webhook_and_the_metrics() {
    use firedrill::report::record::{FaultLeft, RunRecord};
    use firedrill::schedule::{metrics::Metrics, notify::Event, promotion::RunSummary};
    let d = Failing::new(1000);
    let out = d.run(&[]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    let record: RunRecord =
        serde_json::from_value(common::only_report(&d.path("reports"))).unwrap();
    assert_eq!(record.faults_left.len(), 1);
    let left: &FaultLeft = &record.faults_left[0];
    assert_eq!(left.trial, 1);
    let run = RunSummary::from(&record);
    let events = Event::for_finished(&run);
    let text: Vec<String> = events.iter().map(Event::text).collect();
    assert!(
        text.iter().any(|t| t.contains("fault left in place")),
        "{text:?}"
    );
    assert!(
        !text
            .iter()
            .any(|t| t.contains("missed its recovery objective")),
        "{text:?}"
    );
    let json = serde_json::to_value(events.last().unwrap()).unwrap();
    assert_eq!(json["event"], "fault-left-in-place");
    let m = Metrics::new();
    m.record(&run);
    let scraped = m.encode();
    assert!(
        scraped.contains(
            "firedrill_faults_left_in_place_total{experiment=\"failing-revert\",environment=\"local\"} 1"
        ),
        "{scraped}"
    );
}

/// A drill whose inject argv marks `started`, then applies the fault (appends to
/// `applied.log`) 1.5s later — `detached` from a subshell that outlives the argv's own process.
fn slow_injector(dir: &Path, detached: bool) -> PathBuf {
    let apply = format!(
        "sleep 1.5; echo x >> '{}'",
        dir.join("applied.log").display()
    );
    let body = if detached {
        format!("({apply}) & wait")
    } else {
        apply
    };
    let yaml = format!(
        r#"name: slow-injector
probes:
  up:
    command: {{ run: ["true"] }}
    every: 50ms
faults:
  - command:
      run: [sh, -c, "touch '{started}'; {body}"]
      revert: [sh, -c, "echo x >> '{reverted}'"]
      timeout: 30s
recovery: {{ objective: 5s, stable-for: 100ms, timeout: 10s }}
"#,
        started = dir.join("started").display(),
        reverted = dir.join("reverted.log").display(),
    );
    let file = dir.join("drill.yaml");
    std::fs::write(&file, yaml).unwrap();
    file
}

/// Starts the drill, waits until its injector runs, and kills the runner with SIGKILL.
fn kill_runner_mid_injection(dir: &Path, file: &Path) {
    let mut child = firedrill()
        .env("FIREDRILL_STATE_DIR", dir.join("state"))
        .arg("run")
        .arg(file)
        .arg("--report-dir")
        .arg(dir.join("reports"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while !dir.join("started").exists() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "never injected"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

fn count_lines(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

#[test]
fn a_killed_runners_injector_dies_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = slow_injector(dir.path(), false);
    kill_runner_mid_injection(dir.path(), &file);
    // Past the moment the orphan would have applied the fault.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        count_lines(&dir.path().join("applied.log")),
        0,
        "the injector outlived its runner and applied the fault"
    );
}

#[test]
fn recover_kills_what_a_killed_runners_injector_started_before_reverting() {
    let dir = tempfile::tempdir().unwrap();
    let file = slow_injector(dir.path(), true);
    kill_runner_mid_injection(dir.path(), &file);
    let journal = std::fs::read_dir(dir.path().join("state/journal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .next()
        .unwrap();
    let text = read(&journal);
    for key in ["\"pid\"", "\"pgid\"", "\"start_time\""] {
        assert!(text.contains(key), "{key} not journalled:\n{text}");
    }
    let rec = firedrill()
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .args(["recover", "--all"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&rec.stdout).into_owned();
    assert_eq!(rec.status.code(), Some(0), "{said}{}", stderr(&rec));
    assert_eq!(count_lines(&dir.path().join("reverted.log")), 1, "{said}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(
        count_lines(&dir.path().join("applied.log")),
        0,
        "the injector's subshell applied the fault after recover reverted it: {said}"
    );
    let again = firedrill()
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .args(["recover", "--all"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to recover"));
}

// ---- Inputs (issue 14, item 7) ----

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_var_value_is_data_never_interpolated_again() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("seen");
    let file = write(
        dir.path(),
        "drill.yaml",
        &format!(
            r#"name: var-data
probes:
  up:
    command: {{ run: ["true"] }}
    every: 50ms
faults:
  - command:
      run: [sh, -c, "printf '%s' \"$1\" > '{out}'", sh, "${{x}}"]
      revert: ["true"]
      timeout: 5s
recovery: {{ objective: 5s, stable-for: 100ms, timeout: 10s }}
"#,
            out = out.display()
        ),
    );
    let run = firedrill()
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .env("FIREDRILL_TEST_RUNNER_SECRET", "runner-secret-value")
        .arg("run")
        .arg(&file)
        .arg("--report-dir")
        .arg(dir.path().join("reports"))
        .args(["--var", "x=${env:FIREDRILL_TEST_RUNNER_SECRET}"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(0), "{}", stderr(&run));
    assert_eq!(read(&out), "${env:FIREDRILL_TEST_RUNNER_SECRET}");
}

#[test]
fn repeat_out_of_bounds_is_refused_not_bent() {
    let d = Failing::new(0);
    for bad in ["0", "4294967295", "1001"] {
        let out = d.run(&["--repeat", bad]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "--repeat {bad}: {err}");
        assert!(err.contains("1..=1000"), "--repeat {bad}: {err}");
        assert_eq!(d.lines("injected.log"), 0, "nothing touched");
    }
}

#[test]
fn an_unusable_state_dir_is_not_called_a_halt() {
    let d = Failing::new(0);
    let not_a_dir = write(d.dir.path(), "not-a-dir", "x");
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", &not_a_dir)
        .arg("run")
        .arg(d.path("drill.yaml"))
        .arg("--report-dir")
        .arg(d.path("reports"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!err.contains("halted"), "{err}");
    assert!(err.contains("state directory"), "{err}");
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(d.lines("injected.log"), 0, "nothing touched");
}

#[test]
fn the_simulated_cluster_refuses_absurd_replicas_and_stays_stoppable() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = write(
        dir.path(),
        "scenario.yaml",
        "namespaces:\n  shop:\n    deployments:\n      web: { replicas: 2147483647 }\n",
    );
    let err = firedrill::sim::load_scenario(&scenario)
        .unwrap_err()
        .to_string();
    assert!(err.contains("scenario.yaml:4:"), "{err}");
    assert!(err.contains("replicas"), "{err}");

    let sim = common::sim::Sim::new(
        "namespaces:\n  shop:\n    deployments:\n      web: { replicas: 1 }\n",
        1,
    );
    let url = format!(
        "{}/apis/apps/v1/namespaces/shop/deployments/web",
        sim.handle().api_url()
    );
    sim.rt.block_on(async {
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        for (path, body) in [
            (url.clone(), r#"{"spec":{"replicas":2147483647}}"#),
            (
                format!("{url}/scale"),
                r#"{"spec":{"replicas":2147483647}}"#,
            ),
        ] {
            let resp = http
                .patch(&path)
                .header("Content-Type", "application/merge-patch+json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            assert_eq!(status, 422, "{path}: {text}");
            assert!(text.contains("spec.replicas"), "{text}");
        }
        // The largest allowed scale still leaves the cluster stoppable at once.
        let resp = http
            .patch(format!("{url}/scale"))
            .header("Content-Type", "application/merge-patch+json")
            .body(r#"{"spec":{"replicas":1000}}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
    });
    let started = std::time::Instant::now();
    drop(sim);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}
