//! Bad input never gets past the loaders, never panics them, and is always reported with a
//! position: the malformed corpus in `tests/fixtures/malformed/<class>/`, written by
//! `scripts/gen-malformed.py`, plus files too large to commit, generated here.
//!
//! Which loader reads a file: the `environments` class and files named `env-*` are
//! `firedrill.yaml` files, the `scenario` class and files named `scenario-*` are scenarios of
//! the simulated cluster, everything else is an experiment.
//!
//! How fast each file is rejected is measured by `benches/malformed.rs`, not asserted here.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use firedrill::experiment::{
    load_environments, load_experiment, Diagnostics, Environment, LoadOptions,
};

const CORPUS: &str = "tests/fixtures/malformed";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loader {
    Experiment,
    Environments,
    Scenario,
}

fn loader_for(class: &str, path: &Path) -> Loader {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    if class == "environments" || stem.starts_with("env-") {
        Loader::Environments
    } else if class == "scenario" || stem.starts_with("scenario-") {
        Loader::Scenario
    } else {
        Loader::Experiment
    }
}

/// Every corpus file as (class, path), sorted.
fn corpus() -> Vec<(String, PathBuf)> {
    let mut files = Vec::new();
    let classes = std::fs::read_dir(CORPUS).unwrap_or_else(|e| panic!("cannot list {CORPUS}: {e}"));
    for class in classes.filter_map(Result::ok) {
        let name = class.file_name().to_string_lossy().into_owned();
        for f in std::fs::read_dir(class.path())
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            files.push((name.clone(), f.path()));
        }
    }
    files.sort();
    files
}

fn load(loader: Loader, path: &Path) -> Result<(), Diagnostics> {
    match loader {
        Loader::Experiment => {
            let env = Environment::local();
            let vars = BTreeMap::new();
            let known = ["staging".to_string(), "production".to_string()];
            let opts = LoadOptions {
                env: &env,
                extra_vars: &vars,
                known_environments: Some(&known),
                unset_env: Default::default(),
            };
            load_experiment(path, &opts).map(|_| ())
        }
        Loader::Environments => load_environments(path).map(|_| ()),
        Loader::Scenario => firedrill::sim::load_scenario(path).map(|_| ()),
    }
}

/// What is wrong with the outcome of loading `path`, if anything.
fn problems(loader: Loader, path: &Path) -> Vec<String> {
    let d = match catch_unwind(AssertUnwindSafe(|| load(loader, path))) {
        Err(_) => return vec!["the loader panicked".into()],
        Ok(Ok(())) => return vec!["loaded without an error".into()],
        Ok(Err(d)) => d,
    };
    let mut out = Vec::new();
    if !d.has_errors() {
        out.push("failed without an error diagnostic".into());
    }
    for diag in &d.0 {
        if diag.line == 0 || diag.column == 0 {
            out.push(format!("no position: {diag}"));
        }
        if diag.message.trim().is_empty() {
            out.push(format!("empty message at {}:{}", diag.line, diag.column));
        }
        if diag.file != path {
            out.push(format!("names {} instead", diag.file.display()));
        }
    }
    let rendered = d.to_string();
    let at = format!("{}:", path.display());
    if !rendered.contains(&at) {
        out.push(format!(
            "rendered output does not name the file:\n{rendered}"
        ));
    }
    out
}

#[test]
fn every_malformed_file_is_a_positioned_error() {
    let files = corpus();
    let classes: BTreeSet<&str> = files.iter().map(|(c, _)| c.as_str()).collect();
    assert!(files.len() >= 300, "only {} corpus files", files.len());
    assert!(classes.len() >= 25, "only {} classes", classes.len());
    // A panic is reported as a failure of that file, not as noise from the hook.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for (class, path) in &files {
        for p in problems(loader_for(class, path), path) {
            failures.push(format!("{}: {p}", path.display()));
        }
    }
    std::panic::set_hook(hook);
    assert!(
        failures.is_empty(),
        "{} problem(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A drill with `n` probes and a bad `repeat` after them: large but under the size cap.
fn long_drill(n: usize) -> String {
    let mut s = String::from("name: long\nprobes:\n");
    for i in 0..n {
        s.push_str(&format!(
            "  p{i}:\n    tcp: {{ address: \"127.0.0.1:{}\" }}\n",
            i % 60000 + 1
        ));
    }
    s.push_str(
        "faults:\n  - command: { run: [\"true\"] }\nrecovery: { objective: 1s }\nrepeat: 0\n",
    );
    s
}

#[test]
fn huge_files_are_refused_at_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ten_mib = 10 * 1024 * 1024;
    let mut padded = b"name: huge\n".to_vec();
    padded.resize(ten_mib, b'#');
    let mut one_line = b"name: \"".to_vec();
    one_line.resize(ten_mib, b'x');
    let mut probes = long_drill(200_000).into_bytes();
    probes.truncate(ten_mib);
    let cases: [(&str, Vec<u8>); 3] = [
        ("padded.yaml", padded),
        ("one-line.yaml", one_line),
        ("many-probes.yaml", probes),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).expect("write");
        for loader in [Loader::Experiment, Loader::Environments, Loader::Scenario] {
            let d = load(loader, &path).expect_err("a 10 MiB file is refused");
            assert_eq!(d.0.len(), 1, "{name} {loader:?}: {d}");
            assert_eq!((d.0[0].line, d.0[0].column), (1, 1), "{name} {loader:?}");
            assert!(d.0[0].message.contains("too large"), "{name}: {d}");
        }
    }
}

#[test]
fn large_file_under_the_cap_reports_the_error_where_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = long_drill(8000);
    assert!(text.len() > 100 * 1024 && text.len() < 1024 * 1024);
    let path = dir.path().join("large.yaml");
    std::fs::write(&path, &text).expect("write");
    let d = load(Loader::Experiment, &path).expect_err("repeat 0");
    let last_line = text.lines().count();
    assert_eq!(d.error_count(), 1, "{d}");
    assert_eq!((d.0[0].line, d.0[0].column), (last_line, 9), "{d}");
}

/// About 30 files across the classes: the first three of each class in turn.
fn sample() -> Vec<(String, PathBuf)> {
    let mut by_class: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (c, p) in corpus() {
        by_class.entry(c).or_default().push(p);
    }
    let mut out = Vec::new();
    for round in 0..3 {
        for (c, files) in &by_class {
            if out.len() < 30 {
                if let Some(p) = files.get(round * files.len() / 3) {
                    out.push((c.clone(), p.clone()));
                }
            }
        }
    }
    out
}

/// `path:LINE:COLUMN` somewhere in `text`.
fn has_position(text: &str, path: &Path) -> bool {
    let at = format!("{}:", path.display());
    text.match_indices(&at).any(|(i, _)| {
        let rest = &text[i + at.len()..];
        let mut parts = rest.splitn(3, ':');
        let line = parts.next().unwrap_or_default();
        let col: String = parts
            .next()
            .unwrap_or_default()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit()) && !col.is_empty()
    })
}

#[test]
fn validate_command_rejects_a_sample_with_positions() {
    let dir = tempfile::tempdir().expect("temp dir");
    let good = Path::new("tests/fixtures/experiments/valid/minimal.yaml");
    let sample = sample();
    assert!(sample.len() >= 25, "sample of {}", sample.len());
    let mut failures = Vec::new();
    for (i, (class, path)) in sample.iter().enumerate() {
        let mut cmd = common::firedrill();
        cmd.arg("validate");
        match loader_for(class, path) {
            Loader::Experiment => {
                cmd.arg(path);
            }
            Loader::Environments => {
                cmd.arg("--config").arg(path).arg(good);
            }
            Loader::Scenario => {
                let scenario = std::fs::canonicalize(path).expect("scenario path");
                let exp = dir.path().join(format!("sim-{i}.yaml"));
                let text = format!(
                    "name: sim\nsimulation: {{ scenario: \"{}\" }}\nprobes:\n  p: {{ tcp: {{ address: \"127.0.0.1:1\" }} }}\nfaults:\n  - command: {{ run: [\"true\"] }}\nrecovery: {{ objective: 1s }}\n",
                    scenario.display()
                );
                std::fs::write(&exp, text).expect("write");
                cmd.arg(exp);
            }
        }
        let out = cmd.output().expect("firedrill runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let named = match loader_for(class, path) {
            Loader::Scenario => std::fs::canonicalize(path).expect("scenario path"),
            _ => path.clone(),
        };
        if out.status.code() != Some(2) {
            failures.push(format!("{}: exit {:?}", path.display(), out.status.code()));
        }
        if !has_position(&stderr, &named) {
            failures.push(format!(
                "{}: no file:line:column in\n{stderr}",
                path.display()
            ));
        }
        if stderr.contains("panicked") || stdout.contains("panicked") {
            failures.push(format!("{}: panicked\n{stderr}", path.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
