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
//!   as one multi-statement text (a round trip costs two thread wake-ups, 100–250 µs here: at 64 writers six of
//!   them cost more than the SQL). Statement shapes are padded to powers of two so one cached prepared statement
//!   serves every size. Encoding and in-request hash checks happen in the caller's task, in parallel.
//! * **Checkpoints** run on the writer's connection between two of its transactions, after every 1 MiB of
//!   operations, so they copy every frame and the WAL starts over from its beginning (bounded, and written in place
//!   instead of extending the file); `journal_size_limit` trims it back to 64 MiB after a burst.
//! * **Several processes** may open the same file: `BEGIN IMMEDIATE` takes the write lock before the revision check,
//!   and a busy timeout waits for the other process; the result is `RevisionMismatch` or success, never a duplicate
//!   index or a gap (the unique index on `(unit_id, idx)` would refuse one anyway).
//! * Reads go through a small pool of read connections and page through a unit's log in chunks, so a read of a long
//!   history holds a bounded number of operations in memory. A chunk is one row: SQLite concatenates the chunk's
//!   operations (`group_concat(operation, '\n' ORDER BY idx)`), so the driver's per-row cost (measured at ~3.5 µs
//!   a row through sqlx, most of a raw replay) is paid once per chunk. A chunk holds at most 1,024 operations and
//!   stops after the one that passes 4 MiB. A producer task fetches and decodes the next chunk while the caller
//!   folds the current one.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use folio_core::{
    Branch, CausalContext, ChainError, DocumentHeader, DocumentId, HeaderChange, OpHash, Operation, Revisions, Scope,
    SyncUnit, UtcIso, header_change,
};

use crate::StoreError;
use crate::store::{
    AppendRequest, Appended, Committed, Keyframe, ListQuery, OperationStore, SinceFilter, SincePage, links_to, precheck,
};

/// The most operations a read stream fetches per query.
const READ_CHUNK: i64 = 1024;
/// A chunk ends with the operation that takes it past this many bytes of JSON.
const READ_CHUNK_BYTES: i64 = 4 * 1024 * 1024;
/// The most operations one group commit takes in.
const MAX_BATCH_OPS: usize = 8192;
/// The largest multi-row INSERT, in rows (10 parameters each; SQLite allows 32,766).
const MAX_INSERT_ROWS: usize = 512;
/// Requests waiting for the writer; callers wait when it is full.
const WRITER_QUEUE: usize = 4096;

/// How to open a [`SqliteStore`].
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// The database file (created when missing).
    pub path: PathBuf,
    /// How long a writer waits for another process's write lock before failing.
    pub busy_timeout: Duration,
    /// Read connections in the pool.
    pub read_connections: u32,
    /// `true` (the default): every commit is fsynced before it is acknowledged, durable against power loss (the
    /// WAL sync thread, or `synchronous = FULL` where there is no WAL file). `false`: no fsync, durable against
    /// process crashes only; for benchmarks and throwaway stores.
    pub synchronous_full: bool,
}

impl SqliteOptions {
    /// Defaults for the file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            busy_timeout: Duration::from_secs(30),
            read_connections: 4,
            synchronous_full: true,
        }
    }
}

/// An `OperationStore` in one SQLite file. Cheap to clone; clones share the writer and the read pool.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    writer: mpsc::Sender<WriteCommand>,
    path: PathBuf,
    /// Units by their row id, as reads resolve them.
    unit_names: Arc<std::sync::Mutex<HashMap<i64, SyncUnit>>>,
    /// How far the writer's transactions are on disk, when a sync thread fsyncs them (the default).
    durability: Option<Arc<Durability>>,
}

/// Rows per query of `read_since`.
const READ_SINCE_PAGE: usize = 4096;

fn corrupt_page(line: &str) -> StoreError {
    StoreError::Corrupt {
        unit: "operations table".to_owned(),
        index: 0,
        reason: format!(
            "unreadable row in a read by ordinal: {}",
            line.chars().take(80).collect::<String>()
        ),
    }
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").field("path", &self.path).finish()
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
    error: Option<String>,
    /// The whole operation as JSON.
    operation: String,
    /// The replica that authored the action.
    replica: Option<String>,
}

enum WriteCommand {
    Append {
        requests: Vec<Prepared>,
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

fn connect_options(options: &SqliteOptions) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(&options.path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(if options.synchronous_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        })
        .busy_timeout(options.busy_timeout)
        .foreign_keys(false)
        // The writer's statement shapes (heads, inserts and upserts per power of two, and their pairs sent with
        // COMMIT) number about a hundred: keep them all prepared.
        .statement_cache_capacity(256)
}

impl SqliteStore {
    /// `value`, once everything committed before now is on disk (see [`Durability`]).
    async fn settled<T>(&self, value: T) -> Result<T, StoreError> {
        if let Some(durability) = &self.durability {
            durability.settle().await?;
        }
        Ok(value)
    }

    /// The units of `ids` (unit ids are never reused: a cache of them stays true).
    async fn units_by_id(&self, ids: impl Iterator<Item = i64>) -> Result<HashMap<i64, SyncUnit>, StoreError> {
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
                let id: i64 = row.get(0);
                cache.insert(id, unit.clone());
                found.insert(id, unit);
            }
        }
        Ok(found)
    }

    async fn send_meta(&self, key: &str, value: &str, replace: bool) -> Result<String, StoreError> {
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

    /// Opens (creating and migrating when needed) the store in the file at `path`, with default options.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(SqliteOptions::new(path.as_ref())).await
    }

    /// Opens the store with `options`.
    pub async fn open_with(options: SqliteOptions) -> Result<Self, StoreError> {
        let connect = connect_options(&options);
        // Opening a new file sets WAL mode, which takes locks that another process opening the same file at the
        // same moment can hold: SQLite then reports "database is locked" without waiting. Retry until the busy
        // timeout.
        let deadline = std::time::Instant::now() + options.busy_timeout;
        let mut writer_conn = retry_busy(deadline, || SqliteConnection::connect_with(&connect)).await?;
        // Several processes may open a new file at once: one of them wins the migration, the others retry and
        // then find it applied.
        let mut attempt = 0;
        loop {
            match sqlx::migrate!("./migrations/sqlite").run_direct(&mut writer_conn).await {
                Ok(()) => break,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    tracing::debug!("migration attempt {attempt} failed ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        // The writer keeps more pages cached, and checkpoints between its transactions (`checkpoint`) instead of
        // inside a commit (measured: ~9% of the writer's time at 100 writers).
        sqlx::query("PRAGMA cache_size = -65536")
            .execute(&mut writer_conn)
            .await?;
        sqlx::query("PRAGMA wal_autocheckpoint = 0")
            .execute(&mut writer_conn)
            .await?;
        sqlx::query(&format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"))
            .execute(&mut writer_conn)
            .await?;
        // Durable commits without the fsync inside them: the writer commits with `synchronous = NORMAL` and a
        // thread of its own fsyncs the WAL before any caller hears of the commit, while the writer goes on with the
        // next transaction. (A commit that SQLite itself fsyncs holds the write lock, and every later commit,
        // through the disk's latency.) Reads wait for the fsync of what they may have seen (`Durability`).
        // Without a WAL file to sync, the writer stays on `FULL`.
        let syncer = if options.synchronous_full {
            match std::fs::File::open(wal_path(&options.path)) {
                Ok(wal) => {
                    sqlx::query("PRAGMA synchronous = NORMAL")
                        .execute(&mut writer_conn)
                        .await?;
                    let durability = Arc::new(Durability::default());
                    let (groups, rx) = std::sync::mpsc::channel::<SyncGroup>();
                    let synced = durability.clone();
                    std::thread::Builder::new()
                        .name("folio-wal-sync".to_owned())
                        .spawn(move || sync_loop(|| wal.sync_data(), rx, &synced))
                        .map_err(|e| StoreError::Unsynced(format!("cannot start the WAL sync thread: {e}")))?;
                    Some(WalSync { groups, durability })
                }
                Err(e) => {
                    tracing::debug!("no WAL file to sync ({e}): commits fsync themselves");
                    None
                }
            }
        } else {
            None
        };
        let pool_options = SqlitePoolOptions::new().max_connections(options.read_connections.max(1));
        let pool = retry_busy(deadline, || pool_options.clone().connect_with(connect.clone())).await?;
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let durability = syncer.as_ref().map(|s| s.durability.clone());
        tokio::spawn(writer_loop(writer_conn, rx, syncer));
        Ok(Self {
            pool,
            durability,
            writer: tx,
            path: options.path,
            unit_names: Arc::default(),
        })
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

/// Whether `e` is SQLite's `SQLITE_BUSY` or `SQLITE_LOCKED` (any extended code of them).
fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

/// Runs `attempt` until it does not fail with a busy database, or `deadline` passes.
async fn retry_busy<T, F, Fut>(deadline: std::time::Instant, mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let mut attempts = 0u64;
    loop {
        match attempt().await {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                attempts += 1;
                tracing::debug!("opening the database: {e} (attempt {attempts}); retrying");
                tokio::time::sleep(Duration::from_millis(5 * attempts.min(20))).await;
            }
            outcome => return outcome,
        }
    }
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
            error: op.error.clone(),
            replica: op.action.replica.clone(),
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

/// Bytes of operations committed since the last complete checkpoint past which the writer checkpoints (the WAL
/// then holds ~10–40 times that: every commit writes whole pages).
const CHECKPOINT_AFTER_BYTES: u64 = 1024 * 1024;
/// The WAL file is truncated back to this size when it restarts after growing past it (a burst of reads that held
/// checkpoints back).
const WAL_SIZE_LIMIT: u64 = 64 * 1024 * 1024;

/// Checkpoints the WAL into the database file on the writer's own connection, between two of its transactions.
///
/// A checkpoint copies the WAL's pages into the database file; the next write transaction then starts the WAL
/// over from its beginning, but only when every frame was copied. A checkpoint on another connection never gets
/// there under a steady load (the writer appends frames while it copies), so the WAL would grow for as long as the
/// load lasts (`scripts/load/run 8` left 1.2 GiB beside a 71 MiB database), each write extending the file (the
/// kernel zeroes every new block: ~10% of the writer's CPU). Here no frame is added while it runs; only a reader
/// still on an older snapshot can hold it back, and then it is tried again after half the interval.
async fn checkpoint(conn: &mut SqliteConnection, written: &mut u64) {
    match sqlx::query_as::<_, (i64, i64, i64)>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut *conn)
        .await
    {
        Ok((_, log, copied)) if log == copied => *written = 0,
        Ok((_, log, copied)) => {
            tracing::debug!("WAL checkpoint copied {copied} of {log} frames (a reader holds the rest)");
            *written = CHECKPOINT_AFTER_BYTES / 2;
        }
        Err(e) => {
            tracing::debug!("WAL checkpoint failed (it is retried): {e}");
            *written = CHECKPOINT_AFTER_BYTES / 2;
        }
    }
}

/// The write-ahead log of the database at `path`.
fn wal_path(path: &Path) -> PathBuf {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

/// An acknowledgement waiting for the WAL to reach the disk: called with the fsync's failure, if it failed.
type Ack = Box<dyn FnOnce(Option<&str>) + Send>;

/// The acknowledgements of one of the writer's wake-ups, and its generation.
type SyncGroup = (u64, Vec<Ack>);

/// The writer's side of the WAL sync thread.
struct WalSync {
    groups: std::sync::mpsc::Sender<SyncGroup>,
    durability: Arc<Durability>,
}

impl WalSync {
    /// Begins a wake-up's group: its generation is counted before any of its statements.
    fn begin(&self) -> SyncGroup {
        (self.durability.begun.fetch_add(1, Ordering::SeqCst) + 1, Vec::new())
    }

    /// Hands the group, its statements done, to the sync thread.
    fn finish(&self, group: SyncGroup) {
        if let Err(std::sync::mpsc::SendError((_, acks))) = self.groups.send(group) {
            for ack in acks {
                ack(Some("the WAL sync thread stopped"));
            }
        }
    }
}

/// How far the writer's transactions are on disk when a sync thread fsyncs them. Each wake-up of the writer is a
/// generation, counted before its first statement; the sync thread publishes the last generation it fsynced. A
/// read waits, after it ran, until every generation begun by then is synced: whatever it saw was committed by one
/// of them, so nothing a caller reads can vanish in a power loss (an ordinal handed to a pulling replica is never
/// reused). Reads wait only while a commit is between its `COMMIT` and its fsync.
#[derive(Default)]
struct Durability {
    /// Generations begun.
    begun: AtomicU64,
    /// The last generation fsynced (`u64::MAX` once the sync thread stopped).
    synced: tokio::sync::watch::Sender<u64>,
    /// Why an fsync failed: every later read and write fails.
    failed: OnceLock<String>,
}

impl Durability {
    /// Waits until everything committed before now is on disk.
    async fn settle(&self) -> Result<(), StoreError> {
        let wanted = self.begun.load(Ordering::SeqCst);
        if *self.synced.borrow() < wanted {
            let _ = self.synced.subscribe().wait_for(|synced| *synced >= wanted).await;
        }
        match self.failed.get() {
            Some(reason) => Err(StoreError::Unsynced(reason.clone())),
            None => Ok(()),
        }
    }
}

/// The WAL sync thread: fsyncs the WAL once for every group that waits when it wakes (all of their commits were
/// written before they were queued), publishes the generation, then acknowledges. After a failed fsync nothing
/// more is acknowledged: what the disk holds is unknown until a restart recovers the log.
fn sync_loop(
    mut fsync: impl FnMut() -> std::io::Result<()>,
    groups: std::sync::mpsc::Receiver<SyncGroup>,
    durability: &Durability,
) {
    while let Ok(first) = groups.recv() {
        let mut generation = first.0;
        let mut acks = first.1;
        for (g, more) in groups.try_iter() {
            generation = generation.max(g);
            acks.extend(more);
        }
        if durability.failed.get().is_none()
            && let Err(e) = fsync()
        {
            tracing::error!("fsync of the SQLite write-ahead log failed: {e}; every later write on this store fails");
            let _ = durability.failed.set(e.to_string());
        }
        durability
            .synced
            .send_modify(|synced| *synced = (*synced).max(generation));
        let failed = durability.failed.get().map(String::as_str);
        for ack in acks {
            ack(failed);
        }
    }
    // The writer is gone: nothing more will be committed, and no read may wait for it.
    durability.synced.send_replace(u64::MAX);
}

/// Sends `value` to `reply`: at once, or, when the store defers its fsyncs, once the WAL holding the commit is on
/// disk (the acknowledgement joins `pending`). `unsynced` turns the value into what to send instead when that fsync
/// failed.
fn acknowledge<T: Send + 'static>(
    pending: Option<&mut Vec<Ack>>,
    reply: oneshot::Sender<T>,
    value: T,
    unsynced: fn(T, &str) -> T,
) {
    match pending {
        None => {
            let _ = reply.send(value);
        }
        Some(pending) => pending.push(Box::new(move |failed| {
            let _ = reply.send(match failed {
                None => value,
                Some(reason) => unsynced(value, reason),
            });
        })),
    }
}

/// A successful result that the disk did not confirm becomes [`StoreError::Unsynced`].
fn unsynced<T>(result: Result<T, StoreError>, reason: &str) -> Result<T, StoreError> {
    result.and_then(|_| Err(StoreError::Unsynced(reason.to_owned())))
}

async fn writer_loop(mut conn: SqliteConnection, mut rx: mpsc::Receiver<WriteCommand>, syncer: Option<WalSync>) {
    let mut unit_ids: HashMap<SyncUnit, i64> = HashMap::new();
    // Bytes of operations committed since the last complete checkpoint.
    let mut written = 0u64;
    while let Some(first) = rx.recv().await {
        let mut ops = first.ops();
        let mut batch = vec![first];
        while ops < MAX_BATCH_OPS {
            match rx.try_recv() {
                Ok(cmd) => {
                    ops += cmd.ops();
                    batch.push(cmd);
                }
                Err(_) => break,
            }
        }
        let mut appends = Vec::new();
        let mut keyframes = Vec::new();
        let mut metas = Vec::new();
        // This wake-up's generation, begun before any of its statements (reads wait for its fsync).
        let mut group = syncer.as_ref().map(WalSync::begin);
        let mut pending = group.as_mut().map(|(_, acks)| acks);
        for cmd in batch {
            match cmd {
                WriteCommand::Append { requests, reply } => appends.push((requests, reply)),
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
                .flat_map(|(requests, _)| requests.iter())
                .flat_map(|p| p.rows.iter().map(|r| r.operation.len() + 64))
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

type AppendBatch = Vec<(Vec<Prepared>, oneshot::Sender<Vec<Result<Appended, StoreError>>>)>;

async fn commit_appends(
    conn: &mut SqliteConnection,
    unit_ids: &mut HashMap<SyncUnit, i64>,
    batch: AppendBatch,
    mut pending: Option<&mut Vec<Ack>>,
) {
    let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
    let counts: Vec<usize> = requests.iter().map(Vec::len).collect();
    let flat: Vec<Prepared> = requests.into_iter().flatten().collect();
    let results = match group_commit(conn, unit_ids, &flat).await {
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
            for request in &flat {
                let one = std::slice::from_ref(request);
                match group_commit(conn, unit_ids, one).await {
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

/// The head of a unit as the transaction sees it.
#[derive(Clone)]
struct Head {
    unit_id: i64,
    revision: u64,
    last_hash: OpHash,
    last_ts: u64,
    touched: bool,
    is_new: bool,
}

fn blob_hash(bytes: &[u8]) -> OpHash {
    let mut h = [0u8; 32];
    if bytes.len() == 32 {
        h.copy_from_slice(bytes);
    }
    OpHash(h)
}

async fn group_commit(
    conn: &mut SqliteConnection,
    unit_ids: &mut HashMap<SyncUnit, i64>,
    requests: &[Prepared],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let outcome = group_commit_in_tx(conn, unit_ids, requests).await;
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
            heads.insert(
                unit,
                Head {
                    unit_id: row.get(0),
                    revision: row.get::<i64, _>(4) as u64,
                    last_hash: blob_hash(row.get::<&[u8], _>(5)),
                    last_ts: row.get::<i64, _>(6) as u64,
                    touched: false,
                    is_new: false,
                },
            );
        }
    }
    let counters = counters.ok_or_else(|| StoreError::Corrupt {
        unit: "operations table".to_owned(),
        index: 0,
        reason: "the counters query returned no row".to_owned(),
    })?;
    Ok((counters, heads))
}

fn unit_from_row(row: &sqlx::sqlite::SqliteRow, at: usize) -> Result<SyncUnit, StoreError> {
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

fn insert_sql(rows: usize) -> &'static str {
    static CACHE: OnceLock<Vec<String>> = OnceLock::new();
    pow2_sql(&CACHE, rows, MAX_INSERT_ROWS, |n| {
        repeated_sql(
            // OR ROLLBACK: a failure already rolls the whole group back (and retries each request alone), so SQLite
            // need not keep a statement journal to undo this statement alone. The statement has a power-of-two
            // number of rows; the padding rows are all NULL and filtered out.
            "INSERT OR ROLLBACK INTO operations \
             (unit_id, idx, ordinal, skip, timestamp_ms, hash, error, operation, size, replica) \
             SELECT column1, column2, column3, column4, column5, column6, column7, column8, column9, column10 \
             FROM (VALUES ",
            "(?,?,?,?,?,?,?,?,?,?)",
            n,
            ") WHERE column1 IS NOT NULL",
        )
    })
}

/// Splits `n` rows into statements of at most `max` rows, each padded up to a power of two, so a handful of
/// statement shapes serve every batch: sqlx caches prepared statements by their text, and preparing a statement of
/// hundreds of rows costs more than running it. Returns (rows, shape) per statement.
fn padded_chunks(mut n: usize, max: usize) -> Vec<(usize, usize)> {
    let mut chunks = Vec::new();
    while n > 0 {
        let rows = n.min(max);
        chunks.push((rows, rows.next_power_of_two()));
        n -= rows;
    }
    chunks
}

/// The most units one head query or head upsert names.
const MAX_UNITS_PER_STATEMENT: usize = 256;

/// `n` rows of `row` after `head`, then `tail`; built once per shape.
fn repeated_sql(head: &str, row: &str, n: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + n * (row.len() + 1) + tail.len());
    sql.push_str(head);
    for i in 0..n {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str(row);
    }
    sql.push_str(tail);
    sql
}

/// The statement for `n` rows (a power of two up to `max`), from a cache of one statement per power of two.
fn pow2_sql(cache: &'static OnceLock<Vec<String>>, n: usize, max: usize, build: fn(usize) -> String) -> &'static str {
    debug_assert!(n.is_power_of_two() && n <= max);
    let shapes = cache.get_or_init(|| (0..=max.trailing_zeros()).map(|k| build(1 << k)).collect());
    &shapes[n.trailing_zeros() as usize]
}

fn heads_sql(n: usize) -> &'static str {
    static CACHE: OnceLock<Vec<String>> = OnceLock::new();
    pow2_sql(&CACHE, n, MAX_UNITS_PER_STATEMENT, |n| {
        // A join from the list, so each unit is one search of the units' unique index. (A row-value `IN (VALUES
        // …)` built a temporary b-tree of the list on every commit; older SQLite versions also scanned every unit.)
        repeated_sql(
            "SELECT u.unit_id, u.document_id, u.scope, u.branch, u.revision, u.last_hash, u.last_ts_ms \
             FROM (VALUES ",
            "(?,?,?)",
            n,
            ") AS v CROSS JOIN units AS u \
             ON u.document_id = v.column1 AND u.scope = v.column2 AND u.branch = v.column3",
        )
    })
}

fn upsert_heads_sql(n: usize) -> &'static str {
    static CACHE: OnceLock<Vec<String>> = OnceLock::new();
    pow2_sql(&CACHE, n, MAX_UNITS_PER_STATEMENT, |n| {
        repeated_sql(
            "INSERT INTO units (unit_id, document_id, scope, branch, revision, last_hash, last_ts_ms) VALUES ",
            "(?,?,?,?,?,?,?)",
            n,
            " ON CONFLICT (unit_id) DO UPDATE SET revision = excluded.revision, \
             last_hash = excluded.last_hash, last_ts_ms = excluded.last_ts_ms",
        )
    })
}

/// `BEGIN IMMEDIATE`, the counters, then the heads of `n` units: the first round trip of a commit.
fn begin_heads_sql(n: usize) -> &'static str {
    static CACHE: OnceLock<Vec<String>> = OnceLock::new();
    pow2_sql(&CACHE, n, MAX_UNITS_PER_STATEMENT, |n| {
        format!(
            "BEGIN IMMEDIATE; SELECT COALESCE((SELECT MAX(ordinal) FROM operations), 0), \
             COALESCE((SELECT MAX(unit_id) FROM units), 0); {}",
            heads_sql(n)
        )
    })
}

/// The most rows (operations, and units) whose statements are sent with `COMMIT` in one text: the shapes are
/// cached per (operations, units) pair, so the bound keeps their number (7 × 7) and size small. Larger commits
/// send their statements one by one, where the round trips weigh little against the rows.
const MAX_COMBINED_ROWS: usize = 64;

/// The inserts of `ops` operations, the upsert of `units` heads and `COMMIT`, in one text.
fn insert_commit_sql(ops: usize, units: usize) -> &'static str {
    static CACHE: OnceLock<Vec<Vec<String>>> = OnceLock::new();
    debug_assert!(ops.is_power_of_two() && units.is_power_of_two());
    debug_assert!(ops <= MAX_COMBINED_ROWS && units <= MAX_COMBINED_ROWS);
    let shapes = CACHE.get_or_init(|| {
        (0..=MAX_COMBINED_ROWS.trailing_zeros())
            .map(|i| {
                (0..=MAX_COMBINED_ROWS.trailing_zeros())
                    .map(|u| format!("{}; {}; COMMIT", insert_sql(1 << i), upsert_heads_sql(1 << u)))
                    .collect()
            })
            .collect()
    });
    &shapes[ops.trailing_zeros() as usize][units.trailing_zeros() as usize]
}

type Insert<'a> = (i64, &'a OpRow, i64);

fn bind_inserts<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    rows: &[Insert<'q>],
    shape: usize,
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
    for (unit_id, row, ordinal) in rows {
        q = q
            .bind(*unit_id)
            .bind(row.idx)
            .bind(*ordinal)
            .bind(row.skip)
            .bind(row.timestamp_ms)
            .bind(row.hash.as_slice())
            .bind(row.error.as_deref())
            .bind(row.operation.as_str())
            .bind(row.operation.len() as i64)
            .bind(row.replica.as_deref());
    }
    for _ in rows.len()..shape {
        for _ in 0..10 {
            q = q.bind(None::<i64>);
        }
    }
    q
}

fn bind_heads<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    heads: &[(&'q SyncUnit, &'q Head)],
    shape: usize,
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
    // Padding repeats the last head: the repeated row updates the unit to the same values.
    let padding = heads.last().into_iter().cycle().take(shape - heads.len());
    for (unit, head) in heads.iter().chain(padding) {
        q = q
            .bind(head.unit_id)
            .bind(unit.document_id.to_string())
            .bind(unit.scope.as_str())
            .bind(unit.branch.as_str())
            .bind(head.revision as i64)
            .bind(head.last_hash.0.to_vec())
            .bind(head.last_ts as i64);
    }
    q
}

async fn group_commit_in_tx(
    conn: &mut SqliteConnection,
    unit_ids: &mut HashMap<SyncUnit, i64>,
    requests: &[Prepared],
) -> Result<Vec<Result<Appended, StoreError>>, StoreError> {
    let units: Vec<&SyncUnit> = {
        let mut seen = std::collections::HashSet::new();
        requests.iter().map(|p| &p.unit).filter(|u| seen.insert(*u)).collect()
    };
    let (counters, mut heads) = begin_and_load_heads(conn, &units).await?;
    let mut next_ordinal = counters.last_ordinal;
    let mut next_unit_id = counters.last_unit_id + 1;
    // (unit_id, row, ordinal) of every operation to insert, in commit order.
    let mut inserts: Vec<Insert> = Vec::new();
    let mut header_changes: Vec<(DocumentId, &HeaderChange, u64)> = Vec::new();
    let mut results = Vec::with_capacity(requests.len());
    for p in requests {
        let head = match heads.get(&p.unit) {
            Some(h) => h.clone(),
            None => {
                let unit_id = next_unit_id;
                next_unit_id += 1;
                Head {
                    unit_id,
                    revision: 0,
                    last_hash: OpHash::ZERO,
                    last_ts: 0,
                    touched: false,
                    is_new: true,
                }
            }
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
        let mut ordinals = Vec::with_capacity(p.rows.len());
        for row in &p.rows {
            next_ordinal += 1;
            inserts.push((head.unit_id, row, next_ordinal));
            ordinals.push(next_ordinal as u64);
        }
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
    if !inserts.is_empty() && inserts.len() <= MAX_COMBINED_ROWS && touched.len() <= MAX_COMBINED_ROWS {
        // The common case: the second and last round trip.
        let (ops, units) = (inserts.len().next_power_of_two(), touched.len().next_power_of_two());
        let q = bind_inserts(sqlx::query(insert_commit_sql(ops, units)), &inserts, ops);
        bind_heads(q, &touched, units).execute(&mut *conn).await?;
    } else {
        let mut rest = inserts.as_slice();
        for (rows, shape) in padded_chunks(inserts.len(), MAX_INSERT_ROWS) {
            let (chunk, tail) = rest.split_at(rows);
            rest = tail;
            bind_inserts(sqlx::query(insert_sql(shape)), chunk, shape)
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

/// A request at another revision than the head: a replay when its operations are exactly those stored at its
/// indexes (committed earlier, or appended earlier in this same batch: `pending`), otherwise a mismatch.
async fn replay_or_mismatch(
    conn: &mut SqliteConnection,
    p: &Prepared,
    head: &Head,
    pending: &[(i64, &OpRow, i64)],
) -> Result<Result<Appended, StoreError>, StoreError> {
    let end = p.expected_revision + p.rows.len() as u64;
    if p.expected_revision < head.revision && end <= head.revision {
        let (from, to) = (p.expected_revision as i64, end as i64);
        let mut stored: Vec<(i64, Vec<u8>)> = if head.is_new {
            Vec::new()
        } else {
            sqlx::query_as("SELECT idx, hash FROM operations WHERE unit_id = ? AND idx >= ? AND idx < ? ORDER BY idx")
                .bind(head.unit_id)
                .bind(from)
                .bind(to)
                .fetch_all(&mut *conn)
                .await?
        };
        stored.extend(
            pending
                .iter()
                .filter(|(unit_id, row, _)| *unit_id == head.unit_id && (from..to).contains(&row.idx))
                .map(|(_, row, _)| (row.idx, row.hash.clone())),
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
    .bind(keyframe.state.as_str())
    .bind(keyframe.state_hash.0.to_vec())
    .bind(seen_text(&keyframe.seen))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The seen clocks as stored: JSON, or empty text for none.
pub(crate) fn seen_text(seen: &CausalContext) -> String {
    if seen.is_empty() {
        String::new()
    } else {
        serde_json::to_string(seen).unwrap_or_default()
    }
}

pub(crate) fn seen_from_text(text: &str) -> CausalContext {
    if text.is_empty() {
        return CausalContext::default();
    }
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::warn!("a keyframe's seen clocks are unreadable ({e}); taking none");
        CausalContext::default()
    })
}

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

/// Action ids looked up in one statement (SQLite's limit on bound values is far above).
const FIND_CHUNK: usize = 500;

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

/// One chunk of a unit's log as SQLite concatenated it: the operations' JSON, one a line, and how many.
struct RawChunk {
    from: u64,
    text: String,
    count: usize,
}

async fn fetch_chunk(pool: SqlitePool, unit: SyncUnit, from: u64, to: Option<u64>) -> Result<RawChunk, StoreError> {
    let to = to.map_or(i64::MAX, |t| t.min(i64::MAX as u64) as i64);
    // The cut: the last index whose operation starts before READ_CHUNK_BYTES, over the stored sizes only.
    let row = sqlx::query(
        "WITH u AS (SELECT unit_id FROM units WHERE document_id = ? AND scope = ? AND branch = ?), \
         w AS (SELECT idx, SUM(size) OVER (ORDER BY idx ROWS UNBOUNDED PRECEDING) - size AS before \
               FROM operations WHERE unit_id = (SELECT unit_id FROM u) AND idx >= ? AND idx < ? \
               ORDER BY idx LIMIT ?) \
         SELECT group_concat(operation, char(10) ORDER BY idx), count(*) FROM operations \
         WHERE unit_id = (SELECT unit_id FROM u) AND idx >= ? \
           AND idx <= (SELECT MAX(idx) FROM w WHERE before < ?)",
    )
    .bind(unit.document_id.to_string())
    .bind(unit.scope.as_str())
    .bind(unit.branch.as_str())
    .bind(from.min(i64::MAX as u64) as i64)
    .bind(to)
    .bind(READ_CHUNK)
    .bind(from.min(i64::MAX as u64) as i64)
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

#[async_trait]
impl OperationStore for SqliteStore {
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
        let sent = prepared.len();
        let mut written = if sent == 0 {
            Vec::new()
        } else {
            let (reply, rx) = oneshot::channel();
            let delivered = self
                .writer
                .send(WriteCommand::Append {
                    requests: prepared,
                    reply,
                })
                .await
                .is_ok();
            match delivered {
                true => rx.await.unwrap_or_default(),
                false => Vec::new(),
            }
        }
        .into_iter();
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| written.next().unwrap_or(Err(StoreError::Closed))))
            .collect()
    }

    fn read(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> BoxStream<'static, Result<Operation, StoreError>> {
        // A producer task pages through the log while the consumer folds: reading and decoding the next chunk
        // overlaps with the work on the previous one. The channel holds two chunks, so memory stays bounded and a
        // dropped stream stops the producer.
        let pool = self.pool.clone();
        let unit = unit.clone();
        let durability = self.durability.clone();
        let (tx, rx) = mpsc::channel::<Vec<Result<Operation, StoreError>>>(2);
        tokio::spawn(async move {
            // Three stages run at once: SQLite fetches chunk n+1 (on the driver's thread) while this task parses
            // chunk n and the caller folds chunk n-1.
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
                if let Some(durability) = &durability
                    && let Err(e) = durability.settle().await
                {
                    let _ = tx.send(vec![Err(e)]).await;
                    break;
                }
                let next = raw.from + raw.count as u64;
                if to.is_none_or(|t| next < t) {
                    pending = Some(fetch(next));
                    // Let the fetch start (hand its query to the driver's thread) before parsing: a task spawned
                    // here waits in this worker's LIFO slot, where no other worker steals it, until this task yields.
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
        // Answered from the expression index `operations_by_action` (migration 0007).
        let mut found = Vec::new();
        for chunk in ids.chunks(FIND_CHUNK) {
            let marks = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT idx, operation FROM operations \
                 WHERE unit_id = (SELECT unit_id FROM units WHERE document_id = ? AND scope = ? AND branch = ?) \
                   AND json_extract(operation, '$.id') IN ({marks})"
            );
            let mut query = sqlx::query(&sql)
                .bind(unit.document_id.to_string())
                .bind(unit.scope.as_str())
                .bind(unit.branch.as_str());
            for id in chunk {
                query = query.bind(id.to_string());
            }
            for row in query.fetch_all(&self.pool).await? {
                found.push(decode_operation(
                    unit,
                    row.get::<i64, _>(0) as u64,
                    row.get::<&str, _>(1),
                )?);
            }
        }
        found.sort_by_key(|op| op.index);
        self.settled(found).await
    }

    async fn skips(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> Result<Vec<(u64, u64)>, StoreError> {
        // Answered from the partial index `operations_skipping`: the log's rows are not read.
        let rows = sqlx::query(
            "SELECT idx, skip FROM operations \
             WHERE unit_id = (SELECT unit_id FROM units WHERE document_id = ? AND scope = ? AND branch = ?) \
               AND skip > 0 AND idx >= ? AND idx < ? ORDER BY idx",
        )
        .bind(unit.document_id.to_string())
        .bind(unit.scope.as_str())
        .bind(unit.branch.as_str())
        .bind(from.min(i64::MAX as u64) as i64)
        .bind(to.map_or(i64::MAX, |t| t.min(i64::MAX as u64) as i64))
        .fetch_all(&self.pool)
        .await?;
        self.settled(
            rows.iter()
                .map(|r| (r.get::<i64, _>(0) as u64, r.get::<i64, _>(1) as u64))
                .collect(),
        )
        .await
    }

    async fn head(&self, unit: &SyncUnit) -> Result<(u64, OpHash), StoreError> {
        let row =
            sqlx::query("SELECT revision, last_hash FROM units WHERE document_id = ? AND scope = ? AND branch = ?")
                .bind(unit.document_id.to_string())
                .bind(unit.scope.as_str())
                .bind(unit.branch.as_str())
                .fetch_optional(&self.pool)
                .await?;
        self.settled(row.map_or((0, OpHash::ZERO), |r| {
            (r.get::<i64, _>(0) as u64, blob_hash(r.get::<&[u8], _>(1)))
        }))
        .await
    }

    async fn revisions(&self, document_id: DocumentId, branch: &Branch) -> Result<Revisions, StoreError> {
        self.settled(doc_revisions(&self.pool, document_id, branch).await?.0)
            .await
    }

    async fn header(&self, document_id: DocumentId, branch: &Branch) -> Result<Option<DocumentHeader>, StoreError> {
        let row =
            sqlx::query("SELECT document_type, name, created_at_ms, deleted FROM documents WHERE document_id = ?")
                .bind(document_id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            return self.settled(None).await;
        };
        let (revision, last_ts) = doc_revisions(&self.pool, document_id, branch).await?;
        self.settled(Some(header_from_row(&row, 0, document_id, branch, revision, last_ts)))
            .await
    }

    async fn list_headers(&self, query: &ListQuery) -> Result<Vec<DocumentHeader>, StoreError> {
        let rows = sqlx::query(
            "SELECT d.document_id, d.document_type, d.name, d.created_at_ms, d.deleted, \
               COALESCE(MAX(CASE WHEN u.scope = 'global' THEN u.revision END), 0), \
               COALESCE(MAX(CASE WHEN u.scope = 'local' THEN u.revision END), 0), \
               COALESCE(MAX(CASE WHEN u.scope = 'document' THEN u.revision END), 0), \
               COALESCE(MAX(u.last_ts_ms), d.created_at_ms) \
             FROM documents d LEFT JOIN units u ON u.document_id = d.document_id AND u.branch = ? \
             WHERE (? IS NULL OR d.document_type = ?) AND (? IS NULL OR d.document_id > ?) AND (? OR d.deleted = 0) \
             GROUP BY d.document_id ORDER BY d.document_id LIMIT ?",
        )
        .bind(query.branch.as_str())
        .bind(query.document_type.as_deref())
        .bind(query.document_type.as_deref())
        .bind(query.after.map(|a| a.to_string()))
        .bind(query.after.map(|a| a.to_string()))
        .bind(query.include_deleted)
        .bind(query.limit.min(i64::MAX as usize) as i64)
        .fetch_all(&self.pool)
        .await?;
        let headers = rows
            .iter()
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
                Ok(header_from_row(row, 1, id, &query.branch, revision, last_ts))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.settled(headers).await
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
        // Pages of rows concatenated by SQLite (one text per page instead of a row object per operation: sqlx's
        // per-row cost was most of a sync pull's read time), units resolved once per page. The filter runs in
        // SQLite: a row it leaves out is never loaded nor decoded (the author from the `replica` column, rows
        // without one kept for the check below; the cuts from the partial index of skipping operations).
        let mut out = SincePage {
            committed: Vec::with_capacity(limit.min(READ_SINCE_PAGE)),
            cursor: after_ordinal,
            scanned: 0,
        };
        let mut after = after_ordinal.min(i64::MAX as u64) as i64;
        while out.scanned < limit {
            let page = (limit - out.scanned).min(READ_SINCE_PAGE);
            let (text, count, last): (Option<String>, i64, Option<i64>) = sqlx::query_as(
                "SELECT group_concat(line, char(10) ORDER BY ordinal), count(*), max(ordinal) FROM ( \
                   SELECT o.ordinal AS ordinal, CASE WHEN \
                     (?3 IS NULL OR o.replica IS NULL OR o.replica <> ?3) \
                     AND (?4 IS NULL OR o.replica IS NULL OR o.replica = ?4) \
                     AND (?5 = 0 OR NOT EXISTS (SELECT 1 FROM operations s WHERE s.unit_id = o.unit_id \
                       AND s.skip > 0 AND s.idx > o.idx AND s.idx - s.skip <= o.idx)) \
                   THEN o.unit_id || ' ' || o.ordinal || ' ' || o.idx || ' ' || o.operation END AS line \
                   FROM operations o WHERE o.ordinal > ?1 ORDER BY o.ordinal LIMIT ?2)",
            )
            .bind(after)
            .bind(page as i64)
            .bind(filter.exclude_replica)
            .bind(filter.only_replica)
            .bind(filter.effective)
            .fetch_one(&self.pool)
            .await?;
            let Some(last) = last else { break };
            out.scanned += count as usize;
            out.cursor = last as u64;
            after = last;
            if let Some(text) = text {
                let mut rows = Vec::new();
                for line in text.split('\n') {
                    let mut parts = line.splitn(4, ' ');
                    let mut number = || parts.next().and_then(|n| n.parse::<i64>().ok());
                    let (Some(unit_id), Some(ordinal), Some(idx)) = (number(), number(), number()) else {
                        return Err(corrupt_page(line));
                    };
                    let json = parts.next().ok_or_else(|| corrupt_page(line))?;
                    rows.push((unit_id, ordinal, idx as u64, json));
                }
                let units = self.units_by_id(rows.iter().map(|r| r.0)).await?;
                for (unit_id, ordinal, idx, json) in rows {
                    let unit = units.get(&unit_id).ok_or_else(|| StoreError::Corrupt {
                        unit: format!("unit id {unit_id}"),
                        index: idx,
                        reason: "an operation of a unit the units table does not name".to_owned(),
                    })?;
                    let operation = decode_operation(unit, idx, json)?;
                    // Rows written before the `replica` column have none: their author is checked here.
                    if filter.admits_author(operation.action.replica.as_deref()) {
                        out.committed.push(Committed {
                            ordinal: ordinal as u64,
                            unit: unit.clone(),
                            operation,
                        });
                    }
                }
            }
            if (count as usize) < page {
                break;
            }
        }
        self.settled(out).await
    }

    async fn max_ordinal(&self) -> Result<u64, StoreError> {
        let max: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(ordinal), 0) FROM operations")
            .fetch_one(&self.pool)
            .await?;
        self.settled(max as u64).await
    }

    async fn units(&self) -> Result<Vec<SyncUnit>, StoreError> {
        let rows = sqlx::query(
            "SELECT unit_id, document_id, scope, branch FROM units WHERE revision > 0 \
             ORDER BY document_id, scope, branch",
        )
        .fetch_all(&self.pool)
        .await?;
        let units = rows
            .iter()
            .map(|row| unit_from_row(row, 1))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.settled(units).await
    }

    async fn put_keyframe(&self, keyframe: &Keyframe) -> Result<(), StoreError> {
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

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let value = sqlx::query_scalar("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        self.settled(value).await
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.send_meta(key, value, true).await.map(drop)
    }

    async fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.send_meta(key, value, false).await
    }

    async fn nearest_keyframe(&self, unit: &SyncUnit, revision: u64) -> Result<Option<Keyframe>, StoreError> {
        let row = sqlx::query(
            "SELECT k.revision, k.last_hash, k.state, k.state_hash, k.seen FROM keyframes k \
             WHERE k.unit_id = (SELECT unit_id FROM units WHERE document_id = ? AND scope = ? AND branch = ?) \
             AND k.revision <= ? ORDER BY k.revision DESC LIMIT 1",
        )
        .bind(unit.document_id.to_string())
        .bind(unit.scope.as_str())
        .bind(unit.branch.as_str())
        .bind(revision.min(i64::MAX as u64) as i64)
        .fetch_optional(&self.pool)
        .await?;
        self.settled(row.map(|r| Keyframe {
            unit: unit.clone(),
            revision: r.get::<i64, _>(0) as u64,
            last_hash: blob_hash(r.get::<&[u8], _>(1)),
            state: r.get(2),
            state_hash: blob_hash(r.get::<&[u8], _>(3)),
            seen: seen_from_text(r.get::<&str, _>(4)),
        }))
        .await
    }
}

async fn doc_revisions(
    pool: &SqlitePool,
    document_id: DocumentId,
    branch: &Branch,
) -> Result<(Revisions, u64), StoreError> {
    let rows = sqlx::query("SELECT scope, revision, last_ts_ms FROM units WHERE document_id = ? AND branch = ?")
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
    row: &sqlx::sqlite::SqliteRow,
    at: usize,
    id: DocumentId,
    branch: &Branch,
    revision: Revisions,
    last_ts: u64,
) -> DocumentHeader {
    let created: i64 = row.get(at + 2);
    DocumentHeader {
        id,
        document_type: row.get(at),
        name: row.get(at + 1),
        created_at_utc_iso: UtcIso(created as u64),
        last_modified_at_utc_iso: UtcIso(last_ts.max(created as u64)),
        branch: branch.clone(),
        revision,
        deleted: row.get::<i64, _>(at + 3) != 0,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A sync thread whose fsync answers from `outcomes` (then succeeds) and counts its calls.
    struct SyncThread {
        sync: WalSync,
        fsyncs: Arc<Mutex<usize>>,
        thread: std::thread::JoinHandle<()>,
    }

    impl SyncThread {
        fn start(outcomes: Vec<std::io::Result<()>>) -> Self {
            let fsyncs = Arc::new(Mutex::new(0));
            let durability = Arc::new(Durability::default());
            let (counted, synced) = (fsyncs.clone(), durability.clone());
            let mut outcomes = outcomes.into_iter();
            let (groups, rx) = std::sync::mpsc::channel::<SyncGroup>();
            let thread = std::thread::spawn(move || {
                let fsync = move || {
                    *counted.lock().unwrap() += 1;
                    outcomes.next().unwrap_or(Ok(()))
                };
                sync_loop(fsync, rx, &synced)
            });
            Self {
                sync: WalSync { groups, durability },
                fsyncs,
                thread,
            }
        }

        /// Sends one writer wake-up's result, as the writer does, and returns what its caller receives.
        fn commit(&self, value: Result<u32, StoreError>) -> oneshot::Receiver<Result<u32, StoreError>> {
            let mut group = self.sync.begin();
            let (reply, received) = oneshot::channel();
            acknowledge(Some(&mut group.1), reply, value, unsynced);
            self.sync.finish(group);
            received
        }

        fn fsyncs(&self) -> usize {
            *self.fsyncs.lock().unwrap()
        }

        fn stop(self) -> Arc<Durability> {
            let WalSync { groups, durability } = self.sync;
            drop(groups);
            self.thread.join().unwrap();
            durability
        }
    }

    #[test]
    fn commits_queued_together_are_acknowledged_after_one_fsync() {
        let durability = Durability::default();
        let fsyncs = Mutex::new(0);
        let (groups, rx) = std::sync::mpsc::channel::<SyncGroup>();
        let mut waiting = Vec::new();
        for n in 0..3u32 {
            let (reply, mut received) = oneshot::channel();
            let mut pending = Vec::new();
            acknowledge(Some(&mut pending), reply, Ok(n), unsynced);
            groups.send((u64::from(n) + 1, pending)).unwrap();
            assert!(
                received.try_recv().is_err(),
                "commit {n} was acknowledged before any fsync"
            );
            waiting.push(received);
        }
        drop(groups);
        // The three were queued before the sync thread woke: one fsync covers them.
        let fsync = || {
            *fsyncs.lock().unwrap() += 1;
            Ok(())
        };
        sync_loop(fsync, rx, &durability);
        assert_eq!(*fsyncs.lock().unwrap(), 1);
        let delivered: Vec<u32> = waiting
            .into_iter()
            .map(|mut r| r.try_recv().expect("acknowledged after the fsync").expect("a success"))
            .collect();
        assert_eq!(delivered, [0, 1, 2]);
    }

    #[test]
    fn without_deferred_sync_the_caller_hears_at_once() {
        let (reply, mut received) = oneshot::channel();
        acknowledge(None, reply, Ok::<_, StoreError>(7), unsynced);
        assert_eq!(received.try_recv().unwrap().unwrap(), 7);
    }

    #[test]
    fn a_failed_fsync_fails_its_commits_every_later_one_and_reads() {
        let sync = SyncThread::start(vec![Err(std::io::Error::other("EIO on the log"))]);
        for n in 0..3u32 {
            let result = sync.commit(Ok(n)).blocking_recv().expect("every caller hears back");
            assert!(
                matches!(&result, Err(StoreError::Unsynced(reason)) if reason.contains("EIO on the log")),
                "commit {n}: {result:?}"
            );
        }
        // Errors that were no success stay what they were.
        let result = sync.commit(Err(StoreError::Closed)).blocking_recv().unwrap();
        assert!(matches!(result, Err(StoreError::Closed)), "{result:?}");
        assert_eq!(sync.fsyncs(), 1, "no fsync after the failed one");
        let durability = sync.stop();
        let read = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(durability.settle());
        assert!(matches!(read, Err(StoreError::Unsynced(_))), "{read:?}");
    }

    #[test]
    fn every_commit_is_synced_before_it_is_acknowledged() {
        let sync = SyncThread::start(Vec::new());
        for n in 0..5u32 {
            assert_eq!(sync.commit(Ok(n)).blocking_recv().unwrap().unwrap(), n);
            assert_eq!(
                sync.fsyncs(),
                n as usize + 1,
                "commit {n} was answered before its fsync"
            );
            assert_eq!(*sync.sync.durability.synced.borrow(), u64::from(n) + 1);
        }
        sync.stop();
    }

    #[tokio::test]
    async fn a_read_waits_for_the_fsync_of_every_commit_begun_before_it_ended() {
        let durability = Arc::new(Durability::default());
        // Nothing committed: a read goes through.
        durability.settle().await.unwrap();
        // A commit (generation 1) between its COMMIT and its fsync: a read waits for it.
        durability.begun.fetch_add(1, Ordering::SeqCst);
        let waiting = tokio::spawn({
            let durability = durability.clone();
            async move { durability.settle().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "the read returned before the commit it may have seen was synced"
        );
        durability.synced.send_replace(1);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released by the fsync")
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn rows_without_the_replica_column_are_filtered_by_their_decoded_author() {
        use folio_core::{Action, HlcTimestamp};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
        let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
        let mut chain = crate::conformance::Chain::new(unit.clone());
        let ops: Vec<Operation> = [Some("r1"), Some("r2"), None, Some("r1")]
            .into_iter()
            .map(|author| {
                let mut action = Action::new("SET", serde_json::json!({}), Scope::Global, HlcTimestamp::new(1, 0));
                action.replica = author.map(str::to_owned);
                chain.push(action)
            })
            .collect();
        store.append(&unit, 0, ops.clone()).await.unwrap();
        // As a store written before the column existed: no row names its author.
        sqlx::query("UPDATE operations SET replica = NULL")
            .execute(&store.pool)
            .await
            .unwrap();
        let indexes = |filter: SinceFilter<'static>| {
            let store = store.clone();
            async move {
                let page = store.read_since_filtered(0, 10, &filter).await.unwrap();
                assert_eq!(page.scanned, 4);
                page.committed.iter().map(|c| c.operation.index).collect::<Vec<_>>()
            }
        };
        let exclude = SinceFilter {
            exclude_replica: Some("r1"),
            ..SinceFilter::default()
        };
        let only = SinceFilter {
            only_replica: Some("r1"),
            ..SinceFilter::default()
        };
        assert_eq!(indexes(exclude).await, vec![1, 2]);
        assert_eq!(indexes(only).await, vec![0, 3]);
        assert_eq!(indexes(SinceFilter::default()).await, vec![0, 1, 2, 3]);
    }

    /// Under a load that never pauses, the WAL still starts over: it stays bounded instead of growing with
    /// everything written (a checkpoint on another connection never catches up with a busy writer).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_wal_stays_bounded_under_a_steady_load() {
        use folio_core::{Action, HlcTimestamp};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("folio.db");
        let mut options = SqliteOptions::new(&path);
        options.synchronous_full = false;
        let store = SqliteStore::open_with(options).await.unwrap();
        let writers = 32;
        let per_writer = 600;
        let title = "x".repeat(300);
        let largest = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let (store, title, largest) = (store.clone(), title.clone(), largest.clone());
                let wal = wal_path(&path);
                tokio::spawn(async move {
                    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
                    let mut chain = crate::conformance::Chain::new(unit.clone());
                    for index in 0..per_writer {
                        let input = serde_json::json!({ "title": title });
                        let action = Action::new("SET", input, Scope::Global, HlcTimestamp::new(1, 0));
                        let op = chain.push(action);
                        store.append(&unit, index, vec![op]).await.unwrap();
                        let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                        largest.fetch_max(size, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let written: i64 = sqlx::query_scalar("SELECT sum(size) FROM operations")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let largest = largest.load(Ordering::Relaxed);
        // Every commit writes whole pages: the WAL takes several times the operations' bytes per checkpoint.
        assert!(written as u64 > 8 * CHECKPOINT_AFTER_BYTES, "{written} bytes written");
        assert!(
            largest < 40 * CHECKPOINT_AFTER_BYTES,
            "the WAL grew to {largest} bytes for {written} bytes of operations"
        );
    }

    /// A store written before migration 6 (the log clustered by `(unit_id, idx)`) keeps every operation, its
    /// ordinal and its author when the log is rebuilt in commit order, and takes appends after it.
    #[tokio::test]
    async fn a_log_clustered_by_unit_is_rebuilt_in_commit_order_with_everything_in_it() {
        use folio_core::{Action, HlcTimestamp};
        use futures::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        // The history, written by the current store: three units appended in turns, so their ordinals interleave,
        // and one rebase (a skip).
        let source_path = dir.path().join("source.db");
        let source = SqliteStore::open(&source_path).await.unwrap();
        let units: Vec<SyncUnit> = (0..3)
            .map(|_| SyncUnit::main(DocumentId::new(), Scope::Global))
            .collect();
        let mut chains: Vec<_> = units.iter().cloned().map(crate::conformance::Chain::new).collect();
        for round in 0..4u64 {
            for (unit, chain) in units.iter().zip(chains.iter_mut()) {
                let action = |i: u64| {
                    let input = serde_json::json!({ "round": round, "i": i });
                    let mut action = Action::new("SET", input, Scope::Global, HlcTimestamp::new(1, 0));
                    action.replica = Some(format!("r{round}"));
                    action
                };
                let ops = if round == 3 {
                    vec![chain.push_skipping(action(0), 2)]
                } else {
                    vec![chain.push(action(0)), chain.push(action(1))]
                };
                source.append(unit, round * 2, ops).await.unwrap();
            }
        }
        // The old layout: migrations 1 to 5, then the same rows.
        let old_path = dir.path().join("old.db");
        let mut conn = SqliteConnection::connect_with(&connect_options(&SqliteOptions::new(&old_path)))
            .await
            .unwrap();
        let all = sqlx::migrate!("./migrations/sqlite");
        let up_to_5 = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(all.migrations.iter().filter(|m| m.version <= 5).cloned().collect()),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        up_to_5.run_direct(&mut conn).await.unwrap();
        let schema: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'operations'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert!(schema.contains("WITHOUT ROWID"), "{schema}");
        sqlx::query(&format!("ATTACH '{}' AS source", source_path.display()))
            .execute(&mut conn)
            .await
            .unwrap();
        for copy in [
            "INSERT INTO operations (unit_id, idx, ordinal, skip, timestamp_ms, hash, error, operation, size, replica) \
             SELECT unit_id, idx, ordinal, skip, timestamp_ms, hash, error, operation, size, replica FROM source.operations",
            "INSERT INTO units SELECT * FROM source.units",
        ] {
            sqlx::query(copy).execute(&mut conn).await.unwrap();
        }
        drop(conn);

        let store = SqliteStore::open(&old_path).await.unwrap();
        let schema: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'operations'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert!(!schema.contains("WITHOUT ROWID"), "{schema}");
        for unit in &units {
            let before: Vec<Operation> = source.read(unit, 0, None).try_collect().await.unwrap();
            let after: Vec<Operation> = store.read(unit, 0, None).try_collect().await.unwrap();
            assert_eq!(after.len(), 7);
            assert_eq!(after, before);
            assert_eq!(store.skips(unit, 0, None).await.unwrap(), vec![(6, 2)]);
        }
        let since = |s: SqliteStore| async move {
            let page = s.read_since(0, 100).await.unwrap();
            page.iter().map(|c| (c.ordinal, c.operation.id)).collect::<Vec<_>>()
        };
        let expected = since(source.clone()).await;
        assert_eq!(expected.len(), 21);
        assert_eq!(since(store.clone()).await, expected);
        let only = SinceFilter {
            only_replica: Some("r1"),
            ..SinceFilter::default()
        };
        let authored = store.read_since_filtered(0, 100, &only).await.unwrap();
        assert_eq!(authored.committed.len(), 6);
        assert!(crate::verify::verify(&store).await.unwrap().is_ok());
        // Appends go on after the rebuilt log; a stale one is refused by the revision check.
        let next = chains[0].ops(1);
        store.append(&units[0], 7, next).await.unwrap();
        let stale = store.append(&units[0], 7, chains[1].ops(1)).await;
        assert!(matches!(stale, Err(StoreError::RevisionMismatch { .. })), "{stale:?}");
        assert_eq!(store.max_ordinal().await.unwrap(), 22);
    }
}
