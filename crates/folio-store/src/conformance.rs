//! The conformance suite: the contract of [`OperationStore`], as scenarios every backend must pass.
//!
//! In the style of object_store's `integration.rs`: each scenario is a `pub async fn` over a **fresh, empty**
//! store that panics, naming what broke, when the backend does not keep the contract. Scenarios that spawn tasks
//! take an `Arc<dyn OperationStore>`, the others a `&dyn OperationStore`. [`SCENARIOS`] lists them all.
//!
//! A backend's test file runs the whole list with [`conformance_tests!`](crate::conformance_tests), one
//! `#[tokio::test]` per scenario so that a failure is named, each on a store made fresh by the given function:
//!
//! ```ignore
//! async fn fresh() -> folio_store::conformance::FreshStore {
//!     let dir = tempfile::tempdir().unwrap();
//!     let store = folio_store::SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
//!     folio_store::conformance::FreshStore::with_guard(store, dir)
//! }
//! folio_store::conformance_tests!(fresh);
//! ```
//!
//! [`run_all`] runs the list in one go (for a quick check of a new backend from any async context).
//!
//! Test code, built only in this crate's tests and with the `testing` feature. One long file on purpose: the contract
//! reads top to bottom in one place, and [`SCENARIOS`] beside the scenarios keeps the list complete.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use folio_core::document::{CREATE_DOCUMENT, DELETE_DOCUMENT, SET_NAME};
use folio_core::{
    Action, Branch, ChainError, DocumentHeader, DocumentId, HlcTimestamp, OpHash, Operation, Revisions, Scope,
    SyncUnit, UtcIso, operation_hash,
};

use crate::{
    AppendRequest, Appended, ColdRead, Committed, Keyframe, ListQuery, OperationStore, ScopeHeads, SinceFilter,
    StoreError, verify,
};

/// The physical time the suite's operations start at (2023-11-14), so timestamps are predictable.
pub const T0: u64 = 1_700_000_000_000;

/// A store made for one scenario, with whatever must live as long as it (a temporary directory, a database
/// schema): the guard is dropped after the store.
pub struct FreshStore {
    /// The empty store.
    pub store: Arc<dyn OperationStore>,
    _guard: Option<Box<dyn Any + Send>>,
}

impl FreshStore {
    /// A store that needs nothing kept alive beside it.
    pub fn new(store: impl OperationStore) -> Self {
        Self {
            store: Arc::new(store),
            _guard: None,
        }
    }

    /// A store whose backing resource `guard` is released when the scenario ends.
    pub fn with_guard(store: impl OperationStore, guard: impl Send + 'static) -> Self {
        Self {
            store: Arc::new(store),
            _guard: Some(Box::new(guard)),
        }
    }
}

/// One scenario of the suite, runnable on a store.
pub struct Scenario {
    /// The scenario's function name (and test name).
    pub name: &'static str,
    /// Runs it; panics on a contract violation.
    pub run: fn(Arc<dyn OperationStore>) -> BoxFuture<'static, ()>,
}

macro_rules! by_ref {
    ($name:ident) => {
        Scenario {
            name: stringify!($name),
            run: |store| Box::pin(async move { $name(&*store).await }),
        }
    };
}

macro_rules! by_arc {
    ($name:ident) => {
        Scenario {
            name: stringify!($name),
            run: |store| Box::pin($name(store)),
        }
    };
}

/// Every scenario, in a sensible order (simple contracts first).
pub const SCENARIOS: &[Scenario] = &[
    by_ref!(append_and_read_back),
    by_ref!(read_streams_long_history),
    by_ref!(skipping_operations),
    by_ref!(actions_by_id),
    by_ref!(filtered_reads),
    by_ref!(stale_revision),
    by_ref!(idempotent_replay),
    by_ref!(invalid_operations),
    by_arc!(concurrent_appenders_one_unit),
    by_arc!(many_units_in_parallel),
    by_ref!(append_batch_mixed),
    by_ref!(batch_shapes),
    by_arc!(ordinal_order),
    by_ref!(header_index),
    by_ref!(keyframes),
    by_ref!(cold_reads),
    by_ref!(large_payloads),
    by_ref!(unicode_payloads),
    by_ref!(verify_hash_chain),
    by_arc!(meta_values),
];

/// Runs the scenario called `name` on a store from `make`. Panics when there is no such scenario.
pub async fn run_scenario<F, Fut>(name: &str, make: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = FreshStore>,
{
    let scenario = SCENARIOS
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no conformance scenario called {name}"));
    let fresh = make().await;
    (scenario.run)(fresh.store.clone()).await;
}

/// Runs every scenario, each on a fresh store from `make`, in order; panics at the first failure, naming it.
pub async fn run_all<F, Fut>(mut make: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = FreshStore>,
{
    for scenario in SCENARIOS {
        let fresh = make().await;
        let store = fresh.store.clone();
        let outcome = tokio::spawn((scenario.run)(store)).await;
        drop(fresh);
        if let Err(e) = outcome {
            panic!("conformance scenario {} failed: {e}", scenario.name);
        }
    }
}

/// Panics unless `listed` names exactly the scenarios of [`SCENARIOS`] (keeps [`conformance_tests!`](crate::conformance_tests) complete).
pub fn assert_complete(listed: &[&str]) {
    let listed: BTreeSet<&str> = listed.iter().copied().collect();
    let known: BTreeSet<&str> = SCENARIOS.iter().map(|s| s.name).collect();
    assert_eq!(
        listed, known,
        "conformance_tests! and SCENARIOS list different scenarios"
    );
}

/// Generates one `#[tokio::test]` per conformance scenario, each on a fresh store from `$make` (a function or
/// closure taking nothing and returning a future of a [`FreshStore`](crate::conformance::FreshStore)).
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@tests $make;
            append_and_read_back,
            read_streams_long_history,
            skipping_operations,
            actions_by_id,
            filtered_reads,
            stale_revision,
            idempotent_replay,
            invalid_operations,
            concurrent_appenders_one_unit,
            many_units_in_parallel,
            append_batch_mixed,
            batch_shapes,
            ordinal_order,
            header_index,
            keyframes,
            cold_reads,
            large_payloads,
            unicode_payloads,
            verify_hash_chain,
            meta_values,
        );
    };
    (@tests $make:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                $crate::conformance::run_scenario(stringify!($name), $make).await;
            }
        )*

        #[test]
        fn conformance_list_is_complete() {
            $crate::conformance::assert_complete(&[$(stringify!($name)),*]);
        }
    };
}

// ---------------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------------

/// A small deterministic generator (xorshift64) for tests' schedules and data, so a failing run can be re-run
/// from its seed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    /// 32 bytes.
    pub fn bytes(&mut self) -> Vec<u8> {
        (0..32).map(|_| self.below(256) as u8).collect()
    }
}

/// Builds a unit's operations in order, as a writer does: dense indexes, each hash chained over the previous.
#[derive(Debug, Clone)]
pub struct Chain {
    /// The unit the operations are for.
    pub unit: SyncUnit,
    /// The index of the next operation.
    pub next: u64,
    /// The hash the next operation chains over.
    pub prev: OpHash,
    /// The physical time of the next operation's action (advances by one millisecond per operation).
    pub millis: u64,
}

impl Chain {
    /// A chain starting an empty `unit`.
    pub fn new(unit: SyncUnit) -> Self {
        Self::at(unit, 0, OpHash::ZERO)
    }

    /// A chain continuing `unit` from its head `(revision, last_hash)`.
    pub fn at(unit: SyncUnit, revision: u64, prev: OpHash) -> Self {
        Self {
            unit,
            next: revision,
            prev,
            millis: T0 + revision,
        }
    }

    /// The next operation: an action of `action_type` with `input` in the unit's scope.
    pub fn op(&mut self, action_type: &str, input: Value) -> Operation {
        let action = Action::new(action_type, input, self.unit.scope, HlcTimestamp::new(self.millis, 0));
        self.push(action)
    }

    /// The next operation, committing `action` (whatever its scope).
    pub fn push(&mut self, action: Action) -> Operation {
        self.push_skipping(action, 0)
    }

    /// The next operation, a `SET` action that skips the `skip` operations before it (a rebase's first operation).
    pub fn skipping(&mut self, skip: u64) -> Operation {
        let index = self.next;
        let action = Action::new(
            "SET",
            json!({ "index": index }),
            self.unit.scope,
            HlcTimestamp::new(self.millis, 0),
        );
        self.push_skipping(action, skip)
    }

    /// The next operation, committing `action` with a skip over the `skip` operations before it.
    pub fn push_skipping(&mut self, action: Action, skip: u64) -> Operation {
        let op = Operation::new(action, self.next, skip, None, &self.prev);
        self.next += 1;
        self.prev = op.hash;
        self.millis = self.millis.max(op.timestamp_utc_ms) + 1;
        op
    }

    /// The next `n` operations, plain `SET` actions numbered by index.
    pub fn ops(&mut self, n: usize) -> Vec<Operation> {
        (0..n)
            .map(|_| {
                let index = self.next;
                self.op("SET", json!({ "index": index, "unit": self.unit.to_string() }))
            })
            .collect()
    }
}

fn new_unit(scope: Scope) -> SyncUnit {
    SyncUnit::main(DocumentId::new(), scope)
}

fn branch(name: &str) -> Branch {
    Branch::new(name).expect("valid branch name")
}

async fn read_all(store: &dyn OperationStore, unit: &SyncUnit, from: u64, to: Option<u64>) -> Vec<Operation> {
    store
        .read(unit, from, to)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("read of {unit} [{from}, {to:?}) failed: {e}"))
}

async fn head(store: &dyn OperationStore, unit: &SyncUnit) -> (u64, OpHash) {
    store
        .head(unit)
        .await
        .unwrap_or_else(|e| panic!("head of {unit} failed: {e}"))
}

async fn all_committed(store: &dyn OperationStore) -> Vec<Committed> {
    store.read_since(0, usize::MAX).await.expect("read_since(0) failed")
}

async fn sorted_units(store: &dyn OperationStore) -> Vec<SyncUnit> {
    let mut units = store.units().await.expect("units failed");
    units.sort();
    units
}

async fn append_ok(store: &dyn OperationStore, unit: &SyncUnit, expected: u64, ops: Vec<Operation>) -> Appended {
    let n = ops.len() as u64;
    let appended = store
        .append(unit, expected, ops)
        .await
        .unwrap_or_else(|e| panic!("append of {n} operations to {unit} at {expected} failed: {e}"));
    assert_fresh_append(&appended, expected + n, n);
    appended
}

fn assert_fresh_append(appended: &Appended, revision: u64, n: u64) {
    assert!(!appended.replayed, "a new append reported replayed: {appended:?}");
    assert_eq!(appended.revision, revision, "revision after the append: {appended:?}");
    assert_eq!(
        appended.ordinals.len() as u64,
        n,
        "one ordinal per operation: {appended:?}"
    );
    assert!(
        appended.ordinals.windows(2).all(|w| w[0] < w[1]),
        "ordinals of one append increase: {appended:?}"
    );
}

fn assert_mismatch(result: Result<Appended, StoreError>, unit: &SyncUnit, expected: u64, actual: u64) {
    match result {
        Err(StoreError::RevisionMismatch {
            unit: u,
            expected: e,
            actual: a,
        }) => {
            assert_eq!(
                (&u, e, a),
                (unit, expected, actual),
                "RevisionMismatch carries unit, expected, actual"
            );
        }
        other => {
            panic!("expected RevisionMismatch {{ expected: {expected}, actual: {actual} }} on {unit}, got {other:?}")
        }
    }
}

fn assert_invalid(result: Result<Appended, StoreError>, unit: &SyncUnit, reason: ChainError) {
    match result {
        Err(StoreError::InvalidOperations { unit: u, reason: r }) => {
            assert_eq!((&u, &r), (unit, &reason), "InvalidOperations carries unit and reason");
        }
        other => panic!("expected InvalidOperations ({reason}) on {unit}, got {other:?}"),
    }
}

fn assert_replayed(result: Result<Appended, StoreError>, revision: u64) {
    match result {
        Ok(a) => assert_eq!(
            a,
            Appended {
                revision,
                ordinals: Vec::new(),
                replayed: true
            },
            "a replay reports the current revision, no ordinals, replayed"
        ),
        Err(e) => panic!("expected a replayed append at revision {revision}, got {e}"),
    }
}

/// What the trait shows of the store and of `units`, compared before and after a refused append. Committed
/// operations appear as `ordinal unit#index hash`, which identifies them and keeps a failure message readable.
#[derive(Debug, PartialEq)]
struct Snapshot {
    max_ordinal: u64,
    committed: Vec<String>,
    units: Vec<SyncUnit>,
    heads: Vec<(u64, OpHash)>,
}

async fn snapshot(store: &dyn OperationStore, units: &[&SyncUnit]) -> Snapshot {
    let mut heads = Vec::new();
    for unit in units {
        heads.push(head(store, unit).await);
    }
    Snapshot {
        max_ordinal: store.max_ordinal().await.expect("max_ordinal failed"),
        committed: all_committed(store)
            .await
            .iter()
            .map(|c| format!("{} {}#{} {}", c.ordinal, c.unit, c.operation.index, c.operation.hash))
            .collect(),
        units: sorted_units(store).await,
        heads,
    }
}

async fn assert_verified(store: &dyn OperationStore, units: u64, operations: u64) {
    let report = verify(store).await.expect("verify failed to run");
    assert!(report.is_ok(), "verify found a broken chain: {:?}", report.broken);
    assert_eq!(
        (report.units, report.operations),
        (units, operations),
        "verify counts: {report:?}"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------------------------

/// Appends, then reads back whole and in ranges; reads of missing units and past the end are empty.
pub async fn append_and_read_back(store: &dyn OperationStore) {
    let unit = new_unit(Scope::Global);
    assert_eq!(
        head(store, &unit).await,
        (0, OpHash::ZERO),
        "head of a unit never written"
    );
    assert!(
        read_all(store, &unit, 0, None).await.is_empty(),
        "read of a unit never written"
    );
    assert!(
        store.units().await.expect("units").is_empty(),
        "a fresh store has no units"
    );
    assert_eq!(
        store.max_ordinal().await.expect("max_ordinal"),
        0,
        "a fresh store's max ordinal"
    );
    assert!(store.read_since(0, 10).await.expect("read_since").is_empty());

    let mut chain = Chain::new(unit.clone());
    let mut all = chain.ops(3);
    let first = append_ok(store, &unit, 0, all.clone()).await;
    let more = chain.ops(7);
    all.extend(more.iter().cloned());
    let second = append_ok(store, &unit, 3, more).await;
    assert!(
        first.ordinals[2] < second.ordinals[0],
        "a later append has higher ordinals"
    );

    assert_eq!(read_all(store, &unit, 0, None).await, all, "read back everything");
    let n = all.len() as u64;
    for (from, to) in [
        (0, Some(10)),
        (0, Some(100)),
        (0, Some(u64::MAX)),
        (2, Some(5)),
        (8, None),
        (9, Some(10)),
        (0, Some(1)),
        (10, None),
        (11, None),
        (3, Some(3)),
        (5, Some(2)),
        (u64::MAX, None),
    ] {
        let start = from.min(n) as usize;
        let end = (to.unwrap_or(n).min(n) as usize).max(start);
        assert_eq!(
            read_all(store, &unit, from, to).await,
            all[start..end],
            "read [{from}, {to:?}) of {n} operations"
        );
    }
    assert_eq!(head(store, &unit).await, (n, all[9].hash), "head after the appends");
    assert_eq!(
        sorted_units(store).await,
        vec![unit.clone()],
        "units lists the written unit"
    );
    assert_eq!(
        store
            .revisions(unit.document_id, &Branch::default())
            .await
            .expect("revisions"),
        Revisions {
            global: n,
            local: 0,
            document: 0
        }
    );

    // Other scopes and branches of the same document are other units: empty.
    for other in [
        SyncUnit::main(unit.document_id, Scope::Local),
        SyncUnit::main(unit.document_id, Scope::Document),
        SyncUnit::new(unit.document_id, Scope::Global, branch("dev")),
    ] {
        assert_eq!(head(store, &other).await, (0, OpHash::ZERO), "head of {other}");
        assert!(read_all(store, &other, 0, None).await.is_empty(), "read of {other}");
    }

    // An empty append at the head succeeds and writes nothing; to a new unit it does not create the unit.
    let before = snapshot(store, &[&unit]).await;
    let empty = store
        .append(&unit, n, Vec::new())
        .await
        .expect("empty append at the head");
    assert_eq!((empty.revision, empty.ordinals.len(), empty.replayed), (n, 0, false));
    let fresh = new_unit(Scope::Global);
    let empty = store
        .append(&fresh, 0, Vec::new())
        .await
        .expect("empty append to a new unit");
    assert_eq!((empty.revision, empty.ordinals.len(), empty.replayed), (0, 0, false));
    assert_eq!(snapshot(store, &[&unit]).await, before, "empty appends write nothing");
    assert_eq!(head(store, &fresh).await, (0, OpHash::ZERO));
}

/// `find_actions`: the operations carrying given action ids, in index order, each occurrence of an action that a
/// rebase re-appended, only in the unit asked for, and nothing for unknown ids or units.
pub async fn actions_by_id(store: &dyn OperationStore) {
    let unit = new_unit(Scope::Global);
    let other = SyncUnit::main(unit.document_id, Scope::Local);
    let ids_of = |ops: &[Operation]| ops.iter().map(|op| (op.index, op.action.id)).collect::<Vec<_>>();
    assert!(
        store
            .find_actions(&unit, &[uuid::Uuid::now_v7()])
            .await
            .expect("find")
            .is_empty(),
        "a unit never written"
    );
    let mut chain = Chain::new(unit.clone());
    let mut ops = chain.ops(6);
    // A rebase: index 6 cuts at 4 and re-appends the actions of 4 and 5.
    let again = [ops[4].action.clone(), ops[5].action.clone()];
    ops.push(chain.push_skipping(again[0].clone(), 2));
    ops.push(chain.push_skipping(again[1].clone(), 0));
    append_ok(store, &unit, 0, ops[..5].to_vec()).await;
    append_ok(store, &unit, 5, ops[5..].to_vec()).await;
    let mut noise = Chain::new(other.clone());
    let mut others = noise.ops(2);
    // The same action id in another unit is another unit's business.
    others.push(noise.push_skipping(
        Action {
            scope: Scope::Local,
            ..ops[1].action.clone()
        },
        0,
    ));
    append_ok(store, &other, 0, others).await;

    let find =
        |unit: SyncUnit, ids: Vec<uuid::Uuid>| async move { store.find_actions(&unit, &ids).await.expect("find") };
    let found = find(unit.clone(), vec![ops[3].action.id, ops[1].action.id]).await;
    assert_eq!(
        ids_of(&found),
        vec![(1, ops[1].action.id), (3, ops[3].action.id)],
        "in index order"
    );
    assert_eq!(found[0], ops[1], "the whole operation, as appended");
    let found = find(unit.clone(), vec![again[0].id, again[1].id, uuid::Uuid::now_v7()]).await;
    assert_eq!(
        ids_of(&found),
        vec![(4, again[0].id), (5, again[1].id), (6, again[0].id), (7, again[1].id)],
        "every occurrence of a re-appended action, and nothing for an unknown id"
    );
    assert!(find(unit.clone(), Vec::new()).await.is_empty(), "no ids");
    let found = find(other.clone(), vec![ops[1].action.id, ops[3].action.id]).await;
    assert_eq!(ids_of(&found), vec![(2, ops[1].action.id)], "only the unit asked for");
    // Many ids at once (more than one statement's worth in SQL backends).
    let many: Vec<uuid::Uuid> = (0..1_200)
        .map(|_| uuid::Uuid::now_v7())
        .chain([ops[0].action.id])
        .collect();
    assert_eq!(
        ids_of(&find(unit.clone(), many.clone()).await),
        vec![(0, ops[0].action.id)]
    );

    // `find_action_indexes`: the same occurrences as (id, index), only those below the bound.
    let indexes = |unit: SyncUnit, ids: Vec<uuid::Uuid>, before: u64| async move {
        store
            .find_action_indexes(&unit, &ids, before)
            .await
            .expect("find indexes")
    };
    let both = vec![again[1].id, again[0].id, ops[1].action.id];
    assert_eq!(
        indexes(unit.clone(), both.clone(), u64::MAX).await,
        vec![
            (ops[1].action.id, 1),
            (again[0].id, 4),
            (again[1].id, 5),
            (again[0].id, 6),
            (again[1].id, 7)
        ],
        "every occurrence, in index order"
    );
    assert_eq!(
        indexes(unit.clone(), both.clone(), 6).await,
        vec![(ops[1].action.id, 1), (again[0].id, 4), (again[1].id, 5)],
        "only below the bound"
    );
    assert_eq!(
        indexes(unit.clone(), both.clone(), 1).await,
        Vec::new(),
        "nothing below index 1"
    );
    assert_eq!(
        indexes(other.clone(), both, u64::MAX).await,
        vec![(ops[1].action.id, 2)],
        "only the unit asked for"
    );
    assert_eq!(indexes(unit.clone(), many, u64::MAX).await, vec![(ops[0].action.id, 0)]);
    assert!(
        indexes(new_unit(Scope::Global), vec![ops[0].action.id], u64::MAX)
            .await
            .is_empty()
    );
}

/// `skips` lists exactly the operations with a skip in the asked range, with their skips, in index order, whichever
/// the scope, and nothing of another unit or of a unit never written.
pub async fn skipping_operations(store: &dyn OperationStore) {
    let skips =
        |unit: SyncUnit, from: u64, to: Option<u64>| async move { store.skips(&unit, from, to).await.expect("skips") };
    for scope in [Scope::Global, Scope::Document, Scope::Local] {
        let unit = new_unit(scope);
        let other = SyncUnit::main(
            unit.document_id,
            if scope == Scope::Global {
                Scope::Local
            } else {
                Scope::Global
            },
        );
        assert!(skips(unit.clone(), 0, None).await.is_empty(), "a unit never written");
        let mut chain = Chain::new(unit.clone());
        let mut ops = chain.ops(5);
        ops.push(chain.skipping(3)); // index 5, cuts at 2
        ops.extend(chain.ops(2));
        ops.push(chain.skipping(1)); // index 8, cuts at 7
        ops.extend(chain.ops(3));
        ops.push(chain.skipping(12)); // index 12, cuts at 0
        append_ok(store, &unit, 0, ops[..7].to_vec()).await;
        append_ok(store, &unit, 7, ops[7..].to_vec()).await;
        let mut noise = Chain::new(other.clone());
        let mut others = noise.ops(2);
        others.push(noise.skipping(2));
        append_ok(store, &other, 0, others).await;

        let all = vec![(5, 3), (8, 1), (12, 12)];
        assert_eq!(
            skips(unit.clone(), 0, None).await,
            all,
            "every skipping operation of {unit}"
        );
        let stored: Vec<(u64, u64)> = read_all(store, &unit, 0, None)
            .await
            .iter()
            .filter(|op| op.skip > 0)
            .map(|op| (op.index, op.skip))
            .collect();
        assert_eq!(stored, all, "skips agrees with the log read back");
        for (from, to, expected) in [
            (0, Some(5), vec![]),
            (0, Some(6), vec![(5, 3)]),
            (5, Some(9), vec![(5, 3), (8, 1)]),
            (6, None, vec![(8, 1), (12, 12)]),
            (9, Some(12), vec![]),
            (12, Some(13), vec![(12, 12)]),
            (13, None, vec![]),
            (0, Some(u64::MAX), all.clone()),
            (u64::MAX, None, vec![]),
            (8, Some(2), vec![]),
        ] {
            assert_eq!(
                skips(unit.clone(), from, to).await,
                expected,
                "skips of {unit} in [{from}, {to:?})"
            );
        }
        assert_eq!(
            skips(other.clone(), 0, None).await,
            vec![(2, 2)],
            "another scope of the document"
        );
        let branched = SyncUnit::new(unit.document_id, scope, branch("dev"));
        assert!(
            skips(branched, 0, None).await.is_empty(),
            "another branch of the document"
        );
    }
}

/// `read_since_filtered` returns exactly what `read_since` returns and the filter admits (effective operations, by
/// author), pages by operations looked at, and its cursor lets a reader resume without missing or repeating one.
pub async fn filtered_reads(store: &dyn OperationStore) {
    let authors = [Some("r1"), Some("r2"), None];
    let authored = |chain: &mut Chain, i: usize| {
        let mut action = Action::new(
            "SET",
            json!({ "i": i }),
            chain.unit.scope,
            HlcTimestamp::new(chain.millis, 0),
        );
        action.replica = authors[i % 3].map(str::to_owned);
        chain.push(action)
    };
    // Unit a: 6 operations, then one skipping 3 (cuts 3, 4, 5), then 2 more; unit b: 4 operations interleaved.
    let (a, b) = (new_unit(Scope::Global), new_unit(Scope::Document));
    let (mut chain_a, mut chain_b) = (Chain::new(a.clone()), Chain::new(b.clone()));
    let first: Vec<Operation> = (0..6).map(|i| authored(&mut chain_a, i)).collect();
    append_ok(store, &a, 0, first).await;
    let b_ops: Vec<Operation> = (0..4).map(|i| authored(&mut chain_b, i)).collect();
    append_ok(store, &b, 0, b_ops[..2].to_vec()).await;
    let mut action = Action::new("SET", json!({ "i": 6 }), a.scope, HlcTimestamp::new(chain_a.millis, 0));
    action.replica = Some("r2".into());
    let mut more = vec![chain_a.push_skipping(action, 3)];
    more.extend((7..9).map(|i| authored(&mut chain_a, i)));
    append_ok(store, &a, 6, more).await;
    append_ok(store, &b, 2, b_ops[2..].to_vec()).await;

    let all = all_committed(store).await;
    assert_eq!(all.len(), 13);
    let max = all.last().map(|c| c.ordinal).unwrap_or_default();
    let cut = |c: &Committed| c.unit == a && (3..6).contains(&c.operation.index);
    for filter in [
        SinceFilter::default(),
        SinceFilter {
            effective: true,
            ..SinceFilter::default()
        },
        SinceFilter {
            exclude_replica: Some("r1"),
            ..SinceFilter::default()
        },
        SinceFilter {
            only_replica: Some("r2"),
            ..SinceFilter::default()
        },
        SinceFilter {
            effective: true,
            exclude_replica: Some("r2"),
            only_replica: None,
        },
        SinceFilter {
            effective: true,
            exclude_replica: None,
            only_replica: Some("r1"),
        },
        SinceFilter {
            effective: false,
            exclude_replica: Some("nobody"),
            only_replica: Some("r1"),
        },
    ] {
        let expected: Vec<Committed> = all
            .iter()
            .filter(|c| filter.admits_author(c.operation.action.replica.as_deref()))
            .filter(|c| !(filter.effective && cut(c)))
            .cloned()
            .collect();
        let whole = store
            .read_since_filtered(0, 100, &filter)
            .await
            .expect("read_since_filtered");
        assert_eq!(whole.committed, expected, "{filter:?}");
        assert_eq!(
            (whole.cursor, whole.scanned),
            (max, all.len()),
            "{filter:?}: looked at everything"
        );
        // In pages of 3 operations looked at: the same, each page's cursor where the next starts.
        let mut paged = Vec::new();
        let mut cursor = 0;
        let mut pages = 0;
        loop {
            let page = store.read_since_filtered(cursor, 3, &filter).await.expect("page");
            assert!(
                page.scanned <= 3 && page.committed.len() <= page.scanned,
                "{filter:?}: page size"
            );
            assert!(
                page.committed
                    .iter()
                    .all(|c| c.ordinal > cursor && c.ordinal <= page.cursor)
            );
            paged.extend(page.committed);
            cursor = page.cursor;
            pages += 1;
            if page.scanned < 3 {
                break;
            }
        }
        assert_eq!(paged, expected, "{filter:?}: in pages");
        assert_eq!(
            (cursor, pages),
            (max, 5),
            "{filter:?}: 13 operations are 4 full pages and an empty one"
        );
        let after = store.read_since_filtered(max, 10, &filter).await.expect("past the end");
        assert_eq!((after.committed.len(), after.cursor, after.scanned), (0, max, 0));
    }
}

/// A history longer than any backend's read chunk streams back whole, in order, from any offset.
pub async fn read_streams_long_history(store: &dyn OperationStore) {
    const N: u64 = 2500;
    let unit = new_unit(Scope::Local);
    let mut chain = Chain::new(unit.clone());
    let mut all = Vec::new();
    while chain.next < N {
        let ops = chain.ops(100);
        all.extend(ops.iter().cloned());
        append_ok(store, &unit, chain.next - 100, ops).await;
    }
    let mut stream = store.read(&unit, 0, None);
    let mut expected = 0u64;
    while let Some(op) = stream.next().await {
        let op = op.unwrap_or_else(|e| panic!("read failed at index {expected}: {e}"));
        assert_eq!(op, all[expected as usize], "operation at index {expected}");
        expected += 1;
    }
    assert_eq!(expected, N, "the stream ends after the last operation");
    for (from, to) in [
        (1000, Some(2100)),
        (1023, Some(1025)),
        (511, Some(513)),
        (2048, None),
        (2499, None),
    ] {
        let end = to.unwrap_or(N) as usize;
        assert_eq!(
            read_all(store, &unit, from, to).await,
            all[from as usize..end],
            "read [{from}, {to:?})"
        );
    }
}

/// An append at a revision behind or ahead of the log is refused with the right revisions, writing nothing.
pub async fn stale_revision(store: &dyn OperationStore) {
    let unit = new_unit(Scope::Global);
    let mut chain = Chain::new(unit.clone());
    let stored = chain.ops(3);
    append_ok(store, &unit, 0, stored.clone()).await;
    let before = snapshot(store, &[&unit]).await;

    // Behind: a writer that read revision 1 builds a different operation 1 over operation 0.
    let mut behind = Chain::at(unit.clone(), 1, stored[0].hash);
    let op = behind.op("SET", json!({ "stale": true }));
    assert_mismatch(store.append(&unit, 1, vec![op]).await, &unit, 1, 3);
    // Behind at 0: a whole different history.
    let other = Chain::new(unit.clone()).ops(2);
    assert_mismatch(store.append(&unit, 0, other).await, &unit, 0, 3);
    // Ahead: one past the head, and far past it.
    let mut ahead = Chain::at(unit.clone(), 4, stored[2].hash);
    assert_mismatch(store.append(&unit, 4, ahead.ops(1)).await, &unit, 4, 3);
    let mut far = Chain::at(unit.clone(), 100, stored[2].hash);
    assert_mismatch(store.append(&unit, 100, far.ops(2)).await, &unit, 100, 3);
    assert_eq!(snapshot(store, &[&unit]).await, before, "refused appends write nothing");

    // A unit never written is at revision 0.
    let empty = new_unit(Scope::Global);
    let mut ahead = Chain::at(empty.clone(), 1, OpHash::ZERO);
    assert_mismatch(store.append(&empty, 1, ahead.ops(1)).await, &empty, 1, 0);
    assert_eq!(
        snapshot(store, &[&unit, &empty]).await.units,
        vec![unit.clone()],
        "no unit created"
    );

    // The stale writer reloads and succeeds at the head.
    let (revision, last) = head(store, &unit).await;
    let mut retry = Chain::at(unit.clone(), revision, last);
    append_ok(store, &unit, revision, retry.ops(1)).await;
    assert_eq!(head(store, &unit).await.0, 4);
}

/// Re-appending exactly the stored operations succeeds as a replay and writes nothing; a different operation at a
/// stored index is a mismatch.
pub async fn idempotent_replay(store: &dyn OperationStore) {
    let unit = new_unit(Scope::Global);
    let mut chain = Chain::new(unit.clone());
    let stored = chain.ops(5);
    append_ok(store, &unit, 0, stored[..3].to_vec()).await;
    append_ok(store, &unit, 3, stored[3..].to_vec()).await;
    let before = snapshot(store, &[&unit]).await;

    for (from, to) in [(0, 3), (3, 5), (0, 5), (1, 4), (4, 5), (0, 1)] {
        let replay = store.append(&unit, from as u64, stored[from..to].to_vec()).await;
        assert_replayed(replay, 5);
    }
    assert_eq!(snapshot(store, &[&unit]).await, before, "replays write nothing");

    // Stored operations followed by a new one: not a replay.
    let mut longer = stored[3..].to_vec();
    longer.extend(chain.clone().ops(1));
    assert_mismatch(store.append(&unit, 3, longer).await, &unit, 3, 5);
    // A different operation at a stored index.
    let mut other = Chain::at(unit.clone(), 2, stored[1].hash);
    assert_mismatch(store.append(&unit, 2, other.ops(1)).await, &unit, 2, 5);
    let mut ops = vec![stored[2].clone()];
    ops.extend(Chain::at(unit.clone(), 3, stored[2].hash).ops(1));
    assert_mismatch(store.append(&unit, 2, ops).await, &unit, 2, 5);
    assert_eq!(snapshot(store, &[&unit]).await, before, "mismatches write nothing");

    // A retry in the same batch as the append it repeats (a client that resent before the reply came).
    let next = chain.ops(2);
    let fresh = new_unit(Scope::Document);
    let fresh_ops = Chain::new(fresh.clone()).ops(2);
    let results = store
        .append_batch(vec![
            AppendRequest {
                unit: unit.clone(),
                expected_revision: 5,
                operations: next.clone().into(),
            },
            AppendRequest {
                unit: unit.clone(),
                expected_revision: 5,
                operations: next.clone().into(),
            },
            AppendRequest {
                unit: fresh.clone(),
                expected_revision: 0,
                operations: fresh_ops.clone().into(),
            },
            AppendRequest {
                unit: fresh.clone(),
                expected_revision: 0,
                operations: fresh_ops.clone().into(),
            },
        ])
        .await;
    let mut results = results.into_iter();
    assert_fresh_append(results.next().expect("4 results").as_ref().expect("first append"), 7, 2);
    assert_replayed(results.next().expect("4 results"), 7);
    assert_fresh_append(
        results.next().expect("4 results").as_ref().expect("new unit append"),
        2,
        2,
    );
    assert_replayed(results.next().expect("4 results"), 2);
    assert!(results.next().is_none(), "one result per request");
    assert_eq!(
        read_all(store, &unit, 0, None).await,
        [stored, next].concat(),
        "nothing duplicated"
    );
    assert_eq!(read_all(store, &fresh, 0, None).await, fresh_ops, "nothing duplicated");
    assert_eq!(all_committed(store).await.len(), 9, "one committed entry per operation");
}

/// Operations that do not continue the log are refused with `InvalidOperations`, writing nothing.
pub async fn invalid_operations(store: &dyn OperationStore) {
    let unit = new_unit(Scope::Global);
    let mut chain = Chain::new(unit.clone());
    let stored = chain.ops(2);
    append_ok(store, &unit, 0, stored.clone()).await;
    let before = snapshot(store, &[&unit]).await;

    // A gap inside the request.
    let mut c = chain.clone();
    let a = c.op("SET", json!(1));
    c.next += 1;
    let b = c.op("SET", json!(2));
    assert_invalid(
        store.append(&unit, 2, vec![a.clone(), b]).await,
        &unit,
        ChainError::IndexGap { expected: 3, found: 4 },
    );

    // The first index is not the expected revision.
    let mut c = chain.clone();
    c.next = 3;
    assert_invalid(
        store.append(&unit, 2, c.ops(1)).await,
        &unit,
        ChainError::IndexGap { expected: 2, found: 3 },
    );

    // A wrong hash on the first operation, and content changed after hashing.
    let mut wrong = chain.clone().ops(1);
    wrong[0].hash = OpHash([7; 32]);
    assert_invalid(
        store.append(&unit, 2, wrong).await,
        &unit,
        ChainError::HashMismatch { index: 2 },
    );
    let mut altered = chain.clone().ops(1);
    altered[0].action.input = json!({ "altered": true });
    assert_invalid(
        store.append(&unit, 2, altered).await,
        &unit,
        ChainError::HashMismatch { index: 2 },
    );

    // A wrong hash on a later operation of the request: the whole request is refused.
    let mut two = chain.clone().ops(2);
    two[1].hash = OpHash([9; 32]);
    assert_invalid(
        store.append(&unit, 2, two).await,
        &unit,
        ChainError::HashMismatch { index: 3 },
    );

    // A first operation that does not chain over the stored last hash.
    for prev in [OpHash::ZERO, stored[0].hash] {
        let mut c = Chain::at(unit.clone(), 2, prev);
        assert_invalid(
            store.append(&unit, 2, c.ops(2)).await,
            &unit,
            ChainError::HashMismatch { index: 2 },
        );
    }

    // An action of another scope than the unit's.
    for (position, scope) in [(0, Scope::Local), (1, Scope::Document)] {
        let mut c = chain.clone();
        let mut ops = c.ops(position);
        ops.push(c.push(Action::new("SET", json!(0), scope, HlcTimestamp::new(T0, 0))));
        assert_invalid(
            store.append(&unit, 2, ops).await,
            &unit,
            ChainError::ScopeMismatch {
                index: 2 + position as u64,
            },
        );
    }

    // An operation id that differs from its action's id (the hash covers the action, not the id).
    for position in [0, 1] {
        let mut ops = chain.clone().ops(2);
        ops[position].id = uuid::Uuid::now_v7();
        assert_invalid(
            store.append(&unit, 2, ops).await,
            &unit,
            ChainError::IdMismatch {
                index: 2 + position as u64,
            },
        );
    }
    assert_eq!(snapshot(store, &[&unit]).await, before, "invalid appends write nothing");

    // The first operation of a new unit must chain over the zero hash.
    let fresh = new_unit(Scope::Local);
    let mut c = Chain::at(fresh.clone(), 0, stored[1].hash);
    match store.append(&fresh, 0, c.ops(1)).await {
        Err(StoreError::InvalidOperations {
            reason: ChainError::HashMismatch { index: 0 },
            ..
        }) => {}
        other => {
            panic!("expected InvalidOperations (hash mismatch at 0) on a new unit, got {other:?}")
        }
    }
    assert_eq!(
        snapshot(store, &[&unit, &fresh]).await.units,
        vec![unit.clone()],
        "no unit created"
    );

    // The store still takes the valid continuation.
    append_ok(store, &unit, 2, vec![a]).await;
    assert_verified(store, 1, 3).await;
}

/// Many tasks race to append to one unit (read head, build, append): each index has exactly one winner, the log is
/// dense and verified, and it holds exactly the successful appends.
pub async fn concurrent_appenders_one_unit(store: Arc<dyn OperationStore>) {
    const TASKS: usize = 16;
    const ATTEMPTS: usize = 50;
    let unit = new_unit(Scope::Global);
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let store = store.clone();
        let unit = unit.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            let mut lost = 0usize;
            for attempt in 0..ATTEMPTS {
                let (revision, last) = head(&*store, &unit).await;
                let mut chain = Chain::at(unit.clone(), revision, last);
                let op = chain.op("SET", json!({ "task": task, "attempt": attempt }));
                match store.append(&unit, revision, vec![op.clone()]).await {
                    Ok(appended) => {
                        assert_fresh_append(&appended, revision + 1, 1);
                        won.push(op);
                    }
                    Err(StoreError::RevisionMismatch { expected, actual, .. }) => {
                        assert_eq!(expected, revision, "mismatch reports the caller's revision");
                        assert!(
                            actual > revision,
                            "a unit's revision never goes back ({actual} < {revision})"
                        );
                        lost += 1;
                    }
                    Err(e) => panic!("task {task} attempt {attempt}: unexpected error {e}"),
                }
                if attempt % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            (won, lost)
        }));
    }
    let mut won: BTreeMap<u64, Operation> = BTreeMap::new();
    let mut lost = 0;
    for task in tasks {
        let (w, l) = task.await.expect("appender task panicked");
        lost += l;
        for op in w {
            let index = op.index;
            assert!(won.insert(index, op).is_none(), "two appenders won index {index}");
        }
    }
    let total = won.len() as u64;
    assert_eq!(total as usize + lost, TASKS * ATTEMPTS, "every attempt won or lost");
    assert_eq!(
        won.keys().copied().collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>(),
        "won indexes are dense"
    );
    let stored = read_all(&*store, &unit, 0, None).await;
    assert_eq!(
        stored,
        won.into_values().collect::<Vec<_>>(),
        "the log is exactly the winning operations"
    );
    assert_eq!(
        head(&*store, &unit).await,
        (total, stored.last().map_or(OpHash::ZERO, |op| op.hash))
    );
    assert_eq!(
        all_committed(&*store).await.len() as u64,
        total,
        "one committed entry per success"
    );
    assert_verified(&*store, 1, total).await;
}

/// One `append_batch` of many shapes at once, on new and existing units: more units than one statement names
/// (300), a request longer than one insert statement (1,100 operations), every size from 1 to 70, then the same
/// units again. Backends cut and pad their statements by size; every operation must land whole, in order, once.
pub async fn batch_shapes(store: &dyn OperationStore) {
    const UNITS: usize = 300;
    let size = |u: usize| match u {
        0 => 1_100,
        1..=70 => u,
        _ => 1,
    };
    let mut chains: Vec<Chain> = (0..UNITS).map(|u| Chain::new(new_unit(Scope::ALL[u % 3]))).collect();
    let mut stored: Vec<Vec<Operation>> = vec![Vec::new(); UNITS];
    for round in 0..2 {
        let requests: Vec<AppendRequest> = chains
            .iter_mut()
            .enumerate()
            .map(|(u, chain)| {
                let n = if round == 0 { size(u) } else { size(UNITS - 1 - u) };
                let expected_revision = chain.next;
                let operations = chain.ops(n);
                stored[u].extend(operations.iter().cloned());
                AppendRequest {
                    unit: chain.unit.clone(),
                    expected_revision,
                    operations: operations.into(),
                }
            })
            .collect();
        let results = store.append_batch(requests).await;
        assert_eq!(results.len(), UNITS, "one result per request");
        for (u, result) in results.into_iter().enumerate() {
            let appended = result.unwrap_or_else(|e| panic!("round {round}, unit {u}: {e}"));
            assert_eq!(
                appended.revision,
                stored[u].len() as u64,
                "round {round}, unit {u}: revision"
            );
            assert!(!appended.replayed, "round {round}, unit {u}: a fresh append");
        }
    }
    let mut total = 0;
    for (chain, ops) in chains.iter().zip(&stored) {
        assert_eq!(
            &read_all(store, &chain.unit, 0, None).await,
            ops,
            "{}: read back",
            chain.unit
        );
        assert_eq!(
            head(store, &chain.unit).await,
            (ops.len() as u64, ops[ops.len() - 1].hash)
        );
        total += ops.len() as u64;
    }
    let committed = all_committed(store).await;
    assert_eq!(committed.len() as u64, total, "one committed entry per operation");
    assert!(
        committed.windows(2).all(|w| w[0].ordinal < w[1].ordinal),
        "ordinals increase"
    );
    assert_verified(store, UNITS as u64, total).await;
}

/// Hundreds of units written at once from concurrent tasks each end up with exactly their operations.
pub async fn many_units_in_parallel(store: Arc<dyn OperationStore>) {
    const UNITS: usize = 200;
    const OPS: usize = 20;
    const SIZES: [usize; 6] = [1, 2, 3, 4, 5, 5];
    let mut tasks = Vec::new();
    for u in 0..UNITS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let scope = Scope::ALL[u % 3];
            let unit = new_unit(scope);
            let mut chain = Chain::new(unit.clone());
            let mut all = Vec::new();
            for size in SIZES {
                let ops = chain.ops(size);
                append_ok(&*store, &unit, chain.next - size as u64, ops.clone()).await;
                all.extend(ops);
            }
            (unit, all)
        }));
    }
    let mut expected = BTreeMap::new();
    for task in tasks {
        let (unit, ops) = task.await.expect("writer task panicked");
        assert_eq!(ops.len(), OPS);
        expected.insert(unit, ops);
    }
    assert_eq!(
        sorted_units(&*store).await,
        expected.keys().cloned().collect::<Vec<_>>(),
        "units"
    );
    for (unit, ops) in &expected {
        assert_eq!(read_all(&*store, unit, 0, None).await, *ops, "log of {unit}");
        assert_eq!(
            head(&*store, unit).await,
            (OPS as u64, ops[OPS - 1].hash),
            "head of {unit}"
        );
    }
    assert_eq!(
        all_committed(&*store).await.len(),
        UNITS * OPS,
        "one committed entry per operation"
    );
    assert_verified(&*store, UNITS as u64, (UNITS * OPS) as u64).await;
}

/// In one batch each request succeeds or fails on its own, in request order, as if appended one after another.
pub async fn append_batch_mixed(store: &dyn OperationStore) {
    assert!(
        store.append_batch(Vec::new()).await.is_empty(),
        "an empty batch has no results"
    );
    let (a, b, c, d) = (
        new_unit(Scope::Global),
        new_unit(Scope::Global),
        new_unit(Scope::Local),
        new_unit(Scope::Document),
    );
    let (mut ca, mut cb, mut cc, mut cd) = (
        Chain::new(a.clone()),
        Chain::new(b.clone()),
        Chain::new(c.clone()),
        Chain::new(d.clone()),
    );
    let a_stored = ca.ops(2);
    append_ok(store, &a, 0, a_stored.clone()).await;
    let c_stored = cc.ops(1);
    append_ok(store, &c, 0, c_stored.clone()).await;
    let ordinal_before = store.max_ordinal().await.expect("max_ordinal");

    let a1 = ca.ops(2);
    let a2 = ca.ops(1);
    let b1 = cb.ops(1);
    let d1 = cd.ops(3);
    let c1 = cc.ops(1);
    let mut c_bad = Chain::at(c.clone(), 1, c_stored[0].hash).ops(1);
    c_bad[0].hash = OpHash([1; 32]);
    let c_gap = Chain::at(c.clone(), 2, c_stored[0].hash).ops(1);
    let a_stale = Chain::at(a.clone(), 2, a_stored[1].hash).ops(1);
    let b_stale = Chain::at(b.clone(), 1, OpHash::ZERO).ops(1);
    let request = |unit: &SyncUnit, expected_revision, operations: &Vec<Operation>| AppendRequest {
        unit: unit.clone(),
        expected_revision,
        operations: operations.clone().into(),
    };
    let results = store
        .append_batch(vec![
            request(&a, 2, &a1),      // 0: ok, A at 4
            request(&b, 1, &b_stale), // 1: B is new: mismatch (1, 0)
            request(&c, 1, &c_bad),   // 2: wrong hash
            request(&b, 0, &b1),      // 3: ok, B at 1
            request(&a, 4, &a2),      // 4: ok after request 0, A at 5
            request(&d, 0, &d1),      // 5: ok, D at 3
            request(&c, 1, &c_gap),   // 6: gap
            request(&a, 2, &a_stale), // 7: A is at 5 now: mismatch (2, 5)
            request(&c, 1, &c1),      // 8: ok after C's failures, C at 2
            request(&a, 2, &a1),      // 9: replay of request 0
        ])
        .await;
    assert_eq!(results.len(), 10, "one result per request");
    let mut results = results.into_iter();
    let mut next = || results.next().expect("a result");
    let r0 = next().expect("request 0");
    assert_fresh_append(&r0, 4, 2);
    assert_mismatch(next(), &b, 1, 0);
    assert_invalid(next(), &c, ChainError::HashMismatch { index: 1 });
    let r3 = next().expect("request 3");
    assert_fresh_append(&r3, 1, 1);
    let r4 = next().expect("request 4");
    assert_fresh_append(&r4, 5, 1);
    let r5 = next().expect("request 5");
    assert_fresh_append(&r5, 3, 3);
    assert_invalid(next(), &c, ChainError::IndexGap { expected: 1, found: 2 });
    assert_mismatch(next(), &a, 2, 5);
    let r8 = next().expect("request 8");
    assert_fresh_append(&r8, 2, 1);
    assert_replayed(next(), 5);

    assert_eq!(read_all(store, &a, 0, None).await, [a_stored, a1, a2].concat(), "A");
    assert_eq!(read_all(store, &b, 0, None).await, b1, "B");
    assert_eq!(read_all(store, &c, 0, None).await, [c_stored, c1].concat(), "C");
    assert_eq!(read_all(store, &d, 0, None).await, d1, "D");
    assert!(
        r0.ordinals[1] < r4.ordinals[0],
        "a unit's later request commits after its earlier one"
    );
    let ordinals: Vec<u64> = [&r0, &r3, &r4, &r5, &r8]
        .iter()
        .flat_map(|r| r.ordinals.clone())
        .collect();
    let distinct: BTreeSet<u64> = ordinals.iter().copied().collect();
    assert_eq!(distinct.len(), 8, "every operation of the batch has its own ordinal");
    assert!(
        ordinals.iter().all(|o| *o > ordinal_before),
        "the batch's ordinals come after the earlier ones"
    );
    assert_eq!(
        store.max_ordinal().await.expect("max_ordinal"),
        *distinct.last().expect("ordinals")
    );
    let since = store.read_since(ordinal_before, usize::MAX).await.expect("read_since");
    assert_eq!(
        since.iter().map(|c| c.ordinal).collect::<BTreeSet<_>>(),
        distinct,
        "read_since sees the batch"
    );
    assert_verified(store, 4, 5 + 1 + 2 + 3).await;
}

/// `read_since` returns every operation once, in strictly increasing ordinal order that keeps each unit's index
/// order, pages with `limit`, and agrees with the ordinals `append` returned and with `max_ordinal`.
pub async fn ordinal_order(store: Arc<dyn OperationStore>) {
    const UNITS: usize = 10;
    const APPENDS: usize = 30;
    let mut tasks = Vec::new();
    for u in 0..UNITS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let unit = SyncUnit::new(
                DocumentId::new(),
                Scope::ALL[u % 3],
                branch(if u % 2 == 0 { "main" } else { "b/2" }),
            );
            let mut chain = Chain::new(unit.clone());
            let mut appended = Vec::new();
            for i in 0..APPENDS {
                let size = 1 + (i + u) % 3;
                let ops = chain.ops(size);
                let result = append_ok(&*store, &unit, chain.next - size as u64, ops.clone()).await;
                appended.push((ops, result.ordinals));
                if i % 4 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            (unit, appended)
        }));
    }
    let mut by_ordinal: BTreeMap<u64, (SyncUnit, Operation)> = BTreeMap::new();
    for task in tasks {
        let (unit, appended) = task.await.expect("writer task panicked");
        for (ops, ordinals) in appended {
            for (op, ordinal) in ops.into_iter().zip(ordinals) {
                assert!(
                    by_ordinal.insert(ordinal, (unit.clone(), op)).is_none(),
                    "ordinal {ordinal} given twice"
                );
            }
        }
    }
    let total = by_ordinal.len();
    let committed = all_committed(&*store).await;
    assert_eq!(committed.len(), total, "read_since returns every operation once");
    assert!(
        committed.windows(2).all(|w| w[0].ordinal < w[1].ordinal),
        "ordinals strictly increase"
    );
    let mut next_index: BTreeMap<&SyncUnit, u64> = BTreeMap::new();
    for entry in &committed {
        let (unit, op) = by_ordinal
            .get(&entry.ordinal)
            .unwrap_or_else(|| panic!("ordinal {} was not returned by any append", entry.ordinal));
        assert_eq!(
            (&entry.unit, &entry.operation),
            (unit, op),
            "the operation at ordinal {}",
            entry.ordinal
        );
        let next = next_index.entry(&entry.unit).or_default();
        assert_eq!(
            entry.operation.index, *next,
            "{}: index order in ordinal order",
            entry.unit
        );
        *next += 1;
    }
    let max = committed.last().expect("operations").ordinal;
    assert_eq!(
        store.max_ordinal().await.expect("max_ordinal"),
        max,
        "max_ordinal is the last ordinal"
    );

    for limit in [1, 7, 100] {
        let mut paged = Vec::new();
        let mut after = 0;
        loop {
            let page = store.read_since(after, limit).await.expect("read_since page");
            assert!(page.len() <= limit, "a page holds at most `limit` entries");
            let Some(last) = page.last() else { break };
            after = last.ordinal;
            paged.extend(page);
        }
        assert_eq!(paged, committed, "paging by {limit} gives the same sequence");
    }
    for k in [0, 1, total / 2, total - 1] {
        let rest = store
            .read_since(committed[k].ordinal, usize::MAX)
            .await
            .expect("read_since");
        assert_eq!(rest, committed[k + 1..], "read_since after the ordinal at position {k}");
    }
    assert!(
        store.read_since(max, 10).await.expect("read_since").is_empty(),
        "nothing after max"
    );
    assert!(store.read_since(0, 0).await.expect("read_since").is_empty(), "limit 0");
    // Cursors at the top of the range (a client may send any u64): nothing after them, no overflow.
    let filters = [
        SinceFilter::default(),
        SinceFilter {
            effective: true,
            exclude_replica: Some("nobody"),
            only_replica: None,
        },
    ];
    for after in [u64::MAX, u64::MAX - 1, i64::MAX as u64, i64::MAX as u64 - 1] {
        assert!(
            store
                .read_since(after, 1)
                .await
                .expect("read_since at the top")
                .is_empty(),
            "nothing after {after}"
        );
        for filter in &filters {
            let page = store
                .read_since_filtered(after, 1, filter)
                .await
                .expect("read_since_filtered at the top");
            assert!(page.committed.is_empty(), "nothing after {after} ({filter:?})");
        }
    }
}

/// `document` scope operations maintain the header index: creation, rename, deletion, listing by type with
/// paging, deleted documents on request, and revisions per scope and branch.
pub async fn header_index(store: &dyn OperationStore) {
    let main = Branch::default();
    let types = [
        "folio/todo-list",
        "folio/json",
        "folio/todo-list",
        "folio/json",
        "folio/todo-list",
        "folio/json",
        "folio/todo-list",
    ];
    // The expected header of each document, built alongside its operations.
    let mut expected: Vec<DocumentHeader> = Vec::new();
    for (i, document_type) in types.iter().enumerate() {
        let id = DocumentId::new();
        let created = T0 + 1000 * i as u64;
        let unit = SyncUnit::main(id, Scope::Document);
        let mut chain = Chain::at(unit.clone(), 0, OpHash::ZERO);
        chain.millis = created;
        let create = chain.op(
            CREATE_DOCUMENT,
            json!({ "documentType": document_type, "name": format!("doc {i}") }),
        );
        append_ok(store, &unit, 0, vec![create]).await;
        expected.push(DocumentHeader {
            id,
            document_type: document_type.to_string(),
            name: format!("doc {i}"),
            created_at_utc_iso: UtcIso(created),
            last_modified_at_utc_iso: UtcIso(created),
            branch: main.clone(),
            revision: Revisions {
                global: 0,
                local: 0,
                document: 1,
            },
            deleted: false,
            owner: None,
            grants: Vec::new(),
        });
    }

    // Document 0: renamed, then global and local operations.
    let h = &mut expected[0];
    let unit = SyncUnit::main(h.id, Scope::Document);
    let mut chain = Chain::at(unit.clone(), 1, head(store, &unit).await.1);
    chain.millis = T0 + 100;
    append_ok(
        store,
        &unit,
        1,
        vec![chain.op(SET_NAME, json!({ "name": "renamed ✓" }))],
    )
    .await;
    let global = SyncUnit::main(h.id, Scope::Global);
    let mut g = Chain::new(global.clone());
    g.millis = T0 + 200;
    append_ok(store, &global, 0, g.ops(3)).await;
    let local = SyncUnit::main(h.id, Scope::Local);
    let mut l = Chain::new(local.clone());
    l.millis = T0 + 300;
    append_ok(store, &local, 0, l.ops(1)).await;
    h.name = "renamed ✓".to_owned();
    h.revision = Revisions {
        global: 3,
        local: 1,
        document: 2,
    };
    h.last_modified_at_utc_iso = UtcIso(T0 + 300);

    // Document 1: deleted.
    let h = &mut expected[1];
    let unit = SyncUnit::main(h.id, Scope::Document);
    let mut chain = Chain::at(unit.clone(), 1, head(store, &unit).await.1);
    chain.millis = T0 + 5000;
    append_ok(store, &unit, 1, vec![chain.op(DELETE_DOCUMENT, json!({}))]).await;
    h.deleted = true;
    h.revision.document = 2;
    h.last_modified_at_utc_iso = UtcIso(T0 + 5000);

    // Document 2: a second CREATE_DOCUMENT does not rewrite the header.
    let h = &mut expected[2];
    let unit = SyncUnit::main(h.id, Scope::Document);
    let mut chain = Chain::at(unit.clone(), 1, head(store, &unit).await.1);
    chain.millis = T0 + 6000;
    let again = chain.op(
        CREATE_DOCUMENT,
        json!({ "documentType": "other/type", "name": "again" }),
    );
    append_ok(store, &unit, 1, vec![again]).await;
    h.revision.document = 2;
    h.last_modified_at_utc_iso = UtcIso(T0 + 6000);

    // Document 3: operations on another branch show only in that branch's revisions.
    let dev = branch("dev");
    let id3 = expected[3].id;
    let dev_unit = SyncUnit::new(id3, Scope::Global, dev.clone());
    let mut d = Chain::new(dev_unit.clone());
    d.millis = T0 + 9000;
    append_ok(store, &dev_unit, 0, d.ops(2)).await;

    // A document with operations but no CREATE_DOCUMENT has no header.
    let uncreated = SyncUnit::main(DocumentId::new(), Scope::Global);
    append_ok(store, &uncreated, 0, Chain::new(uncreated.clone()).ops(2)).await;

    for h in &expected {
        let got = store.header(h.id, &main).await.expect("header");
        assert_eq!(got.as_ref(), Some(h), "header of {}", h.name);
        assert_eq!(
            store.revisions(h.id, &main).await.expect("revisions"),
            h.revision,
            "revisions of {}",
            h.name
        );
    }
    assert_eq!(
        store.header(DocumentId::new(), &main).await.expect("header"),
        None,
        "unknown document"
    );
    assert_eq!(
        store.header(uncreated.document_id, &main).await.expect("header"),
        None,
        "never created"
    );
    assert_eq!(
        store.revisions(uncreated.document_id, &main).await.expect("revisions"),
        Revisions {
            global: 2,
            local: 0,
            document: 0
        }
    );
    let dev_revisions = Revisions {
        global: 2,
        local: 0,
        document: 0,
    };
    assert_eq!(
        store.revisions(id3, &dev).await.expect("revisions"),
        dev_revisions,
        "revisions on dev"
    );
    let on_dev = store.header(id3, &dev).await.expect("header").expect("header on dev");
    assert_eq!(
        (
            on_dev.branch.clone(),
            on_dev.revision,
            on_dev.name.as_str(),
            on_dev.last_modified_at_utc_iso
        ),
        (dev.clone(), dev_revisions, "doc 3", UtcIso(T0 + 9001)),
        "the header on dev shows dev's revisions and latest change"
    );

    expected.sort_by_key(|h| h.id);
    let live: Vec<DocumentHeader> = expected.iter().filter(|h| !h.deleted).cloned().collect();
    let list = |document_type: Option<&str>, after, limit, include_deleted| ListQuery {
        document_type: document_type.map(str::to_owned),
        after,
        limit,
        branch: main.clone(),
        include_deleted,
    };
    assert_eq!(
        store.list_headers(&ListQuery::default()).await.expect("list"),
        live,
        "default list"
    );
    assert_eq!(
        store.list_headers(&list(None, None, 100, true)).await.expect("list"),
        expected,
        "with deleted"
    );
    for document_type in ["folio/todo-list", "folio/json"] {
        for include_deleted in [false, true] {
            let want: Vec<DocumentHeader> = expected
                .iter()
                .filter(|h| h.document_type == document_type && (include_deleted || !h.deleted))
                .cloned()
                .collect();
            let got = store
                .list_headers(&list(Some(document_type), None, 100, include_deleted))
                .await
                .expect("list");
            assert_eq!(got, want, "list of {document_type} (deleted: {include_deleted})");
            // Paging by 2 gives the same list.
            let mut paged = Vec::new();
            let mut after = None;
            loop {
                let page = store
                    .list_headers(&list(Some(document_type), after, 2, include_deleted))
                    .await
                    .expect("page");
                assert!(page.len() <= 2);
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                paged.extend(page);
            }
            assert_eq!(
                paged, want,
                "paged list of {document_type} (deleted: {include_deleted})"
            );
        }
    }
    assert!(
        store
            .list_headers(&list(Some("nothing/here"), None, 100, true))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        store
            .list_headers(&list(None, None, 0, true))
            .await
            .expect("list")
            .is_empty(),
        "limit 0"
    );
    let after_last = expected.last().map(|h| h.id);
    assert!(
        store
            .list_headers(&list(None, after_last, 100, true))
            .await
            .expect("list")
            .is_empty(),
        "after the last"
    );
    let on_dev = store
        .list_headers(&ListQuery {
            branch: dev.clone(),
            ..list(None, None, 100, false)
        })
        .await
        .expect("list on dev");
    assert_eq!(on_dev.len(), live.len(), "the same documents on dev");
    for h in on_dev {
        let want = if h.id == id3 {
            dev_revisions
        } else {
            Revisions::default()
        };
        assert_eq!(
            (h.branch.clone(), h.revision),
            (dev.clone(), want),
            "revisions on dev of {}",
            h.name
        );
    }
}

/// Keyframes: stored, found at or below a revision, replaced at the same revision, none below the first.
pub async fn keyframes(store: &dyn OperationStore) {
    let unit = new_unit(Scope::Global);
    let mut chain = Chain::new(unit.clone());
    let ops = chain.ops(10);
    append_ok(store, &unit, 0, ops.clone()).await;
    let other = SyncUnit::main(unit.document_id, Scope::Local);
    append_ok(store, &other, 0, Chain::new(other.clone()).ops(10)).await;
    assert_eq!(
        store.nearest_keyframe(&unit, 10).await.expect("nearest"),
        None,
        "no keyframe yet"
    );

    let keyframe = |revision: u64, state: Value| {
        let state = state.to_string();
        let mut seen = folio_core::CausalContext::default();
        seen.observe("replica-é", HlcTimestamp::new(T0 + revision, revision as u32));
        seen.observe("b", HlcTimestamp::new(T0, 0));
        Keyframe {
            unit: unit.clone(),
            revision,
            last_hash: ops[revision as usize - 1].hash,
            state_hash: folio_core::hash::state_hash(&state),
            state,
            seen,
        }
    };
    let k4 = keyframe(4, json!({ "items": { "a": "état 🧊", "b": "\u{0000}" }, "n": 4 }));
    let k8 = keyframe(8, json!({ "items": {}, "n": 8 }));
    store.put_keyframe(&k8).await.expect("put keyframe 8");
    store.put_keyframe(&k4).await.expect("put keyframe 4");
    let nearest = |revision| store.nearest_keyframe(&unit, revision);
    assert_eq!(
        nearest(3).await.expect("nearest"),
        None,
        "nothing below the first keyframe"
    );
    assert_eq!(nearest(0).await.expect("nearest"), None);
    assert_eq!(
        nearest(4).await.expect("nearest").as_ref(),
        Some(&k4),
        "at the revision"
    );
    assert_eq!(nearest(7).await.expect("nearest").as_ref(), Some(&k4), "below");
    assert_eq!(nearest(8).await.expect("nearest").as_ref(), Some(&k8));
    assert_eq!(nearest(u64::MAX).await.expect("nearest").as_ref(), Some(&k8));

    let k4b = keyframe(4, json!({ "replaced": "ça 🔁" }));
    store.put_keyframe(&k4b).await.expect("replace keyframe 4");
    assert_eq!(
        nearest(5).await.expect("nearest").as_ref(),
        Some(&k4b),
        "replaced at the same revision"
    );
    assert_eq!(nearest(9).await.expect("nearest").as_ref(), Some(&k8));

    // Keyframes belong to their unit.
    assert_eq!(
        store.nearest_keyframe(&other, 10).await.expect("nearest"),
        None,
        "another scope"
    );
    let dev = SyncUnit::new(unit.document_id, Scope::Global, branch("dev"));
    assert_eq!(
        store.nearest_keyframe(&dev, 10).await.expect("nearest"),
        None,
        "another branch"
    );
    // They are not operations.
    assert_eq!(read_all(store, &unit, 0, None).await, ops);
    assert_verified(store, 2, 20).await;
}

/// `read_cold` answers what a cold load reads: each scope's head, the newest global keyframe at or below the head
/// (only when asked), the skips of the document scope and of the global scope from that keyframe, and each scope's
/// first operations from there, capped; nothing of another branch or document.
pub async fn cold_reads(store: &dyn OperationStore) {
    cold_reads_through(store, store).await;
}

/// [`cold_reads`] with the reads made by `reader`, a store on the same data as `store` (SQLite's read-only open,
/// whose cold reads take a connection of their own).
pub async fn cold_reads_through(store: &dyn OperationStore, reader: &dyn OperationStore) {
    let id = DocumentId::new();
    let unit = |scope| SyncUnit::main(id, scope);
    let (document, global, local) = (unit(Scope::Document), unit(Scope::Global), unit(Scope::Local));
    let mut chain = Chain::new(document.clone());
    let mut doc_ops = chain.ops(2);
    doc_ops.push(chain.skipping(1)); // index 2, cuts at 1
    let mut chain = Chain::new(global.clone());
    let mut g = chain.ops(5);
    g.push(chain.skipping(3)); // index 5, cuts at 2
    g.extend(chain.ops(2));
    g.push(chain.skipping(1)); // index 8, cuts at 7
    g.extend(chain.ops(3)); // head 12
    let l = Chain::new(local.clone()).ops(4);
    append_ok(store, &document, 0, doc_ops.clone()).await;
    append_ok(store, &global, 0, g[..6].to_vec()).await;
    append_ok(store, &global, 6, g[6..].to_vec()).await;
    append_ok(store, &local, 0, l.clone()).await;
    let keyframe = |revision: u64| Keyframe {
        unit: global.clone(),
        revision,
        last_hash: g[revision as usize - 1].hash,
        state: json!({ "at": revision, "text": "état 🧊" }).to_string(),
        state_hash: folio_core::hash::state_hash("{}"),
        seen: Default::default(),
    };
    store.put_keyframe(&keyframe(4)).await.expect("put keyframe 4");
    store.put_keyframe(&keyframe(7)).await.expect("put keyframe 7");
    // Keyframes of the local scope and of another branch are not the global unit's.
    let mut stray = keyframe(11);
    stray.unit = local.clone();
    stray.revision = 3;
    stray.last_hash = l[2].hash;
    store.put_keyframe(&stray).await.expect("put a local keyframe");
    let dev = SyncUnit::new(id, Scope::Global, branch("dev"));
    let dev_ops = Chain::new(dev.clone()).ops(3);
    append_ok(store, &dev, 0, dev_ops.clone()).await;

    let main = Branch::default();
    let cold = |keyframes: bool, limit: usize| {
        let main = main.clone();
        async move { reader.read_cold(id, &main, keyframes, limit).await.expect("read_cold") }
    };
    let heads = ScopeHeads {
        document: 3,
        global: 12,
        local: 4,
    };
    let whole = cold(true, 1000).await;
    assert_eq!(whole.heads, heads, "the three heads");
    assert_eq!(whole.keyframe, Some(keyframe(7)), "the newest global keyframe");
    assert_eq!(whole.document, doc_ops, "the document scope from 0");
    assert_eq!(whole.document_skips, vec![(2, 1)]);
    assert_eq!(whole.global, g[7..].to_vec(), "the global scope from the keyframe");
    assert_eq!(whole.global_skips, vec![(8, 1)], "the global skips from the keyframe");
    assert_eq!(whole.local, l, "the local scope from 0");

    let without = cold(false, 1000).await;
    assert_eq!(without.keyframe, None, "no keyframe unless asked");
    assert_eq!(without.global, g, "the global scope from 0");
    assert_eq!(without.global_skips, vec![(5, 3), (8, 1)]);
    assert_eq!(
        (without.heads, &without.document, &without.local),
        (heads, &doc_ops, &l)
    );

    let capped = cold(true, 2).await;
    assert_eq!(capped.heads, heads, "heads do not depend on the cap");
    assert_eq!(capped.document, doc_ops[..2].to_vec(), "at most the cap of each scope");
    assert_eq!(capped.global, g[7..9].to_vec());
    assert_eq!(capped.local, l[..2].to_vec());
    assert_eq!(capped.global_skips, vec![(8, 1)], "skips are not capped");
    let none = cold(false, 0).await;
    assert!(none.document.is_empty() && none.global.is_empty() && none.local.is_empty());
    assert_eq!(none.heads, heads);

    let other_branch = reader
        .read_cold(id, &branch("dev"), true, 1000)
        .await
        .expect("read_cold dev");
    assert_eq!(
        other_branch,
        ColdRead {
            heads: ScopeHeads {
                global: 3,
                ..ScopeHeads::default()
            },
            global: dev_ops,
            ..ColdRead::default()
        },
        "another branch of the document"
    );
    // A keyframe near the end of an append's chunk: the cap reaches into the next chunk.
    let near = DocumentId::new();
    let (near_document, near_global) = (
        SyncUnit::main(near, Scope::Document),
        SyncUnit::main(near, Scope::Global),
    );
    append_ok(store, &near_document, 0, Chain::new(near_document.clone()).ops(1)).await;
    let near_ops = Chain::new(near_global.clone()).ops(12);
    append_ok(store, &near_global, 0, near_ops[..6].to_vec()).await;
    append_ok(store, &near_global, 6, near_ops[6..].to_vec()).await;
    let mut at_five = keyframe(5);
    (at_five.unit, at_five.last_hash) = (near_global.clone(), near_ops[4].hash);
    store.put_keyframe(&at_five).await.expect("put keyframe 5");
    for (limit, until) in [(1, 6), (2, 7), (7, 12), (100, 12)] {
        let near_cold = reader
            .read_cold(near, &main, true, limit)
            .await
            .expect("read_cold near");
        assert_eq!(near_cold.keyframe.map(|k| k.revision), Some(5));
        assert_eq!(
            near_cold.global,
            near_ops[5..until].to_vec(),
            "{limit} from the keyframe at 5"
        );
    }
    let never = reader
        .read_cold(DocumentId::new(), &main, true, 1000)
        .await
        .expect("read_cold");
    assert_eq!(never, ColdRead::default(), "a document never written");
}

fn assert_round_trip(stored: &[Operation], sent: &[Operation], prev: OpHash) {
    assert_eq!(stored.len(), sent.len(), "as many operations back as sent");
    let mut prev = prev;
    for (s, o) in stored.iter().zip(sent) {
        assert!(s == o, "operation {} reads back differently", o.index);
        assert_eq!(
            operation_hash(&prev, s),
            s.hash,
            "operation {} read back hashes the same",
            o.index
        );
        prev = s.hash;
    }
}

/// Operations of half a megabyte and more round-trip exactly, keeping their hashes.
pub async fn large_payloads(store: &dyn OperationStore) {
    let unit = new_unit(Scope::Global);
    let mut chain = Chain::new(unit.clone());
    // 512 KiB of varied text (ASCII with some multi-byte characters), a large array, and a deep (but parseable)
    // nesting.
    let mut text = String::with_capacity(512 * 1024);
    let mut x: u32 = 12345;
    while text.len() < 512 * 1024 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        text.push(match (x >> 16) % 40 {
            0 => 'é',
            1 => '中',
            2 => '🦀',
            3 => '"',
            4 => '\\',
            5 => '\n',
            n => char::from(b'a' + (n % 26) as u8),
        });
    }
    let mut nested = json!("bottom");
    for depth in 0..100 {
        nested = json!({ format!("level{depth}"): nested });
    }
    let numbers: Vec<u64> = (0..20_000u64).map(|i| i * 7919).collect();
    let ops = vec![
        chain.op("SET", json!({ "text": text })),
        chain.op("SET", json!({ "numbers": numbers, "nested": nested })),
        chain.op("SET", json!([text.clone(), text.clone(), text.clone()])),
    ];
    append_ok(store, &unit, 0, ops[..1].to_vec()).await;
    append_ok(store, &unit, 1, ops[1..].to_vec()).await;
    assert_round_trip(&read_all(store, &unit, 0, None).await, &ops, OpHash::ZERO);
    assert_round_trip(&read_all(store, &unit, 2, None).await, &ops[2..], ops[1].hash);
    let committed = all_committed(store).await;
    let via_ordinals: Vec<Operation> = committed.into_iter().map(|c| c.operation).collect();
    assert_round_trip(&via_ordinals, &ops, OpHash::ZERO);
    assert_verified(store, 1, 3).await;
}

/// Unicode (emoji, CJK, right-to-left, combining marks, NUL and other control characters, unicode keys) and
/// extreme numbers round-trip exactly, in inputs, action types, replica names, errors and document names.
pub async fn unicode_payloads(store: &dyn OperationStore) {
    let input = json!({
        "emoji": "👩‍👩‍👧‍👦 🏳️‍🌈 😀 🦀",
        "cjk": "漢字かなカナ한국어 中文",
        "rtl": "مرحبا بالعالم — שלום עולם",
        "mixed": "abc אבג 123 ابت",
        "nul": "a\u{0000}b\u{0000}",
        "controls": "\u{0001}\u{001f}\u{007f}\t\n\r\"\\/",
        "bom": "\u{feff}start",
        "separators": "\u{2028}\u{2029}",
        "combining": "e\u{301} n\u{303} \u{1F1EB}\u{1F1F7}",
        "edges": "\u{10ffff}\u{e000}\u{fffd}",
        "🔑": "emoji key",
        "ключ": "cyrillic key",
        "مفتاح": "arabic key",
        "键\u{0000}": "key with NUL",
        "": "empty key",
        "nested": { "数组": ["α", "β", { "γ": null }, [], {}] },
        "numbers": [0, -1, u64::MAX, i64::MIN, 0.1, -2.5e-8, 1e300, 123456.789, 1.5, -0.0],
        "bool": [true, false],
    });
    let unit = new_unit(Scope::Global);
    let mut chain = Chain::new(unit.clone());
    let mut ops = vec![chain.op("SET", input.clone()), chain.op("設定/🚀", json!("\u{0000}"))];
    let mut action = Action::new("ADD_TODO", input, Scope::Global, HlcTimestamp::new(T0 + 50, 7));
    action.replica = Some("réplica-東京-🛰".to_owned());
    let rejected = Operation::new(
        action,
        chain.next,
        0,
        Some("rejected: ✗ «ошибка» \u{0000} نهاية".to_owned()),
        &chain.prev,
    );
    chain.next += 1;
    chain.prev = rejected.hash;
    ops.push(rejected);
    // A signed action: its signer and signature come back exactly, and it still verifies.
    let mut signed = Action::new(
        "SET",
        json!({"🔑": "signed"}),
        Scope::Global,
        HlcTimestamp::new(T0 + 60, 0),
    );
    folio_core::ReplicaKey::from_seed(&[3; 32]).sign(&mut signed);
    ops.push(chain.push(signed));
    // Three signed in one batch: one signature, each action's place in its tree (a longer `signature` field).
    let mut batch: Vec<Action> = (0..3)
        .map(|i| {
            Action::new(
                "SET",
                json!({"🔑": format!("batch {i}")}),
                Scope::Global,
                HlcTimestamp::new(T0 + 61 + i, 0),
            )
        })
        .collect();
    folio_core::ReplicaKey::from_seed(&[4; 32]).sign_all(batch.iter_mut());
    for a in batch {
        ops.push(chain.push(a));
    }
    append_ok(store, &unit, 0, ops.clone()).await;
    assert_round_trip(&read_all(store, &unit, 0, None).await, &ops, OpHash::ZERO);
    for op in read_all(store, &unit, 3, None).await {
        assert_eq!(
            folio_core::signature::verify(&op.action),
            Ok(true),
            "a signed action reads back with a valid signature (index {})",
            op.index
        );
    }
    let via_ordinals: Vec<Operation> = all_committed(store).await.into_iter().map(|c| c.operation).collect();
    assert_round_trip(&via_ordinals, &ops, OpHash::ZERO);

    // A replay of the same unicode operations is recognised as such.
    assert_replayed(store.append(&unit, 0, ops.clone()).await, 7);

    // Document names.
    let name = "名前 👍 שם \u{0000} fin";
    let doc = new_unit(Scope::Document);
    let create = Chain::new(doc.clone()).op(CREATE_DOCUMENT, json!({ "documentType": "folio/json", "name": name }));
    append_ok(store, &doc, 0, vec![create]).await;
    let header = store
        .header(doc.document_id, &Branch::default())
        .await
        .expect("header")
        .expect("created");
    assert_eq!(header.name, name, "a unicode name round-trips through the header index");
    let listed = store.list_headers(&ListQuery::default()).await.expect("list");
    assert_eq!(listed.iter().map(|h| h.name.as_str()).collect::<Vec<_>>(), vec![name]);
    assert_verified(store, 2, 8).await;
    let report = verify(store).await.expect("verify");
    assert_eq!(
        report.signed, 4,
        "verify checks the signed actions, alone and in a batch: {report:?}"
    );
}

/// `verify` passes on an empty store and on well-formed logs in several units, scopes and branches, counting them.
pub async fn verify_hash_chain(store: &dyn OperationStore) {
    assert_verified(store, 0, 0).await;
    let id = DocumentId::new();
    let units = [
        SyncUnit::main(id, Scope::Document),
        SyncUnit::main(id, Scope::Global),
        SyncUnit::new(id, Scope::Global, branch("feature/x")),
        SyncUnit::main(DocumentId::new(), Scope::Local),
    ];
    let mut total = 0;
    let mut seen = HashSet::new();
    for (i, unit) in units.iter().enumerate() {
        let mut chain = Chain::new(unit.clone());
        for _ in 0..=i {
            let ops = chain.ops(i + 1);
            total += ops.len() as u64;
            append_ok(store, unit, chain.next - ops.len() as u64, ops).await;
        }
        seen.insert(unit.clone());
    }
    assert_eq!(sorted_units(store).await.into_iter().collect::<HashSet<_>>(), seen);
    assert_verified(store, units.len() as u64, total).await;
}

/// The key-value table: absent keys, replace, insert-if-absent (one winner among racing callers), and a replica id
/// that stays the same.
pub async fn meta_values(store: Arc<dyn OperationStore>) {
    assert_eq!(
        store.get_meta("sync/none").await.unwrap(),
        None,
        "an unset key has no value"
    );
    store.put_meta("sync/a", "1").await.unwrap();
    assert_eq!(store.get_meta("sync/a").await.unwrap().as_deref(), Some("1"));
    store.put_meta("sync/a", "2").await.unwrap();
    assert_eq!(
        store.get_meta("sync/a").await.unwrap().as_deref(),
        Some("2"),
        "put_meta replaces"
    );
    assert_eq!(
        store.put_meta_if_absent("sync/a", "3").await.unwrap(),
        "2",
        "put_meta_if_absent keeps an existing value"
    );
    let unicode = "é ✓ \"quoted\" \\ ✗";
    store.put_meta("sync/ünïcode", unicode).await.unwrap();
    assert_eq!(store.get_meta("sync/ünïcode").await.unwrap().as_deref(), Some(unicode));

    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.put_meta_if_absent("sync/race", &format!("v{i}")).await.unwrap() })
        })
        .collect();
    let mut winners = BTreeSet::new();
    for racer in racers {
        winners.insert(racer.await.unwrap());
    }
    assert_eq!(
        winners.len(),
        1,
        "racing put_meta_if_absent calls must all see one winner, saw {winners:?}"
    );
    let stored = store.get_meta("sync/race").await.unwrap().unwrap();
    assert!(winners.contains(&stored));

    // A random replica id of an earlier version: the store moves to the id its key derives, keeping the former.
    store
        .put_meta(crate::store::REPLICA_ID_KEY, "00112233aabbccdd")
        .await
        .unwrap();
    let id = store.replica_id().await.unwrap();
    let key = store.replica_key().await.unwrap();
    assert_eq!(id, key.replica_id(), "the replica id derives from the replica key");
    assert_eq!(id.len(), 16);
    assert_eq!(store.replica_id().await.unwrap(), id, "the replica id stays the same");
    assert_eq!(
        store.replica_key().await.unwrap().public(),
        key.public(),
        "the key stays the same"
    );
    assert_eq!(
        store
            .get_meta(crate::store::FORMER_REPLICA_ID_KEY)
            .await
            .unwrap()
            .as_deref(),
        Some("00112233aabbccdd")
    );
}
