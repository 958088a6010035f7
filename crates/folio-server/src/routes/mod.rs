//! The HTTP endpoints; one file per resource.

pub mod documents;
pub mod grants;
pub mod jobs;
pub mod meta;
pub mod sync;
pub mod tokens;
