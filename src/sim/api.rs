//! The HTTP face of the simulated cluster: discovery, CRUD, patch, watch and the Table format
//! kubectl asks for, with errors shaped like the real API server's `Status` objects.
//!
//! Routing is by hand rather than by axum routes because Kubernetes paths are a small grammar
//! (`/api/v1/namespaces/{ns}/{plural}/{name}/{sub}`, `/apis/{group}/{version}/...`) that must
//! also accept resources nobody declared (custom resources are stored as opaque JSON).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::auth::{Caller, StorePolicy};
use super::cluster::{pods, set_at, Sim};
use super::rbac::{self, Attributes};
use super::select::{json_patch, merge_patch, Selector};
use super::store::{
    meta_str, rv_of, Change, ChangeKind, Live, Obj, ObjKey, ResId, ResInfo, StoreError,
    Subscription, WatchKey, WatchStart,
};
use super::table::table;
use super::RequestRecord;
// RFC 1123 names (subdomains for most object names): one check, the experiment loader's.
use crate::experiment::check::is_dns_subdomain;

/// (group, version, plural, kind, namespaced, short names, has a status subresource)
type BuiltinRow = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    bool,
    &'static [&'static str],
    bool,
);

const BUILTIN: &[BuiltinRow] = &[
    ("", "v1", "namespaces", "Namespace", false, &["ns"], true),
    ("", "v1", "nodes", "Node", false, &["no"], true),
    ("", "v1", "pods", "Pod", true, &["po"], true),
    ("", "v1", "services", "Service", true, &["svc"], true),
    ("", "v1", "endpoints", "Endpoints", true, &["ep"], false),
    ("", "v1", "events", "Event", true, &["ev"], false),
    ("", "v1", "configmaps", "ConfigMap", true, &["cm"], false),
    (
        "",
        "v1",
        "serviceaccounts",
        "ServiceAccount",
        true,
        &["sa"],
        false,
    ),
    (
        "apps",
        "v1",
        "deployments",
        "Deployment",
        true,
        &["deploy"],
        true,
    ),
    (
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        true,
        &["rs"],
        true,
    ),
    (
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        true,
        &["sts"],
        true,
    ),
    (
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        true,
        &["pdb"],
        true,
    ),
    (
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        true,
        &[],
        false,
    ),
    (rbac::GROUP, "v1", "roles", "Role", true, &[], false),
    (
        rbac::GROUP,
        "v1",
        "rolebindings",
        "RoleBinding",
        true,
        &[],
        false,
    ),
    (
        rbac::GROUP,
        "v1",
        "clusterroles",
        "ClusterRole",
        false,
        &[],
        false,
    ),
    (
        rbac::GROUP,
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
        &[],
        false,
    ),
    // Answered, never stored: what `kubectl auth can-i` asks.
    (
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "SelfSubjectAccessReview",
        false,
        &[],
        false,
    ),
];

/// What `kubectl get all` lists, as on a real cluster.
const ALL_CATEGORY: &[&str] = &[
    "pods",
    "services",
    "deployments",
    "replicasets",
    "statefulsets",
];

fn builtin() -> Vec<ResInfo> {
    BUILTIN
        .iter()
        .map(|&(g, v, p, k, ns, short, status)| ResInfo {
            group: g.into(),
            version: v.into(),
            plural: p.into(),
            kind: k.into(),
            namespaced: ns,
            short: short.iter().map(|s| s.to_string()).collect(),
            status,
        })
        .collect()
}

fn is_builtin_group(g: &str) -> bool {
    BUILTIN.iter().any(|b| b.0 == g)
}

pub struct Api {
    sim: Arc<Sim>,
    resources: Vec<ResInfo>,
    /// Custom resources seen so far, by (group, version, plural).
    custom: Mutex<BTreeMap<(String, String, String), ResInfo>>,
}

pub fn router(sim: Arc<Sim>) -> Router {
    let api = Arc::new(Api {
        sim,
        resources: builtin(),
        custom: Mutex::new(BTreeMap::new()),
    });
    Router::new().fallback(handle).with_state(api)
}

/// A workload's `spec.replicas`: an integer from 0 to the simulation's bound (a huge count
/// would have the controllers create pods until memory runs out).
fn check_replicas(info: &ResInfo, name: &str, v: &Value) -> Result<i64, ApiError> {
    let max = i64::from(super::scenario::MAX_REPLICAS);
    match v.as_i64() {
        Some(r) if (0..=max).contains(&r) => Ok(r),
        _ => Err(ApiError::invalid(
            info,
            name,
            "spec.replicas",
            &format!("Invalid value: {v}: must be between 0 and {max} in the simulated cluster"),
        )),
    }
}

/// An API error rendered as a `Status` object.
#[derive(Debug)]
pub struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
    details: Value,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }
    fn not_found(info: &ResInfo, name: &str) -> Self {
        ApiError {
            details: json!({"name": name, "group": info.group, "kind": info.plural}),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("{} \"{name}\" not found", info.qualified()),
            )
        }
    }
    fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "the server could not find the requested resource",
        )
    }
    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    fn invalid(info: &ResInfo, name: &str, field: &str, detail: &str) -> Self {
        ApiError {
            details: json!({"name": name, "group": info.group, "kind": info.kind,
                "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}]}),
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("{} \"{name}\" is invalid: {field}: {detail}", info.kind),
            )
        }
    }
    fn from_store(e: StoreError, info: &ResInfo, name: &str) -> Self {
        let details = json!({"name": name, "group": info.group, "kind": info.plural});
        let (code, reason, message) = match &e {
            StoreError::NotFound => return Self::not_found(info, name),
            StoreError::AlreadyExists => (
                StatusCode::CONFLICT,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", info.qualified()),
            ),
            StoreError::Conflict => (
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {e}",
                    info.qualified()
                ),
            ),
            StoreError::Gone { .. } => (StatusCode::GONE, "Expired", e.to_string()),
        };
        ApiError {
            details,
            ..Self::new(code, reason, message)
        }
    }
    fn status_value(&self) -> Value {
        let mut v = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
            "code": self.code.as_u16()});
        if !self.details.is_null() {
            v["details"] = self.details.clone();
        }
        v
    }
    fn into_response(self) -> Response {
        json_response(self.code, &self.status_value())
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    bytes_response(code, serde_json::to_vec(v).unwrap_or_default())
}

/// A stored object as the response, from its cached JSON.
fn obj_response(code: StatusCode, obj: &Obj) -> Response {
    bytes_response(code, obj.json().clone())
}

fn bytes_response(code: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = code;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

type ApiResult = Result<Response, ApiError>;

async fn handle(
    axum::extract::State(api): axum::extract::State<Arc<Api>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = SystemTime::now();
    let query = uri.query().unwrap_or("").to_string();
    // Like the proxy's API: no web page may drive the cluster through a rebound name.
    let mut user = None;
    let allowed = crate::safety::loopback::check(&headers, uri.authority().map(|a| a.as_str()))
        .map_err(|e| ApiError::new(StatusCode::FORBIDDEN, "Forbidden", e.to_string()))
        .and_then(|()| api.authenticate(&headers))
        .and_then(|caller| {
            user = caller.user().map(|u| u.name);
            api.authorize(&caller, &method, uri.path(), &query)?;
            let body = readable_body(uri.path(), &headers, body)?;
            Ok((caller, body))
        });
    let response = match allowed.and_then(|(caller, body)| {
        api.route_for(&caller, &method, uri.path(), &query, &headers, body)
    }) {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    tracing::debug!(%method, path = uri.path(), %query, status = response.status().as_u16(), "sim api");
    api.sim.record_request(RequestRecord {
        method: method.to_string(),
        path: uri.path().to_string(),
        query,
        status: response.status().as_u16(),
        at,
        user,
    });
    response
}

/// The simulated cluster speaks JSON only. A body in another media type (kubectl sends
/// protobuf for built-in kinds) is answered 415, as an API server answers a type it does not
/// serve. (kubectl 1.32 does not then retry in JSON: `kubectl create` of a built-in kind
/// needs a protobuf decoder the simulated cluster does not have; `apply` sends JSON.)
fn json_body(headers: &HeaderMap, body: &Bytes) -> Result<(), ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if body.is_empty() || ctype.is_empty() || ctype.contains("json") || ctype.contains("yaml") {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        format!("the body of the request was in an unknown format - accepted media types include: application/json, application/merge-patch+json, application/strategic-merge-patch+json, application/json-patch+json, application/apply-patch+yaml (not {ctype})"),
    ))
}

/// The paths whose protobuf bodies are read ([`super::proto`]): a TokenRequest and a
/// SelfSubjectAccessReview, which kubectl sends in nothing else.
fn reads_protobuf(path: &str) -> bool {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    matches!(
        segs.as_slice(),
        ["api", "v1", "namespaces", _, "serviceaccounts", _, "token"]
            | [
                "apis",
                "authorization.k8s.io",
                "v1",
                "selfsubjectaccessreviews"
            ]
    )
}

/// The body as JSON: a protobuf TokenRequest or SelfSubjectAccessReview decoded, anything else
/// as [`json_body`] accepts it.
fn readable_body(path: &str, headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
    let protobuf = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/vnd.kubernetes.protobuf"));
    if protobuf && !body.is_empty() && reads_protobuf(path) {
        let v = super::proto::decode(&body).map_err(|e| {
            ApiError::bad_request(format!("the protobuf body could not be read: {e}"))
        })?;
        return Ok(Bytes::from(serde_json::to_vec(&v).unwrap_or_default()));
    }
    json_body(headers, &body)?;
    Ok(body)
}

/// Decoded query parameters (percent-decoding and `+` as space, as Go's url.ParseQuery does).
struct Query(BTreeMap<String, String>);

/// What a list request asks of paging (`limit`, `continue`). Items come in (namespace, name)
/// order; the continue token holds the list's resourceVersion and the last key examined, and
/// the next page resumes after that key in the store's ordered map, so a page costs O(page)
/// rather than O(n). Every page reports the first page's resourceVersion, so a watch started
/// from the end of a paged list replays whatever changed while it was being read, and misses
/// nothing. `remainingItemCount` (optional in Kubernetes) is not sent: counting it is O(n).
#[derive(Debug, PartialEq)]
struct PageReq {
    /// 0: everything at once.
    limit: usize,
    after: Option<ObjKey>,
    /// The first page's resourceVersion, from the token.
    rv: Option<u64>,
}

impl PageReq {
    fn of(q: &Query) -> Result<PageReq, ApiError> {
        let limit = match q.get("limit").filter(|l| !l.is_empty()) {
            None => 0,
            Some(l) => l.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!(
                    "limit: invalid value {l:?}: must be a non-negative integer"
                ))
            })?,
        };
        let Some(token) = q.get("continue").filter(|c| !c.is_empty()) else {
            return Ok(PageReq {
                limit,
                after: None,
                rv: None,
            });
        };
        let mut parts = token.splitn(3, '/');
        let (Some(Ok(rv)), Some(ns), Some(name)) = (
            parts.next().map(str::parse::<u64>),
            parts.next(),
            parts.next(),
        ) else {
            return Err(ApiError::bad_request(
                "continue key is not valid: pass the `continue` of the previous page unchanged",
            ));
        };
        Ok(PageReq {
            limit,
            after: Some((ns.to_string(), name.to_string())),
            rv: Some(rv),
        })
    }

    /// The token that resumes after `key`, for a list read at `rv`.
    fn token(rv: u64, (ns, name): &ObjKey) -> String {
        format!("{rv}/{ns}/{name}")
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    fn parse(q: &str) -> Self {
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (percent_decode(k), percent_decode(v))
                })
                .collect(),
        )
    }
    fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("1" | "true" | "True"))
    }
}

/// What a resource path addresses.
struct Target {
    info: ResInfo,
    ns: Option<String>,
    name: Option<String>,
    sub: Option<String>,
}

fn with_warning(mut r: Response, warnings: Vec<header::HeaderValue>) -> Response {
    for w in warnings {
        r.headers_mut().append(header::WARNING, w);
    }
    r
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

impl Api {
    /// The caller of a request ([`super::auth`]): 401 for a bearer token the cluster did not
    /// mint or that expired.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
        self.sim
            .tokens
            .authenticate(&self.sim.store, authorization)
            .map_err(|_| ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized"))
    }

    /// RBAC for a service account's request ([`super::rbac`]); the admin is not checked.
    fn authorize(
        &self,
        caller: &Caller,
        method: &Method,
        path: &str,
        query: &str,
    ) -> Result<(), ApiError> {
        let Some(user) = caller.user() else {
            return Ok(());
        };
        let q = Query::parse(query);
        let fields = Selector::parse_fields(q.get("fieldSelector").unwrap_or("")).ok();
        let name = fields.as_ref().and_then(|f| f.pinned("metadata.name"));
        let attrs = Attributes::of_request(method.as_str(), path, q.flag("watch"), name);
        let decision = rbac::authorize(&StorePolicy(&self.sim.store), &user, &attrs);
        if decision.allowed {
            return Ok(());
        }
        Err(ApiError {
            details: rbac::forbidden_details(&attrs),
            ..ApiError::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                rbac::forbidden_message(&user, &attrs, &decision.reason),
            )
        })
    }

    /// [`Self::route`], with the endpoints that answer according to who asks: TokenRequest
    /// and SelfSubjectAccessReview.
    fn route_for(
        &self,
        caller: &Caller,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> ApiResult {
        let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
        let not_allowed = || {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            )
        };
        match segs.as_slice() {
            ["api", "v1", "namespaces", ns, "serviceaccounts", name, "token"] => {
                if *method != Method::POST {
                    return Err(not_allowed());
                }
                self.token_request(ns, name, &body)
            }
            ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews", rest @ ..] => {
                if *method != Method::POST || !rest.is_empty() {
                    return Err(not_allowed());
                }
                self.access_review(caller, &body)
            }
            _ => self.route(method, path, query, headers, body),
        }
    }

    /// `POST .../serviceaccounts/{name}/token`: a token for the service account, valid for
    /// `spec.expirationSeconds` (at least 10 minutes, default 1 hour, at most 48 hours).
    fn token_request(&self, ns: &str, name: &str, body: &Bytes) -> ApiResult {
        let info = self
            .resources
            .iter()
            .find(|r| r.group.is_empty() && r.plural == "serviceaccounts")
            .cloned()
            .ok_or_else(ApiError::no_route)?;
        let sa = self
            .sim
            .store
            .get(&info.id(), ns, name)
            .ok_or_else(|| ApiError::not_found(&info, name))?;
        let mut req = if body.is_empty() {
            json!({})
        } else {
            Self::parse_body(body)?
        };
        let invalid = |detail: String| {
            ApiError {
            details: json!({"name": name, "group": "authentication.k8s.io", "kind": "TokenRequest",
                "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "spec.expirationSeconds"}]}),
            ..ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("TokenRequest.authentication.k8s.io \"{name}\" is invalid: spec.expirationSeconds: {detail}"),
            )
        }
        };
        let ttl = match req.pointer("/spec/expirationSeconds") {
            None | Some(Value::Null) => super::auth::DEFAULT_EXPIRATION,
            Some(v) => match v.as_u64() {
                Some(s) if s >= super::auth::MIN_EXPIRATION.as_secs() => {
                    Duration::from_secs(s).min(super::auth::MAX_EXPIRATION)
                }
                Some(_) => {
                    return Err(invalid(format!(
                        "Invalid value: {v}: may not specify a duration less than 10 minutes"
                    )))
                }
                None => {
                    return Err(invalid(format!(
                        "Invalid value: {v}: must be a number of seconds"
                    )))
                }
            },
        };
        let (token, expires) = self.sim.tokens.mint(ns, name, meta_str(&sa, "uid"), ttl);
        let audiences = match req.pointer("/spec/audiences").and_then(Value::as_array) {
            Some(a) if !a.is_empty() => json!(a),
            _ => json!(["https://kubernetes.default.svc.cluster.local"]),
        };
        set_at(&mut req, &["spec", "audiences"], audiences);
        set_at(
            &mut req,
            &["spec", "expirationSeconds"],
            json!(ttl.as_secs()),
        );
        req["apiVersion"] = json!("authentication.k8s.io/v1");
        req["kind"] = json!("TokenRequest");
        req["metadata"] = json!({"name": name, "namespace": ns, "creationTimestamp": null});
        req["status"] = json!({"token": token,
            "expirationTimestamp": chrono::DateTime::<chrono::Utc>::from(expires)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)});
        Ok(json_response(StatusCode::CREATED, &req))
    }

    /// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`: may the caller do what
    /// the review's spec says? The admin may do anything.
    fn access_review(&self, caller: &Caller, body: &Bytes) -> ApiResult {
        let mut review = Self::parse_body(body)?;
        let spec = review.get("spec").cloned().unwrap_or_else(|| json!({}));
        let attrs = Attributes::of_review(&spec).map_err(|m| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!("SelfSubjectAccessReview.authorization.k8s.io \"\" is invalid: {m}"),
            )
        })?;
        let status = match caller.user() {
            None => json!({"allowed": true}),
            Some(user) => {
                let d = rbac::authorize(&StorePolicy(&self.sim.store), &user, &attrs);
                let mut s = json!({"allowed": d.allowed});
                if !d.reason.is_empty() {
                    s["reason"] = json!(d.reason);
                }
                s
            }
        };
        review["apiVersion"] = json!("authorization.k8s.io/v1");
        review["kind"] = json!("SelfSubjectAccessReview");
        review["metadata"] = json!({"creationTimestamp": null});
        review["status"] = status;
        Ok(json_response(StatusCode::CREATED, &review))
    }

    fn route(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> ApiResult {
        let segs: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let q = Query::parse(query);
        match segs.as_slice() {
            ["version"] => Ok(json_response(
                StatusCode::OK,
                &json!({"major": "1", "minor": "32", "gitVersion": "v1.32.0-firedrill-sim",
                    "gitCommit": "", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
                    "goVersion": "go1.23", "compiler": "gc", "platform": "linux/amd64"}),
            )),
            ["healthz" | "readyz" | "livez"] => {
                let mut r = Response::new(Body::from("ok"));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain"),
                );
                Ok(r)
            }
            ["api"] => Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            )),
            ["api", "v1"] => Ok(self.resource_list("", "v1")),
            ["openapi", "v3"] => Ok(json_response(
                StatusCode::OK,
                &super::openapi::discovery(&self.all_resources()),
            )),
            ["openapi", "v3", rest @ ..] => {
                super::openapi::document_at(&self.all_resources(), &rest.join("/"))
                    .map(|doc| json_response(StatusCode::OK, &doc))
                    .ok_or_else(ApiError::no_route)
            }
            ["apis"] => Ok(json_response(
                StatusCode::OK,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": self.groups()}),
            )),
            ["apis", group] => self
                .groups()
                .into_iter()
                .find(|g| g["name"] == *group)
                .map(|mut g| {
                    g["kind"] = json!("APIGroup");
                    g["apiVersion"] = json!("v1");
                    json_response(StatusCode::OK, &g)
                })
                .ok_or_else(ApiError::no_route),
            ["apis", group, version] => {
                if self.groups().iter().any(|g| g["name"] == *group) {
                    Ok(self.resource_list(group, version))
                } else {
                    Err(ApiError::no_route())
                }
            }
            ["api", "v1", rest @ ..] => {
                let t = self.target("", "v1", rest, method, &body)?;
                self.serve(method, t, &q, headers, body)
            }
            ["apis", group, version, rest @ ..] => {
                let t = self.target(group, version, rest, method, &body)?;
                self.serve(method, t, &q, headers, body)
            }
            _ => Err(ApiError::no_route()),
        }
    }

    fn all_resources(&self) -> Vec<ResInfo> {
        let custom = self.custom.lock().unwrap_or_else(|p| p.into_inner());
        self.resources
            .iter()
            .cloned()
            .chain(custom.values().cloned())
            .collect()
    }

    fn groups(&self) -> Vec<Value> {
        let mut versions: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.all_resources() {
            if r.group.is_empty() {
                continue;
            }
            let v = versions.entry(r.group.clone()).or_default();
            if !v.contains(&r.version) {
                v.push(r.version.clone());
            }
        }
        versions
            .into_iter()
            .map(|(g, vs)| {
                let list: Vec<Value> = vs
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                let preferred = list.first().cloned().unwrap_or(Value::Null);
                json!({"name": g, "versions": list, "preferredVersion": preferred})
            })
            .collect()
    }

    fn resource_list(&self, group: &str, version: &str) -> Response {
        let verbs = json!([
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch"
        ]);
        let mut resources = Vec::new();
        for r in self.all_resources() {
            if r.group != group || r.version != version {
                continue;
            }
            let verbs = if r.plural == "selfsubjectaccessreviews" {
                json!(["create"])
            } else {
                verbs.clone()
            };
            resources.push(
                json!({"name": r.plural, "singularName": r.kind.to_lowercase(),
                "namespaced": r.namespaced, "kind": r.kind, "verbs": verbs, "shortNames": r.short,
                "categories": if ALL_CATEGORY.contains(&r.plural.as_str()) { json!(["all"]) } else { json!([]) }}),
            );
            if r.group == "apps" {
                resources.push(
                    json!({"name": format!("{}/scale", r.plural), "singularName": "",
                    "namespaced": true, "group": "autoscaling", "version": "v1", "kind": "Scale",
                    "verbs": ["get", "patch", "update"]}),
                );
            }
            if r.status {
                resources.push(json!({"name": format!("{}/status", r.plural), "singularName": "",
                    "namespaced": r.namespaced, "kind": r.kind, "verbs": ["get", "patch", "update"]}));
            }
            if r.group.is_empty() && r.plural == "serviceaccounts" {
                // What `kubectl create token` calls.
                resources.push(json!({"name": "serviceaccounts/token", "singularName": "",
                    "namespaced": true, "group": "authentication.k8s.io", "version": "v1",
                    "kind": "TokenRequest", "verbs": ["create"]}));
            }
            if r.group.is_empty() && r.plural == "pods" {
                // What `kubectl drain` looks for before it evicts rather than deletes.
                resources.push(json!({"name": "pods/eviction", "singularName": "",
                    "namespaced": true, "group": "policy", "version": "v1", "kind": "Eviction",
                    "verbs": ["create"]}));
            }
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        json_response(
            StatusCode::OK,
            &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }

    fn lookup(
        &self,
        group: &str,
        version: &str,
        plural: &str,
        namespaced: bool,
        method: &Method,
        body: &Bytes,
    ) -> Result<ResInfo, ApiError> {
        if let Some(r) = self
            .resources
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
        {
            return Ok(r.clone());
        }
        if group.is_empty() || is_builtin_group(group) {
            return Err(ApiError::no_route());
        }
        let key = (group.to_string(), version.to_string(), plural.to_string());
        let mut custom = self.custom.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = custom.get(&key) {
            return Ok(r.clone());
        }
        // The kind comes from the first object written; before that, a guess from the plural.
        let kind = (*method == Method::POST || *method == Method::PUT)
            .then(|| serde_json::from_slice::<Value>(body).ok())
            .flatten()
            .and_then(|v| v.get("kind").and_then(Value::as_str).map(str::to_string))
            .unwrap_or_else(|| {
                let mut k = plural.trim_end_matches('s').to_string();
                if let Some(first) = k.get(..1) {
                    k = first.to_uppercase() + k.get(1..).unwrap_or("");
                }
                k
            });
        let info = ResInfo {
            group: group.into(),
            version: version.into(),
            plural: plural.into(),
            kind,
            namespaced,
            short: Vec::new(),
            status: false,
        };
        // Only a write declares a custom resource; reads of unknown ones answer with empty data.
        if *method == Method::POST || *method == Method::PUT {
            custom.insert(key, info.clone());
        }
        Ok(info)
    }

    fn target(
        &self,
        group: &str,
        version: &str,
        rest: &[&str],
        method: &Method,
        body: &Bytes,
    ) -> Result<Target, ApiError> {
        let own = |s: &&str| Some(s.to_string());
        match rest {
            ["namespaces", ns, plural, tail @ ..]
                if !matches!(*plural, "status" | "finalize") || !tail.is_empty() =>
            {
                let info = self.lookup(group, version, plural, true, method, body)?;
                if !info.namespaced {
                    return Err(ApiError::no_route());
                }
                let (name, sub) = match tail {
                    [] => (None, None),
                    [name] => (own(name), None),
                    [name, sub] => (own(name), own(sub)),
                    _ => return Err(ApiError::no_route()),
                };
                Ok(Target {
                    info,
                    ns: Some(ns.to_string()),
                    name,
                    sub,
                })
            }
            [plural, tail @ ..] => {
                let info = self.lookup(group, version, plural, false, method, body)?;
                let (name, sub) = match tail {
                    [] => (None, None),
                    [name] => (own(name), None),
                    [name, sub] => (own(name), own(sub)),
                    _ => return Err(ApiError::no_route()),
                };
                // A namespaced resource listed across all namespaces: /api/v1/pods.
                if info.namespaced && name.is_some() {
                    return Err(ApiError::no_route());
                }
                Ok(Target {
                    info,
                    ns: None,
                    name,
                    sub,
                })
            }
            [] => Err(ApiError::no_route()),
        }
    }

    fn serve(
        &self,
        method: &Method,
        t: Target,
        q: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> ApiResult {
        match (t.sub.as_deref(), t.name.as_deref()) {
            (None | Some("status"), _) => {}
            (Some("scale"), Some(name)) if t.info.group == "apps" => {
                return self.scale(method, &t, name, headers, &body)
            }
            (Some("eviction"), Some(name)) if t.info.id() == pods() && *method == Method::POST => {
                return self.evict(&t, name, &body);
            }
            (Some("log"), Some(name)) if t.info.id() == pods() && *method == Method::GET => {
                let ns = t.ns.as_deref().unwrap_or("");
                if self.sim.store.get(&pods(), ns, name).is_none() {
                    return Err(ApiError::not_found(&t.info, name));
                }
                // Simulated containers print nothing but this, so `kubectl logs` works.
                let mut r = Response::new(Body::from(format!(
                    "simulated container of pod {ns}/{name}: no real output\n"
                )));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain"),
                );
                return Ok(r);
            }
            _ => return Err(ApiError::no_route()),
        }
        match (method.clone(), t.name.clone()) {
            (Method::GET, None) if q.flag("watch") => self.watch(&t, q, headers),
            (Method::GET, None) => self.list(&t, q, headers),
            (Method::GET, Some(name)) => {
                let ns = t.ns.as_deref().unwrap_or("");
                let obj = self
                    .sim
                    .store
                    .get(&t.info.id(), ns, &name)
                    .ok_or_else(|| ApiError::not_found(&t.info, &name))?;
                if wants_table(headers) {
                    let rv = rv_of(&obj).unwrap_or(0);
                    return Ok(json_response(
                        StatusCode::OK,
                        &table(&t.info, &[obj], rv, q.get("includeObject"), true),
                    ));
                }
                Ok(obj_response(StatusCode::OK, &obj))
            }
            (Method::POST, None) => {
                let warning = Self::field_validation(&t, q, &body)?;
                self.create(&t, &body).map(|r| with_warning(r, warning))
            }
            (Method::PUT, Some(name)) => {
                let warning = Self::field_validation(&t, q, &body)?;
                self.update(&t, &name, &body)
                    .map(|r| with_warning(r, warning))
            }
            (Method::PATCH, Some(name)) => self.patch(&t, &name, headers, &body),
            (Method::DELETE, Some(name)) => self.delete(&t, &name, q, &body),
            (Method::DELETE, None) => self.delete_collection(&t, q, &body),
            _ => Err(ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource".to_string(),
            )),
        }
    }

    /// `fieldValidation=Strict` refuses a built-in object with a field its type does not
    /// declare (400, as the API server does); `Warn` answers with a `Warning` header.
    fn field_validation(
        t: &Target,
        q: &Query,
        body: &Bytes,
    ) -> Result<Vec<header::HeaderValue>, ApiError> {
        let mode = q.get("fieldValidation").unwrap_or("Ignore");
        if mode != "Strict" && mode != "Warn" {
            return Ok(Vec::new());
        }
        let obj = Self::parse_body(body)?;
        let unknown = super::openapi::unknown_fields(&t.info.kind, &obj);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let fields: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field \"{f}\""))
            .collect();
        if mode == "Strict" {
            let kind = &t.info.kind;
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{}\" cannot be handled as a {kind}: strict decoding error: {}",
                t.info.version,
                fields.join(", ")
            )));
        }
        // One warning per field, its quotes escaped inside the quoted warn-text (RFC 7234).
        Ok(unknown
            .iter()
            .filter_map(|f| {
                header::HeaderValue::from_str(&format!("299 - \"unknown field \\\"{f}\\\"\"")).ok()
            })
            .collect())
    }

    fn selectors(q: &Query) -> Result<(Selector, Selector), ApiError> {
        let labels = Selector::parse_labels(q.get("labelSelector").unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
        let fields = Selector::parse_fields(q.get("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?;
        Ok((labels, fields))
    }

    fn list(&self, t: &Target, q: &Query, headers: &HeaderMap) -> ApiResult {
        let (labels, fields) = Self::selectors(q)?;
        let req = PageReq::of(q)?;
        let page = self.sim.store.list_page(
            &t.info.id(),
            t.ns.as_deref(),
            req.after.as_ref(),
            req.limit,
            |o| labels.matches_labels(o) && fields.matches_fields(o),
        );
        let rv = req.rv.unwrap_or(page.rv);
        let next = page.next.as_ref().map(|k| PageReq::token(rv, k));
        let items = &page.items[..];
        if wants_table(headers) {
            let mut table = table(&t.info, items, rv, q.get("includeObject"), true);
            if let Some(next) = &next {
                table["metadata"]["continue"] = json!(next);
            }
            return Ok(json_response(StatusCode::OK, &table));
        }
        let more = match &next {
            Some(next) => format!(r#","continue":{}"#, json!(next)),
            None => String::new(),
        };
        // Written by hand so that a 10,000-item list is serialized once, without building a
        // second tree of the items.
        let mut out = Vec::with_capacity(items.len() * 1024 + 256);
        out.extend_from_slice(
            format!(
                r#"{{"kind":"{}List","apiVersion":"{}","metadata":{{"resourceVersion":"{rv}"{more}}},"items":["#,
                t.info.kind,
                t.info.api_version()
            )
            .as_bytes(),
        );
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item.json());
        }
        out.extend_from_slice(b"]}");
        Ok(bytes_response(StatusCode::OK, out))
    }

    fn parse_body(body: &Bytes) -> Result<Value, ApiError> {
        let v: Value = serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?;
        if !v.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        Ok(v)
    }

    /// Checks and fills what create and update share: namespace, kind, apiVersion.
    fn normalize(&self, t: &Target, obj: &mut Value) -> Result<(), ApiError> {
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        let body_ns = meta_str(obj, "namespace").to_string();
        match (&t.ns, t.info.namespaced) {
            (Some(ns), true) => {
                if !body_ns.is_empty() && body_ns != *ns {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                set_at(obj, &["metadata", "namespace"], json!(ns));
            }
            (None, true) => {
                return Err(ApiError::bad_request(
                    "a namespaced object needs a namespace in the path",
                ))
            }
            _ => {
                if let Some(m) = obj["metadata"].as_object_mut() {
                    m.remove("namespace");
                }
            }
        }
        obj["kind"] = json!(t.info.kind);
        obj["apiVersion"] = json!(t.info.api_version());
        Ok(())
    }

    fn validate(&self, t: &Target, obj: &Value) -> Result<(), ApiError> {
        let name = meta_str(obj, "name");
        if !is_dns_subdomain(name) {
            return Err(ApiError::invalid(&t.info, name, "metadata.name",
                "Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"));
        }
        if t.info.group == "apps" {
            if let Some(r) = obj.pointer("/spec/replicas") {
                check_replicas(&t.info, name, r)?;
            }
        }
        if t.info.id() == pods()
            && obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        {
            return Err(ApiError::invalid(
                &t.info,
                name,
                "spec.containers",
                "Required value",
            ));
        }
        Ok(())
    }

    fn create(&self, t: &Target, body: &Bytes) -> ApiResult {
        let mut obj = Self::parse_body(body)?;
        self.normalize(t, &mut obj)?;
        let name = meta_str(&obj, "name").to_string();
        let generate = meta_str(&obj, "generateName").to_string();
        if name.is_empty() && generate.is_empty() {
            return Err(ApiError::invalid(
                &t.info,
                "",
                "metadata.name",
                "Required value: name or generateName is required",
            ));
        }
        if let Some(ns) = &t.ns {
            if t.info.plural != "namespaces"
                && self
                    .sim
                    .store
                    .get(&ResId::new("", "namespaces"), "", ns)
                    .is_none()
            {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    format!("namespaces \"{ns}\" not found"),
                ));
            }
        }
        self.sim.stamp_new(&mut obj);
        if t.info.plural == "namespaces" && obj.pointer("/status/phase").is_none() {
            obj["status"] = json!({"phase": "Active"});
        }
        if t.info.id() == pods() && obj.pointer("/status/phase").is_none() {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        // generateName: retry a few suffixes on collision, as the real server does once.
        for _ in 0..8 {
            if name.is_empty() {
                set_at(
                    &mut obj,
                    &["metadata", "name"],
                    json!(format!("{generate}{}", self.sim.suffix(5))),
                );
            }
            self.validate(t, &obj)?;
            match self.sim.create(&t.info.id(), obj.clone()) {
                Ok(stored) => return Ok(obj_response(StatusCode::CREATED, &stored)),
                Err(StoreError::AlreadyExists) if name.is_empty() => continue,
                Err(e) => return Err(ApiError::from_store(e, &t.info, meta_str(&obj, "name"))),
            }
        }
        Err(ApiError::from_store(
            StoreError::AlreadyExists,
            &t.info,
            &generate,
        ))
    }

    /// Carries server-owned fields from the stored object into a replacement.
    fn carry_over(t: &Target, old: &Value, new: &mut Value, status_only: bool) {
        if status_only {
            let status = new.get("status").cloned();
            *new = old.clone();
            if let Some(s) = status {
                new["status"] = s;
            }
            return;
        }
        for f in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
        ] {
            match old.pointer(&format!("/metadata/{f}")) {
                Some(v) => {
                    set_at(new, &["metadata", f], v.clone());
                }
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(f);
                    }
                }
            }
        }
        // Built-in workloads own their status through the status subresource.
        if t.info.status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        let mut generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        if old.get("spec") != new.get("spec") {
            generation += 1;
        }
        set_at(new, &["metadata", "generation"], json!(generation));
    }

    fn update(&self, t: &Target, name: &str, body: &Bytes) -> ApiResult {
        let mut obj = Self::parse_body(body)?;
        self.normalize(t, &mut obj)?;
        if meta_str(&obj, "name") != name {
            return Err(ApiError::bad_request(
                "the name of the object does not match the name on the URL",
            ));
        }
        let expect = match meta_str(&obj, "resourceVersion") {
            "" => None,
            s => Some(
                s.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
            ),
        };
        let ns = t.ns.clone().unwrap_or_default();
        let id = t.info.id();
        let old = self
            .sim
            .store
            .get(&id, &ns, name)
            .ok_or_else(|| ApiError::not_found(&t.info, name))?;
        Self::carry_over(t, &old, &mut obj, t.sub.is_some());
        self.validate(t, &obj)?;
        // The expected rv is checked against the stored object atomically by the store.
        let expect = expect.or(rv_of(&old));
        let stored = self
            .sim
            .store
            .update(&id, obj, expect)
            .map_err(|e| ApiError::from_store(e, &t.info, name))?;
        Ok(obj_response(StatusCode::OK, &stored))
    }

    fn patch(&self, t: &Target, name: &str, headers: &HeaderMap, body: &Bytes) -> ApiResult {
        let ctype = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let patch: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("the patch is not valid JSON: {e}")))?;
        enum Kind {
            Merge,
            Json,
            Apply,
        }
        let kind = if ctype.starts_with("application/merge-patch+json")
            || ctype.starts_with("application/strategic-merge-patch+json")
        {
            Kind::Merge
        } else if ctype.starts_with("application/json-patch+json") {
            Kind::Json
        } else if ctype.starts_with("application/apply-patch") {
            Kind::Apply
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UnsupportedMediaType",
                format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {ctype:?})"),
            ));
        };
        if !matches!(kind, Kind::Json) && !patch.is_object() {
            return Err(ApiError::bad_request("a merge patch must be a JSON object"));
        }
        let ns = t.ns.clone().unwrap_or_default();
        let id = t.info.id();
        let Some(old) = self.sim.store.get(&id, &ns, name) else {
            if matches!(kind, Kind::Apply) {
                // Server-side apply of a missing object creates it; approximated as a create.
                let mut obj = patch;
                if !obj.get("metadata").is_some_and(Value::is_object) {
                    obj["metadata"] = json!({});
                }
                set_at(&mut obj, &["metadata", "name"], json!(name));
                return self.create(t, &Bytes::from(obj.to_string()));
            }
            return Err(ApiError::not_found(&t.info, name));
        };
        let mut new = (*old).clone();
        match kind {
            Kind::Merge | Kind::Apply => merge_patch(&mut new, &patch),
            Kind::Json => json_patch(&mut new, &patch)
                .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e))?,
        }
        let expect = match patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
            ),
            None => rv_of(&old),
        };
        if !new.is_object() || !new.get("metadata").is_some_and(Value::is_object) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                "the patched object and its metadata must be JSON objects",
            ));
        }
        // Identity cannot be patched.
        set_at(&mut new, &["metadata", "name"], json!(name));
        self.normalize(t, &mut new)?;
        if t.sub.is_some() {
            Self::carry_over(t, &old, &mut new, true);
        } else {
            let status = new.get("status").cloned();
            Self::carry_over(t, &old, &mut new, false);
            // A patch of the main resource may still set status on kinds without a status
            // subresource; for the others the status stays the server's.
            if !t.info.status {
                if let Some(s) = status {
                    new["status"] = s;
                }
            }
        }
        self.validate(t, &new)?;
        let stored = self
            .sim
            .store
            .update(&id, new, expect)
            .map_err(|e| ApiError::from_store(e, &t.info, name))?;
        Ok(obj_response(StatusCode::OK, &stored))
    }

    /// The `scale` subresource of the apps workloads (`kubectl scale`).
    fn scale(
        &self,
        method: &Method,
        t: &Target,
        name: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> ApiResult {
        let ns = t.ns.clone().unwrap_or_default();
        let id = t.info.id();
        let obj = self
            .sim
            .store
            .get(&id, &ns, name)
            .ok_or_else(|| ApiError::not_found(&t.info, name))?;
        let view = |o: &Value| {
            let selector = o
                .pointer("/spec/selector/matchLabels")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                "metadata": {"name": name, "namespace": ns, "uid": meta_str(o, "uid"),
                    "resourceVersion": meta_str(o, "resourceVersion"),
                    "creationTimestamp": meta_str(o, "creationTimestamp")},
                "spec": {"replicas": o.pointer("/spec/replicas").cloned().unwrap_or(json!(0))},
                "status": {"replicas": o.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
                    "selector": selector}})
        };
        let mut scale = view(&obj);
        match *method {
            Method::GET => return Ok(json_response(StatusCode::OK, &scale)),
            Method::PUT => scale = Self::parse_body(body)?,
            Method::PATCH => {
                let ctype = headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let patch: Value = serde_json::from_slice(body).map_err(|e| {
                    ApiError::bad_request(format!("the patch is not valid JSON: {e}"))
                })?;
                if ctype.starts_with("application/json-patch+json") {
                    json_patch(&mut scale, &patch).map_err(|e| {
                        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e)
                    })?;
                } else {
                    merge_patch(&mut scale, &patch);
                }
            }
            _ => return Err(ApiError::no_route()),
        }
        let replicas = check_replicas(
            &t.info,
            name,
            scale.pointer("/spec/replicas").unwrap_or(&Value::Null),
        )?;
        let updated = self
            .sim
            .store
            .mutate(&id, &ns, name, |o| {
                if o.pointer("/spec/replicas").and_then(Value::as_i64) == Some(replicas) {
                    return false;
                }
                set_at(o, &["spec", "replicas"], json!(replicas));
                let generation = o
                    .pointer("/metadata/generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(1);
                set_at(o, &["metadata", "generation"], json!(generation + 1));
                true
            })
            .ok_or_else(|| ApiError::not_found(&t.info, name))?;
        Ok(json_response(StatusCode::OK, &view(&updated)))
    }

    fn grace(q: &Query, body: &Bytes) -> Result<(Option<i64>, Option<Value>), ApiError> {
        let opts: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
        };
        let grace =
            match q.get("gracePeriodSeconds") {
                Some(g) => Some(g.parse::<i64>().map_err(|_| {
                    ApiError::bad_request(format!("invalid gracePeriodSeconds {g:?}"))
                })?),
                None => opts.get("gracePeriodSeconds").and_then(Value::as_i64),
            };
        Ok((grace, opts.get("preconditions").cloned()))
    }

    /// `POST .../pods/{name}/eviction` (policy/v1 or v1beta1 Eviction): delete unless a
    /// disruption budget forbids it, which is answered 429 as the API server answers it.
    fn evict(&self, t: &Target, name: &str, body: &Bytes) -> ApiResult {
        use super::cluster::disruption::{evict, EvictError};
        let ns = t.ns.clone().unwrap_or_default();
        let eviction = Self::parse_body(body)?;
        let grace = eviction
            .pointer("/deleteOptions/gracePeriodSeconds")
            .and_then(Value::as_i64);
        let too_many = |cause: String| ApiError {
            details: json!({"causes": [{"reason": "DisruptionBudget", "message": cause}]}),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Cannot evict pod as it would violate the pod's disruption budget.",
            )
        };
        match evict(&self.sim, &ns, name, grace) {
            Ok(()) => Ok(json_response(
                StatusCode::CREATED,
                &json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                    "status": "Success", "code": 201}),
            )),
            Err(EvictError::NotFound) => Err(ApiError::not_found(&t.info, name)),
            Err(EvictError::Budget {
                pdb,
                desired,
                healthy,
            }) => Err(too_many(format!(
                "The disruption budget {pdb} needs {desired} healthy pods and has {healthy} currently"
            ))),
            Err(EvictError::Processing { pdb }) => Err(too_many(format!(
                "The disruption budget {pdb} is still being processed by the server."
            ))),
            Err(EvictError::SeveralBudgets) => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            )),
        }
    }

    fn delete(&self, t: &Target, name: &str, q: &Query, body: &Bytes) -> ApiResult {
        let (grace, pre) = Self::grace(q, body)?;
        let ns = t.ns.clone().unwrap_or_default();
        let id = t.info.id();
        let current = self
            .sim
            .store
            .get(&id, &ns, name)
            .ok_or_else(|| ApiError::not_found(&t.info, name))?;
        if let Some(pre) = pre {
            let uid_ok = pre
                .get("uid")
                .and_then(Value::as_str)
                .is_none_or(|u| u == meta_str(&current, "uid"));
            let rv_ok = pre
                .get("resourceVersion")
                .and_then(Value::as_str)
                .is_none_or(|r| r == meta_str(&current, "resourceVersion"));
            if !uid_ok || !rv_ok {
                return Err(ApiError::from_store(StoreError::Conflict, &t.info, name));
            }
        }
        if t.info.plural == "namespaces" {
            // Namespace deletion removes everything inside it.
            for res in self.sim.store.resources() {
                for o in self.sim.store.list(&res, Some(name), |_| true).0 {
                    self.sim.remove(&res, name, meta_str(&o, "name"), None);
                }
            }
        }
        let gone = self
            .sim
            .delete(&id, &ns, name, grace)
            .map_err(|e| ApiError::from_store(e, &t.info, name))?;
        Ok(obj_response(StatusCode::OK, &gone))
    }

    fn delete_collection(&self, t: &Target, q: &Query, body: &Bytes) -> ApiResult {
        let (grace, _) = Self::grace(q, body)?;
        let (labels, fields) = Self::selectors(q)?;
        let id = t.info.id();
        let (items, _) = self.sim.store.list(&id, t.ns.as_deref(), |o| {
            labels.matches_labels(o) && fields.matches_fields(o)
        });
        let mut out = Vec::new();
        for o in items {
            if let Ok(g) =
                self.sim
                    .delete(&id, meta_str(&o, "namespace"), meta_str(&o, "name"), grace)
            {
                out.push((*g).clone());
            }
        }
        Ok(json_response(
            StatusCode::OK,
            &json!({"kind": format!("{}List", t.info.kind), "apiVersion": t.info.api_version(),
                "metadata": {}, "items": out}),
        ))
    }

    fn watch(&self, t: &Target, q: &Query, headers: &HeaderMap) -> ApiResult {
        let (labels, fields) = Self::selectors(q)?;
        let id = t.info.id();
        let initial_events = q.flag("sendInitialEvents");
        let since = match q.get("resourceVersion") {
            None | Some("") | Some("0") => None,
            Some(_) if initial_events => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
            ),
        };
        let timeout = q
            .get("timeoutSeconds")
            .and_then(|s| s.parse::<u64>().ok())
            .map(Duration::from_secs)
            // Real servers end watches after a while; clients are built to resume.
            .unwrap_or(Duration::from_secs(1800));
        let bookmarks = q.flag("allowWatchBookmarks");
        let table_info = wants_table(headers).then(|| t.info.clone());
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        let sim = self.sim.clone();
        let ns = t.ns.clone();
        let info = t.info.clone();
        // What the selectors pin, so that the store hands this watch only what may match.
        let key = match (labels.pinned_label(), fields.pinned("metadata.name")) {
            (Some((k, v)), _) => WatchKey::Label(k.to_string(), v.to_string()),
            (None, Some(name)) => WatchKey::Name(name.to_string()),
            (None, None) => WatchKey::All,
        };
        let (mut w, start) = match sim.store.watch(&id, ns.as_deref(), since, key) {
            Ok((start, live)) => (
                Watch {
                    labels,
                    fields,
                    ns,
                    table: table_info,
                    q_include: q.get("includeObject").map(str::to_string),
                    first: true,
                    res: info.id(),
                    info,
                    live,
                    tx,
                    last_rv: 0,
                },
                start,
            ),
            Err(e) => {
                // Like the real server: a 200 stream carrying one ERROR event with the 410.
                let status = ApiError::from_store(e, &t.info, "").status_value();
                let line = format!("{}\n", json!({"type": "ERROR", "object": status}));
                return Ok(stream_response(futures::stream::iter([
                    Ok::<_, Infallible>(Bytes::from(line)),
                ])));
            }
        };
        let cancel = sim.cancel.clone();
        tokio::spawn(async move {
            let deadline = tokio::time::sleep(timeout);
            tokio::pin!(deadline);
            match start {
                WatchStart::Snapshot(items, rv) => {
                    w.last_rv = rv;
                    for o in items {
                        if w.selected(&o) && !w.send_obj("ADDED", &o).await {
                            return;
                        }
                    }
                    if initial_events {
                        let bm = json!({"kind": w.info.kind, "apiVersion": w.info.api_version(),
                            "metadata": {"resourceVersion": rv.to_string(),
                                "annotations": {"k8s.io/initial-events-end": "true"}}});
                        if !w
                            .send_line(&json!({"type": "BOOKMARK", "object": bm}))
                            .await
                        {
                            return;
                        }
                    }
                }
                WatchStart::Backlog(changes) => {
                    w.last_rv = since.unwrap_or(0);
                    for c in changes {
                        if !w.send_change(&c).await {
                            return;
                        }
                    }
                }
            }
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = &mut deadline => return,
                    _ = tick.tick(), if bookmarks => {
                        // A watch is handed only the changes that may concern it, so its own
                        // last rv can lag far behind: a bookmark names the store's rv when
                        // nothing is waiting (everything up to it that concerns this watch
                        // has then been sent).
                        let now = sim.store.current_rv();
                        if w.live.is_idle() {
                            w.last_rv = w.last_rv.max(now);
                        }
                        let bm = json!({"kind": w.info.kind, "apiVersion": w.info.api_version(),
                            "metadata": {"resourceVersion": w.last_rv.to_string()}});
                        if !w.send_line(&json!({"type": "BOOKMARK", "object": bm})).await {
                            return;
                        }
                    }
                    r = w.live.recv() => match r {
                        Live::Change(c) => {
                            if !w.send_change(&c).await {
                                return;
                            }
                        }
                        Live::Lagged => {
                            let status = ApiError::new(StatusCode::GONE, "Expired",
                                "watch fell too far behind; list again").status_value();
                            w.send_line(&json!({"type": "ERROR", "object": status})).await;
                            return;
                        }
                    }
                }
            }
        });
        Ok(stream_response(futures::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx)) },
        )))
    }
}

fn stream_response<S>(s: S) -> Response
where
    S: futures::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
{
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

/// One open watch: its filters and where it writes.
struct Watch {
    labels: Selector,
    fields: Selector,
    ns: Option<String>,
    table: Option<ResInfo>,
    q_include: Option<String>,
    first: bool,
    /// `info.id()`, kept: every change of every resource passes through every watch.
    res: ResId,
    info: ResInfo,
    live: Subscription,
    tx: mpsc::Sender<Bytes>,
    last_rv: u64,
}

impl Watch {
    fn selected(&self, o: &Obj) -> bool {
        self.ns
            .as_deref()
            .is_none_or(|ns| *o.meta().namespace == *ns)
            && self.labels.matches_labels(o)
            && self.fields.matches_fields(o)
    }

    async fn send_line(&mut self, v: &Value) -> bool {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        self.tx.send(Bytes::from(line)).await.is_ok()
    }

    async fn send_obj(&mut self, kind: &str, o: &Arc<Obj>) -> bool {
        let object = match &self.table {
            Some(info) => {
                // The change's object is the store's history, shared by every watch: the
                // table reads a tree of its own, so that none is kept there.
                let own = Arc::new(Obj::new(o.tree().into_owned()));
                let rv = rv_of(&own).unwrap_or(0);
                // Column definitions go with the first event only, as the real server does.
                let t = table(
                    info,
                    std::slice::from_ref(&own),
                    rv,
                    self.q_include.as_deref(),
                    self.first,
                );
                self.first = false;
                t
            }
            None => {
                // The common case splices the object's cached JSON into the event line.
                let json = o.json();
                let mut line = Vec::with_capacity(json.len() + 40);
                line.extend_from_slice(format!(r#"{{"type":"{kind}","object":"#).as_bytes());
                line.extend_from_slice(json);
                line.extend_from_slice(b"}\n");
                return self.tx.send(Bytes::from(line)).await.is_ok();
            }
        };
        self.send_line(&json!({"type": kind, "object": object}))
            .await
    }

    async fn send_change(&mut self, c: &Change) -> bool {
        self.last_rv = self.last_rv.max(c.rv);
        if c.res != self.res {
            return true;
        }
        let now = self.selected(&c.obj);
        let kind = match c.kind {
            ChangeKind::Modified => {
                let before = c.prev.as_ref().is_some_and(|p| self.selected(p));
                match (before, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return true,
                }
            }
            k if now => k.as_str(),
            _ => return true,
        };
        self.send_obj(kind, &c.obj).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_request_reads_limit_and_continue() {
        let req = PageReq::of(&Query::parse("limit=3&continue=7%2Fb%2Fx")).unwrap();
        assert_eq!(
            req,
            PageReq {
                limit: 3,
                after: Some(("b".into(), "x".into())),
                rv: Some(7),
            }
        );
        assert_eq!(PageReq::token(7, &("b".into(), "x".into())), "7/b/x");
        // No limit (or 0): everything at once.
        for q in ["", "limit=0"] {
            let all = PageReq::of(&Query::parse(q)).unwrap();
            assert_eq!((all.limit, all.after, all.rv), (0, None, None));
        }
        for bad in [
            "limit=-1",
            "limit=many",
            "continue=garbage",
            "continue=x%2Fa%2Fb",
        ] {
            let e = PageReq::of(&Query::parse(bad)).unwrap_err();
            assert_eq!(e.code, StatusCode::BAD_REQUEST, "{bad}");
        }
    }

    #[test]
    fn query_decoding() {
        let q = Query::parse("labelSelector=app%3Dcheckout%2Ctier+in+%28a%29&watch=true");
        assert_eq!(q.get("labelSelector"), Some("app=checkout,tier in (a)"));
        assert!(q.flag("watch"));
    }

    #[tokio::test]
    async fn watch_from_a_dropped_resource_version_is_gone() {
        let sim = Arc::new(Sim::with_history(
            Default::default(),
            1,
            Default::default(),
            3,
        ));
        let api = Api {
            sim: sim.clone(),
            resources: builtin(),
            custom: Mutex::new(BTreeMap::new()),
        };
        let cm = ResId::new("", "configmaps");
        for i in 0..6 {
            let obj = json!({"metadata": {"namespace": "a", "name": format!("c{i}")}});
            sim.create(&cm, obj).unwrap();
        }
        let get = |query: &str| {
            api.route(
                &Method::GET,
                "/api/v1/namespaces/a/configmaps",
                query,
                &HeaderMap::new(),
                Bytes::new(),
            )
            .unwrap()
        };
        let body = axum::body::to_bytes(get("watch=1&resourceVersion=1").into_body(), 1 << 20)
            .await
            .unwrap();
        let ev: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(ev["type"], "ERROR");
        assert_eq!(ev["object"]["code"], 410);
        assert_eq!(ev["object"]["reason"], "Expired");
        // A list still works and gives an rv to resume from.
        let body = axum::body::to_bytes(get("").into_body(), 1 << 20)
            .await
            .unwrap();
        let list: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(list["items"].as_array().unwrap().len(), 6);
        assert_eq!(list["kind"], "ConfigMapList");
        sim.cancel.cancel();
    }

    #[tokio::test]
    async fn a_paged_list_covers_every_selected_object_once_in_order_across_changes() {
        let sim = Arc::new(Sim::with_history(
            Default::default(),
            1,
            Default::default(),
            1000,
        ));
        let api = Api {
            sim: sim.clone(),
            resources: builtin(),
            custom: Mutex::new(BTreeMap::new()),
        };
        let cm = ResId::new("", "configmaps");
        let make = |ns: &str, i: usize| {
            json!({"metadata": {"namespace": ns, "name": format!("c{i:03}"),
                "labels": {"even": i.is_multiple_of(2).to_string()}}})
        };
        for ns in ["a", "b"] {
            for i in 0..40 {
                sim.create(&cm, make(ns, i)).unwrap();
            }
        }
        let list = |path: &str, query: &str| {
            let resp = api
                .route(&Method::GET, path, query, &HeaderMap::new(), Bytes::new())
                .unwrap();
            async move {
                let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                    .await
                    .unwrap();
                serde_json::from_slice::<Value>(&body).unwrap()
            }
        };
        let key = |o: &Value| format!("{}/{}", meta_str(o, "namespace"), meta_str(o, "name"));
        let mut seen = Vec::new();
        let mut rvs = Vec::new();
        let mut token = String::new();
        let mut pages = 0;
        loop {
            let mut q = "labelSelector=even%3Dtrue&limit=7".to_string();
            if !token.is_empty() {
                q.push_str(&format!("&continue={token}"));
            }
            let page = list("/api/v1/configmaps", &q).await;
            pages += 1;
            rvs.push(page["metadata"]["resourceVersion"].clone());
            seen.extend(page["items"].as_array().unwrap().iter().map(key));
            if pages == 2 {
                // Between pages: one object before the cursor and one after are added, one
                // after it is deleted, and one after it stops matching.
                let early = json!({"metadata": {"namespace": "a", "name": "a-early",
                    "labels": {"even": "true"}}});
                sim.create(&cm, early).unwrap();
                sim.create(&cm, make("a", 100)).unwrap();
                sim.create(&cm, make("b", 100)).unwrap();
                sim.remove(&cm, "b", "c010", None).unwrap();
                sim.store
                    .mutate(&cm, "b", "c012", |o| {
                        o["metadata"]["labels"]["even"] = json!("false");
                        true
                    })
                    .unwrap();
            }
            match page["metadata"]["continue"].as_str() {
                Some(next) => token = next.replace('/', "%2F"),
                None => break,
            }
        }
        let mut want: Vec<String> = ["a", "b"]
            .iter()
            .flat_map(|ns| (0..40).step_by(2).map(move |i| format!("{ns}/c{i:03}")))
            .filter(|k| k != "b/c010" && k != "b/c012")
            .collect();
        want.extend(["a/c100".into(), "b/c100".into()]);
        want.sort();
        assert_eq!(seen, want, "every selected object once, in key order");
        assert!(rvs.iter().all(|rv| *rv == rvs[0]), "{rvs:?}");
        assert_eq!(pages, 6);
        assert!(!seen.contains(&"a/a-early".to_string()));
        // Without a limit: one page, no continue; a namespaced list stays in its namespace.
        let all = list("/api/v1/namespaces/a/configmaps", "").await;
        assert_eq!(all["items"].as_array().unwrap().len(), 42);
        assert!(all["metadata"].get("continue").is_none());
        sim.cancel.cancel();
    }

    #[test]
    fn names() {
        assert!(is_dns_subdomain("checkout-7d9f.x"));
        assert!(!is_dns_subdomain("Checkout"));
        assert!(!is_dns_subdomain("-a.b"));
    }
}
