//! Network faults: `latency`, `bandwidth`, `loss`, `down` and `partition`, for a `duration`,
//! on one of three backends:
//! - `proxy`: a proxy of the experiment's `proxy:` section, which firedrill itself runs for the
//!   drill (the usual CI setup: the app under test talks to the proxy);
//! - `toxiproxy`: a Toxiproxy server's HTTP API a team already runs;
//! - `chaos-mesh`: a NetworkChaos resource scoped to the pods a selector matches when the
//!   trial starts (resolved once and recorded, like pod-kill's targets).
//!
//! What each backend can do:
//!
//! | effect    | proxy / toxiproxy                              | chaos-mesh                       |
//! |-----------|------------------------------------------------|----------------------------------|
//! | latency   | toxic, per chunk, in order, never throttling   | `delay` (netem, per packet)      |
//! | bandwidth | toxic (Toxiproxy's KB/s, 1 KB = 1000 bytes)    | `bandwidth` (tbf)                |
//! | loss      | refused by the loader: a TCP proxy has no packets to drop | `loss` (netem)       |
//! | down      | the proxy is disabled: connections refused, open ones closed | `loss` of 100%: the pods' traffic is blackholed, connections time out |
//! | partition | refused by the loader: use `down`              | `partition` from `peers`         |
//!
//! Every backend carries the fault's own deadline where the backend allows it (a built-in proxy
//! toxic's TTL, NetworkChaos `duration`), so a runner that dies leaves nothing behind for long;
//! the revert removes it earlier. Toxiproxy has no TTL: `firedrill recover` undoes what a dead
//! runner left there from the journal.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::{Api, DynamicObject, PostParams};
use kube::core::ApiResource;

use serde_json::json;
use tokio::time::Instant;

use super::{FaultError, Injection, RevertPlan};
use crate::experiment::model::network::{
    format_rate, unsupported_on_proxies, Backend, Effect, NetworkSpec, Stream,
};
use crate::proxy::{ProxyServer, ProxyUpdate, Toxic, ToxicKind};

/// How long a toxic or NetworkChaos outlives its planned end if nobody reverts it.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// The proxy's name for the direction the experiment file gives.
fn proxy_stream(s: Stream) -> crate::proxy::Stream {
    match s {
        Stream::Upstream => crate::proxy::Stream::Upstream,
        Stream::Downstream => crate::proxy::Stream::Downstream,
    }
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

enum Target {
    Proxy {
        /// None where no drill runs (`firedrill plan`): the fault can be described, not applied.
        server: Option<Arc<ProxyServer>>,
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
        /// The pods resolved by [`NetworkFault::prepare`] for this trial.
        pods: Mutex<Vec<String>>,
    },
}

pub struct NetworkFault {
    spec: NetworkSpec,
    target: Target,
    run_id: String,
    /// The fault's place in the experiment: part of the names of what it creates.
    index: usize,
    injected: AtomicU32,
}

fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
}

impl NetworkFault {
    pub fn new(
        spec: NetworkSpec,
        proxy: Option<Arc<ProxyServer>>,
        kube: Option<kube::Client>,
        run_id: &str,
        index: usize,
    ) -> Result<Self, FaultError> {
        let kind = spec.effect.network_kind();
        let unsupported = |why: &str| FaultError::Unsupported {
            fault: kind.key().into(),
            why: why.into(),
        };
        if let (Backend::Proxy(_) | Backend::Toxiproxy(_), Some((why, _))) =
            (&spec.on, unsupported_on_proxies(kind))
        {
            return Err(unsupported(why));
        }
        let target = match &spec.on {
            Backend::Proxy(name) => Target::Proxy {
                server: proxy,
                proxy: name.clone(),
            },
            Backend::Toxiproxy(t) => Target::Toxiproxy {
                http: http_client()
                    .map_err(|e| FaultError::inject_by("cannot build the HTTP client", e))?,
                url: t.url.trim_end_matches('/').to_string(),
                proxy: t.proxy.clone(),
            },
            Backend::ChaosMesh(c) => Target::ChaosMesh {
                client: kube.ok_or_else(|| unsupported("no Kubernetes cluster for Chaos Mesh"))?,
                namespace: c.namespace.clone(),
                selector: c.selector.clone(),
                pods: Mutex::new(Vec::new()),
            },
        };
        Ok(NetworkFault {
            spec,
            target,
            run_id: run_id.to_string(),
            index,
            injected: AtomicU32::new(0),
        })
    }

    pub fn label(&self) -> String {
        let on = match &self.target {
            Target::Proxy { proxy, .. } => format!("proxy {proxy}"),
            Target::Toxiproxy { proxy, .. } => format!("toxiproxy {proxy}"),
            Target::ChaosMesh {
                namespace,
                selector,
                ..
            } => format!("chaos-mesh {namespace}/{selector}"),
        };
        format!("{} {on}", self.spec.effect.kind())
    }

    /// What the fault does, for people.
    pub fn describe(&self) -> String {
        let proxy = !matches!(self.target, Target::ChaosMesh { .. });
        let stream = match self.spec.stream {
            Stream::Upstream => "client → server",
            Stream::Downstream => "server → client",
        };
        let what = match &self.spec.effect {
            Effect::Latency {
                latency, jitter, ..
            } if proxy => format!(
                "add {} ± {} latency to {stream} traffic",
                crate::experiment::check::format_duration(*latency),
                crate::experiment::check::format_duration(*jitter)
            ),
            Effect::Latency {
                latency,
                jitter,
                correlation,
            } => format!(
                "add {} ± {} latency (correlation {}%) to the pods' packets",
                crate::experiment::check::format_duration(*latency),
                crate::experiment::check::format_duration(*jitter),
                correlation.unwrap_or(0)
            ),
            Effect::Bandwidth { bytes_per_second } if proxy => format!(
                "limit {stream} traffic to {}",
                format_rate(rate_kb(*bytes_per_second) * 1000)
            ),
            Effect::Bandwidth { bytes_per_second } => {
                format!(
                    "limit the pods' traffic to {}",
                    format_rate(*bytes_per_second)
                )
            }
            Effect::Loss {
                percent,
                correlation,
            } => format!(
                "drop {percent}% of the pods' packets (correlation {}%)",
                correlation.unwrap_or(0)
            ),
            Effect::Down if proxy => {
                "disable the proxy (new connections refused, open ones closed)".to_string()
            }
            Effect::Down => {
                "drop every packet the pods send (100% loss: connections time out)".to_string()
            }
            Effect::Partition { peers, direction } => format!(
                "cut the pods off from the pods matching `{peers}` (direction {})",
                direction.as_str()
            ),
        };
        format!(
            "{what} for {} ({})",
            humantime::format_duration(self.spec.duration),
            self.label()
        )
    }

    pub fn duration(&self) -> Duration {
        self.spec.duration
    }

    /// `firedrill-<run>-f<fault>-<injection>`: unique in the run, across faults and trials.
    fn name_for(&self, n: u32) -> String {
        let id = label_value(&self.run_id.to_lowercase());
        format!("firedrill-{id}-f{}-{n}", self.index + 1)
    }

    /// The name of the next injection's toxic or object: unique in this run and recognisable
    /// later (`firedrill recover` finds it by it).
    fn next_name(&self) -> String {
        self.name_for(self.injected.load(Ordering::Relaxed) + 1)
    }

    fn is_down(&self) -> bool {
        self.spec.effect == Effect::Down
    }

    /// The revert of the next injection, known before it is made (the journal's intent).
    pub fn planned_revert(&self) -> RevertPlan {
        let name = self.next_name();
        match &self.target {
            Target::Proxy { proxy, .. } if self.is_down() => RevertPlan::ProxyEnable {
                proxy: proxy.clone(),
            },
            Target::Proxy { proxy, .. } => RevertPlan::ProxyToxic {
                proxy: proxy.clone(),
                toxic: name,
            },
            Target::Toxiproxy { url, proxy, .. } if self.is_down() => RevertPlan::HttpPost {
                url: format!("{url}/proxies/{proxy}"),
                body: json!({ "enabled": true }),
            },
            Target::Toxiproxy { url, proxy, .. } => RevertPlan::HttpDelete {
                url: format!("{url}/proxies/{proxy}/toxics/{name}"),
            },
            Target::ChaosMesh { namespace, .. } => RevertPlan::KubeDelete {
                api_version: "chaos-mesh.org/v1alpha1".into(),
                kind: "NetworkChaos".into(),
                namespace: namespace.clone(),
                name,
            },
        }
    }

    /// Checks, touching nothing, that the fault can be applied: the proxy exists (and, for
    /// `down`, is enabled: re-enabling on revert a proxy someone else disabled would be a
    /// change of ours), or the pods a Chaos Mesh selector matches, which are recorded.
    pub async fn prepare(&self) -> Result<Option<String>, FaultError> {
        let enabled = |proxy: &str, enabled: bool, listen: &str| {
            if self.is_down() && !enabled {
                return Err(FaultError::NoTarget(format!(
                    "proxy `{proxy}` is already disabled: nothing to take down, and the revert would enable it"
                )));
            }
            Ok(Some(format!(
                "proxy {proxy} (listening on {listen}, {})",
                if enabled { "enabled" } else { "disabled" }
            )))
        };
        match &self.target {
            Target::Proxy {
                server: None,
                proxy,
            } => Ok(Some(format!(
                "proxy {proxy}, which `firedrill run` starts for the drill"
            ))),
            Target::Proxy {
                server: Some(server),
                proxy,
            } => {
                let info = server
                    .proxy(proxy)
                    .map_err(|e| FaultError::NoTarget(format!("proxy `{proxy}`: {e}")))?;
                enabled(proxy, info.enabled, &info.listen.to_string())
            }
            Target::Toxiproxy { http, url, proxy } => {
                let endpoint = format!("{url}/proxies/{proxy}");
                let resp = http.get(&endpoint).send().await.map_err(|e| {
                    FaultError::NoTarget(format!(
                        "toxiproxy {url}: {}",
                        crate::platform::root_cause(&e)
                    ))
                })?;
                let status = resp.status();
                if status.as_u16() == 404 {
                    return Err(FaultError::NoTarget(format!(
                        "toxiproxy {url} has no proxy named `{proxy}`"
                    )));
                }
                if !status.is_success() {
                    return Err(FaultError::NoTarget(format!(
                        "toxiproxy {url} answered {status} for proxy `{proxy}`"
                    )));
                }
                let info: serde_json::Value = resp.json().await.map_err(|e| {
                    FaultError::NoTarget(format!(
                        "toxiproxy {url}: unreadable proxy `{proxy}`: {e}"
                    ))
                })?;
                enabled(
                    proxy,
                    info["enabled"].as_bool().unwrap_or(true),
                    info["listen"].as_str().unwrap_or("?"),
                )
            }
            Target::ChaosMesh {
                client,
                namespace,
                selector,
                pods,
            } => {
                let names: Vec<String> = super::pod_kill::live_pods(client, namespace, selector)
                    .await?
                    .into_iter()
                    .map(|p| p.name)
                    .collect();
                if names.is_empty() {
                    return Err(super::pod_kill::no_running_pods(selector, namespace));
                }
                let chosen = format!("pods {} in `{namespace}`", names.join(", "));
                *pods.lock().unwrap_or_else(|e| e.into_inner()) = names;
                Ok(Some(chosen))
            }
        }
    }

    /// The proxy toxic for this fault (latency and bandwidth; `new` refuses loss and
    /// partition on proxies, and `down` is not a toxic but a disabled proxy).
    fn toxic(&self, name: String, ttl: Duration) -> Result<Toxic, FaultError> {
        let kind = match &self.spec.effect {
            Effect::Latency {
                latency, jitter, ..
            } => ToxicKind::Latency {
                latency: *latency,
                jitter: *jitter,
            },
            Effect::Bandwidth { bytes_per_second } => ToxicKind::Bandwidth {
                rate_kb: rate_kb(*bytes_per_second),
            },
            Effect::Loss { .. } | Effect::Down | Effect::Partition { .. } => {
                return Err(FaultError::Unsupported {
                    fault: self.spec.effect.kind().into(),
                    why: "not a proxy toxic".into(),
                })
            }
        };
        let mut toxic = Toxic::new(kind, proxy_stream(self.spec.stream));
        toxic.name = name;
        toxic.ttl = Some(ttl);
        Ok(toxic)
    }

    pub async fn inject(&self, label: String) -> Result<Injection, FaultError> {
        let revert = self.planned_revert();
        let name = self.next_name();
        self.injected.fetch_add(1, Ordering::Relaxed);
        let ttl = self.spec.duration + EXPIRY_MARGIN;
        let sent_at = Instant::now();
        let no_proxy = |proxy: &str| FaultError::Unsupported {
            fault: self.spec.effect.kind().into(),
            why: format!("proxy `{proxy}` does not run here (only `firedrill run` starts it)"),
        };
        // The pods `prepare` resolved: what a NetworkChaos is scoped to, and the record's
        // `affected`.
        let affected = match &self.target {
            Target::ChaosMesh { pods, .. } => {
                pods.lock().unwrap_or_else(|e| e.into_inner()).clone()
            }
            _ => vec![],
        };
        let detail = match &self.target {
            Target::Proxy {
                server: None,
                proxy,
            } => return Err(no_proxy(proxy)),
            Target::Proxy {
                server: Some(server),
                proxy,
            } if self.is_down() => {
                let update = ProxyUpdate {
                    enabled: Some(false),
                    ..Default::default()
                };
                server
                    .update_proxy(proxy, update)
                    .await
                    .map_err(|e| FaultError::inject_by(format!("proxy `{proxy}`"), e))?;
                format!("disabled proxy {proxy}")
            }
            Target::Proxy {
                server: Some(server),
                proxy,
            } => {
                server
                    .add_toxic(proxy, self.toxic(name.clone(), ttl)?)
                    .map_err(|e| FaultError::inject_by(format!("proxy `{proxy}`"), e))?;
                format!(
                    "added toxic {name} to proxy {proxy} (expires by itself in {}s)",
                    ttl.as_secs()
                )
            }
            Target::Toxiproxy { http, url, proxy } => {
                let (endpoint, body) = if self.is_down() {
                    (
                        format!("{url}/proxies/{proxy}"),
                        json!({ "enabled": false }),
                    )
                } else {
                    let toxic = self.toxic(name.clone(), ttl)?;
                    (
                        format!("{url}/proxies/{proxy}/toxics"),
                        json!({
                            "name": name,
                            "type": toxic.kind.type_name(),
                            "stream": toxic.stream.as_str(),
                            "toxicity": 1.0,
                            "attributes": toxic.kind.attributes(),
                        }),
                    )
                };
                let resp = http
                    .post(&endpoint)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| FaultError::inject_by(format!("toxiproxy {url}"), e))?;
                let status = resp.status();
                if !status.is_success() {
                    let text = resp.text().await.unwrap_or_default();
                    return Err(FaultError::inject(format!(
                        "toxiproxy refused the {} ({status}): {}",
                        self.spec.effect.kind(),
                        text.trim()
                    )));
                }
                if self.is_down() {
                    format!("disabled toxiproxy proxy {proxy}")
                } else {
                    format!("added toxic {name} to toxiproxy proxy {proxy}")
                }
            }
            Target::ChaosMesh {
                client,
                namespace,
                selector,
                ..
            } => {
                let pods = &affected;
                if pods.is_empty() {
                    return Err(FaultError::NoTarget(format!(
                        "no pods resolved for `{selector}` in `{namespace}`: prepare the fault first"
                    )));
                }
                let obj: DynamicObject = serde_json::from_value(chaos_object(
                    &self.spec,
                    &self.run_id,
                    &name,
                    namespace,
                    pods,
                ))
                .map_err(|e| FaultError::inject(e.to_string()))?;
                let api: Api<DynamicObject> =
                    Api::namespaced_with(client.clone(), namespace, &network_chaos());
                api.create(&PostParams::default(), &obj)
                    .await
                    .map_err(|e| FaultError::inject_by("cannot create NetworkChaos", e))?;
                format!(
                    "created NetworkChaos {namespace}/{name} on {} pod(s) (ends by itself after {})",
                    pods.len(),
                    go_duration(self.spec.duration)
                )
            }
        };
        Ok(Injection {
            fault: label,
            sent_at,
            accepted_at: Instant::now(),
            detail,
            affected,
            deleted_pods: vec![],
            revert,
            duration: Some(self.spec.duration),
            restore: None,
        })
    }
}

/// The NetworkChaos object for `spec`, named `name`, scoped to `pods` (names in `namespace`)
/// and labelled with the run id, so that a later `firedrill recover` can find it.
fn chaos_object(
    spec: &NetworkSpec,
    run_id: &str,
    name: &str,
    namespace: &str,
    pods: &[String],
) -> serde_json::Value {
    let pct = |p: u8| p.to_string();
    let mut chaos = json!({
        "mode": "all",
        "selector": { "pods": { namespace: pods } },
        // Chaos Mesh ends it by itself even if firedrill never comes back.
        "duration": go_duration(spec.duration),
    });
    match &spec.effect {
        Effect::Latency {
            latency,
            jitter,
            correlation,
        } => {
            chaos["action"] = json!("delay");
            chaos["delay"] = json!({
                "latency": go_duration(*latency),
                "jitter": go_duration(*jitter),
                "correlation": pct(correlation.unwrap_or(0)),
            });
        }
        Effect::Bandwidth { bytes_per_second } => {
            chaos["action"] = json!("bandwidth");
            chaos["bandwidth"] = tbf(*bytes_per_second);
        }
        Effect::Loss {
            percent,
            correlation,
        } => {
            chaos["action"] = json!("loss");
            chaos["loss"] = json!({
                "loss": pct(*percent),
                "correlation": pct(correlation.unwrap_or(0)),
            });
        }
        Effect::Down => {
            chaos["action"] = json!("loss");
            chaos["loss"] = json!({ "loss": "100", "correlation": "0" });
        }
        Effect::Partition { peers, direction } => {
            chaos["action"] = json!("partition");
            chaos["direction"] = json!(direction.as_str());
            chaos["target"] = json!({
                "mode": "all",
                "selector": {
                    "namespaces": [namespace],
                    "labelSelectors": equality_labels(peers),
                },
            });
        }
    }
    json!({
        "apiVersion": "chaos-mesh.org/v1alpha1",
        "kind": "NetworkChaos",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "firedrill",
                "firedrill.io/run-id": label_value(run_id),
            },
        },
        "spec": chaos,
    })
}

/// Toxiproxy's bandwidth unit: KB/s of 1000 bytes, at least 1.
fn rate_kb(bytes_per_second: u64) -> u64 {
    (bytes_per_second.saturating_add(500) / 1000).max(1)
}

/// Chaos Mesh's token-bucket settings for a rate: its `rate` unit `bps` is bytes per second;
/// `limit` (bytes queued) and `buffer` (burst bytes) are required. The queue holds 20 MiB or
/// 200ms of traffic, whichever is more (Chaos Mesh advises at least 2 × rate × latency), and
/// the burst is 10 kB or 10ms of traffic (a tbf buffer must cover a timer tick).
fn tbf(bytes_per_second: u64) -> serde_json::Value {
    let clamp = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    json!({
        "rate": format!("{bytes_per_second}bps"),
        "limit": clamp((bytes_per_second / 5).max(20 * 1024 * 1024)),
        "buffer": clamp((bytes_per_second / 100).max(10_000)),
    })
}

/// `key=value,key=value` as a label map (the loader has checked the form).
fn equality_labels(selector: &str) -> serde_json::Map<String, serde_json::Value> {
    selector
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), json!(v.trim())))
        .collect()
}

/// A duration as Go's time.ParseDuration reads it (Chaos Mesh's `duration`, `latency`), to
/// the millisecond: `1500ms`, never rounded to whole seconds.
fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// A label value from a run id.
fn label_value(s: &str) -> String {
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

/// Undo a network fault. Idempotent: a toxic or object already gone, or a proxy already
/// enabled, is reverted.
pub async fn revert(plan: &RevertPlan, ctx: &RevertContext) -> Result<String, FaultError> {
    // Recovering from a journal in another process: a drill's proxy lived inside the drill's
    // process, so what was done to it ended with it.
    let gone_with_drill = |proxy: &str| {
        format!("proxy {proxy} ran in the drill's process and ended with it: nothing remains")
    };
    match plan {
        RevertPlan::ProxyToxic { proxy, toxic } => {
            let Some(server) = ctx.proxy.as_ref() else {
                return Ok(gone_with_drill(proxy));
            };
            match server.remove_toxic(proxy, toxic) {
                Ok(()) => Ok(format!("removed toxic {toxic} from proxy {proxy}")),
                Err(e) if e.status() == 404 => Ok(format!("toxic {toxic} was already gone")),
                Err(e) => Err(FaultError::revert_by(format!("proxy `{proxy}`"), e)),
            }
        }
        RevertPlan::ProxyEnable { proxy } => {
            let Some(server) = ctx.proxy.as_ref() else {
                return Ok(gone_with_drill(proxy));
            };
            let update = ProxyUpdate {
                enabled: Some(true),
                ..Default::default()
            };
            match server.update_proxy(proxy, update).await {
                Ok(info) => Ok(format!(
                    "enabled proxy {proxy} (listening on {})",
                    info.listen
                )),
                Err(e) if e.status() == 404 => Ok(format!("proxy {proxy} was already gone")),
                Err(e) => Err(FaultError::revert_by(format!("proxy `{proxy}`"), e)),
            }
        }
        RevertPlan::HttpDelete { url } | RevertPlan::HttpPost { url, .. } => {
            let http = http_client()
                .map_err(|e| FaultError::revert_by("cannot build the HTTP client", e))?;
            let (call, request) = match plan {
                RevertPlan::HttpPost { body, .. } => {
                    (format!("POST {url} {body}"), http.post(url).json(body))
                }
                _ => (format!("DELETE {url}"), http.delete(url)),
            };
            let resp = request
                .send()
                .await
                .map_err(|e| FaultError::revert_by(call.clone(), e))?;
            match resp.status().as_u16() {
                200..=299 => Ok(call),
                404 => Ok(format!("{url} was already gone")),
                s => Err(FaultError::revert(format!("{call} answered {s}"))),
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
                .ok_or_else(|| FaultError::revert("no Kubernetes client to delete with"))?;
            let api: Api<DynamicObject> = Api::namespaced_with(client, namespace, &network_chaos());
            match api.delete(name, &Default::default()).await {
                Ok(_) => Ok(format!("deleted {kind} {namespace}/{name}")),
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    Ok(format!("{kind} {namespace}/{name} was already gone"))
                }
                Err(e) => Err(FaultError::revert_by(
                    format!("cannot delete {kind} {namespace}/{name}"),
                    e,
                )),
            }
        }
        other => Err(FaultError::revert(format!(
            "not a network fault's revert: {other:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::model::network::{ChaosMeshRef, NetworkKind, PartitionDirection};

    #[test]
    fn rates_read_naturally_and_round_to_toxiproxy_units() {
        assert_eq!(format_rate(999), "999 B/s");
        assert_eq!(format_rate(1_500), "1.5 KB/s");
        assert_eq!(format_rate(8_000_000), "8.0 MB/s");
        assert_eq!(rate_kb(1_000), 1);
        assert_eq!(rate_kb(1_499), 1);
        assert_eq!(rate_kb(1_500), 2);
        assert_eq!(rate_kb(1_048_576), 1_049);
    }

    #[test]
    fn chaos_mesh_settings_are_exact_and_never_round_to_whole_seconds() {
        assert_eq!(go_duration(Duration::from_millis(1500)), "1500ms");
        let t = tbf(1_000_000);
        assert_eq!(t["rate"], "1000000bps");
        assert_eq!(t["limit"], 20 * 1024 * 1024);
        assert_eq!(t["buffer"], 10_000);
        let fast = tbf(10_000_000_000);
        assert_eq!(fast["limit"], 2_000_000_000u32);
        assert_eq!(fast["buffer"], 100_000_000u32);
    }

    fn spec(effect: Effect) -> NetworkSpec {
        NetworkSpec {
            on: Backend::ChaosMesh(ChaosMeshRef {
                namespace: "shop".into(),
                selector: "app=checkout".into(),
            }),
            effect,
            stream: Stream::Downstream,
            duration: Duration::from_millis(2500),
        }
    }

    #[test]
    fn network_chaos_objects_say_what_chaos_mesh_expects() {
        let pods = ["checkout-1".to_string(), "checkout-2".to_string()];
        let obj = |effect| chaos_object(&spec(effect), "R 1", "firedrill-r-1-1", "shop", &pods);

        let o = obj(Effect::Latency {
            latency: Duration::from_millis(100),
            jitter: Duration::from_millis(10),
            correlation: Some(25),
        });
        assert_eq!(o["metadata"]["labels"]["firedrill.io/run-id"], "R-1");
        assert_eq!(o["spec"]["selector"]["pods"]["shop"], json!(pods));
        assert_eq!(o["spec"]["duration"], "2500ms");
        assert_eq!(o["spec"]["action"], "delay");
        assert_eq!(
            o["spec"]["delay"],
            json!({"latency": "100ms", "jitter": "10ms", "correlation": "25"})
        );

        let o = obj(Effect::Loss {
            percent: 30,
            correlation: None,
        });
        assert_eq!(o["spec"]["action"], "loss");
        assert_eq!(o["spec"]["loss"], json!({"loss": "30", "correlation": "0"}));

        let o = obj(Effect::Down);
        assert_eq!(o["spec"]["action"], "loss");
        assert_eq!(o["spec"]["loss"]["loss"], "100");

        let o = obj(Effect::Bandwidth {
            bytes_per_second: 125_000,
        });
        assert_eq!(o["spec"]["action"], "bandwidth");
        assert_eq!(o["spec"]["bandwidth"]["rate"], "125000bps");

        let o = obj(Effect::Partition {
            peers: "app=db,tier=primary".into(),
            direction: PartitionDirection::To,
        });
        assert_eq!(o["spec"]["action"], "partition");
        assert_eq!(o["spec"]["direction"], "to");
        assert_eq!(
            o["spec"]["target"]["selector"],
            json!({"namespaces": ["shop"], "labelSelectors": {"app": "db", "tier": "primary"}})
        );
    }

    #[test]
    fn loss_and_partition_are_refused_on_proxies_only() {
        for kind in NetworkKind::ALL {
            let refused = unsupported_on_proxies(kind).is_some();
            assert_eq!(
                refused,
                matches!(kind.key(), "loss" | "partition"),
                "{kind}"
            );
        }
    }
}
