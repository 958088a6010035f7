//! Readiness says when the store is unreachable or refuses commits, and recovers with it.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;

use common::Decorated;
use folio_core::Scope;
use folio_reactor::{Reactor, Submit};
use folio_store::{AppendRequest, MemoryStore};

#[tokio::test]
async fn readiness_follows_the_store() {
    let store = Arc::new(Decorated {
        inner: Arc::new(MemoryStore::new()),
        appends: AtomicUsize::new(0),
        failing: Default::default(),
        before_append: |_: &[AppendRequest]| -> futures::future::BoxFuture<'static, ()> { Box::pin(async {}) },
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
    store.failing.commits.store(true, Ordering::SeqCst);
    assert!(reactor.apply(Submit::new(id, vec![add("a")])).await.is_err());
    let why = reactor.ready(timeout).await.expect_err("not ready");
    assert!(why.contains("refused the last commit"), "{why}");
    store.failing.commits.store(false, Ordering::SeqCst);
    reactor
        .apply(Submit::new(id, vec![add("b")]))
        .await
        .expect("a commit again");
    assert_eq!(reactor.ready(timeout).await, Ok(()));

    // The store does not answer reads.
    store.failing.reads.store(true, Ordering::SeqCst);
    let why = reactor.ready(timeout).await.expect_err("not ready");
    assert!(why.contains("does not answer"), "{why}");
    store.failing.reads.store(false, Ordering::SeqCst);
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
