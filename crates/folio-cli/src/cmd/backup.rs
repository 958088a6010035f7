//! `folio backup DEST_DIR`: an online, consistent copy of a SQLite store into a new data directory, while a server
//! may be writing to it.
//!
//! The copy is SQLite's `VACUUM INTO` through a connection of its own on the file (a read transaction: writers
//! go on, the copy is the store as of one commit, compacted), never through the store's writer. Then the copy's
//! integrity is checked, and the tokens are copied beside it (mode 0600), so `folio serve --data-dir DEST_DIR`
//! starts from it with the same tokens. A PostgreSQL store is backed up with pg_dump (docs/operations.md).

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::json;
use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::CliError;
use crate::context::{Global, is_postgres_url};
use crate::output::Out;
use crate::progress::Progress;

/// Copies a live SQLite store into a new data directory.
#[derive(Debug, Args)]
pub struct Backup {
    /// The new data directory (created 0700; must not hold a store already).
    dest_dir: PathBuf,
}

/// The SQLite file the options name.
pub(crate) fn sqlite_path(global: &Global) -> Result<PathBuf, CliError> {
    match &global.database_url {
        Some(url) if is_postgres_url(url) => Err(CliError::usage(
            "this is a PostgreSQL store: back it up with pg_dump (see docs/operations.md), or move it with \
             `folio export` / `folio import`",
        )),
        Some(url) => url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .map(PathBuf::from)
            .ok_or_else(|| CliError::usage(format!("unsupported database URL {url:?}"))),
        None => Ok(global.data_dir.join("folio.db")),
    }
}

fn copy_private(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let bytes = std::fs::read(from)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(to)?;
    file.write_all(&bytes)?;
    file.sync_all()
}

impl Backup {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        let source = sqlite_path(global)?;
        if !source.is_file() {
            return Err(CliError::fail(format!(
                "there is no folio store at {} (check --data-dir or --database-url)",
                source.display()
            )));
        }
        let dest = self.dest_dir.join("folio.db");
        if dest.exists() {
            return Err(CliError::fail(format!(
                "{} already holds a store: back up into a new directory",
                self.dest_dir.display()
            )));
        }
        folio_server::auth::create_private_dir(&self.dest_dir)
            .map_err(|e| CliError::fail(format!("cannot create {}: {e}", self.dest_dir.display())))?;
        let started = Instant::now();
        let mut conn = SqliteConnectOptions::from_str(&format!("sqlite://{}", source.display()))
            .map_err(CliError::from)?
            .busy_timeout(Duration::from_secs(30))
            .connect()
            .await
            .map_err(|e| CliError::fail(format!("cannot open {}: {e}", source.display())))?;
        let (pages, page_size): (i64, i64) = sqlx::query_as(
            "SELECT (SELECT page_count FROM pragma_page_count()), (SELECT page_size FROM pragma_page_size())",
        )
        .fetch_one(&mut conn)
        .await
        .map_err(CliError::from)?;
        // VACUUM INTO says nothing while it runs: the size of the copy is the progress.
        let progress = Progress::bytes("backup", (pages * page_size).max(0) as u64, global.json);
        let watched = dest.clone();
        let watcher = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if let Ok(m) = std::fs::metadata(&watched) {
                    progress.set(m.len());
                }
            }
        });
        let copied = sqlx::query("VACUUM INTO ?")
            .bind(dest.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await;
        watcher.abort();
        copied.map_err(|e| CliError::fail(format!("the backup failed: {e}")))?;
        drop(conn);
        // The copy must open and check before it is called a backup.
        let mut copy = SqliteConnectOptions::from_str(&format!("sqlite://{}", dest.display()))
            .map_err(CliError::from)?
            .connect()
            .await
            .map_err(|e| CliError::fail(format!("cannot open the copy {}: {e}", dest.display())))?;
        let check: String = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&mut copy)
            .await
            .map_err(CliError::from)?;
        if check != "ok" {
            return Err(CliError::fail(format!(
                "the copy {} does not check: {check}",
                dest.display()
            )));
        }
        drop(copy);
        std::fs::File::open(&dest)
            .and_then(|f| f.sync_all())
            .map_err(|e| CliError::fail(format!("cannot sync {}: {e}", dest.display())))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o600));
        }
        let mut copied_files = vec!["folio.db"];
        if global.database_url.is_none() {
            for name in ["tokens", "admin.token"] {
                let from = global.data_dir.join(name);
                if from.is_file() {
                    copy_private(&from, &self.dest_dir.join(name))
                        .map_err(|e| CliError::fail(format!("cannot copy {}: {e}", from.display())))?;
                    copied_files.push(name);
                }
            }
        }
        let bytes = std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
        let seconds = started.elapsed().as_secs_f64();
        let mut out = Out::new();
        if global.json {
            out.line(json!({
                "backup": self.dest_dir,
                "files": copied_files,
                "bytes": bytes,
                "seconds": seconds,
            }))?;
        } else {
            out.line(format!(
                "backed up {} into {} ({}; {:.1} MB in {seconds:.1} s); start it with folio serve --data-dir {}",
                source.display(),
                self.dest_dir.display(),
                copied_files.join(", "),
                bytes as f64 / 1e6,
                self.dest_dir.display()
            ))?;
        }
        out.finish()
    }
}
