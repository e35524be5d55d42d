//! `firedrill run`: one drill, read as its steps — [`resolve`] the environment and the
//! experiment, pass the [`gates`] (listed environment, promotion gate, writable outputs, the
//! protected-environment guard), [`reserve`] its scopes (one [`Reservation`] of the scope
//! locks and cluster Leases, released on every path), [`prepare`] the plan (proxies, faults,
//! journal, watchdog), [`execute`] it under the run's cancellation token, and [`finish`]
//! (report, terminal view, metrics, CI outputs, result file).
//!
//! One run id is created once, before the scopes are reserved: the lock, the Lease, the plan,
//! the journal, the report and the proxy toxics all carry it, so the run a busy scope names is
//! the one `recover --run` finds. One tracing span (`run`, with run_id, experiment and env)
//! wraps the steps, so client logs and retries are tied to the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::drill::{self, Options, Plan};
use crate::experiment::{self, Environment, UnsetEnv};
use crate::fault::BuildContext;
use crate::report;
use crate::safety::lock::Reservation;
use crate::safety::{self, halt, journal, lock};
use crate::store::{self, Store};
#[cfg(debug_assertions)]
use crate::timeline::EventKind;
use crate::timeline::{human, Clock, Event};
use crate::workspace;
// Every line this module prints goes through the central redactor.
use crate::eprintln_redacted as eprintln;

use super::args::RunArgs;
use super::ci::{ci_outputs, outputs_writable};
use super::live::event_text;
use super::sim::{kube_sources, needs_kube, start_simulation};
use super::Exit;
use crate::exit::RunResult;

/// The drill, its environment and what runs for it in this process, before anything is
/// reserved or touched.
struct Resolved {
    /// The shared store, open (and its halt checked) before anything else is decided.
    store: Option<Arc<Store>>,
    env: Environment,
    exp: experiment::Experiment,
    sim: Option<crate::sim::SimHandle>,
    seed: u64,
    /// `--in-cluster`: the cluster this process runs in, not the environment's context.
    in_cluster: bool,
}

/// What the scopes' reservation brought: the cluster a run talks to.
struct Cluster {
    /// The shared store: its connection holds the run's scope locks until the run ends.
    store: Option<Arc<Store>>,
    kube: Option<kube::Client>,
    /// The cluster pinned in the journal (only one that outlives this process).
    pinned: Option<crate::platform::kube::ClusterRef>,
}

/// Who this run is, decided once before anything is reserved: the scope lock, the Lease, the
/// plan, the journal, the report and the proxy toxics all carry this run id.
struct Identity {
    run_id: String,
    /// When the run reserved its scopes (RFC 3339).
    since: String,
    scopes: Vec<String>,
}

impl Identity {
    fn new(r: &Resolved) -> Identity {
        Identity {
            run_id: drill::plan::new_run_id(),
            since: crate::platform::now_rfc3339(),
            scopes: lock::scopes(&r.exp, &r.env.name, r.sim.is_some()),
        }
    }
}

pub(super) async fn run(
    args: RunArgs,
    state_dir: &Path,
    store: Option<&store::Spec>,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    let resolved = match resolve(&args, state_dir, store).await {
        Ok(r) => r,
        Err(exit) => return Ok(exit),
    };
    if let Err(exit) = gates(&args, &resolved).await {
        return Ok(exit);
    }
    // Webhook URLs are read (and registered as secrets) before anything is touched.
    let notifier = match crate::schedule::daemon::webhooks(&args.webhooks) {
        Ok(hooks) if hooks.is_empty() => None,
        Ok(hooks) => Some(crate::schedule::notify::Notifier::new(hooks)),
        Err(e) => {
            eprintln!(
                "error: {}\nnothing was touched",
                crate::platform::render(&e)
            );
            return Ok(Exit::Invalid);
        }
    };
    let id = Identity::new(&resolved);
    let span = tracing::info_span!(
        "run",
        run_id = %id.run_id,
        experiment = %resolved.exp.name,
        env = %resolved.env.name
    );
    async move {
        let (reservation, cluster) = match reserve(state_dir, &resolved, &id).await {
            Ok(r) => r,
            Err(exit) => return Ok(exit),
        };
        // Everything from here on runs under the reservation, which is released once, on
        // whatever path the run ends (and by its `Drop` should a path skip this).
        if let Some(n) = &notifier {
            n.send(&crate::schedule::notify::Event::Started {
                experiment: resolved.exp.name.clone(),
                environment: resolved.env.name.clone(),
            })
            .await;
        }
        let scopes = id.scopes.clone();
        let result = match prepare(state_dir, resolved, &cluster, id).await {
            Ok(prepared) => {
                let done = execute(&args, state_dir, prepared, &cluster, shutdown).await;
                finish(
                    &args,
                    state_dir,
                    done,
                    cluster.store.as_deref(),
                    notifier.as_ref(),
                )
                .await
            }
            Err(exit) => Ok(exit),
        };
        reservation.release().await;
        if let Some(s) = cluster.store.as_ref().filter(|s| !s.is_closed()) {
            // Its connection ending would release them too (this process exits next); this
            // is at once, when the store still answers.
            let _ = tokio::time::timeout(Duration::from_secs(1), s.unlock_scopes(&scopes)).await;
        }
        result
    }
    .instrument(span)
    .await
}

/// The environment, the experiment loaded for it (with a simulated cluster's URLs), and the
/// refusals that need no more than that: a missing baseline, an unusable state directory, the
/// halt lever.
async fn resolve(
    args: &RunArgs,
    state_dir: &Path,
    store: Option<&store::Spec>,
) -> Result<Resolved, Exit> {
    let file = &args.file;
    let (env, known) = match workspace::environment(file, &args.env) {
        Ok(x) => x,
        Err(d) => {
            eprintln!("{d}");
            return Err(Exit::Invalid);
        }
    };
    if let Some(b) = args.baseline.as_ref().filter(|b| !b.exists()) {
        if b.as_os_str() != super::ci::BASELINE_STORE {
            eprintln!("error: baseline {} does not exist", b.display());
            return Err(Exit::Invalid);
        }
        if store.is_none() {
            eprintln!(
                "error: --baseline {} reads the shared store, and none is configured\n  = help: set {} or pass --store",
                super::ci::BASELINE_STORE,
                store::ENV
            );
            return Err(Exit::Invalid);
        }
    }
    // A state directory that cannot be used is not a halt: say what is wrong with it.
    if let Some(problem) = halt::state_dir_problem(state_dir) {
        eprintln!("error: {problem}\n  = help: point --state-dir (or FIREDRILL_STATE_DIR) at a directory this user can write");
        return Err(Exit::Invalid);
    }
    // The halt lever refuses before anything starts.
    if let Some(h) = halt::current(state_dir) {
        eprintln!(
            "error: {}\n  = help: `firedrill halt --release` lifts it",
            h.describe()
        );
        return Err(Exit::Refused);
    }
    // The shared store answers before anything starts, or nothing starts: its locks, its
    // halt and the record's home are part of the run.
    let store = match super::store::open(store).await? {
        Some(s) => Some(Arc::new(store_ready(s, state_dir).await?)),
        None => None,
    };
    let seed = args.seed.unwrap_or_else(rand::random);

    // A simulated cluster starts before the full load: its URLs are variables.
    let mut sim = None;
    let mut extra = BTreeMap::new();
    // Read once: the simulation's URLs and the drill come from the same version of the file.
    let bytes = match experiment::read_capped(file) {
        Ok(b) => b,
        Err(d) => {
            eprintln!("{d}");
            return Err(Exit::Invalid);
        }
    };
    if let Some((handle, vars)) = start_simulation(file, &bytes, &env, seed).await? {
        extra.extend(vars);
        sim = Some(handle);
    }
    let loaded = match workspace::load(file, &bytes, &env, &known, &extra, UnsetEnv::Refuse) {
        Ok(l) => l,
        Err(d) => {
            eprintln!("{d}");
            return Err(Exit::Invalid);
        }
    };
    for w in &loaded.warnings {
        eprintln!("{w}\n");
    }
    let mut exp = loaded.experiment;
    crate::experiment::secrets::register(&exp);
    if let Some(n) = args.repeat {
        exp.repeat = n;
    }
    Ok(Resolved {
        store,
        env,
        exp,
        sim,
        seed,
        in_cluster: args.in_cluster,
    })
}

/// The store's side of starting: records spooled while it was down are uploaded, and its halt
/// refuses like the local one.
async fn store_ready(s: Store, state_dir: &Path) -> Result<Store, Exit> {
    match store::spool::upload(state_dir, &s).await {
        Ok(up) if up.new + up.known > 0 => eprintln!(
            "uploaded {} record(s) spooled while the store was down",
            up.new + up.known
        ),
        Ok(_) => {}
        Err(e) => eprintln!("warning: spooled records stay for the next run: {e}"),
    }
    if let Err(e) = s.catch_up(state_dir).await {
        eprintln!(
            "warning: the store still shows some of this machine's finished journals open: {e}"
        );
    }
    match s.halt().await {
        Ok(None) => Ok(s),
        Ok(Some(h)) => {
            eprintln!(
                "error: {}\n  = help: `firedrill halt --release` (with the store) lifts it; nothing was touched",
                h.describe()
            );
            Err(Exit::Refused)
        }
        Err(e) => {
            eprintln!("error: {e}\nnot starting: a halt set in the store must never be missed; nothing was touched");
            Err(Exit::Refused)
        }
    }
}

/// The checks before anything is reserved or touched.
async fn gates(args: &RunArgs, r: &Resolved) -> Result<(), Exit> {
    let (env, exp) = (&r.env, &r.exp);
    if env.name != "local" && !exp.environments.contains(&env.name) {
        eprintln!(
            "error: drill `{}` does not list environment `{}`\n  = help: add it to `environments:` in {}",
            exp.name,
            env.name,
            args.file.display()
        );
        return Err(Exit::Invalid);
    }
    schedule_rules(args, env, exp)?;
    promotion_gate(args, env, exp, r.store.as_deref()).await?;
    // Every output is created and test-written before anything is injected: a drill never runs
    // against its target for results it cannot keep.
    if let Err(e) = outputs_writable(args, &exp.name, &env.name) {
        eprintln!("error: {e}\n  = help: fix the path or its permissions; nothing was touched");
        return Err(Exit::Invalid);
    }
    guard(args, env, exp, r.sim.is_some())
}

/// One drill per scope: the scope locks of this machine, then (on a real cluster) the cluster's
/// halt and a Lease per namespace scope, all in one [`Reservation`]. Journals a gone run left in
/// these scopes are recovered first.
async fn reserve(
    state_dir: &Path,
    r: &Resolved,
    id: &Identity,
) -> Result<(Reservation, Cluster), Exit> {
    let scopes = &id.scopes;
    let holder = &lock::Holder::this_process(&id.run_id, &r.exp.name, &id.since);
    let scope_lock = match lock::acquire(state_dir, scopes, holder) {
        Ok(l) => l,
        Err(e @ lock::LockError::Held { .. }) => {
            eprintln!("error: {e}\n  = help: wait for it to finish, or stop it (Ctrl-C in its terminal, or `firedrill halt`)");
            return Err(Exit::Refused);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Err(Exit::Internal);
        }
    };
    let mut reservation = Reservation::new(scope_lock);
    // Across machines: the store's advisory locks, and the journals runners that are gone
    // left open there.
    let mut foreign = Vec::new();
    if let Some(s) = &r.store {
        match s.lock_scopes(scopes, holder).await {
            Ok(()) => {}
            Err(e @ store::locks::StoreLockError::Held(_)) => {
                eprintln!("error: {e}\n  = help: wait for it to finish, or stop it (`firedrill halt` with the store)");
                return Err(Exit::Refused);
            }
            Err(store::locks::StoreLockError::Store(e)) => {
                eprintln!("error: {e}\nnot starting: the store's scope locks are how runners exclude each other; nothing was touched");
                return Err(Exit::Refused);
            }
        }
        foreign = match adopt_foreign_journals(s, state_dir, scopes, &id.run_id).await {
            Ok(f) => f,
            Err(exit) => return Err(exit),
        };
    }
    if !recover_stale(state_dir, scopes).await {
        return Err(Exit::Refused);
    }
    if let Some(s) = &r.store {
        for path in &foreign {
            if let Err(e) = s.mirror_file(path).await {
                eprintln!(
                    "warning: the store does not show the recovery of {}: {e}",
                    path.display()
                );
            }
        }
    }
    // The cluster is pinned for the journal only when it outlives this process (an embedded
    // simulation ends with it).
    let (kube, pinned) = if !needs_kube(&r.exp) {
        (None, None)
    } else if let Some(handle) = &r.sim {
        match handle.kube_client().await {
            Ok(c) => (Some(c), None),
            Err(e) => {
                eprintln!("error: {e:#}");
                return Err(Exit::Internal);
            }
        }
    } else {
        let context = if r.in_cluster {
            None
        } else {
            r.env.kube_context.as_deref()
        };
        match crate::platform::kube::client_for(context).await {
            Ok((c, cluster)) => (Some(c), Some(cluster)),
            Err(e) => {
                eprintln!("error: {e}\n  = help: set `kube-context` for environment `{}` in firedrill.yaml, or give the experiment a `simulation` to run it on the embedded simulated cluster", r.env.name);
                return Err(Exit::Refused);
            }
        }
    };
    match match &kube {
        Some(c) => halt::in_cluster(c).await,
        None => Ok(None),
    } {
        Ok(None) => {}
        Ok(Some(h)) => {
            eprintln!(
                "error: {}\n  = help: delete the ConfigMap (or its `{}` annotation) to lift it",
                h.describe(),
                halt::CLUSTER_ANNOTATION
            );
            return Err(Exit::Refused);
        }
        Err(e) => {
            eprintln!(
                "error: {e}\nnot starting: a halt set in the cluster must never be missed\n  = help: grant `get` on ConfigMap {}/{} (deploy's Role does), or check the API; nothing was touched",
                halt::CLUSTER_NAMESPACE,
                halt::CLUSTER_CONFIGMAP
            );
            return Err(Exit::Refused);
        }
    }
    // Drills on other machines share the cluster, not this state directory: a Lease per
    // namespace scope. An API that refuses leases (RBAC) only warns; the file lock stands.
    if let (Some(c), None) = (&kube, &r.sim) {
        for ns in scopes
            .iter()
            .filter_map(|s| s.split_once("/kube/").map(|(_, ns)| ns))
        {
            match lock::acquire_lease(c, ns, holder).await {
                Ok(l) => reservation.hold(l),
                Err(e @ lock::LockError::Held { .. }) => {
                    eprintln!("error: {e}\n  = help: wait for it to finish, or stop it");
                    reservation.release().await;
                    return Err(Exit::Refused);
                }
                Err(e) => eprintln!("warning: {e}; relying on the local lock only"),
            }
        }
    }
    Ok((
        reservation,
        Cluster {
            store: r.store.clone(),
            kube,
            pinned,
        },
    ))
}

/// Journals the store holds open for overlapping scopes, made recoverable here for
/// [`recover_stale`] ([`store::journal::adopt`]). Under the store's lock their runners'
/// connections are gone; one still beating (it lost the store, not its life) refuses this run.
async fn adopt_foreign_journals(
    s: &Store,
    state_dir: &Path,
    scopes: &[String],
    run_id: &str,
) -> Result<Vec<PathBuf>, Exit> {
    let found = match store::journal::adopt(s, state_dir, scopes, run_id, None).await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}\nnot starting: a fault another runner left could be missed; nothing was touched");
            return Err(Exit::Refused);
        }
    };
    if let Some(f) = found.beating.first() {
        eprintln!(
            "error: run {} of `{}` on {} may still be running: its journal in the store is open and it was heard from {} ago\n  = help: wait for it to finish, or for {} of silence, then run again",
            f.run_id,
            f.experiment,
            f.host,
            human(f.silent_for),
            human(store::journal::STALE)
        );
        return Err(Exit::Refused);
    }
    for f in &found.adopted {
        eprintln!(
            "run {} of `{}` on {} left its journal open in the store (silent for {}): recovering it here",
            f.run_id,
            f.experiment,
            f.host,
            human(f.silent_for)
        );
    }
    Ok(found.paths)
}

/// A plan ready to execute: its proxies run, its journal is open and its watchdog watches.
struct Prepared {
    plan: Plan,
    journal: Arc<journal::Journal>,
    /// The journal's copy in the store.
    mirror: Option<Arc<store::journal::StoreMirror>>,
    lifeline: safety::watchdog::Lifeline,
    sim: Option<crate::sim::SimHandle>,
}

/// The proxies, the faults built for the target, the plan, the write-ahead journal and the
/// dead-man switch.
async fn prepare(
    state_dir: &Path,
    r: Resolved,
    cluster: &Cluster,
    id: Identity,
) -> Result<Prepared, Exit> {
    let Identity {
        run_id,
        since,
        scopes,
    } = id;
    let Resolved {
        env,
        exp,
        sim,
        seed,
        ..
    } = r;
    let proxy = match start_proxies(&exp, seed).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Err(Exit::Refused);
        }
    };
    let ctx = BuildContext {
        kube: cluster.kube.clone(),
        seed,
        proxy: proxy.clone(),
        run_id,
    };
    let faults = match Plan::build_faults(&exp, &ctx) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {}", e.render());
            return Err(Exit::Invalid);
        }
    };
    let embedded_sim = sim.is_some();
    let plan = Plan::new(exp, env, seed, faults, &ctx);
    eprintln!(
        "run {} of `{}` in `{}` (seed {})",
        plan.run_id, plan.experiment.name, plan.environment.name, plan.seed
    );
    for (i, f) in plan.faults.iter().enumerate() {
        eprintln!("  will inject {}: {}", plan.fault_label(i), f.describe());
    }

    let header = journal::Header {
        run_id: plan.run_id.clone(),
        pid: std::process::id(),
        start_time: crate::platform::process::process_start(std::process::id()),
        boot_id: crate::platform::process::boot_id(),
        experiment: plan.experiment.name.clone(),
        environment: plan.environment.name.clone(),
        scopes,
        since,
        cluster: cluster.pinned.clone(),
        embedded_sim,
    };
    let journal = match journal::Journal::create(state_dir, header.clone()) {
        Ok(j) => Arc::new(j),
        Err(e) => {
            eprintln!("error: {e}\n  = help: nothing was touched; check --state-dir");
            return Err(Exit::Internal);
        }
    };
    let mirror = cluster.store.as_ref().map(|s| {
        let m = Arc::new(store::journal::StoreMirror::start(
            s,
            &header,
            journal.path(),
        ));
        journal.set_mirror(Box::new(m.clone()));
        m
    });
    journal::set_current(Some(journal.path().to_path_buf()));
    // The dead-man switch: if this process dies without finishing (SIGKILL, OOM), the
    // watchdog replays the journal's reverts at once. No watchdog, no drill: a run that could
    // leave a fault behind with nobody to remove it is not started.
    let lifeline = match safety::watchdog::spawn(journal.path()) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: cannot start the watchdog that reverts a killed run's faults: {e}
  = help: nothing was touched"
            );
            return Err(Exit::Internal);
        }
    };
    tracing::debug!(pid = lifeline.pid, "watchdog started");
    Ok(Prepared {
        plan,
        journal,
        mirror,
        lifeline,
        sim,
    })
}

/// The drill under the run's token (a child of the process's root token): signals, the halt
/// lever, `max-duration` and the live view's halt key cancel it, and it reverts. The record
/// says why when a halt or the ceiling stopped it.
async fn execute(
    args: &RunArgs,
    state_dir: &Path,
    p: Prepared,
    cluster: &Cluster,
    shutdown: CancellationToken,
) -> Executed {
    let Prepared {
        plan,
        journal,
        mirror,
        lifeline,
        sim,
    } = p;
    let kube = &cluster.kube;
    let cancel = shutdown.child_token();
    journal::set_cancel_on_panic(Some(cancel.clone()));
    crate::shutdown::revert_on_signals(&shutdown);
    let halted = spawn_halt_watcher(
        state_dir.to_path_buf(),
        kube.clone(),
        cluster.store.clone(),
        cancel.clone(),
    );
    let ceiling_hit = spawn_ceiling(plan.experiment.max_duration, cancel.clone());
    let mut opts = Options::new(cancel);
    opts.journal = Some(journal.clone());
    opts.steady_state_timeout = args.steady_state_timeout;
    if let Some(client) = kube {
        opts.sources = kube_sources(&plan.experiment, client);
    }
    // On a terminal: the game-day live view with its keys; otherwise plain progress lines.
    let mut live = None;
    if !args.no_live && super::live::available() {
        let probes: Vec<String> = plan
            .experiment
            .probes
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let title = format!(
            "firedrill: {} in {} (run {})",
            plan.experiment.name, plan.environment.name, plan.run_id
        );
        match super::live::Live::start(title, &probes, opts.cancel.clone()) {
            Ok((view, observer, marks)) => {
                opts.observer = Some(observer);
                opts.marks = Some(marks);
                live = Some(view);
            }
            Err(e) => eprintln!("no live view ({e}); plain progress lines"),
        }
    }
    if opts.observer.is_none() {
        opts.observer = Some(Box::new(progress_line));
    }
    // The audit trail, written as the run goes: a SIGKILL leaves it instead of nothing.
    let trail = match report::trail::Trail::start(
        &args.report_dir,
        &plan.experiment.name,
        &plan.environment.name,
        &plan.run_id,
        plan.seed,
    ) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            eprintln!("warning: no audit trail of the run in progress: {e}");
            None
        }
    };
    if let Some(t) = trail.clone() {
        let inner = opts.observer.take();
        opts.observer = Some(Box::new(move |clock: &Clock, e: &Event| {
            t.event(e);
            if let Some(o) = &inner {
                o(clock, e);
            }
        }));
    }
    let mut record = drill::execute(&plan, opts).await;
    if let Some(view) = live {
        view.finish();
    }
    journal::set_current(None);
    journal::set_cancel_on_panic(None);
    match journal.finish() {
        Ok(true) => {}
        Ok(false) => eprintln!(
            "warning: some faults of this run may still be in place; `firedrill recover --run {}` retries their revert",
            plan.run_id
        ),
        Err(e) => eprintln!("warning: {e}"),
    }
    if let Some(m) = mirror {
        // The store learns the journal's end (bounded: a store that is down is not waited on).
        tokio::task::block_in_place(|| m.finish());
    }
    // Every revert was attempted and recorded: the watchdog has nothing to do.
    lifeline.release();
    if let Some(h) = halted.lock().unwrap_or_else(|e| e.into_inner()).clone() {
        if record.outcome == report::record::Outcome::Aborted {
            record.reason = format!("halted ({}); faults were reverted", h.describe());
        }
    }
    if let (Some(max), true) = (
        plan.experiment.max_duration,
        ceiling_hit.load(std::sync::atomic::Ordering::SeqCst),
    ) {
        if record.outcome == report::record::Outcome::Aborted {
            record.reason = format!(
                "max-duration {} reached: every fault was reverted whatever the drill was waiting for",
                human(max)
            );
        }
    }
    Executed { record, sim, trail }
}

/// A run that ended: its record, the simulated cluster to stop, and the audit trail the
/// report replaces.
struct Executed {
    record: report::record::RunRecord,
    sim: Option<crate::sim::SimHandle>,
    trail: Option<Arc<report::trail::Trail>>,
}

/// The views of the run: the report files, the terminal, the Pushgateway, the CI outputs and
/// the result file. Every one comes from the masked record; a record that cannot be masked is
/// shown nowhere.
async fn finish(
    args: &RunArgs,
    state_dir: &Path,
    done: Executed,
    store: Option<&Store>,
    notifier: Option<&crate::schedule::notify::Notifier>,
) -> anyhow::Result<Exit> {
    let Executed { record, sim, trail } = done;
    if let Some(handle) = sim {
        handle.shutdown().await;
    }
    let record = match report::redacted(&record) {
        Ok(r) => r.into_owned(),
        Err(e) => {
            eprintln!("error: {e}\n  = help: no report, JUnit or summary was written; the run's outcome was `{}`", record.outcome);
            return Ok(Exit::Internal);
        }
    };
    let path = report::write(&args.report_dir, &record)?;
    if let Some(t) = &trail {
        t.remove();
    }
    if let Some(s) = store {
        keep_in_store(s, state_dir, &record).await;
    }
    safety::redact::print_stdout(&safety::redact::text(&report::terminal::render(
        &record,
        Some(&path),
    )));
    let summary = crate::schedule::promotion::RunSummary::from(&record);
    if let Some(url) = &args.pushgateway {
        crate::schedule::metrics::push(url, &summary).await;
    }
    if let Some(n) = notifier {
        for event in crate::schedule::notify::Event::for_finished(&summary) {
            n.send(&event).await;
        }
    }
    let store_baseline = match (store, &args.baseline) {
        (Some(s), Some(b)) if b.as_os_str() == super::ci::BASELINE_STORE => match s.runs().await {
            Ok((runs, _)) => Some(runs),
            Err(e) => {
                eprintln!("error: cannot read the baseline from the store: {e}");
                return Ok(Exit::Internal);
            }
        },
        _ => None,
    };
    let exit = ci_outputs(args, &record, &path, store_baseline);
    if let Some(file) = &args.result_file {
        let result = RunResult {
            run_id: record.run_id.clone(),
            exit_code: exit.as_ref().map_or(Exit::Internal, |e| *e).code(),
            report: path,
        };
        if let Err(e) = result.write(file) {
            eprintln!(
                "error: cannot write the result file {}: {e}",
                file.display()
            );
            return Ok(Exit::Internal);
        }
    }
    exit
}
/// The record into the store; when the store does not take it (down since the run began),
/// into the spool, which the next run or `firedrill store sync` uploads. Nothing is lost.
async fn keep_in_store(s: &Store, state_dir: &Path, record: &report::record::RunRecord) {
    // One encoding, for the store and, should it not take it, the spool.
    let json = match report::json(record) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("error: the record cannot be encoded for the store ({e}); the reports folder has it");
            return;
        }
    };
    let mut stored = s.put_json(&json).await;
    if matches!(stored, Err(store::StoreError::Unreachable { .. })) && s.is_closed() {
        // The run's connection is gone, and the store may be back: one fresh attempt. (A
        // connection that is open and silent means a store that hangs: not waited on twice.)
        if let Ok(again) = s.another().await {
            stored = again.put_json(&json).await;
        }
    }
    let e = match stored {
        Ok(_) => return,
        Err(e) => e,
    };
    match store::spool::keep(state_dir, &record.run_id, &json) {
        Ok(p) => eprintln!(
            "warning: the store did not take the record ({e}); it waits in {} for the next run or `firedrill store sync`",
            p.display()
        ),
        Err(io) => eprintln!(
            "error: the store did not take the record ({e}) and it cannot be spooled ({io}); the reports folder has it"
        ),
    }
}

/// Start the proxies of the experiment's `proxy:` section; they live as long as the run.
async fn start_proxies(
    exp: &experiment::Experiment,
    seed: u64,
) -> Result<Option<std::sync::Arc<crate::proxy::ProxyServer>>, String> {
    if exp.proxies.is_empty() {
        return Ok(None);
    }
    let server = crate::proxy::ProxyServer::new(seed);
    for p in &exp.proxies {
        let info = server
            .add_proxy(crate::proxy::ProxyConfig {
                name: p.name.clone(),
                listen: p.listen,
                upstream: p.upstream.clone(),
                enabled: true,
            })
            .await
            .map_err(|e| format!("cannot start proxy `{}` on {}: {e}", p.name, p.listen))?;
        eprintln!("proxy {}: {} -> {}", p.name, info.listen, p.upstream);
    }
    Ok(Some(server))
}
/// The run's hard ceiling (`max-duration`): when it passes, the drill is cancelled, which
/// reverts every fault. Says whether it fired.
fn spawn_ceiling(
    max: Option<Duration>,
    cancel: CancellationToken,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let hit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(max) = max {
        let flag = hit.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(max) => {
                    flag.store(true, std::sync::atomic::Ordering::SeqCst);
                    eprintln!("max-duration {} reached: reverting every injected fault", human(max));
                    cancel.cancel();
                }
                _ = cancel.cancelled() => {}
            }
        });
    }
    hit
}
/// The promotion gate holds a run by hand like a scheduled one: an environment with
/// `promote-from` runs a drill only after this version passed upstream (judged from the
/// reports folder), unless `--skip-promotion-gate` says otherwise. Nothing is touched when held.
/// A scheduled run (`--scheduled`, a CronJob) starts only when the environment's schedule
/// rules let the daemon start one: inside a window (when there are any), not in a blackout,
/// judged in the environment's time zone. An on-demand run is told when it runs in a blackout.
fn schedule_rules(
    args: &RunArgs,
    env: &Environment,
    exp: &experiment::Experiment,
) -> Result<(), Exit> {
    use crate::experiment::model::window;
    let rules = &env.schedule;
    if rules.windows.is_empty() && rules.blackouts.is_empty() {
        return Ok(());
    }
    let zone: chrono_tz::Tz = env.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let now = chrono::Utc::now().with_timezone(&zone);
    let Err(closed) = window::open_at(&now, &rules.windows, &rules.blackouts) else {
        return Ok(());
    };
    if !args.scheduled {
        if matches!(closed, window::Closed::Blackout(_)) {
            eprintln!(
                "warning: environment `{}` is in a blackout ({closed}); an on-demand run goes ahead, a scheduled one would not",
                env.name
            );
        }
        return Ok(());
    }
    eprintln!(
        "error: scheduled drill `{}` may not start in environment `{}` now ({} {}): {closed}\nnothing was touched",
        exp.name,
        env.name,
        now.format("%Y-%m-%d %H:%M"),
        env.time_zone
    );
    Err(Exit::Refused)
}

async fn promotion_gate(
    args: &RunArgs,
    env: &Environment,
    exp: &experiment::Experiment,
    store: Option<&Store>,
) -> Result<(), Exit> {
    use crate::schedule::promotion::{gate, history, history_of, Gate, Held};
    // Most environments have no gate: do not read the whole reports folder for them.
    if env.promote_from.is_none() {
        return Ok(());
    }
    let (runs, judged_from) = match store {
        None => (
            history(&args.report_dir),
            args.report_dir.display().to_string(),
        ),
        Some(s) => match s.runs().await {
            Ok((runs, errors)) => (
                history_of(&runs, &errors),
                format!("the store {}", s.shown()),
            ),
            Err(e) => {
                eprintln!("error: {e}\nnot starting: the promotion gate cannot be judged; nothing was touched");
                return Err(Exit::Refused);
            }
        },
    };
    let now = chrono::Utc::now();
    let Gate::Held(held) = gate(&runs, &exp.name, &exp.source.content_hash, env, now) else {
        return Ok(());
    };
    if args.skip_promotion_gate {
        eprintln!(
            "warning: running drill `{}` in `{}` although the promotion gate holds it ({held}), as --skip-promotion-gate asks",
            exp.name, env.name
        );
        return Ok(());
    }
    let (Held::NeedsPasses { from, .. } | Held::Demoted { from, .. }) = &held;
    eprintln!(
        "error: drill `{}` is held in environment `{}`: {held} (judged from {})\n  = help: run it in `{from}` first (`firedrill run {} --env {from}`), or pass --skip-promotion-gate to run it anyway\nnothing was touched",
        exp.name,
        env.name,
        judged_from,
        args.file.display()
    );
    Err(Exit::Refused)
}
/// The safety checks before anything is touched: a protected environment's conditions
/// (src/safety/guard.rs), and `local` never reaching a real cluster. `Err` is the exit code.
fn guard(
    args: &RunArgs,
    env: &Environment,
    exp: &experiment::Experiment,
    simulated: bool,
) -> Result<(), Exit> {
    let kube = needs_kube(exp);
    if env.name == "local" && kube && !simulated {
        eprintln!(
            "error: the built-in `local` environment only targets the embedded simulated cluster, and drill `{}` has no `simulation`\n  = help: give it a `simulation`, or run it with `--env ENV` for an environment whose `kube-context` names the cluster",
            exp.name
        );
        return Err(Exit::Invalid);
    }
    let current = crate::platform::kube::current_context();
    let request = safety::guard::Request {
        environment: &env.name,
        protected: env.protected,
        env_explicit: args.env.env.is_some(),
        listed: exp.environments.contains(&env.name),
        needs_kube: kube,
        kube_context: env.kube_context.as_deref(),
        current_context: current.as_deref(),
        in_cluster: args.in_cluster,
        yes: args.yes,
        unallowed_node_faults: exp
            .faults
            .iter()
            .enumerate()
            .filter(
                |(_, f)| matches!(f, crate::experiment::FaultSpec::Node(n) if !n.allow_protected),
            )
            .map(|(i, f)| {
                exp.fault_names
                    .get(i)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| format!("faults[{i}] ({})", f.kind()))
            })
            .collect(),
    };
    let confirmed = match safety::guard::check(&request) {
        Ok(false) => Ok(()),
        Ok(true) => safety::guard::confirm(&env.name),
        Err(r) => Err(r),
    };
    confirmed.map_err(|refusal| {
        eprintln!("error: {refusal}\n  = help: nothing was touched");
        Exit::Invalid
    })
}
/// Under the scope lock, every open journal of an overlapping scope belongs to a run that is
/// gone (it would hold the lock otherwise): revert what it left. `false` when something could
/// not be reverted, and then this run must not start.
async fn recover_stale(state_dir: &Path, scopes: &[String]) -> bool {
    let mut ok = true;
    for state in journal::list(state_dir) {
        // Not silently: a journal without an intact header cannot be matched to a scope.
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warning: {e}; `firedrill recover --all` names it");
                continue;
            }
        };
        if let Some(w) = state.torn_warning() {
            eprintln!("{w}");
        }
        if state.closed
            || state.header.pid == std::process::id()
            || !state.header.scopes.iter().any(|s| scopes.contains(s))
        {
            continue;
        }
        if state.pending().next().is_some() {
            eprintln!(
                "recovering run {} of `{}` (pid {}, no longer running)",
                state.header.run_id, state.header.experiment, state.header.pid
            );
        }
        match journal::recover(&state.path).await {
            Ok(done) => {
                for r in &done {
                    eprintln!("  {}", journal::describe(r));
                    if matches!(r.result, journal::RecoverResult::Failed(_)) {
                        ok = false;
                    }
                }
            }
            Err(e) => {
                eprintln!("  {e}");
                ok = false;
            }
        }
        if !ok {
            eprintln!(
                "error: faults of run {} could not be reverted; fix them, then `firedrill recover --run {}`",
                state.header.run_id, state.header.run_id
            );
        }
    }
    ok
}
/// Polls the halt file; when it appears, records why and cancels the drill (which reverts).
fn spawn_halt_watcher(
    state_dir: PathBuf,
    kube: Option<kube::Client>,
    store: Option<Arc<Store>>,
    cancel: CancellationToken,
) -> std::sync::Arc<std::sync::Mutex<Option<halt::Halt>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut tick = 0u32;
        // Since when the cluster's halt has been unreadable: past the grace, the drill stops
        // as if halted (a halt it cannot see must not let it run on).
        let mut unreadable: Option<(std::time::Instant, String)> = None;
        let mut store_silent = false;
        loop {
            // The local file every tick; the cluster's ConfigMap every fourth (≤ 1s apart).
            let mut found = halt::current(&state_dir);
            if found.is_none() && tick.is_multiple_of(4) {
                if let Some(c) = &kube {
                    match halt::in_cluster(c).await {
                        Ok(h) => {
                            found = h;
                            unreadable = None;
                        }
                        Err(e) => {
                            let since = unreadable
                                .get_or_insert_with(|| (std::time::Instant::now(), String::new()));
                            since.1 = e.to_string();
                            if since.0.elapsed() >= halt::CLUSTER_READ_GRACE {
                                found = Some(halt::Halt {
                                    reason: format!(
                                        "{} for {}",
                                        since.1,
                                        crate::timeline::human(since.0.elapsed())
                                    ),
                                    since: crate::platform::now_rfc3339(),
                                    by: "firedrill itself (the cluster's halt fails closed)".into(),
                                });
                            }
                        }
                    }
                }
            }
            // The store's row every fourth tick too. A store that stops answering mid-drill
            // does not stop the drill (it goes on and reverts; its record is spooled).
            if found.is_none() && tick.is_multiple_of(4) {
                if let Some(s) = &store {
                    // Bounded tightly: this machine's halt file is polled by the same loop.
                    let read = tokio::time::timeout(halt::POLL * 2, s.halt())
                        .await
                        .unwrap_or_else(|_| {
                            Err(store::StoreError::Unreachable {
                                dsn: s.shown().to_string(),
                                cause: "the halt was not read in time".into(),
                            })
                        });
                    match read {
                        Ok(h) => found = h,
                        Err(e) if !store_silent => {
                            store_silent = true;
                            eprintln!("warning: {e}; the drill goes on (this machine's halt file still stops it)");
                        }
                        Err(_) => {}
                    }
                }
            }
            tick = tick.wrapping_add(1);
            if let Some(h) = found {
                eprintln!("stopping: {}; reverting every injected fault", h.describe());
                *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(h);
                cancel.cancel();
                return;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(halt::POLL) => {}
            }
        }
    });
    out
}
/// Plain progress lines on stderr, one per meaningful event.
fn progress_line(_clock: &Clock, e: &Event) {
    // Lets the tests prove the panic hook reverts; debug builds only.
    #[cfg(debug_assertions)]
    if matches!(e.kind, EventKind::FaultInjected { .. })
        && std::env::var_os("FIREDRILL_DEBUG_PANIC_AFTER_INJECT").is_some()
    {
        panic!("FIREDRILL_DEBUG_PANIC_AFTER_INJECT is set");
    }
    // The same on another thread, which the process survives (like a task's panic).
    #[cfg(debug_assertions)]
    if matches!(e.kind, EventKind::FaultInjected { .. })
        && std::env::var_os("FIREDRILL_DEBUG_THREAD_PANIC_AFTER_INJECT").is_some()
    {
        let _ = std::thread::spawn(|| panic!("FIREDRILL_DEBUG_THREAD_PANIC_AFTER_INJECT is set"))
            .join();
    }
    let trial = e.trial.map(|t| format!(" trial {t}")).unwrap_or_default();
    eprintln!("[{:>9.3}s]{trial} {}", e.at.as_secs_f64(), event_text(e));
}
