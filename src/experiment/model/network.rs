//! Network faults as the experiment file gives them: where (`proxy`, `toxiproxy`,
//! `chaos-mesh`), what (latency, bandwidth, loss, down, partition) and for how long.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A network fault: where, what and for how long.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct NetworkSpec {
    pub on: Backend,
    pub effect: Effect,
    /// The direction a proxy acts on (proxies only; downstream, server → client, by default).
    pub stream: Stream,
    /// How long the fault stays before firedrill removes it.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

/// Where a network fault is applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    /// A proxy of the experiment's `proxy:` section.
    Proxy(String),
    Toxiproxy(ToxiproxyRef),
    ChaosMesh(ChaosMeshRef),
}

impl Backend {
    /// The experiment file's key for this backend.
    pub fn key(&self) -> &'static str {
        match self {
            Backend::Proxy(_) => "proxy",
            Backend::Toxiproxy(_) => "toxiproxy",
            Backend::ChaosMesh(_) => "chaos-mesh",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ToxiproxyRef {
    /// The Toxiproxy API, e.g. `http://127.0.0.1:8474`.
    pub url: String,
    /// The proxy's name on that server.
    pub proxy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChaosMeshRef {
    pub namespace: String,
    /// Equality-based label selector of the pods to act on (`app=checkout,tier=web`).
    pub selector: String,
}

/// Which packets a partition cuts, seen from the selected pods (Chaos Mesh's `direction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum PartitionDirection {
    /// From the selected pods to the peers.
    To,
    /// From the peers to the selected pods.
    From,
    Both,
}

impl PartitionDirection {
    pub fn as_str(self) -> &'static str {
        match self {
            PartitionDirection::To => "to",
            PartitionDirection::From => "from",
            PartitionDirection::Both => "both",
        }
    }
}

/// What a network fault does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Effect {
    Latency {
        #[serde(with = "humantime_serde")]
        latency: Duration,
        #[serde(with = "humantime_serde")]
        jitter: Duration,
        /// Chaos Mesh only: correlation with the previous packet's delay, 0–100.
        correlation: Option<u8>,
    },
    /// Throughput limited to this many bytes per second.
    Bandwidth { bytes_per_second: u64 },
    /// Chaos Mesh only: this percentage of packets dropped.
    Loss {
        percent: u8,
        correlation: Option<u8>,
    },
    /// The dependency is unreachable.
    Down,
    /// Chaos Mesh only: the selected pods cut off from the pods `peers` selects.
    Partition {
        peers: String,
        direction: PartitionDirection,
    },
}

impl Effect {
    /// The fault kind, as the experiment file names it.
    pub fn kind(&self) -> &'static str {
        self.network_kind().key()
    }

    pub fn network_kind(&self) -> NetworkKind {
        match self {
            Effect::Latency { .. } => NetworkKind::Latency,
            Effect::Bandwidth { .. } => NetworkKind::Bandwidth,
            Effect::Loss { .. } => NetworkKind::Loss,
            Effect::Down => NetworkKind::Down,
            Effect::Partition { .. } => NetworkKind::Partition,
        }
    }
}

/// The network fault kinds, each a key of its own in the experiment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKind {
    Latency,
    Bandwidth,
    Loss,
    Down,
    Partition,
}

impl NetworkKind {
    pub const ALL: [NetworkKind; 5] = [
        NetworkKind::Latency,
        NetworkKind::Bandwidth,
        NetworkKind::Loss,
        NetworkKind::Down,
        NetworkKind::Partition,
    ];

    /// The experiment file's key.
    pub fn key(self) -> &'static str {
        match self {
            NetworkKind::Latency => "latency",
            NetworkKind::Bandwidth => "bandwidth",
            NetworkKind::Loss => "loss",
            NetworkKind::Down => "down",
            NetworkKind::Partition => "partition",
        }
    }

    /// The keys this kind takes besides its backend and `duration`.
    pub fn settings(self) -> &'static [&'static str] {
        match self {
            NetworkKind::Latency => &["latency", "jitter", "correlation", "stream"],
            NetworkKind::Bandwidth => &["rate", "stream"],
            NetworkKind::Loss => &["loss", "correlation"],
            NetworkKind::Partition => &["peers", "direction"],
            NetworkKind::Down => &[],
        }
    }
}

impl std::fmt::Display for NetworkKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.key())
    }
}

/// Why the fault `kind` cannot run on a proxy (built-in or Toxiproxy), with what to do instead;
/// `None` when it can. The loader reports it; the network fault refuses the same when built.
pub fn unsupported_on_proxies(kind: NetworkKind) -> Option<(&'static str, &'static str)> {
    match kind {
        NetworkKind::Loss => Some((
            "packet loss needs a backend that sees packets: `chaos-mesh`",
            "a TCP proxy forwards a byte stream that TCP has already made reliable, so there is nothing to drop; use `down` to make the dependency unreachable or `latency` to make it slow",
        )),
        NetworkKind::Partition => Some((
            "a partition needs `chaos-mesh`",
            "on a proxy, `down` cuts the dependency off",
        )),
        NetworkKind::Latency | NetworkKind::Bandwidth | NetworkKind::Down => None,
    }
}

/// `1.5 MB/s`: a rate for people (decimal units, as Toxiproxy's KB/s).
pub fn format_rate(bytes_per_second: u64) -> String {
    let b = bytes_per_second as f64;
    match bytes_per_second {
        0..1_000 => format!("{bytes_per_second} B/s"),
        1_000..1_000_000 => format!("{:.1} KB/s", b / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB/s", b / 1e6),
        _ => format!("{:.1} GB/s", b / 1e9),
    }
}

/// Which direction of a proxied connection a fault acts on, named as Toxiproxy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Client → server.
    Upstream,
    /// Server → client.
    Downstream,
}
