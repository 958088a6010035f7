//! `folio sync --remote URL [--token T] [--watch] [--document ID] [--type T]`: sync the local replica with a remote.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use folio_core::{DocumentId, ModelRegistry};
use folio_reactor::ReactorConfig;
use folio_sync::{Filter, HttpRemote, Replica, RoundOptions, RoundReport, SyncEvent, Syncer, WatchOptions, sync_round};

use crate::CliError;
use crate::context::{Global, Open};
use crate::output::Out;

/// One round (push, then pull) and a summary of what moved; `--watch` keeps syncing live until interrupted.
#[derive(Debug, Args)]
pub struct Sync {
    /// The remote: `http://HOST:PORT` or `https://HOST` (a `folio serve`), or `s3://bucket/prefix`.
    #[arg(long)]
    remote: String,
    /// Keep syncing live (downstream as the remote commits, upstream debounced) until SIGINT or SIGTERM.
    #[arg(long)]
    watch: bool,
    /// Only this document (repeatable).
    #[arg(long = "document")]
    documents: Vec<DocumentId>,
    /// Only documents of this type (repeatable).
    #[arg(long = "type")]
    types: Vec<String>,
    /// Push own actions as they are, without compressing those never sent.
    #[arg(long)]
    no_compress: bool,
    /// With --watch: seconds between rounds when nothing happens.
    #[arg(long, default_value_t = 30)]
    poll_interval: u64,
    /// With --watch on a bucket: seconds between rounds while the replica is active (local actions, or a round
    /// that moved something).
    #[arg(long, default_value_t = 2)]
    active_interval: u64,
    #[command(flatten)]
    s3: crate::cmd::s3::S3Options,
}

fn summary(report: &RoundReport) -> String {
    let mut s = format!(
        "pushed {} ({} new there), pulled {} ({} new here)",
        report.pushed, report.pushed_new, report.pulled, report.pulled_new
    );
    if report.compressed > 0 {
        s.push_str(&format!(", compressed away {} operations", report.compressed));
    }
    if !report.conflicts.is_empty() {
        s.push_str(&format!(", {} conflicts:", report.conflicts.len()));
        for c in &report.conflicts {
            s.push_str(&format!(
                "\n  document {} action {}: {}",
                c.document_id, c.action_id, c.reason
            ));
        }
    }
    s
}

impl Sync {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        if self.remote.starts_with("s3://") {
            if !self.documents.is_empty() || !self.types.is_empty() {
                // A bucket's cursors are per area, not per filter: a filtered round would skip entries for good.
                return Err(CliError::usage(
                    "--document and --type are not supported with an s3:// remote: a bucket round moves everything",
                ));
            }
            let watch = self.watch.then(|| {
                (
                    Duration::from_secs(self.poll_interval.max(1)),
                    Duration::from_secs(self.active_interval.max(1)),
                )
            });
            return crate::cmd::s3::sync(global, &self.remote, &self.s3, !self.no_compress, watch).await;
        }
        let remote = HttpRemote::with_ca(&self.remote, global.token.clone(), global.ca_cert.as_deref())
            .map_err(|e| CliError::usage(e.to_string()))?;
        let store = global.open_store(Open::Create).await?;
        let config = ReactorConfig {
            executors: 2,
            ..ReactorConfig::default()
        };
        let replica = Replica::open(store, Arc::new(ModelRegistry::with_builtin()), config)
            .await
            .map_err(|e| CliError::fail(format!("cannot open the replica: {e}")))?;
        let (progress_sink, spinner) = crate::progress::sync_sink("sync", global.json || self.watch);
        let options = RoundOptions {
            filter: Filter {
                document_ids: self.documents.clone(),
                document_types: self.types.clone(),
            },
            compress: !self.no_compress,
            // A spinner for one round; `--watch` prints a line per round instead.
            progress: progress_sink,
            ..RoundOptions::default()
        };
        let result = if self.watch {
            self.watch(&replica, remote, options, global.json).await
        } else {
            let started = std::time::Instant::now();
            let outcome = sync_round(&replica, &remote, &options).await;
            spinner.finish();
            match outcome {
                Ok(report) => {
                    let mut out = Out::new();
                    if global.json {
                        out.line(json!({
                            "replica": replica.id(),
                            "report": report,
                            "seconds": started.elapsed().as_secs_f64(),
                        }))?;
                    } else {
                        out.line(format!("{} with {}: {}", replica.id(), self.remote, summary(&report)))?;
                    }
                    out.finish()
                }
                Err(e) => Err(CliError::fail(format!("sync with {} failed: {e}", self.remote))),
            }
        };
        replica.reactor().shutdown().await;
        result
    }

    async fn watch(
        &self,
        replica: &Replica,
        remote: HttpRemote,
        round: RoundOptions,
        json_out: bool,
    ) -> Result<(), CliError> {
        let options = WatchOptions {
            round,
            poll_interval: Duration::from_secs(self.poll_interval.max(1)),
            ..WatchOptions::default()
        };
        let on_event = Arc::new(move |event: SyncEvent| {
            let line = match (&event, json_out) {
                (SyncEvent::Round(r), true) => json!({ "event": "round", "report": r }).to_string(),
                (SyncEvent::Round(r), false) => format!("round: {}", summary(r)),
                (SyncEvent::Live { received, new }, true) => {
                    json!({ "event": "live", "received": received, "new": new }).to_string()
                }
                (SyncEvent::Live { received, new }, false) => format!("live: received {received} ({new} new)"),
                (SyncEvent::Status(s), true) => json!({ "event": "status", "status": s }).to_string(),
                (SyncEvent::Status(s), false) => match s {
                    folio_sync::SyncStatus::Offline(why) | folio_sync::SyncStatus::Error(why) => {
                        format!("status: {} ({why})", s.name())
                    }
                    _ => format!("status: {}", s.name()),
                },
            };
            println!("{line}");
        });
        let syncer = Syncer::spawn(replica.clone(), Arc::new(remote), options, on_event);
        crate::cmd::serve::shutdown_signal().await;
        syncer.stop().await;
        Ok(())
    }
}
