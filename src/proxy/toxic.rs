//! Toxics: the faults a proxy applies to one direction of its connections.
//!
//! A [`Toxic`] is validated when it is built, so the forwarding code never meets an absurd
//! value. The JSON shape is Toxiproxy's (`{"name","type","stream","toxicity","attributes"}`)
//! so existing Toxiproxy clients can drive us; firedrill adds one optional attribute, `ttl`
//! (milliseconds), after which the toxic removes itself.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::ProxyError;

/// Longest duration any attribute may ask for: beyond an hour a value is a typo, not a drill.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Fastest bandwidth limit (100 GB/s): anything above is no limit at all on any network.
const MAX_RATE_KB: u64 = 100_000_000;
/// Largest slice (1 GiB): larger than any read, so the slicer would do nothing.
const MAX_SLICE: u64 = 1 << 30;

/// Which direction of a connection a toxic applies to, named as Toxiproxy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client → server.
    Upstream,
    /// Server → client.
    Downstream,
}

impl Stream {
    fn parse(s: &str) -> Result<Self, ProxyError> {
        // Toxiproxy accepts any case here; clients rely on it.
        match s.to_ascii_lowercase().as_str() {
            "upstream" => Ok(Stream::Upstream),
            "downstream" => Ok(Stream::Downstream),
            _ => Err(ProxyError::InvalidStream),
        }
    }

    /// The name used in the JSON API.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Upstream => "upstream",
            Stream::Downstream => "downstream",
        }
    }
}

/// What a toxic does, with its validated parameters.
#[derive(Debug, Clone, PartialEq)]
pub enum ToxicKind {
    /// Every chunk read is delivered `latency ± jitter` after it was read (per chunk, in order).
    Latency { latency: Duration, jitter: Duration },
    /// Throughput is limited to `rate_kb` KB (1000 bytes, as Toxiproxy counts) per second.
    Bandwidth { rate_kb: u64 },
    /// Nothing is forwarded; the connection is closed after `timeout` (zero: held forever).
    Timeout { timeout: Duration },
    /// The connection is reset (RST, not FIN) after `timeout`.
    ResetPeer { timeout: Duration },
    /// Chunks are cut into pieces of `average_size ± size_variation` bytes, `delay` apart.
    Slicer {
        average_size: usize,
        size_variation: usize,
        delay: Duration,
    },
    /// The connection is closed once `bytes` bytes have been forwarded in this direction.
    LimitData { bytes: u64 },
}

impl ToxicKind {
    /// The Toxiproxy type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            ToxicKind::Latency { .. } => "latency",
            ToxicKind::Bandwidth { .. } => "bandwidth",
            ToxicKind::Timeout { .. } => "timeout",
            ToxicKind::ResetPeer { .. } => "reset_peer",
            ToxicKind::Slicer { .. } => "slicer",
            ToxicKind::LimitData { .. } => "limit_data",
        }
    }

    /// The Toxiproxy attributes (`{"latency": 100, "jitter": 0}`).
    pub fn attributes(&self) -> Map<String, Value> {
        let ms = |d: &Duration| Value::from(d.as_millis() as u64);
        let mut m = Map::new();
        match self {
            ToxicKind::Latency { latency, jitter } => {
                m.insert("latency".into(), ms(latency));
                m.insert("jitter".into(), ms(jitter));
            }
            ToxicKind::Bandwidth { rate_kb } => {
                m.insert("rate".into(), Value::from(*rate_kb));
            }
            ToxicKind::Timeout { timeout } | ToxicKind::ResetPeer { timeout } => {
                m.insert("timeout".into(), ms(timeout));
            }
            ToxicKind::Slicer {
                average_size,
                size_variation,
                delay,
            } => {
                m.insert("average_size".into(), Value::from(*average_size as u64));
                m.insert("size_variation".into(), Value::from(*size_variation as u64));
                m.insert("delay".into(), Value::from(delay.as_micros() as u64));
            }
            ToxicKind::LimitData { bytes } => {
                m.insert("bytes".into(), Value::from(*bytes));
            }
        }
        m
    }

    fn from_attributes(kind: &str, attrs: &Map<String, Value>) -> Result<Self, ProxyError> {
        let allowed: &[&str] = match kind {
            "latency" => &["latency", "jitter"],
            "bandwidth" => &["rate"],
            "timeout" | "reset_peer" => &["timeout"],
            "slicer" => &["average_size", "size_variation", "delay"],
            "limit_data" => &["bytes"],
            other => return Err(ProxyError::InvalidToxicType(other.to_string())),
        };
        if let Some(unknown) = attrs
            .keys()
            .find(|k| *k != "ttl" && !allowed.contains(&k.as_str()))
        {
            return Err(ProxyError::InvalidToxic(format!(
                "unknown attribute {unknown:?} for a {kind} toxic (expected one of: {})",
                allowed.join(", ")
            )));
        }
        let ms = |key: &str| -> Result<Duration, ProxyError> {
            duration_attr(attrs, key, Duration::from_millis)
        };
        Ok(match kind {
            "latency" => ToxicKind::Latency {
                latency: ms("latency")?,
                jitter: ms("jitter")?,
            },
            "bandwidth" => {
                let rate_kb = int_attr(attrs, "rate")?;
                if rate_kb == 0 {
                    return Err(ProxyError::InvalidToxic(
                        "attribute \"rate\" must be at least 1 (KB/s); use a timeout toxic to stop traffic"
                            .into(),
                    ));
                }
                if rate_kb > MAX_RATE_KB {
                    return Err(ProxyError::InvalidToxic(format!(
                        "attribute \"rate\" is {rate_kb} KB/s, more than the {MAX_RATE_KB} limit"
                    )));
                }
                ToxicKind::Bandwidth { rate_kb }
            }
            "timeout" => ToxicKind::Timeout {
                timeout: ms("timeout")?,
            },
            "reset_peer" => ToxicKind::ResetPeer {
                timeout: ms("timeout")?,
            },
            "slicer" => {
                let average_size = int_attr(attrs, "average_size")?;
                let size_variation = int_attr(attrs, "size_variation")?;
                if average_size == 0 {
                    return Err(ProxyError::InvalidToxic(
                        "attribute \"average_size\" must be at least 1 byte".into(),
                    ));
                }
                if average_size > MAX_SLICE {
                    return Err(ProxyError::InvalidToxic(format!(
                        "attribute \"average_size\" is {average_size} bytes, more than the {MAX_SLICE} limit"
                    )));
                }
                if size_variation >= average_size {
                    return Err(ProxyError::InvalidToxic(
                        "attribute \"size_variation\" must be smaller than \"average_size\"".into(),
                    ));
                }
                let too_big = |_| ProxyError::InvalidToxic("slice size too large".into());
                ToxicKind::Slicer {
                    average_size: usize::try_from(average_size).map_err(too_big)?,
                    size_variation: usize::try_from(size_variation).map_err(too_big)?,
                    delay: duration_attr(attrs, "delay", Duration::from_micros)?,
                }
            }
            "limit_data" => ToxicKind::LimitData {
                bytes: int_attr(attrs, "bytes")?,
            },
            other => return Err(ProxyError::InvalidToxicType(other.to_string())),
        })
    }
}

/// A non-negative whole number attribute; a missing one is 0, as in Toxiproxy.
fn int_attr(attrs: &Map<String, Value>, key: &str) -> Result<u64, ProxyError> {
    match attrs.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => {
            if let Some(n) = v.as_u64() {
                Ok(n)
            } else if v.as_i64().is_some() || v.as_f64().is_some_and(|f| f < 0.0) {
                Err(ProxyError::InvalidToxic(format!(
                    "attribute {key:?} must not be negative (got {v})"
                )))
            } else {
                Err(ProxyError::InvalidToxic(format!(
                    "attribute {key:?} must be a whole number (got {v})"
                )))
            }
        }
    }
}

fn duration_attr(
    attrs: &Map<String, Value>,
    key: &str,
    unit: fn(u64) -> Duration,
) -> Result<Duration, ProxyError> {
    let d = unit(int_attr(attrs, key)?);
    if d > MAX_DURATION {
        return Err(ProxyError::InvalidToxic(format!(
            "attribute {key:?} is {d:?}, more than the 1h limit"
        )));
    }
    Ok(d)
}

/// One toxic as the API and the drill executor see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Toxic {
    pub name: String,
    pub kind: ToxicKind,
    pub stream: Stream,
    /// Probability in 0..=1 that a given connection is affected, drawn once per connection.
    pub toxicity: f32,
    /// After this long the toxic removes itself, so a dead drill runner leaves nothing behind.
    pub ttl: Option<Duration>,
}

impl Toxic {
    /// A toxic affecting every connection, named like Toxiproxy's default (`type_stream`).
    pub fn new(kind: ToxicKind, stream: Stream) -> Self {
        Toxic {
            name: format!("{}_{}", kind.type_name(), stream.as_str()),
            kind,
            stream,
            toxicity: 1.0,
            ttl: None,
        }
    }

    /// Checks the fields that a struct literal could get wrong.
    pub fn validate(&self) -> Result<(), ProxyError> {
        if self.name.is_empty() {
            return Err(ProxyError::MissingField("name"));
        }
        if !(0.0..=1.0).contains(&self.toxicity) {
            return Err(ProxyError::InvalidToxic(format!(
                "toxicity must be between 0 and 1 (got {})",
                self.toxicity
            )));
        }
        if self
            .ttl
            .is_some_and(|t| t.is_zero() || t > Duration::from_secs(7 * 86400))
        {
            return Err(ProxyError::InvalidToxic(
                "ttl must be between 1ms and 7 days".into(),
            ));
        }
        // Re-parsing our own attributes applies the same limits as the JSON path.
        ToxicKind::from_attributes(self.kind.type_name(), &self.kind.attributes())?;
        Ok(())
    }

    /// Parses Toxiproxy's JSON shape, applying its defaults (stream `downstream`,
    /// toxicity 1, name `type_stream`).
    pub fn from_json(v: &Value) -> Result<Self, ProxyError> {
        let obj = v.as_object().ok_or(ProxyError::BadRequestBody)?;
        let kind_name = match obj.get("type") {
            Some(Value::String(s)) => s.as_str(),
            None | Some(Value::Null) => return Err(ProxyError::MissingField("type")),
            Some(_) => return Err(ProxyError::BadRequestBody),
        };
        let stream = match obj.get("stream") {
            Some(Value::String(s)) if !s.is_empty() => Stream::parse(s)?,
            None | Some(Value::Null) => Stream::Downstream,
            Some(Value::String(_)) => Stream::Downstream,
            Some(_) => return Err(ProxyError::InvalidStream),
        };
        let empty = Map::new();
        let attrs = match obj.get("attributes") {
            Some(Value::Object(m)) => m,
            None | Some(Value::Null) => &empty,
            Some(_) => return Err(ProxyError::BadRequestBody),
        };
        let kind = ToxicKind::from_attributes(kind_name, attrs)?;
        let toxicity = match obj.get("toxicity") {
            None | Some(Value::Null) => 1.0,
            Some(v) => v.as_f64().ok_or_else(|| {
                ProxyError::InvalidToxic(format!("toxicity must be a number (got {v})"))
            })?,
        };
        let name = match obj.get("name") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                format!("{kind_name}_{}", stream.as_str())
            }
            Some(_) => return Err(ProxyError::BadRequestBody),
        };
        let ttl = match attrs.get("ttl") {
            None | Some(Value::Null) => None,
            Some(_) => Some(Duration::from_millis(int_attr(attrs, "ttl")?)),
        };
        if !(0.0..=1.0).contains(&toxicity) {
            return Err(ProxyError::InvalidToxic(format!(
                "toxicity must be between 0 and 1 (got {toxicity})"
            )));
        }
        let t = Toxic {
            name,
            kind,
            stream,
            toxicity: toxicity as f32,
            ttl,
        };
        t.validate()?;
        Ok(t)
    }

    /// Toxiproxy's JSON shape, with `ttl` (ms) among the attributes when set.
    pub fn to_json(&self) -> Value {
        let mut attrs = self.kind.attributes();
        if let Some(ttl) = self.ttl {
            attrs.insert("ttl".into(), Value::from(ttl.as_millis() as u64));
        }
        serde_json::json!({
            "name": self.name,
            "type": self.kind.type_name(),
            "stream": self.stream.as_str(),
            "toxicity": self.toxicity,
            "attributes": attrs,
        })
    }
}

impl Serialize for Toxic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Toxic {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Toxic::from_json(&v).map_err(serde::de::Error::custom)
    }
}

/// A toxic as installed on a proxy; `id` changes on every add or update so per-connection
/// state (the toxicity draw, when it started, bytes counted) restarts with it.
#[derive(Debug, Clone)]
pub(crate) struct ActiveToxic {
    pub id: u64,
    pub toxic: Toxic,
}

pub(crate) type ToxicSet = Arc<Vec<ActiveToxic>>;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_toxiproxy_shape_with_defaults() {
        let t =
            Toxic::from_json(&json!({"type": "latency", "attributes": {"latency": 100}})).unwrap();
        assert_eq!(t.name, "latency_downstream");
        assert_eq!(t.stream, Stream::Downstream);
        assert_eq!(t.toxicity, 1.0);
        assert_eq!(
            t.kind,
            ToxicKind::Latency {
                latency: Duration::from_millis(100),
                jitter: Duration::ZERO
            }
        );
        let back = Toxic::from_json(&t.to_json()).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn ttl_is_an_optional_attribute() {
        let t = Toxic::from_json(&json!({"type": "timeout", "stream": "UPSTREAM",
            "attributes": {"timeout": 0, "ttl": 1500}}))
        .unwrap();
        assert_eq!(t.stream, Stream::Upstream);
        assert_eq!(t.ttl, Some(Duration::from_millis(1500)));
        assert_eq!(t.to_json()["attributes"]["ttl"], 1500);
    }

    #[test]
    fn rejects_absurd_values_with_clear_errors() {
        let cases = [
            (json!({"type": "nope"}), "invalid toxic type"),
            (
                json!({"type": "latency", "attributes": {"latency": -1}}),
                "negative",
            ),
            (
                json!({"type": "latency", "attributes": {"latency": 3_600_001}}),
                "1h",
            ),
            (
                json!({"type": "bandwidth", "attributes": {"rate": 0}}),
                "at least 1",
            ),
            (
                json!({"type": "latency", "toxicity": 1.5}),
                "between 0 and 1",
            ),
            (json!({"type": "latency", "stream": "sideways"}), "stream"),
            (
                json!({"type": "latency", "attributes": {"latncy": 5}}),
                "unknown attribute",
            ),
            (
                json!({"type": "slicer", "attributes": {"average_size": 4, "size_variation": 4}}),
                "smaller",
            ),
            (
                json!({"type": "limit_data", "attributes": {"bytes": 1.5}}),
                "whole number",
            ),
        ];
        for (input, want) in cases {
            let err = Toxic::from_json(&input).unwrap_err().to_string();
            assert!(err.contains(want), "{input}: {err:?} lacks {want:?}");
        }
    }
}
