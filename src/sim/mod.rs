//! The embedded simulated Kubernetes cluster (`firedrill sim`), in the spirit of kwok: a small
//! API server on 127.0.0.1 that kubectl and kube-rs talk to like to a real one, with simulated
//! controllers and a simulated kubelet, and a loopback HTTP endpoint per web deployment.
//!
//! It owns: the object store (one global resourceVersion, watches that resume from it), the
//! API surface (discovery, list/get/create/update/patch/delete/watch, Tables for kubectl,
//! custom resources as opaque JSON), the controllers (deployment → replica set → pods, stateful
//! sets, endpoints, disruption budgets), a scheduler, a node lifecycle controller with a taint
//! manager, and the ground truth of every simulated transition ([`SimHandle::truth`]), which
//! tests and benchmarks compare measured recovery times against.
//!
//! It guarantees: it listens on 127.0.0.1 only, and every address it puts into an object is in
//! 127.0.0.0/8 (pods 127.1.x.y, services 127.2.x.y, the default node 127.0.0.1, declared nodes
//! 127.0.2.1 upwards), so nothing built on it can reach another host.
//! It is a stand-in for a cluster, never a replacement for testing against one.
//!
//! # Scenario file
//!
//! ```yaml
//! kubelet:                      # defaults for every pod; each a duration or a range "a..b"
//!   schedule-delay: 20ms        # created → spec.nodeName set, PodScheduled
//!   start-delay: 200ms          # scheduled → phase Running, podIP, startTime
//!   ready-delay: 300ms          # running → Ready and ContainersReady
//!   termination-grace: 1s       # terminationGracePeriodSeconds of created pods
//! endpoints: { propagation-delay: 100ms }   # readiness change → Endpoints and traffic routing
//! node-lifecycle:               # Kubernetes' defaults are 40s, 300s; the simulation's are short
//!   grace: 2s                   # kubelet silent → node Ready=Unknown, tainted unreachable
//!   default-toleration: 5s      # tolerationSeconds that admission adds for not-ready/unreachable
//!   boot-delay: 500ms           # power on → node Ready
//! nodes:                        # absent: one node sim-node-1 with room for everything
//!   - { name: cp, control-plane: true, taints: [ { key: node-role.kubernetes.io/control-plane, effect: NoSchedule } ] }
//!   - { prefix: a, count: 2, zone: zone-a, cpu: 4, memory: 16Gi, pods: 110, labels: { tier: web } }
//! namespaces:
//!   shop:
//!     labels: { firedrill.io/allow: "true" }
//!     deployments:
//!       checkout: { replicas: 3, labels: { app: checkout }, http: true, kubelet: { ready-delay: 1200ms },
//!                   requests: { cpu: 500m, memory: 256Mi }, tolerations: [ { key: k, operator: Exists } ] }
//!     statefulsets:
//!       db: { replicas: 2, labels: { app: db } }
//!     pdbs:
//!       checkout: { selector-labels: { app: checkout }, min-available: 2 }   # or max-unavailable; int or "50%"
//! ```
//!
//! Ranges are sampled per pod, and pod name suffixes drawn per replica set, from ChaCha
//! generators derived from `--seed` and the pod's or replica set's name, so one seed reproduces
//! the same names and delays however the tasks interleave (uids are not reproducible). Unknown
//! keys are errors. `replicas` defaults to 1 and `labels` to
//! `app: <name>`; `http: true` adds a Service, its Endpoints and a traffic URL. A node group is
//! one node (`name`) or `prefix` + `count` (P-1..P-K); `zone` sets topology.kubernetes.io/zone
//! (and region `sim`); cpu defaults to 4, memory to 16Gi, pods to 110. `requests` go on every
//! container of the workload's pods, `tolerations` into its pod template.
//!
//! # Nodes, scheduling and the power switch
//!
//! After its schedule-delay a pod is bound to the feasible node (Ready, not cordoned, its
//! NoSchedule/NoExecute taints tolerated, requests and pod count within allocatable minus the
//! pods bound there, terminating ones included) with the fewest pods of the same owner in its
//! zone, then on the node, then the least requested CPU, then the first name. None fits: the
//! pod stays Pending with PodScheduled=False, reason Unschedulable and Kubernetes' message
//! ("0/6 nodes are available: 4 Insufficient cpu, ..."), and is bound as soon as it fits.
//!
//! The annotation `sim.firedrill.io/power: "off"` on a Node stops its kubelet at once (no pod
//! on it progresses); after `grace` the node is Ready=Unknown (NodeStatusUnknown), tainted
//! node.kubernetes.io/unreachable NoSchedule+NoExecute, and its pods not ready. The taint
//! manager deletes pods whose NoExecute toleration runs out; on a node that is off they stay
//! Terminating (a StatefulSet does not replace them) until it boots. Removing the annotation
//! (or "on") boots the node: Ready after `boot-delay`, taints removed, terminating pods
//! finished, the others started again. `spec.unschedulable` (kubectl cordon) adds the
//! node.kubernetes.io/unschedulable:NoSchedule taint.
//!
//! Ground truth kinds ([`TruthKind`]): pod-created, pod-scheduled (with the node),
//! pod-unschedulable (detail: the message), pod-running, pod-ready, pod-deleted,
//! endpoint-added/-removed, workload-ready/-degraded, node-powered-off/-on, node-not-ready,
//! node-ready, node-cordoned/-uncordoned (namespace "", object the node), pod-evicted (granted
//! by the Eviction API), eviction-refused (detail: the budget), pod-evicted-by-taint (detail:
//! the taint key).
//!
//! # API surface
//!
//! Discovery (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/{group}[/{version}]`, with short
//! names and the `all` category); core/v1 namespaces, nodes, pods (+`status`, `log`), services,
//! endpoints, events, configmaps, serviceaccounts; apps/v1 deployments, replicasets, statefulsets (+`status`,
//! `scale`); policy/v1 poddisruptionbudgets (+`status`; `pdb`) and
//! `POST /api/v1/namespaces/{ns}/pods/{name}/eviction` (policy/v1 or v1beta1 Eviction: 429
//! TooManyRequests with a DisruptionBudget cause while the budget allows no disruption, so
//! `kubectl drain` works); coordination.k8s.io/v1 leases; rbac.authorization.k8s.io/v1 roles,
//! rolebindings, clusterroles, clusterrolebindings; any other `/apis/{group}/{version}/...` resource is
//! stored as opaque JSON and listed in discovery once written. Verbs: list (label selectors in
//! full syntax, field selectors on any dotted path; `limit`/`continue` paging in key order, each
//! page O(page), no `remainingItemCount`), get,
//! create (`generateName`), update (rv conflict → 409), patch (merge; strategic treated as
//! merge; JSON patch; server-side apply approximated as merge), delete (grace via query or
//! DeleteOptions, preconditions), deletecollection, watch (from an rv, from a snapshot, or
//! `sendInitialEvents`; bookmarks; selectors; `timeoutSeconds`; 410 via an ERROR event when the
//! rv is older than the retained history: the last ~256 MiB of changes, kept as JSON text).
//! `Accept: ...;as=Table` gets a meta.k8s.io/v1 Table.
//!
//! # Who may do what
//!
//! The port serves HTTP and HTTPS alike (the first byte of a connection says which; the
//! certificate is self-signed at start, [`SimHandle::ca_pem`]), because kubectl sends a
//! bearer token only over HTTPS. A request without credentials is the admin and may do
//! anything, as it always could. `POST /api/v1/namespaces/{ns}/serviceaccounts/{name}/token`
//! (TokenRequest; `kubectl create token`) mints a token for a service account: 256 random bits,
//! in memory only, dead with its expiry or its account. A request bearing one is that service
//! account, held to RBAC with Kubernetes' semantics (Roles and ClusterRoles, RoleBindings and
//! ClusterRoleBindings, see the `rbac` module), a denial being the API server's own 403; an unknown
//! token is 401. `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews` answers
//! `kubectl auth can-i` (both read from kubectl's protobuf). [`SimHandle::kubeconfig_with_token`]
//! writes a kubeconfig that holds nothing but a token.
//!
//! # Simplifications
//!
//! A new pod template rolls out through a new replica set, bounded by maxSurge/maxUnavailable
//! (default 25%) or Recreate; there is no progress deadline, pause or revision history limit.
//! A terminating pod stops serving at once (no preStop hooks). No Events are generated. The
//! OpenAPI v3 documents name paths and kinds but carry no schemas (kubectl validates through
//! the server's strict field validation, which checks creates and replaces of built-in kinds,
//! not patches); no OpenAPI v2. No authentication but service-account tokens, no client
//! certificates, no aggregated ClusterRoles, no RBAC escalation checks on writes of roles;
//! no protobuf but the two bodies above; the only admission is
//! DefaultTolerationSeconds. The scheduler knows node selectors but not affinity, topology
//! spread constraints, priorities or preemption; there are no DaemonSets, no pod garbage
//! collection of pods bound to a deleted node, and a budget's disruptedPods entries do not expire.

mod api;
mod auth;
mod cluster;
mod openapi;
mod proto;
mod rbac;
mod scenario;
mod select;
mod store;
mod table;
mod tls;
mod traffic;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};
use tokio::task::JoinHandle;

use cluster::{Route, Sim};
use store::ResId;

pub use scenario::{
    load_scenario, parse_scenario, Delay, DeploymentSpec, EndpointsSpec, KubeletSpec,
    NamespaceSpec, Scenario, StatefulSetSpec, BUILTIN_SCENARIO,
};

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("cannot read scenario {path}: {source}")]
    ScenarioRead {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid scenario {path}: {message}")]
    Scenario { path: String, message: String },
    #[error(
        "the simulated cluster listens on 127.0.0.1 only, not {0}: use --listen 127.0.0.1:PORT"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build a client for the simulated cluster: {0}")]
    Client(String),
    #[error("cannot make the simulated cluster's TLS certificate: {0}")]
    Tls(String),
}

/// One simulated transition, stamped when it happened (both clocks).
#[derive(Debug, Clone)]
pub struct TruthEvent {
    pub at: SystemTime,
    pub mono: tokio::time::Instant,
    pub namespace: String,
    /// The pod for pod and endpoint events, the workload for workload events, the node for
    /// node events (whose namespace is "").
    pub object: String,
    pub what: TruthKind,
    /// The node involved: where a pod was scheduled, evicted from, or the node itself.
    pub node: Option<String>,
    /// What else the event says: the Unschedulable message, the taint key, the PDB.
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TruthKind {
    PodCreated,
    PodScheduled,
    PodRunning,
    PodReady,
    /// The pod object was removed from the store.
    PodDeleted,
    EndpointAdded,
    EndpointRemoved,
    /// readyReplicas reached the desired count.
    WorkloadReady,
    /// readyReplicas fell below the desired count after having reached it.
    WorkloadDegraded,
    /// The scheduler found no node for the pod (detail: the scheduler's message).
    PodUnschedulable,
    /// The node's `sim.firedrill.io/power` annotation turned it off: its kubelet stopped.
    NodePoweredOff,
    /// The annotation was removed or set to "on": the node boots.
    NodePoweredOn,
    /// The node lifecycle controller set Ready=Unknown after the grace period.
    NodeNotReady,
    /// The node is Ready=True again after booting.
    NodeReady,
    NodeCordoned,
    NodeUncordoned,
    /// An eviction through the Eviction API was granted.
    PodEvicted,
    /// An eviction was refused with 429 (detail: the PodDisruptionBudget).
    EvictionRefused,
    /// The taint manager deleted the pod (detail: the NoExecute taint's key).
    PodEvictedByTaint,
}

impl TruthKind {
    /// The kebab-case name used in `--truth-out` files.
    pub fn as_str(self) -> &'static str {
        match self {
            TruthKind::PodCreated => "pod-created",
            TruthKind::PodScheduled => "pod-scheduled",
            TruthKind::PodRunning => "pod-running",
            TruthKind::PodReady => "pod-ready",
            TruthKind::PodDeleted => "pod-deleted",
            TruthKind::EndpointAdded => "endpoint-added",
            TruthKind::EndpointRemoved => "endpoint-removed",
            TruthKind::WorkloadReady => "workload-ready",
            TruthKind::WorkloadDegraded => "workload-degraded",
            TruthKind::PodUnschedulable => "pod-unschedulable",
            TruthKind::NodePoweredOff => "node-powered-off",
            TruthKind::NodePoweredOn => "node-powered-on",
            TruthKind::NodeNotReady => "node-not-ready",
            TruthKind::NodeReady => "node-ready",
            TruthKind::NodeCordoned => "node-cordoned",
            TruthKind::NodeUncordoned => "node-uncordoned",
            TruthKind::PodEvicted => "pod-evicted",
            TruthKind::EvictionRefused => "eviction-refused",
            TruthKind::PodEvictedByTaint => "pod-evicted-by-taint",
        }
    }
}

impl TruthEvent {
    /// One JSON line: wall-clock nanoseconds since the Unix epoch, namespace, object, step, and
    /// `node` and `detail` when present. Wall clock because another process (a drill, a
    /// benchmark) compares against it.
    pub fn to_json_line(&self) -> String {
        let unix_ns = self
            .at
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let mut v = json!({"unix_ns": unix_ns as u64, "namespace": self.namespace,
            "object": self.object, "what": self.what.as_str()});
        if let Some(node) = &self.node {
            v["node"] = json!(node);
        }
        if let Some(detail) = &self.detail {
            v["detail"] = json!(detail);
        }
        let mut line = v.to_string();
        line.push('\n');
        line
    }
}

/// One API request as the server answered it.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub at: SystemTime,
    /// Who asked: `system:serviceaccount:NS:NAME` for a service account's token, `None` for
    /// the admin (no credentials) and for a request refused before it was authenticated.
    pub user: Option<String>,
}

impl RequestRecord {
    /// Whether the request could change state (what safety tests count).
    pub fn is_mutating(&self) -> bool {
        !matches!(self.method.as_str(), "GET" | "HEAD" | "OPTIONS")
    }
}

pub struct SimCluster;

pub struct SimHandle {
    sim: Arc<Sim>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
    /// The API server's self-signed certificate (HTTPS on the same port), PEM.
    ca_pem: String,
}

fn ns_obj(name: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut labels: serde_json::Map<String, Value> =
        labels.iter().map(|(k, v)| (k.clone(), json!(v))).collect();
    labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": labels}, "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"}})
}

fn node_obj(n: &scenario::NodeDef) -> Value {
    use scenario::{format_bytes, format_cpu};
    let resources = json!({"cpu": format_cpu(n.cpu_milli), "memory": format_bytes(n.memory_bytes),
        "pods": n.pods.to_string()});
    let taints: Vec<Value> = n
        .taints
        .iter()
        .map(|t| json!({"key": t.key, "value": t.value, "effect": t.effect.as_str()}))
        .collect();
    let now = cluster::now_rfc3339();
    let cond = |kind: &str, status: &str, reason: &str, message: &str| {
        json!({"type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    let mut spec = json!({});
    if !taints.is_empty() {
        spec["taints"] = json!(taints);
    }
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": n.name, "labels": n.labels},
        "spec": spec,
        "status": {"capacity": resources, "allocatable": resources,
            "addresses": [{"type": "InternalIP", "address": n.ip}, {"type": "Hostname", "address": n.name}],
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            "nodeInfo": {"kubeletVersion": "v1.32.0-firedrill-sim", "kubeProxyVersion": "v1.32.0-firedrill-sim",
                "containerRuntimeVersion": "sim://1.0", "osImage": "firedrill simulated node",
                "kernelVersion": "sim", "operatingSystem": "linux", "architecture": "amd64",
                "machineID": "", "systemUUID": "", "bootID": ""}}})
}

fn workload_labels(name: &str, labels: &BTreeMap<String, String>) -> Value {
    if labels.is_empty() {
        json!({"app": name})
    } else {
        json!(labels)
    }
}

fn pod_template(
    labels: &Value,
    grace: i64,
    requests: Option<&scenario::RequestsSpec>,
    tolerations: &[scenario::TolerationSpec],
) -> Value {
    let mut t = json!({"metadata": {"labels": labels},
        "spec": {"containers": [{"name": "app", "image": "firedrill/sim-app:1",
            "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}]}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": grace}});
    if let Some(r) = requests {
        t["spec"]["containers"][0]["resources"] = json!({"requests": r.to_json()});
    }
    if !tolerations.is_empty() {
        let ts: Vec<Value> = tolerations.iter().map(|x| x.to_json()).collect();
        t["spec"]["tolerations"] = json!(ts);
    }
    t
}

impl SimCluster {
    /// Starts the API server on `listen` (127.0.0.1 only; port 0 picks one), the controllers,
    /// and one traffic endpoint per `http: true` deployment, then creates the scenario's objects.
    pub async fn start(
        scenario: Scenario,
        listen: SocketAddr,
        seed: u64,
    ) -> Result<SimHandle, SimError> {
        if listen.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
            return Err(SimError::NotLoopback(listen));
        }
        let bind = |addr: SocketAddr| async move {
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| SimError::Bind { addr, source })
        };
        let api_listener = bind(listen).await?;
        let addr = api_listener.local_addr().map_err(|source| SimError::Bind {
            addr: listen,
            source,
        })?;

        let mut routes = HashMap::new();
        let mut traffic_listeners = Vec::new();
        for (ns, spec) in &scenario.namespaces {
            for (name, d) in &spec.deployments {
                if !d.http {
                    continue;
                }
                let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0);
                let l = bind(local).await?;
                let port = l
                    .local_addr()
                    .map_err(|source| SimError::Bind {
                        addr: local,
                        source,
                    })?
                    .port();
                let route = Arc::new(Route::default());
                *route.url.lock().unwrap_or_else(|p| p.into_inner()) =
                    format!("http://127.0.0.1:{port}");
                routes.insert((ns.clone(), name.clone()), route.clone());
                traffic_listeners.push((ns.clone(), route, l));
            }
        }

        let cert = tls::ServerCert::generate().map_err(SimError::Tls)?;
        let api_listener =
            tls::Listener::new(api_listener, cert.server_config().map_err(SimError::Tls)?);
        let sim = Arc::new(Sim::new(scenario, seed, routes));
        let mut tasks = Vec::new();
        let shutdown = sim.cancel.clone();
        let app = api::router(sim.clone());
        tasks.push(tokio::spawn(async move {
            let served = axum::serve(api_listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "simulated API server stopped");
            }
        }));
        for (ns, route, l) in traffic_listeners {
            let app = traffic::router(sim.clone(), ns, route);
            let shutdown = sim.cancel.clone();
            tasks.push(tokio::spawn(async move {
                let served = axum::serve(l, app)
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::warn!(error = %e, "simulated traffic endpoint stopped");
                }
            }));
        }
        tasks.push(cluster::controllers::start(sim.clone()));
        bootstrap(&sim);
        tracing::info!(api = %addr, "simulated cluster started");
        Ok(SimHandle {
            sim,
            addr,
            tasks,
            ca_pem: cert.pem,
        })
    }
}

/// Creates the objects a fresh cluster has plus the scenario's workloads.
fn bootstrap(sim: &Arc<Sim>) {
    let create = |group: &str, plural: &str, mut obj: Value| {
        sim.stamp_new(&mut obj);
        if let Err(e) = sim.create(&ResId::new(group, plural), obj) {
            tracing::warn!(error = %e, plural, "cannot create scenario object");
        }
    };
    let empty = BTreeMap::new();
    let scenario = sim.scenario.clone();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        if !scenario.namespaces.contains_key(ns) {
            create("", "namespaces", ns_obj(ns, &empty));
        }
    }
    // Checked when the scenario was loaded; a scenario built in code gets the default node.
    let nodes = scenario.node_defs().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "invalid nodes in the scenario; using the default node");
        Scenario::default().node_defs().unwrap_or_default()
    });
    for n in &nodes {
        create("", "nodes", node_obj(n));
    }
    let mut service_ip = 0u32;
    for (ns, spec) in &scenario.namespaces {
        create("", "namespaces", ns_obj(ns, &spec.labels));
        for (name, d) in &spec.deployments {
            let labels = workload_labels(name, &d.labels);
            let grace = d
                .kubelet
                .resolve(&scenario.kubelet)
                .termination_grace_seconds;
            create(
                "apps",
                "deployments",
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"replicas": d.replicas, "selector": {"matchLabels": labels},
                    "template": pod_template(&labels, grace, d.requests.as_ref(), &d.tolerations),
                    "strategy": {"type": "RollingUpdate"}},
                "status": {}}),
            );
            if d.http {
                service_ip += 1;
                // Cluster IPs also stay on loopback (127.2.x.y).
                let ip = format!("127.2.{}.{}", (service_ip >> 8) & 0xff, service_ip & 0xff);
                create(
                    "",
                    "services",
                    json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": ns, "labels": labels},
                    "spec": {"selector": labels, "type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}),
                );
                create(
                    "",
                    "endpoints",
                    json!({"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "labels": labels}, "subsets": []}),
                );
            }
        }
        for (name, pdb) in &spec.pdbs {
            let mut pspec = json!({"selector": {"matchLabels": pdb.selector_labels}});
            if let Some(m) = &pdb.min_available {
                pspec["minAvailable"] = m.to_json();
            }
            if let Some(m) = &pdb.max_unavailable {
                pspec["maxUnavailable"] = m.to_json();
            }
            create(
                "policy",
                "poddisruptionbudgets",
                json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": name, "namespace": ns}, "spec": pspec, "status": {}}),
            );
        }
        for (name, s) in &spec.statefulsets {
            let labels = workload_labels(name, &s.labels);
            let grace = s
                .kubelet
                .resolve(&scenario.kubelet)
                .termination_grace_seconds;
            create(
                "apps",
                "statefulsets",
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"replicas": s.replicas, "selector": {"matchLabels": labels},
                    "serviceName": name, "podManagementPolicy": "Parallel",
                    "template": pod_template(&labels, grace, s.requests.as_ref(), &s.tolerations)},
                "status": {}}),
            );
        }
    }
}

impl SimHandle {
    /// `http://127.0.0.1:PORT` of the API server.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig whose cluster, context and user are all named `firedrill-sim`, no auth.
    pub fn kubeconfig_yaml(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: firedrill-sim\n  cluster:\n    server: {}\n\
             contexts:\n- name: firedrill-sim\n  context:\n    cluster: firedrill-sim\n    user: firedrill-sim\n\
             current-context: firedrill-sim\nusers:\n- name: firedrill-sim\n  user: {{}}\npreferences: {{}}\n",
            self.api_url()
        )
    }

    /// `https://127.0.0.1:PORT`: the same API server over TLS, with the certificate
    /// [`Self::ca_pem`]. Clients send credentials (a service account's token) only there.
    pub fn https_url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The API server's self-signed certificate, PEM: the certificate authority of
    /// [`Self::https_url`].
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A kubeconfig whose cluster, context and user are all named `firedrill-sim`, on
    /// [`Self::https_url`] with [`Self::ca_pem`] as its authority, whose user presents `token`
    /// (a service account's, from [`Self::service_account_token`] or `kubectl create token`):
    /// whatever uses it is held to that account's RBAC.
    pub fn kubeconfig_with_token(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: firedrill-sim\n  cluster:\n    server: {}\n    certificate-authority-data: {}\n\
             contexts:\n- name: firedrill-sim\n  context:\n    cluster: firedrill-sim\n    user: firedrill-sim\n\
             current-context: firedrill-sim\nusers:\n- name: firedrill-sim\n  user:\n    token: {token}\npreferences: {{}}\n",
            self.https_url(),
            tls::base64_text(&self.ca_pem),
        )
    }

    /// A token for the service account `namespace/name`, valid for an hour, as the
    /// TokenRequest API mints one; `None` when the account does not exist.
    pub fn service_account_token(&self, namespace: &str, name: &str) -> Option<String> {
        let sa = self
            .sim
            .store
            .get(&ResId::new("", "serviceaccounts"), namespace, name)?;
        let uid = store::meta_str(&sa, "uid");
        Some(
            self.sim
                .tokens
                .mint(namespace, name, uid, auth::DEFAULT_EXPIRATION)
                .0,
        )
    }

    /// A kube client built from [`Self::kubeconfig_yaml`], the same path a user's config takes.
    pub async fn kube_client(&self) -> Result<kube::Client, SimError> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml())
            .map_err(|e| SimError::Client(e.to_string()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| SimError::Client(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| SimError::Client(e.to_string()))
    }

    /// The loopback HTTP endpoint of an `http: true` deployment.
    pub fn traffic_url(&self, namespace: &str, deployment: &str) -> Option<String> {
        self.sim
            .routes
            .get(&(namespace.to_string(), deployment.to_string()))
            .map(|r| r.url.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    /// Every traffic endpoint as (namespace, deployment, url), sorted.
    pub fn traffic_urls(&self) -> Vec<(String, String, String)> {
        let mut all: Vec<_> = self
            .sim
            .routes
            .iter()
            .map(|((ns, d), r)| {
                let url = r.url.lock().unwrap_or_else(|p| p.into_inner()).clone();
                (ns.clone(), d.clone(), url)
            })
            .collect();
        all.sort();
        all
    }

    /// Ground truth of the simulated transitions so far, in order.
    pub fn truth(&self) -> Vec<TruthEvent> {
        self.sim.truth()
    }

    /// Every API request answered so far, in order.
    pub fn request_log(&self) -> Vec<RequestRecord> {
        self.sim.requests()
    }

    /// Stops the servers, watches and controllers; open connections get a short grace.
    pub async fn shutdown(mut self) {
        self.sim.cancel.cancel();
        for mut t in std::mem::take(&mut self.tasks) {
            if tokio::time::timeout(Duration::from_secs(2), &mut t)
                .await
                .is_err()
            {
                t.abort();
            }
        }
    }
}

impl Drop for SimHandle {
    /// A handle dropped without [`SimHandle::shutdown`] still stops everything it started.
    fn drop(&mut self) {
        self.sim.cancel.cancel();
    }
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s
        .parse()
        .map_err(|e| format!("{s:?} is not an address like 127.0.0.1:6443: {e}"))?;
    if addr.ip() != IpAddr::V4(Ipv4Addr::LOCALHOST) {
        return Err(format!(
            "the simulated cluster listens on 127.0.0.1 only, not {}",
            addr.ip()
        ));
    }
    Ok(addr)
}

/// Writes the truth as JSON lines, atomically, so that a reader never sees half a file.
fn write_truth(path: &std::path::Path, truth: &[TruthEvent]) -> anyhow::Result<()> {
    let mut text = String::with_capacity(truth.len() * 120);
    for e in truth {
        text.push_str(&e.to_json_line());
    }
    crate::platform::fs::write_file_atomic(path, text.as_bytes())?;
    Ok(())
}

/// `firedrill sim`: run the simulated cluster until Ctrl-C or SIGTERM.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address of the API server; only 127.0.0.1 is accepted.
    #[arg(long, default_value = "127.0.0.1:6443", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// Write a kubeconfig for the simulated cluster to this file.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Scenario YAML; without it, a small built-in scenario (namespace `shop`).
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Seed of pod names, uids and sampled delays.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// On shutdown, write the ground truth of every simulated transition to this file, one
    /// JSON object a line (benchmarks compare a drill's observations against it).
    #[arg(long, value_name = "FILE")]
    pub truth_out: Option<PathBuf>,
}

pub async fn run_standalone(args: SimArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    run_standalone_until(args, async move {
        tokio::select! {
            r = tokio::signal::ctrl_c() => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "cannot listen for Ctrl-C; stopping");
                }
            }
            _ = term.recv() => {}
        }
    })
    .await
}

/// [`run_standalone`] with the stop condition supplied (tests and embedders use it).
pub async fn run_standalone_until(
    args: SimArgs,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let scenario = match &args.scenario {
        Some(path) => load_scenario(path)?,
        None => parse_scenario(BUILTIN_SCENARIO)
            .map_err(|m| anyhow::anyhow!("built-in scenario is invalid: {m}"))?,
    };
    let handle = SimCluster::start(scenario, args.listen, args.seed).await?;
    if let Some(path) = &args.kubeconfig_out {
        if let Err(e) = std::fs::write(path, handle.kubeconfig_yaml()) {
            handle.shutdown().await;
            return Err(e).with_context(|| format!("cannot write kubeconfig {}", path.display()));
        }
        println!("kubeconfig: {}", path.display());
    }
    println!("api: {}", handle.api_url());
    for (ns, d, url) in handle.traffic_urls() {
        println!("traffic {ns}/{d}: {url}");
    }
    stop.await;
    eprintln!("shutting down the simulated cluster");
    let written = args
        .truth_out
        .as_ref()
        .map(|path| write_truth(path, &handle.truth()).map(|()| path));
    handle.shutdown().await;
    if let Some(path) = written.transpose()? {
        eprintln!("ground truth: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn truth_lines_carry_node_and_detail_only_when_present() {
        let at = std::time::UNIX_EPOCH + Duration::from_nanos(1_500);
        let mut e = TruthEvent {
            at,
            mono: tokio::time::Instant::now(),
            namespace: "shop".into(),
            object: "web-1".into(),
            what: TruthKind::PodReady,
            node: None,
            detail: None,
        };
        let plain: Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(
            plain,
            json!({"unix_ns": 1500, "namespace": "shop", "object": "web-1", "what": "pod-ready"})
        );
        e.what = TruthKind::PodEvictedByTaint;
        e.node = Some("a-1".into());
        e.detail = Some("node.kubernetes.io/unreachable".into());
        let full: Value = serde_json::from_str(&e.to_json_line()).unwrap();
        assert_eq!(full["what"], "pod-evicted-by-taint");
        assert_eq!(full["node"], "a-1");
        assert_eq!(full["detail"], "node.kubernetes.io/unreachable");
    }

    #[test]
    fn listen_must_be_127_0_0_1() {
        let ok = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(ok.sim.listen.to_string(), "127.0.0.1:6443");
        assert_eq!(ok.sim.seed, 1);
        for bad in ["0.0.0.0:6443", "10.0.0.1:80", "[::]:6443", "localhost:6443"] {
            let e = Cli::try_parse_from(["x", "--listen", bad])
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("127.0.0.1"), "{bad}: {e}");
        }
    }
}
