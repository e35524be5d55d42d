//! The postgres probe speaks TLS (issue 14): against a real PostgreSQL with `ssl=on` and a
//! certificate made by openssl here, `sslmode` and `sslrootcert` are honoured with the
//! certificate verified, and `prefer` (the default) no longer sends plaintext to a server that
//! offers TLS.

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use firedrill::experiment::model::postgres::{PostgresMode, PostgresProbeSpec};
use firedrill::probe::postgres::Target;

struct Server {
    dir: tempfile::TempDir,
    port: u16,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// PostgreSQL refuses root: as root, run it as `postgres`.
fn as_postgres(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"])
            .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    run(Command::new("openssl").current_dir(dir).args(args));
}

/// A CA, a server certificate it signed whose only name is `db.invalid` (so that the host
/// name check can be told from the chain check), and another CA that signed nothing here.
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        let mut a = vec!["req", "-x509"];
        a.extend(ec);
        let (key, pem, subj) = (
            format!("{ca}.key"),
            format!("{ca}.pem"),
            format!("/CN=firedrill test {ca}"),
        );
        a.extend(["-keyout", &key, "-out", &pem, "-days", "2", "-subj", &subj]);
        openssl(dir, &a);
    }
    let mut a = vec!["req"];
    a.extend(ec);
    a.extend([
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=db.invalid",
    ]);
    openssl(dir, &a);
    std::fs::write(dir.join("ext"), "subjectAltName=DNS:db.invalid\n").unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

fn start() -> Option<Server> {
    let Some(bin) = common::pgstore::pg_bin() else {
        eprintln!("skipped: no PostgreSQL server binaries");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    if is_root() {
        run(Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(dir.path()));
    }
    std::fs::set_permissions(
        dir.path().join("server.key"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let data = dir.path().join("data");
    run(as_postgres(&bin.join("initdb"))
        .args(["-U", "postgres", "--auth=trust", "--no-sync", "-D"])
        .arg(&data));
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = as_postgres(&bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "ssl=on",
            "-c",
            "fsync=off",
        ])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.path().display()))
        .arg("-c")
        .arg(format!(
            "ssl_cert_file={}",
            dir.path().join("server.pem").display()
        ))
        .arg("-c")
        .arg(format!(
            "ssl_key_file={}",
            dir.path().join("server.key").display()
        ))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server { dir, port, child };
    // An open port is not a ready server ("the database system is starting up"): ask it.
    for _ in 0..500 {
        let ready = std::process::Command::new(bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &port.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            return Some(server);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("postgres did not start");
}

fn target(s: &Server, tls: &str) -> Result<Target, String> {
    let spec = PostgresProbeSpec {
        dsn: format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres {tls}",
            s.port
        ),
        password_env: None,
        password_file: None,
        mode: PostgresMode::Read {
            query: "select 1".into(),
        },
        timeout: Duration::from_secs(5),
    };
    Target::new(&spec).map_err(|e| e.to_string())
}

/// Connects and says whether the session is encrypted, as the server sees it.
async fn encrypted(s: &Server, tls: &str) -> Result<bool, String> {
    let session = target(s, tls)?.connect().await.map_err(|e| e.to_string())?;
    let row = session
        .client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get::<_, bool>(0))
}

#[tokio::test]
async fn sslmode_is_honoured_with_the_certificate_verified() {
    let Some(s) = start() else { return };
    let ca = s.dir.path().join("ca.pem");
    let other = s.dir.path().join("other-ca.pem");
    let root = |p: &Path| format!("sslrootcert={}", p.display());

    // The default (prefer) and require: TLS, chain verified.
    assert_eq!(encrypted(&s, &root(&ca)).await, Ok(true));
    assert_eq!(
        encrypted(&s, &format!("sslmode=require {}", root(&ca))).await,
        Ok(true)
    );
    assert_eq!(
        encrypted(&s, &format!("sslmode=verify-ca {}", root(&ca))).await,
        Ok(true)
    );
    // verify-full also checks the name: the certificate is for db.invalid, not 127.0.0.1.
    let e = encrypted(&s, &format!("sslmode=verify-full {}", root(&ca)))
        .await
        .unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    // A CA that did not sign the server's certificate is refused, whatever the mode.
    for mode in ["prefer", "require", "verify-ca", "verify-full"] {
        let e = encrypted(&s, &format!("sslmode={mode} {}", root(&other)))
            .await
            .unwrap_err();
        assert!(e.contains("certificate"), "{mode}: {e}");
    }
    // Plaintext only when asked for.
    assert_eq!(encrypted(&s, "sslmode=disable").await, Ok(false));
    // A mode that would try plaintext first is refused before any connection.
    assert!(target(&s, "sslmode=allow").is_err());
}

#[test]
fn validate_refuses_a_mode_it_cannot_honour_at_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("drill.yaml");
    std::fs::write(
        &file,
        r#"name: pg-allow
probes:
  db:
    postgres:
      dsn: "host=127.0.0.1 port=5432 user=postgres sslmode=allow"
      mode: { read: { query: "select 1" } }
faults:
  - command: { run: ["true"] }
recovery: { objective: 5s, timeout: 10s }
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("drill.yaml:5:"), "{err}");
    assert!(err.contains("sslmode=allow"), "{err}");
}
