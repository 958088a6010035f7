//! `folio sync --remote s3://…` and `folio promote` as processes, on a real S3-compatible server (s3s-fs, SigV4)
//! started by `scripts/test` (`scripts/s3-server`). Credentials reach the processes through the usual AWS
//! variables; the endpoint through `--s3-endpoint`. Without `FOLIO_TEST_S3_ENDPOINT` these tests skip, unless `CI`
//! or `FOLIO_REQUIRE_SERVICES` is set: then they fail, saying what is missing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn folio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_folio")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = folio(args);
    assert!(
        out.status.success(),
        "folio {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The bucket address (a prefix of its own) and the endpoint, or None to skip.
fn bucket(test: &str) -> Option<(String, String)> {
    let Ok(endpoint) = std::env::var("FOLIO_TEST_S3_ENDPOINT") else {
        if std::env::var_os("CI").is_some() || std::env::var_os("FOLIO_REQUIRE_SERVICES").is_some() {
            panic!(
                "FOLIO_TEST_S3_ENDPOINT is not set: run the tests through scripts/test, which starts an S3-compatible \
                 server (scripts/s3-server), or unset CI and FOLIO_REQUIRE_SERVICES to skip the bucket tests"
            );
        }
        eprintln!("skipping {test}: FOLIO_TEST_S3_ENDPOINT is not set (run scripts/test)");
        return None;
    };
    let name = std::env::var("FOLIO_TEST_S3_BUCKET").unwrap_or_else(|_| "folio-test".to_owned());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    Some((format!("s3://{name}/cli-{test}-{nanos}"), endpoint))
}

fn create(dir: &str) -> String {
    ok(&[
        "doc",
        "create",
        "folio/todo-list",
        "--name",
        "Groceries",
        "--data-dir",
        dir,
    ])
    .trim()
    .to_owned()
}

fn add(dir: &str, id: &str, item: &str) {
    let input = format!(r#"{{"id":"{item}","title":"{item}"}}"#);
    ok(&["doc", "apply", id, "ADD_TODO", &input, "--data-dir", dir]);
}

fn doc(dir: &str, id: &str) -> Value {
    serde_json::from_str(&ok(&["doc", "get", id, "--data-dir", dir, "--json"])).unwrap()
}

#[test]
fn replicas_sync_through_a_bucket_with_a_promoter_and_snapshots() {
    let Some((remote, endpoint)) = bucket("sync") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, p] = ["a", "b", "promoter"].map(|n| tmp.path().join(n).to_str().unwrap().to_owned());
    let id = create(&a);
    add(&a, &id, "milk");
    let s3 = ["--remote", remote.as_str(), "--s3-endpoint", endpoint.as_str()];
    let human = ok(&[&["sync"], &s3[..], &["--data-dir", &a]].concat());
    assert!(human.contains("uploaded 2 actions in 1 objects"), "{human}");
    let promoted = ok(&[&["promote", "--snapshot"], &s3[..], &["--data-dir", &p]].concat());
    assert!(promoted.contains("promoted 2 actions (2 new)"), "{promoted}");
    assert!(promoted.contains("snapshot index snapshot-index/"), "{promoted}");
    // B starts from the snapshot.
    let report: Value =
        serde_json::from_str(&ok(&[&["sync"], &s3[..], &["--data-dir", &b, "--json"]].concat())).unwrap();
    assert_eq!(report["report"]["pulledNew"], 2, "{report}");
    assert!(report["report"]["bootstrappedFrom"].is_string(), "{report}");
    assert_eq!(doc(&a, &id)["stateHash"], doc(&b, &id)["stateHash"]);
    ok(&["verify", "--data-dir", &b]);
    // A filter cannot be kept by a bucket round.
    let filtered = folio(&[&["sync"], &s3[..], &["--data-dir", &b, "--document", &id]].concat());
    assert_eq!(filtered.status.code(), Some(2), "{filtered:?}");
    // No endpoint, no credentials: a named failure, not a hang.
    let bad = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "sync",
            "--remote",
            &remote,
            "--s3-endpoint",
            "http://127.0.0.1:9",
            "--data-dir",
            &b,
        ])
        .env("AWS_ACCESS_KEY_ID", "nobody")
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("sync with s3://"),
        "{bad:?}"
    );
}

#[test]
fn a_sync_killed_mid_round_loses_nothing() {
    let Some((remote, endpoint)) = bucket("kill") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, p] = ["a", "b", "promoter"].map(|n| tmp.path().join(n).to_str().unwrap().to_owned());
    let s3 = ["--remote", remote.as_str(), "--s3-endpoint", endpoint.as_str()];
    let id = create(&a);
    let mut items = Vec::new();
    // Kill `folio sync` with SIGKILL at different points of its round (a whole round takes about 70 ms here:
    // opening the store, uploading, recording the upload, reading the shared area): wherever it dies, the next
    // round completes it.
    for (i, after_ms) in [2u64, 10, 20, 30, 40, 50, 60, 70, 90].into_iter().enumerate() {
        let item = format!("item{i}");
        add(&a, &id, &item);
        items.push(item);
        let mut child = Command::new(env!("CARGO_BIN_EXE_folio"))
            .args([&["sync"], &s3[..], &["--data-dir", &a]].concat())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        let _ = child.kill(); // SIGKILL; it may have finished already
        child.wait().unwrap();
    }
    ok(&[&["sync"], &s3[..], &["--data-dir", &a]].concat());
    ok(&[&["promote"], &s3[..], &["--data-dir", &p]].concat());
    ok(&[&["sync"], &s3[..], &["--data-dir", &b]].concat());
    let state = doc(&b, &id);
    for item in &items {
        assert!(
            state["state"]["global"]["items"][item].is_object(),
            "{item} lost: {state}"
        );
    }
    assert_eq!(state["stateHash"], doc(&a, &id)["stateHash"]);
    ok(&["verify", "--data-dir", &a]);
    ok(&["verify", "--data-dir", &b]);
}

#[test]
fn watch_polls_the_bucket() {
    let Some((remote, endpoint)) = bucket("watch") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let [a, b, p] = ["a", "b", "promoter"].map(|n| tmp.path().join(n).to_str().unwrap().to_owned());
    let s3 = ["--remote", remote.as_str(), "--s3-endpoint", endpoint.as_str()];
    let id = create(&a);
    let mut watcher = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(
            [
                &["sync", "--watch", "--poll-interval", "1"],
                &s3[..],
                &["--data-dir", &b, "--json"],
            ]
            .concat(),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = watcher.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    ok(&[&["sync"], &s3[..], &["--data-dir", &a]].concat());
    ok(&[&["promote"], &s3[..], &["--data-dir", &p]].concat());
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pulled = 0;
    while pulled == 0 && Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let event: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(event["event"], "round", "{event}");
            pulled = event["report"]["pulledNew"].as_u64().unwrap();
        }
    }
    let _ = watcher.kill();
    watcher.wait().unwrap();
    assert_eq!(pulled, 1, "the watcher pulled the new document by polling");
    assert_eq!(doc(&a, &id)["stateHash"], doc(&b, &id)["stateHash"]);
}
