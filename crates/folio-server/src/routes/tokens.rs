//! `/v1/tokens`: what an admin token may do that a write token may not: make, list and revoke tokens over HTTP.
//! They are the tokens of the server's data directory (`DIR/tokens`), as `folio token` manages them.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::PathRejection;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::auth::{NewTokenSpec, Role, TokenRecord};
use crate::body::JsonBody;
use crate::state::AppState;

/// The longest expiry `POST /v1/tokens` takes: 100 years.
pub const MAX_EXPIRES_IN_SECONDS: u64 = 100 * 365 * 86_400;

/// The body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NewToken {
    /// What the token may do.
    pub role: RoleName,
    /// A name for people, unique among the tokens (409 `LABEL_TAKEN` otherwise): shown by the list and in the
    /// request log.
    #[serde(default)]
    #[schemars(length(min = 1, max = 200), regex(pattern = r"^[^\x00-\x1f\x7f]+$"))]
    pub label: Option<String>,
    /// Who uses it (defaults to the label, or a fresh name).
    #[serde(default)]
    #[schemars(length(min = 1, max = 200), regex(pattern = r"^[^\x00-\x1f\x7f]+$"))]
    pub principal: Option<String>,
    /// Seconds until it stops working (none: it does not expire).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_EXPIRES_IN_SECONDS))]
    pub expires_in_seconds: Option<u64>,
}

/// A token's role on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// Read documents, history, jobs; subscribe; pull.
    Read,
    /// Also create, change and delete documents; push.
    Write,
    /// Also manage tokens and read the metrics.
    Admin,
}

impl From<RoleName> for Role {
    fn from(r: RoleName) -> Self {
        match r {
            RoleName::Read => Role::Read,
            RoleName::Write => Role::Write,
            RoleName::Admin => Role::Admin,
        }
    }
}

impl From<Role> for RoleName {
    fn from(r: Role) -> Self {
        match r {
            Role::Read => RoleName::Read,
            Role::Write => RoleName::Write,
            Role::Admin => RoleName::Admin,
        }
    }
}

/// The answer of `POST /v1/tokens`: the secret, shown this once (the server keeps only its hash).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// The bearer token.
    pub token: String,
    /// Its role.
    pub role: RoleName,
    /// Its id (for `DELETE /v1/tokens/{id}`).
    pub id: String,
    /// Its label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Its principal.
    pub principal: String,
    /// When it stops working (RFC 3339), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// A token as listed: never its secret.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    /// Its id: 12 hex digits.
    pub id: String,
    /// Its label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Its principal.
    pub principal: String,
    /// Its role.
    pub role: RoleName,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it stops working (RFC 3339), if it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Whether it has expired.
    pub expired: bool,
    /// When it was last used (RFC 3339, to the minute), if ever.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
}

/// The answer of `GET /v1/tokens`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TokenList {
    /// Every token, oldest first.
    pub tokens: Vec<TokenInfo>,
}

/// `{id}` of `/v1/tokens/{id}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct TokenIdPath {
    /// The token's id: 12 lowercase hex digits (`GET /v1/tokens`).
    #[schemars(regex(pattern = r"^[0-9a-f]{12}$"))]
    pub id: String,
}

/// Milliseconds since the epoch as RFC 3339 UTC.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ms.to_string())
}

impl TokenInfo {
    /// The wire shape of `record`, last used at `last_used_ms`.
    pub fn of(record: &TokenRecord, last_used_ms: Option<u64>) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Self {
            id: record.id(),
            label: record.label.clone(),
            principal: record.principal.clone(),
            role: record.role.into(),
            created_at: rfc3339(record.created_ms),
            expires_at: record.expires_ms.map(rfc3339),
            expired: record.expired_at(now),
            last_used_at: last_used_ms.filter(|ms| *ms > 0).map(rfc3339),
        }
    }
}

/// Makes a token (admin tokens only; the secret is shown once).
pub async fn create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    if let Some(seconds) = req.expires_in_seconds
        && !(1..=MAX_EXPIRES_IN_SECONDS).contains(&seconds)
    {
        return Err(ApiError::bad_request(format!(
            "expiresInSeconds is 1 to {MAX_EXPIRES_IN_SECONDS} (100 years); omit it for a token that does not expire"
        )));
    }
    let spec = NewTokenSpec {
        role: Role::from(req.role),
        label: req.label,
        principal: req.principal,
        expires_in: req.expires_in_seconds.map(Duration::from_secs),
    };
    let tokens = state.tokens.clone();
    let (token, record) = tokio::task::spawn_blocking(move || tokens.create_here(&spec))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token,
            role: req.role,
            id: record.id(),
            label: record.label,
            principal: record.principal,
            expires_at: record.expires_ms.map(rfc3339),
        }),
    ))
}

/// Every token of the server's data directory (admin tokens only; never a secret).
pub async fn list(State(state): State<AppState>) -> Result<Json<TokenList>, ApiError> {
    let tokens = state.tokens.clone();
    let snapshot = tokio::task::spawn_blocking(move || tokens.snapshot())
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(TokenList {
        tokens: snapshot.iter().map(|(r, used)| TokenInfo::of(r, *used)).collect(),
    }))
}

/// Revokes a token (admin tokens only): refused from now on, its open WebSockets closed.
pub async fn revoke(
    State(state): State<AppState>,
    axum::Extension(caller): axum::Extension<crate::auth::Caller>,
    path: Result<axum::extract::Path<TokenIdPath>, PathRejection>,
) -> Result<Json<TokenInfo>, ApiError> {
    let axum::extract::Path(TokenIdPath { id }) =
        path.map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))?;
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return Err(ApiError::bad_request(format!(
            "{id:?} is not a token id (12 lowercase hex digits, from GET /v1/tokens)"
        )));
    }
    // An admin locking itself out by mistake (or a script revoking "every token but…") is refused: another admin
    // token, or `folio token revoke` on the data directory, can.
    if id == caller.id {
        return Err(ApiError::forbidden(
            "a token may not revoke itself: use another admin token, or `folio token revoke` on the data directory",
        ));
    }
    let tokens = state.tokens.clone();
    let revoked = tokio::task::spawn_blocking(move || tokens.revoke_here(&id))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    tracing::info!(id = revoked.id(), label = ?revoked.label, "token revoked");
    Ok(Json(TokenInfo::of(&revoked, None)))
}
