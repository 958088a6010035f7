//! # folio-server
//!
//! The HTTP + WebSocket API of `folio serve` (spec/http.md, version 1) on axum: every endpoint, the JSON error
//! shape with stable codes, bearer tokens stored hashed, body and nesting limits, and live events over WebSocket.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod auth;
mod body;
mod browser;
mod error;
pub mod openapi;
mod routes;
mod state;
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

/// One structured event per request, after its response: method, path, status and latency. (A span per request,
/// as tower-http's trace layer makes, cost about 5% of the server's CPU at 8,000 writes/s for nothing a log reader
/// uses.)
async fn log_request(req: Request, next: Next) -> Response {
    if !tracing::enabled!(target: "folio_server::request", tracing::Level::INFO) {
        return next.run(req).await;
    }
    let start = std::time::Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let response = next.run(req).await;
    tracing::info!(
        target: "folio_server::request",
        %method,
        path,
        status = response.status().as_u16(),
        latency_us = start.elapsed().as_micros() as u64,
    );
    response
}

async fn authenticate(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    let token = presented_token(&req);
    state
        .tokens
        .authorize(token.as_deref(), Role::needed_for(req.method(), req.uri().path()))?;
    Ok(next.run(req).await)
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

/// Builds the state: the tokens of the data directory (creating the admin token on first start). The reactor should
/// come from [`folio_reactor::Reactor::open`], so that the server syncs under its store's replica id.
pub fn app_state(reactor: folio_reactor::Reactor, config: ServerConfig) -> std::io::Result<AppState> {
    std::fs::create_dir_all(&config.data_dir)?;
    if let Some(path) = Tokens::ensure_admin(&config.data_dir)? {
        tracing::info!("created the admin token in {}", path.display());
    }
    Ok(AppState::new(state::AppShared {
        replica: folio_sync::Replica::from_reactor(reactor.clone()),
        reactor,
        tokens: Arc::new(Tokens::open(&config.data_dir)?),
        config: Arc::new(config),
    }))
}

/// Serves the API on `listener` until `shutdown` resolves, then lets in-flight requests finish and shuts the
/// reactor down (queued jobs complete or fail visibly; nothing acknowledged is lost).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reactor = state.reactor.clone();
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await?;
    reactor.shutdown().await;
    Ok(())
}
