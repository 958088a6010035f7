//! The reads in PostgreSQL's own SQL: the text of a unit's log chunk (one `string_agg` row each) and of the header
//! list, operations by action id, and how a documents row stores its name and deleted flag. The reads with one SQL
//! text for both backends are in `crate::sql_queries`; reads by ordinal are the feed's (`feed.rs`: they carry the
//! origin).

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use folio_core::{DocumentId, Operation, SyncUnit};

use crate::StoreError;
use crate::sql_common::{Columns, decode_operation};
use crate::sql_queries::list_headers_sql;

/// One chunk of a unit's log (see `sql_queries::fetch_chunk`). The cut: operations that start before the byte bound
/// (the one that passes it included), at most the chunk's count. Stored JSON never holds a raw newline (serde_json
/// escapes it), so a newline separates operations.
pub(super) const CHUNK_SQL: &str = "WITH w AS (SELECT idx, operation, SUM(size) OVER (ORDER BY idx) - size AS before FROM operations \
                WHERE unit_id = (SELECT unit_id FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3) \
                  AND idx >= $4 AND idx < $5 ORDER BY idx LIMIT $6) \
     SELECT string_agg(operation, E'\\n' ORDER BY idx), count(*) FROM w WHERE before < $7";

/// `list_headers` (`deleted` is a boolean here; the casts type the parameters that are only compared with NULL).
pub(super) const LIST_HEADERS_SQL: &str = list_headers_sql!(
    "WHERE ($2::text IS NULL OR d.document_type = $2) AND ($3::text IS NULL OR d.document_id > $3) \
       AND ($4 OR NOT d.deleted)"
);

/// Operations of `unit` by action id, in index order.
pub(super) async fn find_actions(
    pool: &PgPool,
    unit: &SyncUnit,
    ids: &[uuid::Uuid],
) -> Result<Vec<Operation>, StoreError> {
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
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| decode_operation(unit, r.int(0) as u64, r.text(1)))
        .collect()
}

/// The name and the deleted flag of a documents row (see `sql_queries::NameAndDeleted`): PostgreSQL stores the
/// name as bytes, checked to be UTF-8, and `deleted` as a boolean.
pub(super) fn name_and_deleted(row: &PgRow, at: usize, id: DocumentId) -> Result<(String, bool), StoreError> {
    let name = String::from_utf8(row.get::<Vec<u8>, _>(at + 1)).map_err(|e| StoreError::Corrupt {
        unit: format!("documents table, document {id}"),
        index: 0,
        reason: format!("the name is not UTF-8: {e}"),
    })?;
    Ok((name, row.get::<bool, _>(at + 3)))
}
