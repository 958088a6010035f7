//! The API's error: `{ "error": { "code", "message", "details" } }` with a stable code and an HTTP status.

use aide::generate::GenContext;
use aide::openapi::Operation;
use aide::operation::OperationOutput;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use folio_reactor::ReactorError;
use folio_store::StoreError;

use crate::wire::{ErrorBody, ErrorObject};

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The stable code (`REVISION_MISMATCH`).
    pub code: &'static str,
    /// A human sentence.
    pub message: String,
    /// Extra facts (`actionIndex`, `expected`, `actual`, …).
    pub details: Value,
}

impl ApiError {
    /// An error with empty details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// Adds details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 400 `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// 401 `UNAUTHORIZED`.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// 403 `FORBIDDEN`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 404 with `code`.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 413 `PAYLOAD_TOO_LARGE`.
    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE", message)
    }

    /// 500 `INTERNAL`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", message)
    }
}

impl ApiError {
    /// The wire shape of the error (without the status).
    pub fn to_wire(&self) -> ErrorObject {
        let details = match &self.details {
            Value::Object(map) => map.clone(),
            Value::Null => Map::new(),
            other => Map::from_iter([("value".to_owned(), other.clone())]),
        };
        ErrorObject {
            code: self.code.to_owned(),
            message: self.message.clone(),
            details,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        metrics::counter!("folio_errors_total", "code" => self.code.to_string()).increment(1);
        if self.status.is_server_error() {
            tracing::error!(code = self.code, "{}", self.message);
        }
        let body = ErrorBody { error: self.to_wire() };
        (self.status, axum::Json(body)).into_response()
    }
}

/// The error shape; the statuses and codes of each endpoint are listed by its description in `openapi.rs`.
impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, operation: &mut Operation) -> Option<aide::openapi::Response> {
        axum::Json::<ErrorBody>::operation_response(ctx, operation)
    }
}

impl From<ReactorError> for ApiError {
    fn from(e: ReactorError) -> Self {
        let message = e.to_string();
        let code = e.code();
        match e {
            ReactorError::Overloaded => Self::new(StatusCode::TOO_MANY_REQUESTS, code, message),
            ReactorError::ShuttingDown => Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message),
            ReactorError::DocumentNotFound(id) => {
                Self::new(StatusCode::NOT_FOUND, code, message).with_details(json!({ "documentId": id }))
            }
            ReactorError::DocumentExists(id) => {
                Self::new(StatusCode::CONFLICT, code, message).with_details(json!({ "documentId": id }))
            }
            ReactorError::UnknownDocumentType(t) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_details(json!({ "documentType": t }))
            }
            ReactorError::ActionRejected { action_index, reason } => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).with_details(json!({
                    "actionIndex": action_index, "reason": reason.code, "reasonMessage": reason.message
                }))
            }
            ReactorError::RevisionMismatch { expected, actual } => Self::new(StatusCode::CONFLICT, code, message)
                .with_details(json!({ "expected": expected, "actual": actual })),
            ReactorError::RetriesExhausted { attempts } => {
                Self::new(StatusCode::CONFLICT, code, message).with_details(json!({ "attempts": attempts }))
            }
            ReactorError::RevisionNotReached { wanted, reached } => {
                Self::new(StatusCode::REQUEST_TIMEOUT, code, message)
                    .with_details(json!({ "wanted": wanted, "reached": reached }))
            }
            ReactorError::InvalidRequest(_) => Self::new(StatusCode::BAD_REQUEST, code, message),
            ReactorError::JobNotFound(_) => Self::new(StatusCode::NOT_FOUND, code, message),
            ReactorError::DuplicateActionId { action_id, .. } => {
                Self::new(StatusCode::CONFLICT, code, message).with_details(json!({ "actionId": action_id }))
            }
            // The document's history cannot be folded (a stored operation its model refuses now, or a reducer that
            // panics on it): the document is unreadable, everything else is served.
            ReactorError::Corrupt(_) | ReactorError::ReducerPanicked(_) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, code, message)
            }
            _ => Self::internal(message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::RevisionMismatch { expected, actual, .. } => {
                ApiError::from(ReactorError::RevisionMismatch { expected, actual })
            }
            StoreError::InvalidOperations { .. } => Self::bad_request(e.to_string()),
            other => Self::internal(other.to_string()),
        }
    }
}
