//! `firedrill deploy --namespace NS DIR`: the manifests that run a folder's scheduled drills
//! as Kubernetes CronJobs — a ConfigMap of the experiment files, one CronJob per drill and
//! environment (its time zone, `concurrencyPolicy: Forbid`, `startingDeadlineSeconds`), and
//! a ServiceAccount with, in each namespace the scheduled drills act on, a Role and RoleBinding
//! that grant only what they do there: no wildcard verb, resource or API group. Nothing is
//! cluster-wide unless a scheduled drill takes machines down or watches nodes: then one
//! ClusterRole grants just that (nodes read, and patched to cordon or switch; pods read in
//! every namespace; evictions), and each job is told its own node (`FIREDRILL_NODE_NAME`)
//! so that a drill never takes the machine it runs on.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, PodSpec, PodTemplateSpec, ServiceAccount, Volume,
    VolumeMount,
};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::catalog::Catalog;

pub const NAME: &str = "firedrill";
const MOUNT: &str = "/etc/firedrill/experiments";

/// Every object, in apply order.
pub struct Manifests {
    pub service_account: ServiceAccount,
    /// One Role and its RoleBinding per namespace the drills act on.
    pub roles: Vec<(Role, RoleBinding)>,
    /// What node drills need across the cluster, when a scheduled drill has one.
    pub cluster_role: Option<(ClusterRole, ClusterRoleBinding)>,
    pub config_map: ConfigMap,
    pub cron_jobs: Vec<CronJob>,
}

impl Manifests {
    /// A `v1 List` that `kubectl apply -f` takes as it is.
    pub fn to_list(&self) -> serde_json::Value {
        let mut items = vec![typed("v1", "ServiceAccount", &self.service_account)];
        for (role, binding) in &self.roles {
            items.push(typed("rbac.authorization.k8s.io/v1", "Role", role));
            items.push(typed(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                binding,
            ));
        }
        if let Some((role, binding)) = &self.cluster_role {
            items.push(typed("rbac.authorization.k8s.io/v1", "ClusterRole", role));
            items.push(typed(
                "rbac.authorization.k8s.io/v1",
                "ClusterRoleBinding",
                binding,
            ));
        }
        items.push(typed("v1", "ConfigMap", &self.config_map));
        items.extend(
            self.cron_jobs
                .iter()
                .map(|c| typed("batch/v1", "CronJob", c)),
        );
        serde_json::json!({ "apiVersion": "v1", "kind": "List", "items": items })
    }
}

fn typed<T: serde::Serialize>(api_version: &str, kind: &str, obj: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(obj).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.into());
    }
    v
}

fn meta(name: &str, namespace: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/managed-by".to_string(),
            NAME.to_string(),
        )])),
        ..Default::default()
    }
}

fn rule(groups: &[&str], resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(s(groups)),
        resources: Some(s(resources)),
        verbs: s(verbs),
        ..Default::default()
    }
}

/// A DNS-1123 name of at most 52 characters (the CronJob limit).
fn cron_job_name(experiment: &str, environment: &str) -> String {
    let mut n = format!("{NAME}-{experiment}-{environment}");
    n.truncate(52);
    n.trim_end_matches('-').to_string()
}

/// The key of `deploy --store-secret`'s Secret that holds the store's DSN.
pub const STORE_SECRET_KEY: &str = "dsn";

/// The annotation of a CronJob for a protected environment: what policy it runs under.
pub const PROTECTED_ANNOTATION: &str = "firedrill.io/protected";

/// The manifests of the folder's scheduled drills. A protected environment's CronJob runs
/// unattended only when the operator said so (`allow_production`: the job passes `--yes`);
/// otherwise it is written suspended, and its annotation says why and how to allow it.
///
/// With `store_secret` (a Secret in `namespace` whose key [`STORE_SECRET_KEY`] holds the
/// store's DSN) every job reads the DSN into `FIREDRILL_STORE` from the Secret — never an
/// argument or a literal in the manifest — and writes its record to the shared store, where
/// the promotion gate finds the upstream passes. Without a store a pod starts with no
/// history, so a gated job passes `--skip-promotion-gate` and says so.
pub fn render(
    _dir: &Path,
    cat: &Catalog,
    namespace: &str,
    image: &str,
    allow_production: bool,
    store_secret: Option<&str>,
) -> Manifests {
    let mut data = BTreeMap::new();
    for (path, _) in &cat.stamps {
        if let (Some(name), Ok(text)) = (path.file_name(), std::fs::read_to_string(path)) {
            data.insert(name.to_string_lossy().into_owned(), text);
        }
    }
    let config_map = ConfigMap {
        metadata: meta(&format!("{NAME}-experiments"), namespace),
        data: Some(data),
        ..Default::default()
    };
    let roles = access(cat)
        .into_iter()
        .map(|(ns, rules)| {
            let role = Role {
                metadata: meta(NAME, &ns),
                rules: Some(rules),
            };
            let binding = RoleBinding {
                metadata: meta(NAME, &ns),
                role_ref: RoleRef {
                    api_group: Some("rbac.authorization.k8s.io".into()),
                    kind: "Role".into(),
                    name: NAME.into(),
                },
                subjects: Some(vec![Subject {
                    kind: "ServiceAccount".into(),
                    name: NAME.into(),
                    namespace: Some(namespace.into()),
                    ..Default::default()
                }]),
            };
            (role, binding)
        })
        .collect();
    let cron_jobs = cat
        .entries
        .iter()
        .filter_map(|e| {
            let schedule = e.schedule.as_ref()?;
            let file = e.file.file_name()?.to_string_lossy().into_owned();
            let mut args = vec![
                "run".to_string(),
                format!("{MOUNT}/{file}"),
                "--env".into(),
                e.env.name.clone(),
                "--report-dir".into(),
                "/tmp/reports".into(),
                // Windows and blackouts are the environment's rules for scheduled drills: the
                // run checks them itself, as the daemon does.
                "--scheduled".into(),
                // A pod has no kubeconfig for the environment's kube-context: the job talks
                // to the cluster it runs in, through its service account.
                "--in-cluster".into(),
            ];
            let protected = e.env.protected.then(|| {
                if allow_production {
                    args.push("--yes".into());
                    format!(
                        "environment `{}` is protected; this job runs unattended (--yes) because `firedrill deploy --allow-production` wrote it",
                        e.env.name
                    )
                } else {
                    format!(
                        "environment `{}` is protected; this job is suspended until `firedrill deploy --allow-production` writes it again (or someone unsuspends it, knowingly)",
                        e.env.name
                    )
                }
            });
            // A CronJob's pod starts with no reports, so it cannot see the upstream passes a
            // promotion gate needs and would hold every run. Say so in the manifest rather
            // than fail every job; the gate needs a shared history to work in a cluster.
            if e.env.promote_from.is_some() && store_secret.is_none() {
                args.push("--skip-promotion-gate".into());
            }
            let mut env = vec![EnvVar {
                name: crate::experiment::model::node::RUNNER_NODE_ENV.into(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "spec.nodeName".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }];
            if let Some(secret) = store_secret {
                env.push(EnvVar {
                    name: crate::store::ENV.into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: secret.into(),
                            key: STORE_SECRET_KEY.into(),
                            optional: Some(false),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                });
            }
            let pod = PodSpec {
                service_account_name: Some(NAME.into()),
                restart_policy: Some("Never".into()),
                containers: vec![Container {
                    name: NAME.into(),
                    image: Some(image.into()),
                    command: Some(vec![NAME.into()]),
                    args: Some(args),
                    env: Some(env),
                    volume_mounts: Some(vec![VolumeMount {
                        name: "experiments".into(),
                        mount_path: MOUNT.into(),
                        read_only: Some(true),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                volumes: Some(vec![Volume {
                    name: "experiments".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: format!("{NAME}-experiments"),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            };
            let deadline = e
                .env
                .schedule
                .starting_deadline
                .map_or(300, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
            let mut metadata = meta(&cron_job_name(&e.experiment.name, &e.env.name), namespace);
            if let Some(why) = &protected {
                metadata.annotations =
                    Some(BTreeMap::from([(PROTECTED_ANNOTATION.to_string(), why.clone())]));
            }
            Some(CronJob {
                metadata,
                spec: CronJobSpec {
                    suspend: Some(protected.is_some() && !allow_production),
                    schedule: schedule.expr().into(),
                    time_zone: Some(e.env.time_zone.clone()),
                    concurrency_policy: Some("Forbid".into()),
                    starting_deadline_seconds: Some(deadline),
                    job_template: JobTemplateSpec {
                        spec: Some(JobSpec {
                            backoff_limit: Some(0),
                            template: PodTemplateSpec {
                                spec: Some(pod),
                                ..Default::default()
                            },
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                ..Default::default()
            })
        })
        .collect();
    Manifests {
        service_account: ServiceAccount {
            metadata: meta(NAME, namespace),
            ..Default::default()
        },
        roles,
        cluster_role: node_access(cat).map(|rules| {
            let name = format!("{NAME}-{namespace}-nodes");
            let mut role_meta = meta(&name, namespace);
            role_meta.namespace = None;
            (
                ClusterRole {
                    metadata: role_meta.clone(),
                    rules: Some(rules),
                    ..Default::default()
                },
                ClusterRoleBinding {
                    metadata: role_meta,
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "ClusterRole".into(),
                        name,
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: NAME.into(),
                        namespace: Some(namespace.into()),
                        ..Default::default()
                    }]),
                },
            )
        }),
        config_map,
        cron_jobs,
    }
}

/// The cluster-wide rules of the scheduled node drills: reading nodes (a `kubernetes` probe
/// of nodes, the choice of a node fault), patching them (cordon, the simulated switch), and
/// for a fault, the pods of every namespace (what runs on the node, the replacements) and
/// evictions (a drain). `None` when no scheduled drill needs any.
fn node_access(cat: &Catalog) -> Option<Vec<PolicyRule>> {
    use crate::experiment::model::node::NodeAction;
    use crate::experiment::{FaultSpec, ProbeKind};
    let scheduled = || cat.entries.iter().filter(|e| e.schedule.is_some());
    let node_faults: Vec<&crate::experiment::model::node::NodeFaultSpec> = scheduled()
        .flat_map(|e| e.experiment.faults.iter())
        .filter_map(|f| match f {
            FaultSpec::Node(n) => Some(n),
            _ => None,
        })
        .collect();
    let node_probes = scheduled()
        .flat_map(|e| e.experiment.probes.iter())
        .any(|p| matches!(p.kind, ProbeKind::KubeNodes(_)));
    if node_faults.is_empty() && !node_probes {
        return None;
    }
    let mut rules = Vec::new();
    if node_faults.is_empty() {
        rules.push(rule(&[""], &["nodes"], &["get", "list", "watch"]));
        return Some(rules);
    }
    rules.push(rule(&[""], &["nodes"], &["get", "list", "watch", "patch"]));
    rules.push(rule(&[""], &["pods"], &["get", "list", "watch"]));
    if node_faults
        .iter()
        .any(|n| matches!(n.action, NodeAction::Drain(_)))
    {
        rules.push(rule(&[""], &["pods/eviction"], &["create"]));
    }
    Some(rules)
}

/// What the scheduled drills do in each namespace, as RBAC rules: deleting pods (and watching
/// their replacements and workloads) where a fault targets pods, with the namespace's Lease;
/// reading workloads where a `kubernetes` probe watches one; Chaos Mesh's NetworkChaos where a
/// network fault uses it; and reading the halt lever, the ConfigMap in its own namespace.
fn access(cat: &Catalog) -> BTreeMap<String, Vec<PolicyRule>> {
    use crate::experiment::model::network::Backend;
    use crate::experiment::{FaultSpec, ProbeKind, TargetKind};
    #[derive(Default)]
    struct Needs {
        delete_pods: bool,
        read_pods: bool,
        workloads: bool,
        leases: bool,
        network_chaos: bool,
    }
    let mut by_ns: BTreeMap<String, Needs> = BTreeMap::new();
    for e in cat.entries.iter().filter(|e| e.schedule.is_some()) {
        let exp = &e.experiment;
        for f in &exp.faults {
            if let Some(TargetKind::Kubernetes(k)) =
                f.pod_target().and_then(|t| exp.target(t)).map(|t| &t.kind)
            {
                let n = by_ns.entry(k.namespace.clone()).or_default();
                n.delete_pods = true;
                n.workloads = true;
                n.leases = true;
            }
            if let FaultSpec::Network(spec) = f {
                if let Backend::ChaosMesh(c) = &spec.on {
                    let n = by_ns.entry(c.namespace.clone()).or_default();
                    n.read_pods = true;
                    n.network_chaos = true;
                    n.leases = true;
                }
            }
        }
        for p in &exp.probes {
            if let ProbeKind::Kubernetes(k) = &p.kind {
                let n = by_ns.entry(k.workload.namespace.clone()).or_default();
                n.workloads = true;
                n.read_pods = true;
            }
        }
    }
    let mut out: BTreeMap<String, Vec<PolicyRule>> = by_ns
        .into_iter()
        .map(|(ns, n)| {
            let mut rules = Vec::new();
            if n.delete_pods {
                rules.push(rule(&[""], &["pods"], &["get", "list", "watch", "delete"]));
            } else if n.read_pods {
                rules.push(rule(&[""], &["pods"], &["get", "list", "watch"]));
            }
            if n.workloads {
                rules.push(rule(
                    &["apps"],
                    &["deployments", "replicasets", "statefulsets"],
                    &["get", "list", "watch"],
                ));
            }
            if n.leases {
                rules.push(rule(
                    &["coordination.k8s.io"],
                    &["leases"],
                    &["get", "create", "update", "delete"],
                ));
            }
            if n.network_chaos {
                rules.push(rule(
                    &["chaos-mesh.org"],
                    &["networkchaos"],
                    &["get", "list", "create", "delete"],
                ));
            }
            (ns, rules)
        })
        .collect();
    if !out.is_empty() {
        let mut halt = rule(&[""], &["configmaps"], &["get"]);
        halt.resource_names = Some(vec![crate::safety::halt::CLUSTER_CONFIGMAP.into()]);
        out.entry(crate::safety::halt::CLUSTER_NAMESPACE.into())
            .or_default()
            .push(halt);
    }
    out
}
