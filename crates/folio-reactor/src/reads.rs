//! Reads of a document's history that every face (HTTP, CLI, embedding) shares: a page of a unit's log, and the
//! operations kept with a refusal in its effective history. Both are bounded: a page by its limit, conflicts by
//! the number asked for, and the log is streamed, never loaded whole.

use futures::StreamExt;

use folio_core::merge::Cuts;
use folio_core::{Branch, DocumentId, Operation, Scope, SyncUnit};

use crate::{Reactor, ReactorError};

/// A page of a unit's history.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationPage {
    /// The operations from the page's first index, in index order.
    pub operations: Vec<Operation>,
    /// The index the next page starts at, when there is one.
    pub next: Option<u64>,
}

impl Reactor {
    /// The operations of `unit` from index `from`, at most `limit` of them (`limit` 0 reads nothing), and where the
    /// next page starts. `DocumentNotFound` when the document was never created on that branch.
    pub async fn operations_page(
        &self,
        unit: &SyncUnit,
        from: u64,
        limit: usize,
    ) -> Result<OperationPage, ReactorError> {
        self.existing(unit.document_id, &unit.branch).await?;
        let to = from.saturating_add(limit as u64).saturating_add(1);
        let mut operations = Vec::with_capacity(limit.min(4096) + 1);
        let mut stream = self.store().read(unit, from, Some(to));
        while let Some(op) = stream.next().await {
            operations.push(op?);
        }
        let next = (operations.len() > limit).then(|| {
            operations.truncate(limit);
            from + limit as u64
        });
        Ok(OperationPage { operations, next })
    }

    /// The operations of the document's effective history (`document` scope, then `global`, by index) that a merge
    /// kept with a reducer's refusal, at most `limit` of them. The logs are streamed; only the conflicts are held.
    pub async fn conflicts(
        &self,
        id: DocumentId,
        branch: &Branch,
        limit: usize,
    ) -> Result<Vec<Operation>, ReactorError> {
        self.existing(id, branch).await?;
        let mut found = Vec::new();
        for scope in [Scope::Document, Scope::Global] {
            let unit = SyncUnit::new(id, scope, branch.clone());
            let cuts = Cuts::from_skips(self.store().skips(&unit, 0, None).await?);
            let mut stream = self.store().read(&unit, 0, None);
            while let Some(op) = stream.next().await {
                let op = op?;
                if op.error.is_some() && cuts.is_effective(op.index) {
                    if found.len() == limit {
                        return Ok(found);
                    }
                    found.push(op);
                }
            }
        }
        Ok(found)
    }

    async fn existing(&self, id: DocumentId, branch: &Branch) -> Result<(), ReactorError> {
        match self.store().header(id, branch).await? {
            Some(_) => Ok(()),
            None => Err(ReactorError::DocumentNotFound(id)),
        }
    }
}
