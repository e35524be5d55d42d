//! The command line: `validate`, `plan`, `run`, `status`, `schedule`, `sim`, `proxy`.
//!
//! Results go to stdout, logs and progress to stderr. Exit codes (DESIGN.md): 0 passed,
//! 1 failed, 2 invalid input (nothing touched), 3 aborted or inconclusive, 4 internal error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::drill::{self, Options, Plan};
use crate::experiment::{
    self, Diagnostic, Diagnostics, Environment, EnvironmentsFile, LoadOptions,
};
use crate::fault::BuildContext;
use crate::report;
use crate::timeline::{human, Clock, Event, EventKind};

pub const EXIT_INVALID: u8 = 2;
pub const EXIT_INTERNAL: u8 = 4;

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
}

#[derive(clap::Args, Clone)]
struct EnvArgs {
    /// Environment from firedrill.yaml; `local` (built in) targets this machine and the
    /// embedded simulated cluster.
    #[arg(long, default_value = "local")]
    env: String,
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
    /// Where reports go: <dir>/<experiment>/<environment>/<run-id>.{json,md}.
    #[arg(long, default_value = "reports")]
    report_dir: PathBuf,
    /// Seed for every random choice (recorded in the report); default: random.
    #[arg(long)]
    seed: Option<u64>,
    /// Override the experiment's `repeat` (number of trials).
    #[arg(long)]
    repeat: Option<u32>,
    /// How long to wait for the steady state before injecting and after reverting.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    steady_state_timeout: Duration,
    /// Push this run's metrics to a Prometheus Pushgateway (e.g. http://127.0.0.1:9091).
    #[arg(long, value_name = "URL")]
    pushgateway: Option<String>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
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
    runtime.block_on(async {
        match dispatch(cli.command).await {
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
        .with_writer(std::io::stderr)
        .try_init();
}

async fn dispatch(cmd: Command) -> anyhow::Result<u8> {
    match cmd {
        Command::Validate { files, env } => Ok(validate(&files, &env)),
        Command::Plan { file, env } => plan(&file, &env).await,
        Command::Run(args) => run(args).await,
        Command::Sim(args) => crate::sim::run_standalone(args).await.map(|_| 0),
        Command::Status { dir, report_dir } => Ok(status(&dir, &report_dir)),
        Command::Schedule(args) => crate::schedule::daemon::main(args).await,
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
    }
}

/// An experiment's environment, from firedrill.yaml (or the built-in `local`).
fn environment(file: &Path, args: &EnvArgs) -> Result<(Environment, Vec<String>), Diagnostics> {
    let config = args
        .config
        .clone()
        .or_else(|| experiment::find_environments_file(file));
    let envs = match &config {
        Some(path) => experiment::load_environments(path)?,
        None => EnvironmentsFile::default(),
    };
    let known: Vec<String> = envs.environments.iter().map(|e| e.name.clone()).collect();
    let mut env = match envs.environments.into_iter().find(|e| e.name == args.env) {
        Some(e) => e,
        None if args.env == "local" => Environment::local(),
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
                    format!("unknown environment `{}`", args.env),
                )
                .with_help(Some(help)),
            ));
        }
    };
    for (k, v) in &args.vars {
        env.vars.insert(k.clone(), v.clone());
    }
    Ok((env, known))
}

fn load(
    file: &Path,
    env: &Environment,
    known: &[String],
    extra: &BTreeMap<String, String>,
) -> Result<experiment::Loaded, Diagnostics> {
    let opts = LoadOptions {
        env,
        extra_vars: extra,
        known_environments: if known.is_empty() { None } else { Some(known) },
    };
    experiment::load_experiment(file, &opts)
}

/// Loads an experiment for one environment the way `validate` does (simulated URLs as
/// placeholders): what the scheduler needs to know of a drill without running it.
pub fn load_for(
    file: &Path,
    env: &str,
    config: Option<&Path>,
) -> Result<(experiment::Experiment, Environment), Diagnostics> {
    let args = EnvArgs {
        env: env.to_string(),
        config: config.map(Path::to_path_buf),
        vars: Vec::new(),
    };
    let (env, known) = environment(file, &args)?;
    let placeholders = simulation_placeholders(file)?;
    let loaded = load(file, &env, &known, &placeholders)?;
    Ok((loaded.experiment, env))
}

fn validate(files: &[PathBuf], args: &EnvArgs) -> u8 {
    let mut bad = false;
    for file in files {
        let result = environment(file, args).and_then(|(env, known)| {
            let placeholders = simulation_placeholders(file)?;
            load(file, &env, &known, &placeholders)
        });
        match result {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    eprintln!("{w}\n");
                }
                println!("ok: {} ({})", file.display(), loaded.experiment.name);
            }
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

/// `${sim.NS.DEPLOY}` names for validation without starting the cluster.
fn simulation_placeholders(file: &Path) -> Result<BTreeMap<String, String>, Diagnostics> {
    let mut vars = BTreeMap::new();
    if let Some(path) = experiment::peek_simulation(file)? {
        for (ns, deploy) in crate::sim::load_scenario(&path)?.http_deployments() {
            vars.insert(sim_var(&ns, &deploy), "http://127.0.0.1:0".into());
        }
    }
    Ok(vars)
}

/// The variable that holds a simulated deployment's loopback URL.
fn sim_var(namespace: &str, deployment: &str) -> String {
    format!("sim.{namespace}.{deployment}")
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

/// Watch-driven sources: the kubernetes probes, and the pod phases of every pod-kill target.
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
        if let experiment::FaultSpec::PodKill { target, .. } = f {
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

async fn plan(file: &Path, args: &EnvArgs) -> anyhow::Result<u8> {
    let (env, known) = match environment(file, args) {
        Ok(x) => x,
        Err(d) => {
            eprintln!("{d}");
            return Ok(EXIT_INVALID);
        }
    };
    let vars = match simulation_placeholders(file) {
        Ok(v) => v,
        Err(d) => {
            eprintln!("{d}");
            return Ok(EXIT_INVALID);
        }
    };
    let loaded = match load(file, &env, &known, &vars) {
        Ok(l) => l,
        Err(d) => {
            eprintln!("{d}");
            return Ok(EXIT_INVALID);
        }
    };
    let exp = &loaded.experiment;
    println!("drill `{}` in environment `{}`", exp.name, env.name);
    println!("  trials: {}, cooldown {}", exp.repeat, human(exp.cooldown));
    println!(
        "  recovery: objective {}, stable for {}, timeout {}",
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
    match Plan::build_faults(exp, &Default::default()) {
        Ok(faults) => {
            for f in &faults {
                println!("  fault {}: {}", f.label(), f.describe());
            }
        }
        Err(e) => println!("  faults: {e}"),
    }
    println!("nothing was touched");
    Ok(0)
}

async fn run(args: RunArgs) -> anyhow::Result<u8> {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let req = DrillRequest {
        file: args.file.clone(),
        env: args.env.env.clone(),
        config: args.env.config.clone(),
        vars: args.env.vars.clone(),
        seed: args.seed,
        repeat: args.repeat,
        steady_state_timeout: args.steady_state_timeout,
    };
    match run_one(&req, cancel, Some(Box::new(progress_line))).await? {
        Ran::Invalid(code) => Ok(code),
        Ran::Done(record) => {
            let path = report::write(&args.report_dir, &record)?;
            print!("{}", report::terminal::render(&record, Some(&path)));
            if let Some(url) = &args.pushgateway {
                let summary = crate::schedule::promotion::RunSummary::from(record.as_ref());
                crate::schedule::metrics::push(url, &summary).await;
            }
            Ok(record.outcome.exit_code() as u8)
        }
    }
}

/// One drill to run: what `firedrill run` takes, and what the scheduler asks for.
#[derive(Debug, Clone)]
pub struct DrillRequest {
    pub file: PathBuf,
    pub env: String,
    /// Environments file; default: firedrill.yaml beside the experiment (or its parent).
    pub config: Option<PathBuf>,
    pub vars: Vec<(String, String)>,
    pub seed: Option<u64>,
    pub repeat: Option<u32>,
    pub steady_state_timeout: Duration,
}

/// What became of a [`DrillRequest`].
pub enum Ran {
    /// Nothing was touched; the diagnostics went to stderr; the exit code to use.
    Invalid(u8),
    /// The drill ran (whatever its outcome); the record is not written yet.
    Done(Box<report::record::RunRecord>),
}

/// Loads, plans and executes one drill (starting its simulated cluster when it has one).
/// Cancelling `cancel` stops it; the executor reverts what it injected.
pub async fn run_one(
    req: &DrillRequest,
    cancel: CancellationToken,
    observer: Option<drill::Observer>,
) -> anyhow::Result<Ran> {
    let file = &req.file;
    let env_args = EnvArgs {
        env: req.env.clone(),
        config: req.config.clone(),
        vars: req.vars.clone(),
    };
    let (env, known) = match environment(file, &env_args) {
        Ok(x) => x,
        Err(d) => {
            eprintln!("{d}");
            return Ok(Ran::Invalid(EXIT_INVALID));
        }
    };
    let seed = req.seed.unwrap_or_else(rand::random);
    // A simulated cluster starts before the full load: its URLs are variables.
    let mut sim = None;
    let mut extra = BTreeMap::new();
    match experiment::peek_simulation(file) {
        Ok(Some(path)) if env.kube_context.is_none() => {
            let scenario = match crate::sim::load_scenario(&path) {
                Ok(sc) => sc,
                Err(d) => {
                    eprintln!("{d}");
                    return Ok(Ran::Invalid(EXIT_INVALID));
                }
            };
            let handle =
                crate::sim::SimCluster::start(scenario, "127.0.0.1:0".parse()?, seed).await?;
            for (ns, deploy, url) in handle.traffic_urls() {
                extra.insert(sim_var(&ns, &deploy), url);
            }
            eprintln!(
                "simulated cluster: {} ({})",
                handle.api_url(),
                path.display()
            );
            sim = Some(handle);
        }
        Ok(_) => {}
        Err(d) => {
            eprintln!("{d}");
            return Ok(Ran::Invalid(EXIT_INVALID));
        }
    }
    let loaded = match load(file, &env, &known, &extra) {
        Ok(l) => l,
        Err(d) => {
            eprintln!("{d}");
            return Ok(Ran::Invalid(EXIT_INVALID));
        }
    };
    for w in &loaded.warnings {
        eprintln!("{w}\n");
    }
    let mut exp = loaded.experiment;
    if let Some(n) = req.repeat {
        exp.repeat = n.max(1);
    }
    if env.name != "local" && !exp.environments.contains(&env.name) {
        eprintln!(
            "error: drill `{}` does not list environment `{}`\n  = help: add it to `environments:` in {}",
            exp.name,
            env.name,
            file.display()
        );
        return Ok(Ran::Invalid(EXIT_INVALID));
    }
    let kube = if !needs_kube(&exp) {
        None
    } else if let Some(handle) = &sim {
        Some(handle.kube_client().await?)
    } else {
        match crate::platform::kube::client_for(&env).await {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("error: {e}\n  = help: set `kube-context` for environment `{}` in firedrill.yaml, or give the experiment a `simulation` to run it on the embedded simulated cluster", env.name);
                return Ok(Ran::Invalid(3));
            }
        }
    };
    let ctx = BuildContext {
        kube: kube.clone(),
        seed,
    };
    let faults = match Plan::build_faults(&exp, &ctx) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Ran::Invalid(EXIT_INVALID));
        }
    };
    let plan = Plan::new(exp, env, seed, faults);
    eprintln!(
        "run {} of `{}` in `{}` (seed {})",
        plan.run_id, plan.experiment.name, plan.environment.name, plan.seed
    );
    for f in &plan.faults {
        eprintln!("  will inject {}: {}", f.label(), f.describe());
    }

    let mut opts = Options::new(cancel);
    opts.steady_state_timeout = req.steady_state_timeout;
    opts.observer = observer;
    if let Some(client) = &kube {
        opts.sources = kube_sources(&plan.experiment, client);
    }
    let record = drill::execute(&plan, opts).await;
    if let Some(handle) = sim {
        handle.shutdown().await;
    }
    Ok(Ran::Done(Box::new(record)))
}

fn status(dir: &Path, report_dir: &Path) -> u8 {
    use crate::schedule::{catalog, promotion, status};
    let cat = catalog::load(dir);
    for (file, err) in &cat.errors {
        eprintln!("skipping {}:\n{err}\n", file.display());
    }
    let history = promotion::history(report_dir);
    let rows = status::rows(&cat.entries, &history, chrono::Utc::now());
    print!("{}", status::render(&rows));
    if cat.errors.is_empty() {
        0
    } else {
        EXIT_INVALID
    }
}

/// SIGINT/SIGTERM cancel the drill; the executor then reverts. Further signals are reported
/// but never skip the revert.
fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::warn!("cannot install signal handlers; Ctrl-C will kill without reverting");
            return;
        };
        let mut n = 0;
        loop {
            tokio::select! {
                _ = int.recv() => {},
                _ = term.recv() => {},
            }
            n += 1;
            if n == 1 {
                eprintln!("stopping: reverting every injected fault (signals now only repeat this message)");
                cancel.cancel();
            } else {
                eprintln!("still reverting; firedrill exits when every fault is rolled back");
            }
        }
    });
}

/// Plain progress lines on stderr, one per meaningful event.
fn progress_line(_clock: &Clock, e: &Event) {
    let what = match &e.kind {
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
    };
    let trial = e.trial.map(|t| format!(" trial {t}")).unwrap_or_default();
    eprintln!("[{:>9.3}s]{trial} {what}", e.at.as_secs_f64());
}
