//! Experiment files: the YAML model, strict validation with file:line:column diagnostics,
//! `${var}` interpolation and environments (`firedrill.yaml`).
//!
//! The loader reports every problem of a file at once. Layers, bottom up: [`node`] builds a
//! positioned YAML tree, `interp` expands `${...}` in string values, [`de`] lets strict
//! `serde` structs (`raw`) read that tree with positioned errors, and `load` walks the
//! document entry by entry, checks references and builds the validated [`model`].

pub mod check;
pub mod de;
pub mod diag;
pub mod env;
pub mod interp;
mod load;
pub mod model;
pub mod node;
mod raw;
pub mod schema;
pub mod secrets;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

pub use diag::{Diagnostic, Diagnostics, Severity};
pub use env::{
    environment_named, find_environments_file, load_environments_bytes, ENVIRONMENTS_FILE,
};
pub use interp::literal as literal_value;
pub use load::parse_yaml;
pub use model::*;

/// What an experiment is loaded against.
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions<'a> {
    /// Its variables are looked up first for `${name}`.
    pub env: &'a Environment,
    /// Variables from the command line, looked up after the environment's.
    pub extra_vars: &'a BTreeMap<String, String>,
    /// When known, every name in `environments:` must be one of these (or `local`).
    pub known_environments: Option<&'a [String]>,
    /// What a `${env:NAME}` that is not set is.
    pub unset_env: UnsetEnv,
}

/// What a load does with a `${env:NAME}` reference whose variable is not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnsetEnv {
    /// An error: `run` and `plan` need every value.
    #[default]
    Refuse,
    /// A warning at the reference, and the value that holds it is not checked: `validate` (a
    /// lint step in CI) must not need production secrets. The reference itself is still
    /// checked (a well-formed name).
    Warn,
}

/// A valid experiment and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub experiment: Experiment,
    pub warnings: Vec<Diagnostic>,
}

/// Reads a file with the size cap, as a diagnostic on failure: what the `*_bytes` loaders
/// take, so that a command reads its experiment once.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, Diagnostics> {
    let fail = |message: String, help: Option<String>| {
        Diagnostics::single(Diagnostic::error(path, 1, 1, message).with_help(help))
    };
    let file = std::fs::File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => fail(
            format!("{} does not exist", path.display()),
            Some("check the path; relative paths start at the current directory".into()),
        ),
        std::io::ErrorKind::PermissionDenied => fail(
            format!("permission denied reading {}", path.display()),
            None,
        ),
        _ => fail(format!("cannot read {}: {e}", path.display()), None),
    })?;
    let mut bytes = Vec::new();
    // Read one byte past the cap so an oversized file is reported as such by the parser.
    file.take(node::MAX_FILE_SIZE as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read {}: {e}", path.display()), None))?;
    Ok(bytes)
}

/// Loads, interpolates and validates an experiment file (at most 1 MiB).
pub fn load_experiment(path: &Path, opts: &LoadOptions<'_>) -> Result<Loaded, Diagnostics> {
    let bytes = read_capped(path)?;
    load_experiment_bytes(path, &bytes, opts)
}

/// Like [`load_experiment`] for bytes already in memory; `path` names the file in
/// diagnostics and anchors relative paths.
pub fn load_experiment_bytes(
    path: &Path,
    bytes: &[u8],
    opts: &LoadOptions<'_>,
) -> Result<Loaded, Diagnostics> {
    load::load(path, bytes, opts)
}

/// Loads and validates `firedrill.yaml`.
pub fn load_environments(path: &Path) -> Result<EnvironmentsFile, Diagnostics> {
    let bytes = read_capped(path)?;
    load_environments_bytes(path, &bytes)
}

/// Only `simulation.scenario`, resolved relative to the experiment file, without
/// interpolating or validating anything else: the runner starts the simulated cluster
/// before the full load so that `${sim...}` variables can exist.
pub fn peek_simulation(path: &Path) -> Result<Option<PathBuf>, Diagnostics> {
    let bytes = read_capped(path)?;
    peek_simulation_bytes(path, &bytes)
}

/// [`peek_simulation`] for bytes already in memory.
pub fn peek_simulation_bytes(path: &Path, bytes: &[u8]) -> Result<Option<PathBuf>, Diagnostics> {
    let mut cx = load::Ctx::new(path);
    let Some(root) = cx.tree(node::parse(bytes)) else {
        return Err(cx.finish());
    };
    let Some(sim) = root.get("simulation") else {
        return Ok(None);
    };
    let Some(raw) = cx.de::<raw::RawSimulation>(sim, "simulation") else {
        return Err(cx.finish());
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    Ok(Some(dir.join(raw.scenario)))
}
