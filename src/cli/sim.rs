//! The cluster a command talks to: the embedded simulated cluster of an experiment with a
//! `simulation:` (started on loopback for `plan` and `run`), whether an experiment needs a
//! Kubernetes API at all, and the watch-driven sample sources of a run on a cluster.

use std::collections::BTreeMap;
use std::path::Path;

use crate::drill;
use crate::eprintln_redacted as eprintln;
use crate::experiment::{self, Environment};
use crate::workspace::sim_vars;

use super::Exit;

/// The embedded simulated cluster of an experiment with a `simulation:` run where the
/// environment names no cluster, started on loopback, and the `${sim...}` variables of its
/// endpoints. Nothing real is touched. `Err` is the exit (the error was printed).
pub(super) async fn start_simulation(
    file: &Path,
    bytes: &[u8],
    env: &Environment,
    seed: u64,
) -> Result<Option<(crate::sim::SimHandle, BTreeMap<String, String>)>, Exit> {
    let path = match experiment::peek_simulation_bytes(file, bytes) {
        Ok(Some(path)) if env.kube_context.is_none() && path.exists() => path,
        Ok(_) => return Ok(None),
        Err(d) => {
            eprintln!("{d}");
            return Err(Exit::Invalid);
        }
    };
    let scenario = crate::sim::load_scenario(&path).map_err(|d| {
        eprintln!("{d}");
        Exit::Invalid
    })?;
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let handle = crate::sim::SimCluster::start(scenario, loopback, seed)
        .await
        .map_err(|e| {
            eprintln!("error: cannot start the simulated cluster: {e}");
            Exit::Internal
        })?;
    let mut vars = BTreeMap::new();
    for (ns, deploy, url) in handle.traffic_urls() {
        vars.extend(sim_vars(&ns, &deploy, &url));
    }
    eprintln!(
        "simulated cluster: {} ({})",
        handle.api_url(),
        path.display()
    );
    Ok(Some((handle, vars)))
}

/// Whether the experiment needs a Kubernetes API at all.
pub(super) fn needs_kube(exp: &experiment::Experiment) -> bool {
    exp.targets.iter().any(|t| {
        matches!(
            t.kind,
            experiment::TargetKind::Kubernetes(_) | experiment::TargetKind::Nodes(_)
        )
    }) || exp
        .faults
        .iter()
        .any(|f| matches!(f, experiment::FaultSpec::Node(_)))
        || exp.probes.iter().any(|p| {
            matches!(
                p.kind,
                experiment::ProbeKind::Kubernetes(_) | experiment::ProbeKind::KubeNodes(_)
            )
        })
}

/// Watch-driven sources: the kubernetes probes, and the pod phases of every pod-kill target
/// (and of a kill-primary's pods).
pub(super) fn kube_sources(
    exp: &experiment::Experiment,
    client: &kube::Client,
) -> Vec<drill::SampleSource> {
    let mut sources: Vec<drill::SampleSource> = Vec::new();
    for (i, p) in exp.probes.iter().enumerate() {
        match &p.kind {
            experiment::ProbeKind::Kubernetes(k) => {
                sources.push(Box::new(crate::probe::kube::workload_probe(
                    i,
                    client.clone(),
                    k.clone(),
                    p.every,
                    p.every_during,
                )));
            }
            experiment::ProbeKind::KubeNodes(k) => {
                sources.push(Box::new(crate::probe::kube::nodes_probe(
                    i,
                    client.clone(),
                    k.clone(),
                    p.every,
                    p.every_during,
                )));
            }
            _ => {}
        }
    }
    if exp
        .faults
        .iter()
        .any(|f| matches!(f, experiment::FaultSpec::Node(_)))
    {
        sources.push(Box::new(crate::probe::kube::node_pod_phases(
            client.clone(),
        )));
    }
    for f in &exp.faults {
        if let Some(target) = f.pod_target() {
            if let Some(experiment::TargetKind::Kubernetes(k)) = exp.target(target).map(|t| &t.kind)
            {
                sources.push(Box::new(crate::probe::kube::pod_phases(
                    client.clone(),
                    k.namespace.clone(),
                    k.selector.clone(),
                )));
            }
        }
    }
    sources
}
