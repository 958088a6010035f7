//! `/v1/documents`: create, list, read, act, history, delete.

use std::sync::Arc;

use aide::generate::GenContext;
use aide::openapi::{Operation, StatusCode as DocStatus};
use aide::operation::OperationOutput;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use folio_core::{Action, Branch, DocumentId, HlcTimestamp, Scope, SyncUnit};
use folio_reactor::Submit;
use folio_store::ListQuery;

use crate::ApiError;
use crate::access::{Decision, Refusal, check_action};
use crate::auth::Caller;
use crate::body::{IdPath, JsonBody, QueryParams};
use crate::state::AppState;
use crate::wire::{
    Completed, CreateDocument, Deleted, DocumentBody, DocumentList, GetParams, JobState, ListParams, OperationPage,
    OperationsParams, Queued, SubmitActions,
};

fn not_found(id: DocumentId) -> ApiError {
    ApiError::not_found("DOCUMENT_NOT_FOUND", format!("document {id} not found"))
        .with_details(json!({ "documentId": id }))
}

/// 404 `DOCUMENT_NOT_FOUND` for a deleted document, as the document itself answers.
pub(crate) fn deleted(id: DocumentId) -> ApiError {
    ApiError::not_found("DOCUMENT_NOT_FOUND", format!("document {id} was deleted"))
        .with_details(json!({ "documentId": id, "deleted": true }))
}

/// What `caller` may do with document `id`, and its access rules; 404 `DOCUMENT_NOT_FOUND` when it may not read
/// it (or it does not exist), as if it did not exist.
pub(crate) async fn readable(
    state: &AppState,
    caller: &Caller,
    id: DocumentId,
) -> Result<(Decision, Arc<folio_core::AccessRules>), ApiError> {
    match state.access.decide(state.reactor.store(), caller, id).await? {
        (Decision::Hidden, _) | (_, None) => Err(not_found(id)),
        (decision, Some(rules)) => Ok((decision, rules)),
    }
}

/// Whether the document exists on `branch`, `caller` may read it, and it is not deleted (from its stored header,
/// without hydrating it): the check of the history's sub-resources (`/operations`, `/conflicts`), which answer 404
/// like the document.
pub(crate) async fn require_live(
    state: &AppState,
    caller: &Caller,
    id: DocumentId,
    branch: &Branch,
) -> Result<(), ApiError> {
    readable(state, caller, id).await?;
    match state.reactor.store().header(id, branch).await? {
        None => Err(not_found(id)),
        Some(header) if header.deleted => Err(deleted(id)),
        Some(_) => Ok(()),
    }
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
    axum::Extension(caller): axum::Extension<Caller>,
    JsonBody(req): JsonBody<CreateDocument>,
) -> Result<DocumentResponse<201>, ApiError> {
    let name = req.name.unwrap_or_default();
    if name.chars().count() > 1000 {
        return Err(ApiError::bad_request("the name is over 1000 characters"));
    }
    // The creator's principal owns the document.
    let doc = state
        .reactor
        .create_document_owned(&req.document_type, &name, req.id, Some(&caller.principal))
        .await?;
    Ok(DocumentResponse(doc.to_json_string()))
}

/// A document's wire JSON ([`DocumentBody`]) with status `STATUS`, rendered once per revision and shared by every
/// reader of the cached document.
pub struct DocumentResponse<const STATUS: u16>(Arc<str>);

impl<const STATUS: u16> IntoResponse for DocumentResponse<STATUS> {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(STATUS).unwrap_or(StatusCode::OK);
        (status, [(header::CONTENT_TYPE, "application/json")], self.0.to_string()).into_response()
    }
}

impl<const STATUS: u16> OperationOutput for DocumentResponse<STATUS> {
    type Inner = DocumentBody;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<aide::openapi::Response> {
        Json::<DocumentBody>::operation_response(ctx, operation)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, aide::openapi::Response)> {
        Self::operation_response(ctx, operation)
            .map(|r| (Some(DocStatus::Code(STATUS)), r))
            .into_iter()
            .collect()
    }
}

/// `GET /v1/documents?type=&limit=&after=`.
pub async fn list(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    QueryParams(params): QueryParams<ListParams>,
) -> Result<Json<DocumentList>, ApiError> {
    let limit = page_limit(&state, params.limit)?;
    let mut query = ListQuery {
        document_type: params.document_type,
        after: params.after,
        limit: limit + 1,
        ..ListQuery::default()
    };
    // Only what the caller may read, each header with its owner and grants; pages of the index are read until the
    // page is full, the index ends, or `list_scan` headers were looked at: then the page is short (even empty) and
    // `next` is the last id looked at, so a principal that reads few of many documents pages through them in
    // requests of bounded cost.
    let mut headers = Vec::with_capacity(limit + 1);
    let mut scanned = 0usize;
    let mut cut = false;
    loop {
        let page = state.reactor.list(&query).await?;
        let exhausted = page.len() < query.limit;
        for mut header in page {
            scanned += 1;
            query.after = Some(header.id);
            if let (decision, Some(rules)) = state.access.decide(state.reactor.store(), &caller, header.id).await?
                && decision != Decision::Hidden
            {
                header.owner = rules.owner.clone();
                header.grants = rules.grants.clone();
                headers.push(header);
                if headers.len() > limit {
                    break;
                }
            }
        }
        if exhausted || headers.len() > limit {
            break;
        }
        if scanned >= state.config.list_scan.max(limit + 1) {
            cut = true;
            break;
        }
    }
    let next = if headers.len() > limit {
        headers.truncate(limit);
        headers.last().map(|h| h.id)
    } else if cut {
        query.after
    } else {
        None
    };
    Ok(Json(DocumentList {
        documents: headers,
        next,
    }))
}

/// `GET /v1/documents/{id}?branch=&revision=&minRevision=`.
pub async fn get(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    IdPath(id): IdPath,
    QueryParams(params): QueryParams<GetParams>,
) -> Result<DocumentResponse<200>, ApiError> {
    readable(&state, &caller, id).await?;
    let branch = params.branch.unwrap_or_default();
    // `minRevision` first (wait until the view reaches it), then `revision` (the document as it was then): together
    // they read a past revision once the write that made it is visible on this node.
    let reached = match params.min_revision {
        None => None,
        Some(min) => match state.reactor.get(id, &branch).await? {
            None => return Err(not_found(id)),
            Some(doc) if doc.header.deleted => return Err(deleted(id)),
            Some(_) => Some(state.reactor.get_min(id, &branch, min, state.config.max_wait).await?),
        },
    };
    let doc = match (params.revision, reached) {
        (Some(revision), _) => state.reactor.get_at(id, &branch, revision).await?.map(Arc::new),
        (None, Some(doc)) => Some(doc),
        (None, None) => state.reactor.get(id, &branch).await?,
    };
    let doc = doc.ok_or_else(|| not_found(id))?;
    if doc.header.deleted {
        return Err(deleted(id));
    }
    Ok(DocumentResponse(doc.to_json_string()))
}

/// `POST /v1/documents/{id}/actions`.
pub async fn actions(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    IdPath(id): IdPath,
    JsonBody(req): JsonBody<SubmitActions>,
) -> Result<ActionsAnswer, ApiError> {
    let (decision, rules) = readable(&state, &caller, id).await?;
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
            crate::signing::author(&mut action, a.counter, a.replica, a.context, a.signer, a.signature);
            action
        })
        .collect();
    for (i, action) in actions.iter().enumerate() {
        check_action(&caller, &rules, decision, action).map_err(|r: Refusal| r.to_api(id))?;
        crate::signing::check_submitted(&state, action, i)?;
    }
    let wait = req.wait.unwrap_or(true);
    // A deleted document refuses actions as 404, like the document (the executor refuses them too, atomically, as
    // 422 `ACTION_REJECTED` `DOCUMENT_DELETED`, should a deletion commit between this check and the job). From the
    // view: the job is about to need the document there anyway, and a warm one costs no store read.
    match state.reactor.get(id, &branch).await? {
        None => return Err(not_found(id)),
        Some(doc) if doc.header.deleted => return Err(deleted(id)),
        Some(doc) => unknown_types(&doc, &actions)?,
    }
    let handle = state.reactor.submit(Submit {
        document_id: id,
        branch,
        actions,
        expected_revision: req.expected_revision,
    })?;
    let job_id = handle.id;
    if !wait {
        return Ok(ActionsAnswer::Queued(Queued {
            job_id,
            status: JobState::Queued,
        }));
    }
    let outcome = handle.wait().await?;
    if outcome.operations.iter().any(|op| op.action.scope == Scope::Document) {
        // A grant or a deletion is seen by this node's next check at once.
        state.access.invalidate(id);
    }
    // Written straight from the operations, without an intermediate JSON tree.
    let body = serde_json::to_vec(&Completed {
        job_id,
        status: JobState::Completed,
        revision: outcome.revision,
        operations: &outcome.operations,
    })
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(ActionsAnswer::Completed(body))
}

/// The answer to `POST /v1/documents/{id}/actions`: 200 [`Completed`] (already serialized) or 202 [`Queued`].
pub enum ActionsAnswer {
    /// The serialized [`Completed`].
    Completed(Vec<u8>),
    /// The job was queued (`wait: false`).
    Queued(Queued),
}

impl IntoResponse for ActionsAnswer {
    fn into_response(self) -> Response {
        match self {
            ActionsAnswer::Completed(body) => {
                (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response()
            }
            ActionsAnswer::Queued(queued) => (StatusCode::ACCEPTED, Json(queued)).into_response(),
        }
    }
}

impl OperationOutput for ActionsAnswer {
    type Inner = Completed<'static>;

    fn inferred_responses(
        ctx: &mut GenContext,
        operation: &mut Operation,
    ) -> Vec<(Option<DocStatus>, aide::openapi::Response)> {
        let mut completed = Json::<Completed<'static>>::operation_response(ctx, operation);
        let mut queued = Json::<Queued>::operation_response(ctx, operation);
        if let Some(r) = completed.as_mut() {
            r.description = "`wait` (the default): the job completed; its operations are stored.".into();
        }
        if let Some(r) = queued.as_mut() {
            r.description = "`wait: false`: the job is queued; poll `/v1/jobs/{jobId}`.".into();
        }
        [(200, completed), (202, queued)]
            .into_iter()
            .filter_map(|(status, r)| Some((Some(DocStatus::Code(status)), r?)))
            .collect()
    }
}

/// `GET /v1/documents/{id}/operations?scope=&branch=&from=&limit=`.
pub async fn operations(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    IdPath(id): IdPath,
    QueryParams(params): QueryParams<OperationsParams>,
) -> Result<Json<OperationPage>, ApiError> {
    let branch = params.branch.unwrap_or_default();
    require_live(&state, &caller, id, &branch).await?;
    let limit = page_limit(&state, params.limit)?;
    let unit = SyncUnit::new(id, params.scope.unwrap_or(Scope::Global), branch);
    let page = state
        .reactor
        .operations_page(&unit, params.from.unwrap_or(0), limit)
        .await?;
    Ok(Json(OperationPage {
        operations: page.operations,
        next: page.next,
    }))
}

/// `DELETE /v1/documents/{id}`: marks it deleted (an operation; the history stays).
pub async fn delete(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    IdPath(id): IdPath,
) -> Result<Json<Deleted>, ApiError> {
    if readable(&state, &caller, id).await?.0 != Decision::Write {
        return Err(Refusal::Forbidden("this token may read the document, not delete it".into()).to_api(id));
    }
    let doc = state
        .reactor
        .get(id, &Branch::default())
        .await?
        .ok_or_else(|| not_found(id))?;
    if doc.header.deleted {
        return Ok(Json(Deleted {
            document_id: id,
            deleted: true,
            job_id: None,
            revision: Some(doc.header.revision),
        }));
    }
    let outcome = state.reactor.delete_document(id).await?;
    state.access.invalidate(id);
    Ok(Json(Deleted {
        document_id: id,
        deleted: true,
        job_id: Some(outcome.job_id),
        revision: None,
    }))
}

/// Refuses an action whose type neither the document scope nor the document's model knows, before it is queued,
/// with the refusal the job would give (422 `ACTION_REJECTED`, `UNKNOWN_ACTION`): a `wait: false` submit of one
/// was answered 202 for a job that could only fail (found by schemathesis, ST201).
fn unknown_types(doc: &folio_core::Document, actions: &[Action]) -> Result<(), ApiError> {
    // A request of several scopes is refused by the submit itself (400), before any action is looked at.
    if actions.windows(2).any(|w| w[0].scope != w[1].scope) {
        return Ok(());
    }
    match actions.iter().position(|a| !doc.knows_action(a.scope, &a.action_type)) {
        None => Ok(()),
        Some(i) => Err(folio_reactor::ReactorError::ActionRejected {
            action_index: i,
            reason: folio_core::Rejection::unknown_action(&doc.header.document_type, &actions[i].action_type),
        }
        .into()),
    }
}
