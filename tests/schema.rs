//! The JSON Schema (`firedrill schema`, committed as `schema/*.json`) held to the loader by an
//! independent validator: Python's `jsonschema` (the draft the schema names: 7), reading the YAML with PyYAML
//! under YAML 1.2's core rules as the loader and yaml-language-server do (`yes` is text, not
//! a boolean; `2024-01-01` is text, not a date). scripts/install-schema.sh installs both.
//!
//! - The committed files are exactly what the binary prints, so they never drift.
//! - Every drill under experiments/ validates (the schema never refuses what the loader takes),
//!   and `firedrill.yaml` against the environments schema; each starts with its
//!   `# yaml-language-server: $schema=` line.
//! - Every file of the malformed corpus that holds a type error, an unknown key or an entry
//!   with no kind or two is refused by the schema too, at every path the loader reports (files
//!   that are not YAML at all are skipped).
//! - The patterns written for the loader's value parsers agree with those parsers.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Reads `[[schema, file], ...]` as JSON on stdin; prints one JSON line per file:
/// `[file, "valid" | "invalid" | "not-yaml", first error]`.
const VALIDATE: &str = r#"
import json, re, sys
import yaml
from jsonschema.validators import validator_for

class Core12(yaml.SafeLoader):
    pass

# YAML 1.2 core schema: what the loader (src/experiment/node.rs) and yaml-language-server read.
Core12.yaml_implicit_resolvers = {}
def implicit(tag, regexp, first):
    Core12.add_implicit_resolver('tag:yaml.org,2002:' + tag, re.compile(regexp), list(first))
implicit('null', r'^(?:~|null|Null|NULL|)$', ['~', 'n', 'N', ''])
implicit('bool', r'^(?:true|True|TRUE|false|False|FALSE)$', 'tTfF')
implicit('int', r'^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$', '-+0123456789')
implicit('float', r'^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$', '-+0123456789.')

def core_int(loader, node):
    v = loader.construct_scalar(node)
    if v.startswith('0x'):
        return int(v[2:], 16)
    if v.startswith('0o'):
        return int(v[2:], 8)
    return int(v)
Core12.add_constructor('tag:yaml.org,2002:int', core_int)

def keys_as_text(v):
    # The loader reads every key as text.
    if isinstance(v, dict):
        return {str(k): keys_as_text(x) for k, x in v.items()}
    if isinstance(v, list):
        return [keys_as_text(x) for x in v]
    return v

def loader_path(p):
    # As the loader writes a path: `faults[1].process-kill.signal`.
    out = ''
    for x in p:
        if isinstance(x, int):
            out += f'[{x}]'
        else:
            out = x if out == '' else out + '.' + x
    return out

def all_paths(errors):
    # Where each error is, and each error of the branches of a oneOf/anyOf under it.
    for e in errors:
        yield loader_path(e.absolute_path)
        yield from all_paths(e.context or [])

validators = {}
for schema_path, path in json.load(sys.stdin):
    if schema_path not in validators:
        with open(schema_path) as f:
            schema = json.load(f)
        cls = validator_for(schema, default=None)
        if cls is None:
            raise SystemExit(f'{schema_path}: no validator for $schema {schema.get("$schema")}')
        cls.check_schema(schema)
        validators[schema_path] = cls(schema)
    try:
        with open(path, 'rb') as f:
            doc = keys_as_text(yaml.load(f, Loader=Core12))
    except Exception as e:
        print(json.dumps([path, 'not-yaml', str(e).splitlines()[0] if str(e) else type(e).__name__, []]))
        continue
    errors = sorted(validators[schema_path].iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        e = errors[0]
        print(json.dumps([path, 'invalid', f'{loader_path(e.absolute_path)}: {e.message}'[:300], sorted(set(all_paths(errors)))]))
    else:
        print(json.dumps([path, 'valid', '', []]))
"#;

struct Outcome {
    file: PathBuf,
    status: String,
    error: String,
    /// Where the schema found errors, as the loader writes paths (`faults[1].process-kill`).
    paths: Vec<String>,
}

/// Validates each `(schema, file)` pair with Python's jsonschema.
fn validate(pairs: &[(PathBuf, PathBuf)]) -> Vec<Outcome> {
    let input: Vec<[String; 2]> = pairs
        .iter()
        .map(|(s, f)| [s.display().to_string(), f.display().to_string()])
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", VALIDATE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs (scripts/install-deps.sh installs it)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(&input).expect("json").as_bytes())
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 finishes");
    assert!(
        out.status.success(),
        "the validator failed (are PyYAML and jsonschema installed? scripts/install-schema.sh):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let outcomes: Vec<Outcome> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| {
            let (file, status, error, paths): (String, String, String, Vec<String>) =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
            Outcome {
                file: file.into(),
                status,
                error,
                paths,
            }
        })
        .collect();
    assert_eq!(outcomes.len(), pairs.len(), "one answer per file");
    outcomes
}

fn schema_file(which: &str) -> PathBuf {
    Path::new(ROOT).join("schema").join(format!("{which}.json"))
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn committed_schemas_are_what_the_binary_prints() {
    for which in ["experiment", "environments"] {
        let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
            .args(["schema", which])
            .output()
            .expect("firedrill schema runs");
        assert!(out.status.success(), "firedrill schema {which} failed");
        let printed = String::from_utf8(out.stdout).expect("utf-8");
        let path = schema_file(which);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            printed == committed,
            "{} is not what `firedrill schema {which}` prints; regenerate it:\n  cargo run -q -- schema {which} > schema/{which}.json",
            path.display()
        );
        let json: serde_json::Value = serde_json::from_str(&printed).expect("valid JSON");
        // Draft 7: what yaml-language-server validates fully.
        assert_eq!(json["$schema"], "http://json-schema.org/draft-07/schema#");
    }
    // The default is the experiment schema.
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .arg("schema")
        .output()
        .expect("firedrill schema runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        std::fs::read_to_string(schema_file("experiment")).unwrap_or_default()
    );
}

#[test]
fn every_example_is_valid_against_its_schema() {
    let dir = Path::new(ROOT).join("experiments");
    let mut pairs = Vec::new();
    for file in yaml_files(&dir) {
        let (which, line) = if file.file_name().is_some_and(|n| n == "firedrill.yaml") {
            (
                "environments",
                "# yaml-language-server: $schema=../schema/environments.json",
            )
        } else {
            (
                "experiment",
                "# yaml-language-server: $schema=../schema/experiment.json",
            )
        };
        let text = std::fs::read_to_string(&file).expect("read");
        assert_eq!(
            text.lines().next(),
            Some(line),
            "{} must start with its schema line",
            file.display()
        );
        pairs.push((schema_file(which), file));
    }
    // experiments/sim/ holds the simulated cluster's scenarios, not drills: no schema.
    let outcomes = validate(&pairs);
    let bad: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status != "valid")
        .map(|o| format!("{}: {} {}", o.file.display(), o.status, o.error))
        .collect();
    assert!(bad.is_empty(), "refused by the schema:\n{}", bad.join("\n"));
    let envs = pairs
        .iter()
        .filter(|(s, _)| s.ends_with("environments.json"))
        .count();
    assert!(envs == 1 && pairs.len() >= 20, "{} files", pairs.len());
    eprintln!(
        "schema: {} files under experiments/ valid ({} experiments, {envs} environments file)",
        pairs.len(),
        pairs.len() - envs
    );
}

/// The patterns written for the loader's own value parsers (names, durations, signals,
/// thresholds, data rates) agree with those parsers, sample by sample, both ways.
#[test]
fn patterns_agree_with_the_loaders_parsers() {
    use firedrill::experiment::check;
    type Parser = fn(&str) -> bool;
    let long = "x".repeat(63);
    let too_long = "x".repeat(64);
    let names = [
        "checkout",
        "a",
        "1st",
        "a-b-c",
        long.as_str(),
        too_long.as_str(),
        "-x",
        "x-",
        "UP",
        "a.b",
        "a_b",
        "",
        "a b",
    ];
    let cases: [(&str, Parser, &[&str]); 5] = [
        (
            "#/properties/name",
            |t| check::dns_label("name", t).is_ok(),
            &names,
        ),
        (
            "#/definitions/duration",
            |t| check::duration(t).is_ok(),
            &[
                "500ms",
                "30s",
                "2m",
                "1h 30m",
                "1h30m",
                "0",
                "0s",
                " 5s ",
                "10 ms",
                "3µs",
                "7d",
                "1w",
                "2 minutes",
                "5sec",
                "1M",
                "1y",
                "1 0s",
                "1.5s",
                "-1s",
                "10",
                "",
                "abc",
                "5x",
                "s",
                "1h 30",
                "ms5",
                "1h,30m",
                "0.0",
            ],
        ),
        (
            "#/definitions/RawProcessKill/properties/signal",
            |t| check::signal(t).is_ok(),
            &[
                "SIGTERM",
                "term",
                "Kill",
                "sigkill",
                "SIGUSR1",
                " SIGSTOP ",
                "cont",
                "SIGKIL",
                "15",
                "",
                "SIG",
                "TSTP",
                "SIGSIGKILL",
                "KILL9",
            ],
        ),
        (
            "#/definitions/threshold",
            |t| check::threshold(t).is_ok(),
            &[
                ">= 50", "<=0.01", "== 1", "!= 0", ">50", "< -1.5e3", "> .5", "> 1.", "50", "< 5%",
                "=> 5", "= 5", ">=", "> abc", "<> 5", "> inf", "> NaN", ">= 1 2",
            ],
        ),
        (
            "#/definitions/data-rate",
            |t| check::rate(t).is_ok(),
            &[
                "512KB/s", "1MiB/s", "8Mbit/s", "1.5 GB/s", "100B/s", "1kB/s", "512KB", "512/s",
                "fast", "1 TB/s", "KB/s",
            ],
        ),
    ];
    let committed = std::fs::read_to_string(schema_file("experiment")).expect("schema");
    let full: serde_json::Value = serde_json::from_str(&committed).expect("json");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pairs = Vec::new();
    let mut expected = Vec::new();
    for (i, (pointer, loader, samples)) in cases.iter().enumerate() {
        let schema = dir.path().join(format!("{i}.json"));
        // Beside the `$ref`, only what it may point into (draft 7 ignores it otherwise).
        let one = serde_json::json!({
            "$schema": full["$schema"],
            "$ref": pointer,
            "definitions": full["definitions"],
            "properties": full["properties"],
        });
        std::fs::write(&schema, one.to_string()).expect("write schema");
        for (j, sample) in samples.iter().enumerate() {
            let file = dir.path().join(format!("{i}-{j}.yaml"));
            std::fs::write(&file, format!("'{}'\n", sample.replace('\'', "''"))).expect("write");
            pairs.push((schema.clone(), file));
            expected.push((*pointer, *sample, loader(sample)));
        }
    }
    let outcomes = validate(&pairs);
    let disagree: Vec<String> = outcomes
        .iter()
        .zip(&expected)
        .filter(|(o, (_, _, ok))| (o.status == "valid") != *ok)
        .map(|(o, (pointer, sample, ok))| {
            format!(
                "{pointer} `{sample}`: loader {ok}, schema {} {}",
                o.status, o.error
            )
        })
        .collect();
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
    eprintln!(
        "schema: {} samples agree with the loader's parsers",
        expected.len()
    );
}

/// `firedrill init` writes the schemas beside its drills, and each drill (and firedrill.yaml)
/// is valid against them and names them on its first line.
#[test]
fn init_writes_the_schemas_its_drills_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let folder = dir.path().join("drills");
    let kinds = [
        "pod-kill",
        "latency",
        "db-failover",
        "process-kill",
        "command",
    ];
    for kind in kinds {
        let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
            .args(["init", "--kind", kind])
            .arg(&folder)
            .output()
            .expect("firedrill init runs");
        assert!(
            out.status.success(),
            "{kind}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut pairs = Vec::new();
    for which in ["experiment", "environments"] {
        let written = folder.join(format!("schema/{which}.json"));
        assert_eq!(
            std::fs::read_to_string(&written).expect("init wrote the schema"),
            std::fs::read_to_string(schema_file(which)).expect("committed schema"),
            "{which}"
        );
    }
    for file in yaml_files(&folder) {
        let which = if file.ends_with("firedrill.yaml") {
            "environments"
        } else {
            "experiment"
        };
        let text = std::fs::read_to_string(&file).expect("read");
        assert_eq!(
            text.lines().next(),
            Some(format!("# yaml-language-server: $schema=schema/{which}.json").as_str()),
            "{}",
            file.display()
        );
        pairs.push((folder.join(format!("schema/{which}.json")), file));
    }
    assert_eq!(pairs.len(), kinds.len() + 1);
    let bad: Vec<String> = validate(&pairs)
        .into_iter()
        .filter(|o| o.status != "valid")
        .map(|o| format!("{}: {} {}", o.file.display(), o.status, o.error))
        .collect();
    assert!(bad.is_empty(), "refused by the schema:\n{}", bad.join("\n"));
}

/// What the loader's own tests load is valid too: its valid fixtures (flow style, every probe
/// and fault kind, `ready: ${replicas}`) and their firedrill.yaml.
#[test]
fn the_loaders_valid_fixtures_are_valid_too() {
    let fixtures = Path::new(ROOT).join("tests/fixtures");
    let mut pairs: Vec<(PathBuf, PathBuf)> = yaml_files(&fixtures.join("experiments/valid"))
        .into_iter()
        .map(|f| (schema_file("experiment"), f))
        .collect();
    pairs.push((
        schema_file("environments"),
        fixtures.join("environments/firedrill.yaml"),
    ));
    let bad: Vec<String> = validate(&pairs)
        .into_iter()
        .filter(|o| o.status != "valid")
        .map(|o| format!("{}: {} {}", o.file.display(), o.status, o.error))
        .collect();
    assert!(bad.is_empty(), "refused by the schema:\n{}", bad.join("\n"));
    assert!(pairs.len() >= 15, "{} files", pairs.len());
}

/// A `${...}` reference where a number, a boolean, a duration or a name from a list is
/// expected: the loader resolves it before typing the value, and the schema takes it.
#[test]
fn references_stand_for_typed_values() {
    use firedrill::experiment::{load_experiment, Environment, LoadOptions};
    // Block style: in a flow mapping `{ … }` a plain `${x}` would end the mapping.
    let drill = "\
name: ${drill}
targets:
  worker:
    process:
      command-line: sleep 1000
      max-targets: ${max}
  pods:
    kubernetes:
      namespace: shop
      selector: app=web
      count: ${count}
probes:
  web:
    http:
      url: http://127.0.0.1:9/
      expect-status: ${status}
      timeout: ${short}
    every: ${fast}
faults:
  - name: kill
    pod-kill:
      target: pods
      grace-period: ${zero}
  - name: stop
    process-kill:
      target: worker
      signal: ${signal}
    wait:
      after: kill
      until:
        probe: web
        is: ${state}
recovery:
  objective: ${objective}
abort-when:
  - probe: web
    error-rate: ${rate}
    window: 30s
repeat: ${repeat}
";
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("refs.yaml");
    std::fs::write(&file, drill).expect("write");
    let vars: std::collections::BTreeMap<String, String> = [
        ("drill", "refs"),
        ("count", "2"),
        ("status", "204"),
        ("short", "500ms"),
        ("fast", "100ms"),
        ("zero", "0s"),
        ("signal", "SIGTERM"),
        ("state", "failing"),
        ("objective", "30s"),
        ("rate", "50%"),
        ("repeat", "3"),
        ("max", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let env = Environment::local();
    let opts = LoadOptions {
        env: &env,
        extra_vars: &vars,
        known_environments: None,
        unset_env: Default::default(),
    };
    if let Err(d) = load_experiment(&file, &opts) {
        panic!("the loader refuses the drill:\n{d}\n{drill}");
    }
    let outcome = validate(&[(schema_file("experiment"), file)]);
    assert_eq!(outcome[0].status, "valid", "{}", outcome[0].error);
}

/// The malformed corpus's files that hold a type error, an unknown key, a mapping with no or
/// two kinds, or a bad name: what a schema can say, as opposed to a bad value (a time zone, a
/// selector) or a reference between sections.
fn schema_errors() -> Vec<(PathBuf, PathBuf)> {
    let corpus = Path::new(ROOT).join("tests/fixtures/malformed");
    let mut pairs = Vec::new();
    for class in ["wrong-types", "unknown-keys"] {
        for file in yaml_files(&corpus.join(class)) {
            // As in tests/malformed.rs: files named `env-*` are firedrill.yaml files.
            let stem = file.file_stem().unwrap_or_default().to_string_lossy();
            let which = if stem.starts_with("env-") {
                "environments"
            } else {
                "experiment"
            };
            pairs.push((schema_file(which), file));
        }
    }
    // Names: of the drill, its targets and probes, and of environments (not the values that
    // are names elsewhere: namespaces, scenario paths).
    for file in yaml_files(&corpus.join("invalid-names")) {
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        let which = match stem.split('-').next() {
            Some("env") => "environments",
            Some("experiment" | "probe" | "target") => "experiment",
            _ => continue,
        };
        pairs.push((schema_file(which), file));
    }
    for name in [
        "environments-list",
        "env-value-null",
        "kube-context-list",
        "promote-from-list",
        "protected-string",
        "vars-list",
        "vars-nested",
        "unknown-env-key",
        "unknown-top-key",
    ] {
        let file = corpus.join(format!("environments/{name}.yaml"));
        pairs.push((schema_file("environments"), file));
    }
    for name in [
        "fault-item-scalar",
        "fault-no-kind",
        "fault-two-kinds",
        "probe-no-kind",
        "probe-two-kinds",
        "target-no-kind",
        "target-two-kinds",
    ] {
        let file = corpus.join(format!("kind-mismatches/{name}.yaml"));
        pairs.push((schema_file("experiment"), file));
    }
    pairs
}

/// The paths of the loader's errors in `file` (a firedrill.yaml when the schema says so).
fn loader_paths(file: &Path) -> Vec<String> {
    use firedrill::experiment::{load_environments, load_experiment, Environment, LoadOptions};
    let stem = file.file_stem().unwrap_or_default().to_string_lossy();
    let environments =
        stem.starts_with("env-") || file.parent().is_some_and(|d| d.ends_with("environments"));
    let result = if environments {
        load_environments(file).map(|_| ())
    } else {
        let env = Environment::local();
        let vars = std::collections::BTreeMap::new();
        let known = ["staging".to_string(), "production".to_string()];
        let opts = LoadOptions {
            env: &env,
            extra_vars: &vars,
            known_environments: Some(&known),
            unset_env: Default::default(),
        };
        load_experiment(file, &opts).map(|_| ())
    };
    match result {
        Ok(()) => panic!(
            "{} loads, but it is in the malformed corpus",
            file.display()
        ),
        Err(d) => {
            d.0.into_iter()
                .filter(|d| d.is_error())
                .map(|d| d.path)
                .collect()
        }
    }
}

#[test]
fn type_errors_and_unknown_keys_of_the_malformed_corpus_are_schema_errors() {
    let pairs = schema_errors();
    for (_, f) in &pairs {
        assert!(f.is_file(), "{} is gone from the corpus", f.display());
    }
    let outcomes = validate(&pairs);
    let accepted: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status == "valid")
        .map(|o| o.file.display().to_string())
        .collect();
    assert!(
        accepted.is_empty(),
        "the schema accepts what the loader refuses:\n{}",
        accepted.join("\n")
    );
    // And refused where the loader refuses it: every path the loader reports an error at is
    // one the schema reports one at (an unknown key at its mapping, a wrong type at its value).
    let elsewhere: Vec<String> = outcomes
        .iter()
        .filter(|o| o.status == "invalid")
        .filter_map(|o| {
            let loader = loader_paths(&o.file);
            (!loader.iter().all(|p| o.paths.contains(p))).then(|| {
                format!(
                    "{}: loader at {loader:?}, schema at {:?}",
                    o.file.display(),
                    o.paths
                )
            })
        })
        .collect();
    assert!(
        elsewhere.is_empty(),
        "the schema refuses elsewhere than the loader:\n{}",
        elsewhere.join("\n")
    );
    let skipped = outcomes.iter().filter(|o| o.status == "not-yaml").count();
    let refused = outcomes.len() - skipped;
    assert!(refused >= 100, "only {refused} files refused");
    eprintln!("schema: {refused} malformed files refused ({skipped} not YAML at all, skipped)");
}
