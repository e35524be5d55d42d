//! The shape of the code, checked: imports follow the data flow (docs/architecture.md).
//!
//! Every `crate::…` and `super::…` path in `src/` (comments aside, tests included) is resolved
//! to the *unit* that owns it, and each unit may import only the units listed for it in
//! [`LAYERS`]. The table itself must be acyclic, so a cycle between units cannot come back by
//! widening one row. Sibling files may not import each other both ways either (the html ↔
//! markdown kind of knot): what both need belongs in a third file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Unit → the units it may import. A unit is a module path; a file belongs to the longest
/// unit that is a prefix of its own module path. Order: lower layers first.
const LAYERS: &[(&str, &[&str])] = &[
    ("timer", &[]),
    ("timeline", &[]),
    ("safety::redact", &[]),
    ("safety::loopback", &[]),
    ("platform", &["safety::redact", "timer"]),
    ("analysis", &["timeline"]),
    ("experiment", &["safety::redact"]),
    (
        "proxy",
        &[
            "experiment",
            "platform",
            "safety::loopback",
            "safety::redact",
            "timer",
        ],
    ),
    (
        "sim",
        &[
            "experiment",
            "platform",
            "safety::loopback",
            "safety::redact",
        ],
    ),
    (
        "probe",
        &[
            "experiment",
            "platform",
            "analysis",
            "timeline",
            "timer",
            "safety::redact",
        ],
    ),
    (
        "fault",
        &[
            "experiment",
            "platform",
            "probe",
            "proxy",
            "timeline",
            "timer",
            "safety::redact",
        ],
    ),
    (
        "report::record",
        &[
            "analysis",
            "timeline",
            "experiment",
            "fault",
            "safety::redact",
        ],
    ),
    (
        "safety",
        &[
            "experiment",
            "fault",
            "platform",
            "timeline",
            "safety::redact",
            "safety::loopback",
            // The lock's unit tests hold Leases on the simulated cluster, a real API server.
            "sim",
        ],
    ),
    (
        "drill",
        &[
            "experiment",
            "probe",
            "fault",
            "proxy",
            "platform",
            "timeline",
            "timer",
            "analysis",
            "report::record",
            "safety",
            "safety::redact",
        ],
    ),
    (
        "report",
        &[
            "report::record",
            "analysis",
            "timeline",
            "experiment",
            "platform",
            "safety::redact",
        ],
    ),
    // The simulation's scenario names the HTTP deployments whose URLs become variables.
    (
        "workspace",
        &["experiment", "platform", "sim", "safety::redact"],
    ),
    // The exit codes, and the run's result file.
    ("exit", &["report::record", "platform"]),
    // The shared store: records (read by the reports folder's parser), the halt, scope
    // holders and the journal it mirrors; it connects through the postgres probe's client.
    (
        "store",
        &[
            "report",
            "report::record",
            "safety",
            "safety::redact",
            "experiment",
            "probe",
            "platform",
        ],
    ),
    ("shutdown", &["safety::redact"]),
    (
        "schedule",
        &[
            "workspace",
            "exit",
            "shutdown",
            "experiment",
            "report",
            "report::record",
            "analysis",
            "safety",
            "safety::redact",
            "safety::loopback",
            "platform",
            "timeline",
            "store",
        ],
    ),
    // The commands: the top. Nothing imports them.
    ("cli", ANY),
    // Test support, compiled for unit tests only.
    ("testing", ANY),
];

const ANY: &[&str] = &["*"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/a/b.rs` → `a::b`; `src/a/mod.rs` → `a`; `src/lib.rs` → ``.
fn module_of(file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src()).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and string literals (a path in a doc link or an error
/// message is not an import).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '/' if chars.peek() == Some(&'*') => {
                let mut prev = ' ';
                for c in chars.by_ref() {
                    if prev == '*' && c == '/' {
                        break;
                    }
                    prev = c;
                }
            }
            '"' => {
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            // A char literal such as '"' or '{' (a lifetime has no closing quote nearby).
            '\'' => {
                let rest: String = chars.clone().take(3).collect();
                let len = if rest.starts_with('\\') {
                    rest.find('\'').map(|i| i + 1)
                } else if rest.chars().nth(1) == Some('\'') {
                    Some(2)
                } else {
                    None
                };
                match len {
                    Some(n) => {
                        for _ in 0..n {
                            chars.next();
                        }
                        out.push_str("' '");
                    }
                    None => out.push('\''),
                }
            }
            c => out.push(c),
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every path the code names from `start`: `a::b::{c, d::e}` gives `a::b::c` and
/// `a::b::d::e` (as segment lists).
fn paths_from(code: &str, start: usize) -> Vec<Vec<String>> {
    fn parse(s: &[char], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        let mut path = prefix;
        loop {
            while *i < s.len() && s[*i].is_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == '{' {
                *i += 1;
                loop {
                    parse(s, i, path.clone(), out);
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    match s.get(*i) {
                        Some(',') => *i += 1,
                        Some('}') => {
                            *i += 1;
                            return;
                        }
                        _ => return,
                    }
                    while *i < s.len() && s[*i].is_whitespace() {
                        *i += 1;
                    }
                    if s.get(*i) == Some(&'}') {
                        *i += 1;
                        return;
                    }
                }
            }
            let begin = *i;
            while *i < s.len() && is_ident(s[*i]) {
                *i += 1;
            }
            if *i == begin {
                // `*` or `self` handled as the end of the path.
                if s.get(*i) == Some(&'*') {
                    *i += 1;
                }
                out.push(path);
                return;
            }
            let seg: String = s[begin..*i].iter().collect();
            if seg != "self" {
                path.push(seg);
            }
            if s.get(*i) == Some(&':') && s.get(*i + 1) == Some(&':') {
                *i += 2;
            } else {
                // `as name` and the rest of the statement are not path segments.
                out.push(path);
                return;
            }
        }
    }
    let chars: Vec<char> = code[start..].chars().take(4000).collect();
    let mut out = vec![];
    let mut i = 0;
    parse(&chars, &mut i, vec![], &mut out);
    out
}

/// Absolute module paths named in a file's code.
fn imports(file: &Path) -> Vec<Vec<String>> {
    let code = code_only(&std::fs::read_to_string(file).unwrap());
    let here = module_of(file);
    let mut out = vec![];
    for (at, _) in code.match_indices("crate::") {
        if at > 0 && is_ident(code[..at].chars().next_back().unwrap()) {
            continue;
        }
        out.extend(paths_from(&code, at + "crate::".len()));
    }
    for (at, _) in code.match_indices("super::") {
        if at > 0 && is_ident(code[..at].chars().next_back().unwrap()) {
            continue;
        }
        // Skip chained supers: the first one anchors the walk.
        if code[..at].ends_with("super::") {
            continue;
        }
        // `super` is the parent of the file's module; inside `mod tests { … }` (the end of a
        // file, by custom) it is the file's module itself.
        let mut base = here.clone();
        let in_inline_mod = code[..at].rfind("mod tests").is_some();
        if !in_inline_mod {
            base.pop();
        }
        let mut rest = at + "super::".len();
        while code[rest..].starts_with("super::") {
            base.pop();
            rest += "super::".len();
        }
        for p in paths_from(&code, rest) {
            let mut full = base.clone();
            full.extend(p);
            out.push(full);
        }
    }
    out
}

fn unit_of(module: &[String]) -> Option<&'static str> {
    let joined = module.join("::");
    LAYERS
        .iter()
        .map(|(u, _)| *u)
        .filter(|u| joined == *u || joined.starts_with(&format!("{u}::")))
        .max_by_key(|u| u.len())
}

#[test]
fn the_layer_table_is_acyclic() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    // Each unit may import only units listed before it (or itself): a topological order.
    for (i, (unit, deps)) in LAYERS.iter().enumerate() {
        for dep in deps.iter().filter(|d| **d != "*") {
            assert!(allowed.contains_key(dep), "{unit}: unknown unit {dep}");
            let at = LAYERS.iter().position(|(u, _)| u == dep).unwrap();
            assert!(
                at < i,
                "{unit} may import {dep}, which comes after it: a cycle is possible"
            );
        }
    }
}

#[test]
fn imports_follow_the_layers() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut files = vec![];
    rust_files(&src(), &mut files);
    files.sort();
    let mut wrong: BTreeSet<String> = BTreeSet::new();
    for file in &files {
        let here = module_of(file);
        let Some(unit) = unit_of(&here) else {
            // lib.rs and main.rs only declare modules and call the cli.
            continue;
        };
        let may = allowed[unit];
        if may == ANY {
            continue;
        }
        for path in imports(file) {
            let Some(target) = unit_of(&path) else {
                continue;
            };
            // Test support is compiled for unit tests only and may serve any layer.
            if target == unit || target == "testing" || may.contains(&target) {
                continue;
            }
            // Nothing may import the commands, whatever its own row says.
            wrong.insert(format!(
                "{} ({unit}) imports {} ({target})",
                file.strip_prefix(src()).unwrap().display(),
                path.join("::"),
            ));
        }
    }
    let cli_users: Vec<&String> = wrong.iter().filter(|w| w.ends_with("(cli)")).collect();
    assert!(
        wrong.is_empty(),
        "{} imports go against the layers in tests/layering.rs \
         ({} of them import the commands):\n{}",
        wrong.len(),
        cli_users.len(),
        wrong.iter().cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn sibling_files_do_not_import_each_other_both_ways() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let modules: BTreeMap<Vec<String>, &PathBuf> =
        files.iter().map(|f| (module_of(f), f)).collect();
    let mut edges: BTreeSet<(Vec<String>, Vec<String>)> = BTreeSet::new();
    for file in &files {
        let here = module_of(file);
        for path in imports(file) {
            // The longest module prefix of the path that is a file of ours.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|m| modules.contains_key(m));
            if let Some(target) = target {
                let siblings = target.len() == here.len()
                    && target[..target.len() - 1] == here[..here.len() - 1];
                if target != here && siblings {
                    edges.insert((here.clone(), target));
                }
            }
        }
    }
    let knots: Vec<String> = edges
        .iter()
        .filter(|(a, b)| a < b && edges.contains(&(b.clone(), a.clone())))
        .map(|(a, b)| format!("{} ↔ {}", a.join("::"), b.join("::")))
        .collect();
    assert!(
        knots.is_empty(),
        "sibling modules import each other:\n{}",
        knots.join("\n")
    );
}

#[test]
fn the_path_reader_reads_groups_and_skips_comments() {
    let code = code_only(
        "use crate::{a::b, c::{d, e::f}};\n// crate::nope\nlet s = \"crate::no\";\nx(crate::g::h);",
    );
    let mut got = vec![];
    for (at, _) in code.match_indices("crate::") {
        got.extend(paths_from(&code, at + 7));
    }
    let got: Vec<String> = got.iter().map(|p| p.join("::")).collect();
    assert_eq!(got, ["a::b", "c::d", "c::e::f", "g::h"]);
}
