//! A YAML node tree where every node knows its line and column.
//!
//! Built from yaml-rust2's marked events rather than its `Yaml` type, because that type
//! forgets positions and silently keeps the last of two duplicate keys. The builder is
//! iterative and refuses what a drill file never needs but an attacker could abuse:
//! anchors and aliases (alias bombs), nesting deeper than [`MAX_DEPTH`], more than one
//! document, and files over [`MAX_FILE_SIZE`].

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Largest file the loader reads.
pub const MAX_FILE_SIZE: usize = 1024 * 1024;
/// Deepest nesting of sequences and mappings accepted.
pub const MAX_DEPTH: usize = 64;

/// 1-based line and column (column counted in characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Span {
    pub line: usize,
    pub col: usize,
}

impl Span {
    pub fn new(line: usize, col: usize) -> Self {
        Span {
            line: line.max(1),
            col: col.max(1),
        }
    }

    fn from_marker(m: &Marker) -> Self {
        // yaml-rust2 counts lines from 1 and columns from 0.
        Span::new(m.line(), m.col() + 1)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// One `key: value` of a mapping; keys are always strings (complex keys are rejected while building).
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: Span,
    pub value: Node,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub span: Span,
    /// For scalars: the text as written (after unquoting), before typing. Empty otherwise.
    pub raw: String,
    /// Plain (unquoted) scalars are typed by their text; quoted ones are always strings.
    pub plain: bool,
}

impl Node {
    pub fn is_scalar(&self) -> bool {
        !matches!(self.kind, Kind::Seq(_) | Kind::Map(_))
    }

    pub fn entries(&self) -> Option<&[Entry]> {
        match &self.kind {
            Kind::Map(e) => Some(e),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries()?
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// A short description for "expected X, found Y" messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing (null)".into(),
            Kind::Bool(b) => format!("boolean `{b}`"),
            Kind::Int(i) => format!("integer `{i}`"),
            Kind::Float(_) => format!("number `{}`", self.raw),
            Kind::Str(s) => format!("string `{}`", shorten(s)),
            Kind::Seq(_) => "a list".into(),
            Kind::Map(_) => "a mapping".into(),
        }
    }
}

/// Long values make messages unreadable; keep the start.
pub fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(60).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Types a plain scalar by YAML 1.2 core schema rules.
pub fn classify_plain(text: &str) -> Kind {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Kind::Null,
        "true" | "True" | "TRUE" => return Kind::Bool(true),
        "false" | "False" | "FALSE" => return Kind::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Kind::Float(f64::INFINITY)
        }
        "-.inf" | "-.Inf" | "-.INF" => return Kind::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Kind::Float(f64::NAN),
        _ => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<i64>() {
            Ok(i) => Kind::Int(i),
            // Too large for any field we have; leave it as text so the error quotes it.
            Err(_) => Kind::Str(text.to_string()),
        };
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Kind::Int(i);
        }
    }
    if let Some(oct) = text.strip_prefix("0o") {
        if let Ok(i) = i64::from_str_radix(oct, 8) {
            return Kind::Int(i);
        }
    }
    if is_float_text(digits) {
        if let Ok(f) = text.parse::<f64>() {
            return Kind::Float(f);
        }
    }
    Kind::Str(text.to_string())
}

fn is_float_text(s: &str) -> bool {
    // [0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)? with at least one digit in the mantissa
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((a, b)) => (a, b),
        None => (mantissa, ""),
    };
    let digits_ok = int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(int.is_empty() && frac.is_empty());
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    };
    digits_ok && exp_ok
}

/// A problem found while building the tree.
#[derive(Debug, Clone, PartialEq)]
pub struct TreeError {
    pub span: Span,
    /// YAML path of the mapping or list the problem is in ("" at the top).
    pub path: String,
    pub message: String,
    pub help: Option<String>,
    /// Fatal errors leave no usable tree (syntax errors); the others (duplicate keys) do.
    pub fatal: bool,
}

impl TreeError {
    fn fatal(span: Span, message: impl Into<String>, help: Option<&str>) -> Self {
        TreeError {
            span,
            path: String::new(),
            message: message.into(),
            help: help.map(str::to_string),
            fatal: true,
        }
    }
}

/// The outcome of [`parse`]: a tree when one could be built, and every problem seen.
#[derive(Debug, Default)]
pub struct Parsed {
    pub root: Option<Node>,
    pub errors: Vec<TreeError>,
}

/// Position of byte offset `at` in `text`, for errors found before the YAML parser runs.
fn position_of(text: &str, at: usize) -> Span {
    let before = &text[..at.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Span::new(line, before[line_start..].chars().count() + 1)
}

/// Decodes and parses a file's bytes into a node tree.
pub fn parse(bytes: &[u8]) -> Parsed {
    let fatal = |span, msg: &str, help: Option<&str>| Parsed {
        root: None,
        errors: vec![TreeError::fatal(span, msg, help)],
    };
    if bytes.len() > MAX_FILE_SIZE {
        return fatal(
            Span::new(1, 1),
            &format!(
                "file is too large ({} bytes, the limit is {MAX_FILE_SIZE})",
                bytes.len()
            ),
            Some("a drill file should be a few kilobytes; check that this is the right file"),
        );
    }
    let text = match std::str::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // The prefix is valid UTF-8 by construction; fall back to 1:1 rather than panic.
            let span = std::str::from_utf8(valid)
                .map(|v| position_of(v, v.len()))
                .unwrap_or_default();
            return fatal(
                Span::new(span.line, span.col),
                &format!(
                    "file is not valid UTF-8 (byte 0x{:02x} at offset {})",
                    bytes[e.valid_up_to()],
                    e.valid_up_to()
                ),
                Some("save the file as UTF-8"),
            );
        }
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // yaml-rust2 takes a NUL for the end of the input and would silently drop the rest of
    // the file; YAML allows none of these characters unescaped anyway.
    if let Some((at, c)) = text.char_indices().find(|&(_, c)| is_forbidden_control(c)) {
        return fatal(
            position_of(text, at),
            &format!("file contains the control character U+{:04X}", c as u32),
            Some("remove it; inside double quotes write it as an escape such as `\\x01`"),
        );
    }
    if text.trim().is_empty()
        || text.lines().all(|l| {
            let l = l.trim();
            l.is_empty() || l.starts_with('#')
        })
    {
        return fatal(
            Span::new(1, 1),
            "the file is empty",
            Some("an experiment needs at least `name`, `probes`, `faults` and `recovery`"),
        );
    }
    build(text)
}

/// Characters YAML 1.2 does not allow in a stream (outside the printable set).
fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}')
}

enum Frame {
    Seq(Span, Vec<Node>),
    Map {
        span: Span,
        entries: Vec<Entry>,
        /// Index into `entries` by key: a linear search per key made a mapping with many
        /// keys quadratic (40 000 keys took 40 s).
        index: HashMap<String, usize>,
        pending_key: Option<(String, Span)>,
    },
}

fn scalar_node(value: String, style: TScalarStyle, tag_is_str: bool, span: Span) -> Node {
    let plain = style == TScalarStyle::Plain && !tag_is_str;
    let kind = if plain {
        classify_plain(&value)
    } else {
        Kind::Str(value.clone())
    };
    Node {
        kind,
        span,
        raw: value,
        plain,
    }
}

fn syntax_help(info: &str) -> Option<&'static str> {
    if info.contains("tab") {
        Some("indent with spaces: YAML does not allow tabs for indentation")
    } else if info.contains("flow mapping") || info.contains("flow sequence") {
        Some("check that every `[` and `{` is closed, and quote values that contain `{`, `}`, `[`, `]` or `,`, e.g. `\"${name}\"`")
    } else if info.contains("did not find expected key") {
        Some("check the indentation: the keys of one mapping must line up")
    } else if info.contains("mapping values are not allowed") {
        Some("a value containing `: ` must be quoted, or a key is indented wrongly")
    } else if info.contains("block scalar") {
        // `expect: >= 50`: a plain value cannot start with `>` or `|`.
        Some("a value starting with `>` or `|` begins a block of text in YAML; quote it, e.g. `expect: \">= 50\"`")
    } else {
        None
    }
}

/// The YAML path of the node being built in the innermost of `frames`.
fn path_of(frames: &[Frame]) -> String {
    let mut path = String::new();
    for f in frames {
        match f {
            Frame::Seq(_, items) => path.push_str(&format!("[{}]", items.len())),
            Frame::Map { pending_key, .. } => {
                if let Some((k, _)) = pending_key {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                }
            }
        }
    }
    path
}

fn build(text: &str) -> Parsed {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Frame> = Vec::new();
    let mut parsed = Parsed::default();
    let mut documents = 0usize;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(x) => x,
            Err(e) => {
                let info = e.info().to_string();
                let help = syntax_help(&info);
                parsed.root = None;
                parsed.errors.push(TreeError::fatal(
                    Span::from_marker(e.marker()),
                    format!("invalid YAML: {info}"),
                    help,
                ));
                return parsed;
            }
        };
        let span = Span::from_marker(&mark);
        let node = match event {
            Event::StreamEnd => {
                if parsed.root.is_none() && parsed.errors.is_empty() {
                    parsed.errors.push(TreeError::fatal(
                        span,
                        "the file has no YAML content",
                        Some("an experiment needs at least `name`, `probes`, `faults` and `recovery`"),
                    ));
                }
                return parsed;
            }
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    parsed.root = None;
                    parsed.errors.push(TreeError::fatal(
                        span,
                        "more than one YAML document in the file",
                        Some("put each experiment in its own file"),
                    ));
                    return parsed;
                }
                continue;
            }
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => continue,
            Event::Alias(_) => {
                parsed.errors.push(TreeError::fatal(
                    span,
                    "anchors and aliases are not supported",
                    Some("write the value out in full"),
                ));
                return parsed;
            }
            Event::Scalar(value, style, anchor, tag) => {
                if anchor > 0 {
                    parsed.errors.push(TreeError::fatal(
                        span,
                        "anchors and aliases are not supported",
                        Some("write the value out in full"),
                    ));
                    return parsed;
                }
                let tag_is_str = tag.as_ref().is_some_and(|t| t.suffix == "str");
                scalar_node(value, style, tag_is_str, span)
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if anchor > 0 {
                    parsed.errors.push(TreeError::fatal(
                        span,
                        "anchors and aliases are not supported",
                        Some("write the value out in full"),
                    ));
                    return parsed;
                }
                if stack.len() >= MAX_DEPTH {
                    parsed.errors.push(TreeError::fatal(
                        span,
                        format!("nesting is deeper than {MAX_DEPTH} levels"),
                        Some("a drill file never needs this much nesting; check the indentation"),
                    ));
                    return parsed;
                }
                let is_map = matches!(event, Event::MappingStart(..));
                stack.push(if is_map {
                    Frame::Map {
                        span,
                        entries: Vec::new(),
                        index: HashMap::new(),
                        pending_key: None,
                    }
                } else {
                    Frame::Seq(span, Vec::new())
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                // yaml-rust2 marks a block collection where it noticed it (after the first
                // key); its first element is where the author sees it start.
                Some(Frame::Seq(span, items)) => Node {
                    span: items.first().map_or(span, |i| i.span.min(span)),
                    kind: Kind::Seq(items),
                    raw: String::new(),
                    plain: false,
                },
                Some(Frame::Map { span, entries, .. }) => Node {
                    span: entries.first().map_or(span, |e| e.key_span.min(span)),
                    kind: Kind::Map(entries),
                    raw: String::new(),
                    plain: false,
                },
                None => continue,
            },
        };
        // Attach the finished node to its parent, or make it the root.
        let Some((last, parents)) = stack.split_last_mut() else {
            parsed.root = Some(node);
            continue;
        };
        match last {
            Frame::Seq(_, items) => items.push(node),
            Frame::Map {
                entries,
                index,
                pending_key,
                ..
            } => match pending_key.take() {
                None => {
                    if !node.is_scalar() {
                        parsed.errors.push(TreeError::fatal(
                            node.span,
                            "mapping keys must be plain names, not lists or mappings",
                            None,
                        ));
                        return parsed;
                    }
                    *pending_key = Some((node.raw, node.span));
                }
                Some((key, key_span)) => {
                    if let Some(first) = index.get(&key).and_then(|&i| entries.get(i)) {
                        let path = path_of(parents);
                        parsed.errors.push(TreeError {
                            span: key_span,
                            path,
                            message: format!(
                                "duplicate key `{key}` (first defined at {}:{})",
                                first.key_span.line, first.key_span.col
                            ),
                            help: Some("remove one of them or give it another name".into()),
                            fatal: false,
                        });
                    } else {
                        index.insert(key.clone(), entries.len());
                        entries.push(Entry {
                            key,
                            key_span,
                            value: node,
                        });
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(src: &str) -> Node {
        let p = parse(src.as_bytes());
        assert!(p.errors.is_empty(), "{:?}", p.errors);
        p.root.expect("root")
    }

    #[test]
    fn keeps_positions_order_and_text() {
        let n = root("# c\nb: 1\na:\n  - x\n  - '2'\n  - 2.5\n  - ~\n");
        let e = n.entries().expect("map");
        assert_eq!(e[0].key, "b");
        assert_eq!(e[0].key_span, Span::new(2, 1));
        assert_eq!(e[0].value.kind, Kind::Int(1));
        assert_eq!(e[0].value.span, Span::new(2, 4));
        assert_eq!(e[1].key, "a");
        let Kind::Seq(items) = &e[1].value.kind else {
            panic!("seq")
        };
        assert_eq!(items[0].kind, Kind::Str("x".into()));
        assert_eq!(items[0].span, Span::new(4, 5));
        assert_eq!(items[1].kind, Kind::Str("2".into()));
        assert_eq!(items[2].kind, Kind::Float(2.5));
        assert_eq!(items[2].raw, "2.5");
        assert_eq!(items[3].kind, Kind::Null);
    }

    #[test]
    fn duplicate_keys_point_at_the_second() {
        let p = parse(b"a: 1\nb:\n  c: 1\n  c: 2\n");
        assert_eq!(p.errors.len(), 1);
        assert_eq!(p.errors[0].span, Span::new(4, 3));
        assert_eq!(
            p.errors[0].message,
            "duplicate key `c` (first defined at 3:3)"
        );
        assert!(p.root.is_some());
    }

    #[test]
    fn refuses_aliases_depth_and_bad_bytes() {
        let p = parse(b"a: &x 1\nb: *x\n");
        assert_eq!(p.errors[0].message, "anchors and aliases are not supported");
        let deep = "[".repeat(100) + &"]".repeat(100);
        let p = parse(deep.as_bytes());
        assert!(p.errors[0].message.contains("nesting"));
        let p = parse(b"a: 1\nb: \xff\n");
        assert_eq!(p.errors[0].span, Span::new(2, 4));
        let p = parse(b"a: 1\nb: x\x00y\nc: 2\n");
        assert_eq!(p.errors[0].span, Span::new(2, 5));
        assert!(p.errors[0].message.contains("U+0000"));
        let p = parse(b"# only\n\n");
        assert_eq!(p.errors[0].message, "the file is empty");
    }

    #[test]
    fn tabs_are_syntax_errors() {
        let p = parse(b"a:\n\tb: 1\n");
        assert!(p.errors[0].fatal);
        assert_eq!(p.errors[0].span.line, 2);
    }

    #[test]
    fn plain_scalar_typing() {
        assert_eq!(classify_plain("0x10"), Kind::Int(16));
        assert_eq!(classify_plain("-3"), Kind::Int(-3));
        assert_eq!(classify_plain("1e3"), Kind::Float(1000.0));
        assert_eq!(classify_plain("10ms"), Kind::Str("10ms".into()));
        assert_eq!(classify_plain("50%"), Kind::Str("50%".into()));
        assert_eq!(classify_plain("."), Kind::Str(".".into()));
    }
}
