//! Where a benchmark builds its stores: SQLite files in a temporary directory (the default), or databases of their
//! own on a PostgreSQL server (`--database-url postgres://…`), created for the run and dropped after it.

use std::path::PathBuf;
use std::sync::Arc;

use folio_store::pg_testing::TestDatabase;
use folio_store::{OperationStore, PgStore, SqliteStore};

use crate::CliError;
use crate::context::{is_postgres_url, redact_url};

/// The backend of a run.
pub enum Target {
    /// SQLite files in this directory.
    Sqlite(tempfile::TempDir),
    /// Databases created on the server of this URL.
    Postgres(String),
}

/// One store of a run: a file, or a database dropped with this value.
pub enum BenchDb {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database.
    Postgres(TestDatabase),
}

impl Target {
    /// The target for `--database-url` (none: SQLite in a temporary directory).
    pub fn new(database_url: Option<&str>) -> Result<Self, CliError> {
        match database_url {
            None => Ok(Target::Sqlite(tempfile::tempdir().map_err(CliError::from)?)),
            Some(url) if is_postgres_url(url) => Ok(Target::Postgres(url.to_owned())),
            Some(url) => Err(CliError::usage(format!(
                "folio bench takes --database-url postgres://… (a server where it may CREATE DATABASE; it makes its \
                 own databases and drops them), not {:?}: SQLite runs need no option",
                redact_url(url)
            ))),
        }
    }

    /// The backend's name, for reports.
    pub fn backend(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
        }
    }

    /// A new, empty store called `label`.
    pub async fn create(&self, label: &str) -> Result<BenchDb, CliError> {
        match self {
            Target::Sqlite(dir) => Ok(BenchDb::Sqlite(dir.path().join(format!("{label}.db")))),
            Target::Postgres(server) => TestDatabase::create_on(server, "folio_bench")
                .await
                .map(BenchDb::Postgres)
                .map_err(|e| CliError::fail(format!("cannot create a database on {}: {e}", redact_url(server)))),
        }
    }
}

impl BenchDb {
    /// Opens the store (creating its tables).
    pub async fn open(&self) -> Result<Arc<dyn OperationStore>, CliError> {
        Ok(match self {
            BenchDb::Sqlite(path) => Arc::new(SqliteStore::open(path).await?),
            BenchDb::Postgres(db) => Arc::new(PgStore::open(&db.url).await?),
        })
    }

    /// The arguments that name this store to a child `folio` process.
    pub fn child_args(&self) -> Vec<std::ffi::OsString> {
        match self {
            BenchDb::Sqlite(path) => vec!["--db".into(), path.into()],
            BenchDb::Postgres(db) => vec!["--database-url".into(), db.url.clone().into()],
        }
    }

    /// The PostgreSQL database's URL, if it is one.
    pub fn postgres_url(&self) -> Option<&str> {
        match self {
            BenchDb::Sqlite(_) => None,
            BenchDb::Postgres(db) => Some(&db.url),
        }
    }
}
