//! Running folio in production, through real processes: TLS with a real (test) CA for HTTPS and WSS sync and for
//! PostgreSQL, tokens (labels, expiry, list, revoke: refused within a second, WebSockets closed, file modes),
//! Prometheus metrics scraped and parsed, a backup taken under a write load and restored, an export from SQLite
//! imported into PostgreSQL with equal state hashes, `migrate`, and JSON errors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    child: Child,
    port: u16,
    token: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `folio serve` on `dir` with `extra` arguments; its log goes to `DIR.log`.
fn serve(dir: &Path, extra: &[&str]) -> Server {
    let port = free_port();
    let log = dir.with_extension("log");
    let child = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "serve",
            "--data-dir",
            dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
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
    Server { child, port, token }
}

/// A test CA and a certificate for `localhost` and 127.0.0.1 signed by it, as PEM files in `dir`:
/// (ca.pem, cert.pem, key.pem).
fn test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "folio test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.distinguished_name.push(DnType::CommonName, "localhost");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (dir.join("ca.pem"), dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    (paths.0, paths.1, paths.2)
}

fn client_tls(ca: &Path) -> Arc<rustls::ClientConfig> {
    folio_sync::tls::client_config(Some(ca)).unwrap()
}

fn state_hash(args: &[&str], id: &str) -> String {
    let mut all = vec!["doc", "get", id, "--json"];
    all.extend_from_slice(args);
    let doc: Value = serde_json::from_str(&ok(&all)).unwrap();
    doc["stateHash"].as_str().unwrap().to_owned()
}

fn create_todo(store: &[&str], items: usize) -> String {
    let mut args = vec!["doc", "create", "folio/todo-list"];
    args.extend_from_slice(store);
    let id = ok(&args).trim().to_owned();
    for i in 0..items {
        let input = json!({ "id": format!("t{i}"), "title": format!("item {i}") }).to_string();
        let mut args = vec!["doc", "apply", &id, "ADD_TODO", &input];
        args.extend_from_slice(store);
        ok(&args);
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_and_wss_sync_through_a_private_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(tmp.path());
    let server = serve(
        &tmp.path().join("server"),
        &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()],
    );
    let remote = format!("https://localhost:{}", server.port);
    let a = tmp.path().join("a");
    let a = a.to_str().unwrap();
    let id = create_todo(&["--data-dir", a], 3);

    // Without the CA: refused, and the message says why.
    let out = folio(&["sync", "--remote", &remote, "--token", &server.token, "--data-dir", a]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("certificate") || err.contains("UnknownIssuer"), "{err}");
    // Plain HTTP to the TLS port: refused too, nothing synced.
    let out = folio(&[
        "sync",
        "--remote",
        &format!("http://127.0.0.1:{}", server.port),
        "--token",
        &server.token,
        "--data-dir",
        a,
    ]);
    assert!(!out.status.success());

    // With it: HTTPS push, then a second replica pulls.
    let ca_arg = ca.to_str().unwrap();
    ok(&[
        "sync",
        "--remote",
        &remote,
        "--token",
        &server.token,
        "--data-dir",
        a,
        "--ca-cert",
        ca_arg,
    ]);
    let b = tmp.path().join("b");
    let b = b.to_str().unwrap();
    // SSL_CERT_FILE works as well as --ca-cert.
    let out = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args(["sync", "--remote", &remote, "--token", &server.token, "--data-dir", b])
        .env("SSL_CERT_FILE", &ca)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(state_hash(&["--data-dir", a], &id), state_hash(&["--data-dir", b], &id));

    // WSS: a subscriber over TLS receives what a replica pushes.
    let url = format!("wss://localhost:{}/v1/subscribe?token={}", server.port, server.token);
    let connector = tokio_tungstenite::Connector::Rustls(client_tls(&ca));
    let (mut ws, _) = tokio_tungstenite::connect_async_tls_with_config(url, None, false, Some(connector))
        .await
        .expect("WSS handshake");
    ws.send(Message::Text(json!({ "subscribe": {} }).to_string().into()))
        .await
        .unwrap();
    let first = ws.next().await.unwrap().unwrap();
    assert!(first.to_text().unwrap().contains("subscribed"));
    let input = json!({ "id": "late", "title": "over TLS" }).to_string();
    ok(&["doc", "apply", &id, "ADD_TODO", &input, "--data-dir", b]);
    ok(&[
        "sync",
        "--remote",
        &remote,
        "--token",
        &server.token,
        "--data-dir",
        b,
        "--ca-cert",
        ca_arg,
    ]);
    let event = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("an event over WSS")
        .unwrap()
        .unwrap();
    let event: Value = serde_json::from_str(event.to_text().unwrap()).unwrap();
    assert_eq!(event["event"], "operations");
    assert_eq!(event["documentId"], id.as_str());

    // Live sync (`--watch`) over WSS delivers too: start it on A, write on B, see A catch up.
    let watch = Command::new(env!("CARGO_BIN_EXE_folio"))
        .args([
            "sync",
            "--remote",
            &remote,
            "--token",
            &server.token,
            "--data-dir",
            a,
            "--ca-cert",
            ca_arg,
        ])
        .arg("--watch")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let input = json!({ "id": "live", "title": "pushed by b" }).to_string();
    ok(&["doc", "apply", &id, "ADD_TODO", &input, "--data-dir", b]);
    ok(&[
        "sync",
        "--remote",
        &remote,
        "--token",
        &server.token,
        "--data-dir",
        b,
        "--ca-cert",
        ca_arg,
    ]);
    std::thread::sleep(Duration::from_millis(2000));
    let _ = Command::new("kill").args(["-TERM", &watch.id().to_string()]).status();
    let watched = watch.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&watched.stdout);
    assert!(stdout.contains("live: received"), "no live delivery over WSS: {stdout}");
    assert_eq!(state_hash(&["--data-dir", a], &id), state_hash(&["--data-dir", b], &id));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_with_verify_full() {
    let Ok(ca) = std::env::var("FOLIO_TEST_PG_CA") else {
        panic!("FOLIO_TEST_PG_CA is not set: run through scripts/test, whose PostgreSQL cluster serves TLS");
    };
    let db = folio_store::pg_testing::TestDatabase::create().await;
    let sep = if db.url.contains('?') { '&' } else { '?' };
    let verified = format!("{}{sep}sslmode=verify-full&sslrootcert={ca}", db.url);
    let id = create_todo(&["--database-url", &verified], 2);
    ok(&["verify", "--database-url", &verified]);
    // The connection really is TLS.
    use sqlx::ConnectOptions;
    use std::str::FromStr;
    let mut conn = sqlx::postgres::PgConnectOptions::from_str(&verified)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(ssl);
    // Another CA: verify-full refuses the server, and says so.
    let tmp = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = test_pki(tmp.path());
    let wrong = format!("{}{sep}sslmode=verify-full&sslrootcert={}", db.url, other_ca.display());
    let out = folio(&["doc", "get", &id, "--database-url", &wrong]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(
        err.contains("certificate") || err.contains("tls") || err.contains("issuer"),
        "{err}"
    );
    // sslmode=require encrypts without checking the name.
    let required = format!("{}{sep}sslmode=require", db.url);
    assert_eq!(
        state_hash(&["--database-url", &required], &id),
        state_hash(&["--database-url", &verified], &id)
    );
}

async fn get(client: &reqwest::Client, url: &str, token: &str) -> reqwest::Response {
    client.get(url).bearer_auth(token).send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_listed_labelled_expired_and_revoked_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();
    let server = serve(&dir, &[]);
    let base = format!("http://127.0.0.1:{}", server.port);
    folio_sync::tls::install_crypto_provider();
    let client = reqwest::Client::new();

    // Modes from the start.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("tokens")), 0o600);
        assert_eq!(mode(&dir.join("admin.token")), 0o600);
    }

    // CLI: create with a label and an expiry; list shows it and never a secret.
    let made: Value = serde_json::from_str(&ok(&[
        "token",
        "create",
        "--role",
        "read",
        "--label",
        "watcher",
        "--expires",
        "1h",
        "--data-dir",
        d,
        "--json",
    ]))
    .unwrap();
    let secret = made["token"].as_str().unwrap().to_owned();
    assert_eq!(made["principal"], "watcher");
    assert!(made["expiresAt"].is_string());
    let again = folio(&[
        "token",
        "create",
        "--role",
        "read",
        "--label",
        "watcher",
        "--data-dir",
        d,
    ]);
    assert_eq!(again.status.code(), Some(2), "a label is unique");
    let listed = ok(&["token", "list", "--data-dir", d, "--json"]);
    assert!(!listed.contains(&secret) && !listed.contains(&server.token));
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let labels: Vec<&str> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["label"].as_str())
        .collect();
    assert_eq!(labels, ["admin", "watcher"]);
    let human = ok(&["token", "list", "--data-dir", d]);
    assert!(human.contains("watcher") && human.contains("read"), "{human}");

    // The read token works, and its label is in the request log; it may not manage tokens.
    assert_eq!(
        get(&client, &format!("{base}/v1/documents"), &secret).await.status(),
        200
    );
    assert_eq!(get(&client, &format!("{base}/v1/tokens"), &secret).await.status(), 403);

    // Its WebSocket is open…
    let url = format!("ws://127.0.0.1:{}/v1/subscribe?token={secret}", server.port);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(json!({ "subscribe": {} }).to_string().into()))
        .await
        .unwrap();
    assert!(
        ws.next()
            .await
            .unwrap()
            .unwrap()
            .to_text()
            .unwrap()
            .contains("subscribed")
    );

    // …until it is revoked by label from the command line: refused within a second, the WebSocket closed.
    ok(&["token", "revoke", "watcher", "--data-dir", d]);
    let revoked_at = Instant::now();
    loop {
        let status = get(&client, &format!("{base}/v1/documents"), &secret).await.status();
        if status == 401 {
            break;
        }
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still {status} a second after the revoke"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let closed = tokio::time::timeout(Duration::from_millis(1500), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the WebSocket of a revoked token is closed within a second or so");
    assert_eq!(closed, Some(1008));

    // Over HTTP with the admin token: create, list, revoke by id; refused at once.
    let made: Value = client
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(&server.token)
        .json(&json!({ "role": "write", "label": "ci", "expiresInSeconds": 3600 }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ci = made["token"].as_str().unwrap().to_owned();
    let ci_id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(get(&client, &format!("{base}/v1/documents"), &ci).await.status(), 200);
    let taken = client
        .post(format!("{base}/v1/tokens"))
        .bearer_auth(&server.token)
        .json(&json!({ "role": "read", "label": "ci" }))
        .send()
        .await
        .unwrap();
    assert_eq!(taken.status(), 409);
    // What the description refuses, the server refuses (found by schemathesis: an expiry of 0 s).
    for body in [
        json!({ "role": "read", "expiresInSeconds": 0 }),
        json!({ "role": "read", "label": "" }),
    ] {
        let refused = client
            .post(format!("{base}/v1/tokens"))
            .bearer_auth(&server.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{body}");
    }
    let list: Value = get(&client, &format!("{base}/v1/tokens"), &server.token)
        .await
        .json()
        .await
        .unwrap();
    let ci_listed = list["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == ci_id.as_str())
        .unwrap();
    assert_eq!(ci_listed["label"], "ci");
    assert!(ci_listed["lastUsedAt"].is_string(), "{ci_listed}");
    assert!(!list.to_string().contains(&ci));
    let gone = client
        .delete(format!("{base}/v1/tokens/{ci_id}"))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 200);
    assert_eq!(get(&client, &format!("{base}/v1/documents"), &ci).await.status(), 401);
    let again = client
        .delete(format!("{base}/v1/tokens/{ci_id}"))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
    // An admin token may not revoke itself (nobody locks themselves out by mistake).
    let admin_id = list["tokens"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["tokens"][0]["label"], "admin");
    let own = client
        .delete(format!("{base}/v1/tokens/{admin_id}"))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 403);
    assert_eq!(
        get(&client, &format!("{base}/v1/tokens"), &server.token).await.status(),
        200
    );

    // An expired token is refused.
    let short: Value = serde_json::from_str(&ok(&[
        "token",
        "create",
        "--role",
        "read",
        "--expires",
        "1s",
        "--data-dir",
        d,
        "--json",
    ]))
    .unwrap();
    let short = short["token"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let refused = get(&client, &format!("{base}/v1/documents"), &short).await;
    assert_eq!(refused.status(), 401);

    // The request log names tokens by label and principal.
    drop(server);
    let log = std::fs::read_to_string(tmp.path().join("data.log")).unwrap();
    assert!(
        log.contains("token=\"watcher\"") || log.contains("token=watcher"),
        "{log}"
    );
    // And by principal.
    assert!(
        log.contains("principal=\"watcher\"") || log.contains("principal=watcher"),
        "{log}"
    );

    // Revoking an unknown token names the problem.
    let out = folio(&["token", "revoke", "nobody", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
}

/// `name{labels} value` lines of a Prometheus text exposition, by `name{labels}`.
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line:?}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number in {line:?}"));
        assert!(
            series
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_'),
            "bad name in {line:?}"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_scraped_and_parsed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let metrics_port = free_port();
    let server = serve(&dir, &["--metrics-listen", &format!("127.0.0.1:{metrics_port}")]);
    let base = format!("http://127.0.0.1:{}", server.port);
    folio_sync::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    // Work: documents and actions, an error, a subscriber, a sync round.
    let url = format!("ws://127.0.0.1:{}/v1/subscribe?token={}", server.port, server.token);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(Message::Text(json!({ "subscribe": {} }).to_string().into()))
        .await
        .unwrap();
    let _ = ws.next().await;
    for _ in 0..3 {
        let created = client
            .post(format!("{base}/v1/documents"))
            .bearer_auth(&server.token)
            .json(&json!({ "documentType": "folio/todo-list" }))
            .send()
            .await
            .unwrap();
        assert_eq!(created.status(), 201);
        let doc: Value = created.json().await.unwrap();
        let id = doc["header"]["id"].as_str().unwrap();
        assert_eq!(
            get(&client, &format!("{base}/v1/documents/{id}"), &server.token)
                .await
                .status(),
            200
        );
    }
    let missing = get(
        &client,
        &format!("{base}/v1/documents/{}", uuid::Uuid::new_v4()),
        &server.token,
    )
    .await;
    assert_eq!(missing.status(), 404);
    let replica = tmp.path().join("replica");
    create_todo(&["--data-dir", replica.to_str().unwrap()], 1);
    ok(&[
        "sync",
        "--remote",
        &base,
        "--token",
        &server.token,
        "--data-dir",
        replica.to_str().unwrap(),
    ]);

    // On the metrics address: no token needed.
    let text = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(text.status(), 200);
    assert!(
        text.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let m = parse_metrics(&text.text().await.unwrap());
    let at_least = |series: &str, min: f64| {
        let v = m
            .get(series)
            .copied()
            .unwrap_or_else(|| panic!("no {series} in {:?}", m.keys().collect::<Vec<_>>()));
        assert!(v >= min, "{series} = {v}, expected at least {min}");
    };
    at_least("folio_jobs_total{outcome=\"completed\"}", 3.0);
    at_least("folio_group_commit_operations_count", 1.0);
    at_least("folio_group_commit_seconds_count", 1.0);
    at_least("folio_fsync_seconds_count", 1.0);
    at_least("folio_cache_hits_total", 1.0);
    at_least("folio_queue_depth", 0.0);
    at_least("folio_cache_bytes", 1.0);
    at_least("folio_websocket_subscribers{endpoint=\"subscribe\"}", 1.0);
    at_least("folio_sync_pushes_total", 1.0);
    at_least("folio_sync_pulls_total", 1.0);
    at_least("folio_errors_total{code=\"DOCUMENT_NOT_FOUND\"}", 1.0);
    at_least("folio_http_requests_total{status=\"201\"}", 3.0);
    assert!(m.keys().any(|k| k.starts_with("folio_group_commit_seconds_bucket{le=")));

    // On the API's address: an admin token only.
    assert_eq!(
        get(&client, &format!("{base}/metrics"), &server.token).await.status(),
        200
    );
    let read = ok(&["token", "create", "--role", "read", "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(
        get(&client, &format!("{base}/metrics"), read.trim()).await.status(),
        403
    );
    assert_eq!(
        client.get(format!("{base}/metrics")).send().await.unwrap().status(),
        401
    );
    // Readiness: the store answers.
    assert_eq!(
        client.get(format!("{base}/v1/ready")).send().await.unwrap().status(),
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_under_a_write_load_verifies_and_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("live");
    let server = serve(&dir, &[]);
    let base = format!("http://127.0.0.1:{}", server.port);
    folio_sync::tls::install_crypto_provider();
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for _ in 0..4 {
        let doc: Value = client
            .post(format!("{base}/v1/documents"))
            .bearer_auth(&server.token)
            .json(&json!({ "documentType": "folio/todo-list" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(doc["header"]["id"].as_str().unwrap().to_owned());
    }
    // Writers keep going while the backup runs.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (w, id) in ids.iter().enumerate() {
        let (client, base, token, id, stop) = (
            client.clone(),
            base.clone(),
            server.token.clone(),
            id.clone(),
            stop.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let action = json!({ "type": "ADD_TODO", "input": { "id": format!("w{w}-{n}"), "title": "x" } });
                let r = client
                    .post(format!("{base}/v1/documents/{id}/actions"))
                    .bearer_auth(&token)
                    .json(&json!({ "actions": [action] }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let backup = tmp.path().join("backup");
    let out = tokio::task::spawn_blocking({
        let (dir, backup) = (dir.clone(), backup.clone());
        move || {
            folio(&[
                "backup",
                backup.to_str().unwrap(),
                "--data-dir",
                dir.to_str().unwrap(),
                "--json",
            ])
        }
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        out.stderr.is_empty(),
        "no progress off a terminal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["bytes"].as_u64().unwrap() > 0);
    assert!(written > 20, "the writers wrote during the backup ({written})");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&backup), 0o700);
        assert_eq!(mode(&backup.join("tokens")), 0o600);
        assert_eq!(mode(&backup.join("folio.db")), 0o600);
    }
    // A second backup into the same directory is refused.
    let again = folio(&["backup", backup.to_str().unwrap(), "--data-dir", dir.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    drop(server);

    // The copy verifies, and a server starts from it with the same tokens and every document.
    ok(&["verify", "--data-dir", backup.to_str().unwrap()]);
    let restored = serve(&backup, &[]);
    let base = format!("http://127.0.0.1:{}", restored.port);
    let token = std::fs::read_to_string(dir.join("admin.token")).unwrap();
    let mut total = 0;
    for id in &ids {
        let r = get(&client, &format!("{base}/v1/documents/{id}"), token.trim()).await;
        assert_eq!(r.status(), 200);
        let doc: Value = r.json().await.unwrap();
        total += doc["header"]["revision"]["global"].as_u64().unwrap();
    }
    assert!(total > 0 && total <= written, "{total} of {written}");
    // The restored server takes writes.
    let action = json!({ "type": "ADD_TODO", "input": { "id": "after-restore", "title": "y" } });
    let r = client
        .post(format!("{base}/v1/documents/{}/actions", ids[0]))
        .bearer_auth(token.trim())
        .json(&json!({ "actions": [action] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // A PostgreSQL store is not backed up this way.
    let out = folio(&["backup", "x", "--database-url", "postgres://nobody@127.0.0.1:1/none"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_from_sqlite_imports_into_postgres_with_equal_state_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let s = src.to_str().unwrap();
    let mut ids = vec![create_todo(&["--data-dir", s], 40), create_todo(&["--data-dir", s], 3)];
    let named: Value = serde_json::from_str(&ok(&[
        "doc",
        "create",
        "folio/json",
        "--name",
        "notes",
        "--data-dir",
        s,
        "--json",
    ]))
    .unwrap();
    ids.push(named["header"]["id"].as_str().unwrap().to_owned());
    let input = json!({ "id": "t1" }).to_string();
    ok(&["doc", "apply", &ids[0], "DELETE_TODO", &input, "--data-dir", s]);
    let export = tmp.path().join("export.ndjson");
    ok(&["export", "--out", export.to_str().unwrap(), "--data-dir", s]);
    let lines = std::fs::read_to_string(&export).unwrap();
    assert!(lines.lines().count() >= 47);
    // To standard output, too.
    assert_eq!(ok(&["export", "--data-dir", s]), lines);

    let db = folio_store::pg_testing::TestDatabase::create().await;
    let pg = ["--database-url", db.url.as_str()];
    let first: Value = serde_json::from_str(&ok(&[
        "import",
        export.to_str().unwrap(),
        "--database-url",
        &db.url,
        "--json",
    ]))
    .unwrap();
    assert_eq!(first["appended"].as_u64().unwrap() as usize, lines.lines().count());
    for id in &ids {
        assert_eq!(state_hash(&["--data-dir", s], id), state_hash(&pg, id), "document {id}");
    }
    ok(&["verify", "--database-url", &db.url]);
    // Again: nothing new, nothing broken.
    let again: Value = serde_json::from_str(&ok(&[
        "import",
        export.to_str().unwrap(),
        "--database-url",
        &db.url,
        "--json",
    ]))
    .unwrap();
    assert_eq!(again["appended"], 0);
    assert_eq!(again["alreadyStored"].as_u64().unwrap() as usize, lines.lines().count());

    // And back from PostgreSQL into a new SQLite store.
    let back = tmp.path().join("back.ndjson");
    ok(&["export", "--out", back.to_str().unwrap(), "--database-url", &db.url]);
    let dst = tmp.path().join("dst");
    ok(&["import", back.to_str().unwrap(), "--data-dir", dst.to_str().unwrap()]);
    for id in &ids {
        assert_eq!(
            state_hash(&["--data-dir", s], id),
            state_hash(&["--data-dir", dst.to_str().unwrap()], id)
        );
    }

    // A tampered line (an input changed, its hash not) is refused with its line number, nothing after it stored.
    let tampered = lines.replacen("item 5", "item 5!", 1);
    assert_ne!(tampered, lines);
    let bad = tmp.path().join("bad.ndjson");
    std::fs::write(&bad, tampered).unwrap();
    let fresh = tmp.path().join("fresh");
    let out = folio(&["import", bad.to_str().unwrap(), "--data-dir", fresh.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line"), "{err}");
    ok(&["verify", "--data-dir", fresh.to_str().unwrap()]);
}

#[test]
fn migrate_says_what_it_did_and_json_errors_are_json() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("d");
    let d = d.to_str().unwrap();
    let out = folio(&["migrate", "--data-dir", d]);
    assert_eq!(out.status.code(), Some(1), "no store to migrate");
    create_todo(&["--data-dir", d], 1);
    let said = ok(&["migrate", "--data-dir", d]);
    assert!(said.contains("nothing to migrate"), "{said}");
    let said: Value = serde_json::from_str(&ok(&["migrate", "--data-dir", d, "--json"])).unwrap();
    assert!(said["version"].as_i64().unwrap() >= 1);
    // With --json, an error is JSON on stderr.
    let out = folio(&["doc", "get", "not-a-uuid", "--data-dir", d, "--json"]);
    assert!(!out.status.success());
    let err: Value = serde_json::from_slice(&out.stderr).expect("a JSON error");
    assert!(
        err["error"]["code"].is_string() && err["error"]["message"].is_string(),
        "{err}"
    );
    // A usage error the argument parser finds, too.
    let out = folio(&["doc", "get", "--json", "--no-such-option"]);
    assert_eq!(out.status.code(), Some(2));
    let err: Value = serde_json::from_slice(&out.stderr).expect("a JSON usage error");
    assert_eq!(err["error"]["code"], "USAGE", "{err}");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("--no-such-option"),
        "{err}"
    );
}

#[test]
fn tls_misconfigurations_are_named_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = test_pki(tmp.path());
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let (_, _, other_key) = test_pki(&other);
    let d = tmp.path().join("d");
    let serve_with = |cert: &Path, key: &Path| {
        folio(&[
            "serve",
            "--data-dir",
            d.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ])
    };
    let out = serve_with(&cert, &other_key);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("do not belong together"));
    let out = serve_with(Path::new("/nonexistent/cert.pem"), &key);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/cert.pem"));
    let out = serve_with(&key, &key);
    assert_eq!(out.status.code(), Some(2), "a key is not a certificate");
    // A certificate without its key is a usage error before anything starts.
    let out = folio(&[
        "serve",
        "--data-dir",
        d.to_str().unwrap(),
        "--tls-cert",
        cert.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    // A CA file that holds no certificate is named.
    let out = folio(&[
        "sync",
        "--remote",
        "https://localhost:1",
        "--data-dir",
        d.to_str().unwrap(),
        "--ca-cert",
        key.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("key.pem"));
    let _ = ca;
}
