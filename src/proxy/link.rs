//! Forwarding of one client connection through the toxics of its proxy.
//!
//! Each direction is a *pump*. With no active toxic it moves bytes with no timers: a plain
//! read→write loop with a large buffer, and for bulk streams on Linux socket → pipe → socket
//! with splice(2), so the data never crosses into user space (see `splice`). As soon as a
//! toxic becomes active for that direction the pump switches
//! to a pipeline: a reader stamps every chunk with the instant it was read and queues it; a
//! writer delivers each chunk when the toxics allow (latency: `read_at + latency ± jitter`).
//! The writer watches the proxy's toxic set, so adding, changing or removing a toxic takes
//! effect on chunks already waiting. When the last toxic goes and the queue is empty the pump
//! returns to the fast loop.
//!
//! Latency is per chunk: reading continues while earlier chunks wait, so a latency toxic
//! delays data without throttling throughput. The queue is bounded in bytes: [`QUEUE_BASE`]
//! always, up to [`QUEUE_MAX`] while the writer is only waiting out the latency (the
//! bandwidth-delay product of a fast stream), and never beyond the base while the process
//! holds [`QUEUE_GLOBAL`] in all its queues. A destination that stops reading therefore
//! holds at most the base, or what was already in flight.
//!
//! The wait is precise (see [`crate::timer`]) when the chunk is alone in the queue, as in
//! request/response traffic. A chunk with more data queued behind it (a stream) is released
//! on tokio's 1ms timer wheel, together with everything else that is due by then: at most
//! ~1ms later than its due time, never earlier, and without a busy wait per chunk.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[cfg(target_os = "linux")]
use super::splice;
use super::toxic::{ActiveToxic, Stream, ToxicKind, ToxicSet};
use crate::timer::precise_sleep_until;

/// Buffer of the fast path: 64 KiB moves a loopback TCP window in a few syscalls while two
/// of them per connection stay affordable with thousands of connections.
const FAST_BUF: usize = 64 * 1024;
/// Read size in the pipeline; once a read fills it (a bulk stream), reads of [`BIG_BUF`].
const SLOW_BUF: usize = 64 * 1024;
const BIG_BUF: usize = 1 << 20;
/// Bytes one direction's pipeline may always hold, even when its destination does not read.
pub(crate) const QUEUE_BASE: usize = 16 << 20;
/// Bytes it may hold while all of them are waiting out a latency (not for the destination):
/// a stream at rate R through latency L has R × L bytes in flight, which must be held to
/// delay it without throttling it (1.6 GB/s through 100ms is 160 MB).
const QUEUE_MAX: usize = 256 << 20;
/// All pipelines of the process together grow beyond their base only while they hold less
/// than this: a bound on memory whatever the number of connections.
const QUEUE_GLOBAL: usize = 1 << 30;

/// Bytes queued in every pipeline of the process.
static QUEUED_TOTAL: AtomicUsize = AtomicUsize::new(0);

/// Everything a connection needs from its proxy.
pub(crate) struct ConnCtx {
    pub proxy: String,
    pub upstream: String,
    pub toxics: watch::Receiver<ToxicSet>,
    /// Cancelled when the proxy is disabled or removed: the connection closes.
    pub cancel: CancellationToken,
    /// Seed of this connection's random draws (toxicity, jitter, slice sizes).
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The source closed cleanly; the destination got a FIN.
    Eof,
    /// A toxic (timeout, limit_data) or the proxy closes the whole connection.
    Close,
    /// reset_peer: close both sockets with RST.
    Reset,
}

/// Serves one accepted client connection until both directions end or a toxic ends it.
pub(crate) async fn handle(mut client: TcpStream, ctx: ConnCtx) {
    let connect = TcpStream::connect(ctx.upstream.as_str());
    let mut upstream = tokio::select! {
        _ = ctx.cancel.cancelled() => return,
        r = connect => match r {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(proxy = %ctx.proxy, upstream = %ctx.upstream, error = %e,
                    "upstream unreachable; closing the client connection");
                return;
            }
        }
    };
    // Nagle would add up to 40ms to small writes and ruin latency precision.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);

    let end = {
        let (mut cr, mut cw) = client.split();
        let (mut ur, mut uw) = upstream.split();
        let up = pump(
            &mut cr,
            &mut uw,
            Stream::Upstream,
            ctx.toxics.clone(),
            mix(ctx.seed, 1),
        );
        let down = pump(
            &mut ur,
            &mut cw,
            Stream::Downstream,
            ctx.toxics.clone(),
            mix(ctx.seed, 2),
        );
        tokio::pin!(up, down);
        let (mut up_done, mut down_done) = (false, false);
        loop {
            let r = tokio::select! {
                _ = ctx.cancel.cancelled() => break End::Close,
                r = &mut up, if !up_done => { up_done = true; r }
                r = &mut down, if !down_done => { down_done = true; r }
            };
            match r {
                Ok(End::Eof) if up_done && down_done => break End::Eof,
                Ok(End::Eof) => {}
                Ok(other) => break other,
                Err(e) => {
                    tracing::debug!(proxy = %ctx.proxy, error = %e, "connection ended by an i/o error");
                    break End::Close;
                }
            }
        }
    };
    match end {
        End::Reset => {
            // SO_LINGER 0 turns the close into an RST: the peer sees "connection reset".
            let _ = client.set_zero_linger();
            let _ = upstream.set_zero_linger();
        }
        End::Close => {
            // A FIN first, so that data already delivered is not discarded by an RST.
            let _ = tokio::time::timeout(Duration::from_millis(100), client.shutdown()).await;
            let _ = tokio::time::timeout(Duration::from_millis(100), upstream.shutdown()).await;
        }
        End::Eof => {}
    }
}

/// SplitMix64 finaliser: independent-looking seeds from (seed, index).
pub(crate) fn mix(seed: u64, index: u64) -> u64 {
    let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// This connection's view of one toxic.
struct Seen {
    /// The toxicity draw: does this toxic affect this connection?
    active: bool,
    /// When this connection first saw the toxic (start of timeout/reset_peer clocks).
    since: Instant,
    /// Bytes forwarded while it was active (limit_data).
    sent: u64,
}

/// What the active toxics of one direction add up to right now.
#[derive(Default)]
struct Effect {
    /// Summed latency and jitter (toxics in a chain add up).
    latency: Option<(Duration, Duration)>,
    /// The slowest bandwidth.
    rate_kb: Option<u64>,
    /// A timeout toxic: forward nothing; close at the deadline (None: hold forever).
    hold: Option<Option<Instant>>,
    reset_at: Option<Instant>,
    slicer: Option<(usize, usize, Duration)>,
    limit_remaining: Option<u64>,
}

impl Effect {
    fn is_empty(&self) -> bool {
        self.latency.is_none()
            && self.rate_kb.is_none()
            && self.hold.is_none()
            && self.reset_at.is_none()
            && self.slicer.is_none()
            && self.limit_remaining.is_none()
    }
}

/// Per-direction, per-connection state.
struct DirState {
    stream: Stream,
    rng: ChaCha8Rng,
    seen: HashMap<u64, Seen>,
    /// Bandwidth pacing: the earliest instant the next byte may go (keeps the average rate
    /// exact whatever the timer granularity).
    next_free: Instant,
}

impl DirState {
    fn new(stream: Stream, seed: u64) -> Self {
        DirState {
            stream,
            rng: ChaCha8Rng::seed_from_u64(seed),
            seen: HashMap::new(),
            next_free: Instant::now(),
        }
    }

    fn effect(&mut self, set: &[ActiveToxic]) -> Effect {
        self.seen.retain(|id, _| set.iter().any(|t| t.id == *id));
        let now = Instant::now();
        let mut e = Effect::default();
        for t in set.iter().filter(|t| t.toxic.stream == self.stream) {
            let rng = &mut self.rng;
            let seen = self.seen.entry(t.id).or_insert_with(|| Seen {
                // random() is in [0, 1): toxicity 1 always applies, 0 never does.
                active: rng.random::<f32>() < t.toxic.toxicity,
                since: now,
                sent: 0,
            });
            if !seen.active {
                continue;
            }
            match &t.toxic.kind {
                ToxicKind::Latency { latency, jitter } => {
                    let (l, j) = e.latency.unwrap_or_default();
                    e.latency = Some((l + *latency, j + *jitter));
                }
                ToxicKind::Bandwidth { rate_kb } => {
                    e.rate_kb = Some(e.rate_kb.map_or(*rate_kb, |r| r.min(*rate_kb)));
                }
                ToxicKind::Timeout { timeout } => {
                    let at = (!timeout.is_zero()).then(|| seen.since + *timeout);
                    e.hold = Some(match (e.hold, at) {
                        (Some(Some(a)), Some(b)) => Some(a.min(b)),
                        (Some(Some(a)), None) => Some(a),
                        (_, b) => b,
                    });
                }
                ToxicKind::ResetPeer { timeout } => {
                    let at = seen.since + *timeout;
                    e.reset_at = Some(e.reset_at.map_or(at, |a| a.min(at)));
                }
                ToxicKind::Slicer {
                    average_size,
                    size_variation,
                    delay,
                } => {
                    e.slicer
                        .get_or_insert((*average_size, *size_variation, *delay));
                }
                ToxicKind::LimitData { bytes } => {
                    let rem = bytes.saturating_sub(seen.sent);
                    e.limit_remaining = Some(e.limit_remaining.map_or(rem, |r| r.min(rem)));
                }
            }
        }
        e
    }

    /// Counts forwarded bytes against every active limit_data toxic.
    fn account(&mut self, set: &[ActiveToxic], n: usize) {
        for t in set.iter().filter(|t| t.toxic.stream == self.stream) {
            if let (ToxicKind::LimitData { .. }, Some(seen)) =
                (&t.toxic.kind, self.seen.get_mut(&t.id))
            {
                if seen.active {
                    seen.sent += n as u64;
                }
            }
        }
    }
}

async fn pump<R, W>(
    src: &mut R,
    dst: &mut W,
    stream: Stream,
    mut toxics: watch::Receiver<ToxicSet>,
    seed: u64,
) -> io::Result<End>
where
    R: AsyncRead + Unpin + AsRef<TcpStream>,
    W: AsyncWrite + Unpin + AsRef<TcpStream>,
{
    let mut st = DirState::new(stream, seed);
    let mut buf = vec![0u8; FAST_BUF];
    // A bulk stream (a read filled the whole buffer) goes through splice(2) on Linux; small
    // exchanges stay on read/write, which costs fewer syscalls per message. The pipe is made
    // on the first switch: connections that only exchange small messages never hold one.
    let mut bulk = false;
    #[cfg(target_os = "linux")]
    let (mut can_splice, mut pipe) = (splice::enabled(), None::<splice::Pipe>);
    #[cfg(not(target_os = "linux"))]
    let can_splice = false;
    // False once the proxy is gone: changed() would then fail at once, forever.
    let mut watching = true;
    loop {
        let set = toxics.borrow_and_update().clone();
        if st.effect(&set).is_empty() {
            #[cfg(target_os = "linux")]
            if bulk && can_splice {
                if pipe.is_none() {
                    // No pipe (descriptors exhausted): the user-space copy does the same job.
                    pipe = splice::Pipe::new().ok();
                    can_splice = pipe.is_some();
                }
                if let Some(p) = pipe.as_ref() {
                    match splice::forward(src.as_ref(), dst.as_ref(), p, &mut toxics, &mut watching)
                        .await?
                    {
                        splice::Outcome::Eof => {
                            dst.shutdown().await?;
                            return Ok(End::Eof);
                        }
                        splice::Outcome::ToxicsChanged => continue,
                        splice::Outcome::Small => bulk = false,
                        // Not a socket splice(2) supports: copy through user space from now on.
                        splice::Outcome::Unsupported => can_splice = false,
                    }
                }
            }
            // Fast path: no timers, no queue, one large buffer.
            loop {
                tokio::select! {
                    biased;
                    r = toxics.changed(), if watching => {
                        if r.is_err() { watching = false; } else { break; }
                    }
                    n = src.read(&mut buf[..]) => {
                        let n = n?;
                        if n == 0 {
                            dst.shutdown().await?;
                            return Ok(End::Eof);
                        }
                        dst.write_all(&buf[..n]).await?;
                        if n == buf.len() && can_splice {
                            bulk = true;
                            break;
                        }
                    }
                }
            }
            continue;
        }
        if let Some(end) = pipeline(src, dst, &mut toxics, &mut st, &mut watching).await? {
            return Ok(end);
        }
    }
}

enum Chunk {
    Data(Bytes, Instant),
    Eof,
}

enum WriterEnd {
    BackToFast,
    ReaderGone,
    End(End),
}

/// The byte count of one direction's queue, shared by its reader and writer.
#[derive(Default)]
struct Backlog {
    queued: AtomicUsize,
    /// The writer sleeps until the oldest chunk is due: everything queued waits for the
    /// latency, none for the destination.
    waiting_on_latency: AtomicBool,
    /// Signalled when bytes leave the queue or the writer starts waiting on the latency.
    space: Notify,
}

impl Backlog {
    fn may_read(&self) -> bool {
        let queued = self.queued.load(Ordering::Relaxed);
        queued < QUEUE_BASE
            || (queued < QUEUE_MAX
                && self.waiting_on_latency.load(Ordering::Relaxed)
                && QUEUED_TOTAL.load(Ordering::Relaxed) < QUEUE_GLOBAL)
    }

    fn add(&self, n: usize) {
        self.queued.fetch_add(n, Ordering::Relaxed);
        QUEUED_TOTAL.fetch_add(n, Ordering::Relaxed);
    }

    fn remove(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
        QUEUED_TOTAL.fetch_sub(n, Ordering::Relaxed);
        self.space.notify_one();
    }

    fn set_waiting_on_latency(&self, waiting: bool) {
        self.waiting_on_latency.store(waiting, Ordering::Relaxed);
        if waiting {
            self.space.notify_one();
        }
    }
}

impl Drop for Backlog {
    fn drop(&mut self) {
        // Chunks dropped with a closing connection leave the process-wide count too.
        QUEUED_TOTAL.fetch_sub(*self.queued.get_mut(), Ordering::Relaxed);
    }
}

/// Runs the reader/writer pipeline until the connection ends (Some) or no toxic is left (None).
async fn pipeline<R, W>(
    src: &mut R,
    dst: &mut W,
    toxics: &mut watch::Receiver<ToxicSet>,
    st: &mut DirState,
    watching: &mut bool,
) -> io::Result<Option<End>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // Unbounded in chunks: `backlog` bounds it in bytes.
    let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
    let backlog = Backlog::default();
    let stop = CancellationToken::new();
    let reader = async {
        let tx = tx;
        let mut buf = BytesMut::new();
        let mut want = SLOW_BUF;
        loop {
            while !backlog.may_read() {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Ok(()),
                    _ = backlog.space.notified() => {}
                }
            }
            if buf.capacity() < want / 4 {
                buf.reserve(want);
            }
            let spare = buf.capacity() - buf.len();
            let n = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(()),
                r = src.read_buf(&mut buf) => r?,
            };
            // A read that filled its buffer is a stream: read more per syscall.
            want = if n == spare { BIG_BUF } else { SLOW_BUF };
            let msg = if n == 0 {
                Chunk::Eof
            } else {
                backlog.add(n);
                Chunk::Data(buf.split().freeze(), Instant::now())
            };
            let eof = matches!(msg, Chunk::Eof);
            // When the writer went back to the fast path the queue was empty, so this chunk
            // is drained after the join, not lost.
            if tx.send(msg).is_err() {
                return Ok(());
            }
            if eof {
                return Ok::<(), io::Error>(());
            }
        }
    };
    let writer = async {
        let r = writer(dst, &mut rx, &backlog, toxics, st, watching).await;
        stop.cancel();
        r
    };
    let (read_result, write_result) = tokio::join!(reader, writer);
    match write_result? {
        WriterEnd::End(end) => Ok(Some(end)),
        WriterEnd::ReaderGone => {
            read_result?;
            // The reader stopped without EOF or error: only a cancelled connection does that.
            Ok(Some(End::Close))
        }
        WriterEnd::BackToFast => {
            read_result?;
            // The reader may have queued a chunk after the writer last looked.
            while let Ok(chunk) = rx.try_recv() {
                match chunk {
                    Chunk::Data(d, _) => {
                        dst.write_all(&d).await?;
                        backlog.remove(d.len());
                    }
                    Chunk::Eof => {
                        dst.shutdown().await?;
                        return Ok(Some(End::Eof));
                    }
                }
            }
            Ok(None)
        }
    }
}

/// Waits until `due`, precisely when `precise`, else on tokio's timer wheel (up to ~1ms
/// late); never returns before `due`.
async fn latency_wait(due: Instant, precise: bool) {
    if !precise {
        tokio::time::sleep_until(due).await;
    }
    precise_sleep_until(due).await;
}

/// A future that completes at `at`, or never.
async fn sleep_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn writer<W>(
    dst: &mut W,
    rx: &mut mpsc::UnboundedReceiver<Chunk>,
    backlog: &Backlog,
    toxics: &mut watch::Receiver<ToxicSet>,
    st: &mut DirState,
    watching: &mut bool,
) -> io::Result<WriterEnd>
where
    W: AsyncWrite + Unpin,
{
    // A chunk taken from the queue but not yet delivered, with its jitter draw in [-1, 1].
    let mut pending: Option<(Bytes, Instant, f64)> = None;
    loop {
        let set = toxics.borrow_and_update().clone();
        let eff = st.effect(&set);
        if eff.reset_at.is_some_and(|at| at <= Instant::now()) {
            return Ok(WriterEnd::End(End::Reset));
        }
        if eff.is_empty() && pending.is_none() && rx.is_empty() {
            return Ok(WriterEnd::BackToFast);
        }
        if let Some(deadline) = eff.hold {
            // timeout toxic: forward nothing until it is removed or its deadline closes us.
            tokio::select! {
                r = toxics.changed(), if *watching => { if r.is_err() { *watching = false; } continue; }
                _ = sleep_opt(deadline), if deadline.is_some() => return Ok(WriterEnd::End(End::Close)),
                _ = sleep_opt(eff.reset_at) => return Ok(WriterEnd::End(End::Reset)),
            }
        }
        let (data, read_at, jitter_draw) = match pending.take() {
            Some(p) => p,
            None => tokio::select! {
                biased;
                r = toxics.changed(), if *watching => { if r.is_err() { *watching = false; } continue; }
                _ = sleep_opt(eff.reset_at) => return Ok(WriterEnd::End(End::Reset)),
                c = rx.recv() => match c {
                    Some(Chunk::Data(d, at)) => (d, at, st.rng.random_range(-1.0..=1.0)),
                    Some(Chunk::Eof) => {
                        dst.shutdown().await?;
                        return Ok(WriterEnd::End(End::Eof));
                    }
                    None => return Ok(WriterEnd::ReaderGone),
                },
            },
        };
        if let Some((latency, jitter)) = eff.latency {
            let delay = latency.as_secs_f64() + jitter.as_secs_f64() * jitter_draw;
            let due = read_at + Duration::from_secs_f64(delay.max(0.0));
            if due > Instant::now() {
                // Alone in the queue (request/response): a precise wait. With more queued
                // behind it (a stream): the timer wheel, then everything due goes at once.
                let alone = rx.is_empty();
                backlog.set_waiting_on_latency(true);
                let woke = tokio::select! {
                    biased;
                    r = toxics.changed(), if *watching => Some(r.is_ok()),
                    _ = sleep_opt(eff.reset_at) => None,
                    _ = latency_wait(due, alone) => Some(true),
                };
                backlog.set_waiting_on_latency(false);
                match woke {
                    None => return Ok(WriterEnd::End(End::Reset)),
                    Some(true) if Instant::now() >= due => {}
                    Some(ok) => {
                        // The toxics changed: re-plan this chunk against them (a removed
                        // latency releases it at once).
                        if !ok {
                            *watching = false;
                        }
                        pending = Some((data, read_at, jitter_draw));
                        continue;
                    }
                }
            }
        }
        let len = data.len();
        let delivered = deliver(dst, data, toxics, st, watching).await;
        backlog.remove(len);
        if let Some(end) = delivered? {
            return Ok(WriterEnd::End(end));
        }
    }
}

/// Writes one chunk under bandwidth, slicer and limit_data, re-reading the toxics between
/// pieces so that a removed toxic stops slowing the rest of the chunk.
async fn deliver<W>(
    dst: &mut W,
    mut data: Bytes,
    toxics: &mut watch::Receiver<ToxicSet>,
    st: &mut DirState,
    watching: &mut bool,
) -> io::Result<Option<End>>
where
    W: AsyncWrite + Unpin,
{
    while !data.is_empty() {
        let set = toxics.borrow().clone();
        let eff = st.effect(&set);
        let now = Instant::now();
        if eff.reset_at.is_some_and(|at| at <= now) {
            return Ok(Some(End::Reset));
        }
        let mut n = data.len();
        if let Some((avg, var, _)) = eff.slicer {
            let size = if var == 0 {
                avg
            } else {
                st.rng.random_range(avg - var..=avg + var)
            };
            n = n.min(size.max(1));
        }
        if let Some(rate) = eff.rate_kb {
            // Pieces of at most ~50ms of traffic keep pacing smooth and removal prompt.
            n = n.min(((rate * 1000 / 20).max(1)) as usize);
        }
        if let Some(rem) = eff.limit_remaining {
            if rem == 0 {
                return Ok(Some(End::Close));
            }
            n = n.min(usize::try_from(rem).unwrap_or(usize::MAX));
        }
        let piece = data.split_to(n);
        dst.write_all(&piece).await?;
        st.account(&set, n);
        if eff.limit_remaining == Some(n as u64) {
            dst.flush().await?;
            return Ok(Some(End::Close));
        }
        let mut wake: Option<Instant> = None;
        if let Some((_, _, delay)) = eff.slicer {
            if !data.is_empty() && !delay.is_zero() {
                wake = Some(Instant::now() + delay);
            }
        }
        if let Some(rate) = eff.rate_kb {
            let cost = Duration::from_secs_f64(n as f64 / (rate as f64 * 1000.0));
            st.next_free = st.next_free.max(now) + cost;
            wake = Some(wake.map_or(st.next_free, |w| w.max(st.next_free)));
        }
        if let Some(at) = wake {
            tokio::select! {
                r = toxics.changed(), if *watching => { if r.is_err() { *watching = false; } }
                _ = precise_sleep_until(at) => {}
            }
        }
    }
    Ok(None)
}
