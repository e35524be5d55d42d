//! The experiment loader through its public API, against the fixture files.
//!
//! `tests/fixtures/experiments/valid/*.yaml` must load cleanly; every
//! `tests/fixtures/experiments/invalid/*.yaml` must fail with exactly the diagnostics in the
//! `.expected` file beside it. `FIREDRILL_BLESS=1 cargo test --test loader` rewrites those
//! files; read the diff before committing it.
//!
//! Paths are relative to the crate root (cargo runs integration tests there), so the rendered
//! diagnostics do not depend on where the checkout lives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use firedrill::experiment::{
    find_environments_file, load_environments, load_experiment, load_experiment_bytes, parse_yaml,
    peek_simulation, Amount, Environment, FaultSpec, LoadOptions, ProbeKind,
};

const VALID: &str = "tests/fixtures/experiments/valid";
const INVALID: &str = "tests/fixtures/experiments/invalid";
const TOKEN_VAR: &str = "FIREDRILL_FIXTURE_TOKEN";

struct Setup {
    env: Environment,
    extra: BTreeMap<String, String>,
    known: Vec<String>,
}

fn setup() -> Setup {
    // Every test sets the same value, so running them in parallel is harmless.
    std::env::set_var(TOKEN_VAR, "fixture-secret");
    let mut env = Environment::local();
    env.name = "staging".into();
    for (k, v) in [
        ("checkout_url", "http://127.0.0.1:8080"),
        ("fast", "10ms"),
        ("replicas", "2"),
        ("token", "Bearer ${env:FIREDRILL_FIXTURE_TOKEN}"),
    ] {
        env.vars.insert(k.into(), v.into());
    }
    let extra = [("sim.shop.checkout", "http://127.0.0.1:9000")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Setup {
        env,
        extra,
        known: vec!["staging".into(), "production".into()],
    }
}

impl Setup {
    fn opts(&self) -> LoadOptions<'_> {
        LoadOptions {
            env: &self.env,
            extra_vars: &self.extra,
            known_environments: Some(&self.known),
            unset_env: Default::default(),
        }
    }
}

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {dir}: {e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn valid_fixtures_load_without_errors() {
    let s = setup();
    let files = yaml_files(VALID);
    assert!(files.len() >= 8, "expected at least 8 valid fixtures");
    for f in files {
        match load_experiment(&f, &s.opts()) {
            Ok(loaded) => {
                assert!(
                    loaded.warnings.is_empty(),
                    "{} has warnings:\n{:#?}",
                    f.display(),
                    loaded.warnings
                );
                assert_eq!(loaded.experiment.source.content_hash.len(), 64);
            }
            Err(d) => panic!("{} should load:\n{d}", f.display()),
        }
    }
}

#[test]
fn invalid_fixtures_match_expected_diagnostics() {
    let s = setup();
    let bless = std::env::var_os("FIREDRILL_BLESS").is_some_and(|v| v == "1");
    let files = yaml_files(INVALID);
    assert!(files.len() >= 45, "expected at least 45 invalid fixtures");
    let mut mismatches = Vec::new();
    for f in files {
        let rendered = match load_experiment(&f, &s.opts()) {
            Ok(_) => {
                mismatches.push(format!("{} loaded but should fail", f.display()));
                continue;
            }
            Err(d) => {
                assert!(d.has_errors(), "{}: no error in {d}", f.display());
                for diag in &d.0 {
                    assert!(
                        diag.line >= 1 && diag.column >= 1,
                        "{}: {diag}",
                        f.display()
                    );
                    assert_eq!(diag.file, f);
                }
                format!("{d}\n")
            }
        };
        let expected_path = f.with_extension("expected");
        if bless {
            std::fs::write(&expected_path, &rendered)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", expected_path.display()));
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != rendered {
            mismatches.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{rendered}",
                f.display()
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} fixture(s) differ (FIREDRILL_BLESS=1 rewrites them):\n\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn several_errors_are_reported_at_once() {
    let s = setup();
    for name in ["many-errors-1", "many-errors-2", "many-errors-3"] {
        let f = Path::new(INVALID).join(format!("{name}.yaml"));
        let d = load_experiment(&f, &s.opts()).expect_err("must fail");
        assert!(d.error_count() >= 4, "{name}: only {}", d.error_count());
    }
}

#[test]
fn no_input_panics() {
    let s = setup();
    let mut inputs: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for dir in [VALID, INVALID] {
        for f in yaml_files(dir) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            inputs.push((f, bytes));
        }
    }
    let valid: Vec<(PathBuf, Vec<u8>)> = inputs
        .iter()
        .filter(|(p, _)| p.starts_with(VALID))
        .cloned()
        .collect();
    for (path, bytes) in &valid {
        for cut in 0..bytes.len() {
            let _ = load_experiment_bytes(path, &bytes[..cut], &s.opts());
        }
    }
    for (path, bytes) in &inputs {
        let _ = load_experiment_bytes(path, bytes, &s.opts());
    }
    // Deterministic mutations: YAML's special characters dropped at pseudo-random offsets.
    const SPECIAL: &[u8] = b":{}[],-&*!|>'\"#%@\t\n ${}\xff";
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for (path, bytes) in &valid {
        for _ in 0..400 {
            let mut m = bytes.clone();
            for _ in 0..1 + next() % 3 {
                let at = (next() % m.len() as u64) as usize;
                m[at] = SPECIAL[(next() % SPECIAL.len() as u64) as usize];
            }
            let _ = load_experiment_bytes(path, &m, &s.opts());
        }
    }
}

#[test]
fn oversized_file_is_one_error_at_the_start() {
    let s = setup();
    let mut bytes = b"name: big\n".to_vec();
    bytes.resize(1024 * 1024 + 1, b'#');
    let d = load_experiment_bytes(Path::new("big.yaml"), &bytes, &s.opts()).expect_err("too big");
    assert_eq!(d.0.len(), 1);
    assert_eq!((d.0[0].line, d.0[0].column), (1, 1));
    assert!(d.0[0].message.contains("too large"));
}

#[test]
fn loaded_values_and_defaults() {
    let s = setup();
    let loaded =
        load_experiment(&Path::new(VALID).join("http-everything.yaml"), &s.opts()).expect("loads");
    let exp = loaded.experiment;
    assert!(exp.secrets.contains(&"fixture-secret".to_string()));
    let probe = exp.probe("checkout-http").expect("probe");
    assert_eq!(probe.every, std::time::Duration::from_millis(10));
    let ProbeKind::Http(http) = &probe.kind else {
        panic!("http probe expected");
    };
    assert_eq!(http.method, "POST");
    assert_eq!(http.url, "http://127.0.0.1:8080/healthz");
    assert_eq!(http.body_contains.as_deref(), Some("${literal}"));
    assert!(http
        .headers
        .iter()
        .any(|(k, v)| k == "Authorization" && v == "Bearer fixture-secret"));

    let loaded = load_experiment(&Path::new(VALID).join("minimal.yaml"), &s.opts()).expect("loads");
    let exp = loaded.experiment;
    assert_eq!(exp.repeat, 1);
    assert_eq!(exp.cooldown, std::time::Duration::from_secs(5));
    assert_eq!(exp.recovery.timeout, std::time::Duration::from_secs(300));
    assert_eq!(exp.recovery.stable_for, std::time::Duration::from_secs(3));
    assert_eq!(exp.steady_state, vec!["db-port".to_string()]);
    assert_eq!(exp.recovery.probes, vec!["db-port".to_string()]);
    let p = exp.probe("db-port").expect("probe");
    assert_eq!(p.every, std::time::Duration::from_secs(1));
    assert_eq!(p.every_during, std::time::Duration::from_millis(100));
    match &exp.faults[0] {
        FaultSpec::Command { timeout, .. } => {
            assert_eq!(*timeout, std::time::Duration::from_secs(30))
        }
        other => panic!("command fault expected, got {other:?}"),
    }

    let loaded = load_experiment(
        &Path::new(VALID).join("percent-statefulset.yaml"),
        &s.opts(),
    )
    .expect("loads");
    let t = loaded.experiment.target("db-pods").expect("target");
    match &t.kind {
        firedrill::experiment::TargetKind::Kubernetes(k) => {
            assert_eq!(k.amount, Amount::Percent(25))
        }
        other => panic!("kubernetes target expected, got {other:?}"),
    }
}

#[test]
fn unused_target_is_a_warning_not_an_error() {
    let s = setup();
    let src = b"name: x\ntargets:\n  spare:\n    process: { pid-file: /run/x.pid }\nprobes:\n  p:\n    tcp: { address: \"127.0.0.1:1\" }\nfaults:\n  - command: { run: [\"true\"] }\nrecovery: { objective: 1s }\n";
    let loaded = load_experiment_bytes(Path::new("x.yaml"), src, &s.opts()).expect("loads");
    assert_eq!(loaded.warnings.len(), 1);
    assert_eq!(
        loaded.warnings[0].to_string(),
        "warning: target `spare` is not used by any fault\n  --> x.yaml:3:3 at targets.spare\n  = help: remove it, or reference it from a fault's `target`"
    );
}

#[test]
fn simulation_peek_and_environments_file() {
    let sim = peek_simulation(&Path::new(VALID).join("simulated-shop.yaml")).expect("peek");
    assert_eq!(sim, Some(Path::new(VALID).join("sim/shop.yaml")));
    let none = peek_simulation(&Path::new(VALID).join("minimal.yaml")).expect("peek");
    assert_eq!(none, None);

    let exp = Path::new("tests/fixtures/environments/experiments/drill.yaml");
    let found = find_environments_file(exp).expect("firedrill.yaml in the parent");
    assert_eq!(
        found,
        Path::new("tests/fixtures/environments/firedrill.yaml")
    );
    let envs = load_environments(&found).expect("valid environments");
    let names: Vec<&str> = envs.environments.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["local", "staging", "production"]);
    let prod = &envs.environments[2];
    assert!(prod.protected);
    assert_eq!(prod.promote_from.as_deref(), Some("staging"));
    assert_eq!(
        prod.promote_within,
        Some(std::time::Duration::from_secs(7 * 24 * 3600))
    );
    assert_eq!(envs.environments[1].time_zone, "Europe/Berlin");
    let rules = &prod.schedule;
    assert_eq!(rules.passes(), 2);
    let windows: Vec<String> = rules.windows.iter().map(|w| w.to_string()).collect();
    assert_eq!(windows, ["Mon-Fri 10:00-16:00", "Sat 22:00-02:00"]);
    let blackouts: Vec<String> = rules.blackouts.iter().map(|b| b.to_string()).collect();
    assert_eq!(blackouts, ["2026-12-24", "2026-12-30..2027-01-02"]);
    assert_eq!(rules.jitter, std::time::Duration::from_secs(300));
    assert_eq!(
        rules.starting_deadline,
        Some(std::time::Duration::from_secs(600))
    );
    assert_eq!(envs.environments[1].schedule.passes(), 1, "default");
}

#[test]
fn invalid_environments_file_reports_everything() {
    let path = Path::new("tests/fixtures/environments/invalid/firedrill.yaml");
    let d = load_environments(path).expect_err("invalid");
    let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap_or_default();
    if std::env::var_os("FIREDRILL_BLESS").is_some_and(|v| v == "1") {
        std::fs::write(path.with_extension("expected"), format!("{d}\n")).unwrap_or_default();
        return;
    }
    assert_eq!(format!("{d}\n"), expected);
}

#[test]
fn parse_yaml_is_generic_and_positioned() {
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Scenario {
        namespaces: Vec<String>,
    }
    let ok: Scenario = parse_yaml(Path::new("s.yaml"), b"namespaces: [shop]\n").expect("ok");
    assert_eq!(ok.namespaces, ["shop"]);
    let d = parse_yaml::<Scenario>(Path::new("s.yaml"), b"namespace: [shop]\n").expect_err("typo");
    assert_eq!(
        d.to_string(),
        "error: unknown key `namespace`\n  --> s.yaml:1:1\n  = help: did you mean `namespaces`?\n\n1 error in s.yaml"
    );
}

/// Each recovery probe knows the faults it measures: from `after:` (a name or a list), or
/// derived where the file is clear (the killed workload's readiness, the proxy's address).
#[test]
fn probes_are_attributed_to_the_faults_they_measure() {
    let s = setup();
    let loaded = load_experiment(
        &Path::new(VALID).join("named-faults-and-after.yaml"),
        &s.opts(),
    )
    .expect("loads");
    let exp = &loaded.experiment;
    assert_eq!(
        exp.fault_names,
        vec![
            Some("kill-one".to_string()),
            Some("slow-checkout".to_string())
        ]
    );
    let watches = |name: &str| {
        exp.probes
            .iter()
            .find(|p| p.name == name)
            .unwrap()
            .watches
            .clone()
    };
    assert_eq!(
        watches("checkout-ready"),
        Some(vec![0]),
        "derived: the killed workload"
    );
    assert_eq!(
        watches("checkout-proxied"),
        Some(vec![1]),
        "derived: the proxy's address"
    );
    assert_eq!(
        watches("checkout-direct"),
        Some(vec![0]),
        "after: [kill-one]"
    );
    assert_eq!(
        watches("orders-direct"),
        Some(vec![1]),
        "after: slow-checkout"
    );
}

/// A fault's `wait:` makes it a step: counted from the fault before it (or the one named by
/// `after:`/`removed:`), a delay later, once a probe passes or fails, within a bound whose
/// default is the delay plus the recovery timeout.
#[test]
fn a_wait_makes_a_fault_a_step_of_a_scenario() {
    use firedrill::experiment::model::step::{ProbeCondition, StepWait};
    let s = setup();
    let loaded = load_experiment(&Path::new(VALID).join("steps.yaml"), &s.opts()).expect("loads");
    let exp = &loaded.experiment;
    let secs = Duration::from_secs;
    assert_eq!(
        exp.fault_waits,
        vec![
            None,
            Some(StepWait {
                from: 0,
                from_removal: false,
                delay: Duration::ZERO,
                until: Some(ProbeCondition {
                    probe: "writes".into(),
                    passing: true
                }),
                within: secs(120),
            }),
            Some(StepWait {
                from: 0,
                from_removal: false,
                delay: secs(30),
                until: None,
                within: secs(30 + 180),
            }),
            Some(StepWait {
                from: 1,
                from_removal: true,
                delay: secs(1),
                until: None,
                within: secs(60),
            }),
            Some(StepWait {
                from: 3,
                from_removal: false,
                delay: secs(5),
                until: None,
                within: secs(5 + 180),
            }),
        ]
    );
    assert_eq!(
        exp.fault_waits[3]
            .as_ref()
            .unwrap()
            .describe("slow-primary"),
        "1s after the removal of slow-primary (within 1m)"
    );
    assert_eq!(
        exp.fault_waits[1].as_ref().unwrap().describe("failover"),
        "after failover, once `writes` is passing (within 2m)"
    );
}
