//! SIGKILL at many points of a drill with a revertible fault: nothing may be left behind,
//! checked from outside the runner — the toxics and the enabled state of a Toxiproxy-compatible
//! server's proxy, NetworkChaos objects in the simulated cluster, a command fault's marker.
//! Two ways back: the run's watchdog reverts on its own within 2s of the kill, with no human
//! command; and when the watchdog is killed too, `firedrill recover`. (The built-in proxy a
//! drill starts itself dies with the runner, and its toxics with it.)

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::firedrill;
use firedrill::sim::{parse_scenario, SimCluster};
use kube::api::DynamicObject;

/// Where in a drill the runner is killed: a delay after spawning it (before or around the
/// injection), or a delay after the fault became visible from outside.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    AfterSpawn(u64),
    AfterInjection(u64),
}

const POINTS: [KillAt; 7] = [
    KillAt::AfterSpawn(0),
    KillAt::AfterSpawn(40),
    KillAt::AfterSpawn(150),
    KillAt::AfterInjection(0),
    KillAt::AfterInjection(200),
    KillAt::AfterInjection(1_500),
    // The fault lasts 2s: this one lands while the drill is removing it or observing after.
    KillAt::AfterInjection(2_050),
];

/// Who removes what a killed runner left: its watchdog, or (the watchdog killed first)
/// `firedrill recover`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cleanup {
    Watchdog,
    Recover,
}

/// Ten points per watchdog test, around the injection and through the hold ([`watchdog_points`]
/// adds three random ones).
const WATCHDOG_POINTS: [KillAt; 10] = [
    KillAt::AfterSpawn(0),
    KillAt::AfterSpawn(100),
    KillAt::AfterInjection(0),
    KillAt::AfterInjection(20),
    KillAt::AfterInjection(100),
    KillAt::AfterInjection(300),
    KillAt::AfterInjection(700),
    KillAt::AfterInjection(1_100),
    KillAt::AfterInjection(1_500),
    KillAt::AfterInjection(1_900),
];

/// The fixed points plus three drawn at random through the hold (the seed is printed, and
/// every failure names its point), so that successive runs of the suite cover more of it.
fn watchdog_points() -> Vec<KillAt> {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("FIREDRILL_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("kill points: FIREDRILL_KILL_SEED={seed}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut points = WATCHDOG_POINTS.to_vec();
    points.extend((0..3).map(|_| KillAt::AfterInjection(rng.random_range(0..1_950))));
    points
}

struct Runner {
    dir: tempfile::TempDir,
    env: Vec<(String, PathBuf)>,
}

impl Runner {
    fn new(drill: &str) -> Runner {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("drill.yaml"), drill).unwrap();
        Runner { dir, env: vec![] }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn cmd(&self) -> Command {
        let mut c = firedrill();
        c.env("FIREDRILL_STATE_DIR", self.path("state"));
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.cmd()
            .arg("run")
            .args(args)
            .arg("--report-dir")
            .arg(self.path("reports"))
            .arg(self.path("drill.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn recover(&self, kubeconfig: Option<&Path>) -> Output {
        let mut c = self.cmd();
        if let Some(k) = kubeconfig {
            c.env("KUBECONFIG", k);
        }
        c.args(["recover", "--all"]).output().unwrap()
    }

    /// Runs the drill once per kill point; after each SIGKILL, records whether the fault was
    /// still in place, runs `recover`, and asserts that nothing is left and that a second
    /// recover has nothing to do. Returns how many kills left the fault in place.
    fn kill_everywhere(
        &self,
        args: &[&str],
        recover_kubeconfig: Option<&Path>,
        leftovers: impl Fn() -> usize,
    ) -> usize {
        self.kill_at(
            &POINTS,
            Cleanup::Recover,
            args,
            recover_kubeconfig,
            leftovers,
        )
    }

    /// SIGKILL the runner at each of `points`; with [`Cleanup::Watchdog`] nothing may be
    /// left 2s later with no command run, and `recover` then has nothing to do.
    fn kill_at(
        &self,
        points: &[KillAt],
        cleanup: Cleanup,
        args: &[&str],
        recover_kubeconfig: Option<&Path>,
        leftovers: impl Fn() -> usize,
    ) -> usize {
        let mut left_in_place = 0;
        for &at in points {
            let mut child = self.spawn(args);
            let start = Instant::now();
            match at {
                KillAt::AfterSpawn(ms) => std::thread::sleep(Duration::from_millis(ms)),
                KillAt::AfterInjection(ms) => {
                    while leftovers() == 0 {
                        if let Some(status) = child.try_wait().unwrap() {
                            let out = child.wait_with_output().unwrap();
                            panic!(
                                "{at:?}: the drill ended ({status}) before injecting\n{}",
                                String::from_utf8_lossy(&out.stderr)
                            );
                        }
                        assert!(
                            start.elapsed() < Duration::from_secs(30),
                            "{at:?}: no injection within 30s"
                        );
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    std::thread::sleep(Duration::from_millis(ms));
                }
            }
            if cleanup == Cleanup::Recover {
                common::kill_watchdogs(&self.path("state"));
            }
            let fault_was_in = leftovers() > 0;
            child.kill().unwrap();
            let killed = Instant::now();
            let _ = child.wait().unwrap();
            if cleanup == Cleanup::Watchdog {
                // No command: the watchdog notices the death and reverts.
                while leftovers() > 0 && killed.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert_eq!(
                    leftovers(),
                    0,
                    "{at:?}: still in place 2s after the runner was killed"
                );
                if fault_was_in {
                    left_in_place += 1;
                }
                // Let the watchdog finish writing its journal before recover reads it.
                let deadline = Instant::now() + Duration::from_secs(5);
                while common::watchdog_alive(&self.path("state")) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let out = self.recover(recover_kubeconfig);
                assert!(
                    String::from_utf8_lossy(&out.stdout).contains("nothing to recover"),
                    "{at:?}: the watchdog left work for recover: {}",
                    String::from_utf8_lossy(&out.stdout)
                );
                continue;
            }
            let found = leftovers();
            if matches!(at, KillAt::AfterInjection(ms) if ms < 2_000) {
                assert!(
                    found > 0,
                    "{at:?}: the fault should still be in place after SIGKILL"
                );
            }
            if found > 0 {
                left_in_place += 1;
            }
            let out = self.recover(recover_kubeconfig);
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert_eq!(out.status.code(), Some(0), "{at:?}: {stdout}{stderr}");
            assert_eq!(
                leftovers(),
                0,
                "{at:?}: left behind after recover\n{stdout}{stderr}"
            );
            if found > 0 {
                assert!(stdout.contains("reverted"), "{at:?}: {stdout}");
            }
            let again = self.recover(recover_kubeconfig);
            assert!(
                String::from_utf8_lossy(&again.stdout).contains("nothing to recover"),
                "{at:?}: a second recover must be a no-op: {}",
                String::from_utf8_lossy(&again.stdout)
            );
        }
        left_in_place
    }
}

#[test]
fn toxiproxy_toxics_are_gone_after_sigkill_and_recover_at_every_point() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(async {
        common::net::toxiproxy_api("web", common::net::http_ok_server().await).await
    });
    let (proxy_addr, api_url) = (api.listen, api.url.clone());
    let r = Runner::new(&format!(
        r#"name: slow-web
probes:
  web-http:
    http: {{ url: "http://{proxy_addr}/", timeout: 1s, max-latency: 50ms }}
    every: 50ms
faults:
  - latency: {{ toxiproxy: {{ url: "{api_url}", proxy: web }}, latency: 100ms, duration: 2s }}
recovery: {{ objective: 3s, stable-for: 200ms, timeout: 20s }}
"#
    ));
    let left = r.kill_everywhere(&[], None, || api.server.toxics("web").unwrap().len());
    assert!(left >= 3, "only {left} kills left a toxic to recover");
    drop(api);
    drop(rt);
}

#[test]
fn a_toxiproxy_proxy_taken_down_is_enabled_again_by_recover_at_every_point() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(async {
        common::net::toxiproxy_api("web", common::net::http_ok_server().await).await
    });
    let (proxy_addr, api_url) = (api.listen, api.url.clone());
    let r = Runner::new(&format!(
        r#"name: web-down
probes:
  web-http:
    http: {{ url: "http://{proxy_addr}/", timeout: 1s }}
    every: 50ms
faults:
  - down: {{ toxiproxy: {{ url: "{api_url}", proxy: web }}, duration: 2s }}
recovery: {{ objective: 3s, stable-for: 200ms, timeout: 20s }}
"#
    ));
    let disabled = || usize::from(!api.server.proxy("web").unwrap().enabled);
    let left = r.kill_everywhere(&[], None, disabled);
    assert!(
        left >= 3,
        "only {left} kills left the proxy down to recover"
    );
    drop(api);
    drop(rt);
}

#[test]
fn network_chaos_is_deleted_by_recover_in_the_runs_own_cluster_at_every_point() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let scenario = parse_scenario(
        "namespaces:\n  shop:\n    deployments:\n      checkout: { replicas: 2, labels: { app: checkout } }\n",
    )
    .unwrap();
    let sim = rt.block_on(async {
        SimCluster::start(scenario, "127.0.0.1:0".parse().unwrap(), 1)
            .await
            .unwrap()
    });
    let chaos: kube::Api<DynamicObject> = rt.block_on(async {
        kube::Api::namespaced_with(
            sim.kube_client().await.unwrap(),
            "shop",
            &firedrill::fault::network::network_chaos(),
        )
    });
    let mut r = Runner::new(
        r#"name: mesh-delay
environments: [staging]
probes:
  checkout-ready:
    kubernetes: { deployment: shop/checkout, ready: all }
    every: 100ms
faults:
  - latency: { chaos-mesh: { namespace: shop, selector: app=checkout }, latency: 100ms, duration: 2s }
recovery: { objective: 3s, stable-for: 300ms, timeout: 20s }
"#,
    );
    std::fs::write(
        r.path("firedrill.yaml"),
        "environments:\n  staging:\n    kube-context: firedrill-sim\n",
    )
    .unwrap();
    // The user's current context is another cluster (nothing listens there): the run names
    // its context, and recover — run later with only that other cluster configured — must
    // still delete in the cluster the run used.
    let decoy = r.path("decoy-kubeconfig");
    std::fs::write(
        &decoy,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: decoy\n  cluster:\n    server: http://127.0.0.1:1\n\
         contexts:\n- name: decoy\n  context:\n    cluster: decoy\n    user: decoy\n\
         current-context: decoy\nusers:\n- name: decoy\n  user: {}\n",
    )
    .unwrap();
    let sim_kubeconfig = r.path("sim-kubeconfig");
    std::fs::write(&sim_kubeconfig, sim.kubeconfig_yaml()).unwrap();
    let both = std::env::join_paths([&decoy, &sim_kubeconfig]).unwrap();
    r.env.push(("KUBECONFIG".into(), PathBuf::from(both)));
    let config = r.path("firedrill.yaml");
    let args = ["--env", "staging", "--config", config.to_str().unwrap()];
    let left = r.kill_everywhere(&args, Some(&decoy), || {
        rt.block_on(chaos.list(&Default::default()))
            .unwrap()
            .items
            .len()
    });
    assert!(
        left >= 3,
        "only {left} kills left a NetworkChaos to recover"
    );
    rt.block_on(sim.shutdown());
}

/// The dead-man switch on a network fault: SIGKILL the runner while a Toxiproxy toxic is in
/// place and nothing is left 2s later, with no human command.
#[test]
fn the_watchdog_removes_a_killed_runners_toxic_with_no_command() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(async {
        common::net::toxiproxy_api("web", common::net::http_ok_server().await).await
    });
    let (proxy_addr, api_url) = (api.listen, api.url.clone());
    let r = Runner::new(&format!(
        r#"name: slow-web
probes:
  web-http:
    http: {{ url: "http://{proxy_addr}/", timeout: 1s, max-latency: 50ms }}
    every: 50ms
faults:
  - latency: {{ toxiproxy: {{ url: "{api_url}", proxy: web }}, latency: 100ms, duration: 2s }}
recovery: {{ objective: 3s, stable-for: 200ms, timeout: 20s }}
"#
    ));
    let left = r.kill_at(&watchdog_points(), Cleanup::Watchdog, &[], None, || {
        api.server.toxics("web").unwrap().len()
    });
    assert!(left >= 6, "only {left} kills left a toxic for the watchdog");
    drop(api);
    drop(rt);
}

/// The dead-man switch on a command fault: its revert argv runs when the runner is killed
/// while the fault (a marker file) is in place.
#[test]
fn the_watchdog_runs_a_killed_runners_command_revert_with_no_command() {
    let r = Runner::new("");
    let marker = r.path("fault-in-place");
    std::fs::write(
        r.path("drill.yaml"),
        format!(
            r#"name: marker
probes:
  no-marker:
    command: {{ run: [sh, -c, "test ! -e '{m}'"] }}
    every: 50ms
faults:
  - command: {{ run: [touch, "{m}"], revert: [rm, -f, "{m}"] }}
recovery: {{ objective: 1s, stable-for: 100ms, timeout: 2500ms }}
"#,
            m = marker.display()
        ),
    )
    .unwrap();
    let left = r.kill_at(&watchdog_points(), Cleanup::Watchdog, &[], None, || {
        usize::from(marker.exists())
    });
    assert!(
        left >= 6,
        "only {left} kills left the marker for the watchdog"
    );
}

/// The dead-man switch on a process drill: a `process-kill` with SIGSTOP is reverted with
/// SIGCONT by the watchdog when the runner is killed while the process is stopped.
#[test]
fn the_watchdog_continues_a_process_a_killed_runner_stopped() {
    let r = Runner::new("");
    let mut victim = Command::new("sleep").arg("600").spawn().unwrap();
    let pid = victim.id();
    let pid_file = r.path("victim.pid");
    std::fs::write(&pid_file, pid.to_string()).unwrap();
    // Stopped ('T') in /proc/PID/stat, after the command name in parentheses.
    let stopped = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
            .unwrap_or(false)
    };
    std::fs::write(
        r.path("drill.yaml"),
        format!(
            r#"name: freeze
targets:
  victim:
    process: {{ pid-file: "{}" }}
probes:
  alive:
    command: {{ run: ["true"] }}
    every: 50ms
faults:
  - process-kill: {{ target: victim, signal: SIGSTOP }}
recovery: {{ objective: 1s, stable-for: 2s, timeout: 5s }}
"#,
            pid_file.display()
        ),
    )
    .unwrap();
    let left = r.kill_at(&watchdog_points(), Cleanup::Watchdog, &[], None, || {
        usize::from(stopped())
    });
    let _ = victim.kill();
    let _ = victim.wait();
    assert!(
        left >= 6,
        "only {left} kills left the process stopped for the watchdog"
    );
}

/// A scenario killed between its steps: step `a` (a marker) is in place, step `b` waits 1s
/// after it. After a SIGKILL there, with the watchdog killed too, `recover` removes `a` and
/// `b` is never applied; when the watchdog lives, it removes `a` within 2s with no command.
/// Killed after `b` too, recover removes both.
#[test]
fn a_scenario_killed_between_its_steps_is_undone_by_recover_and_by_the_watchdog() {
    let r = Runner::new("");
    let (a, b) = (r.path("step-a"), r.path("step-b"));
    std::fs::write(
        r.path("drill.yaml"),
        format!(
            r#"name: two-steps
probes:
  no-marker:
    command: {{ run: [sh, -c, "test ! -e '{a}'"] }}
    every: 50ms
    after: a
faults:
  - name: a
    command: {{ run: [touch, "{a}"], revert: [rm, -f, "{a}"] }}
  - name: b
    wait: {{ after: a, for: 1s }}
    command: {{ run: [touch, "{b}"], revert: [rm, -f, "{b}"] }}
recovery: {{ objective: 5s, stable-for: 100ms, timeout: 10s }}
"#,
            a = a.display(),
            b = b.display()
        ),
    )
    .unwrap();
    let wait_for = |what: &Path, child: &mut Child| {
        let start = Instant::now();
        while !what.exists() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the drill ended before {}",
                what.display()
            );
            assert!(start.elapsed() < Duration::from_secs(30), "no injection");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    for watchdog in [false, true] {
        // Between the steps.
        let mut child = r.spawn(&[]);
        wait_for(&a, &mut child);
        std::thread::sleep(Duration::from_millis(300));
        assert!(a.exists() && !b.exists(), "killed between the steps");
        if !watchdog {
            common::kill_watchdogs(&r.path("state"));
        }
        child.kill().unwrap();
        let killed = Instant::now();
        let _ = child.wait();
        if watchdog {
            while a.exists() && killed.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(!a.exists(), "the watchdog removed step a within 2s");
            let deadline = Instant::now() + Duration::from_secs(5);
            while common::watchdog_alive(&r.path("state")) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        } else {
            assert!(a.exists(), "nothing removed step a before recover");
            let out = r.recover(None);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(out.status.code(), Some(0), "{stdout}");
            assert!(stdout.contains("reverted"), "{stdout}");
            assert!(!a.exists(), "recover removed step a: {stdout}");
        }
        std::thread::sleep(Duration::from_millis(1_200));
        assert!(!b.exists(), "step b was never applied");
        let again = r.recover(None);
        assert!(
            String::from_utf8_lossy(&again.stdout).contains("nothing to recover"),
            "{}",
            String::from_utf8_lossy(&again.stdout)
        );
    }
    // After both steps.
    let mut child = r.spawn(&[]);
    wait_for(&b, &mut child);
    common::kill_watchdogs(&r.path("state"));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(a.exists() && b.exists());
    let out = r.recover(None);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !a.exists() && !b.exists(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
