//! Two reactors in two OS processes on one SQLite file, writing the same document: both make progress (through
//! `RevisionMismatch` and retries), nothing is lost or duplicated.
//!
//! The test binary re-runs itself as the child (`FOLIO_CHILD_DB` set), so no extra binary is needed.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;

use futures::StreamExt;
use serde_json::json;

use folio_core::{DocumentId, ModelRegistry, Scope, SyncUnit};
use folio_reactor::{Reactor, ReactorConfig, Submit};
use folio_store::{OperationStore, SqliteStore};

const PER_CHILD: usize = 150;

#[test]
fn child_entry() {
    let (Ok(db), Ok(doc), Ok(tag)) = (
        std::env::var("FOLIO_CHILD_DB"),
        std::env::var("FOLIO_CHILD_DOC"),
        std::env::var("FOLIO_CHILD_TAG"),
    ) else {
        return; // not running as a child
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let store = SqliteStore::open(&db).await.unwrap();
        let reactor = Reactor::new(
            Arc::new(store),
            Arc::new(ModelRegistry::with_builtin()),
            ReactorConfig {
                max_retries: 1000,
                ..ReactorConfig::default()
            },
        );
        let id: DocumentId = doc.parse().unwrap();
        // Start together with the other process: say we are ready, wait for the word.
        std::fs::write(std::path::Path::new(&db).with_extension(format!("ready-{tag}")), b"").unwrap();
        let go = std::path::Path::new(&db).with_extension("go");
        while !go.exists() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        for i in 0..PER_CHILD {
            let a = reactor.action(
                "ADD_TODO",
                json!({"id": format!("{tag}-{i}"), "title": "t"}),
                Scope::Global,
            );
            let action_id = a.id;
            let outcome = reactor.apply(Submit::new(id, vec![a])).await.unwrap();
            println!("ACK {action_id} {} {}", outcome.revision, outcome.retries);
        }
        reactor.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reactors_in_two_processes_share_one_document() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let store = Arc::new(SqliteStore::open(&db).await.unwrap());
    let reactor = Reactor::new(
        store.clone(),
        Arc::new(ModelRegistry::with_builtin()),
        ReactorConfig::default(),
    );
    let id = reactor
        .create_document("folio/todo-list", "shared", None)
        .await
        .unwrap()
        .header
        .id;
    reactor.shutdown().await;

    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = ["a", "b"]
        .iter()
        .map(|tag| {
            Command::new(&exe)
                .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
                .env("FOLIO_CHILD_DB", &db)
                .env("FOLIO_CHILD_DOC", id.to_string())
                .env("FOLIO_CHILD_TAG", tag)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ready = |tag: &str| db.with_extension(format!("ready-{tag}")).exists();
    let waited = std::time::Instant::now();
    while !(ready("a") && ready("b")) && waited.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::fs::write(db.with_extension("go"), b"go").unwrap();
    let mut acked = Vec::new();
    let mut retries = 0;
    for mut child in children {
        let out = child.stdout.take().unwrap();
        // The harness may print "test child_entry ... " on the same line as the first ACK.
        let acks: Vec<(uuid::Uuid, u32)> = BufReader::new(out)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| {
                let (_, rest) = l.split_once("ACK ")?;
                let mut parts = rest.split(' ');
                let id = parts.next()?.parse().ok()?;
                let retries = parts.nth(1)?.parse().ok()?;
                Some((id, retries))
            })
            .collect();
        retries += acks.iter().map(|(_, r)| r).sum::<u32>();
        let mine: Vec<uuid::Uuid> = acks.into_iter().map(|(id, _)| id).collect();
        assert!(child.wait().unwrap().success());
        assert_eq!(mine.len(), PER_CHILD, "every job of each process completed");
        acked.extend(mine);
    }
    let unit = SyncUnit::main(id, Scope::Global);
    let stored: Vec<_> = store.read(&unit, 0, None).map(|op| op.unwrap()).collect().await;
    assert_eq!(stored.len(), 2 * PER_CHILD);
    let stored_ids: HashSet<_> = stored.iter().map(|op| op.action.id).collect();
    assert_eq!(stored_ids.len(), stored.len(), "no operation stored twice");
    for a in &acked {
        assert!(stored_ids.contains(a), "acknowledged {a} missing");
    }
    // Both processes interleaved (each one's items are not all in one block), which means both saw mismatches
    // and retried on the other's head.
    let first_of_b = stored
        .iter()
        .position(|op| op.action.input["id"].as_str().unwrap().starts_with("b-"));
    let last_of_a = stored
        .iter()
        .rposition(|op| op.action.input["id"].as_str().unwrap().starts_with("a-"));
    println!("first b at {first_of_b:?}, last a at {last_of_a:?}, {retries} retries");
    // Both wrote while the other did: some jobs met a head the other process had moved, and were re-run.
    assert!(retries > 0, "no job was retried: the processes never contended");
    assert!(folio_store::verify(store.as_ref()).await.unwrap().is_ok());
}
