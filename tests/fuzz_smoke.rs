//! A seeded-mutation fuzzer that runs on stable Rust: the same three targets as `fuzz/`
//! (experiment loader, durations, label selectors), seeded with the malformed corpus and the
//! valid fixtures. Deterministic for a given `FIREDRILL_FUZZ_SEED`; `FIREDRILL_FUZZ_ITERS`
//! sets the iterations per target (default 1000, a few seconds). A panic fails the test and
//! prints the seed and iteration to reproduce it.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use firedrill::experiment::{
    check, load_environments_bytes, load_experiment_bytes, parse_yaml, Environment, LoadOptions,
};

/// xorshift64*: small, fixed, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const TOKENS: &[&[u8]] = &[
    b":",
    b": ",
    b"-",
    b"- ",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b"&a ",
    b"*a",
    b"!!str ",
    b"|",
    b">",
    b"'",
    b"\"",
    b"#",
    b"\t",
    b"\n",
    b"\r\n",
    b"  ",
    b"${",
    b"}",
    b"${env:X}",
    b"$$",
    b"\x00",
    b"\xff",
    b"\xef\xbb\xbf",
    b"\xc3\xa9",
    b"\\",
    b"---\n",
    b"...",
    b"?",
    b"%",
    b"@",
    b"`",
    b"0",
    b"-1",
    b"99999999999999999999",
    b"1e309",
    b".nan",
    b"ms",
    b"s",
    b"h",
    b"d",
    b"..",
    b"!",
    b"=",
    b"==",
    b"!=",
    b" in ",
    b" notin ",
    b"(",
    b")",
    b"/",
    b"*",
    b"MON-FRI",
    b"~",
];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut m = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(m.len() + 1);
        match rng.below(6) {
            0 if !m.is_empty() => {
                let i = rng.below(m.len());
                m[i] ^= 1 << rng.below(8);
            }
            1 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                m.splice(at..at, t.iter().copied());
            }
            2 if at < m.len() => {
                let end = (at + 1 + rng.below(16)).min(m.len());
                m.drain(at..end);
            }
            3 if at < m.len() => {
                let end = (at + 1 + rng.below(32)).min(m.len());
                let chunk = m[at..end].to_vec();
                m.splice(at..at, chunk);
            }
            4 if !other.is_empty() => {
                let from = rng.below(other.len());
                let end = (from + 1 + rng.below(64)).min(other.len());
                m.splice(at..at, other[from..end].iter().copied());
            }
            _ => m.truncate(at),
        }
    }
    m
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "yaml") {
            out.push(p);
        }
    }
}

/// Corpus and valid fixtures under 8 KiB, in a fixed order.
fn seeds() -> Vec<Vec<u8>> {
    let mut files = Vec::new();
    yaml_files(Path::new("tests/fixtures/malformed"), &mut files);
    yaml_files(Path::new("tests/fixtures/experiments"), &mut files);
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read(f).ok())
        .filter(|b| b.len() <= 8 * 1024)
        .collect()
}

/// Scalar values found after `key:` in the seeds (durations, selectors).
fn values(seeds: &[Vec<u8>], keys: &[&str]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for s in seeds {
        for line in String::from_utf8_lossy(s).lines() {
            let line = line.trim_start().trim_start_matches("- ");
            if let Some((k, v)) = line.split_once(": ") {
                if keys.contains(&k) {
                    out.push(v.trim().trim_matches('"').as_bytes().to_vec());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn settings() -> (u64, usize) {
    let seed = std::env::var("FIREDRILL_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f1de);
    let iters = std::env::var("FIREDRILL_FUZZ_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    (seed, iters)
}

/// Runs `target` on `iters` mutations of `seeds`; panics name the input that broke it.
fn fuzz(name: &str, seeds: &[Vec<u8>], target: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let (seed, iters) = settings();
    let mut rng = Rng(seed | 1);
    for s in seeds {
        if catch_unwind(AssertUnwindSafe(|| target(s))).is_err() {
            panic!(
                "{name}: seed input panics: {:?}",
                String::from_utf8_lossy(s)
            );
        }
    }
    for i in 0..iters {
        let a = &seeds[rng.below(seeds.len())];
        let b = &seeds[rng.below(seeds.len())];
        let input = mutate(&mut rng, a, b);
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            panic!(
                "{name}: panic at FIREDRILL_FUZZ_SEED={seed} iteration {i} on {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

fn load_everything(data: &[u8]) {
    let env = Environment::local();
    let vars = BTreeMap::new();
    let opts = LoadOptions {
        env: &env,
        extra_vars: &vars,
        known_environments: None,
        unset_env: Default::default(),
    };
    let path = Path::new("fuzz.yaml");
    if let Err(d) = load_experiment_bytes(path, data, &opts) {
        assert!(d.has_errors(), "failed without an error");
        for diag in &d.0 {
            assert!(diag.line >= 1 && diag.column >= 1 && !diag.message.is_empty());
        }
        assert!(d.to_string().contains("fuzz.yaml:"));
    }
    let _ = load_environments_bytes(path, data);
    let _ = parse_yaml::<firedrill::sim::Scenario>(path, data);
}

#[test]
fn experiment_loader_survives_mutations() {
    fuzz("experiment", &seeds(), load_everything);
}

#[test]
fn durations_survive_mutations() {
    let keys = [
        "every",
        "every-during",
        "timeout",
        "max-latency",
        "grace-period",
        "objective",
        "stable-for",
        "failing-for",
        "window",
        "cooldown",
        "within",
        "start-delay",
    ];
    fuzz("duration", &values(&seeds(), &keys), |data| {
        let text = String::from_utf8_lossy(data);
        if let Ok(d) = check::duration(&text) {
            let _ = check::format_duration(d);
        }
        let doc = format!(
            "name: fuzz\nprobes:\n  p:\n    tcp: {{ address: \"127.0.0.1:1\" }}\n    every: {text}\nfaults:\n  - command: {{ run: [\"true\"] }}\nrecovery: {{ objective: \"{}\" }}\n",
            text.replace('\\', "\\\\").replace('"', "\\\"")
        );
        load_everything(doc.as_bytes());
    });
}

#[test]
fn selectors_and_cron_survive_mutations() {
    fuzz(
        "selector",
        &values(&seeds(), &["selector", "schedule"]),
        |data| {
            let text = String::from_utf8_lossy(data);
            if let Err(e) = check::label_selector(&text) {
                assert!(!e.message.is_empty());
            }
            let _ = check::cron(&text);
            let _ = check::entry_name("probe", &text);
            let _ = check::signal(&text);
        },
    );
}
