//! The PostgreSQL backend, through sqlx: one database shared by several `folio serve` nodes.
//!
//! * **Durability**: PostgreSQL's defaults (`synchronous_commit = on`): `append` returns after COMMIT, which waits for
//!   the WAL flush. Acknowledged means committed.
//! * **Group commit in one round trip**: one writer task per handle owns a dedicated connection and commits every
//!   append that is waiting when it wakes with one call of the server-side function `folio_append` (migration
//!   0004, its body replaced by 0005), outside any explicit transaction: the function locks the unit heads, checks
//!   each request, inserts every accepted operation, moves the heads, updates the header index and queues the
//!   notice, and the implicit transaction commits when it returns. When each unit has one request in the call (the
//!   usual case), one `UPDATE … RETURNING` checks and moves every head; the request-by-request loop runs only for
//!   the others. Under load the writer waits up to [`PgOptions::commit_linger`] (1 ms) for as many callers'
//!   appends as its last commit carried, so commits carry more operations each. Arrays (`UNNEST`) carry the requests. Encoding and in-request hash checks
//!   run in the callers' tasks; the hash link to the stored head, which needs blake3, is checked by the writer
//!   against the heads it knows (`writer.rs`), at the price of a second call when it knows none.
//! * **The revision check holds between nodes**: the function locks the units it appends to (transaction-level
//!   advisory locks by a hash of the unit's key, in one order for every writer, so two writers cannot deadlock on
//!   them; taken before anything is written, so the transaction id comes after them) before comparing
//!   revisions, so a second node waits for the first one's commit and then sees its new head: the result is
//!   `RevisionMismatch` or success, per request. The primary key `(unit_id, idx)` would refuse a duplicate index
//!   anyway.
//! * **Ordinals without a lock**: an operation's ordinal is its transaction's id (xid8) shifted left by 20 bits plus
//!   its position in the call. Transaction ids are handed out without a lock held to COMMIT, so commits of every
//!   node overlap. Readers by ordinal take only ordinals below `pg_snapshot_xmin(pg_current_snapshot()) << 20`,
//!   where every transaction has finished; a committed operation above that bound, held back by an older
//!   transaction still running, makes the read wait for it (`feed.rs`). So whoever reads ordinal N has seen every
//!   ordinal below N that will ever commit, and `read_since` never skips a row (ARCHITECTURE.md, "No commit is
//!   missed"). Ordinals are increasing, not dense. The price: a long write transaction anywhere in the cluster
//!   delays readers by ordinal (never makes them skip).
//! * **Commit notices**: the function runs `pg_notify('folio_commits', origin)`, delivered at COMMIT.
//!   [`OperationStore::commit_feed`] gives a LISTEN connection's wake-ups (other handles' commits only)
//!   and reads marked with whether this handle committed them (the `origin` column), for the reactor's follower.
//! * Reads go through a pool, in chunks of up to 1,024 operations / 4 MiB, each fetched as one row
//!   (`string_agg`), the next chunk fetched while the caller folds the current one.
//!
//! One concern a file: `open.rs` (options, connecting, migrations, the handle's origin), `writer.rs` (the writer
//! task, its group commit and retries, the known heads), `feed.rs` (commit notices: LISTEN, and reads by ordinal below the bound of
//! final ordinals, marked with their origin),
//! `reads.rs` (the reads in PostgreSQL's own SQL), `keyframes_meta.rs` (keyframes and meta values, written
//! straight through the pool); what the SQLite and PostgreSQL backends share is in `crate::sql_common` and
//! `crate::sql_queries` (the reads with one SQL text).

mod feed;
mod keyframes_meta;
mod open;
mod reads;
mod writer;

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use futures::stream::BoxStream;
use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, watch};

use folio_core::{Branch, DocumentHeader, DocumentId, OpHash, Operation, Revisions, SyncUnit};

pub use open::PgOptions;

use crate::StoreError;
use crate::sql_common::read_chunks;
use crate::sql_queries;
use feed::PgFeed;
use writer::Append;

use crate::store::{
    AppendRequest, Appended, ColdRead, CommitFeed, Committed, FeedEntry, Keyframe, ListQuery, OperationStore,
};

/// The channel commit notices go through.
pub const NOTIFY_CHANNEL: &str = "folio_commits";

/// An `OperationStore` in a PostgreSQL database, which several processes (nodes) may share. Cheap to clone; clones
/// share the writer, the read pool and the identity (`origin`) their commits are marked with, so give each reactor
/// a handle of its own (`open` it once per reactor): its follower counts the handle's commits as its own.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    writer: mpsc::Sender<Append>,
    origin: i64,
    /// Heads this handle wrote or read, for the writer's hash-link check (see `writer.rs`).
    heads: Arc<writer::HeadCache>,
    target: Arc<str>,
    feed: Arc<OnceLock<Arc<PgFeed>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.target)
            .field("origin", &self.origin)
            .finish()
    }
}

impl PgStore {
    /// The read pool, for tools that query the database directly (benchmarks' baselines, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The group commit an ordinal of this backend was committed in: operations committed by one call of the
    /// writer (one transaction) share it, and later calls have larger ones (an ordinal is the transaction's id
    /// shifted left, plus the operation's position in the call). For tools that look at how commits were grouped.
    pub fn group_commit_of(ordinal: u64) -> u64 {
        ordinal >> writer::ORDINAL_SHIFT
    }

    /// The identity this handle's commits carry in the `origin` column and in their notices.
    pub fn origin(&self) -> i64 {
        self.origin
    }
}

#[async_trait]
impl OperationStore for PgStore {
    async fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        self.send_appends(requests).await
    }

    fn read(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> BoxStream<'static, Result<Operation, StoreError>> {
        read_chunks(self.pool.clone(), reads::CHUNK_SQL, unit, from, to, || async { Ok(()) })
    }

    async fn find_actions(&self, unit: &SyncUnit, ids: &[uuid::Uuid]) -> Result<Vec<Operation>, StoreError> {
        reads::find_actions(&self.pool, unit, ids).await
    }

    async fn skips(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> Result<Vec<(u64, u64)>, StoreError> {
        sql_queries::skips(&self.pool, unit, from, to).await
    }

    async fn read_cold(
        &self,
        document_id: DocumentId,
        branch: &Branch,
        keyframes: bool,
        limit: usize,
    ) -> Result<ColdRead, StoreError> {
        reads::read_cold(&self.pool, document_id, branch, keyframes, limit).await
    }

    async fn head(&self, unit: &SyncUnit) -> Result<(u64, OpHash), StoreError> {
        let (revision, hash) = sql_queries::head(&self.pool, unit).await?;
        self.heads.note(unit, revision, hash);
        Ok((revision, hash))
    }

    async fn revisions(&self, document_id: DocumentId, branch: &Branch) -> Result<Revisions, StoreError> {
        Ok(sql_queries::doc_revisions(&self.pool, document_id, branch).await?.0)
    }

    async fn header(&self, document_id: DocumentId, branch: &Branch) -> Result<Option<DocumentHeader>, StoreError> {
        sql_queries::header(&self.pool, document_id, branch, reads::name_and_deleted).await
    }

    async fn list_headers(&self, query: &ListQuery) -> Result<Vec<DocumentHeader>, StoreError> {
        sql_queries::list_headers(&self.pool, reads::LIST_HEADERS_SQL, query, reads::name_and_deleted).await
    }

    async fn read_since(&self, after_ordinal: u64, limit: usize) -> Result<Vec<Committed>, StoreError> {
        Ok(
            feed::read_committed(&self.pool, after_ordinal, limit, None, &self.heads)
                .await?
                .into_iter()
                .filter_map(|entry| match entry {
                    FeedEntry::Elsewhere(committed) => Some(committed),
                    FeedEntry::Own { .. } => None, // not asked for: every operation comes whole
                })
                .collect(),
        )
    }

    async fn max_ordinal(&self) -> Result<u64, StoreError> {
        feed::max_ordinal(&self.pool).await
    }

    async fn units(&self) -> Result<Vec<SyncUnit>, StoreError> {
        sql_queries::units(&self.pool).await
    }

    async fn put_keyframe(&self, keyframe: &Keyframe) -> Result<(), StoreError> {
        keyframes_meta::put_keyframe(&self.pool, keyframe).await
    }

    async fn nearest_keyframe(&self, unit: &SyncUnit, revision: u64) -> Result<Option<Keyframe>, StoreError> {
        sql_queries::nearest_keyframe(&self.pool, unit, revision).await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        sql_queries::get_meta(&self.pool, key).await
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        keyframes_meta::put_meta(&self.pool, key, value).await
    }

    async fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
        keyframes_meta::put_meta_if_absent(&self.pool, key, value).await
    }

    fn commit_feed(&self) -> Option<Arc<dyn CommitFeed>> {
        let feed = self.feed.get_or_init(|| {
            let (tx, rx) = watch::channel(0u64);
            tokio::spawn(feed::listen(self.pool.clone(), self.origin, tx));
            Arc::new(PgFeed {
                pool: self.pool.clone(),
                origin: self.origin,
                heads: self.heads.clone(),
                notices: rx,
            })
        });
        Some(feed.clone())
    }
}
