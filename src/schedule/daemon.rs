//! `firedrill schedule DIR`: runs every scheduled drill of a folder when it is due.
//!
//! Per drill and environment (its scope) at most one run at a time: a tick while the drill
//! still runs or waits out its jitter is skipped and logged (`concurrency: forbid`). A tick
//! outside the environment's windows, in a blackout, or held by the promotion gate is
//! skipped and logged too. Ticks missed while the daemon slept are never replayed in a burst:
//! only the latest runs, and only within `starting-deadline`. Changed files are reloaded
//! between wake-ups. SIGINT/SIGTERM cancel running drills, which revert, then the daemon
//! exits.
//!
//! Time comes through [`Clock`], so tests run the daemon over a compressed clock (tokio's
//! paused time) and the drill runner is a seam ([`Runner`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

// What the daemon prints (a catalog's load errors quote `${env:}` values) is masked.
use crate::eprintln_redacted as eprintln;

use super::catalog::{self, Catalog, Entry};
use super::cron::{due, Due};
use super::promotion::{self, Gate, RunSummary};
use crate::experiment::model::window;

#[derive(clap::Args, Debug, Clone)]
pub struct ScheduleArgs {
    /// Folder of experiments (with firedrill.yaml).
    #[arg(default_value = "experiments")]
    pub dir: PathBuf,
    /// Where reports go, and where the promotion gate reads past runs.
    #[arg(long, default_value = "reports")]
    pub report_dir: PathBuf,
    /// Seed for jitter and every drill's random choices; default: random.
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long to wait for the steady state before injecting and after reverting.
    #[arg(long, default_value = "30s", value_parser = crate::workspace::parse_steady_state_timeout)]
    pub steady_state_timeout: Duration,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464); off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub webhooks: super::notify::WebhookArgs,
}

/// Wall-clock time for the scheduler. `System` reads the real clock; `Virtual` starts at a
/// given instant and advances with tokio's clock, which tests pause and fast-forward.
#[derive(Debug, Clone, Copy)]
pub enum Clock {
    System,
    Virtual {
        wall0: DateTime<Utc>,
        mono0: tokio::time::Instant,
    },
}

impl Clock {
    pub fn starting_at(wall0: DateTime<Utc>) -> Clock {
        Clock::Virtual {
            wall0,
            mono0: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Virtual { wall0, mono0 } => {
                *wall0
                    + chrono::Duration::from_std(mono0.elapsed()).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// Sleeps until `at` by the wall clock, waking at least every `max` to notice clock jumps
    /// and changed files.
    async fn sleep_until(&self, at: DateTime<Utc>, max: Duration) {
        let d = (at - self.now()).to_std().unwrap_or_default().min(max);
        tokio::time::sleep(d).await;
    }
}

/// One run the daemon asks for.
#[derive(Debug, Clone)]
pub struct Job {
    pub file: PathBuf,
    pub experiment: String,
    pub environment: String,
    /// The version scheduled (the file may change while the drill waits or runs).
    pub content_hash: String,
    pub tick: DateTime<Utc>,
    pub seed: u64,
}

/// Runs a job to the end (or until cancelled, after reverting) and returns its summary;
/// `None` when nothing ran (invalid input, already logged).
pub type Runner =
    Arc<dyn Fn(Job, CancellationToken) -> BoxFuture<'static, Option<RunSummary>> + Send + Sync>;

/// What the daemon did, in order: the log, and what tests assert on.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub at: DateTime<Utc>,
    /// `<experiment>/<environment>`
    pub scope: String,
    pub what: What,
}

#[derive(Debug, Clone, PartialEq)]
pub enum What {
    Started {
        tick: DateTime<Utc>,
    },
    Finished {
        outcome: crate::report::record::Outcome,
    },
    Skipped {
        tick: DateTime<Utc>,
        reason: String,
    },
}

/// Per scope: the last tick considered, and the start pending its jitter.
#[derive(Debug, Default)]
struct Scope {
    since: Option<DateTime<Utc>>,
    expr: String,
    pending: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

pub struct Daemon {
    pub dir: PathBuf,
    pub report_dir: PathBuf,
    pub clock: Clock,
    pub runner: Runner,
    pub seed: u64,
    /// The longest sleep between wake-ups (reload checks).
    pub poll: Duration,
    /// Updated after every run and wake-up when `--metrics` is on.
    pub metrics: Option<Arc<super::metrics::Metrics>>,
    /// Webhooks told of starts and finishes, off the daemon's path.
    pub notifier: Option<Arc<super::notify::Notifier>>,
    /// The shared store, when one is configured: the promotion gate's history is read there
    /// (the drills write to it themselves), not from `report_dir`.
    pub store: Option<crate::store::Spec>,
}

impl Daemon {
    /// The runs the promotion gate starts from: the store's when there is one (unreadable:
    /// none, so gated drills stay held), else the reports folder's.
    async fn history(&self) -> Vec<RunSummary> {
        let Some(spec) = &self.store else {
            return promotion::history(&self.report_dir);
        };
        let read = async {
            let store = crate::store::Store::open(spec).await?;
            store.runs().await
        };
        match read.await {
            Ok((runs, errors)) => promotion::history_of(&runs, &errors),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the store's history; gated drills stay held until it answers");
                Vec::new()
            }
        }
    }

    /// Runs until `shutdown` is cancelled; then cancels running drills, waits for their
    /// reverts, and returns every decision made.
    pub async fn run(&self, shutdown: CancellationToken) -> Vec<Decision> {
        let mut log = Vec::new();
        let mut cat = self.reload(None);
        let mut history = self.history().await;
        let mut scopes: BTreeMap<String, Scope> = BTreeMap::new();
        let mut running: BTreeMap<String, CancellationToken> = BTreeMap::new();
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(String, Option<RunSummary>)>();
        let mut tasks = tokio::task::JoinSet::new();

        loop {
            let now = self.clock.now();
            if catalog::stamps(&self.dir) != cat.stamps {
                tracing::info!(dir = %self.dir.display(), "files changed; reloading");
                cat = self.reload(Some(cat));
            }
            let keys: BTreeSet<String> = cat.entries.iter().map(Entry::key).collect();
            scopes.retain(|k, _| keys.contains(k));
            let mut wake = now + chrono::Duration::from_std(self.poll).unwrap_or_default();
            for e in cat.entries.iter() {
                let Some(schedule) = &e.schedule else {
                    continue;
                };
                let key = e.key();
                let scope = scopes.entry(key.clone()).or_default();
                if scope.expr != schedule.expr() || scope.since.is_none() {
                    // New or changed schedule: start counting from now, replay nothing.
                    scope.expr = schedule.expr().to_string();
                    scope.since = Some(now);
                }
                let since = scope.since.unwrap_or(now);
                match due(schedule, since, now, e.env.schedule.starting_deadline) {
                    Due::Nothing => {}
                    Due::Missed { tick, late_by } => {
                        scope.since = Some(now);
                        let reason = format!(
                            "missed by {} (starting-deadline)",
                            humantime::format_duration(round(late_by))
                        );
                        note(&mut log, now, &key, What::Skipped { tick, reason });
                    }
                    Due::Run { tick, dropped } => {
                        scope.since = Some(now);
                        if dropped > 0 {
                            tracing::warn!(scope = %key, dropped, "older missed ticks are not replayed");
                        }
                        let local = tick.with_timezone(&schedule.time_zone());
                        let reason = if running.contains_key(&key) || scope.pending.is_some() {
                            Some("still running (concurrency: forbid)".to_string())
                        } else {
                            window::open_at(
                                &local,
                                &e.env.schedule.windows,
                                &e.env.schedule.blackouts,
                            )
                            .err()
                            .map(|c| c.to_string())
                        };
                        match reason {
                            Some(reason) => {
                                note(&mut log, now, &key, What::Skipped { tick, reason })
                            }
                            None => {
                                let jitter = super::jitter_for(
                                    self.seed,
                                    &e.experiment.name,
                                    &e.env.name,
                                    tick,
                                    e.env.schedule.jitter,
                                );
                                let start =
                                    tick + chrono::Duration::from_std(jitter).unwrap_or_default();
                                scope.pending = Some((tick, start));
                            }
                        }
                    }
                }
                if let Some((tick, start)) = scope.pending {
                    if start <= now {
                        scope.pending = None;
                        let gate = promotion::gate(
                            &history,
                            &e.experiment.name,
                            &e.experiment.source.content_hash,
                            &e.env,
                            now,
                        );
                        if let Gate::Held(h) = gate {
                            let reason = format!("held: {h}");
                            note(&mut log, now, &key, What::Skipped { tick, reason });
                        } else {
                            note(&mut log, now, &key, What::Started { tick });
                            self.notify(vec![super::notify::Event::Started {
                                experiment: e.experiment.name.clone(),
                                environment: e.env.name.clone(),
                            }]);
                            let cancel = shutdown.child_token();
                            running.insert(key.clone(), cancel.clone());
                            let job = Job {
                                file: e.file.clone(),
                                experiment: e.experiment.name.clone(),
                                environment: e.env.name.clone(),
                                content_hash: e.experiment.source.content_hash.clone(),
                                tick,
                                seed: self.seed ^ tick.timestamp() as u64,
                            };
                            let run = (self.runner)(job, cancel);
                            let tx = done_tx.clone();
                            let k = key.clone();
                            tasks.spawn(async move {
                                let summary = run.await;
                                let _ = tx.send((k, summary));
                            });
                        }
                    } else {
                        wake = wake.min(start);
                    }
                }
                if let Some(next) = schedule.next_after(now) {
                    wake = wake.min(next);
                }
                if let Some(m) = &self.metrics {
                    let next = scope
                        .pending
                        .map(|(_, start)| start)
                        .or_else(|| super::next_open(schedule, &e.env.schedule, now));
                    m.set_next_run(&e.experiment.name, &e.env.name, next);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some((key, summary)) = done_rx.recv() => {
                    running.remove(&key);
                    if let Some(s) = summary {
                        note(&mut log, self.clock.now(), &key, What::Finished { outcome: s.outcome });
                        if let Some(m) = &self.metrics {
                            m.record(&s);
                        }
                        self.notify(super::notify::Event::for_finished(&s));
                        history.push(s);
                    }
                }
                _ = self.clock.sleep_until(wake, self.poll) => {}
            }
        }
        tracing::info!(
            running = running.len(),
            "shutting down: cancelling running drills"
        );
        for c in running.values() {
            c.cancel();
        }
        while tasks.join_next().await.is_some() {}
        let mut last = Vec::new();
        while let Ok((key, Some(s))) = done_rx.try_recv() {
            note(
                &mut log,
                self.clock.now(),
                &key,
                What::Finished { outcome: s.outcome },
            );
            last.extend(super::notify::Event::for_finished(&s));
        }
        // Drills cancelled by the shutdown are reported before the daemon exits.
        if let Some(n) = &self.notifier {
            for event in &last {
                n.send(event).await;
            }
        }
        log
    }

    fn notify(&self, events: Vec<super::notify::Event>) {
        if let Some(n) = self.notifier.clone() {
            tokio::spawn(async move {
                for event in &events {
                    n.send(event).await;
                }
            });
        }
    }

    fn reload(&self, previous: Option<Catalog>) -> Catalog {
        let cat = catalog::load(&self.dir);
        for (file, err) in &cat.errors {
            tracing::error!(file = %file.display(), "not scheduled:\n{err}");
        }
        if previous.is_some() {
            tracing::info!(drills = cat.entries.len(), "reloaded");
        }
        cat
    }
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

fn note(log: &mut Vec<Decision>, at: DateTime<Utc>, scope: &str, what: What) {
    match &what {
        What::Started { tick } => tracing::info!(scope, %tick, "starting drill"),
        What::Finished { outcome } => tracing::info!(scope, %outcome, "drill finished"),
        What::Skipped { tick, reason } => tracing::warn!(scope, %tick, reason, "tick skipped"),
    }
    log.push(Decision {
        at,
        scope: scope.to_string(),
        what,
    });
}

/// What every drill the daemon starts shares with the daemon itself.
#[derive(Debug, Clone)]
pub struct ChildSettings {
    /// The `firedrill` binary.
    pub binary: PathBuf,
    /// Where the drills write their reports (and the promotion gate reads them).
    pub report_dir: PathBuf,
    /// The daemon's state directory: the drills' journals, scope locks and halt lever live
    /// there, so `halt` and `recover` pointed at the daemon's directory reach its drills.
    pub state_dir: PathBuf,
    pub steady_state_timeout: Duration,
}

/// The real runner: `firedrill run` as a child process, with `--yes` (a scheduler is the
/// confirmation a protected environment asks for), `--no-live`, the job's seed and the
/// daemon's state and report directories.
///
/// A child per drill keeps the daemon apart from a drill's failures, and every guard of `run`
/// applies unchanged: the scope lock, the journal, the halt lever. Cancelling sends SIGTERM,
/// which makes the drill revert before it exits; the summary is read from the report the
/// child names in its result file (`run --result-file`, [`crate::exit::RunResult`]), never
/// from its terminal output.
pub fn drill_runner(settings: ChildSettings) -> Runner {
    let settings = Arc::new(settings);
    Arc::new(move |job: Job, cancel: CancellationToken| {
        let settings = settings.clone();
        Box::pin(async move { run_child(&settings, &job, cancel).await })
            as BoxFuture<'static, Option<RunSummary>>
    })
}

async fn run_child(
    settings: &ChildSettings,
    job: &Job,
    cancel: CancellationToken,
) -> Option<RunSummary> {
    // The child's result file: a private folder of this run, removed when it is read.
    let result_dir = match tempfile::Builder::new().prefix("firedrill-run-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(error = %e, experiment = job.experiment, "cannot create the drill's result folder");
            return None;
        }
    };
    let result_file = result_dir.path().join("result.json");
    let mut cmd = tokio::process::Command::new(&settings.binary);
    cmd.arg("--state-dir")
        .arg(&settings.state_dir)
        .arg("run")
        .arg(&job.file)
        .args(["--env", &job.environment, "--seed", &job.seed.to_string()])
        .args(["--yes", "--no-live", "--steady-state-timeout"])
        .arg(humantime::format_duration(settings.steady_state_timeout).to_string())
        .arg("--report-dir")
        .arg(&settings.report_dir)
        .arg("--result-file")
        .arg(&result_file)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(false);
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, experiment = job.experiment, "cannot start the drill");
            return None;
        }
    };
    let pid = child.id();
    let output = child.wait_with_output();
    tokio::pin!(output);
    let out = tokio::select! {
        out = &mut output => out,
        _ = cancel.cancelled() => {
            if let Some(pid) = pid {
                // SIGTERM: the drill reverts, writes its report and exits.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            output.await
        }
    };
    let out = match out {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, experiment = job.experiment, "the drill process failed");
            return None;
        }
    };
    let Ok(result) = crate::exit::RunResult::read(&result_file) else {
        tracing::warn!(
            experiment = job.experiment,
            code = out.status.code(),
            "the drill wrote no report (invalid, refused or halted)"
        );
        return None;
    };
    match crate::report::read(&result.report) {
        Ok(record) => Some(RunSummary::from(&record)),
        Err(e) => {
            tracing::error!(error = %e, "cannot read the drill's report");
            None
        }
    }
}

/// `firedrill schedule`: the daemon on the system clock until SIGINT/SIGTERM cancel
/// `shutdown` (the process's root token). Its drills share its `state_dir`.
pub async fn main(
    args: ScheduleArgs,
    state_dir: &std::path::Path,
    store: Option<&crate::store::Spec>,
    shutdown: CancellationToken,
) -> anyhow::Result<crate::exit::Exit> {
    if !args.dir.is_dir() {
        anyhow::bail!("{} is not a folder of experiments", args.dir.display());
    }
    let hooks = match webhooks(&args.webhooks) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("error: {}", crate::platform::render(&e));
            return Ok(crate::exit::Exit::Invalid);
        }
    };
    crate::shutdown::stop_on_interrupt(&shutdown);
    let metrics = match args.metrics {
        None => None,
        Some(addr) => {
            if let Some(w) = super::metrics::exposure_warning(&addr) {
                eprintln!("{w}");
            }
            let m = Arc::new(super::metrics::Metrics::new());
            let bound = super::metrics::serve(m.clone(), addr, shutdown.clone()).await?;
            eprintln!("metrics: http://{bound}/metrics");
            Some(m)
        }
    };
    let daemon = Daemon {
        dir: args.dir.clone(),
        report_dir: args.report_dir.clone(),
        clock: Clock::System,
        runner: drill_runner(ChildSettings {
            binary: std::env::current_exe()?,
            report_dir: args.report_dir.clone(),
            state_dir: state_dir.to_path_buf(),
            steady_state_timeout: args.steady_state_timeout,
        }),
        seed: args.seed.unwrap_or_else(rand::random),
        poll: Duration::from_secs(5),
        metrics,
        notifier: notifier(hooks),
        store: store.cloned(),
    };
    let cat = catalog::load(&args.dir);
    eprintln!(
        "scheduling {} drill(s) from {} (reports in {}, state in {})",
        cat.entries.iter().filter(|e| e.schedule.is_some()).count(),
        args.dir.display(),
        args.report_dir.display(),
        state_dir.display()
    );
    for (file, err) in &cat.errors {
        eprintln!("not scheduled: {}\n{err}\n", file.display());
    }
    daemon.run(shutdown).await;
    Ok(crate::exit::Exit::Passed)
}

/// The webhooks of the schedule's arguments, their URLs registered as secrets. A URL given on
/// the command line is accepted with a warning (it is in the process's arguments).
pub fn webhooks(
    args: &super::notify::WebhookArgs,
) -> Result<Vec<super::notify::Webhook>, super::notify::UrlError> {
    use super::notify::{read_url, Format, UrlSource, Webhook};
    let sources = args
        .slack_webhook_env
        .iter()
        .map(|v| (UrlSource::Env(v.clone()), Format::Slack))
        .chain(
            args.slack_webhook_file
                .iter()
                .map(|f| (UrlSource::File(f.clone()), Format::Slack)),
        )
        .chain(
            args.webhook_env
                .iter()
                .map(|v| (UrlSource::Env(v.clone()), Format::Json)),
        )
        .chain(
            args.webhook_file
                .iter()
                .map(|f| (UrlSource::File(f.clone()), Format::Json)),
        );
    let mut hooks = Vec::new();
    for (source, format) in sources {
        hooks.push(Webhook {
            url: read_url(&source)?,
            format,
        });
    }
    for (url, format) in (args.slack_webhook.iter().map(|u| (u, Format::Slack)))
        .chain(args.webhook.iter().map(|u| (u, Format::Json)))
    {
        crate::safety::redact::register(url);
        let hook = Webhook {
            url: url.clone(),
            format,
        };
        eprintln!(
            "warning: the webhook {} was given on the command line, where every local user sees it in `ps`; pass it with --slack-webhook-env/--webhook-env or a file instead",
            hook.shown()
        );
        hooks.push(hook);
    }
    Ok(hooks)
}

fn notifier(hooks: Vec<super::notify::Webhook>) -> Option<Arc<super::notify::Notifier>> {
    (!hooks.is_empty()).then(|| Arc::new(super::notify::Notifier::new(hooks)))
}
