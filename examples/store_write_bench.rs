//! Helper of `bench/store.py` (the shared store's benchmark), two modes:
//!
//! - `gen SEED OUT FIRST COUNT`: COUNT records made from one real record SEED (a run's JSON),
//!   varied like `thousand_records` in tests/store.rs (run id `run-NNNNNN` from FIRST on, 20
//!   drills, 3 environments, start times 5 minutes apart from 2025-09-15, every 11th failed,
//!   TTRs 0.5–4.5 s), each written by `report::json` as a run writes it (same key order and
//!   layout), to OUT/<drill>/<environment>/<run id>.json. (Plain writes: not timed.)
//! - `write RECORDS OUT`: every record under the folder RECORDS, read into memory first, is
//!   written once to the store named by `FIREDRILL_STORE` (`Store::put_json`, one call per
//!   record, on one connection opened and migrated before the clock starts) and once into the
//!   reports folder OUT, at the same relative path, by firedrill's own atomic write
//!   (`report::write_atomic`: temporary file, fsync, rename, fsync of the folder). The two
//!   alternate record by record (even records folder first, odd ones store first) so that
//!   drift of the machine hits both alike. Prints one JSON object: `n`, `new` (records the
//!   store did not have), and each write's latency in seconds, `folder_s` and `store_s`.
//!
//! Run: `cargo build --release --example store_write_bench`, then see `bench/store.py`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use firedrill::report::record::{Outcome, RunRecord};
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["gen", seed, out, first, count] => gen(
            Path::new(seed),
            Path::new(out),
            first.parse()?,
            count.parse()?,
        ),
        ["write", records, out] => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?
            .block_on(write(Path::new(records), Path::new(out))),
        _ => bail!("usage: store_write_bench gen SEED OUT FIRST COUNT | write RECORDS OUT"),
    }
}

fn gen(seed: &Path, out: &Path, first: u32, count: u32) -> anyhow::Result<()> {
    // Typed, not a serde_json::Value: a Value (without serde_json's `preserve_order`) would
    // write the keys in alphabetical order, unlike every record firedrill writes, and readers
    // would parse them by the slow path (the skim needs firedrill's layout).
    let seed: RunRecord = serde_json::from_slice(
        &std::fs::read(seed).with_context(|| format!("reading {}", seed.display()))?,
    )?;
    let start = chrono::DateTime::parse_from_rfc3339("2025-09-15T08:00:00Z")?.to_utc();
    for i in first..first + count {
        let mut r = seed.clone();
        let exp = format!("drill-{:02}", i % 20);
        let env = ["staging", "production", "ci"][(i % 3) as usize];
        r.run_id = format!("run-{i:06}");
        r.experiment.name = exp.clone();
        r.environment = env.to_string();
        r.started_at = start + chrono::Duration::minutes(i64::from(i) * 5);
        r.finished_at = r.started_at + chrono::Duration::seconds(40);
        r.outcome = if i % 11 == 0 {
            Outcome::Failed
        } else {
            Outcome::Passed
        };
        for t in &mut r.trials {
            if let Some(ttr) = t.verdict.as_mut().and_then(|v| v.ttr.as_mut()) {
                let est = 0.5 + f64::from(i % 37) * 0.11;
                ttr.estimate = Duration::from_secs_f64(est);
                ttr.lower = Duration::from_secs_f64(est - 0.05);
                ttr.upper = Duration::from_secs_f64(est + 0.05);
            }
        }
        let dir = out.join(&exp).join(env);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(
            dir.join(format!("{}.json", r.run_id)),
            firedrill::report::json(&r)?,
        )?;
    }
    Ok(())
}

async fn write(records: &Path, out: &Path) -> anyhow::Result<()> {
    let spec = firedrill::store::Spec::resolve(None)?
        .context("FIREDRILL_STORE is not set: it names the store to write to")?;
    let store = firedrill::store::Store::open(&spec).await?;
    let files: Vec<(PathBuf, Vec<u8>)> = firedrill::report::store::record_paths(records)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
            let rel = p.strip_prefix(records)?.to_path_buf();
            Ok((rel, bytes))
        })
        .collect::<anyhow::Result<_>>()?;
    let (mut folder_s, mut store_s) = (Vec::new(), Vec::new());
    let mut new = 0usize;
    for (i, (rel, bytes)) in files.iter().enumerate() {
        let path = out.join(rel);
        for side in if i % 2 == 0 { [0, 1] } else { [1, 0] } {
            let t = Instant::now();
            if side == 0 {
                firedrill::report::write_atomic(&path, bytes)?;
                folder_s.push(t.elapsed().as_secs_f64());
            } else {
                new += usize::from(store.put_json(bytes).await?);
                store_s.push(t.elapsed().as_secs_f64());
            }
        }
    }
    println!(
        "{}",
        json!({ "n": files.len(), "new": new, "folder_s": folder_s, "store_s": store_s })
    );
    Ok(())
}
