//! A replica's round with a bucket: push its outbox as one object in its own area, then read the shared area (or,
//! the first time, the latest snapshots and the shared area after them) and what the promoter refused of its own.

use std::time::Duration;

use serde::Serialize;

use folio_core::HlcTimestamp;
use folio_sync::progress::{Step, report as progress};
use folio_sync::protocol::RejectedAction;
use folio_sync::{Filter, ProgressSink, Replica, SyncEntry};

use crate::S3Error;
use crate::bucket::{Bucket, Counts};
use crate::layout::{self, Batch, Rejection, Rejections, SHARED, SNAPSHOT_INDEX, Snapshot, SnapshotIndex};

/// How a bucket round runs.
#[derive(Debug, Clone)]
pub struct S3RoundOptions {
    /// Compress own actions never sent before pushing them.
    pub compress: bool,
    /// Entries per uploaded object at most (a larger outbox is several objects).
    pub object_entries: usize,
    /// Shared objects read before integrating what they hold (a unit rebases once per group).
    pub integrate_objects: usize,
    /// Bootstrap from the latest snapshots when this replica never read the shared area.
    pub bootstrap: bool,
    /// Where the round reports how far it has come (a bar on a terminal); `None`: nowhere.
    pub progress: Option<ProgressSink>,
}

impl Default for S3RoundOptions {
    fn default() -> Self {
        Self {
            compress: true,
            object_entries: 20_000,
            integrate_objects: 64,
            bootstrap: true,
            progress: None,
        }
    }
}

/// What a bucket round moved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct S3RoundReport {
    /// The bucket address.
    pub remote: String,
    /// Operations saved by compressing the outbox.
    pub compressed: usize,
    /// Own actions uploaded.
    pub pushed: usize,
    /// Objects uploaded to the replica's own area.
    pub uploaded: usize,
    /// The snapshot index this round bootstrapped from, if it did.
    pub bootstrapped_from: Option<String>,
    /// Documents read from snapshots.
    pub snapshot_documents: usize,
    /// Shared objects read.
    pub shared_objects: usize,
    /// Entries received (snapshots and shared objects).
    pub pulled: usize,
    /// Of those, actions this replica did not have.
    pub pulled_new: usize,
    /// Actions the promoter refused of this replica's, and why (read from its rejection area).
    pub rejected: Vec<Rejection>,
    /// Actions kept but refused by their reducer in their merged position (here, or by the promoter).
    pub conflicts: Vec<RejectedAction>,
    /// Requests made to the bucket in this round.
    pub requests: Counts,
}

impl S3RoundReport {
    /// Whether the round moved anything.
    pub fn moved(&self) -> bool {
        self.pushed > 0 || self.pulled > 0 || !self.rejected.is_empty()
    }
}

/// The meta key of a replica's state about a bucket.
pub(crate) fn meta_key(bucket: &Bucket, field: &str) -> String {
    format!("s3/{}/{field}", bucket.url())
}

pub(crate) async fn get_meta(replica: &Replica, key: &str) -> Result<Option<String>, S3Error> {
    Ok(replica.reactor().store().get_meta(key).await?)
}

pub(crate) async fn put_meta(replica: &Replica, key: &str, value: &str) -> Result<(), S3Error> {
    Ok(replica.reactor().store().put_meta(key, value).await?)
}

/// A writer of objects under one area of a bucket: its sequence number and the clock of its last key persist in
/// the writer's store, and the sequence number moves *before* each upload, so a key is never used twice, even by a
/// writer killed mid-upload.
pub(crate) struct Writer<'a> {
    pub replica: &'a Replica,
    pub bucket: &'a Bucket,
    /// `users`, `shared`, …: the state is kept per kind of area.
    pub kind: &'a str,
}

impl Writer<'_> {
    /// Uploads `value` under `area` with a fresh key made from `clock`; returns the key.
    /// `floor` is a key the new one must sort after (the last shared key read, for the shared area's writer).
    pub async fn put<T: Serialize>(
        &self,
        area: &str,
        clock: HlcTimestamp,
        floor: Option<&str>,
        value: &T,
    ) -> Result<String, S3Error> {
        let seq_key = meta_key(self.bucket, &format!("writer/{}/seq", self.kind));
        let clock_key = meta_key(self.bucket, &format!("writer/{}/clock", self.kind));
        let seq: u64 = get_meta(self.replica, &seq_key)
            .await?
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
            + 1;
        let previous = get_meta(self.replica, &clock_key)
            .await?
            .and_then(|c| layout::clock_of_key(&c))
            .max(floor.and_then(layout::clock_of_key));
        let key = layout::next_key(area, clock, previous, self.replica.id(), seq);
        put_meta(self.replica, &seq_key, &seq.to_string()).await?;
        put_meta(self.replica, &clock_key, &key).await?;
        self.bucket.put_json(&key, value).await?;
        Ok(key)
    }
}

pub(crate) fn latest_clock(entries: &[SyncEntry]) -> HlcTimestamp {
    entries.iter().map(|e| e.action.timestamp()).max().unwrap_or_default()
}

fn counts_since(bucket: &Bucket, before: Counts) -> Counts {
    let now = bucket.counts();
    Counts {
        gets: now.gets - before.gets,
        lists: now.lists - before.lists,
        puts: now.puts - before.puts,
    }
}

/// Runs one round with the bucket: compress (when asked), upload the outbox, bootstrap from snapshots the first
/// time, read the shared area after the cursor, read the promoter's refusals of this replica's actions.
///
/// Crash safety: the outbox is uploaded, *then* the push mark moves; a replica killed in between uploads the same
/// actions again next round under a new key, and integration (the promoter's, then everyone's) drops duplicates.
/// Read cursors move only after what they cover is durably integrated.
pub async fn s3_round(replica: &Replica, bucket: &Bucket, options: &S3RoundOptions) -> Result<S3RoundReport, S3Error> {
    if !layout::valid_writer(replica.id()) {
        return Err(S3Error::Config(format!(
            "replica id {:?} cannot name a bucket area",
            replica.id()
        )));
    }
    let before = bucket.counts();
    let remote = bucket.url().to_owned();
    let mut report = S3RoundReport {
        remote: remote.clone(),
        ..S3RoundReport::default()
    };
    replica.remember_remote(&remote).await?;
    push(replica, bucket, options, &mut report).await?;
    pull(replica, bucket, options, &mut report).await?;
    read_rejections(replica, bucket, &mut report).await?;
    let mut seen = std::collections::HashSet::new();
    report.conflicts.retain(|c| seen.insert(c.action_id));
    report.requests = counts_since(bucket, before);
    Ok(report)
}

async fn push(
    replica: &Replica,
    bucket: &Bucket,
    options: &S3RoundOptions,
    report: &mut S3RoundReport,
) -> Result<(), S3Error> {
    let remote = bucket.url();
    let mut peer = replica.peer(remote).await?;
    if options.compress {
        report.compressed = replica.compress_outbox().await?;
    }
    let (outbox, upto) = replica.outbox(peer.pushed, &Filter::default()).await?;
    let writer = Writer {
        replica,
        bucket,
        kind: layout::USERS,
    };
    let area = layout::user_area(replica.id());
    let chunks: Vec<&[(u64, SyncEntry)]> = outbox.chunks(options.object_entries.max(1)).collect();
    let last = chunks.len();
    let to_push = outbox.len();
    for (i, chunk) in chunks.into_iter().enumerate() {
        let entries: Vec<SyncEntry> = chunk.iter().map(|(_, e)| e.clone()).collect();
        // Sent before they leave: never compressed afterwards.
        replica.mark_sent(&entries).await?;
        let batch = Batch {
            writer: replica.id().to_owned(),
            entries,
        };
        writer.put(&area, latest_clock(&batch.entries), None, &batch).await?;
        report.pushed += batch.entries.len();
        report.uploaded += 1;
        progress(
            &options.progress,
            Step::Pushed {
                done: report.pushed,
                total: to_push,
            },
        );
        // The mark moves only once the object is in the bucket.
        let covered = if i + 1 == last {
            upto
        } else {
            chunk.last().map_or(upto, |(o, _)| *o)
        };
        peer.on_push_acknowledged(covered);
        replica.save_peer(remote, &peer).await?;
    }
    if last == 0 && upto > peer.pushed {
        peer.on_push_acknowledged(upto);
        replica.save_peer(remote, &peer).await?;
    }
    Ok(())
}

pub(crate) async fn pull(
    replica: &Replica,
    bucket: &Bucket,
    options: &S3RoundOptions,
    report: &mut S3RoundReport,
) -> Result<(), S3Error> {
    let cursor_key = meta_key(bucket, "cursor/shared");
    let mut cursor = get_meta(replica, &cursor_key).await?;
    if cursor.is_none() && options.bootstrap {
        cursor = bootstrap(replica, bucket, report).await?;
        if let Some(c) = &cursor {
            put_meta(replica, &cursor_key, c).await?;
        }
    }
    let keys = bucket.list_after(SHARED, cursor.as_deref()).await?;
    for group in keys.chunks(options.integrate_objects.max(1)) {
        let mut gathered = Vec::new();
        for key in group {
            let batch: Batch = bucket.get_json(key).await?;
            gathered.extend(batch.entries);
            progress(
                &options.progress,
                Step::Pulled {
                    done: report.pulled + gathered.len(),
                },
            );
        }
        report.shared_objects += group.len();
        report.pulled += gathered.len();
        let integrated = replica.integrate(gathered).await?;
        progress(&options.progress, Step::Integrated { done: report.pulled });
        report.pulled_new += integrated.new;
        report.conflicts.extend(integrated.rejected);
        if let Some(last) = group.last() {
            put_meta(replica, &cursor_key, last).await?;
        }
    }
    Ok(())
}

/// Integrates the latest roll-up's snapshots; returns the shared cursor they cover (None: no snapshot yet).
async fn bootstrap(replica: &Replica, bucket: &Bucket, report: &mut S3RoundReport) -> Result<Option<String>, S3Error> {
    let indexes = bucket.list_after(SNAPSHOT_INDEX, None).await?;
    let Some(latest) = indexes.last() else {
        return Ok(None);
    };
    let index: SnapshotIndex = bucket.get_json(latest).await?;
    let mut gathered = Vec::new();
    for key in index.documents.values() {
        let snapshot: Snapshot = bucket.get_json(key).await?;
        gathered.extend(snapshot.entries);
        report.snapshot_documents += 1;
    }
    report.pulled += gathered.len();
    let integrated = replica.integrate(gathered).await?;
    report.pulled_new += integrated.new;
    report.conflicts.extend(integrated.rejected);
    report.bootstrapped_from = Some(latest.clone());
    Ok(Some(index.shared_cursor))
}

async fn read_rejections(replica: &Replica, bucket: &Bucket, report: &mut S3RoundReport) -> Result<(), S3Error> {
    let cursor_key = meta_key(bucket, "cursor/rejections");
    let cursor = get_meta(replica, &cursor_key).await?;
    let keys = bucket
        .list_after(&layout::rejection_area(replica.id()), cursor.as_deref())
        .await?;
    for key in &keys {
        let rejections: Rejections = bucket.get_json(key).await?;
        report
            .conflicts
            .extend(rejections.rejected.iter().filter_map(Rejection::as_conflict));
        report.rejected.extend(rejections.rejected);
        put_meta(replica, &cursor_key, key).await?;
    }
    Ok(())
}

/// How [`watch`] polls.
#[derive(Debug, Clone)]
pub struct S3WatchOptions {
    /// Each round.
    pub round: S3RoundOptions,
    /// Between rounds when nothing moves.
    pub poll_interval: Duration,
    /// Between rounds while the replica is active (a round moved something, or local actions were committed).
    pub active_interval: Duration,
    /// After a failed round, before retrying (doubles up to `poll_interval`).
    pub retry_interval: Duration,
}

impl Default for S3WatchOptions {
    fn default() -> Self {
        Self {
            round: S3RoundOptions::default(),
            poll_interval: Duration::from_secs(30),
            active_interval: Duration::from_secs(2),
            retry_interval: Duration::from_secs(1),
        }
    }
}

/// Keeps a replica synced with a bucket by polling until `stop` completes: rounds every `poll_interval`, every
/// `active_interval` while the replica is active. `on_round` sees every round's outcome; failures are retried.
pub async fn watch(
    replica: &Replica,
    bucket: &Bucket,
    options: &S3WatchOptions,
    mut on_round: impl FnMut(&Result<S3RoundReport, S3Error>),
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut retry = options.retry_interval;
    let mut last_ordinal = None;
    loop {
        let outcome = s3_round(replica, bucket, &options.round).await;
        on_round(&outcome);
        let ordinal = replica.reactor().store().max_ordinal().await.ok();
        let pause = match &outcome {
            Ok(report) => {
                retry = options.retry_interval;
                if report.moved() || ordinal != last_ordinal {
                    options.active_interval
                } else {
                    options.poll_interval
                }
            }
            Err(_) => {
                let pause = retry;
                retry = (retry * 2).min(options.poll_interval);
                pause
            }
        };
        last_ordinal = ordinal;
        // Wake early when local actions are committed: poll the store at the active pace.
        let deadline = tokio::time::Instant::now() + pause;
        loop {
            let step = options
                .active_interval
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(step) => {}
            }
            if tokio::time::Instant::now() >= deadline {
                break;
            }
            if replica.reactor().store().max_ordinal().await.ok() != last_ordinal {
                break;
            }
        }
    }
}
