//! Truth: firedrill kills a real local service that a supervisor restarts after a known delay;
//! the true end of the outage (the instant the service listens again, recorded by the service
//! itself) must lie inside the reported recovery bracket, and the TTR estimate must be within
//! the during-outage probe interval + 5ms of the truth.

mod common;

use std::time::Duration;

use common::DemoService;
use firedrill::drill::{self, Options, Plan};
use firedrill::experiment::*;
use firedrill::report::record::Outcome;
use tokio_util::sync::CancellationToken;

fn experiment(svc: &DemoService, every_during: Duration) -> Experiment {
    Experiment {
        name: "truth".into(),
        description: None,
        environments: vec![],
        schedule: None,
        simulation: None,
        targets: vec![Target {
            name: "demo".into(),
            kind: TargetKind::Process(ProcessTarget::PidFile(svc.pid_file.clone())),
        }],
        probes: vec![ProbeSpec {
            name: "demo-http".into(),
            kind: ProbeKind::Http(HttpProbe {
                url: svc.url(),
                method: "GET".into(),
                headers: vec![],
                expect_status: vec![200],
                body_contains: None,
                timeout: Duration::from_millis(500),
                max_latency: None,
            }),
            every: Duration::from_millis(100),
            every_during,
        }],
        steady_state: vec![],
        faults: vec![FaultSpec::ProcessKill {
            target: "demo".into(),
            signal: "SIGKILL".into(),
        }],
        recovery: Recovery {
            objective: Duration::from_secs(5),
            stable_for: Duration::from_millis(500),
            timeout: Duration::from_secs(20),
            probes: vec![],
        },
        abort_when: vec![],
        repeat: 1,
        cooldown: Duration::ZERO,
        source: Source {
            path: "truth.yaml".into(),
            content_hash: "0".into(),
        },
        secrets: vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_recovery_brackets_the_true_restart() {
    let every_during = Duration::from_millis(10);
    for delay_ms in [300u64, 800, 1500] {
        let svc = DemoService::start(delay_ms).await;
        let exp = experiment(&svc, every_during);
        let faults = Plan::build_faults(&exp, &Default::default()).unwrap();
        let plan = Plan::new(exp, Environment::local(), 1, faults);
        let record = drill::execute(&plan, Options::new(CancellationToken::new())).await;
        assert_eq!(record.outcome, Outcome::Passed, "{}", record.reason);

        let trial = &record.trials[0];
        let ttr = trial.verdict.as_ref().unwrap().ttr.expect("impact was visible");
        let injected_at = trial.injected_at.unwrap();
        let truth = svc.truth();
        let up_after = truth
            .up
            .iter()
            .copied()
            .find(|&up| up > injected_at.timestamp_nanos_opt().unwrap())
            .expect("the service came back");
        let true_ttr_ns = up_after - injected_at.timestamp_nanos_opt().unwrap();
        let true_ttr = Duration::from_nanos(true_ttr_ns as u64);
        assert!(
            ttr.lower <= true_ttr && true_ttr <= ttr.upper,
            "delay {delay_ms}ms: truth {true_ttr:?} outside the bracket [{:?}, {:?}]",
            ttr.lower,
            ttr.upper
        );
        let error = if ttr.estimate > true_ttr {
            ttr.estimate - true_ttr
        } else {
            true_ttr - ttr.estimate
        };
        assert!(
            error <= every_during + Duration::from_millis(5),
            "delay {delay_ms}ms: |TTR - truth| = {error:?} (TTR {:?}, truth {true_ttr:?})",
            ttr.estimate
        );
        eprintln!("delay {delay_ms}ms: truth {true_ttr:?}, TTR {:?} ± {:?}, error {error:?}", ttr.estimate, ttr.uncertainty());
        // The outage cannot be shorter than the supervisor's restart delay.
        assert!(true_ttr >= Duration::from_millis(delay_ms));
        svc.stop();
    }
}
