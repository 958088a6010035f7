//! The writer: one task per handle owns a connection of its own and commits every append waiting when it wakes
//! in one transaction (head rows locked `FOR UPDATE` in one order, then one statement that takes the ordinals,
//! inserts, moves the heads and queues the notice), retried whole after a deadlock or a serialization failure,
//! request by request after any other failure, on a new connection when the old one is lost.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use tokio::sync::{mpsc, oneshot};

use folio_core::{HeaderChange, OpHash, SyncUnit};

use super::{NOTIFY_CHANNEL, PgStore};
use crate::StoreError;
use crate::sql_common::{Head, Plan, Prepared, StoredHashes, append_through, next_batch, plan, to_i64, unit_from_row};
use crate::store::{AppendRequest, Appended};

/// Times a group commit is retried whole after a deadlock or serialization failure.
const TRANSIENT_RETRIES: u32 = 8;

/// Requests for the writer, and where to send their results (in request order).
pub(super) struct Append {
    requests: Vec<Prepared>,
    reply: oneshot::Sender<Vec<Result<Appended, StoreError>>>,
}

impl PgStore {
    /// `append_batch`: the requests that pass their checks, through the writer.
    pub(super) async fn send_appends(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        append_through(requests, |prepared| async move {
            let (reply, rx) = oneshot::channel();
            let append = Append {
                requests: prepared,
                reply,
            };
            match self.writer.send(append).await {
                Ok(()) => rx.await.unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        })
        .await
    }
}

/// Whether `e` is worth retrying the whole transaction for: a deadlock or a serialization failure.
fn is_transient(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

/// Whether the writer's connection is gone (and must be replaced before the next batch).
fn is_connection_lost(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_))
    )
}

/// The writer: takes every append waiting, commits them in one transaction, answers each caller. It reconnects when
/// its connection is lost.
pub(super) async fn writer_loop(
    conn: PgConnection,
    connect: PgConnectOptions,
    origin: i64,
    mut rx: mpsc::Receiver<Append>,
) {
    let mut conn = Some(conn);
    let size = |a: &Append| a.requests.iter().map(|p| p.rows.len()).sum::<usize>().max(1);
    while let Some(batch) = next_batch(&mut rx, size).await {
        let (requests, reply_to): (Vec<_>, Vec<_>) = batch.into_iter().map(|a| (a.requests, a.reply)).unzip();
        let counts: Vec<usize> = requests.iter().map(Vec::len).collect();
        let flat: Vec<Prepared> = requests.into_iter().flatten().collect();
        let results = commit_with_retries(&mut conn, &connect, origin, &flat).await;
        let mut results = results.into_iter();
        for (count, reply) in counts.into_iter().zip(reply_to) {
            let _ = reply.send(results.by_ref().take(count).collect());
        }
    }
}

async fn commit_with_retries(
    conn: &mut Option<PgConnection>,
    connect: &PgConnectOptions,
    origin: i64,
    requests: &[Prepared],
) -> Vec<Result<Appended, StoreError>> {
    let mut attempt = 0;
    loop {
        let outcome = match conn.as_mut() {
            Some(c) => group_commit(c, origin, requests).await,
            None => match PgConnection::connect_with(connect).await {
                Ok(c) => group_commit(conn.insert(c), origin, requests).await,
                Err(e) => Err(StoreError::from(e)),
            },
        };
        match outcome {
            Ok(results) => return results,
            Err(e) if is_transient(&e) && attempt < TRANSIENT_RETRIES => {
                attempt += 1;
                tracing::debug!("group commit of {} requests: {e}; retrying", requests.len());
                tokio::time::sleep(Duration::from_millis(2 * u64::from(attempt))).await;
            }
            Err(e) => {
                if is_connection_lost(&e) {
                    // The outcome of an interrupted COMMIT is unknown: the callers get the error (a retried append
                    // of the same operations is recognised as a replay).
                    *conn = None;
                }
                if requests.len() == 1 {
                    return vec![Err(e)];
                }
                // Retry each request alone, so one request's failure does not fail the others.
                tracing::warn!(
                    "group commit of {} requests failed: {e}; retrying one by one",
                    requests.len()
                );
                let mut results = Vec::with_capacity(requests.len());
                for request in requests {
                    let mut one = Box::pin(commit_with_retries(
                        conn,
                        connect,
                        origin,
                        std::slice::from_ref(request),
                    ));
                    results.push(one.as_mut().await.pop().unwrap_or(Err(StoreError::Closed)));
                }
                return results;
            }
        }
    }
}

/// One group commit: BEGIN, the work, COMMIT (or ROLLBACK on any error).
async fn group_commit(
    conn: &mut PgConnection,
    origin: i64,
    requests: &[Prepared],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let mut tx = conn.begin().await?;
    let results = group_commit_in_tx(&mut tx, origin, requests).await?;
    tx.commit().await?;
    Ok(results)
}

/// Locks and reads the head rows of `units`, in the database's order of `(document_id, scope, branch)`: every writer
/// takes the locks in that order, so two writers locking overlapping sets wait for each other instead of
/// deadlocking.
async fn lock_heads(conn: &mut PgConnection, units: &[&SyncUnit]) -> Result<HashMap<SyncUnit, Head>, StoreError> {
    let mut heads = HashMap::with_capacity(units.len());
    if units.is_empty() {
        return Ok(heads);
    }
    let (ids, scopes, branches) = unit_arrays(units);
    let rows = sqlx::query(
        "SELECT unit_id, document_id, scope, branch, revision, last_hash, last_ts_ms FROM units \
         WHERE (document_id, scope, branch) IN (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])) \
         ORDER BY document_id, scope, branch FOR UPDATE",
    )
    .bind(ids)
    .bind(scopes)
    .bind(branches)
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let unit = unit_from_row(&row, 1)?;
        heads.insert(unit, Head::from_row(&row));
    }
    Ok(heads)
}

fn unit_arrays(units: &[&SyncUnit]) -> (Vec<String>, Vec<&'static str>, Vec<String>) {
    let mut sorted: Vec<&&SyncUnit> = units.iter().collect();
    sorted.sort_by(|a, b| {
        (a.document_id.to_string(), a.scope.as_str(), a.branch.as_str()).cmp(&(
            b.document_id.to_string(),
            b.scope.as_str(),
            b.branch.as_str(),
        ))
    });
    (
        sorted.iter().map(|u| u.document_id.to_string()).collect(),
        sorted.iter().map(|u| u.scope.as_str()).collect(),
        sorted.iter().map(|u| u.branch.as_str().to_owned()).collect(),
    )
}

async fn group_commit_in_tx(
    conn: &mut PgConnection,
    origin: i64,
    requests: &[Prepared],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let units: Vec<&SyncUnit> = {
        let mut seen = std::collections::HashSet::new();
        requests.iter().map(|p| &p.unit).filter(|u| seen.insert(*u)).collect()
    };
    let mut heads = lock_heads(conn, &units).await?;
    let missing: Vec<&SyncUnit> = units.iter().copied().filter(|u| !heads.contains_key(*u)).collect();
    if !missing.is_empty() {
        // New units get a head row at revision 0 (another writer creating the same unit at the same moment makes
        // this wait for its commit, then skip), which is then locked like the others.
        let (ids, scopes, branches) = unit_arrays(&missing);
        sqlx::query(
            "INSERT INTO units (document_id, scope, branch, revision, last_hash, last_ts_ms) \
             SELECT d, s, b, 0, $4, 0 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS t(d, s, b) \
             ON CONFLICT (document_id, scope, branch) DO NOTHING",
        )
        .bind(ids)
        .bind(scopes)
        .bind(branches)
        .bind(OpHash::ZERO.0.to_vec())
        .execute(&mut *conn)
        .await?;
        heads.extend(lock_heads(conn, &missing).await?);
    }

    // Every operation to insert, in commit order, with its position (1-based) in the batch: the ordinals are known
    // only at the end.
    let missing_head = |p: &Prepared| {
        Err(StoreError::Corrupt {
            unit: p.unit.to_string(),
            index: 0,
            reason: "the unit's head row is missing after it was created".to_owned(),
        })
    };
    let Plan {
        inserts,
        header_changes,
        mut results,
    } = plan(requests, &mut heads, 0, missing_head, &mut *conn).await?;
    if inserts.is_empty() {
        return Ok(results);
    }

    // The header index first: these statements need not hold the counter.
    for (id, change, ts) in header_changes {
        let id = id.to_string();
        let q = match change {
            HeaderChange::Created { document_type, name } => sqlx::query(
                "INSERT INTO documents (document_id, document_type, name, created_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (document_id) DO NOTHING",
            )
            .bind(id)
            .bind(document_type.as_str())
            .bind(name.as_bytes())
            .bind(to_i64(ts)),
            HeaderChange::Renamed(name) => sqlx::query("UPDATE documents SET name = $1 WHERE document_id = $2")
                .bind(name.as_bytes())
                .bind(id),
            HeaderChange::Deleted => sqlx::query("UPDATE documents SET deleted = TRUE WHERE document_id = $1").bind(id),
        };
        q.execute(&mut *conn).await?;
    }

    // Then one statement takes the ordinals, inserts the operations, moves the heads and queues the notice. From the
    // counter's UPDATE to COMMIT this transaction holds the counter's row lock (see the module docs): doing it all in
    // the last statement keeps that window to one round trip and the COMMIT.
    let mut unit_ids = Vec::with_capacity(inserts.len());
    let mut idxs = Vec::with_capacity(inserts.len());
    let mut positions = Vec::with_capacity(inserts.len());
    let mut skips = Vec::with_capacity(inserts.len());
    let mut timestamps = Vec::with_capacity(inserts.len());
    let mut hashes: Vec<&[u8]> = Vec::with_capacity(inserts.len());
    let mut jsons: Vec<&str> = Vec::with_capacity(inserts.len());
    let mut sizes = Vec::with_capacity(inserts.len());
    for (unit_id, row, position) in &inserts {
        unit_ids.push(*unit_id);
        idxs.push(row.idx);
        positions.push(*position);
        skips.push(row.skip);
        timestamps.push(row.timestamp_ms);
        hashes.push(&row.hash);
        jsons.push(&row.operation);
        sizes.push(row.operation.len().min(i32::MAX as usize) as i32);
    }
    let touched: Vec<&Head> = heads.values().filter(|h| h.touched).collect();
    let n = inserts.len() as i64;
    let base: i64 = sqlx::query_scalar(
        "WITH taken AS (UPDATE ordinal_counter SET last = last + $1 RETURNING last - $1 AS base), \
         ops AS (INSERT INTO operations (unit_id, idx, ordinal, origin, skip, timestamp_ms, hash, operation, size) \
                 SELECT u, i, taken.base + p, $2, s, t, h, j, z FROM taken, \
                   UNNEST($3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::bigint[], $8::bytea[], \
                          $9::text[], $10::int[]) AS x(u, i, p, s, t, h, j, z)), \
         heads AS (UPDATE units SET revision = y.r, last_hash = y.h, last_ts_ms = y.t \
                   FROM UNNEST($11::bigint[], $12::bigint[], $13::bytea[], $14::bigint[]) AS y(u, r, h, t) \
                   WHERE units.unit_id = y.u), \
         notice AS (SELECT pg_notify($15, $2::text)) \
         SELECT taken.base FROM taken, notice",
    )
    .bind(n)
    .bind(origin)
    .bind(unit_ids)
    .bind(idxs)
    .bind(positions)
    .bind(skips)
    .bind(timestamps)
    .bind(hashes)
    .bind(jsons)
    .bind(sizes)
    .bind(touched.iter().map(|h| h.unit_id).collect::<Vec<_>>())
    .bind(touched.iter().map(|h| to_i64(h.revision)).collect::<Vec<_>>())
    .bind(touched.iter().map(|h| h.last_hash.0.to_vec()).collect::<Vec<_>>())
    .bind(touched.iter().map(|h| to_i64(h.last_ts)).collect::<Vec<_>>())
    .bind(NOTIFY_CHANNEL)
    .fetch_one(&mut *conn)
    .await?;
    let base = base as u64;
    for appended in results.iter_mut().flatten() {
        if !appended.replayed {
            for ordinal in &mut appended.ordinals {
                *ordinal += base;
            }
        }
    }
    Ok(results)
}

impl StoredHashes for PgConnection {
    async fn stored_hashes(&mut self, unit_id: i64, from: i64, to: i64) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT idx, hash FROM operations WHERE unit_id = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
        )
        .bind(unit_id)
        .bind(from)
        .bind(to)
        .fetch_all(self)
        .await?)
    }
}
