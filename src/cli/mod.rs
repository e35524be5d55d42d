//! The command line: `validate`, `plan`, `run`, `recover`, `halt`, `report`, `status`,
//! `schedule`, `deploy`, `sim`, `proxy`. This module owns the clap definitions, `main` (the
//! runtime, logging and the root cancellation token) and the dispatch to one module per
//! command, like cargo's `commands/`.
//!
//! Results go to stdout, logs and progress to stderr. Exit codes ([`Exit`], DESIGN.md): 0
//! passed, 1 failed, 2 invalid input (nothing touched), 3 aborted or inconclusive, 4 internal
//! error, 5 a fault left in place (a revert failed after its retries; the run is `failed`).
//! Safety refusals (src/safety): an unauthorized run in a protected environment exits 2; a
//! halt in force or a busy scope exits 3; neither touches anything.

mod args;
mod ci;
mod init;
mod live;
mod plan;
mod recover;
mod run;
mod sim;
mod status;
mod store;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

pub use crate::exit::Exit;
use crate::safety::{self, journal};
use crate::workspace::Selection;
// Every line this module prints goes through the central redactor: the macro of that name
// masks secrets, so no message here (or added later) can print one.
use crate::eprintln_redacted as eprintln;

#[derive(Parser)]
#[command(
    name = "firedrill",
    version,
    about = "Chaos and disaster-recovery drills that measure time to recover"
)]
struct Cli {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Journals, scope locks and the halt file [default: $XDG_STATE_HOME/firedrill or
    /// ~/.local/state/firedrill].
    #[arg(long, env = "FIREDRILL_STATE_DIR", global = true, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The shared PostgreSQL store of run records, scope locks, the halt and journals
    /// [default: $FIREDRILL_STORE; none: the reports folder and the state directory]. A DSN
    /// without a password, env:NAME or file:PATH (where the DSN with its password is).
    #[arg(long, global = true, value_name = "DSN|env:NAME|file:PATH")]
    store: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check experiment files and report every problem with file:line:column.
    Validate {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        env: Selection,
    },
    /// Show exactly what a drill would do in an environment, touching nothing.
    Plan {
        file: PathBuf,
        #[command(flatten)]
        env: Selection,
        /// Print the plan as data (json or yaml) instead of text.
        #[arg(short, long, value_enum)]
        output: Option<crate::report::text::DataFormat>,
    },
    /// Run a drill: inject, measure time to detect and to recover, revert, report.
    Run(args::RunArgs),
    /// Revert what interrupted runs left behind, from their journals (idempotent).
    #[command(group(clap::ArgGroup::new("which").required(true).args(["run", "all"])))]
    Recover {
        /// The run id whose journal to replay.
        #[arg(long)]
        run: Option<String>,
        /// Every journal whose drill is no longer running.
        #[arg(long)]
        all: bool,
    },
    /// Stop running drills and refuse new ones until released.
    Halt {
        /// Why (shown to every drill that stops or refuses).
        #[arg(long, required_unless_present = "release", conflicts_with = "release")]
        reason: Option<String>,
        /// Lift the halt.
        #[arg(long)]
        release: bool,
    },
    /// Run the embedded simulated Kubernetes API server on 127.0.0.1.
    Sim(crate::sim::SimArgs),
    /// Per drill and environment: last run, outcome, last TTR, next run, why it is held back.
    Status {
        /// Folder of experiments (with firedrill.yaml).
        #[arg(default_value = "experiments")]
        dir: PathBuf,
        #[arg(long, default_value = "reports")]
        report_dir: PathBuf,
    },
    /// Run drills when due: cron in each environment's time zone, windows, promotion gates.
    Schedule(crate::schedule::daemon::ScheduleArgs),
    /// Print Kubernetes manifests (a JSON List) that run the folder's drills as CronJobs.
    Deploy {
        #[arg(long)]
        namespace: String,
        /// Container image with the firedrill binary.
        #[arg(long, default_value = "firedrill:latest")]
        image: String,
        /// json (one List) or yaml (one document per object, for a GitOps repository).
        #[arg(short, long, value_enum, default_value = "json")]
        output: crate::report::text::DataFormat,
        /// Let the CronJobs of protected environments run unattended (they pass `--yes`);
        /// without it they are written suspended, their annotation saying why.
        #[arg(long)]
        allow_production: bool,
        /// A Secret in the namespace whose key `dsn` holds the shared store's DSN: the jobs
        /// read it as FIREDRILL_STORE and keep their records, locks, halt and journals there,
        /// so the promotion gate works in the cluster. Without it, gated jobs skip the gate.
        #[arg(long, value_name = "SECRET")]
        store_secret: Option<String>,
        #[arg(default_value = "experiments")]
        dir: PathBuf,
    },
    /// Run the fault-injecting TCP proxy with its Toxiproxy-compatible control API.
    Proxy(crate::proxy::ProxyArgs),
    /// Read every run record under a reports folder: MTTR per drill over time, trends, overdue drills.
    Report(status::ReportArgs),
    /// Write a first drill of a chosen kind (and firedrill.yaml) into a folder.
    Init(init::InitArgs),
    /// Print a shell completion script (bash: `source <(firedrill completions bash)`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the JSON Schema of experiment files or of firedrill.yaml, for editors
    /// (`# yaml-language-server: $schema=...`) and other tools.
    Schema {
        /// experiment or environments (firedrill.yaml).
        #[arg(value_enum, default_value = "experiment")]
        which: SchemaOf,
    },
    /// The shared store: migrate its schema, sync spooled records, delete old runs, show one.
    Store(store::StoreArgs),
    /// Print the man page (firedrill(1)), or write one page per command into a folder.
    Man {
        /// Write firedrill.1 and firedrill-<command>.1 here instead of printing firedrill.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// Which file `firedrill schema` describes.
#[derive(Clone, Copy, clap::ValueEnum)]
enum SchemaOf {
    /// An experiment file (experiments/*.yaml).
    Experiment,
    /// The environments file (firedrill.yaml).
    Environments,
}

/// The `firedrill` binary after its child and watchdog trampolines.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    journal::install_panic_hook();
    // Resolved once, before anything runs: a store that cannot be used is an error of input.
    let store = match crate::store::Spec::resolve(cli.store.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}\nnothing was touched");
            return Exit::Invalid.into();
        }
    };
    if let Some(flag) = &cli.store {
        // Drills the scheduler starts inherit the store (the flag carries no password), and
        // no thread runs yet.
        std::env::set_var(crate::store::ENV, flag);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::Internal.into();
        }
    };
    let state_dir = safety::state_dir(cli.state_dir.as_deref());
    // The root of every cancellation in this process (src/shutdown.rs).
    let shutdown = crate::shutdown::root();
    runtime.block_on(async {
        match dispatch(cli.command, &state_dir, store.as_ref(), shutdown).await {
            Ok(exit) => exit.into(),
            Err(e) => {
                eprintln!("error: {e:#}");
                Exit::Internal.into()
            }
        }
    })
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(safety::redact::Stderr)
        .try_init();
}

async fn dispatch(
    cmd: Command,
    state_dir: &Path,
    store: Option<&crate::store::Spec>,
    shutdown: CancellationToken,
) -> anyhow::Result<Exit> {
    // Commands that only show something end quietly when their reader is gone (`| head`);
    // a drill, `recover`, the scheduler and the servers carry on.
    safety::redact::exit_on_closed_stdout(matches!(
        cmd,
        Command::Validate { .. }
            | Command::Plan { .. }
            | Command::Halt { .. }
            | Command::Status { .. }
            | Command::Deploy { .. }
            | Command::Report(_)
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Schema { .. }
    ));
    // The state directory decides what `run` and `recover` execute: it must be ours alone.
    if matches!(
        cmd,
        Command::Run(_) | Command::Recover { .. } | Command::Halt { .. } | Command::Plan { .. }
    ) {
        if let Err(e) = safety::check_state_dir(state_dir) {
            eprintln!("error: {e}\nnothing was touched");
            return Ok(Exit::Invalid);
        }
    }
    match cmd {
        Command::Validate { files, env } => Ok(validate::validate(&files, &env)),
        Command::Plan { file, env, output } => plan::plan(&file, &env, state_dir, output).await,
        Command::Run(args) => {
            let envs = args
                .env
                .config
                .clone()
                .or_else(|| crate::experiment::find_environments_file(&args.file));
            let store = match store::with_workspace(store, envs) {
                Ok(s) => s,
                Err(exit) => return Ok(exit),
            };
            run::run(args, state_dir, store.as_ref(), shutdown).await
        }
        Command::Recover { run, all } => {
            recover::recover(state_dir, store, run.as_deref(), all).await
        }
        Command::Halt { reason, release } => {
            recover::halt(state_dir, store, reason.as_deref(), release).await
        }
        Command::Sim(args) => crate::sim::run_standalone(args).await.map(|_| Exit::Passed),
        Command::Proxy(args) => crate::proxy::run_standalone(args)
            .await
            .map(|_| Exit::Passed),
        Command::Status { dir, report_dir } => {
            let envs = dir.join(crate::experiment::ENVIRONMENTS_FILE);
            match store::with_workspace(store, Some(envs)) {
                Ok(s) => Ok(status::status(&dir, &report_dir, s.as_ref()).await),
                Err(exit) => Ok(exit),
            }
        }
        Command::Schedule(args) => {
            let envs = args.dir.join(crate::experiment::ENVIRONMENTS_FILE);
            match store::with_workspace(store, Some(envs)) {
                Ok(s) => crate::schedule::daemon::main(args, state_dir, s.as_ref(), shutdown).await,
                Err(exit) => Ok(exit),
            }
        }
        Command::Store(args) => store::command(args, store, state_dir).await,
        Command::Deploy {
            namespace,
            image,
            output,
            allow_production,
            store_secret,
            dir,
        } => status::deploy(
            &dir,
            &namespace,
            &image,
            output,
            allow_production,
            store_secret.as_deref(),
        ),
        Command::Report(a) => status::report(&a, store).await,
        Command::Init(args) => Ok(init::init(&args)),
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "firedrill", &mut std::io::stdout());
            Ok(Exit::Passed)
        }
        Command::Man { dir } => man(dir.as_deref()),
        Command::Schema { which } => {
            let schema = match which {
                SchemaOf::Experiment => crate::experiment::schema::experiment_schema(),
                SchemaOf::Environments => crate::experiment::schema::environments_schema(),
            };
            println!("{}", serde_json::to_string_pretty(&schema)?);
            Ok(Exit::Passed)
        }
    }
}

/// firedrill(1) on stdout, or one page per command (firedrill-run.1, …) into `dir`.
fn man(dir: Option<&Path>) -> anyhow::Result<Exit> {
    let cmd = Cli::command();
    let Some(dir) = dir else {
        clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
        return Ok(Exit::Passed);
    };
    std::fs::create_dir_all(dir)?;
    let mut pages = vec![("firedrill.1".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("firedrill-{}", sub.get_name());
        pages.push((
            format!("{name}.1"),
            sub.clone()
                .display_name(name)
                .bin_name(format!("firedrill {}", sub.get_name()))
                .version(env!("CARGO_PKG_VERSION")),
        ));
    }
    for (file, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page).render(&mut out)?;
        std::fs::write(dir.join(&file), out)?;
    }
    Ok(Exit::Passed)
}
