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
    sqlx::query("UPDATE log SET replica = NULL")
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

/// A merged append whose authors come in long runs (a rebase of two replicas' batches) is stored as chunks of one
/// author each, which a pull leaves out by their `replica` column; short runs stay together in one chunk.
#[tokio::test]
async fn long_runs_of_one_author_become_chunks_of_their_own() {
    use folio_core::{Action, HlcTimestamp};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = crate::conformance::Chain::new(unit.clone());
    // Three short runs (10 ops each), then runs of 40, 50 and 40.
    let runs: [(&str, usize); 6] = [("r1", 10), ("r2", 10), ("r1", 10), ("r2", 40), ("r1", 50), ("r2", 40)];
    let ops: Vec<Operation> = runs
        .iter()
        .flat_map(|&(author, n)| std::iter::repeat_n(author, n))
        .map(|author| {
            let mut action = Action::new(
                "SET",
                serde_json::json!({"v": 1}),
                Scope::Global,
                HlcTimestamp::new(1, 0),
            );
            action.replica = Some(author.to_owned());
            chain.push(action)
        })
        .collect();
    store.append(&unit, 0, ops.clone()).await.unwrap();
    let chunks: Vec<(i64, i64, Option<String>)> = sqlx::query_as("SELECT idx, count, replica FROM log ORDER BY idx")
        .fetch_all(&store.pool)
        .await
        .unwrap();
    assert_eq!(
        chunks,
        vec![
            (0, 70, None),
            (70, 50, Some("r1".to_owned())),
            (120, 40, Some("r2".to_owned()))
        ],
        "the short runs and the first long one share a chunk; later long runs are chunks of their own"
    );
    let read: Vec<Operation> = futures::TryStreamExt::try_collect(store.read(&unit, 0, None))
        .await
        .unwrap();
    assert_eq!(read, ops, "the chunks read back as appended");
    let filter = SinceFilter {
        exclude_replica: Some("r1"),
        ..SinceFilter::default()
    };
    let page = store.read_since_filtered(0, 1000, &filter).await.unwrap();
    let expected: Vec<u64> = ops
        .iter()
        .filter(|op| op.action.replica.as_deref() == Some("r2"))
        .map(|op| op.index)
        .collect();
    assert_eq!(
        page.committed.iter().map(|c| c.operation.index).collect::<Vec<_>>(),
        expected
    );
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
    let largest = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (store, largest) = (store.clone(), largest.clone());
            let wal = wal_path(&path);
            tokio::spawn(async move {
                let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
                let mut chain = crate::conformance::Chain::new(unit.clone());
                for index in 0..per_writer {
                    // Incompressible: the chunks take the bytes the title has.
                    let title: String = (0..9)
                        .map(|_| blake3::hash(uuid::Uuid::now_v7().as_bytes()).to_hex()[..32].to_owned())
                        .collect();
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
    let written: i64 = sqlx::query_scalar("SELECT sum(length(data)) FROM log")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    let largest = largest.load(Ordering::Relaxed);
    // Every commit writes whole pages: the WAL takes several times the operations' bytes per checkpoint.
    assert!(written as u64 > 3 * CHECKPOINT_AFTER_BYTES, "{written} bytes written");
    assert!(
        largest < 40 * CHECKPOINT_AFTER_BYTES,
        "the WAL grew to {largest} bytes for {written} bytes of operations"
    );
}

/// The rows the version before migration 8 wrote for `ops` of the unit with row id `unit_id` (its `prepare`: the
/// wire JSON, its size, the hash blob, the author), with the ordinals from `first_ordinal`.
async fn insert_old_rows(conn: &mut SqliteConnection, unit_id: i64, ops: &[Operation], first_ordinal: i64) {
    for (i, op) in ops.iter().enumerate() {
        let json = serde_json::to_string(op).unwrap();
        sqlx::query(
            "INSERT INTO operations (unit_id, idx, ordinal, skip, timestamp_ms, hash, error, operation, size, replica) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(unit_id)
        .bind(op.index as i64)
        .bind(first_ordinal + i as i64)
        .bind(op.skip as i64)
        .bind(op.timestamp_utc_ms as i64)
        .bind(op.hash.0.to_vec())
        .bind(op.error.as_deref())
        .bind(json.as_str())
        .bind(json.len() as i64)
        .bind(op.action.replica.as_deref())
        .execute(&mut *conn)
        .await
        .unwrap();
    }
}

/// Stores written before migration 6 (the log clustered by `(unit_id, idx)`) and before migration 8 (one JSON row
/// per operation, in commit order) keep every operation, its ordinal, its author and the skips when they open in
/// today's layout (chunks), and take appends after it; `find_actions` finds the moved operations by id.
#[tokio::test]
async fn older_layouts_move_into_chunks_with_everything_in_them() {
    use folio_core::{Action, HlcTimestamp};
    use futures::TryStreamExt;
    for last_old_migration in [5, 7] {
        let dir = tempfile::tempdir().unwrap();
        // The history: three units appended in turns, so their ordinals interleave, and one rebase (a skip).
        let units: Vec<SyncUnit> = (0..3)
            .map(|_| SyncUnit::main(DocumentId::new(), Scope::Global))
            .collect();
        let mut chains: Vec<_> = units.iter().cloned().map(crate::conformance::Chain::new).collect();
        let mut commits: Vec<(usize, Vec<Operation>)> = Vec::new();
        for round in 0..4u64 {
            for (u, chain) in chains.iter_mut().enumerate() {
                let action = |i: u64| {
                    let input = serde_json::json!({ "round": round, "i": i, "x": 1.0, "big": u64::MAX });
                    let mut action = Action::new("SET", input, Scope::Global, HlcTimestamp::new(1, 0));
                    action.replica = Some(format!("r{round}"));
                    action
                };
                let ops = if round == 3 {
                    vec![chain.push_skipping(action(0), 2)]
                } else {
                    vec![chain.push(action(0)), chain.push(action(1))]
                };
                commits.push((u, ops));
            }
        }
        // The old layout, as that version wrote it.
        let old_path = dir.path().join("old.db");
        let mut conn = SqliteConnection::connect_with(&connect_options(&SqliteOptions::new(&old_path)))
            .await
            .unwrap();
        let all = sqlx::migrate!("./migrations/sqlite");
        let old = sqlx::migrate::Migrator {
            migrations: std::borrow::Cow::Owned(
                all.migrations
                    .iter()
                    .filter(|m| m.version <= last_old_migration)
                    .cloned()
                    .collect(),
            ),
            ignore_missing: false,
            locking: true,
            no_tx: false,
        };
        old.run_direct(&mut conn).await.unwrap();
        let mut ordinal = 1;
        let mut expected_since = Vec::new();
        for (u, ops) in &commits {
            insert_old_rows(&mut conn, *u as i64 + 1, ops, ordinal).await;
            for op in ops {
                expected_since.push((ordinal as u64, op.id));
                ordinal += 1;
            }
        }
        for (u, unit) in units.iter().enumerate() {
            sqlx::query(
                "INSERT INTO units (unit_id, document_id, scope, branch, revision, last_hash, last_ts_ms) \
                 VALUES (?, ?, 'global', 'main', 7, ?, 0)",
            )
            .bind(u as i64 + 1)
            .bind(unit.document_id.to_string())
            .bind(chains[u].prev.0.to_vec())
            .execute(&mut conn)
            .await
            .unwrap();
        }
        drop(conn);

        let store = SqliteStore::open(&old_path).await.unwrap();
        let old_table: i64 = sqlx::query_scalar("SELECT count(*) FROM sqlite_schema WHERE name = 'operations'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(old_table, 0, "the old table is gone");
        for (u, unit) in units.iter().enumerate() {
            let before: Vec<Operation> = commits
                .iter()
                .filter(|(c, _)| *c == u)
                .flat_map(|(_, ops)| ops.clone())
                .collect();
            let after: Vec<Operation> = store.read(unit, 0, None).try_collect().await.unwrap();
            assert_eq!(after.len(), 7);
            assert_eq!(after, before);
            let json = |ops: &[Operation]| {
                ops.iter()
                    .map(|o| serde_json::to_string(o).unwrap())
                    .collect::<Vec<_>>()
            };
            assert_eq!(json(&after), json(&before));
            let middle: Vec<Operation> = store.read(unit, 3, Some(5)).try_collect().await.unwrap();
            assert_eq!(middle, before[3..5].to_vec());
            assert_eq!(store.skips(unit, 0, None).await.unwrap(), vec![(6, 2)]);
            let found = store.find_actions(unit, &[before[4].id, before[1].id]).await.unwrap();
            assert_eq!(found, vec![before[1].clone(), before[4].clone()]);
        }
        let since = |s: SqliteStore| async move {
            let page = s.read_since(0, 100).await.unwrap();
            page.iter().map(|c| (c.ordinal, c.operation.id)).collect::<Vec<_>>()
        };
        assert_eq!(expected_since.len(), 21);
        assert_eq!(since(store.clone()).await, expected_since);
        // Pages that end inside a chunk go on where they stopped.
        let mut cursor = 0;
        let mut paged = Vec::new();
        loop {
            let page = store
                .read_since_filtered(cursor, 3, &SinceFilter::default())
                .await
                .unwrap();
            paged.extend(page.committed.iter().map(|c| (c.ordinal, c.operation.id)));
            if page.scanned < 3 {
                break;
            }
            cursor = page.cursor;
        }
        assert_eq!(paged, expected_since);
        let only = SinceFilter {
            only_replica: Some("r1"),
            ..SinceFilter::default()
        };
        let authored = store.read_since_filtered(0, 100, &only).await.unwrap();
        assert_eq!(authored.committed.len(), 6);
        let effective = SinceFilter {
            effective: true,
            ..SinceFilter::default()
        };
        // Each unit's skip at 6 cuts 4 and 5.
        let kept = store.read_since_filtered(0, 100, &effective).await.unwrap();
        assert_eq!(kept.committed.len(), 21 - 6);
        assert!(crate::verify::verify(&store).await.unwrap().is_ok());
        // Appends go on after the moved log; a stale one is refused by the revision check.
        let next = chains[0].ops(1);
        store.append(&units[0], 7, next).await.unwrap();
        let stale = store.append(&units[0], 7, chains[1].ops(1)).await;
        assert!(matches!(stale, Err(StoreError::RevisionMismatch { .. })), "{stale:?}");
        assert_eq!(store.max_ordinal().await.unwrap(), 22);
    }
}

/// Actions whose JSON is awkward: numbers whose spelling a careless encoding changes, escapes, NUL, unicode, deep
/// nesting, every optional field, clocks going backwards.
fn awkward_actions() -> Vec<folio_core::Action> {
    use folio_core::{Action, CausalContext, HlcTimestamp};
    let wire = [
        r#"{"a":1.0,"b":1e5,"c":-0.0,"d":18446744073709551615,"e":-9223372036854775808,"f":1e300,"g":5e-324}"#,
        r#"{"nul":"a\u0000b","esc":"\"\\\/\b\f\n\r\t","uni":"\u00e9\u2028\ud83d\ude00 é 😀","ctl":"\u001f"}"#,
        r#"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]"#,
        r#"{}"#,
        r#"[]"#,
        r#"null"#,
        r#""just a string""#,
        r#"0.30000000000000004"#,
        r#"{"z":1,"a":{"y":[1,2.5,-3,true,false,null],"b":""}}"#,
    ];
    wire.iter()
        .enumerate()
        .map(|(i, text)| {
            let input: serde_json::Value = serde_json::from_str(text).unwrap();
            let millis = 1_700_000_000_000 - (i as u64 % 3) * 1000;
            let mut action = Action::new(
                format!("TYPE_{}", i % 2),
                input,
                Scope::Global,
                HlcTimestamp::new(millis, 0),
            );
            if i % 2 == 1 {
                action.counter = i as u32;
                action.replica = Some(format!("replica-{}", i % 3));
                let mut seen = std::collections::BTreeMap::new();
                seen.insert("other".to_owned(), HlcTimestamp::new(millis - 5, 2));
                seen.insert(format!("r{i}"), HlcTimestamp::new(millis - 7, 0));
                action.context = CausalContext(seen);
            }
            if i % 3 == 2 {
                // Signed actions (flag 128), with the signer in the table; one carries a signer alone (refused by
                // every door, but a store keeps what it is given).
                folio_core::ReplicaKey::from_seed(&[i as u8; 32]).sign(&mut action);
                if i == 8 {
                    action.signature = None;
                }
            }
            action
        })
        .collect()
}

/// The chunk encoding gives back exactly the operations it was given: the same values, the same JSON byte for byte,
/// the same hash chain; stored and read back through the store too, raw (small) and compressed.
#[tokio::test]
async fn chunks_decode_to_exactly_the_json_committed() {
    use futures::TryStreamExt;
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = crate::conformance::Chain::new(unit.clone());
    let mut ops: Vec<Operation> = Vec::new();
    for (i, action) in awkward_actions().into_iter().enumerate() {
        let mut op = chain.push_skipping(action, if i == 4 { 3 } else { 0 });
        if i == 6 {
            // Fields the encoding stores only when they differ from the usual, and an error.
            op.error = Some("REJECTED: \u{0000} \"quoted\"".to_owned());
            op.timestamp_utc_ms += 17;
            op.hash = folio_core::operation_hash(&ops[5].hash, &op);
            chain.prev = op.hash;
        }
        ops.push(op);
    }
    let json = |ops: &[Operation]| {
        ops.iter()
            .map(|o| serde_json::to_string(o).unwrap())
            .collect::<Vec<_>>()
    };
    let encoded = super::chunk::encode_append(&ops).unwrap();
    assert!(ops.len() >= 8, "an append of eight operations or more is anchored");
    assert_eq!(encoded.chunks.len(), 1);
    assert_eq!(encoded.chunks[0].data[0], super::chunk::FORMAT_ANCHORED_ZSTD);
    let decoded: Vec<Operation> = super::chunk::decode_chunk(&unit, 0, ops.len(), &encoded.chunks[0].data)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(decoded, ops);
    assert_eq!(json(&decoded), json(&ops));
    folio_core::check_chain(&folio_core::OpHash::ZERO, 0, &decoded).unwrap();
    assert_eq!(encoded.skips, vec![(4, 3)]);
    // Fewer than eight keep a hash each.
    let five = super::chunk::encode_append(&ops[..5]).unwrap();
    assert!(matches!(
        five.chunks[0].data[0],
        super::chunk::FORMAT_ZSTD | super::chunk::FORMAT_RAW
    ));
    let back: Vec<Operation> = super::chunk::decode_chunk(&unit, 0, 5, &five.chunks[0].data)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(json(&back), json(&ops[..5]));
    // One operation alone is stored raw.
    let one = super::chunk::encode_append(&ops[1..2]).unwrap();
    assert_eq!(one.chunks[0].data[0], super::chunk::FORMAT_RAW);
    let back: Vec<Operation> = super::chunk::decode_chunk(&unit, 1, 1, &one.chunks[0].data)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(json(&back), json(&ops[1..2]));

    // Through the store: half in one append, then one by one; and all in one anchored append.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("folio.db")).await.unwrap();
    store.append(&unit, 0, ops[..5].to_vec()).await.unwrap();
    for op in &ops[5..] {
        store.append(&unit, op.index, vec![op.clone()]).await.unwrap();
    }
    let read: Vec<Operation> = store.read(&unit, 0, None).try_collect().await.unwrap();
    assert_eq!(json(&read), json(&ops));
    let whole = SqliteStore::open(dir.path().join("whole.db")).await.unwrap();
    whole.append(&unit, 0, ops.clone()).await.unwrap();
    let read: Vec<Operation> = whole.read(&unit, 0, None).try_collect().await.unwrap();
    assert_eq!(json(&read), json(&ops));
    let from_inside: Vec<Operation> = whole.read(&unit, 3, Some(7)).try_collect().await.unwrap();
    assert_eq!(json(&from_inside), json(&ops[3..7]));
    assert!(whole.append(&unit, 0, ops.clone()).await.unwrap().replayed);
    // Every chain holds; the half-signed action (8) is the one thing `verify` names.
    let report = crate::verify::verify(&store).await.unwrap();
    let broken = report.broken.expect("the half-signed action is named");
    assert_eq!(broken.index, 8);
    assert!(broken.reason.starts_with("BAD_SIGNATURE: "), "{}", broken.reason);
    assert_eq!(report.signed, 2, "the signed actions 2 and 5 verified");
    let again = store.append(&unit, 2, ops[2..6].to_vec()).await.unwrap();
    assert!(again.replayed, "a retried append is a replay");
}

/// A chunk as migration 0008 moves the older rows (their wire JSON, one a line) decodes to the same operations.
#[test]
fn a_legacy_json_lines_chunk_decodes() {
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = crate::conformance::Chain::new(unit.clone());
    let ops = chain.ops(3);
    let text = ops
        .iter()
        .map(|o| serde_json::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("\n");
    let decoded: Vec<Operation> = super::chunk::decode_chunk(&unit, 0, 3, text.as_bytes())
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(decoded, ops);
}

/// The encodings compared for the compact log, on 1,000-operation chunks of the todo workload (`cargo test -p
/// folio-store --lib encodings_compared -- --ignored --nocapture`): bytes per operation of the wire JSON, of the JSON
/// lines under zstd, of the binary records, and of the binary records under zstd.
#[test]
#[ignore]
fn encodings_compared() {
    use folio_core::{Action, HlcTimestamp};
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = crate::conformance::Chain::new(unit.clone());
    let ops: Vec<Operation> = (0..10_000u64)
        .map(|i| {
            let id = format!("item-{}", i % 1000);
            let (t, input) = if i < 1000 {
                (
                    "ADD_TODO",
                    serde_json::json!({ "id": id, "title": format!("title {i}") }),
                )
            } else {
                (
                    "UPDATE_TODO",
                    serde_json::json!({ "id": id, "title": format!("title {i}"), "done": i % 2 == 0 }),
                )
            };
            let mut action = Action::new(t, input, Scope::Global, HlcTimestamp::new(1_765_000_000_000 + i, 0));
            action.replica = Some("3f2a9c0d11e4b7a8".to_owned());
            chain.push(action)
        })
        .collect();
    let n = ops.len() as f64;
    let json: Vec<String> = ops.iter().map(|o| serde_json::to_string(o).unwrap()).collect();
    let wire: usize = json.iter().map(String::len).sum();
    let lines_zstd: usize = json
        .chunks(1000)
        .map(|c| zstd::bulk::compress(c.join("\n").as_bytes(), 3).unwrap().len())
        .sum();
    let binary: usize = ops
        .chunks(1000)
        .map(|c| {
            let e = super::chunk::encode_append(c).unwrap();
            e.chunks.iter().map(|c| c.data.len()).sum::<usize>()
        })
        .sum();
    let one_by_one: usize = ops
        .iter()
        .map(|o| {
            super::chunk::encode_append(std::slice::from_ref(o)).unwrap().chunks[0]
                .data
                .len()
        })
        .sum();
    println!(
        "bytes per operation: wire JSON {:.0}, JSON lines + zstd {:.0}, binary + zstd (1,000 a chunk) {:.0}, binary (one a chunk) {:.0}",
        wire as f64 / n,
        lines_zstd as f64 / n,
        binary as f64 / n,
        one_by_one as f64 / n
    );
}

/// A read-only open reads what a writer committed (and what it commits later), writes nothing, and keeps only the
/// newest keyframes a writer left.
#[tokio::test]
async fn a_read_only_open_reads_without_a_writer() {
    use futures::TryStreamExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("folio.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = crate::conformance::Chain::new(unit.clone());
    let ops = chain.ops(50);
    store.append(&unit, 0, ops.clone()).await.unwrap();
    for revision in [10, 20, 30, 40, 50] {
        let keyframe = crate::store::Keyframe {
            unit: unit.clone(),
            revision,
            last_hash: ops[revision as usize - 1].hash,
            state: format!("{{\"n\":{revision}}}"),
            state_hash: folio_core::OpHash::ZERO,
            seen: folio_core::CausalContext::default(),
        };
        store.put_keyframe(&keyframe).await.unwrap();
    }
    let reader = SqliteStore::open_read_only(&path).await.unwrap();
    let read: Vec<Operation> = reader.read(&unit, 0, None).try_collect().await.unwrap();
    assert_eq!(read, ops);
    assert_eq!(reader.head(&unit).await.unwrap(), (50, ops[49].hash));
    let mut kept = Vec::new();
    for revision in [60, 45, 35, 25] {
        if let Some(k) = reader.nearest_keyframe(&unit, revision).await.unwrap() {
            kept.push(k.revision);
        }
    }
    assert_eq!(kept, vec![50, 40, 30], "the newest three keyframes are kept");
    let next = chain.ops(1);
    let refused = reader.append(&unit, 50, next.clone()).await;
    assert!(matches!(refused, Err(StoreError::Closed)), "{refused:?}");
    store.append(&unit, 50, next).await.unwrap();
    assert_eq!(reader.head(&unit).await.unwrap().0, 51);
}

/// A long keyframe state is stored as a zstd frame and reads back as the very text put; a keyframe stored as text
/// (as every one was before) reads as it is; a packed state that was tampered with reads as no state (the view then
/// folds from an older keyframe or from the start) instead of a wrong one.
#[tokio::test]
async fn keyframe_states_are_packed_and_read_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("folio.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = crate::conformance::Chain::new(unit.clone());
    let ops = chain.ops(30);
    store.append(&unit, 0, ops.clone()).await.unwrap();
    let items: serde_json::Map<String, serde_json::Value> = (0..2000)
        .map(|i| {
            (
                format!("item-{i:05}"),
                serde_json::json!({ "title": format!("Buy {i} things ✓"), "done": i % 3 == 0 }),
            )
        })
        .collect();
    let long = serde_json::to_string(&serde_json::json!({ "items": items, "x": 1.5e300, "s": "\u{0}\"\\" })).unwrap();
    let keyframe = |revision: u64, state: &str| crate::store::Keyframe {
        unit: unit.clone(),
        revision,
        last_hash: ops[revision as usize - 1].hash,
        state: state.to_owned(),
        state_hash: folio_core::OpHash::ZERO,
        seen: folio_core::CausalContext::default(),
    };
    store.put_keyframe(&keyframe(10, "{\"short\":true}")).await.unwrap();
    store.put_keyframe(&keyframe(20, &long)).await.unwrap();
    assert_eq!(
        store.nearest_keyframe(&unit, 10).await.unwrap().unwrap().state,
        "{\"short\":true}"
    );
    assert_eq!(store.nearest_keyframe(&unit, 25).await.unwrap().unwrap().state, long);

    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let (stored, kind): (Vec<u8>, String) =
        sqlx::query_as("SELECT state, typeof(state) FROM keyframes WHERE revision = 20")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(kind, "blob");
    assert!(
        stored.len() * 5 < long.len(),
        "packed: {} bytes for {}",
        stored.len(),
        long.len()
    );
    assert_eq!(crate::sql_common::unpack_state(&stored).unwrap(), long);
    // Keyframes stored as text before states were packed.
    sqlx::query("UPDATE keyframes SET state = ? WHERE revision = 20")
        .bind(long.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.nearest_keyframe(&unit, 25).await.unwrap().unwrap().state, long);
    // A byte of the frame changed: its checksum (or its structure) refuses it.
    let mut tampered = stored.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x40;
    assert!(crate::sql_common::unpack_state(&tampered).is_err());
    sqlx::query("UPDATE keyframes SET state = ? WHERE revision = 20")
        .bind(tampered)
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(store.nearest_keyframe(&unit, 25).await.unwrap().unwrap().state, "");
}

/// A read-only store's cold read that finds its synchronous connection in use goes through the pool and answers
/// the same (the connection held here for the whole read, so the pool's path is the only one it can take).
#[tokio::test]
#[expect(
    clippy::await_holding_lock,
    reason = "the connection is held across the read on purpose, on a one-thread runtime"
)]
async fn a_cold_read_finding_the_connection_in_use_goes_through_the_pool() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("folio.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let id = DocumentId::new();
    let unit = SyncUnit::main(id, Scope::Global);
    store
        .append(&unit, 0, crate::conformance::Chain::new(unit.clone()).ops(30))
        .await
        .unwrap();
    let reader = SqliteStore::open_read_only(&path).await.unwrap();
    let main = folio_core::Branch::default();
    let expected = store.read_cold(id, &main, true, 100).await.unwrap();
    let cold = reader.cold.as_ref().expect("a read-only store has its connection");
    let held = cold.hold();
    assert!(
        cold.try_read_cold(id, &main, true, 100).is_none(),
        "in use: not read here"
    );
    assert_eq!(reader.read_cold(id, &main, true, 100).await.unwrap(), expected);
    drop(held);
    assert_eq!(reader.read_cold(id, &main, true, 100).await.unwrap(), expected);
}
