//! The write-ahead journal mirrored in the store. A runner copies each line of its local
//! journal (the same JSON lines, secrets as `${env:…}` references) into
//! `firedrill_journal_lines` as it writes it, and beats a heartbeat every
//! [`HEARTBEAT`]. An intent waits up to [`ACK_WAIT`] for its copy to commit, so a fault is
//! in the store before it is injected while the store answers; once the store stops
//! answering the drill is never held up by it (the copy catches up from the local file when
//! the store is back).
//!
//! The next runner of an overlapping scope, on any machine, holds the scope's advisory lock
//! before it looks ([`super::locks`]), so a journal still open in the store was left by a
//! runner whose connection ended. It recovers it only when the heartbeat is also older than
//! [`STALE`]: a runner that merely lost its connection to the store (and goes on with its
//! drill) keeps beating locally-timed attempts and is not recovered under its feet.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use super::{Store, StoreError};
use crate::probe::postgres::Target;
use crate::safety::journal::{self, Header};

/// How often a running drill's heartbeat is written.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// A journal whose heartbeat is older than this belongs to a runner that is gone.
pub const STALE: Duration = Duration::from_secs(10);
/// How long the mirror waits after a failure before it connects again.
const RETRY: Duration = Duration::from_secs(2);
/// How long an intent waits for its copy while the store answers.
const ACK_WAIT: Duration = Duration::from_millis(500);

enum Msg {
    Line(u32, String, Option<mpsc::SyncSender<()>>),
    Finish,
}

/// The running mirror of one journal: a thread with its own connection (the journal is
/// written from synchronous code), ended by [`StoreMirror::finish`] or by dropping it.
pub struct StoreMirror {
    tx: mpsc::Sender<Msg>,
    healthy: std::sync::Arc<AtomicBool>,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the mirror thread needs to (re)write the journal's row.
struct Row {
    header: Header,
    host: String,
    path: PathBuf,
}

impl StoreMirror {
    /// Start mirroring the journal at `path` (written by this process for `header`).
    pub fn start(store: &Store, header: &Header, path: &Path) -> StoreMirror {
        let (tx, rx) = mpsc::channel();
        let healthy = std::sync::Arc::new(AtomicBool::new(true));
        let row = Row {
            header: header.clone(),
            host: super::host(),
            path: path.to_path_buf(),
        };
        let target = store.target.clone();
        let flag = healthy.clone();
        let thread = std::thread::Builder::new()
            .name("store-journal".into())
            .spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    flag.store(false, Ordering::Release);
                    return;
                };
                rt.block_on(mirror_loop(target, row, rx, flag));
            })
            .ok();
        StoreMirror {
            tx,
            healthy,
            thread: std::sync::Mutex::new(thread),
        }
    }

    /// Mark the journal's end in the store (closed when the local journal is), then stop.
    /// Waits for the last copy (bounded by the connect timeout when the store is down).
    pub fn finish(&self) {
        let _ = self.tx.send(Msg::Finish);
        let thread = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

impl journal::Mirror for std::sync::Arc<StoreMirror> {
    fn line(&self, n: u32, line: &str) {
        let wait = self.healthy.load(Ordering::Acquire);
        let (ack, done) = if wait {
            let (a, d) = mpsc::sync_channel(1);
            (Some(a), Some(d))
        } else {
            (None, None)
        };
        if self.tx.send(Msg::Line(n, line.to_string(), ack)).is_err() {
            return;
        }
        if let Some(done) = done {
            if done.recv_timeout(ACK_WAIT).is_err() {
                self.healthy.store(false, Ordering::Release);
                tracing::warn!("the store does not answer: the journal is kept locally and copied when it is back");
            }
        }
    }
}

async fn mirror_loop(
    target: Target,
    row: Row,
    rx: mpsc::Receiver<Msg>,
    healthy: std::sync::Arc<AtomicBool>,
) {
    let mut conn: Option<Store> = None;
    // Everything up to here is in the store (lines are numbered from 1).
    let mut synced: u32 = 0;
    let mut last_try = std::time::Instant::now() - HEARTBEAT;
    loop {
        // This thread's runtime runs nothing else while it waits (the connection is polled
        // only while a statement is awaited).
        let msg = rx.recv_timeout(HEARTBEAT);
        let finish = matches!(
            msg,
            Ok(Msg::Finish) | Err(mpsc::RecvTimeoutError::Disconnected)
        );
        let (line, ack) = match msg {
            Ok(Msg::Line(n, l, a)) => (Some((n, l)), a),
            _ => (None, None),
        };
        // Reconnect at most every RETRY: while the store is
        // away, queued lines pass quickly (the local file has them) instead of each waiting
        // for a connect timeout.
        // At the end too: a journal whose close did not reach the store is closed there by
        // this machine's next run (`Store::catch_up`).
        let due = last_try.elapsed() >= RETRY;
        if conn.as_ref().is_none_or(|c| c.is_closed()) && due {
            last_try = std::time::Instant::now();
            conn = Store::connect_only(target.clone()).await.ok();
            // A new connection may have missed lines: copy the file again from the start.
            synced = 0;
        }
        let mut ok = false;
        if let Some(store) = &conn {
            ok = sync(store, &row, &mut synced, line.as_ref()).await.is_ok();
            if finish && ok {
                let closed = journal::read(&row.path).map(|s| s.closed).unwrap_or(false);
                ok = store
                    .close_journal(&row.header.run_id, closed)
                    .await
                    .is_ok();
            }
        }
        if !ok {
            // A connection that failed a statement (or did not answer in time) is not
            // trusted again: the next attempt starts a new one, RETRY after this failure.
            conn = None;
            last_try = std::time::Instant::now();
        }
        healthy.store(ok, Ordering::Release);
        if ok {
            if let Some(a) = ack {
                let _ = a.send(());
            }
        }
        if finish {
            return;
        }
    }
}

/// Bring the store's copy up to date: the journal's row and heartbeat, then either the one new
/// line (when it follows what is there) or every line of the local file.
async fn sync(
    store: &Store,
    row: &Row,
    synced: &mut u32,
    line: Option<&(u32, String)>,
) -> Result<(), StoreError> {
    store.beat(&row.header, &row.host).await?;
    match line {
        Some((n, l)) if *n == *synced + 1 => {
            store.put_line(&row.header.run_id, *n, l).await?;
            *synced = *n;
        }
        _ => {
            let bytes = crate::platform::fs::read_nofollow(&row.path).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for (i, l) in text.lines().enumerate().skip(*synced as usize) {
                store.put_line(&row.header.run_id, i as u32 + 1, l).await?;
                *synced = i as u32 + 1;
            }
        }
    }
    Ok(())
}

/// A journal another runner left open in the store.
pub struct Foreign {
    pub run_id: String,
    pub host: String,
    pub experiment: String,
    /// How long ago its runner last beat.
    pub silent_for: Duration,
    pub lines: Vec<String>,
}

impl Store {
    /// Create or refresh the journal's row (its heartbeat now).
    async fn beat(&self, h: &Header, host: &str) -> Result<(), StoreError> {
        self.bounded(
            "writing the journal's heartbeat",
            self.client().execute(
                "INSERT INTO firedrill_journals (run_id, host, experiment, environment, scopes)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (run_id) DO UPDATE SET heartbeat_at = now()",
                &[&h.run_id, &host, &h.experiment, &h.environment, &h.scopes],
            ),
        )
        .await?;
        Ok(())
    }

    async fn put_line(&self, run_id: &str, n: u32, line: &str) -> Result<(), StoreError> {
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        self.bounded(
            "copying a journal line",
            self.client().execute(
                "INSERT INTO firedrill_journal_lines (run_id, n, line) VALUES ($1, $2, $3)
                 ON CONFLICT (run_id, n) DO UPDATE SET line = $3",
                &[&run_id, &n, &line],
            ),
        )
        .await?;
        Ok(())
    }

    async fn close_journal(&self, run_id: &str, closed: bool) -> Result<(), StoreError> {
        self.bounded(
            "closing the journal",
            self.client().execute(
                "UPDATE firedrill_journals SET closed = $2, heartbeat_at = now() WHERE run_id = $1",
                &[&run_id, &closed],
            ),
        )
        .await?;
        Ok(())
    }

    /// Journals left open in the store by other runs whose scopes overlap `scopes` (every
    /// open journal when `scopes` is empty).
    pub async fn open_journals(
        &self,
        scopes: &[String],
        except_run: &str,
    ) -> Result<Vec<Foreign>, StoreError> {
        let rows = self.bounded("reading the open journals", self.client().query(
                "SELECT run_id, host, experiment,
                        extract(epoch FROM now() - heartbeat_at)::float8,
                        ARRAY(SELECT line FROM firedrill_journal_lines l WHERE l.run_id = j.run_id ORDER BY n)
                 FROM firedrill_journals j
                 WHERE NOT closed AND (scopes && $1 OR cardinality($1) = 0) AND run_id <> $2
                 ORDER BY heartbeat_at",
                &[&scopes, &except_run],
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|r| Foreign {
                run_id: r.get(0),
                host: r.get(1),
                experiment: r.get(2),
                silent_for: Duration::from_secs_f64(r.get::<_, f64>(3).max(0.0)),
                lines: r.get(4),
            })
            .collect())
    }

    /// Journals of this machine that the store still shows open although their local file is
    /// closed (the store was down when their run ended): brought up to date. Returns how many.
    pub async fn catch_up(&self, state_dir: &Path) -> Result<usize, StoreError> {
        let rows = self
            .bounded(
                "reading this machine's open journals",
                self.client().query(
                    "SELECT run_id FROM firedrill_journals WHERE NOT closed AND host = $1",
                    &[&super::host()],
                ),
            )
            .await?;
        let mut n = 0;
        for r in rows {
            let run_id: String = r.get(0);
            let path = local_path(state_dir, &run_id);
            if journal::read(&path).is_ok_and(|s| s.closed) {
                self.mirror_file(&path).await?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Copy a local journal file (one this runner recovered) into the store, with its state.
    pub async fn mirror_file(&self, path: &Path) -> Result<(), StoreError> {
        let state = journal::read(path).map_err(|e| StoreError::Query {
            dsn: self.shown().to_string(),
            what: "reading a recovered journal".into(),
            cause: e.to_string(),
        })?;
        let row = Row {
            host: super::host(),
            header: state.header.clone(),
            path: path.to_path_buf(),
        };
        let mut synced = 0;
        sync(self, &row, &mut synced, None).await?;
        self.close_journal(&row.header.run_id, state.closed).await
    }
}

/// What [`adopt`] found in the store.
#[derive(Default)]
pub struct Adoption {
    /// Local journal files to recover and then copy back ([`Store::mirror_file`]): those just
    /// written from the store and those this state directory already had.
    pub paths: Vec<PathBuf>,
    /// The journals just written from the store (for messages).
    pub adopted: Vec<Foreign>,
    /// Open journals whose runner was heard from less than [`STALE`] ago: not touched.
    pub beating: Vec<Foreign>,
}

/// The journals the store holds open for runs other than `except_run` whose scopes overlap
/// `scopes` (every scope when empty; only run `only` when given), made recoverable here: one
/// this state directory has (from this machine, or adopted before) is taken as it is; one
/// silent for [`STALE`] is written into `state_dir` ([`materialize`]); one still beating is
/// left alone. The one rule for `run`'s reservation and for `recover`.
pub async fn adopt(
    store: &Store,
    state_dir: &Path,
    scopes: &[String],
    except_run: &str,
    only: Option<&str>,
) -> Result<Adoption, StoreError> {
    let mut out = Adoption::default();
    for f in store.open_journals(scopes, except_run).await? {
        if only.is_some_and(|id| id != f.run_id) {
            continue;
        }
        let local = local_path(state_dir, &f.run_id);
        if f.host == super::host() && local.exists() {
            out.paths.push(local);
        } else if f.silent_for < STALE {
            out.beating.push(f);
        } else {
            match materialize(state_dir, &f).map_err(|e| StoreError::Query {
                dsn: store.shown().to_string(),
                what: format!(
                    "writing run {}'s journal into {}",
                    f.run_id,
                    state_dir.display()
                ),
                cause: e.to_string(),
            })? {
                Some(p) => {
                    out.paths.push(p);
                    out.adopted.push(f);
                }
                None => out.paths.push(local),
            }
        }
    }
    Ok(out)
}

/// Write a journal the store holds as a local file in `state_dir` (unless this machine has
/// it already), so the local recovery reverts it. A child process the runner started lived on
/// its machine: on another machine its line is dropped (a pid here is someone else).
pub fn materialize(state_dir: &Path, f: &Foreign) -> std::io::Result<Option<PathBuf>> {
    let path = local_path(state_dir, &f.run_id);
    if path.exists() {
        return Ok(None);
    }
    let foreign_host = f.host != super::host();
    let mut text = String::new();
    for l in &f.lines {
        if foreign_host && l.starts_with("{\"type\":\"child\"") {
            continue;
        }
        text.push_str(l);
        text.push('\n');
    }
    crate::platform::fs::write_file_atomic(&path, text.as_bytes())?;
    Ok(Some(path))
}

/// Where this machine keeps run `run_id`'s journal.
pub fn local_path(state_dir: &Path, run_id: &str) -> PathBuf {
    journal::journal_dir(state_dir).join(format!("{run_id}.jsonl"))
}
