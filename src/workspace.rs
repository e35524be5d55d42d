//! A workspace: a folder of experiments and its `firedrill.yaml`. It owns finding an
//! experiment's environments file, choosing an environment (or the built-in `local`), and
//! loading an experiment for it, for the command line and the scheduler alike; and the values
//! both take on their command lines (`--steady-state-timeout`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::experiment::{
    self, Diagnostic, Diagnostics, Environment, EnvironmentsFile, LoadOptions, UnsetEnv,
};

/// Which environment a command targets, and how its variables are set.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Selection {
    /// Environment from firedrill.yaml; `local` (built in, the default) targets this machine
    /// and the embedded simulated cluster. `validate` without it checks every environment the
    /// experiment lists.
    #[arg(long)]
    pub env: Option<String>,
    /// Environments file; default: firedrill.yaml beside the experiment (or its parent).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Set a variable for ${name} interpolation (repeatable), overriding the environment's.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

/// The longest `--steady-state-timeout`: a deadline beyond it would overflow the clock (a
/// panic), and no drill waits a week for its steady state.
const MAX_STEADY_STATE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// `--steady-state-timeout` of `run` and `schedule`.
pub fn parse_steady_state_timeout(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| e.to_string())?;
    if d > MAX_STEADY_STATE_TIMEOUT {
        return Err(format!(
            "`{s}` is longer than the most a drill waits for its steady state ({})",
            humantime::format_duration(MAX_STEADY_STATE_TIMEOUT)
        ));
    }
    Ok(d)
}

/// An experiment's environment, from firedrill.yaml (or the built-in `local`), and the names
/// the environments file defines.
pub fn environment(
    file: &Path,
    sel: &Selection,
) -> Result<(Environment, Vec<String>), Diagnostics> {
    environment_named(file, sel, sel.env.as_deref().unwrap_or("local"))
}

/// The environment `name` of the experiment `file`'s workspace.
pub fn environment_named(
    file: &Path,
    sel: &Selection,
    name: &str,
) -> Result<(Environment, Vec<String>), Diagnostics> {
    let config = sel
        .config
        .clone()
        .or_else(|| experiment::find_environments_file(file));
    let envs = match &config {
        Some(path) => experiment::load_environments(path)?,
        None => EnvironmentsFile::default(),
    };
    let known: Vec<String> = envs.environments.iter().map(|e| e.name.clone()).collect();
    let mut env = match experiment::environment_named(Some(&envs), name) {
        Some(e) => e,
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
    for (k, v) in &sel.vars {
        // A command-line value is data: environment values are expanded (they may read
        // `${env:NAME}`), so it goes in escaped and comes out as typed.
        env.vars.insert(k.clone(), experiment::literal_value(v));
    }
    Ok((env, known))
}

/// Loads the experiment `file` whose bytes the command has read once.
pub fn load(
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
    let sel = Selection {
        env: Some(env.to_string()),
        config: config.map(Path::to_path_buf),
        vars: Vec::new(),
    };
    let (env, known) = environment(file, &sel)?;
    let bytes = experiment::read_capped(file)?;
    let placeholders = simulation_placeholders(file, &bytes)?;
    let loaded = load(file, &bytes, &env, &known, &placeholders, UnsetEnv::Warn)?;
    Ok((loaded.experiment, env))
}

/// The `environments:` an experiment lists, read leniently (the full load reports any error).
pub fn listed_environments(file: &Path, bytes: &[u8]) -> Option<Vec<String>> {
    let doc: BTreeMap<String, serde_json::Value> = experiment::parse_yaml(file, bytes).ok()?;
    let list = doc.get("environments")?.as_array()?;
    Some(
        list.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
    )
}

/// `${sim.NS.DEPLOY}` names for validation without starting the cluster.
pub fn simulation_placeholders(
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

/// The variables of a simulated deployment's loopback endpoint: `${sim.NS.DEPLOY}` is its URL
/// (for probes), `${sim.NS.DEPLOY.addr}` the same endpoint as host:port (for a `proxy:` upstream).
pub fn sim_vars(namespace: &str, deployment: &str, url: &str) -> [(String, String); 2] {
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
