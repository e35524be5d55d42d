//! The floor of recovery measurement over HTTP: a hand-written loop that checks a health
//! endpoint back to back on one kept-alive connection (blocking sockets, no runtime, no
//! parsing beyond the status line and Content-Length), so nothing but the loopback round trip
//! separates two checks. `bench/truth-vs-chaostoolkit.py` compares the tools with it.
//!
//! Run: `cargo run --release --example tight_probe -- http://127.0.0.1:PORT WINDOW_MS...`
//!
//! For each window it asks the target (`examples/flip_target.rs`) to fail for that long
//! (`POST /fail?ms=N`), probes until the endpoint has passed again for 100ms, and prints
//! `bracket <last failing check's start ns> <first passing check's end ns> <checks>`: the
//! interval the true recovery lies in, in wall-clock ns, the same bracket firedrill reports.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context};

const SETTLE: Duration = Duration::from_millis(100);

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Sends one request and reads one response; returns its status code.
fn exchange(s: &mut TcpStream, req: &[u8], buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    s.write_all(req)?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(head_end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..head_end])?;
        let status = head
            .get(9..12)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| anyhow!("bad status line"))?;
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        if buf.len() >= head_end + 4 + len {
            return Ok(status);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let base = args.next().context("usage: tight_probe URL WINDOW_MS...")?;
    let authority = base
        .strip_prefix("http://")
        .context("the URL must start with http://")?
        .trim_end_matches('/')
        .to_string();
    let windows: Vec<u64> = args
        .map(|a| a.parse().context("windows are whole milliseconds"))
        .collect::<anyhow::Result<_>>()?;

    let mut probe = TcpStream::connect(&authority)?;
    probe.set_nodelay(true)?;
    let check = format!("GET /healthz HTTP/1.1\r\nHost: {authority}\r\n\r\n").into_bytes();
    let mut buf = Vec::with_capacity(4096);
    let mut out = std::io::stdout().lock();
    for ms in windows {
        let mut control = TcpStream::connect(&authority)?;
        let fail = format!(
            "POST /fail?ms={ms} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        if exchange(&mut control, fail.as_bytes(), &mut buf)? != 200 {
            bail!("the target refused POST /fail");
        }
        let deadline = Instant::now() + Duration::from_millis(ms) + Duration::from_secs(30);
        let mut last_fail_start = None;
        let mut first_pass: Option<(u128, u128, Instant)> = None; // (start, end, start instant)
        let mut checks = 0u64;
        loop {
            if Instant::now() > deadline {
                bail!("no recovery within {ms}ms + 30s");
            }
            let (start, t0) = (now_ns(), Instant::now());
            let ok = exchange(&mut probe, &check, &mut buf)? == 200;
            let end = now_ns();
            checks += 1;
            if !ok {
                last_fail_start = Some(start);
                first_pass = None;
                continue;
            }
            if last_fail_start.is_none() {
                continue;
            }
            let (_, pass_end, since) = *first_pass.get_or_insert((start, end, t0));
            if since.elapsed() >= SETTLE {
                let lo = last_fail_start.unwrap_or(start);
                writeln!(out, "bracket {lo} {pass_end} {checks}")?;
                out.flush()?;
                break;
            }
        }
    }
    Ok(())
}
