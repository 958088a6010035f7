//! Opening a store: the options, the first connection (the writer's: a wrong URL fails at once), the read pool,
//! the migrations (under PostgreSQL's advisory lock, so several nodes may open at once), the handle's origin.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::mpsc;

use super::PgStore;
use super::writer::{HeadCache, Writer, writer_loop};
use crate::StoreError;
use crate::sql_common::WRITER_QUEUE;

/// The default [`PgOptions::commit_linger`] (tokio's timers tick by the millisecond).
const DEFAULT_COMMIT_LINGER: Duration = Duration::from_millis(1);

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
    /// How long the writer may wait for more appends before a group commit that would carry fewer callers' appends
    /// than the one before it (see `writer.rs`): under load, commits carry more operations each, so the server does
    /// less work per operation. Zero: commit what is waiting at once.
    pub commit_linger: Duration,
}

impl PgOptions {
    /// Defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            read_connections: 8,
            connect_timeout: Duration::from_secs(30),
            must_exist: false,
            commit_linger: DEFAULT_COMMIT_LINGER,
        }
    }
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

/// A read connection idle this long is pinged before it is used (see [`PgStore::open_with`]).
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);

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
        // sqlx pings a connection as it returns to the pool, and by default again as it is taken out: a round trip
        // before every read. Here only a connection idle for a while is pinged when taken (one that sat idle may
        // have been closed by the server, a restart or a proxy); a recently used one went back pinged.
        let pool = PgPoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .acquire_timeout(options.connect_timeout)
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
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
        let heads = Arc::new(HeadCache::default());
        let writer = Writer {
            conn: Some(writer_conn),
            connect,
            origin,
            heads: heads.clone(),
            linger: options.commit_linger,
        };
        tokio::spawn(writer_loop(writer, rx));
        Ok(Self {
            pool,
            writer: tx,
            origin,
            heads,
            target: target.into(),
            feed: Arc::new(OnceLock::new()),
        })
    }
}
