//! The commands that read a folder without running anything: `firedrill status` (per drill
//! and environment: last run, outcome, next run, why it is held back), `firedrill deploy`
//! (CronJob manifests for the folder's drills) and `firedrill report` (MTTR over time from
//! every run record under a reports folder).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::report;
use crate::report::text::DataFormat;
use crate::safety;
use crate::{eprintln_redacted as eprintln, println_redacted as println};

use super::Exit;

#[derive(clap::Args)]
pub(super) struct ReportArgs {
    /// The reports folder (<dir>/<experiment>/<environment>/<run-id>.json).
    #[arg(default_value = "reports")]
    dir: PathBuf,
    #[arg(long, value_enum, default_value = "table")]
    format: report::history::Format,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
    /// A drill without a run for longer than this is overdue.
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    overdue: Duration,
    /// Judge ages and overdue drills as of this instant (RFC 3339) instead of now: the same
    /// records then give the same report, byte for byte.
    #[arg(long, value_name = "TIME")]
    as_of: Option<chrono::DateTime<chrono::Utc>>,
}

pub(super) async fn status(
    dir: &Path,
    report_dir: &Path,
    store: Option<&crate::store::Spec>,
) -> Exit {
    use crate::schedule::{catalog, promotion, status};
    let cat = catalog::load(dir);
    for (file, err) in &cat.errors {
        eprintln!("skipping {}:\n{err}\n", file.display());
    }
    let (runs, errors) = match super::store::runs(store, report_dir).await {
        Ok(r) => r,
        Err(exit) => return exit,
    };
    let history = promotion::history_of(&runs, &errors);
    let rows = status::rows(&cat.entries, &history, chrono::Utc::now());
    safety::redact::print_stdout(&status::render(&rows));
    if cat.errors.is_empty() {
        Exit::Passed
    } else {
        Exit::Invalid
    }
}

pub(super) fn deploy(
    dir: &Path,
    namespace: &str,
    image: &str,
    output: DataFormat,
    allow_production: bool,
    store_secret: Option<&str>,
) -> anyhow::Result<Exit> {
    let cat = crate::schedule::catalog::load(dir);
    for (file, err) in &cat.errors {
        eprintln!("skipping {}:\n{err}\n", file.display());
    }
    let m = crate::schedule::deploy::render(
        dir,
        &cat,
        namespace,
        image,
        allow_production,
        store_secret,
    );
    if store_secret.is_none()
        && cat
            .entries
            .iter()
            .any(|e| e.schedule.is_some() && e.env.promote_from.is_some())
    {
        eprintln!("note: without --store-secret the jobs share no history: gated jobs pass --skip-promotion-gate, and their reports end with their pods");
    }
    // Never silently: say which jobs are held and why.
    for job in &m.cron_jobs {
        if job.spec.suspend == Some(true) {
            let why = job
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(crate::schedule::deploy::PROTECTED_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            eprintln!(
                "note: CronJob {} is written suspended: {why}",
                job.metadata.name.as_deref().unwrap_or("?")
            );
        }
    }
    let list = m.to_list();
    let text = match output {
        DataFormat::Json => report::text::data(&list, output),
        // One document per object: what `kubectl apply -f` and GitOps tools read.
        DataFormat::Yaml => list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| report::text::data(item, output))
            .collect::<Result<Vec<_>, _>>()
            .map(|docs| docs.join("---\n")),
    }
    .map_err(|e| {
        anyhow::anyhow!(
            "cannot write the manifests: {}",
            crate::platform::render(&e)
        )
    })?;
    println!("{}", text.trim_end());
    Ok(if cat.errors.is_empty() {
        Exit::Passed
    } else {
        Exit::Invalid
    })
}

pub(super) async fn report(
    a: &ReportArgs,
    store: Option<&crate::store::Spec>,
) -> anyhow::Result<Exit> {
    if store.is_none() {
        report::history::command(&a.dir, a.format, a.out.as_deref(), a.overdue, a.as_of)?;
        return Ok(Exit::Passed);
    }
    let (runs, errors) = match super::store::runs(store, &a.dir).await {
        Ok(r) => r,
        Err(exit) => return Ok(exit),
    };
    let runs = runs
        .into_iter()
        .map(report::history::RunSummary::from)
        .collect();
    report::history::render_command(
        runs,
        &errors,
        a.format,
        a.out.as_deref(),
        a.overdue,
        a.as_of,
    )?;
    Ok(Exit::Passed)
}
