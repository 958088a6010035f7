//! `folio bench sync`: two replicas and a `folio serve` on loopback exchange operations made offline on both, with
//! clocks interleaved so that every replica rebases; the time to converge beside raw sqlx inserts of the rows the
//! three stores receive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_core::{Action, Branch, DocumentId, ModelRegistry, OpHash, Scope, SyncUnit, operation_hash};
use folio_reactor::{Reactor, ReactorConfig, Submit};
use folio_store::{OperationStore, SqliteStore};
use folio_sync::{Filter, HttpRemote, PullRequest, PullResponse, Remote, Replica, RoundOptions, sync_round};

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

/// The work today's protocol cannot leave out of an exchange, timed on one thread after it: every entry shipped
/// is written as JSON by its sender and read by its receiver, who checks its signature (the pushes carry each
/// replica's half to the server, the pulls each half to the other replica: twice the operations made); every
/// operation a store holds (a rebase's copies included) was hashed once, chained over the one before it; and each
/// store folded every operation of its effective history once (it must, to mark the ones its reducer refuses:
/// three times the operations made). Storage, HTTP and the merge's own work are left out, so the floor is a lower
/// bound, and its wall time assumes every core busy the whole time.
#[derive(Debug, Clone, Copy)]
struct Floor {
    /// Entries shipped in the exchange.
    shipped: u64,
    /// Operations the three stores hold.
    stored: u64,
    /// Writing and reading one entry as JSON.
    json: Duration,
    /// Checking one entry's signature (its share of its batch's).
    verify: Duration,
    /// One operation's hash.
    hash: Duration,
    /// Operations folded (each store's effective history).
    folded: u64,
    /// Folding one operation into its document.
    fold: Duration,
}

impl Floor {
    /// The CPU time of the whole exchange's share of this work.
    fn cpu(&self) -> Duration {
        (self.json + self.verify) * self.shipped as u32
            + self.hash * self.stored as u32
            + self.fold * self.folded as u32
    }
}

/// Measures [`Floor`] on the server's entries and log, and counts what the stores hold.
async fn floor(
    remote: &HttpRemote,
    stores: [&Arc<dyn OperationStore>; 3],
    shipped: u64,
    folded: u64,
) -> Result<Floor, CliError> {
    let per = |d: Duration, n: usize| d / (n.max(1) as u32);
    let mut entries = Vec::new();
    let mut after = 0;
    loop {
        let request = PullRequest {
            after,
            limit: 10_000,
            exclude: None,
            filter: Filter::default(),
        };
        let page = remote.pull(&request).await.map_err(fail)?;
        entries.extend(page.entries);
        after = page.cursor;
        if !page.more {
            break;
        }
    }
    let n = entries.len();
    let response = PullResponse {
        entries,
        cursor: after,
        more: false,
    };
    let t = Instant::now();
    let bytes = serde_json::to_vec(&response).map_err(fail)?;
    let back: PullResponse = serde_json::from_slice(&bytes).map_err(fail)?;
    let json = per(t.elapsed(), n);
    if back != response {
        return Err(CliError::fail("the floor's entries did not read back as written"));
    }
    let actions: Vec<&Action> = back.entries.iter().map(|e| &e.action).collect();
    let t = Instant::now();
    let verdicts = folio_core::signature::verify_all(&actions);
    let verify = per(t.elapsed(), n);
    if verdicts.iter().any(|v| !matches!(v, Ok(true))) {
        return Err(CliError::fail(
            "an entry of the exchange is not signed, or its signature does not verify",
        ));
    }

    let server = stores[0];
    let mut log = Vec::new();
    let mut after = 0;
    loop {
        let page = server.read_since(after, 10_000).await?;
        let Some(last) = page.last() else { break };
        after = last.ordinal;
        log.extend(page);
    }
    let t = Instant::now();
    let mut last: std::collections::HashMap<&SyncUnit, OpHash> = std::collections::HashMap::new();
    let mut wrong = 0usize;
    for c in &log {
        let prev = last.get(&c.unit).copied().unwrap_or(OpHash::ZERO);
        let hash = operation_hash(&prev, &c.operation);
        wrong += usize::from(hash != c.operation.hash);
        last.insert(&c.unit, hash);
    }
    let hash = per(t.elapsed(), log.len());
    if wrong > 0 {
        return Err(CliError::fail(format!(
            "{wrong} operations of the server's log do not hash as stored"
        )));
    }

    // The server's effective history folded once, document by document (its header scope first: it sets the model).
    let registry = ModelRegistry::with_builtin();
    let mut units: std::collections::BTreeMap<(DocumentId, u8), Vec<folio_core::Operation>> = Default::default();
    for c in log {
        let order = u8::from(c.unit.scope != Scope::Document);
        units.entry((c.unit.document_id, order)).or_default().push(c.operation);
    }
    let t = Instant::now();
    let mut effective_ops = 0usize;
    let mut documents: std::collections::HashMap<DocumentId, folio_core::Document> = Default::default();
    for ((id, _), ops) in &units {
        let doc = documents
            .entry(*id)
            .or_insert_with(|| folio_core::Document::empty(*id, Branch::default()));
        for (op, effective) in ops.iter().zip(folio_core::merge::effective_mask(ops)) {
            doc.fold(op, effective, &registry).map_err(fail)?;
            effective_ops += usize::from(effective);
        }
    }
    let fold = per(t.elapsed(), effective_ops);
    drop(documents);

    let mut stored = 0;
    for store in stores {
        for unit in store.units().await? {
            stored += store.head(&unit).await?.0;
        }
    }
    Ok(Floor {
        shipped,
        stored,
        json,
        verify,
        hash,
        folded,
        fold,
    })
}

/// One round: build (untimed), then push and pull until the three agree (timed). Also the bytes on disk of the
/// three stores, which each hold every operation, and the protocol's floor for the exchange.
async fn round(params: &Params, n: u32) -> Result<(Duration, Option<u64>, Floor), CliError> {
    let dir = tempfile::tempdir()?;
    let server_dir = dir.path().join(format!("server-{n}"));
    std::fs::create_dir_all(&server_dir)?;
    let server_store: Arc<dyn OperationStore> = Arc::new(SqliteStore::open(server_dir.join("folio.db")).await?);
    let reactor = Reactor::open(
        server_store.clone(),
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
    let floor = floor(
        &remote,
        [&server_store, a.reactor().store(), b.reactor().store()],
        2 * params.ops,
        3 * params.ops,
    )
    .await?;
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
    Ok((elapsed, bytes, floor))
}

/// Runs the rounds and the baseline.
pub async fn run(params: &Params) -> Result<Vec<CaseResult>, CliError> {
    let mut times = Vec::new();
    let mut floors = Vec::new();
    let mut bytes = None;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    for n in 0..params.rounds {
        let (t, b, floor) = round(params, n).await?;
        let wall = floor.cpu() / cores;
        note(format!(
            "round {n}: the protocol's floor: {} entries shipped x (JSON {:.2?} + signature {:.2?}) + {} operations \
             stored x hash {:.2?} + {} folded x {:.2?} = {:.2?} of CPU, {wall:.2?} on {cores} cores",
            floor.shipped,
            floor.json,
            floor.verify,
            floor.stored,
            floor.hash,
            floor.folded,
            floor.fold,
            floor.cpu(),
        ));
        floors.push(wall);
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
    let floor = Stats::of(&floors);
    let raw_stats = Stats::of(&raw);
    Ok(vec![
        case("sync-converge", params.ops, folio, &raw_stats, bytes),
        case("sync-floor", params.ops, floor, &raw_stats, None),
        case("raw-sqlx", rows, raw_stats, &raw_stats, None),
    ])
}

/// A row of the report: `time` for `ops` operations beside the raw baseline's median.
fn case(name: &str, ops: u64, time: Stats, raw: &Stats, bytes_per_op: Option<f64>) -> CaseResult {
    let per = |a: &Stats, b: f64| (a.median_ns > 0).then(|| b / a.median_ns as f64);
    CaseResult {
        case: name.into(),
        ops,
        time,
        ops_per_sec: per(&time, ops as f64 * 1e9),
        ratio_to_baseline: per(raw, time.median_ns as f64),
        latency_p50_ns: None,
        latency_p99_ns: None,
        peak_rss_bytes: None,
        state_bytes: None,
        bytes_per_op,
    }
}
