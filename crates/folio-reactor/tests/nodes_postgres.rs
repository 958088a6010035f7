//! Two reactors (two nodes) on one PostgreSQL database: each node's subscribers and view see the writes made
//! through the other, in order per unit, with no gap and no duplicate, also when commit notices are lost. Needs
//! `FOLIO_TEST_DATABASE_URL` (scripts/test provides it; without it these tests fail, saying so).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use folio_core::{Branch, ModelRegistry, Operation, Scope, SyncUnit};
use folio_reactor::{Event, Reactor, ReactorConfig, Received, Submit, Subscription};
use folio_store::pg_testing::TestDatabase;
use folio_store::{OperationStore, PgStore};

async fn node(url: &str) -> Reactor {
    let store: Arc<dyn OperationStore> = Arc::new(PgStore::open(url).await.expect("open the store"));
    let reactor = Reactor::new(store, Arc::new(ModelRegistry::with_builtin()), ReactorConfig::default());
    // Other nodes' commits reach this one's subscribers from the moment its follower knows where it starts.
    reactor.ready(Duration::from_secs(10)).await.expect("ready");
    reactor
}

/// Receives events until every unit in `want` reached its revision; returns each unit's operations in the order
/// received. Fails on a gap, a duplicate or a lag, or after 30 s.
async fn receive_until(
    events: &mut Subscription,
    want: &BTreeMap<SyncUnit, u64>,
) -> BTreeMap<SyncUnit, Vec<Operation>> {
    let mut got: BTreeMap<SyncUnit, Vec<Operation>> = BTreeMap::new();
    let done = |got: &BTreeMap<SyncUnit, Vec<Operation>>| {
        want.iter()
            .all(|(unit, revision)| got.get(unit).map_or(0, |ops| ops.len() as u64) >= *revision)
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done(&got) {
        let received = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| {
                let summary: Vec<_> = got.iter().map(|(u, ops)| (u.to_string(), ops.len())).collect();
                panic!("timed out; received so far: {summary:?}, wanted {want:?}")
            })
            .expect("the bus is open");
        match received {
            Received::Event(Event::OperationsCommitted { unit, operations, .. }) => {
                if !want.contains_key(&unit) {
                    continue;
                }
                let ops = got.entry(unit.clone()).or_default();
                for op in operations.iter() {
                    assert_eq!(
                        op.index,
                        ops.len() as u64,
                        "{unit}: operation {} received after {} operations (a gap, a duplicate or a reordering)",
                        op.index,
                        ops.len()
                    );
                    ops.push(op.clone());
                }
            }
            Received::Event(_) => {}
            Received::Lagged { missed } => panic!("the subscriber lagged by {missed} events"),
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_through_either_node_reach_both_in_order() {
    let db = TestDatabase::create().await;
    let a = node(&db.url).await;
    let b = node(&db.url).await;
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();

    let mut docs = Vec::new();
    for d in 0..3 {
        let via = if d % 2 == 0 { &a } else { &b };
        docs.push(
            via.create_document("folio/json", &format!("d{d}"), None)
                .await
                .expect("create")
                .header
                .id,
        );
    }
    // 10 writers through each node, on the same documents.
    let writers: Vec<_> = (0..20)
        .map(|w| {
            let node = if w % 2 == 0 { a.clone() } else { b.clone() };
            let docs = docs.clone();
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for j in 0..6 {
                    let id = docs[(w + j) % docs.len()];
                    let action = node.action(
                        "SET",
                        json!({ "path": format!("/w{w}/j{j}"), "value": j }),
                        Scope::Global,
                    );
                    let outcome = node.apply(Submit::new(id, vec![action])).await.expect("apply");
                    acked.extend(outcome.operations.iter().map(|op| op.action.id));
                }
                acked
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for w in writers {
        for id in w.await.expect("writer") {
            assert!(acked.insert(id), "an action acknowledged twice");
        }
    }
    assert_eq!(acked.len(), 120);

    let mut want = BTreeMap::new();
    for id in &docs {
        for scope in [Scope::Document, Scope::Global] {
            let unit = SyncUnit::main(*id, scope);
            want.insert(unit.clone(), a.store().head(&unit).await.expect("head").0);
        }
    }
    for (name, events) in [("A", &mut on_a), ("B", &mut on_b)] {
        let got = receive_until(events, &want).await;
        let seen: HashSet<_> = got
            .iter()
            .filter(|(unit, _)| unit.scope == Scope::Global)
            .flat_map(|(_, ops)| ops.iter().map(|op| op.action.id))
            .collect();
        assert_eq!(
            seen, acked,
            "node {name}'s subscriber received every acknowledged operation"
        );
    }
    // Both views reach the same documents.
    for id in &docs {
        let revision = want[&SyncUnit::main(*id, Scope::Global)];
        let on_a = a
            .get_min(*id, &Branch::default(), revision, Duration::from_secs(10))
            .await
            .expect("A");
        let on_b = b
            .get_min(*id, &Branch::default(), revision, Duration::from_secs(10))
            .await
            .expect("B");
        assert_eq!(on_a.header.revision, on_b.header.revision);
        assert_eq!(on_a.state_hash(), on_b.state_hash());
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Notices are hints: with the LISTEN connections killed, a node still shows the other's writes (it catches up
/// by ordinal after reconnecting, and on its timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_that_missed_notices_catches_up_by_ordinal() {
    let db = TestDatabase::create().await;
    let a = node(&db.url).await;
    let b = node(&db.url).await;
    let mut on_a = a.subscribe();
    let id = b
        .create_document("folio/todo-list", "t", None)
        .await
        .expect("create")
        .header
        .id;
    let admin = PgStore::open(&db.url).await.expect("open");
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(admin.pool())
    .await
    .expect("terminate the listeners");
    assert!(!killed.is_empty(), "the nodes' LISTEN connections were found");
    for i in 0..10 {
        let action = b.action(
            "ADD_TODO",
            json!({ "id": format!("t{i}"), "title": "x" }),
            Scope::Global,
        );
        b.apply(Submit::new(id, vec![action])).await.expect("apply on B");
    }
    let want = BTreeMap::from([(SyncUnit::main(id, Scope::Global), 10)]);
    receive_until(&mut on_a, &want).await;
    a.shutdown().await;
    b.shutdown().await;
}

/// A deletion through one node is announced on the other (the operation, then `DocumentDeleted`), and the other
/// node's view drops the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deletion_through_one_node_reaches_the_other() {
    let db = TestDatabase::create().await;
    let a = node(&db.url).await;
    let b = node(&db.url).await;
    let id = a
        .create_document("folio/todo-list", "t", None)
        .await
        .expect("create")
        .header
        .id;
    assert!(
        a.get(id, &Branch::default()).await.expect("get").is_some(),
        "cached on A"
    );
    let mut on_a = a.subscribe();
    b.delete_document(id).await.expect("delete on B");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut saw_operation = false;
    loop {
        let received = tokio::time::timeout_at(deadline, on_a.next())
            .await
            .expect("A hears of the deletion")
            .expect("the bus is open");
        match received {
            Received::Event(Event::OperationsCommitted {
                unit, document_type, ..
            }) if unit.document_id == id => {
                assert_eq!(unit.scope, Scope::Document);
                assert_eq!(&*document_type, "folio/todo-list");
                saw_operation = true;
            }
            Received::Event(Event::DocumentDeleted { document_id }) if document_id == id => break,
            _ => {}
        }
    }
    assert!(saw_operation, "the deletion's operation comes before DocumentDeleted");
    let doc = a
        .get(id, &Branch::default())
        .await
        .expect("get")
        .expect("still readable");
    assert!(doc.header.deleted, "A's view folded the deletion in");
    a.shutdown().await;
    b.shutdown().await;
}

/// The events of one document's commits, as a subscriber received them, until its deletion.
async fn events_of(events: &mut Subscription, doc: folio_core::DocumentId) -> Vec<Event> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let received = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("timed out; received so far: {got:#?}"))
            .expect("the bus is open");
        let event = match received {
            Received::Event(event) => event,
            Received::Lagged { missed } => panic!("the subscriber lagged by {missed} events"),
        };
        let about = match &event {
            Event::OperationsCommitted { unit, .. } | Event::Conflict { unit, .. } => unit.document_id == doc,
            Event::DocumentDeleted { document_id } => *document_id == doc,
            _ => false,
        };
        if about {
            let last = matches!(event, Event::DocumentDeleted { .. });
            got.push(event);
            if last {
                return got;
            }
        }
    }
}

/// `events` with consecutive `OperationsCommitted` of one unit joined into one.
fn joined(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for event in events {
        if let (
            Some(Event::OperationsCommitted {
                unit: last_unit,
                operations: last_ops,
                ordinals: last_ordinals,
                ..
            }),
            Event::OperationsCommitted {
                unit,
                operations,
                ordinals,
                ..
            },
        ) = (out.last_mut(), &event)
            && last_unit == unit
        {
            *last_ops = last_ops.iter().chain(operations.iter()).cloned().collect();
            *last_ordinals = last_ordinals.iter().chain(ordinals.iter()).copied().collect();
            continue;
        }
        out.push(event);
    }
    out
}

/// The executor announces its own commits and the follower announces the other node's: both make their events
/// with `commit_events`, so the same commits (operations, a refusal kept by a merge, a deletion) give the same
/// events on both nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn both_nodes_publish_the_same_events_for_the_same_commits() {
    let db = TestDatabase::create().await;
    let a = node(&db.url).await;
    let b = node(&db.url).await;
    let mut on_a = a.subscribe();
    let mut on_b = b.subscribe();

    let id = a
        .create_document("folio/todo-list", "events", None)
        .await
        .expect("create")
        .header
        .id;
    let add = a.action("ADD_TODO", json!({ "id": "x", "title": "X" }), Scope::Global);
    a.apply(Submit::new(id, vec![add])).await.expect("apply");
    // Another replica's action that the reducer refuses in its merged position: kept, marked, a conflict.
    let mut refused = a.action("ADD_TODO", json!({ "id": "y", "title": "" }), Scope::Global);
    refused.replica = Some("elsewhere".into());
    let outcome = a
        .integrate(id, Branch::default(), vec![refused])
        .expect("integrate")
        .wait()
        .await
        .expect("integrated");
    assert_eq!(outcome.merge.expect("a merge report").rejected.len(), 1);
    a.delete_document(id).await.expect("delete");

    // A follower that catches up reads consecutive commits of a unit at once and announces them as one event:
    // compare what the events say, not how they are cut.
    let seen_by_a = joined(events_of(&mut on_a, id).await);
    let seen_by_b = joined(events_of(&mut on_b, id).await);
    let kinds: Vec<&str> = seen_by_a
        .iter()
        .map(|e| match e {
            Event::OperationsCommitted { unit, .. } if unit.scope == Scope::Document => "document operations",
            Event::OperationsCommitted { .. } => "global operations",
            Event::Conflict { .. } => "conflict",
            Event::DocumentDeleted { .. } => "deleted",
            _ => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "document operations",
            "global operations",
            "conflict",
            "document operations",
            "deleted"
        ]
    );
    assert_eq!(
        seen_by_a, seen_by_b,
        "the committing node and the other node announce the same events"
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// An operation appended through the node's own store handle, not through its reactor, still reaches the node's
/// subscribers, whole and in order: the follower, given only its ordinal by the feed (its own commit), reads it
/// back once no reactor event has come for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_own_commit_without_a_reactor_event_is_published_from_the_log() {
    let db = TestDatabase::create().await;
    let a = node(&db.url).await;
    let mut on_a = a.subscribe();
    let unit = SyncUnit::main(folio_core::DocumentId::new(), Scope::Global);
    let mut chain = folio_store::conformance::Chain::new(unit.clone());
    let first = chain.ops(2);
    a.store()
        .append(&unit, 0, first.clone())
        .await
        .expect("append through the store");
    let got = receive_until(&mut on_a, &BTreeMap::from([(unit.clone(), 2)])).await;
    assert_eq!(got[&unit], first, "the operations as appended");
    // And the next ones, after the follower read the first from the log.
    let second = chain.ops(1);
    a.store().append(&unit, 2, second.clone()).await.expect("append again");
    let next = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(Received::Event(Event::OperationsCommitted {
                unit: u, operations, ..
            })) = on_a.next().await
                && u == unit
            {
                return operations.to_vec();
            }
        }
    })
    .await
    .expect("the third operation reaches the subscriber");
    assert_eq!(next, second);
    a.shutdown().await;
}
