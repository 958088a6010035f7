//! The reads in PostgreSQL's own SQL: the text of a unit's log chunk (one `string_agg` row each) and of the header
//! list, operations by action id, and how a documents row stores its name and deleted flag. The reads with one SQL
//! text for both backends are in `crate::sql_queries`; reads by ordinal are the feed's (`feed.rs`: they carry the
//! origin).

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};

use std::str::FromStr;

use folio_core::{Branch, DocumentId, Operation, Scope, SyncUnit};

use crate::StoreError;
use crate::sql_common::{Columns, blob_hash, decode_operation, seen_from_text};
use crate::sql_queries::list_headers_sql;
use crate::store::{ColdRead, Keyframe};

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

/// `read_cold` in one statement, so one round trip and one snapshot: the rows of the document's units (kind 0: scope,
/// revision), the global unit's newest keyframe at or below its head when `$3` (kind 1: revision, state, last hash,
/// state hash, seen), the skipping operations of the document and global units from where their fold starts (kind
/// 2: scope, idx, skip, from the partial index `operations_skipping`) and each unit's first `$4` operations from
/// there (kind 3: scope, idx, operation). Every row has the same columns: kind, scope, n, m, t, b1, b2, t2.
const COLD_SQL: &str = "WITH u AS (SELECT unit_id, scope, revision FROM units WHERE document_id = $1 AND branch = $2), \
     k AS (SELECT k.revision, k.last_hash, k.state, k.state_hash, k.seen FROM keyframes k JOIN u ON k.unit_id = u.unit_id \
           WHERE u.scope = 'global' AND $3 AND k.revision <= u.revision ORDER BY k.revision DESC LIMIT 1), \
     f AS (SELECT u.unit_id, u.scope, u.revision, \
                  CASE WHEN u.scope = 'global' THEN COALESCE((SELECT revision FROM k), 0) ELSE 0 END AS from_idx FROM u) \
     SELECT 0::bigint AS kind, f.scope, f.revision AS n, 0::bigint AS m, NULL::text AS t, NULL::bytea AS b1, NULL::bytea AS b2, \
            NULL::text AS t2 FROM f \
     UNION ALL SELECT 1, 'global', k.revision, 0, k.state, k.last_hash, k.state_hash, k.seen FROM k \
     UNION ALL SELECT 2, f.scope, o.idx, o.skip, NULL, NULL, NULL, NULL FROM f JOIN operations o \
           ON o.unit_id = f.unit_id AND o.skip > 0 AND o.idx >= f.from_idx AND o.idx < f.revision WHERE f.scope <> 'local' \
     UNION ALL SELECT 3, f.scope, o.idx, 0, o.operation, NULL, NULL, NULL FROM f CROSS JOIN LATERAL \
           (SELECT idx, operation FROM operations WHERE unit_id = f.unit_id AND idx >= f.from_idx AND idx < f.revision \
            ORDER BY idx LIMIT $4) o";

/// [`crate::OperationStore::read_cold`] on PostgreSQL: [`COLD_SQL`], one round trip.
pub(super) async fn read_cold(
    pool: &PgPool,
    document_id: DocumentId,
    branch: &Branch,
    keyframes: bool,
    limit: usize,
) -> Result<ColdRead, StoreError> {
    let rows = sqlx::query(COLD_SQL)
        .bind(document_id.to_string())
        .bind(branch.as_str())
        .bind(keyframes)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(pool)
        .await?;
    let mut cold = ColdRead::default();
    let unit = |scope: &str| -> Result<SyncUnit, StoreError> {
        let scope = Scope::from_str(scope).map_err(|e| StoreError::Corrupt {
            unit: format!("units of document {document_id}"),
            index: 0,
            reason: format!("unknown scope {scope:?}: {e}"),
        })?;
        Ok(SyncUnit::new(document_id, scope, branch.clone()))
    };
    for row in &rows {
        let (scope, n, m) = (row.text(1), row.int(2) as u64, row.int(3) as u64);
        match row.int(0) {
            0 => match unit(scope)?.scope {
                Scope::Document => cold.heads.document = n,
                Scope::Global => cold.heads.global = n,
                Scope::Local => cold.heads.local = n,
            },
            1 => {
                cold.keyframe = Some(Keyframe {
                    unit: unit(scope)?,
                    revision: n,
                    state: row.text(4).to_owned(),
                    last_hash: blob_hash(row.blob(5)),
                    state_hash: blob_hash(row.blob(6)),
                    seen: seen_from_text(row.text(7)),
                })
            }
            2 => match unit(scope)?.scope {
                Scope::Document => cold.document_skips.push((n, m)),
                _ => cold.global_skips.push((n, m)),
            },
            _ => {
                let unit = unit(scope)?;
                let op = decode_operation(&unit, n, row.text(4))?;
                match unit.scope {
                    Scope::Document => cold.document.push(op),
                    Scope::Global => cold.global.push(op),
                    Scope::Local => cold.local.push(op),
                }
            }
        }
    }
    // The statement's parts come in any order: each list in index order, as a read answers it.
    for ops in [&mut cold.document, &mut cold.global, &mut cold.local] {
        ops.sort_unstable_by_key(|op| op.index);
    }
    cold.document_skips.sort_unstable();
    cold.global_skips.sort_unstable();
    Ok(cold)
}
