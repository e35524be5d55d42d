//! The OpenAPI v3 documents kubectl asks for, and the strict field validation they promise.
//!
//! kubectl validates a manifest before it sends it (`--validate=strict`, the default): it reads
//! `/openapi/v3` and the document of the manifest's group-version, and when the operation
//! declares the `fieldValidation` query parameter it leaves validation to the server and sends
//! `fieldValidation=Strict`. So the documents here describe every resource's paths with that
//! parameter and the `x-kubernetes-group-version-kind` of each operation, and the server keeps
//! the promise: a created or replaced built-in object with a field its type does not declare
//! is refused with 400, as a real API server refuses it. Without the documents kubectl refused
//! to apply at all unless told `--validate=false`.
//!
//! The documents carry no component schemas: kubectl then computes strategic merge patches
//! from its own compiled-in types, which know the patch strategies of the built-in kinds
//! exactly. A patch body is not checked for unknown fields (only create and replace are).

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::store::ResInfo;

/// The path of a group-version's document, as kubectl names it: `api/v1`, `apis/apps/v1`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `GET /openapi/v3`: one entry per group-version, each with a hash of its document so that
/// kubectl's cache (keyed by the hash) never serves a stale one.
pub fn discovery(resources: &[ResInfo]) -> Value {
    let mut paths = Map::new();
    for (group, version) in group_versions(resources) {
        let doc = document(resources, &group, &version);
        let hash = hex(&Sha256::digest(doc.to_string().as_bytes()));
        let path = gv_path(&group, &version);
        paths.insert(
            path.clone(),
            json!({ "serverRelativeURL": format!("/openapi/v3/{path}?hash={hash}") }),
        );
    }
    json!({ "paths": paths })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn group_versions(resources: &[ResInfo]) -> Vec<(String, String)> {
    let mut gvs: Vec<(String, String)> = resources
        .iter()
        .map(|r| (r.group.clone(), r.version.clone()))
        .collect();
    gvs.sort();
    gvs.dedup();
    gvs
}

/// `GET /openapi/v3/{api/v1 | apis/GROUP/VERSION}`; `None` for a group-version nobody serves.
pub fn document_at(resources: &[ResInfo], path: &str) -> Option<Value> {
    group_versions(resources)
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == path)
        .map(|(g, v)| document(resources, &g, &v))
}

fn document(resources: &[ResInfo], group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    for r in resources
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let prefix = format!("/{}", gv_path(group, version));
        let (collection, item) = if r.namespaced {
            (
                format!("{prefix}/namespaces/{{namespace}}/{}", r.plural),
                format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
            )
        } else {
            (
                format!("{prefix}/{}", r.plural),
                format!("{prefix}/{}/{{name}}", r.plural),
            )
        };
        let gvk = json!({ "group": r.group, "version": r.version, "kind": r.kind });
        let op = |action: &str, id: &str, validated: bool| {
            let mut params =
                vec![json!({ "name": "dryRun", "in": "query", "schema": { "type": "string" } })];
            if validated {
                params.push(json!({
                    "name": "fieldValidation",
                    "in": "query",
                    "description": "Ignore, Warn or Strict: what the server does with a field the type does not declare",
                    "schema": { "type": "string" }
                }));
            }
            json!({
                "operationId": format!("{id}{}", r.kind),
                "parameters": params,
                "responses": { "200": { "description": "OK" } },
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            })
        };
        paths.insert(
            collection,
            json!({
                "get": op("list", "list", false),
                "post": op("post", "create", true),
            }),
        );
        paths.insert(
            item,
            json!({
                "get": op("get", "read", false),
                "put": op("put", "replace", true),
                "patch": op("patch", "patch", true),
                "delete": op("delete", "delete", false),
            }),
        );
    }
    json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes (firedrill simulated cluster)", "version": "v1.32.0" },
        "paths": paths,
        "components": { "schemas": {} },
    })
}

/// The fields of a built-in object that its type does not declare, as the API server names
/// them under `fieldValidation=Strict` (`spec.replcas`); empty when all are known or when the
/// kind is not one whose type firedrill knows (custom resources are stored as given).
///
/// The object is read into the Kubernetes type and written back: a field that does not survive
/// the round trip is one the type does not have.
pub fn unknown_fields(kind: &str, obj: &Value) -> Vec<String> {
    use k8s_openapi::api::{
        apps::v1 as apps, coordination::v1 as coord, core::v1 as core, policy::v1 as policy,
    };
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(obj: &Value) -> Option<Value> {
        serde_json::from_value::<T>(obj.clone())
            .ok()
            .and_then(|t| serde_json::to_value(t).ok())
    }
    let back = match kind {
        "Namespace" => round_trip::<core::Namespace>(obj),
        "Node" => round_trip::<core::Node>(obj),
        "Pod" => round_trip::<core::Pod>(obj),
        "Service" => round_trip::<core::Service>(obj),
        "Endpoints" => round_trip::<core::Endpoints>(obj),
        "Event" => round_trip::<core::Event>(obj),
        "ConfigMap" => round_trip::<core::ConfigMap>(obj),
        "ServiceAccount" => round_trip::<core::ServiceAccount>(obj),
        "Deployment" => round_trip::<apps::Deployment>(obj),
        "ReplicaSet" => round_trip::<apps::ReplicaSet>(obj),
        "StatefulSet" => round_trip::<apps::StatefulSet>(obj),
        "Lease" => round_trip::<coord::Lease>(obj),
        "PodDisruptionBudget" => round_trip::<policy::PodDisruptionBudget>(obj),
        _ => None,
    };
    let mut missing = Vec::new();
    if let Some(back) = back {
        diff("", obj, &back, &mut missing);
    }
    missing
}

fn diff(path: &str, given: &Value, kept: &Value, missing: &mut Vec<String>) {
    match (given, kept) {
        (Value::Object(g), Value::Object(k)) => {
            for (key, value) in g {
                // apiVersion and kind are read from the type's own constants.
                if path.is_empty() && (key == "apiVersion" || key == "kind") {
                    continue;
                }
                let here = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match k.get(key) {
                    Some(v) => diff(&here, value, v, missing),
                    // An explicit null is "unset", which the type may leave out.
                    None if value.is_null() => {}
                    None => missing.push(here),
                }
            }
        }
        (Value::Array(g), Value::Array(k)) => {
            for (i, (a, b)) in g.iter().zip(k).enumerate() {
                diff(&format!("{path}[{i}]"), a, b, missing);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> Vec<ResInfo> {
        vec![ResInfo {
            group: "apps".into(),
            version: "v1".into(),
            plural: "deployments".into(),
            kind: "Deployment".into(),
            namespaced: true,
            short: vec![],
            status: true,
        }]
    }

    #[test]
    fn documents_declare_field_validation_for_every_write() {
        let res = deployments();
        let d = discovery(&res);
        let url = d["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
        let doc = document_at(&res, "apis/apps/v1").unwrap();
        let item = &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"];
        let patch = &item["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation"));
        assert!(document_at(&res, "api/v1").is_none());
    }

    #[test]
    fn a_field_the_type_does_not_declare_is_named_with_its_path() {
        let obj = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": { "name": "web", "labels": { "app": "web" } },
            "spec": {
                "replcas": 2,
                "selector": { "matchLabels": { "app": "web" } },
                "template": { "metadata": { "labels": { "app": "web" } },
                    "spec": { "containers": [ { "name": "web", "image": "nginx", "imagePullPolice": "Always" } ] } }
            }
        });
        assert_eq!(
            unknown_fields("Deployment", &obj),
            vec![
                "spec.replcas".to_string(),
                "spec.template.spec.containers[0].imagePullPolice".to_string()
            ]
        );
        let mut good = obj.clone();
        good["spec"].as_object_mut().unwrap().remove("replcas");
        good["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("imagePullPolice");
        assert!(unknown_fields("Deployment", &good).is_empty());
        assert!(
            unknown_fields("Widget", &obj).is_empty(),
            "custom kinds are stored as given"
        );
    }
}
