//! `firedrill proxy`: one proxy plus the control API, until Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;

use super::{ApiAccess, ProxyConfig, ProxyServer};

/// Arguments of `firedrill proxy`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// Address the proxy listens on, e.g. 127.0.0.1:15432.
    #[arg(long, value_name = "ADDR")]
    pub listen: SocketAddr,
    /// Where connections are forwarded to.
    #[arg(long, value_name = "HOST:PORT")]
    pub upstream: String,
    /// Name of the proxy in the control API.
    #[arg(long, default_value = "firedrill")]
    pub name: String,
    /// Address of the Toxiproxy-compatible control API; must be loopback.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8474")]
    pub api: SocketAddr,
    /// Let proxies (this one and those created through the API) listen on non-loopback
    /// addresses, reachable from other machines.
    #[arg(long)]
    pub allow_remote_listen: bool,
    /// Demand `Authorization: Bearer TOKEN` on every API request, TOKEN being the value of
    /// this environment variable (other local users can reach a loopback port too).
    #[arg(long, value_name = "VAR")]
    pub api_token_env: Option<String>,
    /// Seed of the toxicity and jitter draws, for reproducible runs.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Runs one proxy and the control API until Ctrl-C or SIGTERM.
pub async fn run_standalone(args: ProxyArgs) -> anyhow::Result<()> {
    if !args.api.ip().is_loopback() {
        anyhow::bail!(
            "refusing to serve the control API on {}: it has no authentication; use a loopback address such as 127.0.0.1:8474",
            args.api
        );
    }
    if !args.allow_remote_listen && !args.listen.ip().is_loopback() {
        anyhow::bail!(
            "refusing to listen on {}: it is reachable from other machines; pass --allow-remote-listen if that is what you want",
            args.listen
        );
    }
    let token = match &args.api_token_env {
        None => None,
        Some(var) => match std::env::var(var) {
            Ok(t) if !t.is_empty() => {
                crate::safety::redact::register(&t);
                Some(t)
            }
            _ => anyhow::bail!(
                "--api-token-env {var}: the environment variable `{var}` is not set or empty"
            ),
        },
    };
    let access = ApiAccess {
        token,
        allow_remote_listen: args.allow_remote_listen,
    };
    let server = ProxyServer::new(args.seed);
    let info = server
        .add_proxy(ProxyConfig {
            name: args.name.clone(),
            listen: args.listen,
            upstream: args.upstream.clone(),
            enabled: true,
        })
        .await
        .with_context(|| format!("starting proxy {:?}", args.name))?;
    let api = TcpListener::bind(args.api)
        .await
        .with_context(|| format!("binding the control API on {}", args.api))?;
    println!(
        "proxy {} listening on {} -> {}; control API on http://{}",
        info.name, info.listen, info.upstream, args.api
    );
    server
        .serve_api_with(api, access, shutdown_signal())
        .await
        .context("control API")?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            // Without a SIGTERM handler, Ctrl-C still works.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
    tracing::info!("shutting down");
}
