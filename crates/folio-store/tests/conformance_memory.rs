//! The conformance suite on the in-memory backend.

use folio_store::MemoryStore;
use folio_store::conformance::FreshStore;

folio_store::conformance_tests!(|| async { FreshStore::new(MemoryStore::new()) });

/// `run_all` (the one-call form for a new backend) runs the whole list.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_all_scenarios_in_one_go() {
    folio_store::conformance::run_all(|| async { FreshStore::new(MemoryStore::new()) }).await;
}
