//! The subcommands; one file each.

mod backup;
mod bench;
mod doc;
mod migrate;
mod s3;
mod serve;
mod sync;
mod token;
mod transfer;
mod verify;

use clap::Subcommand;

use crate::CliError;
use crate::context::Global;

/// What `folio` can do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, change and read documents.
    #[command(subcommand)]
    Doc(doc::Doc),
    /// Benchmark rehydration and appends.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Run the HTTP + WebSocket API.
    Serve(serve::Serve),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(token::Token),
    /// Sync the local replica with a remote: one round (push, then pull), or live with --watch.
    Sync(sync::Sync),
    /// Validate the user areas of a bucket into its shared area (and roll up snapshots with --snapshot).
    Promote(s3::Promote),
    /// Check every hash chain and index sequence of the store; exit 1 on the first broken unit.
    Verify(verify::Verify),
    /// Copy a live SQLite store into a new data directory (online, consistent; with its tokens).
    Backup(backup::Backup),
    /// Write every operation as NDJSON, in commit order.
    Export(transfer::Export),
    /// Read an export into the store (chains checked; operations already stored are skipped).
    Import(transfer::Import),
    /// Apply the store's pending schema migrations now.
    Migrate(migrate::Migrate),
}

impl Command {
    /// A command that does one short thing and exits (a document read or change, a benchmark's single load): it
    /// runs on a current-thread runtime.
    pub fn is_one_shot(&self) -> bool {
        matches!(self, Command::Doc(_) | Command::Bench(bench::Bench::LoadChild(_)))
    }
}

/// Runs a command.
pub async fn run(command: Command, global: Global) -> Result<(), CliError> {
    match command {
        Command::Doc(doc) => doc.run(&global).await,
        Command::Bench(bench) => bench.run(&global).await,
        Command::Serve(serve) => serve.run(&global).await,
        Command::Token(token) => token.run(&global),
        Command::Verify(verify) => verify.run(&global).await,
        Command::Sync(sync) => sync.run(&global).await,
        Command::Promote(promote) => promote.run(&global).await,
        Command::Backup(backup) => backup.run(&global).await,
        Command::Export(export) => export.run(&global).await,
        Command::Import(import) => import.run(&global).await,
        Command::Migrate(migrate) => migrate.run(&global).await,
    }
}
