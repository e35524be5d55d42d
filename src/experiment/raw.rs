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

/// Run on the embedded simulated Kubernetes cluster.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSimulation {
    /// The scenario file, relative to the drill (no `${...}`: it is read before variables).
    pub scenario: String,
}

/// Kubernetes pods: those of `namespace` matching `selector`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKubeTarget {
    pub namespace: String,
    /// A label selector, e.g. `app=checkout`.
    pub selector: String,
    /// The workload that owns the pods, e.g. `deployment/checkout` (its recovery is watched).
    pub workload: Option<String>,
    /// How many pods one injection hits (default 1); or `percent`.
    pub count: Option<i64>,
    /// The share of the matching pods one injection hits, 1 to 100.
    pub percent: Option<Percent>,
    /// The most pods one injection may hit.
    pub max_targets: Option<i64>,
}

/// Processes on this machine: by pid file or by exact command line (one of them).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProcessTarget {
    pub pid_file: Option<String>,
    /// The exact command line of the processes.
    pub command_line: Option<String>,
    /// The most processes one injection may hit (default 1; command-line targets only).
    pub max_targets: Option<i64>,
}

/// Healthy when the URL answers with an expected status (and body, and in time).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawHttpProbe {
    /// `http://` or `https://` (certificates are always verified).
    pub url: String,
    /// GET (default), HEAD, POST, PUT, DELETE, PATCH or OPTIONS.
    pub method: Option<String>,
    #[serde(default)]
    pub headers: Pairs,
    /// A status code or a list of them (default 200-299).
    pub expect_status: Option<OneOrMany<i64>>,
    /// Text the body must contain.
    pub body_contains: Option<String>,
    pub timeout: Option<Dur>,
    /// A slower answer counts as failing.
    pub max_latency: Option<Dur>,
    /// The CA certificate (PEM) of an https service behind a private CA.
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

/// Healthy when a PromQL query's value passes a threshold (a business signal).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPrometheusProbe {
    /// The Prometheus server, e.g. `http://127.0.0.1:9090`.
    pub url: String,
    /// A PromQL instant query.
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

/// Healthy when a TCP connection to `address` (`host:port`) opens.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawTcpProbe {
    pub address: String,
    pub timeout: Option<Dur>,
}

/// Healthy when the command exits 0.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCommandProbe {
    /// The program and its arguments (no shell).
    pub run: Vec<String>,
    pub timeout: Option<Dur>,
}

/// Healthy when a workload's replicas (or nodes) are ready, from a watch: one of
/// `deployment`, `statefulset`, `replicaset` (`namespace/name`) or `nodes`.
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

/// Delete pods of a `kubernetes` target.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPodKill {
    /// A `kubernetes` target.
    pub target: String,
    /// The deletion's grace period (default 0s: a hard kill).
    pub grace_period: Option<Dur>,
}

/// Send a signal to processes of a `process` target.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawProcessKill {
    /// A `process` target.
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

/// Run a command that breaks something, and optionally one that mends it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCommandFault {
    /// The program and its arguments (no shell).
    pub run: Vec<String>,
    /// Run however the drill ends (journaled first, so even after a crash).
    pub revert: Option<Vec<String>>,
    pub timeout: Option<Dur>,
}

/// How fast the system must heal.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRecovery {
    /// The time to recover the drill must meet.
    pub objective: Dur,
    /// How long the probes must stay passing to count as recovered.
    pub stable_for: Option<Dur>,
    /// How long to wait for recovery before the trial fails.
    pub timeout: Option<Dur>,
    /// The probes whose recovery counts (default: all).
    pub probes: Option<Vec<String>>,
}

/// Stop the drill early (and revert) when a probe fails too long or too often.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawAbort {
    pub probe: String,
    /// The fault the condition counts from.
    pub after: Option<String>,
    /// Abort when the probe has failed this long; or `error-rate` with `window`.
    pub failing_for: Option<Dur>,
    pub error_rate: Option<Rate>,
    pub window: Option<Dur>,
}

/// Where the shared store's DSN is (never the DSN itself: this file is committed, and the
/// DSN carries a password). `--store` and `FIREDRILL_STORE` take precedence.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawStore {
    /// The environment variable that holds the DSN.
    #[serde(default)]
    pub dsn_env: Option<String>,
    /// The file whose first line is the DSN (relative to firedrill.yaml's folder).
    #[serde(default)]
    pub dsn_file: Option<std::path::PathBuf>,
}

/// One environment: where its drills run and the rules they run under.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEnvironment {
    /// The kubeconfig context of the environment's cluster.
    pub kube_context: Option<String>,
    /// An IANA time zone for schedules and windows (default UTC).
    pub time_zone: Option<String>,
    /// Variables for `${name}` in drills; values may read `${env:NAME}`.
    #[serde(default)]
    pub vars: Pairs,
    /// A run needs `--yes` (or a confirmation).
    #[serde(default)]
    pub protected: bool,
    /// Drills must first pass in this environment (`within`).
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
