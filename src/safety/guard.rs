//! Guarding protected environments. A drill in an environment with `protected: true` runs only
//! when every one of these holds, checked before any mutating call:
//! 1. the environment was chosen with an explicit `--env`;
//! 2. the experiment lists it in `environments:`;
//! 3. the environment names a `kube-context` and it is the kubeconfig's current context (the
//!    operator's shell points at the cluster the drill will touch), when the drill needs
//!    Kubernetes — or the run is `--in-cluster`, in a CronJob `deploy` wrote for the
//!    environment (with `--allow-production`, see `schedule::deploy`);
//! 4. every node fault (a machine or a zone going down) says `allow-protected: true` on itself;
//! 5. a person confirmed by typing the environment's name on a terminal, or `--yes` was given.
//!
//! Anything else is refused with exit code 2 (the invocation is not authorized; nothing was
//! touched). Separately, the built-in `local` environment never talks to a real cluster: a
//! drill that needs Kubernetes under `local` must bring its own `simulation`.

use std::io::{BufRead, IsTerminal, Write};

/// What the guard looks at.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub environment: &'a str,
    pub protected: bool,
    pub env_explicit: bool,
    pub listed: bool,
    pub needs_kube: bool,
    /// The environment's `kube-context`.
    pub kube_context: Option<&'a str>,
    /// The kubeconfig's `current-context`, when one could be read.
    pub current_context: Option<&'a str>,
    /// `run --in-cluster`: the cluster the process runs in (a CronJob `deploy` wrote for
    /// this environment), which stands for the kube-context check.
    pub in_cluster: bool,
    pub yes: bool,
    /// The node faults (machines going down) that do not say `allow-protected: true`.
    pub unallowed_node_faults: Vec<String>,
}

/// Why a protected run was refused: every unmet condition, so one attempt shows them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("refusing to run in protected environment `{environment}`: {}", .unmet.join("; "))]
pub struct Refusal {
    pub environment: String,
    pub unmet: Vec<String>,
}

/// The conditions that do not need a person. `Ok(true)` means a confirmation is still needed.
pub fn check(r: &Request<'_>) -> Result<bool, Refusal> {
    if !r.protected {
        return Ok(false);
    }
    let mut unmet = Vec::new();
    if !r.env_explicit {
        unmet.push(format!(
            "choose it explicitly with `--env {}`",
            r.environment
        ));
    }
    if !r.listed {
        unmet.push(format!(
            "the experiment does not list `{}` in `environments:`",
            r.environment
        ));
    }
    if r.needs_kube && !r.in_cluster {
        match (r.kube_context, r.current_context) {
            (None, _) => unmet.push(
                "the environment has no `kube-context`; a protected cluster must be named".into(),
            ),
            (Some(want), Some(cur)) if want == cur => {}
            (Some(want), Some(cur)) => unmet.push(format!(
                "the kubeconfig's current context is `{cur}`, not the environment's `{want}`: run `kubectl config use-context {want}` first"
            )),
            (Some(want), None) => unmet.push(format!(
                "no current context in the kubeconfig; it must be the environment's `{want}`"
            )),
        }
    }
    for f in &r.unallowed_node_faults {
        unmet.push(format!(
            "fault `{f}` takes machines down; in a protected environment it must say so with `allow-protected: true`"
        ));
    }
    if !unmet.is_empty() {
        return Err(Refusal {
            environment: r.environment.into(),
            unmet,
        });
    }
    Ok(!r.yes)
}

/// Asks on the terminal to type the environment's name. Without a terminal, refuses.
pub fn confirm(environment: &str) -> Result<(), Refusal> {
    let refuse = |why: &str| Refusal {
        environment: environment.into(),
        unmet: vec![why.into()],
    };
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(refuse(
            "no terminal to confirm on: pass `--yes` to confirm non-interactively",
        ));
    }
    eprint!("environment `{environment}` is protected; type its name to run the drill: ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if stdin.lock().read_line(&mut line).is_err() || line.trim() != environment {
        return Err(refuse(
            "the confirmation did not match the environment's name",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_every_condition_together_authorizes() {
        for bits in 0u8..16 {
            let r = Request {
                environment: "production",
                protected: true,
                env_explicit: bits & 1 != 0,
                listed: bits & 2 != 0,
                needs_kube: true,
                kube_context: Some("prod"),
                current_context: Some(if bits & 4 != 0 { "prod" } else { "staging" }),
                in_cluster: false,
                yes: bits & 8 != 0,
                unallowed_node_faults: vec![],
            };
            let got = check(&r);
            match bits {
                15 => assert_eq!(got, Ok(false)),
                7 => assert_eq!(got, Ok(true), "needs a confirmation"),
                _ => assert!(got.is_err(), "{bits:04b}: {got:?}"),
            }
        }
        let open = Request {
            environment: "staging",
            protected: false,
            env_explicit: false,
            listed: false,
            needs_kube: true,
            kube_context: None,
            current_context: None,
            in_cluster: false,
            yes: false,
            unallowed_node_faults: vec!["zone-outage zone-a".into()],
        };
        assert_eq!(check(&open), Ok(false), "an open environment asks nothing");
        let prod = Request {
            environment: "production",
            protected: true,
            env_explicit: true,
            listed: true,
            kube_context: Some("prod"),
            current_context: Some("prod"),
            in_cluster: false,
            yes: true,
            ..open
        };
        let refused = check(&prod).unwrap_err();
        assert!(
            refused.unmet[0].contains("zone-outage zone-a")
                && refused.unmet[0].contains("allow-protected: true"),
            "{refused}"
        );
        let allowed = Request {
            unallowed_node_faults: vec![],
            ..prod
        };
        assert_eq!(check(&allowed), Ok(false));
        // In a pod: no kubeconfig context, `--in-cluster` stands for it; every other
        // condition still holds.
        let in_pod = Request {
            current_context: None,
            in_cluster: true,
            ..allowed.clone()
        };
        assert_eq!(check(&in_pod), Ok(false));
        let unconfirmed = Request {
            yes: false,
            ..in_pod.clone()
        };
        assert_eq!(check(&unconfirmed), Ok(true), "still needs --yes");
        let not_in_pod = Request {
            in_cluster: false,
            ..in_pod
        };
        assert!(check(&not_in_pod).unwrap_err().unmet[0].contains("no current context"));
    }
}
