//! `POST /v1/tokens`: what an admin token may do that a write token may not: make tokens over HTTP.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ApiError;
use crate::auth::{Role, Tokens};
use crate::body::JsonBody;
use crate::state::AppState;

/// The body of `POST /v1/tokens`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// What the token may do.
    pub role: RoleName,
}

/// A token's role on the wire.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// Read documents, history, jobs; subscribe; pull.
    Read,
    /// Also create, change and delete documents; push.
    Write,
    /// Also make tokens.
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

/// The answer of `POST /v1/tokens`: the secret, shown this once (the server keeps only its hash).
#[derive(Debug, Serialize, JsonSchema)]
pub struct CreatedToken {
    /// The bearer token.
    pub token: String,
    /// Its role.
    pub role: RoleName,
}

/// Makes a token of the asked role (admin tokens only; the secret is shown once).
pub async fn create(
    State(state): State<AppState>,
    JsonBody(req): JsonBody<NewToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let data_dir = state.config.data_dir.clone();
    let role = Role::from(req.role);
    let token = tokio::task::spawn_blocking(move || Tokens::create(&data_dir, role))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(format!("cannot write the tokens file: {e}")))?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, role: req.role })))
}
