//! Just enough of Kubernetes' protobuf encoding to read the two bodies kubectl's typed clients
//! send in it to endpoints only they call: a TokenRequest (`kubectl create token`) and a
//! SelfSubjectAccessReview (`kubectl auth can-i`). Everything else in protobuf is still
//! answered 415 (the simulated cluster speaks JSON).
//!
//! The wire format: the magic `k8s\0`, then a `runtime.Unknown` message (1: typeMeta
//! {1: apiVersion, 2: kind}, 2: raw, the object's own message). Field numbers are those of
//! k8s.io/api's generated.proto; unknown fields are skipped, as protobuf readers do.

use serde_json::{json, Map, Value};

const MAGIC: &[u8] = b"k8s\0";

/// One field of a message: a varint, or length-delimited bytes (strings, messages).
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*at).ok_or("truncated varint")?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let key = varint(buf, &mut at)?;
        let field = match key & 7 {
            0 => Field::Varint(varint(buf, &mut at)?),
            1 => {
                at += 8;
                Field::Other
            }
            2 => {
                let len = usize::try_from(varint(buf, &mut at)?).map_err(|e| e.to_string())?;
                let end = at.checked_add(len).filter(|e| *e <= buf.len());
                let end = end.ok_or("truncated field")?;
                let b = &buf[at..end];
                at = end;
                Field::Bytes(b)
            }
            5 => {
                at += 4;
                Field::Other
            }
            w => return Err(format!("unsupported wire type {w}")),
        };
        if at > buf.len() {
            return Err("truncated field".into());
        }
        out.push((key >> 3, field));
    }
    Ok(out)
}

fn message(buf: &[u8], n: u64) -> Result<Option<&[u8]>, String> {
    Ok(fields(buf)?.into_iter().rev().find_map(|(k, f)| match f {
        Field::Bytes(b) if k == n => Some(b),
        _ => None,
    }))
}

/// The string fields of a message as JSON, by field number.
fn strings(buf: &[u8], names: &[(u64, &str)]) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    for (k, f) in fields(buf)? {
        if let (Some((_, name)), Field::Bytes(b)) = (names.iter().find(|(n, _)| *n == k), f) {
            out.insert((*name).into(), json!(String::from_utf8_lossy(b)));
        }
    }
    Ok(out)
}

/// ObjectMeta's name, generateName and namespace.
fn meta(buf: &[u8]) -> Result<Value, String> {
    let m = match message(buf, 1)? {
        Some(m) => strings(m, &[(1, "name"), (2, "generateName"), (3, "namespace")])?,
        None => Map::new(),
    };
    Ok(Value::Object(m))
}

fn token_request(raw: &[u8]) -> Result<Value, String> {
    let mut spec = Map::new();
    if let Some(s) = message(raw, 2)? {
        let mut audiences = Vec::new();
        for (k, f) in fields(s)? {
            match (k, f) {
                (1, Field::Bytes(b)) => audiences.push(json!(String::from_utf8_lossy(b))),
                (4, Field::Varint(v)) => {
                    spec.insert("expirationSeconds".into(), json!(v as i64));
                }
                (3, Field::Bytes(b)) => {
                    let r = strings(
                        b,
                        &[(1, "kind"), (2, "apiVersion"), (3, "name"), (4, "uid")],
                    )?;
                    spec.insert("boundObjectRef".into(), Value::Object(r));
                }
                _ => {}
            }
        }
        spec.insert("audiences".into(), json!(audiences));
    }
    Ok(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
        "metadata": meta(raw)?, "spec": spec}),
    )
}

fn access_review(raw: &[u8]) -> Result<Value, String> {
    let mut spec = Map::new();
    if let Some(s) = message(raw, 2)? {
        if let Some(r) = message(s, 1)? {
            let attrs = strings(
                r,
                &[
                    (1, "namespace"),
                    (2, "verb"),
                    (3, "group"),
                    (4, "version"),
                    (5, "resource"),
                    (6, "subresource"),
                    (7, "name"),
                ],
            )?;
            spec.insert("resourceAttributes".into(), Value::Object(attrs));
        }
        if let Some(n) = message(s, 2)? {
            let attrs = strings(n, &[(1, "path"), (2, "verb")])?;
            spec.insert("nonResourceAttributes".into(), Value::Object(attrs));
        }
    }
    Ok(
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "metadata": meta(raw)?, "spec": spec}),
    )
}

/// The JSON of a protobuf TokenRequest or SelfSubjectAccessReview; `Err` for anything else.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let unknown = body.strip_prefix(MAGIC).ok_or("no k8s protobuf magic")?;
    let type_meta = message(unknown, 1)?.ok_or("no type")?;
    let kind = strings(type_meta, &[(2, "kind")])?;
    let raw = message(unknown, 2)?.unwrap_or_default();
    match kind.get("kind").and_then(Value::as_str) {
        Some("TokenRequest") => token_request(raw),
        Some("SelfSubjectAccessReview") => access_review(raw),
        other => Err(format!(
            "cannot read a {} in protobuf",
            other.unwrap_or("?")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(n << 3 | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    fn envelope(kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = field(1, b"v1");
        type_meta.extend(field(2, kind.as_bytes()));
        let mut out = MAGIC.to_vec();
        out.extend(field(1, &type_meta));
        out.extend(field(2, raw));
        out
    }

    #[test]
    fn a_review_and_a_token_request_read_as_their_json() {
        let mut attrs = field(1, b"shop");
        attrs.extend(field(2, b"list"));
        attrs.extend(field(5, b"pods"));
        let spec = field(1, &attrs);
        let raw = field(2, &spec);
        let v = decode(&envelope("SelfSubjectAccessReview", &raw)).unwrap();
        assert_eq!(
            v["spec"]["resourceAttributes"],
            json!({"namespace": "shop", "verb": "list", "resource": "pods"})
        );
        let mut spec = field(1, b"https://kubernetes.default.svc");
        spec.extend([4 << 3, 0x90, 0x1c]); // expirationSeconds: 3600
        let mut raw = field(1, &field(1, b"firedrill"));
        raw.extend(field(2, &spec));
        let v = decode(&envelope("TokenRequest", &raw)).unwrap();
        assert_eq!(v["spec"]["expirationSeconds"], 3600);
        assert_eq!(v["spec"]["audiences"][0], "https://kubernetes.default.svc");
        assert_eq!(v["metadata"]["name"], "firedrill");
        assert!(decode(&envelope("Pod", b"")).is_err());
        assert!(decode(b"k8s\0\x0a\x7f").is_err());
        assert!(decode(b"{}").is_err());
    }
}
