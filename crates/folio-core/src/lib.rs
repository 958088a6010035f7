//! # folio-core
//!
//! folio's data model, with no I/O at all: ids and sync units, actions and operations, the blake3 hash chain, the
//! hybrid logical clock, the [`DocumentModel`] trait with its JSON registry, the document header and hydrated
//! [`Document`], and the built-in models `folio/todo-list` and `folio/json`.
//!
//! ```
//! use folio_core::{Action, Document, DocumentId, Branch, HybridClock, ModelRegistry, Operation, OpHash, Scope};
//! use serde_json::json;
//!
//! let registry = ModelRegistry::with_builtin();
//! let clock = HybridClock::new();
//! let mut doc = Document::empty(DocumentId::new(), Branch::default());
//! let create = Action::new("CREATE_DOCUMENT", json!({"documentType": "folio/todo-list", "name": "Groceries"}),
//!     Scope::Document, clock.now());
//! doc.apply(&Operation::new(create, 0, 0, None, &OpHash::ZERO), &registry).unwrap();
//! let add = Action::new("ADD_TODO", json!({"id": "milk", "title": "Buy milk"}), Scope::Global, clock.now());
//! doc.apply(&Operation::new(add, 0, 0, None, &OpHash::ZERO), &registry).unwrap();
//! assert_eq!(doc.global_json()["items"]["milk"]["title"], "Buy milk");
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod causal;
pub mod clock;
pub mod depth;
pub mod document;
mod error;
pub mod hash;
mod ids;
pub mod merge;
pub mod model;
pub mod models;
pub mod operation;
pub mod signature;

pub use causal::{ActionMeta, CausalContext, Stamp, order_key};
pub use clock::{HlcTimestamp, HybridClock};
pub use document::{
    Access, AccessRules, ApplyError, CreateDocumentInput, Document, DocumentHeader, Grant, GrantsError, HeaderChange,
    Revisions, SetGrantsInput, UtcIso, check_grants, check_principal, header_change, iso_from_millis,
};
pub use error::CoreError;
pub use hash::{ChainError, OpHash, check_chain, operation_hash};
pub use ids::{Branch, DocumentId, Scope, SyncUnit};
pub use model::{DocumentModel, ErasedModel, ModelRegistry, ModelState, Rejection};
pub use operation::{Action, Operation};
pub use signature::{ReplicaKey, SignatureError};
