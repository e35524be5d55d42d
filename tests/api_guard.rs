//! The local control APIs cannot be driven by a web page or a rebound DNS name (issue 14):
//! the proxy's Toxiproxy-compatible API takes JSON only, answers only requests addressed to a
//! loopback name, refuses foreign origins, keeps proxy listeners on loopback, and can demand a
//! token; the simulated cluster's API checks the Host too; `schedule --metrics` on a
//! non-loopback address says so.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use firedrill::proxy::{ApiAccess, ProxyServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one raw HTTP/1.1 request (exactly these headers) and returns the status and body.
async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

async fn api(
    access: ApiAccess,
) -> (
    Arc<ProxyServer>,
    SocketAddr,
    tokio::sync::oneshot::Sender<()>,
) {
    let server = ProxyServer::new(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.clone().serve_api_with(listener, access, async {
        let _ = stopped.await;
    }));
    (server, addr, stop)
}

fn create(listen: &str) -> String {
    format!(r#"{{"name":"ssh","listen":"{listen}","upstream":"127.0.0.1:22"}}"#)
}

#[tokio::test]
async fn a_web_page_cannot_create_a_proxy() {
    let (server, addr, _stop) = api(ApiAccess::default()).await;
    let host = addr.to_string();
    // A form or fetch() "simple request": text/plain needs no preflight.
    let (status, body) = raw(
        addr,
        "POST",
        "/proxies",
        &[("Host", &host), ("Content-Type", "text/plain")],
        &create("0.0.0.0:0"),
    )
    .await;
    assert_eq!(status, 415, "{body}");
    // DNS rebinding: the page's own name resolved to 127.0.0.1.
    let (status, body) = raw(
        addr,
        "POST",
        "/proxies",
        &[
            ("Host", "attacker.example:8474"),
            ("Content-Type", "application/json"),
        ],
        &create("127.0.0.1:0"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("Host"), "{body}");
    // A foreign page's origin.
    let (status, body) = raw(
        addr,
        "POST",
        "/proxies",
        &[
            ("Host", &host),
            ("Origin", "https://attacker.example"),
            ("Content-Type", "application/json"),
        ],
        &create("127.0.0.1:0"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    // Listeners stay on loopback.
    let (status, body) = raw(
        addr,
        "POST",
        "/proxies",
        &[("Host", &host), ("Content-Type", "application/json")],
        &create("0.0.0.0:0"),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("--allow-remote-listen"), "{body}");
    assert!(server.proxies().is_empty(), "nothing was created");
    // A Toxiproxy client on this machine still works.
    let (status, body) = raw(
        addr,
        "POST",
        "/proxies",
        &[
            ("Host", &format!("localhost:{}", addr.port())),
            ("Content-Type", "application/json; charset=utf-8"),
        ],
        &create("127.0.0.1:0"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = raw(addr, "POST", "/reset", &[("Host", &host)], "").await;
    assert_eq!(status, 204);
}

#[tokio::test]
async fn a_token_when_set_is_required() {
    let access = ApiAccess {
        token: Some("t0ken-for-the-test".into()),
        ..ApiAccess::default()
    };
    let (_server, addr, _stop) = api(access).await;
    let host = addr.to_string();
    let (status, _) = raw(addr, "GET", "/proxies", &[("Host", &host)], "").await;
    assert_eq!(status, 401);
    let (status, _) = raw(
        addr,
        "GET",
        "/proxies",
        &[("Host", &host), ("Authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = raw(
        addr,
        "GET",
        "/proxies",
        &[
            ("Host", &host),
            ("Authorization", "Bearer t0ken-for-the-test"),
        ],
        "",
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[test]
fn the_simulated_clusters_api_answers_only_loopback_names() {
    let sim = common::sim::Sim::new(
        "namespaces:\n  shop:\n    deployments:\n      web: { replicas: 1 }\n",
        1,
    );
    let url = sim.handle().api_url();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let host = addr.to_string();
    sim.rt.block_on(async {
        let (status, body) = raw(
            addr,
            "GET",
            "/api/v1/namespaces",
            &[("Host", "attacker.example")],
            "",
        )
        .await;
        assert_eq!(status, 403, "{body}");
        let (status, body) = raw(addr, "GET", "/api/v1/namespaces", &[("Host", &host)], "").await;
        assert_eq!(status, 200, "{body}");
    });
}

#[test]
fn metrics_on_a_non_loopback_address_are_announced_loudly() {
    use firedrill::schedule::metrics::exposure_warning;
    // Tests never listen beyond loopback: the daemon prints exactly this before it binds.
    let w = exposure_warning(&"0.0.0.0:9464".parse().unwrap()).expect("a warning");
    assert!(w.starts_with("WARNING"), "{w}");
    assert!(w.contains("not a loopback address"), "{w}");
    assert!(exposure_warning(&"127.0.0.1:9464".parse().unwrap()).is_none());
    assert!(exposure_warning(&"[::1]:9464".parse().unwrap()).is_none());
}

#[tokio::test]
async fn standalone_refuses_a_remote_listener_without_the_flag() {
    // Refused before anything is bound: the unspecified address below is never listened on.
    let args = firedrill::proxy::ProxyArgs {
        listen: "0.0.0.0:0".parse().unwrap(),
        upstream: "127.0.0.1:9".into(),
        name: "firedrill".into(),
        api: "127.0.0.1:0".parse().unwrap(),
        seed: 0,
        allow_remote_listen: false,
        api_token_env: None,
    };
    let err = firedrill::proxy::run_standalone(args).await.unwrap_err();
    assert!(err.to_string().contains("--allow-remote-listen"), "{err}");
}
