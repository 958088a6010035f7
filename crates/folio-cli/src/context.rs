//! Options every command accepts, and opening the local store they point at.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;

use folio_core::ModelRegistry;
use folio_reactor::{Reactor, ReactorConfig};
use folio_store::{OperationStore, PgOptions, PgStore, SqliteStore};

use crate::CliError;

/// The common options, accepted before or after the subcommand.
#[derive(Debug, Clone, Args)]
pub struct Global {
    /// The data directory (SQLite file `DIR/folio.db`).
    #[arg(long, global = true, env = "FOLIO_DATA_DIR", default_value = "./folio-data")]
    pub data_dir: PathBuf,
    /// A database URL instead of the data directory's SQLite file: `sqlite://PATH`, or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (several `folio serve` nodes may share one PostgreSQL
    /// database).
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
    /// A PEM file of CA certificates to trust beside the system's roots when connecting to a server over
    /// https:// or wss:// (a private PKI; `SSL_CERT_FILE` replaces the system's roots instead).
    #[arg(long, global = true, env = "FOLIO_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
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
            Some(url) if is_postgres_url(url) => {
                let options = PgOptions {
                    must_exist: open == Open::Existing,
                    ..PgOptions::new(url.as_str())
                };
                let store = PgStore::open_with(options)
                    .await
                    .map_err(|e| CliError::fail(format!("cannot open the store at {}: {e}", redact_url(url))))?;
                return Ok(Arc::new(store));
            }
            Some(url) => match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
                Some(path) => PathBuf::from(path),
                None => {
                    return Err(CliError::usage(format!(
                        "unsupported database URL {:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DATABASE",
                        redact_url(url)
                    )));
                }
            },
            None => {
                if open == Open::Create {
                    folio_server::auth::create_private_dir(&self.data_dir).map_err(|e| {
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

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` without its password, for messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    match path {
        Some(p) => format!("{scheme}://{authority}/{p}"),
        None => format!("{scheme}://{authority}"),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("postgres://u:secret@h:5/db"), "postgres://u:***@h:5/db");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
