//! Per-document access on two nodes sharing one PostgreSQL database (`FOLIO_TEST_DATABASE_URL`; scripts/test
//! provides it): a grant given or taken through one node is what the other node decides by, though that node had
//! the document's rules in memory.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;

use folio_core::ModelRegistry;
use folio_reactor::{Reactor, ReactorConfig};
use folio_server::auth::{NewTokenSpec, Tokens};
use folio_server::{Role, ServerConfig};
use folio_store::PgStore;
use folio_store::pg_testing::TestDatabase;

struct Node {
    base: String,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

/// A node on `url` whose data directory (its tokens) is `data_dir`, shared by both nodes.
async fn node(url: &str, data_dir: &std::path::Path) -> Node {
    let store = PgStore::open(url).await.unwrap();
    let reactor = Reactor::open(
        Arc::new(store),
        Arc::new(ModelRegistry::with_builtin()),
        ReactorConfig::default(),
    )
    .await
    .unwrap();
    let state = folio_server::app_state(reactor, ServerConfig::new(data_dir)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        folio_server::serve(listener, state, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Node { base, stop, task }
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Waits until `GET url` answers `status` to `token` (another node's commit reaches this one within its catch-up).
async fn until_status(client: &reqwest::Client, url: &str, token: &str, status: u16) {
    let start = Instant::now();
    loop {
        let (got, body) = call(client, reqwest::Method::GET, url.to_owned(), token, None).await;
        if got == status {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still {got} after 10 s: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_changed_through_one_node_decide_on_the_other() {
    folio_sync::tls::install_crypto_provider();
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let a = node(&db.url, dir.path()).await;
    let b = node(&db.url, dir.path()).await;
    let token = |principal: &str| {
        let spec = NewTokenSpec {
            principal: Some(principal.to_owned()),
            ..NewTokenSpec::role(Role::Write)
        };
        Tokens::create_with(dir.path(), &spec).unwrap().0
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let client = reqwest::Client::new();
    let (status, doc) = call(
        &client,
        reqwest::Method::POST,
        format!("{}/v1/documents", a.base),
        &alice,
        Some(json!({"documentType": "folio/todo-list", "name": "shared"})),
    )
    .await;
    assert_eq!(status, 201, "{doc}");
    let id = doc["header"]["id"].as_str().unwrap().to_owned();
    let on_b = format!("{}/v1/documents/{id}", b.base);
    // Node b decides (and keeps in memory) that bob may not read it.
    until_status(&client, &format!("{on_b}/grants"), &alice, 200).await;
    assert_eq!(
        call(&client, reqwest::Method::GET, on_b.clone(), &bob, None).await.0,
        404
    );

    // Shared through node a: node b lets bob read.
    let grants = |g: Value| Some(json!({ "grants": g }));
    let put = format!("{}/v1/documents/{id}/grants", a.base);
    let (status, _) = call(
        &client,
        reqwest::Method::PUT,
        put.clone(),
        &alice,
        grants(json!([{"principal": "bob", "access": "read"}])),
    )
    .await;
    assert_eq!(status, 200);
    until_status(&client, &on_b, &bob, 200).await;
    let (status, body) = call(&client, reqwest::Method::GET, format!("{on_b}/grants"), &bob, None).await;
    assert_eq!((status, body["owner"].clone()), (200, json!("alice")));

    // Taken back through node a: node b forgets what it had in memory.
    let (status, _) = call(&client, reqwest::Method::PUT, put, &alice, grants(json!([]))).await;
    assert_eq!(status, 200);
    until_status(&client, &on_b, &bob, 404).await;
    for n in [a, b] {
        let _ = n.stop.send(());
        n.task.await.unwrap();
    }
}
