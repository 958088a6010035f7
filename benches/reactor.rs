//! End-to-end benchmarks of the reactor, each beside a raw sqlx baseline measured in the same run.
//!
//! * `e2e/{folio,raw}/W writers`: submit → committed → visible in the view, on SQLite, W writers each on its own
//!   document, one action per job; the raw baseline inserts the same number of rows with multi-row INSERTs in
//!   transactions of 1000 rows.
//! * `rehydrate/*`: cold rehydration of one 100,000-operation todo list (100k updates over 1,000 items): folio with
//!   keyframes, folio full replay, and the raw baseline (sqlx stream + decode + fold of the same rows).
//! * `warm_read`: a read of a cached document.
//!
//! Run: `cargo bench --bench reactor` (add `-- rehydrate` etc. to pick a group).

use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use sqlx::Row;

use folio::core::model::decode_action;
use folio::core::models::TodoList;
use folio::reactor::DocKey;
use folio::store::{OperationStore, SqliteStore};
use folio::{
    Action, Branch, DocumentModel, HybridClock, ModelRegistry, OpHash, Operation, Reactor, ReactorConfig, Scope, Submit,
};

const HISTORY: u64 = 100_000;
const E2E_OPS: usize = 2_000;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn todo_action(clock: &HybridClock, i: u64) -> Action {
    let key = format!("item-{}", i % 1000);
    if i < 1000 {
        Action::new(
            "ADD_TODO",
            json!({"id": key, "title": format!("title {i}")}),
            Scope::Global,
            clock.now(),
        )
    } else {
        Action::new(
            "UPDATE_TODO",
            json!({"id": key, "title": format!("title {i}"), "done": i.is_multiple_of(2)}),
            Scope::Global,
            clock.now(),
        )
    }
}

/// A SQLite store holding one todo list with `HISTORY` global operations, and keyframes every `keyframe_every`.
async fn build_history(dir: &std::path::Path, keyframe_every: u64) -> (Arc<dyn OperationStore>, folio::DocumentId) {
    let store: Arc<dyn OperationStore> = Arc::new(SqliteStore::open(dir.join("history.db")).await.unwrap());
    let config = ReactorConfig {
        keyframe_every,
        ..ReactorConfig::default()
    };
    let reactor = Reactor::new(store.clone(), Arc::new(ModelRegistry::with_builtin()), config);
    let id = reactor
        .create_document("folio/todo-list", "history", None)
        .await
        .unwrap()
        .header
        .id;
    let clock = HybridClock::new();
    let mut i = 0;
    while i < HISTORY {
        let actions: Vec<Action> = (i..(i + 1000).min(HISTORY)).map(|n| todo_action(&clock, n)).collect();
        i += actions.len() as u64;
        reactor.apply(Submit::new(id, actions)).await.unwrap();
    }
    reactor.shutdown().await;
    (store, id)
}

fn rehydrate(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let (store, id) = rt.block_on(build_history(dir.path(), 1000));
    let dir_250 = tempfile::tempdir().unwrap();
    let (store_250, id_250) = rt.block_on(build_history(dir_250.path(), 250));
    let registry = Arc::new(ModelRegistry::with_builtin());
    let key = DocKey::new(id, Branch::default());
    let sqlite = SqliteStore::open(dir.path().join("history.db"));
    let sqlite = rt.block_on(sqlite).unwrap();
    let pool = sqlite.pool().clone();

    let mut group = c.benchmark_group("rehydrate");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(HISTORY));
    group.bench_function("folio keyframed (K=1000)", |b| {
        b.to_async(&rt).iter(|| async {
            let view = folio::DocumentView::new(store.clone(), registry.clone(), 1 << 30, 1000);
            let doc = view.hydrate(&key, None).await.unwrap().unwrap();
            assert_eq!(doc.header.revision.global, HISTORY);
        })
    });
    // The worst case: the newest keyframe is K-1 operations behind the revision read.
    for (k, store, id) in [(1000u64, &store, id), (250, &store_250, id_250)] {
        let key = DocKey::new(id, Branch::default());
        group.bench_function(
            format!("folio keyframed (K={k}), worst case: tail of {} ops", k - 1),
            |b| {
                b.to_async(&rt).iter(|| async {
                    let view = folio::DocumentView::new(store.clone(), registry.clone(), 1 << 30, k);
                    let doc = view.get_at(&key, HISTORY - 1).await.unwrap().unwrap();
                    assert_eq!(doc.header.revision.global, HISTORY - 1);
                })
            },
        );
    }
    group.bench_function("folio full replay", |b| {
        b.to_async(&rt).iter(|| async {
            let view = folio::DocumentView::new(store.clone(), registry.clone(), 1 << 30, 0);
            let doc = view.hydrate(&key, None).await.unwrap().unwrap();
            assert_eq!(doc.header.revision.global, HISTORY);
        })
    });
    let unit_id: i64 = rt
        .block_on(
            sqlx::query_scalar("SELECT unit_id FROM units WHERE document_id = ? AND scope = 'global'")
                .bind(id.to_string())
                .fetch_one(&pool),
        )
        .unwrap();
    // The baseline's rows: the same operations as JSON, one row each (the layout before the compact log).
    rt.block_on(async {
        sqlx::query(
            "CREATE TABLE raw_operations (ordinal INTEGER PRIMARY KEY, unit_id INTEGER NOT NULL, \
             idx INTEGER NOT NULL, operation TEXT NOT NULL, UNIQUE (unit_id, idx))",
        )
        .execute(&pool)
        .await
        .unwrap();
        let unit = folio::SyncUnit::main(id, Scope::Global);
        let ops: Vec<Operation> = store.read(&unit, 0, None).try_collect().await.unwrap();
        for chunk in ops.chunks(1000) {
            let mut tx = pool.begin().await.unwrap();
            for op in chunk {
                sqlx::query("INSERT INTO raw_operations (unit_id, idx, operation) VALUES (?, ?, ?)")
                    .bind(unit_id)
                    .bind(op.index as i64)
                    .bind(serde_json::to_string(op).unwrap())
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
        }
    });
    group.bench_function("raw sqlx stream + decode + fold", |b| {
        b.to_async(&rt).iter(|| async {
            let mut state = <TodoList as DocumentModel>::State::default();
            let mut rows = sqlx::query("SELECT operation FROM raw_operations WHERE unit_id = ? ORDER BY idx")
                .bind(unit_id)
                .fetch(&pool);
            let mut n = 0u64;
            while let Some(row) = rows.next().await {
                let row = row.unwrap();
                let op: Operation = serde_json::from_str(row.get::<&str, _>(0)).unwrap();
                let typed = decode_action(&op.action.action_type, &op.action.input).unwrap();
                TodoList::reduce(&mut state, typed).unwrap();
                n += 1;
            }
            assert_eq!(n, HISTORY);
        })
    });
    group.finish();

    let mut group = c.benchmark_group("warm_read");
    let view = folio::DocumentView::new(store.clone(), registry.clone(), 1 << 30, 1000);
    rt.block_on(view.get(&key)).unwrap().unwrap();
    group.bench_function("cached document", |b| {
        b.iter(|| {
            let doc = view.cached(&key).unwrap();
            assert_eq!(doc.header.revision.global, HISTORY);
        })
    });
    group.bench_function("reactor get (async, cached)", |b| {
        b.to_async(&rt).iter(|| async {
            let doc = view.get(&key).await.unwrap().unwrap();
            assert_eq!(doc.header.revision.global, HISTORY);
        })
    });
    group.finish();
}

async fn e2e_folio(dir: &std::path::Path, writers: usize, run: usize) -> Duration {
    let store: Arc<dyn OperationStore> = Arc::new(
        SqliteStore::open(dir.join(format!("e2e-{writers}-{run}.db")))
            .await
            .unwrap(),
    );
    let reactor = Reactor::new(store, Arc::new(ModelRegistry::with_builtin()), ReactorConfig::default());
    let mut ids = Vec::new();
    for w in 0..writers {
        ids.push(
            reactor
                .create_document("folio/todo-list", &format!("w{w}"), None)
                .await
                .unwrap()
                .header
                .id,
        );
    }
    let per_writer = E2E_OPS / writers;
    let start = std::time::Instant::now();
    let tasks: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let reactor = reactor.clone();
            tokio::spawn(async move {
                for i in 0..per_writer {
                    let a = reactor.action(
                        "ADD_TODO",
                        json!({"id": format!("i{i}"), "title": "a title"}),
                        Scope::Global,
                    );
                    let outcome = reactor.apply(Submit::new(id, vec![a])).await.unwrap();
                    // Visible in the view once the job completes (read-your-writes).
                    let doc = reactor.view().cached(&DocKey::new(id, Branch::default()));
                    assert!(doc.is_none_or(|d| d.header.revision.global >= outcome.revision));
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed();
    reactor.shutdown().await;
    elapsed
}

async fn e2e_raw(dir: &std::path::Path, run: usize) -> Duration {
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.join(format!("raw-{run}.db")))
                .create_if_missing(true)
                .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
                .synchronous(sqlx::sqlite::SqliteSynchronous::Full),
        )
        .await
        .unwrap();
    sqlx::query(
        "CREATE TABLE ops (ordinal INTEGER PRIMARY KEY, unit_id INTEGER NOT NULL, idx INTEGER NOT NULL, skip INTEGER NOT NULL, \
         timestamp_ms INTEGER NOT NULL, hash BLOB NOT NULL, error TEXT, operation TEXT NOT NULL, size INTEGER NOT NULL, UNIQUE (unit_id, idx))",
    )
    .execute(&pool)
    .await
    .unwrap();
    let clock = HybridClock::new();
    let rows: Vec<(String, Vec<u8>)> = (0..E2E_OPS)
        .map(|i| {
            let a = Action::new(
                "ADD_TODO",
                json!({"id": format!("i{i}"), "title": "a title"}),
                Scope::Global,
                clock.now(),
            );
            let op = Operation::new(a, i as u64, 0, None, &OpHash::ZERO);
            (serde_json::to_string(&op).unwrap(), op.hash.0.to_vec())
        })
        .collect();
    let start = std::time::Instant::now();
    for (t, chunk) in rows.chunks(1000).enumerate() {
        let mut tx = pool.begin().await.unwrap();
        for (c, sub) in chunk.chunks(500).enumerate() {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO ops (unit_id, idx, ordinal, skip, timestamp_ms, hash, error, operation, size) ",
            );
            qb.push_values(sub.iter().enumerate(), |mut b, (i, (action, hash))| {
                let n = (t * 1000 + c * 500 + i) as i64;
                b.push_bind(1i64)
                    .push_bind(n)
                    .push_bind(n + 1)
                    .push_bind(0i64)
                    .push_bind(n)
                    .push_bind(hash.clone())
                    .push_bind(None::<String>)
                    .push_bind(action.clone())
                    .push_bind(action.len() as i64);
            });
            qb.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
    }
    start.elapsed()
}

fn e2e(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("e2e");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(E2E_OPS as u64));
    let mut run = 0;
    for writers in [1usize, 100] {
        group.bench_with_input(
            BenchmarkId::new("folio", format!("{writers} writers")),
            &writers,
            |b, &w| {
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        run += 1;
                        total += rt.block_on(e2e_folio(dir.path(), w, run));
                    }
                    total
                })
            },
        );
    }
    group.bench_function("raw sqlx multi-row (1000-row transactions)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                total += rt.block_on(e2e_raw(dir.path(), run));
            }
            total
        })
    });
    group.finish();
}

criterion_group!(benches, rehydrate, e2e);
criterion_main!(benches);
