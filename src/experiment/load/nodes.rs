//! The `nodes` target and the node faults (`node-drain`, `node-down`, `zone-outage`).

use super::*;
use crate::experiment::model::node::{
    DrainSpec, NodeAction, NodeFaultKind, NodeFaultSpec, NodeSelection, NodeTarget, PowerProvider,
    ZoneChoice,
};

impl Builder<'_, '_> {
    pub(super) fn node_target(&mut self, n: &Node, path: &str) -> Option<NodeTarget> {
        let raw: RawNodeTarget = self.cx.de(n, path)?;
        let ok_before = self.cx.diags.len();
        for name in &raw.names {
            if !check::is_dns_subdomain(name) {
                self.cx.error(
                    at(n, "names"),
                    &child_path(path, "names"),
                    format!("invalid node name `{name}`"),
                    Some(
                        "node names are DNS subdomains: lowercase letters, digits, `-` and `.`"
                            .into(),
                    ),
                );
            }
        }
        if let Some(sel) = &raw.selector {
            if let Err(inv) = check::label_selector(sel) {
                self.cx
                    .invalid(at(n, "selector"), &child_path(path, "selector"), inv);
            }
        }
        if raw.names.is_empty() && raw.selector.is_none() && raw.zone.is_none() {
            self.cx.error(
                n.span,
                path,
                "a nodes target needs `names`, `selector` or `zone`",
                Some("say which machines may be taken, e.g. `nodes: { selector: pool=web, count: 1 }`".into()),
            );
        }
        let amount = match (raw.count, raw.percent) {
            (Some(_), Some(_)) => {
                self.cx.error(
                    at(n, "percent"),
                    &child_path(path, "percent"),
                    "`count` and `percent` cannot both be set",
                    Some(
                        "choose a number of nodes (`count`) or a share of them (`percent`)".into(),
                    ),
                );
                Amount::Count(1)
            }
            (Some(c), None) => {
                if c < 1 || c > i64::from(u32::MAX) {
                    self.cx.error(
                        at(n, "count"),
                        &child_path(path, "count"),
                        format!("count must be at least 1, found {c}"),
                        Some("count is how many of the matching nodes the fault takes".into()),
                    );
                }
                Amount::Count(u32::try_from(c).unwrap_or(1))
            }
            (None, Some(Percent(p))) => {
                self.percent(n, path, "percent", p);
                Amount::Percent(u8::try_from(p.clamp(1, 100)).unwrap_or(1))
            }
            (None, None) if !raw.names.is_empty() => {
                Amount::Count(u32::try_from(raw.names.len()).unwrap_or(u32::MAX))
            }
            (None, None) => Amount::Count(1),
        };
        let max_nodes = match raw.max_nodes {
            None => 1,
            Some(m) => u32::try_from(m)
                .ok()
                .filter(|m| *m >= 1)
                .unwrap_or_else(|| {
                    self.cx.error(
                        at(n, "max-nodes"),
                        &child_path(path, "max-nodes"),
                        format!("max-nodes must be at least 1, found {m}"),
                        Some("max-nodes caps how many nodes one injection may take".into()),
                    );
                    1
                }),
        };
        let max_percent = self.max_percent(n, path, raw.max_percent, 34);
        if self.cx.diags.len() != ok_before {
            return None;
        }
        Some(NodeTarget {
            names: raw.names,
            selector: raw.selector,
            zone: raw.zone,
            amount,
            max_nodes,
            max_percent,
        })
    }

    /// A share of the ready nodes, 1..=99: a node fault never takes every node.
    fn max_percent(&mut self, n: &Node, path: &str, raw: Option<Percent>, default: u8) -> u8 {
        match raw {
            None => default,
            Some(Percent(p)) if (1..=99).contains(&p) => p as u8,
            Some(Percent(p)) => {
                self.cx.error(
                    at(n, "max-percent"),
                    &child_path(path, "max-percent"),
                    format!("max-percent must be between 1 and 99, found {p}"),
                    Some("it caps the share of the ready nodes one injection may take; a drill never takes them all".into()),
                );
                default
            }
        }
    }

    fn percent(&mut self, n: &Node, path: &str, key: &str, p: i64) {
        if !(1..=100).contains(&p) {
            self.cx.error(
                at(n, key),
                &child_path(path, key),
                format!("{key} must be between 1 and 100, found {p}"),
                None,
            );
        }
    }

    fn power_provider(
        &mut self,
        n: &Node,
        path: &str,
        raw: Option<RawPowerProvider>,
    ) -> Option<PowerProvider> {
        match raw {
            None => {
                self.cx.error(
                    n.span,
                    &child_path(path, "provider"),
                    "a machine going down needs a `provider`",
                    Some("`provider: simulated` on firedrill's simulated cluster; elsewhere `provider: { command: { stop: [...], start: [...] } }` (a cloud CLI; the node is in $FIREDRILL_NODE)".into()),
                );
                None
            }
            Some(RawPowerProvider::Simulated) => Some(PowerProvider::Simulated),
            Some(RawPowerProvider::Command {
                stop,
                start,
                timeout,
            }) => {
                let p = child_path(&child_path(path, "provider"), "command");
                let body = n
                    .get("provider")
                    .and_then(|p| p.get("command"))
                    .unwrap_or(n);
                self.argv(body, &p, "stop", &stop);
                self.argv(body, &p, "start", &start);
                let timeout = self.opt_duration(
                    body,
                    &p,
                    "timeout",
                    timeout,
                    Limit::new(Duration::from_secs(600), MS, DAY),
                );
                Some(PowerProvider::Command {
                    stop,
                    start,
                    timeout,
                })
            }
        }
    }

    fn drain_spec(
        &mut self,
        n: &Node,
        path: &str,
        grace: Option<Dur>,
        timeout: Option<Dur>,
    ) -> DrainSpec {
        let grace_period = grace.map(|g| {
            self.opt_duration(
                n,
                path,
                "grace-period",
                Some(g),
                Limit::new(Duration::ZERO, Duration::ZERO, HOUR),
            )
        });
        let timeout = self.opt_duration(
            n,
            path,
            "timeout",
            timeout,
            Limit::new(Duration::from_secs(300), MS, DAY),
        );
        DrainSpec {
            grace_period,
            timeout,
        }
    }

    fn not_ready_within(&mut self, n: &Node, path: &str, raw: Option<Dur>) -> Duration {
        self.opt_duration(
            n,
            path,
            "not-ready-within",
            raw,
            Limit::new(Duration::from_secs(300), MS, DAY),
        )
    }

    /// Keys that belong to the other way of taking a node out.
    fn not_for(&mut self, n: &Node, path: &str, keys: &[&str], why: &str) {
        for key in keys {
            if n.get(key).is_some() {
                self.cx.error(
                    at(n, key),
                    &child_path(path, key),
                    format!("`{key}` has no use here: {why}"),
                    Some(format!("remove `{key}`")),
                );
            }
        }
    }

    pub(super) fn node_fault(
        &mut self,
        kind: NodeFaultKind,
        n: &Node,
        path: &str,
    ) -> Option<NodeFaultSpec> {
        if kind == NodeFaultKind::ZoneOutage {
            return self.zone_outage(n, path);
        }
        let raw: RawNodeFault = self.cx.de(n, path)?;
        let action = match kind {
            NodeFaultKind::NodeDrain => {
                self.not_for(
                    n,
                    path,
                    &["provider", "not-ready-within"],
                    "a drain evicts the pods through the API; `node-down` stops the machine",
                );
                NodeAction::Drain(self.drain_spec(n, path, raw.grace_period, raw.timeout))
            }
            _ => {
                self.not_for(
                    n,
                    path,
                    &["grace-period", "timeout"],
                    "a machine that goes down gives its pods no grace; `node-drain` evicts them",
                );
                NodeAction::Down(self.power_provider(n, path, raw.provider)?)
            }
        };
        let not_ready_within = self.not_ready_within(n, path, raw.not_ready_within);
        Some(NodeFaultSpec {
            kind,
            selection: NodeSelection::Target(raw.target),
            action,
            allow_protected: raw.allow_protected,
            not_ready_within,
        })
    }

    fn zone_outage(&mut self, n: &Node, path: &str) -> Option<NodeFaultSpec> {
        let raw: RawZoneOutage = self.cx.de(n, path)?;
        let zone = match raw.zone.as_str() {
            "random" => None,
            z if z.trim().is_empty() => {
                self.cx.error(
                    at(n, "zone"),
                    &child_path(path, "zone"),
                    "`zone` is empty",
                    Some(
                        "name the zone (its `topology.kubernetes.io/zone` value) or write `random`"
                            .into(),
                    ),
                );
                None
            }
            z => Some(z.to_string()),
        };
        let action = match raw.by.as_str() {
            "drain" => {
                self.not_for(
                    n,
                    path,
                    &["provider", "not-ready-within"],
                    "`by: drain` evicts the pods through the API",
                );
                NodeAction::Drain(self.drain_spec(n, path, raw.grace_period, raw.timeout))
            }
            "down" => {
                self.not_for(
                    n,
                    path,
                    &["grace-period", "timeout"],
                    "machines that go down give their pods no grace",
                );
                NodeAction::Down(self.power_provider(n, path, raw.provider)?)
            }
            other => {
                self.cx.error(
                    at(n, "by"),
                    &child_path(path, "by"),
                    format!("unknown way `{other}` to take a zone out"),
                    Some(
                        suggest(other, ["drain", "down"])
                            .unwrap_or_else(|| "write `by: drain` or `by: down`".into()),
                    ),
                );
                return None;
            }
        };
        let max_percent = self.max_percent(n, path, raw.max_percent, 50);
        let not_ready_within = self.not_ready_within(n, path, raw.not_ready_within);
        Some(NodeFaultSpec {
            kind: NodeFaultKind::ZoneOutage,
            selection: NodeSelection::Zone(ZoneChoice { zone, max_percent }),
            action,
            allow_protected: raw.allow_protected,
            not_ready_within,
        })
    }
}
