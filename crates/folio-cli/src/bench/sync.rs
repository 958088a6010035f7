//! `folio bench sync`: two replicas and a `folio serve` on loopback exchange operations made offline on both, with
//! clocks interleaved so that every replica rebases; the time to converge beside raw sqlx inserts of the rows the
//! three stores receive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_core::{Branch, DocumentId, ModelRegistry, Scope};
use folio_reactor::{Reactor, ReactorConfig, Submit};
use folio_store::SqliteStore;
use folio_sync::{HttpRemote, Replica, RoundOptions, sync_round};

use super::workload::Workload;
use super::{CaseResult, Progress, Stats, note};
use crate::CliError;

/// What to run.
#[derive(Debug, Clone)]
pub struct Params {
    /// Operations made in all (half on each replica).
    pub ops: u64,
    /// Documents they are spread over.
    pub docs: u64,
    /// Actions per local job while building.
    pub batch: u64,
    /// Rounds, each on fresh stores.
    pub rounds: u32,
}

fn fail(e: impl std::fmt::Display) -> CliError {
    CliError::fail(e.to_string())
}

async fn replica(dir: &std::path::Path, name: &str) -> Result<Replica, CliError> {
    let store = SqliteStore::open(dir.join(format!("{name}.db"))).await?;
    let config = ReactorConfig {
        executors: 4,
        ..ReactorConfig::default()
    };
    Replica::open(Arc::new(store), Arc::new(ModelRegistry::with_builtin()), config)
        .await
        .map_err(fail)
}

/// One round: build (untimed), then push and pull until the three agree (timed). Also the bytes on disk of the
/// three stores, which each hold every operation.
async fn round(params: &Params, n: u32) -> Result<(Duration, Option<u64>), CliError> {
    let dir = tempfile::tempdir()?;
    let server_dir = dir.path().join(format!("server-{n}"));
    std::fs::create_dir_all(&server_dir)?;
    let store = SqliteStore::open(server_dir.join("folio.db")).await?;
    let reactor = Reactor::open(
        Arc::new(store),
        Arc::new(ModelRegistry::with_builtin()),
        ReactorConfig::default(),
    )
    .await
    .map_err(fail)?;
    let config = folio_server::ServerConfig {
        body_limit: 8 * 1024 * 1024,
        ..folio_server::ServerConfig::new(&server_dir)
    };
    let state = folio_server::app_state(reactor, config)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(folio_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    let token = std::fs::read_to_string(server_dir.join("admin.token"))?
        .trim()
        .to_owned();
    let remote = HttpRemote::new(&format!("http://{addr}"), Some(token)).map_err(fail)?;

    let a = replica(dir.path(), &format!("a-{n}")).await?;
    let b = replica(dir.path(), &format!("b-{n}")).await?;
    let mut docs: Vec<DocumentId> = Vec::new();
    for d in 0..params.docs {
        let doc = a
            .reactor()
            .create_document(Workload::Todo.document_type(), &format!("doc {d}"), None)
            .await
            .map_err(fail)?;
        docs.push(doc.header.id);
    }
    let options = RoundOptions {
        compress: false,
        ..RoundOptions::default()
    };
    sync_round(&a, &remote, &options).await.map_err(fail)?;
    sync_round(&b, &remote, &options).await.map_err(fail)?;

    // Offline on both, jobs alternating so their clocks interleave: every replica will rebase.
    let half = params.ops / 2;
    let jobs = half.div_ceil(params.batch);
    let mut progress = Progress::new(&format!("round {n}: building"), jobs * 2);
    for job in 0..jobs {
        for (side, r) in [(0u64, &a), (1u64, &b)] {
            let first = job * params.batch;
            let actions = (first..(first + params.batch).min(half))
                .map(|i| {
                    let (_, input) = Workload::Todo.action((i * 2 + side) % 1000);
                    r.reactor().action("ADD_TODO", input, Scope::Global)
                })
                .collect::<Vec<_>>();
            let doc = docs[(job % docs.len() as u64) as usize];
            r.reactor().apply(Submit::new(doc, actions)).await.map_err(fail)?;
            progress.advance(1);
        }
    }
    progress.finish();

    let start = Instant::now();
    let cpu = super::cpu_time();
    for (name, r) in [("a", &a), ("b", &b), ("a", &a)] {
        let t = Instant::now();
        let report = sync_round(r, &remote, &options).await.map_err(fail)?;
        note(format!(
            "  {name}: pushed {} pulled {} in {:.2?}",
            report.pushed,
            report.pulled,
            t.elapsed()
        ));
    }
    let elapsed = start.elapsed();
    if let (Some(before), Some(after)) = (cpu, super::cpu_time()) {
        note(format!(
            "  CPU time while converging: {:.2?}",
            after.saturating_sub(before)
        ));
    }

    // Converged: the same state everywhere (checked outside the timing).
    let client = reqwest::Client::new();
    for doc in &docs {
        let ha = a
            .reactor()
            .get(*doc, &Branch::default())
            .await
            .map_err(fail)?
            .map(|d| d.state_hash());
        let hb = b
            .reactor()
            .get(*doc, &Branch::default())
            .await
            .map_err(fail)?
            .map(|d| d.state_hash());
        let body: serde_json::Value = client
            .get(format!("{}/v1/documents/{doc}", remote.url()))
            .bearer_auth(std::fs::read_to_string(server_dir.join("admin.token"))?.trim())
            .send()
            .await
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)?;
        let hs = body["stateHash"].as_str().map(str::to_owned);
        if ha != hb || ha.map(|h| h.to_hex()) != hs {
            return Err(CliError::fail(format!("document {doc} did not converge")));
        }
    }
    a.reactor().shutdown().await;
    b.reactor().shutdown().await;
    let _ = stop.send(());
    let _ = server.await;
    let mut bytes = Some(0);
    for path in [
        server_dir.join("folio.db"),
        dir.path().join(format!("a-{n}.db")),
        dir.path().join(format!("b-{n}.db")),
    ] {
        bytes = match (bytes, super::sqlite_bytes(&path).await) {
            (Some(total), Some(b)) => Some(total + b),
            _ => None,
        };
    }
    Ok((elapsed, bytes))
}

/// Runs the rounds and the baseline.
pub async fn run(params: &Params) -> Result<Vec<CaseResult>, CliError> {
    let mut times = Vec::new();
    let mut bytes = None;
    for n in 0..params.rounds {
        let (t, b) = round(params, n).await?;
        let per_op = b.map(|b| b as f64 / (3 * params.ops.max(1)) as f64);
        note(format!(
            "round {n}: converged in {t:.2?}; {} bytes per operation per store",
            per_op.map_or("?".to_owned(), |p| format!("{p:.0}"))
        ));
        times.push(t);
        bytes = per_op;
    }
    // What the three stores receive at least: the server every operation, each replica the other's half.
    let rows = params.ops * 2;
    let target = super::target::Target::Sqlite(tempfile::tempdir()?);
    let append = super::append::Params {
        writers: 1,
        docs: params.docs,
        ops: rows,
        batch: 1,
        rounds: 1,
        nodes: 1,
    };
    let mut raw = Vec::new();
    for n in 0..params.rounds {
        raw.push(super::append::raw_round(&append, &target, n).await?);
    }
    let folio = Stats::of(&times);
    let raw_stats = Stats::of(&raw);
    let per_sec = |s: &Stats, ops: u64| (s.median_ns > 0).then(|| ops as f64 * 1e9 / s.median_ns as f64);
    Ok(vec![
        CaseResult {
            case: "sync-converge".into(),
            ops: params.ops,
            time: folio,
            ops_per_sec: per_sec(&folio, params.ops),
            ratio_to_baseline: (raw_stats.median_ns > 0).then(|| folio.median_ns as f64 / raw_stats.median_ns as f64),
            latency_p50_ns: None,
            latency_p99_ns: None,
            peak_rss_bytes: None,
            state_bytes: None,
            bytes_per_op: bytes,
        },
        CaseResult {
            case: "raw-sqlx".into(),
            ops: rows,
            time: raw_stats,
            ops_per_sec: per_sec(&raw_stats, rows),
            ratio_to_baseline: Some(1.0),
            latency_p50_ns: None,
            latency_p99_ns: None,
            peak_rss_bytes: None,
            state_bytes: None,
            bytes_per_op: None,
        },
    ])
}
