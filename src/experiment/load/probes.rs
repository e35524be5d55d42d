//! The `probes:` section: what says the system is healthy, one checker kind per entry.

use super::*;

const PROBE_KINDS: &[&str] = &[
    "http",
    "tcp",
    "command",
    "kubernetes",
    "postgres",
    "prometheus",
];
const PROBE_COMMON: &[&str] = &["every", "every-during", "after"];
/// Default and minimum sampling interval of a `prometheus` probe (see `probes`).
const PROMETHEUS_EVERY: Duration = Duration::from_secs(5);
const PROMETHEUS_MIN_EVERY: Duration = Duration::from_secs(1);
const PROMETHEUS_WHY: &str = "each check costs the Prometheus server a query evaluation, and its data changes only once per scrape interval";
const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"];

impl Builder<'_, '_> {
    pub(super) fn probes(&mut self, root: &Node) -> Vec<ProbeSpec> {
        let mut out = Vec::new();
        let list = self.named_entries(root, "probes", "probe");
        if list.is_empty() {
            if let Some(n) = root.get("probes") {
                if matches!(&n.kind, Kind::Null) || n.entries().is_some_and(<[_]>::is_empty) {
                    self.cx.error(
                        n.span,
                        "probes",
                        "at least one probe is needed to measure recovery",
                        Some(
                            "add e.g. `web: { http: { url: \"http://127.0.0.1:8080/\" } }`".into(),
                        ),
                    );
                }
            }
        }
        for (name, _, node, path) in list {
            let Some(split) = split_kind(
                &mut self.cx,
                node,
                &path,
                "probe",
                PROBE_KINDS,
                PROBE_COMMON,
            ) else {
                continue;
            };
            let bpath = child_path(&path, split.kind);
            let before = self.cx.diags.len();
            let kind = match split.kind {
                "http" => self.http_probe(split.body, &bpath).map(ProbeKind::Http),
                "tcp" => self.tcp_probe(split.body, &bpath).map(ProbeKind::Tcp),
                "command" => self
                    .command_probe(split.body, &bpath)
                    .map(ProbeKind::Command),
                "postgres" => self
                    .postgres_probe(split.body, &bpath)
                    .map(ProbeKind::Postgres),
                "prometheus" => self
                    .prometheus_probe(split.body, &bpath)
                    .map(ProbeKind::Prometheus),
                _ => self.kube_probe(split.body, &bpath),
            };
            // A query costs the Prometheus server an evaluation and answers from samples
            // scraped seconds apart: polling it faster than once a second adds load, not news.
            let (every_default, floor, why) = match split.kind {
                "prometheus" => (PROMETHEUS_EVERY, PROMETHEUS_MIN_EVERY, PROMETHEUS_WHY),
                _ => (Duration::from_secs(1), MS, ""),
            };
            let limit = |default| {
                let l = Limit::new(default, floor, HOUR);
                if why.is_empty() {
                    l
                } else {
                    l.min_help(why)
                }
            };
            let every = self.duration_key(node, &path, "every", limit(every_default));
            let default_during = (every / 10).max(floor).min(every);
            // An http or tcp check is one loopback-cheap round trip: while the system is
            // disturbed such a probe may check back to back (`every-during: 0s`), which brackets
            // the recovery by one round trip, at the price of a busy core while it fails.
            let during_limit = match split.kind {
                "http" | "tcp" => Limit::new(default_during, Duration::ZERO, HOUR),
                "prometheus" => limit(default_during),
                _ => limit(default_during).min_help(
                    "only http and tcp probes may check back to back (`0s`); write e.g. `1ms`",
                ),
            };
            let during = self.duration_key(node, &path, "every-during", during_limit);
            if node.get("every-during").is_some() && !every.is_zero() && during > every {
                self.cx.error(
                    at(node, "every-during"),
                    &child_path(&path, "every-during"),
                    format!(
                        "every-during ({}) must not be longer than every ({})",
                        check::format_duration(during),
                        check::format_duration(every)
                    ),
                    Some("every-during is the faster sampling interval used while the system is disturbed".into()),
                );
            }
            if let (Some(kind), true) = (kind, self.cx.diags.len() == before) {
                self.after_refs(name, node, &path);
                out.push(ProbeSpec {
                    name: name.to_string(),
                    kind,
                    every,
                    every_during: during,
                    watches: None,
                });
            }
        }
        out
    }

    /// Checks an `http(s)://host…` URL at key `url` of mapping `n`.
    pub(super) fn http_url(&mut self, n: &Node, path: &str, url: &str, example: &str) {
        let url_path = child_path(path, "url");
        match reqwest::Url::parse(url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => {}
            _ if !url.contains("://") => self.cx.error(
                at(n, "url"),
                &url_path,
                format!("url `{}` has no scheme", url),
                Some(format!(
                    "start it with `http://` or `https://`, e.g. `http://{}`",
                    url
                )),
            ),
            Ok(u) if !matches!(u.scheme(), "http" | "https") => self.cx.error(
                at(n, "url"),
                &url_path,
                format!("url `{}` must use http or https, not `{}`", url, u.scheme()),
                None,
            ),
            Ok(_) => self.cx.error(
                at(n, "url"),
                &url_path,
                format!("url `{}` has no host", url),
                None,
            ),
            Err(e) => self.cx.error(
                at(n, "url"),
                &url_path,
                format!("invalid url `{}`: {e}", url),
                Some(format!("write a full url such as `{example}`")),
            ),
        }
    }

    /// Checks header names and values at key `headers` of mapping `n`.
    pub(super) fn headers(&mut self, n: &Node, path: &str, headers: &[(String, String)]) {
        let hn = n.get("headers").unwrap_or(n);
        let hpath = child_path(path, "headers");
        for (name, value) in headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                // Looked up only for the error: a linear search per header is quadratic.
                let span = hn
                    .entries()
                    .and_then(|es| es.iter().find(|e| &e.key == name))
                    .map_or(hn.span, |e| e.key_span);
                self.cx.error(
                    span,
                    &hpath,
                    format!("invalid header name `{name}`"),
                    Some("header names are letters, digits and `-`, without spaces or `:`".into()),
                );
            } else if reqwest::header::HeaderValue::from_str(value).is_err() {
                self.cx.error(
                    at(hn, name),
                    &child_path(&hpath, name),
                    format!("invalid value for header `{name}`"),
                    Some("header values cannot contain line breaks or control characters".into()),
                );
            }
        }
    }

    /// An http probe's `ca-file`: relative to the experiment's folder, read and parsed now, so
    /// that a missing or empty file is an error at its key rather than a failing probe later.
    pub(super) fn ca_file(
        &mut self,
        n: &Node,
        path: &str,
        url: &str,
        file: &str,
    ) -> Option<PathBuf> {
        let key_path = child_path(path, "ca-file");
        let error = |cx: &mut Ctx, message: String, help: &str| {
            cx.error(at(n, "ca-file"), &key_path, message, Some(help.into()))
        };
        if !url.starts_with("https://") {
            error(
                &mut self.cx,
                "`ca-file` applies to https urls".into(),
                "an http url has no certificate to verify; remove `ca-file` or use https",
            );
            return None;
        }
        let resolved = self.dir.join(file);
        let help = "give a PEM file of CA certificates, relative to the experiment file";
        match std::fs::read(&resolved) {
            Err(e) => error(
                &mut self.cx,
                format!("cannot read CA file `{file}`: {e}"),
                help,
            ),
            Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
                Ok(certs) if !certs.is_empty() => return Some(resolved),
                _ => error(
                    &mut self.cx,
                    format!("no PEM certificate in CA file `{file}`"),
                    help,
                ),
            },
        }
        None
    }

    pub(super) fn http_probe(&mut self, n: &Node, path: &str) -> Option<HttpProbe> {
        let raw: RawHttpProbe = self.cx.de(n, path)?;
        self.http_url(n, path, &raw.url, "http://127.0.0.1:8080/healthz");
        let method = match raw.method {
            None => "GET".to_string(),
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                if !HTTP_METHODS.contains(&upper.as_str()) {
                    self.cx.error(
                        at(n, "method"),
                        &child_path(path, "method"),
                        format!("unknown http method `{m}`"),
                        suggest(&upper, HTTP_METHODS.iter().copied()),
                    );
                }
                upper
            }
        };
        self.headers(n, path, &raw.headers.0);
        let mut expect_status = Vec::new();
        for s in raw.expect_status.map(|s| s.0).unwrap_or_default() {
            if (100..=599).contains(&s) {
                expect_status.push(s as u16);
            } else {
                self.cx.error(
                    at(n, "expect-status"),
                    &child_path(path, "expect-status"),
                    format!("{s} is not an http status code"),
                    Some("status codes are between 100 and 599".into()),
                );
            }
        }
        let timeout = self.opt_duration(
            n,
            path,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(1), MS, DAY),
        );
        let max_latency = raw
            .max_latency
            .map(|d| self.opt_duration(n, path, "max-latency", Some(d), Limit::new(d.0, MS, DAY)));
        if let Some(ml) = max_latency {
            if ml > timeout {
                self.cx.error(
                    at(n, "max-latency"),
                    &child_path(path, "max-latency"),
                    format!(
                        "max-latency ({}) is longer than timeout ({})",
                        check::format_duration(ml),
                        check::format_duration(timeout)
                    ),
                    Some("requests are cut off at the timeout; raise `timeout` or lower `max-latency`".into()),
                );
            }
        }
        let ca_file = raw
            .ca_file
            .and_then(|f| self.ca_file(n, path, &raw.url, &f));
        Some(HttpProbe {
            url: raw.url,
            method,
            headers: raw.headers.0,
            expect_status,
            body_contains: raw.body_contains,
            timeout,
            max_latency,
            ca_file,
        })
    }

    pub(super) fn prometheus_probe(&mut self, n: &Node, path: &str) -> Option<PrometheusProbe> {
        let raw: RawPrometheusProbe = self.cx.de(n, path)?;
        self.http_url(n, path, &raw.url, "http://127.0.0.1:9090");
        if let Ok(u) = reqwest::Url::parse(&raw.url) {
            let p = u.path().trim_end_matches('/');
            if p.ends_with("/api/v1/query") || p.ends_with("/api/v1/query_range") {
                let base = &raw.url[..raw.url.find("/api/v1/").unwrap_or(raw.url.len())];
                self.cx.error(
                    at(n, "url"),
                    &child_path(path, "url"),
                    format!("url `{}` includes the API path", raw.url),
                    Some(format!(
                        "give the server's base url, `{base}`: firedrill appends `/api/v1/query`"
                    )),
                );
            } else if u.query().is_some() {
                self.cx.error(
                    at(n, "url"),
                    &child_path(path, "url"),
                    format!("url `{}` has a query string", raw.url),
                    Some("give the server's base url; the PromQL goes in `query`".into()),
                );
            }
        }
        if raw.query.trim().is_empty() {
            self.cx.error(
                at(n, "query"),
                &child_path(path, "query"),
                "`query` is empty",
                Some(
                    "write a PromQL expression, e.g. `sum(rate(checkouts_total[1m])) * 60`".into(),
                ),
            );
        }
        let method = match raw.method {
            None => "GET".to_string(),
            Some(m) => {
                let upper = m.to_ascii_uppercase();
                if upper != "GET" && upper != "POST" {
                    self.cx.error(
                        at(n, "method"),
                        &child_path(path, "method"),
                        format!("method `{m}` cannot send a Prometheus query"),
                        Some(
                            "use `GET` (the default) or `POST` (a form body, for long queries)"
                                .into(),
                        ),
                    );
                }
                upper
            }
        };
        self.headers(n, path, &raw.headers.0);
        if let Some((name, _)) = raw
            .headers
            .0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        {
            if raw.bearer_token.is_some() || raw.basic_auth.is_some() {
                self.cx.error(
                    at(n.get("headers").unwrap_or(n), name),
                    &child_path(&child_path(path, "headers"), name),
                    "an `Authorization` header and `bearer-token`/`basic-auth` are both set",
                    Some("keep one of them".into()),
                );
            }
        }
        let auth = match (raw.bearer_token, raw.basic_auth) {
            (Some(_), Some(_)) => {
                self.cx.error(
                    at(n, "basic-auth"),
                    &child_path(path, "basic-auth"),
                    "`bearer-token` and `basic-auth` are both set",
                    Some("a request carries one kind of credentials; keep one of them".into()),
                );
                None
            }
            (Some(token), None) => {
                if token.trim().is_empty() {
                    self.cx.error(
                        at(n, "bearer-token"),
                        &child_path(path, "bearer-token"),
                        "`bearer-token` is empty",
                        Some("e.g. `bearer-token: \"${env:PROMETHEUS_TOKEN}\"`".into()),
                    );
                }
                Some(PrometheusAuth::Bearer(token))
            }
            (None, Some(b)) => Some(PrometheusAuth::Basic {
                username: b.username,
                password: b.password,
            }),
            (None, None) => None,
        };
        let timeout = self.opt_duration(
            n,
            path,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(2), MS, Duration::from_secs(300)),
        );
        Some(PrometheusProbe {
            url: raw.url,
            query: raw.query,
            expect: raw.expect.0,
            series: match raw.series {
                None | Some(RawSeries::One) => SeriesRule::One,
                Some(RawSeries::All) => SeriesRule::All,
            },
            method,
            headers: raw.headers.0,
            auth,
            timeout,
        })
    }

    pub(super) fn postgres_probe(
        &mut self,
        n: &Node,
        path: &str,
    ) -> Option<crate::experiment::model::postgres::PostgresProbeSpec> {
        use crate::experiment::model::postgres::{PostgresMode, PostgresProbeSpec};
        let spec: PostgresProbeSpec = self.cx.de(n, path)?;
        if spec.dsn.trim().is_empty() {
            self.cx.error(
                at(n, "dsn"),
                &child_path(path, "dsn"),
                "`dsn` is empty",
                Some("e.g. `host=127.0.0.1,127.0.0.1 port=5441,5442 user=postgres dbname=postgres target_session_attrs=read-write`".into()),
            );
        }
        if let Err(e) = crate::experiment::model::postgres::split_tls(&spec.dsn) {
            self.cx.error(
                at(n, "dsn"),
                &child_path(path, "dsn"),
                e,
                Some("TLS is rustls with the certificate verified; `sslrootcert=FILE` names the trusted roots (else the system's)".into()),
            );
        }
        if let PostgresMode::Write { rate_hz, .. } = &spec.mode {
            if !(rate_hz.is_finite() && *rate_hz > 0.0 && *rate_hz <= 1000.0) {
                self.cx.error(
                    at(n, "mode"),
                    &child_path(path, "mode"),
                    format!("rate-hz must be more than 0 and at most 1000, not {rate_hz}"),
                    Some("a writer at 20 to 100 writes per second brackets an outage well".into()),
                );
            }
        }
        if spec.timeout.is_zero() || spec.timeout > DAY {
            self.cx.error(
                at(n, "timeout"),
                &child_path(path, "timeout"),
                "timeout must be between 1ms and 24h",
                None,
            );
        }
        Some(spec)
    }

    pub(super) fn tcp_probe(&mut self, n: &Node, path: &str) -> Option<TcpProbe> {
        let raw: RawTcpProbe = self.cx.de(n, path)?;
        let valid = raw.address.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !valid {
            self.cx.error(
                at(n, "address"),
                &child_path(path, "address"),
                format!("invalid address `{}`", raw.address),
                Some("write host:port, e.g. `127.0.0.1:5432` or `db.internal:5432`".into()),
            );
        }
        let timeout = self.opt_duration(
            n,
            path,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(1), MS, DAY),
        );
        Some(TcpProbe {
            address: raw.address,
            timeout,
        })
    }

    pub(super) fn command_probe(&mut self, n: &Node, path: &str) -> Option<CommandProbe> {
        let raw: RawCommandProbe = self.cx.de(n, path)?;
        self.argv(n, path, "run", &raw.run);
        let timeout = self.opt_duration(
            n,
            path,
            "timeout",
            raw.timeout,
            Limit::new(Duration::from_secs(5), MS, DAY),
        );
        Some(CommandProbe {
            argv: raw.run,
            timeout,
        })
    }

    pub(super) fn kube_probe(&mut self, n: &Node, path: &str) -> Option<ProbeKind> {
        let raw: RawKubeProbe = self.cx.de(n, path)?;
        if let Some(sel) = &raw.nodes {
            let workload = [
                ("deployment", raw.deployment.is_some()),
                ("statefulset", raw.statefulset.is_some()),
                ("replicaset", raw.replicaset.is_some()),
            ]
            .into_iter()
            .find(|(_, set)| *set);
            if let Some((key, _)) = workload {
                self.cx.error(
                    at(n, key),
                    &child_path(path, key),
                    "a kubernetes probe watches nodes or one workload, not both",
                    Some("split it into two probes".into()),
                );
                return None;
            }
            let selector = if sel == "all" {
                String::new()
            } else {
                sel.clone()
            };
            if !selector.is_empty() {
                if let Err(inv) = check::label_selector(&selector) {
                    self.cx
                        .invalid(at(n, "nodes"), &child_path(path, "nodes"), inv);
                    return None;
                }
            }
            let ready = self.readiness(n, path, raw.ready, "nodes")?;
            return Some(ProbeKind::KubeNodes(KubeNodesProbe { selector, ready }));
        }
        let given: Vec<(&str, &String)> = [
            ("deployment", raw.deployment.as_ref()),
            ("statefulset", raw.statefulset.as_ref()),
            ("replicaset", raw.replicaset.as_ref()),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect();
        let (key, value) = match given.as_slice() {
            [one] => *one,
            [] => {
                self.cx.error(
                    n.span,
                    path,
                    "a kubernetes probe needs one of `deployment`, `statefulset`, `replicaset` or `nodes`",
                    Some("e.g. `kubernetes: { deployment: shop/checkout, ready: all }` or `kubernetes: { nodes: all, ready: all }`".into()),
                );
                return None;
            }
            [_, (second, _), ..] => {
                self.cx.error(
                    at(n, second),
                    &child_path(path, second),
                    "a kubernetes probe watches exactly one workload",
                    Some("split it into two probes".into()),
                );
                return None;
            }
        };
        let kind = match key {
            "deployment" => WorkloadKind::Deployment,
            "statefulset" => WorkloadKind::StatefulSet,
            _ => WorkloadKind::ReplicaSet,
        };
        let Some((ns, name)) = value.split_once('/') else {
            self.cx.error(
                at(n, key),
                &child_path(path, key),
                format!("`{value}` must be written as NAMESPACE/NAME"),
                Some(format!("e.g. `{key}: shop/{value}`")),
            );
            return None;
        };
        let mut ok = true;
        if !check::is_dns_label(ns) || !check::is_dns_subdomain(name) {
            ok = false;
            self.cx.error(
                at(n, key),
                &child_path(path, key),
                format!("invalid workload `{value}`"),
                Some(
                    "namespace and name use lowercase letters, digits, `-` (and `.` in names)"
                        .into(),
                ),
            );
        }
        let ready = self.readiness(n, path, raw.ready, "replicas");
        (ok && ready.is_some()).then(|| {
            ProbeKind::Kubernetes(KubeProbe {
                workload: WorkloadRef {
                    kind,
                    namespace: ns.to_string(),
                    name: name.to_string(),
                },
                ready: ready.unwrap_or(Readiness::All),
            })
        })
    }

    fn readiness(
        &mut self,
        n: &Node,
        path: &str,
        raw: Option<Ready>,
        of: &str,
    ) -> Option<Readiness> {
        match raw {
            None | Some(Ready::All) => Some(Readiness::All),
            Some(Ready::AtLeast(k)) => match u32::try_from(k) {
                Ok(k) => Some(Readiness::AtLeast(k)),
                Err(_) => {
                    self.cx.error(
                        at(n, "ready"),
                        &child_path(path, "ready"),
                        format!("ready must be `all` or a number of {of}, found {k}"),
                        None,
                    );
                    None
                }
            },
        }
    }

    pub(super) fn probe_list(&mut self, n: &Node, path: &str) -> Vec<String> {
        match self.cx.de::<Vec<String>>(n, path) {
            Some(list) => self.probe_refs(list, n, path),
            None => Vec::new(),
        }
    }

    /// Remembers each name of a parsed probe list (`n` is its node) for the reference check.
    pub(super) fn probe_refs(&mut self, list: Vec<String>, n: &Node, path: &str) -> Vec<String> {
        if let Kind::Seq(items) = &n.kind {
            for (i, (name, item)) in list.iter().zip(items).enumerate() {
                self.refs_probe.push(Reference {
                    name: name.clone(),
                    span: item.span,
                    path: format!("{path}[{i}]"),
                });
            }
        }
        list
    }
}
