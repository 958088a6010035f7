//! What the two SQL backends ([`crate::SqliteStore`], [`crate::PgStore`]) share, so that a fix reaches both: an
//! append request encoded into rows, the checks a group commit runs on each request against its unit's head (the
//! revision, the replay, the hash link), the rows read back (units, heads, keyframes, revisions, headers), the
//! decoding of stored operations and the chunked read of a unit's log. The reads whose SQL text is the same for
//! both are in `crate::sql_queries`; the SQL that differs, and the way each writer binds and runs it, stay in
//! `sqlite/` and `postgres/`.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use sqlx::{ColumnIndex, Decode, Row, Type};
use tokio::sync::mpsc;

use folio_core::{
    Branch, CausalContext, ChainError, DocumentHeader, DocumentId, HeaderChange, OpHash, Operation, Revisions, Scope,
    SyncUnit, UtcIso, header_change,
};

use crate::StoreError;
use crate::sql_queries::{QueryPool, fetch_chunk};
use crate::store::{AppendRequest, Appended, Keyframe, links_to, precheck};

/// The most operations a read stream fetches per query.
pub(crate) const READ_CHUNK: i64 = 1024;
/// A chunk ends with the operation that takes it past this many bytes of JSON.
pub(crate) const READ_CHUNK_BYTES: i64 = 4 * 1024 * 1024;
/// The most operations one group commit takes in.
pub(crate) const MAX_BATCH_OPS: usize = 8192;
/// Requests waiting for the writer; callers wait when it is full.
pub(crate) const WRITER_QUEUE: usize = 4096;

/// The writer's next batch: the first command to arrive, then every one already waiting, until they hold
/// [`MAX_BATCH_OPS`] operations (`size` counts a command's). `None` once every sender is gone.
pub(crate) async fn next_batch<T>(rx: &mut mpsc::Receiver<T>, size: impl Fn(&T) -> usize) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    let mut ops = size(&first);
    let mut batch = vec![first];
    while ops < MAX_BATCH_OPS {
        match rx.try_recv() {
            Ok(cmd) => {
                ops += size(&cmd);
                batch.push(cmd);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// An append request encoded for the writer: rows ready to bind.
pub(crate) struct Prepared {
    pub(crate) unit: SyncUnit,
    pub(crate) expected_revision: u64,
    pub(crate) first: Option<Operation>,
    pub(crate) rows: Vec<OpRow>,
    pub(crate) last_hash: OpHash,
    pub(crate) last_ts: u64,
    pub(crate) header_changes: Vec<(HeaderChange, u64)>,
    /// The operations themselves, for a backend that encodes them its own way (SQLite's chunks: then the rows'
    /// `operation` text is left empty); empty for one that stores the rows' JSON.
    pub(crate) operations: Arc<[Operation]>,
}

/// One operations row, minus its unit id and ordinal (assigned in the transaction).
pub(crate) struct OpRow {
    pub(crate) idx: i64,
    pub(crate) skip: i64,
    pub(crate) timestamp_ms: i64,
    pub(crate) hash: Vec<u8>,
    /// The whole operation as JSON.
    pub(crate) operation: String,
}

/// Checks `request` and encodes it for the writer: each row with the operation's JSON (`keep_operations: false`),
/// or without it and the operations kept in [`Prepared::operations`].
pub(crate) fn prepare(request: AppendRequest, keep_operations: bool) -> Result<Prepared, StoreError> {
    precheck(&request)?;
    let AppendRequest {
        unit,
        expected_revision,
        operations,
    } = request;
    let mut rows = Vec::with_capacity(operations.len());
    let mut header_changes = Vec::new();
    let mut last_ts = 0;
    for op in operations.iter() {
        if let Some(change) = header_change(op) {
            header_changes.push((change, op.timestamp_utc_ms));
        }
        last_ts = last_ts.max(op.timestamp_utc_ms);
        rows.push(OpRow {
            idx: op.index as i64,
            skip: op.skip as i64,
            timestamp_ms: op.timestamp_utc_ms as i64,
            hash: op.hash.0.to_vec(),
            operation: if keep_operations {
                String::new()
            } else {
                serde_json::to_string(op).map_err(|e| StoreError::Corrupt {
                    unit: unit.to_string(),
                    index: op.index,
                    reason: e.to_string(),
                })?
            },
        });
    }
    let first = operations.first().cloned();
    Ok(Prepared {
        last_hash: operations.last().map_or(OpHash::ZERO, |op| op.hash),
        first,
        operations: if keep_operations { operations } else { Arc::from([]) },
        unit,
        expected_revision,
        rows,
        last_ts,
        header_changes,
    })
}

/// `append_batch` of a SQL backend: requests that fail their checks are answered here; only the rest go to the
/// writer (`write`, which answers in request order, or with nothing when the writer is gone), and the answers are
/// put back in request order.
pub(crate) async fn append_through<F, Fut>(requests: Vec<AppendRequest>, write: F) -> Vec<Result<Appended, StoreError>>
where
    F: FnOnce(Vec<Prepared>) -> Fut,
    Fut: Future<Output = Vec<Result<Appended, StoreError>>>,
{
    append_through_with(requests, false, write).await
}

/// [`append_through`], the rows prepared with `keep_operations` (see [`prepare`]).
pub(crate) async fn append_through_with<F, Fut>(
    requests: Vec<AppendRequest>,
    keep_operations: bool,
    write: F,
) -> Vec<Result<Appended, StoreError>>
where
    F: FnOnce(Vec<Prepared>) -> Fut,
    Fut: Future<Output = Vec<Result<Appended, StoreError>>>,
{
    let mut results: Vec<Option<Result<Appended, StoreError>>> = Vec::with_capacity(requests.len());
    let mut prepared = Vec::with_capacity(requests.len());
    for request in requests {
        match prepare(request, keep_operations) {
            Ok(p) => {
                prepared.push(p);
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    let mut written = if prepared.is_empty() {
        Vec::new()
    } else {
        write(prepared).await
    }
    .into_iter();
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| written.next().unwrap_or(Err(StoreError::Closed))))
        .collect()
}

/// The head of a unit as the transaction sees it.
#[derive(Clone)]
pub(crate) struct Head {
    pub(crate) unit_id: i64,
    pub(crate) revision: u64,
    pub(crate) last_hash: OpHash,
    pub(crate) last_ts: u64,
    pub(crate) touched: bool,
    /// Created by this transaction (SQLite; PostgreSQL creates head rows before it locks them).
    pub(crate) is_new: bool,
}

impl Head {
    /// The head of a unit this transaction creates, with the row id `unit_id`.
    pub(crate) fn new_unit(unit_id: i64) -> Self {
        Head {
            unit_id,
            revision: 0,
            last_hash: OpHash::ZERO,
            last_ts: 0,
            touched: false,
            is_new: true,
        }
    }

    /// The head in `row`: unit id, (unit at 1–3), revision, last hash, last timestamp.
    pub(crate) fn from_row(row: &impl Columns) -> Self {
        Head {
            unit_id: row.int(0),
            revision: row.int(4) as u64,
            last_hash: blob_hash(row.blob(5)),
            last_ts: row.int(6) as u64,
            touched: false,
            is_new: false,
        }
    }
}

/// `(unit_id, row, ordinal)`: an operation to insert. (PostgreSQL takes the ordinals at the end of the transaction:
/// there the third is the 1-based position in the batch, the ordinal once the counter's base is added.)
pub(crate) type Insert<'a> = (i64, &'a OpRow, i64);

/// A group commit's requests checked, in order, against their units' heads.
pub(crate) struct Plan<'a> {
    /// Every operation to insert, in commit order.
    pub(crate) inserts: Vec<Insert<'a>>,
    /// The header changes of the accepted requests: (document, change, timestamp).
    pub(crate) header_changes: Vec<(DocumentId, &'a HeaderChange, u64)>,
    /// Each request's result, in request order.
    pub(crate) results: Vec<Result<Appended, StoreError>>,
}

/// Where a group commit reads back what it needs for the replay check: the writer's connection, inside the
/// transaction.
pub(crate) trait StoredHashes {
    /// `(idx, hash)` of the stored operations of the unit with row id `unit_id` in `from..to`, in index order.
    fn stored_hashes(
        &mut self,
        unit_id: i64,
        from: i64,
        to: i64,
    ) -> impl Future<Output = Result<Vec<(i64, Vec<u8>)>, StoreError>> + Send;
}

/// Checks each of `requests` against its unit's head in `heads` (the heads move as requests are accepted): a
/// request at another revision is a replay or a mismatch, one whose first operation does not link to the head is
/// refused, the others are accepted with the ordinals after `last_ordinal`. `new_head` gives the head of a unit not
/// in `heads`; `conn` reads back stored operations for the replay check.
pub(crate) async fn plan<'a>(
    requests: &'a [Prepared],
    heads: &mut HashMap<SyncUnit, Head>,
    last_ordinal: i64,
    mut new_head: impl FnMut(&Prepared) -> Result<Head, StoreError>,
    conn: &mut impl StoredHashes,
) -> Result<Plan<'a>, StoreError> {
    let mut next_ordinal = last_ordinal;
    let mut plan = Plan {
        inserts: Vec::new(),
        header_changes: Vec::new(),
        results: Vec::with_capacity(requests.len()),
    };
    for p in requests {
        let head = match heads.get(&p.unit) {
            Some(h) => h.clone(),
            None => new_head(p)?,
        };
        if p.expected_revision != head.revision {
            let result = replay_or_mismatch(conn, p, &head, &plan.inserts).await?;
            plan.results.push(result);
            continue;
        }
        if let Some(first) = &p.first
            && !links_to(&head.last_hash, first)
        {
            plan.results.push(Err(StoreError::InvalidOperations {
                unit: p.unit.clone(),
                reason: ChainError::HashMismatch { index: first.index },
            }));
            continue;
        }
        let mut ordinals = Vec::with_capacity(p.rows.len());
        for row in &p.rows {
            next_ordinal += 1;
            plan.inserts.push((head.unit_id, row, next_ordinal));
            ordinals.push(next_ordinal as u64);
        }
        for (change, ts) in &p.header_changes {
            plan.header_changes.push((p.unit.document_id, change, *ts));
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
        plan.results.push(Ok(Appended {
            revision,
            ordinals,
            replayed: false,
        }));
    }
    Ok(plan)
}

/// A request at another revision than the head: a replay when its operations are exactly those stored at its
/// indexes (committed earlier, or appended earlier in this same batch: `pending`), otherwise a mismatch.
async fn replay_or_mismatch(
    conn: &mut impl StoredHashes,
    p: &Prepared,
    head: &Head,
    pending: &[Insert<'_>],
) -> Result<Result<Appended, StoreError>, StoreError> {
    let end = p.expected_revision + p.rows.len() as u64;
    if p.expected_revision < head.revision && end <= head.revision {
        let (from, to) = (to_i64(p.expected_revision), to_i64(end));
        let mut stored: Vec<(i64, Vec<u8>)> = if head.is_new {
            Vec::new()
        } else {
            conn.stored_hashes(head.unit_id, from, to).await?
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

/// The columns the shared decoders read, from a row of either backend.
pub(crate) trait Columns {
    /// An integer column.
    fn int(&self, at: usize) -> i64;
    /// A text column.
    fn text(&self, at: usize) -> &str;
    /// A text column that may be NULL.
    fn maybe_text(&self, at: usize) -> Option<&str>;
    /// A blob (bytea) column.
    fn blob(&self, at: usize) -> &[u8];
    /// A column's bytes, whether it holds a blob or text (a SQLite column holds either).
    fn bytes_or_text(&self, at: usize) -> &[u8];
}

impl<R: Row> Columns for R
where
    usize: ColumnIndex<R>,
    i64: Type<R::Database> + for<'r> Decode<'r, R::Database>,
    for<'r> &'r str: Type<R::Database> + Decode<'r, R::Database>,
    for<'r> &'r [u8]: Type<R::Database> + Decode<'r, R::Database>,
{
    fn int(&self, at: usize) -> i64 {
        self.get(at)
    }

    fn text(&self, at: usize) -> &str {
        self.get(at)
    }

    fn maybe_text(&self, at: usize) -> Option<&str> {
        self.get(at)
    }

    fn blob(&self, at: usize) -> &[u8] {
        self.get(at)
    }

    fn bytes_or_text(&self, at: usize) -> &[u8] {
        match self.try_get::<&[u8], _>(at) {
            Ok(bytes) => bytes,
            Err(_) => self.text(at).as_bytes(),
        }
    }
}

/// A stored hash (zero when the blob is not 32 bytes).
pub(crate) fn blob_hash(bytes: &[u8]) -> OpHash {
    let mut h = [0u8; 32];
    if bytes.len() == 32 {
        h.copy_from_slice(bytes);
    }
    OpHash(h)
}

/// `n` as a bound integer (clamped to `i64::MAX`).
pub(crate) fn to_i64(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

/// The unit named by the columns `at..at + 3`: document id, scope, branch.
pub(crate) fn unit_from_row(row: &impl Columns, at: usize) -> Result<SyncUnit, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        unit: "units table".to_owned(),
        index: 0,
        reason,
    };
    let id: &str = row.text(at);
    let scope: &str = row.text(at + 1);
    let branch: &str = row.text(at + 2);
    Ok(SyncUnit::new(
        DocumentId::from_str(id).map_err(|e| corrupt(e.to_string()))?,
        Scope::from_str(scope).map_err(|e| corrupt(e.to_string()))?,
        Branch::new(branch).map_err(|e| corrupt(e.to_string()))?,
    ))
}

/// A unit's `(revision, last hash)` from its head row (`None`: no operations yet).
pub(crate) fn head_of(row: Option<impl Columns>) -> (u64, OpHash) {
    row.map_or((0, OpHash::ZERO), |r| (r.int(0) as u64, blob_hash(r.blob(1))))
}

/// `(idx, skip)` of skipping operations, from their rows.
pub(crate) fn skips_from_rows(rows: &[impl Columns]) -> Vec<(u64, u64)> {
    rows.iter().map(|r| (r.int(0) as u64, r.int(1) as u64)).collect()
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

/// A keyframe's state as SQLite stores it: its JSON text when short (or over [`MAX_STATE`]), else zstd's frame of it
/// (with its checksum).
/// A frame starts with zstd's magic number, which no JSON text does (`(`, then bytes that are not UTF-8).
pub(crate) fn pack_state(state: &str) -> Vec<u8> {
    if state.len() <= PACK_STATE_ABOVE || state.len() as u64 > MAX_STATE {
        return state.as_bytes().to_vec();
    }
    compress_frame(state.as_bytes()).unwrap_or_else(|_| state.as_bytes().to_vec())
}

/// zstd's level: 3 (its default) compresses a todo list's chunk to about a third of its body at ~300 MB/s.
pub(crate) const ZSTD_LEVEL: i32 = 3;

thread_local! {
    /// One zstd compression context a thread, kept (SQLite's chunk bodies and packed keyframes): a fresh one is
    /// ~1 MiB of tables to allocate and fault in, which a keyframe made a compressor for each time (page faults in
    /// zstd were about half of a fresh server's on its first push of 5,000 operations, `perf record -e page-faults`).
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// `bytes` as one zstd frame at [`ZSTD_LEVEL`], with its content size and checksum, from the thread's kept context.
pub(crate) fn compress_frame(bytes: &[u8]) -> Result<Vec<u8>, String> {
    COMPRESSOR.with(|kept| {
        let mut compressor = match kept.borrow_mut().take() {
            Some(c) => c,
            None => {
                let mut fresh = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(|e| e.to_string())?;
                fresh.include_checksum(true).map_err(|e| e.to_string())?;
                fresh.include_contentsize(true).map_err(|e| e.to_string())?;
                fresh
            }
        };
        let frame = compressor.compress(bytes).map_err(|e| e.to_string());
        *kept.borrow_mut() = Some(compressor);
        frame
    })
}

/// States up to this many bytes are stored as text.
const PACK_STATE_ABOVE: usize = 512;
/// The largest state packed (a larger one is stored as text), so the most a frame may say it unpacks to: a tampered
/// frame must not make a read allocate without bound.
const MAX_STATE: u64 = 256 << 20;

/// The state [`pack_state`] stored (or text stored as it is, as every keyframe before it was).
pub(crate) fn unpack_state(stored: &[u8]) -> Result<String, String> {
    let text = if stored.starts_with(&zstd::zstd_safe::MAGICNUMBER.to_le_bytes()) {
        // One call into an output of the frame's stated size (a streaming decoder's buffers cost a fresh process
        // several milliseconds of page faults on its first keyframe).
        let size = zstd::zstd_safe::get_frame_content_size(stored)
            .map_err(|_| "not a zstd frame".to_owned())?
            .ok_or("a frame without its size")?;
        if size > MAX_STATE {
            return Err(format!("it says it unpacks to {size} bytes, over {MAX_STATE}"));
        }
        decompress_exact(stored, size as usize)?
    } else {
        stored.to_vec()
    };
    String::from_utf8(text).map_err(|e| e.to_string())
}

thread_local! {
    /// One zstd decompression context a thread, kept: a fresh one is ~100 KiB to allocate and fault in.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// The zstd frame `frame` unpacked, which must be exactly `size` bytes (SQLite's chunk bodies and packed keyframes:
/// each says its size before it is unpacked, so one call fills one buffer of that size).
pub(crate) fn decompress_exact(frame: &[u8], size: usize) -> Result<Vec<u8>, String> {
    let out = DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::new().map_err(|e| e.to_string())?);
        }
        d.as_mut()
            .map(|d| d.decompress(frame, size))
            .unwrap_or_else(|| Ok(Vec::new()))
            .map_err(|e| e.to_string())
    })?;
    if out.len() != size {
        return Err(format!("{} bytes where the frame says {size}", out.len()));
    }
    Ok(out)
}

/// A keyframe of `unit` from its row: revision, last hash, state, state hash, seen clocks.
pub(crate) fn keyframe_from_row(unit: &SyncUnit, r: &impl Columns) -> Keyframe {
    Keyframe {
        unit: unit.clone(),
        revision: r.int(0) as u64,
        last_hash: blob_hash(r.blob(1)),
        state: unpack_state(r.bytes_or_text(2)).unwrap_or_else(|e| {
            tracing::warn!(
                "the keyframe of {unit} at {} does not unpack ({e}); it will be skipped",
                r.int(0)
            );
            String::new()
        }),
        state_hash: blob_hash(r.blob(3)),
        seen: seen_from_text(r.text(4)),
    }
}

/// A document's revisions and last timestamp, from its units' rows (scope, revision, last timestamp).
pub(crate) fn revisions_from_rows(rows: &[impl Columns]) -> (Revisions, u64) {
    let mut r = Revisions::default();
    let mut last_ts = 0u64;
    for row in rows {
        if let Ok(scope) = Scope::from_str(row.text(0)) {
            r.set(scope, row.int(1) as u64);
        }
        last_ts = last_ts.max(row.int(2) as u64);
    }
    (r, last_ts)
}

/// The columns of a `list_headers` row that both backends read the same way: the document id (0), the revisions
/// per scope (5–7) and the last timestamp (8). The header's own columns are at 1–4.
pub(crate) fn listed_document(row: &impl Columns) -> Result<(DocumentId, Revisions, u64), StoreError> {
    let id: &str = row.text(0);
    let id = DocumentId::from_str(id).map_err(|e| StoreError::Corrupt {
        unit: "documents table".to_owned(),
        index: 0,
        reason: e.to_string(),
    })?;
    let revision = Revisions {
        global: row.int(5) as u64,
        local: row.int(6) as u64,
        document: row.int(7) as u64,
    };
    let last_ts = row.int(8) as u64;
    Ok((id, revision, last_ts))
}

/// A header from the documents row's columns `at..at + 4` (type, name, created, deleted: the name and the deleted
/// flag as each backend stores them) and the document's units.
pub(crate) fn header_from_row(
    row: &impl Columns,
    at: usize,
    (name, deleted): (String, bool),
    id: DocumentId,
    branch: &Branch,
    (revision, last_ts): (Revisions, u64),
) -> DocumentHeader {
    let created = row.int(at + 2) as u64;
    DocumentHeader {
        id,
        document_type: row.text(at).to_owned(),
        name,
        created_at_utc_iso: UtcIso(created),
        last_modified_at_utc_iso: UtcIso(last_ts.max(created)),
        branch: branch.clone(),
        revision,
        deleted,
        owner: None,
        grants: Vec::new(),
    }
}

/// Decodes a stored operation's JSON, checking that it is the operation the row says (`idx`).
pub(crate) fn decode_operation(unit: &SyncUnit, idx: u64, json: &str) -> Result<Operation, StoreError> {
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

/// One chunk of a unit's log as the database concatenated it: the operations' JSON, one a line, and how many.
pub(crate) struct RawChunk {
    pub(crate) from: u64,
    pub(crate) text: String,
    pub(crate) count: usize,
}

impl RawChunk {
    /// The chunk starting at `from` in `row`: the concatenated text (NULL for none), then the count.
    pub(crate) fn from_row(from: u64, row: &impl Columns) -> Self {
        let count: i64 = row.int(1);
        RawChunk {
            from,
            text: row.maybe_text(0).map(str::to_owned).unwrap_or_default(),
            count: count as usize,
        }
    }
}

/// The chunk's operations in order; a row that does not decode, or is not the operation its place says, ends the
/// chunk with an error after the good ones (so `verify` names the exact index).
pub(crate) fn parse_chunk(unit: &SyncUnit, chunk: &RawChunk) -> Vec<Result<Operation, StoreError>> {
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

/// `read` of a SQL backend: the operations of `unit` from `from` (up to `to`), chunk by chunk, each read from `pool`
/// with `chunk_sql` (see [`fetch_chunk`]); `settle` runs after each non-empty chunk is fetched, before it is handed on (SQLite
/// waits there for the fsync of what the chunk may show).
///
/// A producer task pages through the log while the consumer folds: reading and decoding the next chunk overlaps
/// with the work on the previous one. The channel holds two chunks, so memory stays bounded and a dropped stream
/// stops the producer.
pub(crate) fn read_chunks<P, S, SFut>(
    pool: P,
    chunk_sql: &'static str,
    unit: &SyncUnit,
    from: u64,
    to: Option<u64>,
    settle: S,
) -> BoxStream<'static, Result<Operation, StoreError>>
where
    P: QueryPool + Clone + Send + 'static,
    S: Fn() -> SFut + Send + Sync + 'static,
    SFut: Future<Output = Result<(), StoreError>> + Send,
{
    let unit = unit.clone();
    let (tx, rx) = mpsc::channel::<Vec<Result<Operation, StoreError>>>(2);
    tokio::spawn(async move {
        // Three stages run at once: the database fetches chunk n+1 (for SQLite, on the driver's thread) while this
        // task parses chunk n and the caller folds chunk n-1.
        let fetch = |from: u64| tokio::spawn(fetch_chunk(pool.clone(), chunk_sql, unit.clone(), from, to));
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
            if let Err(e) = settle().await {
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
