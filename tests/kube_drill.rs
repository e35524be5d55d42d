//! Kubernetes drills end to end through the binary, against the embedded simulated cluster
//! with known delays: the reported phases and TTRs must match the simulated truth within
//! ±(probe interval + 20ms). And a cluster that cannot be reached ends `inconclusive`.

mod common;

use std::time::Duration;

use common::{firedrill, secs};
use serde_json::Value;

const SCENARIO: &str = r#"
kubelet: { schedule-delay: 100ms, start-delay: 500ms, ready-delay: 600ms }
endpoints: { propagation-delay: 300ms }
namespaces:
  shop:
    deployments:
      web: { replicas: 3, labels: { app: web }, http: true }
"#;

fn drill(count: u32, max_targets: u32) -> String {
    format!(
        r#"name: web-kill
simulation: {{ scenario: scenario.yaml }}
targets:
  web:
    kubernetes: {{ namespace: shop, selector: app=web, workload: deployment/web, count: {count}, max-targets: {max_targets} }}
probes:
  web-http:
    http: {{ url: "${{sim.shop.web}}/", timeout: 500ms }}
    every: 100ms
    every-during: 10ms
  web-ready:
    kubernetes: {{ deployment: shop/web, ready: all }}
    every: 200ms
    every-during: 20ms
faults:
  - pod-kill: {{ target: web, grace-period: 0s }}
recovery: {{ objective: 10s, stable-for: 1s, timeout: 30s }}
"#
    )
}

fn run_drill(count: u32, max_targets: u32) -> (Value, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scenario.yaml"), SCENARIO).unwrap();
    let file = dir.path().join("drill.yaml");
    std::fs::write(&file, drill(count, max_targets)).unwrap();
    let reports = dir.path().join("reports");
    let out = firedrill()
        .args(["run", "--seed", "7", "--report-dir"])
        .arg(&reports)
        .arg(&file)
        .output()
        .unwrap();
    (common::only_report(&reports), out)
}

fn within(what: &str, got: Duration, truth: Duration, tolerance: Duration) {
    assert!(
        got.abs_diff(truth) <= tolerance,
        "{what}: reported {got:?}, simulated truth {truth:?}, tolerance {tolerance:?}"
    );
}

/// A simulated cluster in this process (so a test can read its ground truth) as environment
/// `staging` of a firedrill.yaml in its temp dir, through the kube context `firedrill-sim`.
fn staging(scenario: &str, seed: u64) -> common::sim::Sim {
    let sim = common::sim::Sim::new(scenario, seed);
    sim.write_kubeconfig("kubeconfig", &["firedrill-sim"], "firedrill-sim");
    std::fs::write(
        sim.dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    kube-context: firedrill-sim\n",
    )
    .unwrap();
    sim
}

/// The quickstart's simulated shop (experiments/sim/shop.yaml).
fn shop() -> String {
    std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/sim/shop.yaml"),
    )
    .unwrap()
}

/// `firedrill` against [`staging`]'s cluster, with its own state dir.
fn firedrill_in(sim: &common::sim::Sim) -> std::process::Command {
    let mut c = firedrill();
    c.env("KUBECONFIG", sim.dir.path().join("kubeconfig"))
        .env("FIREDRILL_STATE_DIR", sim.dir.path().join("state"));
    c
}

#[test]
fn killing_one_of_three_pods_reports_phases_and_recovery_matching_the_simulation() {
    let (record, out) = run_drill(1, 1);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(record["outcome"], "passed");
    assert_eq!(record["seed"], 7);
    let trial = &record["trials"][0];
    let tol = Duration::from_millis(20);

    // Each phase of the replacement follows the scenario's delays.
    let phases = &trial["pod_recovery"][0];
    assert!(phases["replacement"].is_string(), "{phases}");
    let created = secs(&phases["created_s"]);
    within(
        "scheduled",
        secs(&phases["scheduled_s"]),
        created + Duration::from_millis(100),
        tol,
    );
    within(
        "running",
        secs(&phases["running_s"]),
        created + Duration::from_millis(600),
        tol,
    );
    within(
        "ready",
        secs(&phases["ready_s"]),
        created + Duration::from_millis(1200),
        tol,
    );

    // The readiness probe (watch-driven) recovers when the replacement is ready; the HTTP
    // probe when the dead pod leaves the endpoints, one propagation delay after the kill.
    let probes = trial["probes"].as_array().unwrap();
    let probe = |name: &str| probes.iter().find(|p| p["name"] == name).unwrap();
    let ready_ttr = secs(&probe("web-ready")["verdict"]["ttr"]["estimate_s"]);
    // Watch-driven: the bracket spans the last re-confirmation (every 20ms while failing).
    within(
        "readiness TTR",
        ready_ttr,
        created + Duration::from_millis(1200),
        Duration::from_millis(20) + tol,
    );
    let http = &probe("web-http")["verdict"];
    let http_ttr = secs(&http["ttr"]["estimate_s"]);
    within(
        "http TTR",
        http_ttr,
        Duration::from_millis(300),
        Duration::from_millis(10) + tol,
    );
    // One of three endpoints was gone: a partial outage, not a full one.
    let availability = http["availability"].as_f64().unwrap();
    assert!(availability > 0.5 && availability < 1.0, "{availability}");
    // The trial's TTR is the slowest probe's.
    within(
        "trial TTR",
        secs(&trial["verdict"]["ttr"]["estimate_s"]),
        ready_ttr,
        Duration::ZERO,
    );
}

#[test]
fn the_blast_radius_cap_refuses_before_anything_is_deleted() {
    let (record, out) = run_drill(2, 1);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(record["outcome"], "inconclusive");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("blast-radius cap") && reason.contains("max-targets"),
        "{reason}"
    );
    assert!(record["trials"][0]["faults"].as_array().unwrap().is_empty());
}

#[test]
fn killing_every_pod_at_once_deletes_each_and_tracks_each_replacement_to_ready() {
    let (record, out) = run_drill(3, 3);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trial = &record["trials"][0];
    let mut killed: Vec<&str> = trial["faults"][0]["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    killed.sort_unstable();
    killed.dedup();
    assert_eq!(killed.len(), 3, "{}", trial["faults"][0]);
    let phases = trial["pod_recovery"].as_array().unwrap();
    assert_eq!(phases.len(), 3);
    let mut replacements: Vec<&str> = phases
        .iter()
        .map(|p| p["replacement"].as_str().expect("a replacement"))
        .collect();
    replacements.sort_unstable();
    replacements.dedup();
    assert_eq!(replacements.len(), 3, "one replacement each: {phases:?}");
    for p in phases {
        assert!(!killed.contains(&p["replacement"].as_str().unwrap()));
        assert!(
            p["deleted_s"].is_number() && p["ready_s"].is_number(),
            "{p}"
        );
        // The replacement went through the kubelet's 100 + 500 + 600ms; the phases' precision
        // is checked by the single-kill test, so only a gross mismatch (a wrong pairing) fails
        // here, whatever the machine's load.
        let (created, ready) = (secs(&p["created_s"]), secs(&p["ready_s"]));
        assert!(
            ready >= created + Duration::from_millis(1100),
            "created {created:?}, ready {ready:?}: {p}"
        );
    }
}

#[test]
fn an_unreachable_cluster_is_refused_with_a_clear_message_and_nothing_touched() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: down\n  cluster: {{ server: \"http://127.0.0.1:{port}\" }}\ncontexts:\n- name: down\n  context: {{ cluster: down, user: u }}\nusers:\n- name: u\n  user: {{}}\ncurrent-context: down\n"
    );
    std::fs::write(dir.path().join("kubeconfig"), kubeconfig).unwrap();
    std::fs::write(
        dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    kube-context: down\n",
    )
    .unwrap();
    let file = dir.path().join("drill.yaml");
    std::fs::write(
        &file,
        drill(1, 1)
            .replace(
                "simulation: { scenario: scenario.yaml }\n",
                "environments: [staging]\n",
            )
            .replace("${sim.shop.web}", &format!("http://127.0.0.1:{port}")),
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let out = firedrill()
        .env("KUBECONFIG", dir.path().join("kubeconfig"))
        .args([
            "run",
            "--env",
            "staging",
            "--steady-state-timeout",
            "2s",
            "--report-dir",
        ])
        .arg(&reports)
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // The cluster's halt cannot be read, so the drill does not start (the halt fails
    // closed), and says that the API is what cannot be reached; nothing is written or touched.
    assert!(
        stderr.contains("cannot read the cluster's halt (ConfigMap firedrill/firedrill-halt): the cluster's API cannot be reached")
            && stderr.contains("nothing was touched"),
        "{stderr}"
    );
    assert!(common::reports(&reports).is_empty());
}

/// The quickstart's drill and cluster (experiments/quickstart.yaml on experiments/sim/shop.yaml),
/// run for 20 trials against a simulated cluster in this process so that its ground truth can
/// be read: in every trial the readiness probe's time to detect and downtime lie in the
/// brackets the record gives them. The watch event for the deleted pod can arrive before the
/// delete call returns; it belongs to the fault, not to the steady state before it.
#[test]
fn the_quickstart_time_to_detect_and_downtime_lie_in_their_brackets_in_20_trials() {
    use firedrill::sim::TruthKind;
    use std::time::SystemTime;

    let sim = staging(&shop(), 3);
    // The quickstart's target, fault and readiness probe; a shorter stable-for so that 20
    // trials take half a minute.
    let file = sim.dir.path().join("quickstart.yaml");
    std::fs::write(
        &file,
        r#"name: quickstart
environments: [staging]
targets:
  checkout-pods:
    kubernetes: { namespace: shop, selector: app=checkout, workload: deployment/checkout, count: 1 }
probes:
  checkout-ready:
    kubernetes: { deployment: shop/checkout, ready: all }
    every: 500ms
    every-during: 20ms
faults:
  - pod-kill: { target: checkout-pods, grace-period: 0s }
recovery: { objective: 5s, stable-for: 300ms, timeout: 1m }
repeat: 20
cooldown: 100ms
"#,
    )
    .unwrap();
    let reports = sim.dir.path().join("reports");
    let out = firedrill_in(&sim)
        .args(["run", "--env", "staging", "--seed", "11", "--report-dir"])
        .arg(&reports)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = common::only_report(&reports);
    let truth = sim.handle().truth();
    let first = |what: TruthKind, object: &str, from: SystemTime, within: Duration| {
        truth
            .iter()
            .find(|e| e.what == what && e.object == object && e.at >= from && e.at <= from + within)
            .map(|e| e.at)
    };
    let since = |a: SystemTime, b: SystemTime| b.duration_since(a).unwrap_or_default();
    // The watch delivers a change a little after it happens; a bound may miss by that much.
    // Idle, that is under 1ms; with the whole suite running on two cores it reached 7–9ms
    // (trial 7 of a full run: downtime's lower bound 6.7ms above the truth). 15ms still fails
    // the defect this test was written for (TTD 20.7ms for a true 0.5ms).
    let watch = Duration::from_millis(15);
    let trials = record["trials"].as_array().unwrap();
    assert_eq!(trials.len(), 20);
    for trial in trials {
        let n = &trial["index"];
        let pod = trial["faults"][0]["affected"][0].as_str().unwrap();
        let long = Duration::from_secs(60);
        let deleted = truth
            .iter()
            .find(|e| e.what == TruthKind::PodDeleted && e.object == pod)
            .unwrap_or_else(|| panic!("trial {n}: {pod} was not deleted"))
            .at;
        // The deployment counts one ready replica less as soon as its controller notices.
        let degraded = first(
            TruthKind::WorkloadDegraded,
            "checkout",
            deleted,
            Duration::from_millis(100),
        )
        .unwrap_or(deleted);
        let whole = first(TruthKind::WorkloadReady, "checkout", degraded, long)
            .unwrap_or_else(|| panic!("trial {n}: checkout never whole again"));
        let (true_ttd, true_downtime) = (since(deleted, degraded), since(degraded, whole));

        let probe = &trial["probes"][0];
        assert_eq!(probe["name"], "checkout-ready");
        let v = &probe["verdict"];
        let ttd = secs(&v["ttd_s"]);
        let (lo, hi) = (secs(&v["ttd"]["lower_s"]), secs(&v["ttd"]["upper_s"]));
        assert!(
            lo <= true_ttd + watch && true_ttd <= hi && lo <= ttd && ttd <= hi,
            "trial {n}: time to detect {ttd:?} in [{lo:?}, {hi:?}], simulated {true_ttd:?}"
        );
        let down = secs(&v["downtime_s"]);
        let (lo, hi) = (
            secs(&v["downtime"]["lower_s"]),
            secs(&v["downtime"]["upper_s"]),
        );
        assert!(
            lo <= true_downtime + watch && true_downtime <= hi + watch && lo <= down && down <= hi,
            "trial {n}: downtime {down:?} in [{lo:?}, {hi:?}], simulated {true_downtime:?}"
        );
    }
}

/// A blast-radius share never rounds toward more harm: `percent: 67` of three pods is two
/// (67% of 3 = 2.01), and `plan` says how it got there. With `max-targets: 2` the run then
/// kills exactly two.
#[test]
fn percent_of_the_pods_rounds_down_and_plan_says_how_the_count_was_derived() {
    let sim = staging(SCENARIO, 4);
    let file = sim.dir.path().join("drill.yaml");
    std::fs::write(
        &file,
        drill(1, 2)
            .replace(
                "simulation: { scenario: scenario.yaml }\n",
                "environments: [staging]\n",
            )
            .replace("count: 1,", "percent: 67,")
            .replace(
                "  web-http:\n    http: { url: \"${sim.shop.web}/\", timeout: 500ms }\n    every: 100ms\n    every-during: 10ms\n",
                "",
            ),
    )
    .unwrap();
    // The simulated kubelet takes a second to make the three pods ready.
    let mut stdout = String::new();
    for _ in 0..100 {
        let out = firedrill_in(&sim)
            .args(["plan", "--env", "staging"])
            .arg(&file)
            .output()
            .unwrap();
        stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if stdout.contains("3 ready") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        stdout.contains("2 of 3 matching") && stdout.contains("67% of 3 = 2.01, rounded down: 2"),
        "{stdout}"
    );
    let reports = sim.dir.path().join("reports");
    let out = firedrill_in(&sim)
        .args(["run", "--env", "staging", "--seed", "5", "--report-dir"])
        .arg(&reports)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = common::only_report(&reports);
    let affected = record["trials"][0]["faults"][0]["affected"]
        .as_array()
        .unwrap();
    assert_eq!(affected.len(), 2, "{}", record["trials"][0]["faults"][0]);
}

/// The defect of several faults in one trial: a pod kill and a held latency. Each recovery
/// probe counts from the fault it watches (derived from the file: the readiness probe watches
/// the killed workload, the http probe goes through the latency's proxy), so the kill's
/// recovery is measured from the kill, not from the latency's removal (which made it 0 and let
/// a 100ms objective pass although the deployment took a second to be whole).
#[test]
fn a_kill_and_a_held_latency_in_one_trial_each_count_from_their_own_fault() {
    use firedrill::sim::TruthKind;

    let sim = staging(&shop(), 8);
    let upstream = sim
        .handle()
        .traffic_url("shop", "checkout")
        .unwrap()
        .trim_start_matches("http://")
        .to_string();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let drill = |objective: &str| {
        let file = sim.dir.path().join(format!("mixed-{objective}.yaml"));
        std::fs::write(
            &file,
            format!(
                r#"name: kill-and-latency
environments: [staging]
proxy:
  checkout: {{ listen: "127.0.0.1:{port}", upstream: "{upstream}" }}
targets:
  checkout-pods:
    kubernetes: {{ namespace: shop, selector: app=checkout, workload: deployment/checkout, count: 1 }}
probes:
  checkout-http:
    http: {{ url: "http://127.0.0.1:{port}/", expect-status: 200, max-latency: 100ms, timeout: 1s }}
    every: 100ms
    every-during: 10ms
  checkout-ready:
    kubernetes: {{ deployment: shop/checkout, ready: all }}
    every: 500ms
    every-during: 20ms
faults:
  - pod-kill: {{ target: checkout-pods, grace-period: 0s }}
  - latency: {{ proxy: checkout, latency: 150ms, duration: 2s }}
recovery: {{ objective: {objective}, stable-for: 500ms, timeout: 1m }}
"#
            ),
        )
        .unwrap();
        let reports = sim.dir.path().join(format!("reports-{objective}"));
        let out = firedrill_in(&sim)
            .args(["run", "--env", "staging", "--seed", "2", "--report-dir"])
            .arg(&reports)
            .arg(&file)
            .output()
            .unwrap();
        (out, common::only_report(&reports))
    };
    // The deployment's true recovery: from the deletion to whole again (simulated truth).
    let truth_of = |record: &serde_json::Value| {
        let pod = record["trials"][0]["faults"][0]["affected"][0]
            .as_str()
            .unwrap()
            .to_string();
        let truth = sim.handle().truth();
        let deleted = truth
            .iter()
            .find(|e| e.what == TruthKind::PodDeleted && e.object == pod)
            .unwrap()
            .at;
        let whole = truth
            .iter()
            .find(|e| {
                e.what == TruthKind::WorkloadReady && e.object == "checkout" && e.at > deleted
            })
            .unwrap()
            .at;
        whole.duration_since(deleted).unwrap()
    };
    let slack = Duration::from_millis(5);

    let (out, record) = drill("100ms");
    assert_eq!(
        out.status.code(),
        Some(1),
        "a second to be whole misses a 100ms objective: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(record["outcome"], "failed");
    let truth = truth_of(&record);
    let trial = &record["trials"][0];
    let ttr = &trial["verdict"]["ttr"];
    let (lo, hi) = (secs(&ttr["lower_s"]), secs(&ttr["upper_s"]));
    assert!(
        lo <= truth + slack && truth <= hi + slack,
        "the kill's true recovery {truth:?} is not in [{lo:?}, {hi:?}]"
    );
    let probes = trial["probes"].as_array().unwrap();
    let after = |name: &str| probes.iter().find(|p| p["name"] == name).unwrap()["after"].clone();
    assert_eq!(
        after("checkout-ready"),
        serde_json::json!(["pod-kill checkout-pods"])
    );
    assert_eq!(
        after("checkout-http"),
        serde_json::json!(["latency proxy checkout"])
    );
    assert!(
        trial["faults"][1]["removed_s"].is_number(),
        "{}",
        trial["faults"][1]
    );

    let (out, record) = drill("5s");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let truth = truth_of(&record);
    let ttr = &record["trials"][0]["verdict"]["ttr"];
    let (lo, hi) = (secs(&ttr["lower_s"]), secs(&ttr["upper_s"]));
    assert!(
        lo <= truth + slack && truth <= hi + slack && lo > Duration::from_millis(900),
        "time to recover [{lo:?}, {hi:?}] is the deployment's ({truth:?}), not 0"
    );
}

/// A target's pods are listed a page at a time (500 a page): with 1,200 matching pods, the
/// choice is made among all of them, not the first page.
#[test]
fn a_target_larger_than_a_list_page_is_chosen_from_among_all_its_pods() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("scenario.yaml"),
        "namespaces:\n  shop:\n    deployments:\n      web-a: { replicas: 600, labels: { app: web } }\n      web-b: { replicas: 600, labels: { app: web } }\n",
    )
    .unwrap();
    let file = dir.path().join("drill.yaml");
    std::fs::write(
        &file,
        r#"name: web-kill-many
simulation: { scenario: scenario.yaml }
targets:
  web:
    kubernetes: { namespace: shop, selector: app=web, count: 1 }
probes:
  web-a-ready:
    kubernetes: { deployment: shop/web-a, ready: all }
  web-b-ready:
    kubernetes: { deployment: shop/web-b, ready: all }
faults:
  - pod-kill: { target: web, grace-period: 0s }
recovery: { objective: 30s, stable-for: 1s, timeout: 2m }
"#,
    )
    .unwrap();
    let reports = dir.path().join("reports");
    let out = firedrill()
        .args([
            "run",
            "--seed",
            "7",
            "--steady-state-timeout",
            "2m",
            "--report-dir",
        ])
        .arg(&reports)
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let record = common::only_report(&reports);
    let chosen = record["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "fault-targets")
        .unwrap_or_else(|| panic!("no fault-targets event: {record}"));
    let text = chosen["chosen"].as_str().unwrap();
    assert!(text.contains("(1 of 1200 matching `app=web`"), "{text}");
}
