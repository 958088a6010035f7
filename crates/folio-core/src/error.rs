//! The core crate's error.

/// What can go wrong in folio-core outside reducers (which return [`crate::Rejection`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A string is not a UUID.
    #[error("{0:?} is not a valid id (a UUID)")]
    InvalidId(String),
    /// A string is not a scope name.
    #[error("{0:?} is not a scope (global, local or document)")]
    InvalidScope(String),
    /// A string is not a branch name.
    #[error("{0:?} is not a branch name (1 to 64 of A-Z a-z 0-9 . _ - /)")]
    InvalidBranch(String),
    /// A string is not a blake3 hash in hex.
    #[error("{0:?} is not a blake3 hash (64 lowercase hex digits)")]
    InvalidHash(String),
}
