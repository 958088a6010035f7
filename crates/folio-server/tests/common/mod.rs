//! A real server on 127.0.0.1:0 over a SQLite store in a temporary directory, and a real HTTP client.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use folio_core::ModelRegistry;
use folio_reactor::{Reactor, ReactorConfig};
use folio_server::{Role, ServerConfig, Tokens};
use folio_store::SqliteStore;

pub struct TestServer {
    pub base: String,
    pub admin: String,
    pub data_dir: PathBuf,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

pub async fn start(data_dir: &Path) -> TestServer {
    start_with(data_dir, ReactorConfig::default(), |c| c).await
}

pub async fn start_with(
    data_dir: &Path,
    reactor_config: ReactorConfig,
    configure: impl FnOnce(ServerConfig) -> ServerConfig,
) -> TestServer {
    start_with_models(data_dir, ModelRegistry::with_builtin(), reactor_config, configure).await
}

pub async fn start_with_models(
    data_dir: &Path,
    registry: ModelRegistry,
    reactor_config: ReactorConfig,
    configure: impl FnOnce(ServerConfig) -> ServerConfig,
) -> TestServer {
    std::fs::create_dir_all(data_dir).unwrap();
    let store = SqliteStore::open(data_dir.join("folio.db")).await.unwrap();
    let reactor = Reactor::open(Arc::new(store), Arc::new(registry), reactor_config)
        .await
        .expect("reactor");
    let config = configure(ServerConfig::new(data_dir));
    let state = folio_server::app_state(reactor, config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        folio_server::serve(listener, state, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    let admin = std::fs::read_to_string(data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    TestServer {
        base: format!("http://{addr}"),
        admin,
        data_dir: data_dir.to_owned(),
        client: {
            folio_sync::tls::install_crypto_provider();
            reqwest::Client::new()
        },
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn token(&self, role: Role) -> String {
        Tokens::create(&self.data_dir, role).unwrap()
    }

    /// A request with the admin token.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.admin, method, path, body).await
    }

    /// A request with `token`: the status and the body (JSON, or the text when it is not JSON).
    pub async fn call_as(&self, token: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn create_todo(&self) -> String {
        let (status, doc) = self
            .post("/v1/documents", json!({"documentType": "folio/todo-list", "name": "t"}))
            .await;
        assert_eq!(status, 201, "{doc}");
        doc["header"]["id"].as_str().unwrap().to_owned()
    }

    pub async fn add(&self, id: &str, item: &str) -> (u16, Value) {
        self.post(
            &format!("/v1/documents/{id}/actions"),
            json!({"actions": [{"type": "ADD_TODO", "input": {"id": item, "title": item}}]}),
        )
        .await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// Asserts an error response's status and code.
pub fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["error"]["code"], code, "{}", got.1);
    assert!(
        got.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        got.1
    );
}

/// A WebSocket client of the server (`/v1/subscribe`, `/v1/sync/live`).
pub type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message as JSON (pings and pongs skipped), within 10 s.
pub async fn next_json(ws: &mut Ws) -> Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("an event in time");
        match msg.unwrap().unwrap() {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected {other:?}"),
        }
    }
}
