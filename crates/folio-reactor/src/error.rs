//! The reactor's error.

use folio_core::{DocumentId, Rejection};

/// What the reactor can refuse or fail a job with.
///
/// Across the HTTP API: `Overloaded` is 429 `OVERLOADED`, `DocumentNotFound` 404, `DocumentExists` 409,
/// `UnknownDocumentType` 422, `ActionRejected` 422 `ACTION_REJECTED`, `RevisionMismatch` 409, `DuplicateActionId` 409,
/// `RevisionNotReached` 408, `InvalidRequest` 400, `JobNotFound` 404, `ShuttingDown` 503, `Corrupt` 500
/// `CORRUPT_HISTORY`, `ReducerPanicked` 500 `REDUCER_PANICKED`, the rest 500 `INTERNAL`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReactorError {
    /// The queue is full: retry later.
    #[error("the reactor's queue is full; retry later")]
    Overloaded,
    /// The reactor is shutting down and takes no new jobs.
    #[error("the reactor is shutting down")]
    ShuttingDown,
    /// No such document (never created on this branch).
    #[error("document {0} not found")]
    DocumentNotFound(DocumentId),
    /// A document with that id exists already.
    #[error("document {0} exists already")]
    DocumentExists(DocumentId),
    /// No model is registered for the type.
    #[error("unknown document type {0:?}")]
    UnknownDocumentType(String),
    /// A reducer refused an action: the job wrote nothing.
    #[error("action {action_index} rejected: {reason}")]
    ActionRejected {
        /// The position of the refused action in the job.
        action_index: usize,
        /// The reducer's reason.
        reason: Rejection,
    },
    /// The caller's expected revision (compare-and-set) is stale: the job wrote nothing.
    #[error("revision mismatch: expected {expected}, the document is at {actual}")]
    RevisionMismatch {
        /// The revision the caller expected.
        expected: u64,
        /// The revision the document is at.
        actual: u64,
    },
    /// Other writers kept moving the document's head: the job gave up after its retries and wrote nothing.
    #[error("gave up after {} attempts: {}", .attempts.len(), .attempts.join("; "))]
    RetriesExhausted {
        /// What happened at each attempt.
        attempts: Vec<String>,
    },
    /// A read waited for a revision the document did not reach in time.
    #[error("revision {wanted} not reached in time (the document is at {reached})")]
    RevisionNotReached {
        /// The revision asked for.
        wanted: u64,
        /// The revision reached.
        reached: u64,
    },
    /// The request itself is malformed (no actions, actions of several scopes, an action of another scope).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No job with that id is known (never, or forgotten).
    #[error("job {0} not found")]
    JobNotFound(uuid::Uuid),
    /// The store failed; nothing acknowledged is affected.
    #[error("store error: {0}")]
    Store(String),
    /// Stored data cannot be folded into a document (the message names the unit and the index).
    #[error("stored history cannot be replayed: {0}")]
    Corrupt(String),
    /// A reducer panicked (a bug in the model) on an action of the job, or while a read folded a stored one: the job
    /// wrote nothing, and the executor goes on with every other document.
    #[error("the reducer panicked: {0}")]
    ReducerPanicked(String),
    /// An action id is already used in the unit by an action with other content, or twice in one request: nothing
    /// was written.
    #[error("action id {action_id} {reason}")]
    DuplicateActionId {
        /// The id.
        action_id: uuid::Uuid,
        /// What it collides with.
        reason: String,
    },
}

impl From<folio_store::StoreError> for ReactorError {
    fn from(e: folio_store::StoreError) -> Self {
        ReactorError::Store(e.to_string())
    }
}

impl ReactorError {
    /// A stable SCREAMING_SNAKE_CASE code, as used on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            ReactorError::Overloaded => "OVERLOADED",
            ReactorError::ShuttingDown => "SHUTTING_DOWN",
            ReactorError::DocumentNotFound(_) => "DOCUMENT_NOT_FOUND",
            ReactorError::DocumentExists(_) => "DOCUMENT_EXISTS",
            ReactorError::UnknownDocumentType(_) => "UNKNOWN_DOCUMENT_TYPE",
            ReactorError::ActionRejected { .. } => "ACTION_REJECTED",
            ReactorError::RevisionMismatch { .. } => "REVISION_MISMATCH",
            ReactorError::RetriesExhausted { .. } => "RETRIES_EXHAUSTED",
            ReactorError::RevisionNotReached { .. } => "REVISION_NOT_REACHED",
            ReactorError::InvalidRequest(_) => "BAD_REQUEST",
            ReactorError::JobNotFound(_) => "JOB_NOT_FOUND",
            ReactorError::Corrupt(_) => "CORRUPT_HISTORY",
            ReactorError::ReducerPanicked(_) => "REDUCER_PANICKED",
            ReactorError::DuplicateActionId { .. } => "DUPLICATE_ACTION_ID",
            ReactorError::Store(_) => "INTERNAL",
        }
    }
}
