//! Nothing one request can break: states nested without bound, reducers that panic, action ids submitted twice, and
//! a store that already holds an operation no reducer accepts any more. Each through real HTTP against a real server
//! on SQLite, checking the named error, that the server goes on serving, and that nothing stored changed.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use common::*;
use folio_core::{Action, DocumentModel, HlcTimestamp, ModelRegistry, Operation, Rejection, Scope, SyncUnit};
use folio_reactor::ReactorConfig;
use folio_store::{OperationStore, SqliteStore};

/// A document with an empty `folio/json` state; returns its id.
async fn create_json(s: &TestServer) -> String {
    let (status, doc) = s
        .post("/v1/documents", json!({"documentType": "folio/json", "name": "j"}))
        .await;
    assert_eq!(status, 201, "{doc}");
    doc["header"]["id"].as_str().unwrap().to_owned()
}

async fn act(s: &TestServer, id: &str, actions: Value) -> (u16, Value) {
    s.post(&format!("/v1/documents/{id}/actions"), json!({ "actions": actions }))
        .await
}

fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!({ "n": v });
    }
    v
}

/// The document's wire JSON and its global revision.
async fn snapshot(s: &TestServer, id: &str) -> (Value, u64) {
    let (status, doc) = s.get(&format!("/v1/documents/{id}")).await;
    assert_eq!(status, 200, "{doc}");
    let revision = doc["header"]["revision"]["global"].as_u64().unwrap();
    (doc, revision)
}

fn assert_too_deep(got: &(u16, Value)) {
    assert_error(got, 422, "ACTION_REJECTED");
    assert_eq!(got.1["error"]["details"]["reason"], "STATE_TOO_DEEP", "{}", got.1);
}

#[tokio::test]
async fn no_action_nests_a_state_deeper_than_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = create_json(&s).await;
    let other = s.create_todo().await;
    let ready = s.client.get(s.url("/v1/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 200, "readiness needs no token");
    assert_eq!(ready.json::<Value>().await.unwrap(), json!({"status": "ready"}));

    // The request of the report: a 200,000-segment path, a 400 KB body under the 1 MiB limit.
    let path = "/a".repeat(200_000);
    assert_too_deep(&act(&s, &id, json!([{"type": "SET", "input": {"path": path, "value": 1}}])).await);
    // Every way to build depth, one level over the bound, and the same at the bound accepted.
    // A request body nests at most 64 levels, so a value inside an action's input at most 60: depth comes from paths.
    let over: Vec<(&str, Value)> = vec![
        (
            "SET value",
            json!({"type": "SET", "input": {"path": "/x".repeat(5), "value": nested(60)}}),
        ),
        (
            "SET creating parents",
            json!({"type": "SET", "input": {"path": "/p".repeat(60), "value": nested(5)}}),
        ),
        (
            "SET appending",
            json!({"type": "SET", "input": {"path": "/q".repeat(10) + "/-", "value": nested(54)}}),
        ),
        (
            "MERGE",
            json!({"type": "MERGE", "input": {"path": "/m".repeat(10), "value": {"k": nested(54)}}}),
        ),
        (
            "INSERT",
            json!({"type": "INSERT", "input": {"path": "/l".repeat(10), "index": 0, "value": nested(54)}}),
        ),
        (
            "local SET",
            json!({"type": "SET", "input": {"path": "/x".repeat(5), "value": nested(60)}, "scope": "local"}),
        ),
    ];
    let (before, revision) = snapshot(&s, &id).await;
    for (name, action) in &over {
        let got = act(&s, &id, json!([action])).await;
        assert_eq!(
            got.1["error"]["details"]["reason"], "STATE_TOO_DEEP",
            "{name}: {}",
            got.1
        );
    }
    assert_eq!(snapshot(&s, &id).await.0, before, "refused actions change nothing");
    let at_bound = json!([
        {"type": "SET", "input": {"path": "/x".repeat(5), "value": nested(59)}},
        {"type": "SET", "input": {"path": "/p".repeat(59), "value": nested(5)}},
        {"type": "MERGE", "input": {"path": "/m".repeat(10), "value": {"k": nested(53)}}},
        {"type": "INSERT", "input": {"path": "/l".repeat(10), "index": 0, "value": nested(53)}},
    ]);
    let got = act(&s, &id, at_bound).await;
    assert_eq!(got.0, 200, "{}", got.1);
    assert_eq!(snapshot(&s, &id).await.1, revision + 4);
    // Depth built one level per action stops at the bound too.
    let mut pointer = String::new();
    let mut accepted = 0;
    for _ in 0..70 {
        pointer.push_str("/d");
        let got = act(
            &s,
            &id,
            json!([{"type": "SET", "input": {"path": pointer, "value": {}}}]),
        )
        .await;
        if got.0 == 200 {
            accepted += 1;
        } else {
            assert_too_deep(&got);
        }
    }
    assert_eq!(accepted, 63, "a value `{{}}` under 63 keys is 64 levels deep");
    // The server lives, reads the document and serves the others.
    let (doc, _) = snapshot(&s, &id).await;
    assert!(doc["state"]["global"]["d"].is_object());
    assert_eq!(s.add(&other, "milk").await.0, 200);
    s.stop().await;
    let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
    assert!(folio_store::verify(&store).await.unwrap().is_ok());
}

#[tokio::test]
async fn an_action_id_submitted_again_is_a_retry_and_another_action_under_it_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let id = create_json(&s).await;
    let insert = |v: u32, action_id: &str| json!({"id": action_id, "type": "INSERT", "input": {"path": "/l", "index": 0, "value": v}});
    let a = uuid::Uuid::now_v7().to_string();
    let b = uuid::Uuid::now_v7().to_string();

    let first = act(&s, &id, json!([insert(1, &a)])).await;
    assert_eq!(first.0, 200, "{}", first.1);
    // A retry after a lost reply, and again after other writes: the original outcome, nothing appended.
    for round in 0..2 {
        let again = act(&s, &id, json!([insert(1, &a)])).await;
        assert_eq!(again.0, 200, "{}", again.1);
        assert_eq!(again.1["revision"], first.1["revision"], "round {round}");
        assert_eq!(
            again.1["operations"], first.1["operations"],
            "round {round}: the original operations"
        );
        let other = act(
            &s,
            &id,
            json!([{"type": "SET", "input": {"path": "/round", "value": round}}]),
        )
        .await;
        assert_eq!(other.0, 200);
    }
    let (before, revision) = snapshot(&s, &id).await;
    assert_eq!(before["state"]["global"]["l"], json!([1]), "inserted once");
    assert_eq!(revision, 3);

    // The same id with other content, a repeated id in one request, a retry mixed with a new action: refused.
    let refused = [
        json!([insert(2, &a)]),
        json!([{"id": a, "type": "SET", "input": {"path": "/l", "value": 0}}]),
        json!([insert(5, &b), insert(5, &b)]),
        json!([insert(1, &a), insert(6, &b)]),
        json!([insert(6, &b), insert(1, &a)]),
    ];
    for actions in refused {
        let got = act(&s, &id, actions.clone()).await;
        assert_error(&got, 409, "DUPLICATE_ACTION_ID");
        assert!(got.1["error"]["details"]["actionId"].is_string(), "{}", got.1);
    }
    assert_eq!(snapshot(&s, &id).await.0, before, "nothing stored");
    // Several actions retried together are one retry.
    let pair =
        json!([insert(7, &b), {"id": uuid::Uuid::now_v7(), "type": "REMOVE", "input": {"path": "/l", "index": 1}}]);
    let first = act(&s, &id, pair.clone()).await;
    assert_eq!(first.0, 200, "{}", first.1);
    let again = act(&s, &id, pair).await;
    assert_eq!((again.0, &again.1["operations"]), (200, &first.1["operations"]));
    assert_eq!(snapshot(&s, &id).await.0["state"]["global"]["l"], json!([7]));
    // The log holds each id once.
    let (_, log) = s.get(&format!("/v1/documents/{id}/operations?limit=1000")).await;
    let ids: Vec<&str> = log["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["action"]["id"].as_str().unwrap())
        .collect();
    let distinct: std::collections::BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), distinct.len(), "{ids:?}");
    s.stop().await;
}

/// A model with a bug: its reducer panics on `BOOM`, and on anything while [`PANIC_ON_ANY`] is set.
struct Panicky;
static PANIC_ON_ANY: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct PanickyState {
    count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", content = "input", rename_all = "SCREAMING_SNAKE_CASE")]
enum PanickyAction {
    Tick {},
    Boom {},
}

impl DocumentModel for Panicky {
    const DOCUMENT_TYPE: &'static str = "test/panicky";
    const ACTION_TYPES: &'static [&'static str] = &["TICK", "BOOM"];
    type State = PanickyState;
    type Action = PanickyAction;

    fn reduce(state: &mut PanickyState, action: PanickyAction) -> Result<(), Rejection> {
        state.count += 1;
        if PANIC_ON_ANY.load(Ordering::SeqCst) {
            panic!("a bug while folding");
        }
        match action {
            PanickyAction::Tick {} => Ok(()),
            PanickyAction::Boom {} => panic!("a bug in the model"),
        }
    }
}

/// A model whose state nests one level per action: the default state check refuses the 65th.
struct Russian;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Doll {
    inner: Option<Box<Doll>>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", content = "input", rename_all = "SCREAMING_SNAKE_CASE")]
enum DollAction {
    Wrap {},
}

impl DocumentModel for Russian {
    const DOCUMENT_TYPE: &'static str = "test/doll";
    const ACTION_TYPES: &'static [&'static str] = &["WRAP"];
    type State = Doll;
    type Action = DollAction;

    fn reduce(state: &mut Doll, DollAction::Wrap {}: DollAction) -> Result<(), Rejection> {
        let inner = std::mem::take(state);
        state.inner = Some(Box::new(inner));
        Ok(())
    }
}

fn test_models() -> ModelRegistry {
    let mut registry = ModelRegistry::with_builtin();
    registry.register::<Panicky>().register::<Russian>();
    registry
}

#[tokio::test]
async fn a_panicking_reducer_fails_its_job_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with_models(dir.path(), test_models(), ReactorConfig::default(), |c| c).await;
    let (status, doc) = s
        .post("/v1/documents", json!({"documentType": "test/panicky", "name": "p"}))
        .await;
    assert_eq!(status, 201, "{doc}");
    let id = doc["header"]["id"].as_str().unwrap().to_owned();
    let todo = s.create_todo().await;
    assert_eq!(act(&s, &id, json!([{"type": "TICK", "input": {}}])).await.0, 200);
    for _ in 0..3 {
        let got = act(
            &s,
            &id,
            json!([{"type": "TICK", "input": {}}, {"type": "BOOM", "input": {}}]),
        )
        .await;
        assert_error(&got, 500, "REDUCER_PANICKED");
        // The executor lives: the same document and the others take writes.
        assert_eq!(s.add(&todo, &uuid::Uuid::now_v7().to_string()).await.0, 200);
    }
    let got = act(&s, &id, json!([{"type": "TICK", "input": {}}])).await;
    assert_eq!(got.0, 200, "{}", got.1);
    let (doc, revision) = snapshot(&s, &id).await;
    assert_eq!(
        (doc["state"]["global"]["count"].as_u64(), revision),
        (Some(2), 2),
        "nothing of the failed jobs"
    );
    s.stop().await;

    // A panic while a read folds the stored log: the read answers the named error, the process lives.
    PANIC_ON_ANY.store(true, Ordering::SeqCst);
    let s = start_with_models(dir.path(), test_models(), ReactorConfig::default(), |c| c).await;
    let got = s.get(&format!("/v1/documents/{id}")).await;
    PANIC_ON_ANY.store(false, Ordering::SeqCst);
    assert_error(&got, 500, "REDUCER_PANICKED");
    assert_eq!(s.get(&format!("/v1/documents/{todo}")).await.0, 200);
    assert_eq!(snapshot(&s, &id).await.1, 2, "readable again once the model is fixed");

    // The default state check of a model that nests one level per action.
    let (_, doll) = s
        .post("/v1/documents", json!({"documentType": "test/doll", "name": "d"}))
        .await;
    let doll = doll["header"]["id"].as_str().unwrap().to_owned();
    let mut accepted = 0;
    for _ in 0..70 {
        let got = act(&s, &doll, json!([{"type": "WRAP", "input": {}}])).await;
        if got.0 == 200 {
            accepted += 1;
        } else {
            assert_too_deep(&got);
        }
    }
    assert_eq!(accepted, 63, "a doll under 63 wraps nests 64 levels deep");
    assert_eq!(snapshot(&s, &doll).await.1, 63);
    s.stop().await;
}

#[tokio::test]
async fn a_store_holding_a_too_deep_operation_serves_everything_else_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let bad = create_json(&s).await;
    let good = s.create_todo().await;
    assert_eq!(s.add(&good, "milk").await.0, 200);
    assert_eq!(
        act(&s, &bad, json!([{"type": "SET", "input": {"path": "/ok", "value": 1}}]))
            .await
            .0,
        200
    );
    s.stop().await;

    // What the version before the bound accepted: the 200,000-segment SET, appended to the log directly.
    {
        let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
        let unit = SyncUnit::main(bad.parse().unwrap(), Scope::Global);
        let (revision, head) = store.head(&unit).await.unwrap();
        let last: Vec<Operation> = store.read(&unit, revision - 1, None).try_collect().await.unwrap();
        let mut action = Action::new(
            "SET",
            json!({"path": "/a".repeat(200_000), "value": 1}),
            Scope::Global,
            HlcTimestamp::new(last[0].action.timestamp_utc_ms + 1, 0),
        );
        action.replica = last[0].action.replica.clone();
        let op = Operation::new(action, revision, 0, None, &head);
        store.append(&unit, revision, vec![op]).await.unwrap();
        drop(store);
    }
    for _ in 0..2 {
        let s = start(dir.path()).await;
        let got = s.get(&format!("/v1/documents/{bad}")).await;
        assert_error(&got, 500, "CORRUPT_HISTORY");
        let message = got.1["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(&bad) && message.contains("STATE_TOO_DEEP"),
            "names the unit and why: {message}"
        );
        // Writes to it are refused with the same error, and write nothing.
        let got = act(&s, &bad, json!([{"type": "SET", "input": {"path": "/ok", "value": 2}}])).await;
        assert_error(&got, 500, "CORRUPT_HISTORY");
        // Everything else works.
        let (doc, _) = snapshot(&s, &good).await;
        assert_eq!(doc["state"]["global"]["items"]["milk"]["title"], "milk", "{doc}");
        assert_eq!(s.add(&good, &uuid::Uuid::now_v7().to_string()).await.0, 200);
        let (status, list) = s.get("/v1/documents?type=folio/json").await;
        assert_eq!((status, list["documents"].as_array().map(Vec::len)), (200, Some(1)));
        let (status, log) = s.get(&format!("/v1/documents/{bad}/operations?limit=1")).await;
        assert_eq!(
            (status, log["operations"].as_array().map(Vec::len)),
            (200, Some(1)),
            "its history is readable"
        );
        s.stop().await;
    }
    let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
    let unit = SyncUnit::main(bad.parse().unwrap(), Scope::Global);
    assert_eq!(store.head(&unit).await.unwrap().0, 2, "nothing was appended to it");
}
