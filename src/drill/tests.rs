//! The executor below end-to-end: the recorder driven with synthetic samples, and `execute`
//! with paused tokio time, `command` faults (real processes) and a synthetic probe whose
//! system recovers at a known virtual time.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::recorder::Recorder;
use super::{execute, Options, Plan, SampleSource};
use crate::experiment::{Environment, LoadOptions};
use crate::fault::BuildContext;
use crate::probe::{Observation, ProbeSample};
use crate::report::record::{Outcome, TrialOutcome, EXIT_FAULT_LEFT};
use crate::timeline::{Clock, EventKind, Phase, Sample};

/// A plan for the `local` environment from an experiment's YAML.
fn plan(yaml: &str) -> Plan {
    let env = Environment::local();
    let vars = Default::default();
    let opts = LoadOptions {
        env: &env,
        extra_vars: &vars,
        known_environments: None,
        unset_env: Default::default(),
    };
    let exp =
        crate::experiment::load_experiment_bytes(Path::new("drill.yaml"), yaml.as_bytes(), &opts)
            .map_err(|d| format!("{d:?}"))
            .unwrap()
            .experiment;
    let ctx = BuildContext {
        kube: None,
        seed: 1,
        proxy: None,
        run_id: "test-run".into(),
    };
    let faults = Plan::build_faults(&exp, &ctx).unwrap();
    Plan::new(exp, env, 1, faults, &ctx)
}

/// One watch-driven probe `app` (its samples come from the test) and one command fault.
fn yaml(fault: &str, recovery: &str, extra: &str) -> String {
    format!(
        "name: unit\nprobes:\n  app:\n    kubernetes: {{ deployment: shop/app, ready: all }}\nfaults:\n  - {fault}\nrecovery: {recovery}\n{extra}"
    )
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

fn sample(start: Duration, ok: bool) -> ProbeSample {
    ProbeSample {
        probe: 0,
        sample: Sample {
            scheduled: start,
            start,
            end: start + ms(10),
            ok,
            reason: (!ok).then(|| "not ready".into()),
        },
    }
}

#[tokio::test(start_paused = true)]
async fn recorder_turns_samples_into_the_phases_and_ttr_a_user_sees() {
    let plan = plan(&yaml(
        "command: { run: [\"true\"] }",
        "{ objective: 5s, stable-for: 1s, timeout: 1m }",
        "",
    ));
    let mut rec = Recorder::new(&plan, Clock::start(), None);
    rec.begin_trial(1);
    // Truth: the fault acts at 1s, the system is back at 3.05s: TTR 2.05s, TTD one check.
    let (inject, back) = (ms(1000), ms(3050));
    for k in 0..10 {
        rec.record(sample(ms(k * 100), true));
    }
    rec.set_injected(0, inject, inject);
    let mut recovered_at = None;
    for k in 10..60 {
        let start = ms(k * 100);
        rec.record(sample(start, start < inject || start >= back));
        if recovered_at.is_none() && rec.recovered(&plan) {
            recovered_at = Some(start);
        }
    }
    // Stable for 1s from the first passing check (3.1s): proven by the check ending at 4.11s.
    assert_eq!(
        recovered_at,
        Some(ms(4100)),
        "judged recovered once stable-for is proven"
    );
    rec.set_judged(ms(4110));
    rec.end_trial(TrialOutcome::Recovered, String::new());
    let reason = rec.passed_reason(&plan);
    let record = rec.finish(&plan, Outcome::Passed, reason.clone());

    let t = &record.trials[0];
    let v = t.verdict.as_ref().unwrap();
    let ttr = v.ttr.unwrap();
    let truth = back - inject;
    assert!(
        ttr.lower <= truth && truth <= ttr.upper,
        "the truth {truth:?} lies in the bracket {ttr:?}"
    );
    assert!(ttr.estimate.abs_diff(truth) <= ms(60), "{ttr:?}");
    assert_eq!(
        v.ttd,
        Some(ms(10)),
        "detected when the first failing check ended"
    );
    assert!(v.recovered && v.impact && v.objective_met);
    let p = &t.probes[0].verdict;
    let down = p.downtime_bracket.unwrap();
    assert!(down.lower <= truth && truth <= down.upper, "{down:?}");
    assert_eq!(p.failed, 21, "checks at 1.0s..=3.0s failed");
    // What the summary and the reason say.
    let mttr = record.summary.mttr.unwrap();
    assert_eq!((mttr.n, mttr.mean), (1, ttr.estimate));
    assert!(
        reason.contains("MTTR") && reason.contains("n=1"),
        "{reason}"
    );
    // The timeline shows the probe going down at the first failure and back up.
    let changes: Vec<(Duration, bool)> = record
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ProbeChanged { ok, .. } => Some((e.at, *ok)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [(ms(10), true), (ms(1010), false), (ms(3110), true)]
    );
}

/// What the synthetic system knows of the drill, from the executor's observer.
#[derive(Default)]
struct Seen {
    /// An injector's process is running: the system's clock stands still meanwhile (paused
    /// tokio time would otherwise jump from timer to timer while a real process runs).
    injecting: bool,
    /// When the fault was injected, as the executor stamped it.
    injected: Option<Duration>,
    /// Wakes the system's checks when an injection starts.
    wake: Arc<tokio::sync::Notify>,
}

/// A synthetic probe of a system that a fault breaks for `outage` from the moment it is
/// injected; checks every 100ms of virtual time, 5ms each.
fn system(seen: Arc<Mutex<Seen>>, outage: Duration) -> SampleSource {
    Box::new(move |ctx| {
        tokio::spawn(async move {
            let wake = seen.lock().unwrap().wake.clone();
            loop {
                if seen.lock().unwrap().injecting {
                    // Keep the runtime busy so that virtual time does not advance.
                    tokio::task::yield_now().await;
                    continue;
                }
                tokio::select! {
                    _ = ctx.cancel.cancelled() => return,
                    _ = wake.notified() => continue,
                    _ = tokio::time::sleep(ms(100)) => {}
                }
                let start = ctx.clock.now();
                let broken = seen
                    .lock()
                    .unwrap()
                    .injected
                    .is_some_and(|at| start >= at && start < at + outage);
                tokio::select! {
                    _ = wake.notified() => continue,
                    _ = tokio::time::sleep(ms(5)) => {}
                }
                let s = Sample {
                    scheduled: start,
                    start,
                    end: ctx.clock.now(),
                    ok: !broken,
                    reason: broken.then(|| "down".into()),
                };
                let obs = Observation::Sample(ProbeSample {
                    probe: 0,
                    sample: s,
                });
                if ctx.tx.send(obs).await.is_err() {
                    return;
                }
            }
        });
    })
}

/// Options whose observer tells the synthetic system about the injection.
fn options(outage: Duration) -> (Options, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut opts = Options::new(CancellationToken::new());
    let observed = seen.clone();
    opts.observer = Some(Box::new(move |_, e| {
        let mut s = observed.lock().unwrap();
        match e.kind {
            EventKind::Phase {
                phase: Phase::Inject,
            } => {
                s.injecting = true;
                s.wake.notify_one();
            }
            EventKind::FaultInjected { .. } => {
                s.injecting = false;
                s.injected.get_or_insert(e.at);
            }
            // The next step's injector runs right after this event.
            EventKind::StepStarted { .. } => s.injecting = true,
            EventKind::FaultFailed { .. } => s.injecting = false,
            _ => {}
        }
    }));
    opts.sources.push(system(seen.clone(), outage));
    (opts, seen)
}

#[tokio::test(start_paused = true)]
async fn a_probe_recovering_at_a_known_virtual_time_yields_that_ttr() {
    let plan = plan(&yaml(
        "command: { run: [\"true\"], revert: [\"true\"] }",
        "{ objective: 10s, stable-for: 1s, timeout: 1m }",
        "",
    ));
    let (opts, seen) = options(Duration::from_secs(3));
    let record = execute(&plan, opts).await;
    assert_eq!(record.outcome, Outcome::Passed, "{}", record.reason);
    let t = &record.trials[0];
    assert_eq!(t.t_inject, seen.lock().unwrap().injected);
    assert_eq!(
        t.t_sent, t.t_inject,
        "virtual time stood still while the injector ran"
    );
    let ttr = t.verdict.as_ref().unwrap().ttr.unwrap();
    let truth = Duration::from_secs(3);
    assert!(
        ttr.lower <= truth && truth <= ttr.upper,
        "the truth {truth:?} lies in {ttr:?}"
    );
    // One sampling interval (100ms) and a check (5ms) bound the error.
    assert!(
        ttr.estimate.abs_diff(truth) <= ms(105),
        "{ttr:?} vs {truth:?}"
    );
    assert!(ttr.uncertainty() <= ms(105), "{ttr:?}");
    assert_eq!(record.summary.mttr.unwrap().n, 1);
    // The phases a user sees, in order.
    let phases: Vec<Phase> = record
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Phase { phase } => Some(*phase),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [
            Phase::Preflight,
            Phase::Inject,
            Phase::Observe,
            Phase::Revert,
            Phase::FinalSteadyState,
            Phase::Done
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_revert_is_retried_and_reported_as_a_fault_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let attempts = dir.path().join("attempts");
    let revert = format!(
        "[sh, -c, 'echo attempt >> {}; echo refused >&2; exit 1']",
        attempts.display()
    );
    let plan = plan(&yaml(
        // A long timeout: paused time jumps from timer to timer while the process runs.
        &format!("command: {{ run: [\"true\"], revert: {revert}, timeout: 1h }}"),
        "{ objective: 10s, stable-for: 500ms, timeout: 1m }",
        "repeat: 2\n",
    ));
    // No visible impact: the trial recovers at once, and then the revert fails.
    let (opts, _) = options(Duration::ZERO);
    let record = execute(&plan, opts).await;

    let tried = std::fs::read_to_string(&attempts).unwrap().lines().count();
    assert_eq!(
        tried,
        crate::fault::REVERT_RETRY.attempts as usize,
        "the revert is retried within REVERT_RETRY"
    );
    assert_eq!(record.outcome, Outcome::Failed);
    assert_eq!(record.exit_code(), EXIT_FAULT_LEFT);
    assert_eq!(record.faults_left.len(), 1);
    let left = &record.faults_left[0];
    assert_eq!(left.trial, 1);
    assert!(left.error.contains("refused"), "{}", left.error);
    assert!(
        record.reason.starts_with("fault left in place")
            && record.reason.contains("no further trials"),
        "{}",
        record.reason
    );
    assert_eq!(record.trials.len(), 1, "no second trial on a broken system");
    assert!(record
        .events
        .iter()
        .any(|e| matches!(e.kind, EventKind::RevertFailed { .. })));
}

/// A fault whose run and revert append to `log`: `inject <tag>` and `revert <tag>`.
fn logged(log: &Path, tag: &str) -> String {
    format!(
        "command: {{ run: [sh, -c, 'echo inject {tag} >> {log}'], revert: [sh, -c, 'echo revert {tag} >> {log}'], timeout: 1h }}",
        log = log.display()
    )
}

#[tokio::test(start_paused = true)]
async fn steps_start_when_their_wait_is_over_and_revert_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let faults = format!(
        "{}\n    name: a\n  - name: b\n    wait: {{ after: a, for: 2s }}\n    {}\n  - name: c\n    wait: {{ until: {{ probe: app, is: passing }} }}\n    {}",
        logged(&log, "a"),
        logged(&log, "b"),
        logged(&log, "c"),
    );
    let plan = plan(&yaml(
        &faults,
        "{ objective: 10s, stable-for: 500ms, timeout: 1m }",
        "",
    ));
    let (opts, _) = options(Duration::from_secs(1));
    let record = execute(&plan, opts).await;
    assert_eq!(record.outcome, Outcome::Passed, "{}", record.reason);
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        order.lines().collect::<Vec<_>>(),
        ["inject a", "inject b", "inject c", "revert c", "revert b", "revert a"]
    );
    let t = &record.trials[0];
    let at = |name: &str| t.faults.iter().find(|f| f.fault == name).unwrap();
    // b waited 2s after a was accepted; c until the probe had passed for stable-for after b.
    assert!(at("b").accepted >= at("a").accepted + Duration::from_secs(2));
    assert_eq!(at("b").step.as_deref(), Some("2s after a"));
    assert!(at("c").accepted >= at("b").accepted + ms(500));
    assert!(at("a").step.is_none());
    let started: Vec<&str> = record
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::StepStarted { fault, .. } => Some(fault.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(started, ["b", "c"]);
    // The probe watches every fault: its recovery counts from the last one, c.
    assert_eq!(t.probes[0].ttr_origin, Some(at("c").accepted));
    // Per step: a broke the system for 1s and it healed before b (2s later); b and c left
    // no visible impact.
    let steps = &t.probes[0].steps;
    let faults: Vec<&[String]> = steps.iter().map(|s| s.faults.as_slice()).collect();
    assert_eq!(faults, [["a"], ["b"], ["c"]]);
    let first = &steps[0].verdict;
    assert!(first.recovered, "{first:?}");
    let ttr = first.ttr.unwrap();
    assert!(
        ttr.lower <= Duration::from_secs(1) && Duration::from_secs(1) <= ttr.upper,
        "{ttr:?}"
    );
    assert!(steps[1..]
        .iter()
        .all(|s| s.verdict.ttd.is_none() && s.verdict.recovered));
}

#[tokio::test(start_paused = true)]
async fn a_step_whose_condition_never_holds_ends_inconclusive_and_reverts_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let faults = format!(
        "{}\n    name: a\n  - name: b\n    wait: {{ until: {{ probe: app, is: failing }}, within: 3s }}\n    {}",
        logged(&log, "a"),
        logged(&log, "b"),
    );
    let plan = plan(&yaml(
        &faults,
        "{ objective: 10s, stable-for: 500ms, timeout: 1m }",
        "",
    ));
    // The fault has no visible effect: the probe never fails.
    let (opts, _) = options(Duration::ZERO);
    let record = execute(&plan, opts).await;
    assert_eq!(record.outcome, Outcome::Inconclusive);
    assert!(
        record.reason.contains("b was not injected") && record.reason.contains("`app` is failing"),
        "{}",
        record.reason
    );
    let order = std::fs::read_to_string(&log).unwrap();
    assert_eq!(order.lines().collect::<Vec<_>>(), ["inject a", "revert a"]);
    assert_eq!(record.trials[0].outcome, TrialOutcome::Inconclusive);
}

/// `abort-when` with `after:` counts only from that fault: the first step breaks the system
/// for 1s on purpose; a 300ms failing-for aborts the drill unless it is armed after step b.
#[tokio::test(start_paused = true)]
async fn an_abort_condition_after_a_step_ignores_what_the_earlier_steps_broke() {
    for (after, aborted) in [("", true), (", after: b", false)] {
        let faults = "command: { run: [\"true\"] }\n    name: a\n  - name: b\n    wait: { after: a, for: 2s }\n    command: { run: [\"true\"] }";
        let plan = plan(&yaml(
            faults,
            "{ objective: 10s, stable-for: 500ms, timeout: 1m }",
            &format!("abort-when:\n  - {{ probe: app, failing-for: 300ms{after} }}\n"),
        ));
        let (opts, _) = options(Duration::from_secs(1));
        let record = execute(&plan, opts).await;
        if aborted {
            assert_eq!(record.outcome, Outcome::Aborted, "{}", record.reason);
            assert!(
                record.reason.contains("failing-for 300.0ms)"),
                "{}",
                record.reason
            );
            assert_eq!(record.trials[0].faults.len(), 1, "b was never injected");
        } else {
            assert_eq!(record.outcome, Outcome::Passed, "{}", record.reason);
            assert_eq!(record.trials[0].faults.len(), 2);
        }
    }
}
