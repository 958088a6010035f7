//! What the reactor's handle, its executors and its follower share: the store, the models, the view, the bus, the
//! jobs, the settings and the clock. Each of them depends on this module, not on the others.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use folio_core::{HybridClock, ModelRegistry};
use folio_store::OperationStore;

use crate::config::ReactorConfig;
use crate::event::EventBus;
use crate::job::JobTable;
use crate::view::DocumentView;

/// What the executors and the handle share.
pub(crate) struct Shared {
    pub store: Arc<dyn OperationStore>,
    pub registry: Arc<ModelRegistry>,
    pub view: DocumentView,
    pub bus: EventBus,
    pub jobs: JobTable,
    pub config: ReactorConfig,
    /// This replica's clock: stamps local actions, observes every integrated one.
    pub clock: HybridClock,
    /// The store's last refusal of a commit for another reason than a stale revision (a full disk, a lost
    /// database), until a commit succeeds again: what readiness reports.
    pub write_failure: Mutex<Option<String>>,
    /// Ids that [`crate::Reactor::action`] made and no job has carried yet: fresh UUIDs, so a job's first run need
    /// not look them up in the store (the id check's common case). Taken out when a job first carries them, so a
    /// retry of the same action is looked up; cleared when full (the lookups then simply happen).
    pub minted: Mutex<HashSet<uuid::Uuid>>,
}

/// The most minted ids remembered before the set is cleared.
pub(crate) const MINTED_CAP: usize = 1 << 18;

impl Shared {
    /// Remembers an id just made for a new action.
    pub fn mint(&self, id: uuid::Uuid) {
        let mut minted = self.minted.lock().unwrap_or_else(|e| e.into_inner());
        if minted.len() >= MINTED_CAP {
            minted.clear();
        }
        minted.insert(id);
    }

    /// Whether `id` was made here and never carried by a job before (and forgets it).
    pub fn take_minted(&self, id: &uuid::Uuid) -> bool {
        self.minted.lock().unwrap_or_else(|e| e.into_inner()).remove(id)
    }
}
