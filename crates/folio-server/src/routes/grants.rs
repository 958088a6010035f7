//! `/v1/documents/{id}/grants`: who may read or write a document (see [`crate::access`]).
//!
//! `GET` answers the owner and grants to anyone who may read the document; `PUT` replaces the grants (the owner with
//! a write token, or an admin token) and, for an admin, the owner. A deleted document answers both with 404
//! `DOCUMENT_NOT_FOUND`, as the document itself does. A change is a `SET_GRANTS` operation in the
//! document's `document` scope: it replicates and stays in its history.

use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use folio_core::document::SET_GRANTS;
use folio_core::{AccessRules, DocumentId, Grant, Scope, SetGrantsInput, check_grants};
use folio_reactor::Submit;

use crate::ApiError;
use crate::access::manages;
use crate::auth::{Caller, Role};
use crate::body::{IdPath, JsonBody};
use crate::routes::documents::{deleted, readable};
use crate::state::AppState;

/// Who may read or write a document.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Grants {
    /// The principal that owns the document (it reads and writes it, and manages its grants); `null` for a
    /// document made before owners existed.
    pub owner: Option<String>,
    /// Who else may read or write it: a principal, or `*` for everyone holding a token.
    pub grants: Vec<Grant>,
}

impl Grants {
    fn of(rules: &AccessRules) -> Self {
        Self {
            owner: rules.owner.clone(),
            grants: rules.grants.clone(),
        }
    }
}

/// The body of `PUT /v1/documents/{id}/grants`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGrants {
    /// The grants, replacing all earlier ones: at most 1,000, one per principal (a principal named twice is 400
    /// `DUPLICATE_GRANT`).
    #[schemars(length(max = 1000))]
    pub grants: Vec<Grant>,
    /// A new owner (admin tokens only; the current owner may be repeated): 1 to 200 characters, no ASCII control
    /// character, not `*`. Absent: the owner stays.
    #[serde(default)]
    #[schemars(
        length(min = 1, max = 200),
        regex(pattern = r"^([^*\x00-\x1f\x7f][^\x00-\x1f\x7f]*|\*[^\x00-\x1f\x7f]+)$")
    )]
    pub owner: Option<String>,
}

/// `GET /v1/documents/{id}/grants`.
pub async fn get(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    IdPath(id): IdPath,
) -> Result<Json<Grants>, ApiError> {
    let (_, rules) = readable(&state, &caller, id).await?;
    if rules.deleted {
        return Err(deleted(id));
    }
    Ok(Json(Grants::of(&rules)))
}

/// `PUT /v1/documents/{id}/grants`.
pub async fn put(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<Caller>,
    IdPath(id): IdPath,
    JsonBody(body): JsonBody<PutGrants>,
) -> Result<Json<Grants>, ApiError> {
    let (_, rules) = readable(&state, &caller, id).await?;
    if rules.deleted {
        return Err(deleted(id));
    }
    if !manages(&caller, &rules) {
        return Err(forbidden(
            id,
            "only the document's owner or an admin token changes its grants",
        ));
    }
    let input = SetGrantsInput {
        grants: Some(body.grants),
        owner: body.owner,
    };
    check_grants(&input).map_err(|e| {
        ApiError::new(axum::http::StatusCode::BAD_REQUEST, e.code, e.message)
            .with_details(serde_json::json!({ "documentId": id }))
    })?;
    if caller.role != Role::Admin && input.owner.as_ref().is_some_and(|o| Some(o) != rules.owner.as_ref()) {
        return Err(forbidden(id, "only an admin token changes a document's owner"));
    }
    let action = state.reactor.action(
        SET_GRANTS,
        serde_json::to_value(&input).map_err(|e| ApiError::internal(e.to_string()))?,
        Scope::Document,
    );
    state.reactor.apply(Submit::new(id, vec![action])).await?;
    // Seen by this node's next check at once (the commit stream says it too, a moment later).
    state.access.invalidate(id);
    let rules = state
        .access
        .rules(state.reactor.store(), id)
        .await?
        .ok_or_else(|| crate::access::not_found(id))?;
    Ok(Json(Grants::of(&rules)))
}

fn forbidden(id: DocumentId, why: &str) -> ApiError {
    ApiError::forbidden(why).with_details(serde_json::json!({ "documentId": id }))
}
