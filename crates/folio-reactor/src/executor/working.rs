//! The executor's working set: a copy of each recent document at its committed head, so a job does not rehydrate
//! it; bounded by count, the least recently used copy goes first.

use std::collections::HashMap;

use folio_core::Document;

use crate::ReactorError;
use crate::shared::Shared;
use crate::view::DocKey;

/// A document's working copy: the committed state plus nothing else between batches.
pub(super) struct Working {
    pub doc: Option<Document>,
    tick: u64,
}

/// The working copies of an executor's documents.
#[derive(Default)]
pub(super) struct WorkingSet {
    copies: HashMap<DocKey, Working>,
    tick: u64,
}

impl WorkingSet {
    /// The copy of `key`, loaded from the view when it is not held (making room by dropping the least recently
    /// used one).
    pub async fn load(&mut self, key: &DocKey, shared: &Shared) -> Result<&mut Working, ReactorError> {
        self.tick += 1;
        if !self.copies.contains_key(key) {
            let doc = shared.view.get(key).await?.map(|d| Document::clone(&d));
            if self.copies.len() >= shared.config.working_set.max(1)
                && let Some(oldest) = self.copies.iter().min_by_key(|(_, w)| w.tick).map(|(k, _)| k.clone())
            {
                self.copies.remove(&oldest);
            }
            self.copies.insert(key.clone(), Working { doc, tick: 0 });
        }
        let w = self
            .copies
            .get_mut(key)
            .ok_or(ReactorError::Store("working set".into()))?;
        w.tick = self.tick;
        Ok(w)
    }

    /// The copy of `key`, if held.
    pub fn get(&self, key: &DocKey) -> Option<&Working> {
        self.copies.get(key)
    }

    /// The copy of `key`, if held, to change.
    pub fn get_mut(&mut self, key: &DocKey) -> Option<&mut Working> {
        self.copies.get_mut(key)
    }

    /// Forgets the copy of `key` (the next job reloads it).
    pub fn remove(&mut self, key: &DocKey) {
        self.copies.remove(key);
    }
}
