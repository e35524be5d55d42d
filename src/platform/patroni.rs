//! A client of Patroni's REST API: who leads the cluster, and asking it to switch over or
//! fail over.
//!
//! Reads (`GET`) are retried a bounded number of times with jittered exponential backoff on
//! connection errors, timeouts, 429 and 5xx, honouring `Retry-After`. Writes (`POST`) change
//! the cluster and are *not* blindly retried: Patroni answers 503 both when it could not write
//! the switchover key (nothing happened: safe to retry) and when it could not confirm the
//! result (something may have happened: a retry would ask for a second switchover). So a write
//! is retried only when the request never reached Patroni (connection refused), on 429, and on
//! the "failed to write … key into DCS" answer; any other failure is returned with Patroni's
//! own words, and the caller can read `/cluster` to see what happened. Both go through the
//! platform's one retry loop ([`crate::platform::retry`]); an attempt is one pass over the
//! members' URLs.
//!
//! Several base URLs (one per member) may be given: each call tries them in order, so the
//! client keeps working while the member it usually talks to is the one being failed over.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::{Deserialize, Serialize};

use super::retry::{retry, Attempt, Backoff, Failed, Verdict};

/// How long one read may take (per member URL).
const READ_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum PatroniError {
    #[error("patroni REST API unreachable at {urls}: {cause}")]
    Unreachable { urls: String, cause: String },
    #[error("patroni at {url} answered {status} to {what}: {body}")]
    Status {
        url: String,
        what: String,
        status: u16,
        body: String,
    },
    #[error("patroni at {url} sent an unreadable answer to {what}: {cause}")]
    Decode {
        url: String,
        what: String,
        cause: String,
    },
    #[error("the cluster has no leader right now")]
    NoLeader,
    #[error("no candidate to fail over to: {0}")]
    NoCandidate(String),
    #[error("invalid patroni URL `{0}`: {1}")]
    BadUrl(String, String),
}

/// A member's role as `/cluster` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Leader,
    Replica,
    SyncStandby,
    StandbyLeader,
    #[serde(other)]
    Other,
}

/// How far a replica is behind the leader, in bytes of WAL, when Patroni knows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Lag {
    Bytes(u64),
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub role: Role,
    /// `running`, `streaming`, `stopped`, `starting`, `crashed`, …
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub port: Option<u16>,
    /// The member's own `/patroni` URL.
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub timeline: Option<u64>,
    /// Absent on the leader.
    #[serde(default)]
    pub lag: Option<Lag>,
}

impl Member {
    pub fn is_leader(&self) -> bool {
        matches!(self.role, Role::Leader | Role::StandbyLeader)
    }

    /// The member's REST base URL (`http://host:port`), from its `api_url`.
    pub fn api_base(&self) -> Option<String> {
        let u = self.api_url.as_deref()?;
        let u = u.strip_suffix("/patroni").unwrap_or(u);
        Some(u.trim_end_matches('/').to_string())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub members: Vec<Member>,
    #[serde(default)]
    pub pause: bool,
}

impl Cluster {
    pub fn leader(&self) -> Option<&Member> {
        self.members.iter().find(|m| m.is_leader())
    }

    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Members that could take over: not the leader, and running or streaming.
    pub fn candidates(&self) -> Vec<&Member> {
        self.members
            .iter()
            .filter(|m| !m.is_leader() && matches!(m.state.as_str(), "running" | "streaming"))
            .collect()
    }
}

/// One timeline switch from `/history`: `[timeline, lsn, reason, timestamp, new_leader]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineSwitch {
    /// The timeline that ended.
    pub timeline: u64,
    pub lsn: u64,
    pub reason: String,
    /// Patroni's wall-clock timestamp of the switch (ISO 8601), when recorded.
    pub at: Option<String>,
    /// Who became leader, when recorded.
    pub new_leader: Option<String>,
}

/// One pass over the members' URLs that did not get an answer worth returning: the last
/// member's error, and whether another pass may follow.
#[derive(Debug)]
struct Pass {
    err: PatroniError,
    verdict: Verdict,
}

impl Attempt for Pass {
    fn verdict(&self) -> Verdict {
        self.verdict.clone()
    }

    /// Reads change nothing, and a write is retried only when Patroni provably did nothing.
    fn maybe_applied(&self) -> bool {
        false
    }

    fn describe(&self) -> String {
        self.err.to_string()
    }
}

/// Bounded retries for reads, and for writes that never reached Patroni: 4 attempts, jittered
/// backoff from 100ms to 2s, a `Retry-After` honoured up to 10s.
pub fn default_retry() -> Backoff {
    Backoff {
        attempts: 4,
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
        attempt_timeout: Duration::ZERO,
        max_retry_after: Duration::from_secs(10),
    }
}

#[derive(Debug, Clone)]
pub struct PatroniClient {
    http: reqwest::Client,
    bases: Vec<String>,
    retry: Backoff,
    auth: Option<(String, String)>,
    /// How long a switchover or failover may take: Patroni answers only when it is done.
    pub action_timeout: Duration,
}

impl PatroniClient {
    /// A client of the members at `bases` (`http://127.0.0.1:8008`, …), tried in order.
    pub fn new<I, S>(bases: I) -> Result<Self, PatroniError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let bases: Vec<String> = bases
            .into_iter()
            .map(|b| b.into().trim_end_matches('/').to_string())
            .collect();
        if bases.is_empty() {
            return Err(PatroniError::BadUrl(String::new(), "no URL given".into()));
        }
        for b in &bases {
            let u = reqwest::Url::parse(b)
                .map_err(|e| PatroniError::BadUrl(b.clone(), e.to_string()))?;
            if !matches!(u.scheme(), "http" | "https") {
                return Err(PatroniError::BadUrl(
                    b.clone(),
                    "scheme must be http or https".into(),
                ));
            }
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(1))
            .timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| PatroniError::BadUrl(bases.join(", "), e.to_string()))?;
        Ok(PatroniClient {
            http,
            bases,
            retry: default_retry(),
            auth: None,
            action_timeout: Duration::from_secs(30),
        })
    }

    /// The attempts and backoff (its `attempt_timeout` is ignored: an attempt is bounded by
    /// the requests' own timeouts).
    pub fn with_retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// HTTP basic credentials, for a REST API with `restapi.authentication` (Patroni asks for
    /// them on the calls that change the cluster).
    pub fn with_basic_auth(mut self, username: &str, password: &str) -> Self {
        self.auth = Some((username.to_string(), password.to_string()));
        self
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let r = self.http.request(method, url);
        match &self.auth {
            Some((u, p)) => r.basic_auth(u, Some(p)),
            None => r,
        }
    }

    pub fn bases(&self) -> &[String] {
        &self.bases
    }

    /// `GET /cluster`.
    pub async fn cluster(&self) -> Result<Cluster, PatroniError> {
        let (url, body) = self.get("/cluster").await?;
        serde_json::from_str(&body).map_err(|e| PatroniError::Decode {
            url,
            what: "GET /cluster".into(),
            cause: e.to_string(),
        })
    }

    /// The current leader, from `/cluster`.
    pub async fn primary_member(&self) -> Result<Member, PatroniError> {
        self.cluster()
            .await?
            .leader()
            .cloned()
            .ok_or(PatroniError::NoLeader)
    }

    /// `GET /history`: the cluster's timeline switches, oldest first.
    pub async fn history(&self) -> Result<Vec<TimelineSwitch>, PatroniError> {
        let (url, body) = self.get("/history").await?;
        let rows: Vec<Vec<serde_json::Value>> =
            serde_json::from_str(&body).map_err(|e| PatroniError::Decode {
                url,
                what: "GET /history".into(),
                cause: e.to_string(),
            })?;
        Ok(rows
            .into_iter()
            .map(|r| TimelineSwitch {
                timeline: r.first().and_then(|v| v.as_u64()).unwrap_or(0),
                lsn: r.get(1).and_then(|v| v.as_u64()).unwrap_or(0),
                reason: r.get(2).and_then(|v| v.as_str()).unwrap_or("").to_string(),
                at: r.get(3).and_then(|v| v.as_str()).map(str::to_string),
                new_leader: r.get(4).and_then(|v| v.as_str()).map(str::to_string),
            })
            .collect())
    }

    /// `POST /switchover`: a graceful change of leader away from `leader`, to `candidate` or
    /// to whichever member Patroni picks. Returns Patroni's answer ("Successfully switched over
    /// to …"), which arrives only once the new leader holds the lock.
    pub async fn switchover(
        &self,
        leader: &str,
        candidate: Option<&str>,
    ) -> Result<String, PatroniError> {
        let mut body = serde_json::json!({ "leader": leader });
        if let Some(c) = candidate {
            body["candidate"] = c.into();
        }
        self.post("/switchover", body).await
    }

    /// `POST /failover` to `candidate` (Patroni requires one for a failover).
    pub async fn failover(&self, candidate: &str) -> Result<String, PatroniError> {
        if candidate.is_empty() {
            return Err(PatroniError::NoCandidate(
                "a failover needs a named candidate; use a switchover to let Patroni choose".into(),
            ));
        }
        self.post("/failover", serde_json::json!({ "candidate": candidate }))
            .await
    }

    async fn get(&self, path: &str) -> Result<(String, String), PatroniError> {
        let what = format!("GET {path}");
        let policy = self.policy(READ_TIMEOUT);
        retry(&what, &policy, || self.get_once(path, &what))
            .await
            .map_err(|f| self.gave_up(f))
    }

    /// One GET over the members in order: the first success, or a status that retrying
    /// cannot change, ends it.
    async fn get_once(&self, path: &str, what: &str) -> Result<(String, String), Pass> {
        let mut wait = None;
        let mut last = None;
        for base in &self.bases {
            let url = format!("{base}{path}");
            match self.request(Method::GET, &url).send().await {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(&resp);
                    let body = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok((url, body));
                    }
                    let err = status_error(&url, what, status, &body);
                    if !(status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS) {
                        return Err(Pass {
                            err,
                            verdict: Verdict::Fatal,
                        });
                    }
                    wait = wait.max(retry_after);
                    last = Some(err);
                }
                Err(e) => last = Some(self.unreachable(e)),
            }
        }
        Err(self.pass(last, wait))
    }

    async fn post(&self, path: &str, body: serde_json::Value) -> Result<String, PatroniError> {
        let what = format!("POST {path}");
        let policy = self.policy(self.action_timeout);
        retry(&what, &policy, || self.post_once(path, &what, &body))
            .await
            .map_err(|f| self.gave_up(f))
    }

    /// One POST over the members in order. Only an answer that proves nothing was done (a
    /// refused connection, 429, "failed to write … into DCS") lets another member or attempt
    /// follow.
    async fn post_once(
        &self,
        path: &str,
        what: &str,
        body: &serde_json::Value,
    ) -> Result<String, Pass> {
        let mut wait = None;
        let mut last = None;
        for base in &self.bases {
            let url = format!("{base}{path}");
            let sent = self
                .request(Method::POST, &url)
                .timeout(self.action_timeout)
                .json(body)
                .send()
                .await;
            match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = retry_after(&resp);
                    let text = resp.text().await.unwrap_or_default();
                    if status.is_success() {
                        return Ok(text.trim().to_string());
                    }
                    let err = status_error(&url, what, status, &text);
                    let nothing_done = status == StatusCode::TOO_MANY_REQUESTS
                        || (status == StatusCode::SERVICE_UNAVAILABLE
                            && text.contains("failed to write"));
                    if !nothing_done {
                        return Err(Pass {
                            err,
                            verdict: Verdict::Fatal,
                        });
                    }
                    wait = wait.max(retry_after);
                    last = Some(err);
                }
                // Only a refused connection proves the request never arrived.
                Err(e) if e.is_connect() => last = Some(self.unreachable(e)),
                Err(e) => {
                    return Err(Pass {
                        err: self.unreachable(e),
                        verdict: Verdict::Fatal,
                    })
                }
            }
        }
        Err(self.pass(last, wait))
    }

    /// The retry policy for calls whose single requests take at most `per_request`: a pass
    /// over every member is never cut short as a stall.
    fn policy(&self, per_request: Duration) -> Backoff {
        let members = u32::try_from(self.bases.len()).unwrap_or(u32::MAX);
        Backoff {
            attempt_timeout: per_request.saturating_mul(members) + Duration::from_secs(1),
            ..self.retry
        }
    }

    fn pass(&self, last: Option<PatroniError>, wait: Option<Duration>) -> Pass {
        Pass {
            err: last.unwrap_or_else(|| PatroniError::Unreachable {
                urls: self.bases.join(", "),
                cause: "no attempt made".into(),
            }),
            verdict: Verdict::Retry(wait),
        }
    }

    fn gave_up(&self, f: Failed<Pass>) -> PatroniError {
        match f.last {
            Some(pass) => pass.err,
            None => PatroniError::Unreachable {
                urls: self.bases.join(", "),
                cause: f.error,
            },
        }
    }

    fn unreachable(&self, e: reqwest::Error) -> PatroniError {
        let cause = if e.is_timeout() {
            "timed out".to_string()
        } else {
            crate::platform::root_cause(&e)
        };
        PatroniError::Unreachable {
            urls: self.bases.join(", "),
            cause,
        }
    }
}

fn status_error(url: &str, what: &str, status: StatusCode, body: &str) -> PatroniError {
    let body: String = body.trim().chars().take(300).collect();
    PatroniError::Status {
        url: url.to_string(),
        what: what.to_string(),
        status: status.as_u16(),
        body: if body.is_empty() {
            "(no body)".into()
        } else {
            body
        },
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for APIs; it is ignored).
fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use axum::http::HeaderMap;
    use axum::routing::{get, post};

    const CLUSTER: &str = r#"{"members": [
        {"name": "n1", "role": "replica", "state": "streaming", "api_url": "http://127.0.0.1:8008/patroni",
         "host": "127.0.0.1", "port": 5441, "timeline": 2, "lag": 0},
        {"name": "n2", "role": "leader", "state": "running", "api_url": "http://127.0.0.1:8009/patroni",
         "host": "127.0.0.1", "port": 5442, "timeline": 2},
        {"name": "n3", "role": "sync_standby", "state": "streaming", "api_url": "http://127.0.0.1:8010/patroni",
         "host": "127.0.0.1", "port": 5443, "timeline": 2, "lag": "unknown"}]}"#;

    async fn serve(app: axum::Router) -> String {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://{addr}")
    }

    fn fast() -> Backoff {
        Backoff {
            attempts: 4,
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            ..default_retry()
        }
    }

    #[test]
    fn cluster_json_parses_roles_lag_and_api_base() {
        let c: Cluster = serde_json::from_str(CLUSTER).unwrap();
        let l = c.leader().unwrap();
        assert_eq!(l.name, "n2");
        assert_eq!(l.api_base().as_deref(), Some("http://127.0.0.1:8009"));
        assert_eq!(c.member("n3").unwrap().role, Role::SyncStandby);
        assert_eq!(
            c.member("n3").unwrap().lag,
            Some(Lag::Unknown("unknown".into()))
        );
        assert_eq!(c.member("n1").unwrap().lag, Some(Lag::Bytes(0)));
        assert_eq!(c.candidates().len(), 2);
    }

    #[tokio::test]
    async fn reads_retry_on_503_and_honour_retry_after() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/cluster",
            get(move || {
                let h = h.clone();
                async move {
                    let mut headers = HeaderMap::new();
                    if h.fetch_add(1, Ordering::SeqCst) < 2 {
                        headers.insert("retry-after", "0".parse().unwrap());
                        (StatusCode::SERVICE_UNAVAILABLE, headers, "busy".to_string())
                    } else {
                        (StatusCode::OK, headers, CLUSTER.to_string())
                    }
                }
            }),
        );
        let base = serve(app).await;
        let c = PatroniClient::new([base]).unwrap().with_retry(fast());
        assert_eq!(c.primary_member().await.unwrap().name, "n2");
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_unconfirmed_switchover_is_not_retried() {
        let hits = Arc::new(AtomicUsize::new(0));
        let h = hits.clone();
        let app = axum::Router::new().route(
            "/switchover",
            post(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    (StatusCode::SERVICE_UNAVAILABLE, "Switchover status unknown")
                }
            }),
        );
        let base = serve(app).await;
        let c = PatroniClient::new([base]).unwrap().with_retry(fast());
        let e = c.switchover("n2", None).await.unwrap_err().to_string();
        assert!(e.contains("503") && e.contains("status unknown"), "{e}");
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_down_api_is_a_clear_error() {
        let (_closed, addr) = crate::testing::refusing_addr();
        let c = PatroniClient::new([format!("http://{addr}")])
            .unwrap()
            .with_retry(fast());
        let e = c.cluster().await.unwrap_err().to_string();
        assert!(e.starts_with("patroni REST API unreachable"), "{e}");
        assert!(e.contains("refused"), "{e}");
        assert!(c
            .failover("")
            .await
            .unwrap_err()
            .to_string()
            .contains("no candidate"));
    }
}
