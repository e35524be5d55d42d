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

pub(super) async fn plan(file: &Path, sel: &Selection, state_dir: &Path) -> anyhow::Result<Exit> {
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
    println!("drill `{}` in environment `{}`", exp.name, env.name);
    if env.protected {
        println!("  environment `{}` is protected: `run` needs --env {}, the experiment listing it, the kubeconfig's current context `{}`, and a typed confirmation or --yes", env.name, env.name, env.kube_context.as_deref().unwrap_or("(none set)"));
    }
    if let Some(h) = halt::current(state_dir) {
        println!("  HALTED: {}", h.describe());
    }
    let simulated = exp.simulation.is_some() && env.kube_context.is_none();
    println!(
        "  locks: {}",
        lock::scopes(exp, &env.name, simulated).join(", ")
    );
    println!("  trials: {}, cooldown {}", exp.repeat, human(exp.cooldown));
    let counted_from = if exp.faults.iter().any(|f| f.duration().is_some()) {
        " (time to recover counts from the removal of the lasting fault)"
    } else {
        ""
    };
    println!(
        "  recovery: objective {}, stable for {}, timeout {}{counted_from}",
        human(exp.recovery.objective),
        human(exp.recovery.stable_for),
        human(exp.recovery.timeout)
    );
    for p in &exp.probes {
        let (kind, checks) = drill::plan::probe_checks(p);
        println!(
            "  probe {} ({kind}): {checks} every {} ({} while observing)",
            p.name,
            human(p.every),
            human(p.every_during)
        );
    }
    // Targets are resolved read-only (lists and gets) where the cluster is reachable.
    let mut ctx = BuildContext::default();
    if needs_kube(exp) && !simulated && (env.name != "local") {
        match crate::platform::kube::client_for(env.kube_context.as_deref()).await {
            Ok((c, _)) => ctx.kube = Some(c),
            Err(e) => println!("  cluster: {e} (targets not resolved)"),
        }
    } else if let Some(handle) = &sim {
        println!(
            "  cluster: the embedded simulated cluster (started for this plan at {}; `run` starts its own from the same scenario)",
            handle.api_url()
        );
        if needs_kube(exp) {
            match handle.kube_client().await {
                Ok(c) => ctx.kube = Some(c),
                Err(e) => println!("  cluster: {e} (targets not resolved)"),
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
                println!("  fault {}: {}", labels[i], f.describe());
                if let Some(step) = exp.fault_waits.get(i).and_then(Option::as_ref) {
                    let from = labels.get(step.from).map_or("", String::as_str);
                    println!("    a step: injected {}", step.describe(from));
                }
                // The simulated pods take a moment to be ready, as a run's steady state waits.
                let mut resolved = f.prepare().await;
                let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                while sim.is_some() && resolved.is_err() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    resolved = f.prepare().await;
                }
                match resolved {
                    Ok(Some(chosen)) => {
                        println!("    resolved now (a run chooses again): {chosen}")
                    }
                    Ok(None) => {}
                    Err(e) => println!("    cannot resolve its targets now: {}", e.render()),
                }
            }
        }
        Err(e) => println!("  faults: {}", e.render()),
    }
    if let Some(handle) = sim {
        handle.shutdown().await;
    }
    println!("nothing was touched");
    Ok(Exit::Passed)
}
