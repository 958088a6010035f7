//! Several OS processes on one SQLite file: the revision check keeps concurrent writers safe across processes
//! (no duplicate index, no gap, nothing acknowledged lost), and several processes may open a new file at once
//! (the migrations race).
//!
//! The test binary re-executes itself: the `child_process_entry` test does the child's work when the environment
//! variable `FOLIO_MP_CHILD` is set. Children wait for a start file so that they all begin together.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use serde_json::json;

use folio_core::{DocumentId, Operation, Scope, SyncUnit};
use folio_store::conformance::Chain;
use folio_store::{OperationStore, SqliteStore, StoreError, verify};

/// `<mode> <database> <start file> <child number>`: switches `child_process_entry` into child mode.
const CHILD_ENV: &str = "FOLIO_MP_CHILD";
/// Processes per test.
const PROCESSES: usize = 8;
/// Operations each process commits to the shared unit.
const OPS_PER_PROCESS: usize = 40;

fn shared_unit() -> SyncUnit {
    SyncUnit::main(DocumentId(uuid::Uuid::from_u128(0x5eed_0001)), Scope::Global)
}

fn own_unit(child: usize) -> SyncUnit {
    SyncUnit::main(
        DocumentId(uuid::Uuid::from_u128(0x5eed_1000 + child as u128)),
        Scope::Global,
    )
}

/// Child mode. `shared`: commit `OPS_PER_PROCESS` operations to the shared unit (read head, build, append, retry
/// on a mismatch), printing `ACK <operation id> <index>` for each. `open`: open the (new) file and append to the
/// child's own unit.
#[test]
fn child_process_entry() {
    let Ok(args) = std::env::var(CHILD_ENV) else {
        return;
    };
    let args: Vec<&str> = args.split('\t').collect();
    let [mode, path, start, child] = args[..] else {
        panic!("child: bad arguments {args:?}");
    };
    let child: usize = child.parse().expect("child number");
    let waiting = Instant::now();
    while !Path::new(start).exists() {
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "child: never told to start"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let store = SqliteStore::open(path).await.expect("child: open");
        let mut out = std::io::stdout().lock();
        match mode {
            "shared" => {
                let unit = shared_unit();
                let mut committed = 0;
                let mut mismatches = 0;
                while committed < OPS_PER_PROCESS {
                    let (revision, last) = store.head(&unit).await.expect("child: head");
                    let mut chain = Chain::at(unit.clone(), revision, last);
                    let op = chain.op("SET", json!({ "child": child, "n": committed }));
                    match store.append(&unit, revision, vec![op.clone()]).await {
                        Ok(appended) => {
                            assert!(
                                !appended.replayed && appended.revision == revision + 1,
                                "child: {appended:?}"
                            );
                            writeln!(out, "ACK {} {}", op.id, op.index).expect("write");
                            out.flush().expect("flush");
                            committed += 1;
                        }
                        Err(StoreError::RevisionMismatch { actual, .. }) => {
                            assert!(
                                actual > revision,
                                "child: revision went back from {revision} to {actual}"
                            );
                            mismatches += 1;
                        }
                        Err(e) => panic!("child {child}: append failed: {e}"),
                    }
                }
                writeln!(out, "DONE {mismatches}").expect("write");
            }
            "open" => {
                let unit = own_unit(child);
                let ops = Chain::new(unit.clone()).ops(3);
                store
                    .append(&unit, 0, ops.clone())
                    .await
                    .expect("child: append to its own unit");
                for op in &ops {
                    writeln!(out, "ACK {} {}", op.id, op.index).expect("write");
                }
                writeln!(out, "DONE 0").expect("write");
            }
            other => panic!("child: unknown mode {other}"),
        }
        out.flush().expect("flush");
    });
}

/// What one child reported: acknowledged `(operation id, index)`s and its mismatch count.
struct Report {
    acks: Vec<(String, u64)>,
    mismatches: u64,
}

/// Starts `PROCESSES` children in `mode` on `path`, releases them together, and collects their reports.
fn run_children(mode: &str, path: &Path, dir: &Path) -> Vec<Report> {
    let start: PathBuf = dir.join(format!("start-{mode}"));
    let mut children = Vec::new();
    for child in 0..PROCESSES {
        let stderr_path = dir.join(format!("child-{mode}-{child}.stderr"));
        let args = format!("{mode}\t{}\t{}\t{child}", path.display(), start.display());
        let process = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "child_process_entry", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, args)
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).expect("stderr file"))
            .spawn()
            .expect("spawn child");
        children.push((process, stderr_path));
    }
    std::fs::write(&start, b"go").expect("start file");
    let readers: Vec<_> = children
        .into_iter()
        .map(|(mut process, stderr_path)| {
            let stdout = process.stdout.take().expect("child stdout");
            std::thread::spawn(move || {
                let mut report = Report {
                    acks: Vec::new(),
                    mismatches: 0,
                };
                let mut done = false;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    // libtest may print `test child_process_entry ... ` just before the child's first line.
                    let line = ["ACK ", "DONE "]
                        .iter()
                        .find_map(|tag| line.find(tag).map(|at| &line[at..]))
                        .unwrap_or("");
                    let mut parts = line.split(' ');
                    match (parts.next(), parts.next(), parts.next()) {
                        (Some("ACK"), Some(id), Some(index)) => {
                            report.acks.push((id.to_owned(), index.parse().expect("index")));
                        }
                        (Some("DONE"), Some(mismatches), None) => {
                            report.mismatches = mismatches.parse().expect("count");
                            done = true;
                        }
                        _ => {}
                    }
                }
                let status = process.wait().expect("wait for child");
                let err = std::fs::read_to_string(&stderr_path).unwrap_or_default();
                assert!(status.success() && done, "child failed ({status}):\n{err}");
                report
            })
        })
        .collect();
    readers.into_iter().map(|r| r.join().expect("child reader")).collect()
}

#[test]
fn processes_share_one_unit() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("shared.db");
    let began = Instant::now();
    // The file does not exist yet: the children also race to create and migrate it.
    let reports = run_children("shared", &path, dir.path());
    let elapsed = began.elapsed();

    let mut acked: HashMap<String, u64> = HashMap::new();
    for report in &reports {
        assert_eq!(
            report.acks.len(),
            OPS_PER_PROCESS,
            "each child committed its operations"
        );
        for (id, index) in &report.acks {
            assert!(
                acked.insert(id.clone(), *index).is_none(),
                "operation {id} acknowledged twice"
            );
        }
    }
    let total = PROCESSES * OPS_PER_PROCESS;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = SqliteStore::open(&path).await.expect("open");
        let unit = shared_unit();
        let ops: Vec<Operation> = store.read(&unit, 0, None).try_collect().await.expect("read");
        assert_eq!(ops.len(), total, "the unit holds exactly the acknowledged operations");
        let mut by_index = BTreeMap::new();
        for (i, op) in ops.iter().enumerate() {
            assert_eq!(op.index, i as u64, "dense indexes");
            let id = op.id.to_string();
            assert_eq!(
                acked.get(&id),
                Some(&op.index),
                "operation {id} at index {i} was acknowledged there"
            );
            by_index.insert(op.index, id);
        }
        assert_eq!(
            by_index.len(),
            total,
            "each acknowledged operation is stored exactly once"
        );
        assert_eq!(
            store.head(&unit).await.expect("head"),
            (total as u64, ops[total - 1].hash)
        );
        let report = verify(&store).await.expect("verify");
        assert!(report.is_ok(), "verify: {:?}", report.broken);
        assert_eq!((report.units, report.operations), (1, total as u64));
    });
    let mismatches: u64 = reports.iter().map(|r| r.mismatches).sum();
    eprintln!("{PROCESSES} processes, {total} operations, {mismatches} revision mismatches retried, {elapsed:?}");
}

#[test]
fn processes_open_a_new_file_together() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    for round in 0..3 {
        let path = dir.path().join(format!("new-{round}.db"));
        let round_dir = dir.path().join(format!("round-{round}"));
        std::fs::create_dir(&round_dir).expect("round directory");
        let reports = run_children("open", &path, &round_dir);
        assert!(
            reports.iter().all(|r| r.acks.len() == 3),
            "every child appended after opening"
        );
        runtime.block_on(async {
            let store = SqliteStore::open(&path).await.expect("open");
            for child in 0..PROCESSES {
                assert_eq!(
                    store.head(&own_unit(child)).await.expect("head").0,
                    3,
                    "round {round}: child {child}"
                );
            }
            let report = verify(&store).await.expect("verify");
            assert!(report.is_ok(), "verify: {:?}", report.broken);
            assert_eq!(
                (report.units, report.operations),
                (PROCESSES as u64, 3 * PROCESSES as u64)
            );
            let migrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
                .fetch_one(store.pool())
                .await
                .expect("migrations table");
            let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
                .expect("migrations directory")
                .count() as i64;
            assert_eq!(migrations, files, "round {round}: each migration is recorded once");
        });
    }
}
