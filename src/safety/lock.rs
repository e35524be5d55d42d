//! One drill per target scope. A scope names what a drill touches: `<env>/kube/<namespace>`,
//! `db/<patroni endpoints>` and `toxiproxy/<url>/<proxy>` (shared by every environment that
//! points at them), or `<env>/experiment/<name>` when the faults have no narrower scope. Each
//! scope is an advisory `flock(2)` on `<state-dir>/locks/<scope>.lock`, which the holder fills
//! with who it is (pid, run id, since). The kernel drops the lock when the holder exits
//! however it exits, so a crash never leaves a scope locked; the file itself is kept (deleting
//! it would race with new lockers).
//!
//! Drills on other machines share a cluster, not a file system: for each `kube/<namespace>`
//! scope of a real cluster the run also holds a `coordination.k8s.io/v1` Lease
//! `firedrill-drill` in that namespace ([`acquire_lease`]), renewed every 20s, deleted at the
//! end, and taken over only once expired: unrenewed for its whole duration while watched on
//! this machine's monotonic clock (a holder's clock may be skewed).
//!
//! A run holds both in one [`Reservation`], which releases them on every path: explicitly
//! ([`Reservation::release`]) where the run ends, and from `Drop` on any path that forgets to.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub run_id: String,
    pub experiment: String,
    pub since: String,
    /// The machine the drill runs on (empty in holders written before it was recorded).
    #[serde(default)]
    pub host: String,
}

impl Holder {
    /// This process, running `run_id` of `experiment` since `since`.
    pub fn this_process(run_id: &str, experiment: &str, since: &str) -> Self {
        Holder {
            pid: std::process::id(),
            run_id: run_id.to_string(),
            experiment: experiment.to_string(),
            since: since.to_string(),
            host: this_host(),
        }
    }

    /// A drill of this machine whose process is gone (SIGKILL, power loss of the runner):
    /// what it holds in a cluster is stale at once, not only when the lease expires. A
    /// reused pid looks alive, which errs on the side of refusing.
    pub fn is_dead_here(&self) -> bool {
        use nix::errno::Errno;
        if self.host.is_empty() || self.host != this_host() {
            return false;
        }
        let Ok(pid) = i32::try_from(self.pid) else {
            return false;
        };
        matches!(
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
            Err(Errno::ESRCH)
        )
    }
}

/// This machine's name: `FIREDRILL_HOST` when set (a pod may name itself by its node, a test
/// plays two machines), else the host name (empty when it cannot be read).
pub fn this_host() -> String {
    if let Some(h) = std::env::var("FIREDRILL_HOST")
        .ok()
        .filter(|h| !h.is_empty())
    {
        return h;
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_default()
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{}", held_message(.scope, .holder.as_deref()))]
    Held {
        scope: String,
        holder: Option<Box<Holder>>,
    },
    #[error("cannot lock scope `{scope}` ({path}): {source}")]
    Io {
        scope: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

fn held_message(scope: &str, holder: Option<&Holder>) -> String {
    match holder {
        Some(h) => format!(
            "scope `{scope}` is busy: drill `{}` (run {}, pid {}{}) holds it since {}",
            h.experiment,
            h.run_id,
            h.pid,
            if h.host.is_empty() {
                String::new()
            } else {
                format!(" on {}", h.host)
            },
            h.since
        ),
        None => format!("scope `{scope}` is busy: another drill holds it"),
    }
}

/// The scopes a drill touches in an environment, sorted: each Kubernetes namespace of a
/// pod-kill target, of a kill-primary's pods or of a Chaos Mesh network fault, the cluster's
/// nodes for a node fault (`kube-nodes`), each database
/// cluster (its Patroni endpoints) of a db-failover, each Toxiproxy proxy a network fault acts
/// on, and the experiment itself for faults without a narrower scope. A cluster simulated inside this
/// process (`simulated`) is private to it: its scope names this process.
///
/// A database cluster and a Toxiproxy proxy are named by their own addresses, not by the
/// environment: two environments that point at the same Patroni endpoints must not fail it
/// over at once. (Namespaces carry the environment here; across environments that share a
/// cluster, the Lease in the namespace itself excludes them — [`acquire_lease`].)
pub fn scopes(
    exp: &crate::experiment::Experiment,
    environment: &str,
    simulated: bool,
) -> Vec<String> {
    use crate::experiment::model::network::Backend;
    use crate::experiment::{FaultSpec, TargetKind};
    let mut out = Vec::new();
    let namespace = |ns: &str| {
        if simulated {
            format!("simulation/pid-{}", std::process::id())
        } else {
            format!("kube/{ns}")
        }
    };
    let pods = |target: &str| match exp.target(target).map(|t| &t.kind) {
        Some(TargetKind::Kubernetes(k)) => namespace(&k.namespace),
        _ if simulated => namespace(""),
        _ => format!("experiment/{}", exp.name),
    };
    for f in &exp.faults {
        // A fault that deletes pods locks their namespace; a db-failover also its cluster.
        if let Some(target) = f.pod_target() {
            out.push(format!("{environment}/{}", pods(target)));
        }
        let scope = match f {
            FaultSpec::DbFailover(spec) if !spec.patroni.is_empty() => {
                let mut members = spec.patroni.clone();
                members.sort();
                format!("db/{}", members.join(","))
            }
            FaultSpec::Network(spec) => match &spec.on {
                Backend::ChaosMesh(c) => format!("{environment}/{}", namespace(&c.namespace)),
                Backend::Toxiproxy(t) => {
                    format!("toxiproxy/{}/{}", t.url.trim_end_matches('/'), t.proxy)
                }
                Backend::Proxy(_) => format!("{environment}/experiment/{}", exp.name),
            },
            // A machine going down touches every namespace: node drills of one environment
            // exclude each other.
            FaultSpec::Node(_) if simulated => format!("{environment}/{}", namespace("")),
            FaultSpec::Node(_) => format!("{environment}/kube-nodes"),
            _ if f.pod_target().is_some() => continue,
            _ => format!("{environment}/experiment/{}", exp.name),
        };
        out.push(scope);
    }
    if out.is_empty() {
        out.push(format!("{environment}/experiment/{}", exp.name));
    }
    out.sort();
    out.dedup();
    out
}

/// The locks of one run; dropping releases them.
pub struct ScopeLock {
    _held: Vec<Flock<File>>,
    pub scopes: Vec<String>,
}

/// A file name for a scope: readable, and unique through a short hash of the full name.
fn file_name(scope: &str) -> String {
    use sha2::Digest;
    let readable: String = scope
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    let hash = sha2::Sha256::digest(scope.as_bytes());
    let tag: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{readable}-{tag}.lock")
}

/// Takes every scope's lock without waiting, in sorted order; fails naming the holder of the
/// first busy one (and releases what it took).
pub fn acquire(
    state_dir: &Path,
    scopes: &[String],
    holder: &Holder,
) -> Result<ScopeLock, LockError> {
    let dir = state_dir.join("locks");
    let mut sorted = scopes.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut held = Vec::new();
    for scope in &sorted {
        let path = dir.join(file_name(scope));
        let err = |source| LockError::Io {
            scope: scope.clone(),
            path: path.clone(),
            source,
        };
        crate::platform::fs::ensure_dir(&dir).map_err(err)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(crate::platform::fs::O_NOFOLLOW)
            .open(&path)
            .map_err(err)?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(mut f) => {
                let info = serde_json::to_vec(holder).unwrap_or_default();
                f.set_len(0).map_err(err)?;
                f.seek(SeekFrom::Start(0)).map_err(err)?;
                // Who holds it, for the refusal message; the lock itself is the flock, so
                // this needs no fsync (a crash releases the flock and voids the text alike).
                f.write_all(&info).map_err(err)?;
                held.push(f);
            }
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                return Err(LockError::Held {
                    scope: scope.clone(),
                    holder: read_holder(&path).map(Box::new),
                });
            }
            Err((_, e)) => return Err(err(std::io::Error::from(e))),
        }
    }
    Ok(ScopeLock {
        _held: held,
        scopes: sorted,
    })
}

/// Whether some process holds the lock of any of these scopes now (tested without taking
/// it for long, and without writing the file).
pub fn any_held(state_dir: &Path, scopes: &[String]) -> bool {
    let dir = state_dir.join("locks");
    scopes.iter().any(|scope| {
        let path = dir.join(file_name(scope));
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(crate::platform::fs::O_NOFOLLOW)
            .open(&path)
        else {
            return false;
        };
        matches!(
            Flock::lock(file, FlockArg::LockSharedNonblock),
            Err((_, nix::errno::Errno::EWOULDBLOCK))
        )
    })
}

/// The holder a lock file names. The holder writes right after locking: retry briefly.
fn read_holder(path: &Path) -> Option<Holder> {
    for _ in 0..20 {
        let text = crate::platform::fs::read_nofollow(path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if let Ok(h) = serde_json::from_str(&text) {
            return Some(h);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

pub const LEASE_NAME: &str = "firedrill-drill";
const LEASE_SECONDS: i64 = 60;
const HOLDER_ANNOTATION: &str = "firedrill.io/holder";

/// A held cluster Lease; [`ClusterLease::release`] deletes it.
pub struct ClusterLease {
    api: kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    renew: tokio_util::sync::CancellationToken,
}

fn lease_json(namespace: &str, holder: &Holder, rv: Option<&str>) -> serde_json::Value {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let mut meta = serde_json::json!({
        "name": LEASE_NAME,
        "namespace": namespace,
        "annotations": { HOLDER_ANNOTATION: serde_json::to_string(holder).unwrap_or_default() },
    });
    if let Some(rv) = rv {
        meta["resourceVersion"] = rv.into();
    }
    serde_json::json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": meta,
        "spec": {
            "holderIdentity": format!("firedrill pid {} run {}", holder.pid, holder.run_id),
            "leaseDurationSeconds": LEASE_SECONDS,
            "acquireTime": now,
            "renewTime": now,
        }
    })
}

/// Takes the scope's Lease in `namespace`. `Held` names the holder when another drill
/// renewed it within its duration; other API errors are returned as `Io` for the caller
/// to decide.
pub async fn acquire_lease(
    client: &kube::Client,
    namespace: &str,
    holder: &Holder,
) -> Result<ClusterLease, LockError> {
    use k8s_openapi::api::coordination::v1::Lease;
    let api: kube::Api<Lease> = kube::Api::namespaced(client.clone(), namespace);
    let scope = format!("lease {namespace}/{LEASE_NAME}");
    let io = |e: kube::Error| LockError::Io {
        scope: scope.clone(),
        path: PathBuf::from(format!("{namespace}/{LEASE_NAME}")),
        source: std::io::Error::other(crate::platform::kube::describe(&e)),
    };
    let parse = |v: serde_json::Value| -> Lease { serde_json::from_value(v).unwrap_or_default() };
    let pp = kube::api::PostParams::default();
    let held = |holder| LockError::Held {
        scope: format!("{scope} (cluster)"),
        holder,
    };
    // Read first: a live lease is refused without any write.
    match api.get_opt(LEASE_NAME).await.map_err(io)? {
        None => match api
            .create(&pp, &parse(lease_json(namespace, holder, None)))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => return Err(held(None)),
            Err(e) => return Err(io(e)),
        },
        Some(mut current) => {
            let spec = current.spec.clone().unwrap_or_default();
            let renewed = spec.renew_time.as_ref().map(|t| t.0);
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
            let expired = match renewed {
                Some(t) => {
                    let age = age_secs(&t.to_string());
                    age.is_none_or(|a| a > duration)
                }
                None => true,
            };
            let named: Option<Holder> = current
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(HOLDER_ANNOTATION))
                .and_then(|h| serde_json::from_str(h).ok());
            let dead = named.as_ref().is_some_and(Holder::is_dead_here);
            if !expired && !dead {
                return Err(held(named.map(Box::new)));
            }
            if let (false, Some(h)) = (expired, &named) {
                tracing::warn!(run = %h.run_id, pid = h.pid, "taking over the cluster lease of a drill of this machine whose process is gone");
            }
            if expired && !dead {
                // `renewTime` was written by the holder's clock and read against this one: a
                // skew over the lease time makes a live lease look expired. Expiry is judged
                // as the lease's own transitions seen on this machine's monotonic clock: it
                // must go unrenewed for its whole duration while watched.
                current = watch_expiry(&api, current, duration)
                    .await
                    .map_err(io)?
                    .ok_or_else(|| held(named.clone().map(Box::new)))?;
            }
            let rv = current.metadata.resource_version.clone();
            api.replace(
                LEASE_NAME,
                &pp,
                &parse(lease_json(namespace, holder, rv.as_deref())),
            )
            .await
            .map_err(|e| match &e {
                kube::Error::Api(s) if s.code == 409 => held(None),
                _ => io(e),
            })?;
        }
    }
    let renew = tokio_util::sync::CancellationToken::new();
    let (api2, stop, ns, h) = (
        api.clone(),
        renew.clone(),
        namespace.to_string(),
        holder.clone(),
    );
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(std::time::Duration::from_secs(20)) => {}
            }
            let patch = serde_json::json!({"spec": {"renewTime": lease_json(&ns, &h, None)["spec"]["renewTime"].clone()}});
            if let Err(e) = api2
                .patch(
                    LEASE_NAME,
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
            {
                tracing::warn!(error = %crate::platform::kube::describe(&e), "cannot renew the drill's lease");
            }
        }
    });
    Ok(ClusterLease { api, renew })
}

/// How often a lease that looks expired is read again while its expiry is watched.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Watches a lease that looks expired by this machine's clock for `duration` seconds of this
/// machine's monotonic clock. `None` when it changed meanwhile (its holder renewed it, or
/// someone took it): it is alive. Otherwise the lease as last read, to replace.
async fn watch_expiry(
    api: &kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    mut current: k8s_openapi::api::coordination::v1::Lease,
    duration: i64,
) -> Result<Option<k8s_openapi::api::coordination::v1::Lease>, kube::Error> {
    let span = Duration::from_secs(u64::try_from(duration.clamp(0, 3600)).unwrap_or(0));
    let until = tokio::time::Instant::now() + span;
    if !span.is_zero() {
        crate::eprintln_redacted!(
            "lease {LEASE_NAME} looks expired by this machine's clock; watching it for {} before taking it over (its holder's clock may differ)",
            humantime::format_duration(span)
        );
    }
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(WATCH_EVERY).await;
        match api.get_opt(LEASE_NAME).await? {
            Some(now) if now.metadata.resource_version == current.metadata.resource_version => {
                current = now;
            }
            // Renewed, replaced or deleted: someone is alive (a deleted lease is created anew
            // by the next attempt).
            _ => return Ok(None),
        }
    }
    Ok(Some(current))
}

/// Seconds since an RFC 3339 instant (None when unparseable).
fn age_secs(rfc3339: &str) -> Option<i64> {
    let t = chrono::DateTime::parse_from_rfc3339(rfc3339).ok()?;
    Some((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds())
}

impl ClusterLease {
    pub async fn release(self) {
        self.renew.cancel();
        let params = kube::api::DeleteParams::default();
        let delete = self.api.delete(LEASE_NAME, &params);
        match tokio::time::timeout(RELEASE_TIMEOUT, delete).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %crate::platform::kube::describe(&e), "cannot delete the drill's lease; it expires on its own")
            }
            Err(_) => {
                tracing::warn!(
                    "the cluster did not answer the lease's deletion; it expires on its own"
                )
            }
        }
    }
}

impl Drop for ClusterLease {
    /// A lease dropped without [`ClusterLease::release`] is at least no longer renewed.
    fn drop(&mut self) {
        self.renew.cancel();
    }
}

/// How long a lease's deletion may take before it is left to expire.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a run holds so that no other drill touches its scopes: the scope locks of this
/// machine and the Leases in its cluster. One owner, one release path.
///
/// The normal path calls [`Reservation::release`], which deletes the Leases (awaited) and then
/// unlocks the scopes. `Drop` covers every other path (an early return, `?`, a panic that
/// unwinds): it cannot await, so on the multi-threaded runtime `firedrill` runs on it deletes
/// the Leases in place (`block_in_place` + `block_on` on the current runtime, bounded by
/// [`RELEASE_TIMEOUT`]) — a spawned task would die with the runtime right after the command
/// returns, leaving the Lease to block other machines until it expires. Elsewhere (a
/// current-thread runtime, no runtime) it spawns the deletion where it can and otherwise only
/// stops the renewals, so the Lease expires on its own. The file locks need no help: the
/// kernel drops them with their descriptors.
pub struct Reservation {
    scopes: Option<ScopeLock>,
    leases: Vec<ClusterLease>,
}

impl Reservation {
    /// A reservation of the scopes `lock` holds, with no Lease yet.
    pub fn new(lock: ScopeLock) -> Self {
        Reservation {
            scopes: Some(lock),
            leases: Vec::new(),
        }
    }

    /// Holds `lease` until the reservation is released.
    pub fn hold(&mut self, lease: ClusterLease) {
        self.leases.push(lease);
    }

    /// Deletes the Leases, then unlocks the scopes.
    pub async fn release(mut self) {
        release_leases(std::mem::take(&mut self.leases)).await;
        self.scopes.take();
    }
}

async fn release_leases(leases: Vec<ClusterLease>) {
    for l in leases {
        l.release().await;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let leases = std::mem::take(&mut self.leases);
        if !leases.is_empty() {
            use tokio::runtime::{Handle, RuntimeFlavor};
            match Handle::try_current() {
                Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                    tokio::task::block_in_place(|| h.block_on(release_leases(leases)));
                }
                Ok(h) => {
                    h.spawn(release_leases(leases));
                }
                // Dropping them stops their renewals: they expire on their own.
                Err(_) => drop(leases),
            }
        }
        // The scope locks are released after the Leases, as on the normal path.
        self.scopes.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn holder(run: &str) -> Holder {
        Holder::this_process(run, "e", "2026-01-01T00:00:00Z")
    }

    #[test]
    fn only_a_gone_process_of_this_machine_is_a_dead_holder() {
        let mut h = holder("r1");
        assert!(!h.is_dead_here(), "this process is alive");
        let mut child = std::process::Command::new("true").spawn().unwrap();
        h.pid = child.id();
        child.wait().unwrap();
        assert!(h.is_dead_here(), "a reaped child is gone");
        h.host = "another-machine".into();
        assert!(!h.is_dead_here(), "another machine's pids say nothing here");
        h.host = String::new();
        assert!(
            !h.is_dead_here(),
            "an old holder without a host is not judged"
        );
    }

    /// An experiment loaded as in the `local` environment.
    fn experiment(yaml: &[u8]) -> crate::experiment::Experiment {
        let env = crate::experiment::Environment::local();
        let vars = Default::default();
        let opts = crate::experiment::LoadOptions {
            env: &env,
            extra_vars: &vars,
            known_environments: None,
            unset_env: Default::default(),
        };
        crate::experiment::load_experiment_bytes(std::path::Path::new("drill.yaml"), yaml, &opts)
            .unwrap()
            .experiment
    }

    #[test]
    fn a_database_cluster_is_one_scope_whatever_the_environment() {
        let yaml = br#"name: failover
probes:
  p: { tcp: { address: "127.0.0.1:5432" }, every: 1s }
faults:
  - db-failover:
      patroni: ["http://127.0.0.1:8009", "http://127.0.0.1:8008"]
      provider: { patroni: { action: switchover } }
recovery: { objective: 5s }
"#;
        let exp = experiment(yaml);
        let cluster = ["db/http://127.0.0.1:8008,http://127.0.0.1:8009"];
        assert_eq!(scopes(&exp, "staging", false), cluster);
        assert_eq!(scopes(&exp, "production", false), cluster);
    }

    #[test]
    fn network_faults_lock_what_they_act_on() {
        let yaml = br#"name: net
proxy:
  db: { listen: "127.0.0.1:15432", upstream: "127.0.0.1:5432" }
probes:
  p: { tcp: { address: "127.0.0.1:15432" }, every: 1s }
faults:
  - down: { toxiproxy: { url: "http://127.0.0.1:8474/", proxy: web }, duration: 1s }
  - loss: { chaos-mesh: { namespace: shop, selector: app=web }, loss: 5, duration: 1s }
  - latency: { proxy: db, latency: 5ms, duration: 1s }
recovery: { objective: 5s }
"#;
        let exp = experiment(yaml);
        assert_eq!(
            scopes(&exp, "staging", false),
            [
                "staging/experiment/net",
                "staging/kube/shop",
                "toxiproxy/http://127.0.0.1:8474/web"
            ]
        );
        // The same Toxiproxy proxy from another environment is the same scope.
        assert!(scopes(&exp, "production", false)
            .contains(&"toxiproxy/http://127.0.0.1:8474/web".to_string()));
        let sim = format!("staging/simulation/pid-{}", std::process::id());
        assert!(scopes(&exp, "staging", true).contains(&sim));
    }

    /// A reservation dropped on a path that returns early (no `release().await`) still
    /// deletes its Leases before the command returns, from the runtime `firedrill` runs on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_reservation_deletes_its_leases_and_unlocks() {
        use k8s_openapi::api::coordination::v1::Lease;
        let scenario = crate::sim::parse_scenario(
            "namespaces:\n  shop:\n    deployments:\n      web: { replicas: 1, labels: { app: web } }\n",
        )
        .unwrap();
        let sim = crate::sim::SimCluster::start(scenario, "127.0.0.1:0".parse().unwrap(), 1)
            .await
            .unwrap();
        let client = sim.kube_client().await.unwrap();
        let api = kube::Api::<Lease>::namespaced(client.clone(), "shop");
        let dir = tempfile::tempdir().unwrap();
        let scopes = vec!["staging/kube/shop".to_string()];
        for explicit in [false, true] {
            let mut r = Reservation::new(acquire(dir.path(), &scopes, &holder("r1")).unwrap());
            r.hold(acquire_lease(&client, "shop", &holder("r1")).await.unwrap());
            assert!(api.get_opt(LEASE_NAME).await.unwrap().is_some());
            if explicit {
                r.release().await;
            } else {
                drop(r);
            }
            assert!(
                api.get_opt(LEASE_NAME).await.unwrap().is_none(),
                "explicit release: {explicit}"
            );
            // The scope is free again.
            drop(acquire(dir.path(), &scopes, &holder("r2")).unwrap());
        }
        sim.shutdown().await;
    }

    #[test]
    fn a_second_holder_is_refused_naming_the_first_until_it_releases() {
        let dir = tempfile::tempdir().unwrap();
        let scopes = vec!["staging/kube/shop".to_string()];
        let first = acquire(dir.path(), &scopes, &holder("r1")).unwrap();
        let e = acquire(dir.path(), &scopes, &holder("r2")).err().unwrap();
        let msg = e.to_string();
        assert!(msg.contains("r1") && msg.contains("2026-01-01"), "{msg}");
        // Another scope is free.
        acquire(
            dir.path(),
            &["staging/kube/other".to_string()],
            &holder("r3"),
        )
        .unwrap();
        drop(first);
        acquire(dir.path(), &scopes, &holder("r2")).unwrap();
    }
}
