//! `firedrill.yaml`: the environments beside the experiments (kube context, time zone,
//! variables, protection and promotion rules), validated with the same diagnostics as
//! experiments.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use super::de::child_path;
use super::diag::{suggest, Diagnostics};
use super::interp::{expand, Ref};
use super::load::Ctx;
use super::model::{Environment, EnvironmentsFile, StoreRef};
use super::node::{self, Kind, Node};
use super::raw::{RawConcurrency, RawEnvironment, RawStore};

/// The file name looked up beside experiments.
pub const ENVIRONMENTS_FILE: &str = "firedrill.yaml";

/// `firedrill.yaml` in the experiment's directory, else in its parent.
pub fn find_environments_file(experiment_path: &Path) -> Option<PathBuf> {
    let dir = experiment_path.parent()?;
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::iter::once(dir)
        .chain(dir.parent())
        .map(|d| d.join(ENVIRONMENTS_FILE))
        .find(|p| p.is_file())
}

/// Parses and validates environments from bytes; `path` names the file in diagnostics.
pub fn load_environments_bytes(path: &Path, bytes: &[u8]) -> Result<EnvironmentsFile, Diagnostics> {
    let mut cx = Ctx::new(path);
    let Some(root) = cx.tree(node::parse(bytes)) else {
        return Err(cx.finish());
    };
    let Some(entries) = root.entries() else {
        cx.error(
            root.span,
            "",
            format!(
                "firedrill.yaml must be a mapping with an `environments:` key, found {}",
                root.describe()
            ),
            None,
        );
        return Err(cx.finish());
    };
    for e in entries {
        if e.key != "environments" && e.key != "store" {
            cx.error(
                e.key_span,
                "",
                format!("unknown key `{}`", e.key),
                suggest(&e.key, ["environments", "store"]),
            );
        }
    }
    let mut out = EnvironmentsFile {
        store: root.get("store").and_then(|n| store(&mut cx, path, n)),
        ..Default::default()
    };
    let mut promotions = Vec::new();
    match root.get("environments") {
        None => cx.error(root.span, "", "missing required key `environments`", None),
        Some(envs) => match envs.entries() {
            None => cx.error(
                envs.span,
                "environments",
                format!(
                    "expected a mapping of environment names to settings, found {}",
                    envs.describe()
                ),
                None,
            ),
            Some(list) => {
                for e in list {
                    let path = child_path("environments", &e.key);
                    if let Err(inv) = super::check::dns_label("environment name", &e.key) {
                        cx.invalid(e.key_span, "environments", inv);
                    }
                    if let Some(from) = e.value.get("promote-from").filter(|n| n.is_scalar()) {
                        promotions.push((e.key.clone(), from.raw.clone(), from.span, path.clone()));
                    }
                    if let Some(env) = environment(&mut cx, &e.key, &e.value, &path) {
                        out.environments.push(env);
                    }
                }
            }
        },
    }
    // Every defined name counts, even of an environment with errors, so one mistake is
    // not reported twice.
    let names: Vec<&str> = root
        .get("environments")
        .and_then(Node::entries)
        .unwrap_or_default()
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    for (name, from, span, path) in &promotions {
        let span = *span;
        if from == name {
            cx.error(
                span,
                &child_path(path, "promote-from"),
                format!("environment `{name}` cannot promote from itself"),
                None,
            );
        } else if !names.contains(&from.as_str()) {
            cx.error(
                span,
                &child_path(path, "promote-from"),
                format!("unknown environment `{from}` in promote-from"),
                suggest(from, names.iter().copied()),
            );
        }
    }
    if cx.has_errors() {
        Err(cx.finish())
    } else {
        Ok(out)
    }
}

/// `store:` — exactly one of `dsn-env` and `dsn-file`.
fn store(cx: &mut Ctx<'_>, file: &Path, node: &Node) -> Option<StoreRef> {
    let raw: RawStore = cx.de(node, "store")?;
    match (raw.dsn_env, raw.dsn_file) {
        (Some(var), None) if !var.is_empty() => Some(StoreRef::Env(var)),
        (None, Some(p)) => {
            let base = file.parent().filter(|d| !d.as_os_str().is_empty());
            Some(StoreRef::File(match base {
                Some(dir) if p.is_relative() => dir.join(p),
                _ => p,
            }))
        }
        _ => {
            cx.error(
                node.span,
                "store",
                "store needs exactly one of `dsn-env` and `dsn-file`",
                Some("the DSN carries a password: name the variable or the file that holds it, e.g. `store: { dsn-env: FIREDRILL_STORE_DSN }`".into()),
            );
            None
        }
    }
}

fn environment(cx: &mut Ctx<'_>, name: &str, node: &Node, path: &str) -> Option<Environment> {
    let raw: Option<RawEnvironment> = cx.de(node, path);
    // The value checks below read the nodes directly, so a typo in one key of an
    // environment does not hide a bad time zone next to it.
    let at = |k: &str| node.get(k).map_or(node.span, |n| n.span);
    let time_zone = node
        .get("time-zone")
        .filter(|n| n.is_scalar())
        .map_or_else(|| "UTC".to_string(), |n| n.raw.clone());
    if chrono_tz::Tz::from_str(&time_zone).is_err() {
        cx.error(
            at("time-zone"),
            &child_path(path, "time-zone"),
            format!("unknown time zone `{time_zone}`"),
            Some("use an IANA name such as `Europe/Berlin`, `America/New_York` or `UTC`".into()),
        );
    }
    let vars_path = child_path(path, "vars");
    for e in node.get("vars").and_then(Node::entries).unwrap_or_default() {
        if !e.value.is_scalar() {
            continue;
        }
        let (_, errs) = expand(&e.value.raw, |r| match r {
            Ref::Env(_) => Ok(String::new()),
            Ref::Var(n) => Err((
                format!("`${{{n}}}` is not supported in firedrill.yaml"),
                Some("values here may only read the process environment with `${env:NAME}`".into()),
            )),
        });
        for err in errs {
            cx.error(
                e.value.span,
                &child_path(&vars_path, &e.key),
                err.message,
                err.help,
            );
        }
    }
    check_windows(cx, node, path);
    let raw = raw?;
    if raw.passes.is_some() && raw.promote_from.is_none() {
        cx.error(
            at("passes"),
            &child_path(path, "passes"),
            "`passes` is only used with `promote-from`",
            Some("add `promote-from: ENVIRONMENT`".into()),
        );
    }
    if raw.passes == Some(0) {
        cx.error(
            at("passes"),
            &child_path(path, "passes"),
            "passes must be at least 1",
            None,
        );
    }
    if name == "local" && raw.protected {
        cx.error(
            at("protected"),
            &child_path(path, "protected"),
            "the built-in `local` environment cannot be protected",
            Some("define a separate environment for protected targets".into()),
        );
    }
    if raw.within.is_some() && raw.promote_from.is_none() {
        cx.error(
            at("within"),
            &child_path(path, "within"),
            "`within` is only used with `promote-from`",
            Some("add `promote-from: ENVIRONMENT`".into()),
        );
    }
    if raw.within.is_some_and(|w| w.0.is_zero()) {
        cx.error(
            at("within"),
            &child_path(path, "within"),
            "within must be greater than zero",
            None,
        );
    }
    Some(Environment {
        name: name.to_string(),
        kube_context: raw.kube_context,
        time_zone: raw.time_zone.unwrap_or(time_zone),
        vars: raw.vars.0.into_iter().collect(),
        protected: raw.protected,
        promote_from: raw.promote_from,
        promote_within: raw.within.map(|w| w.0),
        schedule: crate::experiment::model::schedule::Rules {
            jitter: raw.jitter.map_or(Duration::ZERO, |d| d.0),
            starting_deadline: raw.starting_deadline.map(|d| d.0),
            promote_passes: raw.passes.unwrap_or(1),
            // Positioned errors came from `check_windows`; what parses here is what passed.
            windows: raw
                .windows
                .iter()
                .filter_map(|w| crate::experiment::model::window::Window::parse(w).ok())
                .collect(),
            blackouts: raw
                .blackouts
                .iter()
                .filter_map(|b| crate::experiment::model::window::Blackout::parse(b).ok())
                .collect(),
            concurrency: match raw.concurrency {
                None | Some(RawConcurrency::Forbid) => {
                    crate::experiment::model::schedule::Concurrency::Forbid
                }
            },
        },
    })
}

/// `windows:` and `blackouts:`, each item checked on its own so every bad one is reported
/// at its position.
fn check_windows(cx: &mut Ctx<'_>, node: &Node, path: &str) {
    use crate::experiment::model::window::{Blackout, Window};
    for (key, is_window) in [("windows", true), ("blackouts", false)] {
        let Some(Kind::Seq(items)) = node.get(key).map(|n| &n.kind) else {
            continue;
        };
        for (i, item) in items.iter().enumerate() {
            if !item.is_scalar() {
                continue; // the strict struct reports the type
            }
            let at = format!("{}[{i}]", child_path(path, key));
            let parsed = if is_window {
                Window::parse(&item.raw).map(drop)
            } else {
                Blackout::parse(&item.raw).map(drop)
            };
            if let Err(e) = parsed {
                cx.error(item.span, &at, e.message, Some(e.help.into()));
            }
        }
    }
}

/// The environment `name` from a loaded file; `local` exists even when the file does not
/// define it.
pub fn environment_named(file: Option<&EnvironmentsFile>, name: &str) -> Option<Environment> {
    let found = file.and_then(|f| f.environments.iter().find(|e| e.name == name).cloned());
    match found {
        Some(e) => Some(e),
        None if name == "local" => Some(Environment::local()),
        None => None,
    }
}
