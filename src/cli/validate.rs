//! `firedrill validate`: check experiment files (and environments files) and report every
//! problem with file:line:column, touching nothing.

use std::path::{Path, PathBuf};

use crate::experiment::{self, Diagnostics, UnsetEnv};
use crate::workspace::{self, Selection};
use crate::{eprintln_redacted as eprintln, println_redacted as println};

use super::Exit;

pub(super) fn validate(files: &[PathBuf], sel: &Selection) -> Exit {
    let mut bad = false;
    for file in files {
        match validate_one(file, sel) {
            Ok(summary) => println!("ok: {} ({summary})", file.display()),
            Err(d) => {
                bad = true;
                eprintln!("{d}");
            }
        }
    }
    if bad {
        Exit::Invalid
    } else {
        Exit::Passed
    }
}

/// Validate an experiment in the environment asked for, or else in every environment it lists
/// (`local` when it lists none); an environments file is validated as one.
fn validate_one(file: &Path, sel: &Selection) -> Result<String, Diagnostics> {
    if file
        .file_name()
        .is_some_and(|n| n == experiment::ENVIRONMENTS_FILE)
    {
        let envs = experiment::load_environments(file)?;
        let names: Vec<&str> = envs.environments.iter().map(|e| e.name.as_str()).collect();
        return Ok(format!("environments: {}", names.join(", ")));
    }
    let bytes = experiment::read_capped(file)?;
    let placeholders = workspace::simulation_placeholders(file, &bytes)?;
    let names = match &sel.env {
        Some(name) => vec![name.clone()],
        None => match workspace::listed_environments(file, &bytes) {
            Some(listed) if !listed.is_empty() => listed,
            _ => vec!["local".to_string()],
        },
    };
    let mut all = Diagnostics::default();
    let mut name_of_drill = String::new();
    for name in &names {
        let loaded = workspace::environment_named(file, sel, name).and_then(|(env, known)| {
            workspace::load(file, &bytes, &env, &known, &placeholders, UnsetEnv::Warn)
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
