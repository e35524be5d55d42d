//! Role-based access control for the simulated cluster's service-account callers, with the
//! semantics of Kubernetes' RBAC authorizer: a request's attributes are read from its URL the
//! way the API server's RequestInfoFactory reads them (verb, API group, resource, subresource,
//! name, namespace, or a non-resource path), and it is allowed when a rule of a role bound to
//! the caller matches them:
//!
//! - ClusterRoleBindings grant their ClusterRole everywhere; RoleBindings grant their Role, or
//!   the ClusterRole they reference, in their own namespace only;
//! - a rule matches on verbs, apiGroups, resources (`pods/eviction`, `*/status`), resourceNames
//!   (a list or watch has a name only through `fieldSelector=metadata.name=...`), each with `*`;
//!   non-resource URLs match exactly or by a trailing `*`;
//! - a subject is a ServiceAccount (its namespace defaulting to the RoleBinding's), a User by
//!   name (`system:serviceaccount:NS:NAME`) or a Group (`system:serviceaccounts`,
//!   `system:serviceaccounts:NS`, `system:authenticated`);
//! - every authenticated caller has what Kubernetes' default bindings give it: discovery,
//!   health and version paths, and creating SelfSubjectAccessReviews (what `kubectl auth can-i`
//!   asks with).
//!
//! A denial is a 403 whose message is the API server's (`pods is forbidden: User
//! "system:serviceaccount:drills:firedrill" cannot list resource "pods" in API group "" in the
//! namespace "other"`), with `RBAC: ...` naming a binding whose role does not exist.
//! Not simulated: aggregated ClusterRoles (aggregationRule), the escalation and bind checks on
//! writes of roles and bindings, impersonation.

use serde_json::Value;

/// The API group of roles and bindings.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// What a request asks to do, as an authorizer sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub verb: String,
    /// A request for a resource (`/api/v1/...`, `/apis/G/V/...` naming one), else for `path`.
    pub resource_request: bool,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    /// The URL path of a non-resource request.
    pub path: String,
}

/// An authenticated caller: its user name and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// A service account as the token authenticator names it.
    pub fn service_account(namespace: &str, name: &str) -> User {
        User {
            name: format!("system:serviceaccount:{namespace}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        }
    }
}

/// The answer, and why (`RBAC: allowed by RoleBinding "firedrill/shop" of Role "firedrill" to
/// ServiceAccount "firedrill/drills"`), or what was wrong with the bindings when denied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// Where roles and bindings come from: the store, or a fixed set in tests.
pub trait Policy {
    fn cluster_role_bindings(&self) -> Vec<Value>;
    fn role_bindings(&self, namespace: &str) -> Vec<Value>;
    fn cluster_role(&self, name: &str) -> Option<Value>;
    fn role(&self, namespace: &str, name: &str) -> Option<Value>;
}

/// A path segment that can be an object's name (Go's path.IsValidPathSegmentName).
fn is_path_segment_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('%')
}

impl Attributes {
    /// The attributes of an HTTP request, read from its method and path alone as the API
    /// server does (no lookup of what exists): `watch` is the `watch` query flag and
    /// `field_name` what `fieldSelector` pins `metadata.name` to, if anything.
    pub fn of_request(
        method: &str,
        path: &str,
        watch: bool,
        field_name: Option<&str>,
    ) -> Attributes {
        let parts: Vec<&str> = path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let method_verb = match method {
            "POST" => "create",
            "GET" | "HEAD" => "get",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" => "delete",
            _ => "",
        };
        let non_resource = || Attributes {
            verb: method.to_lowercase(),
            path: path.to_string(),
            ..Default::default()
        };
        let mut a = Attributes::default();
        let mut rest: &[&str] = match parts.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => {
                a.version = version.to_string();
                rest
            }
            ["apis", group, version, rest @ ..] if !rest.is_empty() => {
                a.group = group.to_string();
                a.version = version.to_string();
                rest
            }
            _ => return non_resource(),
        };
        a.resource_request = true;
        a.verb = match rest {
            ["watch" | "proxy", tail @ ..] if !tail.is_empty() => {
                let v = rest[0].to_string();
                rest = tail;
                v
            }
            _ => method_verb.to_string(),
        };
        if let ["namespaces", ns, tail @ ..] = rest {
            a.namespace = ns.to_string();
            if let [next, ..] = tail {
                if !matches!(*next, "status" | "finalize") {
                    rest = tail;
                }
            }
        }
        if let Some(r) = rest.first() {
            a.resource = r.to_string();
        }
        if let Some(n) = rest.get(1) {
            a.name = n.to_string();
        }
        if let Some(s) = rest.get(2) {
            if a.verb != "proxy" {
                a.subresource = s.to_string();
            }
        }
        if a.name.is_empty() && a.verb == "get" {
            a.verb = if watch { "watch" } else { "list" }.into();
            if let Some(n) = field_name.filter(|n| is_path_segment_name(n)) {
                a.name = n.to_string();
            }
        }
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }

    /// The attributes a SelfSubjectAccessReview's spec asks about.
    pub fn of_review(spec: &Value) -> Result<Attributes, String> {
        let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        match (
            spec.get("resourceAttributes").filter(|v| v.is_object()),
            spec.get("nonResourceAttributes").filter(|v| v.is_object()),
        ) {
            (Some(r), None) => Ok(Attributes {
                verb: s(r, "verb"),
                resource_request: true,
                group: s(r, "group"),
                version: s(r, "version"),
                resource: s(r, "resource"),
                subresource: s(r, "subresource"),
                name: s(r, "name"),
                namespace: s(r, "namespace"),
                path: String::new(),
            }),
            (None, Some(n)) => Ok(Attributes {
                verb: s(n, "verb"),
                path: s(n, "path"),
                ..Default::default()
            }),
            (Some(_), Some(_)) => Err(
                "spec.nonResourceAttributes: Invalid value: cannot be specified in combination with resourceAttributes".into(),
            ),
            (None, None) => Err(
                "spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified".into(),
            ),
        }
    }
}

fn strings<'a>(rule: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    rule.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn has(rule: &Value, key: &str, want: &str) -> bool {
    strings(rule, key).any(|v| v == "*" || v == want)
}

/// Whether one PolicyRule allows the attributes (rbac/v1 RuleAllows).
pub fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    if !has(rule, "verbs", &a.verb) {
        return false;
    }
    if !a.resource_request {
        return strings(rule, "nonResourceURLs").any(|u| {
            u == "*"
                || u == a.path
                || u.strip_suffix('*')
                    .is_some_and(|prefix| a.path.starts_with(prefix))
        });
    }
    if !has(rule, "apiGroups", &a.group) {
        return false;
    }
    let combined = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    let resource = strings(rule, "resources").any(|r| {
        r == "*"
            || r == combined
            || (!a.subresource.is_empty() && r.strip_prefix("*/") == Some(a.subresource.as_str()))
    });
    if !resource {
        return false;
    }
    let mut names = strings(rule, "resourceNames").peekable();
    names.peek().is_none() || names.any(|n| n == a.name)
}

/// What every authenticated caller may do (the default ClusterRoles system:discovery,
/// system:public-info-viewer and system:basic-user, bound to system:authenticated).
fn default_rules() -> [(&'static str, Value); 3] {
    [
        (
            "system:discovery",
            serde_json::json!({"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis",
                "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version",
                "/version/"]}),
        ),
        (
            "system:basic-user",
            serde_json::json!({"verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"]}),
        ),
        (
            "system:basic-user",
            serde_json::json!({"verbs": ["create"], "apiGroups": ["authentication.k8s.io"],
                "resources": ["selfsubjectreviews"]}),
        ),
    ]
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

/// Whether a binding's subject is the user (rbac's appliesTo). `binding_ns` is the
/// RoleBinding's namespace ("" for a ClusterRoleBinding).
fn subject_applies(subject: &Value, user: &User, binding_ns: &str) -> bool {
    let name = str_at(subject, "/name");
    match str_at(subject, "/kind") {
        "ServiceAccount" => {
            let ns = match str_at(subject, "/namespace") {
                "" => binding_ns,
                ns => ns,
            };
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{name}")
        }
        "User" => user.name == name,
        "Group" => user.groups.iter().any(|g| g == name),
        _ => false,
    }
}

/// The subject as RBAC's reasons describe it: `ServiceAccount "firedrill/drills"`.
fn describe_subject(subject: &Value, binding_ns: &str) -> String {
    let kind = str_at(subject, "/kind");
    let name = str_at(subject, "/name");
    if kind == "ServiceAccount" {
        let ns = match str_at(subject, "/namespace") {
            "" => binding_ns,
            ns => ns,
        };
        format!("{kind} {:?}", format!("{name}/{ns}"))
    } else {
        format!("{kind} {name:?}")
    }
}

/// The decision of the RBAC authorizer on `a` for `user`.
pub fn authorize(policy: &impl Policy, user: &User, a: &Attributes) -> Decision {
    if user.groups.iter().any(|g| g == "system:authenticated") {
        for (role, rule) in default_rules() {
            if rule_allows(&rule, a) {
                return Decision {
                    allowed: true,
                    reason: format!(
                        "RBAC: allowed by ClusterRoleBinding {role:?} of ClusterRole {role:?} to Group \"system:authenticated\""
                    ),
                };
            }
        }
    }
    let mut errors: Vec<String> = Vec::new();
    let rules_of = |kind: &str, name: &str, ns: &str, errors: &mut Vec<String>| -> Vec<Value> {
        let role = match kind {
            "ClusterRole" => policy.cluster_role(name),
            "Role" if !ns.is_empty() => policy.role(ns, name),
            _ => return Vec::new(),
        };
        match role {
            Some(r) => r
                .get("rules")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            None => {
                let what = kind.to_lowercase();
                let e = format!("{what}.{GROUP} {name:?} not found");
                if !errors.contains(&e) {
                    errors.push(e);
                }
                Vec::new()
            }
        }
    };
    let mut bindings: Vec<(String, Value)> = policy
        .cluster_role_bindings()
        .into_iter()
        .map(|b| (String::new(), b))
        .collect();
    if !a.namespace.is_empty() {
        bindings.extend(
            policy
                .role_bindings(&a.namespace)
                .into_iter()
                .map(|b| (a.namespace.clone(), b)),
        );
    }
    for (ns, binding) in &bindings {
        let subjects = binding.get("subjects").and_then(Value::as_array);
        let Some(subject) = subjects
            .into_iter()
            .flatten()
            .find(|s| subject_applies(s, user, ns))
        else {
            continue;
        };
        let kind = str_at(binding, "/roleRef/kind");
        let role_name = str_at(binding, "/roleRef/name");
        // A ClusterRoleBinding may only name a ClusterRole.
        if ns.is_empty() && kind != "ClusterRole" {
            continue;
        }
        if rules_of(kind, role_name, ns, &mut errors)
            .iter()
            .any(|r| rule_allows(r, a))
        {
            let binding_name = str_at(binding, "/metadata/name");
            let source = if ns.is_empty() {
                format!("ClusterRoleBinding {binding_name:?}")
            } else {
                format!("RoleBinding {:?}", format!("{binding_name}/{ns}"))
            };
            return Decision {
                allowed: true,
                reason: format!(
                    "RBAC: allowed by {source} of {kind} {role_name:?} to {}",
                    describe_subject(subject, ns)
                ),
            };
        }
    }
    let reason = match errors.as_slice() {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    };
    Decision {
        allowed: false,
        reason,
    }
}

/// The API server's message for a denied request: `pods is forbidden: User "..." cannot list
/// resource "pods" in API group "" in the namespace "other"`, then `: REASON` when there is one.
pub fn forbidden_message(user: &User, a: &Attributes, reason: &str) -> String {
    let who = &user.name;
    let mut msg = if !a.resource_request {
        format!(
            "forbidden: User {who:?} cannot {} path {:?}",
            a.verb, a.path
        )
    } else {
        let mut resource = a.resource.clone();
        if !a.subresource.is_empty() {
            resource = format!("{resource}/{}", a.subresource);
        }
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", a.namespace)
        };
        let qualified = if a.group.is_empty() {
            a.resource.clone()
        } else {
            format!("{}.{}", a.resource, a.group)
        };
        let object = if a.name.is_empty() {
            qualified
        } else {
            format!("{qualified} {:?}", a.name)
        };
        format!(
            "{object} is forbidden: User {who:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            a.verb, a.group
        )
    };
    if !reason.is_empty() {
        msg.push_str(": ");
        msg.push_str(reason);
    }
    msg
}

/// The `details` of the 403 Status: the resource as `kind`, its group and name when set.
pub fn forbidden_details(a: &Attributes) -> Value {
    let mut d = serde_json::Map::new();
    if !a.name.is_empty() {
        d.insert("name".into(), a.name.clone().into());
    }
    if !a.group.is_empty() {
        d.insert("group".into(), a.group.clone().into());
    }
    if !a.resource.is_empty() {
        d.insert("kind".into(), a.resource.clone().into());
    }
    Value::Object(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Default)]
    struct Fixed {
        cluster_roles: Vec<Value>,
        roles: Vec<Value>,
        cluster_bindings: Vec<Value>,
        bindings: Vec<Value>,
    }

    fn ns_of(v: &Value) -> &str {
        str_at(v, "/metadata/namespace")
    }
    fn name_of(v: &Value) -> &str {
        str_at(v, "/metadata/name")
    }

    impl Policy for Fixed {
        fn cluster_role_bindings(&self) -> Vec<Value> {
            self.cluster_bindings.clone()
        }
        fn role_bindings(&self, namespace: &str) -> Vec<Value> {
            self.bindings
                .iter()
                .filter(|b| ns_of(b) == namespace)
                .cloned()
                .collect()
        }
        fn cluster_role(&self, name: &str) -> Option<Value> {
            self.cluster_roles
                .iter()
                .find(|r| name_of(r) == name)
                .cloned()
        }
        fn role(&self, namespace: &str, name: &str) -> Option<Value> {
            self.roles
                .iter()
                .find(|r| ns_of(r) == namespace && name_of(r) == name)
                .cloned()
        }
    }

    fn role(ns: &str, name: &str, rules: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": ns}, "rules": rules})
    }
    fn binding(ns: &str, name: &str, kind: &str, role: &str, subjects: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": ns},
            "roleRef": {"apiGroup": GROUP, "kind": kind, "name": role}, "subjects": subjects})
    }
    fn sa(ns: &str, name: &str) -> Value {
        json!([{"kind": "ServiceAccount", "name": name, "namespace": ns}])
    }

    fn req(method: &str, path: &str) -> Attributes {
        Attributes::of_request(method, path, false, None)
    }

    fn drills() -> User {
        User::service_account("drills", "firedrill")
    }

    #[test]
    fn request_attributes_are_read_from_the_url_as_the_api_server_reads_them() {
        let a = req("GET", "/api/v1/namespaces/shop/pods");
        assert_eq!(
            (a.verb.as_str(), a.group.as_str(), a.resource.as_str()),
            ("list", "", "pods")
        );
        assert_eq!((a.namespace.as_str(), a.name.as_str()), ("shop", ""));
        assert!(a.resource_request);
        let w = Attributes::of_request("GET", "/api/v1/pods", true, None);
        assert_eq!((w.verb.as_str(), w.namespace.as_str()), ("watch", ""));
        let pinned = Attributes::of_request(
            "GET",
            "/api/v1/namespaces/firedrill/configmaps",
            true,
            Some("firedrill-halt"),
        );
        assert_eq!(
            (pinned.verb.as_str(), pinned.name.as_str()),
            ("watch", "firedrill-halt")
        );
        let e = req("POST", "/api/v1/namespaces/shop/pods/web-1/eviction");
        assert_eq!(
            (e.verb.as_str(), e.resource.as_str(), e.subresource.as_str()),
            ("create", "pods", "eviction")
        );
        assert_eq!(e.name, "web-1");
        let d = req("DELETE", "/apis/apps/v1/namespaces/shop/deployments");
        assert_eq!(
            (d.verb.as_str(), d.group.as_str()),
            ("deletecollection", "apps")
        );
        let n = req("PATCH", "/api/v1/nodes/a-1/status");
        assert_eq!(
            (n.verb.as_str(), n.resource.as_str(), n.subresource.as_str()),
            ("patch", "nodes", "status")
        );
        assert_eq!(n.namespace, "");
        // A namespace is in its own namespace; its status is a subresource.
        let ns = req("GET", "/api/v1/namespaces/shop");
        assert_eq!(
            (
                ns.resource.as_str(),
                ns.name.as_str(),
                ns.namespace.as_str()
            ),
            ("namespaces", "shop", "shop")
        );
        let st = req("PUT", "/api/v1/namespaces/shop/status");
        assert_eq!(
            (st.resource.as_str(), st.subresource.as_str()),
            ("namespaces", "status")
        );
        for path in [
            "/api",
            "/api/v1",
            "/apis/apps/v1",
            "/version",
            "/openapi/v3",
        ] {
            let a = req("GET", path);
            assert!(!a.resource_request, "{path}");
            assert_eq!((a.verb.as_str(), a.path.as_str()), ("get", path));
        }
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names_with_wildcards() {
        let pods = json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]});
        let list = req("GET", "/api/v1/namespaces/shop/pods");
        assert!(rule_allows(&pods, &list));
        assert!(!rule_allows(
            &pods,
            &req("DELETE", "/api/v1/namespaces/shop/pods/p")
        ));
        assert!(!rule_allows(
            &pods,
            &req("GET", "/apis/apps/v1/namespaces/shop/deployments")
        ));
        // A subresource needs its own entry, or `*/sub`; the resource alone does not cover it.
        let evict = req("POST", "/api/v1/namespaces/shop/pods/p/eviction");
        let create_pods = json!({"verbs": ["create"], "apiGroups": [""], "resources": ["pods"]});
        assert!(!rule_allows(&create_pods, &evict));
        let eviction =
            json!({"verbs": ["create"], "apiGroups": [""], "resources": ["pods/eviction"]});
        assert!(rule_allows(&eviction, &evict));
        assert!(!rule_allows(
            &eviction,
            &req("POST", "/api/v1/namespaces/shop/pods")
        ));
        let any_status = json!({"verbs": ["patch"], "apiGroups": [""], "resources": ["*/status"]});
        assert!(rule_allows(
            &any_status,
            &req("PATCH", "/api/v1/nodes/a-1/status")
        ));
        assert!(!rule_allows(
            &any_status,
            &req("PATCH", "/api/v1/nodes/a-1")
        ));
        let everything = json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]});
        for a in [&list, &evict, &req("DELETE", "/apis/x.io/v1/things")] {
            assert!(rule_allows(&everything, a), "{a:?}");
        }
        // Wildcards stand for any value, not for a prefix.
        let star_verb = json!({"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]});
        assert!(!rule_allows(&star_verb, &evict));
        assert!(rule_allows(
            &star_verb,
            &req("DELETE", "/api/v1/namespaces/a/pods")
        ));
        // resourceNames: only requests naming one of them; a list names none.
        let halt = json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": ["firedrill-halt"]});
        assert!(rule_allows(
            &halt,
            &req(
                "GET",
                "/api/v1/namespaces/firedrill/configmaps/firedrill-halt"
            )
        ));
        assert!(!rule_allows(
            &halt,
            &req("GET", "/api/v1/namespaces/firedrill/configmaps/other")
        ));
        assert!(!rule_allows(
            &halt,
            &req("GET", "/api/v1/namespaces/firedrill/configmaps")
        ));
        assert!(rule_allows(
            &halt,
            &Attributes::of_request(
                "GET",
                "/api/v1/namespaces/firedrill/configmaps",
                false,
                Some("firedrill-halt")
            )
        ));
        // Non-resource URLs: exact, or a prefix ending in `*`; never a resource rule.
        let urls = json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]});
        assert!(rule_allows(&urls, &req("GET", "/healthz")));
        assert!(rule_allows(&urls, &req("GET", "/apis/apps/v1")));
        assert!(!rule_allows(&urls, &req("GET", "/apis")));
        assert!(!rule_allows(&urls, &req("POST", "/healthz")));
        assert!(!rule_allows(&urls, &list));
    }

    #[test]
    fn bindings_grant_in_their_namespace_and_cluster_bindings_everywhere() {
        let mut p = Fixed::default();
        p.roles.push(role(
            "shop",
            "firedrill",
            json!([{"verbs": ["get", "list", "watch", "delete"], "apiGroups": [""], "resources": ["pods"]}]),
        ));
        p.bindings.push(binding(
            "shop",
            "firedrill",
            "Role",
            "firedrill",
            sa("drills", "firedrill"),
        ));
        let me = drills();
        let ok = authorize(&p, &me, &req("DELETE", "/api/v1/namespaces/shop/pods/p"));
        assert!(ok.allowed);
        assert_eq!(
            ok.reason,
            "RBAC: allowed by RoleBinding \"firedrill/shop\" of Role \"firedrill\" to ServiceAccount \"firedrill/drills\""
        );
        // Another namespace, all namespaces, another service account: nothing.
        for (user, path) in [
            (&me, "/api/v1/namespaces/other/pods"),
            (&me, "/api/v1/pods"),
            (
                &User::service_account("other", "firedrill"),
                "/api/v1/namespaces/shop/pods",
            ),
        ] {
            let d = authorize(&p, user, &req("GET", path));
            assert!(!d.allowed, "{path}");
            assert_eq!(d.reason, "");
        }
        // A RoleBinding may name a ClusterRole: granted in the binding's namespace only.
        p.cluster_roles.push(json!({"metadata": {"name": "reader"},
            "rules": [{"verbs": ["get", "list"], "apiGroups": ["apps"], "resources": ["deployments"]}]}));
        p.bindings.push(binding(
            "other",
            "read",
            "ClusterRole",
            "reader",
            sa("drills", "firedrill"),
        ));
        let deployments =
            |ns: &str| req("GET", &format!("/apis/apps/v1/namespaces/{ns}/deployments"));
        let d = authorize(&p, &me, &deployments("other"));
        assert!(d.allowed);
        assert!(
            d.reason.contains("of ClusterRole \"reader\""),
            "{}",
            d.reason
        );
        assert!(!authorize(&p, &me, &deployments("shop")).allowed);
        assert!(!authorize(&p, &me, &req("GET", "/apis/apps/v1/deployments")).allowed);
        // A ClusterRoleBinding grants everywhere, cluster-scoped resources too.
        p.cluster_roles.push(json!({"metadata": {"name": "nodes"},
            "rules": [{"verbs": ["get", "list", "watch", "patch"], "apiGroups": [""], "resources": ["nodes"]},
                      {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]}));
        p.cluster_bindings
            .push(json!({"metadata": {"name": "nodes"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "nodes"},
            "subjects": sa("drills", "firedrill")}));
        assert!(authorize(&p, &me, &req("PATCH", "/api/v1/nodes/a-1")).allowed);
        assert!(authorize(&p, &me, &req("GET", "/api/v1/pods")).allowed);
        assert!(authorize(&p, &me, &req("GET", "/api/v1/namespaces/any/pods")).allowed);
        assert!(!authorize(&p, &me, &req("DELETE", "/api/v1/nodes/a-1")).allowed);
        // A ClusterRoleBinding naming a Role grants nothing.
        p.roles.push(role(
            "",
            "odd",
            json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]),
        ));
        p.cluster_bindings.push(json!({"metadata": {"name": "odd"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "odd"},
            "subjects": sa("drills", "firedrill")}));
        assert!(!authorize(&p, &me, &req("DELETE", "/api/v1/nodes/a-1")).allowed);
    }

    #[test]
    fn subjects_are_service_accounts_users_and_groups() {
        let mut p = Fixed::default();
        p.roles.push(role(
            "shop",
            "r",
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]),
        ));
        let get = req("GET", "/api/v1/namespaces/shop/pods/p");
        let me = drills();
        for subjects in [
            json!([{"kind": "User", "name": "system:serviceaccount:drills:firedrill"}]),
            json!([{"kind": "Group", "name": "system:serviceaccounts:drills"}]),
            json!([{"kind": "Group", "name": "system:authenticated"}]),
            json!([{"kind": "User", "name": "someone"}, {"kind": "ServiceAccount", "name": "firedrill", "namespace": "drills"}]),
        ] {
            p.bindings = vec![binding("shop", "b", "Role", "r", subjects.clone())];
            assert!(authorize(&p, &me, &get).allowed, "{subjects}");
        }
        // A ServiceAccount subject without a namespace is one of the binding's namespace.
        p.bindings = vec![binding(
            "shop",
            "b",
            "Role",
            "r",
            json!([{"kind": "ServiceAccount", "name": "firedrill"}]),
        )];
        assert!(!authorize(&p, &me, &get).allowed);
        assert!(authorize(&p, &User::service_account("shop", "firedrill"), &get).allowed);
        for subjects in [
            json!([{"kind": "Group", "name": "system:serviceaccounts:other"}]),
            json!([{"kind": "User", "name": "firedrill"}]),
        ] {
            p.bindings = vec![binding("shop", "b", "Role", "r", subjects.clone())];
            assert!(!authorize(&p, &me, &get).allowed, "{subjects}");
        }
    }

    #[test]
    fn every_caller_may_discover_and_review_itself_and_nothing_more() {
        let p = Fixed::default();
        let me = drills();
        for path in [
            "/api",
            "/apis",
            "/api/v1",
            "/apis/apps/v1",
            "/version",
            "/openapi/v3",
            "/healthz",
        ] {
            assert!(authorize(&p, &me, &req("GET", path)).allowed, "{path}");
        }
        assert!(!authorize(&p, &me, &req("POST", "/version")).allowed);
        assert!(!authorize(&p, &me, &req("GET", "/metrics")).allowed);
        assert!(
            authorize(
                &p,
                &me,
                &req(
                    "POST",
                    "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
                )
            )
            .allowed
        );
        assert!(
            !authorize(
                &p,
                &me,
                &req(
                    "POST",
                    "/api/v1/namespaces/drills/serviceaccounts/firedrill/token"
                )
            )
            .allowed
        );
    }

    #[test]
    fn a_binding_to_a_missing_role_is_named_in_the_reason() {
        let mut p = Fixed::default();
        p.bindings.push(binding(
            "shop",
            "b",
            "Role",
            "gone",
            sa("drills", "firedrill"),
        ));
        p.bindings.push(binding(
            "shop",
            "c",
            "ClusterRole",
            "gone-too",
            sa("drills", "firedrill"),
        ));
        let d = authorize(&p, &drills(), &req("GET", "/api/v1/namespaces/shop/pods"));
        assert!(!d.allowed);
        assert_eq!(
            d.reason,
            "RBAC: [role.rbac.authorization.k8s.io \"gone\" not found, clusterrole.rbac.authorization.k8s.io \"gone-too\" not found]"
        );
    }

    #[test]
    fn the_forbidden_message_is_the_api_servers() {
        let me = drills();
        assert_eq!(
            forbidden_message(&me, &req("GET", "/api/v1/namespaces/other/pods"), ""),
            "pods is forbidden: User \"system:serviceaccount:drills:firedrill\" cannot list resource \"pods\" in API group \"\" in the namespace \"other\""
        );
        assert_eq!(
            forbidden_message(&me, &req("DELETE", "/apis/apps/v1/namespaces/shop/deployments/web"), ""),
            "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:drills:firedrill\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"shop\""
        );
        assert_eq!(
            forbidden_message(&me, &req("POST", "/api/v1/namespaces/shop/pods/p/eviction"), ""),
            "pods \"p\" is forbidden: User \"system:serviceaccount:drills:firedrill\" cannot create resource \"pods/eviction\" in API group \"\" in the namespace \"shop\""
        );
        assert_eq!(
            forbidden_message(&me, &req("GET", "/api/v1/nodes"), "RBAC: x"),
            "nodes is forbidden: User \"system:serviceaccount:drills:firedrill\" cannot list resource \"nodes\" in API group \"\" at the cluster scope: RBAC: x"
        );
        assert_eq!(
            forbidden_message(&me, &req("GET", "/metrics"), ""),
            "forbidden: User \"system:serviceaccount:drills:firedrill\" cannot get path \"/metrics\""
        );
        assert_eq!(
            forbidden_details(&req("GET", "/api/v1/namespaces/other/pods")),
            json!({"kind": "pods"})
        );
        assert_eq!(
            forbidden_details(&req("GET", "/apis/apps/v1/namespaces/a/deployments/web")),
            json!({"kind": "deployments", "group": "apps", "name": "web"})
        );
    }

    #[test]
    fn a_review_asks_about_resource_or_non_resource_attributes() {
        let a = Attributes::of_review(&json!({"resourceAttributes": {"namespace": "shop",
            "verb": "list", "resource": "pods"}}))
        .unwrap();
        assert_eq!(
            a,
            Attributes {
                verb: "list".into(),
                resource_request: true,
                resource: "pods".into(),
                namespace: "shop".into(),
                ..Default::default()
            }
        );
        let n = Attributes::of_review(
            &json!({"nonResourceAttributes": {"path": "/api", "verb": "get"}}),
        )
        .unwrap();
        assert!(!n.resource_request);
        assert!(Attributes::of_review(&json!({})).is_err());
    }
}
