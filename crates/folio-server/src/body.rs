//! Request bodies: bounded in bytes and in nesting depth, parsed into typed requests, every failure a named error.

use aide::generate::GenContext;
use aide::openapi::{Operation, Parameter, ParameterData, ParameterSchemaOrContent, PathStyle, SchemaObject};
use aide::operation::{OperationInput, add_parameters};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use folio_core::DocumentId;

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

/// Whether the request says its body is JSON: `Content-Type: application/json`, parameters (`; charset=utf-8`)
/// allowed, case-insensitive.
pub fn declares_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media_type| media_type.trim().eq_ignore_ascii_case("application/json"))
}

/// 415 `UNSUPPORTED_MEDIA_TYPE`: a body sent as anything but `application/json`. Refused before the body is read,
/// so that a request a browser may send cross-origin without a preflight (`text/plain`) never acts.
fn unsupported_media_type(headers: &HeaderMap) -> ApiError {
    let got = match headers.get(header::CONTENT_TYPE) {
        None => "no Content-Type".to_owned(),
        Some(value) => format!("Content-Type {:?}", String::from_utf8_lossy(value.as_bytes())),
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        format!("the body must be sent as application/json, not with {got}"),
    )
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !declares_json(req.headers()) {
            return Err(unsupported_media_type(req.headers()));
        }
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
        crate::whole::from_slice(&bytes)
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

/// The request body of an operation is `T`'s schema, as for `axum::Json<T>`.
impl<T: JsonSchema> OperationInput for JsonBody<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::Json::<T>::operation_input(ctx, operation);
    }
}

/// The query parameters of an operation are the properties of `T`'s schema, as for `axum::extract::Query<T>`.
impl<T: JsonSchema> OperationInput for QueryParams<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        Query::<T>::operation_input(ctx, operation);
    }
}

/// The `{id}` path segment: a document id, refused with `BAD_REQUEST` when it is not a UUID.
pub struct IdPath(pub DocumentId);

/// The `{jobId}` path segment: a job id, refused with `BAD_REQUEST` when it is not a UUID.
pub struct JobIdPath(pub uuid::Uuid);

async fn path_segment(parts: &mut Parts, state: &AppState) -> Result<String, ApiError> {
    Path::<String>::from_request_parts(parts, state)
        .await
        .map(|Path(raw)| raw)
        .map_err(|e| ApiError::bad_request(format!("bad path: {}", e.body_text())))
}

impl FromRequestParts<AppState> for IdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let raw = path_segment(parts, state).await?;
        raw.parse()
            .map(IdPath)
            .map_err(|_| ApiError::bad_request(format!("{raw:?} is not a document id (a UUID)")))
    }
}

impl FromRequestParts<AppState> for JobIdPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let raw = path_segment(parts, state).await?;
        raw.parse()
            .map(JobIdPath)
            .map_err(|_| ApiError::bad_request(format!("{raw:?} is not a job id (a UUID)")))
    }
}

fn uuid_path_parameter<T: JsonSchema>(ctx: &mut GenContext, operation: &mut Operation, name: &str, what: &str) {
    let json_schema = ctx.schema.subschema_for::<T>();
    add_parameters(
        ctx,
        operation,
        [Parameter::Path {
            parameter_data: ParameterData {
                name: name.to_owned(),
                description: Some(what.to_owned()),
                required: true,
                format: ParameterSchemaOrContent::Schema(SchemaObject {
                    json_schema,
                    example: None,
                    external_docs: None,
                }),
                extensions: Default::default(),
                deprecated: None,
                example: None,
                examples: Default::default(),
                explode: None,
            },
            style: PathStyle::Simple,
        }],
    );
}

impl OperationInput for IdPath {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        uuid_path_parameter::<DocumentId>(ctx, operation, "id", "The document's id (a UUID).");
    }
}

impl OperationInput for JobIdPath {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        uuid_path_parameter::<uuid::Uuid>(ctx, operation, "jobId", "The job's id (a UUID).");
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
