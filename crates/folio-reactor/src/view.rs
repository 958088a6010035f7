//! `DocumentView`: hydrated documents, cached by bytes (LRU), rehydrated from the nearest keyframe and the streamed
//! tail of the log.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::Notify;

use folio_core::merge::Cuts;
use folio_core::{ApplyError, Branch, Document, DocumentId, ModelRegistry, Operation, Scope, SyncUnit};
use folio_store::{Keyframe, OperationStore};

use crate::ReactorError;

/// A document on a branch: what the cache and the executors key by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocKey {
    /// The document.
    pub id: DocumentId,
    /// The branch.
    pub branch: Branch,
}

impl DocKey {
    /// The key of `id` on `branch`.
    pub fn new(id: DocumentId, branch: Branch) -> Self {
        Self { id, branch }
    }

    /// The unit of this document in `scope`.
    pub fn unit(&self, scope: Scope) -> SyncUnit {
        SyncUnit::new(self.id, scope, self.branch.clone())
    }
}

struct Entry {
    doc: Arc<Document>,
    size: usize,
    tick: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<DocKey, Entry>,
    order: BTreeMap<u64, DocKey>,
    bytes: usize,
    tick: u64,
    /// Bumped for a key's slot each time the key's operations are folded in or its entry dropped: a rehydration
    /// that ran meanwhile (it read the store before those operations) must not cache what it read.
    changes: Vec<u64>,
}

/// Slots of [`Lru::changes`] (keys share them: a collision only skips caching one read).
const CHANGE_SLOTS: usize = 1024;

impl Lru {
    fn changes_of(&self, key: &DocKey) -> u64 {
        self.changes.get(change_slot(key)).copied().unwrap_or(0)
    }

    fn changed(&mut self, key: &DocKey) {
        if self.changes.is_empty() {
            self.changes = vec![0; CHANGE_SLOTS];
        }
        self.changes[change_slot(key)] += 1;
    }

    fn touch(&mut self, key: &DocKey) -> Option<Arc<Document>> {
        let tick = self.tick + 1;
        let entry = self.entries.get_mut(key)?;
        self.order.remove(&entry.tick);
        entry.tick = tick;
        self.tick = tick;
        self.order.insert(tick, key.clone());
        Some(entry.doc.clone())
    }

    fn remove(&mut self, key: &DocKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.order.remove(&entry.tick);
            self.bytes -= entry.size;
        }
    }

    fn insert(&mut self, key: DocKey, doc: Arc<Document>, size: usize, limit: usize) {
        self.remove(&key);
        self.tick += 1;
        self.order.insert(self.tick, key.clone());
        self.entries.insert(
            key,
            Entry {
                doc,
                size,
                tick: self.tick,
            },
        );
        self.bytes += size;
        while self.bytes > limit && self.entries.len() > 1 {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(entry) = self.entries.remove(&oldest) {
                self.bytes -= entry.size;
            }
        }
    }
}

fn change_slot(key: &DocKey) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % CHANGE_SLOTS as u64) as usize
}

/// Bytes counted per applied operation between two measurements of a document's size.
const BYTES_PER_OP: usize = 128;

/// The most operations of each scope a cold load takes with its first read ([`OperationStore::read_cold`]); a longer
/// tail is streamed after it.
pub const COLD_READ_LIMIT: usize = 512;

/// Read model of documents over an [`OperationStore`]. Cheap to share behind an `Arc`.
pub struct DocumentView {
    store: Arc<dyn OperationStore>,
    registry: Arc<ModelRegistry>,
    cache: Mutex<Lru>,
    cache_bytes: usize,
    keyframe_every: u64,
    committed: Notify,
    /// Keyframe writes under way, awaited by [`DocumentView::flush`].
    keyframe_writes: Mutex<tokio::task::JoinSet<()>>,
}

impl DocumentView {
    /// A view over `store`, caching up to `cache_bytes`, storing keyframes every `keyframe_every` global
    /// operations (0: never).
    pub fn new(
        store: Arc<dyn OperationStore>,
        registry: Arc<ModelRegistry>,
        cache_bytes: usize,
        keyframe_every: u64,
    ) -> Self {
        Self {
            store,
            registry,
            cache: Mutex::new(Lru::default()),
            cache_bytes,
            keyframe_every,
            committed: Notify::new(),
            keyframe_writes: Mutex::new(tokio::task::JoinSet::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cached document, without touching the store.
    pub fn cached(&self, key: &DocKey) -> Option<Arc<Document>> {
        self.lock().touch(key)
    }

    /// Bytes the cache holds now (approximate).
    pub fn cached_bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The document at its head: from the cache, or rehydrated (and cached). `None` when it was never created.
    pub async fn get(&self, key: &DocKey) -> Result<Option<Arc<Document>>, ReactorError> {
        if let Some(doc) = self.cached(key) {
            metrics::counter!("folio_cache_hits_total").increment(1);
            return Ok(Some(doc));
        }
        metrics::counter!("folio_cache_misses_total").increment(1);
        let changes = self.lock().changes_of(key);
        let Some(doc) = self.hydrate(key, None).await? else {
            return Ok(None);
        };
        let size = doc.approximate_size();
        let doc = Arc::new(doc);
        let mut cache = self.lock();
        if cache.changes_of(key) == changes {
            cache.insert(key.clone(), doc.clone(), size, self.cache_bytes);
        }
        Ok(Some(doc))
    }

    /// The document as it was at global revision `revision` (time travel; not cached).
    pub async fn get_at(&self, key: &DocKey, revision: u64) -> Result<Option<Document>, ReactorError> {
        self.hydrate(key, Some(revision)).await
    }

    /// The document once its global revision is at least `min_revision`, waiting up to `timeout` for commits
    /// (of this process, or of others: the store is polled while waiting).
    pub async fn wait_for(
        &self,
        key: &DocKey,
        min_revision: u64,
        timeout: Duration,
    ) -> Result<Arc<Document>, ReactorError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.committed.notified();
            let doc = self.get(key).await?.ok_or(ReactorError::DocumentNotFound(key.id))?;
            if doc.header.revision.global >= min_revision {
                return Ok(doc);
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(ReactorError::RevisionNotReached {
                    wanted: min_revision,
                    reached: doc.header.revision.global,
                });
            }
            let poll = (deadline - now).min(Duration::from_millis(50));
            if tokio::time::timeout(poll, notified).await.is_err() {
                // Nothing committed here: another process may have written. Re-read from the store.
                self.invalidate(key);
            }
        }
    }

    /// Forgets the cached document (the next read rehydrates it).
    pub fn invalidate(&self, key: &DocKey) {
        let mut cache = self.lock();
        cache.remove(key);
        cache.changed(key);
    }

    /// Folds operations just committed by this process into the cached document, if cached. An operation that does
    /// not follow the cached revision (another process wrote in between) drops the entry instead.
    pub fn apply_committed(&self, key: &DocKey, operations: &[Operation]) {
        {
            let mut cache = self.lock();
            cache.changed(key);
            let applied = cache.entries.get_mut(key).map(|entry| {
                let doc = Arc::make_mut(&mut entry.doc);
                let ok = operations.iter().all(|op| doc.apply(op, &self.registry).is_ok());
                if ok {
                    entry.size += operations.len() * BYTES_PER_OP;
                }
                ok
            });
            match applied {
                Some(true) => cache.bytes += operations.len() * BYTES_PER_OP,
                Some(false) => cache.remove(key),
                None => {}
            }
        }
        self.committed.notify_waiters();
    }

    /// Stores a keyframe of `doc`'s global state when its revision crossed a multiple of the keyframe interval
    /// since `previous_revision`.
    pub async fn maybe_keyframe(&self, key: &DocKey, doc: &Document, previous_revision: u64) {
        let k = self.keyframe_every;
        let revision = doc.header.revision.global;
        if k == 0 || revision / k == previous_revision / k {
            return;
        }
        self.put_keyframe(key, doc).await;
    }

    /// Stores a keyframe of `doc`'s global state now (after a rebase, so later reads start past the skip).
    pub async fn keyframe_now(&self, key: &DocKey, doc: &Document) {
        if self.keyframe_every > 0 {
            self.put_keyframe(key, doc).await;
        }
    }

    /// Serializes the state once (the hash is taken over the same bytes) and stores the keyframe in the
    /// background: a keyframe only speeds up later reads, so the writer that crossed the interval does not wait for
    /// it (a lost one is rebuilt by the next read that folds a long tail).
    async fn put_keyframe(&self, key: &DocKey, doc: &Document) {
        let Some(model) = doc.model() else { return };
        let state = model.state_to_string(&doc.state);
        let keyframe = Keyframe {
            unit: key.unit(Scope::Global),
            revision: doc.header.revision.global,
            last_hash: doc.head(Scope::Global),
            state_hash: folio_core::hash::bytes_hash(state.as_bytes()),
            state,
            seen: doc.seen(Scope::Global).clone(),
        };
        let store = self.store.clone();
        let mut writes = self.keyframe_writes.lock().unwrap_or_else(|e| e.into_inner());
        while writes.try_join_next().is_some() {}
        writes.spawn(async move {
            if let Err(e) = store.put_keyframe(&keyframe).await {
                tracing::warn!("keyframe of {} at {} not stored: {e}", keyframe.unit, keyframe.revision);
            }
        });
    }

    /// Waits for the keyframe writes under way (the reactor's shutdown calls it).
    pub async fn flush(&self) {
        let mut writes = std::mem::take(&mut *self.keyframe_writes.lock().unwrap_or_else(|e| e.into_inner()));
        while writes.join_next().await.is_some() {}
    }

    /// Rehydrates a document from the store: the `document` scope (creation, name), the nearest keyframe at or
    /// below the target global revision and the streamed tail, then the `local` scope. Nothing is cached.
    pub async fn hydrate(&self, key: &DocKey, global_revision: Option<u64>) -> Result<Option<Document>, ReactorError> {
        self.hydrate_at(key, global_revision, None).await
    }

    /// Rehydrates a document with its global scope at `global_revision` and its document scope at
    /// `document_revision` (each at its head when `None`): the state a rebase rewinds to.
    ///
    /// Logs are folded in one streamed pass, after the positions of their skipping operations (an indexed query,
    /// see [`OperationStore::skips`]): only effective operations are folded, and when a cut reaches below the
    /// keyframe the fold would start from, it starts from an earlier one. At the heads the first reads are one
    /// [`OperationStore::read_cold`] (the heads, the keyframe, the skips and the first operations of every scope:
    /// one round trip on PostgreSQL), and only a longer tail is streamed after it.
    pub async fn hydrate_at(
        &self,
        key: &DocKey,
        global_revision: Option<u64>,
        document_revision: Option<u64>,
    ) -> Result<Option<Document>, ReactorError> {
        let mut cold = match (global_revision, document_revision) {
            (None, None) => Some(
                self.store
                    .read_cold(key.id, &key.branch, self.keyframe_every > 0, COLD_READ_LIMIT)
                    .await?,
            ),
            _ => None,
        };
        let mut doc = Document::empty(key.id, key.branch.clone());
        let document = key.unit(Scope::Document);
        match cold.as_mut() {
            Some(c) => {
                let cuts = Cuts::from_skips(std::mem::take(&mut c.document_skips));
                let first = std::mem::take(&mut c.document);
                self.fold_read(&mut doc, &document, 0, first, c.heads.document, &cuts)
                    .await?;
            }
            None => {
                let (_, cuts) = self.cuts(&document, None, document_revision).await?;
                self.fold(&mut doc, &document, 0, document_revision, &cuts).await?;
            }
        }
        if !doc.is_created() {
            return Ok(None);
        }
        let global = key.unit(Scope::Global);
        let (target, keyframe, first) = match cold.as_mut() {
            Some(c) => {
                let skips = Cuts::from_skips(std::mem::take(&mut c.global_skips));
                (
                    c.heads.global,
                    c.keyframe.take(),
                    Some((std::mem::take(&mut c.global), skips)),
                )
            }
            None => {
                let target = match global_revision {
                    Some(r) => r,
                    None => self.store.head(&global).await?.0,
                };
                let keyframe = match self.keyframe_every {
                    0 => None,
                    _ => self.store.nearest_keyframe(&global, target).await?,
                };
                (target, keyframe, None)
            }
        };
        let keyframe_at = keyframe.as_ref().map_or(0, |k| k.revision);
        let (from, cuts) = match first {
            // The cold read's operations start at the keyframe: fold them when no merge's cut reaches below it and
            // the keyframe restores.
            Some((first, skips))
                if skips.min_cut().is_none_or(|cut| cut >= keyframe_at)
                    && self.restore(&mut doc, keyframe.as_ref()) == keyframe_at =>
            {
                self.fold_read(&mut doc, &global, keyframe_at, first, target, &skips)
                    .await?;
                (keyframe_at, skips)
            }
            _ => {
                // From a keyframe (or the start) that no cut reaches below; from the start when it does not restore.
                let (keyframe, mut cuts) = self.cuts(&global, keyframe, Some(target)).await?;
                let from = self.restore(&mut doc, keyframe.as_ref());
                if from == 0 && keyframe.is_some() {
                    cuts = self.cuts(&global, None, Some(target)).await?.1;
                }
                self.fold(&mut doc, &global, from, Some(target), &cuts).await?;
                (from, cuts)
            }
        };
        if doc.header.revision.global < target {
            return Err(ReactorError::RevisionNotReached {
                wanted: target,
                reached: doc.header.revision.global,
            });
        }
        // The local scope is never merged (the executor refuses to), so its log has no skips to ask for.
        let local = key.unit(Scope::Local);
        let none = Cuts::new(Vec::new());
        match cold {
            Some(c) => {
                self.fold_read(&mut doc, &local, 0, c.local, c.heads.local, &none)
                    .await?
            }
            None => self.fold(&mut doc, &local, 0, None, &none).await?,
        }
        // A fold past a merge stores a keyframe at the head, so the next one starts after it.
        if global_revision.is_none()
            && self.keyframe_every > 0
            && (!cuts.is_empty() || target - from >= self.keyframe_every)
        {
            self.put_keyframe(key, &doc).await;
        }
        Ok(Some(doc))
    }

    /// Folds `first` (`unit`'s operations from `from`, as [`OperationStore::read_cold`] read them), then streams
    /// the rest up to `head` when they stop short of it.
    async fn fold_read(
        &self,
        doc: &mut Document,
        unit: &SyncUnit,
        from: u64,
        first: Vec<Operation>,
        head: u64,
        cuts: &Cuts,
    ) -> Result<(), ReactorError> {
        let next = first.last().map_or(from, |op| op.index + 1);
        for op in &first {
            self.fold_one(doc, unit, op, cuts)?;
        }
        if next < head {
            self.fold(doc, unit, next, Some(head), cuts).await?;
        }
        Ok(())
    }

    /// Puts the keyframe's global state into `doc`; returns the revision to fold from.
    fn restore(&self, doc: &mut Document, keyframe: Option<&Keyframe>) -> u64 {
        let (Some(keyframe), Some(model)) = (keyframe, doc.model().cloned()) else {
            return 0;
        };
        match model.state_from_json(&keyframe.state) {
            Ok(state) => {
                doc.restore_global(state, keyframe.revision, keyframe.last_hash, keyframe.seen.clone());
                keyframe.revision
            }
            Err(e) => {
                tracing::warn!("keyframe of {} at {} unreadable: {e}", keyframe.unit, keyframe.revision);
                0
            }
        }
    }

    /// The cuts of the skipping operations of `unit` below `to`, from a keyframe (or the start) that no cut reaches
    /// below: returns that keyframe (`None`: fold from 0) and the cuts.
    async fn cuts(
        &self,
        unit: &SyncUnit,
        mut keyframe: Option<Keyframe>,
        to: Option<u64>,
    ) -> Result<(Option<Keyframe>, Cuts), ReactorError> {
        loop {
            let from = keyframe.as_ref().map_or(0, |k| k.revision);
            let cuts = Cuts::from_skips(self.store.skips(unit, from, to).await?);
            match cuts.min_cut() {
                Some(cut) if cut < from => {
                    keyframe = match self.keyframe_every {
                        0 => None,
                        _ => self.store.nearest_keyframe(unit, cut).await?,
                    };
                }
                _ => return Ok((keyframe, cuts)),
            }
        }
    }

    /// Folds `unit`'s operations `from..to` into `doc`, the effective ones as operations and the others as
    /// occupied indexes (`cuts` from [`Self::cuts`]).
    async fn fold(
        &self,
        doc: &mut Document,
        unit: &SyncUnit,
        from: u64,
        to: Option<u64>,
        cuts: &Cuts,
    ) -> Result<(), ReactorError> {
        let mut ops = self.store.read(unit, from, to);
        while let Some(op) = ops.next().await {
            self.fold_one(doc, unit, &op?, cuts)?;
        }
        Ok(())
    }

    /// Folds one operation of `unit` into `doc`: effective unless `cuts` cut it.
    fn fold_one(&self, doc: &mut Document, unit: &SyncUnit, op: &Operation, cuts: &Cuts) -> Result<(), ReactorError> {
        let effective = cuts.is_effective(op.index);
        doc.fold(op, effective, &self.registry).map_err(|e| match e {
            ApplyError::ReducerPanicked(message) => {
                ReactorError::ReducerPanicked(format!("{unit} at {}: {message}", op.index))
            }
            e => ReactorError::Corrupt(format!("{unit} at {}: {e}", op.index)),
        })
    }
}
