//! Names used before they are known: probe, fault and target references, checked once every
//! section has been read.

use super::*;

impl Builder<'_, '_> {
    pub(super) fn check_references(&mut self, probes: &[String]) {
        let refs = std::mem::take(&mut self.refs_probe);
        for r in refs {
            if !probes.contains(&r.name) {
                let help = suggest(&r.name, probes.iter().map(String::as_str));
                self.cx
                    .error(r.span, &r.path, format!("unknown probe `{}`", r.name), help);
            }
        }
        let uses = std::mem::take(&mut self.target_uses);
        let targets = std::mem::take(&mut self.declared_targets);
        for (r, want) in &uses {
            match targets.iter().find(|t| t.0 == r.name) {
                None => {
                    let help = suggest(&r.name, targets.iter().map(|t| t.0.as_str()));
                    self.cx.error(
                        r.span,
                        &r.path,
                        format!("unknown target `{}`", r.name),
                        help,
                    );
                }
                Some((_, Some(have), _, _)) if have != want => {
                    let kill_primary = r.path.contains("kill-primary");
                    let fault = if kill_primary {
                        "kill-primary"
                    } else if *want == "nodes" {
                        "node-drain` or `node-down"
                    } else if *want == "kubernetes" {
                        "pod-kill"
                    } else {
                        "process-kill"
                    };
                    let help = if *want == "nodes" {
                        format!("point it at a `nodes` target, e.g. `nodes: {{ zone: zone-a, count: 1 }}`; `{}` is a {have} target", r.name)
                    } else if *have == "nodes" {
                        "a `nodes` target is for `node-drain` and `node-down`".to_string()
                    } else if kill_primary {
                        "on this host kill-primary finds the postmaster through Patroni: drop `target` (give `data-dir` if the port is not on its command line)".to_string()
                    } else if *want == "kubernetes" {
                        format!("use `process-kill` for {have} targets")
                    } else {
                        format!("use `pod-kill` for {have} targets")
                    };
                    self.cx.error(
                        r.span,
                        &r.path,
                        format!(
                            "`{fault}` needs a {want} target, but `{}` is a {have} target",
                            r.name
                        ),
                        Some(help),
                    );
                }
                Some(_) => {}
            }
        }
        // Only on an otherwise clean file: next to errors it is noise, and a fault that failed
        // to parse may well be the one that meant to use the target.
        if self.cx.has_errors() {
            return;
        }
        for (name, _, span, path) in targets {
            if !uses.iter().any(|(r, _)| r.name == name) {
                self.cx.warn(
                    span,
                    &path,
                    format!("target `{name}` is not used by any fault"),
                    Some("remove it, or reference it from a fault's `target`".into()),
                );
            }
        }
    }
}
