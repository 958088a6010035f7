//! The store crate's error.

use folio_core::{ChainError, SyncUnit};

/// What an [`crate::OperationStore`] can refuse or fail with.
///
/// Across the HTTP API: `RevisionMismatch` is 409 `REVISION_MISMATCH`, `InvalidOperations` is 400 `BAD_REQUEST`,
/// everything else is 500 `INTERNAL` (and nothing stored is affected).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The caller's expected revision is stale (or ahead): nothing was written.
    #[error("revision mismatch on {unit}: expected {expected}, the log is at {actual}")]
    RevisionMismatch {
        /// The unit written to.
        unit: SyncUnit,
        /// The revision the caller expected the unit to be at.
        expected: u64,
        /// The revision the unit is at.
        actual: u64,
    },
    /// The operations do not continue the unit's log (indexes not dense from the expected revision, a hash that
    /// does not chain, an id that differs from its action's): nothing was written.
    #[error("operations for {unit} do not continue its log: {reason}")]
    InvalidOperations {
        /// The unit written to.
        unit: SyncUnit,
        /// What does not fit.
        reason: ChainError,
    },
    /// A stored row cannot be decoded: the file was damaged or written by something else.
    #[error("stored data of {unit} at index {index} is unreadable: {reason}")]
    Corrupt {
        /// The unit.
        unit: String,
        /// The index.
        index: u64,
        /// Why it cannot be read.
        reason: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The read-only SQLite store's synchronous connection failed (`SqliteStore::open_read_only`: its open and its
    /// cold reads).
    #[error("database error (read-only connection): {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The database's migrations failed.
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database holds no folio store (and the caller asked not to create one).
    #[error("not a folio store: {0}")]
    NotAStore(String),
    /// The disk did not confirm a commit (fsync of the write-ahead log failed). What the disk holds is unknown, so
    /// this write and every later one on this store fail: restart the process, which recovers the log.
    #[error("the disk did not confirm the write (fsync of the log failed: {0}); restart to recover")]
    Unsynced(String),
    /// The operating system gave no random bytes for a new replica key.
    #[error("no randomness for a replica key: {0}")]
    NoRandomness(String),
    /// The store was closed (its writer stopped).
    #[error("the store is closed")]
    Closed,
}
