//! Two real `folio serve` processes on one PostgreSQL database (`FOLIO_TEST_DATABASE_URL`; scripts/test starts a
//! throwaway server, and without it these tests fail, saying so), with real HTTP and WebSocket clients:
//! 50 writers through each node on the same documents store every acknowledged operation exactly once, `verify`
//! passes, and a subscriber on node A receives every operation written through node B, in order; a node killed with
//! SIGKILL while writing leaves no partial operation and the other node keeps serving.
//!
//! Under `scripts/netns-nodes` (`FOLIO_TEST_NODE_NETNS=ns@address,…`) node k runs in the k-th network namespace,
//! listening on its address, and reaches the database across a bridge with added delay: nodes on machines of their
//! own, simulated.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use folio_store::pg_testing::TestDatabase;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
        .port()
}

/// A `folio serve` process; killed when dropped.
struct Node {
    child: Child,
    base: String,
    log: PathBuf,
}

/// Nodes started so far: node k runs in the k-th namespace of `FOLIO_TEST_NODE_NETNS`, when set.
static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The command that starts the next node, and the host it listens on: `ip netns exec NS folio` and the namespace's
/// address under scripts/netns-nodes, else `folio` on 127.0.0.1.
fn node_command() -> (Command, String) {
    let k = STARTED.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let list = std::env::var("FOLIO_TEST_NODE_NETNS").unwrap_or_default();
    let spaces: Vec<&str> = list.split(',').filter(|s| !s.is_empty()).collect();
    match spaces.get(k % spaces.len().max(1)).and_then(|s| s.split_once('@')) {
        Some((ns, address)) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_folio")]);
            (command, address.to_owned())
        }
        None => (Command::new(env!("CARGO_BIN_EXE_folio")), "127.0.0.1".to_owned()),
    }
}

impl Node {
    /// Starts a node on `url`, keeping tokens in `data_dir` (nodes of one cluster share it) and its log beside.
    async fn start(name: &str, data_dir: &Path, url: &str) -> Node {
        let port = free_port();
        let log = data_dir.join(format!("{name}.log"));
        let (mut command, host) = node_command();
        let child = command
            .args(["serve", "--listen", &format!("{host}:{port}"), "--database-url", url])
            .arg("--data-dir")
            .arg(data_dir)
            .env("FOLIO_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn folio serve");
        let node = Node {
            child,
            base: format!("http://{host}:{port}"),
            log,
        };
        let client = {
            folio_sync::tls::install_crypto_provider();
            reqwest::Client::new()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while client.get(format!("{}/v1/health", node.base)).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "node {name} did not come up: {}",
                node.log_text()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        node
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill(&mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

fn token(data_dir: &Path) -> String {
    std::fs::read_to_string(data_dir.join("admin.token"))
        .expect("admin token")
        .trim()
        .to_owned()
}

async fn create_todo(client: &reqwest::Client, base: &str, token: &str) -> String {
    let created: Value = client
        .post(format!("{base}/v1/documents"))
        .bearer_auth(token)
        .json(&json!({ "documentType": "folio/todo-list" }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("created document");
    created["header"]["id"].as_str().expect("an id").to_owned()
}

/// One request's actions (ADD_TODO with ids chosen here) and whether it was acknowledged.
#[derive(Debug, Clone)]
struct Request {
    action_ids: Vec<String>,
    acknowledged: bool,
    /// When the answer came.
    answered: Instant,
}

/// Writes requests of `actions_per_request` actions until `stop` says so or `count` requests were sent, or the node
/// stops answering. Returns every request sent.
async fn writer(
    base: String,
    token: String,
    docs: Vec<String>,
    label: String,
    count: usize,
    actions_per_request: usize,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Vec<Request> {
    let client = {
        folio_sync::tls::install_crypto_provider();
        reqwest::Client::new()
    };
    let mut sent = Vec::new();
    for i in 0..count {
        if *stop.borrow() {
            break;
        }
        let document = docs[i % docs.len()].clone();
        let action_ids: Vec<String> = (0..actions_per_request)
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let actions: Vec<Value> = action_ids
            .iter()
            .enumerate()
            .map(|(k, id)| {
                json!({ "id": id, "type": "ADD_TODO", "input": { "id": format!("{label}-{i}-{k}"), "title": label } })
            })
            .collect();
        let response = client
            .post(format!("{base}/v1/documents/{document}/actions"))
            .bearer_auth(&token)
            .json(&json!({ "actions": actions }))
            .send()
            .await;
        let (acknowledged, gone) = match response {
            Ok(r) => (r.status() == 200, false),
            Err(_) => (false, true),
        };
        sent.push(Request {
            action_ids,
            acknowledged,
            answered: Instant::now(),
        });
        if gone {
            break;
        }
    }
    sent
}

/// Every global operation of `document` in the database, as `(index, action id)`, through `folio doc log`.
fn stored_log(url: &str, document: &str) -> Vec<(u64, String)> {
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["doc", "log", document, "--json", "--database-url", url])
        .output()
        .expect("folio doc log");
    assert!(out.status.success(), "folio doc log failed: {out:?}");
    let log: Value = serde_json::from_slice(&out.stdout).expect("doc log JSON");
    log["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .map(|op| {
            (
                op["index"].as_u64().expect("index"),
                op["action"]["id"].as_str().expect("action id").to_owned(),
            )
        })
        .collect()
}

fn verify(url: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["verify", "--json", "--database-url", url])
        .output()
        .expect("folio verify");
    assert!(
        out.status.success(),
        "folio verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Checks the stored logs of `docs` against the requests: each acknowledged action stored exactly once, no action
/// stored twice, and each request's actions stored all or none. Returns the number of stored operations.
fn check_exactly_once(url: &str, docs: &[String], requests: &[Request]) -> usize {
    let mut stored: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for doc in docs {
        let log = stored_log(url, doc);
        for (i, (index, id)) in log.iter().enumerate() {
            assert_eq!(*index, i as u64, "indexes of {doc} are dense");
            *stored.entry(id.clone()).or_default() += 1;
        }
        total += log.len();
    }
    assert!(stored.values().all(|n| *n == 1), "an action is stored more than once");
    for r in requests {
        let present = r.action_ids.iter().filter(|id| stored.contains_key(*id)).count();
        if r.acknowledged {
            assert_eq!(
                present,
                r.action_ids.len(),
                "an acknowledged request's actions are stored: {r:?}"
            );
        } else {
            assert!(
                present == 0 || present == r.action_ids.len(),
                "a request is stored in part ({present} of {} actions): {r:?}",
                r.action_ids.len()
            );
        }
    }
    total
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribe_all(base: &str, token: &str) -> Ws {
    let url = format!("{}/v1/subscribe?token={token}", base.replace("http://", "ws://"));
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("WebSocket");
    ws.send(Message::Text(json!({ "subscribe": {} }).to_string().into()))
        .await
        .expect("subscribe");
    let first = next_json(&mut ws, Duration::from_secs(10)).await.expect("an answer");
    assert_eq!(first, json!({ "event": "subscribed" }));
    ws
}

async fn next_json(ws: &mut Ws, wait: Duration) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(wait, ws.next()).await.ok()??;
        match message.expect("a WebSocket message") {
            Message::Text(t) => return Some(serde_json::from_str(&t).expect("JSON event")),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected message {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_writers_through_each_of_two_nodes_on_the_same_documents() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let a = Node::start("a", dir.path(), &db.url).await;
    let b = Node::start("b", dir.path(), &db.url).await;
    let token = token(dir.path());
    let client = {
        folio_sync::tls::install_crypto_provider();
        reqwest::Client::new()
    };
    let mut ws = subscribe_all(&a.base, &token).await;
    let mut docs = Vec::new();
    for d in 0..5 {
        let via = if d % 2 == 0 { &a.base } else { &b.base };
        docs.push(create_todo(&client, via, &token).await);
    }

    const WRITERS: usize = 50;
    const REQUESTS: usize = 6;
    let (_keep_going, go) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (node, base) in [("a", &a.base), ("b", &b.base)] {
        for w in 0..WRITERS {
            tasks.push((
                node,
                tokio::spawn(writer(
                    base.clone(),
                    token.clone(),
                    docs.clone(),
                    format!("{node}{w}"),
                    REQUESTS,
                    1,
                    go.clone(),
                )),
            ));
        }
    }
    let mut requests = Vec::new();
    let mut via_b: HashSet<String> = HashSet::new();
    for (node, task) in tasks {
        for r in task.await.expect("writer") {
            if node == "b" && r.acknowledged {
                via_b.extend(r.action_ids.iter().cloned());
            }
            requests.push(r);
        }
    }
    let acknowledged = requests.iter().filter(|r| r.acknowledged).count();
    println!(
        "{acknowledged} of {} requests acknowledged ({} through B)",
        requests.len(),
        via_b.len()
    );
    assert!(
        acknowledged * 10 >= requests.len() * 9,
        "most requests are acknowledged ({acknowledged} of {}); logs:\n{}\n{}",
        requests.len(),
        a.log_text(),
        b.log_text()
    );

    let stored = check_exactly_once(&db.url, &docs, &requests);
    verify(&db.url);

    // The subscriber on A received every operation written through B, each document's in index order, no gap.
    let mut next_index: BTreeMap<String, u64> = BTreeMap::new();
    let mut received_b = HashSet::new();
    let mut received = 0;
    while received < stored {
        let Some(event) = next_json(&mut ws, Duration::from_secs(30)).await else {
            panic!(
                "the subscriber on A stopped receiving after {received} of {stored} operations ({} of {} written \
                 through B)",
                received_b.len(),
                via_b.len()
            );
        };
        assert_ne!(event["event"], "lagged", "the subscriber lagged");
        if event["event"] != "operations" || event["scope"] != "global" {
            continue;
        }
        let doc = event["documentId"].as_str().expect("documentId").to_owned();
        for op in event["operations"].as_array().expect("operations") {
            let index = op["index"].as_u64().expect("index");
            let expected = next_index.entry(doc.clone()).or_default();
            assert_eq!(
                index, *expected,
                "document {doc}: operations arrive in order, without gaps"
            );
            *expected += 1;
            received += 1;
            let id = op["action"]["id"].as_str().expect("action id").to_owned();
            if via_b.contains(&id) {
                received_b.insert(id);
            }
        }
    }
    assert_eq!(
        received_b, via_b,
        "every operation written through B reached the subscriber on A"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_killed_while_writing_leaves_no_partial_operation() {
    let db = TestDatabase::create().await;
    let dir = tempfile::tempdir().expect("temporary directory");
    let a = Node::start("a", dir.path(), &db.url).await;
    let mut b = Node::start("b", dir.path(), &db.url).await;
    let token = token(dir.path());
    let client = {
        folio_sync::tls::install_crypto_provider();
        reqwest::Client::new()
    };
    let mut docs = Vec::new();
    for _ in 0..4 {
        docs.push(create_todo(&client, &a.base, &token).await);
    }

    // Writers through both nodes send requests of three actions (all or nothing), until told to stop.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for (node, base) in [("a", &a.base), ("b", &b.base)] {
        for w in 0..10 {
            tasks.push((
                node,
                tokio::spawn(writer(
                    base.clone(),
                    token.clone(),
                    docs.clone(),
                    format!("{node}{w}"),
                    usize::MAX,
                    3,
                    stopped.clone(),
                )),
            ));
        }
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    b.kill();
    let killed_at = Instant::now();
    // A keeps serving: its writers go on, and new requests succeed.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let health = client
        .get(format!("{}/v1/health", a.base))
        .send()
        .await
        .expect("A answers");
    assert!(health.status().is_success());
    let after = create_todo(&client, &a.base, &token).await;
    assert!(!after.is_empty());
    stop.send(true).expect("stop the writers");
    let mut requests = Vec::new();
    let mut a_after_kill = 0;
    let mut b_unanswered = 0;
    for (node, task) in tasks {
        for r in task.await.expect("writer") {
            a_after_kill += usize::from(node == "a" && r.acknowledged && r.answered > killed_at);
            b_unanswered += usize::from(node == "b" && !r.acknowledged);
            requests.push(r);
        }
    }
    println!(
        "{} requests, {} acknowledged, {a_after_kill} through A after B was killed, {b_unanswered} lost with B",
        requests.len(),
        requests.iter().filter(|r| r.acknowledged).count(),
    );
    assert!(a_after_kill > 0, "A kept acknowledging writes after B was killed");
    assert!(b_unanswered > 0, "B was killed in the middle of requests");
    docs.push(after);
    check_exactly_once(&db.url, &docs, &requests);
    verify(&db.url);
    // And A still reads the documents B wrote to.
    for doc in &docs {
        let r = client
            .get(format!("{}/v1/documents/{doc}", a.base))
            .bearer_auth(&token)
            .send()
            .await
            .expect("GET");
        assert_eq!(r.status(), 200);
    }
}
