//! Latency drills through the binary on each backend: the built-in proxy a drill starts
//! itself, a Toxiproxy-compatible API, and Chaos Mesh NetworkChaos objects in the simulated
//! cluster. Degradation is measured (TTD to the first breach of max-latency, recovery after the
//! fault is removed) and nothing is left behind.

mod common;

use std::time::Duration;

use common::{firedrill, secs};
use firedrill::sim::{parse_scenario, SimCluster};
use serde_json::Value;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn run(
    dir: &std::path::Path,
    yaml: &str,
    env: &[(&str, &std::path::Path)],
) -> (Value, String) {
    let file = dir.join("drill.yaml");
    std::fs::write(&file, yaml).unwrap();
    let reports = dir.join("reports");
    let mut cmd = firedrill();
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
recovery: {{ objective: 3s, stable-for: 500ms, timeout: 20s }}
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
    // The probe recovered when the latency was removed: that instant lies inside the reported
    // bracket (a slow check spans ~100ms, so the bracket starts before the removal), and the
    // first fast answer follows promptly.
    let ttr = &probe["verdict"]["ttr"];
    let (lower, upper) = (secs(&ttr["lower_s"]), secs(&ttr["upper_s"]));
    assert!(
        lower <= removed && removed <= upper,
        "removed {removed:?} outside [{lower:?}, {upper:?}]"
    );
    assert!(
        upper < removed + Duration::from_millis(300),
        "upper {upper:?}"
    );
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
async fn chaos_mesh_network_chaos_is_created_scoped_and_deleted() {
    let scenario = parse_scenario(
        "namespaces:\n  shop:\n    deployments:\n      checkout: { replicas: 2, labels: { app: checkout } }\n",
    )
    .unwrap();
    let sim = SimCluster::start(scenario, "127.0.0.1:0".parse().unwrap(), 1)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig_yaml()).unwrap();
    std::fs::write(
        dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    kube-context: firedrill-sim\n",
    )
    .unwrap();
    let yaml = r#"name: mesh-delay
environments: [staging]
probes:
  checkout-ready:
    kubernetes: { deployment: shop/checkout, ready: all }
    every: 100ms
faults:
  - latency: { chaos-mesh: { namespace: shop, selector: app=checkout }, latency: 100ms, jitter: 10ms, correlation: 25, duration: 500ms }
recovery: { objective: 3s, stable-for: 300ms, timeout: 20s }
"#;
    let file = dir.path().join("drill.yaml");
    std::fs::write(&file, yaml).unwrap();
    let reports = dir.path().join("reports");
    let mut cmd = firedrill();
    cmd.env("KUBECONFIG", &kubeconfig)
        .args(["run", "--env", "staging", "--report-dir"])
        .arg(&reports)
        .arg(&file);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = sim.request_log();
    let created: Vec<_> = log
        .iter()
        .filter(|r| r.method == "POST" && r.path.contains("/networkchaos"))
        .collect();
    assert_eq!(created.len(), 1, "one NetworkChaos was created");
    assert_eq!(created[0].status, 201);
    let deleted = log
        .iter()
        .filter(|r| r.method == "DELETE" && r.path.contains("/networkchaos/"))
        .count();
    assert_eq!(deleted, 1, "and deleted on revert");
    let client = sim.kube_client().await.unwrap();
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(client, "shop", &firedrill::fault::latency::network_chaos());
    assert!(
        api.list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing left behind"
    );
    let record = common::only_report(&reports);
    let detail = record["trials"][0]["faults"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("ends by itself"), "{detail}");
    sim.shutdown().await;
}
