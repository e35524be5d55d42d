//! The plan: an experiment resolved for one environment, with its faults built. It is the only
//! thing the executor sees, and building it touches nothing.

use std::collections::BTreeSet;

use rand::RngCore;

use crate::experiment::{Environment, Experiment, ProbeKind, ProbeSpec};
use crate::fault::{BuildContext, Fault, FaultError, RevertContext};

pub struct Plan {
    pub run_id: String,
    pub experiment: Experiment,
    pub environment: Environment,
    pub seed: u64,
    pub faults: Vec<Fault>,
    /// Names of the probes that must pass before injecting and after reverting.
    pub steady_state: BTreeSet<String>,
    /// Names of the probes whose recovery decides the trial.
    pub recovery: BTreeSet<String>,
    /// What reverting needs (the drill's proxies, the cluster client).
    pub revert_ctx: RevertContext,
}

impl Plan {
    pub fn new(
        experiment: Experiment,
        environment: Environment,
        seed: u64,
        faults: Vec<Fault>,
        ctx: &BuildContext,
    ) -> Plan {
        let all = || experiment.probes.iter().map(|p| p.name.clone()).collect();
        let steady_state = if experiment.steady_state.is_empty() {
            all()
        } else {
            experiment.steady_state.iter().cloned().collect()
        };
        let recovery = if experiment.recovery.probes.is_empty() {
            all()
        } else {
            experiment.recovery.probes.iter().cloned().collect()
        };
        Plan {
            run_id: ctx.run_id.clone(),
            experiment,
            environment,
            seed,
            faults,
            steady_state,
            recovery,
            revert_ctx: ctx.revert_context(),
        }
    }

    /// How the `i`th fault is called: its `name:`, else its kind and target.
    pub fn fault_label(&self, i: usize) -> String {
        let name = self
            .experiment
            .fault_names
            .get(i)
            .and_then(Option::as_deref);
        self.faults.get(i).map_or_else(
            || name.unwrap_or_default().to_string(),
            |f| f.label_with(name),
        )
    }

    /// Build the experiment's faults.
    pub fn build_faults(
        experiment: &Experiment,
        ctx: &BuildContext,
    ) -> Result<Vec<Fault>, FaultError> {
        experiment
            .faults
            .iter()
            .enumerate()
            .map(|(i, f)| Fault::build(f, i, experiment, ctx))
            .collect()
    }
}

/// Sortable and unique enough to be a file name: `20261123T101500Z-3fa9c2`.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
    let tag = rand::rng().next_u32() & 0xff_ffff;
    format!("{now}-{tag:06x}")
}

/// A one-line description of what a probe checks, for reports.
pub fn probe_checks(p: &ProbeSpec) -> (String, String) {
    match &p.kind {
        ProbeKind::Http(h) => ("http".into(), format!("{} {}", h.method, h.url)),
        ProbeKind::Tcp(t) => ("tcp".into(), format!("connect {}", t.address)),
        ProbeKind::Command(c) => ("command".into(), format!("{:?}", c.argv)),
        ProbeKind::Postgres(p) => (
            "postgres".into(),
            match &p.mode {
                crate::experiment::model::postgres::PostgresMode::Read { query } => {
                    format!("{query:?} on {}", crate::safety::redact::text(&p.dsn))
                }
                crate::experiment::model::postgres::PostgresMode::Write { rate_hz, table } => {
                    format!(
                        "write {rate_hz}/s into {table} on {}",
                        crate::safety::redact::text(&p.dsn)
                    )
                }
            },
        ),
        ProbeKind::Prometheus(p) => (
            "prometheus".into(),
            // One line in tables and plans, however the query was laid out in the file.
            format!(
                "{:?} {} at {}",
                p.query.split_whitespace().collect::<Vec<_>>().join(" "),
                p.expect,
                p.url
            ),
        ),
        ProbeKind::Kubernetes(k) => (
            "kubernetes".into(),
            format!(
                "{:?} {}/{} ready {:?}",
                k.workload.kind, k.workload.namespace, k.workload.name, k.ready
            )
            .to_lowercase(),
        ),
        ProbeKind::KubeNodes(k) => (
            "kubernetes".into(),
            format!(
                "nodes {} ready {:?}",
                if k.selector.is_empty() {
                    "(all)"
                } else {
                    k.selector.as_str()
                },
                k.ready
            )
            .to_lowercase(),
        ),
    }
}
