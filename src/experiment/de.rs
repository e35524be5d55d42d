//! A `serde::Deserializer` over [`Node`] whose errors know where they happened.
//!
//! Each error carries the span and YAML path of the innermost node that produced it: an
//! unknown field points at its key, a wrong type at the value, a missing field at the
//! mapping. Structs report *every* unknown key at once (they are skipped, and the struct
//! is still deserialized so the first type error inside it is found too), because a typo
//! rarely comes alone.

use std::fmt;

use serde::de::{self, DeserializeSeed, Visitor};

use super::diag::suggest;
use super::node::{Kind, Node, Span};

/// One problem, positioned where serde found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub span: Option<Span>,
    pub path: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

/// Errors of one deserialization; usually one, several when a mapping has unknown keys.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}", .0.first().map(|p| p.message.as_str()).unwrap_or("invalid value"))]
pub struct DeError(pub Vec<Problem>);

impl DeError {
    pub fn new(message: impl Into<String>, help: Option<String>) -> Self {
        DeError(vec![Problem {
            span: None,
            path: None,
            message: message.into(),
            help,
        }])
    }

    /// Positions problems that do not have a position yet: the innermost node wins.
    fn at(mut self, span: Span, path: &str) -> Self {
        for p in &mut self.0 {
            if p.span.is_none() {
                p.span = Some(span);
                p.path = Some(path.to_string());
            }
        }
        self
    }
}

/// Separates message and help in `serde::de::Error::custom` messages of our own types.
pub const HELP_SEPARATOR: char = '\u{1f}';

/// Turns serde's names for what it expected into words a YAML author knows.
fn humanize_expected(exp: &str) -> String {
    match exp {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a non-negative integer".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "an integer".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" | "bool" => "`true` or `false`".into(),
        "a string" | "string" => "a string".into(),
        "a sequence" => "a list".into(),
        "a map" => "a mapping".into(),
        e if e.starts_with("struct ") => "a mapping".into(),
        e if e.starts_with("enum ") => "one of the allowed names".into(),
        e => e.to_string(),
    }
}

fn describe_unexpected(u: &de::Unexpected<'_>) -> String {
    use de::Unexpected as U;
    match u {
        U::Bool(b) => format!("boolean `{b}`"),
        U::Unsigned(i) => format!("integer `{i}`"),
        U::Signed(i) => format!("integer `{i}`"),
        U::Float(f) => format!("number `{f}`"),
        U::Str(s) => format!("string `{}`", super::node::shorten(s)),
        U::Unit | U::Option => "nothing (null)".into(),
        U::Seq => "a list".into(),
        U::Map => "a mapping".into(),
        other => other.to_string(),
    }
}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        // Our own `Deserialize` impls (durations, percentages) can only hand serde a message;
        // they separate the help from it with HELP_SEPARATOR.
        let msg = msg.to_string();
        match msg.split_once(HELP_SEPARATOR) {
            Some((m, h)) => DeError::new(m, Some(h.to_string())),
            None => DeError::new(msg, None),
        }
    }

    fn invalid_type(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        DeError::new(
            format!(
                "expected {}, found {}",
                humanize_expected(&exp.to_string()),
                describe_unexpected(&unexp)
            ),
            None,
        )
    }

    fn invalid_value(unexp: de::Unexpected<'_>, exp: &dyn de::Expected) -> Self {
        let exp = exp.to_string();
        let msg = match exp.as_str() {
            "u8" | "u16" | "u32" | "u64" => format!(
                "{} is out of range (expected {})",
                describe_unexpected(&unexp),
                humanize_expected(&exp)
            ),
            _ => format!(
                "invalid value {} (expected {})",
                describe_unexpected(&unexp),
                humanize_expected(&exp)
            ),
        };
        DeError::new(msg, None)
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(
            format!("unknown key `{field}`"),
            suggest(field, expected.iter().copied()),
        )
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DeError::new(
            format!("unknown value `{variant}`"),
            suggest(variant, expected.iter().copied()),
        )
    }

    fn missing_field(field: &'static str) -> Self {
        DeError::new(format!("missing required key `{field}`"), None)
    }

    fn duplicate_field(field: &'static str) -> Self {
        DeError::new(format!("duplicate key `{field}`"), None)
    }
}

/// Deserializes `T` from `node`, whose YAML path is `path`.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node, path: &str) -> Result<T, DeError> {
    T::deserialize(NodeDe {
        node,
        path: path.to_string(),
    })
}

pub fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

pub struct NodeDe<'a> {
    node: &'a Node,
    path: String,
}

impl<'a> NodeDe<'a> {
    fn wrong_type<V: Visitor<'a>>(&self, visitor: &V) -> DeError {
        DeError::new(
            format!(
                "expected {}, found {}",
                humanize_expected(&Expecting(visitor).to_string()),
                self.node.describe()
            ),
            None,
        )
        .at(self.node.span, &self.path)
    }

    fn fix<T>(&self, r: Result<T, DeError>) -> Result<T, DeError> {
        r.map_err(|e| e.at(self.node.span, &self.path))
    }
}

/// Renders a visitor's `expecting` text.
struct Expecting<'v, V>(&'v V);

impl<'de, V: Visitor<'de>> fmt::Display for Expecting<'_, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }
}

macro_rules! forward_to_any {
    ($($name:ident)*) => {
        $(fn $name<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'a> de::Deserializer<'a> for NodeDe<'a> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Null => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(*b),
            Kind::Int(i) if *i >= 0 => visitor.visit_u64(*i as u64),
            Kind::Int(i) => visitor.visit_i64(*i),
            Kind::Float(f) => visitor.visit_f64(*f),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Seq(items) => visitor.visit_seq(SeqDe {
                items: items.iter(),
                index: 0,
                path: &self.path,
            }),
            Kind::Map(entries) => visitor.visit_map(MapDe {
                entries: entries.iter(),
                value: None,
                path: &self.path,
            }),
        };
        self.fix(r)
    }

    forward_to_any! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_seq deserialize_map
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        // Any non-null scalar reads as its text: `name: 2024` is a fine string.
        match &self.node.kind {
            Kind::Seq(_) | Kind::Map(_) | Kind::Null => Err(self.wrong_type(&visitor)),
            _ => {
                let r = visitor.visit_str(&self.node.raw);
                self.fix(r)
            }
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.node.kind == Kind::Null {
            let r = visitor.visit_none();
            self.fix(r)
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'a>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_any(visitor)
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let Kind::Map(entries) = &self.node.kind else {
            return Err(self.wrong_type(&visitor));
        };
        // Report every unknown key, then deserialize the rest so that type errors and
        // missing keys in the same mapping are found in the same pass.
        let mut unknown = Vec::new();
        let mut meant = Vec::new();
        for e in entries {
            if !fields.contains(&e.key.as_str()) {
                if let Some(m) = super::diag::did_you_mean(&e.key, fields.iter().copied()) {
                    meant.push(format!("missing required key `{m}`"));
                }
                let mut err = DeError::new(
                    format!("unknown key `{}`", e.key),
                    suggest(&e.key, fields.iter().copied()),
                );
                err = err.at(e.key_span, &self.path);
                unknown.extend(err.0);
            }
        }
        let known: Vec<_> = entries
            .iter()
            .filter(|e| fields.contains(&e.key.as_str()))
            .collect();
        let r = visitor.visit_map(MapDe {
            entries: known.into_iter(),
            value: None,
            path: &self.path,
        });
        let r = self.fix(r);
        match r {
            Ok(_) if !unknown.is_empty() => Err(DeError(unknown)),
            Ok(v) => Ok(v),
            Err(e) => {
                // `objetive: 30s` already says what is wrong; "missing `objective`" would
                // say it twice.
                unknown.extend(e.0.into_iter().filter(|p| !meant.contains(&p.message)));
                Err(DeError(unknown))
            }
        }
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let r = match &self.node.kind {
            Kind::Map(entries) if entries.len() == 1 => visitor.visit_enum(EnumDe {
                key: &entries[0].key,
                key_span: entries[0].key_span,
                value: Some(&entries[0].value),
                path: &self.path,
            }),
            Kind::Str(s) => visitor.visit_enum(EnumDe {
                key: s,
                key_span: self.node.span,
                value: None,
                path: &self.path,
            }),
            _ => Err(DeError::new(
                format!(
                    "expected a name or a mapping with exactly one key, found {}",
                    self.node.describe()
                ),
                None,
            )),
        };
        self.fix(r)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: &'p str,
}

impl<'a> de::SeqAccess<'a> for SeqDe<'a, '_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(node) = self.items.next() else {
            return Ok(None);
        };
        let path = format!("{}[{}]", self.path, self.index);
        self.index += 1;
        seed.deserialize(NodeDe { node, path }).map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a, 'p, I> {
    entries: I,
    value: Option<(&'a Node, String)>,
    path: &'p str,
}

/// Deserializes a key: it is always text, positioned at the key and pathed at its mapping.
struct KeyDe<'a, 'p> {
    key: &'a str,
    span: Span,
    path: &'p str,
}

impl<'de> de::Deserializer<'de> for KeyDe<'de, '_> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor
            .visit_str(self.key)
            .map_err(|e: DeError| e.at(self.span, self.path))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

trait EntryLike<'a> {
    fn parts(self) -> (&'a str, Span, &'a Node);
}

impl<'a> EntryLike<'a> for &'a super::node::Entry {
    fn parts(self) -> (&'a str, Span, &'a Node) {
        (&self.key, self.key_span, &self.value)
    }
}

impl<'a, I> de::MapAccess<'a> for MapDe<'a, '_, I>
where
    I: Iterator,
    I::Item: EntryLike<'a>,
{
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        let (key, span, value) = entry.parts();
        self.value = Some((value, child_path(self.path, key)));
        seed.deserialize(KeyDe {
            key,
            span,
            path: self.path,
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        match self.value.take() {
            Some((node, path)) => seed.deserialize(NodeDe { node, path }),
            None => Err(DeError::new("value without a key", None)),
        }
    }
}

struct EnumDe<'a, 'p> {
    key: &'a str,
    key_span: Span,
    value: Option<&'a Node>,
    path: &'p str,
}

impl<'a> de::EnumAccess<'a> for EnumDe<'a, '_> {
    type Error = DeError;
    type Variant = VariantDe<'a>;

    fn variant_seed<V: DeserializeSeed<'a>>(
        self,
        seed: V,
    ) -> Result<(V::Value, VariantDe<'a>), DeError> {
        let v = seed.deserialize(KeyDe {
            key: self.key,
            span: self.key_span,
            path: self.path,
        })?;
        Ok((
            v,
            VariantDe {
                value: self.value,
                path: child_path(self.path, self.key),
            },
        ))
    }
}

struct VariantDe<'a> {
    value: Option<&'a Node>,
    path: String,
}

impl<'a> de::VariantAccess<'a> for VariantDe<'a> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        match self.value {
            None => Ok(()),
            Some(n) if n.kind == Kind::Null => Ok(()),
            Some(n) => Err(DeError::new(
                format!("expected no value, found {}", n.describe()),
                None,
            )
            .at(n.span, &self.path)),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, DeError> {
        match self.value {
            Some(node) => seed.deserialize(NodeDe {
                node,
                path: self.path,
            }),
            None => Err(DeError::new("expected a mapping with one key", None)),
        }
    }

    fn tuple_variant<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        match self.value {
            Some(node) => de::Deserializer::deserialize_seq(
                NodeDe {
                    node,
                    path: self.path,
                },
                visitor,
            ),
            None => Err(DeError::new("expected a list", None)),
        }
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self.value {
            Some(node) => de::Deserializer::deserialize_struct(
                NodeDe {
                    node,
                    path: self.path,
                },
                "",
                fields,
                visitor,
            ),
            None => Err(DeError::new("expected a mapping", None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::node::parse;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Inner {
        count: u32,
        #[serde(default)]
        max_targets: Option<u32>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "kebab-case")]
    struct Outer {
        name: String,
        inner: Inner,
        #[serde(default)]
        list: Vec<Inner>,
    }

    fn de(src: &str) -> Result<Outer, DeError> {
        let p = parse(src.as_bytes());
        let root = p.root.expect("root");
        from_node::<Outer>(&root, "")
    }

    fn first(e: &DeError) -> (&str, Span, &str) {
        let p = &e.0[0];
        (
            p.message.as_str(),
            p.span.unwrap_or_default(),
            p.path.as_deref().unwrap_or("?"),
        )
    }

    #[test]
    fn ok() {
        let o = de("name: x\ninner: {count: 2}\nlist: [{count: 1, max-targets: 3}]\n").expect("ok");
        assert_eq!(o.inner.count, 2);
        assert_eq!(o.name, "x");
        assert_eq!(o.list[0].max_targets, Some(3));
    }

    #[test]
    fn unknown_key_points_at_key_with_parent_path() {
        let e = de("name: x\ninner:\n  count: 2\n  max-target: 1\n").unwrap_err();
        assert_eq!(
            first(&e),
            ("unknown key `max-target`", Span::new(4, 3), "inner")
        );
        assert_eq!(e.0[0].help.as_deref(), Some("did you mean `max-targets`?"));
    }

    #[test]
    fn wrong_type_points_at_value() {
        let e = de("name: x\ninner: {count: many}\n").unwrap_err();
        assert_eq!(
            first(&e),
            (
                "expected a non-negative integer, found string `many`",
                Span::new(2, 16),
                "inner.count"
            )
        );
        let e = de("name: x\ninner: {count: 1}\nlist:\n  - {count: -1}\n").unwrap_err();
        assert_eq!(first(&e).1, Span::new(4, 13));
        assert_eq!(first(&e).2, "list[0].count");
    }

    #[test]
    fn missing_field_points_at_map_and_all_unknowns_reported() {
        let e = de("name: x\ninner:\n  cnt: 1\n  foo: 2\n").unwrap_err();
        assert_eq!(e.0.len(), 3);
        assert_eq!(first(&e), ("unknown key `cnt`", Span::new(3, 3), "inner"));
        assert_eq!(e.0[1].message, "unknown key `foo`");
        assert_eq!(e.0[2].message, "missing required key `count`");
        assert_eq!(e.0[2].span, Some(Span::new(3, 3)));
        assert_eq!(e.0[2].path.as_deref(), Some("inner"));
    }
}
