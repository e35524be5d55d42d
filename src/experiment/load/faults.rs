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
                | FaultKind::Node(_)
                | FaultKind::Restore => None,
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
                FaultKind::Restore => self
                    .cx
                    .de::<crate::experiment::model::restore::RestoreSpec>(body, &bpath)
                    .map(|spec| {
                        self.restore(body, &bpath, &spec);
                        FaultSpec::Restore(Box::new(spec))
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

    /// The `restore` fault's rules beyond its types.
    pub(super) fn restore(
        &mut self,
        n: &Node,
        path: &str,
        spec: &crate::experiment::model::restore::RestoreSpec,
    ) {
        use crate::experiment::model::restore::{RecoveryPoint, RestoreProvider};
        let scratch_needed = !matches!(spec.provider, RestoreProvider::Command { .. });
        match (&spec.scratch, scratch_needed) {
            (None, true) => self.cx.error(
                n.span,
                &child_path(path, "scratch"),
                format!(
                    "the `{}` provider restores into a scratch directory",
                    spec.provider.key()
                ),
                Some("add `scratch: /var/tmp/firedrill`: an existing directory on a disk with room for the database; firedrill creates its own directory in it and removes it afterwards".into()),
            ),
            (Some(_), false) => self.cx.error(
                at(n, "scratch"),
                &child_path(path, "scratch"),
                "the `command` provider restores where its command does",
                Some("drop `scratch`: the command's `teardown` removes what `run` created".into()),
            ),
            (Some(dir), true) if !dir.is_absolute() => self.cx.error(
                at(n, "scratch"),
                &child_path(path, "scratch"),
                format!("`scratch` must be an absolute path, not `{}`", dir.display()),
                Some("e.g. `scratch: /var/tmp/firedrill`".into()),
            ),
            _ => {}
        }
        if let RestoreProvider::Command { run, dsn, teardown } = &spec.provider {
            let p = n
                .get("provider")
                .and_then(|p| p.get("command"))
                .unwrap_or(n);
            let pp = child_path(&child_path(path, "provider"), "command");
            self.argv(p, &pp, "run", run);
            self.argv(p, &pp, "teardown", teardown);
            if dsn.trim().is_empty() {
                self.cx.error(
                    at(p, "dsn"),
                    &child_path(&pp, "dsn"),
                    "`dsn` is empty",
                    Some("the restored database's address, e.g. `host=127.0.0.1 port=55432 user=postgres dbname=postgres`".into()),
                );
            }
        }
        if let RestoreProvider::Pgbackrest { stanza, .. } = &spec.provider {
            if stanza.trim().is_empty() {
                self.cx.error(
                    at(n, "provider"),
                    &child_path(&child_path(path, "provider"), "pgbackrest"),
                    "`stanza` is empty",
                    Some("name the stanza as pgBackRest knows it, e.g. `stanza: main`".into()),
                );
            }
        }
        if spec.recovery_point == RecoveryPoint::RandomWithin(Duration::ZERO) {
            self.cx.error(
                at(n, "recovery-point"),
                &child_path(path, "recovery-point"),
                "`random-within` must be longer than 0",
                Some("e.g. `recovery-point: { random-within: 7d }`".into()),
            );
        }
        if spec.timeout.is_zero() {
            self.cx.error(
                at(n, "timeout"),
                &child_path(path, "timeout"),
                "`timeout` must be longer than 0",
                Some("bound the whole restore, e.g. `timeout: 2h`".into()),
            );
        }
        let mut seen = BTreeSet::new();
        for (i, v) in spec.validate.iter().enumerate() {
            let vp = format!("{}[{i}]", child_path(path, "validate"));
            if !seen.insert(v.name.as_str()) {
                self.cx.error(
                    at(n, "validate"),
                    &vp,
                    format!("two validations are named `{}`", v.name),
                    Some("give each validation its own name".into()),
                );
            }
            if v.query.trim().is_empty() {
                self.cx.error(
                    at(n, "validate"),
                    &vp,
                    format!("validation `{}` has an empty query", v.name),
                    Some("e.g. `query: select count(*) from orders`".into()),
                );
            }
        }
    }
}
