//! `prometheus` probe: a PromQL instant query (`/api/v1/query`) whose value must meet a
//! threshold — business signals such as checkouts per minute, not only health checks, so a
//! service that answers 200 while nobody can pay is caught.
//!
//! Guarantees: a check passes only when the server answered a successful instant query whose
//! considered values all meet the threshold. Everything else is a failed sample with its
//! reason: an empty result (no series: the metric is gone or stale), NaN or ±Inf, several
//! series where one was expected (`series: one`, the default), a range vector or string
//! result, a query error, an HTTP error, an unreadable body, a timeout. Credentials
//! (`bearer-token`, `basic-auth`, sensitive headers) are marked sensitive on the request and
//! registered with the central redactor, so no reason, log or report carries them.
//!
//! The HTTP side is the general client of the `http` probe ([`super::http::client`]).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, Url};
use serde::de::IgnoredAny;
use serde::Deserialize;

use super::http::{client, exchange, header_map, MAX_BODY};
use super::Reason;
use crate::experiment::{PrometheusAuth, PrometheusProbe, SeriesRule, Threshold};

/// The longest piece of a server's text quoted in a reason.
const QUOTE: usize = 200;

pub struct PrometheusChecker {
    client: Client,
    endpoint: Url,
    post: bool,
    query: String,
    headers: HeaderMap,
    auth: Option<PrometheusAuth>,
    expect: Threshold,
    series: SeriesRule,
    timeout: Duration,
}

impl PrometheusChecker {
    pub fn new(spec: &PrometheusProbe) -> Result<Self, super::BuildError> {
        let endpoint = Url::parse(&format!("{}/api/v1/query", spec.url.trim_end_matches('/')))
            .map_err(|e| super::BuildError::Url(Box::new(e)))?;
        let headers = header_map(&spec.headers)?;
        Ok(PrometheusChecker {
            client: client(spec.timeout)?,
            endpoint,
            post: spec.method == "POST",
            query: spec.query.clone(),
            headers,
            auth: spec.auth.clone(),
            expect: spec.expect,
            series: spec.series,
            timeout: spec.timeout,
        })
    }

    pub async fn check(&mut self) -> Result<(), Reason> {
        // The server stops evaluating at our timeout too, so a slow query does not keep
        // costing it after we gave up.
        let timeout = format!("{:.3}", self.timeout.as_secs_f64());
        let params = [
            ("query", self.query.as_str()),
            ("timeout", timeout.as_str()),
        ];
        let req = if self.post {
            self.client.post(self.endpoint.clone()).form(&params)
        } else {
            self.client.get(self.endpoint.clone()).query(&params)
        };
        let req = match &self.auth {
            Some(PrometheusAuth::Bearer(t)) => req.bearer_auth(t),
            Some(PrometheusAuth::Basic { username, password }) => {
                req.basic_auth(username, Some(password))
            }
            None => req,
        };
        let (status, body) = exchange(req.headers(self.headers.clone()), self.timeout).await?;
        if body.len() >= MAX_BODY {
            return Err(format!(
                "status {status}: the answer is larger than {} MiB; aggregate the query",
                MAX_BODY >> 20
            ));
        }
        judge(status, &body, self.expect, self.series)
    }
}

/// The body of every `/api/v1/*` answer.
#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<QueryData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum QueryData {
    Vector(Vec<Series>),
    Scalar(Point),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    /// Absent for a native histogram sample (which has `histogram` instead).
    #[serde(default)]
    value: Option<Point>,
}

/// `[unix time, "value"]`: Prometheus sends numbers as strings so NaN and ±Inf survive JSON.
type Point = (IgnoredAny, String);

/// Decides one answer of the query API: pass, or the reason it failed.
fn judge(status: u16, body: &str, expect: Threshold, rule: SeriesRule) -> Result<(), Reason> {
    let parsed: ApiResponse = match serde_json::from_str(body) {
        Ok(r) => r,
        Err(e) if (200..300).contains(&status) => {
            return Err(format!(
                "status {status}: not a Prometheus query answer ({e})"
            ))
        }
        Err(_) => return Err(format!("status {status}: {}", quote(body))),
    };
    if parsed.status != "success" {
        let kind = parsed.error_type.as_deref().unwrap_or("error");
        let what = parsed.error.as_deref().unwrap_or("no error message");
        return Err(format!("query error ({kind}): {}", quote(what)));
    }
    if !(200..300).contains(&status) {
        return Err(format!("status {status}"));
    }
    let values: Vec<(String, &str)> = match &parsed.data {
        None => return Err("the answer has no data".into()),
        Some(QueryData::Scalar(p)) => vec![(String::new(), p.1.as_str())],
        Some(QueryData::Matrix(_)) => {
            return Err(
                "the query returns a range vector; an instant query needs a number (e.g. rate(x[1m]), not x[1m])"
                    .into(),
            )
        }
        Some(QueryData::String(_)) => return Err("the query returns a string, not a number".into()),
        Some(QueryData::Vector(series)) => {
            let mut out = Vec::with_capacity(series.len());
            for s in series {
                let Some(p) = &s.value else {
                    return Err(format!(
                        "{} is a native histogram; query a number from it (e.g. histogram_quantile)",
                        labels(&s.metric)
                    ));
                };
                out.push((labels(&s.metric), p.1.as_str()));
            }
            out
        }
    };
    match (values.len(), rule) {
        (0, _) => {
            return Err(
                "no data: the query returned no series (metric missing, stale or filtered out)"
                    .into(),
            )
        }
        (1, _) | (_, SeriesRule::All) => {}
        (n, SeriesRule::One) => {
            return Err(format!(
                "{n} series, expected one: aggregate the query (sum, max, …) or set `series: all`"
            ))
        }
    }
    let mut failing = values.iter().filter_map(|(series, text)| {
        let prefix = if series.is_empty() || values.len() == 1 {
            String::new()
        } else {
            format!("{series} ")
        };
        match parse_value(text) {
            None => Some(format!("{prefix}value {} is not a number", quote(text))),
            Some(v) if v.is_nan() => Some(format!("{prefix}value NaN (want {expect})")),
            Some(v) if v.is_infinite() => Some(format!(
                "{prefix}value {text} is not finite (want {expect})"
            )),
            Some(v) if !expect.holds(v) => Some(format!("{prefix}value {text} (want {expect})")),
            Some(_) => None,
        }
    });
    let Some(first) = failing.next() else {
        return Ok(());
    };
    let more = failing.count();
    Err(if more == 0 {
        first
    } else {
        format!("{first}; {more} more series fail")
    })
}

/// Prometheus's float text: Go's `strconv.FormatFloat`, with `NaN`, `+Inf` and `-Inf`.
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        t => t.parse::<f64>().ok().filter(|v| v.is_finite()),
    }
}

/// `{instance="a", job="b"}` as PromQL writes a series.
fn labels(metric: &BTreeMap<String, String>) -> String {
    let name = metric.get("__name__").map(String::as_str).unwrap_or("");
    let rest: Vec<String> = metric
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect();
    if rest.is_empty() && !name.is_empty() {
        return name.to_string();
    }
    quote(&format!("{name}{{{}}}", rest.join(", ")))
}

/// At most [`QUOTE`] characters of `s`, on one line.
fn quote(s: &str) -> String {
    let one_line = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= QUOTE {
        one_line
    } else {
        let cut: String = one_line.chars().take(QUOTE).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::check::threshold;

    fn at_least_50(body: &str) -> Result<(), Reason> {
        judge(200, body, threshold(">= 50").unwrap(), SeriesRule::One)
    }

    fn vector(values: &[(&str, &str)]) -> String {
        let series: Vec<String> = values
            .iter()
            .map(|(instance, v)| {
                format!(r#"{{"metric":{{"instance":"{instance}"}},"value":[1763900000.5,"{v}"]}}"#)
            })
            .collect();
        format!(
            r#"{{"status":"success","data":{{"resultType":"vector","result":[{}]}}}}"#,
            series.join(",")
        )
    }

    #[test]
    fn one_value_meeting_the_threshold_passes() {
        assert_eq!(at_least_50(&vector(&[("a", "61.5")])), Ok(()));
        let scalar =
            r#"{"status":"success","data":{"resultType":"scalar","result":[1763900000.5,"50"]}}"#;
        assert_eq!(at_least_50(scalar), Ok(()));
    }

    #[test]
    fn values_that_are_not_healthy_numbers_fail_with_the_reason() {
        assert_eq!(
            at_least_50(&vector(&[("a", "12")])),
            Err("value 12 (want >= 50)".into())
        );
        assert_eq!(
            at_least_50(&vector(&[("a", "NaN")])),
            Err("value NaN (want >= 50)".into())
        );
        assert_eq!(
            at_least_50(&vector(&[("a", "+Inf")])),
            Err("value +Inf is not finite (want >= 50)".into())
        );
        let r = at_least_50(&vector(&[])).unwrap_err();
        assert!(r.starts_with("no data"), "{r}");
    }

    #[test]
    fn several_series_fail_unless_every_series_is_asked_for() {
        let two = vector(&[("a", "60"), ("b", "70")]);
        let r = at_least_50(&two).unwrap_err();
        assert!(r.starts_with("2 series, expected one"), "{r}");
        let all = |body: &str| judge(200, body, threshold(">= 50").unwrap(), SeriesRule::All);
        assert_eq!(all(&two), Ok(()));
        assert_eq!(
            all(&vector(&[("a", "60"), ("b", "7"), ("c", "NaN")])),
            Err(r#"{instance="b"} value 7 (want >= 50); 1 more series fail"#.into())
        );
        assert!(all(&vector(&[])).unwrap_err().starts_with("no data"));
    }

    #[test]
    fn errors_and_other_result_types_fail() {
        let bad = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected <op:*>"}"#;
        assert_eq!(
            judge(400, bad, threshold("> 0").unwrap(), SeriesRule::One),
            Err(r#"query error (bad_data): invalid parameter "query": 1:5: parse error: unexpected <op:*>"#.into())
        );
        let html = "<html><body>502 Bad Gateway</body></html>";
        assert_eq!(
            judge(502, html, threshold("> 0").unwrap(), SeriesRule::One),
            Err("status 502: <html><body>502 Bad Gateway</body></html>".into())
        );
        let r = judge(200, "not json", threshold("> 0").unwrap(), SeriesRule::One).unwrap_err();
        assert!(
            r.starts_with("status 200: not a Prometheus query answer"),
            "{r}"
        );
        let matrix = r#"{"status":"success","data":{"resultType":"matrix","result":[{"metric":{},"values":[[1,"1"]]}]}}"#;
        let r = judge(200, matrix, threshold("> 0").unwrap(), SeriesRule::One).unwrap_err();
        assert!(r.contains("range vector"), "{r}");
    }
}
