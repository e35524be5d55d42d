//! Network fault drills through the binary on each backend: the built-in proxy a drill starts
//! itself, a Toxiproxy-compatible API, and Chaos Mesh NetworkChaos objects in the simulated
//! cluster. Degradation is measured (TTD to the first breach of max-latency, recovery after the
//! fault is removed), outages (`down`) are seen as refused connections, and nothing is left
//! behind.

mod common;

use std::time::Duration;

use common::{firedrill, secs};
use firedrill::sim::{parse_scenario, SimCluster};
use serde_json::Value;

/// The binary with a state directory of this test's own: tests of this file run at once,
/// and drills on the same scope (`staging/kube/shop`) would otherwise refuse each other.
fn firedrill_in(dir: &std::path::Path) -> std::process::Command {
    let mut c = firedrill();
    c.env("FIREDRILL_STATE_DIR", dir.join("state"));
    c
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A lasting fault's time to recover counts from its removal. The probe failed until about
/// the removal (its last failing check ended within `within` of it, on either side) and was
/// healthy right after: the TTR bracket closes within `within` of the removal.
fn assert_recovered_at_removal(trial: &Value, within: Duration) {
    let removed = secs(&trial["t_removed_s"]);
    let probe = &trial["probes"][0];
    let last_fail = probe["trace"]["stretches"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|s| s["ok"] == false)
        .expect("the fault was seen");
    let last_fail_end = secs(&last_fail["last"]["end_s"]);
    assert!(
        last_fail_end + within > removed && last_fail_end < removed + within,
        "last failing check ended at {last_fail_end:?}, removed at {removed:?}"
    );
    // The removal is stamped when it is asked for: until the revert call has landed (an API
    // round trip on a busy machine) checks may still fail, so the bracket may start a little
    // after the stamp.
    let ttr = &probe["verdict"]["ttr"];
    let (lower, upper) = (secs(&ttr["lower_s"]), secs(&ttr["upper_s"]));
    assert!(
        lower <= upper && upper < within,
        "[{lower:?}, {upper:?}] after the removal"
    );
}

/// An HTTP server on 127.0.0.1 answering `/big` with `size` bytes.
async fn big_body_server(size: usize) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = vec![b'x'; size];
    let app = axum::Router::new().route(
        "/big",
        axum::routing::get(move || {
            let body = body.clone();
            async move { body }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn run(
    dir: &std::path::Path,
    yaml: &str,
    env: &[(&str, &std::path::Path)],
) -> (Value, String) {
    let file = dir.join("drill.yaml");
    std::fs::write(&file, yaml).unwrap();
    let reports = dir.join("reports");
    let mut cmd = firedrill_in(dir);
    cmd.args(["run", "--report-dir"]).arg(&reports).arg(&file);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    (common::only_report(&reports), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_on_the_builtin_proxy_is_detected_and_recovers_after_removal() {
    let upstream = common::net::http_ok_server().await;
    let listen = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"name: slow-web
proxy:
  web: {{ listen: "127.0.0.1:{listen}", upstream: "{upstream}" }}
probes:
  web-http:
    http: {{ url: "http://127.0.0.1:{listen}/", timeout: 1s, max-latency: 50ms }}
    every: 50ms
    every-during: 10ms
faults:
  - latency: {{ proxy: web, latency: 100ms, duration: 1s }}
recovery: {{ objective: 500ms, stable-for: 500ms, timeout: 20s }}
"#
    );
    let (record, _) = run(dir.path(), &yaml, &[]).await;
    assert_eq!(record["outcome"], "passed", "{}", record["reason"]);
    let trial = &record["trials"][0];
    let removed = secs(&trial["t_removed_s"]) - secs(&trial["t_inject_s"]);
    assert!(
        removed >= Duration::from_secs(1) && removed < Duration::from_millis(1500),
        "{removed:?}"
    );
    let probe = &trial["probes"][0];
    // The first slow answer is seen within one check of 100ms + the sampling interval.
    let ttd = secs(&probe["verdict"]["ttd_s"]);
    assert!(ttd < Duration::from_millis(300), "TTD {ttd:?}");
    // Slow until the latency was removed, fast right after: a slow check spans ~100ms.
    assert_recovered_at_removal(trial, Duration::from_millis(300));
    // Degradation is measured per phase: ~100ms while the fault held, fast before.
    let during = probe["latency"]["during"]["p50_ms"].as_f64().unwrap();
    let before = probe["latency"]["before"]["p50_ms"].as_f64().unwrap();
    assert!((100.0..150.0).contains(&during), "during p50 {during}ms");
    assert!(before < 50.0, "before p50 {before}ms");
    let fault = &trial["faults"][0];
    assert!(
        fault["reverted"]
            .as_str()
            .unwrap()
            .starts_with("removed toxic"),
        "{fault}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_through_a_toxiproxy_api_is_added_and_removed() {
    let upstream = common::net::http_ok_server().await;
    let api = common::net::toxiproxy_api("web", upstream).await;
    let (proxy_addr, api_url) = (api.listen, &api.url);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"name: slow-web-toxiproxy
probes:
  web-http:
    http: {{ url: "http://{proxy_addr}/", timeout: 1s, max-latency: 50ms }}
    every: 50ms
    every-during: 10ms
faults:
  - latency: {{ toxiproxy: {{ url: "{api_url}", proxy: web }}, latency: 80ms, duration: 700ms }}
recovery: {{ objective: 3s, stable-for: 300ms, timeout: 20s }}
"#
    );
    let (record, _) = run(dir.path(), &yaml, &[]).await;
    assert_eq!(record["outcome"], "passed", "{}", record["reason"]);
    let probe = &record["trials"][0]["probes"][0];
    assert!(
        probe["verdict"]["failed"].as_u64().unwrap() > 0,
        "the latency was seen"
    );
    assert!(
        api.server.toxics("web").unwrap().is_empty(),
        "no toxic is left behind"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_on_the_builtin_proxy_refuses_connections_until_it_is_enabled_again() {
    let upstream = common::net::http_ok_server().await;
    let listen = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"name: web-down
proxy:
  web: {{ listen: "127.0.0.1:{listen}", upstream: "{upstream}" }}
probes:
  web-http:
    http: {{ url: "http://127.0.0.1:{listen}/", timeout: 1s }}
    every: 50ms
    every-during: 10ms
faults:
  - down: {{ proxy: web, duration: 1s }}
recovery: {{ objective: 3s, stable-for: 300ms, timeout: 20s }}
"#
    );
    let (record, _) = run(dir.path(), &yaml, &[]).await;
    assert_eq!(record["outcome"], "passed", "{}", record["reason"]);
    let trial = &record["trials"][0];
    let verdict = &trial["probes"][0]["verdict"];
    // The listener is closed while the proxy is down: connections are refused, at once.
    let first = verdict["first_failure"].as_str().unwrap();
    assert!(first.contains("refused"), "{first}");
    assert!(
        secs(&verdict["ttd_s"]) < Duration::from_millis(100),
        "{verdict}"
    );
    assert_recovered_at_removal(trial, Duration::from_millis(200));
    let fault = &trial["faults"][0];
    assert_eq!(fault["revert"]["action"], "proxy-enable", "{fault}");
    let reverted = fault["reverted"].as_str().unwrap();
    assert!(reverted.starts_with("enabled proxy web"), "{reverted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_on_the_builtin_proxy_slows_transfers_to_the_asked_rate() {
    // 100 kB at 100 KB/s: one second per check while the limit holds.
    let upstream = big_body_server(100_000).await;
    let listen = free_port();
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"name: web-narrow
proxy:
  web: {{ listen: "127.0.0.1:{listen}", upstream: "{upstream}" }}
probes:
  web-http:
    http: {{ url: "http://127.0.0.1:{listen}/big", timeout: 5s, max-latency: 300ms }}
    every: 100ms
    every-during: 10ms
faults:
  - bandwidth: {{ proxy: web, rate: 100KB/s, duration: 1500ms }}
recovery: {{ objective: 3s, stable-for: 300ms, timeout: 20s }}
"#
    );
    let (record, _) = run(dir.path(), &yaml, &[]).await;
    assert_eq!(record["outcome"], "passed", "{}", record["reason"]);
    let trial = &record["trials"][0];
    let probe = &trial["probes"][0];
    let slowest = probe["latency"]["during"]["max_ms"].as_f64().unwrap();
    let before = probe["latency"]["before"]["p50_ms"].as_f64().unwrap();
    assert!(
        (900.0..1_300.0).contains(&slowest),
        "slowest check {slowest}ms"
    );
    assert!(before < 100.0, "before p50 {before}ms");
    // Removing the limit speeds up the check in flight: recovery follows the removal closely.
    assert_recovered_at_removal(trial, Duration::from_millis(400));
    let reverted = trial["faults"][0]["reverted"].as_str().unwrap();
    assert!(reverted.starts_with("removed toxic"), "{reverted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_through_a_toxiproxy_api_disables_the_proxy_and_enables_it_after() {
    let upstream = common::net::http_ok_server().await;
    let api = common::net::toxiproxy_api("web", upstream).await;
    let (proxy_addr, api_url) = (api.listen, &api.url);
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"name: web-down-toxiproxy
probes:
  web-http:
    http: {{ url: "http://{proxy_addr}/", timeout: 1s }}
    every: 50ms
    every-during: 10ms
faults:
  - down: {{ toxiproxy: {{ url: "{api_url}", proxy: web }}, duration: 700ms }}
recovery: {{ objective: 3s, stable-for: 300ms, timeout: 20s }}
"#
    );
    let (record, _) = run(dir.path(), &yaml, &[]).await;
    assert_eq!(record["outcome"], "passed", "{}", record["reason"]);
    let trial = &record["trials"][0];
    let first = trial["probes"][0]["verdict"]["first_failure"]
        .as_str()
        .unwrap();
    assert!(first.contains("refused"), "{first}");
    assert_recovered_at_removal(trial, Duration::from_millis(200));
    assert!(api.server.proxy("web").unwrap().enabled, "enabled again");

    // A proxy someone else disabled is not ours to take down (the revert would enable it):
    // refused before anything is touched, and left disabled. (The probe goes around it.)
    let off = firedrill::proxy::ProxyUpdate {
        enabled: Some(false),
        ..Default::default()
    };
    api.server.update_proxy("web", off).await.unwrap();
    let file = dir.path().join("drill.yaml");
    let direct = yaml.replace(&proxy_addr.to_string(), &upstream.to_string());
    std::fs::write(&file, direct).unwrap();
    let mut cmd = firedrill_in(dir.path());
    cmd.args(["run", "--report-dir"])
        .arg(dir.path().join("refused"))
        .arg(&file);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("already disabled"), "{stderr}");
    assert!(!api.server.proxy("web").unwrap().enabled, "left as it was");
}

async fn wait_until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let start = std::time::Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no {what} within 30s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Starts `firedrill run` on `yaml` in `dir` (reports in `dir/reports`).
fn spawn_run(
    dir: &std::path::Path,
    yaml: &str,
    env: &[(&str, &std::path::Path)],
) -> std::process::Child {
    let file = dir.join("drill.yaml");
    std::fs::write(&file, yaml).unwrap();
    let mut cmd = firedrill_in(dir);
    cmd.args(["run", "--report-dir"])
        .arg(dir.join("reports"))
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

/// Ctrl-C: the run reverts, exits 3 within 20s and records an aborted trial.
async fn interrupt(child: std::process::Child, dir: &std::path::Path) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).unwrap();
    let sent = std::time::Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        sent.elapsed() < Duration::from_secs(20),
        "{:?}",
        sent.elapsed()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let record = common::only_report(&dir.join("reports"));
    assert_eq!(record["outcome"], "aborted", "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_interrupted_drills_leave_nothing_on_toxiproxy() {
    let upstream = common::net::http_ok_server().await;
    let api = common::net::toxiproxy_api("web", upstream).await;
    let (proxy_addr, api_url) = (api.listen, &api.url);

    // Failed: the latency outlasts the recovery timeout; the toxic goes all the same.
    let failed = tempfile::tempdir().unwrap();
    let file = failed.path().join("drill.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: too-slow
probes:
  web-http:
    http: {{ url: "http://{proxy_addr}/", timeout: 1s, max-latency: 50ms }}
    every: 50ms
faults:
  - latency: {{ toxiproxy: {{ url: "{api_url}", proxy: web }}, latency: 200ms, duration: 10s }}
recovery: {{ objective: 500ms, stable-for: 200ms, timeout: 1s }}
"#
        ),
    )
    .unwrap();
    let mut cmd = firedrill_in(failed.path());
    cmd.args(["run", "--report-dir"])
        .arg(failed.path().join("reports"))
        .arg(&file);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let record = common::only_report(&failed.path().join("reports"));
    assert_eq!(record["outcome"], "failed", "{stderr}");
    assert!(api.server.toxics("web").unwrap().is_empty(), "{stderr}");

    // Interrupted while the proxy is down: enabled again before the runner exits.
    let aborted = tempfile::tempdir().unwrap();
    let child = spawn_run(
        aborted.path(),
        &format!(
            r#"name: web-down-interrupted
probes:
  web-http:
    http: {{ url: "http://{upstream}/", timeout: 1s }}
    every: 50ms
faults:
  - down: {{ toxiproxy: {{ url: "{api_url}", proxy: web }}, duration: 30s }}
recovery: {{ objective: 31s, timeout: 1m }}
"#
        ),
        &[],
    );
    wait_until("disabled proxy", async || {
        !api.server.proxy("web").unwrap().enabled
    })
    .await;
    interrupt(child, aborted.path()).await;
    assert!(api.server.proxy("web").unwrap().enabled, "enabled again");
}

/// A simulated cluster of `deployments` in namespace `shop` (`name: replicas` with label
/// `app: name`), and a folder whose firedrill.yaml names it as environment `staging`.
struct Staging {
    sim: firedrill::sim::SimHandle,
    dir: tempfile::TempDir,
}

impl Staging {
    async fn start(deployments: &[(&str, u32)]) -> Staging {
        let mut scenario = String::from("namespaces:\n  shop:\n    deployments:\n");
        for (name, replicas) in deployments {
            scenario +=
                &format!("      {name}: {{ replicas: {replicas}, labels: {{ app: {name} }} }}\n");
        }
        let sim = SimCluster::start(
            parse_scenario(&scenario).unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            1,
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("kubeconfig"), sim.kubeconfig_yaml()).unwrap();
        std::fs::write(
            dir.path().join("firedrill.yaml"),
            "environments:\n  staging:\n    kube-context: firedrill-sim\n",
        )
        .unwrap();
        Staging { sim, dir }
    }

    /// `firedrill run --env staging` of `yaml`, reports in the folder's `reports`.
    fn run_cmd(&self, yaml: &str) -> std::process::Command {
        let dir = self.dir.path();
        std::fs::write(dir.join("drill.yaml"), yaml).unwrap();
        let mut cmd = firedrill_in(dir);
        cmd.env("KUBECONFIG", dir.join("kubeconfig"))
            .args(["run", "--env", "staging", "--report-dir"])
            .arg(dir.join("reports"))
            .arg(dir.join("drill.yaml"));
        cmd
    }

    async fn output(&self, yaml: &str) -> std::process::Output {
        let mut cmd = self.run_cmd(yaml);
        tokio::task::spawn_blocking(move || cmd.output().unwrap())
            .await
            .unwrap()
    }

    /// Successful NetworkChaos calls of `method` the simulator answered.
    fn chaos_calls(&self, method: &str) -> usize {
        self.sim
            .request_log()
            .iter()
            .filter(|r| r.method == method && r.path.contains("/networkchaos"))
            .filter(|r| (200..300).contains(&r.status))
            .count()
    }

    /// NetworkChaos objects in `shop` now.
    async fn network_chaos(&self) -> usize {
        let client = self.sim.kube_client().await.unwrap();
        let api: kube::Api<kube::api::DynamicObject> =
            kube::Api::namespaced_with(client, "shop", &firedrill::fault::network::network_chaos());
        api.list(&Default::default()).await.unwrap().items.len()
    }
}

/// A drill of `staging` whose only probe is the checkout deployment's readiness.
fn mesh_drill(name: &str, faults: &str) -> String {
    format!(
        r#"name: {name}
environments: [staging]
probes:
  checkout-ready:
    kubernetes: {{ deployment: shop/checkout, ready: all }}
    every: 100ms
faults:
{faults}
recovery: {{ objective: 31s, stable-for: 300ms, timeout: 1m }}
"#
    )
}

const MESH: &str = "chaos-mesh: { namespace: shop, selector: app=checkout }";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_mesh_network_chaos_is_created_scoped_and_deleted() {
    let s = Staging::start(&[("checkout", 2)]).await;
    let faults = format!(
        "  - latency: {{ {MESH}, latency: 100ms, jitter: 10ms, correlation: 25, duration: 500ms }}"
    );
    let out = s.output(&mesh_drill("mesh-delay", &faults)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.chaos_calls("POST"), 1, "one NetworkChaos was created");
    assert_eq!(s.chaos_calls("DELETE"), 1, "and deleted on revert");
    assert_eq!(s.network_chaos().await, 0, "nothing left behind");
    let record = common::only_report(&s.dir.path().join("reports"));
    let detail = record["trials"][0]["faults"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("ends by itself"), "{detail}");
    s.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chaos_mesh_kind_is_created_on_the_resolved_pods_and_deleted() {
    let s = Staging::start(&[("checkout", 2), ("db", 1)]).await;
    let faults = format!(
        "  - loss: {{ {MESH}, loss: 30%, correlation: 25, duration: 600ms }}
  - down: {{ {MESH}, duration: 600ms }}
  - partition: {{ {MESH}, peers: app=db, duration: 600ms }}
  - bandwidth: {{ {MESH}, rate: 1MB/s, duration: 600ms }}"
    );
    let out = s.output(&mesh_drill("mesh-everything", &faults)).await;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.chaos_calls("POST"), 4, "one NetworkChaos per fault");
    assert_eq!(s.chaos_calls("DELETE"), 4, "each deleted on revert");
    assert_eq!(s.network_chaos().await, 0, "nothing left behind");
    // Each fault names the pods it was scoped to: the two checkout pods, not the db.
    let record = common::only_report(&s.dir.path().join("reports"));
    for f in record["trials"][0]["faults"].as_array().unwrap() {
        let affected: Vec<&str> = f["affected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(affected.len(), 2, "{f}");
        assert!(affected.iter().all(|p| p.starts_with("checkout-")), "{f}");
    }
    s.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chaos_mesh_selector_that_matches_no_pod_is_refused_before_anything_is_created() {
    let s = Staging::start(&[("checkout", 1)]).await;
    let faults = "  - latency: { chaos-mesh: { namespace: shop, selector: app=chekout }, latency: 100ms, duration: 1s }";
    let out = s.output(&mesh_drill("mesh-nobody", faults)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("matches no running pods"), "{stderr}");
    assert_eq!(s.chaos_calls("POST"), 0, "nothing was created");
    s.sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_chaos_mesh_drill_deletes_its_network_chaos() {
    let s = Staging::start(&[("checkout", 2)]).await;
    let faults = format!("  - loss: {{ {MESH}, loss: 50%, duration: 30s }}");
    let child = s
        .run_cmd(&mesh_drill("mesh-interrupted", &faults))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_until("NetworkChaos", async || s.network_chaos().await == 1).await;
    interrupt(child, s.dir.path()).await;
    assert_eq!(
        s.network_chaos().await,
        0,
        "deleted before the runner exited"
    );
    s.sim.shutdown().await;
}

/// The README's zero-setup network example: the simulated cluster, the drill's own proxy in
/// front of its checkout service (`${sim.shop.checkout.addr}`), 150ms of latency for 5s. The
/// example's fixed listen port is swapped for a free one; nothing else changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_latency_example_runs_on_the_simulated_cluster_with_nothing_set_up() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sim")).unwrap();
    std::fs::copy(root.join("sim/shop.yaml"), dir.path().join("sim/shop.yaml")).unwrap();
    let example = std::fs::read_to_string(root.join("latency-sim.yaml")).unwrap();
    assert_eq!(example.matches("127.0.0.1:18080").count(), 2, "{example}");
    let yaml = example.replace("127.0.0.1:18080", &format!("127.0.0.1:{}", free_port()));
    let (record, _) = run(dir.path(), &yaml, &[]).await;
    assert_eq!(record["outcome"], "passed", "{}", record["reason"]);
    let trial = &record["trials"][0];
    let probe = &trial["probes"][0];
    // Every response through the proxy was ~150ms late while the fault held, and fast around it.
    let during = probe["latency"]["during"]["p50_ms"].as_f64().unwrap();
    assert!((140.0..250.0).contains(&during), "during p50 {during}ms");
    let before = probe["latency"]["before"]["p50_ms"].as_f64().unwrap();
    assert!(before < 100.0, "before p50 {before}ms");
    let ttd = secs(&probe["verdict"]["ttd_s"]);
    assert!(ttd < Duration::from_millis(400), "TTD {ttd:?}");
    let held = secs(&trial["t_removed_s"]) - secs(&trial["t_inject_s"]);
    assert!(
        held >= Duration::from_secs(5) && held < Duration::from_secs(6),
        "{held:?}"
    );
    assert_recovered_at_removal(trial, Duration::from_millis(400));
}
