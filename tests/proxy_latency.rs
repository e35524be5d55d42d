//! Added-latency accuracy of the built-in proxy, seen by a user's client through the API.
//!
//! In its own test binary on purpose: cargo runs test binaries one after another, so the
//! bulk-transfer tests of `tests/proxy.rs` do not compete with this one for the CPU.

mod common;

use std::time::{Duration, Instant};

use common::proxy::proxy_to;
use serde_json::json;
use tokio::net::TcpListener;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_added_through_the_api_is_accurate() {
    // Client and server are blocking threads, like the separate processes they are in real
    // life: the measurement then sees the proxy, not this test's own tasks competing with it.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let echo = server.local_addr().unwrap();
    let echo_thread = std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut s, _) = server.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => s.write_all(&buf[..n]).unwrap(),
            }
        }
    });
    let (server, proxy) = proxy_to(echo, 7).await;
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/proxies/p/toxics", api.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let api_task = tokio::spawn(server.clone().serve_api(api, async {
        let _ = stopped.await;
    }));
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(url)
        .json(&json!({"type": "latency", "stream": "downstream", "attributes": {"latency": 100}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut rtts = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(proxy).unwrap();
        s.set_nodelay(true).unwrap();
        let mut rtts = Vec::with_capacity(1000);
        let mut back = [0u8; 4];
        for i in 0..1000u32 {
            let start = Instant::now();
            s.write_all(&i.to_le_bytes()).unwrap();
            s.read_exact(&mut back).unwrap();
            rtts.push(start.elapsed());
            assert_eq!(back, i.to_le_bytes());
        }
        rtts
    })
    .await
    .unwrap();
    echo_thread.join().unwrap();
    let _ = stop.send(());
    api_task.await.unwrap().unwrap();
    rtts.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (min, p50, p99) = (ms(rtts[0]), ms(rtts[500]), ms(rtts[989]));
    eprintln!("round trips with 100ms latency: min {min:.3}ms p50 {p50:.3}ms p99 {p99:.3}ms");
    assert!(
        min >= 100.0,
        "a round trip took {min}ms, less than the latency"
    );
    assert!(p50 <= 102.0, "p50 {p50}ms");
    assert!(p99 <= 105.0, "p99 {p99}ms");
}
