//! Tests of the SQLite backend that need its insides (its pool, its WAL, its migrations); the contract itself is
//! the conformance suite's (`tests/conformance_sqlite.rs`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::Connection;
use sqlx::sqlite::SqliteConnection;

use folio_core::{DocumentId, Operation, Scope, SyncUnit};

use super::open::connect_options;
use super::wal::{CHECKPOINT_AFTER_BYTES, wal_path};
use super::{SqliteOptions, SqliteStore};
use crate::StoreError;
use crate::store::{OperationStore, SinceFilter};

#[tokio::test]
async fn rows_without_the_replica_column_are_filtered_by_their_decoded_author() {
    use folio_core::{Action, HlcTimestamp};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = crate::conformance::Chain::new(unit.clone());
    let ops: Vec<Operation> = [Some("r1"), Some("r2"), None, Some("r1")]
        .into_iter()
        .map(|author| {
            let mut action = Action::new("SET", serde_json::json!({}), Scope::Global, HlcTimestamp::new(1, 0));
            action.replica = author.map(str::to_owned);
            chain.push(action)
        })
        .collect();
    store.append(&unit, 0, ops.clone()).await.unwrap();
    // As a store written before the column existed: no row names its author.
    sqlx::query("UPDATE operations SET replica = NULL")
        .execute(&store.pool)
        .await
        .unwrap();
    let indexes = |filter: SinceFilter<'static>| {
        let store = store.clone();
        async move {
            let page = store.read_since_filtered(0, 10, &filter).await.unwrap();
            assert_eq!(page.scanned, 4);
            page.committed.iter().map(|c| c.operation.index).collect::<Vec<_>>()
        }
    };
    let exclude = SinceFilter {
        exclude_replica: Some("r1"),
        ..SinceFilter::default()
    };
    let only = SinceFilter {
        only_replica: Some("r1"),
        ..SinceFilter::default()
    };
    assert_eq!(indexes(exclude).await, vec![1, 2]);
    assert_eq!(indexes(only).await, vec![0, 3]);
    assert_eq!(indexes(SinceFilter::default()).await, vec![0, 1, 2, 3]);
}

/// Under a load that never pauses, the WAL still starts over: it stays bounded instead of growing with
/// everything written (a checkpoint on another connection never catches up with a busy writer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_a_steady_load() {
    use folio_core::{Action, HlcTimestamp};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("folio.db");
    let mut options = SqliteOptions::new(&path);
    options.synchronous_full = false;
    let store = SqliteStore::open_with(options).await.unwrap();
    let writers = 32;
    let per_writer = 600;
    let title = "x".repeat(300);
    let largest = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, title, largest) = (store.clone(), title.clone(), largest.clone());
            let wal = wal_path(&path);
            tokio::spawn(async move {
                let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
                let mut chain = crate::conformance::Chain::new(unit.clone());
                for index in 0..per_writer {
                    let input = serde_json::json!({ "title": title });
                    let action = Action::new("SET", input, Scope::Global, HlcTimestamp::new(1, 0));
                    let op = chain.push(action);
                    store.append(&unit, index, vec![op]).await.unwrap();
                    let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                    largest.fetch_max(size, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let written: i64 = sqlx::query_scalar("SELECT sum(size) FROM operations")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    let largest = largest.load(Ordering::Relaxed);
    // Every commit writes whole pages: the WAL takes several times the operations' bytes per checkpoint.
    assert!(written as u64 > 8 * CHECKPOINT_AFTER_BYTES, "{written} bytes written");
    assert!(
        largest < 40 * CHECKPOINT_AFTER_BYTES,
        "the WAL grew to {largest} bytes for {written} bytes of operations"
    );
}

/// A store written before migration 6 (the log clustered by `(unit_id, idx)`) keeps every operation, its
/// ordinal and its author when the log is rebuilt in commit order, and takes appends after it.
#[tokio::test]
async fn a_log_clustered_by_unit_is_rebuilt_in_commit_order_with_everything_in_it() {
    use folio_core::{Action, HlcTimestamp};
    use futures::TryStreamExt;
    let dir = tempfile::tempdir().unwrap();
    // The history, written by the current store: three units appended in turns, so their ordinals interleave,
    // and one rebase (a skip).
    let source_path = dir.path().join("source.db");
    let source = SqliteStore::open(&source_path).await.unwrap();
    let units: Vec<SyncUnit> = (0..3)
        .map(|_| SyncUnit::main(DocumentId::new(), Scope::Global))
        .collect();
    let mut chains: Vec<_> = units.iter().cloned().map(crate::conformance::Chain::new).collect();
    for round in 0..4u64 {
        for (unit, chain) in units.iter().zip(chains.iter_mut()) {
            let action = |i: u64| {
                let input = serde_json::json!({ "round": round, "i": i });
                let mut action = Action::new("SET", input, Scope::Global, HlcTimestamp::new(1, 0));
                action.replica = Some(format!("r{round}"));
                action
            };
            let ops = if round == 3 {
                vec![chain.push_skipping(action(0), 2)]
            } else {
                vec![chain.push(action(0)), chain.push(action(1))]
            };
            source.append(unit, round * 2, ops).await.unwrap();
        }
    }
    // The old layout: migrations 1 to 5, then the same rows.
    let old_path = dir.path().join("old.db");
    let mut conn = SqliteConnection::connect_with(&connect_options(&SqliteOptions::new(&old_path)))
        .await
        .unwrap();
    let all = sqlx::migrate!("./migrations/sqlite");
    let up_to_5 = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(all.migrations.iter().filter(|m| m.version <= 5).cloned().collect()),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    };
    up_to_5.run_direct(&mut conn).await.unwrap();
    let schema: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'operations'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(schema.contains("WITHOUT ROWID"), "{schema}");
    sqlx::query(&format!("ATTACH '{}' AS source", source_path.display()))
        .execute(&mut conn)
        .await
        .unwrap();
    for copy in [
        "INSERT INTO operations (unit_id, idx, ordinal, skip, timestamp_ms, hash, error, operation, size, replica) \
         SELECT unit_id, idx, ordinal, skip, timestamp_ms, hash, error, operation, size, replica FROM source.operations",
        "INSERT INTO units SELECT * FROM source.units",
    ] {
        sqlx::query(copy).execute(&mut conn).await.unwrap();
    }
    drop(conn);

    let store = SqliteStore::open(&old_path).await.unwrap();
    let schema: String = sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE name = 'operations'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert!(!schema.contains("WITHOUT ROWID"), "{schema}");
    for unit in &units {
        let before: Vec<Operation> = source.read(unit, 0, None).try_collect().await.unwrap();
        let after: Vec<Operation> = store.read(unit, 0, None).try_collect().await.unwrap();
        assert_eq!(after.len(), 7);
        assert_eq!(after, before);
        assert_eq!(store.skips(unit, 0, None).await.unwrap(), vec![(6, 2)]);
    }
    let since = |s: SqliteStore| async move {
        let page = s.read_since(0, 100).await.unwrap();
        page.iter().map(|c| (c.ordinal, c.operation.id)).collect::<Vec<_>>()
    };
    let expected = since(source.clone()).await;
    assert_eq!(expected.len(), 21);
    assert_eq!(since(store.clone()).await, expected);
    let only = SinceFilter {
        only_replica: Some("r1"),
        ..SinceFilter::default()
    };
    let authored = store.read_since_filtered(0, 100, &only).await.unwrap();
    assert_eq!(authored.committed.len(), 6);
    assert!(crate::verify::verify(&store).await.unwrap().is_ok());
    // Appends go on after the rebuilt log; a stale one is refused by the revision check.
    let next = chains[0].ops(1);
    store.append(&units[0], 7, next).await.unwrap();
    let stale = store.append(&units[0], 7, chains[1].ops(1)).await;
    assert!(matches!(stale, Err(StoreError::RevisionMismatch { .. })), "{stale:?}");
    assert_eq!(store.max_ordinal().await.unwrap(), 22);
}
