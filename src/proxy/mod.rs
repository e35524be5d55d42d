//! The built-in fault-injecting TCP proxy, with a Toxiproxy-compatible control API.
//!
//! A [`ProxyServer`] manages named proxies. Each proxy listens on a local address, forwards
//! every connection to its upstream and applies its [`Toxic`]s per direction (`upstream` is
//! client→server, `downstream` server→client). Guarantees:
//! - toxics can be added, changed and removed while connections are open, and take effect on
//!   them at once (a chunk waiting out a removed latency toxic is released immediately);
//! - latency is per chunk: each read is delivered `latency ± jitter` after it was read, in
//!   order, without throttling throughput (see `link`), with a precise wait (see `timer`)
//!   for a chunk alone in the queue; a chunk of a stream (more queued behind it) goes on the
//!   1ms timer wheel with all that is due, at most ~1ms late and never early;
//! - with no toxic a connection is a plain copy loop with no timers;
//! - whether a toxic affects a connection is drawn once per connection from a RNG seeded by
//!   the server's seed and the connection's sequence number, so runs are reproducible;
//! - a toxic with a `ttl` removes itself when it expires, even if nobody reverts it;
//! - the network paths never panic: an unreachable upstream closes the client connection
//!   and is logged.
//!
//! The control API ([`ProxyServer::serve_api`], loopback only) speaks Toxiproxy 2.x:
//! `GET /version`, `GET|POST /proxies`, `POST /populate`, `GET|POST|DELETE /proxies/{name}`,
//! `GET|POST /proxies/{name}/toxics`, `GET|POST|DELETE /proxies/{name}/toxics/{toxic}`,
//! `POST /reset`. The one extension is the optional toxic attribute `ttl` (milliseconds).
//! Toxic types: latency, bandwidth, timeout, reset_peer, slicer, limit_data.

mod api;
mod link;
#[cfg(target_os = "linux")]
mod splice;
mod standalone;
mod toxic;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use standalone::{run_standalone, ProxyArgs};

pub use toxic::{Stream, Toxic, ToxicKind};

use link::ConnCtx;
use toxic::{ActiveToxic, ToxicSet};

/// Errors of the proxy and its API. Messages follow Toxiproxy's where it has one, so that
/// clients matching them keep working.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("proxy not found: {0}")]
    ProxyNotFound(String),
    #[error("proxy already exists: {0}")]
    ProxyExists(String),
    #[error("toxic not found: {0}")]
    ToxicNotFound(String),
    #[error("toxic already exists: {0}")]
    ToxicExists(String),
    #[error("invalid toxic type: {0}")]
    InvalidToxicType(String),
    #[error("{0}")]
    InvalidToxic(String),
    #[error("stream was invalid, can be either upstream or downstream")]
    InvalidStream,
    #[error("missing required field: {0}")]
    MissingField(&'static str),
    #[error("bad request body")]
    BadRequestBody,
    #[error("invalid upstream {0:?}: expected HOST:PORT")]
    InvalidUpstream(String),
    #[error("invalid listen address {0:?}: expected IP:PORT")]
    InvalidListen(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("refusing to serve the control API on non-loopback address {0}")]
    NonLoopbackApi(SocketAddr),
    #[error("{0}")]
    Forbidden(String),
    #[error("this control API needs a token: send `Authorization: Bearer TOKEN`")]
    Unauthorized,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("refusing to listen on non-loopback address {0}: start `firedrill proxy --allow-remote-listen` to let proxies listen beyond this machine")]
    RemoteListen(SocketAddr),
    #[error("the proxy must run inside a tokio runtime")]
    NoRuntime,
    #[error("control API: {0}")]
    Io(#[from] std::io::Error),
}

impl ProxyError {
    /// The HTTP status Toxiproxy answers with for this error.
    pub fn status(&self) -> u16 {
        match self {
            ProxyError::ProxyNotFound(_) | ProxyError::ToxicNotFound(_) => 404,
            ProxyError::ProxyExists(_) | ProxyError::ToxicExists(_) => 409,
            ProxyError::InvalidToxicType(_)
            | ProxyError::InvalidToxic(_)
            | ProxyError::InvalidStream
            | ProxyError::MissingField(_)
            | ProxyError::BadRequestBody
            | ProxyError::InvalidUpstream(_)
            | ProxyError::InvalidListen(_)
            | ProxyError::RemoteListen(_)
            | ProxyError::NonLoopbackApi(_) => 400,
            ProxyError::Unauthorized => 401,
            ProxyError::Forbidden(_) => 403,
            ProxyError::UnsupportedMediaType(_) => 415,
            ProxyError::Bind { .. } | ProxyError::NoRuntime | ProxyError::Io(_) => 500,
        }
    }
}

/// Who may use the control API, and what it may create.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApiAccess {
    /// When set, every request must send `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
    /// Proxies created or moved through the API may listen on non-loopback addresses.
    pub allow_remote_listen: bool,
}

/// What it takes to create a proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    pub name: String,
    /// Port 0 picks a free port; [`ProxyInfo::listen`] tells which.
    pub listen: SocketAddr,
    /// `HOST:PORT`, resolved on each new connection.
    pub upstream: String,
    pub enabled: bool,
}

/// A proxy as it is now, in Toxiproxy's JSON shape.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProxyInfo {
    pub name: String,
    /// The bound address once the proxy has listened (the requested one before).
    pub listen: SocketAddr,
    pub upstream: String,
    pub enabled: bool,
    pub toxics: Vec<Toxic>,
}

/// A partial update of a proxy (`POST /proxies/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyUpdate {
    pub enabled: Option<bool>,
    pub listen: Option<SocketAddr>,
    pub upstream: Option<String>,
}

struct ProxyEntry {
    listen: SocketAddr,
    upstream: watch::Sender<String>,
    enabled: bool,
    toxics: watch::Sender<ToxicSet>,
    /// Present while listening: cancelling it closes the listener and every connection.
    running: Option<(CancellationToken, JoinHandle<()>)>,
}

impl ProxyEntry {
    fn info(&self, name: &str) -> ProxyInfo {
        ProxyInfo {
            name: name.to_string(),
            listen: self.listen,
            upstream: self.upstream.borrow().clone(),
            enabled: self.enabled,
            toxics: self
                .toxics
                .borrow()
                .iter()
                .map(|t| t.toxic.clone())
                .collect(),
        }
    }

    /// Stops listening; the returned handle finishes once the listener socket is closed.
    fn stop(&mut self) -> Option<JoinHandle<()>> {
        self.running.take().map(|(cancel, handle)| {
            cancel.cancel();
            handle
        })
    }
}

/// Manages many named proxies, like a Toxiproxy server.
pub struct ProxyServer {
    seed: u64,
    proxies: Mutex<HashMap<String, ProxyEntry>>,
    next_toxic_id: AtomicU64,
    next_conn: Arc<AtomicU64>,
    this: Weak<ProxyServer>,
}

impl Drop for ProxyServer {
    fn drop(&mut self) {
        // Listeners and connections are detached tasks: without this they would outlive us.
        let mut proxies = self.lock();
        for entry in proxies.values_mut() {
            entry.stop();
        }
    }
}

/// Checks `HOST:PORT` without resolving it (resolution happens per connection).
fn validate_upstream(upstream: &str) -> Result<(), ProxyError> {
    let bad = || ProxyError::InvalidUpstream(upstream.to_string());
    let (host, port) = upstream.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.contains(char::is_whitespace) || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    if port == "0" {
        return Err(bad());
    }
    Ok(())
}

impl ProxyServer {
    /// A server with no proxies; `seed` makes toxicity and jitter draws reproducible.
    pub fn new(seed: u64) -> Arc<Self> {
        Arc::new_cyclic(|this| ProxyServer {
            seed,
            proxies: Mutex::new(HashMap::new()),
            next_toxic_id: AtomicU64::new(1),
            next_conn: Arc::new(AtomicU64::new(0)),
            this: this.clone(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, ProxyEntry>> {
        // A poisoned lock only means another thread panicked mid-update of a map whose
        // entries are each consistent on their own; keep serving.
        self.proxies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Binds and starts the accept loop of `entry`.
    fn start(&self, name: &str, entry: &mut ProxyEntry) -> Result<(), ProxyError> {
        if entry.running.is_some() {
            return Ok(());
        }
        let bind_err = |source| ProxyError::Bind {
            addr: entry.listen,
            source,
        };
        let std_listener = std::net::TcpListener::bind(entry.listen).map_err(bind_err)?;
        std_listener.set_nonblocking(true).map_err(bind_err)?;
        let listener = TcpListener::from_std(std_listener).map_err(bind_err)?;
        // Keep the port across disable/enable, as Toxiproxy does.
        entry.listen = listener.local_addr().map_err(bind_err)?;
        let cancel = CancellationToken::new();
        let handle = tokio::runtime::Handle::try_current()
            .map_err(|_| ProxyError::NoRuntime)?
            .spawn(accept_loop(
                listener,
                name.to_string(),
                entry.upstream.subscribe(),
                entry.toxics.subscribe(),
                cancel.clone(),
                self.seed,
                self.next_conn.clone(),
            ));
        entry.running = Some((cancel, handle));
        tracing::info!(proxy = name, listen = %entry.listen, upstream = %entry.upstream.borrow().as_str(), "proxy listening");
        Ok(())
    }

    /// Creates a proxy; it listens at once when enabled.
    pub async fn add_proxy(&self, cfg: ProxyConfig) -> Result<ProxyInfo, ProxyError> {
        if cfg.name.is_empty() {
            return Err(ProxyError::MissingField("name"));
        }
        validate_upstream(&cfg.upstream)?;
        let mut proxies = self.lock();
        if proxies.contains_key(&cfg.name) {
            return Err(ProxyError::ProxyExists(cfg.name));
        }
        let mut entry = ProxyEntry {
            listen: cfg.listen,
            upstream: watch::Sender::new(cfg.upstream),
            enabled: cfg.enabled,
            toxics: watch::Sender::new(Arc::new(Vec::new())),
            running: None,
        };
        if cfg.enabled {
            self.start(&cfg.name, &mut entry)?;
        }
        let info = entry.info(&cfg.name);
        proxies.insert(cfg.name, entry);
        Ok(info)
    }

    /// Removes a proxy, closing its listener and connections.
    pub async fn remove_proxy(&self, name: &str) -> Result<(), ProxyError> {
        let handle = {
            let mut proxies = self.lock();
            let mut entry = proxies
                .remove(name)
                .ok_or_else(|| ProxyError::ProxyNotFound(name.to_string()))?;
            entry.stop()
        };
        if let Some(h) = handle {
            // The listener is closed once its task has ended; an aborted task is fine too.
            let _ = h.await;
        }
        Ok(())
    }

    /// Changes a proxy's enabled state, listen address or upstream. A new upstream applies
    /// to new connections; a new listen address restarts the listener.
    pub async fn update_proxy(
        &self,
        name: &str,
        update: ProxyUpdate,
    ) -> Result<ProxyInfo, ProxyError> {
        if let Some(up) = &update.upstream {
            validate_upstream(up)?;
        }
        let stopped = {
            let mut proxies = self.lock();
            let entry = proxies
                .get_mut(name)
                .ok_or_else(|| ProxyError::ProxyNotFound(name.to_string()))?;
            let mut stopped = None;
            if let Some(up) = update.upstream {
                entry.upstream.send_replace(up);
            }
            if let Some(listen) = update.listen {
                if listen != entry.listen {
                    stopped = entry.stop();
                    entry.listen = listen;
                }
            }
            if let Some(enabled) = update.enabled {
                entry.enabled = enabled;
            }
            if !entry.enabled {
                stopped = entry.stop().or(stopped);
            }
            stopped
        };
        // Wait for the old listener to close before binding again or answering "disabled".
        if let Some(h) = stopped {
            let _ = h.await;
        }
        let mut proxies = self.lock();
        let entry = proxies
            .get_mut(name)
            .ok_or_else(|| ProxyError::ProxyNotFound(name.to_string()))?;
        if entry.enabled {
            self.start(name, entry)?;
        }
        Ok(entry.info(name))
    }

    /// One proxy as it is now.
    pub fn proxy(&self, name: &str) -> Result<ProxyInfo, ProxyError> {
        let proxies = self.lock();
        let entry = proxies
            .get(name)
            .ok_or_else(|| ProxyError::ProxyNotFound(name.to_string()))?;
        Ok(entry.info(name))
    }

    /// All proxies, sorted by name.
    pub fn proxies(&self) -> Vec<ProxyInfo> {
        let proxies = self.lock();
        let mut all: Vec<_> = proxies.iter().map(|(n, e)| e.info(n)).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn install(&self, proxy: &str, toxic: Toxic, replace: bool) -> Result<Toxic, ProxyError> {
        toxic.validate()?;
        let id = self.next_toxic_id.fetch_add(1, Ordering::Relaxed);
        let ttl = toxic.ttl;
        let runtime = match ttl {
            Some(_) => {
                Some(tokio::runtime::Handle::try_current().map_err(|_| ProxyError::NoRuntime)?)
            }
            None => None,
        };
        {
            let proxies = self.lock();
            let entry = proxies
                .get(proxy)
                .ok_or_else(|| ProxyError::ProxyNotFound(proxy.to_string()))?;
            let mut result = Ok(());
            entry.toxics.send_if_modified(|set| {
                let pos = set.iter().position(|t| t.toxic.name == toxic.name);
                let mut next = set.as_ref().clone();
                match (pos, replace) {
                    (Some(_), false) => {
                        result = Err(ProxyError::ToxicExists(toxic.name.clone()));
                        return false;
                    }
                    (None, true) => {
                        result = Err(ProxyError::ToxicNotFound(toxic.name.clone()));
                        return false;
                    }
                    (Some(i), true) => {
                        next[i] = ActiveToxic {
                            id,
                            toxic: toxic.clone(),
                        }
                    }
                    (None, false) => next.push(ActiveToxic {
                        id,
                        toxic: toxic.clone(),
                    }),
                }
                *set = Arc::new(next);
                true
            });
            result?;
        }
        if let (Some(ttl), Some(rt)) = (ttl, runtime) {
            let server = self.this.clone();
            let proxy = proxy.to_string();
            rt.spawn(async move {
                tokio::time::sleep(ttl).await;
                if let Some(server) = server.upgrade() {
                    if server.remove_toxic_id(&proxy, id) {
                        tracing::info!(proxy = %proxy, ?ttl, "toxic expired and was removed");
                    }
                }
            });
        }
        tracing::info!(proxy, toxic = %toxic.name, kind = toxic.kind.type_name(), stream = toxic.stream.as_str(), "toxic added");
        Ok(toxic)
    }

    /// Adds a toxic; it applies at once to open and new connections.
    pub fn add_toxic(&self, proxy: &str, toxic: Toxic) -> Result<Toxic, ProxyError> {
        self.install(proxy, toxic, false)
    }

    /// Replaces the toxic of the same name (its per-connection state restarts).
    pub fn update_toxic(&self, proxy: &str, toxic: Toxic) -> Result<Toxic, ProxyError> {
        self.install(proxy, toxic, true)
    }

    /// Removes a toxic; open connections stop applying it at once.
    pub fn remove_toxic(&self, proxy: &str, toxic_name: &str) -> Result<(), ProxyError> {
        let proxies = self.lock();
        let entry = proxies
            .get(proxy)
            .ok_or_else(|| ProxyError::ProxyNotFound(proxy.to_string()))?;
        let removed = entry.toxics.send_if_modified(|set| {
            let before = set.len();
            let next: Vec<_> = set
                .iter()
                .filter(|t| t.toxic.name != toxic_name)
                .cloned()
                .collect();
            let changed = next.len() != before;
            *set = Arc::new(next);
            changed
        });
        if !removed {
            return Err(ProxyError::ToxicNotFound(toxic_name.to_string()));
        }
        tracing::info!(proxy, toxic = toxic_name, "toxic removed");
        Ok(())
    }

    /// Removes the toxic with this id if it is still installed (ttl expiry must not remove a
    /// newer toxic that reused the name).
    fn remove_toxic_id(&self, proxy: &str, id: u64) -> bool {
        let proxies = self.lock();
        let Some(entry) = proxies.get(proxy) else {
            return false;
        };
        entry.toxics.send_if_modified(|set| {
            if !set.iter().any(|t| t.id == id) {
                return false;
            }
            *set = Arc::new(set.iter().filter(|t| t.id != id).cloned().collect());
            true
        })
    }

    /// The toxics of a proxy, in the order they were added.
    pub fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, ProxyError> {
        Ok(self.proxy(proxy)?.toxics)
    }

    /// Enables every proxy and removes every toxic (Toxiproxy's `POST /reset`).
    pub fn reset(&self) {
        let mut proxies = self.lock();
        for (name, entry) in proxies.iter_mut() {
            entry.toxics.send_if_modified(|set| {
                let had = !set.is_empty();
                *set = Arc::new(Vec::new());
                had
            });
            entry.enabled = true;
            if let Err(e) = self.start(name, entry) {
                tracing::warn!(proxy = %name, error = %e, "reset could not re-enable the proxy");
            }
        }
    }

    /// Serves the Toxiproxy-compatible control API on `listener` until `shutdown` completes,
    /// with the default [`ApiAccess`] (no token, loopback listeners only).
    pub async fn serve_api(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ProxyError> {
        self.serve_api_with(listener, ApiAccess::default(), shutdown)
            .await
    }

    /// Serves the control API with these access rules. The listener must be on a loopback
    /// address; requests must be addressed to a loopback name, carry no foreign `Origin`,
    /// and send bodies as JSON (see [`crate::safety::loopback`]).
    pub async fn serve_api_with(
        self: Arc<Self>,
        listener: TcpListener,
        access: ApiAccess,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), ProxyError> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            return Err(ProxyError::NonLoopbackApi(addr));
        }
        tracing::info!(api = %addr, "control API listening");
        axum::serve(listener, api::router(self, access))
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

async fn accept_loop(
    listener: TcpListener,
    proxy: String,
    upstream: watch::Receiver<String>,
    toxics: watch::Receiver<ToxicSet>,
    cancel: CancellationToken,
    seed: u64,
    next_conn: Arc<AtomicU64>,
) {
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let conn = next_conn.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(proxy = %proxy, %peer, conn, "connection accepted");
                    tokio::spawn(link::handle(stream, ConnCtx {
                        proxy: proxy.clone(),
                        upstream: upstream.borrow().clone(),
                        toxics: toxics.clone(),
                        cancel: cancel.child_token(),
                        seed: link::mix(seed, conn),
                    }));
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(proxy = %proxy, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }
}
