//! Errors of the bucket remote.

use folio_sync::SyncError;

/// Why a bucket round or a promotion failed. Nothing integrated is undone: marks and cursors move only after what
/// they cover is durable, so the next round resumes (and re-sends at worst, which integration drops as duplicates).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum S3Error {
    /// The `s3://bucket/prefix` address or an option is wrong.
    #[error("bad bucket address or option: {0}")]
    Config(String),
    /// The bucket could not be reached or refused a request.
    #[error("bucket {op} {key}: {source}")]
    Bucket {
        /// What was asked (`get`, `put`, `list`).
        op: &'static str,
        /// The object key or prefix.
        key: String,
        /// The object store's error.
        #[source]
        source: object_store::Error,
    },
    /// An object of the layout could not be read as what its key says it is.
    #[error("malformed object {key}: {reason}")]
    Malformed {
        /// The object key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The local replica failed.
    #[error("{0}")]
    Sync(#[from] SyncError),
    /// A failure injected by a test ([`crate::Bucket::inject`]): the process "dies" at that point.
    #[error("injected failure: {0}")]
    Injected(&'static str),
}

impl S3Error {
    /// Whether retrying later may help (the bucket is unreachable or overloaded) rather than needing a fix.
    pub fn is_transient(&self) -> bool {
        match self {
            S3Error::Bucket { source, .. } => matches!(source, object_store::Error::Generic { .. }),
            S3Error::Sync(e) => e.is_transient(),
            _ => false,
        }
    }
}

impl From<folio_store::StoreError> for S3Error {
    fn from(e: folio_store::StoreError) -> Self {
        S3Error::Sync(SyncError::from(e))
    }
}
