//! `firedrill plan`: show exactly what a drill would do in an environment (scopes, trials,
//! probes, faults and the targets they would choose now), touching nothing.

use std::path::Path;
use std::time::Duration;

use crate::drill::{self, Plan};
use crate::experiment::{self, UnsetEnv};
use crate::fault::BuildContext;
use crate::safety::{halt, lock};
use crate::timeline::human;
use crate::workspace::{self, Selection};
use crate::{eprintln_redacted as eprintln, println_redacted as println};

use super::sim::{needs_kube, start_simulation};
use super::Exit;

pub(super) async fn plan(
    file: &Path,
    sel: &Selection,
    state_dir: &Path,
    output: Option<crate::report::text::DataFormat>,
) -> anyhow::Result<Exit> {
    let (env, known) = match workspace::environment(file, sel) {
        Ok(x) => x,
        Err(d) => {
            eprintln!("{d}");
            return Ok(Exit::Invalid);
        }
    };
    let bytes = match experiment::read_capped(file) {
        Ok(b) => b,
        Err(d) => {
            eprintln!("{d}");
            return Ok(Exit::Invalid);
        }
    };
    // The embedded simulated cluster runs for the plan too (in-process, on loopback), so the
    // plan resolves the pods a run would kill and names the real probe URLs.
    let (sim, vars) = match start_simulation(file, &bytes, &env, 1).await {
        Ok(Some((handle, vars))) => (Some(handle), vars),
        Ok(None) => match workspace::simulation_placeholders(file, &bytes) {
            Ok(vars) => (None, vars),
            Err(d) => {
                eprintln!("{d}");
                return Ok(Exit::Invalid);
            }
        },
        Err(code) => return Ok(code),
    };
    let loaded = match workspace::load(file, &bytes, &env, &known, &vars, UnsetEnv::Refuse) {
        Ok(l) => l,
        Err(d) => {
            eprintln!("{d}");
            return Ok(Exit::Invalid);
        }
    };
    let exp = &loaded.experiment;
    crate::experiment::secrets::register(exp);
    let simulated = exp.simulation.is_some() && env.kube_context.is_none();
    let mut view = PlanView {
        drill: exp.name.clone(),
        environment: env.name.clone(),
        protected: env.protected.then(|| format!("environment `{}` is protected: `run` needs --env {}, the experiment listing it, the kubeconfig's current context `{}`, and a typed confirmation or --yes", env.name, env.name, env.kube_context.as_deref().unwrap_or("(none set)"))),
        halted: halt::current(state_dir).map(|h| h.describe()),
        locks: lock::scopes(exp, &env.name, simulated),
        trials: exp.repeat,
        cooldown: exp.cooldown,
        recovery: RecoveryView {
            objective: exp.recovery.objective,
            stable_for: exp.recovery.stable_for,
            timeout: exp.recovery.timeout,
            counted_from_removal: exp.faults.iter().any(|f| f.duration().is_some()),
        },
        probes: exp
            .probes
            .iter()
            .map(|p| {
                let (kind, checks) = drill::plan::probe_checks(p);
                ProbeView {
                    name: p.name.clone(),
                    kind,
                    checks,
                    every: p.every,
                    every_during: p.every_during,
                }
            })
            .collect(),
        cluster: Vec::new(),
        faults: Vec::new(),
        faults_error: None,
        touched: "nothing",
    };
    // Targets are resolved read-only (lists and gets) where the cluster is reachable.
    let mut ctx = BuildContext::default();
    if needs_kube(exp) && !simulated && (env.name != "local") {
        match crate::platform::kube::client_for(env.kube_context.as_deref()).await {
            Ok((c, _)) => ctx.kube = Some(c),
            Err(e) => view.cluster.push(format!("{e} (targets not resolved)")),
        }
    } else if let Some(handle) = &sim {
        view.cluster.push(format!(
            "the embedded simulated cluster (started for this plan at {}; `run` starts its own from the same scenario)",
            handle.api_url()
        ));
        if needs_kube(exp) {
            match handle.kube_client().await {
                Ok(c) => ctx.kube = Some(c),
                Err(e) => view.cluster.push(format!("{e} (targets not resolved)")),
            }
        }
    }
    match Plan::build_faults(exp, &ctx) {
        Ok(faults) => {
            let labels: Vec<String> = faults
                .iter()
                .zip(&exp.fault_names)
                .map(|(f, name)| f.label_with(name.as_deref()))
                .collect();
            for (i, f) in faults.iter().enumerate() {
                let step =
                    exp.fault_waits.get(i).and_then(Option::as_ref).map(|step| {
                        step.describe(labels.get(step.from).map_or("", String::as_str))
                    });
                // The simulated pods take a moment to be ready, as a run's steady state waits.
                let mut resolved = f.prepare().await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while sim.is_some() && resolved.is_err() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    resolved = f.prepare().await;
                }
                let (resolved, unresolved) = match resolved {
                    Ok(chosen) => (chosen, None),
                    Err(e) => (None, Some(e.render())),
                };
                view.faults.push(FaultView {
                    name: labels[i].clone(),
                    does: f.describe(),
                    step,
                    resolved,
                    unresolved,
                });
            }
        }
        Err(e) => view.faults_error = Some(e.render()),
    }
    if let Some(handle) = sim {
        handle.shutdown().await;
    }
    match output {
        None => println!("{}", view.text()),
        Some(format) => match crate::report::text::data(&view, format) {
            Ok(text) => println!("{}", text.trim_end()),
            Err(e) => {
                eprintln!(
                    "error: cannot write the plan: {}",
                    crate::platform::render(&e)
                );
                return Ok(Exit::Internal);
            }
        },
    }
    Ok(Exit::Passed)
}

/// What `plan` found, for people (`text`) and for programs (`-o json|yaml`).
#[derive(serde::Serialize)]
struct PlanView {
    drill: String,
    environment: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    protected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    halted: Option<String>,
    locks: Vec<String>,
    trials: u32,
    #[serde(rename = "cooldown_s", with = "crate::timeline::secs")]
    cooldown: Duration,
    recovery: RecoveryView,
    probes: Vec<ProbeView>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    cluster: Vec<String>,
    faults: Vec<FaultView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    faults_error: Option<String>,
    touched: &'static str,
}

#[derive(serde::Serialize)]
struct RecoveryView {
    #[serde(rename = "objective_s", with = "crate::timeline::secs")]
    objective: Duration,
    #[serde(rename = "stable_for_s", with = "crate::timeline::secs")]
    stable_for: Duration,
    #[serde(rename = "timeout_s", with = "crate::timeline::secs")]
    timeout: Duration,
    /// A lasting fault's time to recover counts from its removal.
    counted_from_removal: bool,
}

#[derive(serde::Serialize)]
struct ProbeView {
    name: String,
    kind: String,
    checks: String,
    #[serde(rename = "every_s", with = "crate::timeline::secs")]
    every: Duration,
    #[serde(rename = "every_during_s", with = "crate::timeline::secs")]
    every_during: Duration,
}

#[derive(serde::Serialize)]
struct FaultView {
    name: String,
    does: String,
    /// A step's wait, when the fault is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    step: Option<String>,
    /// The targets it would choose now (a run chooses again).
    #[serde(skip_serializing_if = "Option::is_none")]
    resolved: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unresolved: Option<String>,
}

impl PlanView {
    fn text(&self) -> String {
        let mut lines = vec![format!(
            "drill `{}` in environment `{}`",
            self.drill, self.environment
        )];
        if let Some(p) = &self.protected {
            lines.push(format!("  {p}"));
        }
        if let Some(h) = &self.halted {
            lines.push(format!("  HALTED: {h}"));
        }
        lines.push(format!("  locks: {}", self.locks.join(", ")));
        lines.push(format!(
            "  trials: {}, cooldown {}",
            self.trials,
            human(self.cooldown)
        ));
        let r = &self.recovery;
        lines.push(format!(
            "  recovery: objective {}, stable for {}, timeout {}{}",
            human(r.objective),
            human(r.stable_for),
            human(r.timeout),
            if r.counted_from_removal {
                " (time to recover counts from the removal of the lasting fault)"
            } else {
                ""
            }
        ));
        for p in &self.probes {
            lines.push(format!(
                "  probe {} ({}): {} every {} ({} while observing)",
                p.name,
                p.kind,
                p.checks,
                human(p.every),
                human(p.every_during)
            ));
        }
        for c in &self.cluster {
            lines.push(format!("  cluster: {c}"));
        }
        for f in &self.faults {
            lines.push(format!("  fault {}: {}", f.name, f.does));
            if let Some(step) = &f.step {
                lines.push(format!("    a step: injected {step}"));
            }
            if let Some(chosen) = &f.resolved {
                lines.push(format!("    resolved now (a run chooses again): {chosen}"));
            }
            if let Some(e) = &f.unresolved {
                lines.push(format!("    cannot resolve its targets now: {e}"));
            }
        }
        if let Some(e) = &self.faults_error {
            lines.push(format!("  faults: {e}"));
        }
        lines.push(format!("{} was touched", self.touched));
        lines.join("\n")
    }
}
