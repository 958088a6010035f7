//! # folio-store
//!
//! The [`OperationStore`] trait, folio's append-only log keyed by sync unit, and its backends: [`MemoryStore`],
//! [`SqliteStore`] and [`PgStore`] (PostgreSQL, for several nodes on one database). Every backend runs the same
//! conformance suite (`conformance`, with `pg_testing` for a database per test: both behind the `testing` feature,
//! which the crates whose tests use them enable in their `[dev-dependencies]`). [`verify`] checks dense indexes and
//! hash chains of a whole store.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod error;
mod header_index;
mod memory;
#[cfg(feature = "testing")]
pub mod pg_testing;
mod postgres;
mod sql_common;
mod sql_queries;
mod sqlite;
mod store;
mod verify;

pub use error::StoreError;
pub use header_index::HeaderRecord;
pub use memory::MemoryStore;
pub use postgres::{PgOptions, PgStore};
pub use sqlite::{SqliteOptions, SqliteStore};
pub use store::{
    AppendRequest, Appended, ColdRead, CommitFeed, Committed, FORMER_REPLICA_ID_KEY, FeedEntry, Keyframe, ListQuery,
    OperationStore, REPLICA_ID_KEY, REPLICA_KEY_KEY, ScopeHeads, SinceFilter, SincePage, links_to, new_seed, precheck,
};
pub use verify::{Broken, VerifyReport, verify};
