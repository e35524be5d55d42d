//! Shared support of the proxy tests: an echo server and a proxy in front of it, all on
//! 127.0.0.1:0.

use std::net::SocketAddr;
use std::sync::Arc;

use firedrill::proxy::{ProxyConfig, ProxyServer};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Aborts background servers when the test ends, however it ends.
pub struct Stop(pub Vec<JoinHandle<()>>);
impl Drop for Stop {
    fn drop(&mut self) {
        for h in &self.0 {
            h.abort();
        }
    }
}

/// Echoes every byte back on every connection; closes its side after the client's FIN.
pub async fn echo_server() -> (SocketAddr, Stop) {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let h = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    (addr, Stop(vec![h]))
}

/// A proxy server (draws seeded with `seed`) with one proxy named "p" in front of `upstream`.
pub async fn proxy_to(upstream: SocketAddr, seed: u64) -> (Arc<ProxyServer>, SocketAddr) {
    let server = ProxyServer::new(seed);
    let info = server
        .add_proxy(ProxyConfig {
            name: "p".into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: upstream.to_string(),
            enabled: true,
        })
        .await
        .unwrap();
    (server, info.listen)
}
