//! Which fault each recovery probe measures: fault `name:`s, a probe's `after:`, and the
//! attributions the file makes clear by itself.
//!
//! A fault that acts once (a kill, a failover) and a fault held for a `duration` (latency)
//! have different recovery origins: the injection and the removal. A probe's time to recover
//! counts from the origin of the faults it watches, so in a trial that mixes the two a probe
//! that nobody attributed would be measured from the wrong instant. Such a file is refused with
//! a question rather than a guess.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use super::{Builder, Reference};
use crate::experiment::check;
use crate::experiment::de::child_path;
use crate::experiment::diag::suggest;
use crate::experiment::model::network::Backend;
use crate::experiment::model::{
    FaultSpec, ProbeKind, ProbeSpec, ProxyDecl, Target, TargetKind, WorkloadRef,
};
use crate::experiment::node::{Kind, Node};

impl Builder<'_, '_> {
    /// The optional `name:` of the fault at `path`: a valid name, used once in the file.
    pub(super) fn fault_name(
        &mut self,
        item: &Node,
        path: &str,
        seen: &mut BTreeSet<String>,
    ) -> Option<String> {
        let n = item.get("name")?;
        let p = child_path(path, "name");
        let name: String = self.cx.de(n, &p)?;
        if let Err(inv) = check::entry_name("fault", &name) {
            self.cx.invalid(n.span, &p, inv);
            return None;
        }
        if !seen.insert(name.clone()) {
            self.cx.error(
                n.span,
                &p,
                format!("fault name `{name}` is used twice"),
                Some(
                    "give each fault its own name: reports and `after:` tell them apart by it"
                        .into(),
                ),
            );
            return None;
        }
        Some(name)
    }

    /// Remembers the fault names of a probe's `after:` (one name or a list) for
    /// [`Builder::attribute`], which knows the faults.
    pub(super) fn after_refs(&mut self, probe: &str, node: &Node, path: &str) {
        let Some(n) = node.get("after") else {
            return;
        };
        let p = child_path(path, "after");
        let items: Vec<(&Node, String)> = match &n.kind {
            Kind::Seq(items) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| (item, format!("{p}[{i}]")))
                .collect(),
            Kind::Seq(_) | Kind::Null => {
                self.cx.error(
                    n.span,
                    &p,
                    "`after` names no fault",
                    Some("write `after: <fault name>` or a list of fault names, or drop it".into()),
                );
                return;
            }
            _ => vec![(n, p.clone())],
        };
        for (item, ipath) in items {
            if let Some(name) = self.cx.de::<String>(item, &ipath) {
                self.refs_after.push((
                    probe.to_string(),
                    Reference {
                        name,
                        span: item.span,
                        path: ipath,
                    },
                ));
            }
        }
    }

    /// Sets each probe's `watches`: its `after:`, else what the file makes clear. In a trial
    /// that mixes faults acting once with faults held for a duration, a recovery probe that
    /// is attributed neither way is an error that asks for `after:`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attribute(
        &mut self,
        root: &Node,
        probes: &mut [ProbeSpec],
        recovery_probes: &[String],
        faults: &[FaultSpec],
        names: &[Option<String>],
        targets: &[Target],
        proxies: &[ProxyDecl],
    ) {
        let named: Vec<&str> = names.iter().flatten().map(String::as_str).collect();
        let refs = std::mem::take(&mut self.refs_after);
        // A probe with an `after:` is attributed, even when a name in it is wrong (that is
        // its own error).
        let explicit: BTreeSet<String> = refs.iter().map(|(p, _)| p.clone()).collect();
        for (probe, r) in refs {
            let Some(i) = names
                .iter()
                .position(|n| n.as_deref() == Some(r.name.as_str()))
            else {
                let help = if named.is_empty() {
                    Some(format!(
                        "no fault has a name yet: add `name: {}` to the fault this probe measures",
                        r.name
                    ))
                } else {
                    suggest(&r.name, named.iter().copied())
                        .or_else(|| Some(format!("fault names: {}", named.join(", "))))
                };
                self.cx
                    .error(r.span, &r.path, format!("unknown fault `{}`", r.name), help);
                continue;
            };
            if let Some(p) = probes.iter_mut().find(|p| p.name == probe) {
                let w = p.watches.get_or_insert_with(Vec::new);
                if !w.contains(&i) {
                    w.push(i);
                }
            }
        }
        for p in probes.iter_mut().filter(|p| p.watches.is_none()) {
            let derived: Vec<usize> = faults
                .iter()
                .enumerate()
                .filter(|(_, f)| acts_on(f, p, targets, proxies))
                .map(|(i, _)| i)
                .collect();
            if !derived.is_empty() {
                p.watches = Some(derived);
            }
        }

        let once: Vec<String> = kinds_of(faults, names, false);
        let held: Vec<String> = kinds_of(faults, names, true);
        if once.is_empty() || held.is_empty() {
            return;
        }
        for p in probes.iter().filter(|p| {
            p.watches.is_none() && recovery_probes.contains(&p.name) && !explicit.contains(&p.name)
        }) {
            let span = root
                .get("probes")
                .and_then(Node::entries)
                .and_then(|es| es.iter().find(|e| e.key == p.name))
                .map_or(root.span, |e| e.key_span);
            let help = if named.is_empty() {
                "name the faults (`name: kill-web`) and add `after: <fault name>` to the probe: its time to recover then counts from that fault's injection, or from its removal if it is held".to_string()
            } else {
                format!(
                    "add `after: <fault name>` to the probe ({}): its time to recover then counts from that fault's injection, or from its removal if it is held",
                    named.join(", ")
                )
            };
            self.cx.error(
                span,
                &format!("probes.{}", p.name),
                format!(
                    "recovery probe `{}` measures which fault? This drill has faults that act once ({}) and faults held for a duration ({}), and their times to recover count from different instants",
                    p.name,
                    once.join(", "),
                    held.join(", ")
                ),
                Some(help),
            );
        }
    }
}

/// How a fault is called in messages: its name, else its kind.
fn kinds_of(faults: &[FaultSpec], names: &[Option<String>], held: bool) -> Vec<String> {
    faults
        .iter()
        .zip(names)
        .filter(|(f, _)| f.duration().is_some() == held)
        .map(|(f, n)| n.clone().unwrap_or_else(|| f.kind().to_string()))
        .collect()
}

/// Whether the file makes clear that `fault` acts on what `probe` watches.
fn acts_on(
    fault: &FaultSpec,
    probe: &ProbeSpec,
    targets: &[Target],
    proxies: &[ProxyDecl],
) -> bool {
    let workload_of = |target: &str| -> Option<&WorkloadRef> {
        match &targets.iter().find(|t| t.name == target)?.kind {
            TargetKind::Kubernetes(k) => k.workload.as_ref(),
            TargetKind::Process(_) | TargetKind::Nodes(_) => None,
        }
    };
    match (&probe.kind, fault) {
        (ProbeKind::Kubernetes(k), _) => fault
            .pod_target()
            .is_some_and(|target| workload_of(target) == Some(&k.workload)),
        (ProbeKind::Http(h), FaultSpec::Network(n)) => proxy_of(n, proxies)
            .is_some_and(|listen| http_addr(&h.url).is_some_and(|a| same(a, listen))),
        (ProbeKind::Tcp(t), FaultSpec::Network(n)) => proxy_of(n, proxies)
            .is_some_and(|listen| host_port(&t.address).is_some_and(|a| same(a, listen))),
        _ => false,
    }
}

fn proxy_of(
    n: &crate::experiment::model::network::NetworkSpec,
    proxies: &[ProxyDecl],
) -> Option<SocketAddr> {
    match &n.on {
        Backend::Proxy(name) => proxies.iter().find(|p| &p.name == name).map(|p| p.listen),
        _ => None,
    }
}

/// The host and port an http(s) URL connects to.
fn http_addr(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    match host_port(authority) {
        Some(a) => Some(a),
        None => Some((
            authority.trim_matches(['[', ']']).to_string(),
            if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            },
        )),
    }
}

/// `host:port` or `[v6]:port`.
fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    Some((
        host.trim_matches(['[', ']']).to_string(),
        port.parse().ok()?,
    ))
}

fn same((host, port): (String, u16), listen: SocketAddr) -> bool {
    port == listen.port()
        && match host.parse::<IpAddr>() {
            Ok(ip) => ip == listen.ip() || (ip.is_loopback() && listen.ip().is_loopback()),
            Err(_) => host.eq_ignore_ascii_case("localhost") && listen.ip().is_loopback(),
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_url_names_the_address_it_connects_to() {
        let listen: SocketAddr = "127.0.0.1:18080".parse().unwrap();
        for url in [
            "http://127.0.0.1:18080/",
            "http://localhost:18080/healthz?x=1",
            "http://user@127.0.0.1:18080",
        ] {
            assert!(same(http_addr(url).unwrap(), listen), "{url}");
        }
        assert!(!same(http_addr("http://127.0.0.1:18081/").unwrap(), listen));
        assert!(!same(http_addr("http://127.0.0.1/").unwrap(), listen));
        assert_eq!(http_addr("https://db.example/").unwrap().1, 443);
    }
}
