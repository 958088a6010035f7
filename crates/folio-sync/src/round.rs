//! One sync round between a replica and a remote: push, then pull.

use serde::Serialize;

use crate::SyncError;
use crate::progress::{ProgressSink, Step, report as progress};
use crate::protocol::{Filter, PullRequest, pages};
use crate::replica::{Remote, Replica};

/// How a round runs.
#[derive(Debug, Clone)]
pub struct RoundOptions {
    /// Which documents move.
    pub filter: Filter,
    /// Compress own actions never sent before pushing them.
    pub compress: bool,
    /// Entries per push request at most.
    pub push_entries: usize,
    /// Entries per pull request at most.
    pub pull_entries: usize,
    /// Pulled entries integrated at once at most: pages are gathered up to this many, so that a unit that must
    /// rebase does it once rather than once per page.
    pub integrate_entries: usize,
    /// Where the round reports how far it has come (a bar on a terminal); `None`: nowhere.
    pub progress: Option<ProgressSink>,
}

impl Default for RoundOptions {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            compress: true,
            push_entries: 100_000,
            pull_entries: 10_000,
            integrate_entries: 200_000,
            progress: None,
        }
    }
}

/// What a round moved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RoundReport {
    /// The remote's replica id.
    pub remote: String,
    /// Operations saved by compressing the outbox.
    pub compressed: usize,
    /// Own actions sent.
    pub pushed: usize,
    /// Of those, actions the remote did not have.
    pub pushed_new: usize,
    /// Entries received.
    pub pulled: usize,
    /// Of those, actions this replica did not have.
    pub pulled_new: usize,
    /// Actions kept but refused by their reducer in their merged position, here or at the remote.
    pub conflicts: Vec<crate::protocol::RejectedAction>,
}

/// Runs one round: compresses the outbox (when asked), pushes it in pages under the remote's body limit, then pulls
/// until the remote has nothing more. Cursors are saved after every page, so an interrupted round resumes.
pub async fn sync_round(
    replica: &Replica,
    remote: &dyn Remote,
    options: &RoundOptions,
) -> Result<RoundReport, SyncError> {
    let info = remote.info().await?;
    if info.replica == replica.id() {
        return Err(SyncError::Protocol("a replica cannot sync with itself".into()));
    }
    let mut report = RoundReport {
        remote: info.replica.clone(),
        ..RoundReport::default()
    };
    replica.remember_remote(&info.replica).await?;
    let mut peer = replica.peer(&info.replica).await?;
    if options.compress {
        report.compressed = replica.compress_outbox().await?;
    }
    // Actions made under the store's former (random, pre-key) replica id and not acknowledged yet: pushed as that
    // replica first. The mark moves with the own outbox below, which is read over the same ordinals.
    if let Some(former) = replica.former_id().await? {
        let (old, old_upto) = replica.former_outbox(&former, peer.pushed, &options.filter).await?;
        let max_bytes = (info.max_body_bytes / 2).max(16 * 1024);
        for page in pages(&former, old, old_upto, options.push_entries, max_bytes) {
            if !page.request.entries.is_empty() {
                let answer = remote.push(&page.request).await?;
                report.pushed += page.request.entries.len();
                report.pushed_new += answer.new;
                report.conflicts.extend(answer.rejected);
            }
        }
    }
    let t = std::time::Instant::now();
    let (outbox, upto) = replica.outbox(peer.pushed, &options.filter).await?;
    tracing::debug!("outbox of {} entries in {:?}", outbox.len(), t.elapsed());
    let max_bytes = (info.max_body_bytes / 2).max(16 * 1024);
    let to_push = outbox.len();
    if to_push > 0 {
        progress(
            &options.progress,
            Step::Pushed {
                done: 0,
                total: to_push,
            },
        );
    }
    for page in pages(replica.id(), outbox, upto, options.push_entries, max_bytes) {
        if !page.request.entries.is_empty() {
            replica.mark_sent(&page.request.entries).await?;
            let t = std::time::Instant::now();
            let answer = remote.push(&page.request).await?;
            tracing::debug!("pushed {} entries in {:?}", page.request.entries.len(), t.elapsed());
            report.pushed += page.request.entries.len();
            report.pushed_new += answer.new;
            report.conflicts.extend(answer.rejected);
            progress(
                &options.progress,
                Step::Pushed {
                    done: report.pushed,
                    total: to_push,
                },
            );
        }
        peer.on_push_acknowledged(page.upto);
        replica.save_peer(&info.replica, &peer).await?;
    }
    let mut cursor = peer.pulled;
    loop {
        let mut gathered = Vec::new();
        let more = loop {
            let request = PullRequest {
                after: cursor,
                limit: options.pull_entries,
                exclude: Some(replica.id().to_owned()),
                filter: options.filter.clone(),
            };
            let answer = remote.pull(&request).await?;
            cursor = cursor.max(answer.cursor);
            gathered.extend(answer.entries);
            if !gathered.is_empty() {
                progress(
                    &options.progress,
                    Step::Pulled {
                        done: report.pulled + gathered.len(),
                    },
                );
            }
            if !answer.more || gathered.len() >= options.integrate_entries.max(1) {
                break answer.more;
            }
        };
        report.pulled += gathered.len();
        let t = std::time::Instant::now();
        let n = gathered.len();
        let integrated = replica.integrate(gathered).await?;
        tracing::debug!("integrated {n} pulled entries in {:?}", t.elapsed());
        report.pulled_new += integrated.new;
        report.conflicts.extend(integrated.rejected);
        if n > 0 {
            progress(&options.progress, Step::Integrated { done: report.pulled });
        }
        // The cursor moves only once what it covers is durably integrated.
        peer.pulled = peer.pulled.max(cursor);
        replica.save_peer(&info.replica, &peer).await?;
        if !more {
            break;
        }
    }
    // The same refusal may be seen at the remote (push) and here (pull): report each action once.
    let mut seen = std::collections::HashSet::new();
    report.conflicts.retain(|c| seen.insert(c.action_id));
    Ok(report)
}
