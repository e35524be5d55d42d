//! The CI side of a run: the regression gate against a baseline, JUnit XML, the job summary,
//! and the machine-readable result (`--result-file`) for a program that starts drills (the
//! scheduler, [`crate::exit::RunResult`]). Every output is checked writable before anything is
//! injected.

use std::path::Path;
use std::time::Duration;

use crate::println_redacted as println;
use crate::report;

use super::args::RunArgs;
use super::Exit;

/// `--baseline store`: the baseline is the shared store's runs of the same drill.
pub(super) const BASELINE_STORE: &str = "store";

/// The CI side of a run: the regression gate, JUnit XML and the job summary. `from_store`
/// holds the store's runs when the baseline is [`BASELINE_STORE`].
pub(super) fn ci_outputs(
    args: &RunArgs,
    record: &report::record::RunRecord,
    path: &Path,
    from_store: Option<Vec<report::store::StoredRun>>,
) -> anyhow::Result<Exit> {
    let mut code = Exit::from_record_code(record.exit_code());
    let gate = match &args.baseline {
        Some(b) => {
            let (base, runs) = match from_store {
                Some(runs) => report::ci::baseline_of(
                    runs.into_iter()
                        .map(report::history::RunSummary::from)
                        .collect(),
                    false,
                    &record.experiment.name,
                    &record.environment,
                    &record.run_id,
                ),
                None => report::ci::baseline_ttrs(
                    b,
                    &record.experiment.name,
                    &record.environment,
                    &record.run_id,
                )
                .map_err(anyhow::Error::msg)?,
            };
            let current: Vec<Duration> = record.recovered_ttrs();
            let g =
                crate::analysis::regression::compare(&current, &base, args.max_regression, 0.05);
            println!("regression gate ({runs} baseline run(s)): {}", g.explain());
            if g.failed() && code == Exit::Passed {
                code = Exit::Failed;
            }
            Some(g)
        }
        None => None,
    };
    if let Some(j) = &args.junit {
        let xml = report::ci::junit(record, gate.as_ref())
            .map_err(|e| anyhow::Error::new(e).context("cannot write the JUnit report"))?;
        report::write_atomic(j, xml.as_bytes())?;
    }
    if let Some(s) = &args.summary {
        use std::io::Write;
        let text = report::ci::summary(record, gate.as_ref(), Some(path));
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| anyhow::anyhow!("cannot write the summary {}: {e}", s.display()))?;
    }
    Ok(code)
}
/// The report folder of this drill and environment, the `--junit` file's folder and the
/// `--summary` file, each written to once (and the probe removed).
pub(super) fn outputs_writable(
    args: &RunArgs,
    experiment: &str,
    environment: &str,
) -> Result<(), String> {
    let reports = args.report_dir.join(experiment).join(environment);
    crate::platform::fs::check_writable_dir(&reports)
        .map_err(|e| format!("cannot write reports to {}: {e}", reports.display()))?;
    if let Some(j) = &args.junit {
        if j.is_dir() {
            return Err(format!("--junit {} is a folder, not a file", j.display()));
        }
        let dir = j.parent().filter(|d| !d.as_os_str().is_empty());
        crate::platform::fs::check_writable_dir(dir.unwrap_or(Path::new(".")))
            .map_err(|e| format!("cannot write the JUnit report {}: {e}", j.display()))?;
    }
    if let Some(s) = &args.summary {
        let existed = s.exists();
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s)
            .map_err(|e| format!("cannot write the summary {}: {e}", s.display()))?;
        // A probe leaves nothing behind: a run whose record cannot be shown writes no summary.
        if !existed {
            let _ = std::fs::remove_file(s);
        }
    }
    Ok(())
}
