//! # folio-server
//!
//! The HTTP + WebSocket API of `folio serve` (spec/http.md, version 1) on axum: every endpoint, the JSON error
//! shape with stable codes, bearer tokens stored hashed, body and nesting limits, and live events over WebSocket.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod auth;
mod body;
mod browser;
mod error;
pub mod metrics;
pub mod openapi;
mod routes;
mod signing;
mod state;
pub mod tls;
mod whole;
mod wire;
mod ws;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;

pub use auth::{Role, Tokens};
pub use error::ApiError;
/// The wire shapes of `/v1/tokens`, for `folio token list --json` to print the same.
pub use routes::tokens as tokens_wire;
pub use state::{AppShared, AppState, ServerConfig};

use routes::meta;

/// The token a request carries: `Authorization: Bearer <token>`, or the `token` query parameter (WebSockets).
fn presented_token(req: &Request) -> Option<String> {
    if let Some(value) = req.headers().get(AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?;
        return Some(token.trim().to_owned());
    }
    req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "token")
            .map(|(_, v)| v.to_owned())
    })
}

/// One structured event per request, after its response: method, path, status, latency, the token's label (or
/// id when it has none) and its principal. (A span per request,
/// as tower-http's trace layer makes, cost about 5% of the server's CPU at 8,000 writes/s for nothing a log reader
/// uses.)
async fn log_request(req: Request, next: Next) -> Response {
    if !tracing::enabled!(target: "folio_server::request", tracing::Level::INFO) {
        let start = std::time::Instant::now();
        let response = next.run(req).await;
        ::metrics::counter!("folio_http_requests_total", "status" => response.status().as_str().to_owned())
            .increment(1);
        ::metrics::histogram!("folio_http_request_seconds").record(start.elapsed().as_secs_f64());
        return response;
    }
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let response_of = |response: &Response| {
        ::metrics::counter!("folio_http_requests_total", "status" => response.status().as_str().to_owned())
            .increment(1);
        ::metrics::histogram!("folio_http_request_seconds").record(start.elapsed().as_secs_f64());
    };
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    response_of(&response);
    let caller = response.extensions().get::<auth::Caller>();
    let token = caller.map(|c| c.label.clone().unwrap_or_else(|| c.id.clone()));
    let principal = caller.map(|c| c.principal.clone());
    tracing::info!(
        target: "folio_server::request",
        %method,
        path,
        status = response.status().as_u16(),
        latency_us = start.elapsed().as_micros() as u64,
        token = token.as_deref().unwrap_or("-"),
        principal = principal.as_deref().unwrap_or("-"),
    );
    response
}

async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let token = presented_token(&req);
    let caller = state
        .tokens
        .authenticate(token.as_deref(), Role::needed_for(req.method(), req.uri().path()))?;
    req.extensions_mut().insert(caller.clone());
    let mut response = next.run(req).await;
    response.extensions_mut().insert(caller);
    Ok(response)
}

/// The API's routes over `state`. The documented routes and their description are declared together in
/// `openapi.rs`.
pub fn router(state: AppState) -> Router {
    let auth_state = state.clone();
    let facts = openapi::Facts::new(&state.config, state.reactor.registry());
    let (api, _) = openapi::build(&facts, move |routes| {
        routes.route_layer(middleware::from_fn_with_state(auth_state, authenticate))
    });
    let mut app = api
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.body_limit));
    if let Some(dir) = &state.config.static_dir {
        app = app.layer(middleware::from_fn_with_state(dir.clone(), browser::serve_static));
    }
    if let Some(cors) = browser::cors(&state.config.cors_origins) {
        app = app.layer(cors);
    }
    app.layer(middleware::from_fn(log_request)).with_state(state)
}

/// `GET /metrics` alone, without a token: for `folio serve --metrics-listen`, an address only the scraper reaches.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics::metrics))
        .with_state(state)
}

/// Builds the state: the tokens of the data directory (creating the directory 0700 and the admin token on first
/// start), watched for revocations when a tokio runtime runs. The reactor should come from
/// [`folio_reactor::Reactor::open`], so that the server syncs under its store's replica id.
pub fn app_state(reactor: folio_reactor::Reactor, config: ServerConfig) -> std::io::Result<AppState> {
    auth::create_private_dir(&config.data_dir)?;
    if let Some(path) = Tokens::ensure_admin(&config.data_dir)? {
        tracing::info!("created the admin token in {}", path.display());
    }
    let tokens = Arc::new(Tokens::open(&config.data_dir)?);
    if tokio::runtime::Handle::try_current().is_ok() {
        tokens.spawn_watch();
    }
    let access = Arc::new(access::AccessCache::default());
    if tokio::runtime::Handle::try_current().is_ok() {
        access.spawn_follow(&reactor);
    }
    Ok(AppState::new(state::AppShared {
        replica: folio_sync::Replica::from_reactor(reactor.clone()).requiring_signatures(config.require_signatures),
        reactor,
        tokens,
        config: Arc::new(config),
        access,
    }))
}

/// Serves the API on `listener` until `shutdown` resolves, then lets in-flight requests finish and shuts the
/// reactor down (queued jobs complete or fail visibly; nothing acknowledged is lost).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_on(listener, None, state, shutdown).await
}

/// [`serve`], over TLS when `tls` is given (HTTPS and WSS; see [`tls::server_config`]).
pub async fn serve_on(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reactor = state.reactor.clone();
    let app = router(state);
    match tls {
        None => axum::serve(listener, app).with_graceful_shutdown(shutdown).await?,
        Some(config) => {
            axum::serve(tls::TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(shutdown)
                .await?
        }
    }
    reactor.shutdown().await;
    Ok(())
}
