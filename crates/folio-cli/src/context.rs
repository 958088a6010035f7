//! Options every command accepts, and opening the local store they point at.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use folio_core::ModelRegistry;
use folio_reactor::{Reactor, ReactorConfig};
use folio_store::{OperationStore, SqliteStore};

use crate::CliError;

/// The common options, accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The data directory (SQLite file `DIR/folio.db`).
    #[arg(long, global = true, env = "FOLIO_DATA_DIR", default_value = "./folio-data")]
    pub data_dir: PathBuf,
    /// A database URL instead of the data directory's SQLite file (`sqlite://PATH`).
    #[arg(long, global = true, env = "FOLIO_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Print JSON (the shapes of the HTTP API) instead of human output.
    #[arg(long, global = true)]
    pub json: bool,
    /// Work through a running `folio serve` at this URL instead of the local store.
    #[arg(long, global = true, env = "FOLIO_SERVER")]
    pub server: Option<String>,
    /// The token for `--server`.
    #[arg(long, global = true, env = "FOLIO_TOKEN")]
    pub token: Option<String>,
}

/// Whether a command may create the store it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Open {
    /// Commands that write: a missing data directory and database file are created.
    Create,
    /// Commands that only read: a missing store is an error, and nothing is created (a mistyped `--data-dir`
    /// must not leave an empty store behind, nor make `verify` pass).
    Existing,
}

impl Global {
    /// Opens the local store the options name.
    pub async fn open_store(&self, open: Open) -> Result<Arc<dyn OperationStore>, CliError> {
        if self.server.is_some() {
            return Err(CliError::usage(
                "--server is not supported by this build yet: run the command on the server's data directory",
            ));
        }
        let path = match &self.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                return Err(CliError::usage(
                    "PostgreSQL is not supported by this build yet: use --data-dir DIR or --database-url sqlite://PATH",
                ));
            }
            Some(url) => match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
                Some(path) => PathBuf::from(path),
                None => {
                    return Err(CliError::usage(format!(
                        "unsupported database URL {url:?}: use sqlite://PATH"
                    )));
                }
            },
            None => {
                if open == Open::Create {
                    std::fs::create_dir_all(&self.data_dir).map_err(|e| {
                        CliError::fail(format!("cannot create data directory {}: {e}", self.data_dir.display()))
                    })?;
                }
                self.data_dir.join("folio.db")
            }
        };
        if open == Open::Existing && !path.is_file() {
            return Err(CliError::fail(format!(
                "there is no folio store at {} (check --data-dir or --database-url)",
                path.display()
            )));
        }
        let store = SqliteStore::open(&path)
            .await
            .map_err(|e| CliError::fail(format!("cannot open the store at {}: {e}", path.display())))?;
        Ok(Arc::new(store))
    }

    /// A reactor on the local store, for one command.
    pub async fn reactor(&self, open: Open) -> Result<Reactor, CliError> {
        let store = self.open_store(open).await?;
        let config = ReactorConfig {
            executors: 1,
            ..ReactorConfig::default()
        };
        Reactor::open(store, Arc::new(ModelRegistry::with_builtin()), config)
            .await
            .map_err(|e| CliError::fail(format!("cannot open the replica: {e}")))
    }
}
