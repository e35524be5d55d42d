//! The `faults:` section: one kind per entry ([`FaultKind`]), each read by its own rules;
//! network kinds are read in [`super::network`].

use super::*;
use crate::experiment::model::node::NodeFaultKind;

impl Builder<'_, '_> {
    pub(super) fn faults(
        &mut self,
        root: &Node,
        proxies: &[String],
    ) -> (Vec<FaultSpec>, Vec<Option<String>>) {
        let mut out = Vec::new();
        let mut names = Vec::new();
        let Some(n) = root.get("faults") else {
            return (out, names);
        };
        let items = match &n.kind {
            Kind::Seq(items) if !items.is_empty() => items,
            Kind::Seq(_) | Kind::Null => {
                self.cx.error(
                    n.span,
                    "faults",
                    "at least one fault is needed",
                    Some("e.g. `faults: [ { pod-kill: { target: my-pods } } ]`".into()),
                );
                return (out, names);
            }
            _ => {
                self.cx.error(
                    n.span,
                    "faults",
                    format!("expected a list of faults, found {}", n.describe()),
                    Some(
                        "write each fault as a list item: `- pod-kill: { target: my-pods }`".into(),
                    ),
                );
                return (out, names);
            }
        };
        let mut seen_names = BTreeSet::new();
        let fault_keys = FaultKind::ALL.map(FaultKind::key);
        for (i, item) in items.iter().enumerate() {
            let path = format!("faults[{i}]");
            let Some(split) = split_kind(
                &mut self.cx,
                item,
                &path,
                "fault",
                &fault_keys,
                &["name", "wait"],
            ) else {
                continue;
            };
            let name = self.fault_name(item, &path, &mut seen_names);
            // split_kind only accepts the keys of FAULT_KINDS.
            let Some(kind) = FaultKind::parse(split.kind) else {
                continue;
            };
            let bpath = child_path(&path, split.kind);
            let body = split.body;
            // Recorded from the node, so a typo elsewhere in this fault does not turn into an
            // "unused target" or hide a bad reference.
            let wanted = match kind {
                FaultKind::PodKill => Some("kubernetes"),
                FaultKind::ProcessKill => Some("process"),
                FaultKind::Node(n) if n != NodeFaultKind::ZoneOutage => Some("nodes"),
                FaultKind::Command
                | FaultKind::DbFailover
                | FaultKind::Network(_)
                | FaultKind::Node(_) => None,
            };
            if let (Some(kind), Some(t)) = (wanted, body.get("target").filter(|t| t.is_scalar())) {
                self.use_target(body, &bpath, &t.raw, kind);
            }
            // db-failover's kill-primary on Kubernetes names the database's pods.
            if let Some(kp) = (kind == FaultKind::DbFailover)
                .then(|| body.get("provider")?.get("kill-primary"))
                .flatten()
            {
                if let Some(t) = kp.get("target").filter(|t| t.is_scalar()) {
                    let kp_path = child_path(&child_path(&bpath, "provider"), "kill-primary");
                    self.use_target(kp, &kp_path, &t.raw, "kubernetes");
                }
            }
            let spec = match kind {
                FaultKind::PodKill => self.cx.de::<RawPodKill>(body, &bpath).map(|raw| {
                    let grace = self.opt_duration(
                        body,
                        &bpath,
                        "grace-period",
                        raw.grace_period,
                        Limit::new(Duration::ZERO, Duration::ZERO, HOUR),
                    );
                    FaultSpec::PodKill {
                        target: raw.target,
                        grace_period: grace,
                    }
                }),
                FaultKind::ProcessKill => self.cx.de::<RawProcessKill>(body, &bpath).map(|raw| {
                    let signal = match raw.signal {
                        None => "SIGKILL".to_string(),
                        Some(s) => check::signal(&s).unwrap_or_else(|inv| {
                            self.cx
                                .invalid(at(body, "signal"), &child_path(&bpath, "signal"), inv);
                            s
                        }),
                    };
                    FaultSpec::ProcessKill {
                        target: raw.target,
                        signal,
                    }
                }),
                FaultKind::Node(kind) => self.node_fault(kind, body, &bpath).map(FaultSpec::Node),
                FaultKind::Network(kind) => self
                    .network(kind, body, &bpath, proxies)
                    .map(FaultSpec::Network),
                FaultKind::DbFailover => self.cx.de::<DbFailoverSpec>(body, &bpath).map(|spec| {
                    self.db_failover(body, &bpath, &spec);
                    FaultSpec::DbFailover(spec)
                }),
                FaultKind::Command => self.cx.de::<RawCommandFault>(body, &bpath).map(|raw| {
                    self.argv(body, &bpath, "run", &raw.run);
                    if let Some(r) = &raw.revert {
                        self.argv(body, &bpath, "revert", r);
                    }
                    let timeout = self.opt_duration(
                        body,
                        &bpath,
                        "timeout",
                        raw.timeout,
                        Limit::new(Duration::from_secs(30), MS, DAY),
                    );
                    FaultSpec::Command {
                        run: raw.run,
                        revert: raw.revert,
                        timeout,
                    }
                }),
            };
            if let Some(spec) = spec {
                out.push(spec);
                names.push(name);
            }
        }
        (out, names)
    }

    pub(super) fn db_failover(
        &mut self,
        n: &Node,
        path: &str,
        spec: &crate::experiment::model::db_failover::DbFailoverSpec,
    ) {
        use crate::experiment::model::db_failover::{DbFailoverProvider, RoleLabels};
        if spec.needs_patroni() && spec.patroni.is_empty() {
            self.cx.error(
                at(n, "provider"),
                &child_path(path, "patroni"),
                "this provider needs the Patroni REST API",
                Some("list the members' REST URLs: `patroni: [\"http://127.0.0.1:8008\", \"http://127.0.0.1:8009\"]`".into()),
            );
        }
        for u in &spec.patroni {
            if reqwest::Url::parse(u).map(|u| u.scheme() == "http" || u.scheme() == "https")
                != Ok(true)
            {
                self.cx.error(
                    at(n, "patroni"),
                    &child_path(path, "patroni"),
                    format!("invalid Patroni REST URL `{u}`"),
                    Some("write e.g. `http://127.0.0.1:8008`".into()),
                );
            }
        }
        if let DbFailoverProvider::Command { run } = &spec.provider {
            self.argv(n, path, "provider", run);
        }
        if let DbFailoverProvider::KillPrimary {
            data_dir,
            target,
            labels,
            grace_period,
        } = &spec.provider
        {
            let kp_path = child_path(&child_path(path, "provider"), "kill-primary");
            let kp = n
                .get("provider")
                .and_then(|p| p.get("kill-primary"))
                .unwrap_or(n);
            if data_dir.is_some() && target.is_some() {
                self.cx.error(
                    at(kp, "target"),
                    &child_path(&kp_path, "target"),
                    "`data-dir` and `target` cannot both be set",
                    Some("`data-dir` kills a postmaster on this host; `target` deletes the primary's pod on Kubernetes".into()),
                );
            }
            if target.is_none() {
                for (key, set) in [
                    ("labels", labels.is_some()),
                    ("grace-period", grace_period.is_some()),
                ] {
                    if set {
                        self.cx.error(
                            at(kp, key),
                            &child_path(&kp_path, key),
                            format!("`{key}` is for killing the primary's pod, and needs `target`"),
                            Some("name the kubernetes target that matches the database's pods: `target: orders-db`".into()),
                        );
                    }
                }
            }
            if *labels == Some(RoleLabels::CloudnativePg) && !spec.patroni.is_empty() {
                self.cx.error(
                    at(n, "patroni"),
                    &child_path(path, "patroni"),
                    "CloudNativePG runs without Patroni, so `patroni` has no use here",
                    Some(format!(
                        "drop `patroni`: the primary is the pod labelled {}",
                        RoleLabels::CloudnativePg.describe()
                    )),
                );
            }
            if grace_period.is_some_and(|g| g > HOUR) {
                self.cx.error(
                    at(kp, "grace-period"),
                    &child_path(&kp_path, "grace-period"),
                    "`grace-period` must be at most 1h",
                    Some("0s kills the primary hard, as a crash would".into()),
                );
            }
        }
    }
}
