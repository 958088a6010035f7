//! Sync through an S3-compatible bucket: `folio sync --remote s3://bucket/prefix` and `folio promote`.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::json;

use folio_core::ModelRegistry;
use folio_reactor::ReactorConfig;
use folio_s3::{Bucket, BucketOptions, PromoteOptions, S3RoundOptions, S3RoundReport, S3WatchOptions};
use folio_sync::Replica;

use crate::CliError;
use crate::context::{Global, Open};
use crate::output::Out;

/// Where the bucket is; credentials come from `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`.
#[derive(Debug, Clone, Args)]
pub struct S3Options {
    /// The S3 API endpoint of an S3-compatible server (`http://127.0.0.1:9000`); AWS when unset.
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    s3_endpoint: Option<String>,
    /// The bucket's region.
    #[arg(long, env = "AWS_REGION")]
    s3_region: Option<String>,
}

impl S3Options {
    fn bucket(&self, url: &str) -> Result<Bucket, CliError> {
        let options = BucketOptions {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            ..BucketOptions::default()
        };
        Bucket::open(url, &options).map_err(|e| CliError::usage(e.to_string()))
    }
}

async fn open_replica(global: &Global) -> Result<Replica, CliError> {
    let store = global.open_store(Open::Create).await?;
    let config = ReactorConfig {
        executors: 2,
        ..ReactorConfig::default()
    };
    Replica::open(store, Arc::new(ModelRegistry::with_builtin()), config)
        .await
        .map_err(|e| CliError::fail(format!("cannot open the replica: {e}")))
}

fn summary(report: &S3RoundReport) -> String {
    let mut s = format!(
        "uploaded {} actions in {} objects, pulled {} ({} new here) from {} shared objects",
        report.pushed, report.uploaded, report.pulled, report.pulled_new, report.shared_objects
    );
    if let Some(index) = &report.bootstrapped_from {
        s.push_str(&format!(
            ", bootstrapped from {} snapshots ({index})",
            report.snapshot_documents
        ));
    }
    if report.compressed > 0 {
        s.push_str(&format!(", compressed away {} operations", report.compressed));
    }
    if !report.rejected.is_empty() {
        s.push_str(&format!(", {} refused by the promoter:", report.rejected.len()));
        for r in &report.rejected {
            let action = r
                .action_id
                .map_or("(whole object)".to_owned(), |a| format!("action {a}"));
            s.push_str(&format!("\n  {action} in {}: {}", r.source, r.reason));
        }
    }
    let own: Vec<_> = report
        .conflicts
        .iter()
        .filter(|c| !c.reason.starts_with("refused by the promoter"))
        .collect();
    if !own.is_empty() {
        s.push_str(&format!(", {} conflicts:", own.len()));
        for c in own {
            s.push_str(&format!(
                "\n  document {} action {}: {}",
                c.document_id, c.action_id, c.reason
            ));
        }
    }
    s
}

/// `folio sync --remote s3://…`: one round, or polling with `--watch`.
pub async fn sync(
    global: &Global,
    url: &str,
    s3: &S3Options,
    compress: bool,
    watch: Option<(Duration, Duration)>,
) -> Result<(), CliError> {
    let bucket = s3.bucket(url)?;
    let replica = open_replica(global).await?;
    // A spinner for one round; `--watch` prints a line per round instead.
    let (progress, spinner) = crate::progress::sync_sink("sync", global.json || watch.is_some());
    let round = S3RoundOptions {
        compress,
        progress,
        ..S3RoundOptions::default()
    };
    let result = match watch {
        None => {
            let started = std::time::Instant::now();
            let outcome = folio_s3::s3_round(&replica, &bucket, &round).await;
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
                        out.line(format!("{} with {url}: {}", replica.id(), summary(&report)))?;
                    }
                    out.finish()
                }
                Err(e) => Err(CliError::fail(format!("sync with {url} failed: {e}"))),
            }
        }
        Some((poll_interval, active_interval)) => {
            let options = S3WatchOptions {
                round,
                poll_interval,
                active_interval: active_interval.min(poll_interval),
                ..S3WatchOptions::default()
            };
            let json_out = global.json;
            folio_s3::watch(
                &replica,
                &bucket,
                &options,
                |outcome| {
                    let line = match (outcome, json_out) {
                        (Ok(r), true) => json!({ "event": "round", "report": r }).to_string(),
                        (Ok(r), false) => format!("round: {}", summary(r)),
                        (Err(e), true) => json!({ "event": "error", "message": e.to_string() }).to_string(),
                        (Err(e), false) => format!("round failed (retrying): {e}"),
                    };
                    println!("{line}");
                },
                crate::cmd::serve::shutdown_signal(),
            )
            .await;
            Ok(())
        }
    };
    replica.reactor().shutdown().await;
    result
}

/// Validates the updates in every user area of a bucket by replaying them, writes the valid ones to the shared
/// area and records the refused ones, with their reasons, for their authors; `--snapshot` also writes snapshots.
#[derive(Debug, Args)]
pub struct Promote {
    /// The bucket: `s3://bucket/prefix`.
    #[arg(long)]
    remote: String,
    /// Also roll every document up into an immutable snapshot (new replicas bootstrap from the latest).
    #[arg(long)]
    snapshot: bool,
    #[command(flatten)]
    s3: S3Options,
}

impl Promote {
    pub async fn run(&self, global: &Global) -> Result<(), CliError> {
        if !self.remote.starts_with("s3://") {
            return Err(CliError::usage(
                "folio promote works on a bucket: --remote s3://bucket/prefix",
            ));
        }
        let bucket = self.s3.bucket(&self.remote)?;
        let replica = open_replica(global).await?;
        let (progress, spinner) = crate::progress::sync_sink("promote", global.json);
        let options = PromoteOptions {
            snapshot: self.snapshot,
            progress,
            ..PromoteOptions::default()
        };
        let outcome = folio_s3::promote(&replica, &bucket, &options).await;
        spinner.finish();
        replica.reactor().shutdown().await;
        let report = outcome.map_err(|e| CliError::fail(format!("promotion in {} failed: {e}", self.remote)))?;
        let mut out = Out::new();
        if global.json {
            out.line(json!({ "promoter": replica.id(), "report": report }))?;
        } else {
            let refused: usize = report.rejected.values().map(Vec::len).sum();
            let mut line = format!(
                "{} promoted {} actions ({} new) from {} objects in {} user areas into {} shared objects, refused {}",
                report.promoter,
                report.promoted,
                report.new,
                report.objects,
                report.users,
                report.shared_written.len(),
                refused
            );
            if let Some(index) = &report.snapshot_index {
                line.push_str(&format!(
                    ", snapshot index {index} ({} new snapshots)",
                    report.snapshots_written
                ));
            }
            for (user, rejected) in &report.rejected {
                for r in rejected {
                    let action = r
                        .action_id
                        .map_or("(whole object)".to_owned(), |a| format!("action {a}"));
                    line.push_str(&format!("\n  {user}: {action}: {}", r.reason));
                }
            }
            out.line(line)?;
        }
        out.finish()
    }
}
