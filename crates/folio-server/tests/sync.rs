//! Sync through a real `folio serve` (HTTP on 127.0.0.1:0): three replicas, each on its own SQLite store, replay
//! the seed conflict cases; a replica offline with 10,000 operations catches up; the sync endpoints refuse bad input.

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use folio_core::{Branch, DocumentId, ModelRegistry, Scope};
use folio_reactor::{ReactorConfig, Submit};
use folio_server::Role;
use folio_store::{SqliteStore, verify};
use folio_sync::{
    HttpRemote, Replica, RoundOptions, RoundReport, SyncEvent, SyncStatus, Syncer, WatchOptions, sync_round,
};

struct Node {
    replica: Replica,
    _dir: tempfile::TempDir,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
    let config = ReactorConfig {
        executors: 2,
        ..ReactorConfig::default()
    };
    let replica = Replica::open(Arc::new(store), Arc::new(ModelRegistry::with_builtin()), config)
        .await
        .unwrap();
    Node { replica, _dir: dir }
}

async fn round(node: &Node, remote: &HttpRemote) -> RoundReport {
    sync_round(&node.replica, remote, &RoundOptions::default())
        .await
        .expect("sync round")
}

async fn act(node: &Node, doc: DocumentId, action_type: &str, input: Value) {
    let action = node.replica.reactor().action(action_type, input, Scope::Global);
    node.replica
        .reactor()
        .apply(Submit::new(doc, vec![action]))
        .await
        .expect("local action");
}

async fn global(node: &Node, doc: DocumentId) -> (Value, folio_core::OpHash) {
    let d = node
        .replica
        .reactor()
        .get(doc, &Branch::default())
        .await
        .unwrap()
        .expect("document exists here");
    (d.global_json(), d.state_hash())
}

/// Three replicas and a server, each replica synced once with the server (the document made on `a` is everywhere).
async fn three(server: &common::TestServer) -> (HttpRemote, [Node; 3], DocumentId) {
    let remote = HttpRemote::new(&server.base, Some(server.token(Role::Write))).unwrap();
    let nodes = [node().await, node().await, node().await];
    let doc = nodes[0]
        .replica
        .reactor()
        .create_document("folio/todo-list", "Groceries", None)
        .await
        .unwrap()
        .header
        .id;
    for n in &nodes {
        round(n, &remote).await;
    }
    (remote, nodes, doc)
}

async fn settle(remote: &HttpRemote, nodes: &[Node]) {
    for _ in 0..2 {
        for n in nodes {
            round(n, remote).await;
        }
    }
}

async fn assert_converged(server: &common::TestServer, nodes: &[Node], doc: DocumentId) -> Value {
    let (state, hash) = global(&nodes[0], doc).await;
    for (i, n) in nodes.iter().enumerate() {
        assert_eq!(
            global(n, doc).await.1,
            hash,
            "replica {i} has another state: {:?}",
            global(n, doc).await.0
        );
        let report = verify(n.replica.reactor().store().as_ref()).await.unwrap();
        assert!(report.is_ok(), "replica {i}: {:?}", report.broken);
    }
    let (status, body) = server.get(&format!("/v1/documents/{doc}")).await;
    assert_eq!(status, 200);
    assert_eq!(body["stateHash"], json!(hash.to_hex()), "the server has another state");
    state
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn creates_and_deletes_while_online() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let (remote, nodes, doc) = three(&server).await;
    act(&nodes[0], doc, "ADD_TODO", json!({"id": "milk", "title": "Milk"})).await;
    round(&nodes[0], &remote).await;
    round(&nodes[1], &remote).await;
    act(&nodes[1], doc, "ADD_TODO", json!({"id": "eggs", "title": "Eggs"})).await;
    round(&nodes[1], &remote).await;
    round(&nodes[2], &remote).await;
    act(&nodes[2], doc, "DELETE_TODO", json!({"id": "milk"})).await;
    settle(&remote, &nodes).await;
    let state = assert_converged(&server, &nodes, doc).await;
    assert!(
        state["items"].get("milk").is_none(),
        "a delete after seeing the add removes it: {state}"
    );
    assert_eq!(state["items"]["eggs"]["title"], "Eggs");
    // A document created on one replica appears on the others.
    let other = nodes[1]
        .replica
        .reactor()
        .create_document("folio/json", "Notes", None)
        .await
        .unwrap()
        .header
        .id;
    settle(&remote, &nodes).await;
    for n in &nodes {
        let d = n
            .replica
            .reactor()
            .get(other, &Branch::default())
            .await
            .unwrap()
            .expect("created everywhere");
        assert_eq!(d.header.name, "Notes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn deletion_conflict_keeps_the_concurrent_update() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let (remote, nodes, doc) = three(&server).await;
    act(&nodes[0], doc, "ADD_TODO", json!({"id": "y", "title": "Y"})).await;
    settle(&remote, &nodes).await;
    // Offline: A deletes Y while B, not having seen the delete, updates it. Both orders of arrival.
    act(&nodes[0], doc, "DELETE_TODO", json!({"id": "y"})).await;
    act(&nodes[1], doc, "UPDATE_TODO", json!({"id": "y", "title": "Y, updated"})).await;
    round(&nodes[1], &remote).await;
    round(&nodes[0], &remote).await;
    settle(&remote, &nodes).await;
    let state = assert_converged(&server, &nodes, doc).await;
    assert_eq!(
        state["items"]["y"]["title"], "Y, updated",
        "construction prevails: {state}"
    );

    // The other order: the delete sorts after the update in the total order, and arrives first.
    act(&nodes[2], doc, "UPDATE_TODO", json!({"id": "y", "title": "Y, again"})).await;
    act(&nodes[1], doc, "DELETE_TODO", json!({"id": "y"})).await;
    round(&nodes[1], &remote).await;
    round(&nodes[2], &remote).await;
    settle(&remote, &nodes).await;
    let state = assert_converged(&server, &nodes, doc).await;
    assert_eq!(
        state["items"]["y"]["title"], "Y, again",
        "construction prevails: {state}"
    );

    // A delete made after seeing every update removes the item on every replica.
    act(&nodes[0], doc, "DELETE_TODO", json!({"id": "y"})).await;
    settle(&remote, &nodes).await;
    let state = assert_converged(&server, &nodes, doc).await;
    assert!(state["items"].get("y").is_none(), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_updates_last_in_total_order_wins() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let (remote, nodes, doc) = three(&server).await;
    act(&nodes[0], doc, "ADD_TODO", json!({"id": "y", "title": "Y"})).await;
    settle(&remote, &nodes).await;
    act(&nodes[0], doc, "UPDATE_TODO", json!({"id": "y", "title": "from A"})).await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    act(
        &nodes[1],
        doc,
        "UPDATE_TODO",
        json!({"id": "y", "title": "from B", "done": true}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(3)).await;
    act(&nodes[2], doc, "UPDATE_TODO", json!({"id": "y", "done": false})).await;
    // Delivered in the reverse of the total order.
    round(&nodes[2], &remote).await;
    round(&nodes[1], &remote).await;
    round(&nodes[0], &remote).await;
    settle(&remote, &nodes).await;
    let state = assert_converged(&server, &nodes, doc).await;
    assert_eq!(
        state["items"]["y"]["title"], "from B",
        "B's title is the last title in the total order"
    );
    assert_eq!(
        state["items"]["y"]["done"], false,
        "C's flag is the last flag in the total order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn offline_then_online_with_compression() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let (remote, nodes, doc) = three(&server).await;
    // Offline on A: an item made and removed (nothing), one made then changed twice (one add), and many updates of
    // an existing item (one update).
    act(&nodes[1], doc, "ADD_TODO", json!({"id": "old", "title": "Old"})).await;
    settle(&remote, &nodes).await;
    act(&nodes[0], doc, "ADD_TODO", json!({"id": "tmp", "title": "Temporary"})).await;
    act(&nodes[0], doc, "DELETE_TODO", json!({"id": "tmp"})).await;
    act(&nodes[0], doc, "ADD_TODO", json!({"id": "new", "title": "New"})).await;
    act(&nodes[0], doc, "UPDATE_TODO", json!({"id": "new", "title": "Newer"})).await;
    act(&nodes[0], doc, "UPDATE_TODO", json!({"id": "new", "done": true})).await;
    for i in 0..5 {
        act(
            &nodes[0],
            doc,
            "UPDATE_TODO",
            json!({"id": "old", "title": format!("Old {i}")}),
        )
        .await;
    }
    let before = global(&nodes[0], doc).await.0;
    let report = round(&nodes[0], &remote).await;
    assert_eq!(report.compressed, 10 - 2, "ten operations became two: {report:?}");
    assert_eq!(report.pushed, 2, "only the compressed operations leave: {report:?}");
    let after = global(&nodes[0], doc).await.0;
    assert_eq!(after["items"]["new"], before["items"]["new"]);
    assert_eq!(after["items"]["old"]["title"], "Old 4");
    assert!(after["items"].get("tmp").is_none());
    settle(&remote, &nodes).await;
    let state = assert_converged(&server, &nodes, doc).await;
    assert_eq!(state["items"]["new"]["title"], "Newer");
    assert_eq!(state["items"]["new"]["done"], true);
    assert!(
        state.get("deleted").is_none_or(|d| d.get("tmp").is_none()),
        "tmp never existed elsewhere"
    );
    // Sent actions are never compressed again.
    act(&nodes[0], doc, "UPDATE_TODO", json!({"id": "new", "title": "Newest"})).await;
    let report = round(&nodes[0], &remote).await;
    assert_eq!((report.compressed, report.pushed), (0, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_offline_operations_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let (remote, nodes, doc) = three(&server).await;
    // Offline: 10,000 operations on A, in jobs of 100 actions.
    for batch in 0..100 {
        let actions = (0..100)
            .map(|i| {
                let n = batch * 100 + i;
                nodes[0].replica.reactor().action(
                    "ADD_TODO",
                    json!({"id": format!("item-{}", n % 700), "title": format!("title {n}")}),
                    Scope::Global,
                )
            })
            .collect();
        nodes[0]
            .replica
            .reactor()
            .apply(Submit::new(doc, actions))
            .await
            .unwrap();
    }
    // Meanwhile B made its own changes and synced them.
    act(&nodes[1], doc, "ADD_TODO", json!({"id": "from-b", "title": "B"})).await;
    round(&nodes[1], &remote).await;
    let opts = RoundOptions {
        compress: false,
        ..RoundOptions::default()
    };
    let report = sync_round(&nodes[0].replica, &remote, &opts).await.unwrap();
    assert_eq!(report.pushed, 10_000);
    assert_eq!(report.pushed_new, 10_000);
    round(&nodes[2], &remote).await;
    round(&nodes[1], &remote).await;
    let state = assert_converged(&server, &nodes, doc).await;
    assert_eq!(state["items"].as_object().unwrap().len(), 701);
    assert_eq!(state["items"]["item-699"]["title"], "title 9799");
    assert_eq!(state["items"]["from-b"]["title"], "B");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rejected_merge_is_kept_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let (remote, nodes, doc) = three(&server).await;
    let _ = doc;
    // Two replicas remove the only element of a list concurrently: each is valid where it was made, but in the
    // merged order the second finds nothing to remove. It is kept, marked with the reducer's reason, everywhere.
    let json_doc = nodes[0]
        .replica
        .reactor()
        .create_document("folio/json", "Doc", None)
        .await
        .unwrap()
        .header
        .id;
    let set = nodes[0]
        .replica
        .reactor()
        .action("SET", json!({"path": "/list", "value": [1]}), Scope::Global);
    nodes[0]
        .replica
        .reactor()
        .apply(Submit::new(json_doc, vec![set]))
        .await
        .unwrap();
    settle(&remote, &nodes).await;
    for n in &nodes[..2] {
        let remove = n
            .replica
            .reactor()
            .action("REMOVE", json!({"path": "/list", "index": 0}), Scope::Global);
        n.replica
            .reactor()
            .apply(Submit::new(json_doc, vec![remove]))
            .await
            .unwrap();
    }
    let mut conflicts = round(&nodes[0], &remote).await.conflicts;
    conflicts.extend(round(&nodes[1], &remote).await.conflicts);
    assert_eq!(
        conflicts.len(),
        1,
        "one of the two removes fails in the merged order: {conflicts:?}"
    );
    assert!(
        conflicts[0].reason.contains(':'),
        "the reason names a code: {}",
        conflicts[0].reason
    );
    settle(&remote, &nodes).await;
    assert_converged(&server, &nodes, json_doc).await;
    let (status, body) = server.get(&format!("/v1/documents/{json_doc}/conflicts")).await;
    assert_eq!(status, 200, "{body}");
    let listed = body["conflicts"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{body}");
    assert_eq!(listed[0]["actionId"], json!(conflicts[0].action_id));
    assert_eq!(listed[0]["operation"]["error"], listed[0]["reason"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watch_delivers_live_and_reports_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let (remote, nodes, doc) = three(&server).await;
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let options = WatchOptions {
        poll_interval: Duration::from_secs(60),
        push_debounce: Duration::from_millis(50),
        ..WatchOptions::default()
    };
    let syncer = Syncer::spawn(
        nodes[1].replica.clone(),
        Arc::new(remote.clone()),
        options,
        Arc::new(move |e: SyncEvent| seen.lock().unwrap().push(format!("{e:?}"))),
    );
    let mut status = syncer.status();
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| *s == SyncStatus::Synced))
        .await
        .unwrap()
        .unwrap();
    // Downstream: A pushes; B receives it live (no poll for 60 s).
    act(&nodes[0], doc, "ADD_TODO", json!({"id": "live", "title": "Live"})).await;
    round(&nodes[0], &remote).await;
    let arrived = async {
        loop {
            if global(&nodes[1], doc).await.0["items"].get("live").is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), arrived).await.is_err() {
        panic!("not delivered live; the syncer said: {:?}", events.lock().unwrap());
    }
    // Upstream: B's change is pushed after the debounce; A pulls it.
    act(&nodes[1], doc, "ADD_TODO", json!({"id": "up", "title": "Up"})).await;
    let pushed = async {
        loop {
            round(&nodes[0], &remote).await;
            if global(&nodes[0], doc).await.0["items"].get("up").is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), pushed).await.is_err() {
        panic!("not pushed upstream; the syncer said: {:?}", events.lock().unwrap());
    }
    syncer.stop().await;
    let log = events.lock().unwrap().join("\n");
    assert!(log.contains("Live {"), "{log}");
    assert!(log.contains("Pending"), "a local change shows as pending: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unreachable_and_refused_remotes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let n = node().await;
    let nowhere = HttpRemote::new("http://127.0.0.1:9", None).unwrap();
    let e = sync_round(&n.replica, &nowhere, &RoundOptions::default())
        .await
        .unwrap_err();
    assert!(e.is_transient(), "unreachable is transient: {e}");
    let bad = HttpRemote::new(&server.base, Some("not-a-token".into())).unwrap();
    let e = sync_round(&n.replica, &bad, &RoundOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, folio_sync::SyncError::Refused { status: 401, code, .. } if code == "UNAUTHORIZED"),
        "{e}"
    );
    // A read token can pull but not push.
    let reader = HttpRemote::new(&server.base, Some(server.token(Role::Read))).unwrap();
    let doc = n
        .replica
        .reactor()
        .create_document("folio/todo-list", "x", None)
        .await
        .unwrap();
    let _ = doc;
    let e = sync_round(&n.replica, &reader, &RoundOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(&e, folio_sync::SyncError::Refused { status: 403, .. }), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sync_endpoints_refuse_bad_input_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::start(dir.path()).await;
    let (status, info) = server.get("/v1/sync/info").await;
    assert_eq!(status, 200);
    let server_replica = info["replica"].as_str().unwrap().to_owned();
    let doc = DocumentId::new();
    let entry = |replica: &str, scope: &str| {
        json!({"documentId": doc, "scope": scope, "branch": "main", "action": {
            "id": uuid::Uuid::now_v7(), "type": "CREATE_DOCUMENT", "input": {"documentType": "folio/todo-list"},
            "scope": scope, "timestampUtcMs": "1", "replica": replica}})
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"replica": "r", "entries": [entry("other", "document")]}),
            400,
            "another replica's action",
        ),
        (
            json!({"replica": "r", "entries": [entry("r", "local")]}),
            400,
            "local scope",
        ),
        (json!({"replica": "", "entries": []}), 400, "empty replica"),
        (
            json!({"replica": server_replica, "entries": []}),
            400,
            "the server's own id",
        ),
        (
            json!({"replica": "r", "entries": [{"documentId": "nope"}]}),
            400,
            "a bad entry",
        ),
        (
            json!({"replica": "r", "entries": [], "extra": 1}),
            400,
            "an unknown field",
        ),
        (
            json!({"replica": "r", "entries": [{"documentId": doc, "scope": "global", "branch": "main", "action": {
            "id": uuid::Uuid::now_v7(), "type": "ADD_TODO", "input": {}, "scope": "global", "timestampUtcMs": "1",
            "replica": "r"}}]}),
            404,
            "an action for a document that does not exist",
        ),
    ];
    for (body, want, what) in cases {
        let (status, answer) = server.post("/v1/sync/push", body).await;
        assert_eq!(status, want, "{what}: {answer}");
        assert!(answer["error"]["code"].is_string(), "{what}: {answer}");
    }
    for query in ["after=x", "limit=0", "documentIds=nope", "bogus=1"] {
        let (status, answer) = server.get(&format!("/v1/sync/pull?{query}")).await;
        assert_eq!(status, 400, "{query}: {answer}");
    }
    let (status, answer) = server.get("/v1/sync/pull").await;
    assert_eq!(status, 200);
    assert_eq!(answer["entries"], json!([]));
    let report = verify(&SqliteStore::open(dir.path().join("folio.db")).await.unwrap())
        .await
        .unwrap();
    assert_eq!((report.units, report.operations), (0, 0), "nothing was stored");
}
