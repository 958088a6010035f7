//! Sync errors.

use folio_reactor::ReactorError;
use folio_store::StoreError;

/// Why a sync step failed. Nothing already integrated is undone: cursors only move after what they cover is
/// durably stored, so the next round resumes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SyncError {
    /// The local store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The local reactor refused or failed a job.
    #[error("reactor: {0}")]
    Reactor(#[from] ReactorError),
    /// The remote could not be reached (connection refused, timeout, DNS): the replica is offline.
    #[error("remote unreachable: {0}")]
    Unreachable(String),
    /// The remote answered with an error.
    #[error("remote refused ({status} {code}): {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error code of its body (`UNAUTHORIZED`).
        code: String,
        /// Its message.
        message: String,
    },
    /// Something that breaks the protocol (a malformed answer, a push of another replica's actions).
    #[error("protocol: {0}")]
    Protocol(String),
}

impl SyncError {
    /// Whether retrying later may help (the remote is unreachable or overloaded) rather than needing a fix.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Unreachable(_) => true,
            SyncError::Refused { status, .. } => *status == 429 || *status >= 500,
            SyncError::Reactor(ReactorError::Overloaded) => true,
            _ => false,
        }
    }
}
