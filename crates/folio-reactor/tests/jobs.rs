//! Jobs, given / when / then: what the reactor commits, refuses, and reports.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use common::*;
use folio_core::{Branch, DocumentId, Scope, SyncUnit};
use folio_reactor::{Event, JobStatus, Reactor, ReactorConfig, ReactorError, Received, Submit};
use folio_store::{ListQuery, MemoryStore, OperationStore};

#[tokio::test]
async fn an_accepted_job_commits_its_operations_and_the_view_shows_them() {
    let s = given_todo_list(&[("ADD_TODO", json!({"id": "a", "title": "A"}))]).await;
    let outcome = s
        .when(&[
            ("ADD_TODO", json!({"id": "b", "title": "B"})),
            ("UPDATE_TODO", json!({"id": "a", "done": true})),
        ])
        .await
        .expect("accepted");
    assert_eq!(outcome.revision, 3);
    assert_eq!(
        outcome.operations.iter().map(|o| o.index).collect::<Vec<_>>(),
        vec![1, 2]
    );
    assert_eq!(outcome.ordinals.len(), 2);
    assert_eq!(s.global_revision().await, 3);
    let state = s.state().await;
    assert_eq!(state["items"]["a"]["done"], true);
    assert_eq!(state["items"]["b"]["title"], "B");
    assert!(folio_store::verify(s.store.as_ref()).await.unwrap().is_ok());
}

#[tokio::test]
async fn a_rejected_action_fails_the_whole_job_and_writes_nothing() {
    let s = given_todo_list(&[("ADD_TODO", json!({"id": "a", "title": "A"}))]).await;
    let before = s.state().await;
    let err = s
        .when(&[
            ("ADD_TODO", json!({"id": "b", "title": "B"})),
            ("ADD_TODO", json!({"id": "c", "title": ""})),
        ])
        .await
        .expect_err("rejected");
    match err {
        ReactorError::ActionRejected { action_index, reason } => {
            assert_eq!(action_index, 1);
            assert_eq!(reason.code, "EMPTY_TITLE");
        }
        other => panic!("expected ActionRejected, got {other:?}"),
    }
    assert_eq!(s.global_revision().await, 1);
    assert_eq!(s.state().await, before);
    // The next job runs on the committed state, not on the refused job's partial changes.
    s.when(&[("ADD_TODO", json!({"id": "d", "title": "D"}))])
        .await
        .expect("next job");
    let state = s.state().await;
    assert!(state["items"].get("b").is_none(), "refused job leaked: {state}");
    assert_eq!(state["items"]["d"]["title"], "D");
}

#[tokio::test]
async fn jobs_batched_together_keep_their_own_fates() {
    let s = given_todo_list(&[]).await;
    let mk = |t: &str, input| s.reactor.action(t, input, Scope::Global);
    // Submitted without waiting, so the executor takes them in one batch.
    let a = s
        .reactor
        .submit(Submit::new(
            s.id,
            vec![mk("ADD_TODO", json!({"id": "a", "title": "A"}))],
        ))
        .unwrap();
    let b = s
        .reactor
        .submit(Submit::new(
            s.id,
            vec![
                mk("ADD_TODO", json!({"id": "b", "title": "B"})),
                mk("DELETE_TODO", json!({"id": ""})),
            ],
        ))
        .unwrap();
    let c = s
        .reactor
        .submit(Submit::new(
            s.id,
            vec![mk("ADD_TODO", json!({"id": "c", "title": "C"}))],
        ))
        .unwrap();
    assert_eq!(a.wait().await.unwrap().revision, 1);
    assert!(matches!(
        b.wait().await,
        Err(ReactorError::ActionRejected { action_index: 1, .. })
    ));
    assert_eq!(c.wait().await.unwrap().revision, 2);
    let state = s.state().await;
    assert_eq!(
        state["items"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["a", "c"]
    );
    assert!(folio_store::verify(s.store.as_ref()).await.unwrap().is_ok());
}

#[tokio::test]
async fn a_stale_expected_revision_is_a_revision_mismatch() {
    let s = given_todo_list(&[("ADD_TODO", json!({"id": "a", "title": "A"}))]).await;
    let action = s
        .reactor
        .action("ADD_TODO", json!({"id": "b", "title": "B"}), Scope::Global);
    let err = s
        .reactor
        .apply(Submit {
            expected_revision: Some(0),
            ..Submit::new(s.id, vec![action.clone()])
        })
        .await
        .expect_err("stale");
    assert_eq!(err, ReactorError::RevisionMismatch { expected: 0, actual: 1 });
    assert_eq!(s.global_revision().await, 1);
    let ok = s
        .reactor
        .apply(Submit {
            expected_revision: Some(1),
            ..Submit::new(s.id, vec![action])
        })
        .await
        .expect("current");
    assert_eq!(ok.revision, 2);
}

#[tokio::test]
async fn documents_are_created_once_of_known_types_only() {
    let (reactor, _) = memory_reactor();
    let id = DocumentId::new();
    reactor
        .create_document("folio/json", "j", Some(id))
        .await
        .expect("create");
    assert_eq!(
        reactor
            .create_document("folio/json", "again", Some(id))
            .await
            .unwrap_err(),
        ReactorError::DocumentExists(id)
    );
    assert!(matches!(
        reactor.create_document("nope/nope", "x", None).await,
        Err(ReactorError::UnknownDocumentType(t)) if t == "nope/nope"
    ));
    let missing = DocumentId::new();
    let action = reactor.action("SET", json!({"path": "/a", "value": 1}), Scope::Global);
    assert_eq!(
        reactor.apply(Submit::new(missing, vec![action])).await.unwrap_err(),
        ReactorError::DocumentNotFound(missing)
    );
    assert!(reactor.get(missing, &Branch::default()).await.unwrap().is_none());
}

#[tokio::test]
async fn malformed_jobs_are_refused_at_submit() {
    let (reactor, _) = memory_reactor();
    let id = DocumentId::new();
    assert!(matches!(
        reactor.submit(Submit::new(id, vec![])),
        Err(ReactorError::InvalidRequest(_))
    ));
    let g = reactor.action("SET", json!({"path": "/a", "value": 1}), Scope::Global);
    let l = reactor.action("SET", json!({"path": "/a", "value": 1}), Scope::Local);
    assert!(matches!(
        reactor.submit(Submit::new(id, vec![g, l])),
        Err(ReactorError::InvalidRequest(_))
    ));
}

#[tokio::test]
async fn job_status_follows_the_job() {
    let s = given_todo_list(&[]).await;
    let ok = s
        .reactor
        .submit(Submit::new(
            s.id,
            vec![
                s.reactor
                    .action("ADD_TODO", json!({"id": "a", "title": "A"}), Scope::Global),
            ],
        ))
        .unwrap();
    let ok_id = ok.id;
    ok.wait().await.unwrap();
    assert_eq!(
        s.reactor.job_status(ok_id).unwrap(),
        JobStatus::Completed { revision: 1 }
    );
    let bad = s
        .reactor
        .submit(Submit::new(
            s.id,
            vec![s.reactor.action("NOPE", json!({}), Scope::Global)],
        ))
        .unwrap();
    let bad_id = bad.id;
    assert!(bad.wait().await.is_err());
    match s.reactor.job_status(bad_id).unwrap() {
        JobStatus::Failed {
            error: ReactorError::ActionRejected { reason, .. },
        } => assert_eq!(reason.code, "UNKNOWN_ACTION"),
        other => panic!("unexpected status {other:?}"),
    }
    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        s.reactor.job_status(unknown).unwrap_err(),
        ReactorError::JobNotFound(unknown)
    );
}

#[tokio::test]
async fn reads_travel_in_time_and_wait_for_a_revision() {
    let s = given_todo_list(&[
        ("ADD_TODO", json!({"id": "a", "title": "A"})),
        ("ADD_TODO", json!({"id": "b", "title": "B"})),
    ])
    .await;
    let past = s.reactor.get_at(s.id, &Branch::default(), 1).await.unwrap().unwrap();
    assert_eq!(past.header.revision.global, 1);
    assert!(past.global_json()["items"].get("b").is_none());
    assert!(matches!(
        s.reactor.get_at(s.id, &Branch::default(), 9).await,
        Err(ReactorError::RevisionNotReached { wanted: 9, reached: 2 })
    ));
    // A reader waiting for revision 3 is released by the write that makes it.
    let reactor = s.reactor.clone();
    let id = s.id;
    let waiter = tokio::spawn(async move {
        reactor
            .get_min(id, &Branch::default(), 3, Duration::from_secs(10))
            .await
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    s.when(&[("ADD_TODO", json!({"id": "c", "title": "C"}))]).await.unwrap();
    let doc = waiter.await.unwrap().unwrap();
    assert_eq!(doc.header.revision.global, 3);
    assert!(matches!(
        s.reactor
            .get_min(s.id, &Branch::default(), 10, Duration::from_millis(30))
            .await,
        Err(ReactorError::RevisionNotReached { wanted: 10, reached: 3 })
    ));
}

#[tokio::test]
async fn delete_rename_and_local_scope() {
    let s = given_todo_list(&[("ADD_TODO", json!({"id": "a", "title": "A"}))]).await;
    s.reactor.set_name(s.id, "renamed").await.unwrap();
    let local = s
        .reactor
        .action("SET", json!({"path": "/draft", "value": "x"}), Scope::Local);
    s.reactor.apply(Submit::new(s.id, vec![local])).await.unwrap();
    let doc = s.reactor.get(s.id, &Branch::default()).await.unwrap().unwrap();
    assert_eq!(doc.header.name, "renamed");
    assert_eq!(doc.local["draft"], "x");
    assert_eq!(doc.header.revision.local, 1);
    let listed = s.reactor.list(&ListQuery::default()).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "renamed");

    let mut events = s.reactor.subscribe();
    s.reactor.delete_document(s.id).await.unwrap();
    let doc = s.reactor.get(s.id, &Branch::default()).await.unwrap().unwrap();
    assert!(doc.header.deleted);
    let err = s
        .when(&[("ADD_TODO", json!({"id": "b", "title": "B"}))])
        .await
        .unwrap_err();
    assert!(matches!(err, ReactorError::ActionRejected { reason, .. } if reason.code == "DOCUMENT_DELETED"));
    assert!(s.reactor.list(&ListQuery::default()).await.unwrap().is_empty());
    let mut saw_deleted = false;
    while let Some(Received::Event(e)) = events.try_next() {
        saw_deleted |= matches!(e, Event::DocumentDeleted { document_id } if document_id == s.id);
    }
    assert!(saw_deleted);
}

#[tokio::test]
async fn keyframes_are_written_and_a_cold_read_matches() {
    let store: Arc<dyn OperationStore> = Arc::new(MemoryStore::new());
    let config = ReactorConfig {
        keyframe_every: 10,
        ..common::config()
    };
    let reactor = Reactor::new(
        store.clone(),
        Arc::new(folio_core::ModelRegistry::with_builtin()),
        config.clone(),
    );
    let id = reactor
        .create_document("folio/todo-list", "k", None)
        .await
        .unwrap()
        .header
        .id;
    for i in 0..35 {
        let a = reactor.action("ADD_TODO", json!({"id": format!("i{i}"), "title": "t"}), Scope::Global);
        reactor.apply(Submit::new(id, vec![a])).await.unwrap();
    }
    let unit = SyncUnit::main(id, Scope::Global);
    // Keyframes are stored in the background; give them a moment.
    let mut kf = None;
    for _ in 0..200 {
        kf = store
            .nearest_keyframe(&unit, 35)
            .await
            .unwrap()
            .filter(|k| k.revision == 30);
        if kf.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let kf = kf.expect("a keyframe");
    assert_eq!(kf.revision, 30);
    assert!(store.nearest_keyframe(&unit, 9).await.unwrap().is_none());
    let warm = reactor.get(id, &Branch::default()).await.unwrap().unwrap();
    // A second reactor on the same store starts cold: keyframe + tail.
    let cold_reactor = Reactor::new(
        store.clone(),
        Arc::new(folio_core::ModelRegistry::with_builtin()),
        config,
    );
    let cold = cold_reactor.get(id, &Branch::default()).await.unwrap().unwrap();
    assert_eq!(cold.state_hash(), warm.state_hash());
    assert_eq!(cold.header.revision, warm.header.revision);
    // Time travel below and between keyframes agrees with a full replay.
    let at_15 = cold_reactor.get_at(id, &Branch::default(), 15).await.unwrap().unwrap();
    assert_eq!(at_15.global_json()["items"].as_object().unwrap().len(), 15);
    // And writing continues from the keyframed state.
    let a = cold_reactor.action("ADD_TODO", json!({"id": "last", "title": "t"}), Scope::Global);
    assert_eq!(cold_reactor.apply(Submit::new(id, vec![a])).await.unwrap().revision, 36);
    assert!(folio_store::verify(store.as_ref()).await.unwrap().is_ok());
}

#[tokio::test]
async fn the_cache_stays_within_its_byte_bound() {
    let store: Arc<dyn OperationStore> = Arc::new(MemoryStore::new());
    let config = ReactorConfig {
        cache_bytes: 4096,
        ..common::config()
    };
    let reactor = Reactor::new(store, Arc::new(folio_core::ModelRegistry::with_builtin()), config);
    let mut ids = Vec::new();
    for d in 0..20 {
        let id = reactor
            .create_document("folio/json", "c", None)
            .await
            .unwrap()
            .header
            .id;
        let big = "x".repeat(1000);
        let a = reactor.action("SET", json!({"path": format!("/v{d}"), "value": big}), Scope::Global);
        reactor.apply(Submit::new(id, vec![a])).await.unwrap();
        ids.push(id);
    }
    for id in &ids {
        let doc = reactor.get(*id, &Branch::default()).await.unwrap().unwrap();
        assert_eq!(doc.global_json().as_object().unwrap().len(), 1);
        assert!(
            reactor.view().cached_bytes() <= 4096,
            "cache holds {} bytes",
            reactor.view().cached_bytes()
        );
    }
}

#[tokio::test]
async fn shutdown_finishes_queued_jobs_and_refuses_new_ones() {
    let s = given_todo_list(&[]).await;
    let handles: Vec<_> = (0..200)
        .map(|i| {
            let a = s
                .reactor
                .action("ADD_TODO", json!({"id": format!("i{i}"), "title": "t"}), Scope::Global);
            s.reactor.submit(Submit::new(s.id, vec![a])).unwrap()
        })
        .collect();
    s.reactor.shutdown().await;
    let mut revisions = Vec::new();
    for h in handles {
        revisions.push(h.wait().await.expect("queued job completed").revision);
    }
    assert_eq!(revisions, (1..=200).collect::<Vec<_>>());
    assert_eq!(s.global_revision().await, 200);
    let a = s
        .reactor
        .action("ADD_TODO", json!({"id": "late", "title": "t"}), Scope::Global);
    assert_eq!(
        s.reactor.submit(Submit::new(s.id, vec![a])).unwrap_err(),
        ReactorError::ShuttingDown
    );
}
