//! The conformance suite on the SQLite backend, each scenario on a fresh database file; then what only a file can
//! show: the log survives closing and reopening, and `verify` catches a tampered or missing row.

use futures::TryStreamExt;
use serde_json::json;

use folio_core::{DocumentId, OpHash, Operation, Scope, SyncUnit};
use folio_store::conformance::{Chain, FreshStore};
use folio_store::{OperationStore, SqliteStore, verify};

async fn fresh() -> FreshStore {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("folio.db"))
        .await
        .expect("open a new SQLite store");
    FreshStore::with_guard(store, dir)
}

folio_store::conformance_tests!(fresh);

async fn read_all(store: &SqliteStore, unit: &SyncUnit) -> Vec<Operation> {
    store.read(unit, 0, None).try_collect().await.expect("read")
}

#[tokio::test]
async fn reopened_file_keeps_the_log() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("folio.db");
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = Chain::new(unit.clone());
    let ops = chain.ops(25);
    {
        let store = SqliteStore::open(&path).await.expect("open");
        store.append(&unit, 0, ops.clone()).await.expect("append");
    }
    let store = SqliteStore::open(&path).await.expect("reopen");
    assert_eq!(read_all(&store, &unit).await, ops);
    assert_eq!(store.head(&unit).await.expect("head"), (25, ops[24].hash));
    // The reopened store continues the chain and refuses a stale writer.
    store
        .append(&unit, 25, chain.ops(1))
        .await
        .expect("append after reopen");
    assert!(store.append(&unit, 25, chain.ops(1)).await.is_err());
    assert!(verify(&store).await.expect("verify").is_ok());
}

/// The blob of the chunk of `unit` that starts at `idx`.
async fn chunk_data(store: &SqliteStore, idx: i64) -> Vec<u8> {
    sqlx::query_scalar("SELECT data FROM log WHERE idx = ?")
        .bind(idx)
        .fetch_one(store.pool())
        .await
        .expect("a chunk")
}

async fn set_chunk_data(store: &SqliteStore, idx: i64, data: &[u8]) {
    let changed = sqlx::query("UPDATE log SET data = ? WHERE idx = ?")
        .bind(data)
        .bind(idx)
        .execute(store.pool())
        .await
        .expect("tamper")
        .rows_affected();
    assert_eq!(changed, 1);
}

#[tokio::test]
async fn verify_detects_tampering() {
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    // One append per operation: one chunk each, stored as it is (small).
    let one_by_one = || async {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(dir.path().join("folio.db")).await.expect("open");
        let mut chain = Chain::new(unit.clone());
        for i in 0..10 {
            let op = chain.op("SET", json!({ "value": format!("value-{i}") }));
            store.append(&unit, i, vec![op]).await.expect("append");
        }
        assert!(verify(&store).await.expect("verify").is_ok());
        (dir, store)
    };

    // Altered content: the stored hash no longer matches.
    let (_dir, store) = one_by_one().await;
    let mut data = chunk_data(&store, 4).await;
    let at = data
        .windows(7)
        .position(|w| w == b"value-4")
        .expect("the input is in the chunk");
    data[at + 6] = b'X';
    set_chunk_data(&store, 4, &data).await;
    let report = verify(&store).await.expect("verify");
    let broken = report.broken.expect("tampering is detected");
    assert_eq!((broken.unit, broken.index), (unit.clone(), 4));
    assert!(broken.reason.contains("hash"), "{}", broken.reason);

    // A chunk that no longer decodes: named at its operation.
    let (_dir, store) = one_by_one().await;
    let data = chunk_data(&store, 3).await;
    set_chunk_data(&store, 3, &data[..data.len() - 5]).await;
    let broken = verify(&store)
        .await
        .expect("verify")
        .broken
        .expect("a cut chunk is detected");
    assert_eq!((broken.unit, broken.index), (unit.clone(), 3));

    // A compact (compressed) chunk with one byte changed: its checksum names it, at its first operation.
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = SqliteStore::open(dir.path().join("folio.db")).await.expect("open");
    let mut chain = Chain::new(unit.clone());
    store.append(&unit, 0, chain.ops(2)).await.expect("append");
    store.append(&unit, 2, chain.ops(40)).await.expect("append");
    let mut data = chunk_data(&store, 2).await;
    assert_eq!(data[0], 4, "forty operations are compressed (and anchored)");
    let middle = data.len() / 2;
    data[middle] ^= 0x55;
    set_chunk_data(&store, 2, &data).await;
    let broken = verify(&store)
        .await
        .expect("verify")
        .broken
        .expect("a changed compressed chunk is detected");
    assert_eq!((broken.unit, broken.index), (unit.clone(), 2));
    assert!(broken.reason.contains("compressed chunk"), "{}", broken.reason);

    // An anchored chunk (eight operations or more: no hash each, the first and last stored) with an operation
    // after the first changed: named at the chunk's second operation; with its first changed: at its first, by the
    // chain as before.
    for (changed, named) in [(5, 3), (2, 2)] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = SqliteStore::open(dir.path().join("folio.db")).await.expect("open");
        let mut chain = Chain::new(unit.clone());
        store.append(&unit, 0, chain.ops(2)).await.expect("append");
        let small: Vec<_> = (10..18).map(|v| chain.op("SET", json!({ "v": v }))).collect();
        store.append(&unit, 2, small).await.expect("append");
        assert!(verify(&store).await.expect("verify").is_ok());
        let mut data = chunk_data(&store, 2).await;
        assert_eq!(data[0], 3, "eight small operations are anchored, not compressed");
        let needle = format!("{{\"v\":{}}}", 8 + changed);
        let at = data
            .windows(needle.len())
            .position(|w| w == needle.as_bytes())
            .expect("the input is in the chunk");
        data[at + 5] = b'9';
        set_chunk_data(&store, 2, &data).await;
        let broken = verify(&store)
            .await
            .expect("verify")
            .broken
            .expect("a changed anchored chunk is detected");
        assert_eq!((broken.unit, broken.index), (unit.clone(), named), "{}", broken.reason);
        assert!(broken.reason.contains("hash"), "{}", broken.reason);
    }

    // A lost operation (its chunk): the indexes are no longer dense.
    let (_dir, store) = one_by_one().await;
    sqlx::query("DELETE FROM log WHERE idx = 6")
        .execute(store.pool())
        .await
        .expect("delete");
    let broken = verify(&store).await.expect("verify").broken.expect("loss is detected");
    assert_eq!(broken.index, 6);

    // A lost tail: the recorded head no longer matches the log.
    sqlx::query("DELETE FROM log WHERE idx >= 6")
        .execute(store.pool())
        .await
        .expect("delete");
    let broken = verify(&store)
        .await
        .expect("verify")
        .broken
        .expect("a lost tail is detected");
    assert_eq!(broken.index, 6);
    assert_ne!(store.head(&unit).await.expect("head").1, OpHash::ZERO);
}

/// The writer leaves checkpoints to a background task; the WAL must still stay bounded while writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_under_sustained_writes() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("folio.db");
    let store = SqliteStore::open(&path).await.expect("open");
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = Chain::new(unit.clone());
    let mut wal_max = 0u64;
    let mut revision = 0u64;
    // About 48 MiB of operations (4 KiB each), in appends of 64.
    for _ in 0..192 {
        let payload = "p".repeat(4096);
        let ops: Vec<_> = (0..64)
            .map(|_| chain.op("SET", serde_json::json!({ "payload": payload })))
            .collect();
        store.append(&unit, revision, ops).await.expect("append");
        revision += 64;
        let wal = std::fs::metadata(dir.path().join("folio.db-wal"))
            .map(|m| m.len())
            .unwrap_or(0);
        wal_max = wal_max.max(wal);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    println!("WAL peaked at {wal_max} bytes");
    assert!(
        wal_max < 40 * 1024 * 1024,
        "the WAL grew to {wal_max} bytes while 48 MiB were written"
    );
    assert!(verify(&store).await.expect("verify").is_ok());
}

/// A store in `folio.db` of a new temporary directory, and the file's path.
async fn file_store() -> (tempfile::TempDir, std::path::PathBuf, SqliteStore) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("folio.db");
    let store = SqliteStore::open(&path).await.expect("open");
    (dir, path, store)
}

/// The read-only open's cold reads, which take a synchronous connection of their own: they answer the conformance
/// scenario (written by a store on the same file after the read-only one was opened) exactly as the store does,
/// name a damaged chunk as the store does, and a file that does not exist is refused (not created).
#[tokio::test]
async fn read_only_cold_reads_answer_as_the_store() {
    let (_dir, path, store) = file_store().await;
    let reader = SqliteStore::open_read_only(&path).await.expect("open read-only");
    folio_store::conformance::cold_reads_through(&store, &reader).await;

    let (dir, path, store) = file_store().await;
    let id = DocumentId::new();
    let unit = SyncUnit::main(id, Scope::Document);
    let mut chain = Chain::new(unit.clone());
    for i in 0..4 {
        store.append(&unit, i, chain.ops(1)).await.expect("append");
    }
    let data = chunk_data(&store, 2).await;
    set_chunk_data(&store, 2, &data[..data.len() - 5]).await;
    let main = folio_core::Branch::default();
    let by_store = store.read_cold(id, &main, true, 100).await;
    let reader = SqliteStore::open_read_only(&path).await.expect("open read-only");
    let by_reader = reader.read_cold(id, &main, true, 100).await;
    for read in [&by_store, &by_reader] {
        match read {
            Err(folio_store::StoreError::Corrupt { unit: named, index, .. }) => {
                assert_eq!((named.as_str(), *index), (unit.to_string().as_str(), 2), "{read:?}")
            }
            other => panic!("a cut chunk is named: {other:?}"),
        }
    }
    assert_eq!(format!("{by_store:?}"), format!("{by_reader:?}"));

    let absent = dir.path().join("absent.db");
    let refused = SqliteStore::open_read_only(&absent).await;
    assert!(refused.is_err(), "a missing file is refused");
    assert!(!absent.exists(), "and not created");
}

/// A read-only store's cold reads while a writer appends to the same file: each reads every scope from 0 to exactly
/// the head it reports and every skip below that head, sees a commit whole or not at all, never sees a head go back,
/// and none fails. The writer's every third operation skips one, so a skip read past the head would show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_cold_reads_are_snapshots_while_a_writer_appends() {
    let (_dir, path, store) = file_store().await;
    let id = DocumentId::new();
    let (global, local) = (SyncUnit::main(id, Scope::Global), SyncUnit::main(id, Scope::Local));
    let writer = tokio::spawn(async move {
        let (mut g, mut l) = (Chain::new(global.clone()), Chain::new(local.clone()));
        for round in 0..300u64 {
            let mut ops = g.ops(2);
            ops.push(g.skipping(1));
            store.append(&global, round * 3, ops).await.expect("append global");
            store.append(&local, round, l.ops(1)).await.expect("append local");
        }
    });
    let reader = SqliteStore::open_read_only(&path).await.expect("open read-only");
    let main = folio_core::Branch::default();
    let mut reads = 0;
    let mut last = (0, 0);
    while !writer.is_finished() || reads == 0 {
        let cold = reader.read_cold(id, &main, true, 100_000).await.expect("a cold read");
        for (ops, head) in [(&cold.global, cold.heads.global), (&cold.local, cold.heads.local)] {
            let indexes: Vec<u64> = ops.iter().map(|op| op.index).collect();
            assert_eq!(indexes, (0..head).collect::<Vec<_>>(), "from 0 to the head it reports");
        }
        assert!(
            cold.heads.global % 3 == 0,
            "a commit is never read in part: {:?}",
            cold.heads
        );
        let skips: Vec<(u64, u64)> = (0..cold.heads.global / 3).map(|r| (r * 3 + 2, 1)).collect();
        assert_eq!(cold.global_skips, skips, "the skips below the head, and only those");
        assert!((cold.heads.global, cold.heads.local) >= last, "heads never go back");
        last = (cold.heads.global, cold.heads.local);
        reads += 1;
    }
    writer.await.expect("the writer");
    let cold = reader
        .read_cold(id, &main, true, 100_000)
        .await
        .expect("the last cold read");
    assert_eq!((cold.heads.global, cold.heads.local), (900, 300));
    assert_eq!(cold.global_skips.len(), 300);
    assert!(reads > 1, "reads ran while the writer wrote ({reads})");
}

/// Concurrent cold reads on one read-only store all answer as the store does, whichever path each takes (the
/// synchronous connection, or the pool when another read holds it: which happens here depends on timing; the
/// pool's path alone is tested in `sqlite/tests.rs`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_reads_on_a_read_only_store_agree() {
    let (_dir, path, store) = file_store().await;
    let id = DocumentId::new();
    let global = SyncUnit::main(id, Scope::Global);
    let mut chain = Chain::new(global.clone());
    for i in 0..20 {
        store.append(&global, i * 50, chain.ops(50)).await.expect("append");
    }
    let reader = SqliteStore::open_read_only(&path).await.expect("open read-only");
    let main = folio_core::Branch::default();
    let reads = (0..16).map(|_| {
        let (reader, main) = (reader.clone(), main.clone());
        tokio::spawn(async move { reader.read_cold(id, &main, true, 1_000).await.expect("a cold read") })
    });
    let expected = store.read_cold(id, &main, true, 1_000).await.expect("the store's");
    for read in futures::future::join_all(reads).await {
        assert_eq!(read.expect("the task"), expected);
    }
}
