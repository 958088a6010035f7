//! The `folio` binary, run as real processes, each test on its own data directory.
//!
//! Global options (`--data-dir`, `--json`, …) go after the subcommand in some calls and before it in others: both
//! must work.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_folio");

/// What one run of `folio` did.
#[derive(Debug)]
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from_output(out: Output) -> Self {
        Self {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "folio failed: {self:#?}");
        &self.stdout
    }

    /// Asserts success and parses stdout as JSON.
    #[track_caller]
    fn json(&self) -> Value {
        let out = self.ok();
        serde_json::from_str(out).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {out:?}"))
    }

    /// Asserts the error contract: exit `code`, one sentence on stderr starting `folio:` and containing
    /// `needle`, nothing on stdout.
    #[track_caller]
    fn fails(&self, code: i32, needle: &str) {
        assert_eq!(self.code, Some(code), "wrong exit code: {self:#?}");
        assert!(self.stdout.is_empty(), "stdout should be empty on error: {self:#?}");
        let err = self.stderr.trim_end();
        // With --json an error is the API's error shape, on one line.
        let json_error = serde_json::from_str::<serde_json::Value>(err)
            .is_ok_and(|v| v["error"]["code"].is_string() && v["error"]["message"].is_string());
        assert!(
            err.starts_with("folio: ") || json_error,
            "stderr should start with `folio: ` (or be a JSON error): {self:#?}"
        );
        assert_eq!(err.lines().count(), 1, "stderr should be one line: {self:#?}");
        assert!(err.contains(needle), "stderr should mention {needle:?}: {self:#?}");
    }
}

/// A `folio` command with a clean environment (no FOLIO_* variables leaking in from the caller).
fn command() -> Command {
    let mut cmd = Command::new(BIN);
    for var in [
        "FOLIO_DATA_DIR",
        "FOLIO_DATABASE_URL",
        "FOLIO_SERVER",
        "FOLIO_TOKEN",
        "FOLIO_LOG",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("RUST_BACKTRACE", "0");
    cmd.stdin(Stdio::null());
    cmd
}

fn folio(args: &[&str]) -> Run {
    Run::from_output(command().args(args).output().expect("cannot run folio"))
}

/// A data directory, removed at the end of the test.
struct Store {
    tmp: TempDir,
}

impl Store {
    fn new() -> Self {
        Self {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn dir(&self) -> &str {
        self.tmp.path().to_str().expect("utf-8 temp path")
    }

    fn db(&self) -> PathBuf {
        self.tmp.path().join("folio.db")
    }

    /// `folio ARGS --data-dir DIR`: the option after the subcommand.
    fn run(&self, args: &[&str]) -> Run {
        let mut all = args.to_vec();
        all.extend(["--data-dir", self.dir()]);
        folio(&all)
    }

    /// `folio --data-dir DIR ARGS`: the option before the subcommand.
    fn run_before(&self, args: &[&str]) -> Run {
        let mut all = vec!["--data-dir", self.dir()];
        all.extend(args);
        folio(&all)
    }

    fn create(&self, name: &str) -> String {
        let run = self.run(&["doc", "create", "folio/todo-list", "--name", name]);
        let id = run.ok().trim().to_owned();
        uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("doc create printed {id:?}, not a UUID: {e}"));
        id
    }

    fn add(&self, id: &str, item: &str, title: &str) -> u64 {
        let input = format!(r#"{{"id":"{item}","title":"{title}"}}"#);
        let run = self.run(&["doc", "apply", id, "ADD_TODO", &input]);
        parse_revision(run.ok())
    }

    fn get(&self, id: &str) -> Value {
        self.run(&["doc", "get", id, "--json"]).json()
    }

    fn revision(&self, id: &str) -> u64 {
        self.get(id)["header"]["revision"]["global"]
            .as_u64()
            .expect("header.revision.global")
    }

    fn log(&self, id: &str) -> Vec<Value> {
        let log = self.run_before(&["--json", "doc", "log", id]).json();
        log["operations"].as_array().expect("operations array").clone()
    }

    fn assert_verifies(&self) {
        let run = self.run(&["verify"]);
        assert!(run.ok().starts_with("ok"), "verify: {run:#?}");
        let report = self.run_before(&["verify", "--json"]).json();
        assert_eq!(report["ok"], true, "verify --json: {report}");
    }

    /// A `folio doc apply` process, not waited for.
    fn spawn_add(&self, id: &str, item: &str) -> Child {
        let input = format!(r#"{{"id":"{item}","title":"title of {item}"}}"#);
        command()
            .args(["doc", "apply", id, "ADD_TODO", &input, "--data-dir", self.dir()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot spawn folio")
    }
}

#[track_caller]
fn parse_revision(out: &str) -> u64 {
    out.trim()
        .parse()
        .unwrap_or_else(|e| panic!("expected a revision, got {out:?}: {e}"))
}

fn is_hex64(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The ids of the todo items in a Document's global state.
fn items(doc: &Value) -> Vec<String> {
    let mut ids: Vec<String> = doc["state"]["global"]["items"]
        .as_object()
        .unwrap_or_else(|| panic!("state.global.items is not an object: {doc}"))
        .keys()
        .cloned()
        .collect();
    ids.sort();
    ids
}

#[test]
fn full_session() {
    let store = Store::new();
    let id = store.create("Groceries");

    // Each apply prints the new global revision.
    assert_eq!(store.add(&id, "a", "Apples"), 1);
    let run = store.run_before(&["doc", "apply", &id, "ADD_TODO", r#"{"id":"b","title":"Bread"}"#]);
    assert_eq!(parse_revision(run.ok()), 2);

    // Human output.
    let human = store.run(&["doc", "get", &id]);
    let human = human.ok();
    for needle in ["Groceries", "folio/todo-list", &id, "Apples", "Bread", "global 2"] {
        assert!(human.contains(needle), "doc get should mention {needle:?}:\n{human}");
    }

    // JSON: a Document of spec/http.md.
    let doc = store.run(&["doc", "get", &id, "--json"]).json();
    assert_eq!(doc["header"]["id"], id.as_str());
    assert_eq!(doc["header"]["documentType"], "folio/todo-list");
    assert_eq!(doc["header"]["name"], "Groceries");
    assert_eq!(doc["header"]["branch"], "main");
    assert_eq!(doc["header"]["revision"]["global"], 2);
    assert_eq!(doc["header"]["revision"]["local"], 0);
    assert!(doc["header"]["createdAtUtcIso"].is_string(), "{doc}");
    assert!(doc["header"]["lastModifiedAtUtcIso"].is_string(), "{doc}");
    assert!(doc["state"]["global"].is_object(), "{doc}");
    assert!(doc["state"]["local"].is_object(), "{doc}");
    assert!(is_hex64(&doc["stateHash"]), "stateHash: {doc}");
    assert_eq!(doc["state"]["global"]["items"]["a"]["title"], "Apples");
    assert_eq!(items(&doc), ["a", "b"]);

    // Time travel.
    let at1 = store
        .run_before(&["--json", "doc", "get", &id, "--revision", "1"])
        .json();
    assert_eq!(at1["header"]["revision"]["global"], 1);
    assert_eq!(items(&at1), ["a"]);
    assert_ne!(at1["stateHash"], doc["stateHash"]);
    let at0 = store.run(&["doc", "get", &id, "--revision", "0", "--json"]).json();
    assert_eq!(items(&at0), Vec::<String>::new());
    // The head, read again, is unchanged by the reads of the past.
    assert_eq!(store.get(&id), doc);

    // The history.
    let ops = store.log(&id);
    assert_eq!(ops.len(), 2, "{ops:?}");
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op["index"], i as u64, "{op}");
        assert!(is_hex64(&op["hash"]), "hash: {op}");
        assert_eq!(op["action"]["type"], "ADD_TODO");
        assert_eq!(op["action"]["scope"], "global");
        let ts = op["timestampUtcMs"]
            .as_str()
            .unwrap_or_else(|| panic!("timestampUtcMs is not a string: {op}"));
        assert!(
            ts.parse::<u64>().is_ok_and(|ms| ms > 1_600_000_000_000),
            "timestampUtcMs: {op}"
        );
        assert!(op["action"]["timestampUtcMs"].is_string(), "{op}");
        assert_eq!(op["id"], op["action"]["id"]);
    }
    assert_eq!(ops[1]["action"]["input"]["title"], "Bread");
    let human_log = store.run(&["doc", "log", &id]);
    let human_log = human_log.ok();
    assert!(
        human_log.contains("ADD_TODO") && human_log.contains("Bread"),
        "{human_log}"
    );
    let document_log = store.run(&["doc", "log", &id, "--scope", "document"]);
    assert!(document_log.ok().contains("CREATE_DOCUMENT"), "{document_log:#?}");
    let document_ops = store.run(&["doc", "log", &id, "--scope", "document", "--json"]).json();
    assert_eq!(document_ops["operations"][0]["action"]["type"], "CREATE_DOCUMENT");

    // `doc create --json` prints the Document it created.
    let created = store
        .run(&["doc", "create", "folio/todo-list", "--name", "Second", "--json"])
        .json();
    assert_eq!(created["header"]["name"], "Second");
    assert_eq!(created["header"]["documentType"], "folio/todo-list");
    assert_eq!(created["header"]["revision"]["global"], 0);
    assert!(is_hex64(&created["stateHash"]), "{created}");
    let second = created["header"]["id"].as_str().expect("header.id").to_owned();
    assert_eq!(store.get(&second)["header"]["name"], "Second");

    // `doc apply --json` prints the completed job.
    let job = store
        .run(&[
            "doc",
            "apply",
            &id,
            "ADD_TODO",
            r#"{"id":"c","title":"Cheese"}"#,
            "--json",
        ])
        .json();
    assert!(
        job["jobId"].as_str().is_some_and(|s| uuid::Uuid::parse_str(s).is_ok()),
        "{job}"
    );
    assert_eq!(job["status"], "completed");
    assert_eq!(job["revision"], 3);
    let job_ops = job["operations"].as_array().expect("operations");
    assert_eq!(job_ops.len(), 1);
    assert_eq!(job_ops[0]["index"], 2);
    assert_eq!(job_ops[0]["action"]["type"], "ADD_TODO");
    assert_eq!(job_ops[0]["hash"], store.log(&id)[2]["hash"]);

    store.assert_verifies();
    let report = store.run(&["verify", "--json"]).json();
    assert_eq!(report["units"], 3, "two document units and one global unit: {report}");
    assert_eq!(report["operations"], 5, "{report}");
    assert!(report["broken"].is_null(), "{report}");

    // The same store through --database-url.
    let url = format!("sqlite://{}", store.db().display());
    let via_url = folio(&["doc", "get", &id, "--database-url", &url, "--json"]).json();
    assert_eq!(via_url["header"]["revision"]["global"], 3);
}

#[test]
fn an_empty_history_is_said_so() {
    let store = Store::new();
    let id = store.create("");
    let human = store.run(&["doc", "get", &id]);
    assert!(human.ok().contains("(unnamed)"), "{human:#?}");
    let log = store.run(&["doc", "log", &id]);
    assert!(log.ok().contains("no operations"), "{log:#?}");
    assert_eq!(store.log(&id), Vec::<Value>::new());
}

#[test]
fn a_rejected_action_is_reported_and_stores_nothing() {
    let store = Store::new();
    let id = store.create("N");
    store.add(&id, "a", "A");
    store
        .run(&["doc", "apply", &id, "ADD_TODO", r#"{"id":"x","title":""}"#])
        .fails(1, "EMPTY_TITLE");
    assert_eq!(store.revision(&id), 1);
    assert_eq!(store.log(&id).len(), 1);
    // The next apply continues from there.
    assert_eq!(store.add(&id, "b", "B"), 2);
    store.assert_verifies();
}

#[test]
fn invalid_json_input_is_a_usage_error() {
    let store = Store::new();
    let id = store.create("N");
    store
        .run_before(&["doc", "apply", &id, "ADD_TODO", r#"{"id":"x","#])
        .fails(2, "not valid JSON");
    assert_eq!(store.revision(&id), 0);
    store.assert_verifies();
}

#[test]
fn a_bad_uuid_is_a_usage_error() {
    let store = Store::new();
    let id = store.create("N");
    store
        .run(&["doc", "apply", "not-a-uuid", "ADD_TODO", r#"{"id":"x","title":"X"}"#])
        .fails(2, "not-a-uuid");
    store.run(&["doc", "get", "1234"]).fails(2, "UUID");
    store.run_before(&["doc", "log", "zzz"]).fails(2, "UUID");
    assert_eq!(store.revision(&id), 0);
}

#[test]
fn an_unknown_document_is_not_found() {
    let store = Store::new();
    store.create("N");
    let missing = uuid::Uuid::now_v7().to_string();
    store.run(&["doc", "get", &missing]).fails(1, "not found");
    store.run(&["doc", "get", &missing, "--json"]).fails(1, "not found");
    store.run_before(&["doc", "log", &missing]).fails(1, "not found");
    store
        .run(&["doc", "apply", &missing, "ADD_TODO", r#"{"id":"x","title":"X"}"#])
        .fails(1, "not found");
    let report = store.run(&["verify", "--json"]).json();
    assert_eq!(report["units"], 1, "only the created document's unit: {report}");
}

#[test]
fn an_unknown_document_type_creates_nothing() {
    let store = Store::new();
    store
        .run(&["doc", "create", "folio/no-such-type", "--name", "N"])
        .fails(1, "folio/no-such-type");
    let report = store.run(&["verify", "--json"]).json();
    assert_eq!(report["units"], 0, "{report}");
    assert_eq!(report["operations"], 0, "{report}");
}

#[test]
fn an_unknown_scope_is_a_usage_error() {
    let store = Store::new();
    let id = store.create("N");
    store
        .run(&[
            "doc",
            "apply",
            &id,
            "ADD_TODO",
            r#"{"id":"x","title":"X"}"#,
            "--scope",
            "sideways",
        ])
        .fails(2, "sideways");
    store
        .run(&["doc", "log", &id, "--scope", "sideways"])
        .fails(2, "sideways");
    assert_eq!(store.revision(&id), 0);
}

#[test]
fn an_unknown_action_type_is_rejected() {
    let store = Store::new();
    let id = store.create("N");
    store
        .run(&["doc", "apply", &id, "FROBNICATE", "{}"])
        .fails(1, "UNKNOWN_ACTION");
    // A known action in a scope that has no such action.
    store
        .run(&[
            "doc",
            "apply",
            &id,
            "ADD_TODO",
            r#"{"id":"x","title":"X"}"#,
            "--scope",
            "local",
        ])
        .fails(1, "UNKNOWN_ACTION");
    assert_eq!(store.revision(&id), 0);
    assert_eq!(store.get(&id)["header"]["revision"]["local"], 0);
    store.assert_verifies();
}

/// `--database-url postgres://…` (FOLIO_TEST_DATABASE_URL's server; scripts/test provides it): commands work on
/// the database; a read of a database without folio's tables creates nothing; an unreachable server is a clear
/// failure that does not print the password.
#[test]
fn postgres_urls_open_a_postgres_store() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let db = runtime.block_on(folio_store::pg_testing::TestDatabase::create());
    let url = db.url.as_str();
    folio(&["verify", "--database-url", url]).fails(1, "not a folio store");
    folio(&["--database-url", url, "verify"]).fails(1, "not a folio store");
    let id = folio(&[
        "doc",
        "create",
        "folio/todo-list",
        "--name",
        "pg",
        "--database-url",
        url,
    ])
    .ok()
    .trim()
    .to_owned();
    folio(&[
        "doc",
        "apply",
        &id,
        "ADD_TODO",
        r#"{"id":"a","title":"A"}"#,
        "--database-url",
        url,
    ])
    .ok();
    let doc = folio(&["doc", "get", &id, "--json", "--database-url", url]).json();
    assert_eq!(doc["state"]["global"]["items"]["a"]["title"], "A");
    assert_eq!(doc["header"]["name"], "pg");
    assert!(
        folio(&["verify", "--database-url", url])
            .ok()
            .starts_with("ok: 2 units, 2 operations")
    );

    let unreachable = folio(&[
        "doc",
        "get",
        &id,
        "--database-url",
        "postgres://folio:s3cret@127.0.0.1:1/folio",
    ]);
    unreachable.fails(1, "cannot open the store at postgres://folio:***@127.0.0.1:1/folio");
    assert!(
        !unreachable.stderr.contains("s3cret"),
        "the password is not printed: {unreachable:#?}"
    );
    folio(&["doc", "get", &id, "--database-url", "mysql://x"]).fails(2, "unsupported database URL");
}

#[test]
fn reads_of_a_missing_store_create_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("typo");
    let dir = dir.to_str().expect("utf-8");
    let id = uuid::Uuid::now_v7().to_string();
    folio(&["doc", "get", &id, "--data-dir", dir]).fails(1, "no folio store");
    folio(&["--data-dir", dir, "doc", "log", &id]).fails(1, "no folio store");
    folio(&["verify", "--data-dir", dir]).fails(1, "no folio store");
    assert!(!Path::new(dir).exists(), "a read must not create the data directory");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let store = Store::new();
    let id = store.create("N");
    for i in 0..3 {
        store.add(&id, &format!("i{i}"), "T");
    }
    // The reader is gone before folio writes: `println!` would panic (exit 101).
    let mut child = command()
        .args(["doc", "log", &id, "--data-dir", store.dir()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "stderr: {stderr}");
    assert!(stderr.is_empty(), "stderr: {stderr}");
}

/// Checks the document after a storm of applies: every acknowledged item is there, the log is dense, each
/// committed operation added exactly one item, and the store verifies.
fn check_after_storm(store: &Store, id: &str, acknowledged: &[(String, u64)]) {
    let doc = store.get(id);
    let present = items(&doc);
    for (item, revision) in acknowledged {
        assert!(
            present.contains(item),
            "acknowledged item {item} (revision {revision}) is missing: {doc}"
        );
    }
    let mut revisions: Vec<u64> = acknowledged.iter().map(|(_, r)| *r).collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(
        revisions.len(),
        acknowledged.len(),
        "two applies acknowledged the same revision: {acknowledged:?}"
    );
    let ops = store.log(id);
    for (i, op) in ops.iter().enumerate() {
        assert_eq!(op["index"], i as u64, "indexes must be dense: {op}");
    }
    let global = doc["header"]["revision"]["global"].as_u64().expect("revision");
    assert_eq!(global, ops.len() as u64);
    assert_eq!(present.len() as u64, global, "one item per committed operation");
    assert!(revisions.last().is_none_or(|&r| r <= global));
    store.assert_verifies();
}

#[test]
fn kill_9_during_a_stream_of_applies_loses_nothing_acknowledged() {
    let store = Store::new();
    let id = store.create("storm");
    let mut acknowledged = Vec::new();
    let mut killed = 0;
    for i in 0..42u64 {
        let item = format!("k{i}");
        let mut child = store.spawn_add(&id, &item);
        if i % 3 == 0 {
            // A delay spread over 0 to 40 ms (0, 17, 34, 10, 27, …): an apply takes some tens of ms, so some die
            // before opening the store, some before or during the commit, some after it.
            thread::sleep(Duration::from_millis((i / 3 * 17) % 41));
            // SIGKILL on Unix. It may have exited already; then it is simply reaped below.
            let _ = child.kill();
            killed += 1;
        }
        let out = child.wait_with_output().expect("wait");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success()
            && let Ok(revision) = stdout.trim().parse::<u64>()
        {
            acknowledged.push((item, revision));
        } else if i % 3 != 0 {
            panic!(
                "apply {i} was not killed but failed: {:?}\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    assert_eq!(killed, 14);
    assert!(
        acknowledged.len() >= 28,
        "every apply not killed is acknowledged: {acknowledged:?}"
    );
    check_after_storm(&store, &id, &acknowledged);
    let committed = store.revision(&id) as usize;
    eprintln!(
        "{killed} applies killed: {} after they acknowledged, {} after they committed but before they acknowledged",
        acknowledged.len() + killed - 42,
        committed - acknowledged.len()
    );
    // The store takes writes after the storm.
    let next = store.add(&id, "after", "after the storm");
    assert_eq!(next, store.revision(&id));
}

#[test]
fn concurrent_applies_all_succeed() {
    let store = Store::new();
    let id = store.create("concurrent");
    let mut acknowledged = Vec::new();
    for round in 0..4 {
        let children: Vec<(String, Child)> = (0..6)
            .map(|i| {
                let item = format!("r{round}-{i}");
                let child = store.spawn_add(&id, &item);
                (item, child)
            })
            .collect();
        for (item, child) in children {
            let out = Run::from_output(child.wait_with_output().expect("wait"));
            acknowledged.push((item, parse_revision(out.ok())));
        }
    }
    check_after_storm(&store, &id, &acknowledged);
    assert_eq!(store.revision(&id), 24);
}

#[test]
fn concurrent_creates_on_a_new_store_all_succeed() {
    // Six processes open (and migrate) a store that does not exist yet.
    let store = Store::new();
    let children: Vec<Child> = (0..6)
        .map(|i| {
            command()
                .args([
                    "doc",
                    "create",
                    "folio/todo-list",
                    "--name",
                    &format!("n{i}"),
                    "--data-dir",
                    store.dir(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut ids: Vec<String> = children
        .into_iter()
        .map(|child| {
            Run::from_output(child.wait_with_output().expect("wait"))
                .ok()
                .trim()
                .to_owned()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 6);
    for id in &ids {
        assert_eq!(store.revision(id), 0);
    }
    store.assert_verifies();
    assert_eq!(store.run(&["verify", "--json"]).json()["units"], 6);
}

/// Runs one statement on the SQLite file and returns the rows it changed.
fn sql(db: &Path, statement: &str) -> u64 {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open the SQLite file");
        let done = sqlx::query(statement).execute(&mut conn).await.expect("statement");
        conn.close().await.expect("close");
        done.rows_affected()
    })
}

fn sql_text(db: &Path, query: &str) -> String {
    use sqlx::Connection;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let options = sqlx::sqlite::SqliteConnectOptions::new().filename(db);
        let mut conn = sqlx::SqliteConnection::connect_with(&options)
            .await
            .expect("open the SQLite file");
        let text: String = sqlx::query_scalar(query).fetch_one(&mut conn).await.expect("query");
        conn.close().await.expect("close");
        text
    })
}

#[test]
fn a_corrupted_store_is_detected() {
    let store = Store::new();
    let id = store.create("N");
    store.add(&id, "a", "A");
    store.add(&id, "b", "B");
    store.add(&id, "c", "C");
    store.assert_verifies();

    // Change the stored input of the global operation at index 1 (the only unit with an index 1; one apply, one
    // chunk, small enough to be stored uncompressed): its title `"B"` becomes `"C"`.
    let before = sql_text(&store.db(), "SELECT hex(data) FROM log WHERE idx = 1");
    assert_eq!(
        sql(
            &store.db(),
            "UPDATE log SET data = substr(data, 1, instr(data, x'224222')) || x'43' \
             || substr(data, instr(data, x'224222') + 2) WHERE idx = 1 AND instr(data, x'224222') > 0"
        ),
        1
    );
    let after = sql_text(&store.db(), "SELECT hex(data) FROM log WHERE idx = 1");
    assert_ne!(before, after, "the update must change the stored action");

    let run = store.run(&["verify"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.contains("BROKEN"), "{run:#?}");
    assert!(run.stdout.contains(&format!("{id}/global/main")), "the unit: {run:#?}");
    assert!(run.stdout.contains("index 1"), "the index: {run:#?}");
    assert!(
        run.stderr.starts_with("folio: ") && run.stderr.trim_end().lines().count() == 1,
        "{run:#?}"
    );

    let run = store.run_before(&["verify", "--json"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    let report: Value = serde_json::from_str(&run.stdout).expect("verify --json prints a report");
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["broken"]["index"], 1, "{report}");
    assert_eq!(report["broken"]["unit"]["documentId"], id.as_str(), "{report}");
    assert_eq!(report["broken"]["unit"]["scope"], "global", "{report}");
}

/// A store holding an operation its model refuses now (the 200,000-segment `SET` that the version before the depth
/// bound accepted, appended directly): `verify` finds the chains intact, names the document no read can replay, and
/// fails; the other documents read as before.
#[test]
fn verify_names_a_document_that_cannot_be_replayed() {
    use folio_core::{Action, HlcTimestamp, Operation, Scope, SyncUnit};
    use folio_store::OperationStore;

    let store = Store::new();
    let good = store.create("good");
    store.add(&good, "a", "A");
    let bad = store
        .run(&["doc", "create", "folio/json", "--name", "bad"])
        .ok()
        .trim()
        .to_owned();
    store
        .run(&["doc", "apply", &bad, "SET", r#"{"path":"/ok","value":1}"#])
        .ok();
    store.assert_verifies();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sqlite = folio_store::SqliteStore::open(store.db()).await.unwrap();
        let unit = SyncUnit::main(bad.parse().unwrap(), Scope::Global);
        let (revision, head) = sqlite.head(&unit).await.unwrap();
        let action = Action::new(
            "SET",
            serde_json::json!({"path": "/a".repeat(200_000), "value": 1}),
            Scope::Global,
            HlcTimestamp::new(folio_core::clock::system_millis(), 0),
        );
        let op = Operation::new(action, revision, 0, None, &head);
        sqlite.append(&unit, revision, vec![op]).await.unwrap();
    });

    let human = store.run(&["verify"]);
    assert_eq!(human.code, Some(1), "{human:#?}");
    assert!(
        human.stdout.starts_with(&format!("UNREADABLE: document {bad}")),
        "{human:#?}"
    );
    assert!(
        human.stderr.starts_with("folio: ") && human.stderr.contains(&bad),
        "{human:#?}"
    );
    let report = store.run(&["verify", "--json"]);
    assert_eq!(report.code, Some(1), "{report:#?}");
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    assert!(report["broken"].is_null(), "the chains are intact: {report}");
    assert_eq!(report["unreadable"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["unreadable"][0]["documentId"], bad.as_str());
    let reason = report["unreadable"][0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("CORRUPT_HISTORY") && reason.contains("STATE_TOO_DEEP"),
        "{reason}"
    );
    // Everything else reads as before.
    assert_eq!(store.revision(&good), 1);
    store.run(&["doc", "get", &bad]).fails(1, "STATE_TOO_DEEP");
}

/// A remote that is not http:// or https:// is refused before anything is opened or sent; an https:// remote
/// nobody answers is unreachable (TLS itself is tested in `production.rs`).
#[test]
fn sync_refuses_a_remote_of_another_scheme_up_front() {
    let store = Store::new();
    store
        .run(&["sync", "--remote", "ftp://folio.example", "--token", "t"])
        .fails(2, "not an http:// or https:// URL");
    assert!(!Path::new(store.dir()).join("folio.db").exists(), "nothing was opened");
    store
        .run(&["sync", "--remote", "https://127.0.0.1:1", "--token", "t"])
        .fails(1, "unreachable");
}

/// `doc apply --action-id`: the same action again is a retry (the original revision, nothing appended), another
/// action under the id is refused, and a bad id is a usage error.
#[test]
fn apply_with_an_action_id_is_retried_once() {
    let store = Store::new();
    let id = store.create("groceries");
    let action_id = uuid::Uuid::now_v7().to_string();
    let apply = |input: &str| store.run(&["doc", "apply", &id, "ADD_TODO", input, "--action-id", &action_id]);
    assert_eq!(apply(r#"{"id":"milk","title":"Milk"}"#).ok().trim(), "1");
    store.add(&id, "eggs", "Eggs");
    assert_eq!(
        apply(r#"{"id":"milk","title":"Milk"}"#).ok().trim(),
        "1",
        "the original outcome"
    );
    apply(r#"{"id":"milk","title":"Oat milk"}"#).fails(1, "DUPLICATE_ACTION_ID");
    assert_eq!(store.revision(&id), 2, "each action once");
    store
        .run(&["doc", "apply", &id, "ADD_TODO", "{}", "--action-id", "nope"])
        .fails(2, "--action-id");
    store.assert_verifies();
}

/// `folio verify` checks signatures: an action whose content was changed after its author signed it, written into
/// the database with a correct hash chain (what someone with access to the database but not the key can do), is
/// named `BAD_SIGNATURE`.
#[test]
fn verify_names_an_action_changed_after_it_was_signed() {
    use folio_store::OperationStore;
    let store = Store::new();
    let id = store.create("signed");
    store.add(&id, "milk", "Buy milk");
    let report = store.run(&["verify", "--json"]).json();
    assert_eq!(
        report["signed"], report["operations"],
        "every action is signed by the store's key: {report}"
    );
    let log = store.log(&id);
    let signed: folio_core::Action = serde_json::from_value(log[0]["action"].clone()).unwrap();
    assert!(signed.signature.is_some());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let db = folio_store::SqliteStore::open(store.db()).await.unwrap();
        let unit = folio_core::SyncUnit::main(id.parse().unwrap(), folio_core::Scope::Global);
        let (revision, head) = db.head(&unit).await.unwrap();
        let mut forged = signed.clone();
        forged.id = uuid::Uuid::now_v7();
        forged.timestamp_utc_ms += 1;
        forged.input = serde_json::json!({"id": "milk", "title": "Buy poison"});
        let op = folio_core::Operation::new(forged, revision, 0, None, &head);
        db.append(&unit, revision, vec![op]).await.unwrap();
    });
    let run = store.run(&["verify"]);
    assert_eq!(run.code, Some(1), "{run:#?}");
    assert!(run.stdout.contains("BAD_SIGNATURE"), "{run:#?}");
    let report = store.run(&["verify", "--json"]);
    let report: Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["broken"]["index"], 1, "{report}");
    assert!(
        report["broken"]["reason"]
            .as_str()
            .unwrap()
            .starts_with("BAD_SIGNATURE: "),
        "{report}"
    );
}
