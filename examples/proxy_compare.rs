//! Side by side, in one run, all on 127.0.0.1: firedrill's proxy, the fault-cli proxy and
//! direct loopback, each measured the same way by the same client:
//! - pass-through cost of a 64 B request/response round trip with no fault;
//! - added-latency accuracy of a 100ms latency fault on the server → client direction
//!   (p50/p99 over N round trips on one kept-alive connection);
//! - throughput of a one-way bulk transfer (1 GiB by default; the median of three), with no
//!   fault and through a 100ms latency fault on the client → server direction;
//! - for direct loopback, the same 64 B round trip after 100ms of idling: what a round trip
//!   costs when every thread on the path has been asleep, as it has behind a 100ms delay.
//!
//! Each proxy runs as its own process, as a user would run it. The client and the servers are
//! plain blocking threads so that the harness itself adds no scheduler of its own.
//!
//! Run through `bench/proxy-vs-fault-cli.sh`, which installs fault-cli and builds firedrill;
//! by hand: `cargo run --release --example proxy_compare -- FIREDRILL FAULT [N] [MIB]`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};

/// The added delay every proxy is asked for.
const LATENCY: Duration = Duration::from_millis(100);

/// Serves every connection on 127.0.0.1:0 with `handle`, one thread per connection.
fn serve(handle: fn(TcpStream)) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    std::thread::spawn(move || {
        for s in listener.incoming().flatten() {
            std::thread::spawn(move || handle(s));
        }
    });
    Ok(addr)
}

/// Echoes every byte back.
fn echo(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = vec![0u8; 64 * 1024];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 || s.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// Reads until EOF, then answers with the number of bytes it got.
fn sink(mut s: TcpStream) {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        total += n as u64;
    }
    let _ = s.write_all(&total.to_le_bytes());
}

/// An address nobody listens on right now (the proxies need one on their command line).
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// Kills the child processes when the run ends, however it ends.
struct Procs(Vec<Child>);
impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Procs {
    fn spawn(&mut self, program: &str, args: &[String]) -> anyhow::Result<()> {
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        self.0.push(child);
        Ok(())
    }
}

/// Waits until something accepts connections on `addr`, and round trips one byte through it.
fn wait_ready(addr: SocketAddr, echoes: bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = TcpStream::connect(addr) {
            if !echoes {
                return Ok(());
            }
            s.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut b = [0u8; 1];
            if s.write_all(b"r").is_ok() && s.read_exact(&mut b).is_ok() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("nothing answers on {addr} after 30s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One HTTP/1.1 request with a JSON body on a fresh connection; returns the status code.
fn http_post(addr: SocketAddr, path: &str, body: &str) -> anyhow::Result<u16> {
    let mut s = TcpStream::connect(addr)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    resp.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no HTTP status in {resp:?}"))
}

/// `n` sequential 64 B round trips on one connection, sorted; with `idle`, the client sleeps
/// that long before each one.
fn round_trips(
    addr: SocketAddr,
    n: usize,
    idle: Option<Duration>,
) -> anyhow::Result<Vec<Duration>> {
    let mut s = TcpStream::connect(addr)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut out = Vec::with_capacity(n);
    let mut back = [0u8; 64];
    for i in 0..n {
        let msg = [i as u8; 64];
        if let Some(idle) = idle {
            std::thread::sleep(idle);
        }
        let start = Instant::now();
        s.write_all(&msg)?;
        s.read_exact(&mut back)?;
        out.push(start.elapsed());
        ensure!(back == msg, "round trip {i} came back changed");
    }
    out.sort();
    Ok(out)
}

/// Sends `bytes` one way and waits for the sink to confirm the count; seconds taken.
fn transfer(addr: SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    let mut s = TcpStream::connect(addr)?;
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        s.write_all(&buf)?;
        sent += buf.len() as u64;
    }
    s.shutdown(std::net::Shutdown::Write)?;
    let mut count = [0u8; 8];
    s.read_exact(&mut count)?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(
        u64::from_le_bytes(count) == sent,
        "the sink got {} of {sent} bytes",
        u64::from_le_bytes(count)
    );
    Ok(secs)
}

fn gbit(bytes: u64, secs: f64) -> f64 {
    bytes as f64 * 8.0 / secs / 1e9
}

/// Seconds of the median of three transfers of `bytes`, after a warm-up of an eighth.
fn median_transfer(addr: SocketAddr, bytes: u64) -> anyhow::Result<f64> {
    // Loopback throughput swings with whatever else the machine does.
    transfer(addr, bytes / 8)?;
    let mut runs = [0.0; 3];
    for r in &mut runs {
        *r = transfer(addr, bytes)?;
    }
    runs.sort_by(f64::total_cmp);
    Ok(runs[1])
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 * p) as usize).min(v.len() - 1)]
}

/// Addresses a tool's proxies listen on: in front of the echo server with no fault, in front
/// of the echo server with 100ms latency (server → client), in front of the sink with no
/// fault and with 100ms latency (client → server).
struct Target {
    name: &'static str,
    plain: SocketAddr,
    delayed: Option<SocketAddr>,
    sink: SocketAddr,
    sink_delayed: Option<SocketAddr>,
}

/// One `firedrill proxy` process with three proxies, the second one with a latency toxic,
/// set up through its Toxiproxy-compatible API as a CI job would.
fn start_firedrill(
    bin: &str,
    procs: &mut Procs,
    echo: SocketAddr,
    sink: SocketAddr,
) -> anyhow::Result<Target> {
    let (plain, delayed, sink_port, sink_delayed, api) = (
        free_addr()?,
        free_addr()?,
        free_addr()?,
        free_addr()?,
        free_addr()?,
    );
    let args = format!("proxy --name plain --listen {plain} --upstream {echo} --api {api}");
    procs.spawn(bin, &args.split(' ').map(String::from).collect::<Vec<_>>())?;
    wait_ready(api, false)?;
    for (name, listen, upstream) in [
        ("delayed", delayed, echo),
        ("sink", sink_port, sink),
        ("sink-delayed", sink_delayed, sink),
    ] {
        let body = format!(r#"{{"name":"{name}","listen":"{listen}","upstream":"{upstream}"}}"#);
        let status = http_post(api, "/proxies", &body)?;
        ensure!(status == 201, "firedrill refused proxy {name}: {status}");
    }
    for (proxy, stream) in [("delayed", "downstream"), ("sink-delayed", "upstream")] {
        let toxic = format!(
            r#"{{"name":"lat","type":"latency","stream":"{stream}","attributes":{{"latency":{}}}}}"#,
            LATENCY.as_millis()
        );
        let status = http_post(api, &format!("/proxies/{proxy}/toxics"), &toxic)?;
        ensure!(
            status == 200,
            "firedrill refused the latency toxic: {status}"
        );
    }
    wait_ready(plain, true)?;
    wait_ready(delayed, true)?;
    wait_ready(sink_port, false)?;
    wait_ready(sink_delayed, false)?;
    Ok(Target {
        name: "firedrill proxy",
        plain,
        delayed: Some(delayed),
        sink: sink_port,
        sink_delayed: Some(sink_delayed),
    })
}

/// One `fault run` process with the same four TCP proxies. Its `latency` fault delays only
/// the first traffic of a connection; the per-operation delay is its `jitter` fault, which
/// with probability 1 and min = max is a constant delay on every read of the response flow.
/// In front of the sink, its `latency` fault (uniform 100..100ms) on the client → server
/// flow: the delayed first byte, then the stream unhindered.
fn start_fault(
    bin: &str,
    procs: &mut Procs,
    echo: SocketAddr,
    sink: SocketAddr,
) -> anyhow::Result<Target> {
    let (plain, delayed, sink_port, sink_delayed) =
        (free_addr()?, free_addr()?, free_addr()?, free_addr()?);
    let proxy = |name: &str, listen: SocketAddr, upstream: SocketAddr| {
        format!(
            r#"{{"name":"{name}","protocol":"tcp","listen":"{listen}","upstream":"{upstream}"}}"#
        )
    };
    let ms = LATENCY.as_millis();
    let run = format!(
        r#"{{"schema_version":1,"name":"firedrill-bench","proxies":[{},{},{},{}],
"phases":[{{"name":"latency","proxies":[{{"proxy":"delayed","faults":[
{{"type":"jitter","flow":"to-client","min_delay_ms":{ms},"max_delay_ms":{ms},"probability":1.0}}]}},
{{"proxy":"sink-delayed","faults":[{{"type":"latency","flow":"to-upstream",
"distribution":{{"type":"uniform","min_ms":{ms},"max_ms":{ms}}}}}]}}]}}]}}"#,
        proxy("plain", plain, echo),
        proxy("delayed", delayed, echo),
        proxy("sink", sink_port, sink),
        proxy("sink-delayed", sink_delayed, sink),
    );
    let file =
        std::env::temp_dir().join(format!("firedrill-fault-run-{}.json", std::process::id()));
    std::fs::write(&file, run)?;
    let args = ["--output", "json", "run", &file.to_string_lossy()].map(String::from);
    procs.spawn(bin, &args)?;
    wait_ready(plain, true)?;
    wait_ready(delayed, true)?;
    wait_ready(sink_port, false)?;
    wait_ready(sink_delayed, false)?;
    let _ = std::fs::remove_file(&file);
    Ok(Target {
        name: "fault-cli proxy",
        plain,
        delayed: Some(delayed),
        sink: sink_port,
        sink_delayed: Some(sink_delayed),
    })
}

struct Row {
    name: &'static str,
    rtt: Vec<Duration>,
    /// Round trips through the 100ms delay (direct loopback: after 100ms of idling).
    delayed: Vec<Duration>,
    /// Seconds for the bulk transfer, with no fault and through 100ms of latency.
    bulk: f64,
    bulk_delayed: Option<f64>,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(firedrill), Some(fault)) = (args.next(), args.next()) else {
        bail!("usage: proxy_compare FIREDRILL_BIN FAULT_BIN [latency_round_trips=1000] [mib=1024]");
    };
    let latency_n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let mib: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(1024);
    let rtt_n = 20_000;
    let bytes = mib << 20;

    let echo = serve(echo)?;
    let sink = serve(sink)?;
    let mut procs = Procs(vec![]);
    let targets = [
        Target {
            name: "direct loopback",
            plain: echo,
            delayed: None,
            sink,
            sink_delayed: None,
        },
        start_firedrill(&firedrill, &mut procs, echo, sink)?,
        start_fault(&fault, &mut procs, echo, sink)?,
    ];

    // Latency first, all three at once: it is mostly waiting, and doing it in parallel
    // divides the run. Each gets its own connection and its own client thread; direct
    // loopback idles 100ms before each round trip instead of being delayed by a proxy.
    eprintln!(
        "latency: {latency_n} round trips through each proxy (~{}s)…",
        latency_n as u64 * LATENCY.as_millis() as u64 / 1000
    );
    let delayed: Vec<_> = targets
        .iter()
        .map(|t| {
            let (addr, idle) = match t.delayed {
                Some(a) => (a, None),
                None => (t.plain, Some(LATENCY)),
            };
            std::thread::spawn(move || round_trips(addr, latency_n, idle))
        })
        .collect();
    let delayed: Vec<Vec<Duration>> = delayed
        .into_iter()
        .map(|h| {
            h.join()
                .map_err(|_| anyhow::anyhow!("client thread panicked"))?
        })
        .collect::<anyhow::Result<_>>()?;

    let mut rows = vec![];
    for (t, d) in targets.iter().zip(delayed) {
        eprintln!("{}: pass-through and {mib} MiB…", t.name);
        round_trips(t.plain, 1_000, None)?; // warm up
        let rtt = round_trips(t.plain, rtt_n, None)?;
        let bulk = median_transfer(t.sink, bytes)?;
        let bulk_delayed = match t.sink_delayed {
            Some(a) => {
                eprintln!("{}: {mib} MiB through 100ms of latency…", t.name);
                Some(median_transfer(a, bytes)?)
            }
            None => None,
        };
        rows.push(Row {
            name: t.name,
            rtt,
            delayed: d,
            bulk,
            bulk_delayed,
        });
    }

    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let added = |d: Duration| ms(d) - ms(LATENCY);
    let direct = &rows[0];
    let (direct_p50, direct_secs) = (us(pct(&direct.rtt, 0.5)), direct.bulk);
    println!(
        "| | 100ms latency: added p50 / p99 (n={latency_n}) | 64 B round trip p50 / p99 (n={rtt_n}) | added per request (p50) | {mib} MiB one way (median of 3) | vs direct | {mib} MiB through 100ms latency (median of 3): whole / less the first 100ms | vs direct: whole / less 100ms |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for r in &rows {
        let lat = if std::ptr::eq(r, direct) {
            format!(
                "after 100ms idle: {:.3}ms / {:.3}ms",
                ms(pct(&r.delayed, 0.5)),
                ms(pct(&r.delayed, 0.99))
            )
        } else {
            format!(
                "{:+.3}ms / {:+.3}ms",
                added(pct(&r.delayed, 0.5)),
                added(pct(&r.delayed, 0.99))
            )
        };
        let (bulk_lat, bulk_lat_vs) = match r.bulk_delayed {
            Some(secs) => {
                let less = secs - LATENCY.as_secs_f64();
                (
                    format!(
                        "{:.3}s = {:.2} / {:.2} Gbit/s",
                        secs,
                        gbit(bytes, secs),
                        gbit(bytes, less)
                    ),
                    format!("{:.2}x / {:.2}x", secs / direct_secs, less / direct_secs),
                )
            }
            None => ("–".into(), "–".into()),
        };
        println!(
            "| {} | {lat} | {:.1}µs / {:.1}µs | {:+.1}µs | {:.3}s = {:.2} Gbit/s | {:.2}x | {bulk_lat} | {bulk_lat_vs} |",
            r.name,
            us(pct(&r.rtt, 0.5)),
            us(pct(&r.rtt, 0.99)),
            us(pct(&r.rtt, 0.5)) - direct_p50,
            r.bulk,
            gbit(bytes, r.bulk),
            r.bulk / direct_secs,
        );
    }
    Ok(())
}
