//! Opening a store: the options, the file's connection settings, the migrations (retried while another process
//! opening the same new file holds its locks), the writer's pragmas, and the start of the writer task and of the
//! WAL sync thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::sync::mpsc;

use super::wal::{Durability, SyncGroup, WAL_SIZE_LIMIT, WalSync, sync_loop, wal_path};
use super::writer::writer_loop;
use super::{SqliteStore, cold};
use crate::StoreError;
use crate::sql_common::WRITER_QUEUE;

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

pub(super) fn connect_options(options: &SqliteOptions) -> SqliteConnectOptions {
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
        // inside a commit, where they cost the writer measurably (docs/benchmarks.md).
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
        // A connection is taken without a ping: it lives in this process (a ping is a round trip to its thread that
        // finds nothing a query would not).
        let pool_options = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .test_before_acquire(false);
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
            cold: None,
        })
    }
}

impl SqliteStore {
    /// Opens an existing store for reading only, for cold loads (a process that reads a document and exits): no
    /// writer connection, no migration check and no WAL sync thread, which together were most of such a load's
    /// time. Cold reads ([`crate::OperationStore::read_cold`], what `DocumentView::hydrate` starts with) go through
    /// a synchronous read-only connection on the caller's thread (`cold.rs`); every other read goes through a pool
    /// of one sqlx connection, opened at its first use. Appends, keyframes and meta values answer
    /// [`StoreError::Closed`]. The file must exist and have been opened with [`SqliteStore::open`] by this version
    /// (its layout is not checked).
    pub async fn open_read_only(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let busy_timeout = Duration::from_secs(30);
        let cold = cold::ColdConnection::open(&path, busy_timeout)?;
        let connect = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(false)
            .busy_timeout(busy_timeout)
            .foreign_keys(false)
            .statement_cache_capacity(64);
        // One connection: a read-only store's reads are one after the other, and a second connection would be
        // opened whenever a read starts before the one before it has handed its connection back (sqlx returns it
        // from a task of its own): a thread, the file's open and the schema parsed again.
        // Neither idle timeout nor lifetime: sqlx would spawn a task to reap the connection, which wakes a worker
        // thread of the runtime in a process that may never use the pool.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(connect);
        let (writer, _) = mpsc::channel(1);
        Ok(Self {
            pool,
            durability: None,
            writer,
            path,
            unit_names: Arc::default(),
            cold: Some(Arc::new(cold)),
        })
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
