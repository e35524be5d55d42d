//! The http probe over https against a real TLS server (`openssl s_server`) whose certificate
//! a private CA signed: without `ca-file` the check fails on the certificate (verification is
//! on, and a probe error is a failure), with it the check passes; a bad `ca-file` is a
//! positioned validation error.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use firedrill::experiment::HttpProbe;
use firedrill::probe::http::HttpChecker;

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (scripts/install-deps.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed (`leaf.pem`, `leaf.key`).
fn certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "2",
        "-subj",
        "/CN=firedrill test CA",
    ];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    let mut csr = vec![
        "req",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "leaf.key",
        "-out",
        "leaf.csr",
    ];
    csr.extend(ec);
    openssl(dir, &csr);
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            "leaf.pem",
            "-extfile",
            "leaf.ext",
        ],
    );
}

/// `openssl s_server -www` on 127.0.0.1, stopped on drop.
struct TlsServer {
    child: Child,
    port: u16,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl TlsServer {
    /// s_server takes a port number, not 0: try free ports until one binds (another test may
    /// take a port between our check and its bind).
    fn start(dir: &Path) -> TlsServer {
        for _ in 0..10 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let mut child = Command::new("openssl")
                .current_dir(dir)
                .args([
                    "s_server", "-quiet", "-www", "-cert", "leaf.pem", "-key", "leaf.key",
                ])
                .arg("-accept")
                .arg(format!("127.0.0.1:{port}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if child.try_wait().unwrap().is_some() {
                    break; // the port was taken: try another
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return TlsServer { child, port };
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("openssl s_server did not start");
    }
}

fn spec(port: u16, ca_file: Option<&Path>) -> HttpProbe {
    HttpProbe {
        url: format!("https://127.0.0.1:{port}/"),
        method: "GET".into(),
        headers: vec![],
        expect_status: vec![],
        body_contains: None,
        timeout: Duration::from_secs(5),
        max_latency: None,
        ca_file: ca_file.map(Path::to_path_buf),
    }
}

#[tokio::test]
async fn https_is_verified_and_a_private_ca_can_be_trusted() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let server = TlsServer::start(dir.path());

    let mut public_roots = HttpChecker::new(&spec(server.port, None)).unwrap();
    let e = public_roots.check().await.unwrap_err();
    assert!(e.contains("certificate"), "{e}");

    let ca = dir.path().join("ca.pem");
    let mut private_ca = HttpChecker::new(&spec(server.port, Some(&ca))).unwrap();
    assert_eq!(private_ca.check().await, Ok(()));
    // Kept alive or not, the next check passes too.
    assert_eq!(private_ca.check().await, Ok(()));
}

#[test]
fn a_bad_ca_file_is_a_positioned_validation_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "not a certificate\n").unwrap();
    let file = dir.path().join("drill.yaml");
    std::fs::write(
        &file,
        r#"name: tls
probes:
  api:
    http: { url: "https://127.0.0.1:8443/", ca-file: empty.pem }
    every: 1s
  plain:
    http: { url: "http://127.0.0.1:8080/", ca-file: missing.pem }
    every: 1s
faults:
  - command: { run: [true] }
recovery: { objective: 5s }
"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_firedrill"))
        .arg("validate")
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("no PEM certificate in CA file `empty.pem`"),
        "{text}"
    );
    assert!(text.contains("drill.yaml:4:"), "{text}");
    assert!(text.contains("`ca-file` applies to https urls"), "{text}");
    assert!(text.contains("drill.yaml:7:"), "{text}");
}
