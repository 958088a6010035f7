//! The HTTP remote: a `folio serve` reached with `POST /v1/sync/push`, `GET /v1/sync/pull` and, for live delivery,
//! the WebSocket `GET /v1/sync/live`.

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite::Message;

use crate::SyncError;
use crate::protocol::{Filter, PullRequest, PullResponse, PushRequest, PushResponse, RemoteInfo};
use crate::replica::Remote;

/// A `folio serve` as a sync remote.
#[derive(Debug, Clone)]
pub struct HttpRemote {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    /// The TLS configuration of both clients (the WebSocket one is made per connection).
    tls: std::sync::Arc<rustls::ClientConfig>,
}

impl HttpRemote {
    /// The server at `base` (`http://127.0.0.1:4780` or `https://folio.example`), with a token of the `write` role
    /// (or `admin`). `https://` trusts the system's CA roots (and `SSL_CERT_FILE`).
    pub fn new(base: &str, token: Option<String>) -> Result<Self, SyncError> {
        Self::with_ca(base, token, None)
    }

    /// As [`HttpRemote::new`], also trusting the CA certificates of the PEM file `ca_cert` (a private PKI, tests).
    pub fn with_ca(base: &str, token: Option<String>, ca_cert: Option<&std::path::Path>) -> Result<Self, SyncError> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(SyncError::Protocol(format!(
                "{base:?} is not an http:// or https:// URL"
            )));
        }
        let tls = crate::tls::client_config(ca_cert)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(std::time::Duration::from_secs(5))
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .map_err(|e| SyncError::Protocol(format!("HTTP client: {e}")))?;
        Ok(Self {
            base,
            token,
            client,
            tls,
        })
    }

    /// The server's URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let r = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T, SyncError> {
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(SyncError::Refused {
                status: status.as_u16(),
                code: body["error"]["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
                message: body["error"]["message"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(200).collect()),
            });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| SyncError::Protocol(format!("{} answered with an unexpected body: {e}", self.base)))
    }
}

fn transport(e: reqwest::Error) -> SyncError {
    if e.is_connect() || e.is_timeout() || e.is_request() {
        // The cause carries what the user needs (a certificate not trusted, a refused connection).
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        SyncError::Unreachable(message)
    } else {
        SyncError::Protocol(e.to_string())
    }
}

/// The query string of a pull (lists comma-separated).
pub(crate) fn pull_query(request: &PullRequest) -> Vec<(&'static str, String)> {
    let mut q = vec![
        ("after", request.after.to_string()),
        ("limit", request.limit.to_string()),
    ];
    if let Some(x) = &request.exclude {
        q.push(("exclude", x.clone()));
    }
    filter_query(&request.filter, &mut q);
    q
}

fn filter_query(filter: &Filter, q: &mut Vec<(&'static str, String)>) {
    if !filter.document_ids.is_empty() {
        let ids: Vec<String> = filter.document_ids.iter().map(ToString::to_string).collect();
        q.push(("documentIds", ids.join(",")));
    }
    if !filter.document_types.is_empty() {
        q.push(("types", filter.document_types.join(",")));
    }
}

#[async_trait]
impl Remote for HttpRemote {
    async fn info(&self) -> Result<RemoteInfo, SyncError> {
        self.send(self.request(reqwest::Method::GET, "/v1/sync/info")).await
    }

    async fn push(&self, request: &PushRequest) -> Result<PushResponse, SyncError> {
        self.send(self.request(reqwest::Method::POST, "/v1/sync/push").json(request))
            .await
    }

    async fn pull(&self, request: &PullRequest) -> Result<PullResponse, SyncError> {
        let query = pull_query(request)
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        self.send(self.request(reqwest::Method::GET, &format!("/v1/sync/pull?{query}")))
            .await
    }

    async fn live(
        &self,
        after: u64,
        exclude: &str,
        filter: &Filter,
    ) -> Result<Option<BoxStream<'static, Result<PullResponse, SyncError>>>, SyncError> {
        let mut q = vec![("after", after.to_string()), ("exclude", exclude.to_owned())];
        filter_query(filter, &mut q);
        if let Some(t) = &self.token {
            q.push(("token", t.clone()));
        }
        let query = q
            .iter()
            .map(|(k, v)| format!("{k}={}", urlencode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let ws_base = self.base.replacen("http", "ws", 1);
        let url = format!("{ws_base}/v1/sync/live?{query}");
        let connector = tokio_tungstenite::Connector::Rustls(self.tls.clone());
        let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(url.as_str(), None, false, Some(connector))
            .await
            .map_err(|e| SyncError::Unreachable(format!("live connection: {e}")))?;
        let (mut sink, stream) = socket.split();
        let stream = stream.filter_map(move |message| {
            let out = match message {
                Ok(Message::Text(text)) => Some(
                    serde_json::from_str::<PullResponse>(&text)
                        .map_err(|e| SyncError::Protocol(format!("live message: {e}"))),
                ),
                Ok(Message::Close(_)) => Some(Err(SyncError::Unreachable("live connection closed".into()))),
                Ok(_) => None,
                Err(e) => Some(Err(SyncError::Unreachable(format!("live connection: {e}")))),
            };
            futures::future::ready(out)
        });
        // Pings are answered by tungstenite as it reads; keep the sink alive with the stream.
        let stream = stream.chain(futures::stream::once(async move {
            let _ = sink.close().await;
            Err(SyncError::Unreachable("live connection ended".into()))
        }));
        Ok(Some(stream.boxed()))
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
