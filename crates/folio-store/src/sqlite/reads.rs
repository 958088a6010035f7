//! The reads in SQLite's own SQL, through the pool of read connections: the text of a unit's log chunk (one
//! `group_concat` row each) and of the header list, operations by action id, the log by ordinal (filtered in
//! SQLite, units resolved through a cache). The reads with one SQL text for both backends are in
//! `crate::sql_queries`. Each returns what it read; the store's `OperationStore` impl (`mod.rs`) then waits for the
//! fsync of what it may have seen.

use std::collections::HashMap;

use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use folio_core::{DocumentId, Operation, SyncUnit};

use super::SqliteStore;
use super::sql::MAX_UNITS_PER_STATEMENT;
use crate::StoreError;
use crate::sql_common::{Columns, decode_operation, unit_from_row};
use crate::sql_queries::list_headers_sql;
use crate::store::{Committed, SinceFilter, SincePage};

/// Rows per query of `read_since`.
const READ_SINCE_PAGE: usize = 4096;

/// Action ids looked up in one statement (SQLite's limit on bound values is far above).
const FIND_CHUNK: usize = 500;

/// One chunk of a unit's log (see `sql_queries::fetch_chunk`). The cut: the last index whose operation starts before
/// the byte bound, over the stored sizes only.
pub(super) const CHUNK_SQL: &str = "WITH u AS (SELECT unit_id FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3), \
     w AS (SELECT idx, SUM(size) OVER (ORDER BY idx ROWS UNBOUNDED PRECEDING) - size AS before \
           FROM operations WHERE unit_id = (SELECT unit_id FROM u) AND idx >= $4 AND idx < $5 \
           ORDER BY idx LIMIT $6) \
     SELECT group_concat(operation, char(10) ORDER BY idx), count(*) FROM operations \
     WHERE unit_id = (SELECT unit_id FROM u) AND idx >= $4 \
       AND idx <= (SELECT MAX(idx) FROM w WHERE before < $7)";

/// `list_headers` (`deleted` is 0 or 1 here).
pub(super) const LIST_HEADERS_SQL: &str = list_headers_sql!(
    "WHERE ($2 IS NULL OR d.document_type = $2) AND ($3 IS NULL OR d.document_id > $3) AND ($4 OR d.deleted = 0)"
);

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

/// Operations of `unit` by action id, in index order.
pub(super) async fn find_actions(
    pool: &SqlitePool,
    unit: &SyncUnit,
    ids: &[uuid::Uuid],
) -> Result<Vec<Operation>, StoreError> {
    // Answered from the expression index `operations_by_action` (migration 0007); `+unit_id` keeps the planner
    // from walking the unit's rows through the `(unit_id, idx)` index instead.
    let mut found = Vec::new();
    for chunk in ids.chunks(FIND_CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let sql = format!(
            "SELECT idx, operation FROM operations \
             WHERE +unit_id = (SELECT unit_id FROM units WHERE document_id = ? AND scope = ? AND branch = ?) \
               AND substr(operation, 8, 36) IN ({marks})"
        );
        let mut query = sqlx::query(&sql)
            .bind(unit.document_id.to_string())
            .bind(unit.scope.as_str())
            .bind(unit.branch.as_str());
        for id in chunk {
            query = query.bind(id.to_string());
        }
        for row in query.fetch_all(pool).await? {
            found.push(decode_operation(unit, row.int(0) as u64, row.text(1))?);
        }
    }
    found.sort_by_key(|op| op.index);
    Ok(found)
}

/// The name and the deleted flag of a documents row (see `sql_queries::NameAndDeleted`): SQLite stores the name as
/// text, `deleted` as 0 or 1.
pub(super) fn name_and_deleted(row: &SqliteRow, at: usize, _: DocumentId) -> Result<(String, bool), StoreError> {
    Ok((row.get(at + 1), row.get::<i64, _>(at + 3) != 0))
}

/// `read_since_filtered`: the log by ordinal, filtered in SQLite.
pub(super) async fn read_since_filtered(
    store: &SqliteStore,
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
        .fetch_one(&store.pool)
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
            let units = store.units_by_id(rows.iter().map(|r| r.0)).await?;
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
    Ok(out)
}
