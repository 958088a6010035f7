//! The writer: one task per store owns a connection of its own and takes every write (appends, keyframes, meta
//! values) in turn. Each wake-up group-commits every append waiting, in two round trips (`BEGIN IMMEDIATE` with the
//! counters and the heads, then the inserts, the head upserts and `COMMIT`), acknowledges through the WAL sync
//! thread (`wal`), and checkpoints the WAL after every 1 MiB of operations.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::Row;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{mpsc, oneshot};

use folio_core::{HeaderChange, SyncUnit};

use super::SqliteStore;
use super::chunk::{EncodedAppend, decode_chunk, encode_append};
use super::sql::{
    ChunkInsert, IdInsert, MAX_COMBINED_ROWS, MAX_INSERT_ROWS, MAX_UNITS_PER_STATEMENT, begin_heads_sql, bind_heads,
    bind_inserts, heads_sql, insert_commit_sql, insert_sql, padded_chunks, upsert_heads_sql,
};
use super::wal::{Ack, CHECKPOINT_AFTER_BYTES, WalSync, acknowledge, checkpoint, unsynced};
use crate::StoreError;
use crate::sql_common::{
    Head, Plan, Prepared, StoredHashes, append_through_with, next_batch, plan, seen_text, unit_from_row,
};
use crate::store::{AppendRequest, Appended, Keyframe};

pub(super) enum WriteCommand {
    Append {
        requests: Vec<Prepared>,
        /// Each request's operations in chunks, in request order.
        encoded: Vec<EncodedAppend>,
        reply: oneshot::Sender<Vec<Result<Appended, StoreError>>>,
    },
    Keyframe {
        keyframe: Keyframe,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    Meta {
        key: String,
        value: String,
        replace: bool,
        reply: oneshot::Sender<Result<String, StoreError>>,
    },
}

impl WriteCommand {
    fn ops(&self) -> usize {
        match self {
            WriteCommand::Append { requests, .. } => requests.iter().map(|p| p.rows.len()).sum::<usize>().max(1),
            WriteCommand::Keyframe { .. } | WriteCommand::Meta { .. } => 1,
        }
    }
}

impl SqliteStore {
    /// `append_batch`: the requests that pass their checks, through the writer.
    pub(super) async fn send_appends(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        // The operations are encoded into chunks here, in the caller's task: callers encode in parallel, the
        // writer only binds.
        append_through_with(requests, true, |mut prepared| async move {
            let mut encoded = Vec::with_capacity(prepared.len());
            for p in &mut prepared {
                // The request's share of the operations goes once they are encoded: when the caller kept none (a
                // plain `append`), they are freed here rather than after the commit.
                match encode_append(&std::mem::replace(&mut p.operations, Arc::from([]))) {
                    Ok(e) => encoded.push(e),
                    Err(reason) => {
                        return prepared
                            .iter()
                            .map(|p| {
                                Err(StoreError::Corrupt {
                                    unit: p.unit.to_string(),
                                    index: p.expected_revision,
                                    reason: format!("cannot encode the operations: {reason}"),
                                })
                            })
                            .collect();
                    }
                }
            }
            let (reply, rx) = oneshot::channel();
            let delivered = self
                .writer
                .send(WriteCommand::Append {
                    requests: prepared,
                    encoded,
                    reply,
                })
                .await
                .is_ok();
            match delivered {
                true => rx.await.unwrap_or_default(),
                false => Vec::new(),
            }
        })
        .await
    }

    /// `put_keyframe`, through the writer.
    pub(super) async fn send_keyframe(&self, keyframe: &Keyframe) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriteCommand::Keyframe {
                keyframe: keyframe.clone(),
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }

    /// `put_meta` (`replace`) and `put_meta_if_absent`, through the writer: what the key holds after it.
    pub(super) async fn send_meta(&self, key: &str, value: &str, replace: bool) -> Result<String, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(WriteCommand::Meta {
                key: key.to_owned(),
                value: value.to_owned(),
                replace,
                reply,
            })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.unwrap_or(Err(StoreError::Closed))
    }
}

pub(super) async fn writer_loop(
    mut conn: SqliteConnection,
    mut rx: mpsc::Receiver<WriteCommand>,
    syncer: Option<WalSync>,
) {
    let mut unit_ids: HashMap<SyncUnit, i64> = HashMap::new();
    // Bytes of operations committed since the last complete checkpoint.
    let mut written = 0u64;
    while let Some(batch) = next_batch(&mut rx, WriteCommand::ops).await {
        let mut appends = Vec::new();
        let mut keyframes = Vec::new();
        let mut metas = Vec::new();
        // This wake-up's generation, begun before any of its statements (reads wait for its fsync).
        let mut group = syncer.as_ref().map(WalSync::begin);
        let mut pending = group.as_mut().map(|(_, acks)| acks);
        for cmd in batch {
            match cmd {
                WriteCommand::Append {
                    requests,
                    encoded,
                    reply,
                } => appends.push((requests, encoded, reply)),
                WriteCommand::Keyframe { keyframe, reply } => keyframes.push((keyframe, reply)),
                WriteCommand::Meta {
                    key,
                    value,
                    replace,
                    reply,
                } => metas.push((key, value, replace, reply)),
            }
        }
        if !appends.is_empty() {
            let bytes: usize = appends
                .iter()
                .flat_map(|(_, encoded, _)| encoded.iter())
                .map(|e| e.chunks.iter().map(|c| c.data.len() + 32).sum::<usize>() + e.ids.len() * 32)
                .sum();
            commit_appends(&mut conn, &mut unit_ids, appends, pending.as_deref_mut()).await;
            written += bytes as u64;
        }
        for (keyframe, reply) in keyframes {
            let result = write_keyframe(&mut conn, &mut unit_ids, &keyframe).await;
            acknowledge(pending.as_deref_mut(), reply, result, unsynced);
        }
        for (key, value, replace, reply) in metas {
            let result = write_meta(&mut conn, &key, &value, replace).await;
            acknowledge(pending.as_deref_mut(), reply, result, unsynced);
        }
        if let (Some(syncer), Some(group)) = (&syncer, group) {
            syncer.finish(group);
        }
        if written >= CHECKPOINT_AFTER_BYTES {
            checkpoint(&mut conn, &mut written).await;
        }
    }
}

type AppendBatch = Vec<(
    Vec<Prepared>,
    Vec<EncodedAppend>,
    oneshot::Sender<Vec<Result<Appended, StoreError>>>,
)>;

async fn commit_appends(
    conn: &mut SqliteConnection,
    unit_ids: &mut HashMap<SyncUnit, i64>,
    batch: AppendBatch,
    mut pending: Option<&mut Vec<Ack>>,
) {
    let mut counts = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    let mut flat = Vec::new();
    let mut encoded = Vec::new();
    for (requests, chunks, reply) in batch {
        counts.push(requests.len());
        replies.push(reply);
        flat.extend(requests);
        encoded.extend(chunks);
    }
    let results = match group_commit(conn, unit_ids, &flat, &encoded).await {
        Ok(results) => results,
        Err(e) => {
            // The whole transaction failed (rolled back). Retry each request alone, so one request's failure
            // does not fail the others; a failure that repeats is returned to its own caller.
            tracing::warn!(
                "group commit of {} requests failed: {e}; retrying one by one",
                flat.len()
            );
            unit_ids.clear();
            let mut results = Vec::with_capacity(flat.len());
            for (request, chunks) in flat.iter().zip(&encoded) {
                let one = std::slice::from_ref(request);
                match group_commit(conn, unit_ids, one, std::slice::from_ref(chunks)).await {
                    Ok(mut r) => results.push(r.pop().unwrap_or(Err(StoreError::Closed))),
                    Err(e) => {
                        unit_ids.clear();
                        results.push(Err(e));
                    }
                }
            }
            results
        }
    };
    let mut results = results.into_iter();
    for (count, reply) in counts.into_iter().zip(replies) {
        let results: Vec<_> = results.by_ref().take(count).collect();
        acknowledge(pending.as_deref_mut(), reply, results, |results, reason| {
            results.into_iter().map(|r| unsynced(r, reason)).collect()
        });
    }
}

async fn group_commit(
    conn: &mut SqliteConnection,
    unit_ids: &mut HashMap<SyncUnit, i64>,
    requests: &[Prepared],
    encoded: &[EncodedAppend],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let outcome = group_commit_in_tx(conn, unit_ids, requests, encoded).await;
    if outcome.is_err() {
        // A failed statement or a failed COMMIT (busy, I/O error) leaves the transaction open: close it, or every
        // later `BEGIN` on this connection would fail. (When SQLite already rolled back, or the BEGIN itself
        // failed, this fails harmlessly.)
        let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    }
    outcome
}

/// The counters a commit starts from: the last ordinal and the last unit id.
struct Counters {
    last_ordinal: i64,
    last_unit_id: i64,
}

/// Begins the transaction and reads the counters and the heads of `units`: the first statement text carries
/// `BEGIN IMMEDIATE`, the counters and up to [`MAX_UNITS_PER_STATEMENT`] heads, so a commit of few units reads in
/// one round trip.
async fn begin_and_load_heads(
    conn: &mut SqliteConnection,
    units: &[&SyncUnit],
) -> Result<(Counters, HashMap<SyncUnit, Head>), StoreError> {
    let mut heads = HashMap::with_capacity(units.len());
    let mut counters = None;
    let mut rest = units;
    let mut first = true;
    while first || !rest.is_empty() {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_UNITS_PER_STATEMENT));
        rest = tail;
        let shape = chunk.len().next_power_of_two();
        let sql = if first {
            begin_heads_sql(shape)
        } else {
            heads_sql(shape)
        };
        first = false;
        let mut q = sqlx::query(sql);
        // Padding repeats the last unit: its row comes back again, the same.
        let padding = chunk.last().into_iter().cycle().take(shape - chunk.len());
        for unit in chunk.iter().chain(padding) {
            q = q
                .bind(unit.document_id.to_string())
                .bind(unit.scope.as_str())
                .bind(unit.branch.as_str());
        }
        for row in q.fetch_all(&mut *conn).await? {
            if row.len() == 2 {
                counters = Some(Counters {
                    last_ordinal: row.get(0),
                    last_unit_id: row.get(1),
                });
                continue;
            }
            let unit = unit_from_row(&row, 1)?;
            heads.insert(unit, Head::from_row(&row));
        }
    }
    let counters = counters.ok_or_else(|| StoreError::Corrupt {
        unit: "operations table".to_owned(),
        index: 0,
        reason: "the counters query returned no row".to_owned(),
    })?;
    Ok((counters, heads))
}

async fn group_commit_in_tx(
    conn: &mut SqliteConnection,
    unit_ids: &mut HashMap<SyncUnit, i64>,
    requests: &[Prepared],
    encoded: &[EncodedAppend],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let units: Vec<&SyncUnit> = {
        let mut seen = std::collections::HashSet::new();
        requests.iter().map(|p| &p.unit).filter(|u| seen.insert(*u)).collect()
    };
    let (counters, mut heads) = begin_and_load_heads(conn, &units).await?;
    let mut next_unit_id = counters.last_unit_id + 1;
    let new_unit = |_: &Prepared| {
        let unit_id = next_unit_id;
        next_unit_id += 1;
        Ok(Head::new_unit(unit_id))
    };
    let Plan {
        inserts: _,
        header_changes,
        results,
    } = plan(requests, &mut heads, counters.last_ordinal, new_unit, conn).await?;

    // The accepted requests' chunks and action ids: an accepted request's operations took the ordinals its result
    // lists, in order.
    let mut chunks: Vec<ChunkInsert> = Vec::new();
    let mut ids: Vec<IdInsert> = Vec::new();
    let mut skips = Vec::new();
    for ((p, e), result) in requests.iter().zip(encoded).zip(&results) {
        let Ok(Appended {
            ordinals,
            replayed: false,
            ..
        }) = result
        else {
            continue;
        };
        let (Some(&first_ordinal), Some(head)) = (ordinals.first(), heads.get(&p.unit)) else {
            continue;
        };
        let first_idx = p.expected_revision as i64;
        for c in &e.chunks {
            chunks.push((
                first_ordinal as i64 + c.start as i64,
                head.unit_id,
                first_idx + c.start as i64,
                c.count as i64,
                c.replica.as_deref(),
                c.data.as_slice(),
            ));
        }
        ids.extend(e.ids.iter().map(|(id, idx)| (id, head.unit_id, *idx)));
        skips.extend(e.skips.iter().map(|(idx, skip)| (head.unit_id, *idx, *skip)));
    }
    // Skipping operations are rare (a rebase's first): their rows go one by one.
    for (unit_id, idx, skip) in skips {
        sqlx::query("INSERT OR ROLLBACK INTO log_skips (unit_id, idx, skip) VALUES (?, ?, ?)")
            .bind(unit_id)
            .bind(idx)
            .bind(skip)
            .execute(&mut *conn)
            .await?;
    }

    // Header changes are rare (document scope): their statements go first, one by one.
    for (id, change, ts) in header_changes {
        let id = id.to_string();
        let q = match change {
            HeaderChange::Created { document_type, name } => sqlx::query(
                "INSERT INTO documents (document_id, document_type, name, created_at_ms) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (document_id) DO NOTHING",
            )
            .bind(id)
            .bind(document_type.as_str())
            .bind(name.as_str())
            .bind(ts as i64),
            HeaderChange::Renamed(name) => sqlx::query("UPDATE documents SET name = ? WHERE document_id = ?")
                .bind(name.as_str())
                .bind(id),
            HeaderChange::Deleted => sqlx::query("UPDATE documents SET deleted = 1 WHERE document_id = ?").bind(id),
        };
        q.execute(&mut *conn).await?;
    }

    let touched: Vec<(&SyncUnit, &Head)> = heads.iter().filter(|(_, h)| h.touched).collect();
    if !ids.is_empty() && ids.len() <= MAX_COMBINED_ROWS && touched.len() <= MAX_COMBINED_ROWS {
        // The common case: the second and last round trip. (Every chunk holds an operation: never more chunks
        // than ids.)
        let (rows, units) = (ids.len().next_power_of_two(), touched.len().next_power_of_two());
        let q = bind_inserts(sqlx::query(insert_commit_sql(rows, units)), &chunks, &ids, rows);
        bind_heads(q, &touched, units).execute(&mut *conn).await?;
    } else {
        let mut rest = chunks.as_slice();
        for (rows, shape) in padded_chunks(chunks.len(), MAX_INSERT_ROWS) {
            let (chunk, tail) = rest.split_at(rows);
            rest = tail;
            bind_inserts(sqlx::query(insert_sql(shape)), chunk, &[], shape)
                .execute(&mut *conn)
                .await?;
        }
        let mut rest = ids.as_slice();
        for (rows, shape) in padded_chunks(ids.len(), MAX_INSERT_ROWS) {
            let (chunk, tail) = rest.split_at(rows);
            rest = tail;
            bind_inserts(sqlx::query(insert_sql(shape)), &[], chunk, shape)
                .execute(&mut *conn)
                .await?;
        }
        let mut rest = touched.as_slice();
        for (rows, shape) in padded_chunks(touched.len(), MAX_UNITS_PER_STATEMENT) {
            let (chunk, tail) = rest.split_at(rows);
            rest = tail;
            bind_heads(sqlx::query(upsert_heads_sql(shape)), chunk, shape)
                .execute(&mut *conn)
                .await?;
        }
        sqlx::query("COMMIT").execute(&mut *conn).await?;
    }
    // Committed: new units are known from now on.
    for (unit, head) in &touched {
        if head.is_new {
            unit_ids.insert((*unit).clone(), head.unit_id);
        }
    }
    Ok(results)
}

impl StoredHashes for SqliteConnection {
    async fn stored_hashes(&mut self, unit_id: i64, from: i64, to: i64) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        // A retried append (rare): the chunks holding `from..to`, decoded.
        let unit_row = sqlx::query("SELECT unit_id, document_id, scope, branch FROM units WHERE unit_id = ?")
            .bind(unit_id)
            .fetch_optional(&mut *self)
            .await?;
        let Some(unit_row) = unit_row else {
            return Ok(Vec::new());
        };
        let unit = unit_from_row(&unit_row, 1)?;
        let rows: Vec<(i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, count, data FROM log WHERE unit_id = ?1 \
               AND idx >= COALESCE((SELECT MAX(idx) FROM log WHERE unit_id = ?1 AND idx <= ?2), 0) \
               AND idx < ?3 ORDER BY idx",
        )
        .bind(unit_id)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *self)
        .await?;
        let mut hashes = Vec::new();
        for (idx, count, data) in rows {
            for op in decode_chunk(&unit, idx as u64, count as usize, &data) {
                let op = op?;
                if (from..to).contains(&(op.index as i64)) {
                    hashes.push((op.index as i64, op.hash.0.to_vec()));
                }
            }
        }
        Ok(hashes)
    }
}

/// Writes one meta value (in its own implicit transaction, durable like every commit) and reads back what the key
/// holds.
async fn write_meta(conn: &mut SqliteConnection, key: &str, value: &str, replace: bool) -> Result<String, StoreError> {
    let sql = if replace {
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    } else {
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING"
    };
    sqlx::query(sql).bind(key).bind(value).execute(&mut *conn).await?;
    let stored: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    Ok(stored)
}

async fn write_keyframe(
    conn: &mut SqliteConnection,
    unit_ids: &mut HashMap<SyncUnit, i64>,
    keyframe: &Keyframe,
) -> Result<(), StoreError> {
    let unit_id = match unit_ids.get(&keyframe.unit) {
        Some(id) => Some(*id),
        None => lookup_unit_id(&mut *conn, &keyframe.unit).await?,
    };
    let Some(unit_id) = unit_id else {
        // A keyframe of a unit with no operations has nothing to speed up.
        return Ok(());
    };
    unit_ids.insert(keyframe.unit.clone(), unit_id);
    sqlx::query(
        "INSERT OR REPLACE INTO keyframes (unit_id, revision, last_hash, state, state_hash, seen) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(unit_id)
    .bind(keyframe.revision as i64)
    .bind(keyframe.last_hash.0.to_vec())
    .bind(crate::sql_common::pack_state(&keyframe.state))
    .bind(keyframe.state_hash.0.to_vec())
    .bind(seen_text(&keyframe.seen))
    .execute(&mut *conn)
    .await?;
    // Older keyframes are pruned: the newest [`KEEP_KEYFRAMES`] of a unit stay (a read below them, or a merge
    // that cuts below them, folds from an older one or from the start: slower, never wrong).
    sqlx::query(
        "DELETE FROM keyframes WHERE unit_id = ?1 AND revision < \
         (SELECT revision FROM keyframes WHERE unit_id = ?1 ORDER BY revision DESC LIMIT 1 OFFSET ?2)",
    )
    .bind(unit_id)
    .bind(KEEP_KEYFRAMES - 1)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Keyframes kept per unit: each holds a whole state, and a store keyframed every 1,000 operations would otherwise
/// keep a state per 1,000 operations forever (most of its bytes for a document of 1,000 items).
const KEEP_KEYFRAMES: i64 = 3;

async fn lookup_unit_id<'c, E>(conn: E, unit: &SyncUnit) -> Result<Option<i64>, StoreError>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    Ok(
        sqlx::query_scalar("SELECT unit_id FROM units WHERE document_id = ? AND scope = ? AND branch = ?")
            .bind(unit.document_id.to_string())
            .bind(unit.scope.as_str())
            .bind(unit.branch.as_str())
            .fetch_optional(conn)
            .await?,
    )
}
