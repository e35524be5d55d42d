//! The write-ahead journal: before every mutating call the executor records what it is about
//! to do and how to undo it; after the call, whether it was applied. The file is JSON lines,
//! one fsynced record per line, 0600, in `<state-dir>/journal/<run-id>.jsonl`.
//!
//! Guarantees: an intent is durable before the call is made, so a crash at any point leaves a
//! journal from which `firedrill recover` can undo what may have been done. A call whose
//! outcome is unknown (an error, a timeout, a crash mid-call) counts as applied for revert
//! purposes. Recovery is idempotent: reverts are idempotent by contract, each success is
//! recorded, and a journal whose every entry is settled is closed (a second recover does
//! nothing). Irreversible faults are recorded and reported as such, never pretended undone.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::fault::{self, RevertPlan};
use crate::platform::child::{ChildId, Killed};

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("journal {path} is unreadable: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// Who wrote a journal, and for which scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub run_id: String,
    pub pid: u32,
    /// The runner's start time ([`crate::platform::process::process_start`]) and boot
    /// ([`crate::platform::process::boot_id`]): a reused pid is not the runner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    pub experiment: String,
    pub environment: String,
    /// The lock scopes of the run (see [`super::lock`]).
    pub scopes: Vec<String>,
    pub since: String,
    /// The cluster the run talks to, when it has Kubernetes targets: recover deletes what the
    /// run created (NetworkChaos objects) there, not in whatever context is current later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::platform::kube::ClusterRef>,
    /// The run's cluster was simulated inside its own process: what it created there ended
    /// with the process, and recover has no cluster to call.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub embedded_sim: bool,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
enum Record {
    Open(Header),
    /// Written (and fsynced) before the mutating call.
    Intent {
        seq: u64,
        fault: String,
        what: String,
        #[serde(rename = "where")]
        at: String,
        revert: RevertPlan,
    },
    /// The intent's call started a child process (a `command` fault): written as soon as it
    /// exists, so that `recover` can kill it and its process group before reverting.
    Child {
        seq: u64,
        #[serde(flatten)]
        child: ChildId,
    },
    /// The call succeeded; `revert` is the plan the fault returned.
    Applied {
        seq: u64,
        revert: RevertPlan,
    },
    /// The call failed or timed out: it may have been applied.
    MaybeApplied {
        seq: u64,
        error: String,
    },
    Reverted {
        seq: u64,
        detail: String,
    },
    RevertFailed {
        seq: u64,
        error: String,
    },
    /// Every entry is settled; recover skips the journal.
    Closed {
        at: String,
    },
}

/// Where an entry stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The intent is recorded but not the outcome: the process stopped during the call.
    Intended,
    Applied,
    MaybeApplied {
        error: String,
    },
    Reverted {
        detail: String,
    },
    RevertFailed {
        error: String,
    },
}

impl Status {
    /// Whether recovery must still undo it (unknown outcomes count as applied).
    pub fn pending(&self) -> bool {
        !matches!(self, Status::Reverted { .. })
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub seq: u64,
    pub fault: String,
    pub what: String,
    pub at: String,
    pub revert: RevertPlan,
    pub status: Status,
    /// The child process the call started, when it ran a program.
    pub child: Option<ChildId>,
}

/// A journal read back.
#[derive(Debug, Clone)]
pub struct State {
    pub path: PathBuf,
    pub header: Header,
    pub entries: Vec<Entry>,
    pub closed: bool,
    /// Lines (1-based) that a crash tore and that were skipped.
    pub torn: Vec<usize>,
}

impl State {
    /// A warning naming the torn lines, when there are any.
    pub fn torn_warning(&self) -> Option<String> {
        if self.torn.is_empty() {
            return None;
        }
        let lines: Vec<String> = self.torn.iter().map(usize::to_string).collect();
        Some(format!(
            "warning: journal {}: torn line(s) {} skipped (a crash mid-write); every intact record around them was read",
            self.path.display(),
            lines.join(", ")
        ))
    }
}

impl State {
    /// Whether the run that wrote this journal is still running. A running drill holds its
    /// scope locks for its whole life, so a free lock means it is gone, whatever process now
    /// has its pid; a held lock counts only while the pid is still the same process (its start
    /// time and boot), never a bare pid.
    pub fn runner_alive(&self, state_dir: &Path) -> bool {
        let h = &self.header;
        h.pid == std::process::id()
            || (super::lock::any_held(state_dir, &h.scopes)
                && crate::platform::process::same_process(
                    h.pid,
                    h.start_time,
                    h.boot_id.as_deref(),
                ))
    }

    pub fn pending(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.status.pending())
    }
}

/// Where a journal's lines are copied as they are written: the shared store, so that a
/// runner on another machine can recover what a killed one left ([`crate::store::journal`]).
pub trait Mirror: Send + Sync {
    /// Line `n` (1-based, in the file's order) was appended and synced locally. The mirror may
    /// wait briefly for its copy; it never fails the journal.
    fn line(&self, n: u32, line: &str);
}

/// The journal of a running drill.
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
    next: Mutex<u64>,
    /// The journal's directory entry is on disk: done once, before the first mutating call.
    durable: std::sync::atomic::AtomicBool,
    /// Lines in the file so far (the next line's number is one more).
    lines: std::sync::atomic::AtomicU32,
    mirror: OnceLock<Box<dyn Mirror>>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub fn journal_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

/// Opens the journal for appending. When a crash tore its last line, a newline ends the torn
/// line first: otherwise the next record would be glued to it, and lost with it.
fn open_append(path: &Path) -> Result<File, JournalError> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(crate::platform::fs::O_NOFOLLOW)
        .open(path)
        .map_err(io(path))?;
    let len = f.metadata().map_err(io(path))?.len();
    if len > 0 {
        let mut last = [0u8];
        f.seek(SeekFrom::End(-1))
            .and_then(|_| f.read_exact(&mut last))
            .map_err(io(path))?;
        if last[0] != b'\n' {
            f.write_all(b"\n").map_err(io(path))?;
        }
    }
    Ok(f)
}

/// Appends one record; with `sync`, it (and every record before it) is on disk on return.
/// Returns the line as written (without its newline).
fn append(
    file: &mut File,
    path: &Path,
    record: &Record,
    sync: bool,
) -> Result<String, JournalError> {
    let json = serde_json::to_string(record).map_err(|e| JournalError::Corrupt {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    // Secrets at rest are references (`${env:NAME}`), resolved again by whoever reverts.
    let mut line = super::redact::to_references(&json).into_bytes();
    line.push(b'\n');
    file.write_all(&line).map_err(io(path))?;
    if sync {
        file.sync_data().map_err(io(path))?;
    }
    line.pop();
    Ok(String::from_utf8(line).unwrap_or_default())
}

impl Journal {
    /// Creates `<state-dir>/journal/<run-id>.jsonl` and records its header. Nothing is
    /// synced yet: until the first intent there is nothing to recover, and the first
    /// intent's sync makes the header durable with it (the drill's first probe is not kept
    /// waiting on the disk).
    pub fn create(state_dir: &Path, header: Header) -> Result<Journal, JournalError> {
        let dir = journal_dir(state_dir);
        crate::platform::fs::ensure_dir(&dir).map_err(io(&dir))?;
        let path = dir.join(format!("{}.jsonl", header.run_id));
        let mut file = open_append(&path)?;
        append(&mut file, &path, &Record::Open(header), false)?;
        Ok(Journal {
            path,
            file: Mutex::new(file),
            next: Mutex::new(1),
            durable: std::sync::atomic::AtomicBool::new(false),
            lines: std::sync::atomic::AtomicU32::new(1),
            mirror: OnceLock::new(),
        })
    }

    /// Copy every line, those written so far and each one from now on, to `mirror`.
    pub fn set_mirror(&self, mirror: Box<dyn Mirror>) {
        // Under the file's lock: no line is written between the replay and the hook.
        let _f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(bytes) = crate::platform::fs::read_nofollow(&self.path) {
            for (i, line) in String::from_utf8_lossy(&bytes).lines().enumerate() {
                mirror.line(i as u32 + 1, line);
            }
        }
        let _ = self.mirror.set(mirror);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self, record: &Record) -> Result<(), JournalError> {
        let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let line = append(&mut f, &self.path, record, true)?;
        let n = self.lines.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        if let Some(m) = self.mirror.get() {
            m.line(n, &line);
        }
        // The file's data is on disk; its name in the directory must be too, once.
        if !self.durable.swap(true, std::sync::atomic::Ordering::AcqRel) {
            if let Some(dir) = self.path.parent() {
                File::open(dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io(dir))?;
            }
        }
        Ok(())
    }

    /// Records the intent before the mutating call; the call must not be made on error.
    pub fn intent(
        &self,
        fault: &str,
        what: &str,
        at: &str,
        revert: &RevertPlan,
    ) -> Result<u64, JournalError> {
        let seq = {
            let mut n = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let s = *n;
            *n += 1;
            s
        };
        self.write(&Record::Intent {
            seq,
            fault: fault.into(),
            what: super::redact::text(what),
            at: super::redact::text(at),
            revert: revert.clone(),
        })?;
        Ok(seq)
    }

    /// Records the child process an intent's call started (pid, process group, start time).
    pub fn child(&self, seq: u64, child: ChildId) -> Result<(), JournalError> {
        self.write(&Record::Child { seq, child })
    }

    pub fn applied(&self, seq: u64, revert: &RevertPlan) -> Result<(), JournalError> {
        self.write(&Record::Applied {
            seq,
            revert: revert.clone(),
        })
    }

    pub fn maybe_applied(&self, seq: u64, error: &str) -> Result<(), JournalError> {
        self.write(&Record::MaybeApplied {
            seq,
            error: super::redact::text(error),
        })
    }

    pub fn reverted(&self, seq: u64, detail: &str) -> Result<(), JournalError> {
        self.write(&Record::Reverted {
            seq,
            detail: super::redact::text(detail),
        })
    }

    pub fn revert_failed(&self, seq: u64, error: &str) -> Result<(), JournalError> {
        self.write(&Record::RevertFailed {
            seq,
            error: super::redact::text(error),
        })
    }

    /// Closes the journal when every entry is settled; otherwise leaves it for `recover`.
    pub fn finish(&self) -> Result<bool, JournalError> {
        let state = read(&self.path)?;
        if state.pending().next().is_some() {
            return Ok(false);
        }
        self.write(&Record::Closed {
            at: crate::platform::now_rfc3339(),
        })?;
        Ok(true)
    }
}

/// The environment variable of a `${env:NAME}` reference left unresolved in `plan` (not set
/// in this process), if any.
fn unset_secret(plan: &RevertPlan) -> Option<String> {
    let json = serde_json::to_string(plan).ok()?;
    let (_, unset) = crate::experiment::interp::from_references(&json);
    unset.into_iter().next()
}

/// One line as a record. A line torn by a crash may have had the next record appended to it
/// (by a writer that did not know it was torn): that record, at the last `{"type":`, is kept.
fn parse_line(line: &str) -> Option<Record> {
    let (line, _unset) = crate::experiment::interp::from_references(line);
    let line = line.as_str();
    if let Ok(r) = serde_json::from_str(line) {
        return Some(r);
    }
    let at = line.rfind("{\"type\":").filter(|&i| i > 0)?;
    serde_json::from_str(&line[at..]).ok()
}

/// Reads a journal back. A torn line (a crash mid-write) is skipped and named in
/// [`State::torn`]; every intact record before and after it is read, so no intact revert
/// plan is lost. (A torn intent's call was never made: calls follow a complete, fsynced
/// intent.)
pub fn read(path: &Path) -> Result<State, JournalError> {
    let bytes = crate::platform::fs::read_nofollow(path).map_err(io(path))?;
    let text = String::from_utf8_lossy(&bytes);
    let corrupt = |message: String| JournalError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let mut header = None;
    let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
    let mut closed = false;
    let mut torn = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let record = match parse_line(line) {
            Some(r) => r,
            None => {
                torn.push(i + 1);
                continue;
            }
        };
        let set = |entries: &mut BTreeMap<u64, Entry>, seq: u64, status: Status| {
            if let Some(e) = entries.get_mut(&seq) {
                e.status = status;
            }
        };
        match record {
            Record::Open(h) => header = Some(h),
            Record::Intent {
                seq,
                fault,
                what,
                at,
                revert,
            } => {
                entries.insert(
                    seq,
                    Entry {
                        seq,
                        fault,
                        what,
                        at,
                        revert,
                        status: Status::Intended,
                        child: None,
                    },
                );
            }
            Record::Child { seq, child } => {
                if let Some(e) = entries.get_mut(&seq) {
                    e.child = Some(child);
                }
            }
            Record::Applied { seq, revert } => {
                if let Some(e) = entries.get_mut(&seq) {
                    e.revert = revert;
                    e.status = Status::Applied;
                }
            }
            Record::MaybeApplied { seq, error } => {
                set(&mut entries, seq, Status::MaybeApplied { error })
            }
            Record::Reverted { seq, detail } => set(&mut entries, seq, Status::Reverted { detail }),
            Record::RevertFailed { seq, error } => {
                set(&mut entries, seq, Status::RevertFailed { error })
            }
            Record::Closed { .. } => closed = true,
        }
    }
    let header = header.ok_or_else(|| corrupt("no intact header line".into()))?;
    Ok(State {
        path: path.to_path_buf(),
        header,
        entries: entries.into_values().collect(),
        closed,
        torn,
    })
}

/// Every journal in the state directory, oldest run first. Unreadable ones are returned as
/// errors so that recover can name them.
pub fn list(state_dir: &Path) -> Vec<Result<State, JournalError>> {
    let dir = journal_dir(state_dir);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    paths.iter().map(|p| read(p)).collect()
}

/// What recovering one entry did.
#[derive(Debug, Clone)]
pub struct Recovered {
    pub fault: String,
    pub what: String,
    pub at: String,
    pub result: RecoverResult,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecoverResult {
    Reverted(String),
    /// Nothing firedrill can undo; `why` says who heals it.
    Irreversible(String),
    Failed(String),
}

/// Undoes every pending entry of a journal (newest first), records each result, and closes
/// the journal when nothing is left. Returns what it did (empty when there was nothing).
pub async fn recover(path: &Path) -> Result<Vec<Recovered>, JournalError> {
    recover_with(path, true).await
}

/// [`recover`], closing the journal (when everything was settled) only with `close`: a
/// journal whose drill goes on is left for the drill to close.
async fn recover_with(path: &Path, close: bool) -> Result<Vec<Recovered>, JournalError> {
    // One recovery of a journal at a time: a run's watchdog and a `recover` started by hand
    // (or the next run of the scope) may reach it together. The second waits for the first
    // and then finds the journal closed, instead of reverting twice.
    let owned = path.to_path_buf();
    let locked = tokio::task::spawn_blocking(move || {
        let file = open_append(&owned)?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io(&owned)(std::io::Error::from(e)))
    })
    .await
    .map_err(|e| io(path)(std::io::Error::other(e)))?;
    let mut file = locked?;
    let state = read(path)?;
    if state.closed {
        return Ok(vec![]);
    }
    let mut out = Vec::new();
    let pending: Vec<Entry> = state.pending().cloned().collect();
    for e in pending.iter().rev() {
        // The injector may still be running (its runner was killed mid-call) and would apply
        // the fault after the revert: it and everything it started go first.
        let killed = match &e.child {
            Some(child) => Some(crate::platform::child::kill_group(child, CHILD_WAIT).await),
            None => None,
        };
        if let Some(Killed::Survived(pids)) = &killed {
            let error = format!(
                "the injector's process group {} survived SIGKILL (pids {pids:?}); not reverting under it",
                e.child.map(|c| c.pgid).unwrap_or_default()
            );
            append(
                &mut file,
                path,
                &Record::RevertFailed {
                    seq: e.seq,
                    error: error.clone(),
                },
                true,
            )?;
            out.push(Recovered {
                fault: e.fault.clone(),
                what: e.what.clone(),
                at: e.at.clone(),
                result: RecoverResult::Failed(error),
            });
            continue;
        }
        let killed_note = match killed {
            Some(Killed::Killed(n)) => format!(
                " (first killed {n} process(es) of the injector's group {})",
                e.child.map(|c| c.pgid).unwrap_or_default()
            ),
            _ => String::new(),
        };
        let result = match &e.revert {
            RevertPlan::Irreversible { why } => {
                append(
                    &mut file,
                    path,
                    &Record::Reverted {
                        seq: e.seq,
                        detail: format!("irreversible: {why}"),
                    },
                    true,
                )?;
                RecoverResult::Irreversible(why.clone())
            }
            plan => {
                // A secret the run read from its environment is journalled as a reference; a
                // revert that needs it cannot run without it.
                let attempt = match unset_secret(plan) {
                    Some(name) => Err(format!(
                        "the revert needs the secret the run read from environment variable `{name}`, which is not set here; export it and run `firedrill recover` again"
                    )),
                    None => revert_replayed(plan, &state.header)
                        .await
                        .map(|detail| super::redact::text(&format!("{detail}{killed_note}")))
                        .map_err(|err| super::redact::text(&err.render())),
                };
                let (record, result) = match attempt {
                    Ok(detail) => (
                        Record::Reverted {
                            seq: e.seq,
                            detail: detail.clone(),
                        },
                        RecoverResult::Reverted(detail),
                    ),
                    Err(error) => (
                        Record::RevertFailed {
                            seq: e.seq,
                            error: error.clone(),
                        },
                        RecoverResult::Failed(error),
                    ),
                };
                append(&mut file, path, &record, true)?;
                result
            }
        };
        out.push(Recovered {
            fault: e.fault.clone(),
            what: e.what.clone(),
            at: e.at.clone(),
            result,
        });
    }
    if close
        && out
            .iter()
            .all(|r| !matches!(r.result, RecoverResult::Failed(_)))
    {
        append(
            &mut file,
            path,
            &Record::Closed {
                at: crate::platform::now_rfc3339(),
            },
            true,
        )?;
    }
    Ok(out)
}

/// How long recover waits for a killed injector's process group to be gone.
const CHILD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The journal of the drill running in this process, for the panic hook.
static CURRENT: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();

fn current() -> &'static Mutex<Option<PathBuf>> {
    CURRENT.get_or_init(|| Mutex::new(None))
}

pub fn set_current(path: Option<PathBuf>) {
    *current().lock().unwrap_or_else(|e| e.into_inner()) = path;
}

/// The drill's cancellation, which a panic on another thread than the main one triggers.
static CANCEL: OnceLock<Mutex<Option<tokio_util::sync::CancellationToken>>> = OnceLock::new();

fn cancel_on_panic() -> &'static Mutex<Option<tokio_util::sync::CancellationToken>> {
    CANCEL.get_or_init(|| Mutex::new(None))
}

/// Stops the drill (which then reverts and ends aborted) when a thread other than the main
/// one panics: the process goes on after such a panic (tokio catches a task's panic).
pub fn set_cancel_on_panic(token: Option<tokio_util::sync::CancellationToken>) {
    *cancel_on_panic().lock().unwrap_or_else(|e| e.into_inner()) = token;
}

/// Installs a panic hook that, after the default message, reverts the current journal. It
/// runs the reverts on a fresh thread with a small current-thread runtime, because the
/// panicking thread may be a runtime worker (where a nested runtime is refused) and the
/// process's runtime may be gone.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        // Only a panic on the main thread ends the process: then the journal is reverted and
        // closed here. Any other thread's panic (a task's, caught by tokio) leaves the drill
        // running: its faults are reverted at once, the drill is stopped (it reverts again,
        // idempotently, and ends aborted), and the journal stays open for it to close.
        let fatal = std::thread::current().name() == Some("main");
        let path = {
            let mut cur = current().lock().unwrap_or_else(|e| e.into_inner());
            if fatal {
                cur.take()
            } else {
                cur.clone()
            }
        };
        let Some(path) = path else {
            return;
        };
        // Nothing in the hook may panic (a panic in a panic hook aborts, and the fault
        // stays): every message goes through the writer that ignores a closed stderr.
        let say = |line: String| super::redact::print_stderr(&format!("{line}\n"));
        say(format!(
            "firedrill panicked: reverting every fault in {}",
            path.display()
        ));
        let worker = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    say(format!(
                        "cannot start a runtime to revert: {e}; run `firedrill recover`"
                    ));
                    return;
                }
            };
            match rt.block_on(recover_with(&path, fatal)) {
                Ok(done) => {
                    for r in done {
                        say(super::redact::text(&describe(&r)));
                    }
                }
                Err(e) => say(format!(
                    "{}; run `firedrill recover`",
                    super::redact::text(&e.to_string())
                )),
            }
        });
        let _ = worker.join();
        if !fatal {
            if let Some(c) = cancel_on_panic()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
            {
                c.cancel();
            }
        }
    }));
}

/// One line per recovered entry, for people.
pub fn describe(r: &Recovered) -> String {
    match &r.result {
        RecoverResult::Reverted(d) => format!("reverted {} ({}): {d}", r.fault, r.at),
        RecoverResult::Irreversible(why) => {
            format!(
                "irreversible {} ({}): nothing to revert: {why}",
                r.fault, r.at
            )
        }
        RecoverResult::Failed(e) => format!("REVERT FAILED {} ({}): {e}", r.fault, r.at),
    }
}

/// Replays one undo record. What a replayed revert can use: a Kubernetes client for the
/// cluster the run pinned in its header (journals written before runs pinned it fall back to
/// the default kubeconfig) when the plan deletes an object, uncordons nodes or powers them on. The drill's own proxies ended with
/// its process, and their toxics with them.
async fn revert_replayed(plan: &RevertPlan, header: &Header) -> Result<String, fault::FaultError> {
    let mut ctx = fault::RevertContext::default();
    let on_cluster = matches!(
        plan,
        RevertPlan::KubeDelete { .. } | RevertPlan::Uncordon { .. } | RevertPlan::SimPowerOn { .. }
    );
    if on_cluster && header.embedded_sim {
        return Ok(format!(
            "nothing to {}: it lived in the run's embedded simulated cluster, which ended with it",
            plan.describe()
        ));
    }
    if on_cluster {
        let cluster = header.cluster.clone().unwrap_or_default();
        let client = crate::platform::kube::client_for_cluster(&cluster)
            .await
            .map_err(|e| {
                fault::FaultError::revert(format!(
                    "cannot reach the run's cluster (context `{}`): {e}",
                    cluster.context.as_deref().unwrap_or("in-cluster")
                ))
            })?;
        ctx.kube = Some(client);
    }
    fault::revert(plan, &ctx).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header(run: &str) -> Header {
        Header {
            run_id: run.into(),
            pid: 1,
            start_time: None,
            boot_id: None,
            experiment: "x".into(),
            environment: "local".into(),
            scopes: vec!["local/experiment/x".into()],
            since: "now".into(),
            cluster: None,
            embedded_sim: false,
        }
    }

    #[tokio::test]
    async fn recover_reverts_unknown_outcomes_once_and_names_irreversible_faults() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("reverted");
        let j = Journal::create(dir.path(), header("r1")).unwrap();
        let touch = RevertPlan::Command {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("echo x >> {}", marker.display()),
            ],
            timeout: Duration::from_secs(5),
        };
        let a = j.intent("command a", "run a", "here", &touch).unwrap();
        j.maybe_applied(a, "timed out").unwrap();
        let b = j
            .intent(
                "pod-kill web",
                "delete",
                "shop",
                &RevertPlan::Irreversible {
                    why: "the controller replaces it".into(),
                },
            )
            .unwrap();
        j.applied(
            b,
            &RevertPlan::Irreversible {
                why: "the controller replaces it".into(),
            },
        )
        .unwrap();
        // A crash during the third call: only its intent is on disk.
        let _c = j.intent("command c", "run c", "here", &touch).unwrap();
        assert!(!j.finish().unwrap(), "pending entries keep it open");
        drop(j);

        let path = journal_dir(dir.path()).join("r1.jsonl");
        let first = recover(&path).await.unwrap();
        assert_eq!(first.len(), 3);
        assert!(matches!(first[1].result, RecoverResult::Irreversible(_)));
        assert_eq!(fs::read_to_string(&marker).unwrap().lines().count(), 2);
        assert!(read(&path).unwrap().closed);
        let second = recover(&path).await.unwrap();
        assert!(second.is_empty());
        assert_eq!(fs::read_to_string(&marker).unwrap().lines().count(), 2);
    }

    #[tokio::test]
    async fn objects_of_an_embedded_simulation_are_not_looked_for_in_another_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let mut h = header("r3");
        h.embedded_sim = true;
        let j = Journal::create(dir.path(), h).unwrap();
        let plan = RevertPlan::KubeDelete {
            api_version: "chaos-mesh.org/v1alpha1".into(),
            kind: "NetworkChaos".into(),
            namespace: "shop".into(),
            name: "firedrill-r3-f1-1".into(),
        };
        j.intent("loss chaos-mesh", "create", "shop", &plan)
            .unwrap();
        let path = j.path().to_path_buf();
        drop(j);
        // No cluster is reachable from a unit test: a call would fail, not revert.
        let done = recover(&path).await.unwrap();
        assert_eq!(done.len(), 1);
        let RecoverResult::Reverted(detail) = &done[0].result else {
            panic!("{:?}", done[0].result)
        };
        assert!(detail.contains("ended with it"), "{detail}");
    }

    #[tokio::test]
    async fn a_torn_line_in_the_middle_keeps_every_intact_record_and_the_next_append_is_not_glued()
    {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("reverted");
        let j = Journal::create(dir.path(), header("r4")).unwrap();
        let path = j.path().to_path_buf();
        let touch = RevertPlan::Command {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("echo x >> {}", marker.display()),
            ],
            timeout: Duration::from_secs(5),
        };
        let a = j.intent("command a", "run a", "here", &touch).unwrap();
        drop(j);
        // A crash tore a line; a later writer appends after it.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"applied\",\"se").unwrap();
        drop(f);
        let mut f = open_append(&path).unwrap();
        append(
            &mut f,
            &path,
            &Record::Applied {
                seq: a,
                revert: touch.clone(),
            },
            true,
        )
        .unwrap();
        f.write_all(b"garbage\n").unwrap();
        let s = read(&path).unwrap();
        assert_eq!(s.torn, vec![3, 5]);
        assert_eq!(s.entries.len(), 1);
        assert_eq!(
            s.entries[0].status,
            Status::Applied,
            "the append after the tear"
        );
        let done = recover(&path).await.unwrap();
        assert_eq!(done.len(), 1);
        assert_eq!(fs::read_to_string(&marker).unwrap().lines().count(), 1);
        assert!(read(&path).unwrap().closed);
    }

    #[test]
    fn a_torn_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), header("r2")).unwrap();
        let path = j.path().to_path_buf();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"type\":\"intent\",\"se").unwrap();
        let s = read(&path).unwrap();
        assert!(s.entries.is_empty() && !s.closed);
    }
}
