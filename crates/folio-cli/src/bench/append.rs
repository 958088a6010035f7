//! `folio bench append`: writers submitting one action per job, against raw multi-row inserts of the same rows.
//!
//! On PostgreSQL, `--nodes N` spreads the writers over N reactors in N processes on the same database (this one and
//! N-1 children running the hidden `folio bench append-node`), as N `folio serve` nodes would.

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use folio_core::{DocumentId, HybridClock, ModelRegistry, Operation, Scope, SyncUnit};
use folio_reactor::{Reactor, ReactorConfig, ReactorError, Submit};
use folio_store::{AppendRequest, OperationStore};

use super::target::{BenchDb, Target};
use super::workload::Workload;
use super::{CaseResult, Progress, Stats, case, note, peak_rss, reset_peak_rss};
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
    /// Processes (nodes) sharing the writers, each with its own reactor on the same database (PostgreSQL only).
    pub nodes: u64,
}

struct Round {
    /// Bytes of the store after the round (SQLite).
    bytes: Option<u64>,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// The round's group commits, in commit order, each as the requests it carried (when [`has_store_floor`]).
    commits: Option<Vec<Vec<AppendRequest>>>,
}

/// Whether a round has the store's floor: on PostgreSQL (whose ordinals tell group commits apart) with one node
/// (one writer sending two nodes' commits one after another is no floor for two writers).
fn has_store_floor(params: &Params, target: &Target) -> bool {
    matches!(target, Target::Postgres(_)) && params.nodes <= 1
}

fn reactor_on(store: Arc<dyn OperationStore>) -> Reactor {
    Reactor::new(store, Arc::new(ModelRegistry::with_builtin()), ReactorConfig::default())
}

async fn folio_round(params: &Params, target: &Target, n: u32) -> Result<Round, CliError> {
    let db = target.create(&format!("folio-{n}")).await?;
    let store = db.open().await?;
    let reactor = reactor_on(store.clone());
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
    let mut children = (1..params.nodes)
        .map(|node| Node::spawn(&db, &ids, params, node))
        .collect::<Result<Vec<_>, _>>()?;
    for child in &mut children {
        child.expect_line("ready")?;
    }
    let start = Instant::now();
    for child in &mut children {
        child.go()?;
    }
    let mut latencies = run_writers(&reactor, Arc::new(ids), params, 0).await?;
    for child in children {
        latencies.extend(child.finish()?);
    }
    let elapsed = start.elapsed();
    reactor.shutdown().await;
    let bytes = match &db {
        BenchDb::Sqlite(path) => super::sqlite_bytes(path).await,
        BenchDb::Postgres(_) => None,
    };
    let commits = if has_store_floor(params, target) {
        Some(group_commits(store.as_ref()).await?)
    } else {
        None
    };
    Ok(Round {
        elapsed,
        latencies,
        bytes,
        commits,
    })
}

/// Every operation of the store, as the group commits that wrote them (PostgreSQL's ordinals tell them apart), each
/// commit's operations as one request a unit.
async fn group_commits(store: &dyn OperationStore) -> Result<Vec<Vec<AppendRequest>>, CliError> {
    let mut commits: Vec<Vec<(SyncUnit, Vec<Operation>)>> = Vec::new();
    let mut current = None;
    for c in super::whole_log(store).await? {
        let commit = folio_store::PgStore::group_commit_of(c.ordinal);
        if current != Some(commit) {
            current = Some(commit);
            commits.push(Vec::new());
        }
        let units = commits.last_mut().expect("pushed above");
        match units.iter_mut().find(|(unit, _)| *unit == c.unit) {
            Some((_, ops)) => ops.push(c.operation),
            None => units.push((c.unit, vec![c.operation])),
        }
    }
    Ok(commits
        .into_iter()
        .map(|units| {
            units
                .into_iter()
                .map(|(unit, ops)| AppendRequest {
                    unit,
                    expected_revision: ops.first().map_or(0, |op| op.index),
                    operations: ops.into(),
                })
                .collect()
        })
        .collect())
}

/// The store's floor: a round's group commits sent again, one after another, through the store alone (no reactor,
/// no follower, no view) to a fresh database: what the store's client and the server take for the same commits.
/// The commits that created the documents go first, untimed (the round created them before its clock started).
async fn floor_round(
    mut commits: Vec<Vec<AppendRequest>>,
    target: &Target,
    n: u32,
) -> Result<(Duration, usize), CliError> {
    let db = target.create(&format!("floor-{n}")).await?;
    let store = db.open().await?;
    let creating = commits
        .iter()
        .rposition(|requests| requests.iter().any(|r| r.unit.scope == Scope::Document))
        .map_or(0, |i| i + 1);
    let timed = commits.split_off(creating);
    let send = |results: Vec<Result<folio_store::Appended, folio_store::StoreError>>| -> Result<(), CliError> {
        for r in results {
            match r {
                Ok(a) if !a.replayed => {}
                Ok(_) => return Err(CliError::fail("the floor's replay found its operations already stored")),
                Err(e) => return Err(CliError::fail(format!("the floor's replay was refused: {e}"))),
            }
        }
        Ok(())
    };
    for requests in commits {
        send(store.append_batch(requests).await)?;
    }
    let count = timed.len();
    let start = Instant::now();
    for requests in timed {
        send(store.append_batch(requests).await)?;
    }
    Ok((start.elapsed(), count))
}

/// The environment variable naming the network namespace of each node (`ip netns exec`), comma-separated.
pub const NODE_NETNS: &str = "FOLIO_BENCH_NODE_NETNS";

/// A child process running [`node_main`]: one more node on the round's database.
struct Node {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Node {
    fn spawn(db: &BenchDb, ids: &[DocumentId], params: &Params, node: u64) -> Result<Self, CliError> {
        let url = db
            .postgres_url()
            .ok_or_else(|| CliError::usage("--nodes above 1 needs --database-url postgres://…"))?;
        let exe = std::env::current_exe().map_err(CliError::from)?;
        let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
        // Node k runs in the network namespace named k-th in FOLIO_BENCH_NODE_NETNS (comma-separated), when set:
        // nodes on machines of their own, simulated (scripts/netns-nodes).
        let netns = std::env::var(NODE_NETNS).ok();
        let netns = netns
            .as_deref()
            .and_then(|list| list.split(',').nth(node as usize))
            .filter(|ns| !ns.is_empty());
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args(["bench", "append-node", "--database-url", url, "--ids", &ids.join(",")])
            .args([
                "--writers",
                &params.writers.to_string(),
                "--ops",
                &params.ops.to_string(),
            ])
            .args([
                "--batch",
                &params.batch.to_string(),
                "--nodes",
                &params.nodes.to_string(),
            ])
            .args(["--node", &node.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| CliError::fail(format!("cannot start a benchmark node: {e}")))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| CliError::fail("a benchmark node has no stdout"))?;
        Ok(Self {
            child,
            stdout: std::io::BufReader::new(stdout),
        })
    }

    fn read_line(&mut self) -> Result<String, CliError> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).map_err(CliError::from)?;
        if line.is_empty() {
            let status = self.child.wait().map_err(CliError::from)?;
            return Err(CliError::fail(format!("a benchmark node exited early ({status})")));
        }
        Ok(line.trim_end().to_owned())
    }

    fn expect_line(&mut self, expected: &str) -> Result<(), CliError> {
        let line = self.read_line()?;
        if line == expected {
            Ok(())
        } else {
            Err(CliError::fail(format!(
                "a benchmark node said {line:?}, not {expected:?}"
            )))
        }
    }

    fn go(&mut self) -> Result<(), CliError> {
        let stdin = self
            .child
            .stdin
            .as_mut()
            .ok_or_else(|| CliError::fail("a benchmark node has no stdin"))?;
        stdin
            .write_all(b"go\n")
            .and_then(|()| stdin.flush())
            .map_err(CliError::from)
    }

    /// Waits for the node's writers; their latencies.
    fn finish(mut self) -> Result<Vec<Duration>, CliError> {
        let line = self.read_line()?;
        let _ = self.child.wait();
        let nanos: Vec<u64> = serde_json::from_str(&line)
            .map_err(|e| CliError::fail(format!("a benchmark node's answer {line:?}: {e}")))?;
        Ok(nanos.into_iter().map(Duration::from_nanos).collect())
    }
}

/// `folio bench append-node`: one node of a multi-node round. Opens the database, says `ready`, waits for a line on
/// stdin, runs writer `node`, `node + nodes`, … of the round, and prints their latencies (ns) as a JSON array.
pub async fn node_main(url: &str, ids: Vec<DocumentId>, params: &Params, node: u64) -> Result<(), CliError> {
    let reactor = reactor_on(Arc::new(folio_store::PgStore::open(url).await?));
    println!("ready");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).map_err(CliError::from)?;
    let latencies = run_writers(&reactor, Arc::new(ids), params, node).await?;
    reactor.shutdown().await;
    let nanos: Vec<u64> = latencies.iter().map(|d| d.as_nanos() as u64).collect();
    println!("{}", serde_json::to_string(&nanos)?);
    Ok(())
}

/// Runs this node's share of the writers (writer `w` belongs to node `w % nodes`) to the end; their latencies.
async fn run_writers(
    reactor: &Reactor,
    ids: Arc<Vec<DocumentId>>,
    params: &Params,
    node: u64,
) -> Result<Vec<Duration>, CliError> {
    let workload = Workload::Todo;
    let jobs = params.ops.div_ceil(params.batch);
    let tasks: Vec<_> = (0..params.writers)
        .filter(|w| w % params.nodes.max(1) == node)
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
    Ok(latencies)
}

/// The same rows (operations of the todo workload, as folio stores them) inserted straight through sqlx with
/// multi-row INSERTs, 1,000 rows a transaction, into a table of the same shape.
pub(crate) async fn raw_round(params: &Params, target: &Target, n: u32) -> Result<Duration, CliError> {
    let db = target.create(&format!("raw-{n}")).await?;
    let path = match &db {
        BenchDb::Sqlite(path) => path.clone(),
        BenchDb::Postgres(pg) => return raw_round_postgres(params, &pg.url).await,
    };
    let pool = super::raw_sqlite_pool(&path).await?;
    sqlx::query(
        "CREATE TABLE operations (ordinal INTEGER PRIMARY KEY, unit_id INTEGER NOT NULL, idx INTEGER NOT NULL, \
         skip INTEGER NOT NULL, timestamp_ms INTEGER NOT NULL, hash BLOB NOT NULL, error TEXT, operation TEXT NOT NULL, \
         size INTEGER NOT NULL, UNIQUE (unit_id, idx))",
    )
    .execute(&pool)
    .await?;
    let rows = raw_rows(params);
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

/// The rows both baselines insert: `(unit, index, operation JSON, hash)`, each as folio stores the same action: with
/// the replica that made it, as [`Reactor::action`] sets it (the JSON is as long as folio's row).
fn raw_rows(params: &Params) -> Vec<(i64, i64, String, Vec<u8>)> {
    let clock = HybridClock::new();
    let workload = Workload::Todo;
    let replica = uuid::Uuid::now_v7().simple().to_string();
    (0..params.ops)
        .map(|i| {
            let (_, input) = workload.action(i % 1000);
            let mut action = folio_core::Action::new("ADD_TODO", input, Scope::Global, clock.now());
            action.replica = Some(replica.clone());
            let unit = (i % params.docs.max(1)) as i64;
            let op = Operation::new(action, i / params.docs.max(1), 0, None, &folio_core::OpHash::ZERO);
            (
                unit,
                op.index as i64,
                serde_json::to_string(&op).unwrap_or_default(),
                op.hash.0.to_vec(),
            )
        })
        .collect()
}

/// The PostgreSQL baseline: the same rows into a table of the same shape as folio's, 1,000 rows a transaction, each
/// transaction one multi-row INSERT over arrays (as folio's group commit does), with the server's default
/// durability (`synchronous_commit = on`).
async fn raw_round_postgres(params: &Params, url: &str) -> Result<Duration, CliError> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await?;
    sqlx::query(
        "CREATE TABLE raw_operations (unit_id BIGINT NOT NULL, idx BIGINT NOT NULL, ordinal BIGINT NOT NULL, \
         origin BIGINT NOT NULL, skip BIGINT NOT NULL, timestamp_ms BIGINT NOT NULL, hash BYTEA NOT NULL, \
         operation TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (unit_id, idx))",
    )
    .execute(&pool)
    .await?;
    sqlx::query("CREATE UNIQUE INDEX raw_operations_by_ordinal ON raw_operations (ordinal)")
        .execute(&pool)
        .await?;
    let rows = raw_rows(params);
    let start = Instant::now();
    let mut ordinal = 0i64;
    for txn in rows.chunks(1000) {
        let mut tx = pool.begin().await?;
        let ordinals: Vec<i64> = txn
            .iter()
            .map(|_| {
                ordinal += 1;
                ordinal
            })
            .collect();
        sqlx::query(
            "INSERT INTO raw_operations (unit_id, idx, ordinal, origin, skip, timestamp_ms, hash, operation, size) \
             SELECT u, i, o, 1, 0, o, h, j, length(j) \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[], $5::text[]) AS x(u, i, o, h, j)",
        )
        .bind(txn.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(txn.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(ordinals)
        .bind(txn.iter().map(|r| r.3.clone()).collect::<Vec<_>>())
        .bind(txn.iter().map(|r| r.2.as_str()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
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
pub async fn run(params: &Params, target: &Target) -> Result<Vec<CaseResult>, CliError> {
    let mut folio = Vec::new();
    let mut raw = Vec::new();
    let mut latencies = Vec::new();
    let mut bytes = None;
    reset_peak_rss();
    let mut floor = Vec::new();
    let mut floor_commits = Vec::new();
    // With the store's floor, a third part a round (see `floor_round`).
    let parts = if has_store_floor(params, target) { 3 } else { 2 };
    let mut progress = Progress::new(
        if parts == 3 {
            "append rounds (folio, raw, store floor)"
        } else {
            "append rounds (folio, raw)"
        },
        params.rounds as u64 * parts,
    );
    for n in 0..params.rounds {
        let round = folio_round(params, target, n).await?;
        folio.push(round.elapsed);
        latencies.extend(round.latencies);
        bytes = round.bytes;
        progress.advance(1);
        raw.push(raw_round(params, target, n).await?);
        progress.advance(1);
        if let Some(commits) = round.commits {
            let (elapsed, count) = floor_round(commits, target, n).await?;
            floor.push(elapsed);
            floor_commits.push(count);
            progress.advance(1);
        }
    }
    progress.finish();
    note(format!(
        "{} writers, {} documents, {} operations, {} per job, {} node(s) on {}",
        params.writers,
        params.docs,
        params.ops,
        params.batch,
        params.nodes,
        target.backend()
    ));
    latencies.sort_unstable();
    let raw_stats = Stats::of(&raw);
    let folio_stats = Stats::of(&folio);
    let ops = params.ops;
    let mut results = vec![
        CaseResult {
            latency_p50_ns: Some(percentile(&latencies, 0.50)),
            latency_p99_ns: Some(percentile(&latencies, 0.99)),
            peak_rss_bytes: peak_rss(),
            ..case(
                "folio",
                ops,
                folio_stats,
                &raw_stats,
                bytes.map(|b| b as f64 / ops.max(1) as f64),
            )
        },
        case("raw-sqlx", ops, raw_stats, &raw_stats, None),
    ];
    if !floor.is_empty() {
        floor_commits.sort_unstable();
        let commits = floor_commits[floor_commits.len() / 2];
        note(format!(
            "store-floor: the folio round's {commits} group commits (median of rounds; {:.1} operations each), sent \
             again one after another through the store alone (no reactor, follower or view) to a fresh database: \
             the store's encoding, the round trips, the server's function and its WAL flushes, for the same commits",
            ops as f64 / commits.max(1) as f64
        ));
        results.push(case("store-floor", ops, Stats::of(&floor), &raw_stats, None));
    }
    Ok(results)
}
