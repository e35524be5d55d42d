//! Dependency failures: a Kubernetes API that answers 5xx/429 (with `retryAfterSeconds`) in
//! front of the simulated cluster. Retries are bounded and honour the server's wait; a delete
//! whose outcome stays unknown is journalled maybe-applied and ends the run inconclusive,
//! never passed, never a panic.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::firedrill;

struct Flaky {
    upstream: SocketAddr,
    /// Pod lists still to fail with 503.
    lists: AtomicU32,
    /// Deletes still to fail, with this code and retryAfterSeconds.
    deletes: AtomicU32,
    delete_code: u16,
    retry_after: u32,
    log: Mutex<Vec<(String, Instant)>>,
}

fn status(code: u16, retry_after: u32) -> Response {
    let body = serde_json::json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": "injected by the test", "reason": "ServiceUnavailable",
        "code": code, "details": {"retryAfterSeconds": retry_after}});
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .header("retry-after", retry_after.to_string())
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn take(n: &AtomicU32) -> bool {
    n.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| v.checked_sub(1))
        .is_ok()
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = b.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&b[..i]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[i + 2..i + 2 + size]);
        b = &b[i + 2 + size + 2..];
    }
    out
}

async fn proxy(State(st): State<Arc<Flaky>>, req: Request) -> Response {
    let method = req.method().to_string();
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let query = req.uri().query().unwrap_or("").to_string();
    if query.contains("watch=true") || query.contains("watch=1") {
        // Watches hang: this test is about the calls a fault makes.
        std::future::pending::<()>().await;
    }
    let pods = req.uri().path().starts_with("/api/v1/namespaces/shop/pods");
    st.log
        .lock()
        .unwrap()
        .push((format!("{method} {pq}"), Instant::now()));
    if pods && method == "GET" && take(&st.lists) {
        return status(503, 0);
    }
    if pods && method == "DELETE" && take(&st.deletes) {
        return status(st.delete_code, st.retry_after);
    }
    let headers = req.headers().clone();
    let body = axum::body::to_bytes(req.into_body(), 1 << 24)
        .await
        .unwrap();
    let mut head = format!(
        "{method} {pq} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        st.upstream,
        body.len()
    );
    for (k, v) in &headers {
        if !matches!(
            k.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding"
        ) {
            head.push_str(&format!("{k}: {}\r\n", v.to_str().unwrap_or("")));
        }
    }
    head.push_str("\r\n");
    let mut s = tokio::net::TcpStream::connect(st.upstream).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let code: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut resp = Response::builder().status(code);
    for line in head.lines().skip(1) {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        if k == "transfer-encoding" && v.trim() == "chunked" {
            body = dechunk(&body);
        } else if k == "content-type" {
            resp = resp.header("content-type", v.trim());
        }
    }
    resp.body(Body::from(body)).unwrap()
}

struct Setup {
    rt: tokio::runtime::Runtime,
    sim: Option<firedrill::sim::SimHandle>,
    flaky: Arc<Flaky>,
    dir: tempfile::TempDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.rt.block_on(sim.shutdown());
        }
    }
}

fn setup(lists: u32, deletes: u32, delete_code: u16, retry_after: u32) -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let scenario = firedrill::sim::parse_scenario(
        "kubelet: { schedule-delay: 10ms, start-delay: 50ms, ready-delay: 50ms }\nendpoints: { propagation-delay: 100ms }\nnamespaces:\n  shop:\n    deployments:\n      web: { replicas: 3, labels: { app: web }, http: true }\n",
    )
    .unwrap();
    let sim = rt
        .block_on(firedrill::sim::SimCluster::start(
            scenario,
            "127.0.0.1:0".parse().unwrap(),
            5,
        ))
        .unwrap();
    let upstream: SocketAddr = sim.api_url().trim_start_matches("http://").parse().unwrap();
    let flaky = Arc::new(Flaky {
        upstream,
        lists: AtomicU32::new(lists),
        deletes: AtomicU32::new(deletes),
        delete_code,
        retry_after,
        log: Mutex::new(Vec::new()),
    });
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(proxy)
        .with_state(flaky.clone());
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("kubeconfig"),
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: flaky\n  cluster: {{ server: \"http://{addr}\" }}\ncontexts:\n- name: flaky\n  context: {{ cluster: flaky, user: u }}\nusers:\n- name: u\n  user: {{}}\ncurrent-context: flaky\n"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    kube-context: flaky\n",
    )
    .unwrap();
    let url = sim.traffic_url("shop", "web").unwrap();
    std::fs::write(
        dir.path().join("drill.yaml"),
        format!(
            r#"name: flaky-kill
environments: [staging]
targets:
  web:
    kubernetes: {{ namespace: shop, selector: app=web, count: 1, max-targets: 1 }}
probes:
  web-http:
    http: {{ url: "{url}/", timeout: 500ms }}
    every: 100ms
    every-during: 10ms
faults:
  - pod-kill: {{ target: web, grace-period: 0s }}
recovery: {{ objective: 10s, stable-for: 500ms, timeout: 30s }}
"#
        ),
    )
    .unwrap();
    Setup {
        rt,
        sim: Some(sim),
        flaky,
        dir,
    }
}

impl Setup {
    fn run(&self) -> (std::process::Output, serde_json::Value) {
        let reports = self.dir.path().join("reports");
        let out = firedrill()
            .env("KUBECONFIG", self.dir.path().join("kubeconfig"))
            .env("FIREDRILL_STATE_DIR", self.dir.path().join("state"))
            .args(["run", "--env", "staging", "--report-dir"])
            .arg(&reports)
            .arg(self.dir.path().join("drill.yaml"))
            .output()
            .unwrap();
        (out, common::only_report(&reports))
    }

    fn deletes(&self) -> Vec<Instant> {
        self.flaky
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|(r, _)| r.starts_with("DELETE /api/v1/namespaces/shop/pods"))
            .map(|(_, t)| *t)
            .collect()
    }
}

#[test]
fn transient_errors_are_retried_and_retry_after_is_honoured() {
    let s = setup(2, 1, 429, 1);
    let (out, record) = s.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(record["outcome"], "passed");
    let deletes = s.deletes();
    assert_eq!(deletes.len(), 2, "one 429, then the delete");
    assert!(
        deletes[1] - deletes[0] >= Duration::from_secs(1),
        "waited for retryAfterSeconds"
    );
}

#[test]
fn a_delete_whose_outcome_stays_unknown_ends_inconclusive_and_is_journalled() {
    let s = setup(0, u32::MAX, 503, 0);
    let (out, record) = s.run();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(record["outcome"], "inconclusive");
    let reason = record["reason"].as_str().unwrap();
    assert!(reason.contains("after 4 attempts"), "{reason}");
    assert_eq!(s.deletes().len(), 4, "bounded retries");
    let journals = std::fs::read_dir(s.dir.path().join("state/journal")).unwrap();
    let text: String = journals
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    assert!(text.contains("\"maybe-applied\""), "{text}");
}
