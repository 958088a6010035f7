//! No commit is missed by a reader by ordinal on PostgreSQL (ARCHITECTURE.md, "No commit is missed"): ordinals are
//! transaction ids, handed out before COMMIT in another order than the commits, and a reader takes only those below
//! the oldest running transaction. These tests try hard to make a reader skip one: many connections commit through
//! the store's own function with random delays before COMMIT (some roll back), while a reader follows by ordinal
//! from another handle; and one transaction is held open while later ones commit. And a unit's appends sent through
//! one handle without waiting for the answers are all accepted, in order, every one read back by ordinal.
//!
//! Needs `FOLIO_TEST_DATABASE_URL` (scripts/test starts a cluster).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use folio_core::{DocumentId, OpHash, Operation, Scope, SyncUnit};
use folio_store::conformance::{Chain, Rng};
use folio_store::pg_testing::{TestDatabase, connect};
use folio_store::{OperationStore, PgStore};

/// Calls `folio_append` for `ops` (one request at `revision` over `prev`) inside an explicit transaction on
/// `conn`, sleeps `delay` before COMMIT (or ROLLBACK when `commit` is false); whether it was accepted.
async fn append_in_transaction(
    conn: &mut PgConnection,
    unit: &SyncUnit,
    revision: u64,
    prev: OpHash,
    ops: &[Operation],
    delay: Duration,
    commit: bool,
) -> bool {
    let mut tx = conn.begin().await.expect("BEGIN");
    let status: Vec<i32> = sqlx::query_scalar(
        "SELECT status FROM folio_append(42, 'folio_commits', ARRAY[$1], ARRAY[$2], ARRAY[$3], ARRAY[$4::bigint], \
         ARRAY[$5::bigint], ARRAY[$6::bytea], ARRAY[true], ARRAY[$7::bytea], ARRAY[0::bigint], \
         $8::int[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bytea[], $13::text[], $14::int[], \
         '{}', '{}', '{}', '{}', '{}')",
    )
    .bind(unit.document_id.to_string())
    .bind(unit.scope.as_str())
    .bind(unit.branch.as_str())
    .bind(revision as i64)
    .bind(ops.len() as i64)
    .bind(prev.0.to_vec())
    .bind(ops.last().expect("an operation").hash.0.to_vec())
    .bind(vec![1i32; ops.len()])
    .bind(ops.iter().map(|o| o.index as i64).collect::<Vec<_>>())
    .bind(vec![0i64; ops.len()])
    .bind(ops.iter().map(|o| o.timestamp_utc_ms as i64).collect::<Vec<_>>())
    .bind(ops.iter().map(|o| o.hash.0.to_vec()).collect::<Vec<_>>())
    .bind(
        ops.iter()
            .map(|o| serde_json::to_string(o).expect("json"))
            .collect::<Vec<_>>(),
    )
    .bind(
        ops.iter()
            .map(|o| serde_json::to_string(o).expect("json").len() as i32)
            .collect::<Vec<_>>(),
    )
    .fetch_one(&mut *tx)
    .await
    .expect("folio_append");
    if !delay.is_zero() {
        sqlx::query("SELECT pg_sleep($1)")
            .bind(delay.as_secs_f64())
            .execute(&mut *tx)
            .await
            .expect("pg_sleep");
    }
    if commit {
        tx.commit().await.expect("COMMIT");
    } else {
        tx.rollback().await.expect("ROLLBACK");
    }
    status == [0]
}

/// Every committed operation of the database, by ordinal: (unit, index).
async fn committed(url: &str) -> BTreeMap<i64, (String, i64)> {
    let mut conn = connect(url).await;
    let rows: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT o.ordinal, u.document_id || '/' || u.scope, o.idx FROM operations o JOIN units u USING (unit_id)",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read the log");
    rows.into_iter().map(|(o, u, i)| (o, (u, i))).collect()
}

/// 16 connections ("nodes") append 25 times each, one to three operations, with a random delay of 0–40 ms before
/// COMMIT, one in eight rolled back; a store handle's own writer commits to shared units at the same time. A reader
/// on another handle follows by ordinal with small pages the whole time: it must see every committed operation
/// exactly once, in increasing ordinals, and none rolled back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_by_ordinal_misses_no_commit_under_random_commit_delays() {
    let db = TestDatabase::create().await;
    let writer = PgStore::open(&db.url).await.expect("open the writing handle");
    let reader = PgStore::open(&db.url).await.expect("open the reading handle");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));

    let follow = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut cursor = 0u64;
            let mut seen: BTreeMap<u64, (String, u64)> = BTreeMap::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = reader.read_since(cursor, 7).await.expect("read_since");
                for c in &page {
                    assert!(c.ordinal > cursor, "ordinal {} after cursor {cursor}", c.ordinal);
                    cursor = c.ordinal;
                    let key = (
                        format!("{}/{}", c.unit.document_id, c.unit.scope.as_str()),
                        c.operation.index,
                    );
                    assert!(
                        seen.insert(c.ordinal, key).is_none(),
                        "ordinal {} read twice",
                        c.ordinal
                    );
                }
                if page.is_empty() {
                    if finished {
                        return seen;
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        })
    };

    let nodes: Vec<_> = (0..16u64)
        .map(|n| {
            let url = db.url.clone();
            tokio::spawn(async move {
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (n + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
                let mut conn = connect(&url).await;
                let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
                let mut chain = Chain::new(unit.clone());
                let (mut revision, mut prev) = (0u64, OpHash::ZERO);
                for i in 0..25 {
                    let count = 1 + rng.below(3) as usize;
                    let before = chain.clone();
                    let ops: Vec<Operation> = (0..count)
                        .map(|j| chain.op("SET", json!({ "n": n, "i": i, "j": j })))
                        .collect();
                    let delay = Duration::from_millis(rng.below(41));
                    let commit = rng.below(8) != 0;
                    let accepted = append_in_transaction(&mut conn, &unit, revision, prev, &ops, delay, commit).await;
                    assert!(accepted, "node {n} append {i} refused");
                    if commit {
                        revision += count as u64;
                        prev = ops.last().expect("ops").hash;
                    } else {
                        chain = before;
                    }
                }
            })
        })
        .collect();
    let shared = {
        let writer = writer.clone();
        tokio::spawn(async move {
            let units: Vec<SyncUnit> = (0..4)
                .map(|_| SyncUnit::main(DocumentId::new(), Scope::Global))
                .collect();
            let mut chains: Vec<Chain> = units.iter().map(|u| Chain::new(u.clone())).collect();
            for i in 0..50u64 {
                let k = (i % 4) as usize;
                let revision = i / 4;
                let op = chains[k].op("SET", json!({ "i": i }));
                writer
                    .append(&units[k], revision, vec![op])
                    .await
                    .expect("append through the writer");
            }
        })
    };
    for node in nodes {
        node.await.expect("node");
    }
    shared.await.expect("shared writer");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = tokio::time::timeout(Duration::from_secs(60), follow)
        .await
        .expect("the reader caught up")
        .expect("reader");

    let stored = committed(&db.url).await;
    let stored: BTreeMap<u64, (String, u64)> = stored
        .into_iter()
        .map(|(o, (u, i))| (o as u64, (u, i as u64)))
        .collect();
    let missed: BTreeSet<_> = stored.keys().filter(|o| !seen.contains_key(o)).collect();
    assert!(
        missed.is_empty(),
        "the reader missed {} committed operations: {missed:?}",
        missed.len()
    );
    assert_eq!(seen, stored, "the reader saw exactly the committed operations");
    assert!(stored.len() >= 16 * 20, "most appends committed ({})", stored.len());
}

/// A transaction that took its ordinals holds them open while later transactions commit: a reader by ordinal
/// waits for it (it neither skips it nor returns the later ones first), then sees it before them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_waits_for_a_transaction_held_open_before_commit() {
    let db = TestDatabase::create().await;
    let store = PgStore::open(&db.url).await.expect("open the store");
    let before = store.max_ordinal().await.expect("max_ordinal");

    // The slow transaction: its ordinals are taken, its COMMIT waits 1.5 s.
    let slow_unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let slow_op = Chain::new(slow_unit.clone()).op("SET", json!({ "slow": true }));
    let slow = {
        let url = db.url.clone();
        let (unit, op) = (slow_unit.clone(), slow_op.clone());
        tokio::spawn(async move {
            let mut conn = connect(&url).await;
            let held = Duration::from_millis(1500);
            append_in_transaction(&mut conn, &unit, 0, OpHash::ZERO, &[op], held, true).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Later transactions commit meanwhile, with higher ordinals.
    let fast_unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = Chain::new(fast_unit.clone());
    let mut fast_ordinals = Vec::new();
    for revision in 0..3 {
        let appended = store
            .append(&fast_unit, revision, vec![chain.op("SET", json!({ "fast": revision }))])
            .await
            .expect("append while the slow transaction is open");
        fast_ordinals.extend(appended.ordinals);
    }

    // A reader by ordinal started now waits for the slow transaction, then reads it first.
    let reading = {
        let store = store.clone();
        tokio::spawn(async move { store.read_since(before, 100).await.expect("read_since") })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !reading.is_finished(),
        "the reader answered while an older transaction was still open"
    );
    assert!(slow.await.expect("slow transaction"), "the slow append was accepted");
    let page = reading.await.expect("reader");
    let units: Vec<&SyncUnit> = page.iter().map(|c| &c.unit).collect();
    assert_eq!(
        units,
        [&slow_unit, &fast_unit, &fast_unit, &fast_unit],
        "the held commit comes first"
    );
    assert_eq!(page[0].operation.hash, slow_op.hash);
    assert_eq!(
        page[1..].iter().map(|c| c.ordinal).collect::<Vec<_>>(),
        fast_ordinals,
        "the later commits follow with the ordinals append returned"
    );
    assert!(page.windows(2).all(|w| w[0].ordinal < w[1].ordinal));
    assert_eq!(store.max_ordinal().await.expect("max_ordinal"), page[3].ordinal);
}

/// A unit's ordinals grow with its indexes even when group commits of two handles overlap on several units at once
/// (each waits for the other's locks): the next writer of a unit takes its transaction id, the ordinals' high part,
/// only after it holds the unit's lock, so after the previous writer's COMMIT.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_units_ordinals_grow_with_its_indexes_under_overlapping_group_commits() {
    let db = TestDatabase::create().await;
    let units: Vec<SyncUnit> = (0..6)
        .map(|_| SyncUnit::main(DocumentId::new(), Scope::Global))
        .collect();
    let handles = [
        PgStore::open(&db.url).await.expect("open A"),
        PgStore::open(&db.url).await.expect("open B"),
    ];
    let tasks: Vec<_> = (0..8u64)
        .map(|w| {
            let store = handles[(w % 2) as usize].clone();
            let units = units.clone();
            tokio::spawn(async move {
                let mut rng = Rng(0x1234_5678 ^ (w + 1).wrapping_mul(0x9e37_79b9));
                for _ in 0..30 {
                    // Three units of the six, in a random order, in one batch.
                    let mut picked: Vec<&SyncUnit> = Vec::new();
                    while picked.len() < 3 {
                        let u = &units[rng.below(6) as usize];
                        if !picked.contains(&u) {
                            picked.push(u);
                        }
                    }
                    let mut requests = Vec::new();
                    for unit in picked {
                        let (revision, last) = store.head(unit).await.expect("head");
                        let op = Chain::at(unit.clone(), revision, last).op("SET", json!({ "w": w }));
                        requests.push(folio_store::AppendRequest {
                            unit: unit.clone(),
                            expected_revision: revision,
                            operations: vec![op].into(),
                        });
                    }
                    for result in store.append_batch(requests).await {
                        match result {
                            Ok(_) | Err(folio_store::StoreError::RevisionMismatch { .. }) => {}
                            Err(folio_store::StoreError::InvalidOperations { .. }) => {} // the head moved
                            Err(e) => panic!("append failed: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer");
    }
    let stored = committed(&db.url).await;
    let mut by_unit: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (ordinal, (unit, idx)) in stored {
        by_unit.entry(unit).or_default().push((idx, ordinal));
    }
    for (unit, mut rows) in by_unit {
        rows.sort();
        assert!(rows.len() > 5, "{unit}: {} operations", rows.len());
        for pair in rows.windows(2) {
            assert!(
                pair[0].1 < pair[1].1,
                "{unit}: index {} has ordinal {}, index {} has {}",
                pair[0].0,
                pair[0].1,
                pair[1].0,
                pair[1].1
            );
        }
    }
}

/// Appends of one unit sent through one handle one after another without waiting for the answers (each a request
/// of its own, so in one or several group commits) are all accepted, in order: none is refused as stale because a
/// later one reached the server first. Holds with one group commit in flight per writer; a writer that kept several
/// in flight (tried in issue 22, session 12, on several connections) must hold a unit's later appends until the
/// earlier ones commit, or this fails (it did, four runs of four, without that rule). And every acknowledged
/// operation is stored, each unit's ordinals growing with its indexes, and a reader by ordinal gets them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_sent_without_waiting_are_accepted_in_order() {
    const ROUNDS: u64 = 100;
    let db = TestDatabase::create().await;
    let mut options = folio_store::PgOptions::new(db.url.clone());
    options.commit_linger = Duration::ZERO; // small commits: a unit's appends spread over many
    let store = PgStore::open_with(options).await.expect("open the store");
    let units: Vec<SyncUnit> = (0..12)
        .map(|_| SyncUnit::main(DocumentId::new(), Scope::Global))
        .collect();
    // Per unit, ROUNDS appends each polled once in order before any answer is awaited: polling sends the request to
    // the writer, so each unit's requests reach it in index order, and the writer's batches split them over
    // commits.
    let tasks: Vec<_> = units
        .iter()
        .map(|unit| {
            let store = store.clone();
            let unit = unit.clone();
            tokio::spawn(async move {
                let mut chain = Chain::new(unit.clone());
                let mut pending = Vec::new();
                for round in 0..ROUNDS {
                    let revision = chain.next;
                    let op = chain.op("SET", json!({ "round": round }));
                    let (store, unit) = (store.clone(), unit.clone());
                    let mut append = Box::pin(async move { store.append(&unit, revision, vec![op]).await });
                    let early = futures::poll!(append.as_mut());
                    pending.push((append, early));
                    if round % 4 == 3 {
                        tokio::task::yield_now().await;
                    }
                }
                let mut results = Vec::new();
                for (append, early) in pending {
                    results.push(match early {
                        std::task::Poll::Ready(result) => result,
                        std::task::Poll::Pending => append.await,
                    });
                }
                results
            })
        })
        .collect();
    for task in tasks {
        for (n, result) in task.await.expect("append task").into_iter().enumerate() {
            let appended = result.unwrap_or_else(|e| panic!("append {n}: {e}"));
            assert_eq!(appended.revision, n as u64 + 1);
            assert_eq!(appended.ordinals.len(), 1, "append {n}: {appended:?}");
        }
    }
    let stored = committed(&db.url).await;
    assert_eq!(
        stored.len(),
        12 * ROUNDS as usize,
        "every acknowledged operation is stored"
    );
    let mut by_unit: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    for (&ordinal, (unit, idx)) in &stored {
        by_unit.entry(unit.clone()).or_default().push((*idx, ordinal));
    }
    for (unit, mut rows) in by_unit {
        rows.sort();
        let indexes: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(indexes, (0..ROUNDS as i64).collect::<Vec<_>>(), "{unit}");
        assert!(
            rows.windows(2).all(|p| p[0].1 < p[1].1),
            "{unit}: ordinals out of index order: {rows:?}"
        );
    }
    let mut read = BTreeSet::new();
    let mut cursor = 0;
    loop {
        let page = store.read_since(cursor, 100).await.expect("read_since");
        let Some(last) = page.last() else { break };
        cursor = last.ordinal;
        read.extend(page.iter().map(|c| c.ordinal as i64));
    }
    assert_eq!(read, stored.keys().copied().collect::<BTreeSet<_>>());
}
