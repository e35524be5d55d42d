//! The raw YAML shapes: dumb and strict. Every struct denies unknown keys; values are only
//! parsed (durations, percentages), never cross-checked. The loader turns them into the
//! validated [`model`](super::model) types.

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

use super::check;
use super::de::HELP_SEPARATOR;

fn custom<E: de::Error>(inv: check::Invalid) -> E {
    match inv.help {
        Some(h) => E::custom(format!("{}{HELP_SEPARATOR}{h}", inv.message)),
        None => E::custom(inv.message),
    }
}

/// A humantime duration (`500ms`, `2m`), with messages for the usual mistakes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `500ms` or `30s`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Dur, E> {
                check::duration(v).map(Dur).map_err(custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// `25` or `"25%"`; range-checked by the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percent(pub i64);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Percent;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a percentage such as `25` or `25%`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Percent, E> {
                Ok(Percent(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Percent, E> {
                Ok(Percent(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Percent, E> {
                v.trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<i64>().ok())
                    .map(Percent)
                    .ok_or_else(|| {
                        E::custom(format!(
                            "invalid percentage `{v}`{HELP_SEPARATOR}write a whole number from 1 to 100, e.g. `25` or `25%`"
                        ))
                    })
            }
        }
        d.deserialize_any(V)
    }
}

/// A data rate (`512KB/s`) in bytes per second; range-checked by the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataRate(pub u64);

impl<'de> Deserialize<'de> for DataRate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = DataRate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a rate such as `512KB/s` or `8Mbit/s`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DataRate, E> {
                check::rate(v).map(DataRate).map_err(custom)
            }
        }
        d.deserialize_str(V)
    }
}

/// An error rate: a fraction (`0.5`) or a percentage (`"50%"`); range-checked by the loader.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate(pub f64);

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fraction such as `0.5` or a percentage such as `50%`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rate, E> {
                Ok(Rate(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rate, E> {
                Ok(Rate(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Rate, E> {
                Ok(Rate(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                v.trim()
                    .strip_suffix('%')
                    .and_then(|n| n.trim().parse::<f64>().ok())
                    .map(|p| Rate(p / 100.0))
                    .ok_or_else(|| {
                        E::custom(format!(
                            "invalid error rate `{v}`{HELP_SEPARATOR}write a fraction such as `0.5` or a percentage such as `50%`"
                        ))
                    })
            }
        }
        d.deserialize_any(V)
    }
}

/// `ready: all` or `ready: 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    All,
    AtLeast(i64),
}

impl<'de> Deserialize<'de> for Ready {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Ready;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`all` or a number of ready replicas")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Ready, E> {
                Ok(Ready::AtLeast(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Ready, E> {
                Ok(Ready::AtLeast(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Ready, E> {
                if v == "all" {
                    Ok(Ready::All)
                } else {
                    Err(E::custom(format!(
                        "invalid readiness `{v}`{HELP_SEPARATOR}write `all` or a number of ready replicas such as `2`"
                    )))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One value or a list of them (`expect-status: 200` or `[200, 204]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OneOrMany<T>(pub Vec<T>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a status code or a list of them")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                T::deserialize(de::value::U64Deserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                T::deserialize(de::value::I64Deserializer::new(v)).map(|t| OneOrMany(vec![t]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(t) = seq.next_element()? {
                    out.push(t);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V(PhantomData))
    }
}

/// A string-to-string mapping that keeps file order (HTTP headers).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs(pub Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    out.push((k, v));
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSimulation {
    pub scenario: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKubeTarget {
    pub namespace: String,
    pub selector: String,
    pub workload: Option<String>,
    pub count: Option<i64>,
    pub percent: Option<Percent>,
    pub max_targets: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProcessTarget {
    pub pid_file: Option<String>,
    pub command_line: Option<String>,
    pub max_targets: Option<i64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHttpProbe {
    pub url: String,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Pairs,
    pub expect_status: Option<OneOrMany<i64>>,
    pub body_contains: Option<String>,
    pub timeout: Option<Dur>,
    pub max_latency: Option<Dur>,
    pub ca_file: Option<String>,
}

/// `">= 50"`: parsed here so a bad threshold is reported at its value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawThreshold(pub super::model::Threshold);

impl<'de> Deserialize<'de> for RawThreshold {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = RawThreshold;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a comparison such as `\">= 50\"`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawThreshold, E> {
                check::threshold(v).map(RawThreshold).map_err(custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawThreshold, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawThreshold, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawThreshold, E> {
                self.visit_str(&v.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPrometheusProbe {
    pub url: String,
    pub query: String,
    pub expect: RawThreshold,
    pub series: Option<RawSeries>,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Pairs,
    pub bearer_token: Option<String>,
    pub basic_auth: Option<RawBasicAuth>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RawSeries {
    One,
    All,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBasicAuth {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for RawBasicAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawBasicAuth({}:***)", self.username)
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTcpProbe {
    pub address: String,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCommandProbe {
    pub run: Vec<String>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKubeProbe {
    /// A label selector of nodes, or `all`.
    pub nodes: Option<String>,
    pub deployment: Option<String>,
    pub statefulset: Option<String>,
    pub replicaset: Option<String>,
    pub ready: Option<Ready>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPodKill {
    pub target: String,
    pub grace_period: Option<Dur>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProcessKill {
    pub target: String,
    // `SIGTERM`, `TERM` or `term`: its schema lists `check::SIGNALS`.
    #[schemars(schema_with = "signal_schema")]
    pub signal: Option<String>,
}

/// A signal name as [`check::signal`] takes it (any case, `SIG` optional), or null.
fn signal_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let any_case = |s: &str| -> String {
        s.chars()
            .map(|c| match c.is_ascii_alphabetic() {
                true => format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase()),
                false => c.to_string(),
            })
            .collect()
    };
    let names: Vec<String> = check::SIGNALS.iter().map(|s| any_case(&s[3..])).collect();
    let pattern = format!(r"^\s*(?:{})?(?:{})\s*$", any_case("SIG"), names.join("|"));
    schemars::json_schema!({
        "description": format!("The signal to send (default SIGKILL): {}.", check::SIGNALS.join(", ")),
        "type": ["string", "null"],
        "pattern": pattern
    })
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCommandFault {
    pub run: Vec<String>,
    pub revert: Option<Vec<String>>,
    pub timeout: Option<Dur>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRecovery {
    pub objective: Dur,
    pub stable_for: Option<Dur>,
    pub timeout: Option<Dur>,
    pub probes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAbort {
    pub probe: String,
    pub after: Option<String>,
    pub failing_for: Option<Dur>,
    pub error_rate: Option<Rate>,
    pub window: Option<Dur>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEnvironment {
    pub kube_context: Option<String>,
    pub time_zone: Option<String>,
    #[serde(default)]
    pub vars: Pairs,
    #[serde(default)]
    pub protected: bool,
    pub promote_from: Option<String>,
    pub within: Option<Dur>,
    /// Passing runs in `promote-from` needed within `within` (default 1).
    pub passes: Option<u32>,
    /// When scheduled drills may start; checked item by item in env.rs.
    #[serde(default)]
    pub windows: Vec<String>,
    #[serde(default)]
    pub blackouts: Vec<String>,
    pub jitter: Option<Dur>,
    pub concurrency: Option<RawConcurrency>,
    pub starting_deadline: Option<Dur>,
}

/// Only `forbid` today: a tick while the drill still runs is skipped.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RawConcurrency {
    Forbid,
}

/// Every key of the network fault kinds (`latency`, `bandwidth`, `loss`, `down`,
/// `partition`); the loader says which apply to which kind and backend.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNetwork {
    pub proxy: Option<String>,
    pub toxiproxy: Option<crate::experiment::model::network::ToxiproxyRef>,
    pub chaos_mesh: Option<crate::experiment::model::network::ChaosMeshRef>,
    pub duration: Dur,
    pub stream: Option<crate::experiment::model::network::Stream>,
    pub latency: Option<Dur>,
    pub jitter: Option<Dur>,
    pub correlation: Option<Percent>,
    pub rate: Option<DataRate>,
    pub loss: Option<Percent>,
    pub peers: Option<String>,
    pub direction: Option<crate::experiment::model::network::PartitionDirection>,
}

/// A proxy of the `proxy:` section: `{ listen: "127.0.0.1:15432", upstream: "127.0.0.1:5432" }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProxy {
    /// The address the proxy listens on, `ip:port` (loopback unless other machines must reach it).
    pub listen: String,
    /// Where it forwards to, `host:port`.
    pub upstream: String,
}

/// A fault's `wait:` (a step); `wait: 30s` is short for `wait: { for: 30s }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawWait {
    pub after: Option<String>,
    pub removed: Option<String>,
    #[serde(rename = "for")]
    pub delay: Option<Dur>,
    pub until: Option<RawUntil>,
    pub within: Option<Dur>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawUntil {
    pub probe: String,
    pub is: RawProbeState,
}

#[derive(Debug, Deserialize, Clone, Copy, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RawProbeState {
    Failing,
    Passing,
}

/// A `nodes` target.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNodeTarget {
    #[serde(default)]
    pub names: Vec<String>,
    pub selector: Option<String>,
    pub zone: Option<String>,
    pub count: Option<i64>,
    pub percent: Option<Percent>,
    pub max_nodes: Option<i64>,
    pub max_percent: Option<Percent>,
}

/// Who stops and starts a machine: `simulated`, or `{ command: { stop, start, timeout } }`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    rename_all = "kebab-case",
    rename_all_fields = "kebab-case"
)]
pub enum RawPowerProvider {
    Simulated,
    Command {
        stop: Vec<String>,
        start: Vec<String>,
        timeout: Option<Dur>,
    },
}

/// `node-drain` and `node-down`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNodeFault {
    pub target: String,
    pub provider: Option<RawPowerProvider>,
    pub grace_period: Option<Dur>,
    pub timeout: Option<Dur>,
    pub not_ready_within: Option<Dur>,
    #[serde(default)]
    pub allow_protected: bool,
}

/// `zone-outage`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawZoneOutage {
    pub zone: String,
    pub by: String,
    pub provider: Option<RawPowerProvider>,
    pub grace_period: Option<Dur>,
    pub timeout: Option<Dur>,
    pub not_ready_within: Option<Dur>,
    pub max_percent: Option<Percent>,
    #[serde(default)]
    pub allow_protected: bool,
}
