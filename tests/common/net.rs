//! Loopback servers tests put drills in front of: a plain HTTP service, and a
//! Toxiproxy-compatible API (the built-in proxy's) with one proxy in front of an upstream.

use std::net::SocketAddr;
use std::sync::Arc;

use firedrill::proxy::{ProxyConfig, ProxyServer};

/// An HTTP server on 127.0.0.1 answering `ok` at `/`; it lives as long as the test's runtime.
pub async fn http_ok_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// A loopback address that refuses connections for as long as the returned socket lives: bound,
/// never listening, so the port cannot be reused by a test running in parallel (binding a
/// listener and dropping it can hand the port to another test's server).
pub fn refusing_addr() -> (tokio::net::TcpSocket, SocketAddr) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A Toxiproxy-compatible control API with one proxy, `name`, in front of `upstream`. The API
/// stops when this is dropped.
pub struct ToxiproxyApi {
    pub server: Arc<ProxyServer>,
    /// Where the proxy listens.
    pub listen: SocketAddr,
    /// The control API's base URL.
    pub url: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub async fn toxiproxy_api(name: &str, upstream: SocketAddr) -> ToxiproxyApi {
    let server = ProxyServer::new(1);
    let listen = server
        .add_proxy(ProxyConfig {
            name: name.into(),
            listen: "127.0.0.1:0".parse().unwrap(),
            upstream: upstream.to_string(),
            enabled: true,
        })
        .await
        .unwrap()
        .listen;
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", api.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.clone().serve_api(api, async {
        let _ = stopped.await;
    }));
    ToxiproxyApi {
        server,
        listen,
        url,
        _stop: stop,
    }
}
