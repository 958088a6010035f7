//! Append throughput through `SqliteStore`, beside a raw sqlx baseline measured in the same run.
//!
//! * `folio/writers=W/ops_per_append=M`: W concurrent tasks, each appending batches of M operations to its own
//!   unit (read nothing, expected revision known), through `OperationStore::append`: validation, encoding, the
//!   writer's group commit, `synchronous = FULL`.
//! * `raw_sqlx/...`: the same operations, encoded the same way (operation JSON and its size, hash blob) and inserted straight
//!   through one sqlx connection with multi-row `INSERT`s in transactions of 1000 rows, into a table of the same
//!   shape (folio's own schema), with the same pragmas. No revision check, no heads, no header index.
//!
//! One element is one operation. Run with
//! `cargo bench --bench append -- --measurement-time 5 --warm-up-time 1`; criterion keeps each estimate in
//! `target/criterion/append/*/new/estimates.json`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, SqliteConnection};

use folio_core::{DocumentId, Operation, Scope, SyncUnit};
use folio_store::conformance::Chain;
use folio_store::{OperationStore, SqliteStore};

/// (concurrent writers, operations per append).
const CONFIGS: [(usize, usize); 4] = [(1, 10), (10, 10), (100, 10), (100, 1)];
/// Rows per transaction of the raw baseline.
const RAW_TX_ROWS: usize = 1000;
/// folio's schema, so the baseline's table has exactly the same shape and indexes.
const SCHEMA: &str = include_str!("../crates/folio-store/migrations/sqlite/0001_init.sql");

/// The next `appends` batches of `per_append` operations of every writer (built outside the timed part).
fn build(chains: &mut [Chain], appends: u64, per_append: usize) -> Vec<Vec<Vec<Operation>>> {
    chains
        .iter_mut()
        .map(|chain| (0..appends).map(|_| chain.ops(per_append)).collect())
        .collect()
}

async fn folio_run(store: &Arc<SqliteStore>, chains: &[Chain], work: Vec<Vec<Vec<Operation>>>) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = chains
        .iter()
        .zip(work)
        .map(|(chain, appends)| {
            let store = store.clone();
            let unit = chain.unit.clone();
            tokio::spawn(async move {
                for ops in appends {
                    let expected = ops[0].index;
                    store.append(&unit, expected, ops).await.expect("append");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("writer task");
    }
    start.elapsed()
}

/// One operations row, encoded as folio encodes it.
struct RawRow {
    unit_id: i64,
    idx: i64,
    skip: i64,
    timestamp_ms: i64,
    hash: Vec<u8>,
    error: Option<String>,
    /// The whole operation as JSON, as folio stores it.
    operation: String,
}

fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO operations (unit_id, idx, ordinal, skip, timestamp_ms, hash, error, operation, size) VALUES ",
    );
    for i in 0..rows {
        sql.push_str(if i == 0 {
            "(?,?,?,?,?,?,?,?,?)"
        } else {
            ",(?,?,?,?,?,?,?,?,?)"
        });
    }
    sql
}

/// Encodes the same operations (interleaved across writers, as the group commit interleaves them) and inserts them
/// in transactions of `RAW_TX_ROWS` rows, one multi-row `INSERT` each.
async fn raw_run(conn: &mut SqliteConnection, next_ordinal: &mut i64, work: Vec<Vec<Vec<Operation>>>) -> Duration {
    let start = Instant::now();
    let appends = work.first().map_or(0, Vec::len);
    let mut rows = Vec::with_capacity(work.len() * appends * work.first().and_then(|w| w.first()).map_or(0, Vec::len));
    let mut work: Vec<_> = work.into_iter().map(Vec::into_iter).collect();
    for _ in 0..appends {
        for (w, appends) in work.iter_mut().enumerate() {
            for op in appends.next().expect("an append") {
                rows.push(RawRow {
                    unit_id: w as i64 + 1,
                    idx: op.index as i64,
                    skip: op.skip as i64,
                    timestamp_ms: op.timestamp_utc_ms as i64,
                    hash: op.hash.0.to_vec(),
                    error: op.error.clone(),
                    operation: serde_json::to_string(&op).expect("encode"),
                });
            }
        }
    }
    for tx in rows.chunks(RAW_TX_ROWS) {
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await.expect("begin");
        let sql = insert_sql(tx.len());
        let mut q = sqlx::query(&sql);
        for row in tx {
            *next_ordinal += 1;
            q = q
                .bind(row.unit_id)
                .bind(row.idx)
                .bind(*next_ordinal)
                .bind(row.skip)
                .bind(row.timestamp_ms)
                .bind(row.hash.as_slice())
                .bind(row.error.as_deref())
                .bind(row.operation.as_str())
                .bind(row.operation.len() as i64);
        }
        q.execute(&mut *conn).await.expect("insert");
        sqlx::query("COMMIT").execute(&mut *conn).await.expect("commit");
    }
    start.elapsed()
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("append");
    group.sample_size(10);
    for (writers, per_append) in CONFIGS {
        let label = format!("writers={writers}/ops_per_append={per_append}");
        group.throughput(Throughput::Elements((writers * per_append) as u64));
        // One element per operation; one iteration is one append by every writer.
        let new_chains = || -> Vec<Chain> {
            (0..writers)
                .map(|_| Chain::new(SyncUnit::main(DocumentId::new(), Scope::Global)))
                .collect()
        };

        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Arc::new(
            runtime
                .block_on(SqliteStore::open(dir.path().join("folio.db")))
                .expect("open store"),
        );
        let mut chains = new_chains();
        group.bench_function(BenchmarkId::new("folio", &label), |b| {
            b.iter_custom(|iters| {
                let work = build(&mut chains, iters, per_append);
                runtime.block_on(folio_run(&store, &chains, work))
            })
        });
        drop(store);

        let raw_path = dir.path().join("raw.db");
        let mut conn = runtime.block_on(async {
            let options = SqliteConnectOptions::new()
                .filename(&raw_path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full);
            let mut conn = SqliteConnection::connect_with(&options).await.expect("connect raw");
            sqlx::raw_sql(SCHEMA).execute(&mut conn).await.expect("schema");
            conn
        });
        let mut chains = new_chains();
        let mut next_ordinal = 0i64;
        group.bench_function(BenchmarkId::new("raw_sqlx", &label), |b| {
            b.iter_custom(|iters| {
                let work = build(&mut chains, iters, per_append);
                runtime.block_on(raw_run(&mut conn, &mut next_ordinal, work))
            })
        });
        runtime.block_on(conn.close()).expect("close raw");
    }
    group.finish();
}

criterion_group!(benches, append);
criterion_main!(benches);
