//! # folio-reactor
//!
//! The engine between callers and the [`folio_store::OperationStore`]: a bounded queue of jobs, executors that run
//! the reducers and group-commit the resulting operations, retries on `RevisionMismatch`, an event bus, and the
//! [`DocumentView`] read model (byte-bounded LRU cache, keyframes, streamed rehydration).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use folio_core::{Branch, Scope};
//! use folio_reactor::{Reactor, Submit};
//! use folio_store::MemoryStore;
//! use serde_json::json;
//!
//! let reactor = Reactor::with_defaults(Arc::new(MemoryStore::new()));
//! let doc = reactor.create_document("folio/todo-list", "Groceries", None).await.unwrap();
//! let id = doc.header.id;
//! let add = reactor.action("ADD_TODO", json!({"id": "milk", "title": "Buy milk"}), Scope::Global);
//! let done = reactor.apply(Submit::new(id, vec![add])).await.unwrap();
//! let doc = reactor.get(id, &Branch::default()).await.unwrap().unwrap();
//! assert_eq!(doc.header.revision.global, done.revision);
//! assert_eq!(doc.global_json()["items"]["milk"]["title"], "Buy milk");
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod config;
mod error;
mod event;
mod executor;
mod follower;
mod job;
mod reactor;
mod reads;
mod shared;
mod view;

pub use config::ReactorConfig;
pub use error::ReactorError;
pub use event::{Event, EventBus, Received, Subscription};
pub use job::{JobHandle, JobId, JobOutcome, JobStatus, MergeReport};
pub use reactor::{Reactor, Submit};
pub use reads::OperationPage;
pub use view::{COLD_READ_LIMIT, DocKey, DocumentView};
