//! `folio bench append`: writers submitting one action per job, against raw multi-row inserts of the same rows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_core::{HybridClock, ModelRegistry, Operation, Scope};
use folio_reactor::{Reactor, ReactorConfig, ReactorError, Submit};
use folio_store::SqliteStore;

use super::workload::Workload;
use super::{CaseResult, Progress, Stats, note, peak_rss, reset_peak_rss};
use crate::CliError;

/// What to run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Concurrent writers.
    pub writers: u64,
    /// Documents written to (round robin).
    pub docs: u64,
    /// Operations in all.
    pub ops: u64,
    /// Actions per job.
    pub batch: u64,
    /// Rounds (each on a fresh store).
    pub rounds: u32,
}

struct Round {
    elapsed: Duration,
    latencies: Vec<Duration>,
}

async fn folio_round(params: &Params, dir: &std::path::Path, n: u32) -> Result<Round, CliError> {
    let store = SqliteStore::open(dir.join(format!("folio-{n}.db"))).await?;
    let reactor = Reactor::new(
        Arc::new(store),
        Arc::new(ModelRegistry::with_builtin()),
        ReactorConfig::default(),
    );
    let workload = Workload::Todo;
    let mut ids = Vec::new();
    for d in 0..params.docs {
        ids.push(
            reactor
                .create_document(workload.document_type(), &format!("w{d}"), None)
                .await
                .map_err(|e| CliError::fail(e.to_string()))?
                .header
                .id,
        );
    }
    let ids = Arc::new(ids);
    let jobs = params.ops.div_ceil(params.batch);
    let start = Instant::now();
    let tasks: Vec<_> = (0..params.writers)
        .map(|w| {
            let reactor = reactor.clone();
            let ids = ids.clone();
            let (writers, batch, ops) = (params.writers, params.batch, params.ops);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut job = w;
                while job < jobs {
                    let first = job * batch;
                    let actions = (first..(first + batch).min(ops))
                        .map(|i| {
                            let (_, input) = workload.action(i % 1000);
                            reactor.action("ADD_TODO", input, Scope::Global)
                        })
                        .collect::<Vec<_>>();
                    let id = ids[(job % ids.len() as u64) as usize];
                    let t = Instant::now();
                    loop {
                        match reactor.apply(Submit::new(id, actions.clone())).await {
                            Ok(_) => break,
                            Err(ReactorError::Overloaded) => tokio::task::yield_now().await,
                            Err(e) => return Err(CliError::fail(e.to_string())),
                        }
                    }
                    latencies.push(t.elapsed());
                    job += writers;
                }
                Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.map_err(CliError::from)??);
    }
    let elapsed = start.elapsed();
    reactor.shutdown().await;
    Ok(Round { elapsed, latencies })
}

/// The same rows (operations of the todo workload, as folio stores them) inserted straight through sqlx with
/// multi-row INSERTs, 1,000 rows a transaction, into a table of the same shape.
pub(crate) async fn raw_round(params: &Params, dir: &std::path::Path, n: u32) -> Result<Duration, CliError> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(dir.join(format!("raw-{n}.db")))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full),
        )
        .await?;
    sqlx::query(
        "CREATE TABLE operations (unit_id INTEGER NOT NULL, idx INTEGER NOT NULL, ordinal INTEGER NOT NULL, \
         skip INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL, hash BLOB NOT NULL, error TEXT, operation TEXT NOT NULL, \
         size INTEGER NOT NULL, PRIMARY KEY (unit_id, idx)) WITHOUT ROWID",
    )
    .execute(&pool)
    .await?;
    sqlx::query("CREATE UNIQUE INDEX operations_by_ordinal ON operations (ordinal)")
        .execute(&pool)
        .await?;
    let clock = HybridClock::new();
    let workload = Workload::Todo;
    let rows: Vec<(i64, i64, String, Vec<u8>)> = (0..params.ops)
        .map(|i| {
            let (_, input) = workload.action(i % 1000);
            let action = folio_core::Action::new("ADD_TODO", input, Scope::Global, clock.now());
            let unit = (i % params.docs.max(1)) as i64;
            let op = Operation::new(action, i / params.docs.max(1), 0, None, &folio_core::OpHash::ZERO);
            (
                unit,
                op.index as i64,
                serde_json::to_string(&op).unwrap_or_default(),
                op.hash.0.to_vec(),
            )
        })
        .collect();
    let start = Instant::now();
    let mut ordinal = 0i64;
    for txn in rows.chunks(1000) {
        let mut tx = pool.begin().await?;
        for stmt in txn.chunks(500) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO operations (unit_id, idx, ordinal, skip, timestamp_ms, hash, error, operation, size) ",
            );
            qb.push_values(stmt, |mut b, (unit, idx, json, hash)| {
                ordinal += 1;
                b.push_bind(*unit)
                    .push_bind(*idx)
                    .push_bind(ordinal)
                    .push_bind(0i64)
                    .push_bind(ordinal)
                    .push_bind(hash.clone())
                    .push_bind(None::<String>)
                    .push_bind(json.clone())
                    .push_bind(json.len() as i64);
            });
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    Ok(start.elapsed())
}

fn percentile(sorted: &[Duration], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)].as_nanos() as u64
}

/// Runs the rounds.
pub async fn run(params: &Params) -> Result<Vec<CaseResult>, CliError> {
    let dir = tempfile::tempdir().map_err(CliError::from)?;
    let mut folio = Vec::new();
    let mut raw = Vec::new();
    let mut latencies = Vec::new();
    reset_peak_rss();
    let mut progress = Progress::new("append rounds (folio, raw)", params.rounds as u64 * 2);
    for n in 0..params.rounds {
        let round = folio_round(params, dir.path(), n).await?;
        folio.push(round.elapsed);
        latencies.extend(round.latencies);
        progress.advance(1);
        raw.push(raw_round(params, dir.path(), n).await?);
        progress.advance(1);
    }
    progress.finish();
    note(format!(
        "{} writers, {} documents, {} operations, {} per job",
        params.writers, params.docs, params.ops, params.batch
    ));
    latencies.sort_unstable();
    let raw_stats = Stats::of(&raw);
    let folio_stats = Stats::of(&folio);
    let ops = params.ops;
    let per_sec = |s: &Stats| (s.median_ns > 0).then(|| ops as f64 * 1e9 / s.median_ns as f64);
    Ok(vec![
        CaseResult {
            case: "folio".into(),
            ops,
            time: folio_stats,
            ops_per_sec: per_sec(&folio_stats),
            ratio_to_baseline: (raw_stats.median_ns > 0)
                .then(|| folio_stats.median_ns as f64 / raw_stats.median_ns as f64),
            latency_p50_ns: Some(percentile(&latencies, 0.50)),
            latency_p99_ns: Some(percentile(&latencies, 0.99)),
            peak_rss_bytes: peak_rss(),
            state_bytes: None,
        },
        CaseResult {
            case: "raw-sqlx".into(),
            ops,
            time: raw_stats,
            ops_per_sec: per_sec(&raw_stats),
            ratio_to_baseline: Some(1.0),
            latency_p50_ns: None,
            latency_p99_ns: None,
            peak_rss_bytes: None,
            state_bytes: None,
        },
    ])
}
