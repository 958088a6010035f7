//! The README's embedding example (`examples/embed.rs`), run for real through the facade crate: its program on a
//! fresh SQLite file, then the same file opened again as a user's next start would, checking what it stored.

#[path = "../examples/embed.rs"]
#[allow(dead_code)]
mod embed;

use std::sync::Arc;

use folio::{Reactor, SqliteStore, verify};

#[test]
fn the_embed_example_runs_and_what_it_wrote_is_there_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("todo.db");
    let line = embed::run_on(path.to_str().unwrap()).expect("the example runs");
    assert!(line.starts_with("Groceries at revision 2: "), "{line}");
    let state: serde_json::Value = serde_json::from_str(line.split_once(": ").unwrap().1).unwrap();
    assert_eq!(state["items"]["milk"]["title"], "Buy milk");
    assert_eq!(state["items"]["milk"]["done"], true);
    // A second run is a second document in the same file.
    embed::run_on(path.to_str().unwrap()).expect("the example runs again");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        assert!(verify(store.as_ref()).await.unwrap().is_ok());
        let reactor = Reactor::with_defaults(store);
        let docs = reactor.list(&Default::default()).await.unwrap();
        assert_eq!(docs.len(), 2, "{docs:?}");
        for header in docs {
            let doc = reactor.get(header.id, &header.branch).await.unwrap().unwrap();
            assert_eq!(doc.header.revision.global, 2);
            assert_eq!(doc.global_json()["items"]["milk"]["done"], true);
        }
        reactor.shutdown().await;
    });
}
