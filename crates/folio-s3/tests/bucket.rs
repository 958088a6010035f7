//! Replicas that share only a bucket, on a real S3-compatible server (s3s-fs with SigV4, started by
//! `scripts/test`; see `scripts/s3-server`). Without `FOLIO_TEST_S3_ENDPOINT` these tests skip, unless `CI` or
//! `FOLIO_REQUIRE_SERVICES` is set: then they fail, saying what is missing.

use std::sync::Arc;

use serde_json::{Value, json};

use folio_core::{Branch, DocumentId, ModelRegistry, OpHash, Scope};
use folio_reactor::{ReactorConfig, Submit};
use folio_s3::layout::{self, Batch};
use folio_s3::{
    Bucket, BucketOptions, PromoteOptions, PromoteReport, S3Error, S3RoundOptions, S3RoundReport, promote, s3_round,
};
use folio_store::MemoryStore;
use folio_sync::Replica;

/// A bucket under a prefix of its own (tests share the server), or None to skip.
fn bucket(test: &str) -> Option<Bucket> {
    let Ok(endpoint) = std::env::var("FOLIO_TEST_S3_ENDPOINT") else {
        if std::env::var_os("CI").is_some() || std::env::var_os("FOLIO_REQUIRE_SERVICES").is_some() {
            panic!(
                "FOLIO_TEST_S3_ENDPOINT is not set: run the tests through scripts/test, which starts an S3-compatible \
                 server (scripts/s3-server), or unset CI and FOLIO_REQUIRE_SERVICES to skip the bucket tests"
            );
        }
        eprintln!("skipping {test}: FOLIO_TEST_S3_ENDPOINT is not set (run scripts/test)");
        return None;
    };
    let name = std::env::var("FOLIO_TEST_S3_BUCKET").unwrap_or_else(|_| "folio-test".to_owned());
    let prefix = format!("{test}-{}", uuid::Uuid::now_v7().simple());
    let options = BucketOptions {
        endpoint: Some(endpoint),
        ..BucketOptions::default()
    };
    Some(Bucket::open(&format!("s3://{name}/{prefix}"), &options).expect("bucket"))
}

/// A handle on the same bucket and prefix with its own request counters.
fn same(bucket: &Bucket) -> Bucket {
    let options = BucketOptions {
        endpoint: std::env::var("FOLIO_TEST_S3_ENDPOINT").ok(),
        ..BucketOptions::default()
    };
    Bucket::open(bucket.url(), &options).unwrap()
}

async fn replica() -> Replica {
    let config = ReactorConfig {
        executors: 2,
        ..ReactorConfig::default()
    };
    Replica::open(
        Arc::new(MemoryStore::new()),
        Arc::new(ModelRegistry::with_builtin()),
        config,
    )
    .await
    .unwrap()
}

async fn act(r: &Replica, doc: DocumentId, action_type: &str, input: Value) {
    let action = r.reactor().action(action_type, input, Scope::Global);
    r.reactor()
        .apply(Submit::new(doc, vec![action]))
        .await
        .expect("local action");
}

async fn state(r: &Replica, doc: DocumentId) -> (Value, OpHash) {
    let d = r
        .reactor()
        .get(doc, &Branch::default())
        .await
        .unwrap()
        .expect("document exists here");
    (d.global_json(), d.state_hash())
}

async fn round(r: &Replica, bucket: &Bucket) -> S3RoundReport {
    s3_round(r, bucket, &S3RoundOptions::default()).await.expect("round")
}

async fn promote_once(p: &Replica, bucket: &Bucket, snapshot: bool) -> PromoteReport {
    let options = PromoteOptions {
        snapshot,
        ..PromoteOptions::default()
    };
    promote(p, bucket, &options).await.expect("promote")
}

/// Three replicas, a promoter, one document made on the first and known to all.
async fn world(bucket: &Bucket) -> ([Replica; 3], Replica, DocumentId) {
    let rs = [replica().await, replica().await, replica().await];
    let promoter = replica().await;
    let doc = rs[0]
        .reactor()
        .create_document("folio/todo-list", "groceries", None)
        .await
        .unwrap()
        .header
        .id;
    assert_eq!(round(&rs[0], bucket).await.uploaded, 1);
    let promoted = promote_once(&promoter, bucket, false).await;
    assert!(promoted.promoted >= 1, "{promoted:?}");
    for r in &rs[1..] {
        let report = round(r, bucket).await;
        assert!(report.pulled_new >= 1, "{report:?}");
    }
    (rs, promoter, doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_converge_through_a_bucket_and_the_promoter_rejects_invalid_updates() {
    let Some(bucket) = bucket("converge") else { return };
    let ([a, b, c], promoter, doc) = world(&bucket).await;

    // Offline edits on each, some concurrent on the same item.
    act(&a, doc, "ADD_TODO", json!({"id": "milk", "title": "Milk"})).await;
    act(&b, doc, "ADD_TODO", json!({"id": "eggs", "title": "Eggs"})).await;
    act(&c, doc, "ADD_TODO", json!({"id": "milk", "title": "Oat milk"})).await;
    act(&c, doc, "UPDATE_TODO", json!({"id": "milk", "done": true})).await;
    for r in [&a, &b, &c] {
        let report = round(r, &bucket).await;
        assert!(report.pushed >= 1 && report.uploaded == 1, "{report:?}");
    }

    // B's area also gets an update its model refuses (an empty title) and one forged in A's name: written straight
    // into the bucket, as a modified client could.
    let invalid = b
        .reactor()
        .action("ADD_TODO", json!({"id": "bad", "title": ""}), Scope::Global);
    let mut forged = b
        .reactor()
        .action("ADD_TODO", json!({"id": "forged", "title": "Forged"}), Scope::Global);
    forged.replica = Some(a.id().to_owned());
    let entry = |action| folio_sync::SyncEntry {
        document_id: doc,
        scope: Scope::Global,
        branch: Branch::default(),
        action,
    };
    let key = layout::next_key(&layout::user_area(b.id()), invalid.timestamp(), None, b.id(), 999_999);
    let batch = Batch {
        writer: b.id().to_owned(),
        entries: vec![entry(invalid.clone()), entry(forged.clone())],
    };
    bucket.put_json(&key, &batch).await.unwrap();

    let promoted = promote_once(&promoter, &bucket, false).await;
    assert_eq!(promoted.users, 3, "{promoted:?}");
    let refused = &promoted.rejected[b.id()];
    assert_eq!(refused.len(), 2, "{refused:?}");
    let forged_refusal = refused.iter().find(|r| r.action_id == Some(forged.id)).unwrap();
    assert!(forged_refusal.reason.starts_with("FORGED"), "{forged_refusal:?}");
    assert!(!forged_refusal.kept_marked);
    let invalid_refusal = refused.iter().find(|r| r.action_id == Some(invalid.id)).unwrap();
    assert!(invalid_refusal.reason.contains("EMPTY_TITLE"), "{invalid_refusal:?}");
    assert!(invalid_refusal.kept_marked);
    assert!(!promoted.rejected.contains_key(a.id()) && !promoted.rejected.contains_key(c.id()));

    // Everyone reads the shared area; the rejections reach their author, and only it.
    for r in [&a, &b, &c] {
        let report = round(r, &bucket).await;
        if r.id() == b.id() {
            assert_eq!(report.rejected.len(), 2, "{report:?}");
            for id in [forged.id, invalid.id] {
                assert!(report.conflicts.iter().any(|c| c.action_id == id), "{report:?}");
            }
        } else {
            assert!(report.rejected.is_empty(), "{report:?}");
        }
    }
    // A second pass: everyone has everything (the first ones synced before the later ones' edits were promoted).
    for r in [&a, &b, &c] {
        let report = round(r, &bucket).await;
        assert!(report.rejected.is_empty(), "rejections are read once: {report:?}");
    }
    let (state_a, hash_a) = state(&a, doc).await;
    for r in [&b, &c, &promoter] {
        assert_eq!(state(r, doc).await.1, hash_a, "state hashes differ");
    }
    let items = state_a["items"].as_object().or_else(|| state_a.as_object()).unwrap();
    let text = state_a.to_string();
    assert!(text.contains("Eggs") && text.contains("milk"), "{state_a}");
    assert!(
        !text.contains("Forged"),
        "a forged action never reaches the shared area: {state_a}"
    );
    assert!(
        !text.contains("\"bad\""),
        "the refused update changed nothing: {state_a}"
    );
    assert!(!items.is_empty());

    // The forged action is in no replica's history; the refused one is kept, marked, everywhere.
    assert!(
        !text.contains(&forged.id.to_string()),
        "the forged action id must not appear in the state"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_replica_bootstraps_from_a_snapshot_and_reads_fewer_objects() {
    let Some(bucket) = bucket("snapshot") else { return };
    let ([a, b, _c], promoter, doc) = world(&bucket).await;
    // A second document that no later update touches.
    let quiet = b
        .reactor()
        .create_document("folio/todo-list", "quiet", None)
        .await
        .unwrap()
        .header
        .id;
    // Many small batches: one shared object each.
    for i in 0..12 {
        let r = if i % 2 == 0 { &a } else { &b };
        act(
            r,
            doc,
            "ADD_TODO",
            json!({"id": format!("item{i}"), "title": format!("Item {i}")}),
        )
        .await;
        round(r, &bucket).await;
        promote_once(&promoter, &bucket, false).await;
    }
    let rolled = promote_once(&promoter, &bucket, true).await;
    let index = rolled.snapshot_index.clone().expect("a snapshot index");
    assert_eq!(rolled.snapshots_written, 2, "{rolled:?}");
    // Rolling up again at the same cursor writes nothing: snapshots are immutable.
    let again = promote_once(&promoter, &bucket, true).await;
    assert_eq!(again.snapshot_index.as_deref(), Some(index.as_str()));
    assert_eq!(again.snapshots_written, 0);
    // Updates after the snapshot.
    for i in 12..15 {
        act(
            &a,
            doc,
            "UPDATE_TODO",
            json!({"id": format!("item{}", i - 12), "done": true}),
        )
        .await;
        round(&a, &bucket).await;
        promote_once(&promoter, &bucket, false).await;
    }
    // A later roll-up writes only the snapshot of the document that changed.
    let later = promote_once(&promoter, &bucket, true).await;
    assert_eq!(later.snapshots_written, 1, "{later:?}");
    for i in 15..17 {
        act(
            &a,
            doc,
            "UPDATE_TODO",
            json!({"id": format!("item{}", i - 12), "done": true}),
        )
        .await;
        round(&a, &bucket).await;
        promote_once(&promoter, &bucket, false).await;
    }
    let index = later.snapshot_index.clone().unwrap();

    let boot_bucket = same(&bucket);
    let fresh = replica().await;
    let booted = round(&fresh, &boot_bucket).await;
    assert_eq!(booted.bootstrapped_from.as_deref(), Some(index.as_str()), "{booted:?}");
    assert_eq!(booted.snapshot_documents, 2);
    assert_eq!(
        booted.shared_objects, 2,
        "only the updates after the snapshot: {booted:?}"
    );

    let replay_bucket = same(&bucket);
    let replayer = replica().await;
    let options = S3RoundOptions {
        bootstrap: false,
        ..S3RoundOptions::default()
    };
    let replayed = s3_round(&replayer, &replay_bucket, &options).await.unwrap();
    assert!(replayed.bootstrapped_from.is_none());
    let (boot, replay) = (boot_bucket.counts(), replay_bucket.counts());
    eprintln!("bootstrap: {boot:?}, full replay: {replay:?}");
    assert!(
        boot.gets < replay.gets && boot.reads() < replay.reads(),
        "bootstrap {boot:?} vs full replay {replay:?}"
    );
    let (_, hash) = state(&promoter, doc).await;
    for r in [&fresh, &replayer, &a] {
        round(r, &bucket).await;
    }
    assert_eq!(state(&fresh, doc).await.1, hash, "bootstrapped replica");
    assert_eq!(state(&replayer, doc).await.1, hash, "replayed replica");
    assert_eq!(state(&a, doc).await.1, hash);
    assert_eq!(state(&fresh, quiet).await.1, state(&promoter, quiet).await.1);
    // The bootstrapped replica goes on like any other: its edits reach the others.
    act(&fresh, doc, "ADD_TODO", json!({"id": "late", "title": "Late"})).await;
    round(&fresh, &bucket).await;
    promote_once(&promoter, &bucket, false).await;
    round(&replayer, &bucket).await;
    assert_eq!(state(&fresh, doc).await.1, state(&replayer, doc).await.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_upload_loses_nothing() {
    let Some(bucket) = bucket("crash") else { return };
    let ([a, b, _c], promoter, doc) = world(&bucket).await;
    act(&a, doc, "ADD_TODO", json!({"id": "x", "title": "X"})).await;
    act(&a, doc, "ADD_TODO", json!({"id": "y", "title": "Y"})).await;
    // The object reaches the bucket, then the replica "dies" before recording the upload.
    bucket.inject_failure_after_next_put();
    let crashed = s3_round(&a, &bucket, &S3RoundOptions::default()).await;
    assert!(matches!(crashed, Err(S3Error::Injected(_))), "{crashed:?}");
    let area = bucket.list_after(&layout::user_area(a.id()), None).await.unwrap();
    assert_eq!(area.len(), 2, "the creation batch and the interrupted one: {area:?}");
    // The next round sends the same actions again, under a new key (never overwriting the first).
    let resumed = round(&a, &bucket).await;
    assert_eq!(resumed.uploaded, 1, "{resumed:?}");
    let area_after = bucket.list_after(&layout::user_area(a.id()), None).await.unwrap();
    assert_eq!(area_after.len(), 3);
    assert!(area_after.starts_with(&area), "earlier keys untouched");
    // The promoter reads both copies; integration drops the duplicates.
    let promoted = promote_once(&promoter, &bucket, false).await;
    assert_eq!(promoted.new, 2, "each action once: {promoted:?}");
    round(&b, &bucket).await;
    let (state_b, hash_b) = state(&b, doc).await;
    assert_eq!(hash_b, state(&a, doc).await.1);
    assert!(
        state_b.to_string().contains("\"X\"") && state_b.to_string().contains("\"Y\""),
        "{state_b}"
    );
    // And a round with nothing new uploads nothing.
    assert_eq!(round(&a, &bucket).await.uploaded, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoter_killed_before_writing_refusals_still_delivers_them() {
    let Some(bucket) = bucket("promoter-crash") else { return };
    let ([a, b, _c], promoter, doc) = world(&bucket).await;
    act(&b, doc, "ADD_TODO", json!({"id": "ok", "title": "Fine"})).await;
    round(&b, &bucket).await;
    let invalid = b
        .reactor()
        .action("ADD_TODO", json!({"id": "bad", "title": ""}), Scope::Global);
    let key = layout::next_key(&layout::user_area(b.id()), invalid.timestamp(), None, b.id(), 999_999);
    let batch = Batch {
        writer: b.id().to_owned(),
        entries: vec![folio_sync::SyncEntry {
            document_id: doc,
            scope: Scope::Global,
            branch: Branch::default(),
            action: invalid.clone(),
        }],
    };
    bucket.put_json(&key, &batch).await.unwrap();
    // The promoter integrates, writes the shared object, and dies before writing the refusal.
    bucket.inject_failure_after_next_put();
    let crashed = promote(&promoter, &bucket, &PromoteOptions::default()).await;
    assert!(matches!(crashed, Err(S3Error::Injected(_))), "{crashed:?}");
    assert!(
        bucket
            .list_after(&layout::rejection_area(b.id()), None)
            .await
            .unwrap()
            .is_empty()
    );
    // Its next run promotes the same batches again (duplicates) and writes the refusal it found the first time.
    let again = promote_once(&promoter, &bucket, false).await;
    assert_eq!(again.new, 0, "{again:?}");
    assert!(
        again.rejected[b.id()]
            .iter()
            .any(|r| r.action_id == Some(invalid.id) && r.kept_marked),
        "{again:?}"
    );
    let report = round(&b, &bucket).await;
    assert!(
        report.rejected.iter().any(|r| r.action_id == Some(invalid.id)),
        "{report:?}"
    );
    // A later run does not repeat it.
    assert!(promote_once(&promoter, &bucket, false).await.rejected.is_empty());
    round(&a, &bucket).await;
    assert_eq!(state(&a, doc).await.1, state(&b, doc).await.1);
    assert_eq!(state(&a, doc).await.1, state(&promoter, doc).await.1);
}
