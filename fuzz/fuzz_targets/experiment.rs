//! Any bytes as an experiment file, an environments file and a simulated-cluster scenario:
//! the loaders must return a value or positioned diagnostics, never panic.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use firedrill::experiment::{
    load_environments_bytes, load_experiment_bytes, parse_yaml, Environment, LoadOptions,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let env = Environment::local();
    let vars = BTreeMap::new();
    let opts = LoadOptions {
        env: &env,
        extra_vars: &vars,
        known_environments: None,
    };
    let path = Path::new("fuzz.yaml");
    if let Err(d) = load_experiment_bytes(path, data, &opts) {
        assert!(d.has_errors());
        for diag in &d.0 {
            assert!(diag.line >= 1 && diag.column >= 1 && !diag.message.is_empty());
        }
    }
    let _ = load_environments_bytes(path, data);
    let _ = parse_yaml::<firedrill::sim::Scenario>(path, data);
});
