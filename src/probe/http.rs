//! `http` probe: a request must answer with an expected status (and body, and latency) within
//! its timeout. The client keeps its connection alive, as real clients do, so a server that
//! dies breaks the connection and the next check sees it.
//!
//! Plain `http://` URLs use one HTTP/1.1 connection driven directly with hyper — the probe
//! engine's hot path, several times cheaper per check than a general client; `https://` goes
//! through reqwest (rustls, certificate verification on).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Method, Url};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{BuildError, Reason};
use crate::experiment::HttpProbe;
use crate::platform::root_cause;
use crate::timeline::human;

/// The most body read when looking for `body-contains`; health pages are small.
pub(crate) const MAX_BODY: usize = 1 << 20;

pub struct HttpChecker {
    transport: Transport,
    method: Method,
    url: Url,
    headers: HeaderMap,
    expect_status: Vec<u16>,
    body_contains: Option<String>,
    timeout: Duration,
    max_latency: Option<Duration>,
}

/// How a probe reaches its URL.
enum Transport {
    /// plain http: one kept-alive hyper connection, the fast path.
    Plain(Plain),
    /// https (or an http URL the fast path cannot take): the general client. Only built here,
    /// since building one loads the platform's certificate store.
    Client(Client),
}

impl HttpChecker {
    pub fn new(spec: &HttpProbe) -> Result<Self, BuildError> {
        let url = Url::parse(&spec.url).map_err(|e| BuildError::Url(Box::new(e)))?;
        let method = Method::from_bytes(spec.method.as_bytes())
            .map_err(|_| BuildError::Method(spec.method.clone()))?;
        let headers = header_map(&spec.headers)?;
        let transport = match (url.scheme() == "http").then(|| Plain::new(&url)).flatten() {
            Some(plain) => Transport::Plain(plain),
            None => Transport::Client(client_trusting(spec.timeout, spec.ca_file.as_deref())?),
        };
        Ok(HttpChecker {
            transport,
            method,
            url,
            headers,
            expect_status: spec.expect_status.clone(),
            body_contains: spec.body_contains.clone(),
            timeout: spec.timeout,
            max_latency: spec.max_latency,
        })
    }

    pub async fn check(&mut self) -> Result<(), Reason> {
        let started = Instant::now();
        let (status, body) = match &mut self.transport {
            Transport::Plain(plain) => {
                plain
                    .exchange(&self.method, &self.headers, self.timeout)
                    .await?
            }
            Transport::Client(client) => {
                let request = client
                    .request(self.method.clone(), self.url.clone())
                    .headers(self.headers.clone());
                let (status, body) = exchange(request, self.timeout).await?;
                (status, Bytes::from(body))
            }
        };
        self.judge(status, &body, started.elapsed())
    }

    /// The verdict on an answer: status, body-contains, then max-latency.
    fn judge(&self, status: u16, body: &[u8], took: Duration) -> Result<(), Reason> {
        let status_ok = if self.expect_status.is_empty() {
            (200..300).contains(&status)
        } else {
            self.expect_status.contains(&status)
        };
        if !status_ok {
            return Err(format!("status {status}"));
        }
        if let Some(needle) = &self.body_contains {
            if !String::from_utf8_lossy(body).contains(needle.as_str()) {
                return Err(format!("body does not contain {needle:?}"));
            }
        }
        match self.max_latency {
            Some(max) if took > max => Err(format!("latency {} > {}", human(took), human(max))),
            _ => Ok(()),
        }
    }
}

impl Plain {
    /// One request on the kept-alive connection (dialled anew after a failure), within
    /// `timeout`: the status and the body (read up to [`MAX_BODY`]).
    async fn exchange(
        &mut self,
        method: &Method,
        headers: &HeaderMap,
        timeout: Duration,
    ) -> Result<(u16, Bytes), Reason> {
        let mut req = hyper::Request::builder()
            .method(method.clone())
            .uri(self.path.clone())
            .header(hyper::header::HOST, self.authority.clone())
            .header(
                hyper::header::USER_AGENT,
                concat!("firedrill/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("invalid request: {e}"))?;
        let exchange = async {
            let sender = self.connect(timeout).await?;
            sender
                .ready()
                .await
                .map_err(|e| format!("connection: {}", root_cause(&e)))?;
            let resp = sender
                .send_request(req)
                .await
                .map_err(|e| format!("request: {}", root_cause(&e)))?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| format!("reading the body: {e}"))?
                .to_bytes();
            Ok::<_, Reason>((status, body))
        };
        let result = match tokio::time::timeout(timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {}", human(timeout))),
        };
        if result.is_err() {
            // A broken or timed-out connection is not reused: the next check dials anew.
            self.sender = None;
        }
        result
    }
}

/// A probe's configured headers, every value marked sensitive: credentials stay out of any
/// debug output reqwest or hyper might produce.
pub(crate) fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, BuildError> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name =
            HeaderName::from_bytes(k.as_bytes()).map_err(|_| BuildError::HeaderName(k.clone()))?;
        // The value may be a secret: the error names the header only.
        let mut value = HeaderValue::from_str(v).map_err(|_| BuildError::HeaderValue(k.clone()))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// The general client of probes that speak HTTP: one kept-alive connection, no redirects
/// (a redirect to a login page is not health), every request bounded by `timeout`.
pub(crate) fn client(timeout: Duration) -> Result<Client, BuildError> {
    base_builder(timeout).build().map_err(BuildError::Client)
}

fn base_builder(timeout: Duration) -> reqwest::ClientBuilder {
    Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .pool_max_idle_per_host(1)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("firedrill/", env!("CARGO_PKG_VERSION")))
}

/// [`client`], also trusting the CA certificates of a PEM file (a private CA).
fn client_trusting(
    timeout: Duration,
    ca_file: Option<&std::path::Path>,
) -> Result<Client, BuildError> {
    let Some(file) = ca_file else {
        return client(timeout);
    };
    let pem = std::fs::read(file).map_err(|e| BuildError::CaFile(file.to_path_buf(), e))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| BuildError::CaPem(file.to_path_buf(), e))?;
    certs
        .into_iter()
        .fold(base_builder(timeout), |b, c| b.add_root_certificate(c))
        .build()
        .map_err(BuildError::Client)
}

/// A failed request's reason: the timeout, or the innermost cause.
pub(crate) fn describe(e: &reqwest::Error, timeout: Duration) -> Reason {
    if e.is_timeout() {
        format!("timed out after {}", human(timeout))
    } else if e.is_connect() {
        format!("connect: {}", root_cause(e))
    } else {
        root_cause(e)
    }
}

/// One kept-alive HTTP/1.1 connection to a plain-http server.
struct Plain {
    /// host:port to dial.
    addr: String,
    /// The Host header.
    authority: String,
    path: hyper::Uri,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Plain {
    fn new(url: &Url) -> Option<Plain> {
        let host = url.host_str()?;
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let path = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        Some(Plain {
            addr: format!(
                "{}:{port}",
                host.trim_start_matches('[').trim_end_matches(']')
            ),
            authority,
            path: path.parse().ok()?,
            sender: None,
        })
    }

    /// The open connection, or a new one.
    async fn connect(
        &mut self,
        timeout: Duration,
    ) -> Result<&mut SendRequest<Empty<Bytes>>, Reason> {
        if self.sender.as_ref().is_some_and(|s| s.is_closed()) {
            self.sender = None;
        }
        if self.sender.is_none() {
            let stream = tokio::time::timeout(timeout, TcpStream::connect(&self.addr))
                .await
                .map_err(|_| format!("connect timed out after {}", human(timeout)))?
                .map_err(|e| format!("connect: {e}"))?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("connect: {}", root_cause(&e)))?;
            // The connection task ends when the sender is dropped or the server closes.
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender
            .as_mut()
            .ok_or_else(|| "no connection".to_string())
    }
}

/// Sends `request` and reads its status and body (at most [`MAX_BODY`] bytes, as text). The
/// body is read (and so drained, for the connection's reuse) even when nobody looks at it: a
/// failure there is a failed check too.
pub(crate) async fn exchange(
    request: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<(u16, String), Reason> {
    let response = request.send().await.map_err(|e| describe(&e, timeout))?;
    let status = response.status().as_u16();
    let body = read_capped(response)
        .await
        .map_err(|e| describe(&e, timeout))?;
    Ok((status, body))
}

/// The body, at most [`MAX_BODY`] bytes of it, as text.
async fn read_capped(mut response: reqwest::Response) -> Result<String, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room == 0 {
            break;
        }
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{http::StatusCode, routing::get, Router};

    async fn serve(app: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn spec(url: String) -> HttpProbe {
        HttpProbe {
            url,
            method: "GET".into(),
            headers: vec![],
            expect_status: vec![],
            body_contains: None,
            timeout: Duration::from_millis(500),
            max_latency: None,
            ca_file: None,
        }
    }

    #[tokio::test]
    async fn status_body_and_latency_decide() {
        let base = serve(
            Router::new()
                .route("/ok", get(|| async { "all good" }))
                .route(
                    "/down",
                    get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "no") }),
                )
                .route(
                    "/slow",
                    get(|| async {
                        tokio::time::sleep(Duration::from_millis(150)).await;
                        "late"
                    }),
                ),
        )
        .await;
        let mut ok = HttpChecker::new(&spec(format!("{base}/ok"))).unwrap();
        assert_eq!(ok.check().await, Ok(()));

        let mut down = HttpChecker::new(&spec(format!("{base}/down"))).unwrap();
        assert_eq!(down.check().await, Err("status 503".into()));

        let mut s = spec(format!("{base}/down"));
        s.expect_status = vec![503];
        assert_eq!(HttpChecker::new(&s).unwrap().check().await, Ok(()));

        let mut s = spec(format!("{base}/ok"));
        s.body_contains = Some("bad".into());
        let r = HttpChecker::new(&s).unwrap().check().await;
        assert_eq!(r, Err("body does not contain \"bad\"".into()));

        let mut s = spec(format!("{base}/slow"));
        s.max_latency = Some(Duration::from_millis(50));
        let r = HttpChecker::new(&s).unwrap().check().await.unwrap_err();
        assert!(r.starts_with("latency ") && r.ends_with("> 50.0ms"), "{r}");

        let mut s = spec(format!("{base}/slow"));
        s.timeout = Duration::from_millis(50);
        let r = HttpChecker::new(&s).unwrap().check().await;
        assert_eq!(r, Err("timed out after 50.0ms".into()));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_failure_with_its_cause() {
        let (_closed, addr) = crate::testing::refusing_addr();
        let url = format!("http://{addr}/");
        let r = HttpChecker::new(&spec(url))
            .unwrap()
            .check()
            .await
            .unwrap_err();
        assert!(r.starts_with("connect: ") && r.contains("refused"), "{r}");
    }
}
