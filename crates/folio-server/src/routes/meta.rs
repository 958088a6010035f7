//! `GET /v1/health`, `GET /v1/document-types`, and the JSON answers for unknown routes and methods.

use crate::ApiError;
use crate::state::AppState;
use crate::wire::{DocumentType, DocumentTypes, Health, Ready};
use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};

/// Liveness and version; needs no token.
pub async fn health() -> Json<Health> {
    Json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// How long readiness waits for the store to answer a read.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Readiness; needs no token: the store answers a read, its last commit was not refused, the reactor takes jobs.
/// 503 `NOT_READY` says which is not the case.
pub async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    match state.reactor.ready(READY_TIMEOUT).await {
        Ok(()) => Ok(Json(Ready { status: "ready" })),
        Err(reason) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "NOT_READY", reason)),
    }
}

/// The registered models and their actions.
pub async fn document_types(State(state): State<AppState>) -> Json<DocumentTypes> {
    let document_types = state
        .reactor
        .registry()
        .iter()
        .map(|m| DocumentType {
            document_type: m.document_type().to_owned(),
            actions: m.action_types().iter().map(|a| (*a).to_owned()).collect(),
        })
        .collect();
    Json(DocumentTypes { document_types })
}

/// Any unknown route.
pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found("NOT_FOUND", format!("no endpoint {method} {}", uri.path()))
}

/// A known route with an unsupported method.
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{} does not take {method}", uri.path()),
    )
}
