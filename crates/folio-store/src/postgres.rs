//! The PostgreSQL backend, through sqlx: one database shared by several `folio serve` nodes.
//!
//! * **Durability**: PostgreSQL's defaults (`synchronous_commit = on`): `append` returns after COMMIT, which waits for
//!   the WAL flush. Acknowledged means committed.
//! * **Group commit**: one writer task per handle owns a dedicated connection and commits every append that is
//!   waiting when it wakes in one transaction, with multi-row statements over arrays (`UNNEST`): one to lock the
//!   unit heads, then one that takes the ordinals, inserts every operation of the batch, moves every head and queues
//!   the notice (plus one per header change, and one to create new units). Encoding and in-request hash checks run
//!   in the callers' tasks.
//! * **The revision check holds between nodes**: the transaction locks the head rows of the units it appends to
//!   (`SELECT … FOR UPDATE`, in one order for every writer, so two writers cannot deadlock on them) before comparing
//!   revisions, so a second node waits for the first one's commit and then sees its new head: the result is
//!   `RevisionMismatch` or success. The primary key `(unit_id, idx)` would refuse a duplicate index anyway.
//! * **Ordinals in commit order**: a sequence would hand out numbers at insert time, and transactions commit in
//!   another order (T1 takes 10, T2 takes 11, T2 commits first: a reader that read up to 11 and moved its cursor
//!   there would never see 10). Instead each committing transaction adds its operation count to the single row of
//!   `ordinal_counter` (`UPDATE … RETURNING`), as late as possible in the transaction. The row lock is held until
//!   COMMIT, and the next writer gets it only once this commit is visible, so ordinals are handed out in commit
//!   order: whoever sees ordinal N sees every committed ordinal below it, and `read_since` never skips a row. A
//!   rolled-back transaction gives its ordinals back (the counter's update is undone). The price: commits of all
//!   nodes pass one at a time through the end of their transactions (statements and the WAL flush), which group
//!   commit amortises over every operation of a batch.
//! * **Commit notices**: the same statement runs `pg_notify('folio_commits', origin)`, delivered at COMMIT in
//!   commit order. [`OperationStore::commit_feed`] gives a LISTEN connection's wake-ups (other handles' commits only)
//!   and reads marked with whether this handle committed them (the `origin` column), for the reactor's follower.
//! * Reads go through a pool, in chunks of up to 1,024 operations / 4 MiB, each fetched as one row
//!   (`string_agg`), the next chunk fetched while the caller folds the current one.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions, Connection, Row};
use tokio::sync::{mpsc, oneshot, watch};

use folio_core::{
    Branch, ChainError, DocumentHeader, DocumentId, HeaderChange, OpHash, Operation, Revisions, Scope, SyncUnit,
    UtcIso, header_change,
};

use crate::StoreError;
use crate::sqlite::{seen_from_text, seen_text};
use crate::store::{
    AppendRequest, Appended, CommitFeed, Committed, Keyframe, ListQuery, OperationStore, links_to, precheck,
};

/// The channel commit notices go through.
pub const NOTIFY_CHANNEL: &str = "folio_commits";
/// The most operations a read stream fetches per query.
const READ_CHUNK: i64 = 1024;
/// A chunk ends with the operation that takes it past this many bytes of JSON.
const READ_CHUNK_BYTES: i64 = 4 * 1024 * 1024;
/// The most operations one group commit takes in.
const MAX_BATCH_OPS: usize = 8192;
/// Requests waiting for the writer; callers wait when it is full.
const WRITER_QUEUE: usize = 4096;
/// Times a group commit is retried whole after a deadlock or serialization failure.
const TRANSIENT_RETRIES: u32 = 8;

/// How to open a [`PgStore`].
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// The database URL, `postgres://user@host:port/database` (libpq's form; `postgresql://` too).
    pub url: String,
    /// Connections in the read pool (the writer and the LISTEN connection are extra).
    pub read_connections: u32,
    /// How long opening the store and acquiring a connection may take.
    pub connect_timeout: Duration,
    /// Refuse to open a database that holds no folio store yet ([`StoreError::NotAStore`]) instead of creating
    /// the tables: for commands that only read, so a mistyped URL neither leaves tables behind nor passes `verify`.
    pub must_exist: bool,
}

impl PgOptions {
    /// Defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            read_connections: 8,
            connect_timeout: Duration::from_secs(30),
            must_exist: false,
        }
    }
}

/// An `OperationStore` in a PostgreSQL database, which several processes (nodes) may share. Cheap to clone; clones
/// share the writer, the read pool and the identity (`origin`) their commits are marked with, so give each reactor
/// a handle of its own (`open` it once per reactor): its follower counts the handle's commits as its own.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    writer: mpsc::Sender<Append>,
    origin: i64,
    target: Arc<str>,
    feed: Arc<OnceLock<Arc<PgFeed>>>,
}

/// Requests for the writer, and where to send their results (in request order).
struct Append {
    requests: Vec<Prepared>,
    reply: oneshot::Sender<Vec<Result<Appended, StoreError>>>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("database", &self.target)
            .field("origin", &self.origin)
            .finish()
    }
}

/// An append request encoded for the writer: rows ready to bind.
struct Prepared {
    unit: SyncUnit,
    expected_revision: u64,
    first: Option<Operation>,
    rows: Vec<OpRow>,
    last_hash: OpHash,
    last_ts: u64,
    header_changes: Vec<(HeaderChange, u64)>,
}

/// One operations row, minus its unit id and ordinal (assigned in the transaction).
struct OpRow {
    idx: i64,
    skip: i64,
    timestamp_ms: i64,
    hash: Vec<u8>,
    /// The whole operation as JSON.
    operation: String,
}

fn prepare(request: AppendRequest) -> Result<Prepared, StoreError> {
    precheck(&request)?;
    let AppendRequest {
        unit,
        expected_revision,
        operations,
    } = request;
    let mut rows = Vec::with_capacity(operations.len());
    let mut header_changes = Vec::new();
    let mut last_ts = 0;
    for op in &operations {
        if let Some(change) = header_change(op) {
            header_changes.push((change, op.timestamp_utc_ms));
        }
        last_ts = last_ts.max(op.timestamp_utc_ms);
        rows.push(OpRow {
            idx: op.index as i64,
            skip: op.skip as i64,
            timestamp_ms: op.timestamp_utc_ms as i64,
            hash: op.hash.0.to_vec(),
            operation: serde_json::to_string(op).map_err(|e| StoreError::Corrupt {
                unit: unit.to_string(),
                index: op.index,
                reason: e.to_string(),
            })?,
        });
    }
    Ok(Prepared {
        last_hash: operations.last().map_or(OpHash::ZERO, |op| op.hash),
        first: operations.into_iter().next(),
        unit,
        expected_revision,
        rows,
        last_ts,
        header_changes,
    })
}

/// A random identity for this handle's commits (positive, so it reads well in the `origin` column).
fn new_origin() -> i64 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(uuid::Uuid::now_v7().as_bytes());
    hasher.update(&std::process::id().to_le_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&hasher.finalize().as_bytes()[..8]);
    (u64::from_le_bytes(bytes) >> 1) as i64
}

impl PgStore {
    /// Opens (migrating when needed) the store in the database at `url`, with default options.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(PgOptions::new(url)).await
    }

    /// Opens the store with `options`. Several nodes may open the same database at once: the migrations take
    /// PostgreSQL's advisory lock, so one of them applies them and the others find them applied.
    pub async fn open_with(options: PgOptions) -> Result<Self, StoreError> {
        let connect = PgConnectOptions::from_str(&options.url)?
            .application_name("folio")
            .log_slow_statements(tracing::log::LevelFilter::Debug, Duration::from_secs(1));
        let target = format!(
            "{}:{}/{}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or("")
        );
        // The writer's connection first: a wrong URL or an unreachable server fails here at once with its own
        // error (a pool would retry until its timeout and report only that).
        let writer_conn = tokio::time::timeout(options.connect_timeout, PgConnection::connect_with(&connect))
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))??;
        let pool = PgPoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect.clone())
            .await?;
        if options.must_exist {
            let exists: bool = sqlx::query_scalar("SELECT to_regclass('operations') IS NOT NULL")
                .fetch_one(&pool)
                .await?;
            if !exists {
                return Err(StoreError::NotAStore(format!("database {target} has no folio tables")));
            }
        }
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let origin = new_origin();
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        tokio::spawn(writer_loop(writer_conn, connect, origin, rx));
        Ok(Self {
            pool,
            writer: tx,
            origin,
            target: target.into(),
            feed: Arc::new(OnceLock::new()),
        })
    }

    /// The read pool, for tools that query the database directly (benchmarks' baselines, tests).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The identity this handle's commits carry in the `origin` column and in their notices.
    pub fn origin(&self) -> i64 {
        self.origin
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
async fn writer_loop(conn: PgConnection, connect: PgConnectOptions, origin: i64, mut rx: mpsc::Receiver<Append>) {
    let mut conn = Some(conn);
    let size = |a: &Append| a.requests.iter().map(|p| p.rows.len()).sum::<usize>().max(1);
    while let Some(first) = rx.recv().await {
        let mut ops = size(&first);
        let mut batch = vec![first];
        while ops < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(append) => {
                    ops += size(&append);
                    batch.push(append);
                }
                Err(_) => break,
            }
        }
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

/// The head of a unit as the transaction sees it (its row locked).
#[derive(Clone)]
struct Head {
    unit_id: i64,
    revision: u64,
    last_hash: OpHash,
    last_ts: u64,
    touched: bool,
}

fn blob_hash(bytes: &[u8]) -> OpHash {
    let mut h = [0u8; 32];
    if bytes.len() == 32 {
        h.copy_from_slice(bytes);
    }
    OpHash(h)
}

fn to_i64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
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
        heads.insert(
            unit,
            Head {
                unit_id: row.get(0),
                revision: row.get::<i64, _>(4) as u64,
                last_hash: blob_hash(row.get::<&[u8], _>(5)),
                last_ts: row.get::<i64, _>(6) as u64,
                touched: false,
            },
        );
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

fn unit_from_row(row: &PgRow, at: usize) -> Result<SyncUnit, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        unit: "units table".to_owned(),
        index: 0,
        reason,
    };
    let id: &str = row.get(at);
    let scope: &str = row.get(at + 1);
    let branch: &str = row.get(at + 2);
    Ok(SyncUnit::new(
        DocumentId::from_str(id).map_err(|e| corrupt(e.to_string()))?,
        Scope::from_str(scope).map_err(|e| corrupt(e.to_string()))?,
        Branch::new(branch).map_err(|e| corrupt(e.to_string()))?,
    ))
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

    // (unit_id, row) of every operation to insert, in commit order; the ordinals are known only at the end.
    let mut inserts: Vec<(i64, &OpRow)> = Vec::new();
    let mut header_changes: Vec<(DocumentId, &HeaderChange, u64)> = Vec::new();
    let mut results = Vec::with_capacity(requests.len());
    for p in requests {
        let Some(head) = heads.get(&p.unit).cloned() else {
            return Err(StoreError::Corrupt {
                unit: p.unit.to_string(),
                index: 0,
                reason: "the unit's head row is missing after it was created".to_owned(),
            });
        };
        if p.expected_revision != head.revision {
            results.push(replay_or_mismatch(conn, p, &head, &inserts).await?);
            continue;
        }
        if let Some(first) = &p.first
            && !links_to(&head.last_hash, first)
        {
            results.push(Err(StoreError::InvalidOperations {
                unit: p.unit.clone(),
                reason: ChainError::HashMismatch { index: first.index },
            }));
            continue;
        }
        // Positions (1-based) in the batch for now; the ordinals once the counter is taken.
        let ordinals = (inserts.len() as u64 + 1..=(inserts.len() + p.rows.len()) as u64).collect();
        inserts.extend(p.rows.iter().map(|row| (head.unit_id, row)));
        for (change, ts) in &p.header_changes {
            header_changes.push((p.unit.document_id, change, *ts));
        }
        let revision = head.revision + p.rows.len() as u64;
        heads.insert(
            p.unit.clone(),
            Head {
                revision,
                last_hash: if p.rows.is_empty() { head.last_hash } else { p.last_hash },
                last_ts: head.last_ts.max(p.last_ts),
                touched: !p.rows.is_empty() || head.touched,
                ..head
            },
        );
        results.push(Ok(Appended {
            revision,
            ordinals,
            replayed: false,
        }));
    }
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
    for (i, (unit_id, row)) in inserts.iter().enumerate() {
        unit_ids.push(*unit_id);
        idxs.push(row.idx);
        positions.push(i as i64 + 1);
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

/// A request at another revision than the head: a replay when its operations are exactly those stored at its
/// indexes (committed earlier, or appended earlier in this same batch: `pending`), otherwise a mismatch.
async fn replay_or_mismatch(
    conn: &mut PgConnection,
    p: &Prepared,
    head: &Head,
    pending: &[(i64, &OpRow)],
) -> Result<Result<Appended, StoreError>, StoreError> {
    let end = p.expected_revision + p.rows.len() as u64;
    if p.expected_revision < head.revision && end <= head.revision {
        let (from, to) = (to_i64(p.expected_revision), to_i64(end));
        let mut stored: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, hash FROM operations WHERE unit_id = $1 AND idx >= $2 AND idx < $3 ORDER BY idx",
        )
        .bind(head.unit_id)
        .bind(from)
        .bind(to)
        .fetch_all(&mut *conn)
        .await?;
        stored.extend(
            pending
                .iter()
                .filter(|(unit_id, row)| *unit_id == head.unit_id && (from..to).contains(&row.idx))
                .map(|(_, row)| (row.idx, row.hash.clone())),
        );
        if stored.len() == p.rows.len()
            && stored
                .iter()
                .zip(&p.rows)
                .all(|((idx, hash), r)| *idx == r.idx && *hash == r.hash)
        {
            return Ok(Ok(Appended {
                revision: head.revision,
                ordinals: Vec::new(),
                replayed: true,
            }));
        }
    }
    Ok(Err(StoreError::RevisionMismatch {
        unit: p.unit.clone(),
        expected: p.expected_revision,
        actual: head.revision,
    }))
}

/// Decodes a stored operation's JSON, checking that it is the operation the row says (`idx`).
fn decode_operation(unit: &SyncUnit, idx: u64, json: &str) -> Result<Operation, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        unit: unit.to_string(),
        index: idx,
        reason,
    };
    let op: Operation = serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?;
    if op.index != idx || op.action.scope != unit.scope {
        return Err(corrupt(format!(
            "the row at index {idx} holds operation {} of scope {}",
            op.index, op.action.scope
        )));
    }
    Ok(op)
}

/// One chunk of a unit's log as PostgreSQL concatenated it: the operations' JSON, one a line, and how many.
struct RawChunk {
    from: u64,
    text: String,
    count: usize,
}

async fn fetch_chunk(pool: PgPool, unit: SyncUnit, from: u64, to: Option<u64>) -> Result<RawChunk, StoreError> {
    // The cut: operations that start before READ_CHUNK_BYTES (the one that passes it included), at most READ_CHUNK.
    // Stored JSON never holds a raw newline (serde_json escapes it), so a newline separates operations.
    let row = sqlx::query(
        "WITH w AS (SELECT idx, operation, SUM(size) OVER (ORDER BY idx) - size AS before FROM operations \
                    WHERE unit_id = (SELECT unit_id FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3) \
                      AND idx >= $4 AND idx < $5 ORDER BY idx LIMIT $6) \
         SELECT string_agg(operation, E'\\n' ORDER BY idx), count(*) FROM w WHERE before < $7",
    )
    .bind(unit.document_id.to_string())
    .bind(unit.scope.as_str())
    .bind(unit.branch.as_str())
    .bind(to_i64(from))
    .bind(to.map_or(i64::MAX, to_i64))
    .bind(READ_CHUNK)
    .bind(READ_CHUNK_BYTES)
    .fetch_one(&pool)
    .await?;
    let count: i64 = row.get(1);
    Ok(RawChunk {
        from,
        text: row.get::<Option<String>, _>(0).unwrap_or_default(),
        count: count as usize,
    })
}

/// The chunk's operations in order; a row that does not decode, or is not the operation its place says, ends the
/// chunk with an error after the good ones (so `verify` names the exact index).
fn parse_chunk(unit: &SyncUnit, chunk: &RawChunk) -> Vec<Result<Operation, StoreError>> {
    let mut ops = Vec::with_capacity(chunk.count);
    if chunk.count == 0 {
        return ops;
    }
    for (i, line) in chunk.text.split('\n').enumerate() {
        let op = decode_operation(unit, chunk.from + i as u64, line);
        let failed = op.is_err();
        ops.push(op);
        if failed {
            return ops;
        }
    }
    if ops.len() != chunk.count {
        ops.push(Err(StoreError::Corrupt {
            unit: unit.to_string(),
            index: chunk.from + ops.len() as u64,
            reason: format!("a chunk of {} operations split into {}", chunk.count, ops.len()),
        }));
    }
    ops
}

/// Committed operations after `after_ordinal`, with whether `origin` committed each.
async fn read_committed(
    pool: &PgPool,
    after_ordinal: u64,
    limit: usize,
    origin: i64,
) -> Result<Vec<(Committed, bool)>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.ordinal, u.document_id, u.scope, u.branch, o.idx, o.operation, o.origin = $3 \
         FROM operations o JOIN units u ON u.unit_id = o.unit_id \
         WHERE o.ordinal > $1 ORDER BY o.ordinal LIMIT $2",
    )
    .bind(to_i64(after_ordinal))
    .bind(limit.min(i64::MAX as usize) as i64)
    .bind(origin)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            let unit = unit_from_row(row, 1)?;
            let operation = decode_operation(&unit, row.get::<i64, _>(4) as u64, row.get::<&str, _>(5))?;
            Ok((
                Committed {
                    ordinal: row.get::<i64, _>(0) as u64,
                    unit,
                    operation,
                },
                row.get::<bool, _>(6),
            ))
        })
        .collect()
}

#[async_trait]
impl OperationStore for PgStore {
    async fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        // Requests that fail their checks here are answered here; only the rest go to the writer, and the answers
        // are put back in request order.
        let mut results: Vec<Option<Result<Appended, StoreError>>> = Vec::with_capacity(requests.len());
        let mut prepared = Vec::with_capacity(requests.len());
        for request in requests {
            match prepare(request) {
                Ok(p) => {
                    prepared.push(p);
                    results.push(None);
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        let mut written = if prepared.is_empty() {
            Vec::new()
        } else {
            let (reply, rx) = oneshot::channel();
            let append = Append {
                requests: prepared,
                reply,
            };
            match self.writer.send(append).await {
                Ok(()) => rx.await.unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        }
        .into_iter();
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| written.next().unwrap_or(Err(StoreError::Closed))))
            .collect()
    }

    fn read(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> BoxStream<'static, Result<Operation, StoreError>> {
        // A producer task pages through the log while the consumer folds: the next chunk is fetched while the
        // current one is parsed and folded. The channel holds two chunks, so memory stays bounded and a dropped
        // stream stops the producer.
        let pool = self.pool.clone();
        let unit = unit.clone();
        let (tx, rx) = mpsc::channel::<Vec<Result<Operation, StoreError>>>(2);
        tokio::spawn(async move {
            let fetch = |from: u64| tokio::spawn(fetch_chunk(pool.clone(), unit.clone(), from, to));
            let mut pending = to.is_none_or(|t| from < t).then(|| fetch(from));
            while let Some(handle) = pending.take() {
                let raw = match handle.await {
                    Ok(Ok(raw)) => raw,
                    Ok(Err(e)) => {
                        let _ = tx.send(vec![Err(e)]).await;
                        break;
                    }
                    Err(_) => break,
                };
                if raw.count == 0 {
                    break;
                }
                let next = raw.from + raw.count as u64;
                if to.is_none_or(|t| next < t) {
                    pending = Some(fetch(next));
                    tokio::task::yield_now().await;
                }
                let parsed = parse_chunk(&unit, &raw);
                let failed = parsed.last().is_some_and(Result::is_err);
                if tx.send(parsed).await.is_err() || failed {
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

    async fn find_actions(&self, unit: &SyncUnit, ids: &[uuid::Uuid]) -> Result<Vec<Operation>, StoreError> {
        // Answered from the expression index `operations_by_action` (migration 0003).
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        let rows = sqlx::query(
            "SELECT idx, operation FROM operations \
             WHERE unit_id = (SELECT unit_id FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3) \
               AND substr(operation, 8, 36) = ANY($4) ORDER BY idx",
        )
        .bind(unit.document_id.to_string())
        .bind(unit.scope.as_str())
        .bind(unit.branch.as_str())
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| decode_operation(unit, r.get::<i64, _>(0) as u64, r.get::<&str, _>(1)))
            .collect()
    }

    async fn skips(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> Result<Vec<(u64, u64)>, StoreError> {
        // Answered from the partial index `operations_skipping`: the log's rows are not read.
        let rows = sqlx::query(
            "SELECT idx, skip FROM operations \
             WHERE unit_id = (SELECT unit_id FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3) \
               AND skip > 0 AND idx >= $4 AND idx < $5 ORDER BY idx",
        )
        .bind(unit.document_id.to_string())
        .bind(unit.scope.as_str())
        .bind(unit.branch.as_str())
        .bind(from.min(i64::MAX as u64) as i64)
        .bind(to.map_or(i64::MAX, |t| t.min(i64::MAX as u64) as i64))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<i64, _>(0) as u64, r.get::<i64, _>(1) as u64))
            .collect())
    }

    async fn head(&self, unit: &SyncUnit) -> Result<(u64, OpHash), StoreError> {
        let row =
            sqlx::query("SELECT revision, last_hash FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3")
                .bind(unit.document_id.to_string())
                .bind(unit.scope.as_str())
                .bind(unit.branch.as_str())
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map_or((0, OpHash::ZERO), |r| {
            (r.get::<i64, _>(0) as u64, blob_hash(r.get::<&[u8], _>(1)))
        }))
    }

    async fn revisions(&self, document_id: DocumentId, branch: &Branch) -> Result<Revisions, StoreError> {
        Ok(doc_revisions(&self.pool, document_id, branch).await?.0)
    }

    async fn header(&self, document_id: DocumentId, branch: &Branch) -> Result<Option<DocumentHeader>, StoreError> {
        let row =
            sqlx::query("SELECT document_type, name, created_at_ms, deleted FROM documents WHERE document_id = $1")
                .bind(document_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let (revision, last_ts) = doc_revisions(&self.pool, document_id, branch).await?;
        header_from_row(&row, 0, document_id, branch, revision, last_ts).map(Some)
    }

    async fn list_headers(&self, query: &ListQuery) -> Result<Vec<DocumentHeader>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.document_id, d.document_type, d.name, d.created_at_ms, d.deleted, \
               COALESCE(MAX(CASE WHEN u.scope = 'global' THEN u.revision END), 0), \
               COALESCE(MAX(CASE WHEN u.scope = 'local' THEN u.revision END), 0), \
               COALESCE(MAX(CASE WHEN u.scope = 'document' THEN u.revision END), 0), \
               COALESCE(MAX(u.last_ts_ms), d.created_at_ms) \
             FROM documents d LEFT JOIN units u ON u.document_id = d.document_id AND u.branch = $1 \
             WHERE ($2::text IS NULL OR d.document_type = $2) AND ($3::text IS NULL OR d.document_id > $3) \
               AND ($4 OR NOT d.deleted) \
             GROUP BY d.document_id ORDER BY d.document_id LIMIT $5",
        )
        .bind(query.branch.as_str())
        .bind(query.document_type.as_deref())
        .bind(query.after.map(|a| a.to_string()))
        .bind(query.include_deleted)
        .bind(query.limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id: &str = row.get(0);
                let id = DocumentId::from_str(id).map_err(|e| StoreError::Corrupt {
                    unit: "documents table".to_owned(),
                    index: 0,
                    reason: e.to_string(),
                })?;
                let revision = Revisions {
                    global: row.get::<i64, _>(5) as u64,
                    local: row.get::<i64, _>(6) as u64,
                    document: row.get::<i64, _>(7) as u64,
                };
                let last_ts = row.get::<i64, _>(8) as u64;
                header_from_row(row, 1, id, &query.branch, revision, last_ts)
            })
            .collect()
    }

    async fn read_since(&self, after_ordinal: u64, limit: usize) -> Result<Vec<Committed>, StoreError> {
        Ok(read_committed(&self.pool, after_ordinal, limit, self.origin)
            .await?
            .into_iter()
            .map(|(c, _)| c)
            .collect())
    }

    async fn max_ordinal(&self) -> Result<u64, StoreError> {
        let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(ordinal), 0) FROM operations")
            .fetch_one(&self.pool)
            .await?;
        Ok(max as u64)
    }

    async fn units(&self) -> Result<Vec<SyncUnit>, StoreError> {
        let rows = sqlx::query(
            "SELECT unit_id, document_id, scope, branch FROM units WHERE revision > 0 \
             ORDER BY document_id, scope, branch",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|row| unit_from_row(row, 1)).collect()
    }

    async fn put_keyframe(&self, keyframe: &Keyframe) -> Result<(), StoreError> {
        // A keyframe of a unit with no operations has nothing to speed up: the INSERT finds no unit and writes
        // nothing.
        sqlx::query(
            "INSERT INTO keyframes (unit_id, revision, last_hash, state, state_hash, seen) \
             SELECT unit_id, $4, $5, $6, $7, $8 FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3 \
             ON CONFLICT (unit_id, revision) DO UPDATE SET last_hash = excluded.last_hash, state = excluded.state, \
               state_hash = excluded.state_hash, seen = excluded.seen",
        )
        .bind(keyframe.unit.document_id.to_string())
        .bind(keyframe.unit.scope.as_str())
        .bind(keyframe.unit.branch.as_str())
        .bind(to_i64(keyframe.revision))
        .bind(keyframe.last_hash.0.to_vec())
        .bind(keyframe.state.as_str())
        .bind(keyframe.state_hash.0.to_vec())
        .bind(seen_text(&keyframe.seen))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn nearest_keyframe(&self, unit: &SyncUnit, revision: u64) -> Result<Option<Keyframe>, StoreError> {
        let row = sqlx::query(
            "SELECT k.revision, k.last_hash, k.state, k.state_hash, k.seen FROM keyframes k \
             WHERE k.unit_id = (SELECT unit_id FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3) \
             AND k.revision <= $4 ORDER BY k.revision DESC LIMIT 1",
        )
        .bind(unit.document_id.to_string())
        .bind(unit.scope.as_str())
        .bind(unit.branch.as_str())
        .bind(to_i64(revision))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Keyframe {
            unit: unit.clone(),
            revision: r.get::<i64, _>(0) as u64,
            last_hash: blob_hash(r.get::<&[u8], _>(1)),
            state: r.get(2),
            state_hash: blob_hash(r.get::<&[u8], _>(3)),
            seen: seen_from_text(r.get::<&str, _>(4)),
        }))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
        // A concurrent insert of the same key makes ON CONFLICT wait for its commit; the SELECT (a new snapshot
        // under READ COMMITTED) then sees the winner's value.
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?)
    }

    fn commit_feed(&self) -> Option<Arc<dyn CommitFeed>> {
        let feed = self.feed.get_or_init(|| {
            let (tx, rx) = watch::channel(0u64);
            tokio::spawn(listen(self.pool.clone(), self.origin, tx));
            Arc::new(PgFeed {
                pool: self.pool.clone(),
                origin: self.origin,
                notices: rx,
            })
        });
        Some(feed.clone())
    }
}

/// The LISTEN side of [`OperationStore::commit_feed`].
struct PgFeed {
    pool: PgPool,
    origin: i64,
    /// Counts the notices of other handles (and reconnections); a change is a wake-up.
    notices: watch::Receiver<u64>,
}

#[async_trait]
impl CommitFeed for PgFeed {
    fn notices(&self) -> BoxStream<'static, ()> {
        let mut rx = self.notices.clone();
        rx.mark_unchanged();
        stream::unfold(rx, |mut rx| async move { rx.changed().await.ok().map(|()| ((), rx)) }).boxed()
    }

    async fn read_since_marked(&self, after_ordinal: u64, limit: usize) -> Result<Vec<(Committed, bool)>, StoreError> {
        read_committed(&self.pool, after_ordinal, limit, self.origin).await
    }
}

/// Listens on [`NOTIFY_CHANNEL`] until every receiver of `tx` is gone; counts the notices of other handles. After
/// each (re)connection it counts one more: notices sent while it was not listening are lost, and the reader must
/// catch up.
async fn listen(pool: PgPool, origin: i64, tx: watch::Sender<u64>) {
    let own = origin.to_string();
    let wake = |tx: &watch::Sender<u64>| tx.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(NOTIFY_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            _ = tx.closed() => return,
            connected = connected => match connected {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!("LISTEN {NOTIFY_CHANNEL} failed: {e}; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        wake(&tx);
        loop {
            tokio::select! {
                _ = tx.closed() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(notice)) => {
                        if notice.payload() != own {
                            wake(&tx);
                        }
                    }
                    // The connection was lost; the next try_recv reconnects. Notices in between are lost.
                    Ok(None) => wake(&tx),
                    Err(e) => {
                        tracing::warn!("LISTEN {NOTIFY_CHANNEL} failed: {e}; reconnecting");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        break;
                    }
                },
            }
        }
    }
}

async fn doc_revisions(
    pool: &PgPool,
    document_id: DocumentId,
    branch: &Branch,
) -> Result<(Revisions, u64), StoreError> {
    let rows = sqlx::query("SELECT scope, revision, last_ts_ms FROM units WHERE document_id = $1 AND branch = $2")
        .bind(document_id.to_string())
        .bind(branch.as_str())
        .fetch_all(pool)
        .await?;
    let mut r = Revisions::default();
    let mut last_ts = 0u64;
    for row in rows {
        if let Ok(scope) = Scope::from_str(row.get::<&str, _>(0)) {
            r.set(scope, row.get::<i64, _>(1) as u64);
        }
        last_ts = last_ts.max(row.get::<i64, _>(2) as u64);
    }
    Ok((r, last_ts))
}

fn header_from_row(
    row: &PgRow,
    at: usize,
    id: DocumentId,
    branch: &Branch,
    revision: Revisions,
    last_ts: u64,
) -> Result<DocumentHeader, StoreError> {
    let created = row.get::<i64, _>(at + 2) as u64;
    let name = String::from_utf8(row.get::<Vec<u8>, _>(at + 1)).map_err(|e| StoreError::Corrupt {
        unit: format!("documents table, document {id}"),
        index: 0,
        reason: format!("the name is not UTF-8: {e}"),
    })?;
    Ok(DocumentHeader {
        id,
        document_type: row.get(at),
        name,
        created_at_utc_iso: UtcIso(created),
        last_modified_at_utc_iso: UtcIso(last_ts.max(created)),
        branch: branch.clone(),
        revision,
        deleted: row.get::<bool, _>(at + 3),
    })
}
