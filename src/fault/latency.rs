//! `latency` fault: add network latency in front of a dependency for a `duration`, through
//! one of three backends:
//! - `proxy`: a proxy of the experiment's `proxy:` section, which firedrill itself runs for the
//!   drill (the usual CI setup: the app under test talks to the proxy);
//! - `toxiproxy`: a toxic added through a Toxiproxy server's HTTP API a team already runs;
//! - `chaos-mesh`: a NetworkChaos resource scoped to the pods a selector matches.
//!
//! Every backend carries the fault's own deadline where the backend allows it (a proxy toxic's
//! TTL, NetworkChaos `duration`), so a runner that dies leaves nothing behind for long; the
//! revert removes it earlier. Latency on the proxies applies per chunk, in order, without
//! throttling throughput.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::ApiResource;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use super::{FaultError, Injection, RevertPlan};
use crate::proxy::{ProxyServer, Stream, Toxic, ToxicKind};

/// How long a toxic or NetworkChaos outlives its planned end if nobody reverts it.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The fault as the experiment file gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct LatencySpec {
    /// A proxy of the experiment's `proxy:` section.
    #[serde(default)]
    pub proxy: Option<String>,
    #[serde(default)]
    pub toxiproxy: Option<ToxiproxyRef>,
    #[serde(default)]
    pub chaos_mesh: Option<ChaosMeshRef>,
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    #[serde(default, with = "humantime_serde")]
    pub jitter: Duration,
    /// Chaos Mesh only: correlation with the previous packet's delay, 0–100.
    #[serde(default)]
    pub correlation: Option<u8>,
    /// Which direction is delayed on a proxy (default: downstream, server → client).
    #[serde(default)]
    pub stream: Option<Direction>,
    /// How long the latency stays before firedrill removes it.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    Upstream,
    Downstream,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ToxiproxyRef {
    /// The Toxiproxy API, e.g. `http://127.0.0.1:8474`.
    pub url: String,
    /// The proxy's name on that server.
    pub proxy: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ChaosMeshRef {
    pub namespace: String,
    /// Equality-based label selector of the pods to delay (`app=checkout,tier=web`).
    pub selector: String,
}

/// The Chaos Mesh resource firedrill creates.
pub fn network_chaos() -> ApiResource {
    ApiResource {
        group: "chaos-mesh.org".into(),
        version: "v1alpha1".into(),
        api_version: "chaos-mesh.org/v1alpha1".into(),
        kind: "NetworkChaos".into(),
        plural: "networkchaos".into(),
    }
}

/// What reverting needs beyond the plan itself (the journal replays plans with it).
#[derive(Clone, Default)]
pub struct RevertContext {
    pub proxy: Option<Arc<ProxyServer>>,
    pub kube: Option<kube::Client>,
}

enum Backend {
    Proxy {
        server: Arc<ProxyServer>,
        proxy: String,
    },
    Toxiproxy {
        http: reqwest::Client,
        url: String,
        proxy: String,
    },
    ChaosMesh {
        client: kube::Client,
        namespace: String,
        selector: String,
    },
}

pub struct LatencyFault {
    spec: LatencySpec,
    backend: Backend,
    run_id: String,
    injected: AtomicU32,
}

impl LatencyFault {
    pub fn new(
        spec: LatencySpec,
        proxy: Option<Arc<ProxyServer>>,
        kube: Option<kube::Client>,
        run_id: &str,
    ) -> Result<Self, FaultError> {
        let unsupported = |why: &str| FaultError::Unsupported {
            fault: "latency".into(),
            why: why.into(),
        };
        let backend = if let Some(name) = &spec.proxy {
            let server = proxy.ok_or_else(|| unsupported("no proxy runs for this drill"))?;
            Backend::Proxy {
                server,
                proxy: name.clone(),
            }
        } else if let Some(t) = &spec.toxiproxy {
            Backend::Toxiproxy {
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .map_err(|e| FaultError::Inject(e.to_string()))?,
                url: t.url.trim_end_matches('/').to_string(),
                proxy: t.proxy.clone(),
            }
        } else if let Some(c) = &spec.chaos_mesh {
            Backend::ChaosMesh {
                client: kube.ok_or_else(|| unsupported("no Kubernetes cluster for Chaos Mesh"))?,
                namespace: c.namespace.clone(),
                selector: c.selector.clone(),
            }
        } else {
            return Err(unsupported(
                "name a backend: proxy, toxiproxy or chaos-mesh",
            ));
        };
        Ok(LatencyFault {
            spec,
            backend,
            run_id: run_id.to_string(),
            injected: AtomicU32::new(0),
        })
    }

    pub fn label(&self) -> String {
        let on = match &self.backend {
            Backend::Proxy { proxy, .. } => format!("proxy {proxy}"),
            Backend::Toxiproxy { proxy, .. } => format!("toxiproxy {proxy}"),
            Backend::ChaosMesh {
                namespace,
                selector,
                ..
            } => format!("chaos-mesh {namespace}/{selector}"),
        };
        format!("latency {on}")
    }

    pub fn describe(&self) -> String {
        format!(
            "add {}ms ± {}ms latency for {} ({})",
            self.spec.latency.as_millis(),
            self.spec.jitter.as_millis(),
            humantime::format_duration(self.spec.duration),
            self.label()
        )
    }

    pub fn duration(&self) -> Duration {
        self.spec.duration
    }

    /// A name unique in this run and recognisable later (`firedrill recover` finds it by it).
    fn name(&self) -> String {
        let n = self.injected.fetch_add(1, Ordering::Relaxed) + 1;
        self.name_for(n)
    }

    fn name_for(&self, n: u32) -> String {
        let id: String = self
            .run_id
            .to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        format!("firedrill-{id}-{n}")
    }

    /// The revert of the next injection, known before it is made (the journal's intent).
    pub fn planned_revert(&self) -> RevertPlan {
        let name = self.name_for(self.injected.load(Ordering::Relaxed) + 1);
        match &self.backend {
            Backend::Proxy { proxy, .. } => RevertPlan::ProxyToxic {
                proxy: proxy.clone(),
                toxic: name,
            },
            Backend::Toxiproxy { url, proxy, .. } => RevertPlan::HttpDelete {
                url: format!("{url}/proxies/{proxy}/toxics/{name}"),
            },
            Backend::ChaosMesh { namespace, .. } => RevertPlan::KubeDelete {
                api_version: "chaos-mesh.org/v1alpha1".into(),
                kind: "NetworkChaos".into(),
                namespace: namespace.clone(),
                name,
            },
        }
    }

    fn stream(&self) -> Stream {
        match self.spec.stream {
            Some(Direction::Upstream) => Stream::Upstream,
            _ => Stream::Downstream,
        }
    }

    pub async fn inject(&self, label: String) -> Result<Injection, FaultError> {
        let name = self.name();
        let ttl = self.spec.duration + EXPIRY_MARGIN;
        let ms = |d: Duration| d.as_millis() as u64;
        let sent_at = Instant::now();
        let (detail, revert) = match &self.backend {
            Backend::Proxy { server, proxy } => {
                let mut toxic = Toxic::new(
                    ToxicKind::Latency {
                        latency: self.spec.latency,
                        jitter: self.spec.jitter,
                    },
                    self.stream(),
                );
                toxic.name = name.clone();
                toxic.ttl = Some(ttl);
                server
                    .add_toxic(proxy, toxic)
                    .map_err(|e| FaultError::Inject(format!("proxy `{proxy}`: {e}")))?;
                (
                    format!(
                        "added toxic {name} to proxy {proxy} (expires by itself in {}s)",
                        ttl.as_secs()
                    ),
                    RevertPlan::ProxyToxic {
                        proxy: proxy.clone(),
                        toxic: name,
                    },
                )
            }
            Backend::Toxiproxy { http, url, proxy } => {
                let body = json!({
                    "name": name,
                    "type": "latency",
                    "stream": match self.stream() { Stream::Upstream => "upstream", Stream::Downstream => "downstream" },
                    "toxicity": 1.0,
                    "attributes": { "latency": ms(self.spec.latency), "jitter": ms(self.spec.jitter) },
                });
                let endpoint = format!("{url}/proxies/{proxy}/toxics");
                let resp = http.post(&endpoint).json(&body).send().await.map_err(|e| {
                    FaultError::Inject(format!("toxiproxy {url}: {}", crate::probe::root_cause(&e)))
                })?;
                let status = resp.status();
                if !status.is_success() {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(FaultError::Inject(format!(
                        "toxiproxy refused the toxic ({status}): {}",
                        text.trim()
                    )));
                }
                (
                    format!("added toxic {name} to toxiproxy proxy {proxy}"),
                    RevertPlan::HttpDelete {
                        url: format!("{endpoint}/{name}"),
                    },
                )
            }
            Backend::ChaosMesh {
                client,
                namespace,
                selector,
            } => {
                let labels: serde_json::Map<String, serde_json::Value> = selector
                    .split(',')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.trim().to_string(), json!(v.trim())))
                    .collect();
                let mut delay = json!({
                    "latency": format!("{}ms", ms(self.spec.latency)),
                    "jitter": format!("{}ms", ms(self.spec.jitter)),
                });
                if let Some(c) = self.spec.correlation {
                    delay["correlation"] = json!(c.to_string());
                }
                let obj: DynamicObject = serde_json::from_value(json!({
                    "apiVersion": "chaos-mesh.org/v1alpha1",
                    "kind": "NetworkChaos",
                    "metadata": {
                        "name": name,
                        "namespace": namespace,
                        "labels": { "app.kubernetes.io/managed-by": "firedrill", "firedrill.io/run-id": name_safe(&self.run_id) },
                    },
                    "spec": {
                        "action": "delay",
                        "mode": "all",
                        "selector": { "namespaces": [namespace], "labelSelectors": labels },
                        "delay": delay,
                        // Chaos Mesh ends it by itself even if firedrill never comes back.
                        "duration": format!("{}s", self.spec.duration.as_secs().max(1)),
                    },
                }))
                .map_err(|e| FaultError::Inject(e.to_string()))?;
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), namespace, &network_chaos());
                api.create(&PostParams::default(), &obj)
                    .await
                    .map_err(|e| {
                        FaultError::Inject(format!(
                            "cannot create NetworkChaos: {}",
                            crate::platform::kube::describe(&e)
                        ))
                    })?;
                (
                    format!(
                        "created NetworkChaos {namespace}/{name} (ends by itself after {}s)",
                        self.spec.duration.as_secs().max(1)
                    ),
                    RevertPlan::KubeDelete {
                        api_version: "chaos-mesh.org/v1alpha1".into(),
                        kind: "NetworkChaos".into(),
                        namespace: namespace.clone(),
                        name,
                    },
                )
            }
        };
        Ok(Injection {
            fault: label,
            sent_at,
            accepted_at: Instant::now(),
            detail,
            affected: vec![],
            revert,
            duration: Some(self.spec.duration),
        })
    }
}

/// A label value from a run id.
fn name_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .take(63)
        .collect()
}

/// Undo a latency injection. Idempotent: a toxic or object already gone is reverted.
pub async fn revert(plan: &RevertPlan, ctx: &RevertContext) -> Result<String, FaultError> {
    match plan {
        RevertPlan::ProxyToxic { proxy, toxic } => {
            // Recovering from a journal in another process: the proxy lived inside the
            // drill's process, so the toxic ended with it.
            let Some(server) = ctx.proxy.as_ref() else {
                return Ok(format!(
                    "toxic {toxic} ended with the drill's proxy {proxy}, which ran in the drill's process"
                ));
            };
            match server.remove_toxic(proxy, toxic) {
                Ok(()) => Ok(format!("removed toxic {toxic} from proxy {proxy}")),
                Err(e) if e.status() == 404 => Ok(format!("toxic {toxic} was already gone")),
                Err(e) => Err(FaultError::Revert(format!("proxy `{proxy}`: {e}"))),
            }
        }
        RevertPlan::HttpDelete { url } => {
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| FaultError::Revert(e.to_string()))?;
            let resp = http.delete(url).send().await.map_err(|e| {
                FaultError::Revert(format!("DELETE {url}: {}", crate::probe::root_cause(&e)))
            })?;
            match resp.status().as_u16() {
                200..=299 => Ok(format!("DELETE {url}")),
                404 => Ok(format!("{url} was already gone")),
                s => Err(FaultError::Revert(format!("DELETE {url} answered {s}"))),
            }
        }
        RevertPlan::KubeDelete {
            namespace,
            name,
            kind,
            ..
        } => {
            let client = ctx
                .kube
                .clone()
                .ok_or_else(|| FaultError::Revert("no Kubernetes client to delete with".into()))?;
            let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &network_chaos());
            match api.delete(name, &Default::default()).await {
                Ok(_) => Ok(format!("deleted {kind} {namespace}/{name}")),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    Ok(format!("{kind} {namespace}/{name} was already gone"))
                }
                Err(e) => Err(FaultError::Revert(format!(
                    "cannot delete {kind} {namespace}/{name}: {}",
                    crate::platform::kube::describe(&e)
                ))),
            }
        }
        other => Err(FaultError::Revert(format!(
            "not a latency revert: {other:?}"
        ))),
    }
}
