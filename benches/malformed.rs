//! How long rejecting one malformed file takes, in process (`cargo bench --bench malformed`):
//! every file of `tests/fixtures/malformed/` plus 10 MiB files made on the spot, each loaded
//! (read, parse, validate, render the diagnostics) several times. Prints the median time per
//! file as p50, p99 and max over the files, and the slowest files.
//!
//! The budget is 50 ms per file; this reports, it does not fail. Run it on a quiet machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use firedrill::experiment::{
    load_environments, load_experiment, Diagnostics, Environment, LoadOptions,
};

const CORPUS: &str = "tests/fixtures/malformed";
const RUNS: usize = 7;
const BUDGET: Duration = Duration::from_millis(50);

/// Same dispatch as tests/malformed.rs: environments and scenario files by class or prefix.
fn load(class: &str, path: &Path) -> Result<(), Diagnostics> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if class == "environments" || stem.starts_with("env-") {
        load_environments(path).map(|_| ())
    } else if class == "scenario" || stem.starts_with("scenario-") {
        firedrill::sim::load_scenario(path).map(|_| ())
    } else {
        let env = Environment::local();
        let vars = BTreeMap::new();
        let opts = LoadOptions {
            env: &env,
            extra_vars: &vars,
            known_environments: None,
            unset_env: Default::default(),
        };
        load_experiment(path, &opts).map(|_| ())
    }
}

fn files() -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for class in std::fs::read_dir(CORPUS).expect("corpus").flatten() {
        let name = class.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(class.path()).expect("class").flatten() {
            out.push((name.clone(), f.path()));
        }
    }
    out.sort();
    out
}

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut all = files();
    let mut huge = b"name: huge\n".to_vec();
    huge.resize(10 * 1024 * 1024, b'#');
    let huge_path = dir.path().join("huge-10mib.yaml");
    std::fs::write(&huge_path, &huge).expect("write");
    all.push(("huge-files".into(), huge_path));

    let mut times: Vec<(Duration, String)> = Vec::new();
    for (class, path) in &all {
        let mut runs: Vec<Duration> = (0..RUNS)
            .map(|_| {
                let start = Instant::now();
                let rendered = load(class, path).err().map(|d| d.to_string());
                std::hint::black_box(rendered);
                start.elapsed()
            })
            .collect();
        runs.sort();
        times.push((runs[RUNS / 2], path.display().to_string()));
    }
    times.sort();
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].0;
    let max = times.last().map(|t| t.0).unwrap_or_default();
    println!(
        "malformed files: {} (median of {RUNS} runs each)\n  p50 {:?}  p99 {:?}  max {:?}  budget {:?}: {}",
        times.len(),
        pick(0.5),
        pick(0.99),
        max,
        BUDGET,
        if max < BUDGET { "within" } else { "OVER" }
    );
    println!("  slowest:");
    for (t, p) in times.iter().rev().take(5) {
        println!("    {t:?}  {p}");
    }
}
