//! `/v1/documents`: create, list, read, act, history, delete.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};

use folio_core::{Action, Branch, DocumentId, HlcTimestamp, Scope, SyncUnit};
use folio_reactor::Submit;
use folio_store::ListQuery;

use crate::ApiError;
use crate::body::{JsonBody, QueryParams};
use crate::state::AppState;
use crate::wire::{CreateDocument, GetParams, ListParams, OperationsParams, SubmitActions};

fn parse_id(raw: &str) -> Result<DocumentId, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::bad_request(format!("{raw:?} is not a document id (a UUID)")))
}

fn not_found(id: DocumentId) -> ApiError {
    ApiError::not_found("DOCUMENT_NOT_FOUND", format!("document {id} not found"))
        .with_details(json!({ "documentId": id }))
}

fn page_limit(state: &AppState, limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(100.min(state.config.max_page)),
        Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
        Some(n) => Ok(n.min(state.config.max_page)),
    }
}

/// `POST /v1/documents`: 201 with the new document.
pub async fn create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<CreateDocument>,
) -> Result<(StatusCode, Response), ApiError> {
    let name = req.name.unwrap_or_default();
    if name.chars().count() > 1000 {
        return Err(ApiError::bad_request("the name is over 1000 characters"));
    }
    let doc = state.reactor.create_document(&req.document_type, &name, req.id).await?;
    Ok((StatusCode::CREATED, document_body(&doc)))
}

/// A document's wire JSON, rendered once per revision and shared by every reader of the cached document.
fn document_body(doc: &folio_core::Document) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_json_string().to_string(),
    )
        .into_response()
}

/// `GET /v1/documents?type=&limit=&after=`.
pub async fn list(
    State(state): State<AppState>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<Value>, ApiError> {
    let limit = page_limit(&state, params.limit)?;
    let query = ListQuery {
        document_type: params.document_type,
        after: params.after,
        limit: limit + 1,
        ..ListQuery::default()
    };
    let mut headers = state.reactor.list(&query).await?;
    let next = if headers.len() > limit {
        headers.truncate(limit);
        headers.last().map(|h| h.id.to_string())
    } else {
        None
    };
    let mut body = json!({ "documents": headers });
    if let Some(next) = next {
        body["next"] = json!(next);
    }
    Ok(Json(body))
}

/// `GET /v1/documents/{id}?branch=&revision=&minRevision=`.
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(params): QueryParams<GetParams>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let branch = params.branch.unwrap_or_default();
    let doc = match (params.revision, params.min_revision) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give revision or minRevision, not both")),
        (Some(revision), None) => state
            .reactor
            .get_at(id, &branch, revision)
            .await?
            .map(std::sync::Arc::new),
        (None, Some(min)) => match state.reactor.get(id, &branch).await? {
            None => None,
            Some(_) => Some(state.reactor.get_min(id, &branch, min, state.config.max_wait).await?),
        },
        (None, None) => state.reactor.get(id, &branch).await?,
    };
    let doc = doc.ok_or_else(|| not_found(id))?;
    if doc.header.deleted {
        return Err(not_found(id).with_details(json!({ "documentId": id, "deleted": true })));
    }
    Ok(document_body(&doc))
}

/// `POST /v1/documents/{id}/actions`.
pub async fn actions(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<SubmitActions>,
) -> Result<(StatusCode, Response), ApiError> {
    let id = parse_id(&id)?;
    if req.actions.is_empty() {
        return Err(ApiError::bad_request("actions is empty"));
    }
    if req.actions.len() > state.config.max_actions {
        return Err(ApiError::too_large(format!(
            "{} actions in one request; at most {} are allowed",
            req.actions.len(),
            state.config.max_actions
        )));
    }
    let branch = req.branch.unwrap_or_default();
    let actions: Vec<Action> = req
        .actions
        .into_iter()
        .map(|a| {
            let scope = a.scope.unwrap_or(Scope::Global);
            let mut action = state.reactor.action(a.action_type, a.input, scope);
            if let Some(id) = a.id {
                action.id = id;
            }
            if let Some(ms) = a.timestamp_utc_ms {
                let t = HlcTimestamp::new(ms, 0);
                action.timestamp_utc_ms = t.millis;
                action.counter = t.counter;
            }
            action
        })
        .collect();
    let wait = req.wait.unwrap_or(true);
    if !wait && state.reactor.get(id, &branch).await?.is_none() {
        return Err(not_found(id));
    }
    let handle = state.reactor.submit(Submit {
        document_id: id,
        branch,
        actions,
        expected_revision: req.expected_revision,
    })?;
    let job_id = handle.id;
    if !wait {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "jobId": job_id, "status": "queued" })).into_response(),
        ));
    }
    let outcome = handle.wait().await?;
    // Written straight from the operations, without an intermediate JSON tree.
    let body = serde_json::to_vec(&Completed {
        job_id,
        status: "completed",
        revision: outcome.revision,
        operations: &outcome.operations,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        StatusCode::OK,
        ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
    ))
}

/// The answer to a completed job.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Completed<'a> {
    job_id: uuid::Uuid,
    status: &'static str,
    revision: u64,
    operations: &'a [folio_core::Operation],
}

/// `GET /v1/documents/{id}/operations?scope=&branch=&from=&limit=`.
pub async fn operations(
    State(state): State<AppState>,
    Path(id): Path<String>,
    QueryParams(params): QueryParams<OperationsParams>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let branch = params.branch.unwrap_or_default();
    let store = state.reactor.store();
    if store.header(id, &branch).await?.is_none() {
        return Err(not_found(id));
    }
    let limit = page_limit(&state, params.limit)?;
    let from = params.from.unwrap_or(0);
    let unit = SyncUnit::new(id, params.scope.unwrap_or(Scope::Global), branch);
    let to = from.saturating_add(limit as u64 + 1);
    let mut ops = Vec::with_capacity(limit + 1);
    let mut stream = store.read(&unit, from, Some(to));
    while let Some(op) = stream.next().await {
        ops.push(op?);
    }
    let next = if ops.len() > limit {
        ops.truncate(limit);
        Some(from + limit as u64)
    } else {
        None
    };
    let mut body = json!({ "operations": ops });
    if let Some(next) = next {
        body["next"] = json!(next);
    }
    Ok(Json(body))
}

/// `DELETE /v1/documents/{id}`: marks it deleted (an operation; the history stays).
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let doc = state
        .reactor
        .get(id, &Branch::default())
        .await?
        .ok_or_else(|| not_found(id))?;
    if doc.header.deleted {
        return Ok(Json(
            json!({ "documentId": id, "deleted": true, "revision": doc.header.revision }),
        ));
    }
    let outcome = state.reactor.delete_document(id).await?;
    Ok(Json(
        json!({ "documentId": id, "deleted": true, "jobId": outcome.job_id }),
    ))
}
