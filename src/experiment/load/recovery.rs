//! The `recovery:` and `abort-when:` sections: how fast the system must heal, and when a
//! drill stops early.

use super::*;

impl Builder<'_, '_> {
    pub(super) fn recovery(&mut self, n: &Node, all_probes: &[String]) -> Option<Recovery> {
        if n.is_scalar() {
            self.cx.error(
                n.span,
                "recovery",
                format!("expected a mapping, found {}", n.describe()),
                Some(format!(
                    "write `recovery: {{ objective: {} }}`",
                    if n.raw.is_empty() { "30s" } else { &n.raw }
                )),
            );
            return None;
        }
        let raw: RawRecovery = self.cx.de(n, "recovery")?;
        let p = "recovery";
        let objective = self.opt_duration(
            n,
            p,
            "objective",
            Some(raw.objective),
            Limit::new(Duration::ZERO, MS, DAY),
        );
        let timeout = self.opt_duration(
            n,
            p,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(300), MS, DAY),
        );
        let stable_for = self.opt_duration(
            n,
            p,
            "stable-for",
            raw.stable_for,
            Limit::new(Duration::from_secs(3), Duration::ZERO, DAY),
        );
        if objective > timeout {
            self.cx.error(
                at(n, "objective"),
                "recovery.objective",
                format!(
                    "the objective ({}) is longer than the recovery timeout ({})",
                    check::format_duration(objective),
                    check::format_duration(timeout)
                ),
                Some("raise `recovery.timeout`; a drill gives up at the timeout, so a longer objective could never be met".into()),
            );
        }
        if stable_for >= timeout {
            self.cx.error(
                at(n, "stable-for"),
                "recovery.stable-for",
                format!(
                    "stable-for ({}) must be shorter than the recovery timeout ({})",
                    check::format_duration(stable_for),
                    check::format_duration(timeout)
                ),
                None,
            );
        }
        let probes = match (raw.probes, n.get("probes")) {
            (Some(list), Some(node)) => self.probe_refs(list, node, "recovery.probes"),
            _ => all_probes.to_vec(),
        };
        Some(Recovery {
            objective,
            stable_for,
            timeout,
            probes,
        })
    }

    pub(super) fn aborts(&mut self, root: &Node, faults: &[Option<String>]) -> Vec<AbortCondition> {
        let mut out = Vec::new();
        let Some(n) = root.get("abort-when") else {
            return out;
        };
        let items = match &n.kind {
            Kind::Seq(items) => items,
            Kind::Null => return out,
            _ => {
                self.cx.error(
                    n.span,
                    "abort-when",
                    format!(
                        "expected a list of abort conditions, found {}",
                        n.describe()
                    ),
                    Some("e.g. `abort-when: [ { probe: web, failing-for: 2m } ]`".into()),
                );
                return out;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("abort-when[{i}]");
            let Some(raw) = self.cx.de::<RawAbort>(item, &path) else {
                continue;
            };
            self.refs_probe.push(Reference {
                name: raw.probe.clone(),
                span: at(item, "probe"),
                path: child_path(&path, "probe"),
            });
            let after = raw
                .after
                .as_deref()
                .and_then(|name| self.abort_after(item, &path, name, faults));
            match (raw.failing_for, raw.error_rate, raw.window) {
                (Some(f), None, None) => {
                    let d = self.opt_duration(
                        item,
                        &path,
                        "failing-for",
                        Some(f),
                        Limit::new(f.0, MS, DAY),
                    );
                    out.push(AbortCondition::FailingFor {
                        probe: raw.probe,
                        duration: d,
                        after,
                    });
                }
                (None, Some(Rate(r)), Some(w)) => {
                    if !(r > 0.0 && r < 1.0) {
                        self.cx.error(
                            at(item, "error-rate"),
                            &child_path(&path, "error-rate"),
                            "error-rate must be above 0% and below 100%",
                            Some(
                                "write a fraction such as `0.5` or a percentage such as `50%`"
                                    .into(),
                            ),
                        );
                    }
                    let window =
                        self.opt_duration(item, &path, "window", Some(w), Limit::new(w.0, MS, DAY));
                    out.push(AbortCondition::ErrorRate {
                        probe: raw.probe,
                        above: r,
                        window,
                        after,
                    });
                }
                (None, Some(_), None) => self.cx.error(
                    item.span,
                    &path,
                    "`error-rate` needs a `window`",
                    Some("e.g. `{ probe: web, error-rate: 50%, window: 30s }`".into()),
                ),
                (None, None, Some(_)) => self.cx.error(
                    at(item, "window"),
                    &path,
                    "`window` is only used with `error-rate`",
                    Some("add `error-rate`, or use `failing-for` without a window".into()),
                ),
                (Some(_), Some(_), _) | (Some(_), _, Some(_)) => self.cx.error(
                    item.span,
                    &path,
                    "an abort condition has either `failing-for` or `error-rate`, not both",
                    Some("write them as two conditions".into()),
                ),
                (None, None, None) => self.cx.error(
                    item.span,
                    &path,
                    "an abort condition needs `failing-for` or `error-rate`",
                    Some("e.g. `{ probe: web, failing-for: 2m }`".into()),
                ),
            }
        }
        out
    }
}

impl Builder<'_, '_> {
    /// The fault an abort condition's `after:` names, by its `name:`.
    fn abort_after(
        &mut self,
        item: &Node,
        path: &str,
        name: &str,
        faults: &[Option<String>],
    ) -> Option<usize> {
        let found = faults.iter().position(|n| n.as_deref() == Some(name));
        if found.is_none() {
            let known: Vec<&str> = faults.iter().flatten().map(String::as_str).collect();
            let help = if known.is_empty() {
                Some(format!(
                    "no fault has a name yet: add `name: {name}` to the fault after which this condition counts"
                ))
            } else {
                suggest(name, known.iter().copied())
                    .or_else(|| Some(format!("fault names: {}", known.join(", "))))
            };
            self.cx.error(
                at(item, "after"),
                &child_path(path, "after"),
                format!("unknown fault `{name}`"),
                help,
            );
        }
        found
    }
}
