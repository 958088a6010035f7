//! The writer: one task per handle owns a connection of its own and commits every append waiting when it wakes
//! in one round trip: one call of the `folio_append` function (migrations 0004 and 0005) outside any explicit
//! transaction, which locks the unit heads, checks each request, inserts, moves the heads, updates the header index
//! and queues the notice, and commits when it returns. A call is retried whole after a deadlock or a serialization failure, request
//! by request after any other failure, on a new connection when the old one is lost.
//!
//! The one check PostgreSQL cannot run is the hash link (blake3): the writer passes, per request, the hash it
//! believes the first operation chains over (from [`HeadCache`]: what this handle committed, read or was told) and
//! whether it does; the function compares that hash with the head's. When the writer does not know it, the function
//! writes nothing for that request and answers the head's hash, and the writer sends the request again once checked
//! (a second round trip, only then).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Row};
use tokio::sync::{mpsc, oneshot};

use folio_core::{ChainError, HeaderChange, OpHash, SyncUnit};

use super::{NOTIFY_CHANNEL, PgStore};
use crate::StoreError;
use crate::sql_common::{Prepared, append_through, blob_hash, next_batch, to_i64};
use crate::store::{AppendRequest, Appended, links_to};

/// Times a group commit is retried whole after a deadlock or serialization failure.
const TRANSIENT_RETRIES: u32 = 8;
/// An ordinal is the transaction id shifted by this many bits plus the operation's position in the call.
pub(super) const ORDINAL_SHIFT: u32 = 20;
/// The most operations one call of the function takes (positions 1 ..= this).
const MAX_CALL_OPS: usize = (1 << ORDINAL_SHIFT) - 1;
/// Rounds of a group commit: the second sends the requests whose link the first had to look up.
const ROUNDS: usize = 3;
/// Heads remembered (the cache is cleared when it holds more).
const HEAD_CACHE: usize = 65_536;

/// Requests for the writer, and where to send their results (in request order).
pub(super) struct Append {
    requests: Vec<Prepared>,
    reply: oneshot::Sender<Vec<Result<Appended, StoreError>>>,
}

/// The last known head (revision and the hash of the operation before it) of units this handle wrote or read. An
/// entry is a fact that never goes stale: the log is append-only, so the operation at `revision - 1` keeps its hash
/// for ever; the head may have moved on since, which the function finds.
#[derive(Default)]
pub(super) struct HeadCache(Mutex<HashMap<SyncUnit, (u64, OpHash)>>);

impl HeadCache {
    /// Remembers that the operation at `revision - 1` of `unit` has hash `hash` (the latest such fact wins).
    pub(super) fn note(&self, unit: &SyncUnit, revision: u64, hash: OpHash) {
        if revision == 0 {
            return;
        }
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= HEAD_CACHE && !map.contains_key(unit) {
            map.clear();
        }
        match map.get_mut(unit) {
            Some(known) if known.0 >= revision => {}
            Some(known) => *known = (revision, hash),
            None => {
                map.insert(unit.clone(), (revision, hash));
            }
        }
    }

    /// The hash the operation at `revision` of `unit` must chain over, when known.
    fn prev(&self, unit: &SyncUnit, revision: u64) -> Option<OpHash> {
        if revision == 0 {
            return Some(OpHash::ZERO);
        }
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.get(unit).filter(|(r, _)| *r == revision).map(|(_, h)| *h)
    }
}

impl PgStore {
    /// `append_batch`: the requests that pass their checks, through the writer.
    pub(super) async fn send_appends(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        append_through(requests, |prepared| async move {
            let (reply, rx) = oneshot::channel();
            let append = Append {
                requests: prepared,
                reply,
            };
            match self.writer.send(append).await {
                Ok(()) => rx.await.unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        })
        .await
    }
}

/// Whether `e` is worth retrying the whole call for: a deadlock or a serialization failure.
fn is_transient(e: &StoreError) -> bool {
    match e {
        StoreError::Database(sqlx::Error::Database(db)) => {
            matches!(db.code().as_deref(), Some("40P01") | Some("40001"))
        }
        _ => false,
    }
}

/// Whether the writer's connection is gone (and must be replaced before the next batch).
fn is_connection_lost(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::Database(sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_))
    )
}

/// What the writer needs to run group commits.
pub(super) struct Writer {
    pub(super) conn: Option<PgConnection>,
    pub(super) connect: PgConnectOptions,
    pub(super) origin: i64,
    pub(super) heads: std::sync::Arc<HeadCache>,
    /// See [`super::PgOptions::commit_linger`].
    pub(super) linger: Duration,
}

/// The writer: takes every append waiting, commits them in one call, answers each caller. It reconnects when its
/// connection is lost.
///
/// Under load, the callers (the reactor's executors, each with one append in flight) send their next appends
/// shortly after their answers, one by one: a writer that committed whatever was waiting the moment it woke would
/// commit the first of them alone and keep the others waiting for a whole commit, so commits stay small and the
/// server's work per commit (the call, its statements, the COMMIT, the followers' reads) is spread over few
/// operations. So when fewer callers' appends are waiting than the last commit carried, the writer waits up to
/// `linger` for as many; a caller alone (or a drop in load) costs at most one `linger`, after which the count
/// follows the load down.
pub(super) async fn writer_loop(mut writer: Writer, mut rx: mpsc::Receiver<Append>) {
    let size = |a: &Append| a.requests.iter().map(|p| p.rows.len()).sum::<usize>().max(1);
    let linger = writer.linger;
    let mut callers_before = 0;
    while let Some(mut batch) = next_batch(&mut rx, size).await {
        if !linger.is_zero() && batch.len() < callers_before {
            let deadline = tokio::time::Instant::now() + linger;
            let mut ops: usize = batch.iter().map(size).sum();
            while batch.len() < callers_before && ops < crate::sql_common::MAX_BATCH_OPS {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(a)) => {
                        ops += size(&a);
                        batch.push(a);
                    }
                    _ => break,
                }
            }
            // And whatever else came meanwhile.
            while ops < crate::sql_common::MAX_BATCH_OPS {
                match rx.try_recv() {
                    Ok(a) => {
                        ops += size(&a);
                        batch.push(a);
                    }
                    Err(_) => break,
                }
            }
        }
        callers_before = batch.len();
        let (requests, reply_to): (Vec<_>, Vec<_>) = batch.into_iter().map(|a| (a.requests, a.reply)).unzip();
        let counts: Vec<usize> = requests.iter().map(Vec::len).collect();
        let flat: Vec<Prepared> = requests.into_iter().flatten().collect();
        let results = writer.commit(&flat).await;
        let mut results = results.into_iter();
        for (count, reply) in counts.into_iter().zip(reply_to) {
            let _ = reply.send(results.by_ref().take(count).collect());
        }
    }
}

/// One request of a call: the request and the hash its first operation chains over, when known.
#[derive(Clone, Copy)]
struct Sent<'a> {
    request: &'a Prepared,
    prev: Option<OpHash>,
}

/// The function's answer for one request.
enum Outcome {
    /// Written: the new revision and the ordinals.
    Accepted(Appended),
    /// The head is elsewhere: its revision and last hash.
    Stale(u64, OpHash),
    /// The first operation does not chain over the head.
    BadLink,
    /// The head is at the expected revision with this last hash, which the writer did not know: nothing written.
    NeedsLink(OpHash),
}

impl Writer {
    /// Commits `requests` (in rounds: see the module docs); their results in request order.
    async fn commit(&mut self, requests: &[Prepared]) -> Vec<Result<Appended, StoreError>> {
        let mut results: Vec<Option<Result<Appended, StoreError>>> = (0..requests.len()).map(|_| None).collect();
        let mut pending: Vec<(usize, Option<OpHash>)> = requests
            .iter()
            .enumerate()
            .map(|(i, p)| (i, self.heads.prev(&p.unit, p.expected_revision)))
            .collect();
        for round in 0..ROUNDS {
            if pending.is_empty() {
                break;
            }
            // Within a call, a request that follows another of the same unit chains over its last hash.
            let mut chained: HashMap<&SyncUnit, (u64, OpHash)> = HashMap::new();
            let sent: Vec<Sent> = pending
                .iter()
                .map(|&(i, prev)| {
                    let p = &requests[i];
                    let prev = prev.or_else(|| {
                        chained
                            .get(&p.unit)
                            .filter(|(r, _)| *r == p.expected_revision)
                            .map(|(_, h)| *h)
                    });
                    if !p.rows.is_empty() {
                        chained.insert(&p.unit, (p.expected_revision + p.rows.len() as u64, p.last_hash));
                    }
                    Sent { request: p, prev }
                })
                .collect();
            let outcomes = self.call_in_chunks(&sent).await;
            let mut next = Vec::new();
            // A unit with a request sent again: its later requests in this round go again after it.
            let mut again: std::collections::HashSet<&SyncUnit> = std::collections::HashSet::new();
            for (&(i, _), outcome) in pending.iter().zip(outcomes) {
                let p = &requests[i];
                let outcome = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        results[i] = Some(Err(e));
                        continue;
                    }
                };
                match outcome {
                    Outcome::Accepted(appended) => {
                        if !p.rows.is_empty() {
                            self.heads.note(&p.unit, appended.revision, p.last_hash);
                        }
                        results[i] = Some(Ok(appended));
                    }
                    Outcome::Stale(revision, hash) => {
                        self.heads.note(&p.unit, revision, hash);
                        if again.contains(&p.unit) && round + 1 < ROUNDS {
                            next.push((i, None));
                        } else {
                            results[i] = Some(self.replay_or_mismatch(p, revision).await);
                        }
                    }
                    Outcome::BadLink => results[i] = Some(Err(bad_link(p))),
                    Outcome::NeedsLink(hash) => {
                        self.heads.note(&p.unit, p.expected_revision, hash);
                        match &p.first {
                            Some(first) if links_to(&hash, first) && round + 1 < ROUNDS => {
                                again.insert(&p.unit);
                                next.push((i, Some(hash)));
                            }
                            _ => results[i] = Some(Err(bad_link(p))),
                        }
                    }
                }
            }
            pending = next;
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
            .collect()
    }

    /// Calls the function for `sent`, in calls of at most [`MAX_CALL_OPS`] operations (a group commit holds at
    /// most `MAX_BATCH_OPS` plus one request, so nearly always one call).
    async fn call_in_chunks(&mut self, sent: &[Sent<'_>]) -> Vec<Result<Outcome, StoreError>> {
        let mut outcomes = Vec::with_capacity(sent.len());
        let mut start = 0;
        while start < sent.len() {
            let mut end = start;
            let mut ops = 0;
            while end < sent.len() && (end == start || ops + sent[end].request.rows.len() <= MAX_CALL_OPS) {
                ops += sent[end].request.rows.len();
                end += 1;
            }
            if ops > MAX_CALL_OPS {
                outcomes.push(Err(StoreError::Database(sqlx::Error::InvalidArgument(format!(
                    "an append of {ops} operations: at most {MAX_CALL_OPS} a request on PostgreSQL"
                )))));
            } else {
                outcomes.extend(self.call_with_retries(&sent[start..end]).await);
            }
            start = end;
        }
        outcomes
    }

    /// One call, retried whole after a transient failure, request by request after another failure.
    async fn call_with_retries(&mut self, sent: &[Sent<'_>]) -> Vec<Result<Outcome, StoreError>> {
        let mut attempt = 0;
        loop {
            let outcome = match self.conn.as_mut() {
                Some(c) => call(c, self.origin, sent).await,
                None => match PgConnection::connect_with(&self.connect).await {
                    Ok(c) => call(self.conn.insert(c), self.origin, sent).await,
                    Err(e) => Err(StoreError::from(e)),
                },
            };
            match outcome {
                Ok(outcomes) => return outcomes.into_iter().map(Ok).collect(),
                Err(e) if is_transient(&e) && attempt < TRANSIENT_RETRIES => {
                    attempt += 1;
                    tracing::debug!("group commit of {} requests: {e}; retrying", sent.len());
                    tokio::time::sleep(Duration::from_millis(2 * u64::from(attempt))).await;
                }
                Err(e) => {
                    if is_connection_lost(&e) {
                        // The outcome of an interrupted call is unknown: the callers get the error (a retried
                        // append of the same operations is recognised as a replay).
                        self.conn = None;
                    }
                    if sent.len() == 1 {
                        return vec![Err(e)];
                    }
                    // Retry each request alone, so one request's failure does not fail the others.
                    tracing::warn!(
                        "group commit of {} requests failed: {e}; retrying one by one",
                        sent.len()
                    );
                    let mut outcomes = Vec::with_capacity(sent.len());
                    for one in sent {
                        let mut once = Box::pin(self.call_with_retries(std::slice::from_ref(one)));
                        outcomes.push(once.as_mut().await.pop().unwrap_or(Err(StoreError::Closed)));
                    }
                    return outcomes;
                }
            }
        }
    }

    /// A request the function found at another revision: a replay when its operations are exactly those stored at
    /// its indexes (read after the call committed: stored operations never change), otherwise a mismatch.
    async fn replay_or_mismatch(&mut self, p: &Prepared, actual: u64) -> Result<Appended, StoreError> {
        let end = p.expected_revision + p.rows.len() as u64;
        let mismatch = || StoreError::RevisionMismatch {
            unit: p.unit.clone(),
            expected: p.expected_revision,
            actual,
        };
        if p.expected_revision >= actual || end > actual {
            return Err(mismatch());
        }
        let conn = match self.conn.as_mut() {
            Some(c) => c,
            None => self.conn.insert(PgConnection::connect_with(&self.connect).await?),
        };
        let stored: Vec<(i64, Vec<u8>)> = sqlx::query_as(
            "SELECT idx, hash FROM operations \
             WHERE unit_id = (SELECT unit_id FROM units WHERE document_id = $1 AND scope = $2 AND branch = $3) \
               AND idx >= $4 AND idx < $5 ORDER BY idx",
        )
        .bind(p.unit.document_id.to_string())
        .bind(p.unit.scope.as_str())
        .bind(p.unit.branch.as_str())
        .bind(to_i64(p.expected_revision))
        .bind(to_i64(end))
        .fetch_all(conn)
        .await?;
        if stored.len() == p.rows.len()
            && stored
                .iter()
                .zip(&p.rows)
                .all(|((idx, hash), r)| *idx == r.idx && *hash == r.hash)
        {
            Ok(Appended {
                revision: actual,
                ordinals: Vec::new(),
                replayed: true,
            })
        } else {
            Err(mismatch())
        }
    }
}

fn bad_link(p: &Prepared) -> StoreError {
    StoreError::InvalidOperations {
        unit: p.unit.clone(),
        reason: ChainError::HashMismatch {
            index: p.first.as_ref().map_or(p.expected_revision, |f| f.index),
        },
    }
}

/// One call of `folio_append` for `sent` (one round trip; committed when it returns).
async fn call(conn: &mut PgConnection, origin: i64, sent: &[Sent<'_>]) -> Result<Vec<Outcome>, StoreError> {
    let n = sent.len();
    let mut r_doc = Vec::with_capacity(n);
    let mut r_scope = Vec::with_capacity(n);
    let mut r_branch = Vec::with_capacity(n);
    let mut r_expected = Vec::with_capacity(n);
    let mut r_count = Vec::with_capacity(n);
    let mut r_prev: Vec<Option<&[u8]>> = Vec::with_capacity(n);
    let mut r_links = Vec::with_capacity(n);
    let mut r_last_hash: Vec<&[u8]> = Vec::with_capacity(n);
    let mut r_last_ts = Vec::with_capacity(n);
    let ops: usize = sent.iter().map(|s| s.request.rows.len()).sum();
    let mut o_req = Vec::with_capacity(ops);
    let mut o_idx = Vec::with_capacity(ops);
    let mut o_skip = Vec::with_capacity(ops);
    let mut o_ts = Vec::with_capacity(ops);
    let mut o_hash: Vec<&[u8]> = Vec::with_capacity(ops);
    let mut o_json: Vec<&str> = Vec::with_capacity(ops);
    let mut o_size = Vec::with_capacity(ops);
    let mut h_req = Vec::new();
    let mut h_kind = Vec::new();
    let mut h_type: Vec<Option<&str>> = Vec::new();
    let mut h_name: Vec<Option<&[u8]>> = Vec::new();
    let mut h_ts = Vec::new();
    // The position (1-based) of each request's first operation in the call: its ordinals' low part.
    let mut first_pos = Vec::with_capacity(n);
    for (k, s) in sent.iter().enumerate() {
        let p = s.request;
        let number = k as i32 + 1;
        r_doc.push(p.unit.document_id.to_string());
        r_scope.push(p.unit.scope.as_str());
        r_branch.push(p.unit.branch.as_str());
        r_expected.push(to_i64(p.expected_revision));
        r_count.push(p.rows.len() as i64);
        r_prev.push(s.prev.as_ref().map(|h| &h.0[..]));
        r_links.push(match (&s.prev, &p.first) {
            (Some(prev), Some(first)) => links_to(prev, first),
            _ => true,
        });
        r_last_hash.push(&p.last_hash.0[..]);
        r_last_ts.push(to_i64(p.last_ts));
        first_pos.push(o_req.len() as i64 + 1);
        for row in &p.rows {
            o_req.push(number);
            o_idx.push(row.idx);
            o_skip.push(row.skip);
            o_ts.push(row.timestamp_ms);
            o_hash.push(&row.hash[..]);
            o_json.push(row.operation.as_str());
            o_size.push(row.operation.len().min(i32::MAX as usize) as i32);
        }
        for (change, ts) in &p.header_changes {
            h_req.push(number);
            h_ts.push(to_i64(*ts));
            match change {
                HeaderChange::Created { document_type, name } => {
                    h_kind.push("c");
                    h_type.push(Some(document_type.as_str()));
                    h_name.push(Some(name.as_bytes()));
                }
                HeaderChange::Renamed(name) => {
                    h_kind.push("r");
                    h_type.push(None);
                    h_name.push(Some(name.as_bytes()));
                }
                HeaderChange::Deleted => {
                    h_kind.push("d");
                    h_type.push(None);
                    h_name.push(None);
                }
            }
        }
    }
    let row = sqlx::query(
        "SELECT xid, status, revision, head_hash FROM folio_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
         $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)",
    )
    .bind(origin)
    .bind(NOTIFY_CHANNEL)
    .bind(r_doc)
    .bind(r_scope)
    .bind(r_branch)
    .bind(r_expected)
    .bind(r_count)
    .bind(r_prev)
    .bind(r_links)
    .bind(r_last_hash)
    .bind(r_last_ts)
    .bind(o_req)
    .bind(o_idx)
    .bind(o_skip)
    .bind(o_ts)
    .bind(o_hash)
    .bind(o_json)
    .bind(o_size)
    .bind(h_req)
    .bind(h_kind)
    .bind(h_type)
    .bind(h_name)
    .bind(h_ts)
    // fetch_one reads the whole answer, to ReadyForQuery: the implicit transaction has committed (and its WAL been
    // flushed) when it returns.
    .fetch_one(&mut *conn)
    .await?;
    let xid: Option<i64> = row.try_get(0)?;
    let status: Vec<Option<i32>> = row.try_get(1)?;
    let revision: Vec<Option<i64>> = row.try_get(2)?;
    let head_hash: Vec<Option<Vec<u8>>> = row.try_get(3)?;
    let corrupt = |k: usize| StoreError::Corrupt {
        unit: sent[k].request.unit.to_string(),
        index: sent[k].request.expected_revision,
        reason: "folio_append answered nothing for the request".to_owned(),
    };
    (0..n)
        .map(|k| {
            let p = sent[k].request;
            let revision = revision.get(k).copied().flatten().ok_or_else(|| corrupt(k))? as u64;
            let hash = || blob_hash(head_hash.get(k).and_then(|h| h.as_deref()).unwrap_or(&[]));
            Ok(match status.get(k).copied().flatten().ok_or_else(|| corrupt(k))? {
                0 => Outcome::Accepted(Appended {
                    revision,
                    ordinals: match xid {
                        Some(xid) if !p.rows.is_empty() => {
                            let base = ((xid as u64) << ORDINAL_SHIFT) + first_pos[k] as u64;
                            (0..p.rows.len() as u64).map(|i| base + i).collect()
                        }
                        _ => Vec::new(),
                    },
                    replayed: false,
                }),
                1 => Outcome::Stale(revision, hash()),
                2 => Outcome::BadLink,
                _ => Outcome::NeedsLink(hash()),
            })
        })
        .collect()
}
