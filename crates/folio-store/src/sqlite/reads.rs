//! The reads in SQLite's own SQL, through the pool of read connections: a unit's log chunk by chunk (decoded by
//! `chunk.rs` in a producer task while the caller folds), the skips, the header list, operations by action id,
//! the log by ordinal (chunks left out by their author in SQLite, the rest filtered as they are decoded; units
//! resolved through a cache). The reads with one SQL text for both backends are in
//! `crate::sql_queries`. Each returns what it read; the store's `OperationStore` impl (`mod.rs`) then waits for the
//! fsync of what it may have seen.

use std::collections::HashMap;
use std::future::Future;

use futures::stream::{self, BoxStream, StreamExt};
use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use tokio::sync::mpsc;

use folio_core::merge::Cuts;
use folio_core::{Branch, DocumentId, Operation, Scope, SyncUnit};

use super::SqliteStore;
use super::chunk::decode_chunk;
use super::sql::MAX_UNITS_PER_STATEMENT;
use crate::StoreError;
use crate::sql_common::{Columns, keyframe_from_row, to_i64, unit_from_row};
use crate::sql_queries::list_headers_sql;
use crate::store::{ColdRead, Committed, Keyframe, ScopeHeads, SinceFilter, SincePage};

/// A chunk as `read_since` reads it: ordinal, unit id, first index, count, and the blob (NULL when the filter
/// leaves the chunk out by its author).
type SinceRow = (i64, i64, i64, i64, Option<Vec<u8>>);

/// Chunks per query of `read_since`.
const READ_SINCE_PAGE: i64 = 256;

/// Action ids looked up in one statement (SQLite's limit on bound values is far above).
const FIND_CHUNK: usize = 500;

/// A read of a unit's log fetches chunks until they hold this many operations (one chunk may take it past).
const READ_OPS: i64 = 1024;

/// `FROM` the chunks of unit `?1` from the one holding index `?2` on: the rule both chunk statements share.
macro_rules! chunks_from_the_one_holding {
    () => {
        "FROM log WHERE unit_id = ?1 \
         AND idx >= COALESCE((SELECT MAX(idx) FROM log WHERE unit_id = ?1 AND idx <= ?2), 0)"
    };
}

/// The chunks of a unit's log from the one holding index `$2` (up to `$3`), until they hold [`READ_OPS`]
/// operations: `$1` the unit id, `$4` the bound.
pub(super) const CHUNKS_SQL: &str = concat!(
    "WITH w AS (SELECT idx, SUM(count) OVER (ORDER BY idx ROWS UNBOUNDED PRECEDING) - count AS before ",
    chunks_from_the_one_holding!(),
    " AND idx < ?3 ORDER BY idx LIMIT ?4) SELECT idx, count, data ",
    chunks_from_the_one_holding!(),
    " AND idx <= (SELECT MAX(idx) FROM w WHERE before < ?4) ORDER BY idx"
);

/// The chunks of a unit's log from the one holding index `?2`, below `?3`, in index order (`?1` the unit id), for a
/// reader that steps the rows and stops when it has enough (the read-only store's cold reads, `cold.rs`).
pub(super) const COLD_CHUNKS_SQL: &str = concat!(
    "SELECT idx, count, data ",
    chunks_from_the_one_holding!(),
    " AND idx < ?3 ORDER BY idx"
);

/// The unit id of `unit`, `None` when it has no row.
async fn unit_id(pool: &SqlitePool, unit: &SyncUnit) -> Result<Option<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT unit_id FROM units WHERE document_id = ? AND scope = ? AND branch = ?")
            .bind(unit.document_id.to_string())
            .bind(unit.scope.as_str())
            .bind(unit.branch.as_str())
            .fetch_optional(pool)
            .await?,
    )
}

/// `(idx, count, data)` of the chunks of the unit `unit_id` from the one holding `from`, up to `to` (see
/// [`CHUNKS_SQL`]).
async fn fetch_chunks(
    pool: &SqlitePool,
    unit_id: i64,
    from: u64,
    to: Option<u64>,
) -> Result<Vec<(i64, i64, Vec<u8>)>, StoreError> {
    Ok(sqlx::query_as(CHUNKS_SQL)
        .bind(unit_id)
        .bind(to_i64(from))
        .bind(to.map_or(i64::MAX, to_i64))
        .bind(READ_OPS)
        .fetch_all(pool)
        .await?)
}

/// `read`: the operations of `unit` from `from` (up to `to`), chunk by chunk; `settle` runs after each fetch,
/// before its operations are handed on (the wait for the fsync of what they may show).
///
/// A producer task fetches the next chunks (on sqlx's thread) while it decodes these and the caller folds the
/// previous ones; the channel holds two batches, so memory stays bounded and a dropped stream stops the producer.
/// A chunk that does not start where the previous one ended is a loss, named at the first missing index.
pub(super) fn read_log<S, SFut>(
    pool: SqlitePool,
    unit: &SyncUnit,
    from: u64,
    to: Option<u64>,
    settle: S,
) -> BoxStream<'static, Result<Operation, StoreError>>
where
    S: Fn() -> SFut + Send + Sync + 'static,
    SFut: Future<Output = Result<(), StoreError>> + Send,
{
    let unit = unit.clone();
    let (tx, rx) = mpsc::channel::<Vec<Result<Operation, StoreError>>>(2);
    tokio::spawn(async move {
        let send_err = |e: StoreError| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(vec![Err(e)]).await;
            }
        };
        let unit_id = match unit_id(&pool, &unit).await {
            Ok(Some(id)) => id,
            Ok(None) => return,
            Err(e) => return send_err(e).await,
        };
        let fetch = |from: u64| {
            let pool = pool.clone();
            tokio::spawn(async move { fetch_chunks(&pool, unit_id, from, to).await })
        };
        let mut expected = from;
        let mut pending = to.is_none_or(|t| from < t).then(|| fetch(from));
        while let Some(handle) = pending.take() {
            let rows = match handle.await {
                Ok(Ok(rows)) => rows,
                Ok(Err(e)) => return send_err(e).await,
                Err(_) => return,
            };
            let Some(&(last_idx, last_count, _)) = rows.last() else {
                break;
            };
            if let Err(e) = settle().await {
                return send_err(e).await;
            }
            let next = (last_idx + last_count) as u64;
            if to.is_none_or(|t| next < t) && next > expected {
                pending = Some(fetch(next));
                // Let the fetch start before decoding (a task spawned here waits in this worker's LIFO slot).
                tokio::task::yield_now().await;
            }
            let mut batch = Vec::new();
            let mut failed = false;
            for (idx, count, data) in &rows {
                let (idx, count) = (*idx as u64, *count as usize);
                if idx > expected {
                    batch.push(Err(missing(&unit, expected, idx)));
                    failed = true;
                    break;
                }
                for op in decode_chunk(&unit, idx, count, data) {
                    match op {
                        Ok(op) if op.index < expected => {}
                        Ok(op) if to.is_some_and(|t| op.index >= t) => break,
                        Ok(op) => {
                            expected = op.index + 1;
                            batch.push(Ok(op));
                        }
                        Err(e) => {
                            batch.push(Err(e));
                            failed = true;
                            break;
                        }
                    }
                }
                if failed {
                    break;
                }
                expected = expected.max(idx + count as u64);
            }
            if tx.send(batch).await.is_err() || failed {
                break;
            }
        }
        if let Some(handle) = pending {
            handle.abort();
        }
    });
    stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
        .flat_map(stream::iter)
        .boxed()
}

/// The statements of a cold read, one method each, answered by either connection kind: sqlx's (a pool
/// connection, `read_cold` below) or the read-only store's synchronous one (`cold.rs`). [`read_cold_from`] holds
/// the steps once. Every read is capped at the heads the first one found, so the answer is consistent whatever
/// commits meanwhile (each source also reads in one transaction).
pub(super) trait ColdSource {
    /// `(unit_id, scope, revision)` of the document's units on `branch`.
    async fn units(&mut self, document_id: DocumentId, branch: &Branch) -> Result<Vec<UnitRow>, StoreError>;
    /// The newest keyframe of the unit `unit_id` (which is `unit`) at or below `head`.
    async fn keyframe(&mut self, unit: &SyncUnit, unit_id: i64, head: u64) -> Result<Option<Keyframe>, StoreError>;
    /// `(idx, skip)` of the unit's skipping operations in `from..head` (see [`COLD_SKIPS_SQL`]).
    async fn skips(&mut self, unit_id: i64, from: u64, head: u64) -> Result<Vec<(i64, i64)>, StoreError>;
    /// The chunks from the one holding `from`, below `head`, at least until they hold `limit` operations from
    /// `from` (the pool's statement may stop short of that, after its first chunk's count: the caller asks again
    /// from where they end).
    async fn chunks(&mut self, unit_id: i64, from: u64, head: u64, limit: usize) -> Result<Vec<ChunkRow>, StoreError>;
}

/// `(unit_id, scope, revision)`: a row of [`COLD_UNITS_SQL`].
pub(super) type UnitRow = (i64, String, i64);
/// `(idx, count, data)`: a chunk of a unit's log.
pub(super) type ChunkRow = (i64, i64, Vec<u8>);

/// A cold read's units: the document's, with their scope and head.
pub(super) const COLD_UNITS_SQL: &str =
    "SELECT unit_id, scope, revision FROM units WHERE document_id = ? AND branch = ?";
/// A cold read's keyframe: the unit's newest at or below a revision.
pub(super) const COLD_KEYFRAME_SQL: &str = "SELECT revision, last_hash, state, state_hash, seen FROM keyframes \
     WHERE unit_id = ? AND revision <= ? ORDER BY revision DESC LIMIT 1";
/// A cold read's skips: the unit's skipping operations from an index on, below the head.
pub(super) const COLD_SKIPS_SQL: &str =
    "SELECT idx, skip FROM log_skips WHERE unit_id = ? AND idx >= ? AND idx < ? ORDER BY idx";

/// `read_cold` on SQLite through the pool: one connection and one read transaction (one snapshot), six statements
/// of four texts: the document's units (ids and heads), the global keyframe, the two scopes' skips, and each unit's
/// first chunks. The trait's default makes seven calls through the pool, each a statement or two of its own on
/// whichever connection is free, and its reads prefetch their next chunks: in a fresh process a cold load paid for
/// a second connection (a thread, the file's open, the schema parsed again) and for every statement's first
/// preparation on both.
pub(super) async fn read_cold(
    pool: &SqlitePool,
    document_id: DocumentId,
    branch: &Branch,
    keyframes: bool,
    limit: usize,
) -> Result<ColdRead, StoreError> {
    let mut conn = pool.acquire().await?;
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    let cold = read_cold_from(&mut PoolSource(&mut tx), document_id, branch, keyframes, limit).await?;
    tx.rollback().await?;
    Ok(cold)
}

/// A [`ColdSource`] on a read transaction of the pool.
struct PoolSource<'t, 'c>(&'t mut sqlx::Transaction<'c, sqlx::Sqlite>);

impl ColdSource for PoolSource<'_, '_> {
    async fn units(&mut self, document_id: DocumentId, branch: &Branch) -> Result<Vec<UnitRow>, StoreError> {
        Ok(sqlx::query_as(COLD_UNITS_SQL)
            .bind(document_id.to_string())
            .bind(branch.as_str())
            .fetch_all(&mut **self.0)
            .await?)
    }

    async fn keyframe(&mut self, unit: &SyncUnit, unit_id: i64, head: u64) -> Result<Option<Keyframe>, StoreError> {
        let row = sqlx::query(COLD_KEYFRAME_SQL)
            .bind(unit_id)
            .bind(to_i64(head))
            .fetch_optional(&mut **self.0)
            .await?;
        Ok(row.map(|row| keyframe_from_row(unit, &row)))
    }

    async fn skips(&mut self, unit_id: i64, from: u64, head: u64) -> Result<Vec<(i64, i64)>, StoreError> {
        Ok(sqlx::query_as(COLD_SKIPS_SQL)
            .bind(unit_id)
            .bind(to_i64(from))
            .bind(to_i64(head))
            .fetch_all(&mut **self.0)
            .await?)
    }

    async fn chunks(&mut self, unit_id: i64, from: u64, head: u64, limit: usize) -> Result<Vec<ChunkRow>, StoreError> {
        Ok(sqlx::query_as(CHUNKS_SQL)
            .bind(unit_id)
            .bind(to_i64(from))
            .bind(to_i64(head))
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut **self.0)
            .await?)
    }
}

/// The steps of a cold read, on one snapshot that `source` holds: the document's units and heads, the global
/// unit's keyframe (when asked for), the skips of the document scope and of the global scope from the keyframe,
/// then each unit's first operations (from the keyframe for the global scope), window by window up to `limit`.
///
/// It awaits nothing but `source`'s methods: the synchronous source drives it with `now_or_never`, which holds
/// only while every await here answers at once.
pub(super) async fn read_cold_from(
    source: &mut impl ColdSource,
    document_id: DocumentId,
    branch: &Branch,
    keyframes: bool,
    limit: usize,
) -> Result<ColdRead, StoreError> {
    let units = source.units(document_id, branch).await?;
    let unit_of = |scope: Scope| {
        units
            .iter()
            .find(|(_, s, _)| s == scope.as_str())
            .map(|&(id, _, revision)| (id, revision.max(0) as u64))
    };
    let (document, global, local) = (unit_of(Scope::Document), unit_of(Scope::Global), unit_of(Scope::Local));
    let mut cold = ColdRead {
        heads: ScopeHeads {
            document: document.map_or(0, |u| u.1),
            global: global.map_or(0, |u| u.1),
            local: local.map_or(0, |u| u.1),
        },
        ..ColdRead::default()
    };
    let sync_unit = |scope| SyncUnit::new(document_id, scope, branch.clone());
    let mut from = 0;
    if let Some((global_id, head)) = global
        && keyframes
        && head > 0
        && let Some(keyframe) = source.keyframe(&sync_unit(Scope::Global), global_id, head).await?
    {
        from = keyframe.revision;
        cold.keyframe = Some(keyframe);
    }
    for (unit, at, skips) in [
        (document, 0, &mut cold.document_skips),
        (global, from, &mut cold.global_skips),
    ] {
        if let Some((id, head)) = unit {
            let rows = source.skips(id, at, head).await?;
            *skips = rows.into_iter().map(|(i, s)| (i as u64, s as u64)).collect();
        }
    }
    for (scope, unit, at, ops) in [
        (Scope::Document, document, 0, &mut cold.document),
        (Scope::Global, global, from, &mut cold.global),
        (Scope::Local, local, 0, &mut cold.local),
    ] {
        let Some((id, head)) = unit else { continue };
        if limit == 0 || at >= head {
            continue;
        }
        let unit = sync_unit(scope);
        let mut next = at;
        // A source may stop short of the cap (the pool's window counts the operations of its first chunk from that
        // chunk's start, so one that holds few of them at or after `next` leaves it unreached): the next window
        // starts where this one ended.
        while ops.len() < limit && next < head {
            let rows = source.chunks(id, next, head, limit - ops.len()).await?;
            let before = ops.len();
            next = add_ops(&unit, &rows, next, head, limit, ops)?;
            if ops.len() == before {
                return Err(missing(&unit, next, head));
            }
        }
    }
    Ok(cold)
}

/// Adds to `ops` the operations `at..head` of `rows` (a unit's chunks in index order, the first holding `at`) until
/// it holds `limit`, and answers the index after the last one added: a chunk that starts past the operations before
/// it is a loss, named at the first missing index.
fn add_ops(
    unit: &SyncUnit,
    rows: &[ChunkRow],
    at: u64,
    head: u64,
    limit: usize,
    ops: &mut Vec<Operation>,
) -> Result<u64, StoreError> {
    let mut expected = at;
    for (idx, count, data) in rows {
        let (idx, count) = (*idx as u64, *count as usize);
        if idx > expected {
            return Err(missing(unit, expected, idx));
        }
        for op in decode_chunk(unit, idx, count, data) {
            let op = op?;
            if op.index < expected {
                continue;
            }
            if op.index >= head || ops.len() == limit {
                return Ok(expected);
            }
            expected = op.index + 1;
            ops.push(op);
        }
    }
    Ok(expected)
}

fn missing(unit: &SyncUnit, expected: u64, found: u64) -> StoreError {
    StoreError::Corrupt {
        unit: unit.to_string(),
        index: expected,
        reason: format!("operations {expected} to {} are missing from the log", found - 1),
    }
}

/// `(idx, skip)` of the skipping operations of `unit` in `from..to`.
pub(super) async fn skips(
    pool: &SqlitePool,
    unit: &SyncUnit,
    from: u64,
    to: Option<u64>,
) -> Result<Vec<(u64, u64)>, StoreError> {
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT idx, skip FROM log_skips \
         WHERE unit_id = (SELECT unit_id FROM units WHERE document_id = ? AND scope = ? AND branch = ?) \
           AND idx >= ? AND idx < ? ORDER BY idx",
    )
    .bind(unit.document_id.to_string())
    .bind(unit.scope.as_str())
    .bind(unit.branch.as_str())
    .bind(to_i64(from))
    .bind(to.map_or(i64::MAX, to_i64))
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(i, s)| (i as u64, s as u64)).collect())
}

/// The last ordinal committed: the last chunk's last operation's.
pub(super) async fn max_ordinal(pool: &SqlitePool) -> Result<u64, StoreError> {
    let max: i64 =
        sqlx::query_scalar("SELECT COALESCE((SELECT ordinal + count - 1 FROM log ORDER BY ordinal DESC LIMIT 1), 0)")
            .fetch_one(pool)
            .await?;
    Ok(max as u64)
}

/// `list_headers` (`deleted` is 0 or 1 here).
pub(super) const LIST_HEADERS_SQL: &str = list_headers_sql!(
    "WHERE ($2 IS NULL OR d.document_type = $2) AND ($3 IS NULL OR d.document_id > $3) AND ($4 OR d.deleted = 0)"
);

impl SqliteStore {
    /// The units of `ids` (unit ids are never reused: a cache of them stays true).
    pub(super) async fn units_by_id(
        &self,
        ids: impl Iterator<Item = i64>,
    ) -> Result<HashMap<i64, SyncUnit>, StoreError> {
        let mut wanted: Vec<i64> = ids.collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut found = HashMap::with_capacity(wanted.len());
        let mut missing = Vec::new();
        {
            let cache = self.unit_names.lock().unwrap_or_else(|e| e.into_inner());
            for id in wanted {
                match cache.get(&id) {
                    Some(unit) => {
                        found.insert(id, unit.clone());
                    }
                    None => missing.push(id),
                }
            }
        }
        for chunk in missing.chunks(MAX_UNITS_PER_STATEMENT) {
            let sql = format!(
                "SELECT unit_id, document_id, scope, branch FROM units WHERE unit_id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(&sql);
            for id in chunk {
                q = q.bind(*id);
            }
            let rows = q.persistent(false).fetch_all(&self.pool).await?;
            let mut cache = self.unit_names.lock().unwrap_or_else(|e| e.into_inner());
            for row in rows {
                let unit = unit_from_row(&row, 1)?;
                let id: i64 = row.int(0);
                cache.insert(id, unit.clone());
                found.insert(id, unit);
            }
        }
        Ok(found)
    }
}

/// Operations of `unit` by action id, in index order: the indexes from the `action_ids` table, then the chunks
/// holding them, each decoded once.
pub(super) async fn find_actions(
    pool: &SqlitePool,
    unit: &SyncUnit,
    ids: &[uuid::Uuid],
) -> Result<Vec<Operation>, StoreError> {
    let Some(unit_id) = unit_id(pool, unit).await? else {
        return Ok(Vec::new());
    };
    let mut indexes: Vec<i64> = Vec::new();
    for chunk in ids.chunks(FIND_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT idx FROM action_ids WHERE id IN ({marks}) AND unit_id = ?");
        let mut query = sqlx::query_scalar::<_, i64>(&sql);
        for id in chunk {
            query = query.bind(id.as_bytes().as_slice());
        }
        indexes.extend(query.bind(unit_id).persistent(false).fetch_all(pool).await?);
    }
    indexes.sort_unstable();
    indexes.dedup();
    let mut found = Vec::with_capacity(indexes.len());
    let mut decoded: Option<(u64, Vec<Operation>)> = None;
    for idx in indexes {
        let idx = idx as u64;
        let holds = |d: &(u64, Vec<Operation>)| idx >= d.0 && idx < d.0 + d.1.len() as u64;
        if !decoded.as_ref().is_some_and(holds) {
            let row: Option<(i64, i64, Vec<u8>)> = sqlx::query_as(
                "SELECT idx, count, data FROM log WHERE unit_id = ? AND idx <= ? ORDER BY idx DESC LIMIT 1",
            )
            .bind(unit_id)
            .bind(to_i64(idx))
            .fetch_optional(pool)
            .await?;
            let Some((first, count, data)) = row else { continue };
            let ops = decode_chunk(unit, first as u64, count as usize, &data)
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?;
            decoded = Some((first as u64, ops));
        }
        if let Some((first, ops)) = &decoded
            && let Some(op) = ops.get((idx - first) as usize)
        {
            found.push(op.clone());
        }
    }
    Ok(found)
}

/// `find_action_indexes`: from `action_ids` alone, nothing decoded.
pub(super) async fn find_action_indexes(
    pool: &SqlitePool,
    unit: &SyncUnit,
    ids: &[uuid::Uuid],
    before: u64,
) -> Result<Vec<(uuid::Uuid, u64)>, StoreError> {
    let Some(unit_id) = unit_id(pool, unit).await? else {
        return Ok(Vec::new());
    };
    let mut found: Vec<(uuid::Uuid, u64)> = Vec::new();
    for chunk in ids.chunks(FIND_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT id, idx FROM action_ids WHERE id IN ({marks}) AND unit_id = ? AND idx < ?");
        let mut query = sqlx::query_as::<_, (Vec<u8>, i64)>(&sql);
        for id in chunk {
            query = query.bind(id.as_bytes().as_slice());
        }
        let rows = query
            .bind(unit_id)
            .bind(to_i64(before))
            .persistent(false)
            .fetch_all(pool)
            .await?;
        for (id, idx) in rows {
            let id = uuid::Uuid::from_slice(&id).map_err(|e| StoreError::Corrupt {
                unit: unit.to_string(),
                index: idx as u64,
                reason: format!("an action id of {} bytes: {e}", id.len()),
            })?;
            found.push((id, idx as u64));
        }
    }
    found.sort_unstable_by_key(|&(_, idx)| idx);
    found.dedup();
    Ok(found)
}

/// The name and the deleted flag of a documents row (see `sql_queries::NameAndDeleted`): SQLite stores the name as
/// text, `deleted` as 0 or 1.
pub(super) fn name_and_deleted(row: &SqliteRow, at: usize, _: DocumentId) -> Result<(String, bool), StoreError> {
    Ok((row.get(at + 1), row.get::<i64, _>(at + 3) != 0))
}

/// `read_since_filtered`: the log by ordinal, chunk by chunk. A chunk whose author the filter leaves out is not
/// even fetched (its `replica` column); one whose every operation a later skip cuts is not decoded; the rest are
/// decoded and filtered operation by operation.
pub(super) async fn read_since_filtered(
    store: &SqliteStore,
    after_ordinal: u64,
    limit: usize,
    filter: &SinceFilter<'_>,
) -> Result<SincePage, StoreError> {
    let mut out = SincePage {
        committed: Vec::with_capacity(limit.min(4096)),
        cursor: after_ordinal,
        scanned: 0,
    };
    let mut cuts: HashMap<i64, Cuts> = HashMap::new();
    let mut after = to_i64(after_ordinal);
    while out.scanned < limit {
        // From the chunk holding `after` (its operations after it are still to come).
        let rows: Vec<SinceRow> = sqlx::query_as(
            "SELECT ordinal, unit_id, idx, count, \
               CASE WHEN (?3 IS NOT NULL AND replica = ?3) \
                 OR (?4 IS NOT NULL AND replica IS NOT NULL AND replica <> ?4) THEN NULL ELSE data END \
             FROM log WHERE ordinal >= COALESCE((SELECT MAX(ordinal) FROM log WHERE ordinal <= ?1), 0) \
             ORDER BY ordinal LIMIT ?2",
        )
        .bind(after)
        .bind(READ_SINCE_PAGE)
        .bind(filter.exclude_replica)
        .bind(filter.only_replica)
        .fetch_all(&store.pool)
        .await?;
        let fetched = rows.len() as i64;
        let units = store.units_by_id(rows.iter().map(|r| r.1)).await?;
        let mut progressed = false;
        for (ordinal, unit_id, idx, count, data) in rows {
            if out.scanned >= limit {
                break;
            }
            // The chunk's operations after `after`, as many as the limit leaves.
            let skip_first = (after.saturating_add(1) - ordinal).clamp(0, count);
            let take = (count - skip_first).min((limit - out.scanned).min(i64::MAX as usize) as i64);
            if take <= 0 {
                continue;
            }
            progressed = true;
            out.scanned += take as usize;
            let last = ordinal + skip_first + take - 1;
            out.cursor = last as u64;
            after = last;
            let Some(data) = data else { continue };
            let (from, to) = ((idx + skip_first) as u64, (idx + skip_first + take) as u64);
            if filter.effective && !cuts.contains_key(&unit_id) {
                let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT idx, skip FROM log_skips WHERE unit_id = ?")
                    .bind(unit_id)
                    .fetch_all(&store.pool)
                    .await?;
                let skips = rows.into_iter().map(|(i, s)| (i as u64, s as u64)).collect();
                cuts.insert(unit_id, Cuts::from_skips(skips));
            }
            let effective = |i: u64| !filter.effective || cuts.get(&unit_id).is_none_or(|k| k.is_effective(i));
            if !(from..to).any(effective) {
                continue;
            }
            let unit = units.get(&unit_id).ok_or_else(|| StoreError::Corrupt {
                unit: format!("unit id {unit_id}"),
                index: idx as u64,
                reason: "an operation of a unit the units table does not name".to_owned(),
            })?;
            for op in decode_chunk(unit, idx as u64, count as usize, &data) {
                let op = op?;
                if op.index < from || op.index >= to || !effective(op.index) {
                    continue;
                }
                // Chunks of several authors are filtered here.
                if filter.admits_author(op.action.replica.as_deref()) {
                    out.committed.push(Committed {
                        ordinal: ordinal as u64 + (op.index - idx as u64),
                        unit: unit.clone(),
                        operation: op,
                    });
                }
            }
        }
        if fetched < READ_SINCE_PAGE || !progressed {
            break;
        }
    }
    Ok(out)
}
