//! `folio bench rehydrate`: cold (keyframed), full replay, warm, and the raw sqlx baseline, over history lengths.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use sqlx::Row;

use folio_core::{Branch, DocumentId, ErasedModel, ModelRegistry, Operation, Scope};
use folio_reactor::{DocKey, DocumentView, Reactor, ReactorConfig, Submit};
use folio_store::{OperationStore, PgStore, SqliteStore};

use super::target::{BenchDb, Target};
use super::workload::Workload;
use super::{CaseResult, Progress, Stats, note, peak_rss};
use crate::CliError;

/// What to run.
#[derive(Debug, Clone)]
pub struct Params {
    /// History lengths (one run each: a sweep when several).
    pub ops: Vec<u64>,
    /// Documents per store.
    pub docs: u64,
    /// Keyframe interval.
    pub keyframe_every: u64,
    /// The workload.
    pub workload: Workload,
    /// Rounds per measurement.
    pub rounds: u32,
}

/// Actions per job while building (keyframes are taken at the end of the job that crosses a multiple of K, so jobs
/// no longer than K keep the keyframes K apart, as with one action per job).
fn job_size(keyframe_every: u64) -> u64 {
    if keyframe_every == 0 {
        1000
    } else {
        keyframe_every.min(1000)
    }
}

/// Builds a store with `docs` documents of `ops` operations each; returns the documents.
async fn build(params: &Params, ops: u64, db: &BenchDb) -> Result<Vec<DocumentId>, CliError> {
    let store = db.open().await?;
    let config = ReactorConfig {
        keyframe_every: params.keyframe_every,
        ..ReactorConfig::default()
    };
    let reactor = Reactor::new(store, Arc::new(ModelRegistry::with_builtin()), config);
    let mut progress = Progress::new(&format!("building {ops} ops x {} docs", params.docs), ops * params.docs);
    let mut ids = Vec::new();
    for d in 0..params.docs {
        let id = reactor
            .create_document(params.workload.document_type(), &format!("bench {d}"), None)
            .await
            .map_err(|e| CliError::fail(e.to_string()))?
            .header
            .id;
        let mut i = 0;
        while i < ops {
            let n = job_size(params.keyframe_every).min(ops - i);
            let actions = (i..i + n)
                .map(|k| {
                    let (t, input) = params.workload.action(k);
                    reactor.action(t, input, Scope::Global)
                })
                .collect();
            reactor
                .apply(Submit::new(id, actions))
                .await
                .map_err(|e| CliError::fail(e.to_string()))?;
            i += n;
            progress.advance(n);
        }
        ids.push(id);
    }
    progress.finish();
    reactor.shutdown().await;
    Ok(ids)
}

/// Times `rounds` runs of `f` (after one warm-up run), each over every document.
async fn rounds<F, Fut>(n: u32, mut f: F) -> Result<Vec<Duration>, CliError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), CliError>>,
{
    f().await?;
    let mut samples = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let start = Instant::now();
        f().await?;
        samples.push(start.elapsed());
    }
    Ok(samples)
}

fn per_doc(samples: &[Duration], docs: u64) -> Vec<Duration> {
    samples.iter().map(|d| *d / docs.max(1) as u32).collect()
}

/// One cold load in this process (a fresh one, started by [`measure_in_child`]): prints its time, the process's
/// peak resident memory, and the state's size.
pub async fn load_child(
    db: Option<&std::path::Path>,
    database_url: Option<&str>,
    doc: &str,
    keyframe_every: u64,
) -> Result<serde_json::Value, CliError> {
    let id: DocumentId = doc.parse().map_err(|_| CliError::usage("--doc is not a document id"))?;
    let opening = Instant::now();
    let store: Arc<dyn OperationStore> = match (db, database_url) {
        (Some(path), _) => Arc::new(SqliteStore::open_read_only(path).await?),
        (None, Some(url)) => Arc::new(PgStore::open(url).await?),
        (None, None) => return Err(CliError::usage("load-child needs --db or --database-url")),
    };
    let view = DocumentView::new(store, Arc::new(ModelRegistry::with_builtin()), 1 << 40, keyframe_every);
    let open_ns = opening.elapsed().as_nanos() as u64;
    let start = Instant::now();
    let doc = view
        .hydrate(&DocKey::new(id, Branch::default()), None)
        .await
        .map_err(|e| CliError::fail(e.to_string()))?
        .ok_or_else(|| CliError::fail("no such document"))?;
    let ns = start.elapsed().as_nanos() as u64;
    let state = doc.model().map_or(0, |m| m.state_size(&doc.state));
    Ok(serde_json::json!({ "ns": ns, "openNs": open_ns, "peakRssBytes": peak_rss(), "stateBytes": state }))
}

/// Peak RSS of a fresh process that loads `id` once (`folio bench load-child`), so the figure covers the load
/// alone and not what building the store left in this process's allocator.
fn measure_in_child(db: &BenchDb, id: DocumentId, keyframe_every: u64) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let out = std::process::Command::new(exe)
        .args(["bench", "load-child"])
        .args(db.child_args())
        .args([
            "--doc",
            &id.to_string(),
            "--keyframe-every",
            &keyframe_every.to_string(),
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    if let (Some(open), Some(load)) = (v["openNs"].as_u64(), v["ns"].as_u64()) {
        note(format!(
            "  a fresh process (keyframes every {keyframe_every}): store opened in {:.2} ms, the document loaded in \
             {:.2} ms, {:.2} ms in all",
            open as f64 / 1e6,
            load as f64 / 1e6,
            (open + load) as f64 / 1e6
        ));
    }
    v["peakRssBytes"].as_u64()
}

/// Runs the whole sweep.
pub async fn run(params: &Params, target: &Target) -> Result<Vec<CaseResult>, CliError> {
    let mut results = Vec::new();
    for &ops in &params.ops {
        let db = target.create(&format!("bench-{ops}")).await?;
        let ids = build(params, ops, &db).await?;
        let bytes_per_op = match &db {
            BenchDb::Sqlite(path) => super::sqlite_bytes(path)
                .await
                .map(|b| b as f64 / (ops * params.docs).max(1) as f64),
            BenchDb::Postgres(_) => None,
        };
        if let Some(b) = bytes_per_op {
            note(format!("the store takes {b:.0} bytes per operation"));
        }
        // Fewer rounds for very long histories, so a sweep to 1M stays within minutes.
        let rounds_here = if ops >= 1_000_000 {
            params.rounds.min(3)
        } else {
            params.rounds
        };
        note(format!("measuring {ops} ops ({rounds_here} rounds per case)"));
        let registry = Arc::new(ModelRegistry::with_builtin());
        let store = db.open().await?;
        let keys: Vec<DocKey> = ids.iter().map(|id| DocKey::new(*id, Branch::default())).collect();

        // Cold, keyframed: a new view each round, nothing cached.
        let cold = rounds(rounds_here, || {
            let view = DocumentView::new(store.clone(), registry.clone(), 1 << 40, params.keyframe_every);
            let keys = &keys;
            async move {
                for key in keys {
                    let doc = view
                        .hydrate(key, None)
                        .await
                        .map_err(|e| CliError::fail(e.to_string()))?;
                    doc.ok_or_else(|| CliError::fail("a benchmark document is missing"))?;
                }
                Ok(())
            }
        })
        .await?;

        // Cold, keyframed, worst case: the revision just before the next keyframe (the longest tail to fold).
        let worst = rounds(rounds_here, || {
            let view = DocumentView::new(store.clone(), registry.clone(), 1 << 40, params.keyframe_every);
            let keys = &keys;
            async move {
                for key in keys {
                    view.get_at(key, ops - 1)
                        .await
                        .map_err(|e| CliError::fail(e.to_string()))?;
                }
                Ok(())
            }
        })
        .await?;
        let state_bytes = {
            let view = DocumentView::new(store.clone(), registry.clone(), 1 << 40, params.keyframe_every);
            let doc = view
                .hydrate(&keys[0], None)
                .await
                .map_err(|e| CliError::fail(e.to_string()))?;
            doc.and_then(|d| d.model().map(|m| m.state_size(&d.state) as u64))
                .unwrap_or(0)
        };

        // Full replay: no keyframes.
        let full = rounds(rounds_here, || {
            let view = DocumentView::new(store.clone(), registry.clone(), 1 << 40, 0);
            let keys = &keys;
            async move {
                for key in keys {
                    view.hydrate(key, None)
                        .await
                        .map_err(|e| CliError::fail(e.to_string()))?;
                }
                Ok(())
            }
        })
        .await?;

        // Raw baseline: the same operations as JSON rows (the layout before the compact log, in a file of their
        // own), straight through sqlx, decoded and folded by the same model.
        let mut raw_bytes = None;
        let raw_pool = match &db {
            BenchDb::Sqlite(path) => {
                let (pool, bytes) = raw_sqlite_copy(&*store, &ids, &path.with_extension("raw.db")).await?;
                raw_bytes = Some(bytes as f64 / (ops * params.docs).max(1) as f64);
                RawPool::Sqlite(pool)
            }
            BenchDb::Postgres(pg) => RawPool::Postgres(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&pg.url)
                    .await?,
            ),
        };
        let model = registry
            .get(params.workload.document_type())
            .cloned()
            .ok_or_else(|| CliError::fail("the workload's model is not registered"))?;
        let raw = rounds(rounds_here, || raw_replay(&raw_pool, model.clone(), &ids)).await?;

        // Warm: reads of cached documents.
        let view = DocumentView::new(store.clone(), registry.clone(), 1 << 40, params.keyframe_every);
        for key in &keys {
            view.get(key).await.map_err(|e| CliError::fail(e.to_string()))?;
        }
        const WARM_READS: u32 = 100_000;
        let mut warm = Vec::new();
        for _ in 0..rounds_here.max(3) {
            let start = Instant::now();
            for i in 0..WARM_READS {
                let key = &keys[i as usize % keys.len()];
                std::hint::black_box(view.get(key).await.map_err(|e| CliError::fail(e.to_string()))?);
            }
            warm.push(start.elapsed() / WARM_READS);
        }

        let docs = params.docs;
        let raw_stats = Stats::of(&per_doc(&raw, docs));
        let case = |name: &str, samples: Vec<Duration>, rss: Option<u64>| {
            let time = Stats::of(&samples);
            CaseResult {
                case: name.to_owned(),
                ops,
                ops_per_sec: (name != "warm" && time.median_ns > 0).then(|| ops as f64 * 1e9 / time.median_ns as f64),
                ratio_to_baseline: (name != "warm" && raw_stats.median_ns > 0)
                    .then(|| time.median_ns as f64 / raw_stats.median_ns as f64),
                time,
                latency_p50_ns: None,
                latency_p99_ns: None,
                peak_rss_bytes: rss,
                state_bytes: Some(state_bytes),
                bytes_per_op: if name == "raw-sqlx" { raw_bytes } else { bytes_per_op },
            }
        };
        // Memory: a fresh process per case, so the figure is the load's and not the build's leftovers.
        let (cold_rss, full_rss) = (
            measure_in_child(&db, ids[0], params.keyframe_every),
            measure_in_child(&db, ids[0], 0),
        );
        results.push(case("cold-keyframed", per_doc(&cold, docs), cold_rss));
        results.push(case("cold-kf-worst", per_doc(&worst, docs), None));
        results.push(case("full-replay", per_doc(&full, docs), full_rss));
        results.push(case("raw-sqlx", per_doc(&raw, docs), None));
        results.push(case("warm", warm, None));
        drop(store);
        drop(db);
    }
    Ok(results)
}

/// The JSON rows of the documents' global logs in a new SQLite file at `path`, in the shape folio stored them
/// before the compact log (one row per operation, its wire JSON, keyed by ordinal, unique on `(unit, index)`),
/// written 1,000 rows a transaction with WAL and `synchronous = FULL`; the pool, and the file's bytes.
async fn raw_sqlite_copy(
    store: &dyn OperationStore,
    ids: &[DocumentId],
    path: &std::path::Path,
) -> Result<(sqlx::SqlitePool, u64), CliError> {
    let pool = super::raw_sqlite_pool(path).await?;
    for ddl in [
        "CREATE TABLE units (unit_id INTEGER PRIMARY KEY, document_id TEXT NOT NULL, scope TEXT NOT NULL, \
         branch TEXT NOT NULL)",
        "CREATE TABLE operations (ordinal INTEGER PRIMARY KEY, unit_id INTEGER NOT NULL, idx INTEGER NOT NULL, \
         operation TEXT NOT NULL, UNIQUE (unit_id, idx))",
    ] {
        sqlx::query(ddl).execute(&pool).await?;
    }
    for (n, id) in ids.iter().enumerate() {
        let unit = folio_core::SyncUnit::main(*id, Scope::Global);
        sqlx::query("INSERT INTO units VALUES (?, ?, 'global', 'main')")
            .bind(n as i64)
            .bind(id.to_string())
            .execute(&pool)
            .await?;
        let mut ops = store.read(&unit, 0, None).chunks(1000);
        while let Some(chunk) = ops.next().await {
            let mut tx = pool.begin().await?;
            for op in chunk {
                let op = op?;
                sqlx::query("INSERT INTO operations (unit_id, idx, operation) VALUES (?, ?, ?)")
                    .bind(n as i64)
                    .bind(op.index as i64)
                    .bind(serde_json::to_string(&op)?)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
    }
    let bytes = super::sqlite_bytes(path).await.unwrap_or(0);
    Ok((pool, bytes))
}

/// The raw baseline's connection.
enum RawPool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

const RAW_SQLITE: &str = "SELECT o.operation FROM operations o JOIN units u ON u.unit_id = o.unit_id \
     WHERE u.document_id = ? AND u.scope = 'global' AND u.branch = 'main' ORDER BY o.idx";
const RAW_POSTGRES: &str = "SELECT o.operation FROM operations o JOIN units u ON u.unit_id = o.unit_id \
     WHERE u.document_id = $1 AND u.scope = 'global' AND u.branch = 'main' ORDER BY o.idx";

/// Each document's global log, row by row, decoded and folded by `model`: what a hand-written loader does.
async fn raw_replay(pool: &RawPool, model: Arc<dyn ErasedModel>, ids: &[DocumentId]) -> Result<(), CliError> {
    for id in ids {
        let mut state = model.initial_state();
        let mut fold = |json: &str| -> Result<(), CliError> {
            let op: Operation = serde_json::from_str(json).map_err(CliError::from)?;
            model
                .reduce(&mut state, &op.action.action_type, &op.action.input)
                .map_err(CliError::from)
        };
        match pool {
            RawPool::Sqlite(pool) => {
                let mut rows = sqlx::query(RAW_SQLITE).bind(id.to_string()).fetch(pool);
                while let Some(row) = rows.next().await {
                    fold(row.map_err(CliError::from)?.get::<&str, _>(0))?;
                }
            }
            RawPool::Postgres(pool) => {
                let mut rows = sqlx::query(RAW_POSTGRES).bind(id.to_string()).fetch(pool);
                while let Some(row) = rows.next().await {
                    fold(row.map_err(CliError::from)?.get::<&str, _>(0))?;
                }
            }
        }
    }
    Ok(())
}
