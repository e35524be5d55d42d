//! Safety end to end through the binary: the write-ahead journal and `recover`, signals and
//! panics that still revert, the halt lever, one drill per scope, the protected-environment
//! guard (counting mutating calls on a simulated cluster), and secrets that never leave.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::sticky::Sticky;
use common::{finish, firedrill, signal, text, wait_for};

#[test]
fn sigint_twice_reverts_within_a_second_and_exits_3() {
    let d = Sticky::new("");
    let child = d.spawn_run();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    let sent = Instant::now();
    signal(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(20));
    signal(child.id(), "INT");
    wait_for("the revert", Duration::from_secs(1), || d.reverts() > 0);
    assert!(sent.elapsed() <= Duration::from_secs(1));
    let out = finish(child, Duration::from_secs(20));
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(d.reverts(), 1, "reverted exactly once");
    assert!(!d.injected().exists());
    let record = common::only_report(&d.reports());
    assert_eq!(record["outcome"], "aborted");
    // The journal is closed: nothing is left to recover.
    let rec = d.cmd().args(["recover", "--all"]).output().unwrap();
    assert!(
        text(&rec).0.contains("nothing to recover"),
        "{:?}",
        text(&rec)
    );
}

#[test]
fn a_panic_reverts_the_current_journal_before_exiting() {
    let d = Sticky::new("");
    let out = d
        .cmd()
        .env("FIREDRILL_DEBUG_PANIC_AFTER_INJECT", "1")
        .arg("run")
        .arg(d.file())
        .arg("--report-dir")
        .arg(d.reports())
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(101), "{stderr}");
    assert!(stderr.contains("reverting every fault"), "{stderr}");
    assert_eq!(d.reverts(), 1, "{stderr}");
    let rec = d.cmd().args(["recover", "--all"]).output().unwrap();
    assert!(
        text(&rec).0.contains("nothing to recover"),
        "{:?}",
        text(&rec)
    );
}

/// SIGKILL of the runner and of its watchdog (the dead-man switch, tested in
/// tests/sigkill_recover.rs) leaves the fault in place; the journal lets `recover` (or the next
/// run) undo it.
fn killed_run(d: &Sticky) -> String {
    let child = d.spawn_run();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    // The second (irreversible) fault follows the first at once.
    std::thread::sleep(Duration::from_millis(300));
    common::kill_watchdogs(&d.state());
    signal(child.id(), "KILL");
    let _ = finish(child, Duration::from_secs(5));
    let journals: Vec<PathBuf> = std::fs::read_dir(d.state().join("journal"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    let newest = journals.iter().max().unwrap();
    newest.file_stem().unwrap().to_string_lossy().into_owned()
}

const IRREVERSIBLE: &str = "  - command: { run: [\"true\"] }\n";

#[test]
fn recover_replays_a_killed_run_once_and_says_what_it_cannot_undo() {
    let d = Sticky::new(IRREVERSIBLE);
    let run_id = killed_run(&d);
    assert_eq!(d.reverts(), 0, "SIGKILL skipped the revert");
    let out = d
        .cmd()
        .args(["recover", "--run", &run_id])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains(&run_id), "{stdout}");
    assert!(stdout.contains("reverted command touch"), "{stdout}");
    assert!(
        stdout.contains("irreversible command true") && stdout.contains("no revert command"),
        "{stdout}"
    );
    assert_eq!(d.reverts(), 1);
    assert!(!d.injected().exists());
    // A second recover is a no-op.
    let again = d.cmd().args(["recover", "--all"]).output().unwrap();
    assert!(text(&again).0.contains("nothing to recover"));
    assert_eq!(d.reverts(), 1);
}

#[test]
fn a_new_run_first_recovers_the_stale_journal_of_its_scope() {
    let d = Sticky::new("");
    let run_id = killed_run(&d);
    assert_eq!(d.reverts(), 0);
    // The next run recovers, then runs (and is stopped) as usual.
    let child = d.spawn_run();
    wait_for("the stale revert", Duration::from_secs(30), || {
        d.reverts() == 1
    });
    wait_for("the new injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    signal(child.id(), "TERM");
    let out = finish(child, Duration::from_secs(20));
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains(&format!("recovering run {run_id}")),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(d.reverts(), 2);
}

#[test]
fn halt_stops_a_running_drill_and_refuses_new_ones_until_released() {
    let d = Sticky::new("");
    let child = d.spawn_run();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    let halted = Instant::now();
    let h = d
        .cmd()
        .args(["halt", "--reason", "incident 4711"])
        .output()
        .unwrap();
    assert_eq!(h.status.code(), Some(0), "{:?}", text(&h));
    wait_for("the revert", Duration::from_secs(5), || d.reverts() > 0);
    assert!(halted.elapsed() < Duration::from_secs(5));
    let out = finish(child, Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    let record = common::only_report(&d.reports());
    assert_eq!(record["outcome"], "aborted");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.contains("halted") && reason.contains("incident 4711"),
        "{reason}"
    );

    // While halted, a new run refuses at once and touches nothing.
    std::fs::remove_file(d.reverted()).unwrap();
    let refused = d.cmd().arg("run").arg(d.file()).output().unwrap();
    let (_, stderr) = text(&refused);
    assert_eq!(refused.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("incident 4711"), "{stderr}");
    assert!(!d.injected().exists() && d.reverts() == 0);

    let r = d.cmd().args(["halt", "--release"]).output().unwrap();
    assert!(text(&r).0.contains("released"));
}

#[test]
fn one_drill_per_scope_among_a_hundred_concurrent_runs() {
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let file = dir.path().join("busy.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: busy
probes:
  go:
    command: {{ run: [test, -e, "{go}"] }}
    every: 50ms
faults:
  - command: {{ run: ["true"] }}
recovery: {{ objective: 5s, stable-for: 100ms, timeout: 20s }}
"#,
            go = go.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let n = 100;
    let started = Instant::now();
    let mut children: Vec<Option<Child>> = (0..n)
        .map(|_| {
            Some(
                firedrill()
                    .env("FIREDRILL_STATE_DIR", &state)
                    .arg("run")
                    .arg(&file)
                    .args(["--steady-state-timeout", "120s", "--report-dir"])
                    .arg(dir.path().join("reports"))
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    // Every loser exits promptly, naming the holder, while the winner waits for `go`.
    let mut refused = Vec::new();
    while refused.len() < n - 1 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "only {} of {} refused",
            refused.len(),
            n - 1
        );
        for c in children.iter_mut() {
            if c.as_mut()
                .is_some_and(|ch| ch.try_wait().unwrap().is_some())
            {
                refused.push(c.take().unwrap().wait_with_output().unwrap());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    for out in &refused {
        let (_, stderr) = text(out);
        assert_eq!(out.status.code(), Some(3), "{stderr}");
        assert!(
            stderr.contains("is busy: drill `busy` (run ") && stderr.contains("holds it since"),
            "{stderr}"
        );
    }
    std::fs::write(&go, "").unwrap();
    let winner = children.into_iter().flatten().next().unwrap();
    let out = finish(winner, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
}

// ---- the protected-environment guard, against a simulated cluster ----

use common::sim::Sim as Cluster;

impl Cluster {
    /// Three web pods, environments `staging` and a protected `production` on context
    /// `firedrill-sim`, and two kubeconfigs: one whose current context is that, one not.
    fn start() -> Cluster {
        let c = Cluster::new(
            "kubelet: { schedule-delay: 10ms, start-delay: 50ms, ready-delay: 50ms }\nnamespaces:\n  shop:\n    deployments:\n      web: { replicas: 3, labels: { app: web } }\n",
            3,
        );
        std::fs::write(
            c.dir.path().join("firedrill.yaml"),
            "environments:\n  staging:\n    kube-context: firedrill-sim\n  production:\n    kube-context: firedrill-sim\n    protected: true\n",
        )
        .unwrap();
        c.write_kubeconfig("kubeconfig", &["firedrill-sim", "other"], "firedrill-sim");
        c.write_kubeconfig("kubeconfig-other", &["firedrill-sim", "other"], "other");
        c
    }

    fn mutating(&self) -> usize {
        let sim = self.handle();
        sim.request_log().iter().filter(|r| r.is_mutating()).count()
    }

    fn drill(&self, environments: &str) -> PathBuf {
        let file = self.dir.path().join(format!("drill-{environments}.yaml"));
        std::fs::write(
            &file,
            format!(
                r#"name: web-kill
environments: [{environments}]
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
        file
    }

    fn run(&self, file: &Path, kubeconfig: &str, args: &[&str]) -> Output {
        firedrill()
            .env("KUBECONFIG", self.dir.path().join(kubeconfig))
            .env("FIREDRILL_STATE_DIR", self.dir.path().join("state"))
            .arg("run")
            .arg(file)
            .arg("--report-dir")
            .arg(self.dir.path().join("reports"))
            .args(args)
            .output()
            .unwrap()
    }
}

#[test]
fn a_protected_environment_runs_only_when_every_condition_holds() {
    let c = Cluster::start();
    let listed = c.drill("staging, production");
    let unlisted = c.drill("staging");
    for bits in 0u8..16 {
        let explicit = bits & 1 != 0;
        let file = if bits & 2 != 0 { &listed } else { &unlisted };
        let kubeconfig = if bits & 4 != 0 {
            "kubeconfig"
        } else {
            "kubeconfig-other"
        };
        let mut args = vec![];
        if explicit {
            args.extend(["--env", "production"]);
        }
        if bits & 8 != 0 {
            args.push("--yes");
        }
        let before = c.mutating();
        let out = c.run(file, kubeconfig, &args);
        let (_, stderr) = text(&out);
        let after = c.mutating();
        if bits == 15 {
            assert_eq!(out.status.code(), Some(0), "authorized: {stderr}");
            assert!(after > before, "the authorized run deleted a pod");
        } else {
            assert_eq!(out.status.code(), Some(2), "{bits:04b}: {stderr}");
            assert_eq!(after, before, "{bits:04b} made mutating calls: {stderr}");
        }
    }
}

/// Runs the drill in `production` on a pseudo-terminal (util-linux `script`), without `--yes`,
/// typing `typed` at the confirmation prompt.
fn run_confirming(c: &Cluster, file: &Path, typed: &str) -> Output {
    use std::io::Write;
    let quote = |p: &Path| format!("'{}'", p.display());
    let line = format!(
        "{} run {} --report-dir {} --env production",
        quote(Path::new(env!("CARGO_BIN_EXE_firedrill"))),
        quote(file),
        quote(&c.dir.path().join("reports")),
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("KUBECONFIG", c.dir.path().join("kubeconfig"))
        .env("FIREDRILL_STATE_DIR", c.dir.path().join("state"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("util-linux `script` runs the drill on a pseudo-terminal");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{typed}\n").as_bytes()).unwrap();
    let out = finish(child, Duration::from_secs(60));
    drop(stdin);
    out
}

#[test]
fn a_person_confirms_production_by_typing_its_name_and_nothing_else_will_do() {
    let c = Cluster::start();
    let file = c.drill("staging, production");
    let before = c.mutating();
    let out = run_confirming(&c, &file, "prod");
    let (stdout, _) = text(&out);
    assert!(stdout.contains("type its name"), "{stdout}");
    assert!(stdout.contains("did not match"), "{stdout}");
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert_eq!(
        c.mutating(),
        before,
        "a wrong confirmation made mutating calls"
    );
    let out = run_confirming(&c, &file, "production");
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(c.mutating() > before, "the confirmed run deleted a pod");
}

#[test]
fn a_halt_refuses_with_no_mutating_call() {
    let c = Cluster::start();
    let file = c.drill("staging");
    let h = firedrill()
        .env("FIREDRILL_STATE_DIR", c.dir.path().join("state"))
        .args(["halt", "--reason", "freeze"])
        .output()
        .unwrap();
    assert!(h.status.success());
    let out = c.run(&file, "kubeconfig", &["--env", "staging"]);
    assert_eq!(out.status.code(), Some(3), "{:?}", text(&out));
    assert_eq!(c.mutating(), 0);
}

#[test]
fn an_annotated_configmap_in_the_cluster_halts_with_no_mutating_call() {
    let c = Cluster::start();
    let file = c.drill("staging");
    let sim = c.handle();
    c.rt.block_on(async {
        use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
        let client = sim.kube_client().await.unwrap();
        let pp = kube::api::PostParams::default();
        let ns: Namespace =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "firedrill"}})).unwrap();
        kube::Api::<Namespace>::all(client.clone())
            .create(&pp, &ns)
            .await
            .unwrap();
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({"metadata": {
            "name": "firedrill-halt", "namespace": "firedrill",
            "annotations": {"firedrill.io/halt": "cluster freeze"}}}))
        .unwrap();
        kube::Api::<ConfigMap>::namespaced(client, "firedrill")
            .create(&pp, &cm)
            .await
            .unwrap();
    });
    let before = c.mutating();
    let out = c.run(&file, "kubeconfig", &["--env", "staging"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cluster freeze"), "{stderr}");
    assert_eq!(c.mutating(), before);
}

#[test]
fn a_live_lease_in_the_cluster_refuses_and_an_own_lease_is_released() {
    use k8s_openapi::api::coordination::v1::Lease;
    let c = Cluster::start();
    let file = c.drill("staging");
    let sim = c.handle();
    let client = c.rt.block_on(sim.kube_client()).unwrap();
    let api = kube::Api::<Lease>::namespaced(client, "shop");
    // A run takes the namespace's lease and deletes it when done.
    let out = c.run(&file, "kubeconfig", &["--env", "staging"]);
    assert_eq!(out.status.code(), Some(0), "{:?}", text(&out));
    assert!(c
        .rt
        .block_on(api.get_opt("firedrill-drill"))
        .unwrap()
        .is_none());
    // Another machine's drill holds it (renewed just now): refused, naming the holder.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "firedrill-drill", "namespace": "shop", "annotations": {
            "firedrill.io/holder": "{\"pid\":42,\"run_id\":\"elsewhere-1\",\"experiment\":\"web-kill\",\"since\":\"2026-01-01T00:00:00Z\"}"}},
        "spec": {"holderIdentity": "other", "leaseDurationSeconds": 60, "renewTime": now}}))
    .unwrap();
    c.rt.block_on(api.create(&Default::default(), &lease))
        .unwrap();
    let before = c.mutating();
    let out = c.run(&file, "kubeconfig", &["--env", "staging"]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("elsewhere-1") && stderr.contains("pid 42"),
        "{stderr}"
    );
    assert_eq!(
        c.mutating(),
        before,
        "a refused lease makes no call: {stderr}"
    );
}

#[test]
fn plan_resolves_targets_read_only() {
    let c = Cluster::start();
    let file = c.drill("staging, production");
    let out = firedrill()
        .env("KUBECONFIG", c.dir.path().join("kubeconfig"))
        .args(["plan", "--env", "production"])
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stdout.contains("is protected"), "{stdout}");
    assert!(stdout.contains("locks: production/kube/shop"), "{stdout}");
    assert!(
        stdout.contains("resolved now (a run chooses again): chose pod web-"),
        "{stdout}"
    );
    assert!(stdout.contains("(1 of 3 matching"), "{stdout}");
    assert_eq!(c.mutating(), 0);
}

// ---- secrets ----

#[test]
fn secret_canaries_never_leave_the_process() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let canaries = [
        "canary-env-7f3a91",
        "canary-bearer-91c2d4",
        "canary-dsn-55e1b8",
    ];
    let file = dir.path().join("secret.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: secrets
probes:
  cmd:
    command: {{ run: [sh, -c, "echo failing with ${{env:FIREDRILL_TEST_CANARY}} >&2; exit 1"] }}
    every: 100ms
  api:
    http:
      url: "http://127.0.0.1:{port}/healthz?token=${{env:FIREDRILL_TEST_CANARY}}"
      headers:
        Authorization: "Bearer canary-bearer-91c2d4"
      timeout: 200ms
    every: 100ms
  db:
    postgres:
      dsn: "postgres://app:canary-dsn-55e1b8@127.0.0.1:{port}/db"
      mode: {{ read: {{ query: "select 1" }} }}
      timeout: 200ms
    every: 100ms
faults:
  - command: {{ run: [echo, "${{env:FIREDRILL_TEST_CANARY}}"] }}
recovery: {{ objective: 5s, timeout: 10s }}
"#
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let reports = dir.path().join("reports");
    std::fs::create_dir_all(dir.path().join("ci")).unwrap();
    let out = firedrill()
        .env("FIREDRILL_TEST_CANARY", canaries[0])
        .env("FIREDRILL_STATE_DIR", &state)
        .env("RUST_LOG", "debug")
        .args(["-vv", "run", "--steady-state-timeout", "1s", "--report-dir"])
        .arg(&reports)
        .arg("--junit")
        .arg(dir.path().join("ci/junit.xml"))
        .arg("--summary")
        .arg(dir.path().join("ci/summary.md"))
        .arg(&file)
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("***"), "something was masked: {stderr}");
    let mut outputs = vec![("stdout".to_string(), stdout), ("stderr".into(), stderr)];
    let mut stack = vec![reports, state, dir.path().join("ci")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let t = String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into_owned();
                outputs.push((p.display().to_string(), t));
            }
        }
    }
    assert!(outputs.len() > 5, "reports and CI outputs were written");
    for (name, t) in &outputs {
        for c in canaries {
            assert!(!t.contains(c), "{c} leaked into {name}:\n{t}");
        }
    }
}

/// Firedrill's own process arguments carry no secret: while a drill with secrets in an http
/// URL and header, a DSN and a webhook URL runs (runner, watchdog, probe children), no process
/// on the machine has a canary in its command line. (A `command` fault's or probe's own argv is
/// the user's and visible in `ps`: docs/safety.md says so; none carries a secret here.)
#[test]
fn no_process_argument_of_firedrill_carries_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let canaries = [
        "canary-argv-env-3b71",
        "canary-argv-bearer-c0d2",
        "canary-argv-dsn-9e44",
        "canary-argv-hook-51aa",
    ];
    let file = dir.path().join("secret.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: argv-secrets
probes:
  ok:
    command: {{ run: ["true"] }}
    every: 50ms
  api:
    http:
      url: "http://127.0.0.1:{port}/healthz?token=${{env:FIREDRILL_ARGV_CANARY}}"
      headers:
        Authorization: "Bearer {bearer}"
      timeout: 200ms
    every: 100ms
  db:
    postgres:
      dsn: "postgres://app:{dsn}@127.0.0.1:{port}/db"
      mode: {{ read: {{ query: "select 1" }} }}
      timeout: 200ms
    every: 100ms
steady-state: [ok]
faults:
  - command: {{ run: ["true"], revert: ["true"] }}
recovery: {{ objective: 5s, stable-for: 2s, timeout: 10s, probes: [ok] }}
"#,
            bearer = canaries[1],
            dsn = canaries[2],
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut child = firedrill()
        .env("FIREDRILL_ARGV_CANARY", canaries[0])
        .env(
            "FIREDRILL_ARGV_HOOK",
            format!("http://127.0.0.1:{port}/{}", canaries[3]),
        )
        .env("FIREDRILL_STATE_DIR", &state)
        .args([
            "run",
            "--webhook-env",
            "FIREDRILL_ARGV_HOOK",
            "--report-dir",
        ])
        .arg(dir.path().join("reports"))
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let runner = child.id();
    let (mut scans, mut saw_watchdog) = (0, false);
    while child.try_wait().unwrap().is_none() {
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(argv) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
            for c in canaries {
                assert!(
                    !argv.contains(c),
                    "{c} in the arguments of pid {}: {argv}",
                    entry.file_name().to_string_lossy()
                );
            }
            saw_watchdog |= argv.contains("__firedrill-watchdog");
        }
        scans += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        scans >= 10,
        "only {scans} scans of /proc while pid {runner} ran"
    );
    assert!(
        saw_watchdog,
        "the run's watchdog was among the processes scanned"
    );
}

/// Secrets at rest: a revert argv built from a `${env:}` secret is journalled as the reference,
/// never the value; `recover` resolves it from its own environment (and masks it in what it
/// prints), and without the variable it refuses that revert, naming the variable.
#[test]
fn the_journal_keeps_secret_references_and_recover_resolves_them() {
    const VAR: &str = "FIREDRILL_JOURNAL_CANARY";
    const CANARY: &str = "canary-journal-5e81c";
    let out_dir = tempfile::tempdir().unwrap();
    let got = out_dir.path().join("revert-got");
    let d = Sticky::new(&format!(
        "  - command: {{ run: [\"true\"], revert: [sh, -c, \"echo \\\"$0\\\" >> '{}'\", \"${{env:{VAR}}}\"] }}\n",
        got.display()
    ));
    let child = d
        .cmd()
        .env(VAR, CANARY)
        .arg("run")
        .arg(d.file())
        .arg("--report-dir")
        .arg(d.reports())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("the injection", Duration::from_secs(30), || {
        d.injected().exists()
    });
    std::thread::sleep(Duration::from_millis(300));
    common::kill_watchdogs(&d.state());
    signal(child.id(), "KILL");
    let _ = finish(child, Duration::from_secs(5));
    let journal: String = std::fs::read_dir(d.state().join("journal"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(
        !journal.contains(CANARY),
        "the secret is in the journal: {journal}"
    );
    assert!(journal.contains(&format!("${{env:{VAR}}}")), "{journal}");

    // Without the variable: the revert that needs it is refused, naming it; the other runs.
    let out = d
        .cmd()
        .env_remove(VAR)
        .args(["recover", "--all"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    assert!(
        stdout.contains(VAR) || stderr.contains(VAR),
        "{stdout}{stderr}"
    );
    assert!(!got.exists());
    assert_eq!(d.reverts(), 1, "{stdout}{stderr}");

    // With it: resolved for the revert, masked in what recover says.
    let out = d
        .cmd()
        .env(VAR, CANARY)
        .args(["recover", "--all"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert_eq!(std::fs::read_to_string(&got).unwrap().trim(), CANARY);
    assert!(
        !stdout.contains(CANARY) && !stderr.contains(CANARY),
        "{stdout}{stderr}"
    );
}
