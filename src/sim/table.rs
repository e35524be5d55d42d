//! The meta.k8s.io/v1 Table rendering kubectl asks for (`Accept: ...;as=Table`), with the
//! columns of kubectl's built-in printers for pods, workloads and namespaces and NAME/AGE for
//! everything else.

use std::sync::Arc;

use serde_json::{json, Value};

use super::cluster::is_terminating;
use super::store::ResInfo;
use super::store::{meta_str, Obj};

type CellFn = Box<dyn Fn(&Value) -> Vec<Value>>;

/// kubectl's short age format: 45s, 3m20s, 45m, 3h20m, 20h, 3d4h, 200d, 3y.
fn human_age(created: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(created) else {
        return "<unknown>".into();
    };
    let s = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => format!("{m}m{}s", s % 60),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => format!("{h}h{}m", m % 60),
        _ if d < 2 => format!("{h}h"),
        _ if d < 8 => format!("{d}d{}h", h % 24),
        _ if d < 730 => format!("{d}d"),
        _ => format!("{}y", d / 365),
    }
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

fn pod_cells(o: &Value) -> Vec<Value> {
    let statuses = o
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array);
    let total = o
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses.map_or(0, |s| {
        s.iter()
            .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
            .count()
    });
    let restarts: i64 = statuses.map_or(0, |s| {
        s.iter()
            .filter_map(|c| c.get("restartCount").and_then(Value::as_i64))
            .sum()
    });
    let phase = o
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("Pending");
    let waiting = statuses.and_then(|s| {
        s.iter()
            .find_map(|c| c.pointer("/state/waiting/reason").and_then(Value::as_str))
    });
    let status = if is_terminating(o) {
        "Terminating"
    } else {
        waiting.unwrap_or(phase)
    };
    vec![
        json!(meta_str(o, "name")),
        json!(format!("{ready}/{total}")),
        json!(status),
        json!(restarts),
        json!(human_age(meta_str(o, "creationTimestamp"))),
        json!(o
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .unwrap_or("<none>")),
        json!(o
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .unwrap_or("<none>")),
    ]
}

/// kubectl's node printer: Ready/NotReady (any status but True), SchedulingDisabled when
/// cordoned; roles from the node-role.kubernetes.io/ labels.
fn node_cells(o: &Value) -> Vec<Value> {
    let ready = o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some("Ready"))
        })
        .map(|c| c.get("status").and_then(Value::as_str) == Some("True"));
    let mut status = match ready {
        Some(true) => "Ready".to_string(),
        Some(false) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push_str(",SchedulingDisabled");
    }
    let mut roles: Vec<&str> = o
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|l| {
            l.keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.join(",")
    };
    let address = |kind: &str| {
        o.pointer("/status/addresses")
            .and_then(Value::as_array)
            .and_then(|a| {
                a.iter()
                    .find(|x| x.get("type").and_then(Value::as_str) == Some(kind))
                    .and_then(|x| x.get("address").and_then(Value::as_str))
            })
            .unwrap_or("<none>")
            .to_string()
    };
    let info = |f: &str| {
        o.pointer(&format!("/status/nodeInfo/{f}"))
            .and_then(Value::as_str)
            .unwrap_or("<unknown>")
            .to_string()
    };
    vec![
        json!(meta_str(o, "name")),
        json!(status),
        json!(roles),
        json!(human_age(meta_str(o, "creationTimestamp"))),
        json!(info("kubeletVersion")),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn num(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

/// A meta.k8s.io/v1 Table of `items`, with per-kind columns like kubectl's built-in printers.
pub fn table(
    info: &ResInfo,
    items: &[Arc<Obj>],
    rv: u64,
    include: Option<&str>,
    headers: bool,
) -> Value {
    let (columns, cells): (Vec<Value>, CellFn) = match (info.group.as_str(), info.plural.as_str()) {
        ("", "pods") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Status", "string", 0),
                col("Restarts", "string", 0),
                col("Age", "string", 0),
                col("IP", "string", 1),
                col("Node", "string", 1),
            ],
            Box::new(pod_cells),
        ),
        ("apps", "deployments") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Up-to-date", "string", 0),
                col("Available", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(|o: &Value| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(format!(
                        "{}/{}",
                        num(o, "/status/readyReplicas"),
                        num(o, "/spec/replicas")
                    )),
                    json!(num(o, "/status/updatedReplicas")),
                    json!(num(o, "/status/availableReplicas")),
                    json!(human_age(meta_str(o, "creationTimestamp"))),
                ]
            }),
        ),
        ("apps", "replicasets") => (
            vec![
                col("Name", "string", 0),
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                col("Age", "string", 0),
            ],
            Box::new(|o: &Value| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(num(o, "/spec/replicas")),
                    json!(num(o, "/status/replicas")),
                    json!(num(o, "/status/readyReplicas")),
                    json!(human_age(meta_str(o, "creationTimestamp"))),
                ]
            }),
        ),
        ("apps", "statefulsets") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(|o: &Value| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(format!(
                        "{}/{}",
                        num(o, "/status/readyReplicas"),
                        num(o, "/spec/replicas")
                    )),
                    json!(human_age(meta_str(o, "creationTimestamp"))),
                ]
            }),
        ),
        ("", "nodes") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Roles", "string", 0),
                col("Age", "string", 0),
                col("Version", "string", 0),
                col("Internal-IP", "string", 1),
                col("External-IP", "string", 1),
                col("OS-Image", "string", 1),
                col("Kernel-Version", "string", 1),
                col("Container-Runtime", "string", 1),
            ],
            Box::new(node_cells),
        ),
        ("policy", "poddisruptionbudgets") => (
            vec![
                col("Name", "string", 0),
                col("Min Available", "string", 0),
                col("Max Unavailable", "string", 0),
                col("Allowed Disruptions", "integer", 0),
                col("Age", "string", 0),
            ],
            Box::new(|o: &Value| {
                let field = |f: &str| match o.pointer(&format!("/spec/{f}")) {
                    Some(Value::String(s)) => s.clone(),
                    Some(Value::Number(n)) => n.to_string(),
                    _ => "N/A".to_string(),
                };
                vec![
                    json!(meta_str(o, "name")),
                    json!(field("minAvailable")),
                    json!(field("maxUnavailable")),
                    json!(num(o, "/status/disruptionsAllowed")),
                    json!(human_age(meta_str(o, "creationTimestamp"))),
                ]
            }),
        ),
        ("", "namespaces") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Age", "string", 0),
            ],
            Box::new(|o: &Value| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(o
                        .pointer("/status/phase")
                        .and_then(Value::as_str)
                        .unwrap_or("Active")),
                    json!(human_age(meta_str(o, "creationTimestamp"))),
                ]
            }),
        ),
        _ => (
            vec![col("Name", "string", 0), col("Age", "string", 0)],
            Box::new(|o: &Value| {
                vec![
                    json!(meta_str(o, "name")),
                    json!(human_age(meta_str(o, "creationTimestamp"))),
                ]
            }),
        ),
    };
    let include = include.unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let mut row = json!({"cells": cells(o)});
            match include {
                "None" => {}
                "Object" => row["object"] = o.value().clone(),
                _ => {
                    row["object"] = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": o.get("metadata").cloned().unwrap_or(json!({}))})
                }
            }
            row
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": if headers { columns } else { Vec::new() },
        "rows": rows})
}
