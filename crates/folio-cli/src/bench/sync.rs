//! `folio bench sync`: two replicas and a `folio serve` on loopback exchange operations made offline on both, with
//! clocks interleaved so that every replica rebases; the time to converge beside raw sqlx inserts of the rows the
//! three stores receive.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_core::merge::effective_mask;
use folio_core::{Action, Branch, Document, DocumentId, ModelRegistry, OpHash, Operation, Scope, SyncUnit};
use folio_reactor::{Reactor, ReactorConfig, Submit};
use folio_store::{OperationStore, SqliteStore};
use folio_sync::{HttpRemote, PullResponse, Replica, RoundOptions, SyncEntry, sync_round};

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
        let times = |d: Duration, n: u64| d.mul_f64(n as f64);
        times(self.json + self.verify, self.shipped) + times(self.hash, self.stored) + times(self.fold, self.folded)
    }
}

/// Measures [`Floor`] on the server's log (every operation made, and the rebases' copies), and counts what the
/// stores hold.
async fn floor(stores: [&Arc<dyn OperationStore>; 3], shipped: u64, folded: u64) -> Result<Floor, CliError> {
    let per = |d: Duration, n: usize| d / (n.max(1) as u32);
    // The server's log unit by unit, each document's header scope first (it sets the model the fold needs).
    let server = stores[0];
    let mut units: BTreeMap<(DocumentId, bool), (SyncUnit, Vec<Operation>)> = BTreeMap::new();
    let log = super::whole_log(server.as_ref()).await?;
    // The cursor a pull of all of it would answer.
    let after = log.last().map_or(0, |c| c.ordinal);
    for c in log {
        let key = (c.unit.document_id, c.unit.scope != Scope::Document);
        units
            .entry(key)
            .or_insert_with(|| (c.unit, Vec::new()))
            .1
            .push(c.operation);
    }

    // Each unit's chain checked from its start, as a store checks an append.
    let t = Instant::now();
    let mut hashed = 0;
    for (unit, ops) in units.values() {
        folio_core::check_chain(&OpHash::ZERO, 0, ops).map_err(|e| CliError::fail(format!("{unit}: {e}")))?;
        hashed += ops.len();
    }
    let hash = per(t.elapsed(), hashed);

    // Each unit's effective history folded once.
    let registry = ModelRegistry::with_builtin();
    let effective: Vec<Vec<bool>> = units.values().map(|(_, ops)| effective_mask(ops)).collect();
    let t = Instant::now();
    let mut documents: HashMap<DocumentId, Document> = HashMap::new();
    for ((unit, ops), mask) in units.values().zip(&effective) {
        let doc = documents
            .entry(unit.document_id)
            .or_insert_with(|| Document::empty(unit.document_id, unit.branch.clone()));
        for (op, &effective) in ops.iter().zip(mask) {
            doc.fold(op, effective, &registry).map_err(fail)?;
        }
    }
    let fold = per(t.elapsed(), effective.iter().flatten().filter(|&&e| e).count());
    drop(documents);

    // The effective operations as a pull ships them: written and read as JSON, their signatures checked.
    let entries: Vec<SyncEntry> = units
        .values()
        .zip(&effective)
        .filter(|((unit, _), _)| unit.scope != Scope::Local)
        .flat_map(|((unit, ops), mask)| {
            ops.iter().zip(mask).filter(|(_, e)| **e).map(|(op, _)| SyncEntry {
                document_id: unit.document_id,
                scope: unit.scope,
                branch: unit.branch.clone(),
                action: op.action.clone(),
            })
        })
        .collect();
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
        super::case("sync-converge", params.ops, folio, &raw_stats, bytes),
        super::case("sync-floor", params.ops, floor, &raw_stats, None),
        super::case("raw-sqlx", rows, raw_stats, &raw_stats, None),
    ])
}
