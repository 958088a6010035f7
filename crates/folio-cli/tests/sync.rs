//! `folio sync` as a process against a `folio serve` process: a document made on one replica reaches another, the
//! JSON report, filters, `--watch` delivering live and stopping on SIGTERM, and named errors.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

fn folio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_folio")).args(args).output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = folio(args);
    assert!(
        out.status.success(),
        "folio {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

struct Server {
    child: Child,
    base: String,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "serve",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..400 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() && dir.join("admin.token").exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let token = std::fs::read_to_string(dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    Server { child, base, token }
}

fn state_hash(dir: &str, id: &str) -> String {
    let doc: Value = serde_json::from_str(&ok(&["doc", "get", id, "--data-dir", dir, "--json"])).unwrap();
    doc["stateHash"].as_str().unwrap().to_owned()
}

#[test]
fn a_document_made_on_one_replica_reaches_another() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(&tmp.path().join("server"));
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let id = ok(&[
        "doc",
        "create",
        "folio/todo-list",
        "--name",
        "Groceries",
        "--data-dir",
        a,
    ])
    .trim()
    .to_owned();
    ok(&[
        "doc",
        "apply",
        &id,
        "ADD_TODO",
        r#"{"id":"milk","title":"Milk"}"#,
        "--data-dir",
        a,
    ]);
    let human = ok(&[
        "sync",
        "--remote",
        &server.base,
        "--token",
        &server.token,
        "--data-dir",
        a,
    ]);
    assert!(human.contains("pushed 2 (2 new there)"), "{human}");
    let report: Value = serde_json::from_str(&ok(&[
        "sync",
        "--remote",
        &server.base,
        "--token",
        &server.token,
        "--data-dir",
        b,
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["report"]["pulled"], 2, "{report}");
    assert_eq!(report["report"]["pulledNew"], 2, "{report}");
    assert_eq!(state_hash(a, &id), state_hash(b, &id));
    // Changes on B come back to A; both verify.
    ok(&[
        "doc",
        "apply",
        &id,
        "UPDATE_TODO",
        r#"{"id":"milk","done":true}"#,
        "--data-dir",
        b,
    ]);
    ok(&[
        "sync",
        "--remote",
        &server.base,
        "--token",
        &server.token,
        "--data-dir",
        b,
    ]);
    ok(&[
        "sync",
        "--remote",
        &server.base,
        "--token",
        &server.token,
        "--data-dir",
        a,
    ]);
    assert_eq!(state_hash(a, &id), state_hash(b, &id));
    let doc: Value = serde_json::from_str(&ok(&["doc", "get", &id, "--data-dir", a, "--json"])).unwrap();
    assert_eq!(doc["state"]["global"]["items"]["milk"]["done"], true);
    ok(&["verify", "--data-dir", a]);
    ok(&["verify", "--data-dir", b]);
    // A filter by type that does not match moves nothing.
    let c = tmp.path().join("c");
    let c = c.to_str().unwrap();
    let report: Value = serde_json::from_str(&ok(&[
        "sync",
        "--remote",
        &server.base,
        "--token",
        &server.token,
        "--data-dir",
        c,
        "--type",
        "folio/json",
        "--json",
    ]))
    .unwrap();
    assert_eq!(report["report"]["pulled"], 0, "{report}");
}

#[test]
fn watch_delivers_live_and_stops_on_sigterm() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(&tmp.path().join("server"));
    let a = tmp.path().join("a");
    let b = tmp.path().join("b");
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());
    let id = ok(&["doc", "create", "folio/todo-list", "--data-dir", a])
        .trim()
        .to_owned();
    ok(&[
        "sync",
        "--remote",
        &server.base,
        "--token",
        &server.token,
        "--data-dir",
        a,
    ]);
    let mut watch = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "sync",
            "--remote",
            &server.base,
            "--token",
            &server.token,
            "--data-dir",
            b,
            "--watch",
            "--json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let wait_for = |what: &str, lines: &mut Vec<String>| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::time::Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                let found = line.contains(what);
                lines.push(line);
                if found {
                    return;
                }
            }
        }
        panic!("no {what} from the watcher: {lines:?}");
    };
    wait_for(r#""status":"synced""#, &mut lines);
    ok(&[
        "doc",
        "apply",
        &id,
        "ADD_TODO",
        r#"{"id":"live","title":"Live"}"#,
        "--data-dir",
        a,
    ]);
    ok(&[
        "sync",
        "--remote",
        &server.base,
        "--token",
        &server.token,
        "--data-dir",
        a,
    ]);
    // The watcher holds B's store: wait until it reports the live delivery, then stop it and read B.
    wait_for(r#""event":"live""#, &mut lines);
    let pid = watch.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = watch.wait().unwrap();
    assert!(status.success(), "{lines:?}");
    let doc: Value = serde_json::from_str(&ok(&["doc", "get", &id, "--data-dir", b, "--json"])).unwrap();
    assert_eq!(doc["state"]["global"]["items"]["live"]["title"], "Live", "{lines:?}");
    assert_eq!(state_hash(a, &id), state_hash(b, &id));
}

#[test]
fn errors_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let server = serve(&tmp.path().join("server"));
    let a = tmp.path().join("a");
    let a = a.to_str().unwrap();
    let out = folio(&["sync", "--remote", &server.base, "--token", "wrong", "--data-dir", a]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("UNAUTHORIZED"), "{err}");
    let out = folio(&["sync", "--remote", "http://127.0.0.1:9", "--data-dir", a]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unreachable"));
    let out = folio(&["sync", "--remote", "ftp://x", "--data-dir", a]);
    assert_eq!(out.status.code(), Some(2));
}
