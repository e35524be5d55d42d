//! A real PostgreSQL server as firedrill's shared store: Debian's binaries, 127.0.0.1 and a
//! free port, everything under one temp directory, password authentication (scram) for the
//! role `firedrill` so tests can check that the password is never shown. As root, the server
//! runs as `postgres` (`setpriv`), which PostgreSQL requires. It can be stopped and started
//! again on the same port and data (a store that goes down mid-drill). Stopped on drop.
//!
//! When the binaries are missing, [`PgStore::start`] returns `None` after saying why; with
//! `CI=true` it panics, so CI cannot pass by skipping.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The role's password: every test that runs a drill against the store checks it never
/// appears in what firedrill writes or prints.
pub const PASSWORD: &str = "s3cret-store-pw-4711";

pub struct PgStore {
    dir: tempfile::TempDir,
    data: PathBuf,
    bin: PathBuf,
    port: u16,
    root: bool,
    child: Option<Child>,
}

/// The newest PostgreSQL server binaries under /usr/lib/postgresql.
pub fn pg_bin() -> Option<PathBuf> {
    let mut versions: Vec<u32> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort_unstable();
    versions
        .iter()
        .rev()
        .map(|v| PathBuf::from(format!("/usr/lib/postgresql/{v}/bin")))
        .find(|d| d.join("postgres").exists() && d.join("initdb").exists())
}

fn is_root() -> bool {
    nix_uid() == 0
}

fn nix_uid() -> u32 {
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(1)
}

impl PgStore {
    pub fn start() -> Option<PgStore> {
        let Some(bin) = pg_bin() else {
            let why = "PostgreSQL server binaries are missing (apt-get install postgresql)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{why}");
            }
            eprintln!("skipped: {why}");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let root = is_root();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("pw");
        std::fs::write(&pwfile, PASSWORD).unwrap();
        if root {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap()
                .success();
            assert!(ok, "chown the store's directory to postgres");
        }
        let out = as_postgres(root, &bin.join("initdb"))
            .args([
                "-U",
                "firedrill",
                "--auth=scram-sha-256",
                "--no-sync",
                "--pwfile",
            ])
            .arg(&pwfile)
            .arg("-D")
            .arg(&data)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::remove_file(&pwfile).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut s = PgStore {
            dir,
            data,
            bin,
            port,
            root,
            child: None,
        };
        s.up();
        Some(s)
    }

    fn up(&mut self) {
        let child = as_postgres(self.root, &self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.data)
            .args([
                "-p",
                &self.port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the store's PostgreSQL did not start");
    }

    /// Fast shutdown (clients are disconnected), waited for.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }

    /// Freeze every process of the server (SIGSTOP): the kernel still accepts connections and
    /// acknowledges packets, and nothing answers — a store that hangs rather than fails.
    pub fn freeze(&self) {
        self.signal_all("STOP");
    }

    /// Undo [`PgStore::freeze`].
    pub fn thaw(&self) {
        self.signal_all("CONT");
    }

    fn signal_all(&self, sig: &str) {
        let Some(c) = &self.child else { return };
        let mut pids = vec![c.id().to_string()];
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // pid (comm) state ppid …: the fields after the last ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .map(str::to_string);
            if ppid.as_deref() == Some(&c.id().to_string()) {
                pids.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .args(&pids)
            .status();
    }

    /// Start again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.up();
    }

    /// The DSN with its password (what `FIREDRILL_STORE` holds).
    pub fn dsn(&self) -> String {
        format!(
            "postgres://firedrill:{PASSWORD}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// One query's first column of every row, through psql (as text).
    pub fn query(&self, sql: &str) -> Vec<String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
            .arg(format!(
                "host=127.0.0.1 port={} user=firedrill dbname=postgres",
                self.port
            ))
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-QUIT", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

fn as_postgres(root: bool, program: &Path) -> Command {
    if root {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}
