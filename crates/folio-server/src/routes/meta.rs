//! `GET /v1/health`, `GET /v1/document-types`, and the JSON answers for unknown routes and methods.

use axum::Json;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use serde_json::{Value, json};

use crate::ApiError;
use crate::state::AppState;

/// Liveness and version; needs no token.
pub async fn health() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

/// The registered models and their actions.
pub async fn document_types(State(state): State<AppState>) -> Json<Value> {
    let types: Vec<Value> = state
        .reactor
        .registry()
        .iter()
        .map(|m| json!({ "documentType": m.document_type(), "actions": m.action_types() }))
        .collect();
    Json(json!({ "documentTypes": types }))
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
