//! The command line: `validate`, `plan`, `run`, `recover`, `halt`, `report`, `status`,
//! `schedule`, `deploy`, `sim`, `proxy`.
//!
//! Results go to stdout, logs and progress to stderr. Exit codes (DESIGN.md): 0 passed,
//! 1 failed, 2 invalid input (nothing touched), 3 aborted or inconclusive, 4 internal error,
//! 5 a fault left in place (a revert failed after its retries; the run is `failed`).
//! Safety refusals (src/safety): an unauthorized run in a protected environment exits 2; a
//! halt in force or a busy scope exits 3; neither touches anything.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::drill::{self, Options, Plan};
use crate::experiment::{
    self, Diagnostic, Diagnostics, Environment, EnvironmentsFile, LoadOptions, UnsetEnv,
};
use crate::fault::BuildContext;
use crate::report;
use crate::safety::{self, halt, journal, lock};
use crate::timeline::{human, Clock, Event, EventKind};
// Every line this module prints goes through the central redactor: the macro of that name
// masks secrets, so no message here (or added later) can print one.
use crate::eprintln_redacted as eprintln;
use crate::println_redacted as println;

pub const EXIT_INVALID: u8 = 2;
pub const EXIT_INTERNAL: u8 = 4;
/// Aborted or inconclusive; also a refusal by the halt lever or a busy scope.
pub const EXIT_REFUSED: u8 = 3;
/// A run that left a fault in place ([`report::record::EXIT_FAULT_LEFT`]).
pub const EXIT_FAULT_LEFT: u8 = report::record::EXIT_FAULT_LEFT as u8;

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
        env: EnvArgs,
    },
    /// Show exactly what a drill would do in an environment, touching nothing.
    Plan {
        file: PathBuf,
        #[command(flatten)]
        env: EnvArgs,
    },
    /// Run a drill: inject, measure time to detect and to recover, revert, report.
    Run(RunArgs),
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
        #[arg(default_value = "experiments")]
        dir: PathBuf,
    },
    /// Run the fault-injecting TCP proxy with its Toxiproxy-compatible control API.
    Proxy(crate::proxy::ProxyArgs),
    /// Read every run record under a reports folder: MTTR per drill over time, trends, overdue drills.
    Report(ReportArgs),
}

#[derive(clap::Args)]
struct ReportArgs {
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
}

#[derive(clap::Args, Clone)]
struct EnvArgs {
    /// Environment from firedrill.yaml; `local` (built in, the default) targets this machine
    /// and the embedded simulated cluster. `validate` without it checks every environment the
    /// experiment lists.
    #[arg(long)]
    env: Option<String>,
    /// Environments file; default: firedrill.yaml beside the experiment (or its parent).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Set a variable for ${name} interpolation (repeatable), overriding the environment's.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
}

#[derive(clap::Args)]
struct RunArgs {
    file: PathBuf,
    #[command(flatten)]
    env: EnvArgs,
    /// Where reports go: <dir>/<experiment>/<environment>/<run-id>.{json,md,html}.
    #[arg(long, default_value = "reports")]
    report_dir: PathBuf,
    /// Seed for every random choice (recorded in the report); default: random.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the experiment's `repeat` (number of trials, 1 to 1000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1000))]
    repeat: Option<u32>,
    /// How long to wait for the steady state before injecting and after reverting.
    #[arg(long, default_value = "30s", value_parser = parse_steady_state_timeout)]
    steady_state_timeout: Duration,
    /// Also write JUnit XML: one testcase per trial and per probe, TTR/TTD as properties.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Append a Markdown summary for a CI job (e.g. "$GITHUB_STEP_SUMMARY").
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Fail (exit 1) when recovery is slower than these records (a .json file or a reports
    /// folder; same experiment and environment) by more than --max-regression, with p < 0.05.
    #[arg(long, value_name = "FILE|DIR")]
    baseline: Option<PathBuf>,
    /// Plain progress lines even on a terminal (no live view, no game-day keys).
    #[arg(long)]
    no_live: bool,
    /// The slowdown the regression gate allows.
    #[arg(long, default_value = "20%", value_parser = crate::analysis::regression::parse_margin)]
    max_regression: f64,
    /// Confirm a run in a protected environment without the interactive prompt.
    #[arg(long)]
    yes: bool,
    /// Push this run's metrics to a Prometheus Pushgateway (e.g. http://127.0.0.1:9091).
    #[arg(long, value_name = "URL")]
    pushgateway: Option<String>,
    /// Run although the environment's promotion gate (`promote-from`) holds this drill.
    #[arg(long)]
    skip_promotion_gate: bool,
}

/// The longest `--steady-state-timeout`: a deadline beyond it would overflow the clock (a
/// panic), and no drill waits a week for its steady state.
const MAX_STEADY_STATE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

pub(crate) fn parse_steady_state_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_STEADY_STATE_TIMEOUT {
        return Err(format!(
            "`{s}` is longer than the most a drill waits for its steady state ({})",
            humantime::format_duration(MAX_STEADY_STATE_TIMEOUT)
        ));
    }
    Ok(d)
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    journal::install_panic_hook();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_INTERNAL);
        }
    };
    let state_dir = safety::state_dir(cli.state_dir.as_deref());
    runtime.block_on(async {
        match dispatch(cli.command, &state_dir).await {
            Ok(code) => ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(EXIT_INTERNAL)
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

async fn dispatch(cmd: Command, state_dir: &Path) -> anyhow::Result<u8> {
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
    ));
    // The state directory decides what `run` and `recover` execute: it must be ours alone.
    if matches!(
        cmd,
        Command::Run(_) | Command::Recover { .. } | Command::Halt { .. } | Command::Plan { .. }
    ) {
        if let Err(e) = safety::check_state_dir(state_dir) {
            eprintln!("error: {e}\nnothing was touched");
            return Ok(EXIT_INVALID);
        }
    }
    match cmd {
        Command::Validate { files, env } => Ok(validate(&files, &env)),
        Command::Plan { file, env } => plan(&file, &env, state_dir).await,
        Command::Run(args) => run(args, state_dir).await,
        Command::Recover { run, all } => recover(state_dir, run.as_deref(), all).await,
        Command::Halt { reason, release } => halt_command(state_dir, reason.as_deref(), release),
        Command::Sim(args) => crate::sim::run_standalone(args).await.map(|_| 0),
        Command::Proxy(args) => crate::proxy::run_standalone(args).await.map(|_| 0),
        Command::Status { dir, report_dir } => Ok(status(&dir, &report_dir)),
        Command::Schedule(args) => crate::schedule::daemon::main(args, state_dir).await,
        Command::Deploy {
            namespace,
            image,
            dir,
        } => {
            let cat = crate::schedule::catalog::load(&dir);
            for (file, err) in &cat.errors {
                eprintln!("skipping {}:\n{err}\n", file.display());
            }
            let m = crate::schedule::deploy::render(&dir, &cat, &namespace, &image);
            println!("{}", serde_json::to_string_pretty(&m.to_list())?);
            Ok(if cat.errors.is_empty() {
                0
            } else {
                EXIT_INVALID
            })
        }
        Command::Report(a) => {
            report::history::command(&a.dir, a.format, a.out.as_deref(), a.overdue)?;
            Ok(0)
        }
    }
}

/// An experiment's environment, from firedrill.yaml (or the built-in `local`).
fn environment(file: &Path, args: &EnvArgs) -> Result<(Environment, Vec<String>), Diagnostics> {
    environment_named(file, args, args.env.as_deref().unwrap_or("local"))
}

fn environment_named(
    file: &Path,
    args: &EnvArgs,
    name: &str,
) -> Result<(Environment, Vec<String>), Diagnostics> {
    let config = args
        .config
        .clone()
        .or_else(|| experiment::find_environments_file(file));
    let envs = match &config {
        Some(path) => experiment::load_environments(path)?,
        None => EnvironmentsFile::default(),
    };
    let known: Vec<String> = envs.environments.iter().map(|e| e.name.clone()).collect();
    let mut env = match envs.environments.into_iter().find(|e| e.name == name) {
        Some(e) => e,
        None if name == "local" => Environment::local(),
        None => {
            let help = if known.is_empty() {
                "define it in firedrill.yaml beside the experiment, or use --env local".into()
            } else {
                format!("known environments: local, {}", known.join(", "))
            };
            return Err(Diagnostics::single(
                Diagnostic::error(
                    config.as_deref().unwrap_or(file),
                    1,
                    1,
                    format!("unknown environment `{name}`"),
                )
                .with_help(Some(help)),
            ));
        }
    };
    for (k, v) in &args.vars {
        // A command-line value is data: environment values are expanded (they may read
        // `${env:NAME}`), so it goes in escaped and comes out as typed.
        env.vars.insert(k.clone(), experiment::literal_value(v));
    }
    Ok((env, known))
}

/// Loads the experiment `file` whose bytes the command has read once.
fn load(
    file: &Path,
    bytes: &[u8],
    env: &Environment,
    known: &[String],
    extra: &BTreeMap<String, String>,
    unset_env: UnsetEnv,
) -> Result<experiment::Loaded, Diagnostics> {
    let opts = LoadOptions {
        env,
        extra_vars: extra,
        known_environments: if known.is_empty() { None } else { Some(known) },
        unset_env,
    };
    experiment::load_experiment_bytes(file, bytes, &opts)
}

/// Loads an experiment for one environment the way `validate` does (simulated URLs as
/// placeholders, an unset `${env:}` secret a warning): what the scheduler needs to know of a
/// drill without running it; the drill's own `run` refuses an unset secret.
pub fn load_for(
    file: &Path,
    env: &str,
    config: Option<&Path>,
) -> Result<(experiment::Experiment, Environment), Diagnostics> {
    let args = EnvArgs {
        env: Some(env.to_string()),
        config: config.map(Path::to_path_buf),
        vars: Vec::new(),
    };
    let (env, known) = environment(file, &args)?;
    let bytes = experiment::read_capped(file)?;
    let placeholders = simulation_placeholders(file, &bytes)?;
    let loaded = load(file, &bytes, &env, &known, &placeholders, UnsetEnv::Warn)?;
    Ok((loaded.experiment, env))
}

fn validate(files: &[PathBuf], args: &EnvArgs) -> u8 {
    let mut bad = false;
    for file in files {
        match validate_one(file, args) {
            Ok(summary) => println!("ok: {} ({summary})", file.display()),
            Err(d) => {
                bad = true;
                eprintln!("{d}");
            }
        }
    }
    if bad {
        EXIT_INVALID
    } else {
        0
    }
}

/// Validate an experiment in the environment asked for, or else in every environment it lists
/// (`local` when it lists none); an environments file is validated as one.
fn validate_one(file: &Path, args: &EnvArgs) -> Result<String, Diagnostics> {
    if file
        .file_name()
        .is_some_and(|n| n == experiment::ENVIRONMENTS_FILE)
    {
        let envs = experiment::load_environments(file)?;
        let names: Vec<&str> = envs.environments.iter().map(|e| e.name.as_str()).collect();
        return Ok(format!("environments: {}", names.join(", ")));
    }
    let bytes = experiment::read_capped(file)?;
    let placeholders = simulation_placeholders(file, &bytes)?;
    let names = match &args.env {
        Some(name) => vec![name.clone()],
        None => match listed_environments(file, &bytes) {
            Some(listed) if !listed.is_empty() => listed,
            _ => vec!["local".to_string()],
        },
    };
    let mut all = Diagnostics::default();
    let mut name_of_drill = String::new();
    for name in &names {
        let loaded = environment_named(file, args, name).and_then(|(env, known)| {
            load(file, &bytes, &env, &known, &placeholders, UnsetEnv::Warn)
        });
        match loaded {
            Ok(l) => {
                if name_of_drill.is_empty() {
                    for w in &l.warnings {
                        eprintln!("{w}\n");
                    }
                }
                name_of_drill = l.experiment.name;
            }
            // The same mistake in every environment is reported once.
            Err(d) => {
                for diag in d.0 {
                    if !all.0.contains(&diag) {
                        all.0.push(diag);
                    }
                }
            }
        }
    }
    if all.0.is_empty() {
        Ok(format!("{name_of_drill} in {}", names.join(", ")))
    } else {
        Err(all)
    }
}

/// The `environments:` an experiment lists, read leniently (the full load reports any error).
fn listed_environments(file: &Path, bytes: &[u8]) -> Option<Vec<String>> {
    let doc: BTreeMap<String, serde_json::Value> = experiment::parse_yaml(file, bytes).ok()?;
    let list = doc.get("environments")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
    )
}

/// `${sim.NS.DEPLOY}` names for validation without starting the cluster.
fn simulation_placeholders(
    file: &Path,
    bytes: &[u8],
) -> Result<BTreeMap<String, String>, Diagnostics> {
    let mut vars = BTreeMap::new();
    // A missing scenario is reported by the full load, at the experiment's `simulation` key.
    if let Some(path) = experiment::peek_simulation_bytes(file, bytes)?.filter(|p| p.exists()) {
        // Any valid port: the real one is chosen when the cluster starts, and nothing connects
        // to it while validating or planning.
        for (ns, deploy) in crate::sim::load_scenario(&path)?.http_deployments() {
            vars.extend(sim_vars(&ns, &deploy, "http://127.0.0.1:1"));
        }
    }
    Ok(vars)
}

/// The embedded simulated cluster of an experiment with a `simulation:` run where the
/// environment names no cluster, started on loopback, and the `${sim...}` variables of its
/// endpoints. Nothing real is touched. `Err` is the exit code (the error was printed).
async fn start_simulation(
    file: &Path,
    bytes: &[u8],
    env: &Environment,
    seed: u64,
) -> Result<Option<(crate::sim::SimHandle, BTreeMap<String, String>)>, u8> {
    let path = match experiment::peek_simulation_bytes(file, bytes) {
        Ok(Some(path)) if env.kube_context.is_none() && path.exists() => path,
        Ok(_) => return Ok(None),
        Err(d) => {
            eprintln!("{d}");
            return Err(EXIT_INVALID);
        }
    };
    let scenario = crate::sim::load_scenario(&path).map_err(|d| {
        eprintln!("{d}");
        EXIT_INVALID
    })?;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let handle = crate::sim::SimCluster::start(scenario, loopback, seed)
        .await
        .map_err(|e| {
            eprintln!("error: cannot start the simulated cluster: {e}");
            EXIT_INTERNAL
        })?;
    let mut vars = BTreeMap::new();
    for (ns, deploy, url) in handle.traffic_urls() {
        vars.extend(sim_vars(&ns, &deploy, &url));
    }
    eprintln!(
        "simulated cluster: {} ({})",
        handle.api_url(),
        path.display()
    );
    Ok(Some((handle, vars)))
}

/// The variables of a simulated deployment's loopback endpoint: `${sim.NS.DEPLOY}` is its URL
/// (for probes), `${sim.NS.DEPLOY.addr}` the same endpoint as host:port (for a `proxy:` upstream).
fn sim_vars(namespace: &str, deployment: &str, url: &str) -> [(String, String); 2] {
    let name = format!("sim.{namespace}.{deployment}");
    let addr = url
        .strip_prefix("http://")
        .unwrap_or(url)
        .trim_end_matches('/');
    [
        (format!("{name}.addr"), addr.to_string()),
        (name, url.to_string()),
    ]
}

/// Whether the experiment needs a Kubernetes API at all.
fn needs_kube(exp: &experiment::Experiment) -> bool {
    exp.targets
        .iter()
        .any(|t| matches!(t.kind, experiment::TargetKind::Kubernetes(_)))
        || exp
            .probes
            .iter()
            .any(|p| matches!(p.kind, experiment::ProbeKind::Kubernetes(_)))
}

/// Watch-driven sources: the kubernetes probes, and the pod phases of every pod-kill target
/// (and of a kill-primary's pods).
fn kube_sources(exp: &experiment::Experiment, client: &kube::Client) -> Vec<drill::SampleSource> {
    let mut sources: Vec<drill::SampleSource> = Vec::new();
    for (i, p) in exp.probes.iter().enumerate() {
        if let experiment::ProbeKind::Kubernetes(k) = &p.kind {
            sources.push(Box::new(crate::probe::kube::workload_probe(
                i,
                client.clone(),
                k.clone(),
                p.every,
                p.every_during,
            )));
        }
    }
    for f in &exp.faults {
        if let Some(target) = f.pod_target() {
            if let Some(experiment::TargetKind::Kubernetes(k)) = exp.target(target).map(|t| &t.kind)
            {
                sources.push(Box::new(crate::probe::kube::pod_phases(
                    client.clone(),
                    k.namespace.clone(),
                    k.selector.clone(),
                )));
            }
        }
    }
    sources
}

async fn plan(file: &Path, args: &EnvArgs, state_dir: &Path) -> anyhow::Result<u8> {
    let (env, known) = match environment(file, args) {
        Ok(x) => x,
        Err(d) => {
            eprintln!("{d}");
            return Ok(EXIT_INVALID);
        }
    };
    let bytes = match experiment::read_capped(file) {
        Ok(b) => b,
        Err(d) => {
            eprintln!("{d}");
            return Ok(EXIT_INVALID);
        }
    };
    // The embedded simulated cluster runs for the plan too (in-process, on loopback), so the
    // plan resolves the pods a run would kill and names the real probe URLs.
    let (sim, vars) = match start_simulation(file, &bytes, &env, 1).await {
        Ok(Some((handle, vars))) => (Some(handle), vars),
        Ok(None) => match simulation_placeholders(file, &bytes) {
            Ok(vars) => (None, vars),
            Err(d) => {
                eprintln!("{d}");
                return Ok(EXIT_INVALID);
            }
        },
        Err(code) => return Ok(code),
    };
    let loaded = match load(file, &bytes, &env, &known, &vars, UnsetEnv::Refuse) {
        Ok(l) => l,
        Err(d) => {
            eprintln!("{d}");
            return Ok(EXIT_INVALID);
        }
    };
    let exp = &loaded.experiment;
    experiment::secrets::register(exp);
    println!("drill `{}` in environment `{}`", exp.name, env.name);
    if env.protected {
        println!("  environment `{}` is protected: `run` needs --env {}, the experiment listing it, the kubeconfig's current context `{}`, and a typed confirmation or --yes", env.name, env.name, env.kube_context.as_deref().unwrap_or("(none set)"));
    }
    if let Some(h) = halt::current(state_dir) {
        println!("  HALTED: {}", h.describe());
    }
    let simulated = exp.simulation.is_some() && env.kube_context.is_none();
    println!(
        "  locks: {}",
        lock::scopes(exp, &env.name, simulated).join(", ")
    );
    println!("  trials: {}, cooldown {}", exp.repeat, human(exp.cooldown));
    let counted_from = if exp.faults.iter().any(|f| f.duration().is_some()) {
        " (time to recover counts from the removal of the lasting fault)"
    } else {
        ""
    };
    println!(
        "  recovery: objective {}, stable for {}, timeout {}{counted_from}",
        human(exp.recovery.objective),
        human(exp.recovery.stable_for),
        human(exp.recovery.timeout)
    );
    for p in &exp.probes {
        let (kind, checks) = drill::plan::probe_checks(p);
        println!(
            "  probe {} ({kind}): {checks} every {} ({} while observing)",
            p.name,
            human(p.every),
            human(p.every_during)
        );
    }
    // Targets are resolved read-only (lists and gets) where the cluster is reachable.
    let mut ctx = BuildContext::default();
    if needs_kube(exp) && !simulated && (env.name != "local") {
        match crate::platform::kube::client_for(env.kube_context.as_deref()).await {
            Ok((c, _)) => ctx.kube = Some(c),
            Err(e) => println!("  cluster: {e} (targets not resolved)"),
        }
    } else if let Some(handle) = &sim {
        println!(
            "  cluster: the embedded simulated cluster (started for this plan at {}; `run` starts its own from the same scenario)",
            handle.api_url()
        );
        if needs_kube(exp) {
            match handle.kube_client().await {
                Ok(c) => ctx.kube = Some(c),
                Err(e) => println!("  cluster: {e} (targets not resolved)"),
            }
        }
    }
    match Plan::build_faults(exp, &ctx) {
        Ok(faults) => {
            for (f, name) in faults.iter().zip(&exp.fault_names) {
                println!(
                    "  fault {}: {}",
                    f.label_with(name.as_deref()),
                    f.describe()
                );
                // The simulated pods take a moment to be ready, as a run's steady state waits.
                let mut resolved = f.prepare().await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while sim.is_some() && resolved.is_err() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    resolved = f.prepare().await;
                }
                match resolved {
                    Ok(Some(chosen)) => {
                        println!("    resolved now (a run chooses again): {chosen}")
                    }
                    Ok(None) => {}
                    Err(e) => println!("    cannot resolve its targets now: {e}"),
                }
            }
        }
        Err(e) => println!("  faults: {e}"),
    }
    if let Some(handle) = sim {
        handle.shutdown().await;
    }
    println!("nothing was touched");
    Ok(0)
}

async fn run(args: RunArgs, state_dir: &Path) -> anyhow::Result<u8> {
    let file = &args.file;
    let (env, known) = match environment(file, &args.env) {
        Ok(x) => x,
        Err(d) => {
            eprintln!("{d}");
            return Ok(EXIT_INVALID);
        }
    };
    if let Some(b) = args.baseline.as_ref().filter(|b| !b.exists()) {
        eprintln!("error: baseline {} does not exist", b.display());
        return Ok(EXIT_INVALID);
    }
    // A state directory that cannot be used is not a halt: say what is wrong with it.
    if let Some(problem) = halt::state_dir_problem(state_dir) {
        eprintln!("error: {problem}\n  = help: point --state-dir (or FIREDRILL_STATE_DIR) at a directory this user can write");
        return Ok(EXIT_INVALID);
    }
    // The halt lever refuses before anything starts.
    if let Some(h) = halt::current(state_dir) {
        eprintln!(
            "error: {}\n  = help: `firedrill halt --release` lifts it",
            h.describe()
        );
        return Ok(EXIT_REFUSED);
    }
    let seed = args.seed.unwrap_or_else(rand::random);

    // A simulated cluster starts before the full load: its URLs are variables.
    let mut sim = None;
    let mut extra = BTreeMap::new();
    // Read once: the simulation's URLs and the drill come from the same version of the file.
    let bytes = match experiment::read_capped(file) {
        Ok(b) => b,
        Err(d) => {
            eprintln!("{d}");
            return Ok(EXIT_INVALID);
        }
    };
    match start_simulation(file, &bytes, &env, seed).await {
        Ok(Some((handle, vars))) => {
            extra.extend(vars);
            sim = Some(handle);
        }
        Ok(None) => {}
        Err(code) => return Ok(code),
    }
    let loaded = match load(file, &bytes, &env, &known, &extra, UnsetEnv::Refuse) {
        Ok(l) => l,
        Err(d) => {
            eprintln!("{d}");
            return Ok(EXIT_INVALID);
        }
    };
    for w in &loaded.warnings {
        eprintln!("{w}\n");
    }
    let mut exp = loaded.experiment;
    experiment::secrets::register(&exp);
    if let Some(n) = args.repeat {
        exp.repeat = n;
    }
    if env.name != "local" && !exp.environments.contains(&env.name) {
        eprintln!(
            "error: drill `{}` does not list environment `{}`\n  = help: add it to `environments:` in {}",
            exp.name,
            env.name,
            file.display()
        );
        return Ok(EXIT_INVALID);
    }
    if let Err(code) = promotion_gate(&args, &env, &exp) {
        return Ok(code);
    }
    // Every output is created and test-written before anything is injected: a drill never runs
    // against its target for results it cannot keep.
    if let Err(e) = outputs_writable(&args, &exp.name, &env.name) {
        eprintln!("error: {e}\n  = help: fix the path or its permissions; nothing was touched");
        return Ok(EXIT_INVALID);
    }
    if let Err(code) = guard(&args, &env, &exp, sim.is_some()) {
        return Ok(code);
    }
    // One drill per scope: the lock is held until this function returns.
    let run_id = drill::plan::new_run_id();
    let since = safety::now_rfc3339();
    let scopes = lock::scopes(&exp, &env.name, sim.is_some());
    let holder = lock::Holder::this_process(&run_id, &exp.name, &since);
    let _scope_lock = match lock::acquire(state_dir, &scopes, &holder) {
        Ok(l) => l,
        Err(e @ lock::LockError::Held { .. }) => {
            eprintln!("error: {e}\n  = help: wait for it to finish, or stop it (Ctrl-C in its terminal, or `firedrill halt`)");
            return Ok(EXIT_REFUSED);
        }
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(EXIT_INTERNAL);
        }
    };
    if !recover_stale(state_dir, &scopes).await {
        return Ok(EXIT_REFUSED);
    }
    // The cluster is pinned for the journal only when it outlives this process (an embedded
    // simulation ends with it).
    let (kube, cluster) = if !needs_kube(&exp) {
        (None, None)
    } else if let Some(handle) = &sim {
        (Some(handle.kube_client().await?), None)
    } else {
        match crate::platform::kube::client_for(env.kube_context.as_deref()).await {
            Ok((c, cluster)) => (Some(c), Some(cluster)),
            Err(e) => {
                eprintln!("error: {e}\n  = help: set `kube-context` for environment `{}` in firedrill.yaml, or give the experiment a `simulation` to run it on the embedded simulated cluster", env.name);
                return Ok(3);
            }
        }
    };
    if let Some(h) = match &kube {
        Some(c) => halt::in_cluster(c).await,
        None => None,
    } {
        eprintln!(
            "error: {}\n  = help: delete the ConfigMap (or its `{}` annotation) to lift it",
            h.describe(),
            halt::CLUSTER_ANNOTATION
        );
        return Ok(EXIT_REFUSED);
    }
    // Drills on other machines share the cluster, not this state directory: a Lease per
    // namespace scope. An API that refuses leases (RBAC) only warns; the file lock stands.
    let mut leases = Vec::new();
    if let (Some(c), None) = (&kube, &sim) {
        for ns in scopes
            .iter()
            .filter_map(|s| s.split_once("/kube/").map(|(_, ns)| ns))
        {
            match lock::acquire_lease(c, ns, &holder).await {
                Ok(l) => leases.push(l),
                Err(e @ lock::LockError::Held { .. }) => {
                    eprintln!("error: {e}\n  = help: wait for it to finish, or stop it");
                    for l in leases {
                        l.release().await;
                    }
                    return Ok(EXIT_REFUSED);
                }
                Err(e) => eprintln!("warning: {e}; relying on the local lock only"),
            }
        }
    }
    let proxy = match start_proxies(&exp, seed).await {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(3);
        }
    };
    let ctx = BuildContext {
        kube: kube.clone(),
        seed,
        proxy: proxy.clone(),
        run_id: drill::plan::new_run_id(),
    };
    let faults = match Plan::build_faults(&exp, &ctx) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            for l in leases {
                l.release().await;
            }
            return Ok(EXIT_INVALID);
        }
    };
    let plan = Plan::new(exp, env, seed, faults, &ctx);
    eprintln!(
        "run {} of `{}` in `{}` (seed {})",
        plan.run_id, plan.experiment.name, plan.environment.name, plan.seed
    );
    for (i, f) in plan.faults.iter().enumerate() {
        eprintln!("  will inject {}: {}", plan.fault_label(i), f.describe());
    }

    let journal = match journal::Journal::create(
        state_dir,
        journal::Header {
            run_id: plan.run_id.clone(),
            pid: std::process::id(),
            start_time: safety::process_start(std::process::id()),
            boot_id: safety::boot_id(),
            experiment: plan.experiment.name.clone(),
            environment: plan.environment.name.clone(),
            scopes: scopes.clone(),
            since,
            cluster,
            embedded_sim: sim.is_some(),
        },
    ) {
        Ok(j) => std::sync::Arc::new(j),
        Err(e) => {
            eprintln!("error: {e}\n  = help: nothing was touched; check --state-dir");
            for l in leases {
                l.release().await;
            }
            return Ok(EXIT_INTERNAL);
        }
    };
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
            for l in leases {
                l.release().await;
            }
            return Ok(EXIT_INTERNAL);
        }
    };
    tracing::debug!(pid = lifeline.pid, "watchdog started");

    let cancel = CancellationToken::new();
    journal::set_cancel_on_panic(Some(cancel.clone()));
    spawn_signal_handler(cancel.clone());
    let halted = spawn_halt_watcher(state_dir.to_path_buf(), kube.clone(), cancel.clone());
    let ceiling_hit = spawn_ceiling(plan.experiment.max_duration, cancel.clone());
    let mut opts = Options::new(cancel);
    opts.journal = Some(journal.clone());
    opts.steady_state_timeout = args.steady_state_timeout;
    if let Some(client) = &kube {
        opts.sources = kube_sources(&plan.experiment, client);
    }
    // On a terminal: the game-day live view with its keys; otherwise plain progress lines.
    let mut live = None;
    if !args.no_live && crate::live::available() {
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
        match crate::live::Live::start(title, &probes, opts.cancel.clone()) {
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
        Ok(t) => Some(std::sync::Arc::new(t)),
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
    for l in leases {
        l.release().await;
    }
    if let Some(handle) = sim {
        handle.shutdown().await;
    }

    // Every view of the run (report files, terminal, JUnit, job summary, metrics) comes from
    // the masked record; a record that cannot be masked is shown nowhere.
    let record = match report::redacted(&record) {
        Ok(r) => r.into_owned(),
        Err(e) => {
            eprintln!("error: {e}\n  = help: no report, JUnit or summary was written; the run's outcome was `{}`", record.outcome);
            return Ok(EXIT_INTERNAL);
        }
    };
    let path = report::write(&args.report_dir, &record)?;
    if let Some(t) = &trail {
        t.remove();
    }
    safety::redact::print_stdout(&safety::redact::text(&report::terminal::render(
        &record,
        Some(&path),
    )));
    if let Some(url) = &args.pushgateway {
        let summary = crate::schedule::promotion::RunSummary::from(&record);
        crate::schedule::metrics::push(url, &summary).await;
    }
    ci_outputs(&args, &record, &path)
}

fn status(dir: &Path, report_dir: &Path) -> u8 {
    use crate::schedule::{catalog, promotion, status};
    let cat = catalog::load(dir);
    for (file, err) in &cat.errors {
        eprintln!("skipping {}:\n{err}\n", file.display());
    }
    let history = promotion::history(report_dir);
    let rows = status::rows(&cat.entries, &history, chrono::Utc::now());
    safety::redact::print_stdout(&status::render(&rows));
    if cat.errors.is_empty() {
        0
    } else {
        EXIT_INVALID
    }
}

/// The CI side of a run: the regression gate, JUnit XML and the job summary.
fn ci_outputs(
    args: &RunArgs,
    record: &report::record::RunRecord,
    path: &Path,
) -> anyhow::Result<u8> {
    let mut code = record.exit_code() as u8;
    let gate = match &args.baseline {
        Some(b) => {
            let (base, runs) = report::ci::baseline_ttrs(
                b,
                &record.experiment.name,
                &record.environment,
                &record.run_id,
            )
            .map_err(anyhow::Error::msg)?;
            let current: Vec<Duration> = record.recovered_ttrs();
            let g =
                crate::analysis::regression::compare(&current, &base, args.max_regression, 0.05);
            println!("regression gate ({runs} baseline run(s)): {}", g.explain());
            if g.failed() && code == 0 {
                code = 1;
            }
            Some(g)
        }
        None => None,
    };
    if let Some(j) = &args.junit {
        let xml = report::ci::junit(record, gate.as_ref()).map_err(anyhow::Error::msg)?;
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
fn outputs_writable(args: &RunArgs, experiment: &str, environment: &str) -> Result<(), String> {
    let reports = args.report_dir.join(experiment).join(environment);
    safety::check_writable_dir(&reports)
        .map_err(|e| format!("cannot write reports to {}: {e}", reports.display()))?;
    if let Some(j) = &args.junit {
        if j.is_dir() {
            return Err(format!("--junit {} is a folder, not a file", j.display()));
        }
        let dir = j.parent().filter(|d| !d.as_os_str().is_empty());
        safety::check_writable_dir(dir.unwrap_or(Path::new(".")))
            .map_err(|e| format!("cannot write the JUnit report {}: {e}", j.display()))?;
    }
    if let Some(s) = &args.summary {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(s)
            .map_err(|e| format!("cannot write the summary {}: {e}", s.display()))?;
    }
    Ok(())
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

/// Every terminating signal a process can catch cancels the drill; the executor then
/// reverts. (SIGHUP: the terminal or SSH session closed; SIGQUIT, SIGUSR1/2, SIGALRM … would
/// otherwise end the process with the fault in place.) SIGPIPE is ignored by the Rust runtime:
/// a closed stream is a write error, and no print here panics on one. The synchronous faults
/// (SIGSEGV, SIGBUS, SIGILL, SIGFPE) cannot be caught safely and SIGKILL not at all: their
/// journal is left for `recover`. Further signals are reported but never skip the revert.
fn spawn_signal_handler(cancel: CancellationToken) {
    use nix::sys::signal::Signal;
    use tokio::signal::unix::{signal, SignalKind};
    const CAUGHT: [Signal; 14] = [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGALRM,
        Signal::SIGTERM,
        Signal::SIGSTKFLT,
        Signal::SIGXCPU,
        Signal::SIGXFSZ,
        Signal::SIGVTALRM,
        Signal::SIGPROF,
        Signal::SIGIO,
        Signal::SIGPWR,
    ];
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for sig in CAUGHT {
        match signal(SignalKind::from_raw(sig as i32)) {
            Ok(mut stream) => {
                let tx = tx.clone();
                tokio::spawn(async move {
                    while stream.recv().await.is_some() {
                        if tx.send(sig).is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!("cannot catch {sig}: {e}; it would end firedrill without reverting")
            }
        }
    }
    tokio::spawn(async move {
        let mut n = 0;
        while let Some(sig) = rx.recv().await {
            n += 1;
            if n == 1 {
                eprintln!("stopping ({sig}): reverting every injected fault (signals now only repeat this message)");
                cancel.cancel();
            } else {
                eprintln!("still reverting; firedrill exits when every fault is rolled back");
            }
        }
    });
}

/// The promotion gate holds a run by hand like a scheduled one: an environment with
/// `promote-from` runs a drill only after this version passed upstream (judged from the
/// reports folder), unless `--skip-promotion-gate` says otherwise. Nothing is touched when held.
fn promotion_gate(
    args: &RunArgs,
    env: &Environment,
    exp: &experiment::Experiment,
) -> Result<(), u8> {
    use crate::schedule::promotion::{gate, history, Gate, Held};
    // Most environments have no gate: do not read the whole reports folder for them.
    if env.promote_from.is_none() {
        return Ok(());
    }
    let runs = history(&args.report_dir);
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
        args.report_dir.display(),
        args.file.display()
    );
    Err(EXIT_REFUSED)
}

/// The safety checks before anything is touched: a protected environment's conditions
/// (src/safety/guard.rs), and `local` never reaching a real cluster. `Err` is the exit code.
fn guard(
    args: &RunArgs,
    env: &Environment,
    exp: &experiment::Experiment,
    simulated: bool,
) -> Result<(), u8> {
    let kube = needs_kube(exp);
    if env.name == "local" && kube && !simulated {
        eprintln!(
            "error: the built-in `local` environment only targets the embedded simulated cluster, and drill `{}` has no `simulation`\n  = help: give it a `simulation`, or run it with `--env ENV` for an environment whose `kube-context` names the cluster",
            exp.name
        );
        return Err(EXIT_INVALID);
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
        yes: args.yes,
    };
    let confirmed = match safety::guard::check(&request) {
        Ok(false) => Ok(()),
        Ok(true) => safety::guard::confirm(&env.name),
        Err(r) => Err(r),
    };
    confirmed.map_err(|refusal| {
        eprintln!("error: {refusal}\n  = help: nothing was touched");
        EXIT_INVALID
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

/// `firedrill recover`: replay the undo records of journals whose drill is gone.
async fn recover(state_dir: &Path, run: Option<&str>, all: bool) -> anyhow::Result<u8> {
    let states: Vec<_> = match run {
        Some(id) => {
            let path = journal::journal_dir(state_dir).join(format!("{id}.jsonl"));
            if !path.is_file() {
                eprintln!(
                    "error: no journal for run `{id}` in {}",
                    journal::journal_dir(state_dir).display()
                );
                return Ok(EXIT_INVALID);
            }
            vec![journal::read(&path)]
        }
        None if all => journal::list(state_dir),
        None => vec![],
    };
    let mut code = 0;
    let mut recovered = 0;
    for state in states {
        let state = match state {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {e}");
                code = EXIT_REFUSED;
                continue;
            }
        };
        let h = &state.header;
        if let Some(w) = state.torn_warning() {
            eprintln!("{w}");
        }
        if state.closed {
            continue;
        }
        if h.pid != std::process::id() && state.runner_alive(state_dir) {
            println!(
                "run {} of `{}`: still running (pid {}), skipped",
                h.run_id, h.experiment, h.pid
            );
            continue;
        }
        let done = match journal::recover(&state.path).await {
            Ok(d) => d,
            Err(e) => {
                eprintln!("error: {e}");
                code = EXIT_REFUSED;
                continue;
            }
        };
        recovered += 1;
        println!(
            "run {} of `{}` in `{}`:",
            h.run_id, h.experiment, h.environment
        );
        if done.is_empty() {
            println!("  nothing was left in place");
        }
        for r in &done {
            println!("  {}", safety::redact::text(&journal::describe(r)));
            if matches!(r.result, journal::RecoverResult::Failed(_)) {
                code = EXIT_REFUSED;
            }
        }
    }
    if recovered == 0 && code == 0 {
        println!("nothing to recover");
    }
    Ok(code)
}

/// `firedrill halt`: pull or release the lever.
fn halt_command(state_dir: &Path, reason: Option<&str>, release: bool) -> anyhow::Result<u8> {
    if release {
        if halt::release(state_dir)? {
            println!("halt released: drills may run again");
        } else {
            println!("no halt was in force");
        }
        return Ok(0);
    }
    let reason = reason.unwrap_or("halted by an operator");
    let h = halt::set(state_dir, reason)?;
    println!(
        "{}\nrunning drills revert and stop; new drills refuse until `firedrill halt --release`",
        h.describe()
    );
    Ok(0)
}

/// Polls the halt file; when it appears, records why and cancels the drill (which reverts).
fn spawn_halt_watcher(
    state_dir: PathBuf,
    kube: Option<kube::Client>,
    cancel: CancellationToken,
) -> std::sync::Arc<std::sync::Mutex<Option<halt::Halt>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(None));
    let out = seen.clone();
    tokio::spawn(async move {
        let mut tick = 0u32;
        loop {
            // The local file every tick; the cluster's ConfigMap every fourth (≤ 1s apart).
            let mut found = halt::current(&state_dir);
            if found.is_none() && tick.is_multiple_of(4) {
                if let Some(c) = &kube {
                    found = halt::in_cluster(c).await;
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

/// One event in a few words, for progress lines and the live view.
pub fn event_text(e: &Event) -> String {
    match &e.kind {
        EventKind::Phase { phase } => format!("{phase}"),
        EventKind::FaultTargets { fault, chosen } => format!("{fault}: {chosen}"),
        EventKind::FaultInjected { fault, detail } => format!("injected {fault}: {detail}"),
        EventKind::FaultFailed { fault, error } => format!("could not inject {fault}: {error}"),
        EventKind::FaultReverted { fault, detail } => format!("reverted {fault}: {detail}"),
        EventKind::RevertFailed { fault, error } => format!("REVERT FAILED {fault}: {error}"),
        EventKind::ProbeChanged {
            probe, ok: true, ..
        } => format!("{probe} passing"),
        EventKind::ProbeChanged { probe, reason, .. } => {
            format!("{probe} failing: {}", reason.as_deref().unwrap_or("failed"))
        }
        EventKind::Recovery { object, step } => format!("{object}: {step}"),
        EventKind::Recovered => "recovered".into(),
        EventKind::Aborted { reason } => reason.clone(),
        EventKind::Mark { mark, text } => format!("{mark}: {text}"),
    }
}
