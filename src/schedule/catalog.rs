//! The drills of a folder: every experiment file beside `firedrill.yaml`, loaded once per
//! environment it lists (`local` when it lists none), with what the scheduler needs.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::experiment::{self, Environment, Experiment};

use super::cron::CronSchedule;

/// One drill in one environment.
#[derive(Debug, Clone)]
pub struct Entry {
    pub file: PathBuf,
    pub experiment: Experiment,
    pub env: Environment,
    /// `None` when the drill has no `schedule:` (it only runs on demand).
    pub schedule: Option<CronSchedule>,
}

impl Entry {
    /// `<experiment>/<environment>`: the scope in which runs never overlap.
    pub fn key(&self) -> String {
        format!("{}/{}", self.experiment.name, self.env.name)
    }
}

#[derive(Debug, Default)]
pub struct Catalog {
    pub entries: Vec<Entry>,
    /// Files that did not load, with the rendered diagnostics.
    pub errors: Vec<(PathBuf, String)>,
    /// Modification times and sizes of what was read, to notice changes.
    pub stamps: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

fn is_experiment(p: &Path) -> bool {
    p.is_file()
        && p.extension().is_some_and(|e| e == "yaml" || e == "yml")
        && p.file_name()
            .is_some_and(|n| n != experiment::ENVIRONMENTS_FILE)
}

/// What [`load`] would read, with modification times: a change means reload.
pub fn stamps(dir: &Path) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| {
        is_experiment(p)
            || p.file_name()
                .is_some_and(|n| n == experiment::ENVIRONMENTS_FILE)
    });
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let m = std::fs::metadata(&p)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok();
            (p, m)
        })
        .collect()
}

/// Loads every experiment in `dir` (not recursive) for each of its environments.
pub fn load(dir: &Path) -> Catalog {
    let mut cat = Catalog {
        stamps: stamps(dir),
        ..Default::default()
    };
    let config = dir.join(experiment::ENVIRONMENTS_FILE);
    let config = config.is_file().then_some(config);
    let files: Vec<PathBuf> = cat
        .stamps
        .iter()
        .map(|(p, _)| p.clone())
        .filter(|p| is_experiment(p))
        .collect();
    for file in files {
        // The environments a drill lists come from the file itself, read without loading it
        // for any one environment: a drill whose variables exist only in staging and
        // production is loaded there, not dropped for failing in `local`.
        let bytes = match experiment::read_capped(&file) {
            Ok(b) => b,
            Err(d) => {
                cat.errors.push((file.clone(), d.to_string()));
                continue;
            }
        };
        let envs = match crate::workspace::listed_environments(&file, &bytes) {
            Some(envs) if !envs.is_empty() => envs,
            _ => vec!["local".to_string()],
        };
        for env in envs {
            match crate::workspace::load_for(&file, &env, config.as_deref()) {
                Ok((experiment, env)) => {
                    let schedule = match experiment
                        .schedule
                        .as_deref()
                        .map(|s| CronSchedule::parse(s, &env.time_zone))
                        .transpose()
                    {
                        Ok(s) => s,
                        Err(e) => {
                            cat.errors.push((file.clone(), e.to_string()));
                            continue;
                        }
                    };
                    cat.entries.push(Entry {
                        file: file.clone(),
                        experiment,
                        env,
                        schedule,
                    });
                }
                Err(d) => cat.errors.push((file.clone(), d.to_string())),
            }
        }
    }
    cat
}
