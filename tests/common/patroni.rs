//! A real Patroni + PostgreSQL cluster for tests, on 127.0.0.1 only, with free ports chosen at
//! run time, everything under one temp directory, torn down on drop.
//!
//! - One etcd 3.4 member is Patroni's DCS (Patroni's `etcd3` client; the v2 API is off).
//! - Settings for fast, honest drills: ttl 20 / loop_wait 1 / retry_timeout 3 (documented
//!   minimums), `primary_start_timeout: 0` (a crashed primary fails over instead of restarting
//!   in place), initdb and pg_basebackup without fsync (safe against process kills, which is all
//!   a drill does), trust authentication on 127.0.0.1, unix sockets inside the temp directory.
//! - PostgreSQL refuses to run as root: as root, every daemon runs as `postgres` via
//!   `setpriv` (which execs in place), and the directory is chowned to it with mode 700.
//! - Each daemon runs in its own session under a tiny Python *child subreaper*. Patroni
//!   double-forks the postmaster; without a subreaper a killed postmaster becomes PID 1's
//!   zombie, and where PID 1 reaps slowly Patroni (psutil) sees the zombie as alive for seconds,
//!   which would add that delay to every measured detection time.
//!
//! When the binaries are missing, [`PatroniCluster::start`] returns `None` after printing why;
//! with `CI=true` it panics instead, so CI cannot pass by skipping.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const HOST: &str = "127.0.0.1";

const REAPER: &str = r#"import ctypes, os, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
cmd = sys.argv[1:]
pid = os.fork()
if pid == 0:
    os.execvp(cmd[0], cmd)
while True:  # reap the daemon and every orphan it leaves (a killed postmaster, at once)
    try:
        os.wait()
    except ChildProcessError:
        break
    except KeyboardInterrupt:
        break
"#;

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub pg_port: u16,
    pub api_port: u16,
    pub data_dir: PathBuf,
}

impl Node {
    pub fn api_url(&self) -> String {
        format!("http://{HOST}:{}", self.api_port)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub nodes: usize,
    pub synchronous_mode: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: 3,
            synchronous_mode: false,
        }
    }
}

pub struct PatroniCluster {
    dir: Option<tempfile::TempDir>,
    pub base: PathBuf,
    pub nodes: Vec<Node>,
    pub etcd_port: u16,
    pub options: Options,
    daemons: Vec<Child>,
}

struct Binaries {
    patroni: PathBuf,
    etcd: PathBuf,
    python: PathBuf,
    pg_bin: PathBuf,
}

fn find_binaries() -> Result<Binaries, String> {
    let need = |p: &str| {
        let p = PathBuf::from(p);
        if p.exists() {
            Ok(p)
        } else {
            Err(format!("{} is missing", p.display()))
        }
    };
    let patroni = need("/usr/bin/patroni")?;
    let etcd = need("/usr/bin/etcd")?;
    // Debian's python3, which has psycopg2; a python3 first on PATH may be another one.
    let python = need("/usr/bin/python3")?;
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL server binaries are missing".to_string())?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    let pg_bin = versions
        .iter()
        .rev()
        .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
        .find(|d| d.join("postgres").exists())
        .ok_or("PostgreSQL server binaries are missing")?;
    Ok(Binaries {
        patroni,
        etcd,
        python,
        pg_bin,
    })
}

fn free_ports(n: usize) -> Vec<u16> {
    // Hold every listener until all are chosen, so the n ports are distinct.
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind((HOST, 0)).expect("bind 127.0.0.1:0"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn is_root() -> bool {
    // Only root's home is /root by convention; `id -u` is the reliable check.
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

impl PatroniCluster {
    /// Start a cluster and wait until its leader accepts writes and every replica streams
    /// (and, in synchronous mode, a synchronous standby is chosen). `None` when the binaries
    /// are missing outside CI.
    pub async fn start(options: Options) -> Option<PatroniCluster> {
        let bins = match find_binaries() {
            Ok(b) => b,
            Err(why) => {
                let msg = format!(
                    "Patroni/PostgreSQL/etcd not installed ({why}); run scripts/install-db.sh as root"
                );
                if std::env::var("CI").as_deref() == Ok("true") {
                    panic!("{msg}");
                }
                eprintln!("SKIPPED: {msg}");
                return None;
            }
        };
        let root = is_root();
        // postgres cannot traverse root's home: keep the directory in a world-traversable place.
        let mut tmp = std::env::temp_dir();
        if root && tmp.starts_with("/root") {
            tmp = PathBuf::from("/tmp");
        }
        let dir = tempfile::Builder::new()
            .prefix("firedrill-patroni-")
            .tempdir_in(&tmp)
            .expect("create a temp dir");
        let base = dir.path().to_path_buf();
        let ports = free_ports(2 + 2 * options.nodes);
        let etcd_port = ports[0];
        let etcd_peer = ports[1];
        let nodes: Vec<Node> = (0..options.nodes)
            .map(|i| Node {
                name: format!("n{}", i + 1),
                pg_port: ports[2 + i],
                api_port: ports[2 + options.nodes + i],
                data_dir: base.join(format!("n{}", i + 1)).join("data"),
            })
            .collect();
        std::fs::create_dir_all(base.join("run")).unwrap();
        std::fs::create_dir_all(base.join("etcd")).unwrap();
        std::fs::write(base.join("reaper.py"), REAPER).unwrap();
        for n in &nodes {
            let d = base.join(&n.name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("patroni.yml"),
                patroni_yaml(&base, n, etcd_port, &bins.pg_bin, options),
            )
            .unwrap();
        }
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&base)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(
                ok,
                "chown -R postgres {} failed (is there a `postgres` user?)",
                base.display()
            );
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();

        let mut cluster = PatroniCluster {
            dir: Some(dir),
            base: base.clone(),
            nodes,
            etcd_port,
            options,
            daemons: vec![],
        };
        let etcd_args: Vec<String> = vec![
            bins.etcd.display().to_string(),
            "--name".into(),
            "e1".into(),
            "--data-dir".into(),
            base.join("etcd/data").display().to_string(),
            "--listen-client-urls".into(),
            format!("http://{HOST}:{etcd_port}"),
            "--advertise-client-urls".into(),
            format!("http://{HOST}:{etcd_port}"),
            "--listen-peer-urls".into(),
            format!("http://{HOST}:{etcd_peer}"),
            "--initial-advertise-peer-urls".into(),
            format!("http://{HOST}:{etcd_peer}"),
            "--initial-cluster".into(),
            format!("e1=http://{HOST}:{etcd_peer}"),
            "--initial-cluster-state".into(),
            "new".into(),
            "--heartbeat-interval".into(),
            "100".into(),
            "--election-timeout".into(),
            "1000".into(),
            "--logger".into(),
            "zap".into(),
            "--log-level".into(),
            "warn".into(),
        ];
        cluster.spawn(&bins, root, &etcd_args, &base.join("etcd.log"));
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let t0 = Instant::now();
        while http
            .get(format!("http://{HOST}:{etcd_port}/health"))
            .send()
            .await
            .map(|r| r.status().is_success())
            .unwrap_or(false)
            .eq(&false)
        {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "etcd did not become healthy; see {}",
                base.join("etcd.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for n in cluster.nodes.clone() {
            let args = vec![
                bins.patroni.display().to_string(),
                base.join(&n.name).join("patroni.yml").display().to_string(),
            ];
            cluster.spawn(&bins, root, &args, &base.join(&n.name).join("patroni.log"));
        }
        cluster.wait_ready(Duration::from_secs(120)).await;
        eprintln!(
            "patroni cluster ready in {:.1}s under {}",
            t0.elapsed().as_secs_f64(),
            base.display()
        );
        Some(cluster)
    }

    fn spawn(&mut self, bins: &Binaries, root: bool, argv: &[String], log: &Path) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        // setsid: its own session and process group, so teardown can kill the group; it execs
        // in place because the spawned child is not a group leader.
        let mut cmd = Command::new("setsid");
        cmd.arg(&bins.python).arg(self.base.join("reaper.py"));
        if root {
            cmd.args([
                "setpriv",
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
            ]);
        }
        cmd.arg("env")
            .arg(format!("HOME={}", self.base.display()))
            .arg(format!("PATH={}:/usr/bin:/bin", bins.pg_bin.display()))
            .arg("LC_ALL=C.UTF-8")
            .args(argv)
            .current_dir(&self.base)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().expect("spawn a daemon under setsid");
        self.daemons.push(child);
    }

    async fn wait_ready(&self, within: Duration) {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let code = |url: String| {
            let http = http.clone();
            async move {
                http.get(url)
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        };
        let t0 = Instant::now();
        loop {
            let mut leader = None;
            let mut replicas = 0;
            let mut sync = false;
            for n in &self.nodes {
                if code(format!("{}/primary", n.api_url())).await == 200 {
                    leader = Some(n.clone());
                } else if code(format!("{}/replica", n.api_url())).await == 200 {
                    replicas += 1;
                    if code(format!("{}/sync", n.api_url())).await == 200 {
                        sync = true;
                    }
                }
            }
            if leader.is_some()
                && replicas == self.nodes.len() - 1
                && (sync || !self.options.synchronous_mode)
                && self.writable().await
                && self.streaming().await >= self.nodes.len() - 1
            {
                return;
            }
            if t0.elapsed() > within {
                panic!(
                    "patroni cluster not ready after {within:?}; logs under {}",
                    self.base.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Whether the leader accepts a write right now.
    pub async fn writable(&self) -> bool {
        match self.connect().await {
            Some(c) => c
                .batch_execute("CREATE TABLE IF NOT EXISTS firedrill_ready (id bigint)")
                .await
                .is_ok(),
            None => false,
        }
    }

    /// How many replicas stream from the primary with nothing left to replay: Patroni's
    /// `/replica` answers 200 as soon as a rejoined node runs, before it streams, and a failover
    /// to such a node loses what it missed.
    pub async fn streaming(&self) -> usize {
        let Some(c) = self.connect().await else {
            return 0;
        };
        c.query_one(
            "SELECT count(*) FROM pg_stat_replication \
             WHERE state = 'streaming' AND replay_lsn = pg_current_wal_lsn()",
            &[],
        )
        .await
        .map(|r| r.get::<_, i64>(0) as usize)
        .unwrap_or(0)
    }

    /// A client on the current primary (through the multi-host DSN), or `None`.
    pub async fn connect(&self) -> Option<tokio_postgres::Client> {
        let (c, conn) = tokio_postgres::connect(&self.dsn(), tokio_postgres::NoTls)
            .await
            .ok()?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Some(c)
    }

    /// The write DSN: every node, read-write session, so libpq-style failover finds the primary.
    pub fn dsn(&self) -> String {
        let hosts = vec![HOST; self.nodes.len()].join(",");
        let ports: Vec<String> = self.nodes.iter().map(|n| n.pg_port.to_string()).collect();
        format!(
            "host={hosts} port={} user=postgres dbname=postgres target_session_attrs=read-write connect_timeout=1",
            ports.join(",")
        )
    }

    pub fn api_urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::api_url).collect()
    }

    /// Where each member's data lives, with `{member}` for its name.
    pub fn data_dir_template(&self) -> String {
        format!("{}/{{member}}/data", self.base.display())
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .expect("a node of this cluster")
    }

    /// Switch synchronous replication on or off (`PATCH /config`) and wait until the cluster
    /// is ready again (in synchronous mode: a synchronous standby is chosen).
    pub async fn set_synchronous_mode(&mut self, on: bool) {
        let http = reqwest::Client::new();
        let mut done = false;
        for url in self.api_urls() {
            let r = http
                .patch(format!("{url}/config"))
                .json(&serde_json::json!({ "synchronous_mode": on }))
                .send()
                .await;
            if r.is_ok_and(|r| r.status().is_success()) {
                done = true;
                break;
            }
        }
        assert!(done, "PATCH /config failed on every node");
        self.options.synchronous_mode = on;
        self.wait_ready(Duration::from_secs(60)).await;
    }

    /// Wait until every node is back as a streaming replica or the leader (after a failover,
    /// the old primary is rewound and rejoins).
    pub async fn wait_healthy(&self, within: Duration) {
        self.wait_ready(within).await
    }
}

fn patroni_yaml(base: &Path, n: &Node, etcd_port: u16, pg_bin: &Path, o: Options) -> String {
    format!(
        r#"scope: drill
namespace: /service/
name: {name}
log:
  level: INFO
restapi:
  listen: {HOST}:{api}
  connect_address: {HOST}:{api}
etcd3:
  hosts: {HOST}:{etcd_port}
bootstrap:
  dcs:
    ttl: 20
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    primary_start_timeout: 0
    synchronous_mode: {sync}
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_connections: 50
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        shared_buffers: 32MB
  initdb:
    - encoding: UTF8
    - locale: C
    - no-sync
postgresql:
  basebackup:
    - checkpoint: fast
    - no-sync
  listen: {HOST}:{pg}
  connect_address: {HOST}:{pg}
  data_dir: {data}
  bin_dir: {bin}
  pgpass: {dir}/pgpass
  authentication:
    superuser: {{username: postgres, password: postgres}}
    replication: {{username: replicator, password: replicator}}
    rewind: {{username: rewinder, password: rewinder}}
  parameters:
    unix_socket_directories: {run}
    logging_collector: "on"
    log_directory: log
  pg_hba:
    - local all all trust
    - host all firedrill_pw 127.0.0.1/32 scram-sha-256
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
tags: {{nofailover: false, noloadbalance: false, clonefrom: false, nosync: false}}
"#,
        name = n.name,
        api = n.api_port,
        pg = n.pg_port,
        sync = o.synchronous_mode,
        data = n.data_dir.display(),
        bin = pg_bin.display(),
        dir = base.join(&n.name).display(),
        run = base.join("run").display(),
    )
}

impl Drop for PatroniCluster {
    fn drop(&mut self) {
        use nix::sys::signal::{kill, killpg, Signal};
        use nix::unistd::Pid;
        // Patroni first, so it cannot restart PostgreSQL; each daemon leads its own group.
        for c in &self.daemons {
            let _ = killpg(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
        }
        for c in &mut self.daemons {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The postmasters run in their own sessions (Patroni setsid()s them): immediate
        // shutdown stops their backends too.
        let postmasters: Vec<i32> = self
            .nodes
            .iter()
            .filter_map(|n| std::fs::read_to_string(n.data_dir.join("postmaster.pid")).ok())
            .filter_map(|t| t.lines().next()?.trim().parse().ok())
            .filter(|p: &i32| owned_by(*p, &self.base))
            .collect();
        for p in &postmasters {
            let _ = kill(Pid::from_raw(*p), Signal::SIGQUIT);
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(3) && postmasters.iter().any(|p| alive(*p)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Anything left that names our directory on its command line.
        for pid in processes_naming(&self.base) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if let Some(d) = self.dir.take() {
            let _ = d.close();
        }
    }
}

fn argv_text(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(String::from_utf8_lossy(&raw).replace('\0', " "))
}

fn owned_by(pid: i32, base: &Path) -> bool {
    argv_text(pid).is_some_and(|a| a.contains(&*base.to_string_lossy()))
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            let state = s
                .rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(str::to_string));
            state.as_deref() != Some("Z")
        })
        .unwrap_or(false)
}

fn processes_naming(base: &Path) -> Vec<i32> {
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
                .filter(|p| *p != me && owned_by(*p, base))
                .collect()
        })
        .unwrap_or_default()
}

/// A postgres writer running as a probe source, every sample collected.
pub struct RunningWriter {
    pub samples: std::sync::Arc<std::sync::Mutex<Vec<firedrill::timeline::Sample>>>,
    cancel: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<firedrill::probe::postgres::WriteHistory>,
    drain: tokio::task::JoinHandle<()>,
}

impl RunningWriter {
    /// Start a prepared `writer` on `clock`, at the fast pace a drill uses during a fault.
    pub fn start(
        writer: firedrill::probe::postgres::PostgresWriter,
        clock: firedrill::timeline::Clock,
    ) -> RunningWriter {
        use firedrill::probe::{Observation, Pace, SourceContext};
        let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
        let (_pace_tx, pace) = tokio::sync::watch::channel(Pace::Fast);
        let cancel = tokio_util::sync::CancellationToken::new();
        let ctx = SourceContext {
            clock,
            tx,
            cancel: cancel.clone(),
            pace,
        };
        let samples = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let collected = samples.clone();
        let drain = tokio::spawn(async move {
            while let Some(o) = rx.recv().await {
                if let Observation::Sample(ps) = o {
                    collected
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(ps.sample);
                }
            }
        });
        let task = tokio::spawn(writer.run(0, ctx));
        RunningWriter {
            samples,
            cancel,
            task,
            drain,
        }
    }

    /// Stop writing (the write in flight finishes) and return the history.
    pub async fn stop(self) -> firedrill::probe::postgres::WriteHistory {
        self.cancel.cancel();
        let history = self.task.await.expect("the writer task");
        self.drain.await.expect("the sample drain");
        history
    }
}

/// A drill file: a 50 Hz writer on the cluster's DSN and a `db-failover` through `apis`
/// with `provider` (YAML flow style).
pub fn drill_yaml(cluster: &PatroniCluster, apis: &[String], provider: &str) -> String {
    let apis: Vec<String> = apis.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        r#"name: orders-db-failover
description: Fail the orders database over; writes must be possible again within 10s.
probes:
  orders-writes:
    postgres:
      dsn: "{dsn}"
      mode: {{ write: {{ rate-hz: 50, table: firedrill_writes }} }}
      timeout: 1s
    every: 20ms
faults:
  - db-failover:
      patroni: [{apis}]
      provider: {provider}
recovery: {{ objective: 10s, stable-for: 2s, timeout: 60s }}
"#,
        dsn = cluster.dsn(),
        apis = apis.join(", ")
    )
}
