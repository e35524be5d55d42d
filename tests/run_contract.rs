//! What a run promises the tools around it: one run id from the scope lock to the journal, the
//! cluster Lease released on every path, a machine-readable result for the scheduler, and
//! operator marks as a typed value with an unchanged JSON form.

mod common;

use std::path::Path;
use std::time::Duration;

use common::sim::Sim;
use common::sticky::Sticky;
use common::{finish, signal, text, wait_for};

/// A second run of a busy scope is refused naming the holder's run id: that id is the one
/// the holder's journal carries, so `recover --run ID` finds it.
#[test]
fn the_run_id_of_a_busy_scope_is_the_one_recover_accepts() {
    let d = Sticky::new("");
    let child = d.spawn_run();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    let second = d
        .cmd()
        .arg("run")
        .arg(d.file())
        .arg("--report-dir")
        .arg(d.reports())
        .output()
        .unwrap();
    let (_, stderr) = text(&second);
    assert_eq!(second.status.code(), Some(3), "{stderr}");
    let id = stderr
        .split("(run ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_else(|| panic!("no run id in: {stderr}"))
        .to_string();
    let journal = d.state().join("journal").join(format!("{id}.jsonl"));
    let journal_present = journal.is_file();
    // `recover --run ID` knows the run (it is alive, so it is skipped, not unknown).
    let rec = d.cmd().args(["recover", "--run", &id]).output().unwrap();
    signal(child.id(), "INT");
    let out = finish(child, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert!(
        journal_present,
        "the busy scope names run {id}, which has no journal: {stderr}"
    );
    assert_eq!(rec.status.code(), Some(0), "{:?}", text(&rec));
    assert!(text(&rec).0.contains("still running"), "{:?}", text(&rec));
    let record = common::only_report(&d.reports());
    assert_eq!(record["run_id"], id.as_str());
}

/// A drill on a real (here: simulated, reached through a kubeconfig) cluster takes the
/// namespace's Lease; when its proxy cannot start (the port is taken) the run is refused and
/// the Lease is gone, not left to block other machines until it expires.
#[test]
fn a_proxy_that_cannot_start_releases_the_cluster_lease() {
    use k8s_openapi::api::coordination::v1::Lease;
    let c = Sim::new(
        "kubelet: { schedule-delay: 10ms, start-delay: 50ms, ready-delay: 50ms }\nnamespaces:\n  shop:\n    deployments:\n      web: { replicas: 3, labels: { app: web } }\n",
        3,
    );
    std::fs::write(
        c.dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    kube-context: firedrill-sim\n",
    )
    .unwrap();
    c.write_kubeconfig("kubeconfig", &["firedrill-sim"], "firedrill-sim");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let file = c.dir.path().join("drill.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: web-kill
environments: [staging]
proxy:
  web: {{ listen: "127.0.0.1:{port}", upstream: "127.0.0.1:9" }}
targets:
  web:
    kubernetes: {{ namespace: shop, selector: app=web, count: 1, max-targets: 1 }}
probes:
  web-ready:
    kubernetes: {{ deployment: shop/web, ready: all }}
faults:
  - pod-kill: {{ target: web, grace-period: 0s }}
recovery: {{ objective: 10s, stable-for: 300ms, timeout: 30s }}
"#
        ),
    )
    .unwrap();
    let out = common::firedrill()
        .env("KUBECONFIG", c.dir.path().join("kubeconfig"))
        .env("FIREDRILL_STATE_DIR", c.dir.path().join("state"))
        .arg("run")
        .arg(&file)
        .args(["--env", "staging", "--report-dir"])
        .arg(c.dir.path().join("reports"))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cannot start proxy `web`"), "{stderr}");
    let client = c.rt.block_on(c.handle().kube_client()).unwrap();
    let api = kube::Api::<Lease>::namespaced(client, "shop");
    let left = c.rt.block_on(api.get_opt("firedrill-drill")).unwrap();
    assert!(
        left.is_none(),
        "the lease outlived the refused run: {left:?}\n{stderr}"
    );
    drop(taken);
}

/// `run --result-file FILE` writes a small JSON result (run id, exit code, report path) for
/// a program that starts drills (the scheduler): nothing has to read the terminal view.
#[test]
fn run_writes_a_machine_readable_result_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = passing_drill(dir.path());
    let result = dir.path().join("result.json");
    let out = common::firedrill()
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .arg("run")
        .arg(&file)
        .arg("--no-live")
        .arg("--report-dir")
        .arg(dir.path().join("reports"))
        .arg("--result-file")
        .arg(&result)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&result).unwrap()).unwrap();
    let record = common::only_report(&dir.path().join("reports"));
    assert_eq!(r["run_id"], record["run_id"]);
    assert_eq!(r["exit_code"], 0);
    let report = Path::new(r["report"].as_str().unwrap());
    let again: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    assert_eq!(again["run_id"], record["run_id"]);
}

/// Operator marks are a typed value; the record keeps `"mark": "detected"` etc.
#[test]
fn operator_marks_are_typed_and_keep_their_json_form() {
    use firedrill::timeline::{EventKind, Mark, OperatorMark};
    for (m, mark, name, text) in [
        (
            OperatorMark::detected(),
            Mark::Detected,
            "detected",
            "an operator noticed the failure",
        ),
        (
            OperatorMark::mitigated(),
            Mark::Mitigated,
            "mitigated",
            "an operator mitigated the failure",
        ),
        (
            OperatorMark::note("db paged"),
            Mark::Note,
            "note",
            "db paged",
        ),
    ] {
        let kind = EventKind::from(m);
        let v = serde_json::to_value(&kind).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"event": "mark", "mark": name, "text": text})
        );
        let back: EventKind = serde_json::from_value(v).unwrap();
        assert_eq!(back, kind);
        assert!(matches!(back, EventKind::Mark { mark: m, .. } if m == mark));
    }
}

/// The scheduler's runner reads the report a drill names in its result file, not the
/// terminal view: a child whose `report: ` line points elsewhere still yields its summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_reads_the_result_file_not_the_terminal_view() {
    use firedrill::schedule::daemon::{drill_runner, ChildSettings, Job};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = passing_drill(dir.path());
    // The real binary behind a wrapper that rewrites its terminal view's report line.
    let wrapper = dir.path().join("firedrill-wrapper");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n'{}' \"$@\" | sed 's|^report: .*|report: /nonexistent/report.json|'\n",
            env!("CARGO_BIN_EXE_firedrill")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let runner = drill_runner(ChildSettings {
        binary: wrapper,
        report_dir: dir.path().join("reports"),
        state_dir: dir.path().join("state"),
        steady_state_timeout: Duration::from_secs(20),
    });
    let job = Job {
        file,
        experiment: "ok".into(),
        environment: "local".into(),
        content_hash: String::new(),
        tick: chrono::Utc::now(),
        seed: 1,
    };
    let summary = runner(job, tokio_util::sync::CancellationToken::new()).await;
    let summary = summary.expect("the runner found the drill's report");
    assert_eq!(summary.experiment, "ok");
    assert_eq!(summary.outcome, firedrill::report::record::Outcome::Passed);
}

/// One `run` span wraps the run: its logs carry the run id, the experiment and the environment.
#[test]
fn a_run_logs_inside_one_span_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = passing_drill(dir.path());
    let out = common::firedrill()
        .env("FIREDRILL_STATE_DIR", dir.path().join("state"))
        .env("RUST_LOG", "firedrill=debug")
        .arg("run")
        .arg(&file)
        .arg("--no-live")
        .arg("--report-dir")
        .arg(dir.path().join("reports"))
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    // Log lines may be coloured: compare without the escape sequences.
    let stderr = strip_ansi(&stderr);
    let record = common::only_report(&dir.path().join("reports"));
    let span = format!(
        "run{{run_id={} experiment=ok env=local}}",
        record["run_id"].as_str().unwrap()
    );
    assert!(
        stderr.lines().any(|l| l.contains(&span)),
        "no log line inside {span}:\n{stderr}"
    );
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, ended by a letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A drill `ok` whose fault and probe are `true`: it passes at once.
fn passing_drill(dir: &Path) -> std::path::PathBuf {
    let file = dir.join("ok.yaml");
    std::fs::write(
        &file,
        "name: ok\nprobes:\n  p: { command: { run: [\"true\"] }, every: 50ms }\nfaults:\n  - command: { run: [\"true\"], revert: [\"true\"] }\nrecovery: { objective: 5s, stable-for: 100ms, timeout: 20s }\n",
    )
    .unwrap();
    file
}
