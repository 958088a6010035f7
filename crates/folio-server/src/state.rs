//! What every handler shares.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use folio_reactor::Reactor;

use crate::auth::Tokens;

/// The server's limits and places.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The data directory (tokens live there).
    pub data_dir: PathBuf,
    /// The largest request body, in bytes.
    pub body_limit: usize,
    /// The largest body of a sync push, in bytes (a replica back from a week offline pushes a lot at once).
    pub sync_body_limit: usize,
    /// The most actions one request may carry.
    pub max_actions: usize,
    /// The longest a read waits for `minRevision`.
    pub max_wait: Duration,
    /// The most items a page of a listing holds.
    pub max_page: usize,
    /// The most headers one listing looks at for the caller's access: a page may then be short (even empty), with
    /// `next`.
    pub list_scan: usize,
    /// Origins whose pages may call the API from a browser (`--cors-origin`); none by default.
    pub cors_origins: Vec<String>,
    /// A directory whose files are served at `/` beside the API (`--static`): a web app on the API's own origin.
    pub static_dir: Option<PathBuf>,
    /// Refuse unsigned actions from clients and replicas (`--require-signatures`); a bad signature is refused
    /// whatever this says. Off by default, for clients that do not sign yet.
    pub require_signatures: bool,
}

impl ServerConfig {
    /// Defaults for `data_dir`: 1 MiB bodies (64 MiB for sync pushes), 1,000 actions a request, 10 s waits, pages of up to 1,000.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            body_limit: 1024 * 1024,
            sync_body_limit: 64 * 1024 * 1024,
            max_actions: 1000,
            max_wait: Duration::from_secs(10),
            max_page: 1000,
            list_scan: 10_000,
            cors_origins: Vec::new(),
            static_dir: None,
            require_signatures: false,
        }
    }
}

/// The handlers' state: one shared allocation, so the clone every request takes is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<AppShared>);

impl AppState {
    /// The state of `shared`.
    pub fn new(shared: AppShared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = AppShared;

    fn deref(&self) -> &AppShared {
        &self.0
    }
}

/// What the handlers share.
pub struct AppShared {
    /// The engine.
    pub reactor: Reactor,
    /// The same engine as a sync replica (push, pull, live).
    pub replica: folio_sync::Replica,
    /// The tokens.
    pub tokens: Arc<Tokens>,
    /// The limits.
    pub config: Arc<ServerConfig>,
    /// Each document's owner and grants, for the access checks of every path.
    pub access: Arc<crate::access::AccessCache>,
}
