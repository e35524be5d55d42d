//! The JSON Schema of experiment files and `firedrill.yaml`, for editors (yaml-language-server)
//! and other tools: printed by `firedrill schema`, committed as `schema/*.json`.
//!
//! Generated, not written: every mapping the loader reads with a serde struct (`raw`, and the
//! model types it deserializes directly) derives `JsonSchema`, so `deny_unknown_fields` becomes
//! `additionalProperties: false` and a renamed or added key reaches the schema by itself. What
//! the loader assembles by hand is composed here from those parts: the top level, `targets:`
//! and `probes:` (a mapping of names to entries with exactly one kind key), and `faults:` (a
//! list of entries with exactly one kind key and an optional `name:` and `wait:`).
//!
//! Two rules of the loader are applied to the whole generated schema afterwards, because they
//! hold for every value rather than for one type:
//! - a string value may be written as any scalar (`name: 2024` reads as the text `2024`), so a
//!   plain string schema also accepts numbers and booleans;
//! - in an experiment (not in `firedrill.yaml`), any value may be a `${name}` or
//!   `${env:NAME}` reference, resolved before the value is typed (`every: ${fast}`), so every
//!   scalar that is not already any string also accepts a string holding `${`.

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Map, Value};

use super::model::db_failover::DbFailoverSpec;
use super::model::postgres::PostgresProbeSpec;
use super::model::{DurationText, FaultKind};
use super::raw::*;

/// Draft 7: the newest draft yaml-language-server (and so VS Code's YAML extension, Neovim,
/// Helix…) validates fully; nothing here needs a later one.
const DRAFT: &str = "http://json-schema.org/draft-07/schema#";
/// Where draft 7 keeps reusable subschemas.
const DEFS: &str = "definitions";
/// The definition every interpolable scalar refers to.
const INTERPOLATED: &str = "interpolated";

/// The pattern of drill and environment names (`check::is_dns_label`).
const DNS_LABEL: &str = "^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$";

/// The pattern of target and probe names (`check::entry_name`).
const ENTRY_NAME: &str = "^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$";

impl JsonSchema for Dur {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        DurationText::schema_name()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        DurationText::json_schema(generator)
    }
}

impl JsonSchema for Percent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "percent".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A percentage: a whole number such as `25`, or `\"25%\"`.",
            "anyOf": [
                { "type": "integer" },
                { "type": "string", "pattern": r"^\s*[+-]?[0-9]+\s*%\s*$" }
            ]
        })
    }
}

impl JsonSchema for DataRate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "data-rate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A data rate: a number, a unit and `/s`, e.g. `512KB/s`, `1MiB/s`, `8Mbit/s` (B, KB, MB, GB are 1000, KiB, MiB, GiB 1024; bit, kbit, Mbit, Gbit bits).",
            "type": "string",
            "pattern": r"^\s*[0-9.]+\s*(?:B|KB|kB|MB|GB|KiB|MiB|GiB|bit|kbit|Kbit|Mbit|Gbit)\s*/s\s*$"
        })
    }
}

impl JsonSchema for Rate {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "error-rate".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An error rate: a fraction such as `0.5`, or a percentage such as `\"50%\"`.",
            "anyOf": [
                { "type": "number" },
                {
                    "type": "string",
                    "pattern": r"^\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*%\s*$"
                }
            ]
        })
    }
}

impl JsonSchema for Ready {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "readiness".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "`all`, or how many replicas must be ready.",
            "anyOf": [
                { "type": "integer" },
                { "type": "string", "const": "all" }
            ]
        })
    }
}

impl JsonSchema for RawThreshold {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "threshold".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A comparison and a number, quoted: `\">= 50\"`, `\"<= 0.01\"`, `\"< 5%\"` (>, >=, <, <=, ==, !=).",
            "type": "string",
            "pattern": r"^\s*(?:>=|<=|==|!=|>|<)\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*$"
        })
    }
}

impl<T: JsonSchema> JsonSchema for OneOrMany<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        format!("one-or-many-{}", T::schema_name()).into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let one = generator.subschema_for::<T>();
        json_schema!({
            "anyOf": [one.clone(), { "type": "array", "items": one }]
        })
    }
}

impl JsonSchema for Pairs {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        "pairs".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "object",
            "additionalProperties": { "type": "string" }
        })
    }
}

/// The JSON Schema of an experiment file.
pub fn experiment_schema() -> Value {
    let mut g = generator();
    let s = Schema::to_value;
    let string = s(g.subschema_for::<String>());
    let strings = s(g.subschema_for::<Vec<String>>());
    let duration = s(g.subschema_for::<Dur>());

    let mut defs = Map::new();
    defs.insert(
        "target".into(),
        one_kind(
            "A target: exactly one of `kubernetes` (pods), `process` (local processes) or `nodes` (machines).",
            vec![
                ("kubernetes", s(g.subschema_for::<RawKubeTarget>())),
                ("process", s(g.subschema_for::<RawProcessTarget>())),
                ("nodes", s(g.subschema_for::<RawNodeTarget>())),
            ],
            &[],
        ),
    );
    let after = json!({
        "description": "The faults whose recovery this probe measures: one fault name or a list of them.",
        "anyOf": [string.clone(), { "type": "array", "minItems": 1, "items": string.clone() }]
    });
    defs.insert(
        "probe".into(),
        one_kind(
            "A probe: exactly one kind (`http`, `tcp`, `command`, `kubernetes`, `postgres`, `prometheus`), and how often it checks.",
            vec![
                ("http", s(g.subschema_for::<RawHttpProbe>())),
                ("tcp", s(g.subschema_for::<RawTcpProbe>())),
                ("command", s(g.subschema_for::<RawCommandProbe>())),
                ("kubernetes", s(g.subschema_for::<RawKubeProbe>())),
                ("postgres", s(g.subschema_for::<PostgresProbeSpec>())),
                ("prometheus", s(g.subschema_for::<RawPrometheusProbe>())),
            ],
            &[
                ("every", described(&duration, "How often the probe checks in steady state (default 1s; 5s for prometheus).")),
                ("every-during", described(&duration, "How often it checks from the injection on and while failing (default a tenth of `every`).")),
                ("after", after),
            ],
        ),
    );
    let network = s(g.subschema_for::<RawNetwork>());
    let node_fault = s(g.subschema_for::<RawNodeFault>());
    let kinds: Vec<(&'static str, Value)> = FaultKind::ALL
        .iter()
        .map(|k| {
            let body = match k {
                FaultKind::PodKill => s(g.subschema_for::<RawPodKill>()),
                FaultKind::ProcessKill => s(g.subschema_for::<RawProcessKill>()),
                FaultKind::Command => s(g.subschema_for::<RawCommandFault>()),
                FaultKind::DbFailover => s(g.subschema_for::<DbFailoverSpec>()),
                FaultKind::Network(_) => network.clone(),
                FaultKind::Node(super::model::node::NodeFaultKind::ZoneOutage) => {
                    s(g.subschema_for::<RawZoneOutage>())
                }
                FaultKind::Node(_) => node_fault.clone(),
                FaultKind::Restore => s(g.subschema_for::<super::model::restore::RestoreSpec>()),
            };
            (k.key(), body)
        })
        .collect();
    let wait = json!({
        "description": "Makes the fault a step: `wait: 30s`, or `{ after, removed, for, until: { probe, is }, within }`.",
        "anyOf": [duration.clone(), s(g.subschema_for::<RawWait>())]
    });
    defs.insert(
        "fault".into(),
        one_kind(
            "A fault: exactly one kind, an optional `name:` and an optional `wait:`.",
            kinds,
            &[
                (
                    "name",
                    described(
                        &string,
                        "The fault's name, for `after:`, `wait:` and reports.",
                    ),
                ),
                ("wait", wait),
            ],
        ),
    );

    let named = |what: &str, entry: &str, min: Option<u64>| {
        let mut m = json!({
            "description": format!("{what} by name."),
            "type": if min.is_some() { json!("object") } else { json!(["object", "null"]) },
            "propertyNames": { "pattern": ENTRY_NAME },
            "additionalProperties": { "$ref": format!("#/{DEFS}/{entry}") }
        });
        if let Some(min) = min {
            m["minProperties"] = json!(min);
        }
        m
    };
    let properties = json!({
        "name": {
            "description": "The drill's name: lowercase letters, digits and `-`, at most 63; used in report paths.",
            // Any scalar reads as its text, so `name: 2024` and `name: true` are names too.
            "anyOf": [
                { "type": "string", "pattern": DNS_LABEL },
                { "type": "integer", "minimum": 0 },
                { "type": "boolean" }
            ]
        },
        "description": described(
            &s(g.subschema_for::<Option<String>>()),
            "What the drill does and what it expects, for people and reports.",
        ),
        "environments": described(&strings, "Where the drill may run (`local` always may)."),
        "schedule": {
            "description": "When the drill runs by itself: a 5-field cron expression (minute hour day-of-month month day-of-week), e.g. `0 10 * * MON-FRI`.",
            "type": "string",
            "pattern": r"^\s*\S+(?:\s+\S+){4}\s*$"
        },
        "simulation": s(g.subschema_for::<RawSimulation>()),
        "proxy": {
            "description": "Fault-injecting TCP proxies by name.",
            "type": "object",
            "additionalProperties": s(g.subschema_for::<RawProxy>())
        },
        "targets": named("What faults act on", "target", None),
        "probes": named("What says the system is healthy", "probe", Some(1)),
        "steady-state": described(&strings, "Probes that must pass before injecting (default: all)."),
        "faults": {
            "description": "What to break, in order.",
            "type": "array",
            "minItems": 1,
            "items": { "$ref": format!("#/{DEFS}/fault") }
        },
        "recovery": s(g.subschema_for::<RawRecovery>()),
        "abort-when": described(
            &s(g.subschema_for::<Option<Vec<RawAbort>>>()),
            "Stop a trial early (and revert) when one of these holds.",
        ),
        "repeat": described(&s(g.subschema_for::<i64>()), "Trials in one run, 1 to 1000."),
        "cooldown": described(&duration, "The pause between trials (default 5s)."),
        "max-duration": described(&duration, "The longest a run may take (default 24h)."),
    });
    defs.extend(g.take_definitions(true));
    let mut root = json!({
        "$schema": DRAFT,
        "title": "firedrill experiment",
        "description": "A chaos or disaster-recovery drill (https://github.com/firedrill): what to break, which probes say the system is healthy, and how fast it must heal.",
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "faults", "recovery"],
        // Probes are required unless every fault is a `restore` (a restore drill measures the
        // restore itself), as the loader has it.
        "if": {
            "properties": {
                "faults": { "type": "array", "items": { "type": "object", "required": ["restore"] } }
            }
        },
        "else": { "required": ["probes"] },
        "properties": properties,
        DEFS: defs,
    });
    scalars_as_text(&mut root);
    interpolable(&mut root);
    // After the pass above, which would otherwise let it refer to itself.
    root[DEFS][INTERPOLATED] = json!({
        "description": "A `${name}` (a variable of the environment or the command line) or `${env:NAME}` reference, resolved before the value is checked.",
        "type": "string",
        "pattern": r"\$\{"
    });
    root
}

/// The JSON Schema of `firedrill.yaml`.
pub fn environments_schema() -> Value {
    let mut g = generator();
    let env = g.subschema_for::<RawEnvironment>().to_value();
    let store = g
        .subschema_for::<crate::experiment::raw::RawStore>()
        .to_value();
    let defs: Map<String, Value> = g.take_definitions(true).into_iter().collect();
    let mut root = json!({
        "$schema": DRAFT,
        "title": "firedrill environments (firedrill.yaml)",
        "description": "The environments drills run in: kube context, variables, time zone, protection and promotion rules, schedule windows.",
        "type": "object",
        "additionalProperties": false,
        "required": ["environments"],
        "properties": {
            "environments": {
                "description": "Environments by name (lowercase letters, digits and `-`).",
                "type": "object",
                "propertyNames": { "pattern": DNS_LABEL },
                "additionalProperties": env
            },
            "store": described(&store, "Where the shared store's DSN is: `dsn-env` (a variable) or `dsn-file` (a file); --store and FIREDRILL_STORE take precedence.")
        },
        DEFS: defs,
    });
    scalars_as_text(&mut root);
    root
}

fn generator() -> SchemaGenerator {
    SchemaGenerator::new(schemars::generate::SchemaSettings::draft07())
}

/// `schema` with `description` set. Draft 7 ignores what stands beside a `$ref`, so a
/// reference is wrapped.
fn described(schema: &Value, description: &str) -> Value {
    if schema.get("$ref").is_some() {
        return json!({ "description": description, "allOf": [schema] });
    }
    let mut v = schema.clone();
    if let Some(m) = v.as_object_mut() {
        m.insert("description".into(), json!(description));
    }
    v
}

/// An entry with exactly one kind key among `kinds` and optional `common` keys: one branch per
/// kind, each requiring its key and allowing no other kind's.
fn one_kind(description: &str, kinds: Vec<(&str, Value)>, common: &[(&str, Value)]) -> Value {
    let branches: Vec<Value> = kinds
        .into_iter()
        .map(|(kind, body)| {
            let mut properties = Map::new();
            properties.insert(kind.into(), body);
            for (k, v) in common {
                properties.insert((*k).into(), v.clone());
            }
            json!({
                "title": kind,
                "type": "object",
                "required": [kind],
                "properties": properties,
                "additionalProperties": false
            })
        })
        .collect();
    json!({ "description": description, "oneOf": branches })
}

/// The keywords whose value is one subschema, and those whose value maps names to subschemas
/// or lists them.
const ONE: &[&str] = &[
    "additionalProperties",
    "items",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "contains",
];
const MANY: &[&str] = &["properties", "patternProperties", DEFS];
const LIST: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];

/// Applies `f` to every subschema of `schema` (not to `schema` itself).
fn each_subschema(schema: &mut Value, f: &mut dyn FnMut(&mut Value)) {
    let Some(m) = schema.as_object_mut() else {
        return;
    };
    for (k, v) in m.iter_mut() {
        if ONE.contains(&k.as_str()) {
            f(v);
        } else if MANY.contains(&k.as_str()) {
            if let Some(children) = v.as_object_mut() {
                children.values_mut().for_each(&mut *f);
            }
        } else if LIST.contains(&k.as_str()) {
            if let Some(children) = v.as_array_mut() {
                children.iter_mut().for_each(&mut *f);
            }
        }
    }
}

/// The types a schema allows, when it says (`type: x` or `type: [x, y]`).
fn types(schema: &Value) -> Option<Vec<&str>> {
    match schema.get("type")? {
        Value::String(t) => Some(vec![t.as_str()]),
        Value::Array(ts) => Some(ts.iter().filter_map(Value::as_str).collect()),
        _ => None,
    }
}

/// Whether `schema` restricts the text of a string (so it is not any text).
fn restricts_text(schema: &Value) -> bool {
    [
        "pattern",
        "enum",
        "const",
        "format",
        "minLength",
        "maxLength",
    ]
    .iter()
    .any(|k| schema.get(k).is_some())
}

/// A value read as a string may be written as any scalar (`de::NodeDe::deserialize_str`): a
/// plain string schema accepts numbers and booleans too.
fn scalars_as_text(schema: &mut Value) {
    each_subschema(schema, &mut scalars_as_text);
    let Some(ts) = types(schema) else { return };
    if ts.contains(&"string") && !restricts_text(schema) {
        let mut wider: Vec<&str> = ts;
        for t in ["number", "boolean"] {
            if !wider.contains(&t) {
                wider.push(t);
            }
        }
        // `number` already admits integers.
        wider.retain(|t| *t != "integer");
        let wider = json!(wider);
        schema["type"] = wider;
    }
}

/// Whether `schema` accepts only scalars (and so can stand for a `${...}` value), and whether
/// it accepts any string already. `None` for anything that may be a list or a mapping.
fn scalar_kind(schema: &Value) -> Option<bool> {
    const SCALARS: &[&str] = &["string", "integer", "number", "boolean", "null"];
    let m = schema.as_object()?;
    if m.contains_key("$ref") || m.contains_key("properties") || m.contains_key("items") {
        return None;
    }
    let mut any_text = false;
    let mut said = false;
    if let Some(ts) = types(schema) {
        said = true;
        if !ts.iter().all(|t| SCALARS.contains(t)) {
            return None;
        }
        any_text |= ts.contains(&"string") && !restricts_text(schema);
    } else if m.contains_key("const") || m.contains_key("enum") {
        said = true;
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(branches) = m.get(key).and_then(Value::as_array) {
            said = true;
            for b in branches {
                any_text |= scalar_kind(b)?;
            }
        }
    }
    said.then_some(any_text)
}

/// Every scalar that does not already take any string also takes a `${...}` reference (in an
/// experiment, interpolation runs on the tree before anything is typed).
fn interpolable(schema: &mut Value) {
    match scalar_kind(schema) {
        Some(true) => {}
        Some(false) if types(schema).is_some_and(|t| t == ["null"]) => {}
        Some(false) => {
            let mut original = schema.take();
            let mut wrapper = Map::new();
            if let Some(d) = original
                .as_object_mut()
                .and_then(|m| m.remove("description"))
            {
                wrapper.insert("description".into(), d);
            }
            wrapper.insert(
                "anyOf".into(),
                json!([original, { "$ref": format!("#/{DEFS}/{INTERPOLATED}") }]),
            );
            *schema = Value::Object(wrapper);
        }
        None => each_subschema(schema, &mut interpolable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_unknown_fields_is_additional_properties_false() {
        let s = experiment_schema();
        let kube = &s[DEFS]["RawKubeTarget"];
        assert_eq!(kube["additionalProperties"], json!(false), "{kube:#}");
        assert_eq!(s["additionalProperties"], json!(false));
        let env = environments_schema();
        assert_eq!(
            env[DEFS]["RawEnvironment"]["additionalProperties"],
            json!(false)
        );
    }

    #[test]
    fn every_fault_kind_is_a_branch() {
        let s = experiment_schema();
        let branches = s[DEFS]["fault"]["oneOf"].as_array().expect("oneOf");
        let titles: Vec<&str> = branches
            .iter()
            .filter_map(|b| b["title"].as_str())
            .collect();
        let keys: Vec<&str> = FaultKind::ALL.iter().map(|k| k.key()).collect();
        assert_eq!(titles, keys);
    }

    #[test]
    fn integers_take_references_only_in_experiments() {
        let s = experiment_schema();
        let repeat = s["properties"]["repeat"].to_string();
        assert!(repeat.contains(INTERPOLATED), "{repeat}");
        let env = environments_schema().to_string();
        assert!(!env.contains(INTERPOLATED));
    }
}
