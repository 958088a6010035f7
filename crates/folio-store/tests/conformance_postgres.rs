//! The conformance suite on the PostgreSQL backend, each scenario in a fresh database of the server named by
//! `FOLIO_TEST_DATABASE_URL` (scripts/test starts one; without it these tests fail, saying so). Then what only a
//! shared database shows: ordinals stay in commit order under concurrent committing transactions, two handles on
//! one database (two nodes) keep the revision check, and commit notices reach the other handle.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use folio_core::{DocumentId, Scope, SyncUnit};
use folio_store::conformance::{Chain, FreshStore};
use folio_store::pg_testing::TestDatabase;
use folio_store::{OperationStore, PgStore, StoreError, verify};

async fn fresh() -> FreshStore {
    let db = TestDatabase::create().await;
    let store = PgStore::open(&db.url).await.expect("open a new PostgreSQL store");
    FreshStore::with_guard(store, db)
}

folio_store::conformance_tests!(fresh);
