//! The promoter: the "remote updater" of the dual-storage design. A replica with its own store that reads every
//! user area, validates each batch by replaying it with the same models, writes what it accepted to the shared area
//! (the only area replicas read others' actions from, so they read nothing a user could have forged) and tells each
//! author what it refused, and why, in the author's rejection area. It also rolls documents up into snapshots.
//!
//! What is refused, and how:
//! * **Entirely** (never reaches the shared area): an object that is not a batch (`MALFORMED`), an action in a user
//!   area that is not its author's own (`FORGED`: a user writes only under `users/<own id>/`, so an action there
//!   claiming another replica was forged), an action whose signature does not verify (`BAD_SIGNATURE`: malformed,
//!   by a key its replica id does not derive from, or not over its content; checked first, so an action that
//!   claims its folder's replica id without that replica's key is refused by its signature), an unsigned action
//!   when the promoter's replica requires signatures (`SIGNATURE_REQUIRED`), an action of the `local` scope
//!   (`LOCAL`).
//! * **Kept, marked rejected**: an action its model refuses in its merged position. It is in the shared area, and
//!   every replica that integrates it marks it rejected the same way: that is folio's merge rule (a rejected action
//!   stays in the history, so replicas that integrated the same actions have the same state hash, the author's
//!   included), and the author is told.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use folio_core::{DocumentId, HlcTimestamp, Scope};
use folio_sync::progress::{Step, report as progress};
use folio_sync::{ProgressSink, PullRequest, Replica, SyncEntry};
use uuid::Uuid;

use crate::S3Error;
use crate::bucket::{Bucket, Counts};
use crate::layout::{self, Batch, Rejection, Rejections, SHARED, SNAPSHOT_INDEX, SNAPSHOTS, Snapshot, SnapshotIndex};
use crate::round::{self, S3RoundOptions, S3RoundReport, Writer, get_meta, meta_key, put_meta};

/// How a promotion runs.
#[derive(Debug, Clone)]
pub struct PromoteOptions {
    /// Also roll every document up into a snapshot afterwards.
    pub snapshot: bool,
    /// Entries per shared object at most.
    pub object_entries: usize,
    /// Where the promotion reports how far it has come (a bar on a terminal); `None`: nowhere.
    pub progress: Option<ProgressSink>,
}

impl Default for PromoteOptions {
    fn default() -> Self {
        Self {
            snapshot: false,
            object_entries: 20_000,
            progress: None,
        }
    }
}

/// What a promotion did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PromoteReport {
    /// The bucket address.
    pub remote: String,
    /// The promoter's replica id.
    pub promoter: String,
    /// Shared objects the promoter caught up on first (written by an earlier promoter store).
    pub caught_up: usize,
    /// User areas read.
    pub users: usize,
    /// User-area objects read.
    pub objects: usize,
    /// Actions written to the shared area.
    pub promoted: usize,
    /// Of those, actions the promoter did not have (the rest are re-sent or re-promoted duplicates).
    pub new: usize,
    /// Shared objects written.
    pub shared_written: Vec<String>,
    /// What was refused, per author.
    pub rejected: BTreeMap<String, Vec<Rejection>>,
    /// The snapshot index written (or found already written at this cursor), with `--snapshot`.
    pub snapshot_index: Option<String>,
    /// Snapshots written (a snapshot already in the bucket is not written again).
    pub snapshots_written: usize,
    /// Requests made to the bucket.
    pub requests: Counts,
}

fn now() -> HlcTimestamp {
    HlcTimestamp::new(folio_core::clock::system_millis(), 0)
}

/// Validates one user-area batch: the entries that may be promoted, and the refusals. `horizon` is the latest action
/// clock the promoter accepts (`Reactor::clock_horizon`, as `folio serve` refuses pushes): integrating an action
/// moves the promoter's clock past it, so a clock far in the future would drag every later action along.
/// With `require_signatures`, unsigned actions are refused too.
pub fn validate(
    user: &str,
    source: &str,
    batch: &Batch,
    horizon: u64,
    require_signatures: bool,
) -> (Vec<SyncEntry>, Vec<Rejection>) {
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let actions: Vec<&folio_core::Action> = batch.entries.iter().map(|e| &e.action).collect();
    let signatures = folio_core::signature::check_all(&actions, require_signatures);
    for (entry, signature) in batch.entries.iter().zip(signatures) {
        let reason = if let Err(e) = signature {
            Some(format!("{}: {e}", e.code()))
        } else if entry.action.replica.as_deref() != Some(user) {
            Some(format!(
                "FORGED: an action of replica {} in the area of {user}",
                entry.action.replica.as_deref().unwrap_or("(none)")
            ))
        } else if entry.scope == Scope::Local || entry.action.scope != entry.scope {
            Some("LOCAL: local-scope actions never leave their replica".to_owned())
        } else if entry.action.timestamp_utc_ms > horizon {
            Some("FUTURE: the action's clock is further ahead of the promoter's than it accepts".to_owned())
        } else {
            None
        };
        match reason {
            Some(reason) => refused.push(Rejection {
                source: source.to_owned(),
                document_id: Some(entry.document_id),
                action_id: Some(entry.action.id),
                reason,
                kept_marked: false,
            }),
            None => accepted.push(entry.clone()),
        }
    }
    (accepted, refused)
}

/// Runs one promotion: catch up on the shared area, read every user area after its cursor, validate, write the
/// shared batch and the refusals, then move the cursors; with `options.snapshot`, roll up afterwards.
///
/// Crash safety: user cursors move only after the shared objects and refusals are written; a promoter killed
/// before that promotes the same batches again, and every replica drops the duplicates. Everything validated is
/// written, duplicates included, because a promoter killed after integrating but before writing must still write;
/// the refusals found are kept in the promoter's meta table until written, for the same reason. One promoter runs at a time (it is the only writer of the shared area).
pub async fn promote(replica: &Replica, bucket: &Bucket, options: &PromoteOptions) -> Result<PromoteReport, S3Error> {
    if !layout::valid_writer(replica.id()) {
        return Err(S3Error::Config(format!(
            "replica id {:?} cannot name a writer",
            replica.id()
        )));
    }
    let before = bucket.counts();
    let mut report = PromoteReport {
        remote: bucket.url().to_owned(),
        promoter: replica.id().to_owned(),
        ..PromoteReport::default()
    };
    // A promoter with a fresh store first learns what is shared already (from snapshots when there are some).
    let mut caught = S3RoundReport::default();
    round::pull(replica, bucket, &S3RoundOptions::default(), &mut caught).await?;
    report.caught_up = caught.shared_objects;

    let users = bucket.folders(layout::USERS).await?;
    let mut accepted: Vec<SyncEntry> = Vec::new();
    let mut authors: HashMap<Uuid, (String, String)> = HashMap::new();
    let mut refused: BTreeMap<String, Vec<Rejection>> = BTreeMap::new();
    let mut cursors: Vec<(String, String)> = Vec::new();
    for user in users {
        if !layout::valid_writer(&user) {
            tracing::warn!("skipping the user area {user:?}: not a replica id");
            continue;
        }
        report.users += 1;
        let cursor_key = meta_key(bucket, &format!("promote/users/{user}"));
        let cursor = get_meta(replica, &cursor_key).await?;
        let keys = bucket.list_after(&layout::user_area(&user), cursor.as_deref()).await?;
        for key in &keys {
            report.objects += 1;
            progress(&options.progress, Step::ObjectsRead { done: report.objects });
            match bucket.get_json::<Batch>(key).await {
                Ok(batch) => {
                    let (ok, bad) = validate(
                        &user,
                        key,
                        &batch,
                        replica.reactor().clock_horizon(),
                        replica.signatures_required(),
                    );
                    for e in &ok {
                        authors.insert(e.action.id, (user.clone(), key.clone()));
                    }
                    accepted.extend(ok);
                    refused.entry(user.clone()).or_default().extend(bad);
                }
                Err(S3Error::Malformed { reason, .. }) => {
                    refused.entry(user.clone()).or_default().push(Rejection {
                        source: key.clone(),
                        document_id: None,
                        action_id: None,
                        reason: format!("MALFORMED: {reason}"),
                        kept_marked: false,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        if let Some(last) = keys.last() {
            cursors.push((cursor_key, last.clone()));
        }
    }

    // Refusals found by a run that stopped before writing them (integrating again would find duplicates, not
    // refusals): they are written with this run's.
    let pending_key = meta_key(bucket, "promote/pending-rejections");
    if let Some(pending) = get_meta(replica, &pending_key).await? {
        let pending: BTreeMap<String, Vec<Rejection>> = serde_json::from_str(&pending).unwrap_or_default();
        for (user, rejected) in pending {
            refused.entry(user).or_default().extend(rejected);
        }
    }
    // Replaying with the models validates: what they refuse in its merged position is kept, marked.
    let integrated = replica.integrate(accepted.clone()).await?;
    report.new = integrated.new;
    for r in integrated.rejected {
        if let Some((user, source)) = authors.get(&r.action_id) {
            refused.entry(user.clone()).or_default().push(Rejection {
                source: source.clone(),
                document_id: Some(r.document_id),
                action_id: Some(r.action_id),
                // The replica refuses a bad signature before integrating (validation found them first anyway).
                kept_marked: !r.reason.contains("SIGNATURE"),
                reason: r.reason,
            });
        }
    }

    refused.retain(|_, r| !r.is_empty());
    if !refused.is_empty() {
        let text = serde_json::to_string(&refused).map_err(|e| S3Error::Malformed {
            key: pending_key.clone(),
            reason: e.to_string(),
        })?;
        put_meta(replica, &pending_key, &text).await?;
    }

    let shared_cursor_key = meta_key(bucket, "cursor/shared");
    let writer = Writer {
        replica,
        bucket,
        kind: SHARED,
    };
    for chunk in accepted.chunks(options.object_entries.max(1)) {
        let floor = get_meta(replica, &shared_cursor_key).await?;
        let batch = Batch {
            writer: replica.id().to_owned(),
            entries: chunk.to_vec(),
        };
        let clock = round::latest_clock(chunk).max(now());
        let key = writer.put(SHARED, clock, floor.as_deref(), &batch).await?;
        // The promoter has what it wrote: its shared cursor moves past it.
        put_meta(replica, &shared_cursor_key, &key).await?;
        report.promoted += chunk.len();
        report.shared_written.push(key);
        progress(
            &options.progress,
            Step::ObjectsWritten {
                done: report.shared_written.len(),
            },
        );
    }
    let rejections_writer = Writer {
        replica,
        bucket,
        kind: layout::REJECTIONS,
    };
    for (user, rejected) in &refused {
        let mut sources: Vec<String> = rejected.iter().map(|r| r.source.clone()).collect();
        sources.dedup();
        let content = Rejections {
            promoter: replica.id().to_owned(),
            sources,
            rejected: rejected.clone(),
        };
        rejections_writer
            .put(&layout::rejection_area(user), now(), None, &content)
            .await?;
    }
    if !refused.is_empty() {
        put_meta(replica, &pending_key, "{}").await?;
    }
    report.rejected = refused;
    for (key, value) in cursors {
        put_meta(replica, &key, &value).await?;
    }
    if options.snapshot {
        let (index, written) = roll_up(replica, bucket).await?;
        report.snapshot_index = index;
        report.snapshots_written = written;
    }
    let after = bucket.counts();
    report.requests = Counts {
        gets: after.gets - before.gets,
        lists: after.lists - before.lists,
        puts: after.puts - before.puts,
    };
    Ok(report)
}

/// Writes a snapshot of every document the promoter has, at its shared cursor, and the index naming them. Returns
/// the index key (None when nothing is shared yet) and how many snapshots were new.
pub async fn roll_up(replica: &Replica, bucket: &Bucket) -> Result<(Option<String>, usize), S3Error> {
    let Some(cursor) = get_meta(replica, &meta_key(bucket, "cursor/shared")).await? else {
        return Ok((None, 0));
    };
    let name = cursor.rsplit('/').next().unwrap_or(&cursor);
    let index_key = format!("{SNAPSHOT_INDEX}/{name}");
    if bucket.exists(&index_key).await? {
        return Ok((Some(index_key), 0));
    }
    // Every effective action, all authors, in commit order, grouped by document.
    let mut by_document: BTreeMap<DocumentId, Vec<SyncEntry>> = BTreeMap::new();
    let mut after = 0;
    loop {
        let page = replica
            .serve_pull(&PullRequest {
                after,
                limit: 10_000,
                exclude: None,
                filter: Default::default(),
            })
            .await?;
        for entry in page.entries {
            by_document.entry(entry.document_id).or_default().push(entry);
        }
        after = page.cursor;
        if !page.more {
            break;
        }
    }
    let mut index = SnapshotIndex {
        shared_cursor: cursor.clone(),
        documents: BTreeMap::new(),
    };
    let mut written = 0;
    let main = layout::main_branch();
    for (document_id, entries) in by_document {
        let Some(document) = replica
            .reactor()
            .get(document_id, &main)
            .await
            .map_err(folio_sync::SyncError::from)?
        else {
            continue;
        };
        let last = entries.iter().map(|e| e.action.timestamp()).max().unwrap_or_default();
        let snapshot = Snapshot {
            document_id,
            document_type: document.header.document_type.clone(),
            revision: document.header.revision,
            last_update: format!("{}.{}", last.millis, last.counter),
            state_hash: document.state_hash().to_hex(),
            state: document.global_json(),
            entries,
        };
        let bytes = serde_json::to_vec(&snapshot).map_err(|e| S3Error::Malformed {
            key: format!("snapshot of {document_id}"),
            reason: e.to_string(),
        })?;
        let key = format!("{SNAPSHOTS}/{}.json", blake3::hash(&bytes).to_hex());
        if !bucket.exists(&key).await? {
            bucket.put_bytes(&key, bytes).await?;
            written += 1;
        }
        index.documents.insert(document_id, key);
    }
    bucket.put_json(&index_key, &index).await?;
    Ok((Some(index_key), written))
}

#[cfg(test)]
mod tests {
    use super::*;
    use folio_core::{Action, Branch};
    use serde_json::json;

    fn entry(replica: &str, scope: Scope, millis: u64) -> SyncEntry {
        let mut action = Action::new("ADD_TODO", json!({}), scope, HlcTimestamp::new(millis, 0));
        action.replica = Some(replica.to_owned());
        SyncEntry {
            document_id: DocumentId::new(),
            scope,
            branch: Branch::default(),
            action,
        }
    }

    const HORIZON_MS: u64 = 5 * 60 * 1000;

    #[test]
    fn validation_refuses_forged_local_and_future_actions() {
        let now = folio_core::clock::system_millis();
        let batch = Batch {
            writer: "u".into(),
            entries: vec![
                entry("u", Scope::Global, now),
                entry("v", Scope::Global, now),
                entry("u", Scope::Local, now),
                entry("u", Scope::Global, now + 2 * HORIZON_MS),
                entry("u", Scope::Document, now + 1000),
            ],
        };
        let (ok, bad) = validate("u", "users/u/k.json", &batch, now + HORIZON_MS, false);
        assert_eq!(ok.len(), 2);
        let reasons: Vec<&str> = bad.iter().map(|r| r.reason.split(':').next().unwrap()).collect();
        assert_eq!(reasons, ["FORGED", "LOCAL", "FUTURE"]);
        assert!(bad.iter().all(|r| !r.kept_marked && r.source == "users/u/k.json"));
    }

    #[test]
    fn validation_refuses_forged_actions_by_their_signature() {
        let now = folio_core::clock::system_millis();
        let user = folio_core::ReplicaKey::from_seed(&[1; 32]);
        let thief = folio_core::ReplicaKey::from_seed(&[2; 32]);
        let u = user.replica_id();
        let signed = |key: &folio_core::ReplicaKey| {
            let mut e = entry(u, Scope::Global, now);
            key.sign(&mut e.action);
            e
        };
        // The user's own, signed: promoted.
        let good = signed(&user);
        // The thief claims the user's id in the user's own folder, signing with its own key.
        let mut stolen = signed(&thief);
        stolen.action.replica = Some(u.to_owned());
        // The user's signature, with the content changed.
        let mut tampered = signed(&user);
        tampered.action.input = json!({"changed": true});
        // The user's signature, presented under the thief's key.
        let mut replayed = signed(&user);
        replayed.action.signer = Some(thief.public().to_owned());
        let unsigned = entry(u, Scope::Global, now);
        let batch = Batch {
            writer: u.into(),
            entries: vec![good, stolen, tampered, replayed, unsigned.clone()],
        };
        let (ok, bad) = validate(u, "users/u/k.json", &batch, now + HORIZON_MS, false);
        assert_eq!(ok.len(), 2, "the signed and the unsigned one");
        let reasons: Vec<&str> = bad.iter().map(|r| r.reason.split(':').next().unwrap()).collect();
        assert_eq!(reasons, ["BAD_SIGNATURE", "BAD_SIGNATURE", "BAD_SIGNATURE"]);
        let batch = Batch {
            writer: u.into(),
            entries: vec![unsigned],
        };
        let (ok, bad) = validate(u, "users/u/k.json", &batch, now + HORIZON_MS, true);
        assert!(ok.is_empty());
        assert!(bad[0].reason.starts_with("SIGNATURE_REQUIRED: "), "{}", bad[0].reason);
    }
}
