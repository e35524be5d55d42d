//! The simulated cluster driven the way users and the drill executor drive it: kube-rs (client
//! and runtime watcher), the real kubectl, and plain HTTP against the traffic endpoints.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use firedrill::sim::{load_scenario, parse_scenario, SimCluster, SimError, SimHandle, TruthKind};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher;
use tokio::time::Instant;

/// Timing assertions take this shared; the 10,000-pod test takes it exclusively, so that its
/// burst of work on a small shared machine cannot make a timing test late.
static TIMING: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn local() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// Waits until `check` yields a value, polling; fails the test after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn start(yaml: &str) -> (SimHandle, kube::Client) {
    let scenario = parse_scenario(yaml).expect("scenario");
    let sim = SimCluster::start(scenario, local(), 7)
        .await
        .expect("start");
    let client = sim.kube_client().await.expect("client");
    (sim, client)
}

async fn ready_pods(api: &Api<Pod>, selector: &str, n: usize) -> Vec<Pod> {
    wait_for(
        &format!("{n} ready pods {selector}"),
        Duration::from_secs(30),
        || async {
            let pods = api
                .list(&ListParams::default().labels(selector))
                .await
                .ok()?;
            let ready: Vec<Pod> = pods.items.into_iter().filter(pod_ready).collect();
            (ready.len() == n).then_some(ready)
        },
    )
    .await
}

const TIMED: &str = r#"
kubelet: { schedule-delay: 30ms, start-delay: 150ms, ready-delay: 250ms }
endpoints: { propagation-delay: 100ms }
namespaces:
  shop:
    deployments:
      checkout: { replicas: 3, labels: { app: checkout }, http: true }
      cart: { replicas: 1, kubelet: { ready-delay: 600ms } }
    statefulsets:
      db: { replicas: 2, labels: { app: db } }
"#;

fn gap(
    truth: &[firedrill::sim::TruthEvent],
    pod: &str,
    from: TruthKind,
    to: TruthKind,
) -> Duration {
    let at = |k| {
        truth
            .iter()
            .find(|e| e.object == pod && e.what == k)
            .unwrap_or_else(|| panic!("no {k:?} for {pod}"))
            .mono
    };
    at(to) - at(from)
}

fn assert_near(what: &str, got: Duration, want: Duration) {
    // Never early; late by scheduling noise only (generous: the machine is shared).
    assert!(
        got + Duration::from_millis(2) >= want && got <= want + Duration::from_millis(400),
        "{what}: {got:?}, scenario says {want:?}"
    );
}

#[tokio::test]
async fn kube_rs_list_delete_and_watch_replacement() {
    let _timing = TIMING.read().await;
    let (sim, client) = start(TIMED).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let before = ready_pods(&pods, "app=checkout", 3).await;
    for p in &before {
        let name = p.metadata.name.clone().unwrap_or_default();
        assert!(name.starts_with("checkout-"), "{name}");
        assert_eq!(name.len(), "checkout-".len() + 10 + 1 + 5, "{name}");
    }
    // Set-based selectors and field selectors answer too.
    let db = pods
        .list(&ListParams::default().labels("app in (db),!missing"))
        .await
        .unwrap();
    let mut db_names: Vec<_> = db
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    db_names.sort();
    assert_eq!(db_names, ["db-0", "db-1"]);
    let one = pods
        .list(&ListParams::default().fields("metadata.name=db-1"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);
    // Pages of 2 (kube-rs's watcher lists 500 at a time, kubectl 500): every pod once.
    let all = pods.list(&ListParams::default()).await.unwrap();
    let mut paged = Vec::new();
    let mut params = ListParams::default().limit(2);
    loop {
        let page = pods.list(&params).await.unwrap();
        assert!(page.items.len() <= 2);
        paged.extend(page.items.iter().filter_map(|p| p.metadata.name.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(next) => params = params.continue_token(&next),
            None => break,
        }
    }
    let mut names: Vec<_> = all
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();
    assert!(names.len() >= 6, "{names:?}");
    assert_eq!(paged, names, "pages in name order, each pod once");

    let mut events = watcher(
        pods.clone(),
        watcher::Config::default().labels("app=checkout"),
    )
    .boxed();
    // Let the watcher finish its initial list before the deletion.
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(watcher::Event::InitDone))) => break,
            Ok(Some(Ok(_))) => {}
            other => panic!("watcher did not start: {other:?}"),
        }
    }
    let victim = before[0].metadata.name.clone().unwrap();
    pods.delete(&victim, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();

    let old: BTreeSet<String> = before
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let (mut saw_delete, mut replacement) = (false, None);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(saw_delete && replacement.is_some()) {
        let ev = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("watcher saw deletion and ready replacement")
            .expect("stream open")
            .expect("watch event");
        match ev {
            watcher::Event::Delete(p) if p.metadata.name.as_deref() == Some(victim.as_str()) => {
                saw_delete = true
            }
            watcher::Event::Apply(p) => {
                let name = p.metadata.name.clone().unwrap_or_default();
                if !old.contains(&name) && pod_ready(&p) {
                    replacement = Some(name);
                }
            }
            _ => {}
        }
    }
    let replacement = replacement.unwrap();

    // The ground truth of the replacement matches the scenario's delays.
    let truth = sim.truth();
    assert!(truth
        .iter()
        .any(|e| e.object == victim && e.what == TruthKind::PodDeleted));
    assert_near(
        "schedule",
        gap(
            &truth,
            &replacement,
            TruthKind::PodCreated,
            TruthKind::PodScheduled,
        ),
        Duration::from_millis(30),
    );
    assert_near(
        "start",
        gap(
            &truth,
            &replacement,
            TruthKind::PodScheduled,
            TruthKind::PodRunning,
        ),
        Duration::from_millis(150),
    );
    assert_near(
        "ready",
        gap(
            &truth,
            &replacement,
            TruthKind::PodRunning,
            TruthKind::PodReady,
        ),
        Duration::from_millis(250),
    );
    // The replacement was created promptly after the deletion.
    let deleted = truth
        .iter()
        .find(|e| e.object == victim && e.what == TruthKind::PodDeleted)
        .unwrap()
        .mono;
    let created = truth
        .iter()
        .find(|e| e.object == replacement && e.what == TruthKind::PodCreated)
        .unwrap()
        .mono;
    assert!(created >= deleted && created - deleted < Duration::from_millis(500));
    // A per-workload override applies to that workload only.
    let cart = ready_pods(&pods, "app=cart", 1).await;
    let cart = cart[0].metadata.name.clone().unwrap();
    assert_near(
        "cart ready",
        gap(
            &sim.truth(),
            &cart,
            TruthKind::PodRunning,
            TruthKind::PodReady,
        ),
        Duration::from_millis(600),
    );

    // Workload status caught up, and the deployment went degraded and ready again.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    wait_for("deployment status", Duration::from_secs(10), || async {
        let d = deploys.get("checkout").await.ok()?;
        let s = d.status?;
        (s.ready_replicas == Some(3)
            && s.available_replicas == Some(3)
            && s.observed_generation == Some(1))
        .then_some(())
    })
    .await;
    let kinds: Vec<_> = sim
        .truth()
        .iter()
        .filter(|e| e.object == "checkout")
        .map(|e| e.what)
        .collect();
    assert_eq!(
        kinds,
        [
            TruthKind::WorkloadReady,
            TruthKind::WorkloadDegraded,
            TruthKind::WorkloadReady
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn statefulset_pod_comes_back_with_its_name() {
    let (sim, client) = start(TIMED).await;
    let pods: Api<Pod> = Api::namespaced(client, "shop");
    let before = ready_pods(&pods, "app=db", 2).await;
    let uid = before
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("db-1"))
        .and_then(|p| p.metadata.uid.clone());
    // Default grace: the pod terminates first, then db-1 comes back as a new pod.
    pods.delete("db-1", &DeleteParams::default()).await.unwrap();
    let p = pods.get("db-1").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    wait_for(
        "db-1 replaced and ready",
        Duration::from_secs(20),
        || async {
            let p = pods.get("db-1").await.ok()?;
            (p.metadata.uid != uid && pod_ready(&p)).then_some(())
        },
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn api_errors_are_shaped_like_the_real_api() {
    let (sim, client) = start(TIMED).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let err = |e: kube::Error| match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("not an API error: {other}"),
    };
    assert_eq!(
        err(pods.get("nope").await.unwrap_err()),
        (404, "NotFound".to_string())
    );

    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "manual", "labels": {"app": "manual"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}
    }))
    .unwrap();
    let created = pods.create(&PostParams::default(), &pod).await.unwrap();
    assert_eq!(
        err(pods.create(&PostParams::default(), &pod).await.unwrap_err()),
        (409, "AlreadyExists".to_string())
    );
    // A stale resourceVersion conflicts.
    let mut stale = created.clone();
    wait_for(
        "kubelet touched the pod",
        Duration::from_secs(10),
        || async {
            let p = pods.get("manual").await.ok()?;
            (p.metadata.resource_version != created.metadata.resource_version).then_some(())
        },
    )
    .await;
    stale.metadata.labels = Some([("app".to_string(), "changed".to_string())].into());
    assert_eq!(
        err(pods
            .replace("manual", &PostParams::default(), &stale)
            .await
            .unwrap_err()),
        (409, "Conflict".to_string())
    );
    // Invalid objects.
    let bad: Pod = serde_json::from_value(serde_json::json!({"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "c"}]}})).unwrap();
    assert_eq!(
        err(pods.create(&PostParams::default(), &bad).await.unwrap_err()),
        (422, "Invalid".to_string())
    );
    let empty: Pod = serde_json::from_value(
        serde_json::json!({"metadata": {"name": "empty"}, "spec": {"containers": []}}),
    )
    .unwrap();
    assert_eq!(
        err(pods
            .create(&PostParams::default(), &empty)
            .await
            .unwrap_err()),
        (422, "Invalid".to_string())
    );
    // generateName.
    let generated: Pod = serde_json::from_value(serde_json::json!({"metadata": {"generateName": "gen-"}, "spec": {"containers": [{"name": "c"}]}})).unwrap();
    let g = pods
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    assert!(g.metadata.name.unwrap().starts_with("gen-"));
    // Unknown namespace.
    let other: Api<Pod> = Api::namespaced(client.clone(), "nowhere");
    assert_eq!(
        err(other
            .create(&PostParams::default(), &pod)
            .await
            .unwrap_err()),
        (404, "NotFound".to_string())
    );

    // Leases, as a scheduler lock would use them: the loser of a race gets a 409.
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "shop");
    let lease: Lease = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "drill-lock"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 30}
    }))
    .unwrap();
    let held = leases.create(&PostParams::default(), &lease).await.unwrap();
    assert_eq!(
        err(leases
            .create(&PostParams::default(), &lease)
            .await
            .unwrap_err())
        .0,
        409
    );
    let mut mine = held.clone();
    mine.spec.as_mut().unwrap().holder_identity = Some("b".into());
    leases
        .replace("drill-lock", &PostParams::default(), &mine)
        .await
        .unwrap();
    let mut theirs = held;
    theirs.spec.as_mut().unwrap().holder_identity = Some("c".into());
    assert_eq!(
        err(leases
            .replace("drill-lock", &PostParams::default(), &theirs)
            .await
            .unwrap_err()),
        (409, "Conflict".to_string())
    );
    assert_eq!(
        leases
            .get("drill-lock")
            .await
            .unwrap()
            .spec
            .unwrap()
            .holder_identity
            .as_deref(),
        Some("b")
    );

    // Custom resources are stored as opaque JSON and show up in discovery.
    let http = reqwest::Client::new();
    let base = sim.api_url();
    let url = format!("{base}/apis/chaos-mesh.org/v1alpha1/namespaces/shop/networkchaos");
    let r = http
        .post(&url)
        .json(
            &serde_json::json!({"apiVersion": "chaos-mesh.org/v1alpha1", "kind": "NetworkChaos",
            "metadata": {"name": "delay"}, "spec": {"action": "delay"}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got: serde_json::Value = http
        .get(format!("{url}/delay"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got["spec"]["action"], "delay");
    let r = http
        .patch(format!("{url}/delay"))
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"spec":{"duration":"30s"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let groups: serde_json::Value = http
        .get(format!("{base}/apis"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "chaos-mesh.org"));
    let status: serde_json::Value = http
        .get(format!("{url}/missing"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "NotFound");
    assert_eq!(status["code"], 404);
    let r = http.delete(format!("{url}/delay")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Every request was logged, and mutations can be counted.
    let log = sim.request_log();
    assert!(log.iter().filter(|r| r.is_mutating()).count() >= 8);
    assert!(log.iter().any(|r| r.method == "DELETE"
        && r.path.ends_with("/networkchaos/delay")
        && r.status == 200));
    sim.shutdown().await;
}

#[tokio::test]
async fn watch_resumes_from_resource_version_and_filters_by_selector() {
    let (sim, client) = start(TIMED).await;
    let pods: Api<Pod> = Api::namespaced(client, "shop");
    ready_pods(&pods, "app=checkout", 3).await;
    let http = reqwest::Client::new();
    let base = format!("{}/api/v1/namespaces/shop/pods", sim.api_url());
    let list: serde_json::Value = http.get(&base).send().await.unwrap().json().await.unwrap();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    pods.delete("db-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let mut resp = http
        .get(format!(
            "{base}?watch=1&resourceVersion={rv}&labelSelector=app%3Ddb&timeoutSeconds=5"
        ))
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("\"DELETED\"") || !text.contains("\"ADDED\"") {
        match tokio::time::timeout(Duration::from_secs(5), resp.chunk()).await {
            Ok(Ok(Some(c))) => text.push_str(&String::from_utf8_lossy(&c)),
            other => panic!("watch ended early: {other:?}; got {text}"),
        }
    }
    for line in text.lines() {
        let ev: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(ev["object"]["metadata"]["labels"]["app"], "db", "{line}");
    }
    sim.shutdown().await;
}

async fn hit(http: &reqwest::Client, url: &str, n: usize) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    for _ in 0..n {
        match http.get(url).send().await {
            Ok(r) if r.status() == 200 => ok += 1,
            Ok(r) => {
                assert_eq!(r.status(), 503);
                failed += 1
            }
            Err(e) => panic!("traffic endpoint unreachable: {e}"),
        }
    }
    (ok, failed)
}

#[tokio::test]
async fn traffic_sees_partial_and_full_outages() {
    let _timing = TIMING.read().await;
    let (sim, client) = start(
        r#"
kubelet: { schedule-delay: 10ms, start-delay: 50ms, ready-delay: 300ms }
endpoints: { propagation-delay: 700ms }
namespaces:
  shop:
    deployments:
      checkout: { replicas: 3, labels: { app: checkout }, http: true }
"#,
    )
    .await;
    let url = sim.traffic_url("shop", "checkout").expect("traffic url");
    assert!(url.starts_with("http://127.0.0.1:"));
    assert_eq!(
        sim.traffic_urls(),
        vec![("shop".into(), "checkout".into(), url.clone())]
    );
    assert!(sim.traffic_url("shop", "nope").is_none());
    let pods: Api<Pod> = Api::namespaced(client, "shop");
    let http = reqwest::Client::new();
    ready_pods(&pods, "app=checkout", 3).await;
    wait_for("all traffic served", Duration::from_secs(10), || async {
        (hit(&http, &url, 6).await == (6, 0)).then_some(())
    })
    .await;

    // Kill 1 of 3: a partial outage until propagation drops it, then all succeed.
    let pod = pods
        .list(&ListParams::default().labels("app=checkout"))
        .await
        .unwrap()
        .items[0]
        .clone();
    let name = pod.metadata.name.unwrap();
    pods.delete(&name, &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let (ok, failed) = hit(&http, &url, 6).await;
    assert!(
        failed >= 1 && ok >= 1,
        "expected a partial outage, got {ok} ok {failed} failed"
    );
    wait_for(
        "recovery from the partial outage",
        Duration::from_secs(10),
        || async { (hit(&http, &url, 6).await.1 == 0).then_some(()) },
    )
    .await;
    let removed = sim
        .truth()
        .iter()
        .find(|e| e.object == name && e.what == TruthKind::EndpointRemoved)
        .map(|e| e.mono)
        .expect("endpoint removed");
    let deleted = sim
        .truth()
        .iter()
        .find(|e| e.object == name && e.what == TruthKind::PodDeleted)
        .unwrap()
        .mono;
    assert!(
        removed - deleted >= Duration::from_millis(690),
        "propagation was {:?}",
        removed - deleted
    );

    // Kill all: every request fails until replacements are ready and published.
    ready_pods(&pods, "app=checkout", 3).await;
    wait_for("all traffic served", Duration::from_secs(10), || async {
        (hit(&http, &url, 6).await == (6, 0)).then_some(())
    })
    .await;
    let killed_at = Instant::now();
    for p in pods
        .list(&ListParams::default().labels("app=checkout"))
        .await
        .unwrap()
        .items
    {
        pods.delete(
            &p.metadata.name.unwrap(),
            &DeleteParams::default().grace_period(0),
        )
        .await
        .unwrap();
    }
    let first_ok = wait_for(
        "recovery from the full outage",
        Duration::from_secs(15),
        || async {
            let (ok, _) = hit(&http, &url, 1).await;
            (ok > 0).then(Instant::now)
        },
    )
    .await;
    // Replacements need 10+50+300ms to be ready and 700ms to be published.
    assert!(
        first_ok - killed_at >= Duration::from_millis(1000),
        "recovered after {:?}",
        first_ok - killed_at
    );
    let first_ready = sim
        .truth()
        .iter()
        .filter(|e| e.what == TruthKind::PodReady && e.mono > killed_at)
        .map(|e| e.mono)
        .min()
        .expect("a replacement became ready");
    // ...and only once the first ready replacement has been published.
    assert!(
        first_ok >= first_ready + Duration::from_millis(690),
        "served {:?} after the first replacement was ready",
        first_ok.saturating_duration_since(first_ready)
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn bad_scenarios_and_addresses_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(
        &path,
        "namespaces:\n  shop:\n    deployments:\n      web: { replicas: 2, htp: true }\n",
    )
    .unwrap();
    let e = load_scenario(&path).unwrap_err().to_string();
    assert!(
        e.contains("bad.yaml") && e.contains("unknown key `htp`"),
        "{e}"
    );
    let e = load_scenario(&dir.path().join("missing.yaml"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.yaml"), "{e}");
    let scenario = parse_scenario("{}").unwrap();
    let e = SimCluster::start(scenario, SocketAddr::from(([0, 0, 0, 0], 0)), 1)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, SimError::NotLoopback(_)), "{e}");
}

#[tokio::test]
async fn ten_thousand_pods_are_all_listed() {
    let _exclusive = TIMING.write().await;
    let mut yaml = String::from("kubelet: { schedule-delay: 5ms, start-delay: 5ms, ready-delay: 5ms }\nnamespaces:\n  big:\n    deployments:\n");
    for i in 0..20 {
        yaml.push_str(&format!("      w{i}: {{ replicas: 500 }}\n"));
    }
    let started = Instant::now();
    let (sim, client) = start(&yaml).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "big");
    wait_for("10,000 pods created", Duration::from_secs(240), || async {
        let n = sim
            .truth()
            .iter()
            .filter(|e| e.what == TruthKind::PodCreated)
            .count();
        (n == 10_000).then_some(())
    })
    .await;
    // Printed for information only: a timing claim is a benchmark, not a test.
    eprintln!("10,000 pods created in {:?}", started.elapsed());
    let all = wait_for("10,000 ready pods", Duration::from_secs(240), || async {
        let list = pods.list(&ListParams::default()).await.ok()?;
        (list.items.len() == 10_000 && list.items.iter().all(pod_ready)).then_some(list)
    })
    .await;
    eprintln!("10,000 pods ready and listed in {:?}", started.elapsed());
    let t = Instant::now();
    pods.list(&ListParams::default()).await.unwrap();
    eprintln!("one list of 10,000 pods took {:?} (kube-rs)", t.elapsed());
    let t = Instant::now();
    let raw = reqwest::get(format!("{}/api/v1/namespaces/big/pods", sim.api_url()))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    eprintln!("raw list: {} bytes in {:?}", raw.len(), t.elapsed());
    let names: BTreeSet<_> = all
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert_eq!(names.len(), 10_000);
    let w7 = pods
        .list(&ListParams::default().labels("app=w7"))
        .await
        .unwrap();
    assert_eq!(w7.items.len(), 500);
    let deploys: Api<Deployment> = Api::namespaced(client, "big");
    wait_for("all deployments ready", Duration::from_secs(60), || async {
        let ds = deploys.list(&ListParams::default()).await.ok()?;
        ds.items
            .iter()
            .all(|d| d.status.as_ref().and_then(|s| s.ready_replicas) == Some(500))
            .then_some(())
    })
    .await;
    sim.shutdown().await;
}

/// The kubectl on PATH, or None when the test may be skipped (not in CI).
fn kubectl() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "kubectl is not on PATH but CI is set: install it (Debian package `kubectl` or `kubernetes-client`)");
        eprintln!("SKIPPED kubectl_works_against_the_simulated_cluster: kubectl is not on PATH (set CI=true to make this a failure)");
    }
    found
}

#[tokio::test]
async fn kubectl_works_against_the_simulated_cluster() {
    let Some(kubectl) = kubectl() else { return };
    let (sim, _client) = start(TIMED).await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, sim.kubeconfig_yaml()).unwrap();
    let cmd = |args: &[&str]| {
        let mut c = tokio::process::Command::new(&kubectl);
        c.args([
            "--cache-dir",
            &dir.path().join("cache").to_string_lossy(),
            "-n",
            "shop",
        ])
        .args(args)
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", dir.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
        c
    };
    let run = |args: Vec<String>| {
        let mut c = cmd(&args.iter().map(String::as_str).collect::<Vec<_>>());
        async move {
            let out = tokio::time::timeout(Duration::from_secs(60), c.output())
                .await
                .expect("kubectl finished")
                .expect("kubectl ran");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "kubectl {args:?} failed: {}\n{stdout}",
                String::from_utf8_lossy(&out.stderr)
            );
            eprintln!("$ kubectl {}\n{stdout}", args.join(" "));
            stdout
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let client = sim.kube_client().await.unwrap();
    let pods: Api<Pod> = Api::namespaced(client, "shop");
    let before = ready_pods(&pods, "app=checkout", 3).await;

    let out = run(args(&["get", "pods", "-l", "app=checkout"])).await;
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0]
            .split_whitespace()
            .eq(["NAME", "READY", "STATUS", "RESTARTS", "AGE"]),
        "{out}"
    );
    assert_eq!(lines.len(), 4, "{out}");
    for l in &lines[1..] {
        let cols: Vec<&str> = l.split_whitespace().collect();
        assert!(
            cols[0].starts_with("checkout-") && cols[1] == "1/1" && cols[2] == "Running",
            "{out}"
        );
    }
    // kubectl follows `continue` from page to page (here one pod a page).
    let chunked = run(args(&[
        "get",
        "pods",
        "-l",
        "app=checkout",
        "--chunk-size=1",
    ]))
    .await;
    assert_eq!(chunked.lines().count(), 4, "{chunked}");
    let continued = sim
        .request_log()
        .iter()
        .filter(|r| r.path.ends_with("/pods") && r.query.contains("continue="))
        .count();
    assert_eq!(
        continued, 2,
        "three pages of one pod: two continued requests"
    );
    let out = run(args(&["get", "deploy"])).await;
    assert!(
        out.lines().next().unwrap().split_whitespace().eq([
            "NAME",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "AGE"
        ]),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l
            .split_whitespace()
            .take(4)
            .eq(["checkout", "3/3", "3", "3"])),
        "{out}"
    );
    let out = run(args(&["get", "po", "-o", "name"])).await;
    assert!(out.lines().any(|l| l == "pod/db-0"), "{out}");
    let out = run(args(&[
        "get",
        "pod",
        "db-0",
        "-o",
        "jsonpath={.spec.nodeName} {.status.podIP}",
    ]))
    .await;
    assert!(out.starts_with("sim-node-1 127."), "{out}");
    let out = run(args(&["get", "all"])).await;
    assert!(
        out.contains("deployment.apps/checkout")
            && out.contains("statefulset.apps/db")
            && out.contains("pod/db-1"),
        "{out}"
    );
    let out = run(args(&["get", "pods", "-A", "-o", "wide"])).await;
    assert!(
        out.lines().next().unwrap().starts_with("NAMESPACE"),
        "{out}"
    );
    assert!(out.contains("sim-node-1"), "{out}");
    let out = run(args(&["describe", "pod", "db-0"])).await;
    assert!(out.contains("Node:") && out.contains("sim-node-1"), "{out}");
    let out = run(args(&["logs", "db-0"])).await;
    assert!(out.contains("simulated container"), "{out}");
    let out = run(args(&["scale", "deploy", "cart", "--replicas=2"])).await;
    assert!(out.contains("deployment.apps/cart scaled"), "{out}");
    ready_pods(&pods, "app=cart", 2).await;
    let out = run(args(&[
        "wait",
        "--for=condition=Ready",
        "pod",
        "-l",
        "app=cart",
        "--timeout=30s",
    ]))
    .await;
    assert_eq!(out.lines().count(), 2, "{out}");
    let manifest = dir.path().join("cm.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: calm\n",
    )
    .unwrap();
    // kubectl validates as it does against a real cluster: OpenAPI v3, strict field validation.
    let out = run(args(&["apply", "-f", &manifest.to_string_lossy()])).await;
    assert!(out.contains("configmap/settings created"), "{out}");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: chaos\n",
    )
    .unwrap();
    let out = run(args(&["apply", "-f", &manifest.to_string_lossy()])).await;
    assert!(out.contains("configmap/settings configured"), "{out}");
    // A misspelt field is refused by the server, naming it, and nothing is created.
    let typo = dir.path().join("typo.yaml");
    std::fs::write(
        &typo,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: typo\nspec:\n  replcas: 2\n  selector: { matchLabels: { app: typo } }\n  template:\n    metadata: { labels: { app: typo } }\n    spec: { containers: [ { name: c, image: nginx } ] }\n",
    )
    .unwrap();
    let refused = cmd(&["apply", "-f", &typo.to_string_lossy()])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("strict decoding error: unknown field \"spec.replcas\""),
        "{stderr}"
    );
    let fixed = std::fs::read_to_string(&typo)
        .unwrap()
        .replace("replcas", "replicas");
    std::fs::write(&typo, fixed).unwrap();
    let out = run(args(&["apply", "-f", &typo.to_string_lossy()])).await;
    assert!(out.contains("deployment.apps/typo created"), "{out}");
    let out = run(args(&[
        "get",
        "cm",
        "settings",
        "-o",
        "jsonpath={.data.mode}",
    ]))
    .await;
    assert_eq!(out, "chaos");

    // Watch, delete, and read the watch until the replacement is running.
    let mut watch = cmd(&["get", "pods", "-l", "app=checkout", "--watch"]);
    let mut watch = watch
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let mut seen = Vec::new();
    // Delete only once the watch has printed its initial list, so the deletion is seen live.
    tokio::time::timeout(Duration::from_secs(30), async {
        while seen.len() < 4 {
            match lines.next_line().await {
                Ok(Some(line)) => seen.push(line),
                other => panic!("kubectl --watch ended early: {other:?} {seen:#?}"),
            }
        }
    })
    .await
    .expect("kubectl --watch printed the current pods");
    let victim = before[0].metadata.name.clone().unwrap();
    let out = run(args(&["delete", "pod", &victim])).await;
    assert!(out.contains(&format!("pod \"{victim}\" deleted")), "{out}");
    let old: BTreeSet<String> = before
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let replacement = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line.clone());
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() >= 3
                && !old.contains(cols[0])
                && cols[0] != "NAME"
                && cols[1] == "1/1"
                && cols[2] == "Running"
            {
                return Some(cols[0].to_string());
            }
        }
        None
    })
    .await;
    let _ = watch.kill().await;
    let replacement = replacement
        .unwrap_or_else(|_| panic!("kubectl --watch never showed a replacement: {seen:#?}"));
    assert!(replacement.is_some(), "kubectl --watch ended: {seen:#?}");
    eprintln!("$ kubectl get pods --watch\n{}", seen.join("\n"));
    assert!(
        seen.iter()
            .any(|l| l.starts_with(victim.as_str()) && l.contains("Terminating")),
        "{seen:#?}"
    );
    // A rollout replaces every pod and reports success once the new ones are available.
    let out = run(args(&["rollout", "restart", "deploy/checkout"])).await;
    assert!(out.contains("restarted"), "{out}");
    let out = run(args(&[
        "rollout",
        "status",
        "deploy/checkout",
        "--timeout=30s",
    ]))
    .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    sim.shutdown().await;
}

#[tokio::test]
async fn streaming_list_watcher_and_garbage_collection() {
    let (sim, client) = start(TIMED).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    ready_pods(&pods, "app=cart", 1).await;
    let config = watcher::Config::default()
        .labels("app=cart")
        .streaming_lists();
    let mut events = watcher(pods.clone(), config).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.next()).await {
            Ok(Some(Ok(watcher::Event::InitApply(p)))) => initial.push(p),
            Ok(Some(Ok(watcher::Event::InitDone))) => break,
            Ok(Some(Ok(_))) => {}
            other => panic!("streaming list did not finish: {other:?}"),
        }
    }
    assert_eq!(initial.len(), 1);
    // Deleting the deployment takes its replica set and pods with it.
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "shop");
    deploys
        .delete("cart", &DeleteParams::default())
        .await
        .unwrap();
    let gone = initial[0].metadata.name.clone().unwrap();
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = events.next().await {
            if let Ok(watcher::Event::Delete(p)) = ev {
                if p.metadata.name.as_deref() == Some(gone.as_str()) {
                    return;
                }
            }
        }
    })
    .await
    .expect("the deployment's pod was garbage-collected");
    wait_for("no cart pods left", Duration::from_secs(10), || async {
        let l = pods
            .list(&ListParams::default().labels("app=cart"))
            .await
            .ok()?;
        l.items.is_empty().then_some(())
    })
    .await;
    // A watch with timeoutSeconds ends by itself.
    let url = format!(
        "{}/api/v1/namespaces/shop/pods?watch=true&timeoutSeconds=1",
        sim.api_url()
    );
    let body = tokio::time::timeout(Duration::from_secs(10), async {
        reqwest::get(&url).await.unwrap().text().await.unwrap()
    })
    .await
    .expect("watch ended after its timeout");
    assert!(
        body.lines().all(|l| l.starts_with("{\"type\":\"ADDED\"")),
        "{body}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn odd_objects_do_not_break_the_server_or_controllers() {
    let (sim, client) = start(TIMED).await;
    let http = reqwest::Client::new();
    let base = sim.api_url();
    let post = |path: &str, body: &str| {
        http.post(format!("{base}{path}"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    // A pod whose status is not an object still goes through the kubelet.
    let r = post(
        "/api/v1/namespaces/shop/pods",
        r#"{"metadata":{"name":"odd","labels":{"app":"odd"}},"spec":{"containers":[{"name":"c"}]},"status":"weird"}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    // A deployment whose template metadata is not an object.
    let r = post(
        "/apis/apps/v1/namespaces/shop/deployments",
        r#"{"metadata":{"name":"odd"},"spec":{"replicas":1,"selector":{"matchLabels":{"app":"x"}},"template":{"metadata":"x","spec":{"containers":[{"name":"c"}]}}}}"#,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let patch = |body: &'static str, ctype: &'static str| {
        http.patch(format!("{base}/api/v1/namespaces/shop/pods/odd"))
            .header("content-type", ctype)
            .body(body)
            .send()
    };
    assert_eq!(
        patch(r#"{"metadata":"x"}"#, "application/merge-patch+json")
            .await
            .unwrap()
            .status(),
        422
    );
    assert_eq!(
        patch(r#"[1,2]"#, "application/merge-patch+json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        patch(
            r#"[{"op":"replace","path":"","value":3}]"#,
            "application/json-patch+json"
        )
        .await
        .unwrap()
        .status(),
        422
    );
    assert_eq!(patch(r#"{}"#, "text/plain").await.unwrap().status(), 415);
    assert_eq!(
        post("/api/v1/namespaces/shop/pods", "not json")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        http.get(format!(
            "{base}/api/v1/namespaces/shop/pods?labelSelector=a%20in%20b"
        ))
        .send()
        .await
        .unwrap()
        .status(),
        400
    );
    assert_eq!(
        http.get(format!("{base}/api/v2/x"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Everything still works: the controllers keep reconciling.
    let pods: Api<Pod> = Api::namespaced(client, "shop");
    ready_pods(&pods, "app=odd", 1).await;
    ready_pods(&pods, "app=db", 2).await;
    pods.delete("db-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    ready_pods(&pods, "app=db", 2).await;
    sim.shutdown().await;
}

#[tokio::test]
async fn standalone_writes_a_kubeconfig_and_its_ground_truth_and_stops_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let truth = dir.path().join("truth.jsonl");
    let args = firedrill::sim::SimArgs {
        listen: local(),
        kubeconfig_out: Some(kubeconfig.clone()),
        scenario: None,
        seed: 3,
        truth_out: Some(truth.clone()),
    };
    let began = std::time::SystemTime::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(firedrill::sim::run_standalone_until(args, async {
        let _ = stopped.await;
    }));
    let text = wait_for("kubeconfig written", Duration::from_secs(10), || async {
        std::fs::read_to_string(&kubeconfig)
            .ok()
            .filter(|t| t.contains("current-context"))
    })
    .await;
    assert!(text.contains("name: firedrill-sim"), "{text}");
    let server = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    assert!(server.starts_with("http://127.0.0.1:"), "{server}");
    let version: serde_json::Value = reqwest::get(format!("{server}/version"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(version["major"], "1");
    // A pod of the built-in scenario becomes ready; the truth file must say when.
    let ready_pod = wait_for("a ready pod", Duration::from_secs(20), || async {
        let list: serde_json::Value = reqwest::get(format!("{server}/api/v1/namespaces/shop/pods"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        list["items"].as_array()?.iter().find_map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()?
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            ready.then(|| p["metadata"]["name"].as_str().map(str::to_string))?
        })
    })
    .await;
    let seen_ready = std::time::SystemTime::now();
    assert!(!truth.exists(), "the truth is written on shutdown");
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("stopped")
        .unwrap()
        .unwrap();
    assert!(
        reqwest::get(format!("{server}/version")).await.is_err(),
        "server still up"
    );
    let unix_ns = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    };
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<(&str, u64)> = lines
        .iter()
        .filter(|l| l["namespace"] == "shop" && l["object"] == ready_pod.as_str())
        .map(|l| (l["what"].as_str().unwrap(), l["unix_ns"].as_u64().unwrap()))
        .filter(|(what, _)| what.starts_with("pod-"))
        .collect();
    let names: Vec<&str> = steps.iter().map(|s| s.0).collect();
    assert_eq!(
        names,
        ["pod-created", "pod-scheduled", "pod-running", "pod-ready"],
        "{steps:?}"
    );
    assert!(steps.windows(2).all(|w| w[0].1 <= w[1].1), "{steps:?}");
    assert!(
        unix_ns(began) <= steps[0].1 && steps[3].1 <= unix_ns(seen_ready),
        "stamped between the start and the moment the pod was seen ready: {steps:?}"
    );
}

#[tokio::test]
async fn rolling_update_respects_surge_and_unavailability() {
    let (sim, client) = start(
        r#"
kubelet: { schedule-delay: 10ms, start-delay: 50ms, ready-delay: 100ms }
namespaces:
  shop:
    deployments:
      web: { replicas: 4 }
"#,
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    let before = ready_pods(&pods, "app=web", 4).await;
    let deploys: Api<Deployment> = Api::namespaced(client, "shop");
    // What `kubectl rollout restart` does.
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {"restartedAt": "now"}}}}});
    deploys
        .patch(
            "web",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await
        .unwrap();
    let (mut min_ready, mut max_pods) = (usize::MAX, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let live = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap();
        let active: Vec<_> = live
            .items
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        max_pods = max_pods.max(active.len());
        min_ready = min_ready.min(active.iter().filter(|p| pod_ready(p)).count());
        let s = deploys.get("web").await.unwrap().status.unwrap_or_default();
        if s.observed_generation == Some(2)
            && s.updated_replicas == Some(4)
            && s.replicas == Some(4)
            && s.available_replicas == Some(4)
        {
            break;
        }
        assert!(Instant::now() < deadline, "rollout did not finish: {s:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Defaults: maxSurge 25% (1 of 4, rounded up), maxUnavailable 25% (1 of 4, rounded down).
    assert!(min_ready >= 3, "ready pods fell to {min_ready}");
    assert_eq!(max_pods, 5, "one surge pod at a time");
    let after = ready_pods(&pods, "app=web", 4).await;
    let old: BTreeSet<_> = before
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    assert!(after
        .iter()
        .all(|p| !old.contains(p.metadata.name.as_deref().unwrap_or(""))));
    sim.shutdown().await;
}

#[tokio::test]
async fn the_seed_fixes_pod_names() {
    let yaml = r#"
kubelet: { schedule-delay: 1ms, start-delay: 5ms..50ms, ready-delay: 5ms..50ms }
namespaces:
  a:
    deployments: { web: { replicas: 3 }, api: { replicas: 2 } }
    statefulsets: { db: { replicas: 1 } }
"#;
    let names = |seed: u64| async move {
        let sim = SimCluster::start(parse_scenario(yaml).unwrap(), local(), seed)
            .await
            .unwrap();
        let pods: Api<Pod> = Api::namespaced(sim.kube_client().await.unwrap(), "a");
        ready_pods(&pods, "app in (web,api,db)", 6).await;
        let mut names: Vec<String> = pods
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter_map(|p| p.metadata.name)
            .collect();
        names.sort();
        sim.shutdown().await;
        names
    };
    let first = names(11).await;
    assert_eq!(first, names(11).await);
    assert_ne!(first, names(12).await);
}

/// A body the simulated cluster cannot read (kubectl sends protobuf for built-in kinds) is
/// answered 415 UnsupportedMediaType, as an API server answers a media type it does not serve,
/// not a 400 saying the JSON is broken; JSON and apply-patch YAML bodies are read as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_in_a_media_type_it_does_not_serve_is_a_415() {
    let (sim, _client) = start(TIMED).await;
    let url = format!("{}/api/v1/namespaces/shop/configmaps", sim.api_url());
    let http = reqwest::Client::new();
    let post = |ctype: &'static str, body: &'static str| {
        http.post(&url)
            .header("Content-Type", ctype)
            .body(body)
            .send()
    };
    let refused = post("application/vnd.kubernetes.protobuf", "k8s\0\n\x02v1")
        .await
        .unwrap();
    assert_eq!(refused.status(), 415);
    let status: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(status["reason"], "UnsupportedMediaType", "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{status}"
    );
    let created = post(
        "application/json",
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"ok"},"data":{"a":"b"}}"#,
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 201);
    sim.shutdown().await;
}
