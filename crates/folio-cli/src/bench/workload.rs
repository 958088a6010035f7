//! The workloads: which actions a benchmark document receives.

use clap::ValueEnum;
use serde_json::{Value, json};

/// A benchmark workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// A `folio/todo-list`: 1,000 items added, then updates of their titles and done flags.
    Todo,
    /// A `folio/json` document: `SET /kN` over 1,000 keys.
    Json,
    /// A `folio/json` document with one counter set again and again.
    Counter,
}

impl Workload {
    /// The document type.
    pub fn document_type(self) -> &'static str {
        match self {
            Workload::Todo => "folio/todo-list",
            Workload::Json | Workload::Counter => "folio/json",
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Todo => "todo",
            Workload::Json => "json",
            Workload::Counter => "counter",
        }
    }

    /// The `i`th action (type and input), deterministic.
    pub fn action(self, i: u64) -> (&'static str, Value) {
        match self {
            Workload::Todo => {
                let id = format!("item-{}", i % 1000);
                if i < 1000 {
                    ("ADD_TODO", json!({ "id": id, "title": format!("title {i}") }))
                } else {
                    (
                        "UPDATE_TODO",
                        json!({ "id": id, "title": format!("title {i}"), "done": i.is_multiple_of(2) }),
                    )
                }
            }
            Workload::Json => ("SET", json!({ "path": format!("/k{}", i % 1000), "value": i })),
            Workload::Counter => ("SET", json!({ "path": "/count", "value": i })),
        }
    }
}
