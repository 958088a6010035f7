//! `folio migrate`: applies the store's pending schema migrations now, explicitly, and says what it did.
//! (`folio serve` and every other command apply them too when they open the store; this is the step an operator
//! runs first, to see how long it takes and to know it is done before starting servers.)

use std::str::FromStr;
use std::time::Instant;

use clap::Args;
use serde_json::json;
use sqlx::ConnectOptions;

use crate::CliError;
use crate::context::{Global, Open, is_postgres_url};
use crate::output::Out;
use crate::progress::Progress;

/// Applies pending migrations.
#[derive(Debug, Args)]
pub struct Migrate {}

/// The versions recorded in `_sqlx_migrations` (none when the table does not exist yet).
async fn applied(global: &Global) -> Result<Vec<i64>, CliError> {
    let query = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";
    let result = match &global.database_url {
        Some(url) if is_postgres_url(url) => {
            let mut conn = sqlx::postgres::PgConnectOptions::from_str(url)
                .map_err(CliError::from)?
                .connect()
                .await
                .map_err(|e| CliError::fail(format!("cannot connect: {e}")))?;
            sqlx::query_scalar::<_, i64>(query).fetch_all(&mut conn).await
        }
        _ => {
            let path = crate::cmd::backup::sqlite_path(global)?;
            if !path.is_file() {
                return Err(CliError::fail(format!(
                    "there is no folio store at {} (check --data-dir or --database-url)",
                    path.display()
                )));
            }
            let mut conn = sqlx::sqlite::SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))
                .map_err(CliError::from)?
                .connect()
                .await
                .map_err(|e| CliError::fail(format!("cannot open {}: {e}", path.display())))?;
            sqlx::query_scalar::<_, i64>(query).fetch_all(&mut conn).await
        }
    };
    // A store too old to have the table has every migration pending.
    Ok(result.unwrap_or_default())
}

impl Migrate {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        let before = applied(global).await?;
        let started = Instant::now();
        let progress = Progress::new("migrating", None, global.json);
        // Opening the store applies what is pending, in one transaction per migration.
        let store = global.open_store(Open::Existing).await?;
        drop(store);
        progress.finish();
        let after = applied(global).await?;
        let new: Vec<i64> = after.iter().filter(|v| !before.contains(v)).copied().collect();
        let seconds = started.elapsed().as_secs_f64();
        let mut out = Out::new();
        if global.json {
            out.line(json!({ "applied": new, "version": after.last(), "seconds": seconds }))?;
        } else if new.is_empty() {
            out.line(format!(
                "nothing to migrate: the store is at version {}",
                after.last().map_or("-".into(), ToString::to_string)
            ))?;
        } else {
            out.line(format!(
                "applied {} migration(s) ({}) in {seconds:.1} s: the store is at version {}",
                new.len(),
                new.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                after.last().map_or("-".into(), ToString::to_string)
            ))?;
        }
        out.finish()
    }
}
