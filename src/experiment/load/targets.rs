//! The `targets:` section: Kubernetes workloads, nodes and local processes that faults act on.

use super::*;

const TARGET_KINDS: &[&str] = &["kubernetes", "process", "nodes"];

impl Builder<'_, '_> {
    pub(super) fn targets(&mut self, root: &Node) -> Vec<Target> {
        let mut out = Vec::new();
        for (name, span, node, path) in self.named_entries(root, "targets", "target") {
            let kind = node
                .entries()
                .and_then(|es| {
                    es.iter()
                        .find_map(|e| TARGET_KINDS.iter().find(|k| **k == e.key))
                })
                .copied();
            self.declared_targets
                .push((name.to_string(), kind, span, path.clone()));
            let Some(split) = split_kind(&mut self.cx, node, &path, "target", TARGET_KINDS, &[])
            else {
                continue;
            };
            let bpath = child_path(&path, split.kind);
            let kind = match split.kind {
                "kubernetes" => self
                    .kube_target(split.body, &bpath)
                    .map(TargetKind::Kubernetes),
                "nodes" => self.node_target(split.body, &bpath).map(TargetKind::Nodes),
                _ => self
                    .process_target(split.body, &bpath)
                    .map(TargetKind::Process),
            };
            if let Some(kind) = kind {
                out.push(Target {
                    name: name.to_string(),
                    kind,
                });
            }
        }
        out
    }

    pub(super) fn kube_target(&mut self, n: &Node, path: &str) -> Option<KubeTarget> {
        let raw: RawKubeTarget = self.cx.de(n, path)?;
        let ok_before = self.cx.diags.len();
        if !check::is_dns_label(&raw.namespace) {
            self.cx.error(
                at(n, "namespace"),
                &child_path(path, "namespace"),
                format!("invalid namespace `{}`", raw.namespace),
                Some(
                    "namespaces use lowercase letters, digits and `-` (at most 63 characters)"
                        .into(),
                ),
            );
        }
        if let Err(inv) = check::label_selector(&raw.selector) {
            self.cx
                .invalid(at(n, "selector"), &child_path(path, "selector"), inv);
        }
        let workload = raw.workload.as_deref().and_then(|w| {
            let r = workload_ref(w, &raw.namespace);
            r.map_err(|inv| {
                self.cx
                    .invalid(at(n, "workload"), &child_path(path, "workload"), inv);
            })
            .ok()
        });
        let amount = match (raw.count, raw.percent) {
            (Some(_), Some(_)) => {
                self.cx.error(
                    at(n, "percent"),
                    &child_path(path, "percent"),
                    "`count` and `percent` cannot both be set",
                    Some(
                        "choose a fixed number of pods (`count`) or a share of them (`percent`)"
                            .into(),
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
                        Some("count is how many pods the fault hits".into()),
                    );
                }
                Amount::Count(u32::try_from(c).unwrap_or(1))
            }
            (None, Some(Percent(p))) => {
                if !(1..=100).contains(&p) {
                    self.cx.error(
                        at(n, "percent"),
                        &child_path(path, "percent"),
                        format!("percent must be between 1 and 100, found {p}"),
                        None,
                    );
                }
                Amount::Percent(u8::try_from(p.clamp(1, 100)).unwrap_or(1))
            }
            (None, None) => Amount::Count(1),
        };
        let max_targets = raw.max_targets.map(|m| {
            if m < 1 || m > i64::from(u32::MAX) {
                self.cx.error(
                    at(n, "max-targets"),
                    &child_path(path, "max-targets"),
                    format!("max-targets must be at least 1, found {m}"),
                    Some("max-targets caps how many pods one injection may hit".into()),
                );
            }
            u32::try_from(m).unwrap_or(1)
        });
        if self.cx.diags.len() != ok_before {
            return None;
        }
        Some(KubeTarget {
            namespace: raw.namespace,
            selector: raw.selector,
            workload,
            amount,
            max_targets,
        })
    }

    pub(super) fn process_target(&mut self, n: &Node, path: &str) -> Option<ProcessTarget> {
        let raw: RawProcessTarget = self.cx.de(n, path)?;
        let max_targets = match raw.max_targets {
            None => 1,
            Some(m) if raw.pid_file.is_some() => {
                self.cx.error(
                    at(n, "max-targets"),
                    &child_path(path, "max-targets"),
                    format!("max-targets ({m}) applies to `command-line` targets only"),
                    Some("a pid file names one process".into()),
                );
                return None;
            }
            Some(m) => match u32::try_from(m) {
                Ok(m) if m >= 1 => m,
                _ => {
                    self.cx.error(
                        at(n, "max-targets"),
                        &child_path(path, "max-targets"),
                        format!("max-targets must be at least 1, found {m}"),
                        Some("max-targets caps how many processes one injection may signal".into()),
                    );
                    return None;
                }
            },
        };
        match (raw.pid_file, raw.command_line) {
            (Some(p), None) if !p.is_empty() => Some(ProcessTarget::PidFile(PathBuf::from(p))),
            (None, Some(c)) if !c.trim().is_empty() => Some(ProcessTarget::CommandLine {
                line: c,
                max_targets,
            }),
            (Some(_), Some(_)) => {
                self.cx.error(
                    at(n, "command-line"),
                    &child_path(path, "command-line"),
                    "`pid-file` and `command-line` cannot both be set",
                    Some("choose one way to find the process".into()),
                );
                None
            }
            (None, None) => {
                self.cx.error(
                    n.span,
                    path,
                    "a process target needs `pid-file` or `command-line`",
                    Some("e.g. `process: { pid-file: /run/demo.pid }`".into()),
                );
                None
            }
            (p, _) => {
                let key = if p.is_some() {
                    "pid-file"
                } else {
                    "command-line"
                };
                self.cx.error(
                    at(n, key),
                    &child_path(path, key),
                    format!("`{key}` is empty"),
                    None,
                );
                None
            }
        }
    }

    pub(super) fn use_target(&mut self, body: &Node, path: &str, name: &str, kind: &'static str) {
        self.target_uses.push((
            Reference {
                name: name.to_string(),
                span: at(body, "target"),
                path: child_path(path, "target"),
            },
            kind,
        ));
    }
}

/// `deployment/NAME` (or `statefulset/`, `replicaset/`) in the target's namespace.
fn workload_ref(text: &str, namespace: &str) -> Result<WorkloadRef, Invalid> {
    let help = "write `deployment/NAME`, `statefulset/NAME` or `replicaset/NAME`";
    let Some((kind, name)) = text.split_once('/') else {
        return Err(Invalid::new(format!("invalid workload `{text}`")).help(help));
    };
    let kind = match kind {
        "deployment" => WorkloadKind::Deployment,
        "statefulset" => WorkloadKind::StatefulSet,
        "replicaset" => WorkloadKind::ReplicaSet,
        other => {
            return Err(
                Invalid::new(format!("unknown workload kind `{other}`")).help(
                    suggest(other, ["deployment", "statefulset", "replicaset"])
                        .unwrap_or_else(|| help.into()),
                ),
            )
        }
    };
    if !check::is_dns_subdomain(name) {
        return Err(Invalid::new(format!("invalid workload name `{name}`"))
            .help("workload names use lowercase letters, digits, `-` and `.`"));
    }
    Ok(WorkloadRef {
        kind,
        namespace: namespace.to_string(),
        name: name.to_string(),
    })
}
