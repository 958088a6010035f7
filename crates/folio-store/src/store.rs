//! The `OperationStore` trait and the types it speaks.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use folio_core::merge::Cuts;
use folio_core::{
    Branch, CausalContext, DocumentHeader, DocumentId, OpHash, Operation, ReplicaKey, Revisions, SyncUnit,
};

use crate::StoreError;

/// The outcome of a successful [`OperationStore::append`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    /// The unit's revision after the append (the next index).
    pub revision: u64,
    /// The global commit ordinal of each operation, in order. Empty when `replayed`.
    pub ordinals: Vec<u64>,
    /// True when the operations were already stored at those indexes (a retried append): nothing was written.
    pub replayed: bool,
}

/// Which operations [`OperationStore::read_since_filtered`] returns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinceFilter<'a> {
    /// Only operations of their unit's effective history: none that a later skipping operation cuts.
    pub effective: bool,
    /// Leave out the actions authored by this replica.
    pub exclude_replica: Option<&'a str>,
    /// Only the actions authored by this replica.
    pub only_replica: Option<&'a str>,
}

impl SinceFilter<'_> {
    /// Whether an action authored by `author` passes the author conditions.
    pub fn admits_author(&self, author: Option<&str>) -> bool {
        self.exclude_replica.is_none_or(|x| author != Some(x)) && self.only_replica.is_none_or(|me| author == Some(me))
    }
}

/// A page of [`OperationStore::read_since_filtered`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SincePage {
    /// The operations that passed the filter, in ordinal order.
    pub committed: Vec<Committed>,
    /// The last ordinal looked at (the `after_ordinal` asked when none was): every ordinal up to it was considered.
    pub cursor: u64,
    /// How many operations were looked at: fewer than the limit means there was nothing more then.
    pub scanned: usize,
}

/// One append of a batch: `operations` for `unit`, which must be at `expected_revision`.
#[derive(Debug, Clone)]
pub struct AppendRequest {
    /// The unit.
    pub unit: SyncUnit,
    /// The revision the caller read (the index of the first operation).
    pub expected_revision: u64,
    /// The operations, indexes dense from `expected_revision`, hashes chained over the unit's last hash. Shared,
    /// so that the caller keeps them (for its events and replies) without copying what the store takes.
    pub operations: Arc<[Operation]>,
}

/// An operation with the unit it belongs to and its global commit ordinal.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    /// Commit order over all units of the store: increasing, not necessarily dense.
    pub ordinal: u64,
    /// The unit.
    pub unit: SyncUnit,
    /// The operation.
    pub operation: Operation,
}

/// A stored state of a unit at a revision, so rehydration folds only the tail.
#[derive(Debug, Clone, PartialEq)]
pub struct Keyframe {
    /// The unit.
    pub unit: SyncUnit,
    /// The revision the state is at (the number of operations folded).
    pub revision: u64,
    /// The hash of the operation at `revision - 1`, which the next operation chains over.
    pub last_hash: OpHash,
    /// The model's state as JSON.
    pub state: String,
    /// blake3 of the state.
    pub state_hash: OpHash,
    /// The unit's seen clocks at `revision` (the latest clock of each replica's actions folded in), so a document
    /// hydrated from the keyframe stamps the right causal context on its next action.
    pub seen: CausalContext,
}

/// What a cold load of a document at its heads reads, taken by [`OperationStore::read_cold`]: a backend that can
/// answers it in one round trip and from one snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColdRead {
    /// The head revision of each scope's unit (0 for a unit with no operations).
    pub heads: ScopeHeads,
    /// The newest keyframe of the global unit at or below its head, when keyframes were asked for.
    pub keyframe: Option<Keyframe>,
    /// Each scope's first operations (at most the asked limit, in index order), from the keyframe's revision for the
    /// global scope and from 0 for the others: a unit whose last one is below its head has more to stream.
    pub document: Vec<Operation>,
    /// See [`ColdRead::document`].
    pub global: Vec<Operation>,
    /// See [`ColdRead::document`].
    pub local: Vec<Operation>,
    /// `(idx, skip)` of the skipping operations of the document scope (all of them) and of the global scope from the
    /// keyframe's revision (or 0), as [`OperationStore::skips`] answers them.
    pub document_skips: Vec<(u64, u64)>,
    /// See [`ColdRead::document_skips`].
    pub global_skips: Vec<(u64, u64)>,
}

/// The head revisions of a document's three units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScopeHeads {
    /// The `document` scope's.
    pub document: u64,
    /// The `global` scope's.
    pub global: u64,
    /// The `local` scope's.
    pub local: u64,
}

/// How to list documents.
#[derive(Debug, Clone)]
pub struct ListQuery {
    /// Only documents of this type.
    pub document_type: Option<String>,
    /// Only documents whose id sorts after this one (paging).
    pub after: Option<DocumentId>,
    /// At most this many.
    pub limit: usize,
    /// The branch whose revisions the headers show.
    pub branch: Branch,
    /// Whether deleted documents are listed.
    pub include_deleted: bool,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            document_type: None,
            after: None,
            limit: 100,
            branch: Branch::default(),
            include_deleted: false,
        }
    }
}

/// The append-only log of operations, keyed by sync unit. Backends: [`crate::MemoryStore`], [`crate::SqliteStore`].
///
/// Every backend passes the conformance suite in `crate::conformance` (behind the `testing` feature). The store keeps
/// no document state: only the log, an index of headers derived from `document` scope operations in the same
/// transaction, and keyframes.
#[async_trait]
pub trait OperationStore: Send + Sync + 'static {
    /// Appends `operations` to `unit`, atomically.
    ///
    /// * `expected_revision` must equal the unit's revision; otherwise [`StoreError::RevisionMismatch`] and
    ///   nothing is written. Exception: when the operations are exactly those already stored at those indexes (a
    ///   client retrying after a lost reply), the append succeeds with `replayed: true` and writes nothing.
    /// * The operations must have indexes dense from `expected_revision` and hashes chained over the unit's last
    ///   hash; otherwise [`StoreError::InvalidOperations`].
    async fn append(
        &self,
        unit: &SyncUnit,
        expected_revision: u64,
        operations: Vec<Operation>,
    ) -> Result<Appended, StoreError> {
        let mut results = self
            .append_batch(vec![AppendRequest {
                unit: unit.clone(),
                expected_revision,
                operations: operations.into(),
            }])
            .await;
        results.pop().unwrap_or(Err(StoreError::Closed))
    }

    /// Appends to several units together (group commit); each request succeeds or fails on its own, with the
    /// semantics of [`OperationStore::append`]. Results come in request order.
    async fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>>;

    /// The operations of `unit` with `from <= index < to` (to the end when `to` is `None`), in index order, as a
    /// stream: the whole history is never loaded at once.
    fn read(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> BoxStream<'static, Result<Operation, StoreError>>;

    /// The `(index, skip)` of the operations of `unit` with `from <= index < to` (to the end when `to` is `None`)
    /// whose skip is above 0, in index order: what a reader needs to tell the effective history (see
    /// `folio_core::merge`) without loading the log. The default reads the log; stores with an index answer from
    /// it.
    async fn skips(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> Result<Vec<(u64, u64)>, StoreError> {
        let mut ops = self.read(unit, from, to);
        let mut found = Vec::new();
        while let Some(op) = ops.try_next().await? {
            if op.skip > 0 {
                found.push((op.index, op.skip));
            }
        }
        Ok(found)
    }

    /// The operations of `unit` whose action id is one of `ids`, in index order: what a writer needs to tell a
    /// retried action (the same id and content, already committed) from a new one, and a reused id from both. An
    /// action that a rebase re-appended is found at each of its indexes. The default reads the log; stores with an
    /// index answer from it.
    async fn find_actions(&self, unit: &SyncUnit, ids: &[uuid::Uuid]) -> Result<Vec<Operation>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let wanted: std::collections::HashSet<&uuid::Uuid> = ids.iter().collect();
        let mut ops = self.read(unit, 0, None);
        let mut found = Vec::new();
        while let Some(op) = ops.try_next().await? {
            if wanted.contains(&op.action.id) {
                found.push(op);
            }
        }
        Ok(found)
    }

    /// The `(action id, index)` of the operations of `unit` below index `before` whose action id is one of `ids`,
    /// in index order: what a merge needs to tell which of the actions it folds carry an id the history before them
    /// holds already, without the operations themselves. The default filters [`OperationStore::find_actions`];
    /// stores with an index of ids answer from it alone.
    async fn find_action_indexes(
        &self,
        unit: &SyncUnit,
        ids: &[uuid::Uuid],
        before: u64,
    ) -> Result<Vec<(uuid::Uuid, u64)>, StoreError> {
        Ok(self
            .find_actions(unit, ids)
            .await?
            .into_iter()
            .filter(|op| op.index < before)
            .map(|op| (op.action.id, op.index))
            .collect())
    }

    /// The revision (number of operations) of `unit`, and the hash of its last operation (`OpHash::ZERO` when
    /// empty).
    async fn head(&self, unit: &SyncUnit) -> Result<(u64, OpHash), StoreError>;

    /// The revisions of every scope of a document on a branch.
    async fn revisions(&self, document_id: DocumentId, branch: &Branch) -> Result<Revisions, StoreError>;

    /// The header of a document on a branch, from the header index; `None` when it was never created.
    async fn header(&self, document_id: DocumentId, branch: &Branch) -> Result<Option<DocumentHeader>, StoreError>;

    /// Headers of documents, ordered by id.
    async fn list_headers(&self, query: &ListQuery) -> Result<Vec<DocumentHeader>, StoreError>;

    /// Up to `limit` operations committed after `after_ordinal`, in ordinal order (readers catch up with this).
    async fn read_since(&self, after_ordinal: u64, limit: usize) -> Result<Vec<Committed>, StoreError>;

    /// Looks at up to `limit` operations committed after `after_ordinal`, in ordinal order, and returns those that
    /// `filter` lets through, with the last ordinal looked at (where the next page starts). What sync serves a
    /// puller and builds an outbox from: stores that can filter without decoding do (SQLite); the default filters
    /// what [`OperationStore::read_since`] returns.
    async fn read_since_filtered(
        &self,
        after_ordinal: u64,
        limit: usize,
        filter: &SinceFilter<'_>,
    ) -> Result<SincePage, StoreError> {
        let committed = self.read_since(after_ordinal, limit).await?;
        let scanned = committed.len();
        let cursor = committed.last().map_or(after_ordinal, |c| c.ordinal);
        let mut cuts: HashMap<SyncUnit, Cuts> = HashMap::new();
        if filter.effective {
            // A cut of operation `i` comes from a later operation of its unit: ask from the lowest index read.
            let mut lowest: HashMap<&SyncUnit, u64> = HashMap::new();
            for c in &committed {
                let low = lowest.entry(&c.unit).or_insert(c.operation.index);
                *low = (*low).min(c.operation.index);
            }
            for (unit, from) in lowest {
                cuts.insert(unit.clone(), Cuts::from_skips(self.skips(unit, from, None).await?));
            }
        }
        let committed = committed
            .into_iter()
            .filter(|c| filter.admits_author(c.operation.action.replica.as_deref()))
            .filter(|c| cuts.get(&c.unit).is_none_or(|k| k.is_effective(c.operation.index)))
            .collect();
        Ok(SincePage {
            committed,
            cursor,
            scanned,
        })
    }

    /// The highest ordinal committed so far (0 when empty).
    async fn max_ordinal(&self) -> Result<u64, StoreError>;

    /// Every unit that has at least one operation.
    async fn units(&self) -> Result<Vec<SyncUnit>, StoreError>;

    /// Stores a keyframe (replacing one of the same unit and revision).
    async fn put_keyframe(&self, keyframe: &Keyframe) -> Result<(), StoreError>;

    /// The keyframe of `unit` with the highest revision at or below `revision`.
    async fn nearest_keyframe(&self, unit: &SyncUnit, revision: u64) -> Result<Option<Keyframe>, StoreError>;

    /// A value of the store's small key-value table (sync cursors, outbox marks, the replica id), or `None`.
    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Sets `key` to `value` durably (replacing any previous value).
    async fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError>;

    /// Sets `key` to `value` unless it already has a value, atomically (between processes too); returns the value
    /// the key holds afterwards.
    async fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// What this handle can learn about commits made through *other* handles on the same database (other nodes,
    /// other processes): PostgreSQL's LISTEN/NOTIFY. `None` (the default) where nothing announces them (memory,
    /// SQLite); a reactor then sees other processes' writes only when it reads the store.
    fn commit_feed(&self) -> Option<Arc<dyn CommitFeed>> {
        None
    }

    /// Everything a cold load of `document_id` on `branch` at its heads reads (see [`ColdRead`]), each scope's
    /// operations capped at `limit`: the keyframe is looked up only when `keyframes` is true.
    ///
    /// The default asks [`OperationStore::read`], [`OperationStore::head`] (of the global scope, and of another
    /// scope only when its read reached the cap), [`OperationStore::nearest_keyframe`] and [`OperationStore::skips`]
    /// in turn: seven calls, and appends may land between them (the global scope is read up to the head it was
    /// given). PostgreSQL answers with one statement.
    async fn read_cold(
        &self,
        document_id: DocumentId,
        branch: &Branch,
        keyframes: bool,
        limit: usize,
    ) -> Result<ColdRead, StoreError> {
        use folio_core::Scope;
        let unit = |scope| SyncUnit::new(document_id, scope, branch.clone());
        let (document, global, local) = (unit(Scope::Document), unit(Scope::Global), unit(Scope::Local));
        let first =
            |unit: &SyncUnit, from: u64, to: Option<u64>| self.read(unit, from, to).take(limit).try_collect::<Vec<_>>();
        // A scope read from 0 that stops short of the cap was read to its head: no call for the head.
        let head_after = async |unit: &SyncUnit, ops: &[Operation]| match ops.len() < limit {
            true => Ok(ops.last().map_or(0, |op| op.index + 1)),
            false => self.head(unit).await.map(|(revision, _)| revision),
        };
        let document_ops = first(&document, 0, None).await?;
        let local_ops = first(&local, 0, None).await?;
        let heads = ScopeHeads {
            document: head_after(&document, &document_ops).await?,
            global: self.head(&global).await?.0,
            local: head_after(&local, &local_ops).await?,
        };
        let keyframe = match keyframes && heads.global > 0 {
            true => self.nearest_keyframe(&global, heads.global).await?,
            false => None,
        };
        let from = keyframe.as_ref().map_or(0, |k| k.revision);
        Ok(ColdRead {
            heads,
            document_skips: self.skips(&document, 0, None).await?,
            global_skips: self.skips(&global, from, Some(heads.global)).await?,
            document: document_ops,
            global: first(&global, from, Some(heads.global)).await?,
            local: local_ops,
            keyframe,
        })
    }

    /// The store's replica key (Ed25519): made on first use and kept in the meta data ([`REPLICA_KEY_KEY`]), so
    /// every process (and every node) on the same store is the same replica and signs as it.
    async fn replica_key(&self) -> Result<ReplicaKey, StoreError> {
        let fresh = ReplicaKey::from_seed(&new_seed()?).seed_text();
        let kept = self.put_meta_if_absent(REPLICA_KEY_KEY, &fresh).await?;
        ReplicaKey::from_seed_text(&kept).map_err(|e| StoreError::Corrupt {
            unit: "meta data".into(),
            index: 0,
            reason: format!("the replica key: {e}"),
        })
    }

    /// The store's replica id: the id its [`OperationStore::replica_key`] derives, the same for every process on
    /// the store. Sync stamps it on the actions authored here. A store whose replica id was made at random by an
    /// earlier version moves to the derived id; the former one is kept under [`FORMER_REPLICA_ID_KEY`].
    async fn replica_id(&self) -> Result<String, StoreError> {
        let key = self.replica_key().await?;
        let id = self.put_meta_if_absent(REPLICA_ID_KEY, key.replica_id()).await?;
        if id != key.replica_id() {
            self.put_meta_if_absent(FORMER_REPLICA_ID_KEY, &id).await?;
            self.put_meta(REPLICA_ID_KEY, key.replica_id()).await?;
        }
        Ok(key.replica_id().to_owned())
    }
}

/// Commits announced between the handles of one shared database, for a node that must show its subscribers the
/// writes of the others ([`OperationStore::commit_feed`]).
///
/// The notices are hints and may be lost (a dropped connection): a follower catches up by ordinal with
/// [`CommitFeed::read_since_marked`] on every notice *and* on a timer, so it never depends on them for completeness.
#[async_trait]
pub trait CommitFeed: Send + Sync + 'static {
    /// A wake-up each time another handle may have committed (never for this handle's own commits; once more after
    /// a reconnection, when notices may have been missed). Ends when the store is dropped.
    fn notices(&self) -> BoxStream<'static, ()>;

    /// [`OperationStore::read_since`], the operations committed through this handle as their ordinals only (the
    /// node that wrote them has them; reading them back would cost the node a second copy of its own writes).
    async fn read_since_marked(&self, after_ordinal: u64, limit: usize) -> Result<Vec<FeedEntry>, StoreError>;
}

/// One commit of [`CommitFeed::read_since_marked`], in ordinal order.
// A page of these lives as long as one read; boxing each operation would cost an allocation per entry.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEntry {
    /// Committed through another handle: the whole operation.
    Elsewhere(Committed),
    /// Committed through this handle: where only ([`OperationStore::read_since`] has the operation).
    Own {
        /// Its ordinal.
        ordinal: u64,
    },
}

impl FeedEntry {
    /// The ordinal of the commit.
    pub fn ordinal(&self) -> u64 {
        match self {
            Self::Elsewhere(committed) => committed.ordinal,
            Self::Own { ordinal } => *ordinal,
        }
    }
}

/// The meta key of the replica id.
pub const REPLICA_ID_KEY: &str = "replica_id";

/// The meta key of the replica's Ed25519 seed (unpadded base64url; secret).
pub const REPLICA_KEY_KEY: &str = "replica_key";

/// The meta key of the random replica id a store had before it had a key.
pub const FORMER_REPLICA_ID_KEY: &str = "replica_id_former";

/// 32 random bytes from the operating system, the seed of a new replica key.
pub fn new_seed() -> Result<[u8; 32], StoreError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| StoreError::NoRandomness(e.to_string()))?;
    Ok(seed)
}

/// Checks, before a request reaches the backend's writer, that its operations are dense from the expected
/// revision and that each one's hash chains over its predecessor's within the request. The first operation's link
/// to the stored log is checked by the backend, which alone knows the stored last hash.
pub fn precheck(request: &AppendRequest) -> Result<(), StoreError> {
    let invalid = |reason| StoreError::InvalidOperations {
        unit: request.unit.clone(),
        reason,
    };
    let ops = &request.operations;
    for (i, op) in ops.iter().enumerate() {
        let expected = request.expected_revision + i as u64;
        if op.index != expected {
            return Err(invalid(folio_core::ChainError::IndexGap {
                expected,
                found: op.index,
            }));
        }
        if op.action.scope != request.unit.scope {
            return Err(invalid(folio_core::ChainError::ScopeMismatch { index: op.index }));
        }
        if op.skip > op.index {
            return Err(invalid(folio_core::ChainError::SkipTooLong {
                index: op.index,
                skip: op.skip,
            }));
        }
    }
    if let Some(first) = ops.first() {
        folio_core::check_chain(&first.hash, request.expected_revision + 1, &ops[1..]).map_err(invalid)?;
        if first.id != first.action.id {
            return Err(invalid(folio_core::ChainError::IdMismatch { index: first.index }));
        }
    }
    Ok(())
}

/// Whether `first` chains over `prev` (the stored last hash).
pub fn links_to(prev: &OpHash, first: &Operation) -> bool {
    folio_core::operation_hash(prev, first) == first.hash
}
