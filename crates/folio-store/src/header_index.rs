//! The header index every backend keeps beside the log, updated in the same transaction as the `document` scope
//! operations it is derived from.

use folio_core::{Branch, DocumentHeader, DocumentId, Revisions, UtcIso};

/// One document's row of the header index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderRecord {
    /// The model.
    pub document_type: String,
    /// The latest name.
    pub name: String,
    /// The `CREATE_DOCUMENT` timestamp.
    pub created_at_ms: u64,
    /// The latest timestamp of any of its operations.
    pub last_modified_ms: u64,
    /// Whether it was deleted.
    pub deleted: bool,
}

impl HeaderRecord {
    /// The header on `branch` with `revision`.
    pub fn to_header(&self, id: DocumentId, branch: Branch, revision: Revisions) -> DocumentHeader {
        DocumentHeader {
            id,
            document_type: self.document_type.clone(),
            name: self.name.clone(),
            created_at_utc_iso: UtcIso(self.created_at_ms),
            last_modified_at_utc_iso: UtcIso(self.last_modified_ms),
            branch,
            revision,
            deleted: self.deleted,
            owner: None,
            grants: Vec::new(),
        }
    }
}
