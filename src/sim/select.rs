//! Label and field selectors (the full label selector syntax of the real API) and the patch
//! formats: JSON merge patch (also used for strategic merge patch) and JSON patch.

use std::borrow::Cow;

use serde_json::Value;

use super::store::Obj;

#[derive(Debug, Clone, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Req {
    fn key(&self) -> &str {
        match self {
            Req::Eq(k, _)
            | Req::NotEq(k, _)
            | Req::In(k, _)
            | Req::NotIn(k, _)
            | Req::Exists(k)
            | Req::NotExists(k) => k,
        }
    }
}

/// A parsed label or field selector; an empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    reqs: Vec<Req>,
}

/// Splits at commas that are not inside parentheses.
fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn set_values(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values, found {rest:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl Selector {
    pub fn parse_labels(text: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in split_top(text) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some(key) = part.strip_prefix('!') {
                Req::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = part.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Req::NotIn(k.trim().into(), set_values(rest)?)
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Req::In(k.trim().into(), set_values(rest)?)
            } else if part.contains(' ') || part.contains('(') {
                return Err(format!("unable to parse requirement {part:?}"));
            } else {
                Req::Exists(part.to_string())
            };
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    /// Field selectors: `a.b=v`, `a.b==v`, `a.b!=v`, comma-separated.
    pub fn parse_fields(text: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let req = if let Some((k, v)) = part.split_once("!=") {
                Req::NotEq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once("==") {
                Req::Eq(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = part.split_once('=') {
                Req::Eq(k.trim().into(), v.trim().into())
            } else {
                return Err(format!("invalid field selector {part:?}"));
            };
            reqs.push(req);
        }
        Ok(Selector { reqs })
    }

    /// A value every match has at `key` (a `key=value`, `key==value` or `key in (value)`
    /// requirement), if the selector names one: what an index can look up.
    pub fn pinned(&self, key: &str) -> Option<&str> {
        self.reqs.iter().find_map(|r| match r {
            Req::Eq(k, v) if k == key => Some(v.as_str()),
            Req::In(k, vs) if k == key && vs.len() == 1 => Some(vs[0].as_str()),
            _ => None,
        })
    }

    /// The first requirement that pins a label to one value, as (key, value).
    pub fn pinned_label(&self) -> Option<(&str, &str)> {
        self.reqs.iter().find_map(|r| match r {
            Req::Eq(k, v) => Some((k.as_str(), v.as_str())),
            Req::In(k, vs) if vs.len() == 1 => Some((k.as_str(), vs[0].as_str())),
            _ => None,
        })
    }

    fn matches_with<'a>(&self, lookup: impl Fn(&str) -> Option<Cow<'a, str>>) -> bool {
        let has = |x: &str, vs: &[String]| vs.iter().any(|v| v == x);
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => lookup(k).as_deref() == Some(v.as_str()),
            Req::NotEq(k, v) => lookup(k).as_deref() != Some(v.as_str()),
            Req::In(k, vs) => lookup(k).is_some_and(|x| has(&x, vs)),
            Req::NotIn(k, vs) => lookup(k).is_none_or(|x| !has(&x, vs)),
            Req::Exists(k) => lookup(k).is_some(),
            Req::NotExists(k) => lookup(k).is_none(),
        })
    }

    /// Whether the object's labels match (read from its [`Meta`], never its tree).
    pub fn matches_labels(&self, obj: &Obj) -> bool {
        if self.reqs.is_empty() {
            return true;
        }
        let meta = obj.meta();
        self.matches_with(|k| meta.label(k).map(Cow::Borrowed))
    }

    /// Any dotted path into the object is accepted (`metadata.name`, `status.phase`,
    /// `spec.nodeName`); a missing field compares as the empty string, as in the real API.
    /// `metadata.name` and `metadata.namespace` are answered from the object's [`Meta`]; any
    /// other path parses the object's text once, without keeping the tree in the object
    /// (which may be the store's history, shared by every watch).
    ///
    /// [`Meta`]: super::store::Meta
    pub fn matches_fields(&self, obj: &Obj) -> bool {
        const FROM_META: [&str; 2] = ["metadata.name", "metadata.namespace"];
        if self.reqs.is_empty() {
            return true;
        }
        let needs_tree = self.reqs.iter().any(|r| !FROM_META.contains(&r.key()));
        let parsed = needs_tree.then(|| obj.tree());
        self.matches_with(|path| {
            match path {
                "metadata.name" => return Some(Cow::Borrowed(&*obj.meta().name)),
                "metadata.namespace" => return Some(Cow::Borrowed(&*obj.meta().namespace)),
                _ => {}
            }
            let Some(mut cur) = parsed.as_deref() else {
                return Some(Cow::Borrowed(""));
            };
            for seg in path.split('.') {
                match cur.get(seg) {
                    Some(v) => cur = v,
                    None => return Some(Cow::Borrowed("")),
                }
            }
            Some(match cur {
                Value::String(s) => Cow::Borrowed(s.as_str()),
                Value::Null => Cow::Borrowed(""),
                other => Cow::Owned(other.to_string()),
            })
        })
    }
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn unescape(tok: &str) -> String {
    tok.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let idx = path
        .rfind('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((path[..idx].to_string(), unescape(&path[idx + 1..])))
}

fn add_at(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => {
            m.insert(last, value);
            Ok(())
        }
        Some(Value::Array(a)) => {
            let idx = if last == "-" {
                a.len()
            } else {
                last.parse::<usize>()
                    .map_err(|_| format!("invalid array index {last:?}"))?
            };
            if idx > a.len() {
                return Err(format!("index {idx} out of range"));
            }
            a.insert(idx, value);
            Ok(())
        }
        _ => Err(format!("path {parent:?} does not exist")),
    }
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    match doc.pointer_mut(&parent) {
        Some(Value::Object(m)) => m
            .remove(&last)
            .ok_or_else(|| format!("path {path:?} does not exist")),
        Some(Value::Array(a)) => {
            let idx = last
                .parse::<usize>()
                .map_err(|_| format!("invalid array index {last:?}"))?;
            if idx >= a.len() {
                return Err(format!("index {idx} out of range"));
            }
            Ok(a.remove(idx))
        }
        _ => Err(format!("path {parent:?} does not exist")),
    }
}

/// RFC 6902 JSON patch: add, remove, replace, move, copy, test.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops.as_array().ok_or("a JSON patch must be an array")?;
    for op in ops {
        let kind = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or("operation without path")?;
        let value = || op.get("value").cloned().ok_or("operation without value");
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or("operation without from")
        };
        match kind {
            "add" => add_at(doc, path, value()?)?,
            "remove" => {
                remove_at(doc, path)?;
            }
            "replace" => {
                remove_at(doc, path)?;
                add_at(doc, path, value()?)?;
            }
            "move" => {
                let v = remove_at(doc, from()?)?;
                add_at(doc, path, v)?;
            }
            "copy" => {
                let v = doc
                    .pointer(from()?)
                    .cloned()
                    .ok_or("copy from a missing path")?;
                add_at(doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("test failed at {path:?}"));
                }
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_syntax() {
        let o = Obj::new(json!({"metadata": {"labels": {"app": "checkout", "tier": "web"}}}));
        for (sel, want) in [
            ("app=checkout", true),
            ("app==checkout,tier=web", true),
            ("app!=checkout", false),
            ("app in (cart, checkout)", true),
            ("app notin (cart,checkout)", false),
            ("tier", true),
            ("!tier", false),
            ("!missing,app in (checkout)", true),
            ("missing!=x", true),
            ("", true),
        ] {
            let s = Selector::parse_labels(sel).unwrap();
            assert_eq!(s.matches_labels(&o), want, "{sel}");
        }
        assert!(Selector::parse_labels("app in checkout").is_err());
    }

    #[test]
    fn field_selector() {
        let o = Obj::new(
            json!({"metadata": {"name": "a", "namespace": "n"}, "status": {"phase": "Running"}}),
        );
        let s = Selector::parse_fields("metadata.name=a,status.phase!=Pending").unwrap();
        assert!(s.matches_fields(&o));
        assert!(!Selector::parse_fields("metadata.namespace=x")
            .unwrap()
            .matches_fields(&o));
    }

    #[test]
    fn selectors_read_a_stored_object_without_keeping_its_tree() {
        use super::super::store::{ResId, Store};
        let s = Store::new(10);
        let res = ResId::new("", "pods");
        let pod = json!({"metadata": {"namespace": "n", "name": "p1", "labels": {"app": "a"}},
                         "status": {"phase": "Running"}});
        s.create(&res, pod).unwrap();
        let o = s.get(&res, "n", "p1").unwrap();
        assert!(!o.has_tree());
        let labels = Selector::parse_labels("app=a").unwrap();
        let name = Selector::parse_fields("metadata.name=p1,metadata.namespace=n").unwrap();
        assert!(labels.matches_labels(&o) && name.matches_fields(&o));
        assert!(!o.has_tree(), "labels and metadata.name come from Meta");
        // A field only the tree has is read from a parse the object does not keep.
        assert!(Selector::parse_fields("status.phase=Running")
            .unwrap()
            .matches_fields(&o));
        assert!(!Selector::parse_fields("status.phase=Pending")
            .unwrap()
            .matches_fields(&o));
        assert!(!o.has_tree());
    }

    #[test]
    fn patches() {
        let mut d = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        merge_patch(&mut d, &json!({"a": {"b": null, "d": 3}}));
        assert_eq!(d, json!({"a": {"c": 2, "d": 3}, "l": [1, 2]}));
        json_patch(
            &mut d,
            &json!([{"op": "replace", "path": "/a/c", "value": 5}, {"op": "add", "path": "/l/-", "value": 3}, {"op": "remove", "path": "/a/d"}]),
        )
        .unwrap();
        assert_eq!(d, json!({"a": {"c": 5}, "l": [1, 2, 3]}));
        assert!(json_patch(&mut d, &json!([{"op": "test", "path": "/a/c", "value": 1}])).is_err());
    }
}
