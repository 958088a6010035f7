//! The read-only store's cold reads ([`super::SqliteStore::open_read_only`]): one synchronous SQLite connection
//! (rusqlite) used on the caller's thread.
//!
//! sqlx runs every SQLite connection on a thread of its own and hands each statement to it and its rows back: in a
//! fresh process that reads one document and exits, starting that thread and the dozen hand-offs of a cold read
//! were most of the load (docs/benchmarks.md, "A cold load without sqlx's thread"). This connection runs the same
//! steps ([`super::reads::read_cold_from`]: the same statements, but for the chunks, which it steps row by row and
//! stops at the cap instead of compiling the pool's window function) where the caller is, so a cold read is the
//! file's open, SQLite's work and the decoding. It blocks the caller's thread for that time, as the decoding of
//! what it reads does: one pass over each scope's first chunks, up to the cap. One cold read at a time uses it; a
//! cold read that finds it in use goes through the pool instead (`mod.rs`), so concurrent callers never park
//! runtime threads on its mutex.
//!
//! The connection is opened read-write with `PRAGMA query_only`: it never writes, and, as sqlx's read connections
//! did, the last connection to close removes the WAL and shm files (a `SQLITE_OPEN_READONLY` connection may not,
//! and would leave them behind owned by whoever ran the load). A file the process may not write is opened
//! read-only by SQLite itself.

use std::path::Path;
use std::sync::{Mutex, TryLockError};
use std::time::Duration;

use futures::FutureExt;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use folio_core::{Branch, DocumentId, SyncUnit};

use super::reads::{
    COLD_CHUNKS_SQL, COLD_KEYFRAME_SQL, COLD_SKIPS_SQL, COLD_UNITS_SQL, ChunkRow, ColdSource, UnitRow, read_cold_from,
};
use crate::StoreError;
use crate::sql_common::{Columns, keyframe_from_row, to_i64};
use crate::store::{ColdRead, Keyframe};

/// The read-only store's synchronous connection.
pub(super) struct ColdConnection(Mutex<Connection>);

impl std::fmt::Debug for ColdConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ColdConnection")
    }
}

impl ColdConnection {
    /// Opens the existing file at `path` for reading (an error when it is missing: the file is not created).
    pub(super) fn open(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        // SQLite's own mutex is not needed: this one serialises the connection's users.
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(busy_timeout)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(Self(Mutex::new(conn)))
    }

    /// The connection, held as a cold read holds it (tests: to make the next cold read find it in use).
    #[cfg(test)]
    pub(super) fn hold(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`crate::OperationStore::read_cold`] on this connection, in one read transaction; `None` when another cold
    /// read is using it.
    pub(super) fn try_read_cold(
        &self,
        document_id: DocumentId,
        branch: &Branch,
        keyframes: bool,
        limit: usize,
    ) -> Option<Result<ColdRead, StoreError>> {
        let mut conn = match self.0.try_lock() {
            Ok(conn) => conn,
            // A panic inside a read rolled its transaction back as it unwound: the connection is sound.
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return None,
        };
        Some(read_cold_in(&mut conn, document_id, branch, keyframes, limit))
    }
}

/// A cold read on `conn`, in one read transaction.
fn read_cold_in(
    conn: &mut Connection,
    document_id: DocumentId,
    branch: &Branch,
    keyframes: bool,
    limit: usize,
) -> Result<ColdRead, StoreError> {
    let tx = conn.transaction()?;
    // Every step of this source answers at once, and `read_cold_from` awaits nothing else: its future completes on
    // its first poll.
    let cold = read_cold_from(&mut TxSource(&tx), document_id, branch, keyframes, limit)
        .now_or_never()
        .expect("a synchronous cold read never waits")?;
    tx.rollback()?;
    Ok(cold)
}

/// A [`ColdSource`] on a read transaction of the synchronous connection.
struct TxSource<'t, 'c>(&'t rusqlite::Transaction<'c>);

/// A rusqlite row as the shared decoders read it. Like sqlx's rows (`Row::get`), a column of another type than the
/// decoder reads is a panic, not a default: the schema's column types and the writers rule it out, and a wrong
/// value read as 0 or empty (a keyframe's revision, say) would make a wrong document instead of a failed read.
struct Lite<'r, 's>(&'r rusqlite::Row<'s>);

impl Lite<'_, '_> {
    fn value(&self, at: usize) -> rusqlite::types::ValueRef<'_> {
        self.0
            .get_ref(at)
            .unwrap_or_else(|e| panic!("column {at} of a cold read: {e}"))
    }
}

fn mistyped<T>(at: usize, e: rusqlite::types::FromSqlError) -> T {
    panic!("column {at} of a cold read: {e}")
}

impl Columns for Lite<'_, '_> {
    fn int(&self, at: usize) -> i64 {
        self.value(at).as_i64().unwrap_or_else(|e| mistyped(at, e))
    }

    fn text(&self, at: usize) -> &str {
        self.value(at).as_str().unwrap_or_else(|e| mistyped(at, e))
    }

    fn maybe_text(&self, at: usize) -> Option<&str> {
        self.value(at).as_str_or_null().unwrap_or_else(|e| mistyped(at, e))
    }

    fn blob(&self, at: usize) -> &[u8] {
        self.value(at).as_blob().unwrap_or_else(|e| mistyped(at, e))
    }

    fn bytes_or_text(&self, at: usize) -> &[u8] {
        self.value(at).as_bytes().unwrap_or_else(|e| mistyped(at, e))
    }
}

impl ColdSource for TxSource<'_, '_> {
    async fn units(&mut self, document_id: DocumentId, branch: &Branch) -> Result<Vec<UnitRow>, StoreError> {
        let mut statement = self.0.prepare_cached(COLD_UNITS_SQL)?;
        let rows = statement.query_map((document_id.to_string(), branch.as_str()), |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn keyframe(&mut self, unit: &SyncUnit, unit_id: i64, head: u64) -> Result<Option<Keyframe>, StoreError> {
        let mut statement = self.0.prepare_cached(COLD_KEYFRAME_SQL)?;
        Ok(statement
            .query_row((unit_id, to_i64(head)), |r| Ok(keyframe_from_row(unit, &Lite(r))))
            .optional()?)
    }

    async fn skips(&mut self, unit_id: i64, from: u64, head: u64) -> Result<Vec<(i64, i64)>, StoreError> {
        let mut statement = self.0.prepare_cached(COLD_SKIPS_SQL)?;
        let rows = statement.query_map((unit_id, to_i64(from), to_i64(head)), |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    async fn chunks(&mut self, unit_id: i64, from: u64, head: u64, limit: usize) -> Result<Vec<ChunkRow>, StoreError> {
        // Steps row by row and stops once the chunks hold `limit` operations from `from`: the window function the
        // pool's statement needs to stop there ([`super::reads::CHUNKS_SQL`]) costs more to compile than this read takes.
        let mut statement = self.0.prepare_cached(COLD_CHUNKS_SQL)?;
        let mut rows = statement.query((unit_id, to_i64(from), to_i64(head)))?;
        let (from, mut held) = (to_i64(from), 0u64);
        let mut chunks = Vec::new();
        while let Some(row) = rows.next()? {
            let (idx, count): (i64, i64) = (row.get(0)?, row.get(1)?);
            chunks.push((idx, count, row.get(2)?));
            held += (idx + count - idx.max(from)).max(0) as u64;
            if held >= limit as u64 {
                break;
            }
        }
        Ok(chunks)
    }
}
