//! folio's built-in document models.

pub mod json;
pub mod todo;

pub use json::JsonDocument;
pub use todo::TodoList;
