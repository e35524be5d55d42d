//! `${var}` interpolation of string values, done on the node tree before anything is typed,
//! so `every: ${fast}` with `fast=10ms` is checked as a duration like a literal would be.
//!
//! Syntax: `${name}` (a variable of the environment or the command line), `${env:NAME}` (the
//! process environment; the value becomes a secret that reports redact), `$${` for a literal
//! `${`. Keys are never interpolated: the shape of a drill does not depend on variables.
//!
//! Values in `firedrill.yaml` keep their `${env:NAME}` references unexpanded; they are
//! expanded here, when an experiment uses the variable, so that a secret behind a variable
//! still lands in [`Experiment::secrets`](super::Experiment::secrets).

use std::collections::BTreeMap;

use super::diag::did_you_mean;
use super::node::{classify_plain, Kind, Node, Span};
use super::UnsetEnv;

/// A `${...}` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ref<'a> {
    Var(&'a str),
    Env(&'a str),
}

/// A failed reference: where in the value (character offset of its `${`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterpError {
    pub offset: usize,
    pub message: String,
    pub help: Option<String>,
}

fn is_var_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands every reference in `value` with `resolve`, collecting every failure.
pub fn expand<F>(value: &str, mut resolve: F) -> (String, Vec<InterpError>)
where
    F: FnMut(Ref<'_>) -> Result<String, (String, Option<String>)>,
{
    let chars: Vec<char> = value.chars().collect();
    let mut out = String::with_capacity(value.len());
    let mut errors = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '$' && chars.get(i + 1) == Some(&'$') && chars.get(i + 2) == Some(&'{') {
            out.push_str("${");
            i += 3;
            continue;
        }
        if c != '$' || chars.get(i + 1) != Some(&'{') {
            out.push(c);
            i += 1;
            continue;
        }
        let Some(close) = chars[i + 2..].iter().position(|&c| c == '}') else {
            errors.push(InterpError {
                offset: i,
                message: "unterminated `${`".into(),
                help: Some("close it with `}`, or write `$${` for a literal `${`".into()),
            });
            break;
        };
        let inner: String = chars[i + 2..i + 2 + close].iter().collect();
        let reference = match inner.strip_prefix("env:") {
            Some(name) if is_env_name(name) => Ok(Ref::Env(name)),
            Some(name) => Err((
                format!("invalid environment variable name `{name}`"),
                Some("names are letters, digits and `_`, not starting with a digit".into()),
            )),
            None if is_var_name(&inner) => Ok(Ref::Var(&inner)),
            None => Err((
                format!("invalid variable name `{inner}`"),
                Some(
                    "names start with a letter or `_` and contain letters, digits, `_`, `.`, `-`; write `$${` for a literal `${`"
                        .into(),
                ),
            )),
        };
        match reference.and_then(&mut resolve) {
            Ok(v) => out.push_str(&v),
            Err((message, help)) => errors.push(InterpError {
                offset: i,
                message,
                help,
            }),
        }
        i += close + 3;
    }
    (out, errors)
}

/// `value` escaped so that [`expand`] gives it back unchanged: how a value that is data (a
/// `--var` from the command line) travels where values are expanded (`firedrill.yaml`'s
/// `vars`, which may read `${env:NAME}`). Without it, `--var 'x=${env:NAME}'` would read any
/// variable of the runner's environment into the drill.
pub fn literal(value: &str) -> String {
    value.replace("${", "$${")
}

/// Resolves references for one experiment load and remembers which values are secrets.
pub struct Resolver<'a> {
    pub env_name: &'a str,
    pub env_vars: &'a BTreeMap<String, String>,
    pub extra_vars: &'a BTreeMap<String, String>,
    pub secrets: Vec<String>,
    pub unset_env: UnsetEnv,
    /// With [`UnsetEnv::Warn`]: the variables found unset, in order (a name once).
    pub unset: Vec<String>,
}

/// Where [`read_env`] notes what it found.
struct EnvReads<'r> {
    secrets: &'r mut Vec<String>,
    unset_env: UnsetEnv,
    unset: &'r mut Vec<String>,
}

fn read_env(name: &str, reads: &mut EnvReads<'_>) -> Result<String, (String, Option<String>)> {
    match std::env::var(name) {
        Ok(v) => {
            // Masked from the moment it is read: a load error may quote it before the
            // experiment (and its secrets) is ever registered.
            crate::safety::redact::register_named(name, &v);
            if !v.is_empty() && !reads.secrets.contains(&v) {
                reads.secrets.push(v.clone());
            }
            Ok(v)
        }
        Err(std::env::VarError::NotPresent) if reads.unset_env == UnsetEnv::Warn => {
            if !reads.unset.iter().any(|n| n == name) {
                reads.unset.push(name.to_string());
            }
            // The reference stays as written: the value is not checked (the loader is told).
            Ok(format!("${{env:{name}}}"))
        }
        Err(std::env::VarError::NotPresent) => Err((
            format!("environment variable `{name}` is not set"),
            Some(format!("export {name} before running firedrill")),
        )),
        Err(std::env::VarError::NotUnicode(_)) => Err((
            format!("environment variable `{name}` is not valid UTF-8"),
            None,
        )),
    }
}

impl Resolver<'_> {
    pub fn resolve(&mut self, r: Ref<'_>) -> Result<String, (String, Option<String>)> {
        let mut reads = EnvReads {
            secrets: &mut self.secrets,
            unset_env: self.unset_env,
            unset: &mut self.unset,
        };
        match r {
            Ref::Env(name) => read_env(name, &mut reads),
            Ref::Var(name) => {
                if let Some(v) = self.env_vars.get(name) {
                    // Environment values may themselves read the process environment.
                    let (out, errs) = expand(v, |inner| match inner {
                        Ref::Env(n) => read_env(n, &mut reads),
                        Ref::Var(n) => Err((
                            format!("`${{{n}}}` inside a firedrill.yaml value is not supported"),
                            Some("values in firedrill.yaml may only use `${env:NAME}`".into()),
                        )),
                    });
                    return match errs.into_iter().next() {
                        None => Ok(out),
                        Some(e) => Err((
                            format!(
                                "variable `{name}` of environment `{}`: {}",
                                self.env_name, e.message
                            ),
                            e.help,
                        )),
                    };
                }
                if let Some(v) = self.extra_vars.get(name) {
                    return Ok(v.clone());
                }
                let names: Vec<&str> = self
                    .env_vars
                    .keys()
                    .chain(self.extra_vars.keys())
                    .map(String::as_str)
                    .collect();
                let help = match did_you_mean(name, names.iter().copied()) {
                    Some(m) => format!("did you mean `{m}`?"),
                    None if names.is_empty() => format!(
                        "no variables are defined for environment `{}`; define `{name}` in its `vars` in firedrill.yaml or pass it on the command line",
                        self.env_name
                    ),
                    None => format!("defined variables: {}", names.join(", ")),
                };
                Err((format!("undefined variable `{name}`"), Some(help)))
            }
        }
    }
}

/// A positioned interpolation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeInterpError {
    pub span: Span,
    pub path: String,
    pub message: String,
    pub help: Option<String>,
    /// Not an error: a `${env:}` reference whose variable is unset, under
    /// [`UnsetEnv::Warn`]. The value that holds it cannot be checked.
    pub unset_env: bool,
}

/// Where the `${` at each character offset of `offsets` in a scalar's value sits in the
/// source: found on the scalar's first line when it is written there, else the scalar's start.
///
/// One pass over the value and the line for all of them: a value with thousands of bad
/// references must not cost time quadratic (or worse) in its length.
fn locate_all(source_lines: &[&str], node: &Node, offsets: &[usize]) -> Vec<Span> {
    fn dollar_braces(chars: &[char]) -> Vec<usize> {
        (0..chars.len().saturating_sub(1))
            .filter(|&k| chars[k] == '$' && chars[k + 1] == '{')
            .collect()
    }
    let value: Vec<char> = node.raw.chars().collect();
    let in_value = dollar_braces(&value);
    let on_line = match source_lines.get(node.span.line - 1) {
        Some(line) => {
            let rest: Vec<char> = line.chars().skip(node.span.col - 1).collect();
            dollar_braces(&rest)
        }
        None => Vec::new(),
    };
    offsets
        .iter()
        .map(|&offset| {
            // The nth `${` of the value (counting those at or before `offset`) is the nth on
            // the line when the value is written on one line.
            let nth = in_value.partition_point(|&k| k <= offset);
            nth.checked_sub(1)
                .and_then(|i| on_line.get(i))
                .map_or(node.span, |&k| Span::new(node.span.line, node.span.col + k))
        })
        .collect()
}

/// Interpolates every string value of the tree in place. `skip` names paths whose values must
/// stay literal (they are read before variables exist).
pub fn interpolate_tree(
    root: &mut Node,
    source: &str,
    resolver: &mut Resolver<'_>,
    skip: &[&str],
) -> Vec<TreeInterpError> {
    let lines: Vec<&str> = source.lines().collect();
    let mut errors = Vec::new();
    walk(root, "", &lines, resolver, skip, &mut errors);
    errors
}

fn walk(
    node: &mut Node,
    path: &str,
    lines: &[&str],
    resolver: &mut Resolver<'_>,
    skip: &[&str],
    errors: &mut Vec<TreeInterpError>,
) {
    if skip.contains(&path) {
        return;
    }
    match &mut node.kind {
        Kind::Seq(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                walk(item, &format!("{path}[{i}]"), lines, resolver, skip, errors);
            }
        }
        Kind::Map(entries) => {
            for e in entries.iter_mut() {
                let child = super::de::child_path(path, &e.key);
                walk(&mut e.value, &child, lines, resolver, skip, errors);
            }
        }
        Kind::Str(_) if node.raw.contains("${") => {
            let unset_before = resolver.unset.len();
            let (out, errs) = expand(&node.raw, |r| resolver.resolve(r));
            let offsets: Vec<usize> = errs.iter().map(|e| e.offset).collect();
            let spans = if errs.is_empty() {
                Vec::new()
            } else {
                locate_all(lines, node, &offsets)
            };
            for (e, span) in errs.into_iter().zip(spans) {
                errors.push(TreeInterpError {
                    span,
                    path: path.to_string(),
                    message: e.message,
                    help: e.help,
                    unset_env: false,
                });
            }
            // Each variable is reported where it is first used.
            for name in &resolver.unset[unset_before..] {
                let reference = format!("${{env:{name}}}");
                let offset = node.raw.find(&reference).unwrap_or(0);
                let offset = node.raw[..offset].chars().count();
                let span = locate_all(lines, node, &[offset])
                    .first()
                    .copied()
                    .unwrap_or(node.span);
                errors.push(TreeInterpError {
                    span,
                    path: path.to_string(),
                    message: format!(
                        "environment variable `{name}` is not set, so this value was not checked"
                    ),
                    help: Some(format!(
                        "`run` and `plan` refuse until it is set: export {name} before running firedrill"
                    )),
                    unset_env: true,
                });
            }
            node.kind = if node.plain {
                classify_plain(&out)
            } else {
                Kind::Str(out.clone())
            };
            node.raw = out;
        }
        _ => {}
    }
}

/// The inverse of [`crate::safety::redact::to_references`]: a stored JSON text with its `${env:NAME}` references resolved from this process's
/// environment (each value registered as a secret) and `$${` back to `${`. A reference whose
/// variable is not set stays as written, and its name is returned.
pub fn from_references(json: &str) -> (String, Vec<String>) {
    let mut unset = Vec::new();
    let (out, _) = expand(json, |r| match r {
        Ref::Env(name) => match std::env::var(name) {
            Ok(v) => {
                crate::safety::redact::register_named(name, &v);
                let quoted = serde_json::to_string(&v).unwrap_or_default();
                Ok(quoted[1..quoted.len().saturating_sub(1)].to_string())
            }
            Err(_) => {
                unset.push(name.to_string());
                Ok(format!("${{env:{name}}}"))
            }
        },
        Ref::Var(name) => Ok(format!("${{{name}}}")),
    });
    (out, unset)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::node::parse;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_vars_escapes_and_reports_offsets() {
        let env = vars(&[("host", "h:1")]);
        let extra = vars(&[("sim.shop.checkout", "http://x")]);
        let mut r = Resolver {
            env_name: "local",
            env_vars: &env,
            extra_vars: &extra,
            secrets: vec![],
            unset_env: UnsetEnv::Refuse,
            unset: vec![],
        };
        let (out, errs) = expand("a ${host} $${lit} ${sim.shop.checkout}/", |x| r.resolve(x));
        assert!(errs.is_empty());
        assert_eq!(out, "a h:1 ${lit} http://x/");
        let (_, errs) = expand("x${hots}y${", |x| r.resolve(x));
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].offset, 1);
        assert_eq!(errs[0].message, "undefined variable `hots`");
        assert_eq!(errs[0].help.as_deref(), Some("did you mean `host`?"));
        assert_eq!(errs[1].offset, 9);
        assert_eq!(errs[1].message, "unterminated `${`");
    }

    #[test]
    fn a_literal_value_expands_to_itself() {
        for v in [
            "${env:HOME}",
            "a$${b",
            "$${",
            "$$${x}",
            "${",
            "$",
            "plain",
            "${a}${b}",
        ] {
            let (out, errs) = expand(&literal(v), |_| Err(("no".into(), None)));
            assert!(errs.is_empty(), "{v}: {errs:?}");
            assert_eq!(out, v);
        }
    }

    #[test]
    fn env_values_are_secrets_even_behind_variables() {
        std::env::set_var("FIREDRILL_TEST_INTERP_TOKEN", "s3cret");
        let env = vars(&[("token", "Bearer ${env:FIREDRILL_TEST_INTERP_TOKEN}")]);
        let extra = BTreeMap::new();
        let mut r = Resolver {
            env_name: "staging",
            env_vars: &env,
            extra_vars: &extra,
            secrets: vec![],
            unset_env: UnsetEnv::Refuse,
            unset: vec![],
        };
        let (out, errs) = expand("${token}", |x| r.resolve(x));
        assert!(errs.is_empty());
        assert_eq!(out, "Bearer s3cret");
        assert_eq!(r.secrets, vec!["s3cret".to_string()]);
        let (_, errs) = expand("${env:FIREDRILL_TEST_SURELY_UNSET}", |x| r.resolve(x));
        assert_eq!(
            errs[0].message,
            "environment variable `FIREDRILL_TEST_SURELY_UNSET` is not set"
        );
    }

    #[test]
    fn tree_values_retype_and_errors_are_positioned() {
        let src = "every: ${fast}\nurl: \"x ${nope}\"\n${k}: 1\n";
        let mut root = parse(src.as_bytes()).root.expect("root");
        let env = vars(&[("fast", "10ms"), ("n", "5")]);
        let extra = BTreeMap::new();
        let mut r = Resolver {
            env_name: "local",
            env_vars: &env,
            extra_vars: &extra,
            secrets: vec![],
            unset_env: UnsetEnv::Refuse,
            unset: vec![],
        };
        let errs = interpolate_tree(&mut root, src, &mut r, &[]);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].span, Span::new(2, 9));
        assert_eq!(errs[0].path, "url");
        assert_eq!(root.get("every").map(|n| n.raw.as_str()), Some("10ms"));
        // keys stay as written
        assert!(root.get("${k}").is_some());
    }
}
