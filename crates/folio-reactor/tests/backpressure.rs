//! Backpressure and retries, on tokio's paused clock: a full queue refuses at once; a moving head is retried a
//! bounded number of times.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;
use tokio::sync::Semaphore;

use common::*;
use folio_core::{ModelRegistry, Scope, SyncUnit};
use folio_reactor::{Reactor, ReactorConfig, ReactorError, Submit};
use folio_store::{AppendRequest, MemoryStore, OperationStore};

#[tokio::test(start_paused = true)]
async fn a_full_queue_refuses_with_overloaded_and_recovers() {
    let memory: Arc<dyn OperationStore> = Arc::new(MemoryStore::new());
    let gate = Arc::new(Semaphore::new(1)); // lets the creation through, then holds the writer
    let store = gated(memory.clone(), gate.clone());
    let config = ReactorConfig {
        executors: 1,
        queue_capacity: 8,
        max_batch_jobs: 1,
        ..common::config()
    };
    let reactor = Reactor::new(store, Arc::new(ModelRegistry::with_builtin()), config);
    let id = reactor
        .create_document("folio/todo-list", "q", None)
        .await
        .unwrap()
        .header
        .id;
    let mut accepted = Vec::new();
    let mut refused = 0;
    for i in 0..50 {
        let a = reactor.action("ADD_TODO", json!({"id": format!("i{i}"), "title": "t"}), Scope::Global);
        match reactor.submit(Submit::new(id, vec![a])) {
            Ok(h) => accepted.push(h),
            Err(ReactorError::Overloaded) => refused += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
        tokio::task::yield_now().await;
    }
    // 8 wait in the queue, and the executor holds one more at the gate.
    assert_eq!(accepted.len(), 9, "accepted {} refused {refused}", accepted.len());
    assert_eq!(refused, 41);
    gate.add_permits(1000);
    for (i, h) in accepted.into_iter().enumerate() {
        assert_eq!(h.wait().await.unwrap().revision, i as u64 + 1);
    }
    // Once drained, the queue takes jobs again.
    let a = reactor.action("ADD_TODO", json!({"id": "after", "title": "t"}), Scope::Global);
    assert_eq!(reactor.apply(Submit::new(id, vec![a])).await.unwrap().revision, 10);
}

/// A store where another writer slips in an operation before each of the first `interfere` appends to the global
/// unit.
fn interfering(inner: Arc<dyn OperationStore>, interfere: usize) -> (Arc<dyn OperationStore>, Arc<AtomicUsize>) {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let store = Arc::new(Decorated {
        inner: inner.clone(),
        appends: AtomicUsize::new(0),
        failing: Default::default(),
        before_append: move |requests: &[AppendRequest]| -> futures::future::BoxFuture<'static, ()> {
            let units: Vec<SyncUnit> = requests
                .iter()
                .filter(|r| r.unit.scope == Scope::Global)
                .map(|r| r.unit.clone())
                .collect();
            let inner = inner.clone();
            let c = c.clone();
            Box::pin(async move {
                for unit in units {
                    let n = c.fetch_add(1, Ordering::SeqCst);
                    if n < interfere {
                        foreign_write(inner.as_ref(), &unit, n as u64).await;
                    }
                }
            })
        },
    });
    (store, count)
}

#[tokio::test(start_paused = true)]
async fn a_moving_head_is_reloaded_and_the_job_rerun() {
    let memory: Arc<dyn OperationStore> = Arc::new(MemoryStore::new());
    let (store, interfered) = interfering(memory.clone(), 3);
    let reactor = Reactor::new(store, Arc::new(ModelRegistry::with_builtin()), common::config());
    let id = reactor
        .create_document("folio/todo-list", "r", None)
        .await
        .unwrap()
        .header
        .id;
    let a = reactor.action("ADD_TODO", json!({"id": "mine", "title": "t"}), Scope::Global);
    let outcome = reactor
        .apply(Submit::new(id, vec![a]))
        .await
        .expect("succeeds after retries");
    // Three foreign writes came first; the job landed on top of them.
    assert_eq!(outcome.revision, 4);
    assert_eq!(interfered.load(Ordering::SeqCst), 4);
    let doc = reactor.get(id, &Default::default()).await.unwrap().unwrap();
    let items = doc.global_json()["items"].as_object().unwrap().len();
    assert_eq!(items, 4, "{}", doc.global_json());
    assert!(folio_store::verify(memory.as_ref()).await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_job_gives_up_after_its_retries_with_the_history_of_its_attempts() {
    let memory: Arc<dyn OperationStore> = Arc::new(MemoryStore::new());
    let (store, _) = interfering(memory.clone(), usize::MAX);
    let config = ReactorConfig {
        max_retries: 4,
        ..common::config()
    };
    let reactor = Reactor::new(store, Arc::new(ModelRegistry::with_builtin()), config);
    let id = reactor
        .create_document("folio/todo-list", "r", None)
        .await
        .unwrap()
        .header
        .id;
    let a = reactor.action("ADD_TODO", json!({"id": "mine", "title": "t"}), Scope::Global);
    let started = tokio::time::Instant::now();
    match reactor.apply(Submit::new(id, vec![a])).await {
        Err(ReactorError::RetriesExhausted { attempts }) => {
            assert_eq!(attempts.len(), 5);
            assert!(attempts[0].contains("expected revision 0"), "{attempts:?}");
        }
        other => panic!("expected RetriesExhausted, got {other:?}"),
    }
    // Backoff grew with the attempts (paused clock: measured in virtual time).
    assert!(started.elapsed() >= std::time::Duration::from_millis(2 + 4 + 6 + 8));
    // Only the foreign operations are stored; the job wrote nothing.
    let unit = SyncUnit::main(id, Scope::Global);
    let (revision, _) = memory.head(&unit).await.unwrap();
    assert_eq!(revision, 5);
    assert!(folio_store::verify(memory.as_ref()).await.unwrap().is_ok());
}
