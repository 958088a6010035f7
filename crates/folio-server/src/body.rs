//! Request bodies: bounded in bytes and in nesting depth, parsed into typed requests, every failure a named error.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::ApiError;
use crate::state::AppState;

/// A JSON body of type `T`.
pub struct JsonBody<T>(pub T);

/// The deepest nesting of arrays and objects a body may have.
pub const MAX_DEPTH: usize = 64;

/// Whether `bytes` nest arrays and objects deeper than `max` (strings are skipped).
pub fn too_deep(bytes: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::too_large(format!(
                    "the body is over the limit of {} bytes ({} for sync pushes)",
                    state.config.body_limit, state.config.sync_body_limit
                ))
            } else {
                ApiError::bad_request(format!("the body could not be read: {rejection}"))
            }
        })?;
        if bytes.is_empty() {
            return Err(ApiError::bad_request("the body is empty; a JSON object is expected"));
        }
        if too_deep(&bytes, MAX_DEPTH) {
            return Err(ApiError::bad_request(format!(
                "the body nests deeper than {MAX_DEPTH} levels"
            )));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("the body is not a valid request: {e}")))
    }
}

/// Query parameters of type `T`, refused with `BAD_REQUEST` when malformed.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| ApiError::bad_request(format!("bad query parameters: {}", e.body_text())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert!(!too_deep(br#"{"a": "[[[[[[[[[[[["}"#, 3));
        assert!(too_deep(b"[[[[", 3));
        assert!(!too_deep(b"[[[]]]", 3));
        assert!(!too_deep(br#"{"a": "\"[[[["}"#, 2));
    }
}
