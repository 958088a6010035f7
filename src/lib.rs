//! # folio
//!
//! An event-sourced document engine. Applications describe a **document model** (a state and a pure reducer over
//! single-argument **actions**); every change is an **operation** appended to an immutable log keyed by its **sync
//! unit** `(document id, scope, branch)`. A [`Reactor`] takes actions through a bounded queue, runs the reducers and
//! group-commits the operations to an [`OperationStore`] (in memory, SQLite, or PostgreSQL shared by several nodes,
//! through sqlx), which refuses a stale write with [`StoreError::RevisionMismatch`]; the reactor reloads and
//! retries. A [`DocumentView`] rehydrates documents from the log (nearest keyframe plus the streamed tail) and
//! caches them by bytes.
//!
//! ## Data model
//! * A document has three scopes: `global` (its shared state, replicated), `local` (per replica, never leaves it;
//!   edited with the `folio/json` actions), and `document` (creation, name, deletion).
//! * Each operation carries a blake3 hash chained over its predecessor's: a lost, altered or reordered operation is
//!   detected by [`verify`].
//! * The state hash of a document covers its global state: equal histories give equal hashes on every machine.
//!
//! ## Conflicts
//! Within one process, jobs on a document run one at a time in submission order. Between processes (or nodes),
//! the store's revision check decides: the loser reloads the new head and re-runs its reducers on it. The built-in
//! entity models follow folio's conflict principles: the last operation decides each field, an update of a deleted
//! item recreates it, creating an id twice updates the first. An action id is unique in its unit: submitting an
//! action again is a retry answered with its original outcome. Replicas sync offline-first with the `folio-sync`
//! crate (`folio sync`, `folio serve`): actions merge in one total order (clock, author, id), so every replica
//! reaches the same state hash, and an action its reducer refuses after a merge is kept, marked, and reported.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use folio::{Branch, MemoryStore, Reactor, Scope, Submit};
//! use serde_json::json;
//!
//! let reactor = Reactor::with_defaults(Arc::new(MemoryStore::new()));
//! let id = reactor.create_document("folio/todo-list", "Groceries", None).await?.header.id;
//! let add = reactor.action("ADD_TODO", json!({ "id": "milk", "title": "Buy milk" }), Scope::Global);
//! let done = reactor.apply(Submit::new(id, vec![add])).await?;
//! let doc = reactor.get_min(id, &Branch::default(), done.revision, std::time::Duration::from_secs(1)).await?;
//! assert_eq!(doc.global_json()["items"]["milk"]["title"], "Buy milk");
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub use folio_core::{
    Action, Branch, Document, DocumentHeader, DocumentId, DocumentModel, HlcTimestamp, HybridClock, ModelRegistry,
    OpHash, Operation, Rejection, Revisions, Scope, SyncUnit,
};
pub use folio_reactor::{
    DocumentView, Event, JobOutcome, JobStatus, Reactor, ReactorConfig, ReactorError, Received, Submit, Subscription,
};
pub use folio_store::{MemoryStore, OperationStore, SqliteStore, StoreError, VerifyReport, verify};

/// The data model: ids, actions, operations, hashing, clocks, models (no I/O).
pub mod core {
    pub use folio_core::*;
}

/// The `OperationStore` trait and its backends (the conformance suite comes with folio-store's `testing` feature).
pub mod store {
    pub use folio_store::*;
}

/// The reactor: queue, jobs, executors, event bus, DocumentView.
pub mod reactor {
    pub use folio_reactor::*;
}
