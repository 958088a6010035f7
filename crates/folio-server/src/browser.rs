//! What browsers need beside the API: CORS for pages on other origins (`--cors-origin`), and an app's files served
//! from the API's own origin (`--static`).
//!
//! Browsers cannot set headers on a WebSocket: they send the token as the `token` query parameter
//! (`ws://host/v1/sync/live?token=…`), which every endpoint accepts beside the bearer header.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;

/// The CORS layer for `origins` (`None` when there are none: no cross-origin page may call the API). Preflights are
/// answered before authentication; the token travels in `Authorization`, never in cookies, so credentials stay off.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(allowed))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Serves `GET`/`HEAD` of paths outside the API (`/v1/…`) from `dir` (`index.html` for a directory); what is not
/// there goes on to the routes (so `/` without an `index.html` still lists the endpoints, and unknown paths answer
/// the API's JSON 404).
pub async fn serve_static(State(dir): State<PathBuf>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let is_api = path == "/v1" || path.starts_with("/v1/");
    if is_api || !(req.method() == Method::GET || req.method() == Method::HEAD) {
        return next.run(req).await;
    }
    let mut probe = Request::new(Body::empty());
    *probe.method_mut() = req.method().clone();
    *probe.uri_mut() = req.uri().clone();
    *probe.headers_mut() = req.headers().clone();
    match ServeDir::new(&dir)
        .append_index_html_on_directories(true)
        .oneshot(probe)
        .await
    {
        Ok(response) if response.status() != StatusCode::NOT_FOUND => response.into_response(),
        _ => next.run(req).await,
    }
}
