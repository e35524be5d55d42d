//! The hand-written top level of the loader: walks an experiment document section by
//! section and entry by entry, so that one bad probe does not hide a bad fault, then checks
//! references and cross-field rules and builds the [`Experiment`].
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
mod network;

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
const TARGET_KINDS: &[&str] = &["kubernetes", "process"];
const PROBE_KINDS: &[&str] = &[
    "http",
    "tcp",
    "command",
    "kubernetes",
    "postgres",
    "prometheus",
];
const PROBE_COMMON: &[&str] = &["every", "every-during", "after"];
/// Default and minimum sampling interval of a `prometheus` probe (see `probes`).
const PROMETHEUS_EVERY: Duration = Duration::from_secs(5);
const PROMETHEUS_MIN_EVERY: Duration = Duration::from_secs(1);
const PROMETHEUS_WHY: &str = "each check costs the Prometheus server a query evaluation, and its data changes only once per scrape interval";
const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

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
        for required in ["name", "probes", "faults", "recovery"] {
            if root.get(required).is_none() {
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
        let abort_when = self.aborts(root);
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

    fn targets(&mut self, root: &Node) -> Vec<Target> {
        let mut out = Vec::new();
        for (name, span, node, path) in self.named_entries(root, "targets", "target") {
            let kind = node
                .entries()
                .and_then(|es| {
                    es.iter()
                        .find_map(|e| TARGET_KINDS.iter().find(|k| **k == e.key))
                })
                .copied();
            self.declared_targets
                .push((name.to_string(), kind, span, path.clone()));
            let Some(split) = split_kind(&mut self.cx, node, &path, "target", TARGET_KINDS, &[])
            else {
                continue;
            };
            let bpath = child_path(&path, split.kind);
            let kind = match split.kind {
                "kubernetes" => self
                    .kube_target(split.body, &bpath)
                    .map(TargetKind::Kubernetes),
                _ => self
                    .process_target(split.body, &bpath)
                    .map(TargetKind::Process),
            };
            if let Some(kind) = kind {
                out.push(Target {
                    name: name.to_string(),
                    kind,
                });
            }
        }
        out
    }

    fn kube_target(&mut self, n: &Node, path: &str) -> Option<KubeTarget> {
        let raw: RawKubeTarget = self.cx.de(n, path)?;
        let ok_before = self.cx.diags.len();
        if !check::is_dns_label(&raw.namespace) {
            self.cx.error(
                at(n, "namespace"),
                &child_path(path, "namespace"),
                format!("invalid namespace `{}`", raw.namespace),
                Some(
                    "namespaces use lowercase letters, digits and `-` (at most 63 characters)"
                        .into(),
                ),
            );
        }
        if let Err(inv) = check::label_selector(&raw.selector) {
            self.cx
                .invalid(at(n, "selector"), &child_path(path, "selector"), inv);
        }
        let workload = raw.workload.as_deref().and_then(|w| {
            let r = workload_ref(w, &raw.namespace);
            r.map_err(|inv| {
                self.cx
                    .invalid(at(n, "workload"), &child_path(path, "workload"), inv);
            })
            .ok()
        });
        let amount = match (raw.count, raw.percent) {
            (Some(_), Some(_)) => {
                self.cx.error(
                    at(n, "percent"),
                    &child_path(path, "percent"),
                    "`count` and `percent` cannot both be set",
                    Some(
                        "choose a fixed number of pods (`count`) or a share of them (`percent`)"
                            .into(),
                    ),
                );
                Amount::Count(1)
            }
            (Some(c), None) => {
                if c < 1 || c > i64::from(u32::MAX) {
                    self.cx.error(
                        at(n, "count"),
                        &child_path(path, "count"),
                        format!("count must be at least 1, found {c}"),
                        Some("count is how many pods the fault hits".into()),
                    );
                }
                Amount::Count(u32::try_from(c).unwrap_or(1))
            }
            (None, Some(Percent(p))) => {
                if !(1..=100).contains(&p) {
                    self.cx.error(
                        at(n, "percent"),
                        &child_path(path, "percent"),
                        format!("percent must be between 1 and 100, found {p}"),
                        None,
                    );
                }
                Amount::Percent(u8::try_from(p.clamp(1, 100)).unwrap_or(1))
            }
            (None, None) => Amount::Count(1),
        };
        let max_targets = raw.max_targets.map(|m| {
            if m < 1 || m > i64::from(u32::MAX) {
                self.cx.error(
                    at(n, "max-targets"),
                    &child_path(path, "max-targets"),
                    format!("max-targets must be at least 1, found {m}"),
                    Some("max-targets caps how many pods one injection may hit".into()),
                );
            }
            u32::try_from(m).unwrap_or(1)
        });
        if self.cx.diags.len() != ok_before {
            return None;
        }
        Some(KubeTarget {
            namespace: raw.namespace,
            selector: raw.selector,
            workload,
            amount,
            max_targets,
        })
    }

    fn process_target(&mut self, n: &Node, path: &str) -> Option<ProcessTarget> {
        let raw: RawProcessTarget = self.cx.de(n, path)?;
        let max_targets = match raw.max_targets {
            None => 1,
            Some(m) if raw.pid_file.is_some() => {
                self.cx.error(
                    at(n, "max-targets"),
                    &child_path(path, "max-targets"),
                    format!("max-targets ({m}) applies to `command-line` targets only"),
                    Some("a pid file names one process".into()),
                );
                return None;
            }
            Some(m) => match u32::try_from(m) {
                Ok(m) if m >= 1 => m,
                _ => {
                    self.cx.error(
                        at(n, "max-targets"),
                        &child_path(path, "max-targets"),
                        format!("max-targets must be at least 1, found {m}"),
                        Some("max-targets caps how many processes one injection may signal".into()),
                    );
                    return None;
                }
            },
        };
        match (raw.pid_file, raw.command_line) {
            (Some(p), None) if !p.is_empty() => Some(ProcessTarget::PidFile(PathBuf::from(p))),
            (None, Some(c)) if !c.trim().is_empty() => Some(ProcessTarget::CommandLine {
                line: c,
                max_targets,
            }),
            (Some(_), Some(_)) => {
                self.cx.error(
                    at(n, "command-line"),
                    &child_path(path, "command-line"),
                    "`pid-file` and `command-line` cannot both be set",
                    Some("choose one way to find the process".into()),
                );
                None
            }
            (None, None) => {
                self.cx.error(
                    n.span,
                    path,
                    "a process target needs `pid-file` or `command-line`",
                    Some("e.g. `process: { pid-file: /run/demo.pid }`".into()),
                );
                None
            }
            (p, _) => {
                let key = if p.is_some() {
                    "pid-file"
                } else {
                    "command-line"
                };
                self.cx.error(
                    at(n, key),
                    &child_path(path, key),
                    format!("`{key}` is empty"),
                    None,
                );
                None
            }
        }
    }

    fn probes(&mut self, root: &Node) -> Vec<ProbeSpec> {
        let mut out = Vec::new();
        let list = self.named_entries(root, "probes", "probe");
        if list.is_empty() {
            if let Some(n) = root.get("probes") {
                if matches!(&n.kind, Kind::Null) || n.entries().is_some_and(<[_]>::is_empty) {
                    self.cx.error(
                        n.span,
                        "probes",
                        "at least one probe is needed to measure recovery",
                        Some(
                            "add e.g. `web: { http: { url: \"http://127.0.0.1:8080/\" } }`".into(),
                        ),
                    );
                }
            }
        }
        for (name, _, node, path) in list {
            let Some(split) = split_kind(
                &mut self.cx,
                node,
                &path,
                "probe",
                PROBE_KINDS,
                PROBE_COMMON,
            ) else {
                continue;
            };
            let bpath = child_path(&path, split.kind);
            let before = self.cx.diags.len();
            let kind = match split.kind {
                "http" => self.http_probe(split.body, &bpath).map(ProbeKind::Http),
                "tcp" => self.tcp_probe(split.body, &bpath).map(ProbeKind::Tcp),
                "command" => self
                    .command_probe(split.body, &bpath)
                    .map(ProbeKind::Command),
                "postgres" => self
                    .postgres_probe(split.body, &bpath)
                    .map(ProbeKind::Postgres),
                "prometheus" => self
                    .prometheus_probe(split.body, &bpath)
                    .map(ProbeKind::Prometheus),
                _ => self
                    .kube_probe(split.body, &bpath)
                    .map(ProbeKind::Kubernetes),
            };
            // A query costs the Prometheus server an evaluation and answers from samples
            // scraped seconds apart: polling it faster than once a second adds load, not news.
            let (every_default, floor, why) = match split.kind {
                "prometheus" => (PROMETHEUS_EVERY, PROMETHEUS_MIN_EVERY, PROMETHEUS_WHY),
                _ => (Duration::from_secs(1), MS, ""),
            };
            let limit = |default| {
                let l = Limit::new(default, floor, HOUR);
                if why.is_empty() {
                    l
                } else {
                    l.min_help(why)
                }
            };
            let every = self.duration_key(node, &path, "every", limit(every_default));
            let default_during = (every / 10).max(floor).min(every);
            // An http or tcp check is one loopback-cheap round trip: while the system is
            // disturbed such a probe may check back to back (`every-during: 0s`), which brackets
            // the recovery by one round trip, at the price of a busy core while it fails.
            let during_limit = match split.kind {
                "http" | "tcp" => Limit::new(default_during, Duration::ZERO, HOUR),
                "prometheus" => limit(default_during),
                _ => limit(default_during).min_help(
                    "only http and tcp probes may check back to back (`0s`); write e.g. `1ms`",
                ),
            };
            let during = self.duration_key(node, &path, "every-during", during_limit);
            if node.get("every-during").is_some() && !every.is_zero() && during > every {
                self.cx.error(
                    at(node, "every-during"),
                    &child_path(&path, "every-during"),
                    format!(
                        "every-during ({}) must not be longer than every ({})",
                        check::format_duration(during),
                        check::format_duration(every)
                    ),
                    Some("every-during is the faster sampling interval used while the system is disturbed".into()),
                );
            }
            if let (Some(kind), true) = (kind, self.cx.diags.len() == before) {
                self.after_refs(name, node, &path);
                out.push(ProbeSpec {
                    name: name.to_string(),
                    kind,
                    every,
                    every_during: during,
                    watches: None,
                });
            }
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

    /// Checks an `http(s)://host…` URL at key `url` of mapping `n`.
    fn http_url(&mut self, n: &Node, path: &str, url: &str, example: &str) {
        let url_path = child_path(path, "url");
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
            _ if !url.contains("://") => self.cx.error(
                at(n, "url"),
                &url_path,
                format!("url `{}` has no scheme", url),
                Some(format!(
                    "start it with `http://` or `https://`, e.g. `http://{}`",
                    url
                )),
            ),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => self.cx.error(
                at(n, "url"),
                &url_path,
                format!("url `{}` must use http or https, not `{}`", url, u.scheme()),
                None,
            ),
            Ok(_) => self.cx.error(
                at(n, "url"),
                &url_path,
                format!("url `{}` has no host", url),
                None,
            ),
            Err(e) => self.cx.error(
                at(n, "url"),
                &url_path,
                format!("invalid url `{}`: {e}", url),
                Some(format!("write a full url such as `{example}`")),
            ),
        }
    }

    /// Checks header names and values at key `headers` of mapping `n`.
    fn headers(&mut self, n: &Node, path: &str, headers: &[(String, String)]) {
        let hn = n.get("headers").unwrap_or(n);
        let hpath = child_path(path, "headers");
        for (name, value) in headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                // Looked up only for the error: a linear search per header is quadratic.
                let span = hn
                    .entries()
                    .and_then(|es| es.iter().find(|e| &e.key == name))
                    .map_or(hn.span, |e| e.key_span);
                self.cx.error(
                    span,
                    &hpath,
                    format!("invalid header name `{name}`"),
                    Some("header names are letters, digits and `-`, without spaces or `:`".into()),
                );
            } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                self.cx.error(
                    at(hn, name),
                    &child_path(&hpath, name),
                    format!("invalid value for header `{name}`"),
                    Some("header values cannot contain line breaks or control characters".into()),
                );
            }
        }
    }

    /// An http probe's `ca-file`: relative to the experiment's folder, read and parsed now, so
    /// that a missing or empty file is an error at its key rather than a failing probe later.
    fn ca_file(&mut self, n: &Node, path: &str, url: &str, file: &str) -> Option<PathBuf> {
        let key_path = child_path(path, "ca-file");
        let error = |cx: &mut Ctx, message: String, help: &str| {
            cx.error(at(n, "ca-file"), &key_path, message, Some(help.into()))
        };
        if !url.starts_with("https://") {
            error(
                &mut self.cx,
                "`ca-file` applies to https urls".into(),
                "an http url has no certificate to verify; remove `ca-file` or use https",
            );
            return None;
        }
        let resolved = self.dir.join(file);
        let help = "give a PEM file of CA certificates, relative to the experiment file";
        match std::fs::read(&resolved) {
            Err(e) => error(
                &mut self.cx,
                format!("cannot read CA file `{file}`: {e}"),
                help,
            ),
            Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => return Some(resolved),
                _ => error(
                    &mut self.cx,
                    format!("no PEM certificate in CA file `{file}`"),
                    help,
                ),
            },
        }
        None
    }

    fn http_probe(&mut self, n: &Node, path: &str) -> Option<HttpProbe> {
        let raw: RawHttpProbe = self.cx.de(n, path)?;
        self.http_url(n, path, &raw.url, "http://127.0.0.1:8080/healthz");
        let method = match raw.method {
            None => "GET".to_string(),
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                if !HTTP_METHODS.contains(&upper.as_str()) {
                    self.cx.error(
                        at(n, "method"),
                        &child_path(path, "method"),
                        format!("unknown http method `{m}`"),
                        suggest(&upper, HTTP_METHODS.iter().copied()),
                    );
                }
                upper
            }
        };
        self.headers(n, path, &raw.headers.0);
        let mut expect_status = Vec::new();
        for s in raw.expect_status.map(|s| s.0).unwrap_or_default() {
            if (100..=599).contains(&s) {
                expect_status.push(s as u16);
            } else {
                self.cx.error(
                    at(n, "expect-status"),
                    &child_path(path, "expect-status"),
                    format!("{s} is not an http status code"),
                    Some("status codes are between 100 and 599".into()),
                );
            }
        }
        let timeout = self.opt_duration(
            n,
            path,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(1), MS, DAY),
        );
        let max_latency = raw
            .max_latency
            .map(|d| self.opt_duration(n, path, "max-latency", Some(d), Limit::new(d.0, MS, DAY)));
        if let Some(ml) = max_latency {
            if ml > timeout {
                self.cx.error(
                    at(n, "max-latency"),
                    &child_path(path, "max-latency"),
                    format!(
                        "max-latency ({}) is longer than timeout ({})",
                        check::format_duration(ml),
                        check::format_duration(timeout)
                    ),
                    Some("requests are cut off at the timeout; raise `timeout` or lower `max-latency`".into()),
                );
            }
        }
        let ca_file = raw
            .ca_file
            .and_then(|f| self.ca_file(n, path, &raw.url, &f));
        Some(HttpProbe {
            url: raw.url,
            method,
            headers: raw.headers.0,
            expect_status,
            body_contains: raw.body_contains,
            timeout,
            max_latency,
            ca_file,
        })
    }

    fn prometheus_probe(&mut self, n: &Node, path: &str) -> Option<PrometheusProbe> {
        let raw: RawPrometheusProbe = self.cx.de(n, path)?;
        self.http_url(n, path, &raw.url, "http://127.0.0.1:9090");
        if let Ok(u) = reqwest::Url::parse(&raw.url) {
            let p = u.path().trim_end_matches('/');
            if p.ends_with("/api/v1/query") || p.ends_with("/api/v1/query_range") {
                let base = &raw.url[..raw.url.find("/api/v1/").unwrap_or(raw.url.len())];
                self.cx.error(
                    at(n, "url"),
                    &child_path(path, "url"),
                    format!("url `{}` includes the API path", raw.url),
                    Some(format!(
                        "give the server's base url, `{base}`: firedrill appends `/api/v1/query`"
                    )),
                );
            } else if u.query().is_some() {
                self.cx.error(
                    at(n, "url"),
                    &child_path(path, "url"),
                    format!("url `{}` has a query string", raw.url),
                    Some("give the server's base url; the PromQL goes in `query`".into()),
                );
            }
        }
        if raw.query.trim().is_empty() {
            self.cx.error(
                at(n, "query"),
                &child_path(path, "query"),
                "`query` is empty",
                Some(
                    "write a PromQL expression, e.g. `sum(rate(checkouts_total[1m])) * 60`".into(),
                ),
            );
        }
        let method = match raw.method {
            None => "GET".to_string(),
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                if upper != "GET" && upper != "POST" {
                    self.cx.error(
                        at(n, "method"),
                        &child_path(path, "method"),
                        format!("method `{m}` cannot send a Prometheus query"),
                        Some(
                            "use `GET` (the default) or `POST` (a form body, for long queries)"
                                .into(),
                        ),
                    );
                }
                upper
            }
        };
        self.headers(n, path, &raw.headers.0);
        if let Some((name, _)) = raw
            .headers
            .0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            if raw.bearer_token.is_some() || raw.basic_auth.is_some() {
                self.cx.error(
                    at(n.get("headers").unwrap_or(n), name),
                    &child_path(&child_path(path, "headers"), name),
                    "an `Authorization` header and `bearer-token`/`basic-auth` are both set",
                    Some("keep one of them".into()),
                );
            }
        }
        let auth = match (raw.bearer_token, raw.basic_auth) {
            (Some(_), Some(_)) => {
                self.cx.error(
                    at(n, "basic-auth"),
                    &child_path(path, "basic-auth"),
                    "`bearer-token` and `basic-auth` are both set",
                    Some("a request carries one kind of credentials; keep one of them".into()),
                );
                None
            }
            (Some(token), None) => {
                if token.trim().is_empty() {
                    self.cx.error(
                        at(n, "bearer-token"),
                        &child_path(path, "bearer-token"),
                        "`bearer-token` is empty",
                        Some("e.g. `bearer-token: \"${env:PROMETHEUS_TOKEN}\"`".into()),
                    );
                }
                Some(PrometheusAuth::Bearer(token))
            }
            (None, Some(b)) => Some(PrometheusAuth::Basic {
                username: b.username,
                password: b.password,
            }),
            (None, None) => None,
        };
        let timeout = self.opt_duration(
            n,
            path,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(2), MS, Duration::from_secs(300)),
        );
        Some(PrometheusProbe {
            url: raw.url,
            query: raw.query,
            expect: raw.expect.0,
            series: match raw.series {
                None | Some(RawSeries::One) => SeriesRule::One,
                Some(RawSeries::All) => SeriesRule::All,
            },
            method,
            headers: raw.headers.0,
            auth,
            timeout,
        })
    }

    fn postgres_probe(
        &mut self,
        n: &Node,
        path: &str,
    ) -> Option<crate::experiment::model::postgres::PostgresProbeSpec> {
        use crate::experiment::model::postgres::{PostgresMode, PostgresProbeSpec};
        let spec: PostgresProbeSpec = self.cx.de(n, path)?;
        if spec.dsn.trim().is_empty() {
            self.cx.error(
                at(n, "dsn"),
                &child_path(path, "dsn"),
                "`dsn` is empty",
                Some("e.g. `host=127.0.0.1,127.0.0.1 port=5441,5442 user=postgres dbname=postgres target_session_attrs=read-write`".into()),
            );
        }
        if let Err(e) = crate::experiment::model::postgres::split_tls(&spec.dsn) {
            self.cx.error(
                at(n, "dsn"),
                &child_path(path, "dsn"),
                e,
                Some("TLS is rustls with the certificate verified; `sslrootcert=FILE` names the trusted roots (else the system's)".into()),
            );
        }
        if let PostgresMode::Write { rate_hz, .. } = &spec.mode {
            if !(rate_hz.is_finite() && *rate_hz > 0.0 && *rate_hz <= 1000.0) {
                self.cx.error(
                    at(n, "mode"),
                    &child_path(path, "mode"),
                    format!("rate-hz must be more than 0 and at most 1000, not {rate_hz}"),
                    Some("a writer at 20 to 100 writes per second brackets an outage well".into()),
                );
            }
        }
        if spec.timeout.is_zero() || spec.timeout > DAY {
            self.cx.error(
                at(n, "timeout"),
                &child_path(path, "timeout"),
                "timeout must be between 1ms and 24h",
                None,
            );
        }
        Some(spec)
    }

    fn db_failover(
        &mut self,
        n: &Node,
        path: &str,
        spec: &crate::experiment::model::db_failover::DbFailoverSpec,
    ) {
        use crate::experiment::model::db_failover::{DbFailoverProvider, RoleLabels};
        if spec.needs_patroni() && spec.patroni.is_empty() {
            self.cx.error(
                at(n, "provider"),
                &child_path(path, "patroni"),
                "this provider needs the Patroni REST API",
                Some("list the members' REST URLs: `patroni: [\"http://127.0.0.1:8008\", \"http://127.0.0.1:8009\"]`".into()),
            );
        }
        for u in &spec.patroni {
            if reqwest::Url::parse(u).map(|u| u.scheme() == "http" || u.scheme() == "https")
                != Ok(true)
            {
                self.cx.error(
                    at(n, "patroni"),
                    &child_path(path, "patroni"),
                    format!("invalid Patroni REST URL `{u}`"),
                    Some("write e.g. `http://127.0.0.1:8008`".into()),
                );
            }
        }
        if let DbFailoverProvider::Command { run } = &spec.provider {
            self.argv(n, path, "provider", run);
        }
        if let DbFailoverProvider::KillPrimary {
            data_dir,
            target,
            labels,
            grace_period,
        } = &spec.provider
        {
            let kp_path = child_path(&child_path(path, "provider"), "kill-primary");
            let kp = n
                .get("provider")
                .and_then(|p| p.get("kill-primary"))
                .unwrap_or(n);
            if data_dir.is_some() && target.is_some() {
                self.cx.error(
                    at(kp, "target"),
                    &child_path(&kp_path, "target"),
                    "`data-dir` and `target` cannot both be set",
                    Some("`data-dir` kills a postmaster on this host; `target` deletes the primary's pod on Kubernetes".into()),
                );
            }
            if target.is_none() {
                for (key, set) in [
                    ("labels", labels.is_some()),
                    ("grace-period", grace_period.is_some()),
                ] {
                    if set {
                        self.cx.error(
                            at(kp, key),
                            &child_path(&kp_path, key),
                            format!("`{key}` is for killing the primary's pod, and needs `target`"),
                            Some("name the kubernetes target that matches the database's pods: `target: orders-db`".into()),
                        );
                    }
                }
            }
            if *labels == Some(RoleLabels::CloudnativePg) && !spec.patroni.is_empty() {
                self.cx.error(
                    at(n, "patroni"),
                    &child_path(path, "patroni"),
                    "CloudNativePG runs without Patroni, so `patroni` has no use here",
                    Some(format!(
                        "drop `patroni`: the primary is the pod labelled {}",
                        RoleLabels::CloudnativePg.describe()
                    )),
                );
            }
            if grace_period.is_some_and(|g| g > HOUR) {
                self.cx.error(
                    at(kp, "grace-period"),
                    &child_path(&kp_path, "grace-period"),
                    "`grace-period` must be at most 1h",
                    Some("0s kills the primary hard, as a crash would".into()),
                );
            }
        }
    }

    fn tcp_probe(&mut self, n: &Node, path: &str) -> Option<TcpProbe> {
        let raw: RawTcpProbe = self.cx.de(n, path)?;
        let valid = raw.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            self.cx.error(
                at(n, "address"),
                &child_path(path, "address"),
                format!("invalid address `{}`", raw.address),
                Some("write host:port, e.g. `127.0.0.1:5432` or `db.internal:5432`".into()),
            );
        }
        let timeout = self.opt_duration(
            n,
            path,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(1), MS, DAY),
        );
        Some(TcpProbe {
            address: raw.address,
            timeout,
        })
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

    fn command_probe(&mut self, n: &Node, path: &str) -> Option<CommandProbe> {
        let raw: RawCommandProbe = self.cx.de(n, path)?;
        self.argv(n, path, "run", &raw.run);
        let timeout = self.opt_duration(
            n,
            path,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(5), MS, DAY),
        );
        Some(CommandProbe {
            argv: raw.run,
            timeout,
        })
    }

    fn kube_probe(&mut self, n: &Node, path: &str) -> Option<KubeProbe> {
        let raw: RawKubeProbe = self.cx.de(n, path)?;
        let given: Vec<(&str, &String)> = [
            ("deployment", raw.deployment.as_ref()),
            ("statefulset", raw.statefulset.as_ref()),
            ("replicaset", raw.replicaset.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let (key, value) = match given.as_slice() {
            [one] => *one,
            [] => {
                self.cx.error(
                    n.span,
                    path,
                    "a kubernetes probe needs one of `deployment`, `statefulset` or `replicaset`",
                    Some("e.g. `kubernetes: { deployment: shop/checkout, ready: all }`".into()),
                );
                return None;
            }
            [_, (second, _), ..] => {
                self.cx.error(
                    at(n, second),
                    &child_path(path, second),
                    "a kubernetes probe watches exactly one workload",
                    Some("split it into two probes".into()),
                );
                return None;
            }
        };
        let kind = match key {
            "deployment" => WorkloadKind::Deployment,
            "statefulset" => WorkloadKind::StatefulSet,
            _ => WorkloadKind::ReplicaSet,
        };
        let Some((ns, name)) = value.split_once('/') else {
            self.cx.error(
                at(n, key),
                &child_path(path, key),
                format!("`{value}` must be written as NAMESPACE/NAME"),
                Some(format!("e.g. `{key}: shop/{value}`")),
            );
            return None;
        };
        let mut ok = true;
        if !check::is_dns_label(ns) || !check::is_dns_subdomain(name) {
            ok = false;
            self.cx.error(
                at(n, key),
                &child_path(path, key),
                format!("invalid workload `{value}`"),
                Some(
                    "namespace and name use lowercase letters, digits, `-` (and `.` in names)"
                        .into(),
                ),
            );
        }
        let ready = match raw.ready {
            None | Some(Ready::All) => Readiness::All,
            Some(Ready::AtLeast(k)) => match u32::try_from(k) {
                Ok(k) => Readiness::AtLeast(k),
                Err(_) => {
                    ok = false;
                    self.cx.error(
                        at(n, "ready"),
                        &child_path(path, "ready"),
                        format!("ready must be `all` or a number of replicas, found {k}"),
                        None,
                    );
                    Readiness::All
                }
            },
        };
        ok.then(|| KubeProbe {
            workload: WorkloadRef {
                kind,
                namespace: ns.to_string(),
                name: name.to_string(),
            },
            ready,
        })
    }

    fn probe_list(&mut self, n: &Node, path: &str) -> Vec<String> {
        match self.cx.de::<Vec<String>>(n, path) {
            Some(list) => self.probe_refs(list, n, path),
            None => Vec::new(),
        }
    }

    /// Remembers each name of a parsed probe list (`n` is its node) for the reference check.
    fn probe_refs(&mut self, list: Vec<String>, n: &Node, path: &str) -> Vec<String> {
        if let Kind::Seq(items) = &n.kind {
            for (i, (name, item)) in list.iter().zip(items).enumerate() {
                self.refs_probe.push(Reference {
                    name: name.clone(),
                    span: item.span,
                    path: format!("{path}[{i}]"),
                });
            }
        }
        list
    }

    fn proxies(&mut self, n: &Node) -> Vec<ProxyDecl> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields, rename_all = "kebab-case")]
        struct RawProxy {
            listen: String,
            upstream: String,
        }
        let Some(entries) = n.entries() else {
            self.cx.error(
                n.span,
                "proxy",
                format!("expected a mapping of proxies, found {}", n.describe()),
                Some("write `proxy: { db: { listen: \"127.0.0.1:15432\", upstream: \"127.0.0.1:5432\" } }`".into()),
            );
            return vec![];
        };
        let mut out = Vec::new();
        for e in entries {
            let path = child_path("proxy", &e.key);
            let Some(raw) = self.cx.de::<RawProxy>(&e.value, &path) else {
                continue;
            };
            let listen = match raw.listen.parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.cx.error(
                        at(&e.value, "listen"),
                        &child_path(&path, "listen"),
                        format!("invalid listen address `{}`", raw.listen),
                        Some("write ip:port, e.g. `127.0.0.1:15432`".into()),
                    );
                    None
                }
            };
            let upstream_ok = raw
                .upstream
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !upstream_ok {
                self.cx.error(
                    at(&e.value, "upstream"),
                    &child_path(&path, "upstream"),
                    format!("invalid upstream `{}`", raw.upstream),
                    Some("write host:port, e.g. `127.0.0.1:5432`".into()),
                );
            }
            if let Some(l) = listen.filter(|l| !l.ip().is_loopback()) {
                self.cx.warn(
                    at(&e.value, "listen"),
                    &child_path(&path, "listen"),
                    format!(
                        "proxy `{}` listens on {l}, reachable from other machines, not only this one",
                        e.key
                    ),
                    Some(format!(
                        "listen on 127.0.0.1:{} unless other machines must reach the proxy",
                        l.port()
                    )),
                );
            }
            if let (Some(listen), true) = (listen, upstream_ok) {
                out.push(ProxyDecl {
                    name: e.key.clone(),
                    listen,
                    upstream: raw.upstream,
                });
            }
        }
        out
    }

    fn faults(&mut self, root: &Node, proxies: &[String]) -> (Vec<FaultSpec>, Vec<Option<String>>) {
        let mut out = Vec::new();
        let mut names = Vec::new();
        let Some(n) = root.get("faults") else {
            return (out, names);
        };
        let items = match &n.kind {
            Kind::Seq(items) if !items.is_empty() => items,
            Kind::Seq(_) | Kind::Null => {
                self.cx.error(
                    n.span,
                    "faults",
                    "at least one fault is needed",
                    Some("e.g. `faults: [ { pod-kill: { target: my-pods } } ]`".into()),
                );
                return (out, names);
            }
            _ => {
                self.cx.error(
                    n.span,
                    "faults",
                    format!("expected a list of faults, found {}", n.describe()),
                    Some(
                        "write each fault as a list item: `- pod-kill: { target: my-pods }`".into(),
                    ),
                );
                return (out, names);
            }
        };
        let mut seen_names = BTreeSet::new();
        let fault_keys = FaultKind::ALL.map(FaultKind::key);
        for (i, item) in items.iter().enumerate() {
            let path = format!("faults[{i}]");
            let Some(split) =
                split_kind(&mut self.cx, item, &path, "fault", &fault_keys, &["name"])
            else {
                continue;
            };
            let name = self.fault_name(item, &path, &mut seen_names);
            // split_kind only accepts the keys of FAULT_KINDS.
            let Some(kind) = FaultKind::parse(split.kind) else {
                continue;
            };
            let bpath = child_path(&path, split.kind);
            let body = split.body;
            // Recorded from the node, so a typo elsewhere in this fault does not turn into an
            // "unused target" or hide a bad reference.
            let wanted = match kind {
                FaultKind::PodKill => Some("kubernetes"),
                FaultKind::ProcessKill => Some("process"),
                FaultKind::Command | FaultKind::DbFailover | FaultKind::Network(_) => None,
            };
            if let (Some(kind), Some(t)) = (wanted, body.get("target").filter(|t| t.is_scalar())) {
                self.use_target(body, &bpath, &t.raw, kind);
            }
            // db-failover's kill-primary on Kubernetes names the database's pods.
            if let Some(kp) = (kind == FaultKind::DbFailover)
                .then(|| body.get("provider")?.get("kill-primary"))
                .flatten()
            {
                if let Some(t) = kp.get("target").filter(|t| t.is_scalar()) {
                    let kp_path = child_path(&child_path(&bpath, "provider"), "kill-primary");
                    self.use_target(kp, &kp_path, &t.raw, "kubernetes");
                }
            }
            let spec = match kind {
                FaultKind::PodKill => self.cx.de::<RawPodKill>(body, &bpath).map(|raw| {
                    let grace = self.opt_duration(
                        body,
                        &bpath,
                        "grace-period",
                        raw.grace_period,
                        Limit::new(Duration::ZERO, Duration::ZERO, HOUR),
                    );
                    FaultSpec::PodKill {
                        target: raw.target,
                        grace_period: grace,
                    }
                }),
                FaultKind::ProcessKill => self.cx.de::<RawProcessKill>(body, &bpath).map(|raw| {
                    let signal = match raw.signal {
                        None => "SIGKILL".to_string(),
                        Some(s) => check::signal(&s).unwrap_or_else(|inv| {
                            self.cx
                                .invalid(at(body, "signal"), &child_path(&bpath, "signal"), inv);
                            s
                        }),
                    };
                    FaultSpec::ProcessKill {
                        target: raw.target,
                        signal,
                    }
                }),
                FaultKind::Network(kind) => self
                    .network(kind, body, &bpath, proxies)
                    .map(FaultSpec::Network),
                FaultKind::DbFailover => self.cx.de::<DbFailoverSpec>(body, &bpath).map(|spec| {
                    self.db_failover(body, &bpath, &spec);
                    FaultSpec::DbFailover(spec)
                }),
                FaultKind::Command => self.cx.de::<RawCommandFault>(body, &bpath).map(|raw| {
                    self.argv(body, &bpath, "run", &raw.run);
                    if let Some(r) = &raw.revert {
                        self.argv(body, &bpath, "revert", r);
                    }
                    let timeout = self.opt_duration(
                        body,
                        &bpath,
                        "timeout",
                        raw.timeout,
                        Limit::new(Duration::from_secs(30), MS, DAY),
                    );
                    FaultSpec::Command {
                        run: raw.run,
                        revert: raw.revert,
                        timeout,
                    }
                }),
            };
            if let Some(spec) = spec {
                out.push(spec);
                names.push(name);
            }
        }
        (out, names)
    }

    fn use_target(&mut self, body: &Node, path: &str, name: &str, kind: &'static str) {
        self.target_uses.push((
            Reference {
                name: name.to_string(),
                span: at(body, "target"),
                path: child_path(path, "target"),
            },
            kind,
        ));
    }

    fn recovery(&mut self, n: &Node, all_probes: &[String]) -> Option<Recovery> {
        if n.is_scalar() {
            self.cx.error(
                n.span,
                "recovery",
                format!("expected a mapping, found {}", n.describe()),
                Some(format!(
                    "write `recovery: {{ objective: {} }}`",
                    if n.raw.is_empty() { "30s" } else { &n.raw }
                )),
            );
            return None;
        }
        let raw: RawRecovery = self.cx.de(n, "recovery")?;
        let p = "recovery";
        let objective = self.opt_duration(
            n,
            p,
            "objective",
            Some(raw.objective),
            Limit::new(Duration::ZERO, MS, DAY),
        );
        let timeout = self.opt_duration(
            n,
            p,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(300), MS, DAY),
        );
        let stable_for = self.opt_duration(
            n,
            p,
            "stable-for",
            raw.stable_for,
            Limit::new(Duration::from_secs(3), Duration::ZERO, DAY),
        );
        if objective > timeout {
            self.cx.error(
                at(n, "objective"),
                "recovery.objective",
                format!(
                    "the objective ({}) is longer than the recovery timeout ({})",
                    check::format_duration(objective),
                    check::format_duration(timeout)
                ),
                Some("raise `recovery.timeout`; a drill gives up at the timeout, so a longer objective could never be met".into()),
            );
        }
        if stable_for >= timeout {
            self.cx.error(
                at(n, "stable-for"),
                "recovery.stable-for",
                format!(
                    "stable-for ({}) must be shorter than the recovery timeout ({})",
                    check::format_duration(stable_for),
                    check::format_duration(timeout)
                ),
                None,
            );
        }
        let probes = match (raw.probes, n.get("probes")) {
            (Some(list), Some(node)) => self.probe_refs(list, node, "recovery.probes"),
            _ => all_probes.to_vec(),
        };
        Some(Recovery {
            objective,
            stable_for,
            timeout,
            probes,
        })
    }

    fn aborts(&mut self, root: &Node) -> Vec<AbortCondition> {
        let mut out = Vec::new();
        let Some(n) = root.get("abort-when") else {
            return out;
        };
        let items = match &n.kind {
            Kind::Seq(items) => items,
            Kind::Null => return out,
            _ => {
                self.cx.error(
                    n.span,
                    "abort-when",
                    format!(
                        "expected a list of abort conditions, found {}",
                        n.describe()
                    ),
                    Some("e.g. `abort-when: [ { probe: web, failing-for: 2m } ]`".into()),
                );
                return out;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("abort-when[{i}]");
            let Some(raw) = self.cx.de::<RawAbort>(item, &path) else {
                continue;
            };
            self.refs_probe.push(Reference {
                name: raw.probe.clone(),
                span: at(item, "probe"),
                path: child_path(&path, "probe"),
            });
            match (raw.failing_for, raw.error_rate, raw.window) {
                (Some(f), None, None) => {
                    let d = self.opt_duration(
                        item,
                        &path,
                        "failing-for",
                        Some(f),
                        Limit::new(f.0, MS, DAY),
                    );
                    out.push(AbortCondition::FailingFor {
                        probe: raw.probe,
                        duration: d,
                    });
                }
                (None, Some(Rate(r)), Some(w)) => {
                    if !(r > 0.0 && r < 1.0) {
                        self.cx.error(
                            at(item, "error-rate"),
                            &child_path(&path, "error-rate"),
                            "error-rate must be above 0% and below 100%",
                            Some(
                                "write a fraction such as `0.5` or a percentage such as `50%`"
                                    .into(),
                            ),
                        );
                    }
                    let window =
                        self.opt_duration(item, &path, "window", Some(w), Limit::new(w.0, MS, DAY));
                    out.push(AbortCondition::ErrorRate {
                        probe: raw.probe,
                        above: r,
                        window,
                    });
                }
                (None, Some(_), None) => self.cx.error(
                    item.span,
                    &path,
                    "`error-rate` needs a `window`",
                    Some("e.g. `{ probe: web, error-rate: 50%, window: 30s }`".into()),
                ),
                (None, None, Some(_)) => self.cx.error(
                    at(item, "window"),
                    &path,
                    "`window` is only used with `error-rate`",
                    Some("add `error-rate`, or use `failing-for` without a window".into()),
                ),
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => self.cx.error(
                    item.span,
                    &path,
                    "an abort condition has either `failing-for` or `error-rate`, not both",
                    Some("write them as two conditions".into()),
                ),
                (None, None, None) => self.cx.error(
                    item.span,
                    &path,
                    "an abort condition needs `failing-for` or `error-rate`",
                    Some("e.g. `{ probe: web, failing-for: 2m }`".into()),
                ),
            }
        }
        out
    }

    fn check_references(&mut self, probes: &[String]) {
        let refs = std::mem::take(&mut self.refs_probe);
        for r in refs {
            if !probes.contains(&r.name) {
                let help = suggest(&r.name, probes.iter().map(String::as_str));
                self.cx
                    .error(r.span, &r.path, format!("unknown probe `{}`", r.name), help);
            }
        }
        let uses = std::mem::take(&mut self.target_uses);
        let targets = std::mem::take(&mut self.declared_targets);
        for (r, want) in &uses {
            match targets.iter().find(|t| t.0 == r.name) {
                None => {
                    let help = suggest(&r.name, targets.iter().map(|t| t.0.as_str()));
                    self.cx.error(
                        r.span,
                        &r.path,
                        format!("unknown target `{}`", r.name),
                        help,
                    );
                }
                Some((_, Some(have), _, _)) if have != want => {
                    let kill_primary = r.path.contains("kill-primary");
                    let fault = if kill_primary {
                        "kill-primary"
                    } else if *want == "kubernetes" {
                        "pod-kill"
                    } else {
                        "process-kill"
                    };
                    let help = if kill_primary {
                        "on this host kill-primary finds the postmaster through Patroni: drop `target` (give `data-dir` if the port is not on its command line)".to_string()
                    } else if *want == "kubernetes" {
                        format!("use `process-kill` for {have} targets")
                    } else {
                        format!("use `pod-kill` for {have} targets")
                    };
                    self.cx.error(
                        r.span,
                        &r.path,
                        format!(
                            "`{fault}` needs a {want} target, but `{}` is a {have} target",
                            r.name
                        ),
                        Some(help),
                    );
                }
                Some(_) => {}
            }
        }
        // Only on an otherwise clean file: next to errors it is noise, and a fault that failed
        // to parse may well be the one that meant to use the target.
        if self.cx.has_errors() {
            return;
        }
        for (name, _, span, path) in targets {
            if !uses.iter().any(|(r, _)| r.name == name) {
                self.cx.warn(
                    span,
                    &path,
                    format!("target `{name}` is not used by any fault"),
                    Some("remove it, or reference it from a fault's `target`".into()),
                );
            }
        }
    }
}

/// `deployment/NAME` (or `statefulset/`, `replicaset/`) in the target's namespace.
fn workload_ref(text: &str, namespace: &str) -> Result<WorkloadRef, Invalid> {
    let help = "write `deployment/NAME`, `statefulset/NAME` or `replicaset/NAME`";
    let Some((kind, name)) = text.split_once('/') else {
        return Err(Invalid::new(format!("invalid workload `{text}`")).help(help));
    };
    let kind = match kind {
        "deployment" => WorkloadKind::Deployment,
        "statefulset" => WorkloadKind::StatefulSet,
        "replicaset" => WorkloadKind::ReplicaSet,
        other => {
            return Err(
                Invalid::new(format!("unknown workload kind `{other}`")).help(
                    suggest(other, ["deployment", "statefulset", "replicaset"])
                        .unwrap_or_else(|| help.into()),
                ),
            )
        }
    };
    if !check::is_dns_subdomain(name) {
        return Err(Invalid::new(format!("invalid workload name `{name}`"))
            .help("workload names use lowercase letters, digits, `-` and `.`"));
    }
    Ok(WorkloadRef {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}

pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
