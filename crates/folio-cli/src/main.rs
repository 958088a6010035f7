//! The `folio` command. See `spec/cli.md` for the contract.
#![forbid(unsafe_code)]

mod bench;
mod cmd;
mod context;
mod output;
mod progress;

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::cmd::Command;
use crate::context::Global;

/// folio: an event-sourced document engine.
#[derive(Debug, Parser)]
#[command(name = "folio", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// An error for the user: one sentence on stderr, and the process's exit code.
#[derive(Debug)]
pub struct CliError {
    /// The sentence.
    pub message: String,
    /// The exit code (1 for failures, 2 for misuse).
    pub code: u8,
}

impl CliError {
    /// A failure (exit 1).
    pub fn fail(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }

    /// A misuse (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }

    /// Standard output was closed by its reader (`folio doc log ID | head`): stop quietly, exit 0, as other
    /// command-line tools do.
    pub fn stdout_closed() -> Self {
        Self {
            message: String::new(),
            code: 0,
        }
    }
}

impl<E: std::fmt::Display> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::fail(e.to_string())
    }
}

// mimalloc: the write path allocates per request on several threads; glibc malloc was a fifth of the server's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let json = std::env::args().any(|a| a == "--json");
            if json && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
                // With --json, a usage error is JSON too: the first line of the parser's message.
                let detail = e.to_string();
                let first = detail.lines().next().unwrap_or_default().trim_start_matches("error: ");
                eprintln!(
                    "{}",
                    serde_json::json!({ "error": { "code": "USAGE", "message": first } })
                );
                return ExitCode::from(2);
            }
            e.exit()
        }
    };
    // Everything this process creates is its user's alone: the SQLite file and its -wal/-shm (which SQLite creates
    // with the process's umask), backups, exports, logs. The data directory is 0700 as well.
    #[cfg(unix)]
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    // One TLS stack for every connection this process makes (rustls on ring): the server, sync, PostgreSQL.
    folio_sync::tls::install_crypto_provider();
    // A server logs each request by default; one-shot commands only warnings. FOLIO_LOG overrides both.
    // sqlx's slow-statement warnings are noise for a store that streams long histories on purpose.
    let default_level = if matches!(cli.command, Command::Serve(_)) {
        "info,sqlx::query=error"
    } else {
        "warn,sqlx::query=error"
    };
    // A server's request log goes through a thread of its own, which writes whatever lines are waiting at once
    // (one write for many requests instead of one per request); the guard flushes it when `main` returns.
    let (writer, _log_guard) = if matches!(cli.command, Command::Serve(_)) {
        let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
            .lossy(false)
            .thread_name("folio-log")
            .finish(std::io::BufWriter::new(std::io::stderr()));
        (BoxMakeWriter::new(writer), Some(guard))
    } else {
        (BoxMakeWriter::new(std::io::stderr), None)
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FOLIO_LOG").unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A one-shot command (a document read or change, a benchmark's single load) runs on this thread: its few tasks
    // take turns here instead of waking threads on other cores, whose wakeups were most of a fresh process's load
    // time beyond its floor (docs/benchmarks.md, session 14). The server, sync and the rest keep a thread a core.
    let mut builder = if cli.command.is_one_shot() {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("folio: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let json = cli.global.json;
    match runtime.block_on(cmd::run(cli.command, cli.global)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !e.message.is_empty() {
                if json {
                    // With --json, errors are JSON too, in the API's error shape.
                    let code = if e.code == 2 { "USAGE" } else { "FAILED" };
                    eprintln!(
                        "{}",
                        serde_json::json!({ "error": { "code": code, "message": e.message } })
                    );
                } else {
                    eprintln!("folio: {}", e.message);
                }
            }
            ExitCode::from(e.code)
        }
    }
}
