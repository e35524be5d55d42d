//! The network fault kinds (`latency`, `bandwidth`, `loss`, `down`, `partition`): one raw
//! shape, and per kind and backend the keys that apply, the ones required and their ranges.

use std::time::Duration;

use super::{at, Builder, Ctx, Limit, DAY, HOUR, MS};
use crate::experiment::check;
use crate::experiment::de::child_path;
use crate::experiment::model::network::{
    format_rate, unsupported_on_proxies, Backend, Effect, NetworkKind, NetworkSpec,
    PartitionDirection, Stream,
};
use crate::experiment::model::ProxyDecl;
use crate::experiment::node::Node;
use crate::experiment::raw::{Percent, RawNetwork, RawProxy};

/// Slowest and fastest rate a bandwidth fault may ask for: Toxiproxy counts in whole KB/s,
/// and beyond 100 GB/s a limit limits nothing.
const MIN_RATE: u64 = 1_000;
const MAX_RATE: u64 = 100_000_000_000;

/// `key=value[,key=value]`: the only selector form Chaos Mesh's `labelSelectors` takes.
fn is_equality_selector(sel: &str) -> bool {
    sel.split(',').all(|kv| {
        kv.split_once('=').is_some_and(|(k, v)| {
            !k.trim().is_empty() && !v.trim().is_empty() && !v.contains('=') && !k.contains('!')
        })
    })
}

impl Builder<'_, '_> {
    /// A network fault of `kind` at mapping `n`; `None` when it has errors (all reported).
    pub(super) fn network(
        &mut self,
        kind: NetworkKind,
        n: &Node,
        path: &str,
        proxies: &[String],
    ) -> Option<NetworkSpec> {
        let raw: RawNetwork = self.cx.de(n, path)?;
        let errors_before = self.cx.diags.len();
        let key_error = |cx: &mut Ctx, key: &str, message: String, help: Option<String>| {
            cx.error(at(n, key), &child_path(path, key), message, help)
        };

        // Where.
        let on = match (raw.proxy, raw.toxiproxy, raw.chaos_mesh) {
            (Some(p), None, None) => Backend::Proxy(p),
            (None, Some(t), None) => Backend::Toxiproxy(t),
            (None, None, Some(c)) => Backend::ChaosMesh(c),
            _ => {
                self.cx.error(
                    n.span,
                    path,
                    format!(
                        "a {kind} fault needs exactly one of `proxy`, `toxiproxy` or `chaos-mesh`"
                    ),
                    Some("e.g. `proxy: db` for a proxy of the `proxy:` section".into()),
                );
                return None;
            }
        };
        match &on {
            Backend::Proxy(p) if !proxies.contains(p) => {
                let help =
                    crate::experiment::diag::did_you_mean(p, proxies.iter().map(String::as_str))
                        .map(|m| format!("did you mean `{m}`?"))
                        .or_else(|| Some("declare it in the `proxy:` section".into()));
                key_error(&mut self.cx, "proxy", format!("no proxy named `{p}`"), help);
            }
            Backend::Proxy(_) => {}
            Backend::Toxiproxy(t) => {
                if let Some(tn) = n.get("toxiproxy") {
                    self.http_url(
                        tn,
                        &child_path(path, "toxiproxy"),
                        &t.url,
                        "http://127.0.0.1:8474",
                    );
                }
            }
            Backend::ChaosMesh(c) => {
                if !check::is_dns_label(&c.namespace) {
                    key_error(
                        &mut self.cx,
                        "chaos-mesh",
                        format!("invalid namespace `{}`", c.namespace),
                        Some("namespaces use lowercase letters, digits and `-` (at most 63 characters)".into()),
                    );
                }
                if !is_equality_selector(&c.selector) {
                    key_error(
                        &mut self.cx,
                        "chaos-mesh",
                        format!(
                            "Chaos Mesh needs an equality selector, not `{}`",
                            c.selector
                        ),
                        Some("write `key=value[,key=value]`".into()),
                    );
                }
            }
        }
        let proxy_like = !matches!(on, Backend::ChaosMesh(_));
        if let (true, Some((why, help))) = (proxy_like, unsupported_on_proxies(kind)) {
            key_error(&mut self.cx, on.key(), why.into(), Some(help.into()));
        }

        // What applies to this kind and backend.
        let given = [
            ("latency", raw.latency.is_some()),
            ("jitter", raw.jitter.is_some()),
            ("correlation", raw.correlation.is_some()),
            ("stream", raw.stream.is_some()),
            ("rate", raw.rate.is_some()),
            ("loss", raw.loss.is_some()),
            ("peers", raw.peers.is_some()),
            ("direction", raw.direction.is_some()),
        ];
        let takes = kind.settings();
        for (key, _) in given
            .iter()
            .filter(|(k, there)| *there && !takes.contains(k))
        {
            let also: String = takes.iter().map(|k| format!(", `{k}`")).collect();
            key_error(
                &mut self.cx,
                key,
                format!("`{key}` is not a setting of a {kind} fault"),
                Some(format!(
                    "a {kind} fault takes `proxy`, `toxiproxy` or `chaos-mesh`, `duration`{also}"
                )),
            );
        }
        if !proxy_like && raw.stream.is_some() {
            key_error(
                &mut self.cx,
                "stream",
                "`stream` applies to proxies".into(),
                Some("Chaos Mesh acts on the selected pods' packets; leave `stream` out".into()),
            );
        }
        if proxy_like && kind == NetworkKind::Latency && raw.correlation.is_some() {
            key_error(
                &mut self.cx,
                "correlation",
                "`correlation` applies to `chaos-mesh` only".into(),
                Some("a proxy delays each chunk by latency ± jitter, independently".into()),
            );
        }
        let required = |cx: &mut Ctx, key: &str, example: &str| {
            cx.error(
                n.span,
                path,
                format!("a {kind} fault needs `{key}`"),
                Some(format!("e.g. `{key}: {example}`")),
            )
        };
        let mut percent = |key: &str, value: Option<Percent>, min: i64| {
            let p = value?.0;
            if !(min..=100).contains(&p) {
                key_error(
                    &mut self.cx,
                    key,
                    format!("{key} must be between {min} and 100, found {p}"),
                    None,
                );
            }
            u8::try_from(p.clamp(0, 100)).ok()
        };
        let correlation = percent("correlation", raw.correlation, 0);
        let loss = percent("loss", raw.loss, 1);

        let duration = self.opt_duration(
            n,
            path,
            "duration",
            Some(raw.duration),
            Limit::new(Duration::ZERO, MS, DAY),
        );
        let effect = match kind {
            NetworkKind::Latency => {
                let Some(l) = raw.latency else {
                    required(&mut self.cx, "latency", "100ms");
                    return None;
                };
                let latency =
                    self.opt_duration(n, path, "latency", Some(l), Limit::new(l.0, MS, HOUR));
                let jitter = self.opt_duration(
                    n,
                    path,
                    "jitter",
                    raw.jitter,
                    Limit::new(Duration::ZERO, Duration::ZERO, HOUR),
                );
                Effect::Latency {
                    latency,
                    jitter,
                    correlation,
                }
            }
            NetworkKind::Bandwidth => {
                let Some(rate) = raw.rate else {
                    required(&mut self.cx, "rate", "512KB/s");
                    return None;
                };
                if !(MIN_RATE..=MAX_RATE).contains(&rate.0) {
                    key_error(
                        &mut self.cx,
                        "rate",
                        format!(
                            "rate must be between {} and {}, found {}",
                            format_rate(MIN_RATE),
                            format_rate(MAX_RATE),
                            format_rate(rate.0)
                        ),
                        Some("to stop traffic altogether use a `down` fault".into()),
                    );
                }
                Effect::Bandwidth {
                    bytes_per_second: rate.0,
                }
            }
            NetworkKind::Loss => {
                let Some(percent) = loss else {
                    required(&mut self.cx, "loss", "25%");
                    return None;
                };
                Effect::Loss {
                    percent,
                    correlation,
                }
            }
            NetworkKind::Partition => {
                let Some(peers) = raw.peers else {
                    required(&mut self.cx, "peers", "app=db");
                    return None;
                };
                if !is_equality_selector(&peers) {
                    key_error(
                        &mut self.cx,
                        "peers",
                        format!("Chaos Mesh needs an equality selector, not `{peers}`"),
                        Some("write `key=value[,key=value]`: the pods in the same namespace to cut off from".into()),
                    );
                }
                Effect::Partition {
                    peers,
                    direction: raw.direction.unwrap_or(PartitionDirection::Both),
                }
            }
            NetworkKind::Down => Effect::Down,
        };
        (self.cx.diags.len() == errors_before).then_some(NetworkSpec {
            on,
            effect,
            stream: raw.stream.unwrap_or(Stream::Downstream),
            duration,
        })
    }

    pub(super) fn proxies(&mut self, n: &Node) -> Vec<ProxyDecl> {
        let Some(entries) = n.entries() else {
            self.cx.error(
                n.span,
                "proxy",
                format!("expected a mapping of proxies, found {}", n.describe()),
                Some("write `proxy: { db: { listen: \"127.0.0.1:15432\", upstream: \"127.0.0.1:5432\" } }`".into()),
            );
            return vec![];
        };
        let mut out = Vec::new();
        for e in entries {
            let path = child_path("proxy", &e.key);
            let Some(raw) = self.cx.de::<RawProxy>(&e.value, &path) else {
                continue;
            };
            let listen = match raw.listen.parse::<std::net::SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    self.cx.error(
                        at(&e.value, "listen"),
                        &child_path(&path, "listen"),
                        format!("invalid listen address `{}`", raw.listen),
                        Some("write ip:port, e.g. `127.0.0.1:15432`".into()),
                    );
                    None
                }
            };
            let upstream_ok = raw
                .upstream
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0));
            if !upstream_ok {
                self.cx.error(
                    at(&e.value, "upstream"),
                    &child_path(&path, "upstream"),
                    format!("invalid upstream `{}`", raw.upstream),
                    Some("write host:port, e.g. `127.0.0.1:5432`".into()),
                );
            }
            if let Some(l) = listen.filter(|l| !l.ip().is_loopback()) {
                self.cx.warn(
                    at(&e.value, "listen"),
                    &child_path(&path, "listen"),
                    format!(
                        "proxy `{}` listens on {l}, reachable from other machines, not only this one",
                        e.key
                    ),
                    Some(format!(
                        "listen on 127.0.0.1:{} unless other machines must reach the proxy",
                        l.port()
                    )),
                );
            }
            if let (Some(listen), true) = (listen, upstream_ok) {
                out.push(ProxyDecl {
                    name: e.key.clone(),
                    listen,
                    upstream: raw.upstream,
                });
            }
        }
        out
    }
}
