//! The SQLite backend, through sqlx.
//!
//! * **Durability**: WAL journal, and a commit is fsynced before `append` returns, so an acknowledged operation
//!   survives a kill -9 *and* a power loss. The fsync is not inside the commit: the writer commits with
//!   `synchronous = NORMAL`, and a sync thread fsyncs the WAL and only then acknowledges every commit written
//!   before it started, while the writer runs the next transaction (so the disk's latency does not hold the
//!   write lock). The WAL's checksum chain keeps recovery to a prefix of the commits, so a later commit never
//!   survives an earlier one. Reads see a commit as soon as its `COMMIT` ran, so every read waits, before it
//!   returns, for the fsync of every transaction begun by then (`Durability`; only while one is in flight): what
//!   a caller reads cannot vanish in a power loss, and an ordinal handed to a pulling replica is never reused.
//!   (`SqliteOptions::synchronous_full = false` skips the fsync: durable against process crashes only.)
//! * **One writer task per store** owns a dedicated connection and group-commits every append that is waiting when
//!   it wakes, in two round trips to sqlx's connection thread: `BEGIN IMMEDIATE` with the counters and one batched
//!   read of the unit heads, then the multi-row `INSERT`, the multi-row upsert of the heads and `COMMIT`, each sent
//!   as one multi-statement text (a round trip costs two thread wake-ups, which at many writers cost more than the
//!   SQL: docs/benchmarks.md). Statement shapes are padded to powers of two so one cached prepared statement
//!   serves every size. Encoding and in-request hash checks happen in the caller's task, in parallel.
//! * **Checkpoints** run on the writer's connection between two of its transactions, after every 1 MiB of
//!   operations, so they copy every frame and the WAL starts over from its beginning (bounded, and written in place
//!   instead of extending the file); `journal_size_limit` trims it back to 64 MiB after a burst.
//! * **Several processes** may open the same file: `BEGIN IMMEDIATE` takes the write lock before the revision check,
//!   and a busy timeout waits for the other process; the result is `RevisionMismatch` or success, never a duplicate
//!   index or a gap (the unique index on `(unit_id, idx)` would refuse one anyway).
//! * Reads go through a small pool of read connections and page through a unit's log in chunks, so a read of a long
//!   history holds a bounded number of operations in memory. A chunk is one row of the `log` table (`chunk.rs`
//!   encodes and decodes it), so the driver's per-row cost (most of a raw replay's time, see docs/benchmarks.md) is
//!   paid once per chunk. A producer task fetches and decodes the next chunks while the caller folds the current
//!   ones.
//! * **A read-only open** (`open_read_only`, for processes that load a document and exit) has no writer; its cold
//!   reads go through a synchronous connection on the caller's thread (`cold.rs`), its other reads through a pool
//!   of one connection opened at first use.
//!
//! One concern a file: `open.rs` (options, connection settings, migrations, starting the writer and the sync
//! thread), `writer.rs` (the writer task and its group commit), `wal.rs` (the WAL's fsync thread, what reads wait
//! for, checkpoints), `sql.rs` (the writer's statement texts and their binding), `reads.rs` (the reads in SQLite's
//! own SQL, and the steps of a cold read), `cold.rs` (the read-only store's synchronous connection), `chunk.rs`
//! (the stored form of operations); what the SQLite and PostgreSQL backends share is in `crate::sql_common` and
//! `crate::sql_queries` (the reads with one SQL text).

mod chunk;
mod cold;
mod open;
mod reads;
mod sql;
#[cfg(test)]
mod tests;
mod wal;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use sqlx::sqlite::SqlitePool;
use tokio::sync::mpsc;

use folio_core::{Branch, DocumentHeader, DocumentId, OpHash, Operation, Revisions, SyncUnit};

pub use open::SqliteOptions;

use crate::StoreError;
use crate::sql_queries;
use crate::store::{
    AppendRequest, Appended, ColdRead, Committed, Keyframe, ListQuery, OperationStore, SinceFilter, SincePage,
};
use writer::WriteCommand;

/// An `OperationStore` in one SQLite file. Cheap to clone; clones share the writer and the read pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<WriteCommand>,
    path: PathBuf,
    /// Units by their row id, as reads resolve them.
    unit_names: Arc<std::sync::Mutex<HashMap<i64, SyncUnit>>>,
    /// How far the writer's transactions are on disk, when a sync thread fsyncs them (the default).
    durability: Option<Arc<wal::Durability>>,
    /// The read-only store's synchronous connection, which its cold reads go through (`cold.rs`).
    cold: Option<Arc<cold::ColdConnection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
    }
}

impl SqliteStore {
    /// `value`, once everything committed before now is on disk (see [`wal::Durability`]).
    async fn settled<T>(&self, value: T) -> Result<T, StoreError> {
        if let Some(durability) = &self.durability {
            durability.settle().await?;
        }
        Ok(value)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The read pool, for tools that query the file directly (benchmarks' baselines).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl OperationStore for SqliteStore {
    fn read(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> BoxStream<'static, Result<Operation, StoreError>> {
        let durability = self.durability.clone();
        // Each chunk waits for the fsync of what it may show before it is handed on.
        let settle = move || {
            let durability = durability.clone();
            async move {
                match durability {
                    Some(durability) => durability.settle().await,
                    None => Ok(()),
                }
            }
        };
        reads::read_log(self.pool.clone(), unit, from, to, settle)
    }

    async fn find_actions(&self, unit: &SyncUnit, ids: &[uuid::Uuid]) -> Result<Vec<Operation>, StoreError> {
        // Nothing found needs no durability wait (writers look up every new action's id: waiting for the last
        // commit's fsync there would serialize them on it); what is found is answered as durable, so it waits.
        let found = reads::find_actions(&self.pool, unit, ids).await?;
        if found.is_empty() {
            Ok(found)
        } else {
            self.settled(found).await
        }
    }

    async fn find_action_indexes(
        &self,
        unit: &SyncUnit,
        ids: &[uuid::Uuid],
        before: u64,
    ) -> Result<Vec<(uuid::Uuid, u64)>, StoreError> {
        let found = reads::find_action_indexes(&self.pool, unit, ids, before).await?;
        if found.is_empty() {
            Ok(found)
        } else {
            self.settled(found).await
        }
    }

    async fn skips(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> Result<Vec<(u64, u64)>, StoreError> {
        self.settled(reads::skips(&self.pool, unit, from, to).await?).await
    }

    async fn head(&self, unit: &SyncUnit) -> Result<(u64, OpHash), StoreError> {
        self.settled(sql_queries::head(&self.pool, unit).await?).await
    }

    async fn revisions(&self, document_id: DocumentId, branch: &Branch) -> Result<Revisions, StoreError> {
        self.settled(sql_queries::doc_revisions(&self.pool, document_id, branch).await?.0)
            .await
    }

    async fn header(&self, document_id: DocumentId, branch: &Branch) -> Result<Option<DocumentHeader>, StoreError> {
        self.settled(sql_queries::header(&self.pool, document_id, branch, reads::name_and_deleted).await?)
            .await
    }

    async fn list_headers(&self, query: &ListQuery) -> Result<Vec<DocumentHeader>, StoreError> {
        self.settled(
            sql_queries::list_headers(&self.pool, reads::LIST_HEADERS_SQL, query, reads::name_and_deleted).await?,
        )
        .await
    }

    async fn read_since(&self, after_ordinal: u64, limit: usize) -> Result<Vec<Committed>, StoreError> {
        Ok(self
            .read_since_filtered(after_ordinal, limit, &SinceFilter::default())
            .await?
            .committed)
    }

    async fn read_since_filtered(
        &self,
        after_ordinal: u64,
        limit: usize,
        filter: &SinceFilter<'_>,
    ) -> Result<SincePage, StoreError> {
        self.settled(reads::read_since_filtered(self, after_ordinal, limit, filter).await?)
            .await
    }

    async fn max_ordinal(&self) -> Result<u64, StoreError> {
        self.settled(reads::max_ordinal(&self.pool).await?).await
    }

    async fn units(&self) -> Result<Vec<SyncUnit>, StoreError> {
        self.settled(sql_queries::units(&self.pool).await?).await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.settled(sql_queries::get_meta(&self.pool, key).await?).await
    }

    async fn nearest_keyframe(&self, unit: &SyncUnit, revision: u64) -> Result<Option<Keyframe>, StoreError> {
        self.settled(sql_queries::nearest_keyframe(&self.pool, unit, revision).await?)
            .await
    }

    async fn read_cold(
        &self,
        document_id: DocumentId,
        branch: &Branch,
        keyframes: bool,
        limit: usize,
    ) -> Result<ColdRead, StoreError> {
        // The read-only store's synchronous connection when it is free, else the pool (see `cold.rs`).
        let cold = match self
            .cold
            .as_ref()
            .and_then(|c| c.try_read_cold(document_id, branch, keyframes, limit))
        {
            Some(read) => read?,
            None => reads::read_cold(&self.pool, document_id, branch, keyframes, limit).await?,
        };
        self.settled(cold).await
    }

    // Writes go to the writer task (`writer.rs`).
    async fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        self.send_appends(requests).await
    }

    async fn put_keyframe(&self, keyframe: &Keyframe) -> Result<(), StoreError> {
        self.send_keyframe(keyframe).await
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.send_meta(key, value, true).await.map(drop)
    }

    async fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.send_meta(key, value, false).await
    }
}
