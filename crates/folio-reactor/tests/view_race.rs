//! A rehydration that read the store before operations were folded in does not cache what it read: the next read
//! sees the new operations (another node's, or this node's own).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::json;
use tokio::sync::Notify;

use folio_core::{Branch, DocumentHeader, DocumentId, ModelRegistry, OpHash, Operation, Revisions, Scope, SyncUnit};
use folio_reactor::{DocKey, DocumentView, Reactor, Submit};
use folio_store::{AppendRequest, Appended, Committed, Keyframe, ListQuery, MemoryStore, OperationStore, StoreError};

/// A memory store whose `head` of a global unit stops, once armed, until released: a rehydration caught half-way.
struct Paused {
    inner: MemoryStore,
    armed: AtomicBool,
    reached: Notify,
    release: Notify,
}

#[async_trait]
impl OperationStore for Paused {
    async fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        self.inner.append_batch(requests).await
    }
    fn read(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> BoxStream<'static, Result<Operation, StoreError>> {
        self.inner.read(unit, from, to)
    }
    async fn head(&self, unit: &SyncUnit) -> Result<(u64, OpHash), StoreError> {
        let head = self.inner.head(unit).await;
        if unit.scope == Scope::Global && self.armed.swap(false, Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
        head
    }
    async fn revisions(&self, id: DocumentId, branch: &Branch) -> Result<Revisions, StoreError> {
        self.inner.revisions(id, branch).await
    }
    async fn header(&self, id: DocumentId, branch: &Branch) -> Result<Option<DocumentHeader>, StoreError> {
        self.inner.header(id, branch).await
    }
    async fn list_headers(&self, query: &ListQuery) -> Result<Vec<DocumentHeader>, StoreError> {
        self.inner.list_headers(query).await
    }
    async fn read_since(&self, after: u64, limit: usize) -> Result<Vec<Committed>, StoreError> {
        self.inner.read_since(after, limit).await
    }
    async fn max_ordinal(&self) -> Result<u64, StoreError> {
        self.inner.max_ordinal().await
    }
    async fn units(&self) -> Result<Vec<SyncUnit>, StoreError> {
        self.inner.units().await
    }
    async fn put_keyframe(&self, keyframe: &Keyframe) -> Result<(), StoreError> {
        self.inner.put_keyframe(keyframe).await
    }
    async fn nearest_keyframe(&self, unit: &SyncUnit, revision: u64) -> Result<Option<Keyframe>, StoreError> {
        self.inner.nearest_keyframe(unit, revision).await
    }
    async fn get_meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.inner.get_meta(key).await
    }
    async fn put_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner.put_meta(key, value).await
    }
    async fn put_meta_if_absent(&self, key: &str, value: &str) -> Result<String, StoreError> {
        self.inner.put_meta_if_absent(key, value).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_that_raced_with_a_commit_is_not_cached() {
    let store = Arc::new(Paused {
        inner: MemoryStore::new(),
        armed: AtomicBool::new(false),
        reached: Notify::new(),
        release: Notify::new(),
    });
    // A writer (another node, as far as this view knows) on the same store.
    let writer = Reactor::with_defaults(store.clone());
    let id = writer
        .create_document("folio/todo-list", "t", None)
        .await
        .expect("create")
        .header
        .id;
    let view = Arc::new(DocumentView::new(
        store.clone(),
        Arc::new(ModelRegistry::with_builtin()),
        1 << 20,
        0,
    ));
    let key = DocKey::new(id, Branch::default());

    // The view starts to rehydrate and stops after reading the global head (revision 0)...
    store.armed.store(true, Ordering::SeqCst);
    let reading = tokio::spawn({
        let (view, key) = (view.clone(), key.clone());
        async move { view.get(&key).await }
    });
    store.reached.notified().await;
    // ...an operation is committed and folded in (the document is not cached yet)...
    let add = writer.action("ADD_TODO", json!({ "id": "a", "title": "A" }), Scope::Global);
    let outcome = writer.apply(Submit::new(id, vec![add])).await.expect("apply");
    view.apply_committed(&key, &outcome.operations);
    // ...then the rehydration ends with what it read before.
    store.release.notify_one();
    let raced = reading.await.expect("task").expect("get").expect("created");
    assert_eq!(raced.header.revision.global, 0);
    assert!(
        view.cached(&key).is_none(),
        "a read that raced with a commit is not cached"
    );
    let next = view.get(&key).await.expect("get").expect("created");
    assert_eq!(next.header.revision.global, 1, "the next read sees the operation");
}
