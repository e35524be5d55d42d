//! The control API, compatible with Toxiproxy 2.x: same routes, JSON shapes, status codes and
//! error body (`{"error": "...", "status": N}`), so existing Toxiproxy clients work.
//!
//! Bodies are parsed by hand rather than with axum's `Json` extractor because its rejections
//! are not in Toxiproxy's error shape.
//!
//! Unlike Toxiproxy, every request passes [`guard`] first: a loopback `Host` and `Origin`
//! (403), the token when one is set (401), and a JSON content type for any body (415), so that
//! a web page cannot drive the API with a simple `text/plain` POST. Proxies created or moved
//! through the API listen on loopback only unless [`ApiAccess::allow_remote_listen`].

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use axum::extract::Request;
use axum::http::header;
use axum::middleware::{self, Next};
use axum::Extension;

use super::{ApiAccess, ProxyConfig, ProxyError, ProxyInfo, ProxyServer, ProxyUpdate, Toxic};

/// The Toxiproxy API version we are compatible with, plus who we are.
const VERSION: &str = "2.12.0-firedrill";

type Srv = State<Arc<ProxyServer>>;

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (
            status,
            Json(json!({"error": self.to_string(), "status": status.as_u16()})),
        )
            .into_response()
    }
}

pub(super) fn router(server: Arc<ProxyServer>, access: ApiAccess) -> Router {
    let access = Arc::new(access);
    Router::new()
        .route("/version", get(version))
        .route("/reset", post(reset))
        .route("/populate", post(populate))
        .route("/proxies", get(list_proxies).post(create_proxy))
        .route(
            "/proxies/{proxy}",
            get(show_proxy)
                .post(update_proxy)
                .patch(update_proxy)
                .delete(delete_proxy),
        )
        .route(
            "/proxies/{proxy}/toxics",
            get(list_toxics).post(create_toxic),
        )
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(show_toxic)
                .post(update_toxic)
                .patch(update_toxic)
                .delete(delete_toxic),
        )
        .fallback(|| async {
            (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "not found", "status": 404})),
            )
        })
        .layer(middleware::from_fn(guard))
        .layer(Extension(access))
        .with_state(server)
}

/// Byte-wise comparison in time independent of where the strings differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn guard(
    Extension(access): Extension<Arc<ApiAccess>>,
    req: Request,
    next: Next,
) -> Result<Response, ProxyError> {
    let headers = req.headers();
    crate::safety::loopback::check(headers, req.uri().authority().map(|a| a.as_str()))
        .map_err(|e| ProxyError::Forbidden(e.to_string()))?;
    if let Some(token) = &access.token {
        let sent = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !same_secret(sent.as_bytes(), token.as_bytes()) {
            return Err(ProxyError::Unauthorized);
        }
    }
    let has_body = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|n| n.trim() != "0")
        || headers.contains_key(header::TRANSFER_ENCODING);
    if has_body {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
        if !json {
            return Err(ProxyError::UnsupportedMediaType(
                "request bodies must be JSON: send `Content-Type: application/json`".into(),
            ));
        }
    }
    Ok(next.run(req).await)
}

/// Refuses a non-loopback listen address unless the API allows it.
fn check_listen(access: &ApiAccess, listen: SocketAddr) -> Result<SocketAddr, ProxyError> {
    if access.allow_remote_listen || listen.ip().is_loopback() {
        Ok(listen)
    } else {
        Err(ProxyError::RemoteListen(listen))
    }
}

fn proxy_json(p: &ProxyInfo) -> Value {
    json!({
        "name": p.name,
        "listen": p.listen.to_string(),
        "upstream": p.upstream,
        "enabled": p.enabled,
        "toxics": p.toxics.iter().map(Toxic::to_json).collect::<Vec<_>>(),
    })
}

fn parse_body(body: &Bytes) -> Result<Map<String, Value>, ProxyError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ProxyError::BadRequestBody),
    }
}

/// Listen addresses as Toxiproxy clients send them: `IP:PORT` or `localhost:PORT`.
fn parse_listen(s: &str) -> Result<SocketAddr, ProxyError> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.rsplit_once(':') {
        Some(("localhost", port)) => port
            .parse::<u16>()
            .map(|p| SocketAddr::from((Ipv4Addr::LOCALHOST, p)))
            .map_err(|_| ProxyError::InvalidListen(s.to_string())),
        _ => Err(ProxyError::InvalidListen(s.to_string())),
    }
}

fn string_field<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, ProxyError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ProxyError::BadRequestBody),
    }
}

fn bool_field(m: &Map<String, Value>, key: &str) -> Result<Option<bool>, ProxyError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ProxyError::BadRequestBody),
    }
}

fn proxy_config(m: &Map<String, Value>) -> Result<ProxyConfig, ProxyError> {
    let name = string_field(m, "name")?
        .filter(|s| !s.is_empty())
        .ok_or(ProxyError::MissingField("name"))?;
    let upstream = string_field(m, "upstream")?
        .filter(|s| !s.is_empty())
        .ok_or(ProxyError::MissingField("upstream"))?;
    let listen = parse_listen(string_field(m, "listen")?.unwrap_or("127.0.0.1:0"))?;
    Ok(ProxyConfig {
        name: name.to_string(),
        listen,
        upstream: upstream.to_string(),
        enabled: bool_field(m, "enabled")?.unwrap_or(true),
    })
}

async fn version() -> Response {
    Json(json!({"version": VERSION})).into_response()
}

async fn reset(State(s): Srv) -> StatusCode {
    s.reset();
    StatusCode::NO_CONTENT
}

async fn list_proxies(State(s): Srv) -> Json<Value> {
    let map: Map<String, Value> = s
        .proxies()
        .iter()
        .map(|p| (p.name.clone(), proxy_json(p)))
        .collect();
    Json(Value::Object(map))
}

async fn create_proxy(
    State(s): Srv,
    Extension(access): Extension<Arc<ApiAccess>>,
    body: Bytes,
) -> Result<Response, ProxyError> {
    let cfg = proxy_config(&parse_body(&body)?)?;
    check_listen(&access, cfg.listen)?;
    let info = s.add_proxy(cfg).await?;
    Ok((StatusCode::CREATED, Json(proxy_json(&info))).into_response())
}

/// Creates or replaces a list of proxies: an existing proxy with the same listen address and
/// upstream is kept (with its toxics), a different one is replaced.
async fn populate(
    State(s): Srv,
    Extension(access): Extension<Arc<ApiAccess>>,
    body: Bytes,
) -> Result<Response, ProxyError> {
    let items = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(a)) => a,
        Ok(Value::Object(mut m)) => match m.remove("proxies") {
            Some(Value::Array(a)) => a,
            _ => return Err(ProxyError::BadRequestBody),
        },
        _ => return Err(ProxyError::BadRequestBody),
    };
    let mut configs = Vec::with_capacity(items.len());
    for item in &items {
        let m = item.as_object().ok_or(ProxyError::BadRequestBody)?;
        let cfg = proxy_config(m)?;
        check_listen(&access, cfg.listen)?;
        configs.push(cfg);
    }
    let mut out = Vec::with_capacity(configs.len());
    for cfg in configs {
        let result = match s.proxy(&cfg.name) {
            Ok(existing)
                if existing.upstream == cfg.upstream
                    && (existing.listen == cfg.listen || cfg.listen.port() == 0) =>
            {
                Ok(existing)
            }
            Ok(_) => match s.remove_proxy(&cfg.name).await {
                Ok(()) => s.add_proxy(cfg).await,
                Err(e) => Err(e),
            },
            Err(_) => s.add_proxy(cfg).await,
        };
        match result {
            Ok(info) => out.push(proxy_json(&info)),
            Err(e) => {
                let status =
                    StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body =
                    json!({"error": e.to_string(), "status": status.as_u16(), "proxies": out});
                return Ok((status, Json(body)).into_response());
            }
        }
    }
    Ok((StatusCode::CREATED, Json(json!({"proxies": out}))).into_response())
}

async fn show_proxy(State(s): Srv, Path(name): Path<String>) -> Result<Json<Value>, ProxyError> {
    Ok(Json(proxy_json(&s.proxy(&name)?)))
}

async fn update_proxy(
    State(s): Srv,
    Extension(access): Extension<Arc<ApiAccess>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ProxyError> {
    let m = parse_body(&body)?;
    let update = ProxyUpdate {
        enabled: bool_field(&m, "enabled")?,
        listen: string_field(&m, "listen")?
            .map(|l| parse_listen(l).and_then(|a| check_listen(&access, a)))
            .transpose()?,
        upstream: string_field(&m, "upstream")?.map(str::to_string),
    };
    Ok(Json(proxy_json(&s.update_proxy(&name, update).await?)))
}

async fn delete_proxy(State(s): Srv, Path(name): Path<String>) -> Result<StatusCode, ProxyError> {
    s.remove_proxy(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_toxics(State(s): Srv, Path(name): Path<String>) -> Result<Json<Value>, ProxyError> {
    let toxics = s.toxics(&name)?;
    Ok(Json(Value::Array(
        toxics.iter().map(Toxic::to_json).collect(),
    )))
}

async fn create_toxic(
    State(s): Srv,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ProxyError> {
    // Toxiproxy answers "proxy not found" before looking at the body.
    s.proxy(&name)?;
    let toxic = Toxic::from_json(&Value::Object(parse_body(&body)?))?;
    Ok(Json(s.add_toxic(&name, toxic)?.to_json()))
}

async fn show_toxic(
    State(s): Srv,
    Path((name, toxic)): Path<(String, String)>,
) -> Result<Json<Value>, ProxyError> {
    let found = s
        .toxics(&name)?
        .into_iter()
        .find(|t| t.name == toxic)
        .ok_or(ProxyError::ToxicNotFound(toxic))?;
    Ok(Json(found.to_json()))
}

/// Merges the body into the existing toxic: given attributes replace those of the same name.
async fn update_toxic(
    State(s): Srv,
    Path((name, toxic)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ProxyError> {
    let existing = s
        .toxics(&name)?
        .into_iter()
        .find(|t| t.name == toxic)
        .ok_or(ProxyError::ToxicNotFound(toxic.clone()))?;
    let patch = parse_body(&body)?;
    let mut merged = existing.to_json();
    if let Some(obj) = merged.as_object_mut() {
        if let Some(v) = patch.get("toxicity") {
            obj.insert("toxicity".into(), v.clone());
        }
        if let Some(v) = patch.get("stream") {
            obj.insert("stream".into(), v.clone());
        }
        match (patch.get("attributes"), obj.get_mut("attributes")) {
            (Some(Value::Object(new)), Some(Value::Object(old))) => {
                for (k, v) in new {
                    old.insert(k.clone(), v.clone());
                }
            }
            (None | Some(Value::Null), _) => {}
            _ => return Err(ProxyError::BadRequestBody),
        }
        // The name is the URL's; a body cannot rename a toxic.
        obj.insert("name".into(), Value::String(toxic));
    }
    let updated = Toxic::from_json(&merged)?;
    Ok(Json(s.update_toxic(&name, updated)?.to_json()))
}

async fn delete_toxic(
    State(s): Srv,
    Path((name, toxic)): Path<(String, String)>,
) -> Result<StatusCode, ProxyError> {
    s.remove_toxic(&name, &toxic)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_as_clients_send_them() {
        assert_eq!(
            parse_listen("localhost:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(parse_listen("127.0.0.1:0").is_ok());
        assert!(matches!(
            parse_listen("nowhere"),
            Err(ProxyError::InvalidListen(_))
        ));
    }
}
