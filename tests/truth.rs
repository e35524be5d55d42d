//! Truth: `firedrill run` kills a real local service that a supervisor restarts after a known
//! delay. The true end of the outage (the instant the service listens again, recorded by the
//! service itself) must lie inside the reported recovery bracket, and the TTR estimate must be
//! within the during-outage probe interval + 5ms of the truth.

mod common;

use std::time::Duration;

use common::{firedrill, secs, DemoService};

fn drill_yaml(svc: &DemoService, every_during_ms: u64) -> String {
    format!(
        r#"name: truth
description: kill the demo service; its supervisor restarts it after a known delay
targets:
  demo:
    process: {{ pid-file: "{pid}" }}
probes:
  demo-http:
    http: {{ url: "{url}", expect-status: 200, timeout: 500ms }}
    every: 100ms
    every-during: {every_during_ms}ms
faults:
  - process-kill: {{ target: demo, signal: SIGKILL }}
recovery: {{ objective: 5s, stable-for: 500ms, timeout: 20s }}
"#,
        pid = svc.pid_file.display(),
        url = svc.url()
    )
}

/// Runs the drill once per restart delay and checks the bracket against the service's own
/// record of when it listened again; returns |TTR − truth| per delay.
fn run_against_truth(every_during: Duration, delays_ms: &[u64]) -> Vec<Duration> {
    let mut errors = Vec::new();
    for &delay_ms in delays_ms {
        let svc = DemoService::start(delay_ms);
        let file = svc.dir.path().join("truth.yaml");
        std::fs::write(&file, drill_yaml(&svc, every_during.as_millis() as u64)).unwrap();
        let reports = svc.dir.path().join("reports");
        // Its own state directory: the tests of this file run at once, and one drill per
        // scope would refuse the second.
        let out = firedrill()
            .env("FIREDRILL_STATE_DIR", svc.dir.path().join("state"))
            .arg("run")
            .arg(&file)
            .arg("--report-dir")
            .arg(&reports)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let record = common::only_report(&reports);
        assert_eq!(record["outcome"], "passed");

        let trial = &record["trials"][0];
        let ttr = &trial["verdict"]["ttr"];
        let (estimate, lower, upper) = (
            secs(&ttr["estimate_s"]),
            secs(&ttr["lower_s"]),
            secs(&ttr["upper_s"]),
        );
        let injected_ns =
            chrono::DateTime::parse_from_rfc3339(trial["injected_at"].as_str().unwrap())
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
        let up = svc
            .truth()
            .up
            .into_iter()
            .find(|&up| up > injected_ns)
            .expect("the service came back");
        let truth = Duration::from_nanos((up - injected_ns) as u64);
        assert!(
            lower <= truth && truth <= upper,
            "delay {delay_ms}ms: truth {truth:?} outside the bracket [{lower:?}, {upper:?}]"
        );
        let error = estimate.abs_diff(truth);
        eprintln!("every-during {every_during:?}, delay {delay_ms}ms: truth {truth:?}, TTR {estimate:?} in [{lower:?}, {upper:?}], error {error:?}");
        // The outage cannot be shorter than the supervisor's restart delay.
        assert!(truth >= Duration::from_millis(delay_ms));
        // The summary printed for people carries the same number.
        assert!(stdout.contains("PASSED"), "{stdout}");
        errors.push(error);
    }
    errors
}

#[test]
fn reported_recovery_brackets_the_true_restart() {
    let every_during = Duration::from_millis(10);
    let delays = [300u64, 800, 1500];
    for (error, delay_ms) in run_against_truth(every_during, &delays)
        .into_iter()
        .zip(delays)
    {
        assert!(
            error <= every_during + Duration::from_millis(5),
            "delay {delay_ms}ms: |TTR - truth| = {error:?}"
        );
    }
}

#[test]
fn back_to_back_checks_while_failing_bracket_the_restart_by_one_round_trip() {
    // `every-during: 0s`: while the service is down the probe checks back to back, so the
    // recovery lies between the last refused connection and the first answer.
    for error in run_against_truth(Duration::ZERO, &[500]) {
        assert!(
            error <= Duration::from_millis(5),
            "|TTR - truth| = {error:?}"
        );
    }
}

/// A two-step scenario, 20 trials: the built-in proxy in front of the demo service goes down
/// for 300ms (a held fault); 200ms after its removal the service is killed (a one-shot fault)
/// and its supervisor restarts it 300ms later. The probe straight to the service measures the
/// kill (`after: kill`); the proxied probe watches both, so its recovery counts from the later
/// of the two, the kill. Both must bracket the instant the service itself logged it was
/// listening again, within the during-outage interval + 5ms (+ the first passing check's own
/// answer time, which a loaded machine stretches).
#[test]
fn a_two_step_scenario_brackets_the_true_restart_in_20_trials() {
    let svc = DemoService::start(300);
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let file = svc.dir.path().join("steps.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: truth-steps
proxy:
  demo: {{ listen: "127.0.0.1:{listen}", upstream: "127.0.0.1:{port}" }}
targets:
  demo:
    process: {{ pid-file: "{pid}" }}
probes:
  direct:
    http: {{ url: "{url}", expect-status: 200, timeout: 500ms }}
    every: 100ms
    every-during: 10ms
    after: kill
  proxied:
    http: {{ url: "http://127.0.0.1:{listen}/healthz", expect-status: 200, timeout: 500ms }}
    every: 100ms
    every-during: 10ms
    after: [cut, kill]
faults:
  - name: cut
    down: {{ proxy: demo, duration: 300ms }}
  - name: kill
    wait: {{ removed: cut, for: 200ms, within: 10s }}
    process-kill: {{ target: demo, signal: SIGKILL }}
recovery: {{ objective: 5s, stable-for: 300ms, timeout: 20s }}
repeat: 20
cooldown: 100ms
"#,
            port = svc.port,
            pid = svc.pid_file.display(),
            url = svc.url()
        ),
    )
    .unwrap();
    let reports = svc.dir.path().join("reports");
    let junit = svc.dir.path().join("junit.xml");
    let out = firedrill()
        .env("FIREDRILL_STATE_DIR", svc.dir.path().join("state"))
        .arg("run")
        .arg(&file)
        .arg("--report-dir")
        .arg(&reports)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let record = common::only_report(&reports);
    // JUnit: a testcase per step and probe where a probe watches several steps.
    let xml = std::fs::read_to_string(&junit).unwrap();
    for case in [
        "trial 20 / cut / probe proxied",
        "trial 20 / kill / probe proxied",
        "trial 20 / probe direct",
    ] {
        assert!(xml.contains(&format!("name=\"{case}\"")), "{case}: {xml}");
    }
    assert!(xml.contains("recovered_before_next_step"), "{xml}");
    let ups = svc.truth().up;
    let trials = record["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 20);
    let allowance = Duration::from_millis(10 + 5);
    for trial in trials {
        let n = &trial["index"];
        let faults = trial["faults"].as_array().unwrap();
        let (cut, kill) = (&faults[0], &faults[1]);
        assert_eq!(
            (cut["fault"].as_str(), kill["fault"].as_str()),
            (Some("cut"), Some("kill"))
        );
        // The step started after the cut's removal and its 200ms delay.
        let removed = secs(&cut["removed_s"]);
        let killed = secs(&kill["accepted_s"]);
        assert!(
            killed >= removed + Duration::from_millis(200),
            "trial {n}: kill at {killed:?}, cut removed at {removed:?}"
        );
        assert!(
            kill["step"].as_str().unwrap().contains("removal of cut"),
            "{kill}"
        );
        // The run's axis to wall-clock nanoseconds, through the trial's first injection.
        let t_inject = secs(&trial["t_inject_s"]);
        let injected_ns =
            chrono::DateTime::parse_from_rfc3339(trial["injected_at"].as_str().unwrap())
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
        let killed_ns = injected_ns + (killed.as_nanos() as i64 - t_inject.as_nanos() as i64);
        let up = ups
            .iter()
            .copied()
            .find(|&up| up > killed_ns)
            .unwrap_or_else(|| panic!("trial {n}: the service never came back"));
        // The proxied probe per step: the cut, which the kill followed about 200ms after its
        // removal, too soon (unless the machine stalled) to prove a 300ms stable-for; then the
        // kill, as the probe.
        let proxied = &trial["probes"][1];
        assert_eq!(proxied["name"], "proxied");
        let steps = proxied["steps"].as_array().unwrap();
        assert_eq!(steps.len(), 2, "{proxied}");
        assert_eq!(steps[0]["faults"], serde_json::json!(["cut"]));
        assert!(
            steps[0]["verdict"]["recovered"] == false
                || killed >= removed + Duration::from_millis(300),
            "trial {n}: stable for 300ms after the cut in {:?}: {}",
            killed - removed,
            steps[0]
        );
        assert_eq!(steps[1]["faults"], serde_json::json!(["kill"]));
        assert_eq!(steps[1]["verdict"]["ttr"], proxied["verdict"]["ttr"]);
        assert!(
            trial["probes"][0]["steps"].is_null(),
            "direct watches one step"
        );
        for probe in trial["probes"].as_array().unwrap() {
            let name = probe["name"].as_str().unwrap();
            assert_eq!(
                secs(&probe["ttr_origin_s"]),
                killed,
                "trial {n}: {name} counts from the kill"
            );
            let truth = Duration::from_nanos((up - killed_ns) as u64);
            let ttr = &probe["verdict"]["ttr"];
            let (estimate, lower, upper) = (
                secs(&ttr["estimate_s"]),
                secs(&ttr["lower_s"]),
                secs(&ttr["upper_s"]),
            );
            assert!(
                lower <= truth && truth <= upper,
                "trial {n}, {name}: truth {truth:?} outside [{lower:?}, {upper:?}]"
            );
            // The estimate is the bracket's middle; the bracket spans the interval between
            // checks and the first passing check's own answer time, which a loaded machine
            // stretches (the demo service is Python): that check's latency is allowed too.
            // So is the last failing check's own time: one in flight when the service came
            // back and failing anyway (a first request the restarted service, loaded, did not
            // answer within the probe's timeout) spans the restart, and the bracket with it.
            let stretches = probe["trace"]["stretches"].as_array().unwrap();
            let failed = stretches.iter().rposition(|s| s["ok"] == false).unwrap();
            let pass = &stretches[failed + 1]["first"];
            let answer = secs(&pass["end_s"]) - secs(&pass["start_s"]);
            let last_fail = &stretches[failed]["last"];
            let failing = secs(&last_fail["end_s"]) - secs(&last_fail["start_s"]);
            assert!(
                estimate.abs_diff(truth) <= allowance + answer + failing,
                "trial {n}, {name}: TTR {estimate:?}, truth {truth:?}, first passing check took {answer:?}, last failing one {failing:?}"
            );
        }
    }
}
