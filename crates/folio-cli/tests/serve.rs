//! `folio serve` as a process: it answers, and SIGTERM in the middle of writes loses nothing acknowledged.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_writes_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "serve",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = {
        folio_sync::tls::install_crypto_provider();
        reqwest::Client::new()
    };
    let mut up = false;
    for _ in 0..200 {
        if client.get(format!("{base}/v1/health")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(up, "the server did not come up");
    let token = std::fs::read_to_string(dir.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let created: Value = client
        .post(format!("{base}/v1/documents"))
        .bearer_auth(&token)
        .json(&json!({"documentType": "folio/todo-list"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["header"]["id"].as_str().unwrap().to_owned();

    // Eight writers keep writing; SIGTERM arrives in the middle.
    let mut writers = Vec::new();
    for w in 0..8 {
        let (client, base, token, id) = (client.clone(), base.clone(), token.clone(), id.clone());
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                let item = format!("w{w}-{i}");
                let resp = client
                    .post(format!("{base}/v1/documents/{id}/actions"))
                    .bearer_auth(&token)
                    .json(&json!({"actions": [{"type": "ADD_TODO", "input": {"id": item, "title": "t"}}]}))
                    .send()
                    .await;
                match resp {
                    Ok(r) if r.status() == 200 => acked.push(item),
                    _ => break,
                }
            }
            acked
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let pid = server.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::task::spawn_blocking(move || server.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(status.status.success(), "folio serve exited with {:?}", status.status);
    let log = String::from_utf8_lossy(&status.stderr);
    assert!(log.contains("stopped cleanly"), "{log}");
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(acked.len() > 10, "the writers got going ({} acknowledged)", acked.len());

    // Every acknowledged write is in the store, and the store verifies.
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["doc", "get", &id, "--json", "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let items = doc["state"]["global"]["items"].as_object().unwrap();
    for item in &acked {
        assert!(items.contains_key(item), "acknowledged {item} is missing");
    }
    let verify = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["verify", "--data-dir", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(verify.status.success(), "{verify:?}");
}
