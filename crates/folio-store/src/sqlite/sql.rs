//! The SQL text of the writer's statements, and their binding: one text per power-of-two number of rows, built
//! once and cached, so that sqlx's cache of prepared statements (keyed by text) serves every batch size.

use std::sync::OnceLock;

use sqlx::sqlite::{Sqlite, SqliteArguments};

use folio_core::SyncUnit;

use crate::sql_common::Head;

/// The largest multi-row INSERT, in rows (6 parameters a chunk, 3 an action id; SQLite allows 32,766).
pub(super) const MAX_INSERT_ROWS: usize = 512;

/// A chunk to insert: ordinal, unit id, first index, count, author, blob.
pub(super) type ChunkInsert<'a> = (i64, i64, i64, i64, Option<&'a str>, &'a [u8]);
/// An action id to insert: id, unit id, index.
pub(super) type IdInsert<'a> = (&'a [u8; 16], i64, i64);

/// The chunks' INSERT of `rows` rows, then the action ids' INSERT of `rows` rows: both padded to the same power of
/// two (a commit has at least as many ids as chunks), so one shape serves both.
pub(super) fn insert_sql(rows: usize) -> &'static str {
    static CACHE: OnceLock<Vec<String>> = OnceLock::new();
    pow2_sql(&CACHE, rows, MAX_INSERT_ROWS, |n| {
        // OR ROLLBACK: a failure already rolls the whole group back (and retries each request alone), so SQLite
        // need not keep a statement journal to undo this statement alone. The padding rows are all NULL and
        // filtered out.
        let chunks = repeated_sql(
            "INSERT OR ROLLBACK INTO log (ordinal, unit_id, idx, count, replica, data) \
             SELECT column1, column2, column3, column4, column5, column6 FROM (VALUES ",
            "(?,?,?,?,?,?)",
            n,
            ") WHERE column1 IS NOT NULL",
        );
        let ids = repeated_sql(
            "INSERT OR ROLLBACK INTO action_ids (id, unit_id, idx) SELECT column1, column2, column3 FROM (VALUES ",
            "(?,?,?)",
            n,
            ") WHERE column1 IS NOT NULL",
        );
        format!("{chunks}; {ids}")
    })
}

/// Splits `n` rows into statements of at most `max` rows, each padded up to a power of two, so a handful of
/// statement shapes serve every batch: sqlx caches prepared statements by their text, and preparing a statement of
/// hundreds of rows costs more than running it. Returns (rows, shape) per statement.
pub(super) fn padded_chunks(mut n: usize, max: usize) -> Vec<(usize, usize)> {
    let mut chunks = Vec::new();
    while n > 0 {
        let rows = n.min(max);
        chunks.push((rows, rows.next_power_of_two()));
        n -= rows;
    }
    chunks
}

/// The most units one head query or head upsert names.
pub(super) const MAX_UNITS_PER_STATEMENT: usize = 256;

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

pub(super) fn heads_sql(n: usize) -> &'static str {
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

pub(super) fn upsert_heads_sql(n: usize) -> &'static str {
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
pub(super) fn begin_heads_sql(n: usize) -> &'static str {
    static CACHE: OnceLock<Vec<String>> = OnceLock::new();
    pow2_sql(&CACHE, n, MAX_UNITS_PER_STATEMENT, |n| {
        format!(
            "BEGIN IMMEDIATE; SELECT COALESCE((SELECT ordinal + count - 1 FROM log ORDER BY ordinal DESC LIMIT 1), 0), \
             COALESCE((SELECT MAX(unit_id) FROM units), 0); {}",
            heads_sql(n)
        )
    })
}

/// The most rows (operations, and units) whose statements are sent with `COMMIT` in one text: the shapes are
/// cached per (operations, units) pair, so the bound keeps their number (7 × 7) and size small. Larger commits
/// send their statements one by one, where the round trips weigh little against the rows.
pub(super) const MAX_COMBINED_ROWS: usize = 64;

/// The inserts of `ops` operations, the upsert of `units` heads and `COMMIT`, in one text.
pub(super) fn insert_commit_sql(ops: usize, units: usize) -> &'static str {
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

/// Binds the chunks, then the action ids, each padded to `shape` rows.
pub(super) fn bind_inserts<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>>,
    chunks: &[ChunkInsert<'q>],
    ids: &[IdInsert<'q>],
    shape: usize,
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
    for (ordinal, unit_id, idx, count, replica, data) in chunks {
        q = q
            .bind(*ordinal)
            .bind(*unit_id)
            .bind(*idx)
            .bind(*count)
            .bind(*replica)
            .bind(*data);
    }
    for _ in chunks.len() * 6..shape * 6 {
        q = q.bind(None::<i64>);
    }
    for (id, unit_id, idx) in ids {
        q = q.bind(id.as_slice()).bind(*unit_id).bind(*idx);
    }
    for _ in ids.len() * 3..shape * 3 {
        q = q.bind(None::<i64>);
    }
    q
}

pub(super) fn bind_heads<'q>(
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
