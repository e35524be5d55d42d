//! Database failover drills against a real Patroni + PostgreSQL cluster on 127.0.0.1.
//!
//! The writer's numbers are checked against what the database itself recorded:
//! - switchover: the write-path outage firedrill measures matches the gap the table shows
//!   between the last row of the old timeline and the first of the new (`written_at`, stamped
//!   by the server) within one writer interval + 50ms;
//! - kill-primary with asynchronous replication: firedrill's lost-write count equals an
//!   independent count (acknowledged sequence numbers missing from the table), every run;
//! - kill-primary with synchronous replication: nothing acknowledged is lost;
//! - bad input (unreachable DSN, wrong password, Patroni REST down): clear errors, no panic,
//!   and no password in any message.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::patroni::{Options, PatroniCluster, RunningWriter};
use firedrill::analysis::rpo::{
    check_writes, write_path_recovery, RpoReport, WriteOutcome, WritePathRecovery,
};
use firedrill::analysis::{probe_verdict, Origin};
use firedrill::experiment::model::db_failover::{
    DbFailoverProvider, DbFailoverSpec, PatroniAction,
};
use firedrill::experiment::model::postgres::{PostgresMode, PostgresProbeSpec};
use firedrill::fault::db_failover::DbFailover;
use firedrill::platform::patroni::PatroniClient;
use firedrill::probe::postgres::{self, PostgresChecker, PostgresWriter, Target};
use firedrill::timeline::{Clock, Sample, Trace};

const TABLE: &str = "firedrill_writes";
const RATE_HZ: f64 = 50.0;

fn writer_spec(dsn: &str) -> PostgresProbeSpec {
    PostgresProbeSpec {
        dsn: dsn.to_string(),
        password_env: None,
        password_file: None,
        mode: PostgresMode::Write {
            rate_hz: RATE_HZ,
            table: TABLE.into(),
        },
        timeout: Duration::from_secs(1),
    }
}

struct DrillResult {
    rpo: RpoReport,
    recovery: WritePathRecovery,
    /// seq → server timestamp (seconds since the epoch) of every row of the run.
    rows: Vec<(u64, f64)>,
    acked: Vec<u64>,
    interval: Duration,
    new_leader: Option<String>,
}

/// Run the writer, inject `fault`, wait for the write path to recover, stop, read back.
async fn drill(cluster: &PatroniCluster, fault: &DbFailover, run_id: &str) -> DrillResult {
    let clock = Clock::start();
    let spec = writer_spec(&cluster.dsn());
    let mut writer = PostgresWriter::new(&spec, run_id, clock).unwrap();
    writer
        .prepare()
        .await
        .expect("the drill table can be created");
    let interval = writer.interval();
    let running = RunningWriter::start(writer, clock);
    let samples = running.samples.clone();
    wait_until(Duration::from_secs(10), || {
        samples.lock().unwrap().iter().filter(|s| s.ok).count() >= 25
    })
    .await
    .expect("the writer writes before the fault");

    let (inj, mut record) = fault
        .inject_recorded("db-failover test".into())
        .await
        .expect("inject");
    let t_inject = clock.offset(inj.accepted_at);
    fault
        .await_new_leader(&mut record, Duration::from_secs(15))
        .await
        .expect("a new leader");
    // Recovered: a failure after the fault, then 25 acknowledged writes in a row.
    let recovered = wait_until(Duration::from_secs(30), || {
        let s = samples.lock().unwrap();
        let Some(last_bad) = s.iter().rposition(|x| !x.ok && x.end >= t_inject) else {
            return false;
        };
        s.len() - last_bad > 25
    })
    .await;
    let history = running.stop().await;
    recovered.unwrap_or_else(|_| {
        panic!(
            "the write path did not recover; last samples: {:?}",
            tail(&samples)
        )
    });

    let target = Target::new(&spec).unwrap();
    let back = postgres::read_back(&target, TABLE, run_id, Duration::from_secs(15))
        .await
        .expect("read back on the new primary");
    let rpo = check_writes(&history.attempts, &back);
    let recovery = write_path_recovery(&history.attempts, t_inject)
        .expect("impact and recovery on the write path");
    // The writer is also a probe: the executor's TTD/TTR on its samples agree with the
    // write-path numbers.
    let mut trace = Trace::default();
    for x in samples.lock().unwrap().iter().filter(|x| x.end >= t_inject) {
        trace.push(x);
    }
    let verdict = probe_verdict(
        &trace,
        Origin::at(t_inject, t_inject),
        Duration::from_millis(300),
    );
    assert!(verdict.recovered && verdict.ttd.is_some(), "{verdict:?}");
    assert_eq!(
        verdict.ttr,
        Some(recovery.rto),
        "probe TTR vs write-path RTO"
    );
    eprintln!(
        "{run_id}: writer-probe TTD {:.3}s, downtime {:.3}s, availability {:.3}",
        verdict.ttd.unwrap_or_default().as_secs_f64(),
        verdict.downtime.as_secs_f64(),
        verdict.availability
    );

    // The independent view: the table itself, through a connection of the test's own.
    let client = cluster.connect().await.expect("connect to the new primary");
    let rows: Vec<(u64, f64)> = client
        .query(
            &format!("SELECT seq, extract(epoch FROM written_at)::float8 FROM {TABLE} WHERE run_id = $1 ORDER BY seq"),
            &[&run_id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, f64>(1)))
        .collect();
    let acked: Vec<u64> = history
        .attempts
        .iter()
        .filter(|w| w.outcome == WriteOutcome::Acknowledged)
        .map(|w| w.seq)
        .collect();
    eprintln!(
        "{run_id}: {} from {:?} to {:?}; writes {} acked {} failed {} indeterminate {} (found {}); \
         lost {} {:?}; RTO {:.3}s ±{:.3}; outage {:.3}s ±{:.3}",
        inj.detail,
        record.old_leader,
        record.new_leader,
        rpo.attempted,
        rpo.acknowledged,
        rpo.failed,
        rpo.indeterminate,
        rpo.indeterminate_found,
        rpo.lost,
        rpo.lost_seqs,
        recovery.rto.estimate.as_secs_f64(),
        recovery.rto.uncertainty().as_secs_f64(),
        recovery.outage.estimate.as_secs_f64(),
        recovery.outage.uncertainty().as_secs_f64(),
    );
    eprintln!(
        "{run_id}: Patroni's timeline switch at {:?}",
        record.switched_at
    );
    assert!(
        rpo.failed_but_found.is_empty(),
        "writes classified failed were committed: {:?}",
        rpo.failed_but_found
    );
    assert_eq!(rpo.unexpected, 0);
    DrillResult {
        rpo,
        recovery,
        rows,
        acked,
        interval,
        new_leader: record.new_leader.clone(),
    }
}

fn tail(s: &Arc<Mutex<Vec<Sample>>>) -> Vec<(bool, Option<String>)> {
    let s = s.lock().unwrap();
    s.iter()
        .rev()
        .take(5)
        .map(|x| (x.ok, x.reason.clone()))
        .collect()
}

async fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> Result<(), ()> {
    let t0 = tokio::time::Instant::now();
    while !f() {
        if t0.elapsed() > within {
            return Err(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn independent_lost(d: &DrillResult) -> u64 {
    let present: HashSet<u64> = d.rows.iter().map(|(s, _)| *s).collect();
    d.acked.iter().filter(|s| !present.contains(s)).count() as u64
}

fn fault(urls: Vec<String>, provider: DbFailoverProvider) -> DbFailover {
    DbFailover::new(
        "db",
        DbFailoverSpec {
            patroni: urls,
            provider,
            patroni_username: None,
            patroni_password_env: None,
            timeout: Duration::from_secs(30),
        },
    )
    .unwrap()
}

fn kill_primary(cluster: &PatroniCluster, by_pid_file: bool) -> DbFailover {
    fault(
        cluster.api_urls(),
        DbFailoverProvider::KillPrimary {
            data_dir: by_pid_file.then(|| cluster.data_dir_template()),
            target: None,
            labels: None,
            grace_period: None,
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_drills_measure_rto_and_rpo_against_the_database_itself() {
    let Some(mut cluster) = PatroniCluster::start(Options::default()).await else {
        return;
    };

    // (a) Switchover: firedrill's write-path outage vs the gap the table shows.
    let switchover = fault(
        cluster.api_urls(),
        DbFailoverProvider::Patroni {
            action: PatroniAction::Switchover,
            candidate: None,
        },
    );
    let d = drill(&cluster, &switchover, "switchover-1").await;
    assert_eq!(
        d.rpo.lost, 0,
        "a switchover must not lose acknowledged writes"
    );
    let before = d
        .recovery
        .last_ack_before
        .expect("writes before the outage");
    let after = d.recovery.first_ack_after;
    let window: Vec<&(u64, f64)> = d
        .rows
        .iter()
        .filter(|(s, _)| (before..=after).contains(s))
        .collect();
    let db_gap = window
        .windows(2)
        .map(|w| w[1].1 - w[0].1)
        .fold(0.0f64, f64::max);
    let measured = d.recovery.outage.estimate.as_secs_f64();
    let tolerance = d.interval.as_secs_f64() + 0.050;
    eprintln!(
        "switchover: write-path RTO {:.3}s, outage {measured:.3}s, table gap {db_gap:.3}s, tolerance ±{tolerance:.3}s",
        d.recovery.rto.estimate.as_secs_f64()
    );
    assert!(
        (measured - db_gap).abs() <= tolerance,
        "outage {measured:.3}s vs table gap {db_gap:.3}s: more than ±{tolerance:.3}s apart"
    );
    cluster.wait_healthy(Duration::from_secs(60)).await;

    // A failover to a named candidate on a healthy cluster is graceful too.
    let leader = PatroniClient::new(cluster.api_urls())
        .unwrap()
        .primary_member()
        .await
        .unwrap();
    let candidate = cluster
        .nodes
        .iter()
        .find(|n| n.name != leader.name)
        .unwrap()
        .name
        .clone();
    let failover = fault(
        cluster.api_urls(),
        DbFailoverProvider::Patroni {
            action: PatroniAction::Failover,
            candidate: Some(candidate.clone()),
        },
    );
    let d = drill(&cluster, &failover, "failover-1").await;
    assert_eq!(d.rpo.lost, 0);
    assert_eq!(d.new_leader.as_deref(), Some(candidate.as_str()));
    cluster.wait_healthy(Duration::from_secs(60)).await;

    // (b) Kill the primary's postmaster, asynchronous replication: firedrill's RPO is exactly
    // the independent count, whatever it is in each run.
    for (i, by_pid_file) in [true, false, true].into_iter().enumerate() {
        let d = drill(
            &cluster,
            &kill_primary(&cluster, by_pid_file),
            &format!("kill-async-{i}"),
        )
        .await;
        assert_eq!(
            d.rpo.lost,
            independent_lost(&d),
            "run {i}: firedrill and the table disagree"
        );
        cluster.wait_healthy(Duration::from_secs(60)).await;
    }

    // (c) Synchronous replication: nothing acknowledged is lost.
    cluster.set_synchronous_mode(true).await;
    for i in 0..2 {
        let d = drill(
            &cluster,
            &kill_primary(&cluster, true),
            &format!("kill-sync-{i}"),
        )
        .await;
        assert_eq!(d.rpo.lost, 0, "synchronous mode lost {:?}", d.rpo.lost_seqs);
        assert_eq!(independent_lost(&d), 0);
        cluster.wait_healthy(Duration::from_secs(60)).await;
    }

    // (d) A wrong password is a clear error, and the password never shows.
    let admin = cluster.connect().await.unwrap();
    admin
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE firedrill_pw LOGIN PASSWORD 'right-secret-1'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$",
        )
        .await
        .unwrap();
    let dsn = cluster
        .dsn()
        .replace("user=postgres", "user=firedrill_pw password=wrong-secret-2");
    // SCRAM authentication against each of the three hosts costs real CPU (more so in a debug
    // build on a loaded machine): this step is about the message, so give it time.
    let patient = PostgresProbeSpec {
        timeout: Duration::from_secs(10),
        ..writer_spec(&dsn)
    };
    let mut read = PostgresChecker::new(&PostgresProbeSpec {
        mode: PostgresMode::Read {
            query: "SELECT 1".into(),
        },
        ..patient.clone()
    })
    .unwrap();
    let e = read.check().await.unwrap_err();
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(!e.contains("wrong-secret-2"), "{e}");
    let mut w = PostgresWriter::new(&patient, "bad-pw", Clock::start()).unwrap();
    let e = w.prepare().await.unwrap_err().to_string();
    assert!(
        e.contains("password authentication failed") && !e.contains("wrong-secret-2"),
        "{e}"
    );
    std::env::set_var("FIREDRILL_TEST_PG_PASSWORD", "right-secret-1");
    let mut ok = PostgresChecker::new(&PostgresProbeSpec {
        mode: PostgresMode::Read {
            query: "SELECT 1".into(),
        },
        password_env: Some("FIREDRILL_TEST_PG_PASSWORD".into()),
        ..writer_spec(&cluster.dsn().replace("user=postgres", "user=firedrill_pw"))
    })
    .unwrap();
    ok.check()
        .await
        .expect("the right password from the environment works");
}

#[tokio::test]
async fn bad_inputs_are_clear_errors_without_a_cluster() {
    let (_closed, addr) = common::net::refusing_addr();
    let port = addr.port();
    let dsn = format!("host=127.0.0.1,127.0.0.1 port={port},{port} user=u password=hunter2 dbname=d target_session_attrs=read-write");
    let mut w = PostgresWriter::new(&writer_spec(&dsn), "r", Clock::start()).unwrap();
    let e = w.prepare().await.unwrap_err().to_string();
    assert!(
        e.starts_with("cannot connect to postgres") && e.contains("refused"),
        "{e}"
    );
    assert!(!e.contains("hunter2") && e.contains("password=***"), "{e}");

    let fault = fault(
        vec![format!("http://127.0.0.1:{port}")],
        DbFailoverProvider::KillPrimary {
            data_dir: None,
            target: None,
            labels: None,
            grace_period: None,
        },
    );
    let e = fault.prepare().await.unwrap_err().to_string();
    assert!(
        e.contains("patroni REST API unreachable") && e.contains("refused"),
        "{e}"
    );
    let e = fault.inject("x".into()).await.unwrap_err().to_string();
    assert!(e.contains("unreachable"), "{e}");
}
