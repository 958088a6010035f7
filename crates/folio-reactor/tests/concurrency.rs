//! Concurrency: many submitters on few documents, on a real SQLite file; slow subscribers.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;

use folio_core::{Branch, Document, DocumentId, ModelRegistry, Scope, SyncUnit};
use folio_reactor::{Event, Reactor, ReactorConfig, Received, Submit};
use folio_store::{OperationStore, SqliteStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_submitters_on_ten_documents_lose_and_reorder_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn OperationStore> = Arc::new(SqliteStore::open(dir.path().join("f.db")).await.unwrap());
    let reactor = Reactor::new(store.clone(), Arc::new(ModelRegistry::with_builtin()), common::config());
    let mut docs = Vec::new();
    for d in 0..10 {
        docs.push(
            reactor
                .create_document("folio/json", &format!("d{d}"), None)
                .await
                .unwrap()
                .header
                .id,
        );
    }
    const SUBMITTERS: usize = 1000;
    const JOBS: usize = 3;
    let mut tasks = Vec::new();
    for s in 0..SUBMITTERS {
        let reactor = reactor.clone();
        let id = docs[s % docs.len()];
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for j in 0..JOBS {
                let a = reactor.action("SET", json!({"path": format!("/s{s}/j{j}"), "value": j}), Scope::Global);
                let action_id = a.id;
                loop {
                    match reactor.apply(Submit::new(id, vec![a.clone()])).await {
                        Ok(outcome) => {
                            acked.push((action_id, outcome.operations[0].index));
                            break;
                        }
                        Err(folio_reactor::ReactorError::Overloaded) => tokio::task::yield_now().await,
                        Err(e) => panic!("submitter {s}: {e}"),
                    }
                }
            }
            (id, acked)
        }));
    }
    let mut acked_by_doc: HashMap<DocumentId, Vec<Vec<(uuid::Uuid, u64)>>> = HashMap::new();
    for t in tasks {
        let (id, acked) = t.await.unwrap();
        // Each submitter's sequential jobs landed in its order.
        assert!(acked.windows(2).all(|w| w[0].1 < w[1].1), "{acked:?}");
        acked_by_doc.entry(id).or_default().push(acked);
    }
    let mut total = 0;
    for (id, submitters) in &acked_by_doc {
        let unit = SyncUnit::main(*id, Scope::Global);
        let stored: Vec<_> = store.read(&unit, 0, None).map(|op| op.unwrap()).collect().await;
        let mut seen = HashSet::new();
        for op in &stored {
            assert!(seen.insert(op.action.id), "operation stored twice: {}", op.action.id);
        }
        let acked: Vec<(uuid::Uuid, u64)> = submitters.iter().flatten().copied().collect();
        assert_eq!(stored.len(), acked.len());
        for (action_id, index) in acked {
            assert_eq!(stored[index as usize].action.id, action_id);
        }
        total += stored.len();
    }
    assert_eq!(total, SUBMITTERS * JOBS);
    assert!(folio_store::verify(store.as_ref()).await.unwrap().is_ok());
    // The view agrees with a cold replay.
    let cold = Reactor::new(store.clone(), Arc::new(ModelRegistry::with_builtin()), common::config());
    for id in &docs {
        let warm = reactor.get(*id, &Branch::default()).await.unwrap().unwrap();
        let replayed = cold.get(*id, &Branch::default()).await.unwrap().unwrap();
        assert_eq!(warm.state_hash(), replayed.state_hash());
        assert_eq!(warm.global_json().as_object().unwrap().len(), SUBMITTERS / docs.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_does_not_hold_writers_and_catches_up_from_the_store() {
    let store: Arc<dyn OperationStore> = Arc::new(folio_store::MemoryStore::new());
    let config = ReactorConfig {
        event_capacity: 16,
        ..common::config()
    };
    let reactor = Reactor::new(store.clone(), Arc::new(ModelRegistry::with_builtin()), config);
    let id = reactor
        .create_document("folio/todo-list", "s", None)
        .await
        .unwrap()
        .header
        .id;
    let start_ordinal = store.max_ordinal().await.unwrap();
    let mut stalled = reactor.subscribe();
    // 500 jobs complete although the subscriber reads nothing (it holds at most 16 events).
    for i in 0..500 {
        let a = reactor.action("ADD_TODO", json!({"id": format!("i{i}"), "title": "t"}), Scope::Global);
        reactor.apply(Submit::new(id, vec![a])).await.unwrap();
    }
    assert_eq!(store.head(&SyncUnit::main(id, Scope::Global)).await.unwrap().0, 500);
    // It is told it lagged, then gets the newest events.
    let first = stalled.next().await.unwrap();
    let missed = match first {
        Received::Lagged { missed } => missed,
        other => panic!("expected a lag signal, got {other:?}"),
    };
    assert_eq!(missed, 500 - 16);
    let mut buffered = 0;
    while let Some(Received::Event(Event::OperationsCommitted { .. })) = stalled.try_next() {
        buffered += 1;
    }
    assert_eq!(buffered, 16);
    // Catch up by ordinal and rebuild the document: same state hash as the view.
    let registry = ModelRegistry::with_builtin();
    let mut doc = Document::empty(id, Branch::default());
    let mut after = 0;
    loop {
        let page = store.read_since(after, 64).await.unwrap();
        let Some(last) = page.last() else { break };
        after = last.ordinal;
        for c in page {
            if c.unit.document_id == id {
                doc.apply(&c.operation, &registry).unwrap();
            }
        }
    }
    assert!(after > start_ordinal);
    let view = reactor.get(id, &Branch::default()).await.unwrap().unwrap();
    assert_eq!(doc.state_hash(), view.state_hash());
    assert_eq!(doc.header.revision, view.header.revision);
}
