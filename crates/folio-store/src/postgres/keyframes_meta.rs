//! Keyframes and meta values, written straight through the pool, outside the writer (they take no ordinal, and
//! PostgreSQL's own commit is durable). They are read through `crate::sql_queries`.

use sqlx::postgres::PgPool;

use crate::StoreError;
use crate::sql_common::{seen_text, to_i64};
use crate::store::Keyframe;

/// Writes a keyframe (replacing the one at the same revision).
pub(super) async fn put_keyframe(pool: &PgPool, keyframe: &Keyframe) -> Result<(), StoreError> {
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
    .execute(pool)
    .await?;
    Ok(())
}

/// Sets a meta value.
pub(super) async fn put_meta(pool: &PgPool, key: &str, value: &str) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
        .bind(key)
        .bind(value)
        .execute(pool)
        .await?;
    Ok(())
}

/// Sets a meta value unless the key holds one; what it holds after.
pub(super) async fn put_meta_if_absent(pool: &PgPool, key: &str, value: &str) -> Result<String, StoreError> {
    // A concurrent insert of the same key makes ON CONFLICT wait for its commit; the SELECT (a new snapshot
    // under READ COMMITTED) then sees the winner's value.
    sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(pool)
        .await?;
    Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
        .bind(key)
        .fetch_one(pool)
        .await?)
}
