//! The conformance suite on the PostgreSQL backend, each scenario in a fresh database of the server named by
//! `FOLIO_TEST_DATABASE_URL` (scripts/test starts one; without it these tests fail, saying so). Then what only a
//! shared database shows: ordinals stay in commit order under concurrent committing transactions, two handles on
//! one database (two nodes) keep the revision check, and commit notices reach the other handle.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;

use folio_core::{DocumentId, Scope, SyncUnit};
use folio_store::conformance::{Chain, FreshStore};
use folio_store::pg_testing::TestDatabase;
use folio_store::{FeedEntry, OperationStore, PgStore, StoreError, verify};

async fn fresh() -> FreshStore {
    let db = TestDatabase::create().await;
    let store = PgStore::open(&db.url).await.expect("open a new PostgreSQL store");
    FreshStore::with_guard(store, db)
}

folio_store::conformance_tests!(fresh);

/// Two handles on one database, as two nodes have.
async fn two_handles() -> (TestDatabase, PgStore, PgStore) {
    let db = TestDatabase::create().await;
    let a = PgStore::open(&db.url).await.expect("open node A");
    let b = PgStore::open(&db.url).await.expect("open node B");
    (db, a, b)
}

/// Appends `rounds` single operations to `unit` through `store`, re-reading the head after each mismatch (as a
/// writer does); returns the indexes it won.
async fn race(store: PgStore, unit: SyncUnit, writer: usize, rounds: usize) -> Vec<u64> {
    let mut won = Vec::new();
    while won.len() < rounds {
        let (revision, last) = store.head(&unit).await.expect("head");
        let op = Chain::at(unit.clone(), revision, last).op("SET", json!({ "writer": writer, "n": won.len() }));
        match store.append(&unit, revision, vec![op]).await {
            Ok(appended) => {
                assert!(!appended.replayed);
                won.push(revision);
            }
            Err(StoreError::RevisionMismatch { .. }) => {}
            Err(StoreError::InvalidOperations { .. }) => {} // the head moved between the two reads of `head`
            Err(e) => panic!("append failed: {e}"),
        }
    }
    won
}

/// The revision check holds between nodes: writers on two handles race on one unit, each index has exactly one
/// winner, and the log is dense and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_handles_keep_the_revision_check() {
    let (_db, a, b) = two_handles().await;
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            tokio::spawn(race(
                if i % 2 == 0 { a.clone() } else { b.clone() },
                unit.clone(),
                i,
                15,
            ))
        })
        .collect();
    let mut won = BTreeSet::new();
    for task in tasks {
        for index in task.await.expect("writer") {
            assert!(won.insert(index), "index {index} was won twice");
        }
    }
    assert_eq!(
        won,
        (0..180).collect::<BTreeSet<u64>>(),
        "every index has exactly one winner"
    );
    assert_eq!(a.head(&unit).await.expect("head").0, 180);
    let report = verify(&b).await.expect("verify");
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.operations, 180);
}

/// Ordinals are handed out in commit order: a reader tailing `read_since` (moving its cursor to the last ordinal it
/// saw) while two handles commit concurrently sees every operation exactly once. With ordinals from a sequence, a
/// transaction that took a lower number and committed later would be skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tailing_reader_never_skips_a_late_commit() {
    let (_db, a, b) = two_handles().await;
    let writers: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tokio::spawn(async move {
                let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
                let mut chain = Chain::new(unit.clone());
                for n in 0..40u64 {
                    let size = 1 + (n as usize + i) % 3;
                    let ops = chain.ops(size);
                    store
                        .append(&unit, chain.next - size as u64, ops)
                        .await
                        .expect("append");
                }
                chain.next
            })
        })
        .collect();
    let reader = {
        let store = a.clone();
        tokio::spawn(async move {
            let mut cursor = 0;
            let mut seen = Vec::new();
            let mut idle = 0;
            while idle < 50 {
                let page = store.read_since(cursor, 64).await.expect("read_since");
                match page.last() {
                    Some(last) => {
                        cursor = last.ordinal;
                        seen.extend(page.into_iter().map(|c| c.ordinal));
                        idle = 0;
                    }
                    None => {
                        idle += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            seen
        })
    };
    let mut total = 0;
    for w in writers {
        total += w.await.expect("writer");
    }
    let seen = reader.await.expect("reader");
    let all: Vec<u64> = a
        .read_since(0, usize::MAX)
        .await
        .expect("read_since")
        .into_iter()
        .map(|c| c.ordinal)
        .collect();
    assert_eq!(all.len() as u64, total, "every operation has an ordinal");
    assert_eq!(
        seen, all,
        "the tailing reader saw every operation once, in ordinal order"
    );
}

/// A handle's commit feed wakes on the other handle's commits (not on its own), and marks which operations it
/// committed itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_notices_reach_the_other_handle() {
    let (_db, a, b) = two_handles().await;
    let feed = a.commit_feed().expect("PostgreSQL has a commit feed");
    let mut notices = feed.notices();
    // The listener connects in the background and announces itself once it listens; a stream made after that
    // announcement does not see it (the test's first version waited for it and failed when the listener won the
    // race), and a commit before it listens is not announced. So: commits on B, one at a time, until one wakes A;
    // then the late wake-ups of the others are drained.
    let probe = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut probe_chain = Chain::new(probe.clone());
    for at in 0.. {
        assert!(at < 100, "the listener connects");
        b.append(&probe, at, probe_chain.ops(1)).await.expect("append on B");
        if tokio::time::timeout(Duration::from_millis(100), notices.next())
            .await
            .is_ok()
        {
            break;
        }
    }
    while tokio::time::timeout(Duration::from_millis(300), notices.next())
        .await
        .is_ok()
    {}
    let start = a.max_ordinal().await.expect("max_ordinal");

    let mine = SyncUnit::main(DocumentId::new(), Scope::Global);
    a.append(&mine, 0, Chain::new(mine.clone()).ops(2))
        .await
        .expect("append on A");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), notices.next())
            .await
            .is_err(),
        "a handle is not woken by its own commits"
    );
    let theirs = SyncUnit::main(DocumentId::new(), Scope::Global);
    b.append(&theirs, 0, Chain::new(theirs.clone()).ops(3))
        .await
        .expect("append on B");
    tokio::time::timeout(Duration::from_secs(10), notices.next())
        .await
        .expect("B's commit wakes A")
        .expect("a wake-up");

    let marked = feed.read_since_marked(start, 100).await.expect("read_since_marked");
    let plain = a.read_since(start, 100).await.expect("read_since");
    assert_eq!(plain.len(), 5);
    // A's own commits come as their ordinals, B's whole: read_since with A's operations left out.
    let expected: Vec<FeedEntry> = plain
        .iter()
        .map(|c| match c.unit == mine {
            true => FeedEntry::Own { ordinal: c.ordinal },
            false => FeedEntry::Elsewhere(c.clone()),
        })
        .collect();
    assert_eq!(
        marked, expected,
        "read_since_marked is read_since with own commits as ordinals"
    );
    let summary: Vec<(SyncUnit, u64)> = plain.iter().map(|c| (c.unit.clone(), c.operation.index)).collect();
    assert_eq!(
        summary,
        vec![
            (mine.clone(), 0),
            (mine.clone(), 1),
            (theirs.clone(), 0),
            (theirs.clone(), 1),
            (theirs.clone(), 2),
        ]
    );
    // From a cursor inside the page, and with a limit.
    let tail = feed
        .read_since_marked(plain[1].ordinal, 2)
        .await
        .expect("read_since_marked");
    assert_eq!(tail, expected[2..4].to_vec());
    let none = feed
        .read_since_marked(plain[4].ordinal, 100)
        .await
        .expect("read_since_marked");
    assert!(none.is_empty(), "nothing after the last commit: {none:?}");
}

/// Several nodes starting on a new database at once: one applies the migrations, every one opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_opening_a_new_database_at_once() {
    let db = TestDatabase::create().await;
    let opens: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url.clone();
            tokio::spawn(async move { PgStore::open(&url).await.map(|_| ()) })
        })
        .collect();
    for open in opens {
        open.await.expect("task").expect("open");
    }
}

/// `verify` catches a tampered or missing row (the log is append-only by contract; a DBA can still edit it).
#[tokio::test]
async fn verify_detects_tampering() {
    let db = TestDatabase::create().await;
    let store = PgStore::open(&db.url).await.expect("open");
    let unit = SyncUnit::main(DocumentId::new(), Scope::Global);
    let mut chain = Chain::new(unit.clone());
    store.append(&unit, 0, chain.ops(10)).await.expect("append");
    assert!(verify(&store).await.expect("verify").is_ok());
    sqlx::query("UPDATE operations SET operation = replace(operation, '\"SET\"', '\"SEX\"') WHERE idx = 4")
        .execute(store.pool())
        .await
        .expect("tamper");
    let broken = verify(&store)
        .await
        .expect("verify")
        .broken
        .expect("tampering is detected");
    assert_eq!((broken.unit, broken.index), (unit.clone(), 4));
    sqlx::query("DELETE FROM operations WHERE idx >= 2")
        .execute(store.pool())
        .await
        .expect("delete");
    let broken = verify(&store)
        .await
        .expect("verify")
        .broken
        .expect("a lost tail is detected");
    assert_eq!(broken.index, 2);
}
