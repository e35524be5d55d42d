//! The hand-written top level of the loader: walks an experiment document section by
//! section and entry by entry, so that one bad probe does not hide a bad fault, then checks
//! references and cross-field rules and builds the [`Experiment`]. One file per section; the
//! order of the passes is [`Builder::experiment`]'s.
//!
//! Every problem becomes a [`Diagnostic`] positioned at the node that caused it; the load
//! fails when any error was found, and warnings travel with the result either way.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use super::check::{self, Invalid};
use super::de::{child_path, from_node, DeError, Problem};
use super::diag::{suggest, Diagnostic, Diagnostics};
use super::interp::{interpolate_tree, Resolver};
use super::model::db_failover::DbFailoverSpec;
use super::model::*;
use super::node::{self, Kind, Node, Span};
use super::raw::*;
use super::LoadOptions;

mod attribution;
mod faults;
mod network;
mod nodes;
mod probes;
mod recovery;
mod references;
mod steps;
mod targets;

const DAY: Duration = Duration::from_secs(24 * 3600);
const HOUR: Duration = Duration::from_secs(3600);
const MS: Duration = Duration::from_millis(1);

const TOP_KEYS: &[&str] = &[
    "name",
    "description",
    "environments",
    "schedule",
    "simulation",
    "proxy",
    "targets",
    "probes",
    "steady-state",
    "faults",
    "recovery",
    "abort-when",
    "repeat",
    "cooldown",
    "max-duration",
];

/// Collects diagnostics for one file.
pub(crate) struct Ctx<'f> {
    pub file: &'f Path,
    pub diags: Vec<Diagnostic>,
    /// Paths whose value could not be interpolated: checking what is left of it would only
    /// repeat the same mistake in other words.
    pub suppressed: BTreeSet<String>,
}

impl<'f> Ctx<'f> {
    pub fn new(file: &'f Path) -> Self {
        Ctx {
            file,
            diags: Vec::new(),
            suppressed: BTreeSet::new(),
        }
    }

    pub fn error(
        &mut self,
        span: Span,
        path: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        if self.suppressed.contains(path) {
            return;
        }
        self.diags.push(
            Diagnostic::error(self.file, span.line, span.col, message)
                .with_path(path)
                .with_help(help),
        );
    }

    pub fn invalid(&mut self, span: Span, path: &str, inv: Invalid) {
        self.error(span, path, inv.message, inv.help);
    }

    pub fn warn(
        &mut self,
        span: Span,
        path: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        self.diags.push(
            Diagnostic::error(self.file, span.line, span.col, message)
                .with_path(path)
                .with_help(help)
                .warning(),
        );
    }

    fn de_error(&mut self, fallback: Span, fallback_path: &str, e: DeError) {
        for p in e.0 {
            let span = p.span.unwrap_or(fallback);
            let path = p.path.unwrap_or_else(|| fallback_path.to_string());
            self.error(span, &path, p.message, p.help);
        }
    }

    /// Deserializes `node` as `T`, recording its errors — all of them, not only the first:
    /// serde stops at the first bad value, so the entry holding it is taken out of a copy of
    /// the tree and the rest deserialized again, until nothing more can be learnt. A
    /// "missing required key" for an entry taken out that way is not reported: its real
    /// problem already was.
    pub fn de<T: DeserializeOwned>(&mut self, node: &Node, path: &str) -> Option<T> {
        let first = match from_node::<T>(node, path) {
            Ok(v) => return Some(v),
            Err(e) => e,
        };
        let mut tree = node.clone();
        let mut removed: Vec<(String, String)> = Vec::new();
        let mut seen: Vec<Problem> = Vec::new();
        let mut next = Some(first);
        // Each round takes one entry out, so the rounds are bounded by the tree's size; the
        // cap bounds the cost of a hostile file with thousands of bad values in one mapping.
        for _ in 0..MAX_ERRORS_PER_VALUE {
            let Some(err) = next.take() else { break };
            let fresh: Vec<Problem> = err
                .0
                .into_iter()
                .filter(|p| !seen.contains(p) && !is_removed_missing(p, &removed))
                .collect();
            if fresh.is_empty() {
                break;
            }
            let culprit = fresh
                .iter()
                .find(|p| {
                    !p.message.starts_with("unknown key") && !p.message.starts_with("duplicate key")
                })
                .and_then(|p| p.span);
            seen.extend(fresh.iter().cloned());
            self.de_error(node.span, path, DeError(fresh));
            let Some(gone) = culprit.and_then(|span| take_out(&mut tree, span, path)) else {
                break;
            };
            removed.push(gone);
            next = from_node::<T>(&tree, path).err();
        }
        None
    }

    pub fn has_errors(&self) -> bool {
        self.diags.iter().any(Diagnostic::is_error)
    }

    pub fn finish(self) -> Diagnostics {
        let mut d = Diagnostics(self.diags);
        d.sort();
        d
    }

    /// Turns tree-building problems into diagnostics; `None` when no usable tree remains.
    pub fn tree(&mut self, parsed: node::Parsed) -> Option<Node> {
        let mut fatal = false;
        for e in parsed.errors {
            fatal |= e.fatal;
            self.error(e.span, &e.path, e.message, e.help);
        }
        if fatal {
            None
        } else {
            parsed.root
        }
    }
}

/// How many bad values of one mapping (and what it holds) are reported before giving up.
const MAX_ERRORS_PER_VALUE: usize = 20;

/// A "missing required key `k`" for a mapping whose entry `k` [`Ctx::de`] took out.
fn is_removed_missing(p: &Problem, removed: &[(String, String)]) -> bool {
    removed.iter().any(|(parent, key)| {
        p.path.as_deref() == Some(parent.as_str())
            && p.message == format!("missing required key `{key}`")
    })
}

/// Takes out of `tree` (at YAML path `path`) the mapping entry whose value is the node at
/// `span`, or holds it inside a sequence (the sequence goes whole: taking one item out would
/// renumber the paths of the items after it). Returns the entry's mapping path and key.
fn take_out(tree: &mut Node, span: Span, path: &str) -> Option<(String, String)> {
    enum Found {
        No,
        Here,
        Gone(String, String),
    }
    fn walk(n: &mut Node, span: Span, path: &str) -> Found {
        match &mut n.kind {
            Kind::Map(entries) => {
                for i in 0..entries.len() {
                    let found = if entries[i].value.span == span {
                        Found::Here
                    } else {
                        let child = child_path(path, &entries[i].key);
                        walk(&mut entries[i].value, span, &child)
                    };
                    match found {
                        Found::No => {}
                        Found::Here => {
                            let e = entries.remove(i);
                            return Found::Gone(path.to_string(), e.key);
                        }
                        gone => return gone,
                    }
                }
                Found::No
            }
            Kind::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if item.span == span {
                        return Found::Here;
                    }
                    match walk(item, span, &format!("{path}[{i}]")) {
                        Found::No => {}
                        found => return found,
                    }
                }
                Found::No
            }
            _ => Found::No,
        }
    }
    match walk(tree, span, path) {
        Found::Gone(p, k) => Some((p, k)),
        Found::No | Found::Here => None,
    }
}

/// Where the value of `key` in mapping `node` is, else the mapping itself.
fn at(node: &Node, key: &str) -> Span {
    node.get(key).map_or(node.span, |n| n.span)
}

/// Parses any document into `T` with positioned diagnostics (no interpolation).
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, bytes: &[u8]) -> Result<T, Diagnostics> {
    let mut cx = Ctx::new(file);
    let Some(root) = cx.tree(node::parse(bytes)) else {
        return Err(cx.finish());
    };
    let value = cx.de::<T>(&root, "");
    match value {
        Some(v) if !cx.has_errors() => Ok(v),
        _ => Err(cx.finish()),
    }
}

/// Checks a duration against a lower and upper bound, reporting at `span`.
/// The default and the allowed range of one duration setting.
#[derive(Debug, Clone, Copy)]
struct Limit {
    default: Duration,
    /// `Duration::ZERO` where zero means "none" (a grace period), else the shortest
    /// meaningful value.
    min: Duration,
    max: Duration,
    /// Why the minimum is what it is, when that is not obvious.
    min_help: Option<&'static str>,
}

impl Limit {
    fn new(default: Duration, min: Duration, max: Duration) -> Self {
        Limit {
            default,
            min,
            max,
            min_help: None,
        }
    }

    fn min_help(mut self, why: &'static str) -> Self {
        self.min_help = Some(why);
        self
    }
}

fn bounded(
    cx: &mut Ctx<'_>,
    d: Duration,
    span: Span,
    path: &str,
    what: &str,
    limit: Limit,
) -> Duration {
    let max = limit.max;
    if d.is_zero() && !limit.min.is_zero() {
        cx.error(
            span,
            path,
            format!("{what} must be greater than zero"),
            Some(
                limit
                    .min_help
                    .unwrap_or("write a positive duration such as `1s`")
                    .into(),
            ),
        );
    } else if d < limit.min {
        cx.error(
            span,
            path,
            format!(
                "{what} must be at least {}",
                check::format_duration(limit.min)
            ),
            limit.min_help.map(String::from),
        );
    } else if d > max {
        cx.error(
            span,
            path,
            format!(
                "{what} of {} is longer than the maximum of {}",
                check::format_duration(d),
                check::format_duration(max)
            ),
            Some("check the unit (`ms`, `s`, `m`, `h`)".into()),
        );
    }
    d
}

/// Splits an entry mapping into its one kind key and its common keys.
struct KindSplit<'n> {
    kind: &'n str,
    body: &'n Node,
}

fn split_kind<'n>(
    cx: &mut Ctx<'_>,
    node: &'n Node,
    path: &str,
    what: &str,
    kinds: &[&str],
    common: &[&str],
) -> Option<KindSplit<'n>> {
    let Some(entries) = node.entries() else {
        cx.error(
            node.span,
            path,
            format!(
                "expected a mapping for this {what}, found {}",
                node.describe()
            ),
            Some(format!(
                "a {what} has one of the keys {}",
                quote_list(kinds)
            )),
        );
        return None;
    };
    let mut found: Option<KindSplit<'n>> = None;
    let mut unknown = false;
    let valid: Vec<&str> = kinds.iter().chain(common).copied().collect();
    for e in entries {
        if kinds.contains(&e.key.as_str()) {
            if let Some(first) = &found {
                cx.error(
                    e.key_span,
                    path,
                    format!(
                        "a {what} has exactly one kind, but this one has both `{}` and `{}`",
                        first.kind, e.key
                    ),
                    Some(format!("split it into two {what}s")),
                );
                return None;
            }
            found = Some(KindSplit {
                kind: &e.key,
                body: &e.value,
            });
        } else if !common.contains(&e.key.as_str()) {
            unknown = true;
            cx.error(
                e.key_span,
                path,
                format!("unknown key `{}`", e.key),
                suggest(&e.key, valid.iter().copied()),
            );
        }
    }
    if found.is_none() && !unknown {
        cx.error(
            node.span,
            path,
            format!("this {what} has no kind"),
            Some(format!("add one of {}", quote_list(kinds))),
        );
    }
    found
}

fn quote_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A name reference with its position, checked once every section is read.
struct Reference {
    name: String,
    span: Span,
    path: String,
}

/// Load an experiment from bytes; `path` names the file in diagnostics and resolves
/// relative paths (the simulation scenario).
pub fn load(
    path: &Path,
    bytes: &[u8],
    opts: &LoadOptions<'_>,
) -> Result<super::Loaded, Diagnostics> {
    let mut cx = Ctx::new(path);
    let Some(mut root) = cx.tree(node::parse(bytes)) else {
        return Err(cx.finish());
    };
    if root.entries().is_none() {
        cx.error(
            root.span,
            "",
            format!(
                "an experiment must be a mapping of keys such as `name:` and `faults:`, found {}",
                root.describe()
            ),
            Some("start the file with `name: my-drill`".into()),
        );
        return Err(cx.finish());
    }

    // The same text the tree was built from (without a byte-order mark), so columns agree.
    let source = String::from_utf8_lossy(bytes);
    let source = source.strip_prefix('\u{feff}').unwrap_or(&source);
    let mut resolver = Resolver {
        env_name: &opts.env.name,
        env_vars: &opts.env.vars,
        extra_vars: opts.extra_vars,
        secrets: Vec::new(),
        unset_env: opts.unset_env,
        unset: Vec::new(),
    };
    let mut failed = BTreeSet::new();
    for e in interpolate_tree(&mut root, source, &mut resolver, &["simulation.scenario"]) {
        if e.unset_env {
            cx.warn(e.span, &e.path, e.message, e.help);
        } else {
            cx.error(e.span, &e.path, e.message, e.help);
        }
        failed.insert(e.path);
    }
    cx.suppressed = failed;
    let secrets = resolver.secrets;

    let mut b = Builder {
        cx,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        opts,
        refs_probe: Vec::new(),
        target_uses: Vec::new(),
        declared_targets: Vec::new(),
        refs_after: Vec::new(),
    };
    let exp = b.experiment(&root, path, bytes, secrets);
    let mut cx = b.cx;
    match exp {
        Some(experiment) if !cx.has_errors() => {
            let mut warnings = std::mem::take(&mut cx.diags);
            warnings.sort_by_key(|d| (d.line, d.column));
            Ok(super::Loaded {
                experiment,
                warnings,
            })
        }
        _ => Err(cx.finish()),
    }
}

struct Builder<'f, 'o> {
    cx: Ctx<'f>,
    dir: PathBuf,
    opts: &'o LoadOptions<'o>,
    refs_probe: Vec<Reference>,
    /// Fault → target references: (reference, required target kind).
    target_uses: Vec<(Reference, &'static str)>,
    /// Every target defined, valid or not, with its kind key and position: references are
    /// checked against what the author wrote, so one bad target is not reported twice.
    declared_targets: Vec<(String, Option<&'static str>, Span, String)>,
    /// Probe → fault references of `after:`, by probe name.
    refs_after: Vec<(String, Reference)>,
}

impl Builder<'_, '_> {
    /// The passes, in order; each reports every problem it finds and goes on:
    /// 1. top-level keys (unknown, required), `environments:`, `simulation:`;
    /// 2. the sections: `proxy:` ([`network`]), `targets:` ([`targets`]), `probes:`
    ///    ([`probes`]), `faults:` ([`faults`]), `recovery:` ([`recovery`]);
    /// 3. which fault each probe watches ([`attribution`]), `abort-when:`, the run keys
    ///    (`repeat`, `cooldown`, `max-duration`);
    /// 4. references between sections ([`references`]), once every name is known.
    fn experiment(
        &mut self,
        root: &Node,
        path: &Path,
        bytes: &[u8],
        secrets: Vec<String>,
    ) -> Option<Experiment> {
        let entries = root.entries().unwrap_or_default();
        for e in entries {
            if !TOP_KEYS.contains(&e.key.as_str()) {
                self.cx.error(
                    e.key_span,
                    "",
                    format!("unknown key `{}`", e.key),
                    suggest(&e.key, TOP_KEYS.iter().copied()),
                );
            }
        }
        // A restore drill measures the restore itself: its probes (of the source, say) are
        // optional.
        let only_restores = root
            .get("faults")
            .and_then(|f| match &f.kind {
                Kind::Seq(items) if !items.is_empty() => {
                    Some(items.iter().all(|i| i.get("restore").is_some()))
                }
                _ => None,
            })
            .unwrap_or(false);
        for required in ["name", "probes", "faults", "recovery"] {
            if root.get(required).is_none() && !(required == "probes" && only_restores) {
                let help = match required {
                    "name" => "add `name: my-drill` (lowercase letters, digits and `-`)",
                    "probes" => "add at least one probe, e.g. `probes: { web: { http: { url: \"http://127.0.0.1:8080/\" } } }`",
                    "faults" => "add at least one fault, e.g. `faults: [ { pod-kill: { target: my-pods } } ]`",
                    _ => "add e.g. `recovery: { objective: 30s }`",
                };
                self.cx.error(
                    root.span,
                    "",
                    format!("missing required key `{required}`"),
                    Some(help.into()),
                );
            }
        }

        let name = root.get("name").and_then(|n| {
            let s: String = self.cx.de(n, "name")?;
            if let Err(inv) = check::dns_label("experiment name", &s) {
                self.cx.invalid(n.span, "name", inv);
            }
            Some(s)
        });
        let description = root
            .get("description")
            .and_then(|n| self.cx.de::<Option<String>>(n, "description"))
            .flatten();
        let environments = self.environments(root);
        let schedule = root.get("schedule").and_then(|n| {
            let s: String = self.cx.de(n, "schedule")?;
            if let Err(inv) = check::cron(&s) {
                self.cx.invalid(n.span, "schedule", inv);
            }
            Some(s)
        });
        let simulation = root.get("simulation").and_then(|n| self.simulation(n));
        let proxies = root
            .get("proxy")
            .map(|n| self.proxies(n))
            .unwrap_or_default();
        let proxy_names: Vec<String> = proxies.iter().map(|p| p.name.clone()).collect();
        let targets = self.targets(root);
        let probes = self.probes(root);
        let probe_names: Vec<String> = probes.iter().map(|p| p.name.clone()).collect();
        let steady_state = match root.get("steady-state") {
            Some(n) => self.probe_list(n, "steady-state"),
            None => probe_names.clone(),
        };
        let (faults, fault_names) = self.faults(root, &proxy_names);
        let recovery = root
            .get("recovery")
            .and_then(|n| self.recovery(n, &probe_names));
        let mut probes = probes;
        if let Some(r) = &recovery {
            self.attribute(
                root,
                &mut probes,
                &r.probes,
                &faults,
                &fault_names,
                &targets,
                &proxies,
            );
        }
        let fault_waits = self.steps(
            root,
            &faults,
            &fault_names,
            &probe_names,
            recovery
                .as_ref()
                .map_or(Duration::from_secs(300), |r| r.timeout),
        );
        let abort_when = self.aborts(root, &fault_names);
        let repeat = match root.get("repeat") {
            None => 1,
            Some(n) => match self.cx.de::<i64>(n, "repeat") {
                Some(r @ 1..=1000) => r as u32,
                Some(r) => {
                    self.cx.error(
                        n.span,
                        "repeat",
                        format!("repeat must be between 1 and 1000, found {r}"),
                        Some("repeat is the number of trials in one run".into()),
                    );
                    1
                }
                None => 1,
            },
        };
        let cooldown = match root.get("cooldown") {
            None => Duration::from_secs(5),
            Some(n) => self
                .cx
                .de::<Dur>(n, "cooldown")
                .map(|d| {
                    bounded(
                        &mut self.cx,
                        d.0,
                        n.span,
                        "cooldown",
                        "cooldown",
                        Limit::new(Duration::from_secs(5), Duration::ZERO, HOUR),
                    )
                })
                .unwrap_or_default(),
        };

        let max_duration = root.get("max-duration").and_then(|n| {
            self.cx.de::<Dur>(n, "max-duration").map(|d| {
                bounded(
                    &mut self.cx,
                    d.0,
                    n.span,
                    "max-duration",
                    "max-duration",
                    Limit::new(DAY, Duration::from_secs(1), 7 * DAY),
                )
            })
        });

        let declared_probes: Vec<String> = root
            .get("probes")
            .and_then(Node::entries)
            .unwrap_or_default()
            .iter()
            .map(|e| e.key.clone())
            .collect();
        self.check_references(&declared_probes);

        Some(Experiment {
            name: name?,
            description,
            environments,
            schedule,
            simulation,
            proxies,
            targets,
            probes,
            steady_state,
            faults,
            fault_names,
            fault_waits,
            recovery: recovery?,
            abort_when,
            repeat,
            cooldown,
            max_duration,
            source: Source {
                path: path.to_path_buf(),
                content_hash: hex_sha256(bytes),
            },
            secrets,
        })
    }

    fn environments(&mut self, root: &Node) -> Vec<String> {
        let Some(n) = root.get("environments") else {
            return Vec::new();
        };
        let Some(list) = self.cx.de::<Vec<String>>(n, "environments") else {
            return Vec::new();
        };
        let items: Vec<&Node> = match &n.kind {
            Kind::Seq(items) => items.iter().collect(),
            _ => Vec::new(),
        };
        let mut seen = BTreeSet::new();
        for (i, env) in list.iter().enumerate() {
            let span = items.get(i).map_or(n.span, |x| x.span);
            let path = format!("environments[{i}]");
            if !seen.insert(env.as_str()) {
                self.cx.error(
                    span,
                    &path,
                    format!("environment `{env}` is listed twice"),
                    None,
                );
                continue;
            }
            if let Err(inv) = check::dns_label("environment name", env) {
                self.cx.invalid(span, &path, inv);
                continue;
            }
            if let Some(known) = self.opts.known_environments {
                if env != "local" && !known.iter().any(|k| k == env) {
                    let mut names: Vec<&str> = known.iter().map(String::as_str).collect();
                    names.push("local");
                    self.cx.error(
                        span,
                        &path,
                        format!("unknown environment `{env}`"),
                        suggest(env, names.iter().copied())
                            .map(|h| format!("{h} (environments are defined in firedrill.yaml)")),
                    );
                }
            }
        }
        list
    }

    fn simulation(&mut self, n: &Node) -> Option<Simulation> {
        let raw: RawSimulation = self.cx.de(n, "simulation")?;
        let span = at(n, "scenario");
        if raw.scenario.contains("${") {
            self.cx.error(
                span,
                "simulation.scenario",
                "`simulation.scenario` cannot use `${...}`",
                Some(
                    "the scenario is read before variables are resolved; write the path literally"
                        .into(),
                ),
            );
            return None;
        }
        let scenario = self.dir.join(&raw.scenario);
        if !scenario.is_file() {
            self.cx.error(
                span,
                "simulation.scenario",
                format!("simulation scenario `{}` does not exist", raw.scenario),
                Some("the path is relative to the experiment file".into()),
            );
        }
        Some(Simulation { scenario })
    }

    fn named_entries<'n>(
        &mut self,
        root: &'n Node,
        key: &str,
        what: &str,
    ) -> Vec<(&'n str, Span, &'n Node, String)> {
        let Some(n) = root.get(key) else {
            return Vec::new();
        };
        let Some(entries) = n.entries() else {
            if n.kind != Kind::Null {
                self.cx.error(
                    n.span,
                    key,
                    format!(
                        "expected a mapping of {what} names to {what}s, found {}",
                        n.describe()
                    ),
                    Some(format!(
                        "write `{key}:` followed by indented `name: {{ ... }}` entries"
                    )),
                );
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for e in entries {
            if let Err(inv) = check::entry_name(what, &e.key) {
                self.cx.invalid(e.key_span, key, inv);
            }
            out.push((
                e.key.as_str(),
                e.key_span,
                &e.value,
                child_path(key, &e.key),
            ));
        }
        out
    }

    /// Reads optional duration `key` of mapping `n` within `limit`.
    fn duration_key(&mut self, n: &Node, path: &str, key: &str, limit: Limit) -> Duration {
        let Some(v) = n.get(key) else {
            return limit.default;
        };
        let p = child_path(path, key);
        match self.cx.de::<Dur>(v, &p) {
            Some(d) => bounded(&mut self.cx, d.0, v.span, &p, key, limit),
            None => limit.default,
        }
    }

    /// Checks an already parsed optional duration `key` of mapping `n` against `limit`.
    fn opt_duration(
        &mut self,
        n: &Node,
        path: &str,
        key: &str,
        value: Option<Dur>,
        limit: Limit,
    ) -> Duration {
        match value {
            None => limit.default,
            Some(d) => bounded(
                &mut self.cx,
                d.0,
                at(n, key),
                &child_path(path, key),
                key,
                limit,
            ),
        }
    }

    fn argv(&mut self, n: &Node, path: &str, key: &str, argv: &[String]) {
        if argv.first().is_none_or(|a| a.trim().is_empty()) {
            self.cx.error(
                at(n, key),
                &child_path(path, key),
                format!("`{key}` needs a program to run"),
                Some(format!("write the program and its arguments as a list, e.g. `{key}: [./check.sh, --quick]`")),
            );
        }
    }
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
