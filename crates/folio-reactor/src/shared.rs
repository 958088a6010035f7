//! What the reactor's handle, its executors and its follower share: the store, the models, the view, the bus, the
//! jobs, the settings and the clock. Each of them depends on this module, not on the others.

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
}
