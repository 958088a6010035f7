//! Invariant 5, "nothing acknowledged is lost", against `kill -9`.
//!
//! The test binary re-executes itself as a child process (the `child_process_entry` test, switched on by an
//! environment variable) that appends a stream of operations to several units of one SQLite file and prints one
//! line per acknowledged operation. The parent kills it with SIGKILL after a varying number of acknowledgements,
//! reopens the file and checks that every acknowledged operation is there with its hash, the logs are dense and
//! `verify` passes; then the next round continues the same file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use serde_json::json;

use folio_core::{DocumentId, OpHash, Operation, Scope, SyncUnit};
use folio_store::conformance::Chain;
use folio_store::{AppendRequest, OperationStore, SqliteStore, StoreError, verify};

/// Set in the child's environment to the database path: switches `child_process_entry` into child mode.
const CHILD_ENV: &str = "FOLIO_CRASH_CHILD";
/// Units written by one task each.
const SOLO_UNITS: u128 = 4;
/// Kill rounds, each continuing the same file.
const ROUNDS: usize = 8;
/// A child stops by itself after this long (in case the parent died).
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

/// Units have fixed ids, so every round continues the same logs. Units `0..SOLO_UNITS` are written one append at a
/// time by their own task; units `SOLO_UNITS` and `SOLO_UNITS + 1` together through `append_batch`.
fn unit(n: u128) -> SyncUnit {
    let scope = if n.is_multiple_of(2) {
        Scope::Global
    } else {
        Scope::Local
    };
    SyncUnit::main(DocumentId(uuid::Uuid::from_u128(0xf011_0000 + n)), scope)
}

fn ack(out: &mut std::io::StdoutLock<'_>, n: u128, op: &Operation) {
    // One line per operation, flushed before the next append: the parent counts only what it has read.
    writeln!(out, "ACK {n} {} {}", op.index, op.hash).expect("write ack");
    out.flush().expect("flush ack");
}

/// Child mode: append until killed.
#[test]
fn child_process_entry() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = Arc::new(SqliteStore::open(&path).await.expect("child: open"));
        let deadline = Instant::now() + CHILD_LIFETIME;
        let mut tasks = Vec::new();
        for n in 0..SOLO_UNITS {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let unit = unit(n);
                let mut i = 0usize;
                while Instant::now() < deadline {
                    let (revision, last) = store.head(&unit).await.expect("child: head");
                    let mut chain = Chain::at(unit.clone(), revision, last);
                    let size = 1 + (i + n as usize) % 4;
                    let ops: Vec<Operation> = (0..size)
                        .map(|k| {
                            chain.op(
                                "SET",
                                json!({ "unit": n as u64, "i": i, "k": k, "pad": "x".repeat(100 * k) }),
                            )
                        })
                        .collect();
                    store
                        .append(&unit, revision, ops.clone())
                        .await
                        .unwrap_or_else(|e| panic!("child: append to unit {n}: {e}"));
                    let mut out = std::io::stdout().lock();
                    for op in &ops {
                        ack(&mut out, n, op);
                    }
                    i += 1;
                }
            }));
        }
        let batcher = store.clone();
        tasks.push(tokio::spawn(async move {
            let pair = [SOLO_UNITS, SOLO_UNITS + 1];
            while Instant::now() < deadline {
                let mut requests = Vec::new();
                for n in pair {
                    let unit = unit(n);
                    let (revision, last) = batcher.head(&unit).await.expect("child: head");
                    let mut chain = Chain::at(unit.clone(), revision, last);
                    requests.push(AppendRequest {
                        unit,
                        expected_revision: revision,
                        operations: chain.ops(1 + (revision % 3) as usize).into(),
                    });
                }
                let results = batcher.append_batch(requests.clone()).await;
                let mut out = std::io::stdout().lock();
                for ((n, request), result) in pair.into_iter().zip(&requests).zip(results) {
                    result.unwrap_or_else(|e: StoreError| panic!("child: batch append to unit {n}: {e}"));
                    for op in request.operations.iter() {
                        ack(&mut out, n, op);
                    }
                }
            }
        }));
        for task in tasks {
            task.await.expect("child task");
        }
    });
}

/// What the parent was told: (unit, index) → hash.
type Acked = BTreeMap<(u128, u64), OpHash>;

fn parse_ack(line: &str) -> Option<((u128, u64), OpHash)> {
    // libtest may print `test child_process_entry ... ` just before the child's first line.
    let mut parts = line[line.find("ACK ")? + 4..].split(' ');
    let n = parts.next()?.parse().ok()?;
    let index = parts.next()?.parse().ok()?;
    let hash = parts.next()?.parse().ok()?;
    Some(((n, index), hash))
}

fn record(acked: &mut Acked, key: (u128, u64), hash: OpHash) {
    if let Some(previous) = acked.insert(key, hash) {
        assert_eq!(
            previous, hash,
            "unit {} index {} acknowledged twice with different hashes",
            key.0, key.1
        );
    }
}

/// Runs one child, kills it after `kill_after` acknowledgements, and adds every acknowledgement it printed.
fn run_and_kill(path: &Path, stderr_path: &Path, kill_after: usize, acked: &mut Acked) -> usize {
    let stderr = std::fs::File::create(stderr_path).expect("stderr file");
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn child");
    let mut lines = BufReader::new(child.stdout.take().expect("child stdout")).lines();
    let mut seen = 0;
    while seen < kill_after {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some((key, hash)) = parse_ack(&line) {
                    record(acked, key, hash);
                    seen += 1;
                }
            }
            _ => {
                let status = child.wait().expect("wait");
                let err = std::fs::read_to_string(stderr_path).unwrap_or_default();
                panic!("child ended after {seen} acknowledgements, before the kill ({status}):\n{err}");
            }
        }
    }
    child.kill().expect("SIGKILL the child");
    let status = child.wait().expect("wait for the killed child");
    assert_eq!(status.signal(), Some(9), "the child died of SIGKILL ({status})");
    // Lines printed before the kill are acknowledgements too.
    for line in lines.map_while(Result::ok) {
        if let Some((key, hash)) = parse_ack(&line) {
            record(acked, key, hash);
            seen += 1;
        }
    }
    seen
}

async fn check_file(path: &Path, acked: &Acked, round: usize) {
    let store = SqliteStore::open(path).await.expect("reopen after the kill");
    let report = verify(&store).await.expect("verify");
    assert!(
        report.is_ok(),
        "round {round}: verify after the kill: {:?}",
        report.broken
    );
    for n in 0..SOLO_UNITS + 2 {
        let unit = unit(n);
        let ops: Vec<Operation> = store.read(&unit, 0, None).try_collect().await.expect("read");
        for (i, op) in ops.iter().enumerate() {
            assert_eq!(op.index, i as u64, "round {round}: unit {n} is dense");
        }
        for ((_, index), hash) in acked.range((n, 0)..=(n, u64::MAX)) {
            let stored = ops.get(*index as usize).unwrap_or_else(|| {
                panic!(
                    "round {round}: unit {n} lost acknowledged operation {index} (log has {})",
                    ops.len()
                )
            });
            assert_eq!(
                stored.hash, *hash,
                "round {round}: unit {n} operation {index} has another hash"
            );
        }
        assert_eq!(
            store.head(&unit).await.expect("head").0,
            ops.len() as u64,
            "round {round}: head of unit {n}"
        );
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("crash.db");
    let stderr_path = dir.path().join("child.stderr");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut acked = Acked::new();
    // A fixed-seed generator: the kill points vary from round to round but are the same on every run.
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut kill_points = Vec::new();
    for round in 0..ROUNDS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let kill_after = 15 + (seed % 400) as usize;
        let seen = run_and_kill(&path, &stderr_path, kill_after, &mut acked);
        kill_points.push((kill_after, seen));
        runtime.block_on(check_file(&path, &acked, round));
    }
    let total: usize = kill_points.iter().map(|(_, seen)| seen).sum();
    assert_eq!(acked.len(), total, "every acknowledgement is for a distinct operation");
    eprintln!("kill points (asked, acknowledged): {kill_points:?}; {total} acknowledged operations kept");
}
