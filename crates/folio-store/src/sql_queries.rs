//! The reads both SQL backends run with the same SQL text, written once. The text numbers its placeholders
//! (`$1`, `$2`, …): PostgreSQL's form, which sqlx's SQLite driver binds by number too. Each runs on the pool of
//! either backend through [`QueryPool`], whose one implementation holds every sqlx bound.

use futures::future::BoxFuture;
use sqlx::{Database, Encode, Executor, IntoArguments, Pool, Type};

use folio_core::{Branch, DocumentHeader, DocumentId, OpHash, Revisions, SyncUnit};

use crate::StoreError;
use crate::sql_common::{
    Columns, READ_CHUNK, READ_CHUNK_BYTES, RawChunk, head_of, header_from_row, keyframe_from_row, listed_document,
    revisions_from_rows, skips_from_rows, to_i64,
};
use crate::store::{Keyframe, ListQuery};

/// A value bound to a placeholder.
pub(crate) enum Bind<'a> {
    /// Text borrowed for the query.
    Text(&'a str),
    /// Text made for the query.
    Owned(String),
    /// Text that may be NULL, borrowed.
    MaybeText(Option<&'a str>),
    /// Text that may be NULL, made for the query.
    MaybeOwned(Option<String>),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
}

/// The binds naming `unit` (document id, scope, branch), as the units table keys it.
fn unit_binds(unit: &SyncUnit) -> [Bind<'_>; 3] {
    [
        Bind::Owned(unit.document_id.to_string()),
        Bind::Text(unit.scope.as_str()),
        Bind::Text(unit.branch.as_str()),
    ]
}

/// A pool that runs a statement with its binds: the read pool of either backend.
pub(crate) trait QueryPool: Sync {
    /// A row of the backend, read through [`Columns`].
    type Row: Columns + Send;

    /// Every row of `sql`.
    fn all<'a>(&'a self, sql: &'a str, binds: Vec<Bind<'a>>) -> BoxFuture<'a, Result<Vec<Self::Row>, StoreError>>;

    /// The first row of `sql`, if any.
    fn optional<'a>(
        &'a self,
        sql: &'a str,
        binds: Vec<Bind<'a>>,
    ) -> BoxFuture<'a, Result<Option<Self::Row>, StoreError>>;

    /// The one row of `sql` (an error when there is none).
    fn one<'a>(&'a self, sql: &'a str, binds: Vec<Bind<'a>>) -> BoxFuture<'a, Result<Self::Row, StoreError>>;
}

impl<DB: Database> QueryPool for Pool<DB>
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB>,
    String: Type<DB>,
    for<'q> i64: Encode<'q, DB>,
    i64: Type<DB>,
    for<'q> bool: Encode<'q, DB>,
    bool: Type<DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    DB::Row: Columns,
{
    type Row = DB::Row;

    fn all<'a>(&'a self, sql: &'a str, binds: Vec<Bind<'a>>) -> BoxFuture<'a, Result<Vec<Self::Row>, StoreError>> {
        Box::pin(async move { Ok(bound(sql, binds).fetch_all(self).await?) })
    }

    fn optional<'a>(
        &'a self,
        sql: &'a str,
        binds: Vec<Bind<'a>>,
    ) -> BoxFuture<'a, Result<Option<Self::Row>, StoreError>> {
        Box::pin(async move { Ok(bound(sql, binds).fetch_optional(self).await?) })
    }

    fn one<'a>(&'a self, sql: &'a str, binds: Vec<Bind<'a>>) -> BoxFuture<'a, Result<Self::Row, StoreError>> {
        Box::pin(async move { Ok(bound(sql, binds).fetch_one(self).await?) })
    }
}

/// `sql` with `binds` bound in order.
fn bound<'q, DB: Database>(
    sql: &'q str,
    binds: Vec<Bind<'q>>,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    &'q str: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB>,
    Option<String>: Encode<'q, DB>,
{
    binds.into_iter().fold(sqlx::query(sql), |q, bind| match bind {
        Bind::Text(text) => q.bind(text),
        Bind::Owned(text) => q.bind(text),
        Bind::MaybeText(text) => q.bind(text),
        Bind::MaybeOwned(text) => q.bind(text),
        Bind::Int(n) => q.bind(n),
        Bind::Bool(b) => q.bind(b),
    })
}

/// The revision and last hash of `unit`.
pub(crate) async fn head(pool: &impl QueryPool, unit: &SyncUnit) -> Result<(u64, OpHash), StoreError> {
    let sql = "SELECT revision, last_hash FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3";
    Ok(head_of(pool.optional(sql, unit_binds(unit).into()).await?))
}

/// `(idx, skip)` of the operations of `unit` in `from..to` that skip.
pub(crate) async fn skips(
    pool: &impl QueryPool,
    unit: &SyncUnit,
    from: u64,
    to: Option<u64>,
) -> Result<Vec<(u64, u64)>, StoreError> {
    // Answered from the partial index `operations_skipping`: the log's rows are not read.
    let sql = "SELECT idx, skip FROM operations \
               WHERE unit_id = (SELECT unit_id FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3) \
                 AND skip > 0 AND idx >= $4 AND idx < $5 ORDER BY idx";
    let mut binds = Vec::from(unit_binds(unit));
    binds.extend([Bind::Int(to_i64(from)), Bind::Int(to.map_or(i64::MAX, to_i64))]);
    Ok(skips_from_rows(&pool.all(sql, binds).await?))
}

/// A document's revisions on `branch`, and the last timestamp of its units.
pub(crate) async fn doc_revisions(
    pool: &impl QueryPool,
    document_id: DocumentId,
    branch: &Branch,
) -> Result<(Revisions, u64), StoreError> {
    let sql = "SELECT scope, revision, last_ts_ms FROM units WHERE document_id = $1 AND branch = $2";
    let binds = vec![Bind::Owned(document_id.to_string()), Bind::Text(branch.as_str())];
    Ok(revisions_from_rows(&pool.all(sql, binds).await?))
}

/// How a backend reads the name and the deleted flag of a documents row whose columns start at `at` (type, name,
/// created, deleted): each stores them its own way. `id` names the document in an error.
pub(crate) type NameAndDeleted<R> = fn(row: &R, at: usize, id: DocumentId) -> Result<(String, bool), StoreError>;

/// The header of a document on `branch`; `None` when it was never created.
pub(crate) async fn header<P: QueryPool>(
    pool: &P,
    document_id: DocumentId,
    branch: &Branch,
    name_and_deleted: NameAndDeleted<P::Row>,
) -> Result<Option<DocumentHeader>, StoreError> {
    let sql = "SELECT document_type, name, created_at_ms, deleted FROM documents WHERE document_id = $1";
    let row = pool.optional(sql, vec![Bind::Owned(document_id.to_string())]).await?;
    let Some(row) = row else { return Ok(None) };
    let revisions = doc_revisions(pool, document_id, branch).await?;
    let stored = name_and_deleted(&row, 0, document_id)?;
    Ok(Some(header_from_row(&row, 0, stored, document_id, branch, revisions)))
}

/// The text of `list_headers` around its backend's `WHERE` clause (`$2` the type, `$3` the id listed after, `$4`
/// whether deleted documents are listed): the columns [`listed_document`] and the backend's header reader read,
/// the branch (`$1`) and the limit (`$5`).
macro_rules! list_headers_sql {
    ($where:literal) => {
        concat!(
            "SELECT d.document_id, d.document_type, d.name, d.created_at_ms, d.deleted, \
               COALESCE(MAX(CASE WHEN u.scope = 'global' THEN u.revision END), 0), \
               COALESCE(MAX(CASE WHEN u.scope = 'local' THEN u.revision END), 0), \
               COALESCE(MAX(CASE WHEN u.scope = 'document' THEN u.revision END), 0), \
               COALESCE(MAX(u.last_ts_ms), d.created_at_ms) \
             FROM documents d LEFT JOIN units u ON u.document_id = d.document_id AND u.branch = $1 ",
            $where,
            " GROUP BY d.document_id ORDER BY d.document_id LIMIT $5"
        )
    };
}
pub(crate) use list_headers_sql;

/// Headers of documents, ordered by id; `sql` is [`list_headers_sql!`] with the backend's `WHERE` clause.
pub(crate) async fn list_headers<P: QueryPool>(
    pool: &P,
    sql: &'static str,
    query: &ListQuery,
    name_and_deleted: NameAndDeleted<P::Row>,
) -> Result<Vec<DocumentHeader>, StoreError> {
    let binds = vec![
        Bind::Text(query.branch.as_str()),
        Bind::MaybeText(query.document_type.as_deref()),
        Bind::MaybeOwned(query.after.map(|a| a.to_string())),
        Bind::Bool(query.include_deleted),
        Bind::Int(query.limit.min(i64::MAX as usize) as i64),
    ];
    let rows = pool.all(sql, binds).await?;
    rows.iter()
        .map(|row| {
            let (id, revision, last_ts) = listed_document(row)?;
            let stored = name_and_deleted(row, 1, id)?;
            Ok(header_from_row(row, 1, stored, id, &query.branch, (revision, last_ts)))
        })
        .collect()
}

/// Every unit with operations.
pub(crate) async fn units(pool: &impl QueryPool) -> Result<Vec<SyncUnit>, StoreError> {
    let sql = "SELECT unit_id, document_id, scope, branch FROM units WHERE revision > 0 \
               ORDER BY document_id, scope, branch";
    let rows = pool.all(sql, Vec::new()).await?;
    rows.iter()
        .map(|row| crate::sql_common::unit_from_row(row, 1))
        .collect()
}

/// A meta value.
pub(crate) async fn get_meta(pool: &impl QueryPool, key: &str) -> Result<Option<String>, StoreError> {
    let row = pool
        .optional("SELECT value FROM meta WHERE key = $1", vec![Bind::Text(key)])
        .await?;
    Ok(row.map(|row| row.text(0).to_owned()))
}

/// The keyframe of `unit` nearest below or at `revision`.
pub(crate) async fn nearest_keyframe(
    pool: &impl QueryPool,
    unit: &SyncUnit,
    revision: u64,
) -> Result<Option<Keyframe>, StoreError> {
    let sql = "SELECT k.revision, k.last_hash, k.state, k.state_hash, k.seen FROM keyframes k \
               WHERE k.unit_id = (SELECT unit_id FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3) \
               AND k.revision <= $4 ORDER BY k.revision DESC LIMIT 1";
    let mut binds = Vec::from(unit_binds(unit));
    binds.push(Bind::Int(to_i64(revision)));
    let row = pool.optional(sql, binds).await?;
    Ok(row.map(|r| keyframe_from_row(unit, &r)))
}

/// The chunk of `unit`'s log that starts at `from` (up to `to`): `sql` is the backend's text, which takes the unit
/// (`$1`–`$3`), `from` (`$4`), `to` (`$5`), the most operations (`$6`) and the byte bound (`$7`), and returns the
/// operations' JSON concatenated one a line, then their count.
pub(crate) async fn fetch_chunk<P: QueryPool>(
    pool: P,
    sql: &'static str,
    unit: SyncUnit,
    from: u64,
    to: Option<u64>,
) -> Result<RawChunk, StoreError> {
    let mut binds = Vec::from(unit_binds(&unit));
    binds.extend([
        Bind::Int(to_i64(from)),
        Bind::Int(to.map_or(i64::MAX, to_i64)),
        Bind::Int(READ_CHUNK),
        Bind::Int(READ_CHUNK_BYTES),
    ]);
    let row = pool.one(sql, binds).await?;
    Ok(RawChunk::from_row(from, &row))
}
