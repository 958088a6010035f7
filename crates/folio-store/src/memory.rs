//! The in-memory backend: a store of its own (tests, ephemeral replicas, benchmarks), not a mock.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};

use folio_core::{
    Branch, DocumentHeader, DocumentId, HeaderChange, OpHash, Operation, Revisions, Scope, SyncUnit, header_change,
};

use crate::StoreError;
use crate::header_index::HeaderRecord;
use crate::store::{AppendRequest, Appended, Committed, Keyframe, ListQuery, OperationStore, links_to, precheck};

/// How many operations a read stream copies out per lock.
const READ_CHUNK: usize = 512;

/// A stored operation: its place in the slice its append brought, which the store shares with the appender (its
/// events and replies) rather than copying each operation in.
struct Stored {
    batch: Arc<[Operation]>,
    at: usize,
}

impl std::ops::Deref for Stored {
    type Target = Operation;

    fn deref(&self) -> &Operation {
        &self.batch[self.at]
    }
}

#[derive(Default)]
struct UnitLog {
    operations: Vec<Stored>,
    /// The indexes of each action id (several when a rebase re-appended it).
    by_action: std::collections::HashMap<uuid::Uuid, Vec<usize>>,
    /// The latest timestamp of its operations: the last modification its branch's header shows.
    last_ts: u64,
}

#[derive(Default)]
struct Inner {
    units: BTreeMap<SyncUnit, UnitLog>,
    /// `(unit, index)` of each ordinal; ordinal `n` is at position `n - 1`.
    ordinals: Vec<(SyncUnit, u64)>,
    headers: BTreeMap<DocumentId, HeaderRecord>,
    keyframes: BTreeMap<(SyncUnit, u64), Keyframe>,
    meta: BTreeMap<String, String>,
}

/// An `OperationStore` held in memory. Cheap to clone (clones share the data); lost when the process ends.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<RwLock<Inner>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn append_one(&mut self, request: AppendRequest) -> Result<Appended, StoreError> {
        precheck(&request)?;
        let AppendRequest {
            unit,
            expected_revision,
            operations,
        } = request;
        let log = self.units.get(&unit);
        let actual = log.map_or(0, |l| l.operations.len() as u64);
        if expected_revision != actual {
            let stored = log.map(|l| l.operations.as_slice()).unwrap_or(&[]);
            let end = expected_revision as usize + operations.len();
            if expected_revision < actual
                && end <= stored.len()
                && stored[expected_revision as usize..end]
                    .iter()
                    .zip(operations.iter())
                    .all(|(s, o)| s.hash == o.hash)
            {
                return Ok(Appended {
                    revision: actual,
                    ordinals: Vec::new(),
                    replayed: true,
                });
            }
            return Err(StoreError::RevisionMismatch {
                unit,
                expected: expected_revision,
                actual,
            });
        }
        if let Some(first) = operations.first() {
            let prev = log.and_then(|l| l.operations.last()).map_or(OpHash::ZERO, |op| op.hash);
            if !links_to(&prev, first) {
                return Err(StoreError::InvalidOperations {
                    unit,
                    reason: folio_core::ChainError::HashMismatch { index: first.index },
                });
            }
        }
        if operations.is_empty() {
            // Nothing to write; an empty append does not create the unit.
            return Ok(Appended {
                revision: actual,
                ordinals: Vec::new(),
                replayed: false,
            });
        }
        let mut ordinals = Vec::with_capacity(operations.len());
        for op in operations.iter() {
            apply_header_change(&mut self.headers, unit.document_id, op);
            self.ordinals.push((unit.clone(), op.index));
            ordinals.push(self.ordinals.len() as u64);
        }
        let log = self.units.entry(unit).or_default();
        log.last_ts = operations
            .iter()
            .fold(log.last_ts, |ts, op| ts.max(op.timestamp_utc_ms));
        for op in operations.iter() {
            log.by_action.entry(op.action.id).or_default().push(op.index as usize);
        }
        log.operations.extend((0..operations.len()).map(|at| Stored {
            batch: operations.clone(),
            at,
        }));
        Ok(Appended {
            revision: log.operations.len() as u64,
            ordinals,
            replayed: false,
        })
    }

    fn revisions(&self, document_id: DocumentId, branch: &Branch) -> Revisions {
        let mut r = Revisions::default();
        for scope in Scope::ALL {
            let unit = SyncUnit::new(document_id, scope, branch.clone());
            r.set(scope, self.units.get(&unit).map_or(0, |l| l.operations.len() as u64));
        }
        r
    }

    /// The header of `id` on `branch`: revisions and last modification are those of the branch's units.
    fn header(&self, id: DocumentId, record: &HeaderRecord, branch: &Branch) -> DocumentHeader {
        let mut revision = Revisions::default();
        let mut last_modified_ms = record.created_at_ms;
        for scope in Scope::ALL {
            if let Some(log) = self.units.get(&SyncUnit::new(id, scope, branch.clone())) {
                revision.set(scope, log.operations.len() as u64);
                last_modified_ms = last_modified_ms.max(log.last_ts);
            }
        }
        HeaderRecord {
            last_modified_ms,
            ..record.clone()
        }
        .to_header(id, branch.clone(), revision)
    }
}

pub(crate) fn apply_header_change(headers: &mut BTreeMap<DocumentId, HeaderRecord>, id: DocumentId, op: &Operation) {
    let ts = op.timestamp_utc_ms;
    match header_change(op) {
        Some(HeaderChange::Created { document_type, name }) => {
            headers.entry(id).or_insert(HeaderRecord {
                document_type,
                name,
                created_at_ms: ts,
                last_modified_ms: ts,
                deleted: false,
            });
        }
        Some(HeaderChange::Renamed(name)) => {
            if let Some(h) = headers.get_mut(&id) {
                h.name = name;
            }
        }
        Some(HeaderChange::Deleted) => {
            if let Some(h) = headers.get_mut(&id) {
                h.deleted = true;
            }
        }
        None => {}
    }
}

#[async_trait]
impl OperationStore for MemoryStore {
    async fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        requests.into_iter().map(|r| inner.append_one(r)).collect()
    }

    async fn find_actions(&self, unit: &SyncUnit, ids: &[uuid::Uuid]) -> Result<Vec<Operation>, StoreError> {
        let inner = self.read_lock();
        let Some(log) = inner.units.get(unit) else {
            return Ok(Vec::new());
        };
        let mut indexes: Vec<usize> = ids
            .iter()
            .filter_map(|id| log.by_action.get(id))
            .flatten()
            .copied()
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        Ok(indexes
            .into_iter()
            .map(|i| Operation::clone(&log.operations[i]))
            .collect())
    }

    async fn skips(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> Result<Vec<(u64, u64)>, StoreError> {
        let inner = self.read_lock();
        let ops = inner.units.get(unit).map(|l| l.operations.as_slice()).unwrap_or(&[]);
        let end = to.map_or(ops.len(), |t| (t as usize).min(ops.len()));
        let start = (from as usize).min(end);
        Ok(ops[start..end]
            .iter()
            .filter(|op| op.skip > 0)
            .map(|op| (op.index, op.skip))
            .collect())
    }

    fn read(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> BoxStream<'static, Result<Operation, StoreError>> {
        let store = self.clone();
        let unit = unit.clone();
        stream::unfold(from, move |next| {
            let chunk: Vec<Operation> = {
                let inner = store.read_lock();
                let ops = inner.units.get(&unit).map(|l| l.operations.as_slice()).unwrap_or(&[]);
                let end = to.map_or(ops.len(), |t| (t as usize).min(ops.len()));
                let start = (next as usize).min(end);
                let stop = (start + READ_CHUNK).min(end);
                ops[start..stop].iter().map(|op| Operation::clone(op)).collect()
            };
            async move {
                if chunk.is_empty() {
                    None
                } else {
                    let after = next + chunk.len() as u64;
                    Some((stream::iter(chunk.into_iter().map(Ok)), after))
                }
            }
        })
        .flatten()
        .boxed()
    }

    async fn head(&self, unit: &SyncUnit) -> Result<(u64, OpHash), StoreError> {
        let inner = self.read_lock();
        Ok(inner.units.get(unit).map_or((0, OpHash::ZERO), |l| {
            (
                l.operations.len() as u64,
                l.operations.last().map_or(OpHash::ZERO, |op| op.hash),
            )
        }))
    }

    async fn revisions(&self, document_id: DocumentId, branch: &Branch) -> Result<Revisions, StoreError> {
        Ok(self.read_lock().revisions(document_id, branch))
    }

    async fn header(&self, document_id: DocumentId, branch: &Branch) -> Result<Option<DocumentHeader>, StoreError> {
        let inner = self.read_lock();
        Ok(inner
            .headers
            .get(&document_id)
            .map(|rec| inner.header(document_id, rec, branch)))
    }

    async fn list_headers(&self, query: &ListQuery) -> Result<Vec<DocumentHeader>, StoreError> {
        let inner = self.read_lock();
        let start = match query.after {
            Some(after) => std::ops::Bound::Excluded(after),
            None => std::ops::Bound::Unbounded,
        };
        Ok(inner
            .headers
            .range((start, std::ops::Bound::Unbounded))
            .filter(|(_, rec)| query.include_deleted || !rec.deleted)
            .filter(|(_, rec)| query.document_type.as_deref().is_none_or(|t| t == rec.document_type))
            .take(query.limit)
            .map(|(id, rec)| inner.header(*id, rec, &query.branch))
            .collect())
    }

    async fn read_since(&self, after_ordinal: u64, limit: usize) -> Result<Vec<Committed>, StoreError> {
        let inner = self.read_lock();
        let start = (after_ordinal as usize).min(inner.ordinals.len());
        Ok(inner.ordinals[start..]
            .iter()
            .take(limit)
            .enumerate()
            .map(|(i, (unit, index))| Committed {
                ordinal: (start + i + 1) as u64,
                unit: unit.clone(),
                operation: Operation::clone(&inner.units[unit].operations[*index as usize]),
            })
            .collect())
    }

    async fn max_ordinal(&self) -> Result<u64, StoreError> {
        Ok(self.read_lock().ordinals.len() as u64)
    }

    async fn units(&self) -> Result<Vec<SyncUnit>, StoreError> {
        Ok(self.read_lock().units.keys().cloned().collect())
    }

    async fn put_keyframe(&self, keyframe: &Keyframe) -> Result<(), StoreError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner
            .keyframes
            .insert((keyframe.unit.clone(), keyframe.revision), keyframe.clone());
        Ok(())
    }

    async fn nearest_keyframe(&self, unit: &SyncUnit, revision: u64) -> Result<Option<Keyframe>, StoreError> {
        let inner = self.read_lock();
        Ok(inner
            .keyframes
            .range((unit.clone(), 0)..=(unit.clone(), revision))
            .next_back()
            .map(|(_, k)| k.clone()))
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.read_lock().meta.get(key).cloned())
    }

    async fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        inner.meta.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    async fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let mut inner = self.inner.write().unwrap_or_else(|e| e.into_inner());
        Ok(inner
            .meta
            .entry(key.to_owned())
            .or_insert_with(|| value.to_owned())
            .clone())
    }
}
