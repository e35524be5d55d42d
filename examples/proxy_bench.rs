//! Benchmark of the built-in proxy, all on 127.0.0.1:
//! - added-latency accuracy of a 100ms downstream latency toxic (p50/p99/max over the target);
//! - pass-through cost per request/response round trip with no toxic, against direct loopback;
//! - throughput of 1 GiB one way, through the proxy and direct.
//!
//! Run: `cargo run --release --example proxy_bench -- [latency_round_trips] [throughput_mib]`
//! (defaults 500 and 1024).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use firedrill::proxy::{ProxyConfig, ProxyServer, Stream, Toxic, ToxicKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// Reads everything until EOF, then answers with the byte count.
async fn sink_server() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 20];
                let mut total = 0u64;
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
                let _ = s.write_all(&total.to_le_bytes()).await;
            });
        }
    });
    Ok(addr)
}

async fn round_trips(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<Duration>> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let mut out = Vec::with_capacity(n);
    let mut back = [0u8; 64];
    for i in 0..n {
        let msg = [i as u8; 64];
        let start = Instant::now();
        s.write_all(&msg).await?;
        s.read_exact(&mut back).await?;
        out.push(start.elapsed());
    }
    out.sort();
    Ok(out)
}

async fn throughput(addr: SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    let mut s = TcpStream::connect(addr).await?;
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        s.write_all(&buf).await?;
        sent += buf.len() as u64;
    }
    s.shutdown().await?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count).await?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(u64::from_le_bytes(count) == sent, "sink got fewer bytes");
    Ok(sent as f64 / secs / (1u64 << 30) as f64 * 8.0)
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

async fn proxy_to(
    server: &ProxyServer,
    name: &str,
    upstream: SocketAddr,
) -> anyhow::Result<SocketAddr> {
    let info = server
        .add_proxy(ProxyConfig {
            name: name.into(),
            listen: "127.0.0.1:0".parse()?,
            upstream: upstream.to_string(),
            enabled: true,
        })
        .await?;
    Ok(info.listen)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let latency_n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(500);
    let mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);

    let server = ProxyServer::new(1);
    let echo = echo_server().await?;
    let sink = sink_server().await?;
    let plain = proxy_to(&server, "plain", echo).await?;
    let delayed = proxy_to(&server, "delayed", echo).await?;
    let sink_proxy = proxy_to(&server, "sink", sink).await?;
    server.add_toxic(
        "delayed",
        Toxic::new(
            ToxicKind::Latency {
                latency: Duration::from_millis(100),
                jitter: Duration::ZERO,
            },
            Stream::Downstream,
        ),
    )?;

    // Warm up connections and allocators.
    round_trips(echo, 1000).await?;
    round_trips(plain, 1000).await?;
    let n = 20_000;
    let direct = round_trips(echo, n).await?;
    let proxied = round_trips(plain, n).await?;
    println!(
        "pass-through round trip (64 B, n={n}): direct p50 {:.1}µs p99 {:.1}µs; proxy p50 {:.1}µs p99 {:.1}µs; added p50 {:.1}µs",
        us(pct(&direct, 0.5)),
        us(pct(&direct, 0.99)),
        us(pct(&proxied, 0.5)),
        us(pct(&proxied, 0.99)),
        us(pct(&proxied, 0.5)) - us(pct(&direct, 0.5)),
    );

    let lat = round_trips(delayed, latency_n).await?;
    let added = |d: Duration| (d.as_secs_f64() - 0.1) * 1e3;
    println!(
        "100ms latency toxic (n={latency_n} round trips): added over 100ms min {:+.3}ms p50 {:+.3}ms p99 {:+.3}ms max {:+.3}ms",
        added(lat[0]),
        added(pct(&lat, 0.5)),
        added(pct(&lat, 0.99)),
        added(lat[lat.len() - 1]),
    );

    let bytes = mib << 20;
    let d = throughput(sink, bytes).await?;
    let p = throughput(sink_proxy, bytes).await?;
    println!(
        "throughput {mib} MiB one way: direct {d:.2} Gbit/s, proxy {p:.2} Gbit/s ({:.0}%)",
        p / d * 100.0
    );
    Ok(())
}
