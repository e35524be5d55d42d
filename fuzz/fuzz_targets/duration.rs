//! Duration text, both alone (the check module) and as the value of every duration setting
//! of a small drill (the loader's positioned path).
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use firedrill::experiment::{check, load_experiment_bytes, Environment, LoadOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = check::duration(text) {
        let _ = check::format_duration(d);
    }
    // Quoted, so the text reaches the duration parser whatever YAML would make of it.
    let quoted = text.replace('\\', "\\\\").replace('"', "\\\"");
    let doc = format!(
        "name: fuzz\nprobes:\n  p:\n    tcp: {{ address: \"127.0.0.1:1\", timeout: \"{quoted}\" }}\n    every: \"{quoted}\"\nfaults:\n  - command: {{ run: [\"true\"], timeout: \"{quoted}\" }}\nrecovery: {{ objective: \"{quoted}\", stable-for: \"{quoted}\" }}\ncooldown: {text}\n"
    );
    let env = Environment::local();
    let vars = BTreeMap::new();
    let opts = LoadOptions {
        env: &env,
        extra_vars: &vars,
        known_environments: None,
    };
    let _ = load_experiment_bytes(Path::new("fuzz.yaml"), doc.as_bytes(), &opts);
});
