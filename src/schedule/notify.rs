//! Webhook notifications of scheduled drills: start, finish (outcome, TTR), abort, a
//! missed objective, and a fault left in place (a revert that failed for good). Two bodies: Slack-compatible (`{"text": ...}`) and a generic JSON
//! object. A failure to notify is logged and never fails or delays a drill.

use std::time::Duration;

use serde::Serialize;

use crate::report::record::Outcome;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `{"text": "..."}`: Slack incoming webhooks and the many tools that copy them.
    Slack,
    /// The event as a JSON object.
    Json,
}

#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub format: Format,
}

impl Webhook {
    /// The URL as logs show it: scheme and host only. A webhook's path is its bearer secret
    /// (a Slack incoming webhook's is the whole credential), so it is never written out.
    pub fn shown(&self) -> String {
        match self.url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.split(['/', '?', '#']).next().unwrap_or("");
                let host = host.rsplit('@').next().unwrap_or(host);
                format!("{scheme}://{host}/***")
            }
            None => "***".to_string(),
        }
    }
}

/// Where a webhook URL comes from: the environment or a file, so that it never appears in a
/// process's arguments (`ps` shows those to every local user). The value is registered as a
/// secret, masked wherever firedrill writes.
pub fn read_url(source: &UrlSource) -> Result<String, UrlError> {
    let url = match source {
        UrlSource::Env(name) => {
            std::env::var(name).map_err(|_| UrlError::Unset { name: name.clone() })?
        }
        UrlSource::File(path) => std::fs::read_to_string(path)
            .map_err(|source| UrlError::Read {
                path: path.clone(),
                source,
            })?
            .trim()
            .to_string(),
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(UrlError::NotHttp {
            from: source.describe(),
        });
    }
    crate::safety::redact::register(&url);
    if let Some((_, rest)) = url.split_once("://") {
        if let Some((_, path)) = rest.split_once('/') {
            crate::safety::redact::register(path);
        }
    }
    Ok(url)
}

/// Why a webhook URL could not be read. Never holds the URL itself (a secret).
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("environment variable `{name}` (a webhook URL) is not set")]
    Unset { name: String },
    #[error("cannot read the webhook URL from {}", path.display())]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the webhook URL from {from} is not an http(s) URL")]
    NotHttp { from: String },
}

/// Where notifications go: the same flags for `schedule` and `run` (a CronJob's drill notifies
/// as the daemon's would).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookArgs {
    /// Post Slack-compatible notifications (`{"text": ...}`) to the URL in this environment
    /// variable (repeatable). A webhook's URL is a secret: it is masked everywhere.
    #[arg(long, value_name = "VAR")]
    pub slack_webhook_env: Vec<String>,
    /// Same, the URL read from this file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub slack_webhook_file: Vec<std::path::PathBuf>,
    /// Post each event as a JSON object to the URL in this environment variable (repeatable).
    #[arg(long, value_name = "VAR")]
    pub webhook_env: Vec<String>,
    /// Same, the URL read from this file (repeatable).
    #[arg(long, value_name = "FILE")]
    pub webhook_file: Vec<std::path::PathBuf>,
    /// A Slack-compatible webhook URL given on the command line (repeatable). Every local user
    /// sees it in `ps`: prefer --slack-webhook-env or --slack-webhook-file.
    #[arg(long, value_name = "URL")]
    pub slack_webhook: Vec<String>,
    /// A JSON webhook URL given on the command line (repeatable); prefer --webhook-env.
    #[arg(long, value_name = "URL")]
    pub webhook: Vec<String>,
}

/// An environment variable or a file that holds a webhook URL.
#[derive(Debug, Clone)]
pub enum UrlSource {
    Env(String),
    File(std::path::PathBuf),
}

impl UrlSource {
    fn describe(&self) -> String {
        match self {
            UrlSource::Env(n) => format!("environment variable `{n}`"),
            UrlSource::File(p) => p.display().to_string(),
        }
    }
}

/// What happened, as sent in the generic JSON body.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    Started {
        experiment: String,
        environment: String,
    },
    Finished {
        experiment: String,
        environment: String,
        outcome: Outcome,
        ttr_seconds: Option<f64>,
    },
    Aborted {
        experiment: String,
        environment: String,
    },
    ObjectiveMissed {
        experiment: String,
        environment: String,
        ttr_seconds: Option<f64>,
    },
    /// A revert still failed after its retries: the system is left broken.
    FaultLeftInPlace {
        experiment: String,
        environment: String,
        faults: Vec<String>,
    },
}

impl Event {
    /// The events a finished run sends: always `finished`, then `aborted` or
    /// `objective-missed` when that is what happened.
    pub fn for_finished(run: &super::promotion::RunSummary) -> Vec<Event> {
        let (experiment, environment) = (run.experiment.clone(), run.environment.clone());
        let ttr_seconds = run.ttr.map(|d| d.as_secs_f64());
        let mut out = vec![Event::Finished {
            experiment: experiment.clone(),
            environment: environment.clone(),
            outcome: run.outcome,
            ttr_seconds,
        }];
        if !run.faults_left.is_empty() {
            out.push(Event::FaultLeftInPlace {
                experiment,
                environment,
                faults: run.faults_left.clone(),
            });
            return out;
        }
        match run.outcome {
            Outcome::Aborted => out.push(Event::Aborted {
                experiment,
                environment,
            }),
            Outcome::Failed => out.push(Event::ObjectiveMissed {
                experiment,
                environment,
                ttr_seconds,
            }),
            Outcome::Passed | Outcome::Inconclusive => {}
        }
        out
    }

    pub fn text(&self) -> String {
        let ttr = |t: &Option<f64>| t.map_or("not recovered".into(), |s| format!("TTR {s:.1}s"));
        match self {
            Event::Started {
                experiment,
                environment,
            } => format!("firedrill: drill `{experiment}` started in {environment}"),
            Event::Finished {
                experiment,
                environment,
                outcome,
                ttr_seconds,
            } => format!(
                "firedrill: drill `{experiment}` in {environment} {outcome} ({})",
                ttr(ttr_seconds)
            ),
            Event::Aborted {
                experiment,
                environment,
            } => format!(
                "firedrill: drill `{experiment}` in {environment} was aborted; faults reverted"
            ),
            Event::FaultLeftInPlace {
                experiment,
                environment,
                faults,
            } => format!(
                "firedrill: drill `{experiment}` in {environment} failed: fault left in place: {}; restore it by hand or run `firedrill recover`",
                faults.join("; ")
            ),
            Event::ObjectiveMissed {
                experiment,
                environment,
                ttr_seconds,
            } => format!(
                "firedrill: drill `{experiment}` in {environment} missed its recovery objective ({})",
                ttr(ttr_seconds)
            ),
        }
    }
}

pub struct Notifier {
    hooks: Vec<Webhook>,
    client: reqwest::Client,
}

impl Notifier {
    pub fn new(hooks: Vec<Webhook>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Notifier { hooks, client }
    }

    /// Sends to every webhook; failures are logged, never returned.
    pub async fn send(&self, event: &Event) {
        for hook in &self.hooks {
            let body = match hook.format {
                Format::Slack => serde_json::json!({ "text": event.text() }),
                Format::Json => serde_json::to_value(event).unwrap_or_default(),
            };
            match self.client.post(&hook.url).json(&body).send().await {
                Ok(r) if r.status().is_success() => {}
                Ok(r) => {
                    tracing::warn!(url = hook.shown(), status = %r.status(), "webhook refused the notification")
                }
                // reqwest's error names the URL it failed on: without it.
                Err(e) => tracing::warn!(
                    url = hook.shown(),
                    error = %e.without_url(),
                    "cannot notify webhook"
                ),
            }
        }
    }
}
