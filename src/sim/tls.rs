//! HTTPS on the API server's own port, beside plain HTTP: the first byte of a connection says
//! which (a TLS handshake record starts with 0x16; an HTTP request with a letter). Plain HTTP is
//! passed through untouched, as before.
//!
//! Why: kubectl (client-go) sends a kubeconfig's credentials, a bearer token among them, only
//! to an `https://` server, so a service account's token reaches the simulated cluster only
//! over TLS. The certificate is made when the cluster starts: an Ed25519 key from the
//! operating system's randomness, self-signed for 127.0.0.1 and `localhost`, valid until 2049,
//! kept in memory; [`super::SimHandle::ca_pem`] hands it to kubeconfigs as their
//! certificate authority, so clients verify the server as they verify a real one.
//! The key and certificate are built with rustls' ring provider alone (no certificate crate).

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A DER element: tag, length, contents.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else if len <= 0xff {
        out.extend([0x81, len as u8]);
    } else {
        out.extend([0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(content);
    out
}

fn seq(parts: &[&[u8]]) -> Vec<u8> {
    der(0x30, &parts.concat())
}

/// The certificate's key, its DER and its PEM.
pub struct ServerCert {
    pub cert: CertificateDer<'static>,
    key: PrivatePkcs8KeyDer<'static>,
    pub pem: String,
}

const ED25519: &[u8] = &[0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70];

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64, as kubeconfigs carry `certificate-authority-data`.
pub fn base64_text(text: &str) -> String {
    base64(text.as_bytes())
}

impl ServerCert {
    /// A fresh key and a self-signed certificate for 127.0.0.1 and localhost.
    pub fn generate() -> Result<ServerCert, String> {
        let seed: [u8; 32] = rand::random();
        // PKCS#8 v1 of an Ed25519 key: version 0, the algorithm, the seed as an octet string.
        let pkcs8 = seq(&[&[0x02, 0x01, 0x00], ED25519, &der(0x04, &der(0x04, &seed))]);
        let key = PrivatePkcs8KeyDer::from(pkcs8);
        let signing =
            rustls::crypto::ring::sign::any_eddsa_type(&key).map_err(|e| e.to_string())?;
        let spki = signing
            .public_key()
            .ok_or("the key has no public key")?
            .as_ref()
            .to_vec();
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        serial[0] |= 0x40;
        // CN=firedrill-sim
        let name = seq(&[&der(
            0x31,
            &seq(&[
                &[0x06, 0x03, 0x55, 0x04, 0x03],
                &der(0x0c, b"firedrill-sim"),
            ]),
        )]);
        let validity = seq(&[&der(0x17, b"200101000000Z"), &der(0x17, b"491231235959Z")]);
        // subjectAltName: IP 127.0.0.1, DNS localhost.
        let san = seq(&[&der(0x87, &[127, 0, 0, 1]), &der(0x82, b"localhost")]);
        let san_ext = seq(&[&[0x06, 0x03, 0x55, 0x1d, 0x11], &der(0x04, &san)]);
        let extensions = der(0xa3, &seq(&[&san_ext]));
        let tbs = seq(&[
            &[0xa0, 0x03, 0x02, 0x01, 0x02],
            &der(0x02, &serial),
            ED25519,
            &name,
            &validity,
            &name,
            &spki,
            &extensions,
        ]);
        let signer = signing
            .choose_scheme(&[rustls::SignatureScheme::ED25519])
            .ok_or("the key cannot sign with Ed25519")?;
        let signature = signer.sign(&tbs).map_err(|e| e.to_string())?;
        let mut bits = vec![0u8];
        bits.extend(signature);
        let cert = seq(&[&tbs, ED25519, &der(0x03, &bits)]);
        let body = base64(&cert);
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        for line in body.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
        Ok(ServerCert {
            cert: CertificateDer::from(cert),
            key,
            pem,
        })
    }

    /// The server's TLS configuration: this certificate, HTTP/1.1.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![self.cert.clone()],
                PrivateKeyDer::Pkcs8(self.key.clone_key()),
            )
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// The API server's listener: each connection plain or TLS, as its first byte says.
pub struct Listener {
    tcp: TcpListener,
    tls: Arc<rustls::ServerConfig>,
}

impl Listener {
    pub fn new(tcp: TcpListener, tls: Arc<rustls::ServerConfig>) -> Self {
        Listener { tcp, tls }
    }
}

impl axum::serve::Listener for Listener {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        loop {
            match self.tcp.accept().await {
                Ok((s, addr)) => return (Conn::Undecided(Some((s, self.tls.clone()))), addr),
                Err(e) => {
                    // As axum's own TcpListener: a connection's own error is skipped; anything
                    // else (out of file descriptors) waits a second.
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused
                            | io::ErrorKind::ConnectionAborted
                            | io::ErrorKind::ConnectionReset
                    ) {
                        tracing::warn!(error = %e, "simulated API server: accept failed");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// One connection: undecided until its first byte arrives.
pub enum Conn {
    Undecided(Option<(TcpStream, Arc<rustls::ServerConfig>)>),
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Conn {
    /// Decides plain or TLS from the first byte, waiting for it.
    fn poll_decide(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Conn::Undecided(slot) = self else {
            return Poll::Ready(Ok(()));
        };
        let Some((tcp, _)) = slot.as_ref() else {
            return Poll::Ready(Err(io::Error::other("connection already failed")));
        };
        let mut first = [0u8; 1];
        let mut buf = ReadBuf::new(&mut first);
        let n = ready!(tcp.poll_peek(cx, &mut buf))?;
        let Some((tcp, config)) = slot.take() else {
            return Poll::Ready(Err(io::Error::other("connection already failed")));
        };
        *self = if n == 1 && first[0] == 0x16 {
            let conn = rustls::ServerConnection::new(config).map_err(io::Error::other)?;
            Conn::Tls(Box::new(TlsStream {
                io: tcp,
                conn,
                eof: false,
                closing: false,
            }))
        } else {
            Conn::Plain(tcp)
        };
        Poll::Ready(Ok(()))
    }

    /// Before the first byte a server never writes; should it, the connection is plain.
    fn plain_if_undecided(&mut self) {
        if let Conn::Undecided(slot) = self {
            if let Some((tcp, _)) = slot.take() {
                *self = Conn::Plain(tcp);
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_decide(cx))?;
        match this {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Undecided(_) => Poll::Ready(Err(io::Error::other("undecided connection"))),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.plain_if_undecided();
        match this {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Undecided(_) => Poll::Ready(Err(io::Error::other("undecided connection"))),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Undecided(_) => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.plain_if_undecided();
        match this {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Undecided(_) => Poll::Ready(Ok(())),
        }
    }
}

/// A server-side TLS stream over rustls' connection state.
pub struct TlsStream {
    io: TcpStream,
    conn: rustls::ServerConnection,
    eof: bool,
    closing: bool,
}

/// The socket as blocking `Read`/`Write` for rustls, `WouldBlock` standing for "not ready".
struct SyncIo<'a, 'b> {
    io: &'a mut TcpStream,
    cx: &'a mut Context<'b>,
}

impl Read for SyncIo<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.io).poll_read(self.cx, &mut rb) {
            Poll::Ready(Ok(())) => Ok(rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl Write for SyncIo<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.io).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match Pin::new(&mut *self.io).poll_flush(self.cx) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

impl TlsStream {
    /// Sends what rustls has queued (handshake, records, alerts); Pending while the socket
    /// cannot take it.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut io = SyncIo {
                io: &mut self.io,
                cx,
            };
            match self.conn.write_tls(&mut io) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Reads and processes TLS records; `Ok(0)` at the end of the stream.
    fn poll_receive(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut io = SyncIo {
            io: &mut self.io,
            cx,
        };
        let n = match self.conn.read_tls(&mut io) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        };
        if let Err(e) = self.conn.process_new_packets() {
            // The alert rustls queued goes out if it can.
            let _ = self.poll_send(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncRead for TlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: the end, as for a plain connection.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Poll::Ready(Ok(())),
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Handshake messages are answered as they come.
            if let Poll::Ready(Err(e)) = this.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            if ready!(this.poll_receive(cx))? == 0 {
                this.eof = true;
            }
        }
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            let n = this.conn.writer().write(buf)?;
            let sent = this.poll_send(cx);
            if let Poll::Ready(Err(e)) = sent {
                return Poll::Ready(Err(e));
            }
            if n > 0 || buf.is_empty() {
                return Poll::Ready(Ok(n));
            }
            // rustls' buffer was full: wait until the socket took some of it.
            ready!(sent)?;
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.writer().flush()?;
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.conn.send_close_notify();
            this.closing = true;
        }
        ready!(this.poll_send(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_like_the_standard() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_text(plain), encoded);
        }
    }

    #[test]
    fn a_fresh_certificate_loads_into_a_server_and_is_trusted_by_a_client_for_127_0_0_1() {
        use rustls::client::danger::ServerCertVerifier;
        let cert = ServerCert::generate().unwrap();
        assert!(cert.pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
        cert.server_config().unwrap();
        // What kube-rs does with certificate-authority-data: a root store and a verifier.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.clone()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .unwrap();
        let ip = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let now = rustls::pki_types::UnixTime::now();
        verifier
            .verify_server_cert(&cert.cert, &[], &ip, &[], now)
            .unwrap();
        let other = rustls::pki_types::ServerName::try_from("example.com").unwrap();
        assert!(verifier
            .verify_server_cert(&cert.cert, &[], &other, &[], now)
            .is_err());
        // Two clusters never share a key.
        assert_ne!(ServerCert::generate().unwrap().pem, cert.pem);
    }
}
