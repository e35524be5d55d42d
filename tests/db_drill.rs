//! Database failover drills through the binary, against a real 3-node Patroni cluster on
//! 127.0.0.1: the YAML → writer → failover → RPO path end to end.

mod common;

use std::time::Duration;

use common::patroni::{Options, PatroniCluster};
use common::secs;
use serde_json::Value;

fn run(cluster: &PatroniCluster, provider: &str) -> (Value, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.yaml");
    std::fs::write(
        &file,
        common::patroni::drill_yaml(cluster, &cluster.api_urls(), provider),
    )
    .unwrap();
    let (out, reports) = common::run_drill(&file, &[]);
    (common::only_report(&reports), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_drill_reports_write_path_rto_and_no_data_loss() {
    let Some(cluster) = PatroniCluster::start(Options::default()).await else {
        return;
    };
    let (record, out) = run(&cluster, "{ patroni: { action: switchover } }");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stderr}\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(record["outcome"], "passed");

    let loss = &record["data_loss"][0];
    assert_eq!(loss["probe"], "orders-writes");
    assert_eq!(loss["rpo"]["lost"], 0, "a switchover loses nothing: {loss}");
    let rto = secs(&loss["write_path"][0]["rto"]["estimate_s"]);
    // Patroni needs about a second or two here; anything within the objective is plausible,
    // but zero would mean the writer never saw the outage.
    assert!(
        rto > Duration::from_millis(100) && rto < Duration::from_secs(10),
        "{rto:?}"
    );
    // The writer probe's own TTR and the write-path RTO describe the same outage.
    let probe_ttr = secs(&record["trials"][0]["probes"][0]["verdict"]["ttr"]["estimate_s"]);
    assert!(
        probe_ttr.abs_diff(rto) <= Duration::from_millis(60),
        "{probe_ttr:?} vs {rto:?}"
    );
}

#[test]
fn an_unreachable_database_is_inconclusive_and_touches_nothing() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db.yaml");
    std::fs::write(
        &file,
        format!(
            r#"name: db-down
probes:
  writes:
    postgres:
      dsn: "host=127.0.0.1 port={port} user=postgres password=s3cret-canary dbname=postgres connect_timeout=1"
      mode: {{ write: {{ rate-hz: 20, table: firedrill_writes }} }}
faults:
  - db-failover:
      patroni: ["http://127.0.0.1:{port}"]
      provider: {{ patroni: {{ action: switchover }} }}
recovery: {{ objective: 10s }}
"#
        ),
    )
    .unwrap();
    let (out, reports) = common::run_drill(&file, &[]);
    assert_eq!(out.status.code(), Some(3));
    let record = common::only_report(&reports);
    assert_eq!(record["outcome"], "inconclusive");
    let reason = record["reason"].as_str().unwrap();
    assert!(reason.contains("writes"), "{reason}");
    assert!(
        record["trials"].as_array().unwrap().is_empty(),
        "nothing was injected"
    );
    let everything = format!(
        "{}{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        serde_json::to_string(&record).unwrap()
    );
    assert!(!everything.contains("s3cret-canary"), "the password leaked");
}
