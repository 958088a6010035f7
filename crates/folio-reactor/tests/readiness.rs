//! Readiness says when the store is unreachable or refuses commits, and recovers with it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::json;

use folio_core::{Branch, DocumentHeader, DocumentId, OpHash, Operation, Revisions, Scope, SyncUnit};
use folio_reactor::{Reactor, Submit};
use folio_store::{AppendRequest, Appended, Committed, Keyframe, ListQuery, MemoryStore, OperationStore, StoreError};

/// A memory store that can be made unreachable for reads, or made to refuse commits (a full disk).
struct Flaky {
    inner: MemoryStore,
    unreachable: AtomicBool,
    refuse_commits: AtomicBool,
}

#[async_trait]
impl OperationStore for Flaky {
    async fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        if self.refuse_commits.load(Ordering::SeqCst) {
            return requests.iter().map(|_| Err(StoreError::Closed)).collect();
        }
        self.inner.append_batch(requests).await
    }
    fn read(&self, unit: &SyncUnit, from: u64, to: Option<u64>) -> BoxStream<'static, Result<Operation, StoreError>> {
        self.inner.read(unit, from, to)
    }
    async fn head(&self, unit: &SyncUnit) -> Result<(u64, OpHash), StoreError> {
        self.inner.head(unit).await
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
        if self.unreachable.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
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

#[tokio::test]
async fn readiness_follows_the_store() {
    let store = Arc::new(Flaky {
        inner: MemoryStore::new(),
        unreachable: AtomicBool::new(false),
        refuse_commits: AtomicBool::new(false),
    });
    let reactor = Reactor::with_defaults(store.clone());
    let timeout = Duration::from_secs(1);
    assert_eq!(reactor.ready(timeout).await, Ok(()));
    let id = reactor
        .create_document("folio/todo-list", "t", None)
        .await
        .expect("create")
        .header
        .id;
    let add = |item: &str| reactor.action("ADD_TODO", json!({ "id": item, "title": item }), Scope::Global);

    // Commits refused: the job fails, readiness says why, until a commit succeeds again.
    store.refuse_commits.store(true, Ordering::SeqCst);
    assert!(reactor.apply(Submit::new(id, vec![add("a")])).await.is_err());
    let why = reactor.ready(timeout).await.expect_err("not ready");
    assert!(why.contains("refused the last commit"), "{why}");
    store.refuse_commits.store(false, Ordering::SeqCst);
    reactor
        .apply(Submit::new(id, vec![add("b")]))
        .await
        .expect("a commit again");
    assert_eq!(reactor.ready(timeout).await, Ok(()));

    // The store does not answer reads.
    store.unreachable.store(true, Ordering::SeqCst);
    let why = reactor.ready(timeout).await.expect_err("not ready");
    assert!(why.contains("does not answer"), "{why}");
    store.unreachable.store(false, Ordering::SeqCst);
    assert_eq!(reactor.ready(timeout).await, Ok(()));

    reactor.shutdown().await;
    assert!(
        reactor
            .ready(timeout)
            .await
            .expect_err("stopped")
            .contains("shutting down")
    );
}
