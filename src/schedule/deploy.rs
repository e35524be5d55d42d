//! `firedrill deploy --namespace NS DIR`: the manifests that run a folder's scheduled drills
//! as Kubernetes CronJobs — a ConfigMap of the experiment files, one CronJob per drill and
//! environment (its time zone, `concurrencyPolicy: Forbid`, `startingDeadlineSeconds`), and
//! a ServiceAccount with a Role and RoleBinding that grant only what drills use: no wildcard
//! verb, resource or API group.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::batch::v1::{CronJob, CronJobSpec, JobSpec, JobTemplateSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, PodSpec, PodTemplateSpec, ServiceAccount, Volume,
    VolumeMount,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::catalog::Catalog;

pub const NAME: &str = "firedrill";
const MOUNT: &str = "/etc/firedrill/experiments";

/// Every object, in apply order.
pub struct Manifests {
    pub service_account: ServiceAccount,
    pub role: Role,
    pub role_binding: RoleBinding,
    pub config_map: ConfigMap,
    pub cron_jobs: Vec<CronJob>,
}

impl Manifests {
    /// A `v1 List` that `kubectl apply -f` takes as it is.
    pub fn to_list(&self) -> serde_json::Value {
        let mut items = vec![
            typed("v1", "ServiceAccount", &self.service_account),
            typed("rbac.authorization.k8s.io/v1", "Role", &self.role),
            typed(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                &self.role_binding,
            ),
            typed("v1", "ConfigMap", &self.config_map),
        ];
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

pub fn render(_dir: &Path, cat: &Catalog, namespace: &str, image: &str) -> Manifests {
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
    let role = Role {
        metadata: meta(NAME, namespace),
        rules: Some(vec![
            rule(&[""], &["pods"], &["get", "list", "watch", "delete"]),
            rule(
                &["apps"],
                &["deployments", "replicasets", "statefulsets"],
                &["get", "list", "watch"],
            ),
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["get", "create", "update"],
            ),
        ]),
    };
    let role_binding = RoleBinding {
        metadata: meta(NAME, namespace),
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
            ];
            // A CronJob's pod starts with no reports, so it cannot see the upstream passes a
            // promotion gate needs and would hold every run. Say so in the manifest rather
            // than fail every job; the gate needs a shared history to work in a cluster.
            if e.env.promote_from.is_some() {
                args.push("--skip-promotion-gate".into());
            }
            let pod = PodSpec {
                service_account_name: Some(NAME.into()),
                restart_policy: Some("Never".into()),
                containers: vec![Container {
                    name: NAME.into(),
                    image: Some(image.into()),
                    command: Some(vec![NAME.into()]),
                    args: Some(args),
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
            Some(CronJob {
                metadata: meta(&cron_job_name(&e.experiment.name, &e.env.name), namespace),
                spec: CronJobSpec {
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
        role,
        role_binding,
        config_map,
        cron_jobs,
    }
}
