//! `folio serve`: the HTTP + WebSocket API on the local store.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;

use folio_core::ModelRegistry;
use folio_reactor::{Reactor, ReactorConfig};
use folio_server::ServerConfig;

use crate::CliError;
use crate::context::{Global, Open};

/// Runs the API until SIGINT or SIGTERM; queued jobs then finish and nothing acknowledged is lost.
#[derive(Debug, Args)]
pub struct Serve {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:4780", env = "FOLIO_LISTEN")]
    listen: SocketAddr,
    /// The largest request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    body_limit: usize,
    /// The most actions one request may carry.
    #[arg(long, default_value_t = 1000)]
    max_actions: usize,
    /// Jobs that may wait in the queue before requests get 429 OVERLOADED.
    #[arg(long, default_value_t = 10_000)]
    queue_capacity: usize,
    /// Executors (documents are spread over them).
    #[arg(long, default_value_t = 8)]
    executors: usize,
    /// MiB of hydrated documents kept in memory.
    #[arg(long, default_value_t = 256)]
    cache_mb: usize,
    /// Store a keyframe every this many global operations of a document (0: never).
    #[arg(long, default_value_t = ReactorConfig::default().keyframe_every)]
    keyframe_every: u64,
    /// Seconds an action's clock may be ahead of this server's before the action is refused (a clock in the future
    /// would win every last-writer-wins edit until real time caught up).
    #[arg(long, default_value_t = ReactorConfig::default().max_clock_ahead.as_secs())]
    max_clock_skew: u64,
    /// Refuse actions that are not signed by their author's replica key (a submit answers 422
    /// `SIGNATURE_REQUIRED`, a push lists them in `rejected`). Actions a client submits without naming a replica are
    /// this server's own, and it signs them. A bad signature is refused with or without this flag.
    #[arg(long)]
    require_signatures: bool,
    /// Let pages of this origin call the API from a browser (`https://app.example`); repeat for more. None by default.
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    cors_origins: Vec<String>,
    /// Serve the files of DIR at `/` beside the API (a web app on the API's own origin).
    #[arg(long = "static", value_name = "DIR")]
    static_dir: Option<std::path::PathBuf>,
    /// Serve HTTPS and WSS with this PEM certificate chain (with --tls-key); reloaded when the file changes.
    #[arg(long, value_name = "PEM", env = "FOLIO_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// Also serve `GET /metrics` (Prometheus) without a token on this address, for a scraper on a private network
    /// (on the API's address it needs an admin token).
    #[arg(long, value_name = "ADDR", env = "FOLIO_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", env = "FOLIO_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
}

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
    tracing::info!("stopping: finishing queued jobs");
}

impl Serve {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        // Before anything records: the reactor and the store report through the metrics facade.
        folio_server::metrics::install();
        let store = global.open_store(Open::Create).await?;
        let reactor = Reactor::open(
            store,
            Arc::new(ModelRegistry::with_builtin()),
            ReactorConfig {
                queue_capacity: self.queue_capacity,
                executors: self.executors,
                cache_bytes: self.cache_mb * 1024 * 1024,
                keyframe_every: self.keyframe_every,
                max_clock_ahead: std::time::Duration::from_secs(self.max_clock_skew),
                ..ReactorConfig::default()
            },
        )
        .await
        .map_err(|e| CliError::fail(format!("cannot open the replica: {e}")))?;
        if let Some(dir) = &self.static_dir
            && !dir.is_dir()
        {
            return Err(CliError::usage(format!("--static {}: not a directory", dir.display())));
        }
        for origin in &self.cors_origins {
            if !(origin.starts_with("http://") || origin.starts_with("https://"))
                || origin.trim_end_matches('/').matches('/').count() != 2
            {
                return Err(CliError::usage(format!(
                    "--cors-origin {origin}: an origin is a scheme, a host and an optional port (https://app.example:8443)"
                )));
            }
        }
        let config = ServerConfig {
            body_limit: self.body_limit,
            max_actions: self.max_actions,
            cors_origins: self.cors_origins.clone(),
            static_dir: self.static_dir.clone(),
            require_signatures: self.require_signatures,
            ..ServerConfig::new(&global.data_dir)
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(folio_server::tls::server_config(cert, key).map_err(|e| CliError::usage(format!("TLS: {e}")))?)
            }
            _ => None,
        };
        let state = folio_server::app_state(reactor, config)
            .map_err(|e| CliError::fail(format!("cannot prepare {}: {e}", global.data_dir.display())))?;
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .map_err(|e| CliError::fail(format!("cannot listen on {}: {e}", self.listen)))?;
        let addr = listener.local_addr().map_err(CliError::from)?;
        tracing::info!(
            "folio {} listening on {}://{addr} (data in {}, admin token in {})",
            env!("CARGO_PKG_VERSION"),
            if tls.is_some() { "https" } else { "http" },
            global.data_dir.display(),
            global.data_dir.join("admin.token").display()
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let metrics_server = match self.metrics_listen {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|e| CliError::fail(format!("cannot listen on {addr} for metrics: {e}")))?;
                tracing::info!(
                    "metrics on http://{}/metrics",
                    listener.local_addr().map_err(CliError::from)?
                );
                let app = folio_server::metrics_router(state.clone());
                let mut stop = stop_rx.clone();
                Some(tokio::spawn(async move {
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stop.wait_for(|s| *s).await;
                        })
                        .await;
                }))
            }
            None => None,
        };
        let result = folio_server::serve_on(listener, tls, state, async move {
            shutdown_signal().await;
            let _ = stop_tx.send(true);
        })
        .await;
        if let Some(task) = metrics_server {
            let _ = task.await;
        }
        result.map_err(|e| CliError::fail(format!("the server failed: {e}")))?;
        tracing::info!("stopped cleanly");
        Ok(())
    }
}
