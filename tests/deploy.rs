//! `firedrill deploy`: the manifests parse as Kubernetes objects, carry the schedule rules,
//! grant no wildcard, and apply to the simulated cluster through kube-rs.

use std::path::Path;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, PostParams};

const ENVIRONMENTS: &str = "\
environments:
  staging:
    time-zone: Europe/Berlin
  production:
    time-zone: America/New_York
    promote-from: staging
    starting-deadline: 10m
";

/// The CronJobs of `deploy`'s JSON list on stdout, and what it said on stderr.
fn cron_jobs(out: &std::process::Output) -> (Vec<serde_json::Value>, String) {
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let jobs = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "CronJob")
        .cloned()
        .collect();
    (jobs, String::from_utf8_lossy(&out.stderr).into_owned())
}

fn folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(dir.path().join("sim")).unwrap();
    std::fs::copy(
        root.join("experiments/sim/shop.yaml"),
        dir.path().join("sim/shop.yaml"),
    )
    .unwrap();
    std::fs::write(dir.path().join("firedrill.yaml"), ENVIRONMENTS).unwrap();
    let quick = std::fs::read_to_string(root.join("experiments/quickstart.yaml")).unwrap();
    let drill = quick.replace(
        "name: quickstart\n",
        "name: checkout-kill\nenvironments: [staging, production]\nschedule: \"0 10 * * MON-FRI\"\n",
    );
    std::fs::write(dir.path().join("checkout-kill.yaml"), drill).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifests_parse_have_least_privilege_and_apply() {
    let dir = folder();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["deploy", "--namespace", "drills"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = list["items"].as_array().unwrap().clone();
    let of = |kind: &str| -> Vec<serde_json::Value> {
        items
            .iter()
            .filter(|i| i["kind"] == kind)
            .cloned()
            .collect()
    };
    let sa: ServiceAccount = serde_json::from_value(of("ServiceAccount")[0].clone()).unwrap();
    let roles: Vec<Role> = of("Role")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let bindings: Vec<RoleBinding> = of("RoleBinding")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let cm: ConfigMap = serde_json::from_value(of("ConfigMap")[0].clone()).unwrap();
    let jobs: Vec<CronJob> = of("CronJob")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();

    // A Role in each namespace the drills act on, and nowhere else: the target namespace
    // (pods deleted, workloads watched, its Lease taken and released) and the halt lever's.
    let ns_of = |r: &Role| r.metadata.namespace.clone().unwrap();
    assert_eq!(
        roles.iter().map(ns_of).collect::<Vec<_>>(),
        ["firedrill", "shop"]
    );
    let verbs = |r: &Role, resource: &str| -> Vec<String> {
        r.rules
            .as_deref()
            .unwrap_or_default()
            .iter()
            .filter(|rule| rule.resources.iter().flatten().any(|x| x == resource))
            .flat_map(|rule| rule.verbs.clone())
            .collect()
    };
    let shop = &roles[1];
    assert_eq!(verbs(shop, "pods"), ["get", "list", "watch", "delete"]);
    assert_eq!(verbs(shop, "leases"), ["get", "create", "update", "delete"]);
    assert_eq!(verbs(shop, "deployments"), ["get", "list", "watch"]);
    assert!(verbs(shop, "configmaps").is_empty());
    let halt = &roles[0].rules.as_deref().unwrap()[0];
    assert_eq!(halt.verbs, ["get"]);
    assert_eq!(
        halt.resource_names.as_deref(),
        Some(&["firedrill-halt".to_string()][..])
    );
    assert_eq!(roles[0].rules.as_deref().unwrap().len(), 1);
    // No wildcard anywhere.
    for rule in roles
        .iter()
        .flat_map(|r| r.rules.clone().unwrap_or_default())
    {
        let all = rule
            .verbs
            .iter()
            .chain(rule.resources.iter().flatten())
            .chain(rule.api_groups.iter().flatten());
        for v in all {
            assert!(!v.contains('*'), "wildcard in {rule:?}");
        }
        assert!(!rule.verbs.is_empty());
    }
    for b in &bindings {
        assert_eq!(b.role_ref.name, "firedrill");
        let s = &b.subjects.as_deref().unwrap()[0];
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.namespace.as_deref()),
            ("ServiceAccount", "firedrill", Some("drills"))
        );
    }
    let data = cm.data.clone().unwrap_or_default();
    assert!(data.contains_key("checkout-kill.yaml"));
    assert!(data.contains_key("firedrill.yaml"));

    // One CronJob per drill and environment, with its zone and the forbid policy.
    assert_eq!(jobs.len(), 2);
    let by_env = |env: &str| {
        jobs.iter()
            .find(|j| j.metadata.name.as_deref() == Some(&format!("firedrill-checkout-kill-{env}")))
            .unwrap()
            .spec
            .clone()
    };
    let staging = by_env("staging");
    assert_eq!(staging.schedule, "0 10 * * MON-FRI");
    assert_eq!(staging.time_zone.as_deref(), Some("Europe/Berlin"));
    assert_eq!(staging.concurrency_policy.as_deref(), Some("Forbid"));
    assert_eq!(staging.starting_deadline_seconds, Some(300));
    let production = by_env("production");
    assert_eq!(production.time_zone.as_deref(), Some("America/New_York"));
    assert_eq!(production.starting_deadline_seconds, Some(600));

    // Apply to the simulated cluster.
    let scenario = firedrill::sim::load_scenario(&dir.path().join("sim/shop.yaml")).unwrap();
    let sim = firedrill::sim::SimCluster::start(scenario, "127.0.0.1:0".parse().unwrap(), 1)
        .await
        .unwrap();
    let client = sim.kube_client().await.unwrap();
    let pp = PostParams::default();
    for name in ["drills", "firedrill"] {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": name }
        }))
        .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&pp, &ns)
            .await
            .unwrap();
    }
    Api::<ServiceAccount>::namespaced(client.clone(), "drills")
        .create(&pp, &sa)
        .await
        .unwrap();
    for (role, binding) in roles.iter().zip(&bindings) {
        let ns = role.metadata.namespace.as_deref().unwrap();
        Api::<Role>::namespaced(client.clone(), ns)
            .create(&pp, role)
            .await
            .unwrap();
        Api::<RoleBinding>::namespaced(client.clone(), ns)
            .create(&pp, binding)
            .await
            .unwrap();
    }
    Api::<ConfigMap>::namespaced(client.clone(), "drills")
        .create(&pp, &cm)
        .await
        .unwrap();
    let cj = Api::<CronJob>::namespaced(client.clone(), "drills");
    for j in &jobs {
        cj.create(&pp, j).await.unwrap();
    }
    let listed = cj.list(&Default::default()).await.unwrap();
    assert_eq!(listed.items.len(), 2);
    sim.shutdown().await;
}

/// `deploy -o yaml`: one YAML document per object, each the JSON List's item exactly.
#[test]
fn yaml_manifests_are_the_json_items_one_document_each() {
    use serde::Deserialize;
    let dir = folder();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
            .args(["deploy", "--namespace", "drills"])
            .args(args)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let list: serde_json::Value = serde_json::from_slice(&run(&[])).unwrap();
    let yaml = run(&["-o", "yaml"]);
    let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_slice(&yaml)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .collect();
    assert_eq!(&docs, list["items"].as_array().unwrap());
    assert!(docs.len() >= 6, "{docs:?}");
}

/// A drill whose variables exist only in the environments it lists (none in `local`) is
/// planned per environment, never dropped: `deploy` makes its CronJobs and `status` lists it,
/// as `validate` accepts it. (It was skipped with "undefined variable" from `local`.)
#[test]
fn a_drill_with_variables_only_in_its_environments_is_deployed_and_listed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    kube-context: staging-admin\n    vars: { url: \"http://127.0.0.1:8080\" }\n  production:\n    kube-context: prod\n    promote-from: staging\n    vars: { url: \"http://127.0.0.1:8081\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("web.yaml"),
        "name: web-kill\nenvironments: [staging, production]\nschedule: \"0 10 * * MON-FRI\"\ntargets:\n  web:\n    kubernetes: { namespace: shop, selector: app=web }\nprobes:\n  web:\n    http: { url: \"${url}/\" }\nfaults:\n  - pod-kill: { target: web }\nrecovery: { objective: 30s }\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_firedrill");
    let validate = std::process::Command::new(bin)
        .arg("validate")
        .arg(dir.path().join("web.yaml"))
        .output()
        .unwrap();
    assert!(validate.status.success(), "{validate:?}");
    let deploy = std::process::Command::new(bin)
        .args(["deploy", "--namespace", "drills"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&deploy.stderr);
    assert!(deploy.status.success(), "{stderr}");
    assert!(!stderr.contains("skipping"), "{stderr}");
    let list: serde_json::Value = serde_json::from_slice(&deploy.stdout).unwrap();
    let mut jobs: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["kind"] == "CronJob")
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    jobs.sort_unstable();
    assert_eq!(
        jobs,
        [
            "firedrill-web-kill-production",
            "firedrill-web-kill-staging"
        ]
    );
    let status = std::process::Command::new(bin)
        .arg("status")
        .arg(dir.path())
        .arg("--report-dir")
        .arg(dir.path().join("reports"))
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(status.status.success(), "{status:?}");
    for env in ["staging", "production"] {
        assert!(
            table
                .lines()
                .any(|l| l.contains("web-kill") && l.contains(env)),
            "{env}: {table}"
        );
    }
}

/// A scheduled node drill needs what no namespace Role can grant: one ClusterRole with just
/// its verbs (nodes read and patched, pods read everywhere, evictions), bound to the drills'
/// ServiceAccount; each job learns its own node, so the drill never takes it. A folder
/// without node drills gets nothing cluster-wide.
#[test]
fn a_scheduled_node_drill_gets_a_cluster_role_with_only_its_verbs_and_knows_its_node() {
    let dir = folder();
    let deploy = |dir: &Path| -> Vec<serde_json::Value> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
            .args(["deploy", "--namespace", "drills"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        list["items"].as_array().unwrap().clone()
    };
    let kinds = |items: &[serde_json::Value]| -> Vec<String> {
        items
            .iter()
            .map(|i| i["kind"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        !kinds(&deploy(dir.path()))
            .iter()
            .any(|k| k.starts_with("Cluster")),
        "no node drill, nothing cluster-wide"
    );
    std::fs::write(
        dir.path().join("node-drain.yaml"),
        "name: node-drain\nenvironments: [staging]\nschedule: \"0 11 * * MON-FRI\"\n\
         targets:\n  one-node:\n    nodes: { zone: zone-a }\n\
         probes:\n  nodes-ready:\n    kubernetes: { nodes: all, ready: all }\n\
         faults:\n  - node-drain: { target: one-node }\n\
         recovery: { objective: 1m, timeout: 5m }\n",
    )
    .unwrap();
    let items = deploy(dir.path());
    let of = |kind: &str| -> Vec<serde_json::Value> {
        items
            .iter()
            .filter(|i| i["kind"] == kind)
            .cloned()
            .collect()
    };
    let roles: Vec<k8s_openapi::api::rbac::v1::ClusterRole> = of("ClusterRole")
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    assert_eq!(roles.len(), 1);
    let rules = roles[0].rules.as_deref().unwrap();
    let verbs = |res: &str| -> Vec<String> {
        rules
            .iter()
            .find(|r| {
                r.resources
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|x| x == res)
            })
            .map(|r| r.verbs.clone())
            .unwrap_or_default()
    };
    assert_eq!(verbs("nodes"), ["get", "list", "watch", "patch"]);
    assert_eq!(verbs("pods"), ["get", "list", "watch"]);
    assert_eq!(verbs("pods/eviction"), ["create"]);
    assert!(verbs("deployments").is_empty() && verbs("leases").is_empty());
    let binding: k8s_openapi::api::rbac::v1::ClusterRoleBinding =
        serde_json::from_value(of("ClusterRoleBinding")[0].clone()).unwrap();
    assert_eq!(
        binding.role_ref.name,
        roles[0].metadata.name.clone().unwrap()
    );
    let subject = &binding.subjects.unwrap()[0];
    assert_eq!(
        (subject.name.as_str(), subject.namespace.as_deref()),
        ("firedrill", Some("drills"))
    );
    let job: CronJob = of("CronJob")
        .into_iter()
        .map(|v| serde_json::from_value::<CronJob>(v).unwrap())
        .find(|c| c.metadata.name.as_deref() == Some("firedrill-node-drain-staging"))
        .unwrap();
    let pod = job.spec.job_template.spec.unwrap().template.spec.unwrap();
    let env = pod.containers[0].env.clone().unwrap();
    let own = env
        .iter()
        .find(|e| e.name == "FIREDRILL_NODE_NAME")
        .unwrap();
    assert_eq!(
        own.value_from
            .as_ref()
            .unwrap()
            .field_ref
            .as_ref()
            .unwrap()
            .field_path,
        "spec.nodeName"
    );
}

/// A protected environment's CronJob runs unattended only by the operator's word: without
/// `--allow-production` it is written suspended, its annotation and deploy's stderr saying
/// why; with it, the job confirms with `--yes`. Every job talks to the cluster it runs in
/// (`--in-cluster`), since a pod has no kubeconfig for the environment's kube-context.
#[test]
fn production_jobs_are_suspended_unless_deploy_is_told_to_allow_them() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    kube-context: staging-admin\n  production:\n    kube-context: prod\n    protected: true\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("web.yaml"),
        "name: web-kill\nenvironments: [staging, production]\nschedule: \"0 10 * * MON-FRI\"\ntargets:\n  web:\n    kubernetes: { namespace: shop, selector: app=web }\nprobes:\n  web:\n    http: { url: \"http://127.0.0.1:8080/\" }\nfaults:\n  - pod-kill: { target: web }\nrecovery: { objective: 30s }\n",
    )
    .unwrap();
    let bin = env!("CARGO_BIN_EXE_firedrill");
    let deploy = |extra: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(["deploy", "--namespace", "drills"])
            .args(extra)
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        cron_jobs(&out)
    };
    let job = |jobs: &[serde_json::Value], env: &str| {
        jobs.iter()
            .find(|j| j["metadata"]["name"] == format!("firedrill-web-kill-{env}"))
            .cloned()
            .unwrap_or_else(|| panic!("no {env} job"))
    };
    let args = |j: &serde_json::Value| -> Vec<String> {
        j["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    let (jobs, stderr) = deploy(&[]);
    let prod = job(&jobs, "production");
    assert_eq!(prod["spec"]["suspend"], true);
    let why = prod["metadata"]["annotations"]["firedrill.io/protected"]
        .as_str()
        .unwrap();
    assert!(why.contains("--allow-production"), "{why}");
    assert!(
        stderr.contains("firedrill-web-kill-production is written suspended"),
        "{stderr}"
    );
    assert!(!args(&prod).contains(&"--yes".to_string()));
    let staging = job(&jobs, "staging");
    assert_eq!(staging["spec"]["suspend"], false);
    assert!(staging["metadata"]["annotations"].is_null());
    for j in [&prod, &staging] {
        assert!(args(j).contains(&"--in-cluster".to_string()), "{j}");
    }
    let (jobs, stderr) = deploy(&["--allow-production"]);
    let prod = job(&jobs, "production");
    assert_eq!(prod["spec"]["suspend"], false);
    assert!(args(&prod).contains(&"--yes".to_string()));
    assert!(prod["metadata"]["annotations"]["firedrill.io/protected"]
        .as_str()
        .unwrap()
        .contains("runs unattended"));
    assert!(!stderr.contains("suspended"), "{stderr}");
}

/// With the shared store, every job reads its DSN from the Secret (never a literal, never an
/// argument) and the promotion gate is no longer skipped: the store holds the upstream passes.
#[test]
fn with_a_store_secret_jobs_read_the_dsn_from_it_and_keep_the_promotion_gate() {
    let dir = folder();
    let deploy = |extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_firedrill"))
            .args(["deploy", "--namespace", "drills"])
            .args(extra)
            .arg(dir.path())
            .env_remove("FIREDRILL_STORE")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        cron_jobs(&out)
    };
    let container = |job: &serde_json::Value| {
        job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0].clone()
    };

    let (jobs, note) = deploy(&[]);
    let production = jobs
        .iter()
        .find(|j| {
            j["metadata"]["name"]
                .as_str()
                .unwrap()
                .ends_with("-production")
        })
        .unwrap();
    assert!(container(production)["args"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("--skip-promotion-gate")));
    assert!(note.contains("--store-secret"), "{note}");

    let (jobs, _) = deploy(&["--store-secret", "firedrill-store"]);
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let c = container(job);
        let args = c["args"].as_array().unwrap();
        assert!(
            !args.contains(&serde_json::json!("--skip-promotion-gate")),
            "{args:?}"
        );
        assert!(
            !args.iter().any(|a| a.as_str().unwrap().contains("store")),
            "{args:?}"
        );
        let store = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "FIREDRILL_STORE")
            .expect("FIREDRILL_STORE in the job's environment")
            .clone();
        assert!(store.get("value").is_none(), "a literal DSN: {store}");
        assert_eq!(
            store["valueFrom"]["secretKeyRef"]["name"],
            "firedrill-store"
        );
        assert_eq!(store["valueFrom"]["secretKeyRef"]["key"], "dsn");
    }
}
