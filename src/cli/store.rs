//! `firedrill store`: the shared store's upkeep — `migrate` (apply the schema's migrations),
//! `sync` (upload the spool and, optionally, a reports folder), `gc` (retention), `show` (one
//! stored run rendered as JSON, Markdown or HTML) — and the one way every command opens it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::report;
use crate::store::{self, Spec, Store, StoreError};
use crate::{eprintln_redacted as eprintln, println_redacted as println};

use super::Exit;

#[derive(clap::Args)]
pub(super) struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(clap::Subcommand)]
enum StoreCommand {
    /// Apply the schema migrations this version needs (every command also does, first).
    Migrate,
    /// What the store holds now: runs, the halt, held scopes and their holders, open
    /// journals, and this machine's spooled records.
    Status,
    /// Upload the records spooled while the store was down, and a reports folder's records.
    Sync {
        /// Also upload every record under this reports folder (idempotent by run id).
        #[arg(long, value_name = "DIR")]
        reports: Option<PathBuf>,
    },
    /// Delete old runs: older than --older-than, beyond each drill's newest --keep-last.
    #[command(group(clap::ArgGroup::new("rule").required(true).multiple(true).args(["older_than", "keep_last"])))]
    Gc {
        /// Runs that finished longer ago than this go (e.g. 90d); closed journals too.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "AGE")]
        older_than: Option<Duration>,
        /// Each drill (experiment × environment) keeps its newest N runs whatever their age.
        #[arg(long, value_name = "N")]
        keep_last: Option<u32>,
    },
    /// Print one stored run as its record (json), or rendered (markdown, html).
    Show {
        run_id: String,
        #[arg(long, value_enum, default_value = "json")]
        format: ShowFormat,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ShowFormat {
    Json,
    Markdown,
    Html,
}

/// The store every command uses, when one is configured: `Ok(None)` without one; an error
/// (already printed) is the exit code.
pub(super) async fn open(spec: Option<&Spec>) -> Result<Option<Store>, Exit> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    match Store::open(spec).await {
        Ok(s) => Ok(Some(s)),
        Err(e) => {
            eprintln!(
                "error: {e}\n  = help: the store is named by {}; check that it answers",
                spec.from
            );
            Err(match e {
                StoreError::Config(_) => Exit::Invalid,
                _ => Exit::Refused,
            })
        }
    }
}

pub(super) async fn command(
    args: StoreArgs,
    spec: Option<&Spec>,
    state_dir: &Path,
) -> anyhow::Result<Exit> {
    if spec.is_none() {
        eprintln!(
            "error: no store is configured\n  = help: set {} (a DSN, env:NAME or file:PATH) or pass --store",
            store::ENV
        );
        return Ok(Exit::Invalid);
    }
    let mut s = match open(spec).await {
        Ok(Some(s)) => s,
        Ok(None) | Err(_) => return Ok(Exit::Refused),
    };
    match args.command {
        StoreCommand::Migrate => {
            s.migrate().await?;
            for (m, applied) in s.migrations().await? {
                println!("{m}: {}", if applied { "applied" } else { "pending" });
            }
            Ok(Exit::Passed)
        }
        StoreCommand::Status => {
            let mut out = format!("store {}\n", s.shown());
            out.push_str(&format!("runs: {}\n", s.count().await?));
            match s.halt().await? {
                Some(h) => out.push_str(&format!("halt: {}\n", h.describe())),
                None => out.push_str("halt: none\n"),
            }
            let held = s.holders().await?;
            out.push_str(&format!("held scopes: {}\n", held.len()));
            for (scope, h) in &held {
                out.push_str(&format!(
                    "  {scope}: drill `{}` (run {}, pid {} on {}) since {}\n",
                    h.experiment, h.run_id, h.pid, h.host, h.since
                ));
            }
            let open = s.open_journals(&[], "").await?;
            out.push_str(&format!("open journals: {}\n", open.len()));
            for f in &open {
                out.push_str(&format!(
                    "  run {} of `{}` on {}: last heard {} ago\n",
                    f.run_id,
                    f.experiment,
                    f.host,
                    crate::timeline::human(f.silent_for)
                ));
            }
            out.push_str(&format!(
                "spooled here ({}): {}\n",
                store::spool_dir(state_dir).display(),
                store::spool::pending(state_dir)
            ));
            crate::safety::redact::print_stdout(&out);
            Ok(Exit::Passed)
        }
        StoreCommand::Sync { reports } => {
            let up = store::spool::upload(state_dir, &s).await?;
            println!(
                "spool: {} record(s) uploaded, {} the store had already",
                up.new, up.known
            );
            let mut bad = up.unreadable.len();
            for (p, e) in &up.unreadable {
                eprintln!(
                    "warning: {} is not a record ({e}); left in the spool",
                    p.display()
                );
            }
            if let Some(dir) = reports {
                let (mut new, mut known) = (0, 0);
                for p in report::store::record_paths(&dir) {
                    let bytes = match std::fs::read(&p) {
                        Ok(b) => b,
                        Err(e) => {
                            eprintln!("warning: cannot read {}: {e}", p.display());
                            bad += 1;
                            continue;
                        }
                    };
                    if report::store::parse(&bytes).is_err() {
                        // Not a run record (a JUnit file, a summary): not for the store.
                        continue;
                    }
                    if s.put_json(&bytes).await? {
                        new += 1;
                    } else {
                        known += 1;
                    }
                }
                println!(
                    "{}: {new} record(s) uploaded, {known} the store had already",
                    dir.display()
                );
            }
            Ok(if bad == 0 { Exit::Passed } else { Exit::Failed })
        }
        StoreCommand::Gc {
            older_than,
            keep_last,
        } => {
            let done = s.gc(older_than, keep_last).await?;
            println!(
                "deleted {} run(s) and {} closed journal(s); {} run(s) remain",
                done.runs,
                done.journals,
                s.count().await?
            );
            Ok(Exit::Passed)
        }
        StoreCommand::Show { run_id, format } => {
            let Some(json) = s.record(&run_id).await? else {
                eprintln!("error: the store has no run `{run_id}`");
                return Ok(Exit::Invalid);
            };
            let text = match format {
                ShowFormat::Json => json,
                ShowFormat::Markdown | ShowFormat::Html => {
                    let record: report::record::RunRecord =
                        serde_json::from_str(&json).map_err(|e| {
                            anyhow::anyhow!(
                                "run {run_id} in the store is not a record this version reads: {e}"
                            )
                        })?;
                    match format {
                        ShowFormat::Markdown => report::markdown::render(&record),
                        _ => report::html::render(&record),
                    }
                }
            };
            crate::safety::redact::print_stdout(&text);
            Ok(Exit::Passed)
        }
    }
}

/// The store of a command that reads a folder of experiments: `--store`/`FIREDRILL_STORE`
/// when set, else the one `envs_file` (its firedrill.yaml) names. A firedrill.yaml that does
/// not load names none here: the command reports its errors itself.
pub(super) fn with_workspace(
    spec: Option<&Spec>,
    envs_file: Option<PathBuf>,
) -> Result<Option<Spec>, Exit> {
    if let Some(s) = spec {
        return Ok(Some(s.clone()));
    }
    let Some(file) = envs_file.filter(|f| f.is_file()) else {
        return Ok(None);
    };
    let Some(r) = crate::experiment::load_environments(&file)
        .ok()
        .and_then(|f| f.store)
    else {
        return Ok(None);
    };
    Spec::from_file_ref(&r).map(Some).map_err(|e| {
        eprintln!(
            "error: {e}\n  = help: {} names the store; nothing was touched",
            file.display()
        );
        Exit::Invalid
    })
}

/// Every run, from the store when one is configured, else from the reports folder.
pub(super) async fn runs(
    spec: Option<&Spec>,
    report_dir: &Path,
) -> Result<(Vec<store::StoredRun>, Vec<(PathBuf, String)>), Exit> {
    match open(spec).await? {
        Some(s) => s.runs().await.map_err(|e| {
            eprintln!("error: {e}");
            Exit::Refused
        }),
        None => Ok(report::store::read_runs(report_dir)),
    }
}
