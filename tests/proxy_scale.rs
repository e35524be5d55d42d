//! The built-in proxy under load a user would put on it: a thousand connections at once, and
//! a long stream through a latency toxic. Every server here listens on 127.0.0.1:0 and is
//! stopped by its test.
//!
//! In its own test binary on purpose: cargo runs test binaries one after another, so these
//! do not compete for the CPU with the timing checks of `tests/proxy.rs`.

mod common;

use std::time::{Duration, Instant};

use common::proxy::{echo_server, proxy_to};
use firedrill::proxy::{Stream, Toxic, ToxicKind};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Each connection costs this process four descriptors (client, the proxy's two sockets,
/// echo): make sure the soft limit allows them, as a user's shell might not.
fn raise_open_files(needed: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < needed {
        assert!(
            hard >= needed,
            "this test needs {needed} open files; the hard limit is {hard}"
        );
        setrlimit(Resource::RLIMIT_NOFILE, needed, hard).unwrap();
    }
}

/// A named constant latency toxic.
fn latency(name: &str, latency: Duration, stream: Stream) -> Toxic {
    let mut t = Toxic::new(
        ToxicKind::Latency {
            latency,
            jitter: Duration::ZERO,
        },
        stream,
    );
    t.name = name.into();
    t
}

/// A payload of its own for every connection, so that crossed wires would show.
fn payload(conn: u64, round: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(conn << 8 | round).fill_bytes(&mut v);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_at_once_echo_every_byte_and_all_get_the_latency() {
    const CONNS: u64 = 1000;
    const LEN: usize = 8 * 1024;
    const LATENCY: Duration = Duration::from_millis(300);
    raise_open_files(CONNS * 4 + 256);
    let (echo, _e) = echo_server().await;
    let (server, proxy) = proxy_to(echo, 11).await;

    // Open all of them before any sends: a thousand connections are open through the proxy
    // at the same time.
    let conns = futures::future::join_all((0..CONNS).map(|_| TcpStream::connect(proxy))).await;
    let mut conns: Vec<TcpStream> = conns
        .into_iter()
        .map(|c| c.expect("connect through the proxy"))
        .collect();
    for c in &conns {
        c.set_nodelay(true).unwrap();
    }

    async fn exchange(mut s: TcpStream, msg: Vec<u8>) -> (TcpStream, Duration) {
        let start = Instant::now();
        let (mut r, mut w) = s.split();
        let send = w.write_all(&msg);
        let mut back = vec![0u8; msg.len()];
        let recv = r.read_exact(&mut back);
        let (sent, got) = tokio::join!(send, recv);
        sent.unwrap();
        got.unwrap();
        let took = start.elapsed();
        assert!(back == msg, "a connection got bytes that were not its own");
        (s, took)
    }

    let round = |conns: Vec<TcpStream>, round: u64| async move {
        let tasks: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(i, s)| tokio::spawn(exchange(s, payload(i as u64, round, LEN))))
            .collect();
        let mut out = vec![];
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    };

    let first = round(std::mem::take(&mut conns), 0).await;
    assert_eq!(first.len(), CONNS as usize);

    server
        .add_toxic("p", latency("all", LATENCY, Stream::Downstream))
        .unwrap();
    let start = Instant::now();
    let second = round(first.into_iter().map(|(s, _)| s).collect(), 1).await;
    let wall = start.elapsed();
    let fastest = second.iter().map(|(_, d)| *d).min().unwrap();
    // Every connection waited out the latency (a millisecond of timer rounding allowed)...
    assert!(
        fastest + Duration::from_millis(1) >= LATENCY,
        "a connection escaped the latency: {fastest:?}"
    );
    // ...all at the same time, not one after another (that would take 300s).
    assert!(
        wall < LATENCY + Duration::from_secs(10),
        "1,000 delayed round trips took {wall:?}"
    );

    server.remove_toxic("p", "all").unwrap();
    let third = round(second.into_iter().map(|(s, _)| s).collect(), 2).await;
    assert_eq!(third.len(), CONNS as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_delays_a_long_stream_without_slowing_it() {
    // A paced stream of 8 MiB/s for 3s, through 200ms of latency: it must arrive 200ms later
    // at the rate it was sent, not at one chunk per 200ms (which would take minutes).
    const RATE: usize = 8 << 20;
    const SECS: usize = 3;
    const TICK: Duration = Duration::from_millis(10);
    const LATENCY: Duration = Duration::from_millis(200);
    let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let (server, proxy) = proxy_to(sink_addr, 11).await;
    server
        .add_toxic("p", latency("lat", LATENCY, Stream::Upstream))
        .unwrap();

    let ticks = SECS * 100;
    let per_tick = RATE / 100;
    let total = per_tick * ticks;
    let mut client = TcpStream::connect(proxy).await.unwrap();
    let (mut upstream, _) = sink.accept().await.unwrap();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let buf = payload(0, 0, per_tick);
        let mut next = tokio::time::Instant::now();
        for _ in 0..ticks {
            client.write_all(&buf).await.unwrap();
            next += TICK;
            tokio::time::sleep_until(next).await;
        }
        client.shutdown().await.unwrap();
        client
    });
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    let mut first_byte = None;
    loop {
        let n = upstream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| start.elapsed());
        got += n;
    }
    let took = start.elapsed();
    let _client = sender.await.unwrap();
    assert_eq!(got, total);
    let first_byte = first_byte.unwrap();
    assert!(
        first_byte + Duration::from_millis(1) >= LATENCY,
        "first byte after {first_byte:?}, before the latency"
    );
    // Sending takes 3s; delivery may end 200ms later, plus slack for a busy machine.
    let sent_in = Duration::from_secs(SECS as u64);
    assert!(
        took < sent_in + LATENCY + Duration::from_millis(1500),
        "a 3s stream took {took:?} through 200ms of latency"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_holds_a_fast_streams_bandwidth_delay_product() {
    // 128 MiB sent as fast as possible into 3s of latency: the proxy must take it all (it is
    // what is in flight at this rate) long before the first byte is due at the server, not
    // stop reading after a fixed few MiB and so throttle the sender to that much per 3s.
    // No duration budget: the check compares two events of the same run.
    const LEN: usize = 128 << 20;
    const LATENCY: Duration = Duration::from_secs(3);
    let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let (server, proxy) = proxy_to(sink_addr, 11).await;
    server
        .add_toxic("p", latency("lat", LATENCY, Stream::Upstream))
        .unwrap();
    let mut client = TcpStream::connect(proxy).await.unwrap();
    let (mut upstream, _) = sink.accept().await.unwrap();
    let start = Instant::now();
    let sender = tokio::spawn(async move {
        let buf = payload(1, 0, 1 << 20);
        for _ in 0..LEN >> 20 {
            client.write_all(&buf).await.unwrap();
        }
        let sent_at = start.elapsed();
        client.shutdown().await.unwrap();
        (client, sent_at)
    });
    let mut buf = vec![0u8; 1 << 20];
    let mut got = 0usize;
    let mut first_byte = None;
    loop {
        let n = upstream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| start.elapsed());
        got += n;
    }
    let (_client, sent_at) = sender.await.unwrap();
    assert_eq!(got, LEN);
    let first_byte = first_byte.unwrap();
    assert!(
        first_byte >= LATENCY,
        "first byte after {first_byte:?}, before the latency"
    );
    assert!(
        sent_at < first_byte,
        "the sender needed {sent_at:?} to hand over 128 MiB, the first byte arrived after {first_byte:?}: the proxy throttled the stream"
    );
}
