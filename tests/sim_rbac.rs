//! RBAC in the simulated cluster, end to end. `firedrill deploy`'s manifests are applied to the
//! simulated cluster, a token is minted for their ServiceAccount (TokenRequest, as `kubectl
//! create token` does), and then:
//!
//! - the real kubectl, with only that token, hears `yes` from `kubectl auth can-i` for exactly
//!   what the Roles grant and `no` for the rest, and a `kubectl get pods` outside them is
//!   refused with the API server's own 403 message;
//! - the exact container command of each CronJob that targets the cluster runs with a
//!   kubeconfig that holds nothing but the token (standing in for the pod's in-cluster
//!   service account) and succeeds, every request it makes answered as the service account;
//!   a drill whose pod-kill targets a namespace no Role covers is refused with a 403 that its
//!   record names, and nothing there is touched.
//!
//! The RBAC rules themselves (wildcards, resourceNames, subresources, RoleBinding → ClusterRole,
//! namespaces) are unit-tested in src/sim/rbac.rs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::sim::Sim;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, ServiceAccount};
use kube::api::{Api, ListParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;

/// The namespace `deploy` puts the drills' CronJobs and ServiceAccount in.
const NS: &str = "drills";
const SERVICE_ACCOUNT: &str = "system:serviceaccount:drills:firedrill";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The shop of experiments/sim/shop.yaml (what the experiments' drills run against) on
/// machines like the staging cluster the scheduled drills name: a `web` pool of two nodes in
/// eu-west-1a and one in eu-west-1b, and a `system` node where the drills' own pods run;
/// plus a namespace `other` that no drill is deployed for.
fn scenario() -> String {
    let shop = std::fs::read_to_string(root().join("experiments/sim/shop.yaml")).unwrap();
    let mut v: serde_yaml::Value = serde_yaml::from_str(&shop).unwrap();
    v["nodes"] = serde_yaml::from_str(
        "- { prefix: web-a, count: 2, zone: eu-west-1a, labels: { pool: web } }\n\
         - { name: web-b-1, zone: eu-west-1b, labels: { pool: web } }\n\
         - { name: system-1, zone: eu-west-1b, labels: { pool: system } }\n",
    )
    .unwrap();
    v["namespaces"]["other"] = serde_yaml::from_str(
        "deployments: { web: { replicas: 3, labels: { app: web }, http: true } }",
    )
    .unwrap();
    serde_yaml::to_string(&v).unwrap()
}

/// `firedrill deploy --namespace drills DIR`: the manifests' items.
fn deploy(dir: &Path) -> Vec<Value> {
    deploy_with(dir, &[])
}

fn deploy_with(dir: &Path, extra: &[&str]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .args(["deploy", "--namespace", NS])
        .args(extra)
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list["items"].as_array().unwrap().clone()
}

fn plural(kind: &str) -> &'static str {
    match kind {
        "Namespace" => "namespaces",
        "ServiceAccount" => "serviceaccounts",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "ConfigMap" => "configmaps",
        "CronJob" => "cronjobs",
        other => panic!("deploy made a {other}, which this test does not know"),
    }
}

/// Creates the namespaces the manifests need, then every item, as the cluster's admin.
async fn apply(client: &kube::Client, items: &[Value]) {
    let namespaces = ["drills", "firedrill"].map(
        |n| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}),
    );
    for item in namespaces.iter().chain(items) {
        let api_version = item["apiVersion"].as_str().unwrap();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let kind = item["kind"].as_str().unwrap();
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let ar = ApiResource::from_gvk_with_plural(&gvk, plural(kind));
        let obj: DynamicObject = serde_json::from_value(item.clone()).unwrap();
        let api: Api<DynamicObject> = match item["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
            None => Api::all_with(client.clone(), &ar),
        };
        api.create(&PostParams::default(), &obj)
            .await
            .unwrap_or_else(|e| panic!("cannot create {kind}: {e}"));
    }
}

/// A token for drills/firedrill through the TokenRequest API, asked by the admin.
async fn mint(client: &kube::Client) -> String {
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(Vec::new()),
            expiration_seconds: Some(3600),
            ..Default::default()
        }),
        ..Default::default()
    };
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create_token_request("firedrill", &PostParams::default(), &req)
        .await
        .unwrap()
        .status
        .unwrap()
        .token
        .unwrap()
}

/// The kubectl on PATH, or None when the test may be skipped (not in CI).
fn kubectl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
        assert!(!ci, "kubectl is not on PATH but CI is set: install it");
        eprintln!("SKIPPED: kubectl is not on PATH (set CI=true to make this a failure)");
    }
    found
}

/// A folder whose one scheduled drill kills checkout pods in `shop` (no node drill, so its
/// manifests grant nothing cluster-wide), with the environments of tests/deploy.rs.
fn checkout_drill_folder() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    time-zone: Europe/Berlin\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("sim")).unwrap();
    std::fs::copy(
        root().join("experiments/sim/shop.yaml"),
        dir.path().join("sim/shop.yaml"),
    )
    .unwrap();
    let quick = std::fs::read_to_string(root().join("experiments/quickstart.yaml")).unwrap();
    let drill = quick.replace(
        "name: quickstart\n",
        "name: checkout-kill\nenvironments: [staging]\nschedule: \"0 10 * * MON-FRI\"\n",
    );
    std::fs::write(dir.path().join("checkout-kill.yaml"), drill).unwrap();
    dir
}

#[test]
fn kubectl_with_the_service_accounts_token_can_do_what_its_roles_grant_and_nothing_else() {
    let Some(kubectl) = kubectl() else { return };
    let sim = Sim::new(&scenario(), 3);
    sim.write_kubeconfig("admin", &["firedrill-sim"], "firedrill-sim");
    let admin = sim.dir.path().join("admin");
    let home = sim.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |kubeconfig: &Path, args: &[&str]| -> Output {
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cache-dir")
            .arg(home.join("cache"))
            .args(args)
            .env("HOME", &home)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap()
    };
    let text = |o: &Output| {
        (
            String::from_utf8_lossy(&o.stdout).trim().to_string(),
            String::from_utf8_lossy(&o.stderr).trim().to_string(),
        )
    };

    // The RBAC part of the manifests, applied with kubectl as a person would (the CronJobs'
    // batch/v1 is not a kind the simulated cluster serves before one is written).
    let folder = checkout_drill_folder();
    let items = deploy(folder.path());
    let mut docs = String::new();
    for ns in ["drills", "firedrill"] {
        docs.push_str(&format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{ name: {ns} }}\n---\n"
        ));
    }
    for item in items.iter().filter(|i| i["kind"] != "CronJob") {
        docs.push_str(&serde_yaml::to_string(item).unwrap());
        docs.push_str("---\n");
    }
    let manifests = sim.dir.path().join("rbac.yaml");
    std::fs::write(&manifests, docs).unwrap();
    let applied = run(&admin, &["apply", "-f", manifests.to_str().unwrap()]);
    let (out, err) = text(&applied);
    assert!(applied.status.success(), "{out}\n{err}");
    for line in [
        "serviceaccount/firedrill created",
        "role.rbac.authorization.k8s.io/firedrill created",
        "rolebinding.rbac.authorization.k8s.io/firedrill created",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }

    // `kubectl create token`: the TokenRequest API, over the admin's plain connection.
    let created = run(&admin, &["create", "token", "firedrill", "-n", NS]);
    let (token, err) = text(&created);
    assert!(created.status.success(), "{err}");
    assert!(
        token.len() >= 32 && !token.contains(char::is_whitespace),
        "{token}"
    );
    let missing = run(&admin, &["create", "token", "nobody", "-n", NS]);
    assert!(!missing.status.success());
    assert!(text(&missing)
        .1
        .contains("serviceaccounts \"nobody\" not found"));
    let sa = sim.write_token_kubeconfig("sa", &token);
    let config = std::fs::read_to_string(&sa).unwrap();
    assert!(config.contains("server: https://127.0.0.1:"), "{config}");

    // `kubectl auth can-i` with the token: exactly what the Roles say.
    let can_i = |args: &[&str]| {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let o = run(&sa, &all);
        (text(&o).0, o.status.code())
    };
    let yes = [
        &["list", "pods", "-n", "shop"][..],
        &["watch", "pods", "-n", "shop"],
        &["delete", "pods", "-n", "shop"],
        &["get", "deployments.apps", "-n", "shop"],
        &["watch", "replicasets.apps", "-n", "shop"],
        &["create", "leases.coordination.k8s.io", "-n", "shop"],
        &["update", "leases.coordination.k8s.io", "-n", "shop"],
        &["get", "configmaps/firedrill-halt", "-n", "firedrill"],
        &["create", "selfsubjectaccessreviews.authorization.k8s.io"],
    ];
    for args in yes {
        assert_eq!(can_i(args), ("yes".into(), Some(0)), "{args:?}");
    }
    let no = [
        &["list", "pods", "-n", "other"][..],
        &["delete", "pods", "-n", "other"],
        &["list", "pods", "--all-namespaces"],
        &["create", "pods", "-n", "shop"],
        &["patch", "pods", "-n", "shop"],
        &["create", "pods/eviction", "-n", "shop"],
        &["delete", "deployments.apps", "-n", "shop"],
        &["patch", "leases.coordination.k8s.io", "-n", "shop"],
        &["get", "configmaps/other", "-n", "firedrill"],
        &["list", "configmaps", "-n", "firedrill"],
        &["get", "secrets", "-n", "shop"],
        &["list", "nodes"],
        &["create", "serviceaccounts/token", "-n", NS],
    ];
    for args in no {
        assert_eq!(can_i(args), ("no".into(), Some(1)), "{args:?}");
    }
    // The admin (no credentials) may do anything.
    let admin_can = run(&admin, &["auth", "can-i", "delete", "nodes"]);
    assert_eq!(text(&admin_can).0, "yes");

    // What the token may do works; what it may not is the API server's 403.
    let listed = run(
        &sa,
        &[
            "get",
            "pods",
            "-n",
            "shop",
            "-l",
            "app=checkout",
            "-o",
            "name",
        ],
    );
    let (pods, err) = text(&listed);
    assert!(listed.status.success(), "{err}");
    assert_eq!(pods.lines().count(), 3, "{pods}");
    let refused = run(&sa, &["get", "pods", "-n", "other"]);
    assert!(!refused.status.success());
    assert_eq!(
        text(&refused).1,
        format!("Error from server (Forbidden): pods is forbidden: User \"{SERVICE_ACCOUNT}\" cannot list resource \"pods\" in API group \"\" in the namespace \"other\"")
    );
    let refused = run(&sa, &["delete", "deployment", "checkout", "-n", "shop"]);
    assert!(text(&refused).1.contains(&format!(
        "deployments.apps \"checkout\" is forbidden: User \"{SERVICE_ACCOUNT}\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"shop\""
    )), "{:?}", text(&refused));
    let refused = run(&sa, &["create", "token", "firedrill", "-n", NS]);
    assert!(text(&refused).1.contains(&format!(
        "serviceaccounts \"firedrill\" is forbidden: User \"{SERVICE_ACCOUNT}\" cannot create resource \"serviceaccounts/token\" in API group \"\" in the namespace \"drills\""
    )), "{:?}", text(&refused));
    // A token the cluster did not mint is nobody.
    let stranger = run(
        &sa,
        &["get", "pods", "-n", "shop", "--token", "firedrill-sim.0123"],
    );
    assert!(!stranger.status.success());
    assert!(
        text(&stranger).1.contains("Unauthorized"),
        "{:?}",
        text(&stranger)
    );

    // Every request that carried the token was answered as the service account.
    let log = sim.handle().request_log();
    let as_sa: Vec<_> = log
        .iter()
        .filter(|r| r.user.as_deref() == Some(SERVICE_ACCOUNT))
        .collect();
    assert!(as_sa.iter().any(|r| r.status == 403));
    assert!(as_sa.iter().any(|r| r.status == 200));
    // The token never appears in what the cluster recorded.
    for r in &log {
        assert!(!r.path.contains(&token) && !r.query.contains(&token));
    }
}

/// The environments a scheduled drill reads in its pod: experiments/firedrill.yaml as deployed,
/// with the checkout URL the simulated shop's. The `kube-context`s stay: the jobs run
/// `--in-cluster` (a pod talks to its own cluster as its service account; here the token's
/// kubeconfig stands in for that), which passes over them.
fn in_cluster_environments(deployed: &str, checkout_url: &str) -> String {
    let mut v: serde_yaml::Value = serde_yaml::from_str(deployed).unwrap();
    let envs = v["environments"].as_mapping_mut().unwrap();
    for (_, env) in envs.iter_mut() {
        let env = env.as_mapping_mut().unwrap();
        if let Some(vars) = env.get_mut("vars").and_then(|v| v.as_mapping_mut()) {
            if vars.contains_key("checkout_url") {
                vars.insert("checkout_url".into(), checkout_url.into());
            }
        }
    }
    serde_yaml::to_string(&v).unwrap()
}

/// The exact command of a CronJob's container, with the paths of its pod mapped to this test:
/// the ConfigMap's mount to `mount`, the pod's /tmp/reports to `reports`, and
/// FIREDRILL_NODE_NAME (the downward API's spec.nodeName) to the node its pod would run on.
fn container_command(job: &Value, mount: &Path, reports: &Path) -> Command {
    let pod = &job["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "firedrill");
    let container = &pod["containers"][0];
    assert_eq!(container["command"], serde_json::json!(["firedrill"]));
    let mount_path = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            if let Some(rest) = a.strip_prefix(mount_path) {
                format!("{}{rest}", mount.display())
            } else if a == "/tmp/reports" {
                reports.display().to_string()
            } else {
                a.to_string()
            }
        })
        .collect();
    let mut c = Command::new(env!("CARGO_BIN_EXE_firedrill"));
    c.args(&args);
    for e in container["env"].as_array().into_iter().flatten() {
        let field = e
            .pointer("/valueFrom/fieldRef/fieldPath")
            .and_then(Value::as_str);
        assert_eq!(field, Some("spec.nodeName"), "{e}");
        c.env(e["name"].as_str().unwrap(), "system-1");
    }
    c
}

#[test]
fn the_cron_jobs_of_experiments_run_on_the_simulated_cluster_with_only_the_service_accounts_token()
{
    let sim = Sim::new(&scenario(), 11);
    let items = deploy(&root().join("experiments"));
    let client = sim.rt.block_on(sim.handle().kube_client()).unwrap();
    sim.rt.block_on(apply(&client, &items));
    let token = sim.rt.block_on(mint(&client));
    let kubeconfig = sim.write_token_kubeconfig("sa-kubeconfig", &token);

    // The ConfigMap as the cluster holds it is what the pod mounts.
    let cm = sim
        .rt
        .block_on(Api::<ConfigMap>::namespaced(client.clone(), NS).get("firedrill-experiments"))
        .unwrap();
    let mount = sim.dir.path().join("etc-firedrill-experiments");
    std::fs::create_dir_all(&mount).unwrap();
    let data = cm.data.unwrap();
    for (name, text) in &data {
        std::fs::write(mount.join(name), text).unwrap();
    }
    let checkout = sim.handle().traffic_url("shop", "checkout").unwrap();
    std::fs::write(
        mount.join("firedrill.yaml"),
        in_cluster_environments(&data["firedrill.yaml"], &checkout),
    )
    .unwrap();
    let home = sim.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let state = sim.dir.path().join("state");
    let run = |mut c: Command| -> Output {
        c.env("KUBECONFIG", &kubeconfig)
            .env("HOME", &home)
            .env("FIREDRILL_STATE_DIR", &state)
            .current_dir(sim.dir.path())
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };

    // The CronJobs `deploy` makes of experiments/, and which of them target the cluster.
    // checkout-pod-kill (staging, production) and node-drain (staging) do; the two restore
    // drills (orders-restore, orders-restore-pitr) restore PostgreSQL backups on the machine
    // they run on and never talk to Kubernetes, so they are not run here.
    let jobs: Vec<&Value> = items.iter().filter(|i| i["kind"] == "CronJob").collect();
    let name = |j: &Value| j["metadata"]["name"].as_str().unwrap().to_string();
    let mut names: Vec<String> = jobs.iter().map(|j| name(j)).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "firedrill-checkout-pod-kill-production",
            "firedrill-checkout-pod-kill-staging",
            "firedrill-node-drain-staging",
            "firedrill-orders-restore-local",
            "firedrill-orders-restore-pitr-local",
        ],
        "a new scheduled drill in experiments/: say here whether it targets the cluster"
    );
    let job = |n: &str| *jobs.iter().find(|j| name(j) == n).unwrap();

    // Staging, the simulated cluster: each succeeds.
    for n in [
        "firedrill-checkout-pod-kill-staging",
        "firedrill-node-drain-staging",
    ] {
        let reports = sim.dir.path().join(format!("reports-{n}"));
        let out = run(container_command(job(n), &mount, &reports));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{n}:\n{stderr}");
        let record = common::only_report(&reports);
        assert_eq!(record["outcome"], "passed", "{n}: {record}");
        assert_eq!(record["environment"], "staging", "{n}");
    }

    // Production is protected: deploy writes its job suspended, and run as it is (someone
    // unsuspends it) it is refused before anything is touched: nobody confirmed.
    let prod = job("firedrill-checkout-pod-kill-production");
    assert_eq!(prod["spec"]["suspend"], true);
    let reports = sim.dir.path().join("reports-production");
    let out = run(container_command(prod, &mount, &reports));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("refusing to run in protected environment `production`"),
        "{stderr}"
    );
    // With `deploy --allow-production` the job confirms (`--yes`) and runs in its cluster.
    let allowed = deploy_with(&root().join("experiments"), &["--allow-production"]);
    let prod = allowed
        .iter()
        .find(|i| i["metadata"]["name"] == "firedrill-checkout-pod-kill-production")
        .unwrap();
    assert_eq!(prod["spec"]["suspend"], false);
    let reports = sim.dir.path().join("reports-production-allowed");
    let out = run(container_command(prod, &mount, &reports));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let record = common::only_report(&reports);
    assert_eq!(record["environment"], "production");
    assert_eq!(record["outcome"], "passed", "{record}");

    // Every request of the drills was the service account's; none was refused.
    let log = sim.handle().request_log();
    let drills: Vec<_> = log.iter().filter(|r| r.user.is_some()).collect();
    assert!(drills.len() > 20, "{}", drills.len());
    assert!(drills
        .iter()
        .all(|r| r.user.as_deref() == Some(SERVICE_ACCOUNT)));
    let refused: Vec<_> = drills.iter().filter(|r| r.status == 403).collect();
    assert!(refused.is_empty(), "{refused:#?}");
    let deletes = |path: &str| {
        drills
            .iter()
            .filter(|r| r.method == "DELETE" && r.path.starts_with(path))
            .count()
    };
    assert!(deletes("/api/v1/namespaces/shop/pods/") >= 1);
    assert!(log
        .iter()
        .any(|r| r.user.is_some() && r.path.ends_with("/eviction") && r.status == 201));

    // A drill whose pod-kill targets a namespace no Role covers: refused with a 403 that the
    // record names, and nothing in that namespace is touched.
    let web = sim.handle().traffic_url("other", "web").unwrap();
    std::fs::write(
        mount.join("other-kill.yaml"),
        format!(
            "name: other-kill\nenvironments: [staging]\n\
             targets:\n  web-pods:\n    kubernetes: {{ namespace: other, selector: app=web, count: 1 }}\n\
             probes:\n  web-http:\n    http: {{ url: \"{web}/\", expect-status: 200, timeout: 500ms }}\n    every: 100ms\n\
             faults:\n  - pod-kill: {{ target: web-pods, grace-period: 0s }}\n\
             recovery: {{ objective: 30s, timeout: 1m }}\n"
        ),
    )
    .unwrap();
    let reports = sim.dir.path().join("reports-other");
    let mut c = Command::new(env!("CARGO_BIN_EXE_firedrill"));
    c.arg("run")
        .arg(mount.join("other-kill.yaml"))
        .args(["--env", "staging", "--report-dir"])
        .arg(&reports)
        .args(["--scheduled", "--in-cluster"])
        .env("FIREDRILL_NODE_NAME", "system-1");
    let out = run(c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit 3: the drill could not do what it set out to, and says why.
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let record = common::only_report(&reports);
    assert_eq!(record["outcome"], "inconclusive", "{record:#}");
    let reason = record["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("could not inject pod-kill web-pods: cannot delete pod web-")
            && reason.contains(": 403 pods \"web-")
            && reason.ends_with(&format!(
                "\" is forbidden: User \"{SERVICE_ACCOUNT}\" cannot delete resource \"pods\" in API group \"\" in the namespace \"other\" (Forbidden)"
            )),
        "the record does not name the 403: {reason}\n{stderr}"
    );
    assert!(stderr.contains(reason), "{stderr}");
    let pods = sim
        .rt
        .block_on(Api::<Pod>::namespaced(client.clone(), "other").list(&ListParams::default()))
        .unwrap();
    assert_eq!(pods.items.len(), 3);
    assert!(pods
        .items
        .iter()
        .all(|p| p.metadata.deletion_timestamp.is_none()));
    let log = sim.handle().request_log();
    assert!(log.iter().any(|r| {
        r.status == 403
            && r.user.as_deref() == Some(SERVICE_ACCOUNT)
            && r.path.starts_with("/api/v1/namespaces/other/pods")
    }));
}

/// A folder with one drill that kills a checkout pod of the simulated shop (no `simulation`:
/// it runs on the cluster its kubeconfig names), plus `extra` top-level YAML.
fn checkout_kill_folder(sim: &Sim, extra: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("firedrill.yaml"),
        "environments:\n  staging:\n    time-zone: Europe/Berlin\n",
    )
    .unwrap();
    let web = sim.handle().traffic_url("shop", "checkout").unwrap();
    std::fs::write(
        dir.path().join("checkout-kill.yaml"),
        format!(
            "name: checkout-kill\nenvironments: [staging]\nschedule: \"0 10 * * MON-FRI\"\n\
             targets:\n  pods:\n    kubernetes: {{ namespace: shop, selector: app=checkout, count: 1 }}\n\
             probes:\n  http:\n    http: {{ url: \"{web}/\", timeout: 500ms }}\n    every: 100ms\n\
             faults:\n  - pod-kill: {{ target: pods, grace-period: 0s }}\n\
             recovery: {{ objective: 30s, timeout: 1m }}\n{extra}"
        ),
    )
    .unwrap();
    dir
}

/// The cluster's halt fails closed: a drill whose service account cannot read the halt
/// ConfigMap (here: its Role in namespace `firedrill` was never applied) does not start — it
/// would not see a halt set during an incident. Nothing is deleted, and the error names why.
#[test]
fn a_drill_that_cannot_read_the_clusters_halt_does_not_start() {
    let sim = Sim::new(&scenario(), 5);
    let dir = checkout_kill_folder(&sim, "");
    // Every manifest but the halt's Role and RoleBinding (namespace `firedrill`).
    let items: Vec<Value> = deploy(dir.path())
        .into_iter()
        .filter(|i| i["metadata"]["namespace"] != "firedrill")
        .collect();
    let client = sim.rt.block_on(sim.handle().kube_client()).unwrap();
    sim.rt.block_on(apply(&client, &items));
    let token = sim.rt.block_on(mint(&client));
    let kubeconfig = sim.write_token_kubeconfig("sa-kubeconfig", &token);
    let reports = sim.dir.path().join("reports");
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .arg("run")
        .arg(dir.path().join("checkout-kill.yaml"))
        .args(["--env", "staging", "--in-cluster", "--report-dir"])
        .arg(&reports)
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", sim.dir.path())
        .env("FIREDRILL_STATE_DIR", sim.dir.path().join("state"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("cannot read the cluster's halt (ConfigMap firedrill/firedrill-halt)")
            && stderr.contains("forbidden"),
        "{stderr}"
    );
    let deleted = sim
        .handle()
        .request_log()
        .iter()
        .filter(|r| r.method == "DELETE")
        .count();
    assert_eq!(deleted, 0, "nothing may be touched");
}

/// ... and a running drill that loses the right to read it stops within the grace (4s) plus a
/// poll, as a halt would stop it, and says why.
#[test]
fn a_running_drill_that_can_no_longer_read_the_halt_stops() {
    let sim = Sim::new(&scenario(), 6);
    // Three trials 30s apart: the run is in its cooldown when the right is taken away.
    let dir = checkout_kill_folder(&sim, "repeat: 3\ncooldown: 30s\n");
    let client = sim.rt.block_on(sim.handle().kube_client()).unwrap();
    sim.rt.block_on(apply(&client, &deploy(dir.path())));
    let token = sim.rt.block_on(mint(&client));
    let kubeconfig = sim.write_token_kubeconfig("sa-kubeconfig", &token);
    let child = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .arg("run")
        .arg(dir.path().join("checkout-kill.yaml"))
        .args([
            "--env",
            "staging",
            "--in-cluster",
            "--no-live",
            "--report-dir",
        ])
        .arg(sim.dir.path().join("reports"))
        .env("KUBECONFIG", &kubeconfig)
        .env("HOME", sim.dir.path())
        .env("FIREDRILL_STATE_DIR", sim.dir.path().join("state"))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Once the first pod is deleted (by the drill's service account), the right goes.
    common::wait_for("the first kill", Duration::from_secs(60), || {
        sim.handle()
            .request_log()
            .iter()
            .any(|r| r.method == "DELETE" && r.user.is_some())
    });
    let bindings: Api<k8s_openapi::api::rbac::v1::RoleBinding> =
        Api::namespaced(client.clone(), "firedrill");
    sim.rt
        .block_on(bindings.delete("firedrill", &Default::default()))
        .unwrap();
    let taken = std::time::Instant::now();
    let out = common::finish(child, Duration::from_secs(20));
    let stopped_after = taken.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("stopping: drills are halted since")
            && stderr.contains("the cluster's halt fails closed")
            && stderr.contains("cannot read the cluster's halt"),
        "{stderr}"
    );
    // The grace (4s) and a poll (≤ 1s), with room for a loaded machine; the cooldown (30s)
    // would have run much longer.
    assert!(stopped_after < Duration::from_secs(15), "{stopped_after:?}");
    assert_eq!(out.status.code(), Some(3), "{stderr}");
}
