//! The built-in proxy as a user sees it: through TCP connections and the Toxiproxy-compatible
//! control API. Every server here listens on 127.0.0.1:0 and is stopped by its test.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::proxy::{echo_server, proxy_to, Stop};
use firedrill::proxy::{ProxyServer, Stream, Toxic, ToxicKind};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A proxy server with its API on 127.0.0.1:0, and one proxy named "p" in front of `upstream`.
struct Fixture {
    server: Arc<ProxyServer>,
    api: String,
    proxy: SocketAddr,
    http: reqwest::Client,
    _stop: Stop,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn fixture(upstream: SocketAddr) -> Fixture {
    let (server, listen) = proxy_to(upstream, 7).await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let srv = server.clone();
    let h = tokio::spawn(async move {
        let _ = srv
            .serve_api(listener, async {
                let _ = rx.await;
            })
            .await;
    });
    Fixture {
        server,
        api,
        proxy: listen,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        _stop: Stop(vec![h]),
        _shutdown: tx,
    }
}

impl Fixture {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{}", self.api, path);
        let req = match method {
            "GET" => self.http.get(url),
            "POST" => self.http.post(url),
            "DELETE" => self.http.delete(url),
            other => panic!("method {other}"),
        };
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    async fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.proxy).await.unwrap();
        s.set_nodelay(true).unwrap();
        s
    }
}

async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> Duration {
    let start = Instant::now();
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back).await.unwrap();
    let took = start.elapsed();
    assert_eq!(back, msg);
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passes_random_payloads_and_a_large_transfer_unchanged() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut s = f.connect().await;
    for _ in 0..200 {
        let mut msg = vec![0u8; rng.random_range(1..70_000)];
        rng.fill_bytes(&mut msg);
        round_trip(&mut s, &msg).await;
    }
    // 64 MiB each way at once: checksum what comes back against what went out.
    let total = 64 << 20;
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        for _ in 0..(total >> 20) {
            rng.fill_bytes(&mut buf);
            hash.update(&buf);
            w.write_all(&buf).await.unwrap();
        }
        w.shutdown().await.unwrap();
        hash.finalize()
    });
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        got += n;
    }
    assert_eq!(got, total);
    assert_eq!(hash.finalize(), writer.await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_toxic_releases_data_already_waiting() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let mut s = f.connect().await;
    round_trip(&mut s, b"warm").await;
    let (status, _) = f
        .call(
            "POST",
            "/proxies/p/toxics",
            Some(json!({"name": "slow", "type": "latency", "attributes": {"latency": 2000}})),
        )
        .await;
    assert_eq!(status, 200);
    s.write_all(b"ping").await.unwrap();
    let mut back = [0u8; 4];
    // The echo is waiting out the 2s latency now; it must not have arrived yet.
    let early = tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut back)).await;
    assert!(early.is_err(), "data arrived before the latency");
    let deleted = Instant::now();
    let (status, _) = f.call("DELETE", "/proxies/p/toxics/slow", None).await;
    assert_eq!(status, 204);
    s.read_exact(&mut back).await.unwrap();
    let after = deleted.elapsed();
    assert_eq!(&back, b"ping");
    assert!(
        after < Duration::from_millis(200),
        "released {after:?} after DELETE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limits_the_rate() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let mut s = f.connect().await;
    let msg = vec![7u8; 100_000];
    let fast = round_trip(&mut s, &msg).await;
    let mut t = Toxic::new(ToxicKind::Bandwidth { rate_kb: 200 }, Stream::Downstream);
    t.name = "bw".into();
    f.server.add_toxic("p", t).unwrap();
    let slow = round_trip(&mut s, &msg).await;
    // 100 kB at 200 KB/s (Toxiproxy's KB: 1000 bytes): half a second.
    assert!(fast < Duration::from_millis(200), "no toxic: {fast:?}");
    assert!(
        slow >= Duration::from_millis(400) && slow < Duration::from_millis(1500),
        "with 200KB/s: {slow:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_forwards_nothing_then_closes() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let mut t = Toxic::new(
        ToxicKind::Timeout {
            timeout: Duration::from_millis(300),
        },
        Stream::Downstream,
    );
    t.name = "to".into();
    f.server.add_toxic("p", t).unwrap();
    // The timeout runs from when the connection meets the toxic: here, from connecting.
    let start = Instant::now();
    let mut s = f.connect().await;
    s.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("connection still open 3s after a 300ms timeout")
        .unwrap_or(0);
    assert_eq!(n, 0, "data went through a timeout toxic");
    assert!(start.elapsed() >= Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_peer_resets_the_connection() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let mut s = f.connect().await;
    round_trip(&mut s, b"before").await;
    let t = Toxic::new(
        ToxicKind::ResetPeer {
            timeout: Duration::from_millis(100),
        },
        Stream::Downstream,
    );
    f.server.add_toxic("p", t).unwrap();
    let mut buf = [0u8; 16];
    let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("no reset within 3s");
    let err = r.expect_err("expected a reset, got data or EOF");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_splits_data_into_small_pieces() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let t = Toxic::new(
        ToxicKind::Slicer {
            average_size: 10,
            size_variation: 0,
            delay: Duration::from_millis(20),
        },
        Stream::Downstream,
    );
    f.server.add_toxic("p", t).unwrap();
    let mut s = f.connect().await;
    let msg: Vec<u8> = (0..100u8).collect();
    let start = Instant::now();
    s.write_all(&msg).await.unwrap();
    let mut got = Vec::new();
    let mut reads = 0;
    let mut buf = [0u8; 1024];
    while got.len() < msg.len() {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early");
        got.extend_from_slice(&buf[..n]);
        reads += 1;
    }
    assert_eq!(got, msg);
    // Ten slices 20ms apart: TCP may merge a few if this test is slow to read, not most.
    assert!(reads >= 5, "{reads} reads");
    assert!(start.elapsed() >= Duration::from_millis(180));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limit_data_closes_after_the_limit() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let t = Toxic::new(ToxicKind::LimitData { bytes: 1000 }, Stream::Downstream);
    f.server.add_toxic("p", t).unwrap();
    let mut s = f.connect().await;
    s.write_all(&[1u8; 5000]).await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut got)).await;
    assert!(r.is_ok(), "connection not closed");
    assert_eq!(got.len(), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_proxy_refuses_connections_until_enabled() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let mut open = f.connect().await;
    round_trip(&mut open, b"x").await;
    let (status, body) = f
        .call("POST", "/proxies/p", Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["enabled"], false);
    assert!(
        TcpStream::connect(f.proxy).await.is_err(),
        "connected to a disabled proxy"
    );
    // The open connection was closed too.
    let mut buf = [0u8; 4];
    let n = tokio::time::timeout(Duration::from_secs(2), open.read(&mut buf))
        .await
        .expect("open connection survived the disable")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let (status, _) = f
        .call("POST", "/proxies/p", Some(json!({"enabled": true})))
        .await;
    assert_eq!(status, 200);
    let mut s = f.connect().await;
    round_trip(&mut s, b"back").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxicity_zero_has_no_effect() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let mut t = Toxic::new(
        ToxicKind::Latency {
            latency: Duration::from_millis(500),
            jitter: Duration::ZERO,
        },
        Stream::Downstream,
    );
    t.toxicity = 0.0;
    f.server.add_toxic("p", t).unwrap();
    for _ in 0..5 {
        let mut s = f.connect().await;
        assert!(round_trip(&mut s, b"quick").await < Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_toxic_with_a_ttl_removes_itself() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let (status, body) = f
        .call(
            "POST",
            "/proxies/p/toxics",
            Some(json!({"name": "lease", "type": "latency", "attributes": {"latency": 5000, "ttl": 300}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["attributes"]["ttl"], 300);
    let mut s = f.connect().await;
    // Sent under a 5s latency, released when the toxic expires at 300ms.
    let took = round_trip(&mut s, b"lease").await;
    assert!(took < Duration::from_millis(1500), "took {took:?}");
    let (_, toxics) = f.call("GET", "/proxies/p/toxics", None).await;
    assert_eq!(toxics, json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_closes_the_client_connection() {
    let gone = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = gone.local_addr().unwrap();
    drop(gone);
    let f = fixture(addr).await;
    let mut s = f.connect().await;
    let mut buf = [0u8; 4];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
        .await
        .expect("client connection left open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    // The proxy is still serving.
    let (status, _) = f.call("GET", "/proxies/p", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_speaks_toxiproxy() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let (status, v) = f.call("GET", "/version", None).await;
    assert_eq!(status, 200);
    assert!(v["version"].as_str().unwrap().starts_with("2."));

    let new = json!({"name": "db", "listen": "127.0.0.1:0", "upstream": echo.to_string()});
    let (status, v) = f.call("POST", "/proxies", Some(new.clone())).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["name"], "db");
    assert_eq!(v["enabled"], true);
    assert_eq!(v["toxics"], json!([]));
    assert_ne!(v["listen"], "127.0.0.1:0");
    let (status, v) = f.call("POST", "/proxies", Some(new)).await;
    assert_eq!(status, 409);
    assert_eq!(v["status"], 409);
    assert!(v["error"].as_str().unwrap().contains("already exists"));

    let (status, v) = f.call("GET", "/proxies", None).await;
    assert_eq!(status, 200);
    assert!(v["db"].is_object() && v["p"].is_object());

    let (status, v) = f.call("GET", "/proxies/nope", None).await;
    assert_eq!((status, v["status"].clone()), (404, json!(404)));

    let bad = [
        json!({"type": "wobble"}),
        json!({"type": "latency", "attributes": {"latency": -5}}),
        json!({"type": "latency", "attributes": {"latency": 7_200_000}}),
        json!({"type": "bandwidth", "attributes": {"rate": 0}}),
        json!({"type": "latency", "toxicity": 2}),
    ];
    for body in bad {
        let (status, v) = f
            .call("POST", "/proxies/db/toxics", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body} → {v}");
        assert_eq!(v["status"], 400);
        assert!(!v["error"].as_str().unwrap().is_empty());
    }
    let (status, v) = f
        .call(
            "POST",
            "/proxies",
            Some(json!({"name": "x", "upstream": "no-port"})),
        )
        .await;
    assert_eq!(status, 400, "{v}");

    let lat = json!({"type": "latency", "attributes": {"latency": 10, "jitter": 2}});
    let (status, v) = f
        .call("POST", "/proxies/db/toxics", Some(lat.clone()))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        v,
        json!({"name": "latency_downstream", "type": "latency", "stream": "downstream",
               "toxicity": 1.0, "attributes": {"latency": 10, "jitter": 2}})
    );
    let (status, _) = f.call("POST", "/proxies/db/toxics", Some(lat)).await;
    assert_eq!(status, 409);
    let (status, v) = f
        .call(
            "POST",
            "/proxies/db/toxics/latency_downstream",
            Some(json!({"attributes": {"latency": 20}})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(v["attributes"], json!({"latency": 20, "jitter": 2}));
    let (status, v) = f
        .call("GET", "/proxies/db/toxics/latency_downstream", None)
        .await;
    assert_eq!(
        (status, v["attributes"]["latency"].clone()),
        (200, json!(20))
    );
    let (status, _) = f.call("GET", "/proxies/db/toxics/other", None).await;
    assert_eq!(status, 404);

    let (status, _) = f
        .call("POST", "/proxies/db", Some(json!({"enabled": false})))
        .await;
    assert_eq!(status, 200);
    let (status, _) = f.call("POST", "/reset", None).await;
    assert_eq!(status, 204);
    let (_, v) = f.call("GET", "/proxies/db", None).await;
    assert_eq!(
        (v["enabled"].clone(), v["toxics"].clone()),
        (json!(true), json!([]))
    );

    let pop = json!([{"name": "db", "listen": v["listen"], "upstream": echo.to_string()},
                     {"name": "cache", "listen": "127.0.0.1:0", "upstream": echo.to_string()}]);
    let (status, v) = f.call("POST", "/populate", Some(pop)).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["proxies"].as_array().unwrap().len(), 2);

    let (status, _) = f.call("DELETE", "/proxies/db", None).await;
    assert_eq!(status, 204);
    let (status, _) = f.call("DELETE", "/proxies/db", None).await;
    assert_eq!(status, 404);
}

/// A Toxiproxy client written by someone else drives our API: the PyPI package
/// `toxiproxy-python` (install: `pip install toxiproxy-python`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn third_party_toxiproxy_python_client_works() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import toxiproxy"])
        .output();
    if !probe.as_ref().is_ok_and(|o| o.status.success()) {
        let why = "python3 with toxiproxy-python is not installed (pip install toxiproxy-python)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let port = f.api.rsplit(':').next().unwrap().to_string();
    let script = r#"
import json, socket, sys, time
from toxiproxy import Toxiproxy
server = Toxiproxy()
server.update_api_consumer("127.0.0.1", int(sys.argv[1]))
proxy = server.create(upstream=sys.argv[2], name="pyclient", listen="127.0.0.1:0")
host, port = proxy.listen.rsplit(":", 1)

def rtt():
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.monotonic()
    s.sendall(b"ping")
    got = b""
    while len(got) < 4:
        chunk = s.recv(4)
        if not chunk:
            break
        got += chunk
    took = time.monotonic() - start
    s.close()
    assert got == b"ping", got
    return took * 1000.0

before = rtt()
proxy.add_toxic(type="latency", attributes={"latency": 150})
listed = sorted(proxy.toxics().keys())
with_toxic = rtt()
proxy.destroy_toxic("latency_downstream")
after = rtt()
with proxy.down():
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        refused = False
    except OSError:
        refused = True
print(json.dumps({"before": before, "with": with_toxic, "after": after,
                  "listed": listed, "refused": refused, "version": str(server.version())}))
proxy.destroy()
"#;
    let out = tokio::process::Command::new("python3")
        .args(["-c", script, &port, &echo.to_string()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["listed"], json!(["latency_downstream"]));
    assert_eq!(v["refused"], true);
    let with = v["with"].as_f64().unwrap();
    assert!((150.0..300.0).contains(&with), "{v}");
    assert!(v["before"].as_f64().unwrap() < 100.0, "{v}");
    assert!(v["after"].as_f64().unwrap() < 100.0, "{v}");
    let (status, _) = f.call("GET", "/proxies/pyclient", None).await;
    assert_eq!(status, 404, "the client's destroy did not remove the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toggling_toxics_mid_transfer_loses_and_reorders_nothing() {
    let (echo, _e) = echo_server().await;
    let f = fixture(echo).await;
    let s = f.connect().await;
    let total = 16 << 20;
    let (mut r, mut w) = s.into_split();
    let writer = tokio::spawn(async move {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 64 << 10];
        for _ in 0..(total / buf.len()) {
            rng.fill_bytes(&mut buf);
            hash.update(&buf);
            w.write_all(&buf).await.unwrap();
        }
        w.shutdown().await.unwrap();
        hash.finalize()
    });
    let server = f.server.clone();
    let toggler = tokio::spawn(async move {
        for i in 0..60u64 {
            let (kind, stream) = match i % 3 {
                0 => (
                    ToxicKind::Latency {
                        latency: Duration::from_millis(2),
                        jitter: Duration::from_millis(1),
                    },
                    Stream::Downstream,
                ),
                1 => (
                    ToxicKind::Slicer {
                        average_size: 1000,
                        size_variation: 500,
                        delay: Duration::ZERO,
                    },
                    Stream::Upstream,
                ),
                _ => (ToxicKind::Bandwidth { rate_kb: 50_000 }, Stream::Downstream),
            };
            let t = Toxic::new(kind, stream);
            let name = t.name.clone();
            server.add_toxic("p", t).unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
            server.remove_toxic("p", &name).unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
        got += n;
    }
    toggler.await.unwrap();
    assert_eq!(got, total);
    assert_eq!(hash.finalize(), writer.await.unwrap());
}

#[tokio::test]
async fn standalone_refuses_a_non_loopback_api_address() {
    // Refused before anything is bound: the unspecified address below is never listened on.
    let args = firedrill::proxy::ProxyArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: "127.0.0.1:9".into(),
        name: "firedrill".into(),
        api: "0.0.0.0:8474".parse().unwrap(),
        seed: 0,
        allow_remote_listen: false,
        api_token_env: None,
    };
    let err = firedrill::proxy::run_standalone(args).await.unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}
