//! Test helpers: store decorators and a given/when/then harness over the reactor.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use folio_core::{
    Action, Branch, DocumentHeader, DocumentId, HybridClock, OpHash, Operation, Revisions, Scope, SyncUnit,
};
use folio_reactor::{Reactor, ReactorConfig, ReactorError, Submit};
use folio_store::{AppendRequest, Appended, Committed, Keyframe, ListQuery, MemoryStore, OperationStore, StoreError};

/// Forwards everything to an inner store; `before_append` runs first (tests make it wait or interfere), and
/// `failing` makes commits or reads fail as a store that is down would.
pub struct Decorated<F> {
    pub inner: Arc<dyn OperationStore>,
    pub before_append: F,
    pub appends: AtomicUsize,
    pub failing: Failing,
}

/// Switches that make a [`Decorated`] store fail.
#[derive(Default)]
pub struct Failing {
    /// Every append fails (a full disk, a lost database).
    pub commits: std::sync::atomic::AtomicBool,
    /// `max_ordinal` fails (the store does not answer).
    pub reads: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl<F> OperationStore for Decorated<F>
where
    F: Fn(&[AppendRequest]) -> futures::future::BoxFuture<'static, ()> + Send + Sync + 'static,
{
    async fn append_batch(&self, requests: Vec<AppendRequest>) -> Vec<Result<Appended, StoreError>> {
        self.appends.fetch_add(1, Ordering::SeqCst);
        (self.before_append)(&requests).await;
        if self.failing.commits.load(Ordering::SeqCst) {
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
        if self.failing.reads.load(Ordering::SeqCst) {
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

/// A store whose appends wait for a permit of `gate` (tests hold the writers still).
pub fn gated(inner: Arc<dyn OperationStore>, gate: Arc<Semaphore>) -> Arc<dyn OperationStore> {
    Arc::new(Decorated {
        inner,
        appends: AtomicUsize::new(0),
        failing: Failing::default(),
        before_append: move |_: &[AppendRequest]| -> futures::future::BoxFuture<'static, ()> {
            let gate = gate.clone();
            Box::pin(async move {
                gate.acquire().await.expect("gate open").forget();
            })
        },
    })
}

/// Appends one foreign operation (another writer's) to `unit` of `store`, chained on its head.
pub async fn foreign_write(store: &dyn OperationStore, unit: &SyncUnit, n: u64) {
    let (revision, head) = store.head(unit).await.expect("head");
    let clock = HybridClock::new();
    let action = Action::new(
        "ADD_TODO",
        json!({"id": format!("foreign-{n}-{revision}"), "title": "from elsewhere"}),
        unit.scope,
        clock.now(),
    );
    let op = Operation::new(action, revision, 0, None, &head);
    store.append(unit, revision, vec![op]).await.expect("foreign append");
}

/// A small, fast configuration for tests.
pub fn config() -> ReactorConfig {
    ReactorConfig {
        executors: 2,
        queue_capacity: 1000,
        ..ReactorConfig::default()
    }
}

/// A reactor on a fresh memory store.
pub fn memory_reactor() -> (Reactor, Arc<dyn OperationStore>) {
    let store: Arc<dyn OperationStore> = Arc::new(MemoryStore::new());
    (
        Reactor::new(
            store.clone(),
            Arc::new(folio_core::ModelRegistry::with_builtin()),
            config(),
        ),
        store,
    )
}

/// Given / when / then over a todo list on a memory store.
pub struct Scenario {
    pub reactor: Reactor,
    pub store: Arc<dyn OperationStore>,
    pub id: DocumentId,
}

pub async fn given_todo_list(actions: &[(&str, Value)]) -> Scenario {
    let (reactor, store) = memory_reactor();
    let doc = reactor
        .create_document("folio/todo-list", "test", None)
        .await
        .expect("create");
    let id = doc.header.id;
    for (t, input) in actions {
        let action = reactor.action(*t, input.clone(), Scope::Global);
        reactor
            .apply(Submit::new(id, vec![action]))
            .await
            .expect("given action");
    }
    Scenario { reactor, store, id }
}

impl Scenario {
    pub async fn when(&self, actions: &[(&str, Value)]) -> Result<folio_reactor::JobOutcome, ReactorError> {
        let actions = actions
            .iter()
            .map(|(t, input)| self.reactor.action(*t, input.clone(), Scope::Global))
            .collect();
        self.reactor.apply(Submit::new(self.id, actions)).await
    }

    pub async fn state(&self) -> Value {
        self.reactor
            .get(self.id, &Branch::default())
            .await
            .expect("get")
            .expect("exists")
            .global_json()
    }

    pub async fn global_revision(&self) -> u64 {
        self.store
            .head(&SyncUnit::main(self.id, Scope::Global))
            .await
            .expect("head")
            .0
    }
}
