//! Embedding folio in a Rust service: a todo list on a SQLite file.
//! Run with `cargo run --example embed -- /tmp/todo.db`; `tests/embed.rs` runs it too.
use std::sync::Arc;

use folio::{Branch, Reactor, Scope, SqliteStore, Submit};
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "folio-example.db".into());
    println!("{}", run_on(&path)?);
    Ok(())
}

/// The whole program on the SQLite file at `path`: returns the line it prints.
#[tokio::main]
pub async fn run_on(path: &str) -> Result<String, Box<dyn std::error::Error>> {
    let store = SqliteStore::open(path).await?;
    let reactor = Reactor::with_defaults(Arc::new(store));

    let doc = reactor.create_document("folio/todo-list", "Groceries", None).await?;
    let id = doc.header.id;
    let add = reactor.action("ADD_TODO", json!({ "id": "milk", "title": "Buy milk" }), Scope::Global);
    let done = reactor.action("UPDATE_TODO", json!({ "id": "milk", "done": true }), Scope::Global);
    let outcome = reactor.apply(Submit::new(id, vec![add, done])).await?; // all or nothing

    let doc = reactor.get(id, &Branch::default()).await?.expect("just created");
    let line = format!(
        "{} at revision {}: {}",
        doc.header.name,
        outcome.revision,
        doc.global_json()
    );
    reactor.shutdown().await; // finishes queued jobs; nothing acknowledged is lost
    Ok(line)
}
