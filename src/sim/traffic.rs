//! The loopback HTTP endpoint of each `http: true` deployment. Requests are routed round-robin
//! over the endpoints as last *published* (after the propagation delay), and a request that lands
//! on a pod that is gone, terminating or not ready fails — so an HTTP probe sees the same partial
//! and full outages a real Service would show while the endpoints catch up.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::Response;
use axum::Router;

use super::cluster::{is_ready, is_terminating, pods, Route, Sim};
use super::store::meta_str;

#[derive(Clone)]
struct Upstream {
    sim: Arc<Sim>,
    namespace: String,
    route: Arc<Route>,
}

fn reply(code: StatusCode, body: String, pod: Option<&str>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = code;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    if let Some(pod) = pod.and_then(|p| HeaderValue::from_str(p).ok()) {
        r.headers_mut().insert("x-firedrill-pod", pod);
    }
    r
}

async fn serve(axum::extract::State(up): axum::extract::State<Upstream>) -> Response {
    let pick = {
        let eps = up.route.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        if eps.is_empty() {
            None
        } else {
            let i = up.route.next.fetch_add(1, Ordering::Relaxed) % eps.len();
            Some(eps[i].clone())
        }
    };
    let Some(ep) = pick else {
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints available\n".into(),
            None,
        );
    };
    let alive = up
        .sim
        .store
        .get(&pods(), &up.namespace, &ep.pod)
        .is_some_and(|p| meta_str(&p, "uid") == ep.uid && is_ready(&p) && !is_terminating(&p));
    if alive {
        reply(
            StatusCode::OK,
            format!("served by pod {}\n", ep.pod),
            Some(&ep.pod),
        )
    } else {
        reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream pod gone\n".into(),
            Some(&ep.pod),
        )
    }
}

pub fn router(sim: Arc<Sim>, namespace: String, route: Arc<Route>) -> Router {
    Router::new().fallback(serve).with_state(Upstream {
        sim,
        namespace,
        route,
    })
}
