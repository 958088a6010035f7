//! Per-document access through a real server (HTTP and WebSocket on 127.0.0.1:0, SQLite) and real replicas: two
//! principals with private and shared documents on every read and write path, documents made before owners existed,
//! a subscriber losing its grant, a replica whose principal may read only some documents, and a hostile-input table
//! for the grants endpoint.

mod common;

use std::sync::Arc;

use futures::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use folio_core::{Branch, DocumentId, ModelRegistry, Scope};
use folio_reactor::{ReactorConfig, Submit};
use folio_server::Role;
use folio_server::auth::{NewTokenSpec, Tokens};
use folio_store::SqliteStore;
use folio_sync::{HttpRemote, Replica, RoundOptions, sync_round};

use common::*;

/// A token of `role` for `principal`.
fn token(s: &TestServer, role: Role, principal: &str) -> String {
    let spec = NewTokenSpec {
        principal: Some(principal.to_owned()),
        ..NewTokenSpec::role(role)
    };
    Tokens::create_with(&s.data_dir, &spec).unwrap().0
}

async fn call(s: &TestServer, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    s.call_as(token, method, path, body).await
}

async fn get(s: &TestServer, token: &str, path: &str) -> (u16, Value) {
    call(s, token, reqwest::Method::GET, path, None).await
}

async fn post(s: &TestServer, token: &str, path: &str, body: Value) -> (u16, Value) {
    call(s, token, reqwest::Method::POST, path, Some(body)).await
}

async fn put_grants(s: &TestServer, token: &str, id: &str, body: Value) -> (u16, Value) {
    call(
        s,
        token,
        reqwest::Method::PUT,
        &format!("/v1/documents/{id}/grants"),
        Some(body),
    )
    .await
}

async fn create(s: &TestServer, token: &str, name: &str) -> String {
    let (status, doc) = post(
        s,
        token,
        "/v1/documents",
        json!({"documentType": "folio/todo-list", "name": name}),
    )
    .await;
    assert_eq!(status, 201, "{doc}");
    doc["header"]["id"].as_str().unwrap().to_owned()
}

async fn add(s: &TestServer, token: &str, id: &str, item: &str) -> (u16, Value) {
    post(
        s,
        token,
        &format!("/v1/documents/{id}/actions"),
        json!({"actions": [{"type": "ADD_TODO", "input": {"id": item, "title": item}}]}),
    )
    .await
}

async fn listed(s: &TestServer, token: &str) -> Vec<String> {
    let (status, page) = get(s, token, "/v1/documents?limit=1").await;
    assert_eq!(status, 200, "{page}");
    // Page by one, so that the filter must read on past hidden documents to fill each page.
    let mut ids: Vec<String> = page["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_owned())
        .collect();
    let mut next = page["next"].as_str().map(str::to_owned);
    while let Some(after) = next {
        let (status, page) = get(s, token, &format!("/v1/documents?limit=1&after={after}")).await;
        assert_eq!(status, 200, "{page}");
        ids.extend(
            page["documents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["id"].as_str().unwrap().to_owned()),
        );
        next = page["next"].as_str().map(str::to_owned);
    }
    ids
}

/// Every read path of document `id` answers 404 `DOCUMENT_NOT_FOUND` to `token`, and every write path too (a read
/// token's writes are refused by its role first, 403 for every id alike).
async fn hidden_everywhere(s: &TestServer, token: &str, id: &str) {
    let (write_status, write_code) = match Tokens::open(&s.data_dir).unwrap().role_of(token) {
        Some(Role::Read) => (403, "FORBIDDEN"),
        _ => (404, "DOCUMENT_NOT_FOUND"),
    };
    for path in [
        format!("/v1/documents/{id}"),
        format!("/v1/documents/{id}?revision=0"),
        format!("/v1/documents/{id}?minRevision=0"),
        format!("/v1/documents/{id}/operations"),
        format!("/v1/documents/{id}/operations?scope=document"),
        format!("/v1/documents/{id}/conflicts"),
        format!("/v1/documents/{id}/grants"),
    ] {
        assert_error(&get(s, token, &path).await, 404, "DOCUMENT_NOT_FOUND");
    }
    assert_error(&add(s, token, id, "sneak").await, write_status, write_code);
    assert_error(
        &call(s, token, reqwest::Method::DELETE, &format!("/v1/documents/{id}"), None).await,
        write_status,
        write_code,
    );
    assert_error(
        &put_grants(s, token, id, json!({"grants": [{"principal": "*", "access": "write"}]})).await,
        write_status,
        write_code,
    );
    // The answers are those of a document that never existed.
    let missing = DocumentId::new().to_string();
    let (_, a) = get(s, token, &format!("/v1/documents/{id}")).await;
    let (_, b) = get(s, token, &format!("/v1/documents/{missing}")).await;
    assert_eq!(
        a["error"]["message"].as_str().unwrap().replace(id, "X"),
        b["error"]["message"].as_str().unwrap().replace(&missing, "X")
    );
    assert!(!listed(s, token).await.contains(&id.to_owned()));
}

#[tokio::test]
async fn private_and_shared_documents_on_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let alice = token(&s, Role::Write, "alice");
    let bob = token(&s, Role::Write, "bob");
    let carol = token(&s, Role::Read, "carol");

    let a = create(&s, &alice, "alice's").await;
    let b = create(&s, &bob, "bob's").await;
    let (_, doc) = get(&s, &alice, &format!("/v1/documents/{a}")).await;
    assert_eq!(doc["header"]["owner"], "alice");
    assert!(doc["header"].get("grants").is_none(), "{doc}");
    assert_eq!(
        get(&s, &alice, &format!("/v1/documents/{a}/grants")).await,
        (200, json!({"owner": "alice", "grants": []}))
    );
    assert_eq!(add(&s, &alice, &a, "milk").await.0, 200);

    // Private: each principal sees only its own; the admin sees both.
    hidden_everywhere(&s, &bob, &a).await;
    hidden_everywhere(&s, &carol, &a).await;
    hidden_everywhere(&s, &alice, &b).await;
    assert_eq!(listed(&s, &alice).await, vec![a.clone()]);
    assert_eq!(listed(&s, &bob).await, vec![b.clone()]);
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    assert_eq!(listed(&s, &s.admin).await, both);
    // Nothing bob tried reached the document.
    let (_, doc) = get(&s, &alice, &format!("/v1/documents/{a}")).await;
    assert_eq!(
        doc["header"]["revision"],
        json!({"global": 1, "local": 0, "document": 1})
    );

    // Shared for reading with bob: bob reads on every path, writes nowhere (403, not 404).
    let shared = put_grants(
        &s,
        &alice,
        &a,
        json!({"grants": [{"principal": "bob", "access": "read"}]}),
    )
    .await;
    assert_eq!(
        shared,
        (
            200,
            json!({"owner": "alice", "grants": [{"principal": "bob", "access": "read"}]})
        )
    );
    for path in [
        format!("/v1/documents/{a}"),
        format!("/v1/documents/{a}/operations"),
        format!("/v1/documents/{a}/conflicts"),
        format!("/v1/documents/{a}/grants"),
    ] {
        assert_eq!(get(&s, &bob, &path).await.0, 200, "{path}");
    }
    assert_eq!(listed(&s, &bob).await.len(), 2);
    let (_, page) = get(&s, &bob, "/v1/documents").await;
    let header = page["documents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == a.as_str())
        .unwrap()
        .clone();
    assert_eq!(header["owner"], "alice");
    assert_eq!(header["grants"], json!([{"principal": "bob", "access": "read"}]));
    assert_error(&add(&s, &bob, &a, "beer").await, 403, "FORBIDDEN");
    assert_error(
        &call(&s, &bob, reqwest::Method::DELETE, &format!("/v1/documents/{a}"), None).await,
        403,
        "FORBIDDEN",
    );
    assert_error(
        &put_grants(
            &s,
            &bob,
            &a,
            json!({"grants": [{"principal": "bob", "access": "write"}]}),
        )
        .await,
        403,
        "FORBIDDEN",
    );
    // Nor through the actions endpoint, as the document scope's own action.
    let sneaky = post(
        &s,
        &bob,
        &format!("/v1/documents/{a}/actions"),
        json!({"actions": [{"type": "SET_GRANTS", "scope": "document",
            "input": {"grants": [{"principal": "bob", "access": "write"}]}}]}),
    )
    .await;
    assert_error(&sneaky, 403, "FORBIDDEN");

    // Write for everyone holding a token: bob writes; carol (a read token) still never writes, but reads.
    put_grants(
        &s,
        &alice,
        &a,
        json!({"grants": [{"principal": "*", "access": "write"}]}),
    )
    .await;
    assert_eq!(add(&s, &bob, &a, "beer").await.0, 200);
    assert_eq!(get(&s, &carol, &format!("/v1/documents/{a}")).await.0, 200);
    assert_error(&add(&s, &carol, &a, "wine").await, 403, "FORBIDDEN");
    // A writer that is not the owner manages nothing.
    assert_error(&put_grants(&s, &bob, &a, json!({"grants": []})).await, 403, "FORBIDDEN");

    // Only an admin changes the owner; the owner may repeat itself.
    assert_error(
        &put_grants(&s, &alice, &a, json!({"grants": [], "owner": "bob"})).await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        put_grants(&s, &alice, &a, json!({"grants": [], "owner": "alice"}))
            .await
            .0,
        200
    );
    hidden_everywhere(&s, &bob, &a).await;
    let given = put_grants(
        &s,
        &s.admin,
        &a,
        json!({"grants": [{"principal": "alice", "access": "read"}], "owner": "bob"}),
    )
    .await;
    assert_eq!(
        given,
        (
            200,
            json!({"owner": "bob", "grants": [{"principal": "alice", "access": "read"}]})
        )
    );
    assert_eq!(add(&s, &bob, &a, "bread").await.0, 200);
    assert_error(&add(&s, &alice, &a, "cheese").await, 403, "FORBIDDEN");

    // Every change is an operation of the document scope, in its history.
    let (_, ops) = get(&s, &bob, &format!("/v1/documents/{a}/operations?scope=document")).await;
    let types: Vec<&str> = ops["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["action"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "CREATE_DOCUMENT",
            "SET_GRANTS",
            "SET_GRANTS",
            "SET_GRANTS",
            "SET_GRANTS"
        ]
    );
    assert_eq!(ops["operations"][0]["action"]["input"]["owner"], "alice");

    // The owner deletes; a deleted document answers 404 to everyone.
    assert_eq!(
        call(&s, &bob, reqwest::Method::DELETE, &format!("/v1/documents/{a}"), None)
            .await
            .0,
        200
    );
    assert_error(
        &get(&s, &alice, &format!("/v1/documents/{a}")).await,
        404,
        "DOCUMENT_NOT_FOUND",
    );
    assert_error(
        &put_grants(&s, &bob, &a, json!({"grants": []})).await,
        404,
        "DOCUMENT_NOT_FOUND",
    );
    s.stop().await;
}

#[tokio::test]
async fn documents_without_owner_keep_the_behaviour_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let bob = token(&s, Role::Write, "bob");
    let carol = token(&s, Role::Read, "carol");
    // A document made before owners existed: its creation names no owner (pushed by an admin, which claims
    // nothing).
    let id = DocumentId::new();
    let mut create = folio_core::Action::new(
        "CREATE_DOCUMENT",
        json!({"documentType": "folio/todo-list", "name": "old"}),
        Scope::Document,
        folio_core::HybridClock::new().now(),
    );
    create.replica = Some("old-replica".into());
    let pushed = post(
        &s,
        &s.admin,
        "/v1/sync/push",
        json!({"replica": "old-replica", "entries": [{"documentId": id, "scope": "document", "branch": "main", "action": create}]}),
    )
    .await;
    assert_eq!(pushed.0, 200, "{}", pushed.1);
    let id = id.to_string();
    assert_eq!(
        get(&s, &carol, &format!("/v1/documents/{id}/grants")).await,
        (200, json!({"owner": null, "grants": []}))
    );
    // Every token by its role: bob writes, carol reads.
    assert_eq!(add(&s, &bob, &id, "x").await.0, 200);
    assert_eq!(get(&s, &carol, &format!("/v1/documents/{id}")).await.0, 200);
    assert_error(&add(&s, &carol, &id, "y").await, 403, "FORBIDDEN");
    assert!(listed(&s, &carol).await.contains(&id));
    // No owner manages it: only an admin, who may give it one.
    assert_error(
        &put_grants(&s, &bob, &id, json!({"grants": []})).await,
        403,
        "FORBIDDEN",
    );
    assert_eq!(
        put_grants(&s, &s.admin, &id, json!({"grants": [], "owner": "bob"}))
            .await
            .0,
        200
    );
    hidden_everywhere(&s, &carol, &id).await;
    assert_eq!(add(&s, &bob, &id, "z").await.0, 200);
    s.stop().await;
}

#[tokio::test]
async fn hostile_grants_are_refused_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let alice = token(&s, Role::Write, "alice");
    let bob = token(&s, Role::Write, "bob");
    let carol = token(&s, Role::Read, "carol");
    let id = create(&s, &alice, "a").await;
    let shared = create(&s, &alice, "shared with bob").await;
    put_grants(
        &s,
        &alice,
        &shared,
        json!({"grants": [{"principal": "bob", "access": "write"}, {"principal": "carol", "access": "read"}]}),
    )
    .await;
    let grant = |p: &str| json!({"principal": p, "access": "read"});
    let many: Vec<Value> = (0..1001).map(|i| grant(&format!("p{i}"))).collect();
    let long = "x".repeat(201);
    let missing = DocumentId::new().to_string();
    let cases: Vec<(&str, &str, &str, Value, u16, &str)> = vec![
        (
            "unknown access",
            &alice,
            &id,
            json!({"grants": [{"principal": "bob", "access": "admin"}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "access missing",
            &alice,
            &id,
            json!({"grants": [{"principal": "bob"}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "unknown grant field",
            &alice,
            &id,
            json!({"grants": [{"principal": "bob", "access": "read", "until": 1}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "unknown body field",
            &alice,
            &id,
            json!({"grants": [], "everyone": true}),
            400,
            "BAD_REQUEST",
        ),
        ("grants missing", &alice, &id, json!({}), 400, "BAD_REQUEST"),
        (
            "grants not a list",
            &alice,
            &id,
            json!({"grants": {"bob": "read"}}),
            400,
            "BAD_REQUEST",
        ),
        (
            "principal not a string",
            &alice,
            &id,
            json!({"grants": [{"principal": 7, "access": "read"}]}),
            400,
            "BAD_REQUEST",
        ),
        (
            "empty principal",
            &alice,
            &id,
            json!({"grants": [grant("")]}),
            400,
            "INVALID_PRINCIPAL",
        ),
        (
            "201-character principal",
            &alice,
            &id,
            json!({"grants": [grant(&long)]}),
            400,
            "INVALID_PRINCIPAL",
        ),
        (
            "control character",
            &alice,
            &id,
            json!({"grants": [grant("bo\u{0}b")]}),
            400,
            "INVALID_PRINCIPAL",
        ),
        (
            "newline",
            &alice,
            &id,
            json!({"grants": [grant("bob\nadmin")]}),
            400,
            "INVALID_PRINCIPAL",
        ),
        (
            "everyone as owner",
            &s.admin,
            &id,
            json!({"grants": [], "owner": "*"}),
            400,
            "INVALID_PRINCIPAL",
        ),
        (
            "empty owner",
            &s.admin,
            &id,
            json!({"grants": [], "owner": ""}),
            400,
            "INVALID_PRINCIPAL",
        ),
        (
            "1,001 grants",
            &alice,
            &id,
            json!({"grants": many}),
            400,
            "TOO_MANY_GRANTS",
        ),
        (
            "duplicate",
            &alice,
            &id,
            json!({"grants": [grant("bob"), {"principal": "bob", "access": "write"}]}),
            400,
            "DUPLICATE_GRANT",
        ),
        (
            "non-owner writer that reads",
            &bob,
            &shared,
            json!({"grants": [grant("bob")]}),
            403,
            "FORBIDDEN",
        ),
        (
            "non-owner that cannot read",
            &bob,
            &id,
            json!({"grants": [grant("bob")]}),
            404,
            "DOCUMENT_NOT_FOUND",
        ),
        (
            "read token that reads",
            &carol,
            &shared,
            json!({"grants": []}),
            403,
            "FORBIDDEN",
        ),
        (
            "owner giving the document away",
            &alice,
            &id,
            json!({"grants": [], "owner": "bob"}),
            403,
            "FORBIDDEN",
        ),
        (
            "missing document",
            &alice,
            &missing,
            json!({"grants": []}),
            404,
            "DOCUMENT_NOT_FOUND",
        ),
        (
            "missing document, admin",
            &s.admin,
            &missing,
            json!({"grants": []}),
            404,
            "DOCUMENT_NOT_FOUND",
        ),
        (
            "not an id",
            &alice,
            "not-a-uuid",
            json!({"grants": []}),
            400,
            "BAD_REQUEST",
        ),
    ];
    for (what, who, doc, body, status, code) in cases {
        let got = put_grants(&s, who, doc, body).await;
        assert_eq!(got.0, status, "{what}: {}", got.1);
        assert_eq!(got.1["error"]["code"], code, "{what}: {}", got.1);
    }
    // Malformed JSON and a body that is not JSON get the body's named errors.
    for (body, content_type) in [("{\"grants\": [", "application/json"), ("grants=none", "text/plain")] {
        let resp = s
            .client
            .put(s.url(&format!("/v1/documents/{id}/grants")))
            .bearer_auth(&alice)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap();
        assert!(status == 400 || status == 415, "{body}: {status} {v}");
        assert!(v["error"]["code"].is_string(), "{v}");
    }
    // Nothing was stored: the document scopes hold their creation and the one grant change.
    for (doc, n) in [(&id, 1), (&shared, 2)] {
        let (_, ops) = get(&s, &s.admin, &format!("/v1/documents/{doc}/operations?scope=document")).await;
        assert_eq!(ops["operations"].as_array().unwrap().len(), n, "{ops}");
    }
    // No token is made for the principal `*` (everyone), nor for an unusable one.
    for body in [
        json!({"role": "write", "principal": "*"}),
        json!({"role": "write", "label": "*"}),
        json!({"role": "write", "principal": ""}),
        json!({"role": "write", "principal": "a\u{7}b"}),
    ] {
        assert_error(&post(&s, &s.admin, "/v1/tokens", body).await, 400, "BAD_REQUEST");
    }
    // The limits themselves are taken: 1,000 grants, a 200-character principal.
    let thousand: Vec<Value> = (0..1000).map(|i| grant(&format!("p{i}"))).collect();
    assert_eq!(put_grants(&s, &alice, &id, json!({"grants": thousand})).await.0, 200);
    let (status, got) = put_grants(&s, &alice, &id, json!({"grants": [grant(&"y".repeat(200))]})).await;
    assert_eq!(status, 200, "{got}");
    s.stop().await;
}

/// The next `operations` event's document and the ids of the items its global operations add.
async fn next_operations(ws: &mut Ws) -> (String, String, Vec<String>) {
    loop {
        let e = next_json(ws).await;
        if e["event"] == "operations" {
            let items = e["operations"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|o| o["action"]["input"]["id"].as_str().map(str::to_owned))
                .collect();
            return (
                e["documentId"].as_str().unwrap().to_owned(),
                e["scope"].as_str().unwrap().to_owned(),
                items,
            );
        }
    }
}

#[tokio::test]
async fn a_subscriber_losing_its_grant_stops_receiving() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let alice = token(&s, Role::Write, "alice");
    let bob = token(&s, Role::Read, "bob");
    let shared = create(&s, &alice, "shared").await;
    let private = create(&s, &alice, "private").await;
    let control = create(&s, &alice, "control").await;
    for id in [&shared, &control] {
        put_grants(
            &s,
            &alice,
            id,
            json!({"grants": [{"principal": "bob", "access": "read"}]}),
        )
        .await;
    }
    let url = format!("{}/v1/subscribe?token={bob}", s.base.replace("http://", "ws://"));
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    // Everything: the filter is access's alone.
    ws.send(Message::Text(json!({"subscribe": {}}).to_string().into()))
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"event": "subscribed"}));

    assert_eq!(add(&s, &alice, &private, "p1").await.0, 200);
    assert_eq!(add(&s, &alice, &shared, "s1").await.0, 200);
    // The private document's event never came: the first is the shared one's.
    assert_eq!(
        next_operations(&mut ws).await,
        (shared.clone(), "global".into(), vec!["s1".into()])
    );

    // The grant is lost while subscribed (the last event of the shared document bob may see is that change).
    put_grants(&s, &alice, &shared, json!({"grants": []})).await;
    assert_eq!(add(&s, &alice, &shared, "s2").await.0, 200);
    assert_eq!(add(&s, &alice, &private, "p2").await.0, 200);
    assert_eq!(add(&s, &alice, &control, "c1").await.0, 200);
    // Everything after the change, up to the control document's event (committed last), is the control's.
    loop {
        let (doc, scope, items) = next_operations(&mut ws).await;
        if doc == control {
            assert_eq!(items, vec!["c1".to_owned()]);
            break;
        }
        assert_eq!(
            (doc, scope.as_str()),
            (shared.clone(), "document"),
            "only the grant change of the shared document"
        );
    }
    // Granted again: events flow again.
    put_grants(
        &s,
        &alice,
        &shared,
        json!({"grants": [{"principal": "*", "access": "read"}]}),
    )
    .await;
    assert_eq!(add(&s, &alice, &shared, "s3").await.0, 200);
    loop {
        let (doc, _, items) = next_operations(&mut ws).await;
        if !items.is_empty() {
            assert_eq!((doc, items), (shared.clone(), vec!["s3".to_owned()]));
            break;
        }
    }
    s.stop().await;
}

struct Node {
    replica: Replica,
    _dir: tempfile::TempDir,
}

async fn node() -> Node {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
    let replica = Replica::open(
        Arc::new(store),
        Arc::new(ModelRegistry::with_builtin()),
        ReactorConfig::default(),
    )
    .await
    .unwrap();
    Node { replica, _dir: dir }
}

impl Node {
    async fn state_hash(&self, id: &str) -> Option<String> {
        let id: DocumentId = id.parse().unwrap();
        self.replica
            .reactor()
            .get(id, &Branch::default())
            .await
            .unwrap()
            .map(|d| d.state_hash().to_hex())
    }

    async fn round(&self, remote: &HttpRemote) -> folio_sync::RoundReport {
        sync_round(&self.replica, remote, &RoundOptions::default())
            .await
            .expect("sync round")
    }
}

async fn server_hash(s: &TestServer, id: &str) -> String {
    let (status, doc) = get(s, &s.admin, &format!("/v1/documents/{id}")).await;
    assert_eq!(status, 200, "{doc}");
    doc["stateHash"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_replica_converges_on_exactly_what_its_principal_may_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let alice = token(&s, Role::Write, "alice");
    let bob = token(&s, Role::Write, "bob");
    let shared = create(&s, &alice, "shared").await;
    let private = create(&s, &alice, "private").await;
    let admins = create(&s, &s.admin, "admin's").await;
    let everyone = create(&s, &alice, "everyone's").await;
    for (id, n) in [(&shared, 5), (&private, 300), (&everyone, 2)] {
        for i in 0..n {
            assert_eq!(add(&s, &alice, id, &format!("i{i}")).await.0, 200);
        }
    }
    for i in 0..3 {
        assert_eq!(add(&s, &s.admin, &admins, &format!("i{i}")).await.0, 200);
    }
    put_grants(
        &s,
        &alice,
        &shared,
        json!({"grants": [{"principal": "bob", "access": "read"}]}),
    )
    .await;
    put_grants(
        &s,
        &alice,
        &everyone,
        json!({"grants": [{"principal": "*", "access": "write"}]}),
    )
    .await;

    let remote = HttpRemote::new(&s.base, Some(bob.clone())).unwrap();
    let replica = node().await;
    replica.round(&remote).await;
    for id in [&shared, &everyone] {
        assert_eq!(replica.state_hash(id).await, Some(server_hash(&s, id).await), "{id}");
    }
    for id in [&private, &admins] {
        assert_eq!(replica.state_hash(id).await, None, "{id} must not reach bob's replica");
    }

    // A grant gained after the cursor passed the document's 300 older operations: the replica still ends with the
    // whole document.
    put_grants(
        &s,
        &alice,
        &private,
        json!({"grants": [{"principal": "bob", "access": "read"}]}),
    )
    .await;
    let report = replica.round(&remote).await;
    assert!(report.pulled >= 301, "{report:?}");
    assert_eq!(
        replica.state_hash(&private).await,
        Some(server_hash(&s, &private).await)
    );
    assert_eq!(replica.state_hash(&admins).await, None);

    // Bob's replica acts offline on a document it may only read, on one everyone writes, and creates one.
    let act = |id: &str, item: &str| {
        let id: DocumentId = id.parse().unwrap();
        let action = replica
            .replica
            .reactor()
            .action("ADD_TODO", json!({"id": item, "title": item}), Scope::Global);
        Submit::new(id, vec![action])
    };
    replica
        .replica
        .reactor()
        .apply(act(&shared, "bob-was-here"))
        .await
        .unwrap();
    replica
        .replica
        .reactor()
        .apply(act(&everyone, "bob-too"))
        .await
        .unwrap();
    let own = replica
        .replica
        .reactor()
        .create_document("folio/todo-list", "bob's offline", None)
        .await
        .unwrap()
        .header
        .id
        .to_string();
    replica.replica.reactor().apply(act(&own, "first")).await.unwrap();
    let report = replica.round(&remote).await;
    // The action on the read-only document is refused and reported; the rest of the push went on.
    assert_eq!(report.conflicts.len(), 1, "{report:?}");
    assert!(report.conflicts[0].reason.starts_with("FORBIDDEN"), "{report:?}");
    assert_eq!(report.conflicts[0].document_id.to_string(), shared);
    let (_, doc) = get(&s, &alice, &format!("/v1/documents/{shared}")).await;
    assert!(doc["state"]["global"]["items"].get("bob-was-here").is_none(), "{doc}");
    let (_, doc) = get(&s, &alice, &format!("/v1/documents/{everyone}")).await;
    assert!(doc["state"]["global"]["items"].get("bob-too").is_some(), "{doc}");
    // The document bob's replica created offline is bob's on the server, and the replica learnt it.
    assert_eq!(
        get(&s, &bob, &format!("/v1/documents/{own}/grants")).await,
        (200, json!({"owner": "bob", "grants": []}))
    );
    hidden_everywhere(&s, &alice, &own).await;
    replica.round(&remote).await;
    let mine = replica
        .replica
        .reactor()
        .get(own.parse().unwrap(), &Branch::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mine.header.owner.as_deref(), Some("bob"));
    assert_eq!(Some(server_hash(&s, &own).await), replica.state_hash(&own).await);

    // A grant lost: what the document does afterwards no longer reaches the replica.
    put_grants(&s, &alice, &private, json!({"grants": []})).await;
    let before = replica.state_hash(&private).await;
    assert_eq!(add(&s, &alice, &private, "after").await.0, 200);
    replica.round(&remote).await;
    assert_eq!(replica.state_hash(&private).await, before);
    assert_ne!(Some(server_hash(&s, &private).await), before);
    // Pulling directly shows nothing of it either.
    let (_, pulled) = get(&s, &bob, "/v1/sync/pull?after=0&limit=10000").await;
    let ids: std::collections::HashSet<&str> = pulled["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["documentId"].as_str().unwrap())
        .collect();
    assert!(
        !ids.contains(private.as_str()) && !ids.contains(admins.as_str()),
        "{ids:?}"
    );
    assert!(ids.contains(shared.as_str()) && ids.contains(everyone.as_str()) && ids.contains(own.as_str()));
    s.stop().await;
}

#[tokio::test]
async fn pushes_refuse_per_action_and_never_reveal_existence() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let alice = token(&s, Role::Write, "alice");
    let bob = token(&s, Role::Write, "bob");
    let private = create(&s, &alice, "private").await;
    let clock = folio_core::HybridClock::new();
    let entry = |doc: &str, scope: Scope, action_type: &str, input: Value| {
        let mut action = folio_core::Action::new(action_type, input, scope, clock.now());
        action.replica = Some("bobs-replica".into());
        json!({"documentId": doc, "scope": scope, "branch": "main", "action": action})
    };
    let missing = DocumentId::new().to_string();
    let fresh = DocumentId::new().to_string();
    let foreign = DocumentId::new().to_string();
    let offline = DocumentId::new().to_string();
    let entries = vec![
        // A document bob may not read, and one that does not exist: the same refusal.
        entry(&private, Scope::Global, "ADD_TODO", json!({"id": "x", "title": "x"})),
        entry(&missing, Scope::Global, "ADD_TODO", json!({"id": "x", "title": "x"})),
        // A document created owned by someone else: refused with its actions.
        entry(
            &foreign,
            Scope::Document,
            "CREATE_DOCUMENT",
            json!({"documentType": "folio/todo-list", "owner": "alice"}),
        ),
        entry(&foreign, Scope::Global, "ADD_TODO", json!({"id": "y", "title": "y"})),
        // Bob's own new document, with an owner change only an admin may make: only that is refused.
        entry(
            &fresh,
            Scope::Document,
            "CREATE_DOCUMENT",
            json!({"documentType": "folio/todo-list", "owner": "bob"}),
        ),
        entry(&fresh, Scope::Global, "ADD_TODO", json!({"id": "z", "title": "z"})),
        entry(
            &fresh,
            Scope::Document,
            "SET_GRANTS",
            json!({"grants": [], "owner": "alice"}),
        ),
        entry(
            &fresh,
            Scope::Document,
            "SET_GRANTS",
            json!({"grants": [{"principal": "alice", "access": "read"}]}),
        ),
        // A document created offline, without owner, shared offline: the pusher's, shared as it said.
        entry(
            &offline,
            Scope::Document,
            "CREATE_DOCUMENT",
            json!({"documentType": "folio/todo-list"}),
        ),
        entry(
            &offline,
            Scope::Document,
            "SET_GRANTS",
            json!({"grants": [{"principal": "carol", "access": "write"}]}),
        ),
    ];
    let (status, answer) = post(
        &s,
        &bob,
        "/v1/sync/push",
        json!({"replica": "bobs-replica", "entries": entries}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let reasons: Vec<(String, String)> = answer["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["documentId"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().split(':').next().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            (private.clone(), "DOCUMENT_NOT_FOUND".into()),
            (missing.clone(), "DOCUMENT_NOT_FOUND".into()),
            (foreign.clone(), "FORBIDDEN".into()),
            (foreign.clone(), "FORBIDDEN".into()),
            (fresh.clone(), "FORBIDDEN".into()),
        ]
    );
    assert_eq!(answer["new"], 5, "{answer}");
    assert_eq!(
        get(&s, &bob, &format!("/v1/documents/{offline}/grants")).await,
        (
            200,
            json!({"owner": "bob", "grants": [{"principal": "carol", "access": "write"}]})
        )
    );
    let msg = |r: &Value| {
        r["reason"]
            .as_str()
            .unwrap()
            .replace(r["documentId"].as_str().unwrap(), "X")
    };
    assert_eq!(msg(&answer["rejected"][0]), msg(&answer["rejected"][1]));
    assert_eq!(
        get(&s, &alice, &format!("/v1/documents/{fresh}/grants")).await,
        (
            200,
            json!({"owner": "bob", "grants": [{"principal": "alice", "access": "read"}]})
        )
    );
    assert_error(
        &get(&s, &s.admin, &format!("/v1/documents/{foreign}")).await,
        404,
        "DOCUMENT_NOT_FOUND",
    );
    let (_, doc) = get(&s, &alice, &format!("/v1/documents/{private}")).await;
    assert_eq!(doc["header"]["revision"]["global"], 0);
    s.stop().await;
}

/// Reads `/v1/sync/live` messages until one carries an entry of `want` (a document), returning every entry's
/// document and the item ids its global actions add, in order.
async fn live_until(ws: &mut Ws, want: &str) -> Vec<(String, Option<String>)> {
    let mut seen = Vec::new();
    loop {
        let message = next_json(ws).await;
        let mut found = false;
        for e in message["entries"].as_array().unwrap() {
            let doc = e["documentId"].as_str().unwrap().to_owned();
            found |= doc == want;
            seen.push((doc, e["action"]["input"]["id"].as_str().map(str::to_owned)));
        }
        if found {
            return seen;
        }
    }
}

#[tokio::test]
async fn live_sync_sends_only_readable_documents_and_a_granted_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = start(dir.path()).await;
    let alice = token(&s, Role::Write, "alice");
    let bob = token(&s, Role::Read, "bob");
    let shared = create(&s, &alice, "shared").await;
    let private = create(&s, &alice, "private").await;
    put_grants(
        &s,
        &alice,
        &shared,
        json!({"grants": [{"principal": "bob", "access": "read"}]}),
    )
    .await;
    add(&s, &alice, &private, "old").await;
    add(&s, &alice, &shared, "s1").await;
    let url = format!(
        "{}/v1/sync/live?after=0&token={bob}",
        s.base.replace("http://", "ws://")
    );
    let mut ws = tokio_tungstenite::connect_async(url).await.unwrap().0;
    // The catch-up: the shared document only.
    let seen = live_until(&mut ws, &shared).await;
    assert!(seen.iter().all(|(d, _)| d == &shared), "{seen:?}");
    assert!(seen.contains(&(shared.clone(), Some("s1".into()))));
    // Live: the private document's writes are left out.
    add(&s, &alice, &private, "p1").await;
    add(&s, &alice, &shared, "s2").await;
    let seen = live_until(&mut ws, &shared).await;
    assert!(seen.iter().all(|(d, _)| d == &shared), "{seen:?}");
    // Granted: the private document's whole history comes with the grant, older operations included.
    put_grants(
        &s,
        &alice,
        &private,
        json!({"grants": [{"principal": "*", "access": "read"}]}),
    )
    .await;
    let seen = live_until(&mut ws, &private).await;
    let items: Vec<&str> = seen
        .iter()
        .filter(|(d, _)| d == &private)
        .filter_map(|(_, i)| i.as_deref())
        .collect();
    assert_eq!(items, ["old", "p1"], "{seen:?}");
    s.stop().await;
}

#[tokio::test]
async fn a_listing_looks_at_a_bounded_number_of_headers() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), ReactorConfig::default(), |c| folio_server::ServerConfig {
        list_scan: 3,
        ..c
    })
    .await;
    let alice = token(&s, Role::Write, "alice");
    let bob = token(&s, Role::Write, "bob");
    let mut mine = Vec::new();
    for i in 0..8 {
        create(&s, &alice, &format!("hidden {i}")).await;
        if i % 4 == 3 {
            mine.push(create(&s, &bob, &format!("bob's {i}")).await);
        }
    }
    // Eight hidden documents and two of bob's, in id (creation) order: pages are cut after 3 headers looked at,
    // some short or empty, and following `next` lists exactly bob's.
    let (status, first) = get(&s, &bob, "/v1/documents?limit=2").await;
    assert_eq!(status, 200);
    assert!(first["documents"].as_array().unwrap().is_empty(), "{first}");
    assert!(first["next"].is_string(), "{first}");
    assert_eq!(listed(&s, &bob).await, mine);
    let (_, all) = get(&s, &alice, "/v1/documents?limit=100").await;
    assert_eq!(all["documents"].as_array().unwrap().len(), 8, "{all}");
    assert!(
        all["next"].is_null(),
        "a page filled before the end needs no cut: {all}"
    );
    s.stop().await;
}
